//! Loading a config: from the command line's config-less flags, or from a file read bounded and
//! parsed as TOML, then validated (`validate.rs`). The only part of `config` that starts from
//! the outside world; the types it builds are plain data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::raw::{RawAws, RawConfig, RawDiscover, RawHaproxy, RawPool, RawState};
use super::validate::{Validator, parse_message};
use super::{Config, ConfigError, Source};
use crate::cli::{Cli, DEFAULT_CONFIG_PATH, DiscoveryArgs};

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
        let text =
            crate::fs_atomic::read_text(path, 1024 * 1024).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
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
                ..RawState::default()
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
            enabled: None,
        };
        v.config(raw)
    }
}
