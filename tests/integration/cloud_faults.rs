//! Cloud faults between the tool and moto (tests/fixtures/fault-proxy.py): throttling, 5xx,
//! slow answers, dropped connections and lost answers. Transient faults are retried with backoff;
//! a run that gives up exits 1 within a bound, names what failed and changes nothing; a listing
//! that fails on any page changes nothing (invariant 7); a launch is never doubled.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::moto::Moto;
use super::util::{Deployment, assert_exit, describe, stderr, stdout};

/// The fault proxy, killed when dropped.
pub(crate) struct FaultProxy {
    child: Child,
    pub(crate) url: String,
    log: PathBuf,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl FaultProxy {
    pub(crate) fn start(moto: &Moto, rules: Value, dir: &Path) -> FaultProxy {
        let dir = tempfile::tempdir_in(dir).unwrap().keep();
        let rules_path = dir.join("rules.json");
        std::fs::write(&rules_path, rules.to_string()).unwrap();
        let port_file = dir.join("port");
        let log = dir.join("requests.log");
        let child = Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/fault-proxy.py"
            ))
            .args(["--upstream", &moto.url])
            .arg("--port-file")
            .arg(&port_file)
            .arg("--rules")
            .arg(&rules_path)
            .arg("--log")
            .arg(&log)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let port = wait_for_port_file(&port_file, "the fault proxy");
        FaultProxy {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// (time, action, fault) of every request so far.
    pub(crate) fn requests(&self) -> Vec<(f64, String, Option<String>)> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|line| {
                let entry: Value = serde_json::from_str(line).unwrap();
                (
                    entry["t"].as_f64().unwrap(),
                    entry["action"].as_str().unwrap().to_owned(),
                    entry["fault"].as_str().map(str::to_owned),
                )
            })
            .collect()
    }

    /// The EC2 calls it was sent (every request but S3's).
    pub(crate) fn ec2_calls(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .map(|(_, action, _)| action)
            .filter(|action| !action.starts_with("S3:"))
            .collect()
    }

    pub(crate) fn attempts(&self, action: &str) -> Vec<f64> {
        self.requests()
            .into_iter()
            .filter(|(_, name, _)| name == action)
            .map(|(t, _, _)| t)
            .collect()
    }
}

/// A discovery deployment (security group `web`) that reaches moto through `proxy`.
fn through(proxy: &FaultProxy) -> Deployment {
    Deployment::new(&proxy.url)
}

#[test]
fn transient_faults_are_retried_with_backoff_and_the_run_succeeds() {
    let moto = Moto::start();
    let group = moto.security_group("web");
    let mut ids = moto.launch(&group, 2, &[]);
    ids.sort();
    let scratch = tempfile::tempdir().unwrap();
    let cases = [
        ("throttle", 2, 0.0),
        ("error500", 2, 0.0),
        ("unavailable", 2, 0.0),
        ("drop", 2, 0.0),
        ("slow", 1, 2.0),
    ];
    for (fault, times, delay) in cases {
        let proxy = FaultProxy::start(
            &moto,
            json!([{"action": "DescribeInstances", "fault": fault, "times": times, "delay": delay}]),
            scratch.path(),
        );
        let deployment = through(&proxy);
        let started = Instant::now();
        let output = deployment.run(&[]);
        let took = started.elapsed();
        assert_exit(&output, 0);
        assert_eq!(deployment.servers(), ids, "{fault}: {}", describe(&output));
        let attempts = proxy.attempts("DescribeInstances");
        let expected = if fault == "slow" { 1 } else { times + 1 };
        assert_eq!(attempts.len(), expected, "{fault}: {attempts:?}");
        // Backoff: every retry waited after the failed attempt (the SDK's jitter makes the exact
        // wait random, so only that it waited at all, and the whole run stayed bounded).
        for pair in attempts.windows(2) {
            assert!(pair[1] > pair[0], "{fault}: {attempts:?}");
        }
        assert!(took < Duration::from_secs(15), "{fault}: took {took:?}");
        eprintln!(
            "{fault} x{times}: {} attempt(s), run took {took:?}",
            attempts.len()
        );
    }
}

#[test]
fn persistent_faults_give_up_with_exit_1_within_a_bound_and_change_nothing() {
    let moto = Moto::start();
    let group = moto.security_group("web");
    moto.launch(&group, 2, &[]);
    let scratch = tempfile::tempdir().unwrap();
    let healthy = FaultProxy::start(&moto, json!([]), scratch.path());
    let mut deployment = through(&healthy);
    deployment.aws_toml = "max_attempts = 3\nattempt_timeout_s = 2\n".to_owned();
    deployment.run(&[]).exits(0);
    // One more instance, so that any run that got through would change the config.
    moto.launch(&group, 1, &[]);

    let cases = [
        ("throttle", 0.0, "the cloud is throttling requests"),
        ("error500", 0.0, "InternalError"),
        ("drop", 0.0, "cannot reach the EC2 endpoint"),
        ("drop", 10.0, "timed out"),
    ];
    for (fault, delay, expected) in cases {
        let proxy = FaultProxy::start(
            &moto,
            json!([{"action": "DescribeInstances", "fault": fault, "delay": delay}]),
            scratch.path(),
        );
        deployment.endpoint_url = proxy.url.clone();
        deployment.write();
        let before = deployment.snapshot();
        let started = Instant::now();
        let output = deployment.command().output().unwrap();
        let took = started.elapsed();
        assert_exit(&output, 1);
        let error = stderr(&output);
        assert!(
            error.contains("pool `web`") || error.contains("pool web"),
            "{fault}: {error}"
        );
        assert!(
            error.to_lowercase().contains(&expected.to_lowercase()),
            "{fault} (delay {delay}): expected {expected:?} in: {error}"
        );
        assert!(stdout(&output).is_empty(), "{}", describe(&output));
        // Issue 9, item 11: said once, in words: no second WARN line, no SDK debug dump.
        assert_eq!(
            error.matches("cannot list the instances").count(),
            1,
            "{error}"
        );
        for dump in [
            "WARN",
            "DispatchFailure",
            "ConnectorError",
            "{ ",
            "(transient error)",
        ] {
            assert!(!error.contains(dump), "{fault}: {dump:?} in: {error}");
        }
        assert_eq!(deployment.snapshot(), before, "{fault}: something changed");
        let attempts = proxy.attempts("DescribeInstances").len();
        assert_eq!(attempts, 3, "{fault}: max_attempts = 3");
        // 3 attempts of at most 2 s, and at most 1 + 2 s of backoff.
        assert!(took < Duration::from_secs(12), "{fault}: took {took:?}");
        eprintln!("{fault} (delay {delay}s): gave up after {attempts} attempts in {took:?}");
    }
}

