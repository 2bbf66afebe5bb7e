//! The operator's verbs for one server: `drain POOL/SERVER`, `maintenance POOL/SERVER on|off`
//! and `protect POOL/SERVER on|off`. Each takes the run lock (a verb and a run never
//! interleave), records the mark in the state (the fleet's, with a shared state: every node's
//! next run renders it) and tells this node's HAProxy through the runtime API at once.
//!
//! What the next runs do with the marks lives in the decision core: a server under maintenance
//! is rendered as booting ones are (out of traffic, kept so across reloads), never drained,
//! replaced nor counted as capacity; a protected one is never drained nor replaced; a drained
//! one is terminated once its drain is over, as a scale-down's would be.

use std::time::Duration;

use crate::cli::{Cli, OnOff, Verb};
use crate::cloud::Provider;
use crate::config::{Config, PoolConfig, StatsSource};
use crate::error::{EXIT_FAILED, EXIT_OK, Error};
use crate::haproxy::admin_socket;
use crate::model::{Draining, PoolState};
use crate::store::{StateLock, StateStore};

mod error;

pub(crate) use error::VerbError;

/// How long HAProxy may take to answer one runtime command.
const RUNTIME_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) fn run(cli: &Cli, verb: &Verb) -> Result<u8, Error> {
    let config = Config::from_cli(cli)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    runtime.block_on(act(&config, verb, cli.quiet))
}

/// `POOL/SERVER`, checked against the config.
fn target<'a>(config: &'a Config, text: &str) -> Result<(&'a PoolConfig, String), VerbError> {
    let (pool, server) = text
        .split_once('/')
        .filter(|(pool, server)| !pool.is_empty() && !server.is_empty())
        .ok_or_else(|| VerbError::BadTarget(text.to_owned()))?;
    let found = config.pools.iter().find(|candidate| candidate.name == pool);
    let found = found.ok_or_else(|| VerbError::UnknownPool {
        pool: pool.to_owned(),
        pools: config
            .pools
            .iter()
            .map(|pool| pool.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    })?;
    Ok((found, server.to_owned()))
}

/// Adds `id` to `marks` (`on`) or takes it out; whether that changed anything.
fn set_mark(marks: &mut Vec<String>, id: &str, on: bool) -> bool {
    let had = marks.iter().any(|mark| mark == id);
    if on && !had {
        marks.push(id.to_owned());
        marks.sort();
    } else if !on && had {
        marks.retain(|mark| mark != id);
    }
    had != on
}

async fn act(config: &Config, verb: &Verb, quiet: bool) -> Result<u8, Error> {
    let text = match verb {
        Verb::Drain { target }
        | Verb::Maintenance { target, .. }
        | Verb::Protect { target, .. } => target,
    };
    let (pool, server) = target(config, text)?;
    let _lock = StateLock::acquire(&config.state_path)?;
    let (provider, store) = crate::reconcile::connect(config).await?;
    crate::store::with_store!(&store, store => {
        let (mut state, revision) = store.load().await?;
        let entry = state.pools.entry(pool.name.clone()).or_default();
        if !entry.servers.contains(&server) {
            return Err(VerbError::UnknownServer {
                pool: pool.name.clone(),
                server,
                servers: entry.servers.join(", "),
            }
            .into());
        }
        let now = crate::reconcile::unix_now() as i64;
        let (said, haproxy_state) = match verb {
            Verb::Drain { .. } => {
                drain(&provider, pool, entry, &server, now).await?
            }
            Verb::Maintenance { switch, .. } => {
                let on = *switch == OnOff::On;
                set_mark(&mut entry.maintenance, &server, on);
                let back = (!on).then(|| ready_again(pool, entry, &server)).flatten();
                if on {
                    ("is under maintenance: out of traffic, never drained, replaced nor counted".to_owned(), Some("maint"))
                } else {
                    (format!("is out of maintenance{}", back.map_or(": the next run puts it back in traffic once it is ready", |_| "")), back)
                }
            }
            Verb::Protect { switch, .. } => {
                let on = *switch == OnOff::On;
                set_mark(&mut entry.protected, &server, on);
                let said = if on {
                    "is protected: never drained nor replaced"
                } else {
                    "is no longer protected"
                };
                (said.to_owned(), None)
            }
        };
        store.save(&state, &revision).await?;
        let told = match haproxy_state {
            Some(wanted) => tell_haproxy(config, &format!("{}/{server}", pool.backend), wanted).await,
            None => Ok(String::new()),
        };
        match told {
            Ok(how) => {
                if !quiet {
                    crate::report::out(format_args!("pool {}: server {server} {said}{how}", pool.name));
                }
                Ok(EXIT_OK)
            }
            Err(why) => {
                crate::report::say(format_args!(
                    "error: pool {}: server {server} {said} in the state, but HAProxy could not be told now: {why}; the next run applies it",
                    pool.name
                ));
                Ok(EXIT_FAILED)
            }
        }
    })
}

/// The state HAProxy takes a server back to when its maintenance ends: `ready` when it was in
/// service, nothing for a booting or draining one (the next run decides).
fn ready_again(pool: &PoolConfig, entry: &PoolState, server: &str) -> Option<&'static str> {
    let draining = entry.draining.iter().any(|drain| drain.id == server);
    let booting = pool.scaling.is_some() && !entry.in_service.iter().any(|id| id == server);
    (!draining && !booting).then_some("ready")
}

/// `drain`: a scaling pool's server, if this tool may drain it, starts its drain now; the next
/// runs terminate it once the drain is over.
async fn drain(
    provider: &impl Provider,
    pool: &PoolConfig,
    entry: &mut PoolState,
    server: &str,
    now: i64,
) -> Result<(String, Option<&'static str>), Error> {
    if pool.scaling.is_none() {
        return Err(VerbError::NotScaling(pool.name.clone()).into());
    }
    if entry.draining.iter().any(|drain| drain.id == server) {
        return Ok(("is draining already".to_owned(), Some("drain")));
    }
    let instances = provider.list(pool).await?;
    let instance = instances
        .iter()
        .find(|instance| instance.id == server)
        .ok_or_else(|| VerbError::NotDrainable {
            pool: pool.name.clone(),
            server: server.to_owned(),
            why: "its provider does not list it now".to_owned(),
        })?;
    crate::decide::scaling::may_drain(instance, &pool.name, entry).map_err(|why| {
        VerbError::NotDrainable {
            pool: pool.name.clone(),
            server: server.to_owned(),
            why,
        }
    })?;
    entry.draining.push(Draining {
        id: server.to_owned(),
        since: now,
        terminating_at: None,
    });
    entry.in_service.retain(|id| id != server);
    Ok((
        "is draining: no new traffic; the next runs terminate it once its drain is over, and the policy replaces it if the pool needs it".to_owned(),
        Some("drain"),
    ))
}

/// `set server BACKEND/SERVER state STATE` on this node's HAProxy; what to add to the line.
async fn tell_haproxy(config: &Config, server: &str, wanted: &str) -> Result<String, String> {
    match &config.haproxy.stats {
        Some(StatsSource::Socket(socket)) => {
            admin_socket::set_state(socket, server, wanted, RUNTIME_TIMEOUT)
                .await
                .map_err(|error| crate::error_chain::error_chain(&error))?;
            Ok(format!(" (HAProxy: set server {server} state {wanted})"))
        }
        _ => Ok(" (no stats socket: the next run applies it to haproxy.cfg)".to_owned()),
    }
}
