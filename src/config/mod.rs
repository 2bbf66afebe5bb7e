//! The validated configuration.
//!
//! Raw TOML (or the config-less command-line flags) is parsed into `Raw*` structs that mirror the
//! file, then validated once into [`Config`]; the rest of the program only sees the validated type.
//! Unknown keys are errors, so typos are caught. Every error names the file, the key and the
//! problem.
//!
//! Relative paths in a config file (state, haproxy.cfg, template, sockets, `user_data_file`, and
//! a command's program when it is named with a `/`) are relative to the config file's folder,
//! not to the working directory of the run. Besides the config file, only the files it refers
//! to that a run reads as they are (`user_data_file`) are read here, so that a missing one is a
//! config error (exit 2) under `--plan` too.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One test per invalid case, named for what is wrong, so that a failing case never hides the
/// others: `invalid_cases! { mod MODULE, ASSERT; NAME: TEXT => [WORDS]; ... }` makes the test
/// `MODULE::NAME`, which calls `ASSERT(&TEXT, &[WORDS])` (the config's tests and its scaling
/// validation's each have an `ASSERT`).
#[cfg(test)]
macro_rules! invalid_cases {
    (mod $module:ident, $assert:ident; $($name:ident: $text:expr => [$($word:expr),+ $(,)?];)+) => {
        mod $module {
            use super::*;
            $(
                #[test]
                fn $name() {
                    $assert(&$text, &[$($word),+]);
                }
            )+
        }
    };
}

mod load;
mod raw;
pub(crate) mod scaling;
mod validate;
pub(crate) use validate::same_file;
mod validate_scaling;

pub(crate) use scaling::{
    ExternalMetric, ExternalSource, ForecastMode, Launcher, Metric, Policy, Scaling,
};

const DEFAULT_STATE_PATH: &str = "/var/lib/haproxy-autoscaler/state.json";
const DEFAULT_HAPROXY_CONFIG: &str = "/etc/haproxy/haproxy.cfg";
const DEFAULT_TEMPLATE: &str = "/etc/haproxy-autoscaler/haproxy.cfg.hbs";
/// Where the Debian package installs the default template.
const PACKAGED_TEMPLATE: &str = "/usr/share/haproxy-autoscaler/haproxy.cfg.hbs";

/// The template when none is named: the operator's in /etc, else the package's when only that
/// one exists (a config-less run on a packaged install), else the /etc one (its error names it).
fn default_template(exists: impl Fn(&Path) -> bool) -> PathBuf {
    let (own, packaged) = (Path::new(DEFAULT_TEMPLATE), Path::new(PACKAGED_TEMPLATE));
    if !exists(own) && exists(packaged) {
        packaged.to_owned()
    } else {
        own.to_owned()
    }
}
const DEFAULT_COMMAND_TIMEOUT_S: u64 = 30;
const CONFIG_PLACEHOLDER: &str = "{config}";

/// Where the configuration came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    CommandLine,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(path) => write!(f, "{}", path.display()),
            Source::CommandLine => f.write_str("command line"),
        }
    }
}

/// A configuration that could not be read or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{}`: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{origin}{}: {key}: {message}", key.line().map(|line| format!(":{line}")).unwrap_or_default())]
    Invalid {
        origin: Source,
        key: Key,
        message: String,
    },
}

/// The config key an error is about: a top-level key (`haproxy.stats_url`), or a key of a
/// `[[pool]]` named by the pool's name and the line its table starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pool: Option<PoolAt>,
    name: String,
}

impl Key {
    /// The line of the config file the key's table starts on, when known.
    pub fn line(&self) -> Option<usize> {
        self.pool.as_ref().and_then(|pool| pool.line)
    }
}

impl From<&str> for Key {
    fn from(name: &str) -> Key {
        Key {
            pool: None,
            name: name.to_owned(),
        }
    }
}

impl From<String> for Key {
    fn from(name: String) -> Key {
        Key { pool: None, name }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.pool {
            Some(pool) => write!(
                f,
                "pool `{}`: `{}`",
                crate::model::text::shown(&pool.name),
                self.name
            ),
            None => write!(f, "`{}`", self.name),
        }
    }
}

/// Which `[[pool]]` a key belongs to: its name (as written) and the line its table starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PoolAt {
    name: String,
    line: Option<usize>,
}

