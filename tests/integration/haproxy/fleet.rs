//! Two load balancers you can audit (issue 28), through the real binary: two nodes, each with
//! its own haproxy.cfg, local half of the state and live master-worker HAProxy, share one state
//! in moto's S3 and one exec provider that logs every call it receives
//! (tests/fixtures/fleet-provider.py). Both run at the start of every second under a rising load
//! (an external metric read from a file), one launch call is slow (4 s: the other node goes on
//! meanwhile). Afterwards:
//! - provider calls = launches the runs reported = scale-ups in the shared scale history =
//!   instances, token by token;
//! - every decision is at most `step_up`, and none within `cooldown_s` of another;
//! - each node reloaded HAProxy once (its first install, over HAProxy's own file): every later
//!   change, another node's launches included, went through the runtime API.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::real::{LiveHaproxy, live_haproxy_toml, start_on_own_file};
use crate::moto::Moto;
use crate::util::{Deployment, describe, exec_pool, free_port, stdout};

const BUCKET: &str = "fleet-audit";
const KEY: &str = "haproxy-autoscaler/web.json";

const TEMPLATE: &str = "\
global
    master-worker
    stats socket {{haproxy.stats_socket}} mode 600 level admin expose-fd listeners
    server-state-file {{haproxy.server_state_file}}
    hard-stop-after 5s
defaults
    mode http
    load-server-state-from-file global
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend http
    bind 127.0.0.1:FRONTEND_PORT
    default_backend web
