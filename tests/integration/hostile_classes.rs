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
    site.run(&[]).exits(0);
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

/// Runs the binary on `site` with `args`, and how long it took.
fn timed(site: &Site, args: &[&str]) -> (std::process::Output, std::time::Duration) {
    site.write();
    let started = std::time::Instant::now();
    let output = Command::new(binary())
        .arg("--config")
        .arg(site.config_path())
        .args(args)
        .output()
        .unwrap();
    (output, started.elapsed())
}

/// Class 10: every read is bounded and refuses what is not a regular file: a flood of output,
/// a device or a FIFO where a file belongs fail fast with a clear error.
#[test]
fn class_10_unbounded_inputs_fail_fast() {
    let fifo = haproxy_autoscaler::testing::fifo;
    // A flood from the exec list command, and from the check command.
    for (case, tweak) in [
        ("exec list `yes`", "list"),
        ("check command `yes`", "check"),
    ] {
        let mut site = Site::new(ONE_INSTANCE);
        site.haproxy = QUICK_CHECK.to_owned();
        match tweak {
            "list" => site.pools = site.pools.replace("[\"cat\",", "[\"yes\","),
            _ => site.haproxy = "check_command = [\"sh\", \"-c\", \"yes; true\", \"{config}\"]\nreload_command = [\"true\"]\n".to_owned(),
        }
        let (output, took) = timed(&site, &[]);
        assert_exit(&output, 1);
        assert!(
            stderr(&output).contains("printed more than 64 MiB and was killed"),
            "{case}: {}",
            describe(&output)
        );
        assert!(
            took < std::time::Duration::from_secs(20),
            "{case}: {took:?}"
        );
    }
    // Devices and FIFOs where the config, the template or the state belongs.
    let site = Site::new(ONE_INSTANCE);
    site.write();
    for device in ["/dev/zero", "/dev/urandom", "/tmp"] {
        let output = Command::new(binary())
            .args(["--config", device])
            .output()
            .unwrap();
        assert_exit(&output, 2);
        assert!(
            stderr(&output).contains("not a regular file"),
            "--config {device}: {}",
            describe(&output)
        );
    }
    let config_fifo = site.path("etc/fifo.toml");
    fifo(&config_fifo);
    let output = Command::new(binary())
        .arg("--config")
        .arg(&config_fifo)
        .output()
        .unwrap();
    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("not a regular file"),
        "{}",
        describe(&output)
    );
    fifo(&site.path("state/state.json"));
    let (output, took) = timed(&site, &[]);
    assert_exit(&output, 1);
    assert!(
        stderr(&output).contains("state.json") && stderr(&output).contains("not a regular file"),
        "{}",
        describe(&output)
    );
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
    std::fs::remove_file(site.path("state/state.json")).unwrap();
    std::fs::remove_file(site.path("etc/haproxy.cfg.hbs")).unwrap();
    fifo(&site.path("etc/haproxy.cfg.hbs"));
    let (output, _) = timed(&site, &["--plan"]);
    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("not a regular file"),
        "{}",
        describe(&output)
    );
}

/// Class 11: a command that exits but leaves a child holding its output is judged by its own
/// exit status: the run goes on at once, and nothing is rolled back or retried.
#[test]
fn class_11_a_command_that_leaves_a_child_behind_is_judged_by_its_exit() {
    for (case, reload, list) in [
        (
            "reload backgrounds a sleeper",
            "sh -c 'sleep 30 & exit 0'",
            None,
        ),
        (
            "reload backgrounds a chatty child",
            "sh -c '(sleep 1; echo later) & echo now'",
            None,
        ),
        (
            "exec list backgrounds a sleeper",
            "true",
            Some("cat '{}'; sleep 30 &"),
        ),
    ] {
        let mut site = Site::new(ONE_INSTANCE);
        let words: Vec<String> = shlex::split(reload).unwrap();
        site.haproxy = format!(
            "check_command = [\"test\", \"-s\", \"{{config}}\"]\nreload_command = {words:?}\ncommand_timeout_s = 20\n"
        );
        if let Some(list) = list {
            let script = list.replace("{}", &site.path("etc/instances.json").display().to_string());
            site.pools = site.pools.replace(
                &format!(
                    "[\"cat\", \"{}\"]",
                    site.path("etc/instances.json").display()
                ),
                &format!("[\"sh\", \"-c\", {script:?}]"),
            );
        }
        let (output, took) = timed(&site, &[]);
        assert_exit(&output, 0);
        assert!(site.installed().contains("server web-1"), "{case}");
        assert!(
            took < std::time::Duration::from_secs(10),
            "{case}: took {took:?}"
        );
        assert!(
            !stderr(&output).contains("restored"),
            "{case}: {}",
            describe(&output)
        );
    }
}

