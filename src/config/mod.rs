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

use serde::Deserialize;

pub mod scaling;

pub use scaling::{Bound, Launch, Launcher, Metric, Policy, Scaling};

use crate::cli::{Cli, DEFAULT_CONFIG_PATH, DiscoveryArgs};
use crate::model::is_haproxy_token;

const DEFAULT_STATE_PATH: &str = "/var/lib/haproxy-autoscaler/state.json";
const DEFAULT_HAPROXY_CONFIG: &str = "/etc/haproxy/haproxy.cfg";
const DEFAULT_TEMPLATE: &str = "/etc/haproxy-autoscaler/haproxy.cfg.hbs";
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
    pub state_path: PathBuf,
    pub haproxy: HaproxyConfig,
    pub aws: AwsConfig,
    pub pools: Vec<PoolConfig>,
    pub notify: Notify,
}

/// `[notify]`: who hears about scaling and failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// Which events are sent to the webhook and the command (all are logged).
    pub on: BTreeSet<EventKind>,
    pub webhook: Option<Secret>,
    pub command: Option<Vec<String>>,
    /// "rapid" = more scale actions than `rapid_scales` within `rapid_window_s`.
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
    Skipped,
    Failed,
    Recovered,
}

impl EventKind {
    /// Every event, in the order the README lists them.
    pub const ALL: [EventKind; 7] = [
        EventKind::Scaled,
        EventKind::Capped,
        EventKind::Rapid,
        EventKind::Blocked,
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

pub const DEFAULT_AWS_MAX_ATTEMPTS: u32 = 3;
pub const DEFAULT_AWS_ATTEMPT_TIMEOUT_S: u64 = 15;

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    state: RawState,
    #[serde(default)]
    haproxy: RawHaproxy,
    #[serde(default)]
    aws: RawAws,
    #[serde(default)]
    pool: Vec<toml::Spanned<RawPool>>,
    notify: Option<RawNotify>,
    metrics_file: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    on: Option<Vec<String>>,
    webhook: Option<String>,
    command: Option<Vec<String>>,
    rapid_scales: Option<i64>,
    rapid_window_s: Option<i64>,
    repeat_failed_s: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    path: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHaproxy {
    config: Option<PathBuf>,
    template: Option<PathBuf>,
    stats_socket: Option<String>,
    stats_url: Option<String>,
    check_command: Option<Vec<String>>,
    reload_command: Option<Vec<String>>,
    master_socket: Option<PathBuf>,
    command_timeout_s: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAws {
    region: Option<String>,
    endpoint_url: Option<String>,
    max_attempts: Option<i64>,
    attempt_timeout_s: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    name: String,
    backend: Option<String>,
    port: i64,
    address: Option<String>,
    provider: Option<String>,
    allow_empty: Option<bool>,
    discover: Option<RawDiscover>,
    ready_check: Option<String>,
    launch: Option<scaling::RawLaunch>,
    scaling: Option<scaling::RawScaling>,
    exec: Option<RawExec>,
    #[serde(rename = "static")]
    static_hosts: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExec {
    list: Option<Vec<String>>,
    launch: Option<Vec<String>>,
    terminate: Option<Vec<String>>,
    timeout_s: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDiscover {
    security_group: Option<String>,
    image_id: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

impl Config {
    /// Builds the configuration from the command line: the config-less one-pool mode when a
    /// discovery filter is given, the config file otherwise.
    pub fn from_cli(cli: &Cli) -> Result<Config, ConfigError> {
        if let Some(path) = &cli.config
            && cli.discovery.any()
        {
            // Mixing the two would silently ignore one of them.
            return Err(ConfigError::Invalid {
                origin: Source::CommandLine,
                key: "--config".into(),
                message: format!(
                    "`{}` (from {}) cannot be combined with the config-less flags {}: use either a config file or the flags",
                    path.display(),
                    if std::env::var_os("HAPROXY_AUTOSCALER_CONFIG").as_deref()
                        == Some(path.as_os_str())
                    {
                        "HAPROXY_AUTOSCALER_CONFIG in the environment"
                    } else {
                        "--config"
                    },
                    cli.discovery
                        .given()
                        .iter()
                        .map(|flag| format!("`{flag}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        if cli.discovery.any() {
            return Config::from_discovery_args(&cli.discovery);
        }
        let path = cli
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
        Config::load(&path)
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let read_error = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let bytes = crate::fs_atomic::read_regular(path, 1024 * 1024).map_err(read_error)?;
        let text = String::from_utf8(bytes).map_err(|_| {
            read_error(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "it is not valid UTF-8",
            ))
        })?;
        Config::parse(&text, path)
    }

    /// Validates config text; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|error| ConfigError::Parse {
            path: path.to_owned(),
            message: parse_message(text, &error),
        })?;
        Validator {
            source: Source::File(path.to_owned()),
            line_starts: std::iter::once(0)
                .chain(text.match_indices('\n').map(|(at, _)| at + 1))
                .collect(),
            base: std::path::absolute(path)
                .ok()
                .and_then(|path| path.parent().map(Path::to_owned)),
        }
        .config(raw)
    }

    fn from_discovery_args(args: &DiscoveryArgs) -> Result<Config, ConfigError> {
        let v = Validator {
            source: Source::CommandLine,
            line_starts: Vec::new(),
            base: None,
        };
        if !args.selects_pool() {
            return Err(v.invalid(
                "--security-group",
                "the config-less mode needs at least one of `--security-group`, `--image-id` or `--tag`",
            ));
        }
        let mut tags = BTreeMap::new();
        for tag in &args.tags {
            let Some((key, value)) = tag.split_once('=') else {
                return Err(v.invalid("--tag", format!("expected KEY=VALUE, got `{tag}`")));
            };
            tags.insert(key.to_owned(), value.to_owned());
        }
        let split =
            |flag: &str, command: &Option<String>| -> Result<Option<Vec<String>>, ConfigError> {
                command
                    .as_deref()
                    .map(|line| {
                        shlex::split(line).ok_or_else(|| {
                            v.invalid(flag, format!("cannot split `{line}` into arguments"))
                        })
                    })
                    .transpose()
            };
        let raw = RawConfig {
            state: RawState {
                path: args.state.clone(),
            },
            haproxy: RawHaproxy {
                config: args.haproxy_config.clone(),
                template: args.template.clone(),
                check_command: split("--check-command", &args.check_command)?,
                reload_command: split("--reload-command", &args.reload_command)?,
                ..RawHaproxy::default()
            },
            aws: RawAws {
                region: args.region.clone(),
                endpoint_url: args.endpoint_url.clone(),
                ..RawAws::default()
            },
            pool: vec![toml::Spanned::new(
                0..0,
                RawPool {
                    name: "default".to_owned(),
                    backend: None,
                    port: args.port.map(i64::from).ok_or_else(|| {
                        v.invalid(
                            "--port",
                            "the config-less mode needs the backends' `--port`",
                        )
                    })?,
                    address: None,
                    provider: None,
                    allow_empty: None,
                    discover: Some(RawDiscover {
                        security_group: args.security_group.clone(),
                        image_id: args.image_id.clone(),
                        tags,
                    }),
                    ready_check: None,
                    launch: None,
                    scaling: None,
                    exec: None,
                    static_hosts: None,
                },
            )],
            notify: None,
            metrics_file: None,
        };
        v.config(raw)
    }
}

/// Validates raw structs, naming keys in the style of the source (TOML keys or flags).
struct Validator {
    source: Source,
    /// Where each line of the config text starts (empty on the command line).
    line_starts: Vec<usize>,
    /// The config file's folder, which relative paths in it are relative to; `None` on the
    /// command line (relative to the working directory, as a shell user expects).
    base: Option<PathBuf>,
}

impl Validator {
    /// A path from the config, made relative to the config file's folder.
    fn path(&self, path: PathBuf) -> PathBuf {
        match &self.base {
            // `./x` joins as `BASE/x`, not `BASE/./x`.
            Some(base) if path.is_relative() => base.join(
                path.components()
                    .filter(|part| *part != std::path::Component::CurDir)
                    .collect::<PathBuf>(),
            ),
            _ => path,
        }
    }

    /// A command's argv with its program made relative to the config file's folder when it is
    /// named by a relative path (`./bin/list`); a bare name is looked up in `PATH` when run.
    fn command_path(&self, mut argv: Vec<String>) -> Vec<String> {
        if let Some(program) = argv.first_mut()
            && program.contains('/')
        {
            *program = self
                .path(PathBuf::from(&*program))
                .to_string_lossy()
                .into_owned();
        }
        argv
    }

    fn invalid(&self, key: impl Into<Key>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            origin: self.source.clone(),
            key: key.into(),
            message: message.into(),
        }
    }

    /// The TOML key in a file, the flag on the command line.
    fn key<'a>(&self, toml_key: &'a str, flag: &'a str) -> &'a str {
        match self.source {
            Source::File(_) => toml_key,
            Source::CommandLine => flag,
        }
    }

    /// A pool's key in a file, the flag on the command line.
    fn pool_key(&self, key: Key, flag: &str) -> Key {
        match self.source {
            Source::File(_) => key,
            Source::CommandLine => flag.into(),
        }
    }

    /// The line (from 1) of byte `offset` of the config text.
    fn line_of(&self, offset: usize) -> Option<usize> {
        (!self.line_starts.is_empty())
            .then(|| self.line_starts.partition_point(|start| *start <= offset))
    }

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let notify = self.notify(raw.notify.unwrap_or_default())?;
        if raw.metrics_file.is_some() {
            return Err(self.not_yet("metrics_file"));
        }
        let haproxy = self.haproxy(raw.haproxy)?;
        let aws = self.aws(raw.aws)?;
        if raw.pool.is_empty() {
            return Err(self.invalid("pool", "at least one `[[pool]]` is needed"));
        }
        let mut pools = Vec::with_capacity(raw.pool.len());
        let mut names = BTreeSet::new();
        let mut backends = BTreeMap::new();
        for raw_pool in raw.pool {
            let at = PoolAt {
                name: raw_pool.get_ref().name.clone(),
                line: self.line_of(raw_pool.span().start),
            };
            let pool = self.pool(&at, raw_pool.into_inner())?;
            if !names.insert(pool.name.clone()) {
                return Err(self.invalid(
                    at.key("name"),
                    format!("pool name `{}` is used twice", pool.name),
                ));
            }
            if let Some(other) = backends.insert(pool.backend.clone(), pool.name.clone()) {
                return Err(self.invalid(
                    at.key("backend"),
                    format!(
                        "backend `{}` is already filled by pool `{other}`; each pool needs its own backend",
                        pool.backend
                    ),
                ));
            }
            pools.push(pool);
        }
        if let Some(pool) = pools.iter().find(|pool| pool.scaling.is_some())
            && haproxy.stats.is_none()
        {
            return Err(self.invalid(
                "haproxy.stats_socket",
                format!(
                    "pool `{}` scales on HAProxy's stats: set `stats_socket` (or `stats_url`)",
                    pool.name
                ),
            ));
        }
        let state_path = self.path(
            raw.state
                .path
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_PATH)),
        );
        if state_path.file_name().is_none() {
            return Err(self.invalid(
                self.key("state.path", "--state"),
                format!("`{}` is not a file path", state_path.display()),
            ));
        }
        let config = Config {
            source: self.source.clone(),
            identity: match &self.source {
                Source::File(path) => file_identity(path).display().to_string(),
                Source::CommandLine => "command line".to_owned(),
            },
            state_path,
            haproxy,
            aws,
            pools,
            notify,
        };
        self.distinct_files(&config)?;
        Ok(config)
    }

    /// No two of the files a run reads or writes may be the same file (directly, through `..`,
    /// relative paths or symlinks): the run would destroy its own inputs (a state path equal to
    /// haproxy.cfg's backup is overwritten by the backup; a template equal to the output is
    /// overwritten by its rendering).
    fn distinct_files(&self, config: &Config) -> Result<(), ConfigError> {
        let with_suffix = |path: &Path, suffix: &str| {
            let mut text = path.as_os_str().to_owned();
            text.push(suffix);
            PathBuf::from(text)
        };
        let state_key = self.key("state.path", "--state");
        let config_key = self.key("haproxy.config", "--haproxy-config");
        let template_key = self.key("haproxy.template", "--template");
        // (the key to name, what the file is, its path)
        let mut files: Vec<(&str, String, PathBuf)> = vec![
            (
                template_key,
                format!("`{template_key}`"),
                config.haproxy.template.clone(),
            ),
            (
                config_key,
                format!("`{config_key}`"),
                config.haproxy.config.clone(),
            ),
            (
                config_key,
                format!("the backup of `{config_key}`"),
                with_suffix(&config.haproxy.config, ".bak"),
            ),
            (
                state_key,
                format!("`{state_key}`"),
                config.state_path.clone(),
            ),
            (
                state_key,
                format!("the lock file of `{state_key}`"),
                with_suffix(&config.state_path, ".lock"),
            ),
            (
                state_key,
                format!("the failure record of `{state_key}`"),
                with_suffix(&config.state_path, ".failing"),
            ),
        ];
        if let Source::File(path) = &self.source {
            files.insert(0, ("", "the config file".to_owned(), path.clone()));
        }
        if let Some(StatsSource::Socket(socket)) = &config.haproxy.stats {
            let key = "haproxy.stats_socket";
            files.push((key, format!("`{key}`"), PathBuf::from(socket)));
        }
        if let Some(socket) = config.haproxy.reload.master_socket() {
            let key = "haproxy.master_socket";
            files.push((key, format!("`{key}`"), socket.to_owned()));
        }
        let mut seen: Vec<(&str, PathBuf)> = Vec::with_capacity(files.len());
        for (key, what, path) in &files {
            let identity = file_identity(path);
            if let Some((other, _)) = seen.iter().find(|(_, known)| *known == identity) {
                return Err(self.invalid(
                    *key,
                    format!(
                        "{what} and {other} are the same file `{}`; the run would overwrite one with the other: give each its own path",
                        identity.display()
                    ),
                ));
            }
            seen.push((what, identity));
        }
        Ok(())
    }

    fn notify(&self, raw: RawNotify) -> Result<Notify, ConfigError> {
        let defaults = Notify::default();
        let on = match raw.on {
            None => defaults.on,
            Some(events) => events
                .iter()
                .map(|event| {
                    EventKind::parse(event).ok_or_else(|| {
                        let names: Vec<&str> = EventKind::ALL.iter().map(|k| k.name()).collect();
                        self.invalid(
                            "notify.on",
                            format!(
                                "unknown event `{event}`; expected one of {}",
                                names.join(", ")
                            ),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        if let Some(url) = &raw.webhook
            && ((!url.starts_with("http://") && !url.starts_with("https://"))
                || url.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            // The URL is a secret: the message names the key, not the value.
            return Err(self.invalid("notify.webhook", "is not an http:// or https:// URL"));
        }
        let command = raw
            .command
            .map(|argv| self.argv("notify.command", argv))
            .transpose()?;
        let rapid_scales = raw.rapid_scales.unwrap_or(i64::from(defaults.rapid_scales));
        if !(1..=10_000).contains(&rapid_scales) {
            return Err(self.invalid(
                "notify.rapid_scales",
                format!("must be between 1 and 10000, got {rapid_scales}"),
            ));
        }
        let rapid_window_s = raw.rapid_window_s.unwrap_or(defaults.rapid_window_s as i64);
        if !(1..=86_400 * 7).contains(&rapid_window_s) {
            return Err(self.invalid(
                "notify.rapid_window_s",
                format!("must be between 1 and 604800, got {rapid_window_s}"),
            ));
        }
        let repeat_failed_s = raw
            .repeat_failed_s
            .unwrap_or(defaults.repeat_failed_s as i64);
        if !(0..=86_400 * 7).contains(&repeat_failed_s) {
            return Err(self.invalid(
                "notify.repeat_failed_s",
                format!("must be between 0 (never repeat) and 604800, got {repeat_failed_s}"),
            ));
        }
        Ok(Notify {
            repeat_failed_s: repeat_failed_s as u64,
            on,
            webhook: raw.webhook.map(Secret),
            command,
            rapid_scales: rapid_scales as u32,
            rapid_window_s: rapid_window_s as u64,
        })
    }

    fn not_yet(&self, key: impl Into<Key>) -> ConfigError {
        self.invalid(key, "is not supported by this version yet; remove it")
    }

    fn haproxy(&self, raw: RawHaproxy) -> Result<HaproxyConfig, ConfigError> {
        let config = self.path(
            raw.config
                .unwrap_or_else(|| PathBuf::from(DEFAULT_HAPROXY_CONFIG)),
        );
        if config.file_name().is_none() {
            return Err(self.invalid(
                self.key("haproxy.config", "--haproxy-config"),
                format!("`{}` is not a file path", config.display()),
            ));
        }
        let template = self.path(
            raw.template
                .unwrap_or_else(|| PathBuf::from(DEFAULT_TEMPLATE)),
        );
        let stats = match (raw.stats_socket, raw.stats_url) {
            (Some(_), Some(_)) => {
                return Err(self.invalid(
                    "haproxy.stats_url",
                    "set either `stats_socket` or `stats_url`, not both",
                ));
            }
            (Some(socket), None) => Some(StatsSource::Socket(
                self.path(self.non_empty("haproxy.stats_socket", socket)?.into())
                    .to_string_lossy()
                    .into_owned(),
            )),
            (None, Some(url)) => {
                // The stats reader speaks plain HTTP (HAProxy's stats page is on the load
                // balancer itself, usually on loopback): an https:// URL would fail every run.
                if url.starts_with("https://") {
                    return Err(self.invalid(
                        "haproxy.stats_url",
                        format!("`{url}`: https is not supported for the stats page; serve it on a loopback http:// address (or use `stats_socket`)"),
                    ));
                }
                if !url.starts_with("http://") || url.len() == "http://".len() {
                    return Err(self.invalid(
                        "haproxy.stats_url",
                        format!("`{url}` is not an http:// URL"),
                    ));
                }
                Some(StatsSource::Url(url))
            }
            (None, None) => None,
        };
        let check_key = self.key("haproxy.check_command", "--check-command");
        let check_command = match raw.check_command {
            Some(argv) => self.argv(check_key, argv)?,
            None => ["haproxy", "-c", "-f", CONFIG_PLACEHOLDER]
                .map(String::from)
                .to_vec(),
        };
        if !check_command
            .iter()
            .any(|arg| arg.contains(CONFIG_PLACEHOLDER))
        {
            return Err(self.invalid(
                check_key,
                format!("must contain `{CONFIG_PLACEHOLDER}` so that the candidate file is the one checked"),
            ));
        }
        let reload_key = self.key("haproxy.reload_command", "--reload-command");
        let reload_command = raw
            .reload_command
            .map(|argv| self.argv(reload_key, argv))
            .transpose()?;
        let master_socket = raw.master_socket.map(|path| self.path(path));
        let reload = match (reload_command, master_socket) {
            (None, None) => Reload::Command {
                argv: ["systemctl", "reload", "haproxy"]
                    .map(String::from)
                    .to_vec(),
                master_socket: None,
            },
            (None, Some(socket)) => Reload::MasterSocket(socket),
            (Some(argv), master_socket) => Reload::Command {
                argv,
                master_socket,
            },
        };
        let timeout_s = raw
            .command_timeout_s
            .unwrap_or(DEFAULT_COMMAND_TIMEOUT_S as i64);
        if !(1..=3600).contains(&timeout_s) {
            return Err(self.invalid(
                "haproxy.command_timeout_s",
                format!("must be between 1 and 3600 seconds, got {timeout_s}"),
            ));
        }
        Ok(HaproxyConfig {
            config,
            template,
            stats,
            check_command,
            reload,
            command_timeout: Duration::from_secs(timeout_s as u64),
        })
    }

    fn argv(&self, key: impl Into<Key>, argv: Vec<String>) -> Result<Vec<String>, ConfigError> {
        match argv.first() {
            None => Err(self.invalid(key, "must name a program: the list is empty")),
            Some(program) if program.trim().is_empty() => {
                Err(self.invalid(key, "the program name (first element) is empty"))
            }
            Some(_) => Ok(self.command_path(argv)),
        }
    }

    fn non_empty(&self, key: impl Into<Key>, value: String) -> Result<String, ConfigError> {
        if value.trim().is_empty() {
            Err(self.invalid(key, "must not be empty"))
        } else {
            Ok(value)
        }
    }

    fn aws(&self, raw: RawAws) -> Result<AwsConfig, ConfigError> {
        if let Some(region) = &raw.region
            && (region.is_empty()
                || !region
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
        {
            return Err(self.invalid(
                self.key("aws.region", "--region"),
                format!("`{region}` is not an AWS region name such as `eu-west-1`"),
            ));
        }
        if let Some(url) = &raw.endpoint_url
            && !url.starts_with("http://")
            && !url.starts_with("https://")
        {
            return Err(self.invalid(
                self.key("aws.endpoint_url", "--endpoint-url"),
                format!("`{url}` is not an http:// or https:// URL"),
            ));
        }
        let max_attempts = raw
            .max_attempts
            .unwrap_or(i64::from(DEFAULT_AWS_MAX_ATTEMPTS));
        if !(1..=10).contains(&max_attempts) {
            return Err(self.invalid(
                "aws.max_attempts",
                format!("must be between 1 and 10, got {max_attempts}"),
            ));
        }
        let attempt_timeout_s = raw
            .attempt_timeout_s
            .unwrap_or(DEFAULT_AWS_ATTEMPT_TIMEOUT_S as i64);
        if !(1..=300).contains(&attempt_timeout_s) {
            return Err(self.invalid(
                "aws.attempt_timeout_s",
                format!("must be between 1 and 300 seconds, got {attempt_timeout_s}"),
            ));
        }
        Ok(AwsConfig {
            region: raw.region,
            endpoint_url: raw.endpoint_url,
            max_attempts: max_attempts as u32,
            attempt_timeout: Duration::from_secs(attempt_timeout_s as u64),
        })
    }

    fn pool(&self, pool: &PoolAt, raw: RawPool) -> Result<PoolConfig, ConfigError> {
        let at = |key: &str| pool.key(key);
        if !is_name(&raw.name) {
            return Err(self.invalid(
                at("name"),
                format!("`{}` must be letters, digits, `-`, `_` or `.`", raw.name),
            ));
        }
        let backend = raw.backend.unwrap_or_else(|| raw.name.clone());
        if !is_name(&backend) {
            return Err(self.invalid(
                at("backend"),
                format!("`{backend}` must be letters, digits, `-`, `_` or `.`"),
            ));
        }
        let port = u16::try_from(raw.port)
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| {
                self.invalid(
                    self.pool_key(at("port"), "--port"),
                    format!("must be between 1 and 65535, got {}", raw.port),
                )
            })?;
        let address = match raw.address.as_deref() {
            None | Some("private-ip") => AddressSource::PrivateIp,
            Some("public-ip") => AddressSource::PublicIp,
            Some(other) => match other.strip_prefix("tag:") {
                Some(key) if !key.is_empty() => AddressSource::Tag(key.to_owned()),
                _ => {
                    return Err(self.invalid(
                        at("address"),
                        format!("`{other}`: expected `private-ip`, `public-ip` or `tag:KEY`"),
                    ));
                }
            },
        };
        if raw.static_hosts.is_some() {
            return Err(self.not_yet(at("static")));
        }
        let scales = raw.scaling.is_some();
        let (provider, discover, launcher) = match raw.provider.as_deref() {
            None | Some("ec2") => {
                if raw.exec.is_some() {
                    return Err(self.invalid(at("exec"), "is only for `provider = \"exec\"`"));
                }
                let discover = self.discover(pool, raw.discover.unwrap_or_default())?;
                let launch = raw
                    .launch
                    .map(|launch| self.launch(pool, launch))
                    .transpose()?;
                (ProviderKind::Ec2, discover, launch.map(Launcher::Ec2))
            }
            Some("exec") => {
                if raw.discover.is_some() {
                    return Err(self.invalid(
                        at("discover"),
                        "is for EC2 pools; an exec pool's `list` command decides what it lists",
                    ));
                }
                if raw.launch.is_some() {
                    return Err(self.invalid(
                        at("launch"),
                        "is for EC2 pools; an exec pool launches with `[pool.exec] launch`",
                    ));
                }
                let (exec, launcher) = self.exec(pool, raw.exec, scales)?;
                (ProviderKind::Exec(exec), Discover::default(), launcher)
            }
            Some("static") => {
                return Err(self.invalid(
                    at("provider"),
                    "provider `static` is not supported by this version yet; use `ec2` or `exec`",
                ));
            }
            Some(other) => {
                return Err(self.invalid(
                    at("provider"),
                    format!("unknown provider `{other}`; expected `ec2`, `exec` or `static`"),
                ));
            }
        };
        let scaling = match (raw.scaling, launcher) {
            (None, _) => None,
            (Some(scaling), Some(launcher)) => Some(self.scaling(pool, scaling, launcher)?),
            (Some(_), None) => {
                return Err(self.invalid(
                    at("launch"),
                    "`[pool.scaling]` needs `[pool.launch]` to know how to launch instances",
                ));
            }
        };
        let ready_check = match raw.ready_check.as_deref() {
            None | Some("tcp") => ReadyCheck::Tcp,
            Some("none") => ReadyCheck::None,
            Some(other) => match other.strip_prefix("http:") {
                Some(path) if path.starts_with('/') && is_haproxy_token(path) => {
                    ReadyCheck::Http(path.to_owned())
                }
                _ => {
                    return Err(self.invalid(
                        at("ready_check"),
                        format!("`{other}`: expected `tcp`, `none` or `http:/PATH`"),
                    ));
                }
            },
        };
        Ok(PoolConfig {
            name: raw.name,
            backend,
            port,
            address,
            allow_empty: raw.allow_empty.unwrap_or(false),
            provider,
            discover,
            scaling,
            ready_check,
        })
    }

    fn exec(
        &self,
        pool: &PoolAt,
        raw: Option<RawExec>,
        scaling: bool,
    ) -> Result<(ExecCommands, Option<Launcher>), ConfigError> {
        let at = |key: &str| pool.key(&format!("exec.{key}"));
        let raw = raw.ok_or_else(|| {
            self.invalid(
                pool.key("exec"),
                "`provider = \"exec\"` needs `[pool.exec]` with at least `list`",
            )
        })?;
        let list = raw.list.ok_or_else(|| {
            self.invalid(
                at("list"),
                "is required: the command that prints the instances as JSON",
            )
        })?;
        let list = self.argv(at("list"), list)?;
        let launch = raw
            .launch
            .map(|argv| self.argv(at("launch"), argv))
            .transpose()?;
        let terminate = raw
            .terminate
            .map(|argv| self.argv(at("terminate"), argv))
            .transpose()?;
        let launcher = match (launch, terminate) {
            (Some(launch), Some(terminate)) => Some(Launcher::Exec { launch, terminate }),
            (launch, _) if scaling => {
                return Err(self.invalid(
                    at(if launch.is_none() {
                        "launch"
                    } else {
                        "terminate"
                    }),
                    "is required when the pool scales",
                ));
            }
            // Not used without `[pool.scaling]`.
            _ => None,
        };
        let timeout_s = raw.timeout_s.unwrap_or(60);
        if !(1..=3600).contains(&timeout_s) {
            return Err(self.invalid(
                at("timeout_s"),
                format!("must be between 1 and 3600 seconds, got {timeout_s}"),
            ));
        }
        Ok((
            ExecCommands {
                list,
                timeout: Duration::from_secs(timeout_s as u64),
            },
            launcher,
        ))
    }

    fn discover(&self, pool: &PoolAt, raw: RawDiscover) -> Result<Discover, ConfigError> {
        let at = |key: &str| pool.key(&format!("discover.{key}"));
        if raw.security_group.is_none() && raw.image_id.is_none() && raw.tags.is_empty() {
            return Err(self.invalid(
                at("security_group"),
                "`[pool.discover]` needs at least one of `security_group`, `image_id` or `tags`",
            ));
        }
        let security_group = raw
            .security_group
            .map(|group| {
                self.non_empty(
                    self.pool_key(at("security_group"), "--security-group"),
                    group,
                )
            })
            .transpose()?;
        let image_id = raw
            .image_id
            .map(|image| self.non_empty(self.pool_key(at("image_id"), "--image-id"), image))
            .transpose()?;
        for key in raw.tags.keys() {
            if key.is_empty() {
                return Err(self.invalid(self.pool_key(at("tags"), "--tag"), "a tag key is empty"));
            }
        }
        Ok(Discover {
            security_group,
            image_id,
            tags: raw.tags,
        })
    }
}

/// A TOML error as position and reason, never the offending line itself nor a quoted value:
/// the line may hold a secret (a webhook URL with its token), and errors reach cron mail.
fn parse_message(text: &str, error: &toml::de::Error) -> String {
    let position = error.span().map(|span| {
        let start = span.start.min(text.len());
        let before = &text[..start];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |at| at + 1);
        let column = start - line_start + 1;
        // The key of that line (keys are never secret; what follows `=` may be).
        let line_text = text[line_start..].lines().next().unwrap_or_default();
        let key = line_text
            .split_once('=')
            .map(|(key, _)| key.trim())
            .filter(|key| {
                !key.is_empty()
                    && key
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            });
        match key {
            Some(key) => format!("line {line}, column {column}, `{key}`: "),
            None => format!("line {line}, column {column}: "),
        }
    });
    format!(
        "{}{}",
        position.unwrap_or_default(),
        without_quoted_values(error.message().trim_end())
    )
}

/// `message` with every double-quoted value replaced by `"…"` (serde quotes the value it could
/// not use: `invalid type: string "https://…", expected …`).
fn without_quoted_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quoted = false;
    let mut escaped = false;
    for c in message.chars() {
        if quoted {
            match (escaped, c) {
                (false, '\\') => escaped = true,
                (false, '"') => {
                    quoted = false;
                    out.push_str("…\"");
                }
                _ => escaped = false,
            }
        } else {
            if c == '"' {
                quoted = true;
            }
            out.push(c);
        }
    }
    if quoted {
        out.push_str("…\"");
    }
    out
}

/// What a path names once `..`, relative parts and symlinks are resolved: the file itself when
/// it exists, else its resolved folder and its name.
fn file_identity(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    if let Ok(resolved) = absolute.canonicalize() {
        return resolved;
    }
    // A dangling symlink names the file a write would create where it points.
    if let Ok(target) = crate::fs_atomic::write_target(&absolute)
        && target != absolute
    {
        return file_identity(&target);
    }
    match (absolute.parent(), absolute.file_name()) {
        (Some(parent), Some(name)) => file_identity(parent).join(name),
        // `/x/..` has no file name: it is its parent's parent.
        (Some(parent), None) => file_identity(parent)
            .parent()
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("/")),
        _ => absolute,
    }
}

/// Pool and backend names: they reach haproxy.cfg, so they must be plain tokens.
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && is_haproxy_token(name)
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
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
    fn minimal_config_gets_the_documented_defaults() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.state_path, Path::new(DEFAULT_STATE_PATH));
        assert_eq!(config.haproxy.config, Path::new(DEFAULT_HAPROXY_CONFIG));
        assert_eq!(config.haproxy.template, Path::new(DEFAULT_TEMPLATE));
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

    /// One test per invalid config, named for what is wrong: a failing case never hides the
    /// others.
    macro_rules! invalid_config {
        ($($name:ident: $text:expr => [$($word:expr),+ $(,)?];)+) => {
            mod invalid {
                use super::*;
                $(
                    #[test]
                    fn $name() {
                        assert_invalid(&$text, &[$($word),+]);
                    }
                )+
            }
        };
    }

    invalid_config! {
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
        static_provider_not_yet: pool("provider = \"static\"") => ["pool `web`: `provider`", "not supported"];
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

        use scaling::LaunchTemplateRef;
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
        let cases: [(&str, &[&str]); 7] = [
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