impl PoolAt {
    /// The pool's key `name` (`port`, `scaling.min`).
    pub(crate) fn key(&self, name: &str) -> Key {
        Key {
            pool: Some(self.clone()),
            name: name.to_owned(),
        }
    }
}

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub source: Source,
    /// Which config this is, for the state file to record: the config file's resolved path, or
    /// `command line`. Two configs must never share one state file.
    pub identity: String,
    /// The local state file; with a shared store, where this node keeps its lock (`.lock`)
    /// and failure record (`.failing`) beside it, and nothing else.
    pub state_path: PathBuf,
    /// `[state] path = "s3://BUCKET/KEY"`: the state shared by every load balancer of the
    /// fleet, changed only by compare-and-swap.
    pub shared_state: Option<S3Location>,
    /// This load balancer's name among those sharing a state (`[state] node`; by default the
    /// host name with a shared state, `local` without): its stats samples are kept under it.
    pub node: String,
    pub haproxy: HaproxyConfig,
    pub aws: AwsConfig,
    pub pools: Vec<PoolConfig>,
    pub notify: Notify,
    /// Where each run writes its Prometheus metrics (node_exporter's textfile collector).
    pub metrics_file: Option<PathBuf>,
    /// `enabled = false` (the example config as written or installed): a run refuses before
    /// doing anything, while `--plan`, `check` and `status` work as usual.
    pub enabled: bool,
}

/// An S3 object: `s3://BUCKET/KEY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub key: String,
}

impl std::fmt::Display for S3Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

impl S3Location {
    /// Parses `s3://BUCKET/KEY`; `None` for a path that is not an S3 URL; the reason for one
    /// that is but cannot be used.
    pub fn parse(text: &str) -> Option<Result<S3Location, String>> {
        let Some(rest) = text.strip_prefix("s3://") else {
            // `s3:/b/k`, `S3://b/k`: meant to be shared; a local file of that name would not be.
            return text.get(..3).filter(|scheme| scheme.eq_ignore_ascii_case("s3:")).map(|_| {
                Err(format!(
                    "`{text}` looks like an S3 URL but is not one: write s3://BUCKET/KEY (lowercase `s3://`)"
                ))
            });
        };
        let Some((bucket, key)) = rest.split_once('/') else {
            return Some(Err(format!("`{text}` has no key: write s3://BUCKET/KEY")));
        };
        // S3's bucket naming rules: 3 to 63 lowercase letters, digits, dots and hyphens.
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !bucket_ok {
            return Some(Err(format!(
                "`{bucket}` is not an S3 bucket name (3 to 63 lowercase letters, digits, `.` and `-`)"
            )));
        }
        if key.is_empty() {
            return Some(Err(format!(
                "`{text}` has an empty key: write s3://BUCKET/KEY"
            )));
        }
        if key.ends_with('/') || key.starts_with('/') || key.chars().any(char::is_control) {
            return Some(Err(format!(
                "`{key}` is not an object key (s3://BUCKET/KEY, a key that neither starts nor ends with `/`)"
            )));
        }
        Some(Ok(S3Location {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        }))
    }
}

/// `[notify]`: who hears about scaling and failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// Which events are sent to the webhook and the command (all are logged).
    pub on: BTreeSet<EventKind>,
    pub webhook: Option<Secret>,
    pub command: Option<Vec<String>>,
    /// "rapid" = more direction reversals than `rapid_scales` within `rapid_window_s`.
    pub rapid_scales: u32,
    pub rapid_window_s: u64,
    /// While runs keep failing, `failed` is sent again this often (0: only once).
    pub repeat_failed_s: u64,
}

/// The notification events, as `notify.on` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Scaled,
    Capped,
    Rapid,
    Blocked,
    Replaced,
    Skipped,
    Failed,
    Recovered,
}

impl EventKind {
    /// Every event, in the order the README lists them.
    pub const ALL: [EventKind; 8] = [
        EventKind::Scaled,
        EventKind::Capped,
        EventKind::Rapid,
        EventKind::Blocked,
        EventKind::Replaced,
        EventKind::Skipped,
        EventKind::Failed,
        EventKind::Recovered,
    ];

    /// The event's name in `notify.on` and in notifications.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Scaled => "scaled",
            EventKind::Capped => "capped",
            EventKind::Rapid => "rapid",
            EventKind::Blocked => "blocked",
            EventKind::Replaced => "replaced",
            EventKind::Skipped => "skipped",
            EventKind::Failed => "failed",
            EventKind::Recovered => "recovered",
        }
    }

    fn parse(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

impl Default for Notify {
    fn default() -> Notify {
        Notify {
            on: EventKind::ALL.into_iter().collect(),
            webhook: None,
            command: None,
            rapid_scales: 5,
            rapid_window_s: 1800,
            repeat_failed_s: 3600,
        }
    }
}

/// A value that must never be printed (a webhook URL carries its token): `Debug` redacts it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The value itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// `[haproxy]`: where the config goes and how it is checked and reloaded.
#[derive(Debug, Clone, PartialEq)]
pub struct HaproxyConfig {
    pub config: PathBuf,
    pub template: PathBuf,
    pub stats: Option<StatsSource>,
    /// argv; [`CONFIG_PLACEHOLDER`] in any argument is replaced by the candidate's path.
    pub check_command: Vec<String>,
    pub reload: Reload,
    pub command_timeout: Duration,
    /// How a changed haproxy.cfg reaches HAProxy.
    pub apply: ApplyMode,
}

/// `haproxy.apply`: how a changed haproxy.cfg reaches HAProxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApplyMode {
    /// Server changes of managed backends through the runtime API, the file installed without a
    /// reload; a reload for anything else.
    #[default]
    Runtime,
    /// Every change installed and reloaded.
    Reload,
}

