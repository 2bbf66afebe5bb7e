//! Validation: raw TOML shapes (or the config-less flags) in, the validated config out, with
//! every error naming the file, the line, the pool and the key at fault.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::{RawAws, RawConfig, RawDiscover, RawExec, RawHaproxy, RawNotify, RawPool};
use super::{
    AddressSource, ApplyMode, AwsConfig, CONFIG_PLACEHOLDER, Config, ConfigError,
    DEFAULT_AWS_ATTEMPT_TIMEOUT_S, DEFAULT_AWS_MAX_ATTEMPTS, DEFAULT_COMMAND_TIMEOUT_S,
    DEFAULT_HAPROXY_CONFIG, DEFAULT_STATE_PATH, Discover, EventKind, ExecCommands, HaproxyConfig,
    Key, Launcher, Notify, PoolAt, PoolConfig, ProviderKind, ReadyCheck, Reload, S3Location,
    Secret, Source, StatsSource, default_template,
};
use crate::model::is_haproxy_token;

/// `[pool.static] dir` when not given: beside the config file.
const DEFAULT_HOSTS_DIR: &str = "hosts.d";

/// Validates raw structs, naming keys in the style of the source (TOML keys or flags).
pub(super) struct Validator {
    pub(super) source: Source,
    /// Where each line of the config text starts (empty on the command line).
    pub(super) line_starts: Vec<usize>,
    /// The config file's folder, which relative paths in it are relative to; `None` on the
    /// command line (relative to the working directory, as a shell user expects).
    pub(super) base: Option<PathBuf>,
}

