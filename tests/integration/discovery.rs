//! Discovery-only reconciles against moto: issue 2's acceptance tests.

use std::os::unix::fs::MetadataExt;

use fs2::FileExt;

use super::moto::Moto;
use super::util::{Deployment, assert_exit, describe, stderr, stdout};

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[test]
fn renders_exactly_the_discovered_instances_and_reloads_only_on_change() {
    let moto = Moto::start();
    moto.security_group("web");
    moto.security_group("other");
    let web = moto.launch("web", 3, &[]);
    moto.launch("other", 2, &[]);
    let deployment = Deployment::new(&moto.url);

    let first = deployment.run(&[]).exits(0);
    assert_eq!(deployment.servers(), sorted(web.clone()));
    assert_eq!(deployment.reloads(), 1);
    let lines = stdout(&first);
    assert_eq!(
        lines.matches("add server web/").count(),
        3,
        "{}",
        describe(&first)
    );
    assert!(lines.contains("reload haproxy"), "{lines}");
    let state_mode = std::fs::metadata(deployment.state_path()).unwrap().mode() & 0o777;
    assert_eq!(state_mode, 0o600);
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(deployment.state_path()).unwrap()).unwrap();
    assert_eq!(state["version"], 1);

    // Nothing changed: silent, no reload, no file rewritten.
    let before = deployment.snapshot();
    let second = deployment.run(&[]).exits(0);
    assert_eq!(stdout(&second), "", "{}", describe(&second));
    assert_eq!(deployment.reloads(), 1);
    assert_eq!(deployment.snapshot(), before);

    // One instance terminated: one reload, its server gone, the old file kept as a backup.
    moto.terminate(&web[..1]);
    let third = deployment.run(&[]).exits(0);
    assert_eq!(deployment.reloads(), 2);
    assert_eq!(deployment.servers(), sorted(web[1..].to_vec()));
    assert!(
        stdout(&third).contains(&format!("remove server web/{}", web[0])),
        "{}",
        describe(&third)
    );
    let backup = std::fs::read_to_string(deployment.path("haproxy/haproxy.cfg.bak")).unwrap();
    assert!(backup.contains(&web[0]));
}

#[test]
fn discovery_filters_by_group_id_image_and_tags() {
    let moto = Moto::start();
    let group_id = moto.security_group("web");
    let tagged = moto.launch("web", 2, &[("role", "web"), ("env", "prod")]);
    moto.launch("web", 1, &[("role", "web"), ("env", "staging")]);
    let mut deployment = Deployment::new(&moto.url);
    deployment.pool_toml = format!(
        "[[pool]]\nname = \"web\"\nport = 80\n[pool.discover]\nsecurity_group = \"{group_id}\"\nimage_id = \"ami-12345678\"\ntags = {{ role = \"web\", env = \"prod\" }}\n"
    );
    deployment.run(&[]).exits(0);
    assert_eq!(deployment.servers(), sorted(tagged));
}

#[test]
fn plan_prints_actions_and_diff_and_changes_nothing() {
    let moto = Moto::start();
    moto.security_group("web");
    moto.launch("web", 2, &[]);
    let deployment = Deployment::new(&moto.url);
    deployment.run(&[]).exits(0);
    let added = moto.launch("web", 1, &[]);
    deployment.write();

    let files = deployment.snapshot();
    let instances = moto.all_instances();
    let plan = deployment.command().args(["--plan"]).output().unwrap();
    assert_exit(&plan, 0);
    let text = stdout(&plan);
    assert!(
        text.contains(&format!("add server web/{} at 10.", added[0])),
        "{text}"
    );
    assert!(text.contains("reload haproxy"), "{text}");
    assert!(
        text.contains(&format!("+    server {} 10.", added[0])),
        "{text}"
    );
    assert!(text.contains("--- "), "{text}");

    let detailed = deployment
        .command()
        .args(["--plan", "--detailed-exitcode"])
        .output()
        .unwrap();
    assert_exit(&detailed, 4);
    let json = deployment
        .command()
        .args(["--plan", "--format", "json"])
        .output()
        .unwrap();
    assert_exit(&json, 0);
    let document: serde_json::Value =
        serde_json::from_slice(&json.stdout).expect("one JSON document");
    assert_eq!(document["mode"], "plan");
    assert_eq!(document["changes"], true);
    assert_eq!(document["plan"]["config"]["changed"], true);

    assert_eq!(deployment.snapshot(), files, "--plan wrote a file");
    assert_eq!(moto.all_instances(), instances, "--plan changed the cloud");
    assert_eq!(deployment.reloads(), 1);

    // Once applied, the plan is empty and --detailed-exitcode says so.
    deployment.run(&[]).exits(0);
    let settled = deployment
        .command()
        .args(["--plan", "--detailed-exitcode"])
        .output()
        .unwrap();
    assert_exit(&settled, 0);
    assert!(
        stdout(&settled).contains("No changes"),
        "{}",
        describe(&settled)
    );
}