/// Where HAProxy's statistics are read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatsSource {
    Socket(String),
    Url(String),
}

/// How HAProxy is reloaded, and how the reload is confirmed: there is always a way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// Run this argv (for example `systemctl reload haproxy`); with a master socket, `show proc`
    /// confirms the reload happened.
    Command {
        argv: Vec<String>,
        master_socket: Option<PathBuf>,
    },
    /// Reload through the master CLI socket, which also confirms it.
    MasterSocket(PathBuf),
}

impl Reload {
    /// The reload command, if the reload is made by one.
    pub fn command(&self) -> Option<&[String]> {
        match self {
            Reload::Command { argv, .. } => Some(argv),
            Reload::MasterSocket(_) => None,
        }
    }

    /// The master CLI socket, if one is configured (to reload through, or to confirm with).
    pub fn master_socket(&self) -> Option<&Path> {
        match self {
            Reload::Command { master_socket, .. } => master_socket.as_deref(),
            Reload::MasterSocket(path) => Some(path),
        }
    }
}

/// `[aws]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsConfig {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    /// Attempts per EC2 call for throttling, 5xx, timeouts and dropped connections, with the
    /// SDK's exponential backoff and jitter between them. RunInstances is never retried within
    /// a run: the next run resolves its launch intent by the token tag.
    pub max_attempts: u32,
    /// How long one attempt may take.
    pub attempt_timeout: Duration,
}

impl Default for AwsConfig {
    fn default() -> AwsConfig {
        AwsConfig {
            region: None,
            endpoint_url: None,
            max_attempts: DEFAULT_AWS_MAX_ATTEMPTS,
            attempt_timeout: Duration::from_secs(DEFAULT_AWS_ATTEMPT_TIMEOUT_S),
        }
    }
}

pub(crate) const DEFAULT_AWS_MAX_ATTEMPTS: u32 = 3;
pub(crate) const DEFAULT_AWS_ATTEMPT_TIMEOUT_S: u64 = 15;

/// One `[[pool]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    pub name: String,
    pub backend: String,
    pub port: u16,
    pub address: AddressSource,
    pub allow_empty: bool,
    /// Where the pool's instances come from.
    pub provider: ProviderKind,
    pub discover: Discover,
    /// `[pool.scaling]` with the pool's launcher; `None` for a discovery-only pool.
    pub scaling: Option<Scaling>,
    /// How a booting server is proven ready before it takes traffic.
    pub ready_check: ReadyCheck,
}

/// A pool's source of instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderKind {
    Ec2,
    /// `[pool.exec]`: the operator's commands, exchanging JSON.
    Exec(ExecCommands),
    /// `[pool.static]`: one file per host in this folder (`hosts add|remove|list`).
    Static(PathBuf),
}

/// `[pool.exec]`: argv of each command, run without a shell, killed after `timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecCommands {
    pub list: Vec<String>,
    pub timeout: Duration,
}

/// The readiness probe the run makes (from the load balancer) before a new server takes traffic.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadyCheck {
    /// A TCP connection to the server's address must succeed.
    Tcp,
    /// `GET PATH` must answer 2xx or 3xx.
    Http(String),
    /// Ready as soon as it runs and `warmup_s` has passed.
    None,
}

/// Which address of an instance HAProxy connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressSource {
    PrivateIp,
    PublicIp,
    /// The tag's value holds `host:port`.
    Tag(String),
}

/// `[pool.discover]`: filters, ANDed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discover {
    pub security_group: Option<String>,
    pub image_id: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// `path` with `suffix` added to its file name: the files a run keeps beside another
/// (`haproxy.cfg.bak`, `haproxy.cfg.orig`, `state.json.lock`), named the same way where they are
/// written and where the config makes sure they are distinct files.
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut with = path.as_os_str().to_owned();
    with.push(suffix);
    PathBuf::from(with)
}

