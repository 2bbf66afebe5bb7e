//! Issue 29: hostile input on the surfaces added since issue 10, by class, through the real
//! binary. Tests that need a server or a race live beside their surface and are named in the
//! issue's note: class 2's network answers in `external_metrics.rs` and `shared_state.rs`,
//! class 1's `--plot` in `simulate.rs`, class 6's shared `local_path` in `shared_state.rs`.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::operator::{ONE_INSTANCE, Site};
use super::util::{assert_exit, describe, stderr, stdout};

fn binary() -> std::path::PathBuf {
    assert_cmd::cargo::cargo_bin("haproxy-autoscaler")
}

/// `[haproxy]` lines for runs that need no real HAProxy.
const QUICK_CHECK: &str =
    "check_command = [\"test\", \"-s\", \"{config}\"]\nreload_command = [\"true\"]\n";

/// The names in `dir`.
fn names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Class 1: an output whose path holds something that is not a regular file is refused without
/// being opened (a FIFO would hang the run, a device would be replaced): the state's lock, the
/// manual pages; and `init` never writes one file as two outputs.
#[test]
fn class_1_outputs_never_open_or_replace_what_is_not_a_regular_file() {
    let fifo = haproxy_autoscaler::testing::fifo;
    // A FIFO where the state's lock file goes: refused at once, nothing done.
    let mut site = Site::new(ONE_INSTANCE);
    site.haproxy = QUICK_CHECK.to_owned();
    site.write();
    fifo(&site.path("state/state.json.lock"));
    let started = Instant::now();
    let output = site.run(&[]).exits(1);
    assert!(
        stderr(&output).contains("state.json.lock") && started.elapsed() < Duration::from_secs(20),
        "{}",
        describe(&output)
    );
    assert!(!site.path("haproxy/haproxy.cfg").exists());
    // A symlink to a device there: refused before it is opened (opening a device can act on it).
    std::fs::remove_file(site.path("state/state.json.lock")).unwrap();
    std::os::unix::fs::symlink("/dev/null", site.path("state/state.json.lock")).unwrap();
    site.run(&[]).exits(1).said("not a regular file");
    assert!(!site.path("haproxy/haproxy.cfg").exists());

    // A FIFO among the manual pages: refused, left a FIFO; the other pages are regular files.
    let dir = tempfile::tempdir().unwrap();
    fifo(&dir.path().join("haproxy-autoscaler.1"));
    let output = Command::new(binary())
        .args(["man", "--out-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_exit(&output, 1);
    assert!(
        stderr(&output).contains("is not a regular file"),
        "{}",
        describe(&output)
    );
    use std::os::unix::fs::FileTypeExt;
    let kind = std::fs::symlink_metadata(dir.path().join("haproxy-autoscaler.1")).unwrap();
    assert!(kind.file_type().is_fifo());
    // Without it, every page is written, as plain files.
    std::fs::remove_file(dir.path().join("haproxy-autoscaler.1")).unwrap();
    assert_exit(
        &Command::new(binary())
            .args(["man", "--out-dir"])
            .arg(dir.path())
            .output()
            .unwrap(),
        0,
    );
    let pages = names(dir.path());
    assert!(
        pages.contains(&"haproxy-autoscaler.1".to_owned())
            && pages.contains(&"haproxy-autoscaler-hosts-add.1".to_owned())
            && pages.iter().all(|page| page.ends_with(".1")),
        "{pages:?}"
    );

    // `--config` naming the template's file: init would write the config, then find it as the
    // template. Refused before anything is written.
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(binary())
        .arg("--config")
        .arg(dir.path().join("haproxy.cfg.hbs"))
        .arg("init")
        .output()
        .unwrap();
    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("would be both the config and the template"),
        "{}",
        describe(&output)
    );
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
}

/// Class 6: writers at the same moment never remove each other's temporary files. Eight
/// `init --dir D` at once: one writes both files, the others exit 2 saying they exist, no
/// temporary file is left, and none is removed as "left by an interrupted run" (a fresh-eyes
/// trial saw a loser remove a winner's file in the instant between its creation and its lock).
/// A live temporary file of another writer (its lock held) beside haproxy.cfg is left alone by
/// a run; one whose writer is gone is removed with a warning.
#[test]
fn class_6_concurrent_writers_never_remove_each_others_temporary_files() {
    let template = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/templates/haproxy.cfg.hbs"
    ))
    .unwrap();
    for round in 0..40 {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("etc");
        let children: Vec<_> = (0..8)
            .map(|_| {
                Command::new(binary())
                    .args(["init", "--dir"])
                    .arg(&dir)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let outputs: Vec<Output> = children
            .into_iter()
            .map(|child| child.wait_with_output().unwrap())
            .collect();
        let won: Vec<&Output> = outputs.iter().filter(|o| o.status.success()).collect();
        assert_eq!(won.len(), 1, "round {round}: {outputs:#?}");
        for output in &outputs {
            assert!(
                !stderr(output).contains("interrupted run"),
                "round {round}: {}",
                describe(output)
            );
        }
        for lost in outputs.iter().filter(|o| !o.status.success()) {
            assert_exit(lost, 2);
            assert!(
                stderr(lost).contains("exists; init never overwrites a file"),
                "round {round}: {}",
                describe(lost)
            );
        }
        assert!(stdout(won[0]).contains("wrote"), "{}", describe(won[0]));
        assert_eq!(
            names(&dir),
            ["config.toml", "haproxy.cfg.hbs"],
            "round {round}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("haproxy.cfg.hbs")).unwrap(),
            template
        );
    }

    // A run beside another writer's live temporary file, and a crashed writer's.
    let mut site = Site::new(ONE_INSTANCE);
    site.haproxy = QUICK_CHECK.to_owned();
    site.write();
    let live = site.path("haproxy/.haproxy.cfg.live01.tmp");
    let crashed = site.path("haproxy/.haproxy.cfg.dead01.tmp");
    std::fs::write(&live, "being written").unwrap();
    std::fs::write(&crashed, "half writ").unwrap();
    // Both written an hour ago; only the lock tells them apart.
    let an_hour_ago = std::time::SystemTime::now() - Duration::from_hours(1);
    for path in [&live, &crashed] {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(an_hour_ago).unwrap();
    }
    let held = std::fs::File::open(&live).unwrap();
    fs2::FileExt::lock_exclusive(&held).unwrap();
    let output = site.run(&[]).exits(0);
    assert!(live.exists(), "a live temporary file was removed");
    assert!(!crashed.exists(), "{}", describe(&output));
    assert!(
        stderr(&output).contains(".haproxy.cfg.dead01.tmp`, left by an interrupted run"),
        "{}",
        describe(&output)
    );
    assert!(!stderr(&output).contains("live01"), "{}", describe(&output));
    drop(held);
}

/// Nothing a terminal acts on: no control character but newlines and tabs, no C1, no bidi or
/// format character.
fn inert(text: &str) -> bool {
    text.chars().all(|c| {
        c == '\n'
            || c == '\t'
            || !(c.is_control() || haproxy_autoscaler::surface::model::is_format_character(c))
    })
}

/// Class 4: text from outside never reaches the terminal raw, in text or in JSON: a host
/// file's control bytes in `hosts list`, a config value with a right-to-left override in the
/// error that refuses it, a metric command's output with ESC, BEL, NUL, SOH and CR in `--plan`
/// and `check`. Each JSON document still parses to the outside text, escaped only for the
/// terminal.
#[test]
fn class_4_outside_text_reaches_the_terminal_escaped_in_text_and_json() {
    let hostile = "\u{1b}]0;owned\u{7}\u{0}\u{1}\r\u{7f}\u{85}\u{202e}gnp.exe";
    // A host file with control bytes: listed, and left out, escaped.
    let mut site = Site::new(ONE_INSTANCE);
    site.haproxy = QUICK_CHECK.to_owned();
    site.pools = "[[pool]]\nname = \"web\"\nport = 80\nprovider = \"static\"\n".to_owned();
    std::fs::create_dir(site.path("etc/hosts.d")).unwrap();
    std::fs::write(site.path("etc/hosts.d/web-1"), "127.0.0.1:9001\n").unwrap();
    std::fs::write(site.path("etc/hosts.d/bad"), format!("{hostile}\n")).unwrap();
    let mut outputs = Vec::new();
    for args in [
        &["hosts", "list"][..],
        &["hosts", "list", "--format", "json"],
        &["--plan"],
        &["--plan", "--format", "json"],
    ] {
        let output = site.run(args);
        assert_exit(&output, 0);
        outputs.push((format!("hosts file, {args:?}"), output));
    }
    let listed: serde_json::Value = serde_json::from_slice(&outputs[1].1.stdout).unwrap();
    let bad = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|host| host["name"] == "bad")
        .unwrap();
    assert!(
        bad["address"].as_str().unwrap().contains(hostile),
        "JSON keeps the text: {bad}"
    );

    // A config value with U+202E: refused, the value escaped in the error.
    let mut site = Site::new(ONE_INSTANCE);
    site.haproxy = QUICK_CHECK.to_owned();
    // TOML's escapes for the same characters (a TOML string cannot hold them raw).
    let escaped = "\\u001b]0;owned\\u0007\\u0000\\u0001\\r\\u007f\\u0085\\u202egnp.exe";
    site.pools = site
        .pools
        .replace("name = \"web\"", &format!("name = \"web{escaped}\""));
    for args in [&[][..], &["--format", "json"], &["check"]] {
        let output = site.run(args);
        assert_exit(&output, 2);
        outputs.push((format!("config value, {args:?}"), output));
    }

    // A metric command printing control characters: --plan holds and says why, check warns.
    let mut site = Site::new(ONE_INSTANCE);
    site.haproxy = QUICK_CHECK.to_owned();
    std::fs::write(site.path("etc/metric"), format!("{hostile}\n")).unwrap();
    // The pool can launch and terminate (`false`: the plan holds, nothing is called).
    site.pools
        .push_str("launch = [\"false\"]\nterminate = [\"false\"]\n");
    site.pools.push_str(&format!(
        "[pool.scaling]\nmin = 1\nmax = 3\nmetric = \"command\"\nmetric_command = [\"cat\", \"{}\"]\nper_server = true\ntarget = 10\n",
        site.path("etc/metric").display()
    ));
    for args in [
        &["--plan"][..],
        &["--plan", "--format", "json"],
        &["check", "--offline"],
        &["check", "--format", "json"],
    ] {
        let output = site.run(args);
        outputs.push((format!("metric command, {args:?}"), output));
    }
    for (label, output) in &outputs {
        for (stream, text) in [("stdout", stdout(output)), ("stderr", stderr(output))] {
            assert!(inert(&text), "{label}, {stream}: {text:?}");
        }
        if label.contains("json") {
            serde_json::from_slice::<serde_json::Value>(&output.stdout)
                .unwrap_or_else(|error| panic!("{label}: {error}: {}", describe(output)));
        }
    }
    // And they said something about it.
    let said = |label: &str, needle: &str| {
        let (_, output) = outputs.iter().find(|(l, _)| l == label).unwrap();
        assert!(
            describe(output).contains(needle),
            "{label}: {}",
            describe(output)
        );
    };
    said("hosts file, [\"hosts\", \"list\"]", "\\u{202e}gnp.exe");
    said("config value, []", "\\u{202e}");
    said("metric command, [\"--plan\"]", "no metric this run");
}

