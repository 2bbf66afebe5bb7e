//! The exec provider through the real binary: no cloud, no AWS configuration needed.

use super::util::{
    Deployment, LocalBackends, assert_exit, describe, exec_pool, fixture_exec_pool,
    local_example_pool, stderr, stdout,
};

fn exec_deployment() -> Deployment {
    let mut deployment = Deployment::new("http://127.0.0.1:9");
    deployment.pool_toml = fixture_exec_pool("");
    deployment
}

#[test]
fn exec_pools_render_what_the_list_command_prints_without_any_aws_setup() {
    let deployment = exec_deployment();
    let state = deployment.path("provider.json");
    std::fs::write(
        &state,
        r#"[{"id": "local-1", "address": "127.0.0.1", "port": 9001}, {"id": "local-2", "address": "127.0.0.1", "port": 9002, "state": "pending"}]"#,
    )
    .unwrap();
    deployment.write();
    // No [aws] region and no credentials: an exec-only config must not need them.
    let config = std::fs::read_to_string(deployment.config_path())
        .unwrap()
        .replace("region = \"us-east-1\"\n", "");
    std::fs::write(deployment.config_path(), config).unwrap();
    let run = || {
        deployment
            .command()
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("EXEC_PROVIDER_STATE", &state)
            .output()
            .unwrap()
    };
    let output = run();
    assert_exit(&output, 0);
    assert_eq!(deployment.servers(), ["local-1", "local-2"]);
    let installed = std::fs::read_to_string(deployment.haproxy_cfg()).unwrap();
    assert!(
        installed.contains("server local-1 127.0.0.1:9001\n"),
        "{installed}"
    );
    assert!(
        stdout(&output).contains(
            "add server web/local-2 at 127.0.0.1:9002: instance discovered (pending), booting"
        ),
        "{}",
        describe(&output)
    );

    // Output that is not the documented JSON: a clear error naming the command, nothing touched.
    let before = std::fs::read(deployment.haproxy_cfg()).unwrap();
    let broken = deployment
        .command()
        .env("EXEC_PROVIDER_STATE", &state)
        .env("EXEC_PROVIDER_BROKEN", "1")
        .output()
        .unwrap();
    assert_exit(&broken, 1);
    assert!(
        stderr(&broken)
            .contains("exec-provider.py list` printed output that is not the documented JSON"),
        "{}",
        describe(&broken)
    );
    assert_eq!(std::fs::read(deployment.haproxy_cfg()).unwrap(), before);
}

#[test]
fn the_openstack_example_speaks_the_exec_json() {
    let deployment = Deployment::new("http://127.0.0.1:9");
    let bin = deployment.path("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fake-openstack"),
        bin.join("openstack"),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let log = deployment.path("openstack.log");
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/openstack-provider.py"
    );

    // Through the binary: only this pool's ACTIVE and BUILD servers, with their addresses.
    let mut deployment = deployment;
    deployment.pool_toml = exec_pool("web", 8080, "", &["python3", example, "list", "web"], None);
    deployment.write();
    let output = deployment
        .command()
        .env("PATH", &path)
        .env("FAKE_OPENSTACK_LOG", &log)
        .output()
        .unwrap();
    assert_exit(&output, 0);
    assert_eq!(
        deployment.servers(),
        ["os-1", "os-2"],
        "{}",
        describe(&output)
    );
    let installed = std::fs::read_to_string(deployment.haproxy_cfg()).unwrap();
    assert!(
        installed.contains("server os-1 127.0.0.1:8080\n")
            && installed.contains("server os-2 127.0.0.2:8080\n"),
        "{installed}"
    );

    // Launch: servers already carrying the token count; the rest are created with the tags.
    let launch = std::process::Command::new("python3")
        .args([example, "launch"])
        .env("PATH", &path)
        .env("FAKE_OPENSTACK_LOG", &log)
        .env("OPENSTACK_IMAGE", "img")
        .env("OPENSTACK_FLAVOR", "m1.small")
        .env("OPENSTACK_NETWORK", "private")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(
                br#"{"pool": "web", "count": 2, "token": "hxa-t", "tags": {"haproxy-autoscaler:pool": "web", "haproxy-autoscaler:launch-token": "hxa-t"}}"#,
            )?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(launch.status.success());
    let ids: Vec<String> = serde_json::from_slice(&launch.stdout).expect("a JSON array of ids");
    assert_eq!(ids, ["os-2", "os-new-web-hxa-t-1"]);
    let calls = std::fs::read_to_string(&log).unwrap();
    let create = calls
        .lines()
        .find(|line| line.contains("\"create\""))
        .expect("one create");
    assert!(
        create.contains("\"--property\", \"haproxy-autoscaler:launch-token=hxa-t\""),
        "{create}"
    );
    assert_eq!(
        calls
            .lines()
            .filter(|line| line.contains("\"create\""))
            .count(),
        1
    );
}