impl Config {
    /// The state's name in messages: the S3 URL of a shared state, or the local file.
    pub fn state_name(&self) -> PathBuf {
        match &self.shared_state {
            Some(location) => PathBuf::from(location.to_string()),
            None => self.state_path.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[[pool]]
name = "web"
port = 8080
[pool.discover]
security_group = "web"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn a_shared_state_is_an_s3_url_with_this_node_s_own_file_and_name() {
        let shared = |state: &str| parse(&format!("[state]\n{state}\n{MINIMAL}"));
        let config = shared("path = \"s3://fleet-state/lb/web.json\"\nnode = \"lb-1\"").unwrap();
        assert_eq!(
            config.shared_state,
            Some(S3Location {
                bucket: "fleet-state".into(),
                key: "lb/web.json".into()
            })
        );
        // The node's own file and lock stay local; the state belongs to the fleet, not to
        // this node's config file.
        assert_eq!(config.state_path, Path::new(DEFAULT_STATE_PATH));
        assert_eq!(
            (config.node.as_str(), config.identity.as_str()),
            ("lb-1", "s3://fleet-state/lb/web.json")
        );
        assert_eq!(parse(MINIMAL).unwrap().node, "local");
        assert!(
            !shared("path = \"s3://fleet-state/k\"")
                .unwrap()
                .node
                .is_empty()
        );
        let refused = [
            ("path = \"s3://fleet-state\"", "has no key"),
            ("path = \"s3://Fleet_State/k\"", "not an S3 bucket name"),
            ("path = \"s3://fleet-state/dir/\"", "not an object key"),
            ("path = \"s3://fleet-state/\"", "empty key"),
            ("path = \"s3:/fleet-state/k\"", "looks like an S3 URL"),
            ("path = \"S3://fleet-state/k\"", "looks like an S3 URL"),
            (
                "path = \"local.json\"\nlocal_path = \"x.json\"",
                "only for a shared state",
            ),
            (
                "path = \"s3://fleet-state/k\"\nnode = \"lb 1\"",
                "not a node name",
            ),
        ];
        for (state, expected) in refused {
            let error = shared(state).unwrap_err().to_string();
            assert!(
                error.contains(expected) && error.contains("state."),
                "{state}: {error}"
            );
        }
    }

    #[test]
    fn minimal_config_gets_the_documented_defaults() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.state_path, Path::new(DEFAULT_STATE_PATH));
        assert_eq!(config.haproxy.config, Path::new(DEFAULT_HAPROXY_CONFIG));
        assert_eq!(
            config.haproxy.template,
            default_template(std::path::Path::exists)
        );
        assert_eq!(
            config.haproxy.check_command,
            ["haproxy", "-c", "-f", "{config}"]
        );
        assert_eq!(
            config.haproxy.reload.command(),
            Some(&["systemctl".to_owned(), "reload".into(), "haproxy".into()][..])
        );
        assert_eq!(config.haproxy.command_timeout, Duration::from_secs(30));
        let pool = &config.pools[0];
        assert_eq!(pool.backend, "web");
        assert_eq!(pool.address, AddressSource::PrivateIp);
        assert!(!pool.allow_empty);
    }

    #[test]
    fn without_a_template_key_the_operator_s_template_wins_over_the_package_s() {
        let only = |present: &'static str| move |path: &Path| path == Path::new(present);
        assert_eq!(
            default_template(only(DEFAULT_TEMPLATE)),
            Path::new(DEFAULT_TEMPLATE)
        );
        assert_eq!(
            default_template(only(PACKAGED_TEMPLATE)),
            Path::new(PACKAGED_TEMPLATE)
        );
        assert_eq!(default_template(|_| true), Path::new(DEFAULT_TEMPLATE));
        assert_eq!(default_template(|_| false), Path::new(DEFAULT_TEMPLATE));
    }

    #[test]
    fn a_config_is_enabled_unless_it_says_enabled_false() {
        assert!(parse(MINIMAL).unwrap().enabled);
        assert!(
            parse(&format!("enabled = true\n{MINIMAL}"))
                .unwrap()
                .enabled
        );
        assert!(
            !parse(&format!("enabled = false\n{MINIMAL}"))
                .unwrap()
                .enabled
        );
    }

    #[test]
    fn master_socket_alone_replaces_the_default_reload_command() {
        let text = format!("[haproxy]\nmaster_socket = \"/run/m.sock\"\n{MINIMAL}");
        let reload = parse(&text).unwrap().haproxy.reload;
        assert_eq!(reload, Reload::MasterSocket(PathBuf::from("/run/m.sock")));
    }

    /// Each bad input and the words its error must contain.
    /// A `[[pool]]` named `web` on port 8080 found by security group, with `extra` keys.
    fn pool(extra: &str) -> String {
        format!(
            "[[pool]]\nname = \"web\"\nport = 8080\n{extra}\n[pool.discover]\nsecurity_group = \"web\"\n"
        )
    }