/// Class 3: one bad item never stops the others nor poisons later runs. Host files that are not
/// UTF-8, too large (2 MB) or not `ADDRESS:PORT` are left out with a warning each while the good
/// ones are synced, listed and planned; counters carried from a previous metrics file that are
/// `NaN`, `1e400` (infinite) or negative start again from 0 with a warning, and the others go on.
#[test]
fn class_3_one_bad_item_never_stops_the_others() {
    let mut site = Site::new(ONE_INSTANCE);
    site.haproxy = QUICK_CHECK.to_owned();
    site.top = format!(
        "metrics_file = \"{}\"\n",
        site.path("state/metrics.prom").display()
    );
    site.pools = "[[pool]]\nname = \"web\"\nport = 80\nprovider = \"static\"\n".to_owned();
    let hosts = site.path("etc/hosts.d");
    std::fs::create_dir(&hosts).unwrap();
    std::fs::write(hosts.join("web-1"), "127.0.0.1:9001\n").unwrap();
    std::fs::write(hosts.join("web-2"), "127.0.0.1:9002\n").unwrap();
    std::fs::write(hosts.join("latin1"), b"127.0.0.1:9003 # caf\xe9\n").unwrap();
    std::fs::write(hosts.join("huge"), vec![b'1'; 2 << 20]).unwrap();
    std::fs::write(hosts.join("garbage"), "not an address at all\n").unwrap();
    // Entries that are not regular files are left out with a warning too, never silently; a
    // link to a host file kept elsewhere is a host (found by a fresh-eyes trial: all were
    // dropped without a word, and `hosts add` / `remove` could not touch them).
    haproxy_autoscaler::testing::fifo(&hosts.join("fifo"));
    std::os::unix::fs::symlink("/dev/zero", hosts.join("zero")).unwrap();
    std::fs::create_dir(hosts.join("folder")).unwrap();
    std::os::unix::fs::symlink("nowhere", hosts.join("dangling")).unwrap();
    std::fs::write(site.path("etc/web-3.host"), "127.0.0.1:9004\n").unwrap();
    std::os::unix::fs::symlink("../web-3.host", hosts.join("web-3")).unwrap();
    std::fs::write(
        site.path("state/metrics.prom"),
        "haproxy_autoscaler_reloads_total NaN\nhaproxy_autoscaler_launched_instances_total 1e400\n\
         haproxy_autoscaler_runs_total{result=\"failure\"} -3\nhaproxy_autoscaler_runs_total{result=\"success\"} 41\n",
    )
    .unwrap();

    let list = site.run(&["hosts", "list"]).exits(0);
    // A file that cannot be read as a host is warned about and listed with why; so is one that
    // reads but is not a host.
    for (name, why) in [
        ("latin1", "it is not valid UTF-8"),
        ("huge", "larger than 65536 bytes"),
        ("fifo", "not a regular file"),
        ("zero", "not a regular file"),
        ("folder", "not a regular file"),
        ("dangling", "No such file"),
    ] {
        assert!(
            stderr(&list).contains(&format!("hosts.d/{name}` left out: {why}")),
            "{name}: {}",
            describe(&list)
        );
        assert!(
            stdout(&list)
                .lines()
                .any(|line| line.contains(name) && line.contains(why)),
            "{name}: {}",
            describe(&list)
        );
    }
    assert!(
        stdout(&list)
            .lines()
            .any(|line| line.contains("garbage") && line.contains("left out")),
        "{}",
        describe(&list)
    );
    for name in ["web-1", "web-2", "web-3"] {
        assert!(stdout(&list).contains(name), "{}", describe(&list));
    }
    let json = site.run(&["hosts", "list", "--format", "json"]);
    let listed: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 10, "{listed}");
    let plan = site.run(&["--plan"]).exits(0);
    assert!(
        stdout(&plan).contains("add server web/web-1")
            && stdout(&plan).contains("add server web/web-2"),
        "{}",
        describe(&plan)
    );

    let run = site.run(&[]).exits(0);
    let installed = site.installed();
    assert!(
        installed.contains("127.0.0.1:9001")
            && installed.contains("127.0.0.1:9002")
            && installed.contains("127.0.0.1:9004"),
        "{installed}"
    );
    assert!(!installed.contains("9003"), "{installed}");
    for name in [
        "latin1", "huge", "garbage", "fifo", "zero", "folder", "dangling",
    ] {
        assert!(
            stderr(&run).contains(&format!("{name}`")),
            "{name}: {}",
            describe(&run)
        );
    }
    let metrics = std::fs::read_to_string(site.path("state/metrics.prom")).unwrap();
    for (series, value) in [
        ("haproxy_autoscaler_reloads_total ", "1"),
        ("haproxy_autoscaler_launched_instances_total ", "0"),
        ("haproxy_autoscaler_runs_total{result=\"failure\"} ", "0"),
        ("haproxy_autoscaler_runs_total{result=\"success\"} ", "42"),
    ] {
        assert!(
            metrics.contains(&format!("{series}{value}\n")),
            "{series}{value}:\n{metrics}"
        );
    }
    // The odd entries can be removed by name (a link itself, not what it points to); a folder
    // is not a host file and is not removed.
    for name in ["fifo", "zero", "dangling"] {
        site.run(&["hosts", "remove", name]).exits(0);
        assert!(hosts.join(name).symlink_metadata().is_err(), "{name}");
    }
    assert!(std::path::Path::new("/dev/zero").exists());
    site.run(&["hosts", "remove", "folder"]).exits(2);
    for counter in ["reloads_total", "launched_instances_total", "runs_total"] {
        assert!(
            stderr(&run).contains(counter) && stderr(&run).contains("starts again from 0"),
            "{counter}: {}",
            describe(&run)
        );
    }
}