#[test]
fn a_second_run_while_the_lock_is_held_exits_75_and_touches_nothing() {
    let moto = Moto::start();
    moto.security_group("web");
    moto.launch("web", 1, &[]);
    let deployment = Deployment::new(&moto.url);
    deployment.write();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(deployment.path("state/state.json.lock"))
        .unwrap();
    lock.lock_exclusive().unwrap();
    let files = deployment.snapshot();
    let output = deployment.command().output().unwrap();
    assert_exit(&output, 75);
    // Issue 9, item 5: an overlap is normal; cron mails whatever a job prints, so a busy lock
    // prints nothing, and says so only with -v.
    assert!(
        output.stdout.is_empty() && output.stderr.is_empty(),
        "{}",
        describe(&output)
    );
    let verbose = deployment.command().arg("-v").output().unwrap();
    assert_exit(&verbose, 75);
    assert!(
        stderr(&verbose).contains("another run holds the lock"),
        "{}",
        describe(&verbose)
    );
    assert_eq!(deployment.snapshot(), files);
    assert_eq!(deployment.reloads(), 0);
    drop(lock);
    // A child another test forks holds a copy of our descriptor until it execs, so the released
    // lock may look held for a moment.
    let mut after = deployment.command().output().unwrap();
    for _ in 0..50 {
        if after.status.code() != Some(75) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        after = deployment.command().output().unwrap();
    }
    assert_exit(&after, 0);
}

#[test]
fn corrupt_state_exits_1_and_stays_byte_identical() {
    let moto = Moto::start();
    moto.security_group("web");
    moto.launch("web", 1, &[]);
    let deployment = Deployment::new(&moto.url);
    let garbage = b"{\"version\": 1, \"pools\": {\"web\": ";
    std::fs::write(deployment.state_path(), garbage).unwrap();
    deployment.run(&[]).exits(1).said("is corrupt");
    assert_eq!(std::fs::read(deployment.state_path()).unwrap(), garbage);
    assert!(!deployment.haproxy_cfg().exists());

    std::fs::write(deployment.state_path(), b"{\"version\": 9}").unwrap();
    deployment
        .run(&[])
        .exits(1)
        .said("upgrade haproxy-autoscaler");
    assert_eq!(
        std::fs::read(deployment.state_path()).unwrap(),
        b"{\"version\": 9}"
    );
}

#[test]
fn discovery_that_matches_nothing_refuses_to_empty_the_backend() {
    let moto = Moto::start();
    moto.security_group("web");
    moto.launch("web", 2, &[]);
    let mut deployment = Deployment::new(&moto.url);
    deployment.run(&[]).exits(0);
    let installed = std::fs::read(deployment.haproxy_cfg()).unwrap();

    deployment.pool_toml = deployment
        .pool_toml
        .replace("security_group = \"web\"", "tags = { role = \"typo\" }");
    deployment
        .run(&[])
        .exits(1)
        .said("refusing to empty backend `web`");
    assert_eq!(std::fs::read(deployment.haproxy_cfg()).unwrap(), installed);
    assert_eq!(deployment.reloads(), 1);

    deployment.pool_toml = deployment
        .pool_toml
        .replace("port = 8080", "port = 8080\nallow_empty = true");
    deployment.run(&[]).exits(0);
    assert!(deployment.servers().is_empty());
}

