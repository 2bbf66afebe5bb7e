//! `hosts add|remove|list`: the hosts of a static pool, one file per host in its
//! `[pool.static] dir`. Names follow the rules for cloud instance ids (an HAProxy server name)
//! and addresses those for address tags (a plain `host:port`); writes are atomic and made under
//! the run lock, so a `hosts` command and a run never interleave.

use std::path::PathBuf;

use serde::Serialize;

use crate::cli::{Cli, Format, HostsCommand};
use crate::cloud::static_hosts::{self, HostFile};
use crate::config::{Config, PoolConfig, ProviderKind};
use crate::decide::address::{host_port_problem, parse_host_port};
use crate::decide::membership::is_server_name;
use crate::error::{EXIT_OK, Error};
use crate::fs_atomic::{self, Ownership};
use crate::store::StateLock;

mod drain;

mod error;
pub(crate) use error::HostsError;

/// A listed host, for `hosts list`.
#[derive(Debug, Serialize)]
struct Listed {
    pool: String,
    name: String,
    address: String,
    /// Why a run leaves this host out, if it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
}

pub(crate) fn run(cli: &Cli, command: &HostsCommand) -> Result<u8, Error> {
    let config = Config::from_cli(cli)?;
    match command {
        HostsCommand::Add {
            name,
            address,
            pool,
        } => {
            let (pool, dir) = pick(&config, pool.as_deref())?;
            // A name starting with `.` would be a file the provider skips (editors' files).
            if !is_server_name(name) || name.starts_with('.') {
                return Err(HostsError::BadName(name.clone()).into());
            }
            if parse_host_port(address).is_none() {
                return Err(HostsError::BadAddress {
                    value: address.clone(),
                    problem: host_port_problem(address),
                }
                .into());
            }
            let _lock = StateLock::acquire(&config.state_path)?;
            std::fs::create_dir_all(&dir).map_err(|source| HostsError::Io {
                what: "create the hosts folder",
                path: dir.clone(),
                source,
            })?;
            let path = static_hosts::host_path(&dir, name);
            if path.symlink_metadata().is_ok() {
                return Err(HostsError::Exists {
                    pool: pool.name.clone(),
                    name: name.clone(),
                    path,
                }
                .into());
            }
            let readable = Ownership {
                mode: 0o644,
                uid_gid: None,
            };
            fs_atomic::write(&path, format!("{address}\n").as_bytes(), readable).map_err(
                |source| HostsError::Io {
                    what: "write",
                    path: path.clone(),
                    source,
                },
            )?;
            say(
                cli,
                &format!("added host {name} at {address} to pool {}", pool.name),
                &serde_json::json!({"mode": "hosts", "added": {"pool": pool.name, "name": name, "address": address}}),
            );
        }
        HostsCommand::Remove {
            name,
            pool,
            drain,
            drain_timeout_s,
        } => {
            let (pool, dir) = pick(&config, pool.as_deref())?;
            let path = static_hosts::host_path(&dir, name);
            // Any entry but a folder (a FIFO, a link, dangling or not, is removed itself: what a
            // link points to is not touched); a name like `..` or `a/b` never reaches the file
            // system.
            let missing = || {
                !is_server_name(name) || !path.symlink_metadata().is_ok_and(|meta| !meta.is_dir())
            };
            if missing() {
                return Err(HostsError::Missing {
                    pool: pool.name.clone(),
                    name: name.clone(),
                }
                .into());
            }
            // The drain waits without the lock: runs go on meanwhile.
            if *drain {
                let waited = drain::drain_out(&config, pool, name, *drain_timeout_s)?;
                if !cli.quiet && cli.format == Format::Text {
                    crate::report::out(format_args!("{waited}"));
                }
            }
            let _lock = StateLock::acquire(&config.state_path)?;
            if missing() {
                return Err(HostsError::Missing {
                    pool: pool.name.clone(),
                    name: name.clone(),
                }
                .into());
            }
            std::fs::remove_file(&path)
                .and_then(|()| std::fs::File::open(&dir)?.sync_all())
                .map_err(|source| HostsError::Io {
                    what: "remove",
                    path: path.clone(),
                    source,
                })?;
            say(
                cli,
                &format!("removed host {name} from pool {}", pool.name),
                &serde_json::json!({"mode": "hosts", "removed": {"pool": pool.name, "name": name}}),
            );
        }
        HostsCommand::List { pool } => {
            let pools: Vec<(&PoolConfig, PathBuf)> = match pool {
                Some(name) => vec![pick(&config, Some(name))?],
                None => static_pools(&config).collect(),
            };
            if pools.is_empty() {
                return Err(HostsError::NoStaticPool.into());
            }
            let mut listed = Vec::new();
            for (pool, dir) in pools {
                let hosts = static_hosts::read_hosts(&dir).map_err(|source| HostsError::Io {
                    what: "read the hosts folder",
                    path: dir.clone(),
                    source,
                })?;
                listed.extend(hosts.into_iter().map(|host| listed_host(pool, host)));
            }
            print_list(cli, &listed);
        }
    }
    Ok(EXIT_OK)
}