    /// `text` is refused with an error that holds every one of `words`.
    fn assert_invalid(text: &str, words: &[&str]) {
        let error = parse(text).expect_err(text).to_string();
        for word in words {
            assert!(
                error.contains(word),
                "error for\n{text}\nwas `{error}`, expected `{word}`"
            );
        }
    }

    invalid_cases! {
        mod invalid, assert_invalid;
        unknown_pool_key: "[[pool]]\nname = \"web\"\nprot = 1\n" => ["unknown field `prot`"];
        unknown_haproxy_key: "[haproxy]\nconfg = \"x\"\n" => ["unknown field `confg`"];
        broken_toml: "[[pool]\n" => ["test.toml", "line 1"];
        no_pool: "" => ["`pool`", "at least one"];
        port_zero: pool("").replace("8080", "0") => ["test.toml:1: pool `web`: `port`", "got 0"];
        port_too_large: pool("").replace("8080", "70000") => ["pool `web`: `port`", "got 70000"];
        port_as_string: pool("").replace("8080", "\"80\"") => ["line 3", "`port`", "invalid type"];
        unknown_address: pool("address = \"ipv6\"") => ["pool `web`: `address`", "`ipv6`"];
        address_tag_without_key: pool("address = \"tag:\"") => ["pool `web`: `address`"];
        unknown_provider: pool("provider = \"gce\"") => ["pool `web`: `provider`", "unknown provider `gce`"];
        discover_on_an_exec_pool: pool("provider = \"exec\"") => ["pool `web`: `discover`", "is for EC2 pools"];
        static_pool_with_discovery: pool("provider = \"static\"") => ["pool `web`: `discover`", "not for a static pool"];
        static_table_on_an_ec2_pool: format!("{}[pool.static]\ndir = \"h\"\n", pool("")) => ["pool `web`: `static`", "only for `provider = \"static\"`"];
        metrics_file_not_a_path: format!("metrics_file = 5\n{}", pool("")) => ["`metrics_file`", "must be a file path, got 5"];
        enabled_not_a_boolean: format!("enabled = \"no\"\n{}", pool("")) => ["`enabled`", "must be true or false, got \"no\""];
        backend_with_a_space: pool("backend = \"a b\"") => ["pool `web`: `backend`", "`a b`"];
        name_with_a_hash: pool("").replace("\"web\"\nport", "\"we#b\"\nport") => ["pool `we#b`: `name`"];
        no_discovery_filter: "[[pool]]\nname = \"web\"\nport = 80\n" => ["pool `web`: `discover.security_group`", "at least one"];
        backend_used_twice: format!(
            "{}{}",
            pool(""),
            pool("backend = \"web\"").replace("name = \"web\"", "name = \"api\"")
        ) => ["test.toml:7: pool `api`: `backend`", "already filled by pool `web`"];
        name_used_twice: format!("{}{}", pool(""), pool("backend = \"b2\"")) => ["test.toml:7: pool `web`: `name`", "used twice"];
        empty_check_command: format!("[haproxy]\ncheck_command = []\n{}", pool("")) => ["`haproxy.check_command`", "empty"];
        check_command_without_placeholder: format!(
            "[haproxy]\ncheck_command = [\"haproxy\", \"-c\"]\n{}",
            pool("")
        ) => ["`haproxy.check_command`", "{config}"];
        empty_reload_program: format!("[haproxy]\nreload_command = [\"\"]\n{}", pool("")) => ["`haproxy.reload_command`", "empty"];
        stats_socket_and_url: format!(
            "[haproxy]\nstats_socket = \"/a\"\nstats_url = \"http://x\"\n{}",
            pool("")
        ) => ["`haproxy.stats_url`", "not both"];
        stats_url_ftp: format!("[haproxy]\nstats_url = \"ftp://x\"\n{}", pool("")) => ["`haproxy.stats_url`", "ftp://x"];
        // Issue 10, class 20: accepted before but never usable.
        stats_url_https: format!(
            "[haproxy]\nstats_url = \"https://127.0.0.1:8404/stats;csv\"\n{}",
            pool("")
        ) => ["`haproxy.stats_url`", "https is not supported"];
        stats_url_upper_case_scheme: format!("[haproxy]\nstats_url = \"HTTPS://lb/stats\"\n{}", pool("")) => ["`haproxy.stats_url`", "is not an http:// URL"];
        stats_url_without_host: format!("[haproxy]\nstats_url = \"http://\"\n{}", pool("")) => ["`haproxy.stats_url`", "is not an http:// URL"];
        command_timeout_zero: format!("[haproxy]\ncommand_timeout_s = 0\n{}", pool("")) => ["`haproxy.command_timeout_s`", "got 0"];
        region_with_a_space: format!("[aws]\nregion = \"EU West\"\n{}", pool("")) => ["`aws.region`", "`EU West`"];
        endpoint_without_scheme: format!("[aws]\nendpoint_url = \"127.0.0.1:5000\"\n{}", pool("")) => ["`aws.endpoint_url`", "http://"];
        unknown_event: format!("[notify]\non = [\"paged\"]\n{}", pool("")) => ["`notify.on`", "`paged`"];
        webhook_without_scheme: format!("[notify]\nwebhook = \"hooks.example/T0KEN\"\n{}", pool("")) => ["`notify.webhook`", "http"];
        rapid_scales_zero: format!("[notify]\nrapid_scales = 0\n{}", pool("")) => ["`notify.rapid_scales`", "got 0"];
        scaling_without_launch: pool("[pool.scaling]\nmax = 3\nscale_up_above = 2\nscale_down_below = 1") => ["pool `web`: `launch`", "needs `[pool.launch]`"];
        ready_check_path_without_slash: pool("ready_check = \"http:health\"") => ["pool `web`: `ready_check`", "http:/PATH"];
    }

