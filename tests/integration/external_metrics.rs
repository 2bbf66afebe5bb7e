//! Issue 17: scaling on a metric from outside HAProxy, through the real binary. A real
//! Prometheus (Debian's package, started here on loopback) scrapes a small exporter served by
//! the test and answers real PromQL; a command prints the value. Each source scales a pool up
//! and down, and every kind of "no data" holds it with the reason in `--plan`. The pool is an
//! exec pool of loopback instances behind a fake admin socket (HAProxy's counters play no part).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use haproxy_autoscaler::testing::FakeAdminSocket;

use super::util::{
    Deployment, Ran, assert_exit, describe, find_program, fixture_exec_pool, free_port, stdout,
};

/// Two servers of pool `web`, in service.
const TWO: &str = r#"[{"id": "local-1", "address": "127.0.0.1", "port": 9001, "tags": {"haproxy-autoscaler:pool": "web"}},
{"id": "local-2", "address": "127.0.0.1", "port": 9002, "tags": {"haproxy-autoscaler:pool": "web"}}]"#;

/// A scaling exec pool whose `[pool.scaling]` holds `scaling`, two servers up in HAProxy.
struct Pool {
    deployment: Deployment,
    _haproxy: FakeAdminSocket,
}

impl Pool {
    fn new(scaling: &str) -> Pool {
        let mut deployment = Deployment::new("http://127.0.0.1:9");
        deployment.pool_toml = fixture_exec_pool("ready_check = \"none\"")
            + "[pool.scaling]\nmin = 1\nmax = 10\nstep_up = 10\nwarmup_s = 0\ncooldown_s = 0\n"
            + scaling;
        let socket = deployment.path("admin.sock");
        deployment
            .haproxy_toml
            .push_str(&format!("stats_socket = \"{}\"\n", socket.display()));
        let haproxy = FakeAdminSocket::start(&socket);
        haproxy.set_servers(&[("local-1", 1, 100), ("local-2", 1, 100)]);
        std::fs::write(deployment.path("provider.json"), TWO).unwrap();
        Pool {
            deployment,
            _haproxy: haproxy,
        }
    }

    fn run(&self, args: &[&str]) -> Ran {
        self.deployment.write();
        let mut command = self.deployment.command();
        command
            .env("EXEC_PROVIDER_STATE", self.deployment.path("provider.json"))
            .args(args);
        Ran(command.output().unwrap())
    }

    /// The instances the provider has now.
    fn instances(&self) -> usize {
        let text = std::fs::read_to_string(self.deployment.path("provider.json")).unwrap();
        serde_json::from_str::<Vec<serde_json::Value>>(&text)
            .unwrap()
            .len()
    }

    /// Runs for real and asserts that it exits 0 and prints `text`.
    #[track_caller]
    fn assert_run_says(&self, text: &str) {
        let run = self.run(&[]).exits(0);
        assert!(stdout(&run).contains(text), "{text}: {}", describe(&run));
    }

    /// Asserts that a plan holds the pool at 2 and that its line says `why`.
    #[track_caller]
    fn assert_holds(&self, why: &str) {
        let plan = self.run(&["--plan"]).exits(0);
        let text = stdout(&plan);
        assert!(
            text.contains("pool web: no metric; 2 server(s) (0 booting), bounds 1..10 → desired 2: no metric this run (")
                && text.contains(why)
                && text.contains("): holding"),
            "{why}: {}",
            describe(&plan)
        );
        assert!(!text.contains("launch"), "{}", describe(&plan));
    }
}

