//! Issue 13: the operator's commands through the real binary — `init` writes a config that
//! `check --offline` accepts with Debian's HAProxy, `check` reports every problem it finds, and
//! `completions` and `man` are generated from the command line.

use std::process::Command;

use super::operator::{ONE_INSTANCE, Site};
use super::util::{assert_exit, describe, stderr, stdout};

pub(crate) fn binary() -> Command {
    let mut command = Command::new(assert_cmd::cargo::cargo_bin("haproxy-autoscaler"));
    command
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir("/");
    command
}

#[test]
fn init_writes_a_config_that_check_offline_accepts_and_never_overwrites() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("etc/haproxy-autoscaler");
    let init = binary().args(["init", "--dir"]).arg(&dir).output().unwrap();
    assert_exit(&init, 0);
    assert!(stdout(&init).contains("config.toml"), "{}", describe(&init));
    let config = dir.join("config.toml");
    // As written, with Debian's `haproxy -c` as its check_command (found in /usr/sbin under
    // cron's PATH too).
    let check = binary()
        .args(["check", "--offline", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_exit(&check, 0);
    assert!(stdout(&check).starts_with("ok: "), "{}", describe(&check));
    // It confirms reloads through Debian's master socket, so `check` has nothing to warn of.
    assert!(check.stderr.is_empty(), "{}", describe(&check));
    // Without `master_socket`, `check` warns that a failed load would go unseen (issue 27).
    let unconfirmed = dir.join("unconfirmed.toml");
    std::fs::write(
        &unconfirmed,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("master_socket = ", "# master_socket = "),
    )
    .unwrap();
    let check = binary()
        .args(["check", "--offline", "--config"])
        .arg(&unconfirmed)
        .output()
        .unwrap();
    assert_exit(&check, 0);
    assert!(
        String::from_utf8_lossy(&check.stderr)
            .contains("warning: without `haproxy.master_socket` a run cannot tell whether HAProxy loaded the new config"),
        "{}",
        describe(&check)
    );
    // As written it runs nothing: a run refuses before reading anything else (here: before
    // finding that no AWS region is configured).
    assert!(
        stdout(&check).contains("says `enabled = false`"),
        "{}",
        describe(&check)
    );
    let run = binary().arg("--config").arg(&config).output().unwrap();
    assert_exit(&run, 2);
    assert!(
        String::from_utf8_lossy(&run.stderr)
            .contains("says `enabled = false`, so this run did nothing"),
        "{}",
        describe(&run)
    );

    // A second init changes nothing and says which file is in the way.
    std::fs::write(&config, "# mine\n").unwrap();
    let again = binary().args(["init", "--dir"]).arg(&dir).output().unwrap();
    assert_exit(&again, 2);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("never overwrites"),
        "{}",
        describe(&again)
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), "# mine\n");

    // With --format json, what was written, as JSON.
    let json = binary()
        .args(["init", "--format", "json", "--dir"])
        .arg(root.path().join("other"))
        .output()
        .unwrap();
    assert_exit(&json, 0);
    let document: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(document["mode"], "init");
    assert_eq!(document["written"].as_array().unwrap().len(), 2);
}

#[test]
fn a_disabled_config_refuses_runs_but_still_plans() {
    let mut site = Site::new(ONE_INSTANCE);
    site.top = "enabled = false\n".to_owned();
    let run = site.run(&[]).exits(2);
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("`enabled = false`"),
        "{}",
        describe(&run)
    );
    assert_eq!(site.installed(), "");
    assert!(!site.path("state/state.json").exists());
    // --plan says what a run would do once enabled, and that it is not.
    let plan = site.run(&["--plan"]).exits(0).printed("add server web/");
    assert!(
        String::from_utf8_lossy(&plan.stderr).contains("a run would do nothing"),
        "{}",
        describe(&plan)
    );
    assert_eq!(site.installed(), "");
    // Enabled, the same config runs.
    site.top = "enabled = true\n".to_owned();
    site.run(&[]).exits(0);
    assert!(site.installed().contains("server "), "{}", site.installed());
}