#[test]
fn local_example_backends_boot_behind_the_readiness_check_and_go_on_scale_down() {
    let mut deployment = Deployment::new("http://127.0.0.1:9");
    let pool_dir = deployment.path("pool");
    let _backends = LocalBackends(pool_dir.clone());
    // No HAProxy here: only the bounds act (min = max = 2, then 1).
    deployment.haproxy_toml.push_str(&format!(
        "stats_socket = \"{}\"\n",
        deployment.path("haproxy/missing.sock").display()
    ));
    deployment.template = "{{#each pools}}backend {{backend}}\n{{#each servers}}    server {{name}} {{address}}:{{port}}{{#if booting}} disabled{{/if}}{{#if draining}} weight 0{{/if}}\n{{/each}}{{/each}}".to_owned();
    let pool = |bounds: &str| {
        local_example_pool()
            + &format!(
                "[pool.scaling]\n{bounds}\nstep_up = 2\nwarmup_s = 0\ndrain_s = 0\ncooldown_s = 0\nscale_up_above = 20\nscale_down_below = 5\n"
            )
    };
    let run = |deployment: &Deployment| {
        deployment.write();
        deployment
            .command()
            .env("LOCAL_POOL_DIR", &pool_dir)
            .env("LOCAL_NOT_READY_FOR", "2")
            .output()
            .unwrap()
    };
    let lines = |deployment: &Deployment| -> Vec<String> {
        std::fs::read_to_string(deployment.haproxy_cfg())
            .unwrap_or_default()
            .lines()
            .filter(|line| line.trim_start().starts_with("server "))
            .map(|line| line.trim().to_owned())
            .collect()
    };

    deployment.pool_toml = pool("min = 2\nmax = 2");
    let launched = run(&deployment);
    assert_exit(&launched, 0);
    assert!(
        stdout(&launched).contains("launch 2 instance(s) for pool web"),
        "{}",
        describe(&launched)
    );

    // Listening but answering 503: booting, rendered disabled.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let booting = run(&deployment);
    assert_exit(&booting, 0);
    let servers = lines(&deployment);
    assert_eq!(servers.len(), 2, "{}", describe(&booting));
    assert!(
        servers.iter().all(|line| line.ends_with(" disabled")),
        "{servers:?}"
    );

    // Ready: in service.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let ready = run(&deployment);
    assert_exit(&ready, 0);
    let servers = lines(&deployment);
    assert!(
        servers.iter().all(|line| !line.contains("disabled")),
        "{servers:?}\n{}",
        describe(&ready)
    );
    for n in [1, 2] {
        let log = std::fs::read_to_string(pool_dir.join(format!("local-{n}.log"))).unwrap();
        for line in log.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            assert!(
                fields[2] == "/health",
                "only the readiness probe reached a backend: {line}"
            );
        }
    }

    // Scale down to 1: drained, then terminated (its process is gone).
    deployment.pool_toml = pool("min = 1\nmax = 1");
    let drain = run(&deployment);
    assert_exit(&drain, 0);
    assert!(
        stdout(&drain).contains("drain server web/local-"),
        "{}",
        describe(&drain)
    );
    let terminate = run(&deployment);
    assert_exit(&terminate, 0);
    assert!(
        stdout(&terminate).contains("terminate instance local-"),
        "{}",
        describe(&terminate)
    );
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(pool_dir.join("instances.json")).unwrap())
            .unwrap();
    assert_eq!(state["instances"].as_array().unwrap().len(), 1);
    assert_eq!(lines(&deployment).len(), 1);

    // `history` tells the cycle from the state: the launch, the first hold, the drain and the
    // termination, each with its reason and metric (none here: no HAProxy).
    let history = deployment.command().arg("history").output().unwrap();
    assert_exit(&history, 0);
    let text = stdout(&history);
    for words in [
        "pool web: 4 of 4 decisions kept",
        "0 → 2  launched 2",
        "2 → 2  held (no_metric)",
        "2 → 1  drained local-",
        "1 → 1  terminated local-",
        "no metric: ",
    ] {
        assert!(text.contains(words), "{words:?} missing from:\n{text}");
    }
    let json = deployment
        .command()
        .args([
            "history", "--format", "json", "--last", "1", "--pool", "web",
        ])
        .output()
        .unwrap();
    assert_exit(&json, 0);
    let view: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    let decisions = view["pools"][0]["decisions"].as_array().unwrap();
    assert_eq!(
        (decisions.len(), view["pools"][0]["kept"].as_u64()),
        (1, Some(4))
    );
    assert_eq!(decisions[0]["terminated"].as_array().unwrap().len(), 1);
    let unknown = deployment
        .command()
        .args(["history", "--pool", "api"])
        .output()
        .unwrap();
    assert_exit(&unknown, 2);
    assert!(
        stderr(&unknown).contains("no scaling pool `api`; its scaling pools: web"),
        "{}",
        describe(&unknown)
    );
}

