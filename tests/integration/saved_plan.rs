//! `--plan --out FILE` and `apply FILE` through the real binary, on an exec pool: the saved plan
//! is carried out exactly when nothing changed, and refused (exit 3) with nothing changed when an
//! instance, the installed haproxy.cfg, the state or the config changed in between.

use std::os::unix::fs::PermissionsExt;

use super::util::{Deployment, assert_exit, describe, fixture_exec_pool, stderr, stdout};

/// The files a refused `apply` must leave as they were: haproxy.cfg, the state and the fleet.
fn files(deployment: &Deployment, fleet: &std::path::Path) -> Vec<Vec<u8>> {
    [
        deployment.haproxy_cfg(),
        deployment.state_path(),
        fleet.to_owned(),
    ]
    .iter()
    .map(|path| std::fs::read(path).unwrap())
    .collect()
}

#[test]
fn a_saved_plan_is_carried_out_once_and_only_while_the_world_matches_it() {
    let mut deployment = Deployment::new("http://127.0.0.1:9");
    let fleet = deployment.path("provider.json");
    let one = r#"[{"id": "local-1", "address": "127.0.0.1", "port": 9001, "tags": {"haproxy-autoscaler:pool": "web"}}]"#;
    std::fs::write(&fleet, one).unwrap();
    let pool = |bounds: &str| {
        fixture_exec_pool("ready_check = \"none\"")
            + &format!(
                "[pool.scaling]\n{bounds}\ncooldown_s = 0\nwarmup_s = 0\npolicy = \"target\"\ntarget = 50\n"
            )
    };
    let run = |deployment: &Deployment, args: &[&str]| {
        deployment.write();
        deployment
            .command()
            .env("EXEC_PROVIDER_STATE", &fleet)
            .args(args)
            .output()
            .unwrap()
    };
    // No HAProxy here: only the bounds act.
    deployment.haproxy_toml.push_str(&format!(
        "stats_socket = \"{}\"\n",
        deployment.path("haproxy/missing.sock").display()
    ));
    deployment.pool_toml = pool("min = 1\nmax = 1");
    assert_exit(&run(&deployment, &[]), 0);

    deployment.pool_toml = pool("min = 2\nmax = 2");
    let plan_file = deployment.path("plan.json");
    let plan_path = plan_file.to_str().unwrap();
    let planned = run(&deployment, &["--plan", "--out", plan_path]);
    assert_exit(&planned, 0);
    assert!(
        stdout(&planned).contains("launch 1 instance(s) for pool web"),
        "{}",
        describe(&planned)
    );
    let mode = std::fs::metadata(&plan_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the plan holds the fleet's addresses");
    // An earlier plan is replaced; a link, or a file that is not a plan, never is.
    let again = run(&deployment, &["--plan", "--out", plan_path]);
    assert_exit(&again, 0);
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&plan_file).unwrap()).unwrap();
    let config_copy = deployment.path("copy.toml");
    std::fs::copy(deployment.config_path(), &config_copy).unwrap();
    let link = deployment.path("link.json");
    std::os::unix::fs::symlink(&config_copy, &link).unwrap();
    for (target, words) in [
        (
            &config_copy,
            "it exists and is not a saved plan, so it is never replaced",
        ),
        (
            &link,
            "it is a symbolic link, and a plan is never written through one",
        ),
    ] {
        let before = std::fs::read(&config_copy).unwrap();
        let refused = run(&deployment, &["--plan", "--out", target.to_str().unwrap()]);
        assert_exit(&refused, 1);
        assert!(stderr(&refused).contains(words), "{}", describe(&refused));
        assert_eq!(std::fs::read(&config_copy).unwrap(), before, "{words}");
    }

    let refused = |deployment: &Deployment, words: &str| {
        let before = files(deployment, &fleet);
        let output = run(deployment, &["apply", plan_path]);
        assert_exit(&output, 3);
        assert!(
            stderr(&output).contains("no longer matches") && stderr(&output).contains(words),
            "{words:?}: {}",
            describe(&output)
        );
        assert!(
            stderr(&output).contains("nothing was changed"),
            "{}",
            describe(&output)
        );
        assert_eq!(
            files(deployment, &fleet),
            before,
            "{words}: a refused apply changed a file"
        );
    };

    // An instance appeared since.
    let two = one.replace(
        "}]",
        r#"}, {"id": "local-7", "address": "127.0.0.1", "port": 9007}]"#,
    );
    std::fs::write(&fleet, &two).unwrap();
    refused(
        &deployment,
        "pool `web`: its instances were [\"local-1\"] and are now [\"local-1\", \"local-7\"]",
    );
    std::fs::write(&fleet, one).unwrap();

    // haproxy.cfg edited by hand since.
    let installed = std::fs::read(deployment.haproxy_cfg()).unwrap();
    let mut edited = installed.clone();
    edited.extend_from_slice(b"# edited by hand\n");
    std::fs::write(deployment.haproxy_cfg(), &edited).unwrap();
    refused(&deployment, "the installed haproxy.cfg changed since");
    std::fs::write(deployment.haproxy_cfg(), &installed).unwrap();

    // The config changed since: the same observations make another plan.
    deployment.pool_toml = pool("min = 3\nmax = 3");
    refused(&deployment, "the config or the template changed since");
    deployment.pool_toml = pool("min = 2\nmax = 2");

    // Nothing changed: carried out, exactly as planned (the same actions, the same token).
    let applied = run(&deployment, &["--format", "json", "apply", plan_path]);
    assert_exit(&applied, 0);
    let report: serde_json::Value = serde_json::from_str(&stdout(&applied)).unwrap();
    assert_eq!(report["mode"], "apply");
    assert_eq!(
        report["plan"]["actions"],
        saved["plan"]["actions"],
        "{}",
        describe(&applied)
    );
    let fleet_now: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&fleet).unwrap()).unwrap();
    assert_eq!(
        fleet_now.as_array().unwrap().len(),
        2,
        "one instance launched"
    );

    // Once: the state it was made from is gone.
    refused(&deployment, "the state changed since");

    // Not a plan, and --plan beside apply: usage errors.
    std::fs::write(deployment.path("junk.json"), "{}").unwrap();
    let junk = run(
        &deployment,
        &["apply", deployment.path("junk.json").to_str().unwrap()],
    );
    assert_exit(&junk, 2);
    assert!(
        stderr(&junk).contains("is not a saved plan"),
        "{}",
        describe(&junk)
    );
    let both = run(&deployment, &["--plan", "apply", plan_path]);
    assert_exit(&both, 2);
}