#[test]
fn check_renders_against_the_discovery_and_reports_every_problem() {
    let site = Site::new(ONE_INSTANCE);
    let good = site.run(&["check"]).exits(0);
    assert!(stdout(&good).starts_with("ok: "), "{}", describe(&good));
    // `check` changes nothing: no haproxy.cfg, no state.
    assert_eq!(site.installed(), "");
    assert!(!site.path("state/state.json").exists());

    // Two problems at once: a provider that prints no JSON (discovery fails), and a template
    // line HAProxy refuses, still found by rendering against no instance.
    let template = site.path("etc/haproxy.cfg.hbs");
    let text = std::fs::read_to_string(&template).unwrap();
    std::fs::write(
        &template,
        text.replacen("bind :80", "bind :80 bogus-keyword", 1),
    )
    .unwrap();
    std::fs::write(site.path("etc/instances.json"), "not json").unwrap();
    let bad = site.run(&["check", "--format", "json"]).exits(2);
    let findings: serde_json::Value = serde_json::from_slice(&bad.stdout).unwrap();
    let problems: Vec<&str> = findings["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|problem| problem.as_str().unwrap())
        .collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].contains("cannot list the instances"),
        "{problems:?}"
    );
    assert!(
        problems[1].starts_with("against no instance") && problems[1].contains("bogus-keyword"),
        "{problems:?}"
    );
}

/// Issue 32: `completions` and `man` refuse --config and --format typed on their command line
/// (they would ignore them) with a usage error, and still work with the environment's config.
#[test]
fn a_flag_completions_or_man_would_ignore_is_refused() {
    for args in [
        &["completions", "bash", "--config", "/etc/x.toml"][..],
        &["--format", "json", "man"][..],
    ] {
        let output = binary().args(args).output().unwrap();
        assert_exit(&output, 2);
        assert!(
            stderr(&output).contains("does not use --"),
            "{}",
            describe(&output)
        );
        assert!(stdout(&output).is_empty(), "{}", describe(&output));
    }
    let output = binary()
        .env("HAPROXY_AUTOSCALER_CONFIG", "/etc/x.toml")
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert_exit(&output, 0);
}