#[test]
fn config_less_mode_discovers_one_pool() {
    let moto = Moto::start();
    moto.security_group("web");
    let ids = moto.launch("web", 2, &[]);
    let deployment = Deployment::new(&moto.url);
    deployment.write();
    let reloads = deployment.path("reloads");
    let output = deployment
        .command()
        .env_remove("HAPROXY_AUTOSCALER_CONFIG")
        .args([
            "--security-group",
            "web",
            "--port",
            "80",
            "--region",
            "us-east-1",
        ])
        .args(["--endpoint-url", &moto.url])
        .arg("--template")
        .arg(deployment.path("etc/haproxy.cfg.hbs"))
        .arg("--haproxy-config")
        .arg(deployment.haproxy_cfg())
        .arg("--state")
        .arg(deployment.state_path())
        .args(["--check-command", "test -s {config}"])
        .arg("--reload-command")
        .arg(format!("sh -c 'echo reload >> {}'", reloads.display()))
        .output()
        .unwrap();
    assert_exit(&output, 0);
    assert_eq!(deployment.servers(), sorted(ids));
    assert_eq!(deployment.reloads(), 1);
    let config = std::fs::read_to_string(deployment.haproxy_cfg()).unwrap();
    assert!(config.contains(":80\n"), "{config}");
}

#[test]
fn hostile_tag_values_never_reach_haproxy_cfg() {
    let moto = Moto::start();
    moto.security_group("web");
    let hostile = moto.launch("web", 1, &[("Name", "web\n    server evil 127.0.0.9:80")]);
    let good = moto.launch("web", 1, &[("Name", "web-2")]);
    let mut deployment = Deployment::new(&moto.url);
    deployment.template = "{{#each pools}}backend {{backend}}\n{{#each servers}}    server {{name}} {{address}}:{{port}} # {{tags.Name}}\n{{/each}}{{/each}}".to_owned();
    // Issue 9, item 9: the hostile instance is left out, named with its value; the good one
    // is served.
    let output = deployment.run(&[]).exits(0);
    assert!(
        stderr(&output).contains(&format!("instance `{}` left out", hostile[0]))
            && stderr(&output).contains("tag `Name` = \"web\\n    server evil"),
        "{}",
        describe(&output)
    );
    let config = std::fs::read_to_string(deployment.haproxy_cfg()).unwrap();
    assert!(!config.contains("evil"), "{config}");
    assert_eq!(deployment.servers(), good);
}

#[test]
fn cloud_errors_change_nothing() {
    let moto = Moto::start();
    moto.security_group("web");
    moto.launch("web", 1, &[]);
    let mut deployment = Deployment::new(&moto.url);
    deployment.run(&[]).exits(0);
    let files = deployment.snapshot();
    // Nothing listens on this port: the listing fails, and nothing may change.
    deployment.endpoint_url = format!("http://127.0.0.1:{}", super::util::free_port());
    deployment
        .run(&[])
        .exits(1)
        .said("cannot list the instances of pool `web`");
    let mut after = deployment.snapshot();
    // Only config.toml (rewritten by this test) may differ.
    after.remove(&deployment.config_path());
    let mut expected = files;
    expected.remove(&deployment.config_path());
    assert_eq!(after, expected);
}

#[test]
fn a_template_variable_that_does_not_exist_exits_2() {
    let moto = Moto::start();
    moto.security_group("web");
    moto.launch("web", 1, &[]);
    let mut deployment = Deployment::new(&moto.url);
    deployment.template = "{{#each pools}}backend {{backend}}\n{{#each servers}} server {{name}} {{adress}}\n{{/each}}{{/each}}".to_owned();
    deployment.run(&[]).exits(2).said("adress");
    assert!(!deployment.haproxy_cfg().exists() && !deployment.state_path().exists());
}