/// Every file and folder under `dir` with its modification time.
fn mtimes(dir: &std::path::Path) -> Vec<(std::path::PathBuf, std::time::SystemTime)> {
    let mut found = vec![(
        dir.to_owned(),
        std::fs::metadata(dir).unwrap().modified().unwrap(),
    )];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let kind = std::fs::symlink_metadata(&path).unwrap().file_type();
        if kind.is_dir() {
            found.extend(mtimes(&path));
        } else if kind.is_file() {
            found.push((
                path.clone(),
                std::fs::metadata(&path).unwrap().modified().unwrap(),
            ));
        }
    }
    found
}

/// Issue 14: a run with nothing to change creates, writes, renames and removes no file but
/// its lock (which it opens without changing it). Every file and folder is dated far in the
/// past first: a file written or replaced gets a new date, and a temporary file created and
/// removed dates its folder.
#[test]
fn a_no_op_run_writes_no_file_but_its_lock() {
    let deployment = exec_deployment();
    let state = deployment.path("provider.json");
    std::fs::write(
        &state,
        r#"[{"id": "local-1", "address": "127.0.0.1", "port": 9001}]"#,
    )
    .unwrap();
    deployment.write();
    let run = || {
        let output = deployment
            .command()
            .env("EXEC_PROVIDER_STATE", &state)
            .output()
            .unwrap();
        assert_exit(&output, 0);
        output
    };
    run(); // installs haproxy.cfg and saves the state
    assert_eq!(deployment.reloads(), 1);
    let past = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_hours(262_968);
    for (path, _) in mtimes(&deployment.path("")) {
        std::fs::File::open(&path)
            .unwrap()
            .set_modified(past)
            .unwrap();
    }
    run();
    let changed: Vec<_> = mtimes(&deployment.path(""))
        .into_iter()
        .filter(|(_, modified)| *modified != past)
        .collect();
    assert!(changed.is_empty(), "a no-op run changed {changed:?}");
    assert_eq!(deployment.reloads(), 1);

    // The check can fail: a run with a change dates the files it writes.
    std::fs::write(
        &state,
        r#"[{"id": "local-1", "address": "127.0.0.1", "port": 9002}]"#,
    )
    .unwrap();
    run();
    let changed: Vec<_> = mtimes(&deployment.path(""))
        .into_iter()
        .filter(|(_, modified)| *modified != past)
        .map(|(path, _)| path)
        .collect();
    assert!(changed.contains(&deployment.haproxy_cfg()), "{changed:?}");
}

/// Issue 28: two decisions taken in the same second never share a launch token (an instance
/// launched for one would make the other's intent look fulfilled). Two `--plan`s of the same
/// state are two such decisions.
#[test]
fn two_decisions_in_the_same_second_get_their_own_launch_tokens() {
    let mut deployment = exec_deployment();
    deployment.pool_toml = fixture_exec_pool("ready_check = \"none\"")
        + "[pool.scaling]\nmin = 2\nmax = 3\nstep_up = 2\nscale_up_above = 20\nscale_down_below = 5\n";
    // No HAProxy here: the stats are missing, so only the bounds act (min 2 of none: launch 2).
    deployment.haproxy_toml.push_str(&format!(
        "stats_socket = \"{}\"\n",
        deployment.path("haproxy/missing.sock").display()
    ));
    deployment.write();
    let state = deployment.path("provider.json");
    let plan_token = || {
        let output = deployment
            .command()
            .arg("--plan")
            .env("EXEC_PROVIDER_STATE", &state)
            .output()
            .unwrap();
        assert_exit(&output, 0);
        let text = stdout(&output);
        text.split("(token ")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .unwrap_or_else(|| panic!("no launch token in:\n{text}"))
            .to_owned()
    };
    // Tokens end with the second they were made in: retry until two plans share one.
    for _ in 0..20 {
        let (first, second) = (plan_token(), plan_token());
        let second_of = |token: &str| token.rsplit('-').next().unwrap().to_owned();
        if second_of(&first) == second_of(&second) {
            assert_ne!(first, second, "one token for two decisions");
            return;
        }
    }
    panic!("no two plans in the same second in 20 tries");
}
