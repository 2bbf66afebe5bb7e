//! Two load balancers on one shared state in moto's S3 (issue 15): runs interleaved, at once,
//! crashed at every fail point, and with a write whose answer is lost or a store that cannot be
//! reached. Whatever happens: every decision is taken once (no launch intent launches twice),
//! both nodes' haproxy.cfg converge on the same servers, and a node that crashed holding an
//! intent has it finished by the other node or by itself.
//!
//! What moto cannot show: a real S3's atomic conditional writes (moto checks the ETag, then
//! writes, without a lock between: the concurrent test serializes its PUTs in the fault proxy)
//! and its 409 ConditionalRequestConflict, and EC2's ClientToken (moto launches again for a
//! token it has seen).

use std::process::Output;

use haproxy_autoscaler::surface::failpoint;
use serde_json::{Value, json};

use super::cloud_faults::FaultProxy;
use super::haproxy::crash::{converge, deployment_at, pool, run_until_crash, sha256_of};
use super::moto::Moto;
use super::util::{Deployment, describe, stderr};

const BUCKET: &str = "fleet-state";
const KEY: &str = "haproxy-autoscaler/web.json";

/// A load balancer named `name` of a fleet whose pool keeps 3 instances, its state in S3.
fn node(endpoint_url: &str, name: &str) -> Deployment {
    let mut node = deployment_at(endpoint_url);
    node.pool_toml = pool("min = 3\nmax = 5");
    node.aws_toml = "attempt_timeout_s = 1\n".to_owned();
    node.state_toml = Some(format!(
        "path = \"s3://{BUCKET}/{KEY}\"\nlocal_path = \"{}\"\nnode = \"{name}\"",
        node.state_path().display()
    ));
    node.write();
    node
}

fn fleet(moto: &Moto) -> [Deployment; 2] {
    moto.security_group("web");
    moto.create_bucket(BUCKET);
    [node(&moto.url, "lb-a"), node(&moto.url, "lb-b")]
}

fn shared(moto: &Moto) -> Value {
    let bytes = moto.object(BUCKET, KEY).expect("the shared state exists");
    serde_json::from_slice(&bytes).expect("the shared state parses")
}

fn run(node: &Deployment) -> Output {
    node.std_command().output().unwrap()
}

/// The fleet after recovery: `running` instances live, `ever` launched in all; each node's
/// haproxy.cfg names exactly the live ones and was the last file its HAProxy was reloaded with;
/// the shared state has no open intent and no node's own facts.
fn assert_fleet(nodes: &[Deployment], moto: &Moto, running: usize, ever: usize, label: &str) {
    let instances = moto.all_instances();
    let mut live: Vec<String> = instances
        .iter()
        .filter(|(_, state)| *state == "running" || *state == "pending")
        .map(|(id, _)| id.clone())
        .collect();
    live.sort();
    assert_eq!(live.len(), running, "{label}: {instances:?}");
    assert_eq!(
        instances.len(),
        ever,
        "{label}: a launch was doubled: {instances:?}"
    );
    for node in nodes {
        let mut servers = node.servers();
        servers.sort();
        assert_eq!(servers, live, "{label}: {}", node.config_path().display());
        let reloads = std::fs::read_to_string(node.path("reloads")).unwrap_or_default();
        assert_eq!(
            reloads.lines().last(),
            Some(sha256_of(&node.haproxy_cfg()).as_str()),
            "{label}: HAProxy was last reloaded with another file than the installed one"
        );
    }
    let state = shared(moto);
    let pool = &state["pools"]["web"];
    assert!(pool.get("launches").is_none(), "{label}: {state}");
    // One decision per period: no two scale events at one time.
    let times: Vec<i64> = pool["scale_history"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .map(|event| event["at"].as_i64().unwrap())
                .collect()
        })
        .unwrap_or_default();
    let mut unique = times.clone();
    unique.dedup();
    assert_eq!(
        times, unique,
        "{label}: two decisions in one period: {state}"
    );
    // One instance set per launch token.
    let mut per_token: std::collections::BTreeMap<String, usize> = Default::default();
    for id in instances.keys() {
        let token = moto
            .tags(id)
            .remove("haproxy-autoscaler:launch-token")
            .unwrap_or_default();
        *per_token.entry(token).or_default() += 1;
    }
    assert!(
        per_token.values().all(|count| *count <= 3),
        "{label}: {per_token:?}"
    );
    assert!(
        state.get("installed_config_sha256").is_none(),
        "{label}: {state}"
    );
    assert_eq!(
        pool["servers"],
        json!([]),
        "{label}: a node's own facts are its own"
    );
    assert!(
        state["generation"].as_u64().unwrap() >= 1,
        "{label}: {state}"
    );
    assert_eq!(
        state["nonce"].as_str().unwrap().len(),
        32,
        "{label}: {state}"
    );
}

