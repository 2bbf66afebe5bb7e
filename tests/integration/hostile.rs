//! Hostile inputs: each is a clear error naming what is wrong, and nothing is touched.
//!
//! The corpus is the files under `tests/hostile/<kind>/`; `tests/hostile/expect.toml` says, for
//! each file, the exit code and what stderr must name. Every file must have an entry and every
//! entry a file. A deployment first runs once with good inputs (so there is a state file and an
//! installed haproxy.cfg to protect), then one input is replaced by the hostile file and the
//! binary runs again; the files the run may write must be byte for byte what they were.
//! The environment cases (sockets, commands, a read-only folder) are the tests further down.

use std::collections::BTreeMap;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use serde::Deserialize;

use haproxy_autoscaler::testing::FakeAdminSocket;

use super::util::{Deployment, assert_exit, describe, exec_pool, is_root, stderr, stdout};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hostile");
const KINDS: [&str; 5] = ["config", "template", "state", "instances", "stats"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    exit: i32,
    stderr: Vec<String>,
}

fn expectations() -> BTreeMap<String, BTreeMap<String, Expect>> {
    let text = std::fs::read_to_string(Path::new(CORPUS).join("expect.toml")).unwrap();
    toml::from_str(&text).unwrap()
}

fn files(kind: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(CORPUS).join(kind))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
}

const TEMPLATE: &str = "{{#each pools}}backend {{backend}}\n{{#each servers}}    server {{name}} {{address}}:{{port}}{{#if tags.Name}} # {{tags.Name}}{{/if}}\n{{/each}}{{/each}}";
const INSTANCES: &str =
    r#"[{"id": "i-1", "address": "127.0.0.1", "port": 9001, "tags": {"Name": "web-1"}}]"#;

/// An exec-provider deployment whose `list` prints `instances.json`, after one good run.
fn protected(scaling: &str, haproxy: &str) -> Deployment {
    let mut deployment = Deployment::new("http://127.0.0.1:9");
    deployment.template = TEMPLATE.to_owned();
    deployment.haproxy_toml.push_str(haproxy);
    let instances = deployment.path("instances.json").display().to_string();
    deployment.pool_toml = exec_pool(
        "web",
        80,
        "ready_check = \"none\"",
        &["cat", &instances],
        Some((&["false"], &["false"])),
    ) + scaling;
    std::fs::write(deployment.path("instances.json"), INSTANCES).unwrap();
    deployment.run(&[]).exits(0);
    assert!(deployment.haproxy_cfg().exists() && deployment.state_path().exists());
    deployment
}

/// Runs with the files as they are now; asserts the exit code and that nothing changed.
fn run_untouched(deployment: &Deployment, code: i32, label: &str) -> Output {
    let before = deployment.snapshot();
    let output = deployment.command().output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(code),
        "{label}: {}",
        describe(&output)
    );
    assert_eq!(
        deployment.snapshot(),
        before,
        "{label}: a file changed\n{}",
        describe(&output)
    );
    output
}

fn assert_names(output: &Output, expect: &Expect, label: &str) {
    let error = stderr(output);
    // Corpus files mark a secret with this text: it never reaches any output (issue 10, class 5).
    assert!(
        !error.contains("T0KEN-SECRET") && !stdout(output).contains("T0KEN-SECRET"),
        "{label}: a secret was printed:\n{error}"
    );
    for needle in &expect.stderr {
        assert!(
            error.contains(needle.as_str()),
            "{label}: stderr does not name {needle:?}:\n{error}"
        );
    }
}

/// An admin socket that answers `show info` with a live worker and `show stat` with `stat`.
fn fake_admin_socket(path: &Path, stat: &[u8]) {
    FakeAdminSocket::start(path).set_stat(stat);
}

