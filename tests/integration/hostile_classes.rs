//! Issue 10: hostile inputs and environments, by class, through the real binary. Each test is
//! named after its class and tries several inputs of it. (Classes with pure causes are tested
//! beside the code: `class_*` in src/.)

use std::process::{Command, Stdio};

use super::operator::{ONE_INSTANCE, Site};
use super::util::{assert_exit, describe, stderr};

/// `[haproxy]` lines for runs that need no real HAProxy.
const QUICK_CHECK: &str =
    "check_command = [\"test\", \"-s\", \"{config}\"]\nreload_command = [\"true\"]\n";

fn binary() -> std::path::PathBuf {
    assert_cmd::cargo::cargo_bin("haproxy-autoscaler")
}

/// Class 3: two configs on one state file are refused (exit 2) before anything changes, never
/// allowed to drop each other's pools; the same config reached through a symlink is the same.
#[test]
fn class_3_two_configs_never_share_one_state_file() {
    let mut site = Site::new(ONE_INSTANCE);
    site.haproxy = QUICK_CHECK.to_owned();
    assert_exit(&site.run(&[]), 0);
    let state_before = std::fs::read(site.path("state/state.json")).unwrap();

    // A second config file, other pools, the same state path.
    let other = site.path("etc/other.toml");
    let text = std::fs::read_to_string(site.config_path())
        .unwrap()
        .replace("name = \"web\"", "name = \"api\"");
    std::fs::write(&other, text).unwrap();
    let second = Command::new(binary())
        .arg("--config")
        .arg(&other)
        .output()
        .unwrap();
    assert_exit(&second, 2);
    assert!(
        stderr(&second).contains("belongs to config") && stderr(&second).contains("config.toml"),
        "{}",
        describe(&second)
    );
    // The config-less mode on the same state file.
    let flags = Command::new(binary())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args([
            "--security-group",
            "web",
            "--port",
            "80",
            "--region",
            "us-east-1",
        ])
        .arg("--state")
        .arg(site.path("state/state.json"))
        .arg("--haproxy-config")
        .arg(site.path("haproxy/other.cfg"))
        .arg("--template")
        .arg(site.path("etc/haproxy.cfg.hbs"))
        .output()
        .unwrap();
    assert_exit(&flags, 2);
    assert!(
        stderr(&flags).contains("`command line`"),
        "{}",
        describe(&flags)
    );
    // --plan says the same.
    let plan = Command::new(binary())
        .arg("--config")
        .arg(&other)
        .arg("--plan")
        .output()
        .unwrap();
    assert_exit(&plan, 2);
    assert_eq!(
        std::fs::read(site.path("state/state.json")).unwrap(),
        state_before
    );

    // The same config through a symlink is the same config.
    let link = site.path("etc/config-link.toml");
    std::os::unix::fs::symlink(site.config_path(), &link).unwrap();
    let same = Command::new(binary())
        .arg("--config")
        .arg(&link)
        .output()
        .unwrap();
    assert_exit(&same, 0);
}

/// Class 9: a closed or broken stdout or stderr never turns a run into a crash (exit 101) nor
/// changes what it did.
#[test]
fn class_9_a_broken_stdout_or_stderr_changes_nothing_about_the_run() {
    for (case, args, closed_out, closed_err, code) in [
        ("changes, stdout closed", &[][..], true, false, 0),
        (
            "changes, both closed, json",
            &["--format", "json"][..],
            true,
            true,
            0,
        ),
        ("a failing run, stderr closed", &[][..], false, true, 1),
        ("--plan, both closed", &["--plan"][..], true, true, 0),
    ] {
        let mut site = Site::new(ONE_INSTANCE);
        site.haproxy = QUICK_CHECK.to_owned();
        if code == 1 {
            site.pools = site.pools.replace("[\"cat\",", "[\"false\",");
        }
        site.write();
        let mut child = Command::new(binary())
            .arg("--config")
            .arg(site.config_path())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Nobody reads: the pipes are broken before the run writes to them.
        if closed_out {
            drop(child.stdout.take());
        }
        if closed_err {
            drop(child.stderr.take());
        }
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(code), "{case}");
        let installed = site.path("haproxy/haproxy.cfg").exists();
        assert_eq!(
            installed,
            code == 0 && !args.contains(&"--plan"),
            "{case}: the run did its work"
        );
    }
}

/// Class 17: the folders the tool creates have explicit modes, whatever the umask.
#[test]
fn class_17_created_folders_ignore_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    for umask in ["000", "002", "022"] {
        let mut site = Site::new(ONE_INSTANCE);
        site.haproxy = QUICK_CHECK.to_owned();
        site.write();
        let config = std::fs::read_to_string(site.config_path())
            .unwrap()
            .replace("../state/state.json", "../new/deeper/state.json");
        std::fs::write(site.config_path(), config).unwrap();
        let output = Command::new("sh")
            .arg("-c")
            .arg(format!("umask {umask}; exec \"$0\" --config \"$1\""))
            .arg(binary())
            .arg(site.config_path())
            .output()
            .unwrap();
        assert_exit(&output, 0);
        for folder in ["new", "new/deeper"] {
            let mode = std::fs::metadata(site.path(folder))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o777,
                0o700,
                "umask {umask}: {folder} is {:o}",
                mode & 0o777
            );
        }
        for file in ["new/deeper/state.json", "new/deeper/state.json.lock"] {
            let mode = std::fs::metadata(site.path(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o777,
                0o600,
                "umask {umask}: {file} is {:o}",
                mode & 0o777
            );
        }
    }
}