    /// Issue 9, item 14: relative paths are relative to the config file's folder, whatever the
    /// working directory of the run.
    #[test]
    fn issue_9_14_relative_paths_are_relative_to_the_config_file() {
        let config = Config::parse(
            "[state]\npath = \"state/state.json\"\n[haproxy]\nconfig = \"out/haproxy.cfg\"\ntemplate = \"t.hbs\"\nstats_socket = \"run/admin.sock\"\nmaster_socket = \"/run/m.sock\"\ncheck_command = [\"./bin/check\", \"{config}\"]\nreload_command = [\"systemctl\", \"reload\", \"haproxy\"]\n[[pool]]\nname = \"web\"\nport = 80\nprovider = \"exec\"\n[pool.exec]\nlist = [\"bin/list\", \"./not-the-program\"]\n",
            Path::new("/etc/hxa/config.toml"),
        )
        .unwrap();
        assert_eq!(config.state_path, Path::new("/etc/hxa/state/state.json"));
        assert_eq!(config.haproxy.config, Path::new("/etc/hxa/out/haproxy.cfg"));
        assert_eq!(config.haproxy.template, Path::new("/etc/hxa/t.hbs"));
        assert_eq!(
            config.haproxy.stats,
            Some(StatsSource::Socket("/etc/hxa/run/admin.sock".into()))
        );
        assert_eq!(
            config.haproxy.reload.master_socket(),
            Some(Path::new("/run/m.sock"))
        );
        assert_eq!(config.haproxy.check_command[0], "/etc/hxa/bin/check");
        assert_eq!(config.haproxy.reload.command().unwrap()[0], "systemctl");
        let ProviderKind::Exec(exec) = &config.pools[0].provider else {
            panic!("exec pool")
        };
        assert_eq!(exec.list, ["/etc/hxa/bin/list", "./not-the-program"]);
    }

    /// Issue 9, items 7 and 14: `user_data_file` is read at load (a missing one is exit 2 under
    /// `--plan` too), and `launch_template` is an id only when it has an id's syntax.
    #[test]
    fn issue_9_7_launch_files_and_templates_are_validated_at_load() {
        use scaling::LaunchTemplateRef;
        let dir = tempfile::tempdir().unwrap();
        let launch = |extra: &str| {
            Config::parse(
                &format!("[haproxy]\nstats_socket = \"/s\"\n[[pool]]\nname = \"web\"\nport = 80\n[pool.discover]\nsecurity_group = \"web\"\n[pool.scaling]\nmax = 3\nscale_up_above = 20\nscale_down_below = 10\n[pool.launch]\n{extra}\n"),
                &dir.path().join("config.toml"),
            )
            .map(|config| match &config.pools[0].scaling {
                Some(Scaling {
                    launcher: Launcher::Ec2(launch),
                    ..
                }) => launch.clone(),
                _ => panic!("an EC2 scaling pool"),
            })
        };
        let error = launch(
            "image_id = \"ami-1\"\ninstance_type = \"t3.micro\"\nuser_data_file = \"boot.sh\"",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("pool `web`: `launch.user_data_file`")
                && error.contains(&dir.path().join("boot.sh").display().to_string()),
            "{error}"
        );
        std::fs::write(dir.path().join("boot.sh"), "#!/bin/sh\n").unwrap();
        let ok = launch(
            "image_id = \"ami-1\"\ninstance_type = \"t3.micro\"\nuser_data_file = \"boot.sh\"",
        )
        .unwrap();
        assert_eq!(ok.user_data.as_deref(), Some(&b"#!/bin/sh\n"[..]));
        std::fs::write(dir.path().join("big.sh"), vec![b'x'; 20_000]).unwrap();
        let error = launch(
            "image_id = \"ami-1\"\ninstance_type = \"t3.micro\"\nuser_data_file = \"big.sh\"",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("at most 16384"), "{error}");

        let cases = [
            (
                "launch_template = \"lt-web\"",
                LaunchTemplateRef::Name("lt-web".into()),
                None,
            ),
            (
                "launch_template = \"lt-0123456789abcdef0\"\nlaunch_template_version = 3",
                LaunchTemplateRef::Id("lt-0123456789abcdef0".into()),
                Some("3"),
            ),
            (
                "launch_template = \"web\"\nlaunch_template_version = \"$Latest\"",
                LaunchTemplateRef::Name("web".into()),
                Some("$Latest"),
            ),
        ];
        for (text, reference, version) in cases {
            let template = launch(text).unwrap().launch_template.unwrap();
            assert_eq!(template.reference, reference, "{text}");
            assert_eq!(template.version.as_deref(), version, "{text}");
        }
        let error = launch("launch_template = \"web\"\nlaunch_template_version = \"newest\"")
            .unwrap_err()
            .to_string();
        assert!(error.contains("launch_template_version"), "{error}");
    }

