//! File modes and owners (invariant 2, issue 5): the state file and every candidate config are
//! created 0600; the installed haproxy.cfg keeps the owner and mode it had, and so does its backup.

use std::os::unix::fs::MetadataExt;

use super::util::{Deployment, describe, exec_pool, is_root};

#[test]
fn state_and_candidates_are_private_and_haproxy_cfg_keeps_its_owner_and_mode() {
    let mut deployment = Deployment::new("http://127.0.0.1:9");
    let modes = deployment.path("candidate-modes");
    // The check command records the mode of the candidate it is given.
    deployment.haproxy_toml = format!(
        "check_command = [\"sh\", \"-c\", \"stat -c %a \\\"$0\\\" >> {}\", \"{{config}}\"]\nreload_command = [\"true\"]\n",
        modes.display()
    );
    let instances = deployment.path("instances.json").display().to_string();
    deployment.pool_toml = exec_pool(
        "web",
        80,
        "",
        &["cat", &instances],
        Some((&["false"], &["false"])),
    );
    let list = |ids: &[&str]| {
        let entries: Vec<String> = ids
            .iter()
            .map(|id| format!(r#"{{"id": "{id}", "address": "127.0.0.1", "port": 9001}}"#))
            .collect();
        std::fs::write(
            deployment.path("instances.json"),
            format!("[{}]", entries.join(",")),
        )
        .unwrap();
    };
    list(&["i-1"]);
    deployment.run(&[]).exits(0);
    let state = std::fs::metadata(deployment.state_path()).unwrap();
    assert_eq!(state.mode() & 0o777, 0o600);
    let cfg = deployment.haproxy_cfg();
    assert_eq!(
        std::fs::metadata(&cfg).unwrap().mode() & 0o777,
        0o644,
        "a new haproxy.cfg gets the usual mode"
    );

    // HAProxy's packaging: owned by another user (as root, the test can give it away), 0640.
    let root = is_root();
    let owner = if root {
        std::os::unix::fs::chown(&cfg, Some(65534), Some(65534)).unwrap();
        (65534, 65534)
    } else {
        let metadata = std::fs::metadata(&cfg).unwrap();
        (metadata.uid(), metadata.gid())
    };
    std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    list(&["i-1", "i-2"]);
    let second = deployment.run(&[]).exits(0);
    assert!(
        deployment.servers().contains(&"i-2".to_owned()),
        "{}",
        describe(&second)
    );
    for path in [cfg.clone(), cfg.with_extension("cfg.bak")] {
        let metadata = std::fs::metadata(&path).unwrap();
        assert_eq!(metadata.mode() & 0o777, 0o640, "{}", path.display());
        assert_eq!(
            (metadata.uid(), metadata.gid()),
            owner,
            "{}",
            path.display()
        );
    }
    assert_eq!(
        std::fs::metadata(deployment.state_path()).unwrap().mode() & 0o777,
        0o600
    );
    let seen = std::fs::read_to_string(&modes).unwrap();
    assert_eq!(
        seen.lines().collect::<Vec<_>>(),
        ["600", "600"],
        "candidate modes"
    );
}

/// Issue 32: the first run takes over a haproxy.cfg it never wrote (Debian's stock file) and
/// keeps it as `haproxy.cfg.orig` with its mode; later runs, and a run after the state is lost,
/// never replace it (`haproxy.cfg.bak` holds only the file before the last install).
#[test]
fn the_file_taken_over_is_kept_once_as_orig() {
    let mut deployment = Deployment::new("http://127.0.0.1:9");
    deployment.haproxy_toml =
        "check_command = [\"test\", \"-s\", \"{config}\"]\nreload_command = [\"true\"]\n".into();
    let instances = deployment.path("instances.json");
    deployment.pool_toml = exec_pool(
        "web",
        80,
        "",
        &["cat", &instances.display().to_string()],
        None,
    );
    let list = |id: &str| {
        std::fs::write(
            &instances,
            format!(r#"[{{"id": "{id}", "address": "127.0.0.1", "port": 9001}}]"#),
        )
        .unwrap();
    };
    let cfg = deployment.haproxy_cfg();
    let orig = cfg.with_extension("cfg.orig");
    std::fs::write(&cfg, "# the distribution's haproxy.cfg\n").unwrap();
    std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    list("i-1");
    deployment
        .run(&[])
        .exits(0)
        .said("was not written by haproxy-autoscaler");
    let kept = "# the distribution's haproxy.cfg\n";
    assert_eq!(std::fs::read_to_string(&orig).unwrap(), kept);
    assert_eq!(std::fs::metadata(&orig).unwrap().mode() & 0o777, 0o640);
    // A change, then a lost state: two more installs, the original stays.
    list("i-2");
    deployment.run(&[]).exits(0);
    std::fs::remove_file(deployment.state_path()).unwrap();
    list("i-3");
    deployment.run(&[]).exits(0);
    assert_eq!(std::fs::read_to_string(&orig).unwrap(), kept);
    assert!(
        std::fs::read_to_string(cfg.with_extension("cfg.bak"))
            .unwrap()
            .contains("i-2")
    );
}
