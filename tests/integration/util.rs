//! The test harness: a scratch folder with a config, a template and a reload counter, and the
//! real binary run against it.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};

use assert_cmd::Command;

/// True when the tests run in CI, where a missing dependency is a failure, never a skip.
pub(crate) fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// Finds a helper program: an override variable, the project's venv, then `PATH`.
pub(crate) fn find_program(name: &str, override_var: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(override_var) {
        return PathBuf::from(path);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".venv/bin")
        .join(name);
    if venv.exists() {
        return venv;
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let candidate = dir.join(name);
        if candidate.exists() {
            return candidate;
        }
    }
    panic!(
        "`{name}` is needed by this test and was not found (CI={}); run `scripts/test.sh`, which installs it",
        in_ci()
    );
}

/// The HAProxy under test: the binary `HAPROXY` names (the version matrix of
/// `scripts/test.sh`), else the `haproxy` on `PATH` (Debian's 2.6). It says its version on
/// stderr, which the test harness shows with every failure of the test that asked for it.
pub(crate) fn haproxy() -> PathBuf {
    let (path, version) = haproxy_under_test();
    eprintln!("HAProxy under test: {version} ({})", path.display());
    path.clone()
}

/// The HAProxy under test and the first line of its `haproxy -v`, found once per test process.
fn haproxy_under_test() -> &'static (PathBuf, String) {
    static FOUND: std::sync::OnceLock<(PathBuf, String)> = std::sync::OnceLock::new();
    FOUND.get_or_init(|| {
        let path = find_program("haproxy", "HAPROXY");
        let version = std::process::Command::new(&path)
            .arg("-v")
            .output()
            .map_or_else(
                |error| format!("cannot run it: {error}"),
                |output| {
                    let text = String::from_utf8_lossy(&output.stdout).into_owned();
                    text.lines().next().unwrap_or_default().to_owned()
                },
            );
        (path, version)
    })
}

/// The (major, minor) version of the HAProxy under test, from `haproxy -v`: for the behaviours
/// that differ between versions (2.7+ says why a load failed on its master socket).
pub(crate) fn haproxy_version() -> (u32, u32) {
    let text = &haproxy_under_test().1;
    // `HAProxy version 3.2.0-e134140d2 2025/05/28 - https://haproxy.org/`
    let version = text
        .split_whitespace()
        .nth(2)
        .unwrap_or_else(|| panic!("no version in `haproxy -v`: {text}"));
    let parsed = haproxy_autoscaler::surface::model::HaproxyVersion::parse(version)
        .unwrap_or_else(|| panic!("no version in `haproxy -v`: {text}"));
    (parsed.major, parsed.minor)
}

/// `PATH` with the folder of the HAProxy under test first when `HAPROXY` names one, so that a
/// config's `haproxy` (the default `check_command`) is that version too.
pub(crate) fn path_with_haproxy() -> std::ffi::OsString {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let Some(folder) = std::env::var_os("HAPROXY")
        .map(PathBuf::from)
        .and_then(|binary| binary.parent().map(Path::to_owned))
    else {
        return path;
    };
    std::env::join_paths(std::iter::once(folder).chain(std::env::split_paths(&path)))
        .expect("PATH folders without `:`")
}

/// True when the tests run as root (CI does): some cases need it, or must drop it.
pub(crate) fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout == b"0\n")
}

