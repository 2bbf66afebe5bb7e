//! Against a real HAProxy: `haproxy -c` as the check, and a master-worker HAProxy on loopback
//! reloaded through its master socket.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::moto::Moto;
use crate::util::{Deployment, describe, free_port, haproxy, haproxy_version, stderr};

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

    let output = deployment.run(&[]).exits(1);
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
pub(crate) struct LiveHaproxy {
    child: Child,
    master_socket: PathBuf,
}

impl LiveHaproxy {
    pub(crate) fn start(config: &Path, master_socket: &Path) -> LiveHaproxy {
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

    pub(crate) fn master(&self, command: &str) -> String {
        cli(&self.master_socket, command)
    }

    /// The master's pid: the process started, which stays the master across reloads.
    pub(crate) fn master_pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the master's `show proc` line contains `says` (the reload counters).
    pub(crate) fn wait_for_master(&self, says: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let proc = try_cli(&self.master_socket, "show proc").unwrap_or_default();
            if proc.contains(says) {
                return proc;
            }
            assert!(Instant::now() < deadline, "{says:?} never in:\n{proc}");
            std::thread::sleep(Duration::from_millis(50));
        }
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

/// `[haproxy]` keys of a deployment in front of a live master-worker HAProxy: its admin and
/// master sockets in `haproxy/`, `haproxy -c` as the check, and `apply`.
pub(crate) fn live_haproxy_toml(deployment: &Deployment, apply: &str) -> String {
    format!(
        "stats_socket = \"{}\"\nmaster_socket = \"{}\"\ncheck_command = [\"{}\", \"-c\", \"-q\", \"-f\", \"{{config}}\"]\napply = \"{apply}\"\n",
        deployment.path("haproxy/admin.sock").display(),
        deployment.path("haproxy/master.sock").display(),
        haproxy().display(),
    )
}

/// Starts `deployment`'s HAProxy on a haproxy.cfg of its own (an empty backend `web` behind a
/// frontend on `frontend`), as on a real load balancer: the tool's first run replaces it and
/// reloads.
pub(crate) fn start_on_own_file(deployment: &Deployment, frontend: u16) -> LiveHaproxy {
    std::fs::write(
        deployment.haproxy_cfg(),
        format!(
            "global\n    master-worker\n    stats socket {} mode 600 level admin expose-fd listeners\n\
defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n\
frontend http\n    bind 127.0.0.1:{frontend}\n    default_backend web\nbackend web\n",
            deployment.path("haproxy/admin.sock").display()
        ),
    )
    .unwrap();
    LiveHaproxy::start(
        &deployment.haproxy_cfg(),
        &deployment.path("haproxy/master.sock"),
    )
}

pub(crate) fn cli(socket: &Path, command: &str) -> String {
    try_cli(socket, command)
        .unwrap_or_else(|error| panic!("`{command}` on {}: {error}", socket.display()))
}

/// [`cli`], with the error of a connection the master dropped (as 2.6 does while it
/// re-executes itself).
pub(crate) fn try_cli(socket: &Path, command: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    // The master refuses connections while it re-executes itself (after starting its workers,
    // and on every reload).
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut stream = loop {
        match std::os::unix::net::UnixStream::connect(socket) {
            Ok(stream) => break stream,
            Err(error)
                if error.kind() == std::io::ErrorKind::ConnectionRefused
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(error) => return Err(error),
        }
    };
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(format!("{command}\n").as_bytes())?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
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

    deployment.run(&[]).exits(0);
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
    // Through the master socket (HAProxy 2.7+ answers the reload with its outcome), then through
    // a reload command that only signals the master (as `systemctl reload` does), which the
    // master socket confirms.
    let signal = format!(
        "reload_command = [\"kill\", \"-USR2\", \"{}\"]\n",
        live.master_pid()
    );
    for (how, reloads) in [("through the master socket", 3), ("by a signal", 5)] {
        if how == "by a signal" {
            deployment.haproxy_toml.push_str(&signal);
        }
        let failed = deployment.run(&[]).exits(1);
        let message = stderr(&failed);
        assert!(
            message.contains("previous config was restored"),
            "{how}: {}",
            describe(&failed)
        );
        assert!(
            message.contains("failed to load the new config"),
            "{how}: {message}"
        );
        // HAProxy's own reason, where the version says it (2.6 does not, on its master socket).
        let reason = if haproxy_version() >= (2, 7) {
            "cannot bind socket (Address already in use)"
        } else {
            "the reason is in its own output"
        };
        assert!(
            message.contains(reason),
            "{how}: {reason:?} not in {message}"
        );
        assert_eq!(
            std::fs::read(deployment.haproxy_cfg()).unwrap(),
            good,
            "{how}: the good config is back in place"
        );
        // The good reload, then per attempt the failed one and the one after restoring. (The
        // master resets its `[failed: N]` counter on the next successful load.)
        live.wait_for_master(&format!(" master          {reloads} [failed: 0]"));
        let servers = cli(&admin, "show servers state web");
        assert!(
            servers.contains(&ids[0]),
            "{how}: still serving the old config: {servers}"
        );
    }
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
    let output = deployment.run(&[]).exits(0);
    assert_eq!(deployment.servers().len(), 2, "{}", describe(&output));
    let config = std::fs::read_to_string(deployment.haproxy_cfg()).unwrap();
    assert!(
        config.contains("option idle-close-on-response") && config.contains("expose-fd listeners")
    );
    // Issue 9, item 8: never HAProxy as root on a Debian load balancer.
    for line in [
        "    user haproxy\n",
        "    group haproxy\n",
        "    chroot /var/lib/haproxy\n",
    ] {
        assert!(config.contains(line), "{line:?} missing:\n{config}");
    }
}

/// A loopback HTTP backend answering `200 ok` to a bounded number of connections.
pub(crate) fn loopback_backend(connections: usize) -> u16 {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(connections) {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer);
            let _ = stream
                .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    port
}

pub(crate) fn get(port: u16) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn stats_counters_across_a_real_reload_and_a_drain_through_the_runtime_api() {
    use haproxy_autoscaler::surface::config::StatsSource;
    use haproxy_autoscaler::surface::decide::scaling;
    use haproxy_autoscaler::surface::haproxy::admin_socket;
    use haproxy_autoscaler::surface::model::Status;
    use haproxy_autoscaler::surface::model::{OldWorkers, StatsSnapshot};
    use haproxy_autoscaler::testing;

    let dir = tempfile::tempdir().unwrap();
    let admin = dir.path().join("admin.sock");
    let master_socket = dir.path().join("master.sock");
    let config_path = dir.path().join("haproxy.cfg");
    let (frontend, backend, stats_page) = (free_port(), loopback_backend(100), free_port());
    std::fs::write(
        &config_path,
        format!(
            "global\n    stats socket {} mode 600 level admin expose-fd listeners\n\
defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n\
frontend http\n    bind 127.0.0.1:{frontend}\n    default_backend web\n\
frontend stats\n    bind 127.0.0.1:{stats_page}\n    stats enable\n    stats uri /stats\n\
backend web\n    server i-1 127.0.0.1:{backend}\n",
            admin.display()
        ),
    )
    .unwrap();
    let live = LiveHaproxy::start(&config_path, &master_socket);
    let runtime_ = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let source = StatsSource::Socket(admin.display().to_string());
    let read = || {
        runtime_
            .block_on(admin_socket::read_stats(&source, Duration::from_secs(5)))
            .unwrap()
    };

    for _ in 0..5 {
        assert!(get(frontend).ends_with("ok"));
    }
    let (before_info, rows) = read();
    let server = rows
        .iter()
        .find(|row| row.proxy == "web" && row.name == "i-1")
        .unwrap();
    assert_eq!(
        (server.stot, server.req_tot, &server.status),
        (5, Some(5), &Status::NoCheck)
    );
    // The same counters from the CSV stats page.
    let page = StatsSource::Url(format!("http://127.0.0.1:{stats_page}/stats;csv"));
    let (_, page_rows) = runtime_
        .block_on(admin_socket::read_stats(&page, Duration::from_secs(5)))
        .unwrap();
    let server = page_rows
        .iter()
        .find(|row| row.proxy == "web" && row.name == "i-1")
        .unwrap();
    assert_eq!((server.stot, server.req_tot), (5, Some(5)));

    // A real reload resets the counters and changes the worker's pid.
    live.master("reload");
    let deadline = Instant::now() + Duration::from_secs(10);
    let (after_info, rows) = loop {
        let (info, rows) = read();
        if info.pid != before_info.pid {
            break (info, rows);
        }
        assert!(Instant::now() < deadline, "no new worker");
        std::thread::sleep(Duration::from_millis(100));
    };
    get(frontend);
    let rows_after = read().1;
    let server = rows_after.iter().find(|row| row.name == "i-1").unwrap();
    assert_eq!(server.stot, 1, "counters restart after a reload");

    // The planner skips that interval instead of reading a negative rate.
    let text = "[haproxy]\nstats_socket = \"/x\"\n[[pool]]\nname = \"web\"\nport = 80\nready_check = \"none\"\n\
[pool.discover]\nsecurity_group = \"web\"\n[pool.launch]\nimage_id = \"ami-1\"\ninstance_type = \"t3.micro\"\n\
[pool.scaling]\nmin = 1\nmax = 3\nwarmup_s = 0\nscale_up_above = 0.5\nscale_down_below = 0.1\n";
    let pool = haproxy_autoscaler::surface::config::Config::parse(text, Path::new("t.toml"))
        .unwrap()
        .pools
        .remove(0);
    let instances = testing::discovered(&pool, &[testing::instance("i-1", "127.0.0.1")]);
    let plan_with =
        |state: &haproxy_autoscaler::surface::model::PoolState, info, rows: &Vec<_>, now| {
            let snapshot = StatsSnapshot {
                node: "local".into(),
                info,
                rows: rows
                    .iter()
                    .filter(|r: &&haproxy_autoscaler::surface::model::Row| r.proxy == "web")
                    .cloned()
                    .collect(),
                old_workers: OldWorkers::Untracked,
            };
            scaling::plan_scaling(&scaling::ScalingFacts {
                pool: &pool,
                scaling: pool.scaling.as_ref().unwrap(),
                instances: &instances,
                stats: Some(&snapshot),
                ready: &Default::default(),
                found_by_token: &Default::default(),
                external: None,
                state,
                now,
                rapid: (5, 600),
                launch_timeout_s: 30,
                clock_off_s: None,
                token_salt: "test",
                node: "lb-test",
            })
        };
    let first = plan_with(&Default::default(), before_info, &rows, 1_000);
    let across_reload = plan_with(&first.next, after_info, &rows_after, 1_060);
    assert_eq!(
        across_reload.decision.metric, None,
        "{}",
        across_reload.decision.reason
    );

    // Drain through the runtime API, observed in `show stat`.
    runtime_
        .block_on(admin_socket::drain(
            &admin.display().to_string(),
            "web",
            "i-1",
            Duration::from_secs(5),
        ))
        .unwrap();
    let server_status = read()
        .1
        .into_iter()
        .find(|row| row.name == "i-1")
        .unwrap()
        .status;
    assert_eq!(server_status, Status::Drain);
    let refused = runtime_.block_on(admin_socket::drain(
        &admin.display().to_string(),
        "web",
        "i-404",
        Duration::from_secs(5),
    ));
    assert!(
        refused.is_err(),
        "an unknown server is refused: {refused:?}"
    );
}