impl Validator {
    /// A path from the config, made relative to the config file's folder.
    pub(super) fn path(&self, path: PathBuf) -> PathBuf {
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
    pub(super) fn command_path(&self, mut argv: Vec<String>) -> Vec<String> {
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

    pub(super) fn invalid(&self, key: impl Into<Key>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            origin: self.source.clone(),
            key: key.into(),
            message: message.into(),
        }
    }

    /// The TOML key in a file, the flag on the command line.
    pub(super) fn key<'a>(&self, toml_key: &'a str, flag: &'a str) -> &'a str {
        match self.source {
            Source::File(_) => toml_key,
            Source::CommandLine => flag,
        }
    }

    /// A pool's key in a file, the flag on the command line.
    pub(super) fn pool_key(&self, key: Key, flag: &str) -> Key {
        match self.source {
            Source::File(_) => key,
            Source::CommandLine => flag.into(),
        }
    }

    /// The line (from 1) of byte `offset` of the config text.
    pub(super) fn line_of(&self, offset: usize) -> Option<usize> {
        (!self.line_starts.is_empty())
            .then(|| self.line_starts.partition_point(|start| *start <= offset))
    }

    pub(super) fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let notify = self.notify(raw.notify.unwrap_or_default())?;
        let metrics_file = match raw.metrics_file {
            None => None,
            Some(toml::Value::String(path)) if !path.is_empty() => {
                Some(self.path(PathBuf::from(path)))
            }
            Some(other) => {
                return Err(
                    self.invalid("metrics_file", format!("must be a file path, got {other}"))
                );
            }
        };
        let enabled = match raw.enabled {
            None => true,
            Some(toml::Value::Boolean(enabled)) => enabled,
            Some(other) => {
                return Err(self.invalid("enabled", format!("must be true or false, got {other}")));
            }
        };
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
        let state_key = self.key("state.path", "--state");
        let shared_state = match raw.state.path.as_ref().and_then(|path| path.to_str()) {
            Some(text) => match S3Location::parse(text) {
                Some(parsed) => Some(parsed.map_err(|reason| self.invalid(state_key, reason))?),
                None => None,
            },
            None => None,
        };
        if shared_state.is_none() && raw.state.local_path.is_some() {
            return Err(self.invalid(
                "state.local_path",
                "is only for a shared state (`path = \"s3://BUCKET/KEY\"`): a local state's lock is `path` + \".lock\"".to_owned(),
            ));
        }
        let state_path = self.path(match (&shared_state, raw.state.path) {
            (Some(_), _) => raw
                .state
                .local_path
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_PATH)),
            (None, path) => path.unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_PATH)),
        });
        // A local state has one node; its samples have always been `local`'s.
        let node = match (raw.state.node, &shared_state) {
            (Some(node), _) => node,
            (None, Some(_)) => host_name(),
            (None, None) => "local".to_owned(),
        };
        if node.is_empty() || !is_haproxy_token(&node) || node.len() > 128 {
            return Err(self.invalid(
                "state.node",
                format!("`{node}` is not a node name (letters, digits, `-`, `_`, `.`; set `[state] node`)"),
            ));
        }
        if state_path.file_name().is_none() {
            return Err(self.invalid(
                self.key("state.path", "--state"),
                format!("`{}` is not a file path", state_path.display()),
            ));
        }
        let config = Config {
            source: self.source.clone(),
            // A shared state is the fleet's: every node's config names it, from its own path.
            identity: match (&shared_state, &self.source) {
                (Some(location), _) => location.to_string(),
                (None, Source::File(path)) => file_identity(path).display().to_string(),
                (None, Source::CommandLine) => "command line".to_owned(),
            },
            state_path,
            shared_state,
            node,
            haproxy,
            aws,
            pools,
            notify,
            metrics_file,
            enabled,
        };
        self.distinct_files(&config)?;
        Ok(config)
    }

    /// No two of the files a run reads or writes may be the same file (directly, through `..`,
    /// relative paths or symlinks): the run would destroy its own inputs (a state path equal to
    /// haproxy.cfg's backup is overwritten by the backup; a template equal to the output is
    /// overwritten by its rendering).
    pub(super) fn distinct_files(&self, config: &Config) -> Result<(), ConfigError> {
        let with_suffix = super::with_suffix;
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
                config_key,
                format!("the original of `{config_key}`"),
                with_suffix(&config.haproxy.config, ".orig"),
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
        if let Some(metrics) = &config.metrics_file {
            let key = "metrics_file";
            files.push((key, format!("`{key}`"), metrics.clone()));
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
        // Every file of a static pool's folder is a host, and `hosts add NAME` writes one: no
        // file the run reads or writes may be in it (issue 29, class 1).
        for pool in &config.pools {
            let ProviderKind::Static(dir) = &pool.provider else {
                continue;
            };
            let folder = file_identity(dir);
            for (key, what, path) in &files {
                let identity = file_identity(path);
                if identity.parent() == Some(folder.as_path()) {
                    // The config file has no key of its own: the folder's is named.
                    let key = if key.is_empty() { "static.dir" } else { *key };
                    return Err(self.invalid(
                        key,
                        format!(
                            "{what} `{}` is in pool `{}`'s hosts folder `{}`, where every file is a host (and `hosts add` writes): give it a folder of its own",
                            identity.display(),
                            pool.name,
                            folder.display()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    pub(super) fn notify(&self, raw: RawNotify) -> Result<Notify, ConfigError> {
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
        let rapid_scales = self.in_range("notify.rapid_scales", rapid_scales, 1..=10_000)?;
        let rapid_window_s = raw.rapid_window_s.unwrap_or(defaults.rapid_window_s as i64);
        let rapid_window_s =
            self.in_range("notify.rapid_window_s", rapid_window_s, 1..=86_400 * 7)?;
        let repeat_failed_s = raw
            .repeat_failed_s
            .unwrap_or(defaults.repeat_failed_s as i64);
        let repeat_failed_s =
            self.in_range("notify.repeat_failed_s", repeat_failed_s, 0..=86_400 * 7)?;
        Ok(Notify {
            repeat_failed_s: repeat_failed_s as u64,
            on,
            webhook: raw.webhook.map(Secret),
            command,
            rapid_scales: rapid_scales as u32,
            rapid_window_s: rapid_window_s as u64,
        })
    }

    /// `value` if it is in `range`, or an error naming the key, the range and the value.
    pub(super) fn in_range(
        &self,
        key: impl Into<Key>,
        value: i64,
        range: std::ops::RangeInclusive<i64>,
    ) -> Result<i64, ConfigError> {
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(self.invalid(
                key,
                format!(
                    "must be between {} and {}, got {value}",
                    range.start(),
                    range.end()
                ),
            ))
        }
    }

    pub(super) fn haproxy(&self, raw: RawHaproxy) -> Result<HaproxyConfig, ConfigError> {
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
                .unwrap_or_else(|| default_template(std::path::Path::exists)),
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
        let timeout_s = self.in_range("haproxy.command_timeout_s", timeout_s, 1..=3600)?;
        let apply = match raw.apply.as_deref() {
            None | Some("runtime") => ApplyMode::Runtime,
            Some("reload") => ApplyMode::Reload,
            Some(other) => {
                return Err(self.invalid(
                    "haproxy.apply",
                    format!("`{other}` is not one of `runtime` (server changes through the runtime API) or `reload` (always reload)"),
                ));
            }
        };
        Ok(HaproxyConfig {
            config,
            template,
            stats,
            check_command,
            reload,
            command_timeout: Duration::from_secs(timeout_s as u64),
            apply,
        })
    }

    pub(super) fn argv(
        &self,
        key: impl Into<Key>,
        argv: Vec<String>,
    ) -> Result<Vec<String>, ConfigError> {
        match argv.first() {
            None => Err(self.invalid(key, "must name a program: the list is empty")),
            Some(program) if program.trim().is_empty() => {
                Err(self.invalid(key, "the program name (first element) is empty"))
            }
            Some(_) => Ok(self.command_path(argv)),
        }
    }

    pub(super) fn non_empty(
        &self,
        key: impl Into<Key>,
        value: String,
    ) -> Result<String, ConfigError> {
        if value.trim().is_empty() {
            Err(self.invalid(key, "must not be empty"))
        } else {
            Ok(value)
        }
    }

    pub(super) fn aws(&self, raw: RawAws) -> Result<AwsConfig, ConfigError> {
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
        let max_attempts = self.in_range("aws.max_attempts", max_attempts, 1..=10)?;
        let attempt_timeout_s = raw
            .attempt_timeout_s
            .unwrap_or(DEFAULT_AWS_ATTEMPT_TIMEOUT_S as i64);
        let attempt_timeout_s =
            self.in_range("aws.attempt_timeout_s", attempt_timeout_s, 1..=300)?;
        Ok(AwsConfig {
            region: raw.region,
            endpoint_url: raw.endpoint_url,
            max_attempts: max_attempts as u32,
            attempt_timeout: Duration::from_secs(attempt_timeout_s as u64),
        })
    }

    pub(super) fn pool(&self, pool: &PoolAt, raw: RawPool) -> Result<PoolConfig, ConfigError> {
        let at = |key: &str| pool.key(key);
        if !is_name(&raw.name) {
            return Err(self.invalid(
                at("name"),
                format!("`{}` must be letters, digits, `-`, `_` or `.`", raw.name),
            ));
        }
        let backend = raw.backend.clone().unwrap_or_else(|| raw.name.clone());
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
        let address = self.address(pool, raw.address.as_deref())?;
        let (provider, discover, launcher) = self.provider(pool, &raw)?;
        let scaling = match (raw.scaling, launcher) {
            (None, _) => None,
            (Some(scaling), Some(launcher)) => Some(self.scaling(pool, &scaling, launcher)?),
            (Some(_), None) => {
                return Err(self.invalid(
                    at("launch"),
                    "`[pool.scaling]` needs `[pool.launch]` to know how to launch instances",
                ));
            }
        };
        Ok(PoolConfig {
            ready_check: self.ready_check(pool, raw.ready_check.as_deref())?,
            name: raw.name,
            backend,
            port,
            address,
            allow_empty: raw.allow_empty.unwrap_or(false),
            provider,
            discover,
            scaling,
        })
    }

    fn address(&self, pool: &PoolAt, address: Option<&str>) -> Result<AddressSource, ConfigError> {
        Ok(match address {
            None | Some("private-ip") => AddressSource::PrivateIp,
            Some("public-ip") => AddressSource::PublicIp,
            Some(other) => match other.strip_prefix("tag:") {
                Some(key) if !key.is_empty() => AddressSource::Tag(key.to_owned()),
                _ => {
                    return Err(self.invalid(
                        pool.key("address"),
                        format!("`{other}`: expected `private-ip`, `public-ip` or `tag:KEY`"),
                    ));
                }
            },
        })
    }

    /// Where the pool's instances come from, its discovery filters, and (if it has the keys for
    /// one) how it launches.
    fn provider(
        &self,
        pool: &PoolAt,
        raw: &RawPool,
    ) -> Result<(ProviderKind, Discover, Option<Launcher>), ConfigError> {
        let at = |key: &str| pool.key(key);
        if raw.static_hosts.is_some() && raw.provider.as_deref() != Some("static") {
            return Err(self.invalid(at("static"), "is only for `provider = \"static\"`"));
        }
        match raw.provider.as_deref() {
            None | Some("ec2") => {
                if raw.exec.is_some() {
                    return Err(self.invalid(at("exec"), "is only for `provider = \"exec\"`"));
                }
                let discover = self.discover(pool, raw.discover.clone().unwrap_or_default())?;
                let launch = raw
                    .launch
                    .clone()
                    .map(|launch| self.launch(pool, launch))
                    .transpose()?;
                Ok((ProviderKind::Ec2, discover, launch.map(Launcher::Ec2)))
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
                let (exec, launcher) = self.exec(pool, raw.exec.clone(), raw.scaling.is_some())?;
                Ok((ProviderKind::Exec(exec), Discover::default(), launcher))
            }
            Some("static") => {
                for (key, given) in [
                    ("discover", raw.discover.is_some()),
                    ("launch", raw.launch.is_some()),
                    ("exec", raw.exec.is_some()),
                ] {
                    if given {
                        return Err(self.invalid(
                            at(key),
                            "is not for a static pool: its servers are the files of `[pool.static] dir`",
                        ));
                    }
                }
                if raw.scaling.is_some() {
                    return Err(self.invalid(
                        at("scaling"),
                        "a static pool does not scale: its servers are the files of `[pool.static] dir`, managed with `hosts add|remove`",
                    ));
                }
                let dir = raw
                    .static_hosts
                    .clone()
                    .unwrap_or_default()
                    .dir
                    .unwrap_or_else(|| DEFAULT_HOSTS_DIR.to_owned());
                if dir.is_empty() {
                    return Err(self.invalid(at("static.dir"), "must be a folder path"));
                }
                Ok((
                    ProviderKind::Static(self.path(PathBuf::from(dir))),
                    Discover::default(),
                    None,
                ))
            }
            Some(other) => Err(self.invalid(
                at("provider"),
                format!("unknown provider `{other}`; expected `ec2`, `exec` or `static`"),
            )),
        }
    }

    fn ready_check(&self, pool: &PoolAt, check: Option<&str>) -> Result<ReadyCheck, ConfigError> {
        Ok(match check {
            None | Some("tcp") => ReadyCheck::Tcp,
            Some("none") => ReadyCheck::None,
            Some(other) => match other.strip_prefix("http:") {
                Some(path) if path.starts_with('/') && is_haproxy_token(path) => {
                    ReadyCheck::Http(path.to_owned())
                }
                _ => {
                    return Err(self.invalid(
                        pool.key("ready_check"),
                        format!("`{other}`: expected `tcp`, `none` or `http:/PATH`"),
                    ));
                }
            },
        })
    }

    pub(super) fn exec(
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
        let timeout_s = raw.timeout_s.unwrap_or(60);
        let timeout =
            Duration::from_secs(self.in_range(at("timeout_s"), timeout_s, 1..=3600)? as u64);
        let launcher = match (launch, terminate) {
            (Some(launch), Some(terminate)) => Some(Launcher::Exec {
                launch,
                terminate,
                timeout,
            }),
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
        Ok((ExecCommands { list, timeout }, launcher))
    }

    pub(super) fn discover(
        &self,
        pool: &PoolAt,
        raw: RawDiscover,
    ) -> Result<Discover, ConfigError> {
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
pub(super) fn parse_message(text: &str, error: &toml::de::Error) -> String {
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
pub(super) fn without_quoted_values(message: &str) -> String {
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
/// Whether two paths name one file, however spelled (`..`, relative paths, symlinks, a dangling
/// symlink naming the file a write would create): the check every output of a run passes.
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    file_identity(a) == file_identity(b)
}

pub(super) fn file_identity(path: &Path) -> PathBuf {
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
            .map_or_else(|| PathBuf::from("/"), Path::to_owned),
        _ => absolute,
    }
}

/// Pool and backend names: they reach haproxy.cfg, so they must be plain tokens.
pub(super) fn is_name(name: &str) -> bool {
    !name.is_empty()
        && is_haproxy_token(name)
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// This machine's host name, the default node name of a shared state.
fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}