#[test]
fn every_hostile_input_in_the_corpus_is_a_clear_error_and_touches_nothing() {
    let mut expected = expectations();
    let mut tried = BTreeMap::new();
    for kind in KINDS {
        let mut cases = expected.remove(kind).unwrap_or_default();
        for file in files(kind) {
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            let label = format!("{kind}/{name}");
            let expect = cases
                .remove(&name)
                .unwrap_or_else(|| panic!("{label} has no entry in tests/hostile/expect.toml"));
            let bytes = std::fs::read(&file).unwrap();
            let output = match kind {
                "config" => {
                    let deployment = protected("", "");
                    let text = String::from_utf8_lossy(&bytes)
                        .replace("@DIR@", &deployment.dir.path().display().to_string());
                    let text = if name == "not-utf8.toml" {
                        bytes.clone()
                    } else {
                        text.into_bytes()
                    };
                    std::fs::write(deployment.config_path(), text).unwrap();
                    let output = run_untouched(&deployment, expect.exit, &label);
                    assert!(
                        stderr(&output).contains(&deployment.config_path().display().to_string()),
                        "{label}: the error does not name the config file:\n{}",
                        stderr(&output)
                    );
                    output
                }
                "template" => {
                    let deployment = protected("", "");
                    std::fs::write(deployment.path("etc/haproxy.cfg.hbs"), &bytes).unwrap();
                    run_untouched(&deployment, expect.exit, &label)
                }
                "state" => {
                    let deployment = protected("", "");
                    std::fs::write(deployment.state_path(), &bytes).unwrap();
                    run_untouched(&deployment, expect.exit, &label)
                }
                "instances" => {
                    let deployment = protected("", "");
                    std::fs::write(deployment.path("instances.json"), &bytes).unwrap();
                    run_untouched(&deployment, expect.exit, &label)
                }
                "stats" => {
                    // Scaling on, stats unusable: no decision (invariant 7), nothing changes.
                    let socket = tempfile::tempdir().unwrap();
                    let path = socket.path().join("admin.sock");
                    fake_admin_socket(&path, &bytes);
                    let deployment = protected(
                        "[pool.scaling]\nmin = 1\nmax = 3\nscale_up_above = 20\nscale_down_below = 5\nwarmup_s = 0\n",
                        &format!("stats_socket = \"{}\"\n", path.display()),
                    );
                    let output = run_untouched(&deployment, expect.exit, &label);
                    assert!(stdout(&output).is_empty(), "{label}: {}", describe(&output));
                    assert!(
                        stderr(&output).contains("no scaling decision this run"),
                        "{label}: {}",
                        describe(&output)
                    );
                    output
                }
                _ => unreachable!(),
            };
            assert_names(&output, &expect, &label);
            *tried.entry(kind).or_insert(0) += 1;
        }
        assert!(
            cases.is_empty(),
            "entries without a file under tests/hostile/{kind}: {:?}",
            cases.keys()
        );
    }
    assert!(expected.is_empty(), "unknown kinds: {:?}", expected.keys());
    let total: usize = tried.values().sum();
    eprintln!("hostile inputs tried: {total} {tried:?}");
    assert!(total >= 70, "{tried:?}");
}

#[test]
fn enormous_stats_output_is_refused_without_reading_it_all() {
    let socket = tempfile::tempdir().unwrap();
    let path = socket.path().join("admin.sock");
    let header = "# pxname,svname,qcur,scur,stot,status\n";
    let line = "web,i-1,0,0,0,UP\n";
    let mut stat = header.as_bytes().to_vec();
    while stat.len() <= haproxy_autoscaler::surface::haproxy::stats::MAX_STATS_BYTES {
        stat.extend_from_slice(line.as_bytes());
    }
    fake_admin_socket(&path, &stat);
    let deployment = protected(
        "[pool.scaling]\nmin = 1\nmax = 3\nscale_up_above = 20\nscale_down_below = 5\nwarmup_s = 0\n",
        &format!("stats_socket = \"{}\"\n", path.display()),
    );
    let output = run_untouched(&deployment, 0, "enormous show stat");
    assert!(
        stderr(&output).contains("more than the 33554432 accepted"),
        "{}",
        describe(&output)
    );
}