#[test]
fn missing_credentials_and_region_are_clear_errors() {
    let moto = Moto::start();
    moto.security_group("web");
    let deployment = Deployment::new(&moto.url);
    deployment.write();
    let no_credentials = deployment
        .command()
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    assert_exit(&no_credentials, 1);
    assert!(
        stderr(&no_credentials).contains("no AWS credentials"),
        "{}",
        describe(&no_credentials)
    );
    assert!(
        stderr(&no_credentials).contains("the cloud refused the request"),
        "{}",
        describe(&no_credentials)
    );

    std::fs::write(
        deployment.config_path(),
        std::fs::read_to_string(deployment.config_path())
            .unwrap()
            .replace("region = \"us-east-1\"\n", ""),
    )
    .unwrap();
    // Issue 9, item 11: a profile that does not exist is named as such, not as "no region".
    let no_profile = deployment
        .command()
        .env("AWS_PROFILE", "nope")
        .output()
        .unwrap();
    assert_exit(&no_profile, 2);
    assert!(
        stderr(&no_profile).contains("AWS profile `nope` (from AWS_PROFILE) is in neither")
            && !stderr(&no_profile).contains("no AWS region"),
        "{}",
        describe(&no_profile)
    );
    let no_region = deployment.command().output().unwrap();
    assert_exit(&no_region, 2);
    assert!(
        stderr(&no_region).contains("no AWS region configured"),
        "{}",
        describe(&no_region)
    );
    assert!(
        !stderr(&no_region).contains("WARN"),
        "SDK warnings stay quiet without -v: {}",
        describe(&no_region)
    );
    assert!(!deployment.haproxy_cfg().exists());
}

/// Starts 20 runs at once and waits for them: each exits 0 or 75, and at least 15 found the lock
/// taken (exit 75). Returns the exit codes.
fn twenty_at_once(deployment: &Deployment) -> Vec<i32> {
    let children: Vec<std::process::Child> = (0..20)
        .map(|_| {
            deployment
                .std_command()
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let codes: Vec<i32> = children
        .into_iter()
        .map(|child| {
            child
                .wait_with_output()
                .unwrap()
                .status
                .code()
                .unwrap_or(-1)
        })
        .collect();
    assert!(
        codes.iter().all(|code| *code == 0 || *code == 75),
        "{codes:?}"
    );
    assert!(
        codes.iter().filter(|code| **code == 75).count() >= 15,
        "{codes:?}"
    );
    codes
}

#[test]
fn twenty_runs_at_once_one_acts_the_others_exit_75() {
    let moto = Moto::start();
    moto.security_group("web");
    moto.launch("web", 3, &[]);
    let mut deployment = Deployment::new(&moto.url);
    // A slow reload keeps the first run inside its lock while the others start.
    deployment.haproxy_toml = deployment
        .haproxy_toml
        .replace("echo reload >> ", "sleep 1; echo reload >> ");
    deployment.write();
    let codes = twenty_at_once(&deployment);
    assert_eq!(deployment.reloads(), 1, "exactly one run acted: {codes:?}");
    assert_eq!(deployment.servers().len(), 3);
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(deployment.state_path()).unwrap()).unwrap();
    assert_eq!(
        state["pools"]["web"]["servers"].as_array().unwrap().len(),
        3
    );
}

#[test]
fn twenty_scaling_runs_at_once_launch_exactly_once() {
    let moto = Moto::start();
    moto.security_group("web");
    let mut deployment = Deployment::new(&moto.url);
    deployment.haproxy_toml = deployment
        .haproxy_toml
        .replace("echo reload >> ", "sleep 1; echo reload >> ");
    deployment.haproxy_toml.push_str(&format!(
        "stats_socket = \"{}\"\n",
        deployment.path("haproxy/missing.sock").display()
    ));
    deployment.pool_toml = "[[pool]]\nname = \"web\"\nport = 8080\nready_check = \"none\"\n\
[pool.discover]\nsecurity_group = \"web\"\n[pool.launch]\nimage_id = \"ami-12345678\"\ninstance_type = \"t3.micro\"\n\
[pool.scaling]\nmin = 3\nmax = 6\nstep_up = 3\nscale_up_above = 20\nscale_down_below = 5\n"
        .to_owned();
    deployment.write();
    let codes = twenty_at_once(&deployment);
    assert_eq!(moto.all_instances().len(), 3, "one launch of 3: {codes:?}");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(deployment.state_path()).unwrap()).unwrap();
    assert_eq!(state["version"], 1, "{state}");
    // And the next run settles on exactly those three.
    deployment.run(&[]).exits(0);
    assert_eq!(moto.all_instances().len(), 3);
    assert_eq!(deployment.servers().len(), 3);
}