#[test]
fn completions_and_the_man_page_come_from_the_command_line() {
    for shell in ["bash", "zsh", "fish"] {
        let output = binary().args(["completions", shell]).output().unwrap();
        assert_exit(&output, 0);
        let script = stdout(&output);
        for word in ["simulate", "check", "init", "--config"] {
            assert!(script.contains(word), "{shell} lacks {word}");
        }
    }
    // The bash script is valid bash.
    let bash = binary().args(["completions", "bash"]).output().unwrap();
    let syntax = Command::new("bash")
        .arg("-n")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(&bash.stdout)?;
            child.wait()
        })
        .unwrap();
    assert!(syntax.success());
    // And completes past the first word: a subcommand's subcommands and a sub-subcommand's
    // options (what bash does on TAB, with the words typed so far).
    let script = std::env::temp_dir().join(format!("hxa-completion-{}.bash", std::process::id()));
    std::fs::write(&script, &bash.stdout).unwrap();
    let complete = |words: &str, cword: usize, current: &str, previous: &str| {
        let output = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; _haproxy__autoscaler haproxy-autoscaler '{current}' '{previous}'; echo \"${{COMPREPLY[*]}}\"",
                script.display()
            ))
            .output()
            .unwrap();
        stdout(&output)
    };
    let hosts = complete("haproxy-autoscaler hosts ''", 2, "", "hosts");
    assert!(hosts.contains("add") && hosts.contains("remove"), "{hosts}");
    let add = complete("haproxy-autoscaler hosts add --", 3, "--", "add");
    assert!(add.contains("--pool"), "{add}");
    let check = complete("haproxy-autoscaler check --", 2, "--", "check");
    assert!(check.contains("--offline"), "{check}");
    std::fs::remove_file(&script).unwrap();
    let man = binary().arg("man").output().unwrap();
    assert_exit(&man, 0);
    let page = stdout(&man);
    assert!(page.starts_with(".ie") || page.starts_with(".TH"), "{page}");
    assert!(page.contains("haproxy\\-autoscaler") && page.contains("simulate"));
    // Issue 32: the config reference (every key of the book's reference), FILES, ENVIRONMENT.
    for section in [".SH CONFIGURATION", ".SH FILES", ".SH ENVIRONMENT"] {
        assert!(page.contains(section), "{section} missing");
    }
    let reference = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/src/reference.md"
    ))
    .unwrap();
    let plain_page = page
        .replace("\\-", "-")
        .replace("\\fB", "")
        .replace("\\fR", "");
    for key in reference
        .lines()
        .filter_map(|line| line.strip_prefix("| `")?.split('`').next())
    {
        assert!(
            plain_page.contains(&format!("\n{key}")),
            "the man page lacks `{key}`"
        );
    }
    for name in [
        "HAPROXY_AUTOSCALER_CONFIG",
        "RUST_LOG",
        "/var/lib/haproxy-autoscaler/state.json",
    ] {
        assert!(plain_page.contains(name), "the man page lacks {name}");
    }
    // With --out-dir, every page the main page's SUBCOMMANDS section names exists.
    let dir = tempfile::tempdir().unwrap();
    let pages = binary()
        .args(["man", "--out-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_exit(&pages, 0);
    let main = std::fs::read_to_string(dir.path().join("haproxy-autoscaler.1"))
        .unwrap()
        .replace("\\-", "-");
    assert!(main.contains(".SH CONFIGURATION") && main.contains(".SH ENVIRONMENT"));
    let named: Vec<&str> = main
        .split_whitespace()
        .filter(|word| word.starts_with("haproxy-autoscaler-") && word.ends_with("(1)"))
        .collect();
    assert!(named.len() >= 7, "{named:?}");
    for name in named {
        let file = name.replace("(1)", ".1");
        assert!(
            dir.path().join(&file).exists(),
            "{file} is named but not written"
        );
    }
}

/// The metrics file after a run that succeeded and one that failed, as Prometheus' own
/// `promtool check metrics` reads it.
#[test]
fn every_run_writes_a_metrics_file_that_promtool_accepts() {
    let site = Site::new(ONE_INSTANCE);
    site.write();
    std::fs::create_dir(site.path("metrics")).unwrap();
    let config = std::fs::read_to_string(site.config_path()).unwrap();
    std::fs::write(
        site.config_path(),
        format!("metrics_file = \"../metrics/haproxy_autoscaler.prom\"\n{config}"),
    )
    .unwrap();
    let metrics = site.path("metrics/haproxy_autoscaler.prom");
    let run = || {
        binary()
            .arg("--config")
            .arg(site.config_path())
            .output()
            .unwrap()
    };
    let lint = super::util::assert_promtool_accepts;

    assert_exit(&run(), 0);
    let text = std::fs::read_to_string(&metrics).unwrap();
    lint(&text);
    for line in [
        "haproxy_autoscaler_last_run_success 1",
        "haproxy_autoscaler_runs_total{result=\"success\"} 1",
        "haproxy_autoscaler_reloads_total 1",
        "haproxy_autoscaler_pool_servers{pool=\"web\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&metrics).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);

    // A run that fails (the provider's answer is not JSON) is counted, and said.
    std::fs::write(site.path("etc/instances.json"), "not json").unwrap();
    assert_exit(&run(), 1);
    let text = std::fs::read_to_string(&metrics).unwrap();
    lint(&text);
    for line in [
        "haproxy_autoscaler_last_run_success 0",
        "haproxy_autoscaler_runs_total{result=\"success\"} 1",
        "haproxy_autoscaler_runs_total{result=\"failure\"} 1",
        "haproxy_autoscaler_reloads_total 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
}

/// A static pool `web` in a [`Site`] (its config in `etc/`, paths relative to it, the shipped
/// template, HAProxy's check), its config written.
pub(crate) fn static_site() -> Site {
    let mut site = Site::new("[]");
    site.pools = "[[pool]]\nname = \"web\"\nport = 80\nprovider = \"static\"\n".to_owned();
    site.write();
    site
}

pub(crate) fn in_site(site: &Site, args: &[&str]) -> std::process::Output {
    binary()
        .arg("--config")
        .arg(site.config_path())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn hosts_add_list_and_remove_and_a_run_syncs_the_static_pool() {
    let site = static_site();
    assert_exit(
        &in_site(&site, &["hosts", "add", "web-1", "127.0.0.1:9001"]),
        0,
    );
    assert_exit(
        &in_site(&site, &["hosts", "add", "web-2", "127.0.0.1:9002"]),
        0,
    );
    // The same name twice, a name HAProxy refuses, an address that is not ADDRESS:PORT, a
    // missing host: clear errors, nothing written.
    for (args, expected) in [
        (
            &["hosts", "add", "web-1", "127.0.0.1:9009"][..],
            "already has host `web-1`",
        ),
        (
            &["hosts", "add", "a b", "127.0.0.1:9009"][..],
            "cannot be an HAProxy server name",
        ),
        (
            &["hosts", "add", "web-3", "127.0.0.1:70000"][..],
            "port 70000",
        ),
        (&["hosts", "add", "web-3", "127.0.0.1"][..], "no `:PORT`"),
        (&["hosts", "remove", "web-9"][..], "has no host `web-9`"),
        (
            &["hosts", "add", ".hidden", "127.0.0.1:9009"][..],
            "not starting with `.`",
        ),
        (
            &["hosts", "remove", "../etc/config.toml"][..],
            "has no host",
        ),
    ] {
        let output = in_site(&site, args);
        assert_exit(&output, 2);
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(expected),
            "{args:?}: {}",
            describe(&output)
        );
    }
    let list = in_site(&site, &["hosts", "list", "--format", "json"]);
    assert_exit(&list, 0);
    let hosts: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(
        hosts,
        serde_json::json!([
            {"pool": "web", "name": "web-1", "address": "127.0.0.1:9001"},
            {"pool": "web", "name": "web-2", "address": "127.0.0.1:9002"},
        ])
    );
    let servers = |site: &Site| -> Vec<String> {
        std::fs::read_to_string(site.path("haproxy/haproxy.cfg"))
            .unwrap()
            .lines()
            .filter(|line| line.trim_start().starts_with("server "))
            .map(|line| line.trim().to_owned())
            .collect()
    };
    assert_exit(&in_site(&site, &[]), 0);
    assert_eq!(
        servers(&site),
        ["server web-1 127.0.0.1:9001", "server web-2 127.0.0.1:9002"]
    );
    let removed = in_site(&site, &["hosts", "remove", "web-2", "--format", "json"]);
    assert_exit(&removed, 0);
    let document: serde_json::Value = serde_json::from_slice(&removed.stdout).unwrap();
    assert_eq!(document["removed"]["name"], "web-2");
    assert_exit(&in_site(&site, &[]), 0);
    assert_eq!(servers(&site), ["server web-1 127.0.0.1:9001"]);
}

#[test]
fn a_hosts_command_waits_for_no_run_it_finds_the_lock_busy() {
    let site = static_site();
    let lock = std::fs::File::create(site.path("state/state.json.lock")).unwrap();
    fs2::FileExt::try_lock_exclusive(&lock).unwrap();
    let busy = in_site(&site, &["hosts", "add", "web-1", "127.0.0.1:9001"]);
    assert_exit(&busy, 75);
    // Typed by a person: the reason is said (a run that finds the lock busy says nothing).
    assert!(!busy.stderr.is_empty(), "{}", describe(&busy));
    assert!(!site.path("etc/hosts.d/web-1").exists());
    fs2::FileExt::unlock(&lock).unwrap();
    assert_exit(
        &in_site(&site, &["hosts", "add", "web-1", "127.0.0.1:9001"]),
        0,
    );
}