/// A loopback port that is free now and that nothing else will be handed meanwhile.
///
/// Port 0 would be the kernel's choice from its ephemeral range, which it also uses for the
/// local end of every outgoing connection and for every other `bind(0)` of the tests running in
/// parallel: between this probe and the server's own bind, another test (a fault proxy, an
/// outgoing request) could take it, and the server would fail while the port still answered.
/// So ports come from below that range, each handed out once per test process.
pub(crate) fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let (low, span) = (ephemeral_low.saturating_sub(12_000).max(1024), 10_000);
    // Test binaries run one after another, but two runs of the suite may share a machine.
    let start = std::process::id() % span;
    loop {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(offset < span, "no free loopback port below {ephemeral_low}");
        let port = u16::try_from(low + (start + offset) % span).expect("a port number");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A template that lists each pool's servers, one per line.
pub(crate) const SIMPLE_TEMPLATE: &str = "\
# test template
{{#each pools}}
backend {{backend}}
{{#each servers}}
    server {{name}} {{address}}:{{port}}
{{/each}}
{{/each}}
";

/// A scratch deployment: config, template, state and haproxy folders under one tempdir.
pub(crate) struct Deployment {
    pub dir: tempfile::TempDir,
    pub endpoint_url: String,
    pub pool_toml: String,
    pub haproxy_toml: String,
    /// Extra `[aws]` lines.
    pub aws_toml: String,
    /// The `[state]` lines, instead of `path = <state_path>`.
    pub state_toml: Option<String>,
    pub template: String,
}

impl Deployment {
    pub(crate) fn new(endpoint_url: &str) -> Deployment {
        let dir = tempfile::tempdir().expect("tempdir");
        for sub in ["etc", "state", "haproxy"] {
            std::fs::create_dir(dir.path().join(sub)).expect("mkdir");
        }
        let reloads = dir.path().join("reloads");
        Deployment {
            endpoint_url: endpoint_url.to_owned(),
            pool_toml:
                "[[pool]]\nname = \"web\"\nport = 8080\n[pool.discover]\nsecurity_group = \"web\"\n"
                    .to_owned(),
            haproxy_toml: format!(
                "check_command = [\"sh\", \"-c\", \"test -s \\\"$0\\\"\", \"{{config}}\"]\nreload_command = [\"sh\", \"-c\", \"echo reload >> {}\"]\n",
                reloads.display()
            ),
            aws_toml: String::new(),
            state_toml: None,
            template: SIMPLE_TEMPLATE.to_owned(),
            dir,
        }
    }

    pub(crate) fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub(crate) fn config_path(&self) -> PathBuf {
        self.path("etc/config.toml")
    }

    pub(crate) fn state_path(&self) -> PathBuf {
        self.path("state/state.json")
    }

    pub(crate) fn haproxy_cfg(&self) -> PathBuf {
        self.path("haproxy/haproxy.cfg")
    }

    /// Writes config.toml and the template from the current settings.
    pub(crate) fn write(&self) {
        let config = format!(
            "[state]\n{}\n\n[haproxy]\nconfig = \"{}\"\ntemplate = \"{}\"\n{}\n[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n{}\n{}",
            self.state_toml
                .clone()
                .unwrap_or_else(|| format!("path = \"{}\"", self.state_path().display())),
            self.haproxy_cfg().display(),
            self.path("etc/haproxy.cfg.hbs").display(),
            self.haproxy_toml,
            self.endpoint_url,
            self.aws_toml,
            self.pool_toml,
        );
        std::fs::write(self.config_path(), config).expect("write config");
        std::fs::write(self.path("etc/haproxy.cfg.hbs"), &self.template).expect("write template");
    }

    /// The binary with a clean AWS environment pointing at the test cloud.
    pub(crate) fn std_command(&self) -> std::process::Command {
        self.wrapped_command(&[], &assert_cmd::cargo::cargo_bin("haproxy-autoscaler"))
    }

    /// `binary` run through `wrapper` (an argv such as `setpriv ... --`, or empty), with the
    /// environment of [`Deployment::std_command`].
    pub(crate) fn wrapped_command(&self, wrapper: &[&str], binary: &Path) -> std::process::Command {
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = std::process::Command::new(program);
                command.args(args).arg(binary);
                command
            }
            None => std::process::Command::new(binary),
        };
        command
            .env_clear()
            .env("PATH", path_with_haproxy())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("HOME", self.dir.path())
            .env("HAPROXY_AUTOSCALER_CONFIG", self.config_path());
        command
    }

    /// [`Deployment::std_command`] for assertions.
    pub(crate) fn command(&self) -> Command {
        Command::from_std(self.std_command())
    }

    /// Writes the config and runs the binary with `args`; assert on what it did with [`Ran`].
    pub(crate) fn run(&self, args: &[&str]) -> Ran {
        self.write();
        Ran(self.command().args(args).output().expect("run binary"))
    }

    /// How many times the reload command ran.
    pub(crate) fn reloads(&self) -> usize {
        std::fs::read_to_string(self.path("reloads")).map_or(0, |text| text.lines().count())
    }

    /// The server names in the installed haproxy.cfg.
    pub(crate) fn servers(&self) -> Vec<String> {
        std::fs::read_to_string(self.haproxy_cfg())
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.trim().strip_prefix("server "))
            .map(|rest| {
                rest.split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }

    /// Every file under the folders a run may write, with its bytes.
    pub(crate) fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut files = BTreeMap::new();
        for sub in ["etc", "state", "haproxy"] {
            for entry in std::fs::read_dir(self.path(sub)).expect("read_dir") {
                let path = entry.expect("entry").path();
                files.insert(path.clone(), std::fs::read(&path).expect("read"));
            }
        }
        files
    }
}

/// One run of the binary, for the assertions a test makes on it:
/// `site.run(&["--plan"]).exits(0).said("no change")`. It is the process's `Output` too.
#[derive(Debug)]
pub(crate) struct Ran(pub(crate) Output);

impl std::ops::Deref for Ran {
    type Target = Output;

    fn deref(&self) -> &Output {
        &self.0
    }
}

impl Ran {
    /// Asserts the exit code, showing the output otherwise.
    #[track_caller]
    pub(crate) fn exits(self, code: i32) -> Ran {
        assert_exit(&self.0, code);
        self
    }

    /// Asserts that stderr (where the tool logs) holds `text`.
    #[track_caller]
    pub(crate) fn said(self, text: &str) -> Ran {
        let written = stderr(&self.0);
        self.holds("stderr", written, text)
    }

    /// Asserts that stdout (what the tool reports) holds `text`.
    #[track_caller]
    pub(crate) fn printed(self, text: &str) -> Ran {
        let written = stdout(&self.0);
        self.holds("stdout", written, text)
    }

    #[track_caller]
    fn holds(self, stream: &str, written: String, text: &str) -> Ran {
        assert!(
            written.contains(text),
            "expected `{text}` on {stream}\n{}",
            describe(&self.0)
        );
        self
    }
}

/// stdout and stderr of a run, for assertion messages.
pub(crate) fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

pub(crate) fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts the exit code, showing the output otherwise.
#[track_caller]
pub(crate) fn assert_exit(output: &Output, code: i32) {
    assert_eq!(output.status.code(), Some(code), "{}", describe(output));
}

/// A TOML array of strings: an argv in the config.
fn toml_argv(argv: &[&str]) -> String {
    toml::Value::Array(argv.iter().map(|arg| toml::Value::from(*arg)).collect()).to_string()
}

/// The `[[pool]]` of an exec pool named `name` on `port`: `keys` are more pool keys
/// (`ready_check = "none"`), `list` its list command, `scale` its launch and terminate commands.
/// Tables of the pool (`[pool.scaling]`) go after it.
pub(crate) fn exec_pool(
    name: &str,
    port: u16,
    keys: &str,
    list: &[&str],
    scale: Option<(&[&str], &[&str])>,
) -> String {
    let mut toml = format!(
        "[[pool]]\nname = \"{name}\"\nport = {port}\nprovider = \"exec\"\n{keys}\n[pool.exec]\nlist = {}\n",
        toml_argv(list)
    );
    if let Some((launch, terminate)) = scale {
        toml.push_str(&format!(
            "launch = {}\nterminate = {}\n",
            toml_argv(launch),
            toml_argv(terminate)
        ));
    }
    toml
}

/// An exec pool `web` on port 80 served by the test provider (tests/fixtures/exec-provider.py,
/// its instances in `$EXEC_PROVIDER_STATE`), which can also launch and terminate.
pub(crate) fn fixture_exec_pool(keys: &str) -> String {
    let provider = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/exec-provider.py"
    );
    exec_pool(
        "web",
        80,
        keys,
        &["python3", provider, "list"],
        Some((
            &["python3", provider, "launch"],
            &["python3", provider, "terminate"],
        )),
    )
}

/// Fails unless Prometheus' own `promtool check metrics` accepts `text` without a finding (its
/// lint findings, naming and units, go to stderr with a success status).
pub(crate) fn assert_promtool_accepts(text: &str) {
    use std::io::Write;
    let promtool = find_program("promtool", "PROMTOOL");
    let mut child = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool: {}\n{text}",
        describe(&output)
    );
}

/// The `[[pool]]` `web` on port 80 of the local example's provider (examples/local/provider.py,
/// its instances loopback backends under `$LOCAL_POOL_DIR`), ready once `/health` answers.
pub(crate) fn local_example_pool() -> String {
    let provider = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/local/provider.py");
    exec_pool(
        "web",
        80,
        "ready_check = \"http:/health\"",
        &["python3", provider, "list"],
        Some((
            &["python3", provider, "launch"],
            &["python3", provider, "terminate"],
        )),
    )
}

/// The local example's backends under a pool folder, killed when the test ends however it ends.
pub(crate) struct LocalBackends(pub(crate) PathBuf);

impl LocalBackends {
    /// Each instance's (id, pid), from the example provider's state.
    pub(crate) fn pids(&self) -> Vec<(String, u64)> {
        let Ok(text) = std::fs::read_to_string(self.0.join("instances.json")) else {
            return Vec::new();
        };
        let state: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        state["instances"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|i| Some((i["id"].as_str()?.to_owned(), i["pid"].as_u64()?)))
            .collect()
    }
}

impl Drop for LocalBackends {
    fn drop(&mut self) {
        for (_, pid) in self.pids() {
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
        }
    }
}
