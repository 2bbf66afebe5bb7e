//! Self-healing against moto's EC2, through the real binary, with HAProxy's stats from a stand-in
//! admin socket: a server DOWN for `unhealthy_after_s` is replaced (a launch first, then its
//! drain and termination), the protected one is not, and `max_replacements_per_hour` holds.

use std::time::Duration;

use haproxy_autoscaler::testing::FakeAdminSocket;

use super::moto::Moto;
use super::util::{Deployment, assert_exit, describe, stdout};

#[test]
fn a_down_server_is_replaced_the_protected_one_is_not_and_the_hourly_limit_holds() {
    let moto = Moto::start();
    moto.security_group("web");
    let pool = ("haproxy-autoscaler:pool", "web");
    let up = moto.launch("web", 1, &[pool]);
    let protected = moto.launch("web", 1, &[pool, ("haproxy-autoscaler:protected", "true")]);
    let down = moto.launch("web", 2, &[pool]);
    let mut deployment = Deployment::new(&moto.url);
    let socket = FakeAdminSocket::start(&deployment.path("haproxy/admin.sock"));
    let mut stat = String::from("# pxname,svname,status,scur,stot,\n");
    for (ids, status) in [(&up, "UP"), (&protected, "DOWN"), (&down, "DOWN")] {
        for id in ids {
            stat.push_str(&format!("web,{id},{status},0,100,\n"));
        }
    }
    socket.set_stat(stat.as_bytes());
    deployment
        .haproxy_toml
        .push_str(&format!("stats_socket = \"{}\"\n", socket.path.display()));
    deployment.pool_toml = "[[pool]]\nname = \"web\"\nport = 8080\nready_check = \"none\"\n\
[pool.discover]\nsecurity_group = \"web\"\n\
[pool.launch]\nimage_id = \"ami-12345678\"\ninstance_type = \"t3.micro\"\n\
[pool.scaling]\nmin = 4\nmax = 8\ntarget = 50\nwarmup_s = 0\ncooldown_s = 0\ndrain_s = 0\n\
unhealthy_after_s = 1\nmax_replacements_per_hour = 1\n\
metric = \"command\"\nper_server = false\n\
metric_command = [\"sh\", \"-c\", \"printf '{\\\"value\\\": 10, \\\"at\\\": %s}' $(($(date +%s) - 7))\"]\n"
        .to_owned();
    let metrics = deployment.path("state/metrics.prom");
    let run = |deployment: &Deployment| {
        deployment.write();
        let config = std::fs::read_to_string(deployment.config_path()).unwrap();
        std::fs::write(
            deployment.config_path(),
            format!("metrics_file = \"{}\"\n{config}", metrics.display()),
        )
        .unwrap();
        deployment
            .command()
            .args(["--format", "json"])
            .output()
            .unwrap()
    };

    // First seen DOWN: remembered, still capacity, nothing launched.
    let first = run(&deployment);
    assert_exit(&first, 0);
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(deployment.state_path()).unwrap()).unwrap();
    assert_eq!(
        state["pools"]["web"]["unhealthy_since"]
            .as_object()
            .unwrap()
            .len(),
        3,
        "{state}"
    );
    assert_eq!(moto.all_instances().len(), 4);
    let first_metrics = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        first_metrics
            .contains("haproxy_autoscaler_pool_hold_reason{pool=\"web\",reason=\"at_min\"} 1"),
        "{first_metrics}"
    );

    std::thread::sleep(Duration::from_millis(1100));
    let second = run(&deployment);
    assert_exit(&second, 0);
    let report: serde_json::Value = serde_json::from_str(&stdout(&second)).unwrap();
    let scale = &report["plan"]["pools"][0]["scale"];
    let drained: Vec<&str> = scale["drains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|drain| drain["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        drained.len(),
        1,
        "the hourly limit: one replaced\n{}",
        describe(&second)
    );
    let replaced = drained[0].to_owned();
    assert!(
        down.contains(&replaced),
        "{replaced} is one of the unprotected DOWN ones"
    );
    let kept = down.iter().find(|id| **id != replaced).unwrap();
    let launches = scale["launches"].as_array().unwrap();
    assert_eq!(
        launches[0]["reason"],
        format!("replaces unhealthy {replaced}"),
        "the replacement is launched first\n{}",
        describe(&second)
    );
    assert_eq!(launches[0]["count"], 1);
    // Three DOWN servers are no capacity: min = 4 asks for more beside the replacement.
    assert_eq!(scale["decision"]["current"], 2, "{}", describe(&second));
    assert!(
        scale["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|event| event["event"] == "replaced" && event["server"] == replaced.as_str()),
        "{}",
        describe(&second)
    );
    let warnings = report["plan"]["warnings"].to_string();
    assert!(
        warnings.contains(&format!("server {} is DOWN for", protected[0]))
            && warnings.contains("is tagged haproxy-autoscaler:protected=true"),
        "{warnings}"
    );
    assert!(
        warnings.contains(&format!("server {kept} is DOWN for"))
            && warnings.contains("1 server(s) were replaced in the last hour"),
        "{warnings}"
    );
    let launched: u64 = launches
        .iter()
        .map(|launch| launch["count"].as_u64().unwrap())
        .sum();
    assert!(
        launched >= 2,
        "the replacement, and more for min: {launches:?}"
    );
    assert_eq!(moto.all_instances().len() as u64, 4 + launched);

    // The metric's age (the command's value says it was measured 7 s before), as promtool reads
    // it.
    let text = std::fs::read_to_string(&metrics).unwrap();
    let age: f64 = text
        .lines()
        .find_map(|line| {
            line.strip_prefix("haproxy_autoscaler_pool_metric_age_seconds{pool=\"web\"} ")
        })
        .unwrap_or_else(|| panic!("no metric age:\n{text}"))
        .parse()
        .unwrap();
    assert!((6.0..=9.0).contains(&age), "{age}");
    super::util::assert_promtool_accepts(&text);

    // Its drain over (no session), the replaced server is terminated; nothing else is.
    std::thread::sleep(Duration::from_millis(1100));
    assert_exit(&run(&deployment), 0);
    let instances = moto.all_instances();
    assert_eq!(instances[&replaced], "terminated", "{instances:?}");
    for id in up.iter().chain(&protected).chain(std::iter::once(kept)) {
        assert_eq!(instances[id], "running", "{id}: {instances:?}");
    }
}