/// Class 19: a hand-edited haproxy.cfg with bytes that are not UTF-8 is warned about and
/// replaced, not a failure of every run.
#[test]
fn class_19_a_non_utf8_haproxy_cfg_is_replaced_with_a_warning() {
    for bad in [&b"\xff"[..], b"\x80 stray", b"caf\xc3"] {
        let mut site = Site::new(ONE_INSTANCE);
        site.haproxy = QUICK_CHECK.to_owned();
        assert_exit(&timed(&site, &[]).0, 0);
        let mut edited = std::fs::read(site.path("haproxy/haproxy.cfg")).unwrap();
        edited.extend_from_slice(b"# edited by hand: ");
        edited.extend_from_slice(bad);
        edited.push(b'\n');
        std::fs::write(site.path("haproxy/haproxy.cfg"), &edited).unwrap();
        let (output, _) = timed(&site, &[]);
        assert_exit(&output, 0);
        assert!(
            stderr(&output).contains("was changed outside haproxy-autoscaler"),
            "{bad:?}: {}",
            describe(&output)
        );
        assert!(
            !site.installed().contains("edited by hand"),
            "{bad:?}: replaced"
        );
        assert_eq!(
            std::fs::read(site.path("haproxy/haproxy.cfg.bak")).unwrap(),
            edited
        );
    }
}

/// Class 4: values HAProxy or a terminal interprets never reach haproxy.cfg: an address with an
/// environment reference, tag values with `$` or bidi controls are left out; output that is not
/// UTF-8 is refused, never "repaired".
#[test]
fn class_4_values_haproxy_would_interpret_are_left_out() {
    let mut site = Site::new(
        r#"[{"id": "web-1", "address": "127.0.0.1", "port": 9001, "tags": {"Name": "web-1"}},
            {"id": "web-2", "address": "${AWS_SECRET_ACCESS_KEY}.x", "port": 9002, "tags": {"Name": "web-2"}},
            {"id": "web-3", "address": "127.0.0.1", "port": 9003, "tags": {"Name": "${HOME}"}},
            {"id": "web-4", "address": "127.0.0.1", "port": 9004, "tags": {"Name": "web\u202e4"}}]"#,
    );
    site.haproxy = QUICK_CHECK.to_owned();
    std::fs::write(
        site.path("etc/haproxy.cfg.hbs"),
        "{{#each pools}}backend {{backend}}\n{{#each servers}}    server {{name}} {{address}}:{{port}} # {{tags.Name}}\n{{/each}}{{/each}}",
    )
    .unwrap();
    let (output, _) = timed(&site, &[]);
    assert_exit(&output, 0);
    assert_eq!(
        site.installed(),
        "backend web\n    server web-1 127.0.0.1:9001 # web-1\n",
        "{}",
        describe(&output)
    );
    for id in ["web-2", "web-3", "web-4"] {
        assert!(
            stderr(&output).contains(&format!("instance `{id}` left out")),
            "{id}: {}",
            describe(&output)
        );
    }
    // Bytes that are not UTF-8 in the listing: refused as a listing, nothing changes.
    let mut listing =
        br#"[{"id": "web-1", "address": "127.0.0.1", "port": 9001, "tags": {"Name": "web"#.to_vec();
    listing.extend_from_slice(b"\xff\"}}]");
    std::fs::write(site.path("etc/instances.json"), listing).unwrap();
    let before = site.installed();
    let (output, _) = timed(&site, &[]);
    assert_exit(&output, 1);
    assert!(
        stderr(&output).contains("not the documented JSON"),
        "{}",
        describe(&output)
    );
    assert_eq!(site.installed(), before);
}

/// Class 18: a symlinked haproxy.cfg or state file is written through; the link stays a link.
#[test]
fn class_18_symlinked_files_stay_links() {
    for (case, links) in [
        ("haproxy.cfg", &["haproxy/haproxy.cfg"][..]),
        ("state", &["state/state.json"][..]),
        ("both", &["haproxy/haproxy.cfg", "state/state.json"][..]),
    ] {
        let mut site = Site::new(ONE_INSTANCE);
        site.haproxy = QUICK_CHECK.to_owned();
        std::fs::create_dir(site.path("managed")).unwrap();
        for link in links {
            let target = site.path(&format!("managed/{}", link.replace('/', "-")));
            std::os::unix::fs::symlink(&target, site.path(link)).unwrap();
        }
        let (output, _) = timed(&site, &[]);
        assert_exit(&output, 0);
        let (again, _) = timed(&site, &[]);
        assert_exit(&again, 0);
        for link in links {
            let path = site.path(link);
            assert!(
                std::fs::symlink_metadata(&path)
                    .unwrap()
                    .file_type()
                    .is_symlink(),
                "{case}: {link} is still a link"
            );
            let target = site.path(&format!("managed/{}", link.replace('/', "-")));
            assert!(
                std::fs::metadata(&target).unwrap().len() > 0,
                "{case}: {link}"
            );
        }
        assert!(site.installed().contains("server web-1"), "{case}");
    }
}