/// Class 5: a command that exits 0 and leaves a child holding both its stdout and its stderr
/// (ssh ControlPersist, a cache daemon) costs one 2 s drain, not 2 s per pipe one after the
/// other: the `list` command, the metric command and the reload command of one run each do it.
/// Three drains take about 6 s; read one pipe after the other they took about 12 s.
#[test]
fn class_5_a_child_holding_both_pipes_costs_one_drain_per_command() {
    let mut site = Site::new(ONE_INSTANCE);
    let list = site.path("etc/instances.json").display().to_string();
    let metric = site.path("etc/metric").display().to_string();
    std::fs::write(&metric, "5\n").unwrap();
    // The backgrounded sleep inherits both pipes and outlives the command.
    let leaving = |script: &str| format!("[\"sh\", \"-c\", {:?}]", format!("{script}; sleep 30 &"));
    site.haproxy = format!(
        "check_command = [\"test\", \"-s\", \"{{config}}\"]\nreload_command = {}\ncommand_timeout_s = 20\n",
        leaving("true")
    );
    site.pools = site.pools.replace(
        &format!("[\"cat\", \"{list}\"]"),
        &leaving(&format!("cat '{list}'")),
    );
    site.pools
        .push_str("launch = [\"false\"]\nterminate = [\"false\"]\n");
    site.pools.push_str(&format!(
        "[pool.scaling]\nmin = 1\nmax = 3\nmetric = \"command\"\nmetric_command = {}\nper_server = true\ntarget = 10\n",
        leaving(&format!("cat '{metric}'"))
    ));
    site.write();
    let started = Instant::now();
    let output = site.run(&[]);
    let took = started.elapsed();
    assert_exit(&output, 0);
    assert!(
        site.installed().contains("server web-1"),
        "{}",
        describe(&output)
    );
    assert!(
        took < Duration::from_millis(9_500),
        "three commands' drains took {took:?}: {}",
        describe(&output)
    );
}