backend web
    balance roundrobin
{{#each pools}}{{#each servers}}
    server {{name}} {{address}}:{{port}}{{#if booting}} disabled{{/if}}
{{/each}}{{/each}}
";

/// One load balancer of the fleet.
struct Node {
    name: String,
    deployment: Deployment,
    haproxy: LiveHaproxy,
}

/// The fleet: its nodes, the shared provider's files and the load file.
struct Fleet {
    moto: Moto,
    shared: tempfile::TempDir,
    nodes: Vec<Node>,
}

impl Fleet {
    /// Two nodes whose pool scales with `scaling` (keys of `[pool.scaling]`).
    fn start(scaling: &str) -> Fleet {
        let moto = Moto::start();
        moto.create_bucket(BUCKET);
        let shared = tempfile::tempdir().unwrap();
        let provider = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/fleet-provider.py"
        );
        let load = shared.path().join("load");
        std::fs::write(&load, "0").unwrap();
        let nodes = ["lb-a", "lb-b"]
            .iter()
            .map(|name| {
                let mut deployment = Deployment::new(&moto.url);
                let frontend = free_port();
                deployment.state_toml = Some(format!(
                    "path = \"s3://{BUCKET}/{KEY}\"\nlocal_path = \"{}\"\nnode = \"{name}\"",
                    deployment.state_path().display()
                ));
                deployment.haproxy_toml = live_haproxy_toml(&deployment, "runtime");
                deployment.pool_toml = exec_pool(
                    "web",
                    80,
                    "ready_check = \"none\"",
                    &["python3", provider, "list"],
                    Some((
                        &["python3", provider, "launch"],
                        &["python3", provider, "terminate"],
                    )),
                ) + &format!(
                    "timeout_s = 20\n[pool.scaling]\nwarmup_s = 0\nmetric = \"command\"\nmetric_command = [\"cat\", \"{}\"]\nper_server = true\n{scaling}\n",
                    load.display()
                );
                deployment.template = TEMPLATE.replace("FRONTEND_PORT", &frontend.to_string());
                deployment.write();
                let config = std::fs::read_to_string(deployment.config_path()).unwrap();
                std::fs::write(
                    deployment.config_path(),
                    format!(
                        "metrics_file = \"{}\"\n{config}",
                        deployment.path("metrics.prom").display()
                    ),
                )
                .unwrap();
                let haproxy = start_on_own_file(&deployment, frontend);
                Node {
                    name: (*name).to_owned(),
                    deployment,
                    haproxy,
                }
            })
            .collect();
        Fleet {
            moto,
            shared,
            nodes,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.shared.path().join(name)
    }

    /// Runs `node` once, as cron would (JSON output).
    fn run(&self, node: &Node, slow_s: u32) -> Output {
        node.deployment
            .std_command()
            .args(["--format", "json"])
            .env("EXEC_PROVIDER_STATE", self.path("instances.json"))
            .env("EXEC_PROVIDER_LOG", self.path("calls.log"))
            .env("EXEC_PROVIDER_NODE", &node.name)
            .env("EXEC_PROVIDER_SLOW_S", slow_s.to_string())
            .output()
            .unwrap()
    }

    /// Both nodes run at the start of each of the next `seconds` seconds (a node whose run is
    /// still going skips the second, as cron with the lock), `load(second)` in the load file.
    /// Returns each node's runs.
    fn run_each_second(
        &self,
        seconds: u64,
        slow_s: u32,
        load: impl Fn(u64) -> u64 + Sync,
    ) -> Vec<Vec<Output>> {
        let start = next_second();
        std::thread::scope(|scope| {
            let loader = scope.spawn(|| {
                for second in 0..seconds {
                    sleep_until(start + second);
                    std::fs::write(self.path("load"), load(second).to_string()).unwrap();
                }
            });
            let runners: Vec<_> = self
                .nodes
                .iter()
                .map(|node| {
                    scope.spawn(move || {
                        let mut runs = Vec::new();
                        for second in 0..seconds {
                            if now_s() >= (start + second + 1) as f64 {
                                continue; // the last run took this second
                            }
                            sleep_until(start + second);
                            runs.push(self.run(node, slow_s));
                        }
                        runs
                    })
                })
                .collect();
            loader.join().unwrap();
            runners.into_iter().map(|r| r.join().unwrap()).collect()
        })
    }

    /// The shared state's object.
    fn shared_state(&self) -> Value {
        serde_json::from_slice(&self.moto.object(BUCKET, KEY).expect("the shared state")).unwrap()
    }

    /// The provider's launch calls: (node, token, count).
    fn launch_calls(&self) -> Vec<(String, String, u64)> {
        std::fs::read_to_string(self.path("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .filter(|call| call["action"] == "launch")
            .map(|call| {
                (
                    call["node"].as_str().unwrap().to_owned(),
                    call["token"].as_str().unwrap().to_owned(),
                    call["count"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    /// The instance ids of every terminate call: (node, id).
    fn terminated(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(self.path("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .filter(|call| call["action"] == "terminate")
            .flat_map(|call| {
                let node = call["node"].as_str().unwrap().to_owned();
                call["ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|id| (node.clone(), id.as_str().unwrap().to_owned()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn instances(&self) -> usize {
        let world: Value =
            serde_json::from_str(&std::fs::read_to_string(self.path("instances.json")).unwrap())
                .unwrap();
        world["instances"].as_array().unwrap().len()
    }

    /// Checks every promise on the runs made; returns a one-line summary.
    fn audit(&self, runs: &[Vec<Output>], step_up: u64, cooldown_s: i64) -> String {
        let calls = self.launch_calls();
        let everything = || {
            let outputs: Vec<String> = runs.iter().flatten().map(describe).collect();
            format!(
                "calls: {calls:?}\nstate: {:#}\nruns:\n{}",
                self.shared_state(),
                outputs.join("\n---\n")
            )
        };
        // Each token reached the provider once.
        let tokens: BTreeSet<&str> = calls.iter().map(|(_, token, _)| token.as_str()).collect();
        assert_eq!(
            tokens.len(),
            calls.len(),
            "a token launched twice: {}",
            everything()
        );
        // Launches reported by the runs, by node.
        let mut reported = BTreeSet::new();
        let mut reloads = vec![0; self.nodes.len()];
        for (index, (node, outputs)) in self.nodes.iter().zip(runs).enumerate() {
            for output in outputs {
                let code = output.status.code();
                assert!(
                    code == Some(0) || code == Some(75),
                    "{}: {}",
                    node.name,
                    describe(output)
                );
                if code != Some(0) {
                    continue;
                }
                let report: Value = serde_json::from_str(&stdout(output)).unwrap();
                for action in report["plan"]["actions"].as_array().unwrap() {
                    match action["action"].as_str().unwrap() {
                        "launch" => {
                            reported.insert((
                                node.name.clone(),
                                action["token"].as_str().unwrap().to_owned(),
                                action["count"].as_u64().unwrap(),
                            ));
                        }
                        "reload" => reloads[index] += 1,
                        _ => {}
                    }
                }
            }
        }
        let called: BTreeSet<(String, String, u64)> = calls.iter().cloned().collect();
        assert_eq!(
            called,
            reported,
            "calls made ≠ launches reported: {}",
            everything()
        );
        // The shared scale history: one scale-up per call, with its token and size.
        let state = self.shared_state();
        let history = state["pools"]["web"]["scale_history"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut decided = BTreeMap::new();
        for event in &history {
            let (from, to) = (
                event["from"].as_u64().unwrap(),
                event["to"].as_u64().unwrap(),
            );
            if to > from {
                assert!(
                    to - from <= step_up,
                    "a step above step_up: {}",
                    everything()
                );
                decided.insert(event["token"].as_str().unwrap().to_owned(), to - from);
            }
        }
        let launched: BTreeMap<String, u64> = calls
            .iter()
            .map(|(_, token, count)| (token.clone(), *count))
            .collect();
        assert_eq!(launched, decided, "calls ≠ scale history: {}", everything());
        let total: u64 = launched.values().sum();
        // Each drained instance terminated once, by one node.
        let terminated = self.terminated();
        let ids: BTreeSet<&str> = terminated.iter().map(|(_, id)| id.as_str()).collect();
        assert_eq!(
            ids.len(),
            terminated.len(),
            "an instance terminated twice: {}",
            everything()
        );
        assert_eq!(
            self.instances() as u64,
            total - terminated.len() as u64,
            "{}",
            everything()
        );
        let times: Vec<i64> = history
            .iter()
            .map(|event| event["at"].as_i64().unwrap())
            .collect();
        for pair in times.windows(2) {
            assert!(
                pair[1] - pair[0] >= cooldown_s,
                "two decisions {} s apart: {}",
                pair[1] - pair[0],
                everything()
            );
        }
        // One reload per node (its first install); everything after through the runtime API.
        for (node, reloads) in self.nodes.iter().zip(&reloads) {
            assert_eq!(*reloads, 1, "{}: {}", node.name, everything());
            let proc = node.haproxy.master("show proc");
            let master_reloads = proc
                .lines()
                .find(|line| line.contains("master"))
                .and_then(|line| line.split_whitespace().nth(2))
                .unwrap_or_default()
                .to_owned();
            assert_eq!(master_reloads, "1", "{}: {proc}", node.name);
        }
        // Each node's counters say what it did, and `status` says it per node.
        let counter = |node: &Node, series: &str| -> u64 {
            let text = std::fs::read_to_string(node.deployment.path("metrics.prom")).unwrap();
            text.lines()
                .find_map(|line| line.strip_prefix(&format!("haproxy_autoscaler_{series} ")))
                .map_or(0, |value| value.parse::<f64>().unwrap() as u64)
        };
        let mut conflicts = Vec::new();
        for node in &self.nodes {
            let mine = |(n, _, _): &&(String, String, u64)| *n == node.name;
            assert_eq!(
                counter(node, "launched_instances_total"),
                calls
                    .iter()
                    .filter(mine)
                    .map(|(_, _, count)| count)
                    .sum::<u64>(),
                "{}: {}",
                node.name,
                everything()
            );
            assert_eq!(
                counter(node, "decisions_total{pool=\"web\",direction=\"up\"}"),
                calls.iter().filter(mine).count() as u64,
                "{}: {}",
                node.name,
                everything()
            );
            assert_eq!(
                counter(node, "terminations_total{pool=\"web\"}"),
                terminated.iter().filter(|(n, _)| *n == node.name).count() as u64,
                "{}: {}",
                node.name,
                everything()
            );
            conflicts.push(counter(node, "cas_conflicts_total"));
        }
        let status = node_status(&self.nodes[0]);
        for node in &self.nodes {
            let last = history
                .iter()
                .rev()
                .find(|event| event["node"] == node.name.as_str());
            let line = status
                .lines()
                .find(|line| line.starts_with(&format!("node {}: ", node.name)))
                .unwrap_or_else(|| panic!("no line for {} in:\n{status}", node.name));
            match last {
                Some(event) => assert!(
                    line.contains(&format!("{} → {}", event["from"], event["to"])),
                    "{line}\n{history:?}"
                ),
                None => assert!(line.contains("no decision"), "{line}"),
            }
        }
        let runs_made: usize = runs.iter().map(Vec::len).sum();
        format!(
            "{runs_made} runs, {} launch calls ({total} instances) = {} reported = {} scale-ups in the history, {} terminated once each; CAS conflicts by node {conflicts:?}; launch calls by node: {:?}",
            calls.len(),
            reported.len(),
            decided.len(),
            terminated.len(),
            self.nodes
                .iter()
                .map(|node| (
                    node.name.clone(),
                    calls.iter().filter(|(n, _, _)| *n == node.name).count()
                ))
                .collect::<Vec<_>>()
        )
    }
}

/// `status` of `node`, which must exit 0.
fn node_status(node: &Node) -> String {
    let output = node
        .deployment
        .std_command()
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    stdout(&output)
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn next_second() -> u64 {
    now_s().floor() as u64 + 1
}

fn sleep_until(second: u64) {
    let wait = second as f64 - now_s();
    if wait > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(wait));
    }
}

#[test]
fn two_nodes_each_second_under_rising_load_without_a_cooldown_account_for_every_launch() {
    let fleet = Fleet::start(
        "min = 1\nmax = 8\nstep_up = 2\ncooldown_s = 0\nscale_up_above = 20\nscale_down_below = 1\ndrain_s = 2",
    );
    // Rising for 12 s, then no load: the pool drains and terminates down to `min`.
    let runs = fleet.run_each_second(
        22,
        4,
        |second| {
            if second < 12 { 40 + 30 * second } else { 0 }
        },
    );
    let line = fleet.audit(&runs, 2, 0);
    eprintln!("cooldown 0: {line}");
}

#[test]
fn two_nodes_each_second_under_rising_load_with_a_cooldown_account_for_every_launch() {
    let fleet = Fleet::start(
        "min = 2\nmax = 8\nstep_up = 2\ncooldown_s = 20\nscale_up_above = 20\nscale_down_below = 1",
    );
    let runs = fleet.run_each_second(24, 4, |second| 40 + 30 * second);
    let line = fleet.audit(&runs, 2, 20);
    eprintln!("cooldown 20: {line}");
}

/// The same-second case: both nodes decide in the same second, one launch call is slow, and
/// the pool ends with exactly its bound.
#[test]
fn two_nodes_deciding_in_the_same_second_with_a_slow_launch_end_at_exactly_the_bound() {
    let fleet = Fleet::start(
        "min = 3\nmax = 3\nstep_up = 2\ncooldown_s = 0\nscale_up_above = 20\nscale_down_below = 1",
    );
    let runs = fleet.run_each_second(8, 3, |_| 30);
    let line = fleet.audit(&runs, 2, 0);
    assert_eq!(fleet.instances(), 3, "{line}");
    eprintln!("same second, min = max = 3: {line}");
}