/// The stats socket: missing, refusing, not ours to open, or never answering. Each only stops
/// scaling for this run, with a warning naming the socket; nothing changes, and the run ends in
/// bounded time.
#[test]
fn a_dead_stats_socket_stops_scaling_and_nothing_else() {
    let sockets = tempfile::tempdir().unwrap();
    let missing = sockets.path().join("missing.sock");
    let refused = sockets.path().join("refused.sock");
    drop(UnixListener::bind(&refused).unwrap());
    let hangs = sockets.path().join("hangs.sock");
    let listener = UnixListener::bind(&hangs).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    for (socket, expected) in [
        (&missing, "No such file or directory"),
        (&refused, "Connection refused"),
        (&hangs, "within"),
    ] {
        let deployment = protected(
            "[pool.scaling]\nmin = 1\nmax = 3\nscale_up_above = 20\nscale_down_below = 5\nwarmup_s = 0\n",
            &format!("stats_socket = \"{}\"\n", socket.display()),
        );
        let started = Instant::now();
        let output = run_untouched(&deployment, 0, expected);
        assert!(started.elapsed() < Duration::from_secs(20));
        let error = stderr(&output);
        // Issue 32: one diagnostic style, the log's lines too.
        assert!(
            error
                .lines()
                .any(|line| line.starts_with("warning: no scaling decision this run")),
            "{}",
            describe(&output)
        );
        assert!(
            error.contains("no scaling decision this run")
                && error.contains(&socket.display().to_string())
                && error.contains(expected),
            "{}",
            describe(&output)
        );
    }
}