#[test]
fn secrets_never_appear_in_any_output_or_file() {
    let moto = Moto::start();
    moto.security_group("web");
    moto.launch("web", 2, &[]);
    let mut deployment = Deployment::new(&moto.url);
    let (key_id, secret, token) = (
        "AKIASECRETKEYID12345",
        "sEcReTaCcEsSkEy/0123456789abcdefghijkl",
        "T0KEN-XOXB-SECRET",
    );
    let hook = super::util::free_port();
    deployment.pool_toml.push_str(&format!(
        "\n[notify]\nwebhook = \"http://127.0.0.1:{hook}/services/{token}\"\nrapid_scales = 1\n"
    ));
    deployment.write();
    let mut outputs = Vec::new();
    for args in [
        &["-vv"][..],
        &["--plan", "-vv"],
        &["--plan", "--format", "json"],
        &["--format", "json", "-vv"],
    ] {
        let output = deployment
            .command()
            .env("AWS_ACCESS_KEY_ID", key_id)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .args(args)
            .output()
            .unwrap();
        assert_exit(&output, 0);
        outputs.push(String::from_utf8_lossy(&output.stdout).into_owned());
        outputs.push(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    // Keys from a profile file instead of the environment.
    let (file_key_id, file_secret) = (
        "AKIAPROFILEKEY67890",
        "pRoFiLeSeCrEt/abcdefghijklmnopqrstuvwxyz",
    );
    std::fs::create_dir_all(deployment.path(".aws")).unwrap();
    std::fs::write(
        deployment.path(".aws/credentials"),
        format!(
            "[default]\naws_access_key_id = {file_key_id}\naws_secret_access_key = {file_secret}\n"
        ),
    )
    .unwrap();
    // Issue 9, item 11: RUST_LOG at any level, not only -vv (the SDK logs key ids at INFO and
    // signs requests at DEBUG/TRACE).
    for (args, rust_log) in [
        (&["-vv"][..], None),
        (&["--plan", "--format", "json", "-vv"], None),
        (&[][..], Some("debug")),
        (&["--plan"], Some("trace")),
    ] {
        let mut command = deployment.command();
        if let Some(level) = rust_log {
            command.env("RUST_LOG", level);
        }
        let output = command
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .args(args)
            .output()
            .unwrap();
        assert_exit(&output, 0);
        for text in [stdout(&output), stderr(&output)] {
            for needle in [file_key_id, file_secret] {
                assert!(!text.contains(needle), "`{needle}` leaked into:\n{text}");
            }
        }
    }
    // A failing run too (the webhook is notified of it, and nothing listens there).
    std::fs::write(deployment.state_path(), b"garbage").unwrap();
    let failed = deployment
        .command()
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .arg("-vv")
        .output()
        .unwrap();
    assert_exit(&failed, 1);
    assert!(
        stderr(&failed).contains("notify webhook failed"),
        "the failure was sent: {}",
        describe(&failed)
    );
    outputs.push(String::from_utf8_lossy(&failed.stderr).into_owned());
    for entry in std::fs::read_dir(deployment.path("state"))
        .unwrap()
        .chain(std::fs::read_dir(deployment.path("haproxy")).unwrap())
    {
        outputs.push(
            String::from_utf8_lossy(&std::fs::read(entry.unwrap().path()).unwrap()).into_owned(),
        );
    }
    for text in &outputs {
        for needle in [key_id, secret, token, "services/"] {
            assert!(!text.contains(needle), "`{needle}` leaked into:\n{text}");
        }
    }
}