#[test]
fn interleaved_nodes_take_each_decision_once_and_render_the_same_servers() {
    let moto = Moto::start();
    let nodes = fleet(&moto);
    let first = run(&nodes[0]);
    assert_eq!(first.status.code(), Some(0), "{}", describe(&first));
    assert_eq!(moto.all_instances().len(), 3);
    let generation = shared(&moto)["generation"].as_u64().unwrap();
    // The other node finds the decision taken: it launches nothing and renders the same servers.
    let second = run(&nodes[1]);
    assert_eq!(second.status.code(), Some(0), "{}", describe(&second));
    assert_eq!(moto.all_instances().len(), 3);
    for _ in 0..2 {
        for node in &nodes {
            let output = run(node);
            assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
        }
    }
    assert_fleet(&nodes, &moto, 3, 3, "interleaved");
    // Once converged, a run writes nothing to the shared state: no node's own facts go there.
    let settled = shared(&moto)["generation"].as_u64().unwrap();
    for node in &nodes {
        let output = run(node);
        assert!(output.stdout.is_empty(), "{}", describe(&output));
    }
    assert_eq!(shared(&moto)["generation"].as_u64().unwrap(), settled);
    assert!(settled >= generation);
}

#[test]
fn nodes_run_at_once_never_launch_twice() {
    let mut raced = 0;
    for round in 0..6 {
        let moto = Moto::start();
        moto.security_group("web");
        moto.create_bucket(BUCKET);
        // moto's conditional writes are not atomic (it checks, then writes): the proxy makes
        // them so, as S3's are, so that what is tested is the tool's compare-and-swap.
        let scratch = tempfile::tempdir().unwrap();
        let proxy = FaultProxy::start(&moto, json!([{"atomic_puts": true}]), scratch.path());
        let nodes = [node(&proxy.url, "lb-a"), node(&proxy.url, "lb-b")];
        let children: Vec<_> = nodes
            .iter()
            .map(|node| {
                node.std_command()
                    .arg("-v")
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut logs = Vec::new();
        for child in children {
            let output = child.wait_with_output().unwrap();
            logs.push(stderr(&output));
            // A node that lost the race decided again from the winner's state (`-v` says so),
            // and exits 0, or 75 after losing three times: nothing done on a void decision.
            if stderr(&output).contains("another node changed the shared state") {
                raced += 1;
            }
            assert!(
                matches!(output.status.code(), Some(0 | 75)),
                "round {round}: {}",
                describe(&output)
            );
        }
        for node in &nodes {
            converge(node);
        }
        assert_fleet(
            &nodes,
            &moto,
            3,
            3,
            &format!("round {round}: {}", logs.join("\n----\n")),
        );
    }
    eprintln!("concurrent rounds: 6, a node lost a race and decided again in {raced}");
}

#[test]
fn a_node_that_crashed_holding_an_intent_has_it_finished() {
    let mut lines = Vec::new();
    for point in failpoint::POINTS {
        let moto = Moto::start();
        let nodes = fleet(&moto);
        let Some(crashed) = run_until_crash(&nodes[0], point, 3) else {
            continue;
        };
        if point == "after-decision-committed" || point == "after-launch-intent-saved" {
            // The intent's attempt may still run until its bound (one 1 s EC2 attempt).
            std::thread::sleep(std::time::Duration::from_millis(1_100));
        }
        // The other node takes over, then the crashed one comes back.
        let other = converge(&nodes[1]);
        let back = converge(&nodes[0]);
        assert_fleet(&nodes, &moto, 3, 3, point);
        lines.push(format!(
            "{point}: lb-a crashed in run {crashed}; lb-b converged in {other}, lb-a in {back}"
        ));
    }
    eprintln!("crashes:\n  {}", lines.join("\n  "));
    assert!(lines.len() >= 4, "{lines:?}");
}

#[test]
fn a_write_whose_answer_was_lost_is_known_by_its_nonce() {
    let moto = Moto::start();
    moto.security_group("web");
    moto.create_bucket(BUCKET);
    let scratch = tempfile::tempdir().unwrap();
    // The first write reaches S3, its answer does not; the SDK sends it again and S3 refuses it
    // (the object is no longer absent): only the nonce read back says the first one won.
    let proxy = FaultProxy::start(
        &moto,
        json!([{"action": "S3:PUT", "fault": "lost", "times": 1}]),
        scratch.path(),
    );
    let lb = node(&proxy.url, "lb-a");
    let output = run(&lb);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let puts: Vec<Option<String>> = proxy
        .requests()
        .into_iter()
        .filter(|(_, action, _)| action == "S3:PUT")
        .map(|(_, _, fault)| fault)
        .collect();
    assert!(
        puts.len() >= 2 && puts[0].as_deref() == Some("lost"),
        "{puts:?}"
    );
    converge(&lb);
    assert_fleet(std::slice::from_ref(&lb), &moto, 3, 3, "lost answer");
}

#[test]
fn an_unreachable_store_stops_the_run_before_any_cloud_call() {
    let moto = Moto::start();
    let [mut lb, _] = fleet(&moto);
    converge(&lb);
    let installed = sha256_of(&lb.haproxy_cfg());
    let scratch = tempfile::tempdir().unwrap();
    let proxy = FaultProxy::start(
        &moto,
        json!([{"action": "S3:GET", "fault": "drop"}, {"action": "S3:PUT", "fault": "drop"}]),
        scratch.path(),
    );
    lb.endpoint_url = proxy.url.clone();
    lb.write();
    // One instance fewer: a run that went on would launch and rewrite haproxy.cfg.
    let before = moto.all_instances();
    moto.terminate(&before.keys().take(1).cloned().collect::<Vec<_>>());
    let output = run(&lb);
    assert_eq!(output.status.code(), Some(75), "{}", describe(&output));
    let message = stderr(&output);
    assert!(
        message.contains(&format!("s3://{BUCKET}/{KEY}"))
            && message.contains("haproxy.cfg untouched"),
        "{message:?}"
    );
    assert_eq!(sha256_of(&lb.haproxy_cfg()), installed);
    let ec2_calls = proxy.ec2_calls();
    assert!(ec2_calls.is_empty(), "{ec2_calls:?}");
    assert_eq!(moto.all_instances().len(), before.len());
}

/// Issue 29, class 2: a state object sent without a Content-Length, endless or trickled a byte
/// a second, fails the run within one attempt's timeout (1 s here) or at the state's size cap,
/// before any cloud call and with haproxy.cfg untouched; never a run that hangs or fills memory.
#[test]
fn an_endless_or_trickled_state_object_fails_the_run_fast() {
    let moto = Moto::start();
    let [mut lb, _] = fleet(&moto);
    converge(&lb);
    let installed = sha256_of(&lb.haproxy_cfg());
    // Endless: whichever comes first, the cap or the deadline.
    for (fault, says) in [
        (
            "endless",
            &[
                "it is larger than 536870912 bytes",
                "no complete answer within 1s",
            ][..],
        ),
        ("trickle", &["no complete answer within 1s"]),
    ] {
        let scratch = tempfile::tempdir().unwrap();
        let proxy = FaultProxy::start(
            &moto,
            json!([{"action": "S3:GET", "fault": fault}]),
            scratch.path(),
        );
        lb.endpoint_url = proxy.url.clone();
        lb.write();
        let started = std::time::Instant::now();
        let output = run(&lb);
        let took = started.elapsed();
        assert!(
            matches!(output.status.code(), Some(1 | 75)),
            "{fault}: {}",
            describe(&output)
        );
        let message = stderr(&output);
        assert!(
            message.contains(&format!("s3://{BUCKET}/{KEY}"))
                && says.iter().any(|says| message.contains(says)),
            "{fault}: {message:?}"
        );
        // Generous for a loaded machine; a run that read the trickle whole would take ~500 s.
        assert!(
            took < std::time::Duration::from_mins(1),
            "{fault}: {took:?}"
        );
        assert_eq!(sha256_of(&lb.haproxy_cfg()), installed, "{fault}");
        let ec2_calls = proxy.ec2_calls();
        assert!(ec2_calls.is_empty(), "{fault}: {ec2_calls:?}");
    }
}

#[test]
fn a_node_whose_clock_is_off_renders_but_does_not_decide() {
    let moto = Moto::start();
    let [mut lb, _] = fleet(&moto);
    let scratch = tempfile::tempdir().unwrap();
    // S3's clock is ten minutes ahead of this node's.
    let proxy = FaultProxy::start(&moto, json!([{"date_offset": 600}]), scratch.path());
    lb.endpoint_url = proxy.url.clone();
    lb.write();
    let output = run(&lb);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    // -600 s, give or take the second the answer crossed.
    let off = ["-599", "-600", "-601"].iter().any(|off| {
        stderr(&output).contains(&format!("clock is {off} s off the shared state's store"))
    });
    assert!(off, "{}", describe(&output));
    assert!(
        moto.all_instances().is_empty(),
        "it decided: {:?}",
        moto.all_instances()
    );
    assert!(lb.haproxy_cfg().exists(), "it renders");
    // In step again, it decides.
    lb.endpoint_url = moto.url.clone();
    lb.write();
    converge(&lb);
    assert_fleet(std::slice::from_ref(&lb), &moto, 3, 3, "clock fixed");
}

/// Starts a run of `node` that pauses at the fail point `point` until [`commit_and_release`].
fn run_paused_at(node: &Deployment, point: &str) -> (std::process::Child, std::path::PathBuf) {
    let release = node.path("release");
    let mut reached = release.clone().into_os_string();
    reached.push(".reached");
    let child = node
        .std_command()
        .arg("-v")
        .env(
            failpoint::WAIT_ENV,
            format!("{point}:{}", release.display()),
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_mins(1);
    while !std::path::Path::new(&reached).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the run never reached {point}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    (child, release)
}

/// Another node commits (a new generation of the object), then the paused run goes on.
/// Returns the generation that node wrote.
fn commit_and_release(moto: &Moto, release: &std::path::Path) -> u64 {
    let mut object = shared(moto);
    let generation = object["generation"].as_u64().unwrap() + 1;
    object["nonce"] = json!("another node's save");
    object["generation"] = json!(generation);
    moto.put_object(BUCKET, KEY, serde_json::to_vec(&object).unwrap());
    std::fs::write(release, "").unwrap();
    generation
}

/// Issue 28: a node that drains, installs and reloads while another node commits keeps its own
/// record of what its HAProxy loaded, and its decision (committed before it acted) stands: it
/// does not decide again, and does not reload HAProxy a second time.
#[test]
fn a_node_that_another_commit_overtakes_after_reloading_does_not_reload_again() {
    let moto = Moto::start();
    let [mut node, _] = fleet(&moto);
    converge(&node);
    let before = node.reloads();
    // One server fewer: a drain, rendered, installed and reloaded before the run's last save.
    node.pool_toml = pool("min = 2\nmax = 2");
    node.write();
    let (child, release) = run_paused_at(&node, "before-state-save");
    assert_eq!(node.reloads(), before + 1, "the drain reloaded");
    let theirs = commit_and_release(&moto, &release);

    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let log = stderr(&output);
    assert!(!log.contains("deciding again"), "{log}");
    assert!(!log.contains("no run recorded reloading"), "{log}");
    assert_eq!(
        node.reloads(),
        before + 1,
        "no second reload: {}",
        describe(&output)
    );
    // The drain was committed before it was made; what is left to save is this node's own
    // facts (its local file), so the other node's commit stands as it is.
    let after = shared(&moto);
    assert_eq!(after["generation"].as_u64(), Some(theirs), "{after:#}");
    assert_eq!(
        after["pools"]["web"]["draining"].as_array().map(Vec::len),
        Some(1),
        "{after:#}"
    );
}

/// Issue 28: a node whose launch call returned while another node committed records the launch
/// on top of that commit: the instance ids on its intent, its report and the history entry
/// intact, and it does not decide again.
#[test]
fn a_launch_made_while_another_node_commits_is_recorded_on_top_of_that_commit() {
    let moto = Moto::start();
    let [mut node, _] = fleet(&moto);
    converge(&node);
    // A decision of its own second (`assert_fleet` checks one per second).
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    node.pool_toml = pool("min = 4\nmax = 5");
    node.write();
    let (child, release) = run_paused_at(&node, "after-run-instances");
    let theirs = commit_and_release(&moto, &release);

    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let log = stderr(&output);
    assert!(
        log.contains("carrying what this run did onto it"),
        "{}",
        describe(&output)
    );
    assert!(!log.contains("deciding again"), "{log}");
    let text = super::util::stdout(&output);
    let token = text
        .split("(token ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("the launch is not in the output: {text}"))
        .to_owned();
    let after = shared(&moto);
    assert!(after["generation"].as_u64().unwrap() > theirs, "{after:#}");
    let pool = &after["pools"]["web"];
    let last = pool["scale_history"].as_array().unwrap().last().unwrap();
    assert_eq!(last["token"].as_str(), Some(token.as_str()), "{after:#}");
    assert_eq!(last["node"].as_str(), Some("lb-a"), "{after:#}");
    let intent = pool["launches"]
        .as_array()
        .and_then(|launches| launches.iter().find(|i| i["token"] == token.as_str()))
        .unwrap_or_else(|| panic!("no intent {token}: {after:#}"));
    assert_eq!(
        intent["instance_ids"].as_array().map(Vec::len),
        Some(1),
        "{after:#}"
    );
    assert!(
        after["nodes"]["lb-a"]["last_conflict_at"].is_i64(),
        "{after:#}"
    );
    converge(&node);
    assert_fleet(
        std::slice::from_ref(&node),
        &moto,
        4,
        4,
        "after the overtaken launch",
    );
}

/// Issue 29, class 6: two configs on one machine whose shared states share a `local_path` are
/// refused as two configs sharing a local state are: the second would overwrite the first's own
/// facts (what its haproxy.cfg and HAProxy run).
#[test]
fn two_configs_sharing_a_local_path_are_refused() {
    let moto = Moto::start();
    let [first, mut second] = fleet(&moto);
    converge(&first);
    let local = first.state_path();
    second.state_toml = Some(format!(
        "path = \"s3://{BUCKET}/other.json\"\nlocal_path = \"{}\"\nnode = \"lb-b\"",
        local.display()
    ));
    second.write();
    let before = std::fs::read(&local).unwrap();
    let output = run(&second);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let error = stderr(&output);
    assert!(
        error.contains(&format!(
            "state file `{}` belongs to config `s3://{BUCKET}/{KEY}`",
            local.display()
        )),
        "{error}"
    );
    assert_eq!(
        std::fs::read(&local).unwrap(),
        before,
        "the first config's facts are intact"
    );
    assert!(
        moto.object(BUCKET, "other.json").is_none(),
        "nothing was saved for the second"
    );
}