/// Permission denied needs a user the socket's mode shuts out: as root (CI), the run drops to
/// `nobody` with setpriv; as anyone else, mode 000 is enough.
#[test]
fn a_stats_socket_we_may_not_open_stops_scaling_and_nothing_else() {
    let deployment = protected("", "");
    let socket = deployment.path("haproxy/admin.sock");
    let _listener = UnixListener::bind(&socket).unwrap();
    let root = is_root();
    let mut scaling = deployment;
    scaling.pool_toml.push_str(
        "[pool.scaling]\nmin = 1\nmax = 3\nscale_up_above = 20\nscale_down_below = 5\nwarmup_s = 0\n",
    );
    scaling
        .haproxy_toml
        .push_str(&format!("stats_socket = \"{}\"\n", socket.display()));
    scaling.write();
    std::fs::set_permissions(&socket, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    let mut command = if root {
        // nobody must reach the deployment's files, but not the socket.
        let status = std::process::Command::new("chmod")
            .args(["-R", "a+rwX"])
            .arg(scaling.dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::set_permissions(&socket, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        // A copy of the binary nobody can run, wherever the checkout is (/root is 0700).
        let binary = scaling.path("haproxy-autoscaler");
        std::fs::copy(assert_cmd::cargo::cargo_bin("haproxy-autoscaler"), &binary).unwrap();
        std::fs::set_permissions(&binary, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        scaling.wrapped_command(
            &[
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--",
            ],
            &binary,
        )
    } else {
        scaling.std_command()
    };
    let output = command.output().unwrap();
    assert_exit(&output, 0);
    let error = stderr(&output);
    assert!(
        error.contains("no scaling decision this run") && error.contains("Permission denied"),
        "{}",
        describe(&output)
    );
}

/// The check and reload commands: missing, failing, hanging. Each fails the run (exit 1),
/// names the command, ends within the timeout, and leaves HAProxy's config as it was: a
/// rejected candidate is never installed; after a failed reload the previous file is restored.
#[test]
fn check_and_reload_commands_that_are_missing_fail_or_hang_change_nothing() {
    let commands = [
        (
            "check_command",
            "[\"/nonexistent/haproxy\", \"-c\", \"{config}\"]",
            "/nonexistent/haproxy",
        ),
        ("check_command", "[\"false\", \"{config}\"]", "`false "),
        (
            "check_command",
            "[\"sh\", \"-c\", \"sleep 30\", \"{config}\"]",
            "sleep 30",
        ),
        (
            "reload_command",
            "[\"/nonexistent/reload\"]",
            "/nonexistent/reload",
        ),
        ("reload_command", "[\"false\"]", "`false`"),
        ("reload_command", "[\"sleep\", \"30\"]", "sleep 30"),
    ];
    for (key, argv, named) in commands {
        let mut deployment = protected("", "");
        let installed = std::fs::read(deployment.haproxy_cfg()).unwrap();
        let state = std::fs::read(deployment.state_path()).unwrap();
        let lines: Vec<String> = deployment
            .haproxy_toml
            .lines()
            .filter(|line| !line.starts_with(key))
            .map(str::to_owned)
            .collect();
        deployment.haproxy_toml = format!(
            "{}\n{key} = {argv}\ncommand_timeout_s = 2\n",
            lines.join("\n")
        );
        // A second instance, so the run has a new config to check and reload.
        std::fs::write(
            deployment.path("instances.json"),
            r#"[{"id": "i-1", "address": "127.0.0.1", "port": 9001}, {"id": "i-2", "address": "127.0.0.1", "port": 9002}]"#,
        )
        .unwrap();
        let started = Instant::now();
        let output = deployment.run(&[]);
        let took = started.elapsed();
        assert_exit(&output, 1);
        assert!(
            stderr(&output).contains(named),
            "{key} = {argv}: {}",
            describe(&output)
        );
        assert!(
            took < Duration::from_secs(10),
            "{key} = {argv}: took {took:?}"
        );
        assert_eq!(
            std::fs::read(deployment.haproxy_cfg()).unwrap(),
            installed,
            "{key} = {argv}: haproxy.cfg is not the previous one"
        );
        assert_eq!(
            std::fs::read(deployment.state_path()).unwrap(),
            state,
            "{key} = {argv}: the state changed"
        );
        for entry in std::fs::read_dir(deployment.path("haproxy")).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let temporary = std::path::Path::new(&name).extension() == Some("tmp".as_ref());
            assert!(!temporary, "{key} = {argv}: left {name}");
        }
    }
}

/// A read-only config folder (a read-only bind mount, which binds root too): the run fails
/// naming the folder, and the installed file and the state are untouched.
#[test]
fn a_read_only_config_folder_is_a_clear_error() {
    if !is_root() {
        assert!(
            !super::util::in_ci(),
            "CI runs as root, which this test needs for a read-only bind mount"
        );
        eprintln!("skipped: needs root for a read-only bind mount");
        return;
    }
    let deployment = protected("", "");
    std::fs::write(
        deployment.path("instances.json"),
        r#"[{"id": "i-1", "address": "127.0.0.1", "port": 9001}, {"id": "i-2", "address": "127.0.0.1", "port": 9002}]"#,
    )
    .unwrap();
    let before = deployment.snapshot();
    let folder = deployment.path("haproxy");
    let mount = "mount --bind -o ro \"$1\" \"$1\" && exec \"$2\"";
    let folder_arg = folder.display().to_string();
    let output = deployment
        .wrapped_command(
            &["unshare", "-m", "--", "sh", "-c", mount, "sh", &folder_arg],
            &assert_cmd::cargo::cargo_bin("haproxy-autoscaler"),
        )
        .output()
        .unwrap();
    assert_exit(&output, 1);
    assert!(
        stderr(&output).contains(&folder.display().to_string())
            && stderr(&output).contains("Read-only file system"),
        "{}",
        describe(&output)
    );
    assert_eq!(deployment.snapshot(), before);
}
