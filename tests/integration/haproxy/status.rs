//! `status` against a real HAProxy: its view of each managed server joined with the state file.

use std::process::Command;

use crate::tools::{binary, in_site, static_site};
use crate::util::{assert_exit, describe, free_port, haproxy, stdout};

/// `status` against a real HAProxy on loopback: a server UP and checked, one HAProxy has that
/// no run rendered, one the last run rendered that HAProxy lacks; then the socket gone.
#[test]
fn status_joins_haproxy_and_the_state_and_says_when_the_socket_is_gone() {
    let site = static_site();
    let admin = site.path("haproxy/admin.sock");
    let frontend = free_port();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up_port = listener.local_addr().unwrap().port();
    let stranger_port = free_port();
    std::fs::write(
        site.path("etc/haproxy.cfg.hbs"),
        format!(
            "global\n    stats socket {} mode 600 level admin\ndefaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\nfrontend http\n    bind 127.0.0.1:{frontend}\n    default_backend web\n{{{{#each pools}}}}\nbackend {{{{backend}}}}\n{{{{#each servers}}}}\n    server {{{{name}}}} {{{{address}}}}:{{{{port}}}} check inter 100ms\n{{{{/each}}}}\n{{{{/each}}}}\n",
            admin.display()
        ),
    )
    .unwrap();
    assert_exit(
        &in_site(
            &site,
            &["hosts", "add", "web-1", &format!("127.0.0.1:{up_port}")],
        ),
        0,
    );
    assert_exit(
        &in_site(
            &site,
            &[
                "hosts",
                "add",
                "web-2",
                &format!("127.0.0.1:{}", free_port()),
            ],
        ),
        0,
    );
    assert_exit(&in_site(&site, &[]), 0);
    // HAProxy runs a hand-edited file: web-2 gone, a stranger added.
    let cfg = site.path("haproxy/haproxy.cfg");
    let rendered = std::fs::read_to_string(&cfg).unwrap();
    let edited: String = rendered
        .lines()
        .filter(|line| !line.contains("server web-2"))
        .flat_map(|line| [line, "\n"])
        .collect::<String>()
        + &format!("    server stranger 127.0.0.1:{stranger_port}\n");
    std::fs::write(&cfg, edited).unwrap();
    let haproxy = haproxy();
    let mut child = Command::new(haproxy)
        .arg("-db")
        .arg("-f")
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let servers = loop {
        let output = in_site(&site, &["status", "--format", "json"]);
        let view: serde_json::Value =
            serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
        let servers = view["pools"][0]["servers"].clone();
        let web1_up = servers.as_array().is_some_and(|all| {
            all.iter()
                .any(|s| s["name"] == "web-1" && s["haproxy"] == "UP")
        });
        if output.status.code() == Some(0) && web1_up {
            break servers;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            describe(&output)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let by_name = |name: &str| {
        servers
            .as_array()
            .unwrap()
            .iter()
            .find(|server| server["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} missing: {servers}"))
    };
    let web1 = by_name("web-1");
    assert_eq!(web1["role"], "in service");
    assert_eq!(web1["last_check"], "L4OK");
    assert_eq!(by_name("stranger")["role"], "not rendered by the last run");
    assert!(by_name("web-2")["haproxy"].is_null());
    assert!(
        by_name("web-2")["role"]
            .as_str()
            .unwrap()
            .contains("missing from HAProxy")
    );
    let text = in_site(&site, &["status"]);
    assert_exit(&text, 0);
    assert!(stdout(&text).contains("SERVER"), "{}", describe(&text));

    let _ = child.kill();
    let _ = child.wait();
    let gone = in_site(&site, &["status"]);
    assert_exit(&gone, 1);
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("cannot read HAProxy's stats"),
        "{}",
        describe(&gone)
    );
    // The state's view is still shown.
    assert!(stdout(&gone).contains("web-1") && stdout(&gone).contains("web-2"));
    // A state file that cannot be read is said, and exits 1, even with HAProxy's view missing.
    std::fs::write(site.path("state/state.json"), "{").unwrap();
    let corrupt = in_site(&site, &["status"]);
    assert_exit(&corrupt, 1);
    assert!(
        String::from_utf8_lossy(&corrupt.stderr).contains("cannot read the state file"),
        "{}",
        describe(&corrupt)
    );
    // A reader that went away (`| head -1`): every write to stdout fails with EPIPE. That
    // loses the output, not the process (`println!` would panic and exit 101).
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let gone_reader = binary()
        .arg("--config")
        .arg(site.path("etc/config.toml"))
        .args(["hosts", "list"])
        .stdout(writer)
        .output()
        .unwrap();
    assert_exit(&gone_reader, 0);
    assert!(gone_reader.stderr.is_empty(), "{}", describe(&gone_reader));
    drop(listener);
}
