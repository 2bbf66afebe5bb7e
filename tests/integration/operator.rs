//! Issue 9: the binary run the way an operator runs it — cron's environment, relative paths,
//! `--plan` before a real run, an adopted fleet with bad values, an outage, a user who cannot
//! read the state. No cloud: an exec pool lists loopback instances from a file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::util::{Ran, assert_exit, describe, exec_pool, in_ci, is_root, stderr, stdout};

/// A deployment under one folder, its config in `etc/` with paths relative to it, the shipped
/// template, the default `check_command` (Debian's `haproxy -c`), and an exec pool `web` that
/// lists `etc/instances.json`.
pub(super) struct Site {
    pub(super) dir: tempfile::TempDir,
    /// Top-level keys, before any table.
    pub(super) top: String,
    /// Extra lines for `[haproxy]`.
    pub(super) haproxy: String,
    /// The pools and anything after them.
    pub(super) pools: String,
}

impl Site {
    pub(super) fn new(instances: &str) -> Site {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["etc", "state", "haproxy"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        std::fs::copy(
            concat!(env!("CARGO_MANIFEST_DIR"), "/templates/haproxy.cfg.hbs"),
            dir.path().join("etc/haproxy.cfg.hbs"),
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/instances.json"), instances).unwrap();
        let list = dir.path().join("etc/instances.json");
        Site {
            pools: exec_pool("web", 80, "", &["cat", &list.display().to_string()], None),
            haproxy: "reload_command = [\"true\"]\n".to_owned(),
            top: String::new(),
            dir,
        }
    }

    pub(super) fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub(super) fn config_path(&self) -> PathBuf {
        self.path("etc/config.toml")
    }

    pub(super) fn write(&self) {
        let config = format!(
            "{}[state]\npath = \"../state/state.json\"\n\n[haproxy]\nconfig = \"../haproxy/haproxy.cfg\"\ntemplate = \"haproxy.cfg.hbs\"\nstats_socket = \"../haproxy/admin.sock\"\n{}\n{}",
            self.top, self.haproxy, self.pools
        );
        std::fs::write(self.config_path(), config).unwrap();
    }

    /// The binary under cron's environment (`env -i`, PATH=/usr/bin:/bin), run from `/`.
    pub(super) fn cron(&self, binary: &Path, wrapper: &[&str], args: &[&str]) -> Output {
        self.write();
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        command
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", self.dir.path())
            .current_dir("/")
            .arg("--config")
            .arg(self.config_path())
            .args(args)
            .output()
            .unwrap()
    }

    pub(super) fn run(&self, args: &[&str]) -> Ran {
        Ran(self.cron(
            &assert_cmd::cargo::cargo_bin("haproxy-autoscaler"),
            &[],
            args,
        ))
    }

    pub(super) fn installed(&self) -> String {
        std::fs::read_to_string(self.path("haproxy/haproxy.cfg")).unwrap_or_default()
    }

    /// Every notification the notify command received, as (event, text).
    fn events(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(self.path("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                let event: serde_json::Value = serde_json::from_str(line).unwrap();
                (
                    event["event"].as_str().unwrap().to_owned(),
                    event["text"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    fn notify_to_file(&mut self) {
        self.pools.push_str(&format!(
            "\n[notify]\ncommand = [\"sh\", \"-c\", \"cat >> '{}'; echo >> '{}'\"]\n",
            self.path("events.jsonl").display(),
            self.path("events.jsonl").display()
        ));
    }
}

pub(super) const ONE_INSTANCE: &str = r#"[{"id": "web-1", "address": "127.0.0.1", "port": 9001}]"#;

/// Item 4 (and 14: relative paths): the README's cron line, `haproxy-autoscaler`, under cron's
/// environment, from `/`: the default check command finds Debian's /usr/sbin/haproxy, the first
/// install succeeds and says what it did, the no-op run after it prints nothing, and with `-q`
/// a change prints nothing either.
#[test]
fn issue_9_4_the_readme_cron_line_works_under_crons_environment() {
    let site = Site::new(ONE_INSTANCE);
    let first = site.run(&[]).exits(0);
    assert!(
        stdout(&first).contains("add server web/web-1 at 127.0.0.1:9001")
            && stdout(&first).contains("reload haproxy")
            && first.stderr.is_empty(),
        "{}",
        describe(&first)
    );
    let installed = site.installed();
    assert!(
        installed.contains("server web-1 127.0.0.1:9001") && installed.contains("user haproxy"),
        "{installed}"
    );
    let again = site.run(&[]).exits(0);
    assert!(
        again.stdout.is_empty() && again.stderr.is_empty(),
        "a no-op run prints nothing: {}",
        describe(&again)
    );
    std::fs::write(
        site.path("etc/instances.json"),
        r#"[{"id": "web-1", "address": "127.0.0.1", "port": 9001}, {"id": "web-2", "address": "127.0.0.1", "port": 9002}]"#,
    )
    .unwrap();
    let quiet = site.run(&["-q"]).exits(0);
    assert!(
        quiet.stdout.is_empty() && quiet.stderr.is_empty(),
        "{}",
        describe(&quiet)
    );
    assert!(site.installed().contains("server web-2 127.0.0.1:9002"));
    // Item 14: -v times every stage and counts what it saw.
    let verbose = site.run(&["-v"]).exits(0);
    for stage in [
        "load state: ",
        "observe: ",
        "(1 pool(s), 2 instance(s))",
        "plan and render: ",
        "(2 server(s), 0 action(s))",
        "apply: ",
    ] {
        assert!(
            stderr(&verbose).contains(stage),
            "{stage}: {}",
            describe(&verbose)
        );
    }
    // A check program that is nowhere is named as such: it "could not run", not "rejected".
    let mut missing = Site::new(ONE_INSTANCE);
    missing
        .haproxy
        .push_str("check_command = [\"haproxy-nowhere\", \"-c\", \"-f\", \"{config}\"]\n");
    let output = missing.run(&[]).exits(1);
    let error = stderr(&output);
    assert!(
        error.contains("could not check") && error.contains("haproxy-nowhere` was not found"),
        "{error}"
    );
    assert!(!error.contains("rejected"), "{error}");
}

/// Item 7: `--plan` fails where the run would: a template HAProxy rejects, a missing folder for
/// haproxy.cfg. And it writes nothing while finding out.
#[test]
fn issue_9_7_plan_fails_where_the_run_fails() {
    let site = Site::new(ONE_INSTANCE);
    std::fs::write(
        site.path("etc/haproxy.cfg.hbs"),
        "global\n    no-such-keyword\n{{#each pools}}backend {{backend}}\n{{/each}}",
    )
    .unwrap();
    for args in [&["--plan"][..], &[]] {
        let output = site.run(args);
        assert_exit(&output, 1);
        assert!(
            stderr(&output).contains("rejected by the check command"),
            "{args:?}: {}",
            describe(&output)
        );
        assert!(!site.path("haproxy/haproxy.cfg").exists());
    }
    assert_eq!(std::fs::read_dir(site.path("haproxy")).unwrap().count(), 0);

    let mut site = Site::new(ONE_INSTANCE);
    site.haproxy = "reload_command = [\"true\"]\n".to_owned();
    site.write();
    let config = std::fs::read_to_string(site.config_path())
        .unwrap()
        .replace("../haproxy/haproxy.cfg", "../missing/haproxy.cfg");
    for args in [&["--plan"][..], &[]] {
        std::fs::write(site.config_path(), &config).unwrap();
        let output = Command::new(assert_cmd::cargo::cargo_bin("haproxy-autoscaler"))
            .arg("--config")
            .arg(site.config_path())
            .args(args)
            .output()
            .unwrap();
        assert_exit(&output, 1);
        assert!(
            stderr(&output).contains("missing/haproxy.cfg"),
            "{args:?}: {}",
            describe(&output)
        );
    }
}

/// Item 9: in an adopted fleet, an instance whose address tag is not `host:port` and one whose
/// `Name` (written by the template) has a space are left out with a warning naming them and the
/// value; the good servers of that pool and of the other pool sync; `skipped` is notified once
/// per instance; `--plan --format json` lists them.
#[test]
fn issue_9_9_one_bad_instance_never_stops_the_others() {
    let mut site = Site::new(
        r#"[{"id": "web-1", "address": "127.0.0.1", "port": 9001, "tags": {"endpoint": "127.0.0.1:9001", "Name": "web-1"}},
            {"id": "web-2", "address": "127.0.0.1", "tags": {"endpoint": "127.0.0.1:99999"}},
            {"id": "web-3", "address": "127.0.0.1", "tags": {"endpoint": "127.0.0.1:9003", "Name": "web three"}},
            {"id": "web-4", "address": "127.0.0.1", "tags": {"endpoint": "127.0.0.1:9004"}}]"#,
    );
    site.pools = exec_pool(
        "web",
        80,
        "address = \"tag:endpoint\"",
        &[
            "cat",
            &site.path("etc/instances.json").display().to_string(),
        ],
        None,
    );
    std::fs::write(
        site.path("etc/api.json"),
        r#"[{"id": "api-1", "address": "127.0.0.1", "port": 9101}]"#,
    )
    .unwrap();
    site.pools.push_str(&exec_pool(
        "api",
        80,
        "",
        &["cat", &site.path("etc/api.json").display().to_string()],
        None,
    ));
    site.notify_to_file();
    std::fs::write(
        site.path("etc/haproxy.cfg.hbs"),
        "{{#each pools}}backend {{backend}}\n{{#each servers}}    server {{name}} {{address}}:{{port}} # {{default tags.Name instance_id}}\n{{/each}}{{/each}}",
    )
    .unwrap();
    site.haproxy
        .push_str("check_command = [\"test\", \"-s\", \"{config}\"]\n");

    let plan = site.run(&["--plan", "--format", "json"]).exits(0);
    let document: serde_json::Value = serde_json::from_str(&stdout(&plan)).unwrap();
    let skipped: Vec<&str> = document["plan"]["pools"][0]["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|skipped| skipped["instance_id"].as_str().unwrap())
        .collect();
    assert_eq!(skipped, ["web-2", "web-3"], "{document}");

    let run = site.run(&[]).exits(0);
    let warnings = stderr(&run);
    for needed in [
        "instance `web-2` left out",
        "\"127.0.0.1:99999\"",
        "instance `web-3` left out",
        "tag `Name` = \"web three\"",
    ] {
        assert!(warnings.contains(needed), "{needed}: {}", describe(&run));
    }
    assert_eq!(
        warnings.matches("left out").count(),
        2,
        "each said once: {warnings}"
    );
    let installed = site.installed();
    assert_eq!(
        installed,
        "backend web\n    server web-1 127.0.0.1:9001 # web-1\n    server web-4 127.0.0.1:9004 # web-4\nbackend api\n    server api-1 127.0.0.1:9101 # api-1\n"
    );
    let skipped_events = |site: &Site| {
        site.events()
            .into_iter()
            .filter(|(event, _)| event == "skipped")
            .map(|(_, text)| text)
            .collect::<Vec<_>>()
    };
    let events = skipped_events(&site);
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        events[0].contains("web-2") && events[1].contains("web-3"),
        "{events:?}"
    );
    // The next run: still left out, neither said nor notified again (cron would mail it every
    // minute); -v and --plan still say it.
    let again = site.run(&[]).exits(0);
    assert!(
        again.stdout.is_empty() && again.stderr.is_empty(),
        "{}",
        describe(&again)
    );
    assert_eq!(skipped_events(&site).len(), 2);
    let verbose = site.run(&["-v"]);
    assert_eq!(
        stderr(&verbose).matches("left out").count(),
        2,
        "{}",
        describe(&verbose)
    );
    let plan = site.run(&["--plan"]);
    assert_eq!(
        stdout(&plan).matches("left out").count(),
        2,
        "{}",
        describe(&plan)
    );
}

/// Items 11 and 12: a failing run answers in JSON with `--format json`, says its error once,
/// notifies `failed` once for the outage (not every run), and `recovered` when it ends.
#[test]
fn issue_9_11_12_a_failing_run_answers_in_json_and_notifies_on_transitions() {
    let mut site = Site::new(ONE_INSTANCE);
    let healthy = site.path("etc/healthy");
    let script = format!(
        "test -f '{}' && cat '{}' || {{ echo 'inventory down' >&2; exit 3; }}",
        healthy.display(),
        site.path("etc/instances.json").display()
    );
    site.pools = exec_pool("web", 80, "", &["sh", "-c", &script], None);
    site.notify_to_file();
    site.haproxy
        .push_str("check_command = [\"test\", \"-s\", \"{config}\"]\n");
    for _ in 0..3 {
        let output = site.run(&["--format", "json"]).exits(1);
        let document: serde_json::Value = serde_json::from_str(&stdout(&output))
            .unwrap_or_else(|error| panic!("{error}: {}", describe(&output)));
        assert_eq!(document["error"]["exit_code"], 1, "{document}");
        assert!(
            document["error"]["message"]
                .as_str()
                .unwrap()
                .contains("cannot list the instances of pool `web`"),
            "{document}"
        );
        let error = stderr(&output);
        assert_eq!(
            error
                .lines()
                .filter(|line| line.contains("cannot list"))
                .count(),
            1,
            "said once: {error}"
        );
        assert!(!error.contains("WARN"), "{error}");
    }
    std::fs::write(&healthy, "").unwrap();
    site.run(&[]).exits(0);
    site.run(&[]).exits(0);
    let events: Vec<String> = site.events().into_iter().map(|(event, _)| event).collect();
    assert_eq!(events, ["failed", "recovered"]);
}

/// Item 14: a user who can read the config but not the 0600 state gets a clear answer from
/// `--plan`, not a bare "permission denied".
#[test]
fn issue_9_14_a_plan_by_a_user_who_cannot_read_the_state_says_so() {
    if !is_root() {
        assert!(!in_ci(), "CI runs the tests as root: this case needs it");
        eprintln!("not root: cannot try another user here");
        return;
    }
    let site = Site::new(ONE_INSTANCE);
    site.run(&[]).exits(0);
    // Everything readable by nobody but the state itself (0600, root's).
    let status = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(site.dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::set_permissions(
        site.path("state/state.json"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let binary = site.path("haproxy-autoscaler");
    std::fs::copy(assert_cmd::cargo::cargo_bin("haproxy-autoscaler"), &binary).unwrap();
    let output = site.cron(
        &binary,
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
        ],
        &["--plan"],
    );
    assert_exit(&output, 1);
    let error = stderr(&output);
    assert!(
        error.contains("state.json")
            && error.contains("permission denied")
            && error.contains("sudo"),
        "{}",
        describe(&output)
    );
}