#[test]
fn a_listing_that_fails_on_a_later_page_changes_nothing() {
    let moto = Moto::start();
    let group = moto.security_group("web");
    // moto pages by reservation: one instance per reservation, 12 reservations.
    let mut ids: Vec<String> = (0..12).flat_map(|_| moto.launch(&group, 1, &[])).collect();
    ids.sort();
    let scratch = tempfile::tempdir().unwrap();

    // Pages of 5: the first page alone would be a plausible, smaller backend.
    let paged = FaultProxy::start(&moto, json!([{"page_size": 5}]), scratch.path());
    let mut deployment = through(&paged);
    deployment.aws_toml = "max_attempts = 2\nattempt_timeout_s = 2\n".to_owned();
    deployment.run(&[]).exits(0);
    assert_eq!(deployment.servers(), ids);
    assert_eq!(paged.attempts("DescribeInstances").len(), 3, "three pages");

    moto.terminate(&ids[..4]);
    let broken = FaultProxy::start(
        &moto,
        json!([{"page_size": 5}, {"action": "DescribeInstances", "when": "NextToken", "fault": "error500"}]),
        scratch.path(),
    );
    deployment.endpoint_url = broken.url.clone();
    deployment.write();
    let before = deployment.snapshot();
    let output = deployment.command().output().unwrap();
    assert_exit(&output, 1);
    assert_eq!(deployment.snapshot(), before, "{}", describe(&output));
    assert_eq!(
        deployment.servers(),
        ids,
        "no partial listing reached the config"
    );

    // The same fault once: the page is retried and the run sees all of it.
    let flaky = FaultProxy::start(
        &moto,
        json!([{"page_size": 5}, {"action": "DescribeInstances", "when": "NextToken", "fault": "error500", "times": 1}]),
        scratch.path(),
    );
    deployment.endpoint_url = flaky.url.clone();
    let output = deployment.run(&[]).exits(0);
    assert_eq!(
        deployment.servers(),
        ids[4..].to_vec(),
        "{}",
        describe(&output)
    );
}

#[test]
fn a_launch_whose_answer_is_lost_is_not_repeated() {
    let scratch = tempfile::tempdir().unwrap();
    let pool = "[[pool]]\nname = \"web\"\nport = 8080\nready_check = \"none\"\n\
[pool.discover]\nsecurity_group = \"web\"\n\
[pool.launch]\nimage_id = \"ami-12345678\"\ninstance_type = \"t3.micro\"\n\
[pool.scaling]\nmin = 2\nmax = 4\nstep_up = 2\nscale_up_above = 20\nscale_down_below = 5\nwarmup_s = 0\n";

    for fault in ["lost", "throttle", "error500", "drop"] {
        let moto = Moto::start();
        moto.security_group("web");
        let proxy = FaultProxy::start(
            &moto,
            json!([{"action": "RunInstances", "fault": fault, "times": 1}]),
            scratch.path(),
        );
        let mut deployment = through(&proxy);
        deployment.pool_toml = pool.to_owned();
        deployment.haproxy_toml.push_str(&format!(
            "stats_socket = \"{}\"\n",
            deployment.path("haproxy/missing.sock").display()
        ));
        let failed = deployment.run(&[]).exits(1);
        assert!(
            stderr(&failed).contains("launch"),
            "{fault}: {}",
            describe(&failed)
        );
        assert_eq!(proxy.attempts("RunInstances").len(), 1, "{fault}: no retry");
        let launched_by_the_lost_call = moto.all_instances().len();
        assert_eq!(
            launched_by_the_lost_call,
            if fault == "lost" { 2 } else { 0 },
            "{fault}"
        );

        // The next run resolves the intent by its token tag, or re-sends it.
        let recovered = deployment.run(&[]).exits(0);
        let instances = moto.all_instances();
        assert_eq!(
            instances.len(),
            2,
            "{fault}: {instances:?}\n{}",
            describe(&recovered)
        );
        assert_eq!(
            proxy.attempts("RunInstances").len(),
            if fault == "lost" { 1 } else { 2 },
            "{fault}"
        );
        deployment.run(&[]).exits(0);
        assert_eq!(moto.all_instances().len(), 2, "{fault}");
        let mut servers = deployment.servers();
        servers.sort();
        assert_eq!(
            servers,
            instances.keys().cloned().collect::<Vec<_>>(),
            "{fault}"
        );
    }
}

/// The port a loopback fixture wrote to `port_file` once listening; fails the test if `what`
/// has not started within 20 s.
pub(crate) fn wait_for_port_file(port_file: &Path, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(port) = std::fs::read_to_string(port_file) {
            return port;
        }
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}
