//! Self-healing on a real HAProxy (issue 32): three loopback backends of the local example behind
//! a live master-worker HAProxy with health checks; one is killed (its instance still listed, as
//! a cloud lists an instance whose service crashed). HAProxy marks it DOWN, a run replaces it (a
//! launch first, then its drain and termination) and the pool is three healthy servers again,
//! while a client's requests all succeed on the two others (HAProxy retries what the dead one
//! refused or dropped).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use haproxy_autoscaler::surface::haproxy::stats::parse_show_stat;
use haproxy_autoscaler::surface::model::Status;

use super::real::{cli, live_haproxy_toml, start_on_own_file};
use crate::util::{Deployment, LocalBackends, assert_exit, free_port, local_example_pool, stdout};

const TEMPLATE: &str = "\
global
    master-worker
    stats socket {{haproxy.stats_socket}} mode 600 level admin expose-fd listeners
    server-state-file {{haproxy.server_state_file}}
    hard-stop-after 5s
defaults
    mode http
    option idle-close-on-response
    load-server-state-from-file global
    retries 3
    option redispatch 1
    retry-on all-retryable-errors
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend http
    bind 127.0.0.1:FRONTEND_PORT
    default_backend web
backend web
    balance roundrobin
    option httpchk GET /health
    default-server check inter 200ms fall 2 rise 1
{{#each pools}}{{#each servers}}
    server {{name}} {{address}}:{{port}}{{#if booting}} disabled{{/if}}
{{/each}}{{/each}}
";

/// `web`'s servers as HAProxy's stats show them: (name, status).
fn servers(admin: &Path) -> Vec<(String, Status)> {
    parse_show_stat(&cli(admin, "show stat"))
        .unwrap()
        .into_iter()
        .filter(|row| row.proxy == "web" && !row.is_backend())
        .map(|row| (row.name, row.status))
        .collect()
}

/// A client that GETs `/` through the frontend one request after another until stopped:
/// (succeeded, failed).
fn client(frontend: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u64, u64)> {
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (ok, failed) = (AtomicU64::new(0), AtomicU64::new(0));
        while !stop.load(Ordering::Relaxed) {
            let answer =
                std::net::TcpStream::connect(("127.0.0.1", frontend)).and_then(|mut stream| {
                    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
                    stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
                    let mut answer = String::new();
                    stream.read_to_string(&mut answer)?;
                    Ok(answer)
                });
            let counter = match answer {
                Ok(text) if text.split(' ').nth(1) == Some("200") => &ok,
                _ => &failed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        (ok.into_inner(), failed.into_inner())
    })
}

#[test]
fn a_killed_backend_is_replaced_with_no_failed_request() {
    let mut deployment = Deployment::new("http://127.0.0.1:9");
    let pool_dir = deployment.path("pool");
    let backends = LocalBackends(pool_dir.clone());
    let frontend = free_port();
    deployment.haproxy_toml = live_haproxy_toml(&deployment, "runtime");
    deployment.pool_toml = local_example_pool()
        + "[pool.scaling]\nmin = 3\nmax = 3\ntarget = 1000\nwarmup_s = 0\ncooldown_s = 0\ndrain_s = 2\nunhealthy_after_s = 1\n";
    deployment.template = TEMPLATE.replace("FRONTEND_PORT", &frontend.to_string());
    deployment.write();
    let _haproxy = start_on_own_file(&deployment, frontend);
    let admin = deployment.path("haproxy/admin.sock");
    let run = || {
        let output = deployment
            .command()
            .env("LOCAL_POOL_DIR", &pool_dir)
            .env("LOCAL_KEEP_DEAD", "1")
            .env("LOCAL_COST_MS", "5")
            .output()
            .unwrap();
        assert_exit(&output, 0);
        stdout(&output)
    };
    let three_up = |without: Option<&str>| {
        let servers = servers(&admin);
        servers.len() == 3
            && servers
                .iter()
                .all(|(name, status)| *status == Status::Up && Some(name.as_str()) != without)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !three_up(None) {
        assert!(
            Instant::now() < deadline,
            "three servers never came up: {:?}",
            servers(&admin)
        );
        run();
        std::thread::sleep(Duration::from_millis(300));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let load = client(frontend, stop.clone());
    std::thread::sleep(Duration::from_millis(500));
    let (killed, pid) = backends.pids()[1].clone();
    assert!(
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );

    let mut said = String::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        said.push_str(&run());
        let gone = backends.pids().iter().all(|(id, _)| *id != killed);
        if gone && three_up(Some(&killed)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not healed: {:?}\n{said}",
            servers(&admin)
        );
        std::thread::sleep(Duration::from_millis(400));
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = load.join().unwrap();
    for words in [
        format!("replaces unhealthy {killed}"),
        format!("drain server web/{killed}"),
        "replaced: DOWN for".to_owned(),
        format!("terminate instance {killed}"),
    ] {
        assert!(said.contains(&words), "{words:?} not in:\n{said}");
    }
    assert!(ok > 50, "{ok} requests succeeded, {failed} failed");
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
}