    /// Issue 29, class 1: no file of a run may be in a static pool's hosts folder (every file
    /// there is a host, and `hosts add` writes there).
    #[test]
    fn a_file_of_the_run_in_a_hosts_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("hosts.d")).unwrap();
        let config_file = dir.path().join("config.toml");
        let text = "metrics_file = \"hosts.d/metrics.prom\"\n[state]\npath = \"state.json\"\n[haproxy]\nconfig = \"haproxy.cfg\"\n[[pool]]\nname = \"web\"\nport = 80\nprovider = \"static\"\n[pool.static]\ndir = \"hosts.d\"\n";
        let error = Config::parse(text, &config_file).unwrap_err().to_string();
        assert!(
            error.contains("`metrics_file` `") && error.contains("is in pool `web`'s hosts folder"),
            "{error}"
        );
        let fine = text.replace("hosts.d/metrics.prom", "metrics.prom");
        Config::parse(&fine, &config_file).unwrap();
    }

    /// Issue 10, class 2: two paths that are the same file, however spelled, are refused at load.
    #[test]
    fn class_2_paths_that_collide_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc/sub")).unwrap();
        std::fs::create_dir_all(root.join("out")).unwrap();
        std::fs::write(root.join("out/haproxy.cfg"), "x").unwrap();
        std::os::unix::fs::symlink(root.join("out/haproxy.cfg"), root.join("etc/link.cfg"))
            .unwrap();
        std::os::unix::fs::symlink("../out/haproxy.cfg.bak", root.join("etc/dangling.json"))
            .unwrap();
        let config_file = root.join("etc/config.toml");
        let cases: [(&str, &[&str]); 10] = [
            // Issue 29, class 1: metrics_file is an output like the others.
            (
                "metrics_file = \"state.json\"\n[state]\npath = \"state.json\"\n[haproxy]\nconfig = \"../out/haproxy.cfg\"",
                &["`metrics_file`", "`state.path`"],
            ),
            (
                "metrics_file = \"link.cfg\"\n[state]\npath = \"state.json\"\n[haproxy]\nconfig = \"../out/haproxy.cfg\"",
                &["`metrics_file`", "`haproxy.config`"],
            ),
            (
                "metrics_file = \"./config.toml\"\n[state]\npath = \"state.json\"\n[haproxy]\nconfig = \"../out/haproxy.cfg\"",
                &["`metrics_file`", "the config file"],
            ),
            (
                "[state]\npath = \"../out/haproxy.cfg.bak\"\n[haproxy]\nconfig = \"../out/haproxy.cfg\"",
                &["`state.path`", "the backup of `haproxy.config`"],
            ),
            (
                "[haproxy]\nconfig = \"../out/haproxy.cfg\"\ntemplate = \"sub/../../out/haproxy.cfg\"",
                &["`haproxy.config`", "`haproxy.template`"],
            ),
            (
                "[state]\npath = \"link.cfg\"\n[haproxy]\nconfig = \"../out/haproxy.cfg\"",
                &["`state.path`", "out/haproxy.cfg"],
            ),
            (
                "[state]\npath = \"state.json\"\n[haproxy]\nconfig = \"../out/haproxy.cfg\"\nstats_socket = \"./state.json\"",
                &["`haproxy.stats_socket`", "`state.path`"],
            ),
            (
                "[haproxy]\nconfig = \"config.toml\"",
                &["`haproxy.config`", "the config file"],
            ),
            (
                "[state]\npath = \"../out/state.json\"\n[haproxy]\nconfig = \"../out/state.json.lock\"",
                &["the lock file of `state.path`", "`haproxy.config`"],
            ),
            // A dangling symlink to the backup haproxy.cfg will get (hostile trial).
            (
                "[state]\npath = \"dangling.json\"\n[haproxy]\nconfig = \"../out/haproxy.cfg\"",
                &["`state.path`", "the backup of `haproxy.config`"],
            ),
        ];
        for (haproxy, expected) in cases {
            let text = format!(
                "{haproxy}\n[[pool]]\nname = \"web\"\nport = 80\n[pool.discover]\nsecurity_group = \"web\"\n"
            );
            let text = if text.contains("[state]") {
                text
            } else {
                format!("[state]\npath = \"state.json\"\n{text}")
            };
            let error = Config::parse(&text, &config_file)
                .expect_err(haproxy)
                .to_string();
            assert!(error.contains("are the same file"), "{haproxy}: {error}");
            for word in expected {
                assert!(error.contains(word), "{haproxy}: {word} in {error}");
            }
        }
    }

    /// Issue 10, class 5: a TOML error on a line that holds a secret names the position and
    /// the reason, never the line or the value.
    #[test]
    fn class_5_parse_errors_never_quote_a_secret() {
        let secret = "T0KEN-XOXB-SECRET";
        for line in [
            format!("webhok = \"https://hooks.example/services/{secret}\""),
            format!("webhook = \"https://hooks.example/services/{secret}"),
            format!("webhook = [\"https://hooks.example/services/{secret}\"]"),
            format!("webhook = \"https://hooks.example/{secret}\" junk"),
        ] {
            let text = format!(
                "[[pool]]\nname = \"web\"\nport = 80\n[pool.discover]\nsecurity_group = \"web\"\n[notify]\n{line}\n"
            );
            let error = Config::parse(&text, Path::new("/etc/hxa/config.toml"))
                .unwrap_err()
                .to_string();
            assert!(!error.contains(secret), "{line}: {error}");
            assert!(
                error.contains("/etc/hxa/config.toml") && error.contains("line 7"),
                "{line}: {error}"
            );
        }
    }

    #[test]
    fn missing_file_is_named() {
        let error = Config::load(Path::new("/nonexistent/config.toml")).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/config.toml"));
    }

    fn discovery(args: &[&str]) -> Result<Config, ConfigError> {
        use crate::cli::Cli;
        use clap::Parser;
        let cli =
            Cli::try_parse_from(std::iter::once("haproxy-autoscaler").chain(args.iter().copied()))
                .unwrap();
        Config::from_cli(&cli)
    }

    #[test]
    fn config_less_mode_builds_one_discovery_pool() {
        let config = discovery(&[
            "--security-group",
            "web",
            "--tag",
            "role=web",
            "--template",
            "t.hbs",
            "--haproxy-config",
            "/tmp/h.cfg",
            "--reload-command",
            "systemctl reload 'haproxy'",
            "--port",
            "80",
        ])
        .unwrap();
        assert_eq!(config.source, Source::CommandLine);
        assert_eq!(
            config.pools[0].discover.security_group.as_deref(),
            Some("web")
        );
        assert_eq!(config.pools[0].discover.tags["role"], "web");
        assert_eq!(config.pools[0].port, 80);
        assert_eq!(
            config.haproxy.reload.command().unwrap(),
            &["systemctl", "reload", "haproxy"]
        );
    }

    /// Issue 9, item 6: `--config FILE` with config-less flags is a usage error naming both,
    /// never a silent choice of one of them.
    #[test]
    fn issue_9_6_a_config_file_and_config_less_flags_do_not_mix() {
        let error = discovery(&[
            "--config",
            "/nonexistent.toml",
            "--security-group",
            "web",
            "--port",
            "81",
            "--plan",
        ])
        .unwrap_err()
        .to_string();
        for needed in [
            "--config",
            "/nonexistent.toml",
            "`--security-group`",
            "`--port`",
        ] {
            assert!(error.contains(needed), "{needed}: {error}");
        }
    }

    #[test]
    fn config_less_mode_errors_name_the_flag() {
        let cases: [(&[&str], &str); 4] = [
            (&["--security-group", "web"], "--port"),
            (&["--port", "80"], "--security-group"),
            (&["--tag", "role", "--port", "80"], "--tag"),
            (
                &[
                    "--security-group",
                    "web",
                    "--port",
                    "80",
                    "--reload-command",
                    "a 'b",
                ],
                "--reload-command",
            ),
        ];
        for (args, flag) in cases {
            let error = discovery(args).unwrap_err().to_string();
            assert!(
                error.contains("command line") && error.contains(flag),
                "{args:?}: {error}"
            );
        }
    }
}