#[test]
fn a_command_metric_scales_up_and_down_and_holds_on_no_data() {
    let dir = tempfile::tempdir().unwrap();
    let value = dir.path().join("value");
    // The value is read from stdout alone: a notice on stderr does not spoil it.
    let command = |extra: &str| {
        format!(
            "metric = \"command\"\nmetric_command = [\"sh\", \"-c\", \"cat '{}'; echo 'a notice' >&2\"]\nper_server = true\ntarget = 10\n{extra}",
            value.display()
        )
    };
    // A queue of 60 jobs for 2 servers, 10 per server wanted: 6 servers.
    std::fs::write(&value, "60\n").unwrap();
    let up = Pool::new(&command(""));
    let plan = up.run(&["--plan"]);
    assert!(
        stdout(&plan)
            .contains("metric 30.00 per server; 2 server(s) (0 booting), bounds 1..10 → desired 6"),
        "{}",
        describe(&plan)
    );
    up.assert_run_says("launch 4 instance(s) for pool web");
    assert_eq!(up.instances(), 6);
    // The value went into the state's samples, for the history policies.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(up.deployment.state_path()).unwrap()).unwrap();
    assert_eq!(state["pools"]["web"]["samples"][0]["metric"], 30.0);

    // {"value": N} too; 2 jobs: one server is enough, one is drained.
    std::fs::write(&value, r#"{"value": 2}"#).unwrap();
    let down = Pool::new(&command(""));
    down.assert_run_says("drain server web/local-");

    // Every kind of no data holds the pool and says why.
    let old = jiff::Timestamp::now().as_second() - 600;
    for (printed, why) in [
        ("NaN", "the value is NaN"),
        ("inf", "the value is inf"),
        ("-3", "the value -3 is negative"),
        ("many", "`many` is not a number"),
        ("", "printed nothing"),
        (
            &format!(r#"{{"value": 50, "at": {old}}}"#),
            "s old, more than metric_max_age_s (120 s)",
        ),
    ] {
        std::fs::write(&value, printed).unwrap();
        Pool::new(&command("")).assert_holds(why);
    }
    Pool::new(
        "metric = \"command\"\nmetric_command = [\"sh\", \"-c\", \"exit 3\"]\nper_server = true\ntarget = 10\n",
    )
    .assert_holds("failed (exit status: 3)");
    // `check` reports a source that gives no value as a problem.
    std::fs::write(&value, "NaN").unwrap();
    let check = Pool::new(&command("")).run(&["check"]);
    assert_exit(&check, 2);
    assert!(
        stdout(&check).contains(
            "problem: pool `web`: its metric gives no value, so a run would not scale it: the value is NaN"
        ),
        "{}",
        describe(&check)
    );
    // A run says it on stderr (it prints no decision).
    let run = Pool::new(&command("")).run(&[]);
    assert_exit(&run, 0);
    assert!(
        super::util::stderr(&run)
            .contains("pool `web`: no metric this run, holding: the value is NaN"),
        "{}",
        describe(&run)
    );
    std::fs::write(&value, "7").unwrap();
    assert_exit(&Pool::new(&command("")).run(&["check"]), 0);
    Pool::new(
        "metric = \"command\"\nmetric_command = [\"sleep\", \"5\"]\nper_server = true\ntarget = 10\nmetric_timeout_s = 1\n",
    )
    .assert_holds("1s");
}

/// A loopback exporter serving `/metrics` from a text the test changes.
fn exporter(text: Arc<Mutex<String>>) -> u16 {
    let listener = TcpListener::bind(("127.0.0.1", free_port())).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer);
            let body = text.lock().unwrap().clone();
            let _ = stream.write_all(
                format!(
                    "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    });
    port
}

/// Debian's Prometheus on loopback, scraping `target` every second; stopped when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

/// `s3cret-pass`, bcrypt (cost 4), for the web config's basic auth.
const PASSWORD_HASH: &str = "$2b$04$TkSkCE2t9qOxXLnA1JHSAOrUbZMJn7pUPBpzKu3UPEcmWeP4BpdP2";

impl Prometheus {
    fn start(target: u16) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
            ),
        )
        .unwrap();
        let web = dir.path().join("web.yml");
        std::fs::write(
            &web,
            format!("basic_auth_users:\n  scaler: '{PASSWORD_HASH}'\n"),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new(find_program("prometheus", "PROMETHEUS"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.config.file={}", web.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits until a query for `series` answers a value (scraped at least once).
    fn wait_for(&self, series: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(body) = self.query(series)
                && body.contains("\"value\"")
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus never answered a value for {series}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn query(&self, query: &str) -> std::io::Result<String> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        // `s3cret-pass`'s basic auth, base64("scaler:s3cret-pass").
        write!(
            stream,
            "GET /api/v1/query?query={query} HTTP/1.0\r\nAuthorization: Basic c2NhbGVyOnMzY3JldC1wYXNz\r\n\r\n"
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `[pool.scaling]` keys for `query` on `prometheus`, with basic auth from `auth`.
fn promql(prometheus: &Prometheus, auth: &Path, query: &str, extra: &str) -> String {
    format!(
        "metric = \"prometheus\"\nprometheus_url = \"{}\"\nquery = '{query}'\nbasic_auth_file = \"{}\"\n{extra}",
        prometheus.url(),
        auth.display()
    )
}

#[test]
fn a_prometheus_query_scales_up_and_down_and_holds_on_no_data() {
    let text = Arc::new(Mutex::new(String::new()));
    let set = |jobs: u32| {
        *text.lock().unwrap() = format!(
            "# TYPE queue_jobs gauge\nqueue_jobs{{queue=\"mail\"}} {jobs}\n# TYPE worker_busy gauge\nworker_busy{{worker=\"1\"}} 0.9\nworker_busy{{worker=\"2\"}} 0.7\n"
        );
    };
    set(60);
    let prometheus = Prometheus::start(exporter(text.clone()));
    prometheus.wait_for("queue_jobs");
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("prometheus.auth");
    std::fs::write(&auth, "scaler:s3cret-pass\n").unwrap();
    let auth: PathBuf = auth;

    // A queue of 60 for 2 servers, 10 per server wanted: 6 servers.
    let up = Pool::new(&promql(
        &prometheus,
        &auth,
        "sum(queue_jobs)",
        "per_server = true\ntarget = 10\n",
    ));
    let plan = up.run(&["--plan", "-vv"]);
    assert!(
        stdout(&plan)
            .contains("metric 30.00 per server; 2 server(s) (0 booting), bounds 1..10 → desired 6"),
        "{}",
        describe(&plan)
    );
    // The password is never shown, not even at -vv.
    assert!(
        !describe(&plan).contains("s3cret") && !describe(&plan).contains("c2NhbGVy"),
        "{}",
        describe(&plan)
    );
    up.assert_run_says("launch 4 instance(s) for pool web");
    assert_eq!(up.instances(), 6);

    // A CPU-like average, already per server: 0.8 against scale_down_below 0.85 with a high
    // scale_up_above drains one (of two).
    let down = Pool::new(&promql(
        &prometheus,
        &auth,
        "avg(worker_busy)",
        "per_server = false\nscale_up_above = 0.95\nscale_down_below = 0.85\n",
    ));
    down.assert_run_says("drain server web/local-");

    // Every kind of no data holds the pool and says why.
    let hold = |query: &str, why: &str| {
        Pool::new(&promql(
            &prometheus,
            &auth,
            query,
            "per_server = true\ntarget = 10\n",
        ))
        .assert_holds(why);
    };
    hold("sum(absent_series)", "returned no series");
    hold(
        "worker_busy",
        "returned 2 series ({__name__=\"worker_busy\"",
    );
    hold("0/0", "the value is NaN");
    hold("1/0", "the value is inf");
    hold("-1", "the value -1 is negative");
    hold("\"busy\"", "`busy` is not a number");
    hold("sum(", "Prometheus refused query `sum(`");
    // Wrong credentials: Prometheus answers 401.
    let wrong = dir.path().join("wrong.auth");
    std::fs::write(&wrong, "scaler:nope\n").unwrap();
    Pool::new(&promql(
        &prometheus,
        &wrong,
        "sum(queue_jobs)",
        "per_server = true\ntarget = 10\n",
    ))
    .assert_holds("HTTP 401");
    // A Prometheus that is not there.
    let gone = format!("http://127.0.0.1:{}", free_port());
    Pool::new(&format!(
        "metric = \"prometheus\"\nprometheus_url = \"{gone}\"\nquery = 'up'\nper_server = true\ntarget = 10\n"
    ))
    .assert_holds("cannot connect to Prometheus");
}

/// `tests/fixtures/hostile-http.py` on loopback, answering every request as `mode` says;
/// stopped when dropped.
struct HostileEndpoint {
    child: Child,
    url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl HostileEndpoint {
    fn start(mode: &str) -> HostileEndpoint {
        let dir = tempfile::tempdir().unwrap();
        let port_file = dir.path().join("port");
        let log = dir.path().join("requests.log");
        let child = Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/hostile-http.py"
            ))
            .args(["--mode", mode])
            .arg("--port-file")
            .arg(&port_file)
            .arg("--log")
            .arg(&log)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let port = super::cloud_faults::wait_for_port_file(&port_file, "hostile-http.py");
        HostileEndpoint {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        }
    }

    /// The methods of the requests it was sent.
    fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|line| {
                let entry: serde_json::Value = serde_json::from_str(line).unwrap();
                entry["method"].as_str().unwrap().to_owned()
            })
            .collect()
    }
}

impl Drop for HostileEndpoint {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Issue 29, class 2: a Prometheus whose answer never ends, is trickled a byte a second, or
/// whose head is, costs one `metric_timeout_s` at most: the pool holds on no metric and says
/// why, and nothing is read past the 1 MiB cap.
#[test]
fn a_prometheus_answer_that_never_ends_holds_the_pool() {
    for (mode, why) in [
        ("endless", "the answer is larger than 1 MiB"),
        ("trickle", "no complete answer within 2s"),
        ("trickle-head", "did not answer within 2s"),
    ] {
        let prometheus = HostileEndpoint::start(mode);
        let pool = Pool::new(&format!(
            "metric = \"prometheus\"\nprometheus_url = \"{}\"\nquery = 'sum(queue_jobs)'\nper_server = true\ntarget = 10\nmetric_timeout_s = 2\n",
            prometheus.url
        ));
        let started = Instant::now();
        pool.assert_holds(why);
        let took = started.elapsed();
        // Generous for a loaded machine; the trickle alone would take ~90 s.
        assert!(took < Duration::from_secs(30), "{mode}: {took:?}");
        assert_eq!(prometheus.requests(), ["GET"], "{mode}");
    }
}

/// Issue 29, class 2: a webhook whose answer body never ends or is trickled costs nothing (only
/// its status is read: the run ends as soon as it arrives). One whose head is trickled costs
/// the sink's 10 s once: it is not tried again this run (a fresh-eyes trial saw four events
/// cost 40 s), with a warning saying what it missed, and it never fails the run.
#[test]
fn a_webhook_answer_that_never_ends_costs_the_run_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let value = dir.path().join("value");
    // 200 jobs, 10 per server: 20 servers wanted, capped at 10. Two events: capped, scaled.
    std::fs::write(&value, "200\n").unwrap();
    for (mode, posts, warned, within) in [
        ("endless", 2, false, Duration::from_secs(8)),
        ("trickle", 2, false, Duration::from_secs(8)),
        ("trickle-head", 1, true, Duration::from_secs(18)),
    ] {
        let hook = HostileEndpoint::start(mode);
        let pool = Pool::new(&format!(
            "metric = \"command\"\nmetric_command = [\"cat\", \"{}\"]\nper_server = true\ntarget = 10\n\n[notify]\non = [\"scaled\", \"capped\"]\nwebhook = \"{}/hook\"\n",
            value.display(),
            hook.url
        ));
        let started = Instant::now();
        let run = pool.run(&[]);
        let took = started.elapsed();
        assert_exit(&run, 0);
        assert!(
            stdout(&run).contains("launch 8 instance(s) for pool web"),
            "{mode}: {}",
            describe(&run)
        );
        assert_eq!(hook.requests(), vec!["POST"; posts], "{mode}");
        for says in [
            "notify webhook failed: no answer within 10s",
            "notify webhook: 1 more notification(s) not sent this run: it timed out",
        ] {
            assert_eq!(
                describe(&run).contains(says),
                warned,
                "{mode}: {says}: {}",
                describe(&run)
            );
        }
        assert!(took < within, "{mode}: {took:?}");
    }
}
