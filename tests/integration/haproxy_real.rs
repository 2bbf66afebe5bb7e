//! Against Debian's HAProxy: `haproxy -c` as the check, and a master-worker HAProxy on loopback
//! reloaded through its master socket.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::moto::Moto;
use super::util::{Deployment, assert_exit, describe, find_program, free_port, stderr};

fn haproxy() -> PathBuf {
    find_program("haproxy", "HAPROXY")
}

#[test]
fn a_render_that_haproxy_rejects_is_never_installed() {
    let moto = Moto::start();
    moto.security_group("web");
    moto.launch("web", 1, &[]);
    let mut deployment = Deployment::new(&moto.url);
    deployment.haproxy_toml = deployment.haproxy_toml.replace(
        "check_command = [\"sh\", \"-c\", \"test -s \\\"$0\\\"\", \"{config}\"]",
        &format!(
            "check_command = [\"{}\", \"-c\", \"-f\", \"{{config}}\"]",
            haproxy().display()
        ),
    );
    deployment.template = "defaults\n    timeout connect 1s\n{{#each pools}}backend {{backend}}\n    bogus-directive on\n{{/each}}".to_owned();
    let installed = b"# the installed config\n";
    std::fs::write(deployment.haproxy_cfg(), installed).unwrap();

    let output = deployment.run(&[]);
    assert_exit(&output, 1);
    let message = stderr(&output);
    assert!(
        message.contains("rejected by the check command"),
        "{message}"
    );
    assert!(
        message.contains("bogus-directive"),
        "HAProxy's own message is shown: {message}"
    );
    assert_eq!(std::fs::read(deployment.haproxy_cfg()).unwrap(), installed);
    assert_eq!(deployment.reloads(), 0);
    let leftovers: Vec<_> = std::fs::read_dir(deployment.path("haproxy"))
        .unwrap()
        .collect();
    assert_eq!(leftovers.len(), 1, "the candidate file was removed");
}

/// A master-worker HAProxy on loopback, stopped when dropped.
struct LiveHaproxy {
    child: Child,
    master_socket: PathBuf,
}

impl LiveHaproxy {
    fn start(config: &Path, master_socket: &Path) -> LiveHaproxy {
        let child = Command::new(haproxy())
            .arg("-W")
            .arg("-S")
            .arg(master_socket)
            .arg("-f")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(master_socket).is_err() {
            assert!(Instant::now() < deadline, "haproxy did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        LiveHaproxy {
            child,
            master_socket: master_socket.to_owned(),
        }
    }

    fn master(&self, command: &str) -> String {
        cli(&self.master_socket, command)
    }
}

impl Drop for LiveHaproxy {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn cli(socket: &Path, command: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).expect("connect socket");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(format!("{command}\n").as_bytes()).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

fn template(admin: &Path, frontend_port: u16, extra: &str) -> String {
    format!(
        "global\n    stats socket {} mode 600 level admin expose-fd listeners\n    hard-stop-after 5s\n\
defaults\n    mode http\n    option idle-close-on-response\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n\
frontend http\n    bind 127.0.0.1:{frontend_port}\n    default_backend web\n{extra}\
{{{{#each pools}}}}\nbackend {{{{backend}}}}\n{{{{#each servers}}}}\n    server {{{{name}}}} {{{{address}}}}:{{{{port}}}}\n{{{{/each}}}}\n{{{{/each}}}}\n",
        admin.display()
    )
}

#[test]
fn reloads_through_the_master_socket_and_restores_the_backup_when_the_reload_fails() {
    let moto = Moto::start();
    moto.security_group("web");
    // The address tag points at loopback, so HAProxy never learns moto's 10.x addresses.
    let backend_port = free_port();
    let endpoint = format!("127.0.0.1:{backend_port}");
    let ids = moto.launch("web", 1, &[("endpoint", endpoint.as_str())]);

    let mut deployment = Deployment::new(&moto.url);
    let admin = deployment.path("haproxy/admin.sock");
    let master_socket = deployment.path("haproxy/master.sock");
    let frontend_port = free_port();
    deployment.haproxy_toml = format!(
        "check_command = [\"{}\", \"-c\", \"-q\", \"-f\", \"{{config}}\"]\nmaster_socket = \"{}\"\ncommand_timeout_s = 10\n",
        haproxy().display(),
        master_socket.display()
    );
    deployment.pool_toml = deployment
        .pool_toml
        .replace("port = 8080", "port = 8080\naddress = \"tag:endpoint\"");
    deployment.template = template(&admin, frontend_port, "");
    // HAProxy starts on an empty backend, as on a fresh load balancer.
    let initial = format!(
        "global\n    stats socket {} mode 600 level admin expose-fd listeners\ndefaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\nfrontend http\n    bind 127.0.0.1:{frontend_port}\n    default_backend web\nbackend web\n",
        admin.display()
    );
    std::fs::write(deployment.haproxy_cfg(), &initial).unwrap();
    let live = LiveHaproxy::start(&deployment.haproxy_cfg(), &master_socket);

    let output = deployment.run(&[]);
    assert_exit(&output, 0);
    let proc = live.master("show proc");
    assert!(proc.contains(" master          1 [failed: 0]"), "{proc}");
    let servers = cli(&admin, "show servers state web");
    assert!(
        servers.contains(&ids[0]) && servers.contains("127.0.0.1"),
        "{servers}"
    );

    // A config that passes `haproxy -c` but cannot load: its extra frontend's port is taken.
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let good = std::fs::read(deployment.haproxy_cfg()).unwrap();
    deployment.template = template(
        &admin,
        frontend_port,
        &format!("frontend taken\n    bind 127.0.0.1:{busy_port}\n    default_backend web\n"),
    );
    let failed = deployment.run(&[]);
    assert_exit(&failed, 1);
    let message = stderr(&failed);
    assert!(
        message.contains("previous config was restored"),
        "{}",
        describe(&failed)
    );
    assert!(
        message.contains("failed to load the new config"),
        "{message}"
    );
    assert_eq!(
        std::fs::read(deployment.haproxy_cfg()).unwrap(),
        good,
        "the good config is back in place"
    );
    let proc = live.master("show proc");
    // Three reloads: the good one, the failed one, and the one after restoring. (The master resets
    // its `[failed: N]` counter on the next successful load.)
    assert!(
        proc.contains(" master          3 [failed: 0]"),
        "restored and reloaded again: {proc}"
    );
    let servers = cli(&admin, "show servers state web");
    assert!(
        servers.contains(&ids[0]),
        "still serving the old config: {servers}"
    );
    drop(busy);
}

#[test]
fn the_shipped_template_passes_haproxy_check() {
    let moto = Moto::start();
    moto.security_group("web");
    moto.launch("web", 2, &[]);
    let mut deployment = Deployment::new(&moto.url);
    deployment.template = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/templates/haproxy.cfg.hbs"
    ))
    .unwrap();
    deployment.haproxy_toml = format!(
        "stats_socket = \"{}\"\ncheck_command = [\"{}\", \"-c\", \"-f\", \"{{config}}\"]\nreload_command = [\"true\"]\n",
        deployment.path("haproxy/admin.sock").display(),
        haproxy().display()
    );
    let output = deployment.run(&[]);
    assert_exit(&output, 0);
    assert_eq!(deployment.servers().len(), 2, "{}", describe(&output));
    let config = std::fs::read_to_string(deployment.haproxy_cfg()).unwrap();
    assert!(
        config.contains("option idle-close-on-response") && config.contains("expose-fd listeners")
    );
}