/// Class 15: a run stopped by a signal takes its commands with it, children and all, so a
/// launch left running cannot be sent again by the next run while it still runs.
#[test]
fn class_15_a_stopped_run_kills_its_commands() {
    for (signal, code) in [("TERM", 143), ("INT", 130), ("HUP", 129)] {
        let mut site = Site::new(ONE_INSTANCE);
        site.haproxy = QUICK_CHECK.to_owned();
        let pid_file = site.path("child.pid");
        let script = format!("sleep 60 & echo $! > '{}'; wait", pid_file.display());
        site.pools = site.pools.replace(
            &format!(
                "[\"cat\", \"{}\"]",
                site.path("etc/instances.json").display()
            ),
            &format!("[\"sh\", \"-c\", {script:?}]"),
        );
        site.write();
        let mut run = Command::new(binary())
            .arg("--config")
            .arg(site.config_path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while std::fs::read_to_string(&pid_file).map_or(true, |text| text.trim().is_empty()) {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(20),
                "{signal}: no child"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let child = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .to_owned();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(run.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let exit = run.wait().unwrap();
        assert_eq!(exit.code(), Some(code), "SIG{signal}");
        let mut message = String::new();
        std::io::Read::read_to_string(run.stderr.as_mut().unwrap(), &mut message).unwrap();
        assert!(
            message.contains(&format!("stopped by SIG{signal}")),
            "{message}"
        );
        let mut gone = false;
        for _ in 0..100 {
            let status =
                std::fs::read_to_string(format!("/proc/{child}/status")).unwrap_or_default();
            if status.is_empty() || status.contains("State:\tZ") {
                gone = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(
            gone,
            "SIG{signal}: the command's child {child} outlived the run"
        );
        assert!(
            !site.path("haproxy/haproxy.cfg").exists(),
            "SIG{signal}: nothing installed"
        );
    }
}

/// Class 4 (from the hostile trial): text from outside never reaches the terminal raw: an
/// instance id with an escape sequence, a command's stderr with one, a hand-edited haproxy.cfg
/// shown in `--plan`'s diff.
#[test]
fn class_4_nothing_from_outside_drives_the_terminal() {
    let escape = "\u{1b}]0;PWNED\u{7}\u{1b}[2J";
    let listing = serde_json::json!([
        {"id": "web-1", "address": "127.0.0.1", "port": 9001},
        {"id": format!("web-{escape}"), "address": "127.0.0.1", "port": 9002},
    ]);
    let mut site = Site::new(&listing.to_string());
    site.haproxy = QUICK_CHECK.to_owned();
    let (output, _) = timed(&site, &[]);
    assert_exit(&output, 0);
    let error = stderr(&output);
    assert!(
        error.contains("left out") && !error.contains('\u{1b}'),
        "{error:?}"
    );

    // A list command that fails with an escape sequence on its stderr.
    site.pools = site.pools.replace(
        &format!(
            "[\"cat\", \"{}\"]",
            site.path("etc/instances.json").display()
        ),
        &format!(
            "[\"sh\", \"-c\", {:?}]",
            "printf '\\033]0;PWN\\007boom' >&2; exit 3"
        ),
    );
    let (output, _) = timed(&site, &[]);
    assert_exit(&output, 1);
    let error = stderr(&output);
    assert!(
        error.contains("boom") && !error.contains('\u{1b}'),
        "{error:?}"
    );

    // A hand edit with an escape sequence, in --plan's diff.
    let mut site = Site::new(ONE_INSTANCE);
    site.haproxy = QUICK_CHECK.to_owned();
    assert_exit(&timed(&site, &[]).0, 0);
    let mut edited = std::fs::read_to_string(site.path("haproxy/haproxy.cfg")).unwrap();
    edited.push_str(&format!("# hand edit {escape}\n"));
    std::fs::write(site.path("haproxy/haproxy.cfg"), edited).unwrap();
    let (plan, _) = timed(&site, &["--plan"]);
    assert_exit(&plan, 0);
    let shown = super::util::stdout(&plan);
    assert!(
        shown.contains("hand edit") && !shown.contains('\u{1b}'),
        "{shown:?}"
    );
}