fn listed_host(pool: &PoolConfig, host: HostFile) -> Listed {
    let endpoint = match host.endpoint {
        Ok(endpoint) => endpoint,
        Err(unreadable) => {
            return Listed {
                pool: pool.name.clone(),
                name: host.name,
                address: "-".to_owned(),
                problem: Some(unreadable),
            };
        }
    };
    // A file that holds only an address (written by hand) is served on the pool's port.
    let served = if endpoint.contains(':') && !endpoint.ends_with(']') {
        endpoint.clone()
    } else {
        format!("{endpoint}:{}", pool.port)
    };
    let address = if parse_host_port(&served).is_some() {
        served.clone()
    } else {
        endpoint.clone()
    };
    let problem = if !is_server_name(&host.name) {
        Some("the file name cannot be an HAProxy server name".to_owned())
    } else if parse_host_port(&served).is_none() {
        Some(format!(
            "not a plain `ADDRESS:PORT` ({})",
            host_port_problem(&served)
        ))
    } else {
        None
    };
    Listed {
        pool: pool.name.clone(),
        name: host.name,
        address,
        problem,
    }
}

fn print_list(cli: &Cli, listed: &[Listed]) {
    if cli.format == Format::Json {
        crate::report::out_json(&listed);
        return;
    }
    let width = |pick: fn(&Listed) -> &str, title: &str| {
        listed
            .iter()
            .map(|host| pick(host).len())
            .chain([title.len()])
            .max()
            .unwrap_or(0)
    };
    let (pool_w, name_w) = (width(|h| &h.pool, "POOL"), width(|h| &h.name, "NAME"));
    crate::report::out(format_args!(
        "{:<pool_w$}  {:<name_w$}  ADDRESS",
        "POOL", "NAME"
    ));
    for host in listed {
        let problem = host
            .problem
            .as_deref()
            .map(|problem| format!("  (left out: {problem})"))
            .unwrap_or_default();
        crate::report::out(format_args!(
            "{:<pool_w$}  {:<name_w$}  {}{problem}",
            host.pool, host.name, host.address
        ));
    }
}

/// What a change did: `line` in text, `document` with `--format json`.
fn say(cli: &Cli, line: &str, document: &serde_json::Value) {
    if cli.format == Format::Json {
        crate::report::out_json(document);
    } else if !cli.quiet {
        crate::report::out(format_args!("{line}"));
    }
}

fn static_pools(config: &Config) -> impl Iterator<Item = (&PoolConfig, PathBuf)> {
    config.pools.iter().filter_map(|pool| match &pool.provider {
        ProviderKind::Static(dir) => Some((pool, dir.clone())),
        _ => None,
    })
}

/// The static pool named `name`, or the config's only one.
fn pick<'a>(
    config: &'a Config,
    name: Option<&str>,
) -> Result<(&'a PoolConfig, PathBuf), HostsError> {
    let names = || {
        let names: Vec<String> = static_pools(config)
            .map(|(pool, _)| format!("`{}`", pool.name))
            .collect();
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    };
    if let Some(name) = name {
        static_pools(config)
            .find(|(pool, _)| pool.name == name)
            .ok_or_else(|| HostsError::NotStatic(name.to_owned(), names()))
    } else {
        let mut pools = static_pools(config);
        match (pools.next(), pools.next()) {
            (None, _) => Err(HostsError::NoStaticPool),
            (Some(only), None) => Ok(only),
            (Some(_), Some(_)) => Err(HostsError::Ambiguous(names())),
        }
    }
}
