//! Turns the world into [`crate::model`] facts for the planner: each pool's instances with their
//! endpoints resolved once, and for scaling pools the backend's stats, the readiness of new
//! servers and the instances of unresolved launch intents.
//!
//! A failed listing or look-up fails the run (nothing changes); unreadable stats only stop
//! scaling (invariant 7), and a master socket that cannot be read only makes drains run their
//! full `drain_s`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::cloud::{CloudError, Provider};
use crate::config::scaling::TAG_LAUNCH_TOKEN;
use crate::config::{ApplyMode, Config, PoolConfig, Scaling, StatsSource};
use crate::decide::address;
use crate::decide::plan::Observations;
use crate::decide::scaling;
use crate::error_chain::error_chain;
use crate::haproxy::admin_socket;
use crate::haproxy::master::Master;
use crate::model::{
    Discovered, HaproxyVersion, Info, Instance, Observed, OldWorkers, PoolState, Reading, Row,
    State, StatsSnapshot,
};
use crate::probe;

/// How long reading HAProxy's stats may take.
pub(crate) const STATS_TIMEOUT: Duration = Duration::from_secs(5);

/// Observes every pool of `config`.
pub(crate) async fn observe<'a>(
    config: &'a Config,
    provider: &impl Provider,
    state: &State,
    now: i64,
) -> Result<Observations<'a>, CloudError> {
    let scaling = config.pools.iter().any(|pool| pool.scaling.is_some());
    let stats = if scaling {
        read_stats(config).await
    } else {
        None
    };
    let old_workers = old_workers(config, state, stats.is_some()).await;
    let default_state = PoolState::default();
    let observe_pool = async |pool: &'a PoolConfig| -> Result<Observed, CloudError> {
        let started = Instant::now();
        let instances = provider.list(pool).await?;
        tracing::info!(
            "pool `{}`: {} instance(s) listed in {:?}",
            pool.name,
            instances.len(),
            started.elapsed()
        );
        let instances = with_endpoints(pool, instances);
        let Some(scaling) = &pool.scaling else {
            return Ok(Observed {
                instances,
                ..Observed::default()
            });
        };
        let pool_state = state.pools.get(&pool.name).unwrap_or(&default_state);
        Ok(Observed {
            stats: stats.as_ref().map(|(info, rows)| StatsSnapshot {
                node: config.node.clone(),
                info: *info,
                rows: rows
                    .iter()
                    .filter(|row| row.proxy == pool.backend)
                    .cloned()
                    .collect(),
                old_workers,
            }),
            found_by_token: find_by_token(provider, pool, pool_state, &instances).await?,
            ready: probe_new_servers(pool, scaling, &instances, pool_state, now).await,
            external: read_external(pool, scaling).await,
            instances,
        })
    };
    // Every pool at once (one slow cloud call does not wait for another); in config order; the
    // first error stops them all.
    let observe_pool = &observe_pool;
    let observed =
        futures_util::future::try_join_all(config.pools.iter().map(observe_pool)).await?;
    Observations::of_each(&config.pools, observed).ok_or_else(|| CloudError {
        pool: String::new(),
        operation: crate::cloud::Operation::List,
        kind: crate::cloud::CloudErrorKind::Fatal,
        cause: crate::cloud::Cause::Api(
            "internal error: an observation per pool was expected".to_owned(),
        ),
    })
}

/// Each instance with its endpoint, resolved once for the probes and the rendering.
pub(crate) fn with_endpoints(pool: &PoolConfig, instances: Vec<Instance>) -> Vec<Discovered> {
    instances
        .into_iter()
        .map(|instance| Discovered {
            endpoint: address::endpoint(pool, &instance),
            instance,
        })
        .collect()
}

/// HAProxy's stats, or `None` (with a warning) when they cannot be read: no scaling this run.
async fn read_stats(config: &Config) -> Option<(Info, Vec<Row>)> {
    let source = config.haproxy.stats.as_ref()?;
    match admin_socket::read_stats(source, STATS_TIMEOUT).await {
        Ok((mut info, rows)) => {
            // The stats page has no pid: the master's reload count stands in for it, so a
            // reload made by anyone splits the samples too.
            if let (StatsSource::Url(_), Some(path)) =
                (source, config.haproxy.reload.master_socket())
                && let Ok(show) = Master::new(path).show_proc().await
            {
                info.pid = show.reloads.saturating_add(1);
            }
            Some((info, rows))
        }
        Err(error) => {
            tracing::warn!("no scaling decision this run: {}", error_chain(&error));
            None
        }
    }
}

/// The running HAProxy's version (`show info`), when a change may go through the runtime API
/// (`apply = "runtime"` with the admin socket): what `add server` accepts depends on it. The
/// stats already read this run say it; without them (no pool scales, or they could not be read)
/// `show info` is asked. `None` when it cannot be read; the plan then keeps to what the oldest
/// supported version accepts.
pub(crate) async fn haproxy_version(
    config: &Config,
    observed: &Observations<'_>,
) -> Option<HaproxyVersion> {
    let (ApplyMode::Runtime, Some(StatsSource::Socket(socket))) =
        (config.haproxy.apply, &config.haproxy.stats)
    else {
        return None;
    };
    let from_stats = observed
        .iter()
        .find_map(|(_, observed)| observed.stats.as_ref());
    if let Some(stats) = from_stats {
        return stats.info.version;
    }
    match admin_socket::read_info(socket, STATS_TIMEOUT).await {
        Ok(info) => info.version,
        Err(error) => {
            tracing::debug!("HAProxy's version is not known: {}", error_chain(&error));
            None
        }
    }
}

/// Workers from before a reload. They matter only to a drain that may end early: the master is
/// asked only then.
async fn old_workers(config: &Config, state: &State, have_stats: bool) -> OldWorkers {
    let draining = state.pools.values().any(|pool| !pool.draining.is_empty());
    match config.haproxy.reload.master_socket() {
        Some(path) if draining && have_stats => match Master::new(path).old_workers().await {
            Ok(count) => OldWorkers::Running(count),
            Err(error) => {
                tracing::warn!(
                    "drains run their full drain_s this run: {}",
                    error_chain(&error)
                );
                OldWorkers::Unknown
            }
        },
        _ => OldWorkers::Untracked,
    }
}

/// The instances launched with each token of an intent whose ids were never recorded. The
/// listing already holds what was launched with the token and is running; the provider is asked
/// again only when its listing may leave some out (EC2's: stopped and stopping instances).
async fn find_by_token(
    provider: &impl Provider,
    pool: &PoolConfig,
    state: &PoolState,
    instances: &[Discovered],
) -> Result<BTreeMap<String, Vec<String>>, CloudError> {
    let mut found = BTreeMap::new();
    for intent in state.launches.iter().filter(|i| i.instance_ids.is_none()) {
        let listed: Vec<String> = instances
            .iter()
            .map(|found| &found.instance)
            .filter(|instance| instance.tags.get(TAG_LAUNCH_TOKEN) == Some(&intent.token))
            .map(|instance| instance.id.clone())
            .collect();
        let ids = if !listed.is_empty() || provider.lists_every_launch(pool) {
            listed
        } else {
            provider.find_by_token(pool, &intent.token).await?
        };
        found.insert(intent.token.clone(), ids);
    }
    Ok(found)
}

/// The pool's external metric, if it has one (whether its answer is a value is the plan's to
/// judge, and to say).
async fn read_external(pool: &PoolConfig, scaling: &Scaling) -> Option<Reading> {
    let metric = scaling.metric.external()?;
    let started = Instant::now();
    let reading = crate::external::read(metric).await;
    let answer = match &reading {
        Reading::Value { text, .. } => format!("answered {text}"),
        Reading::Missing(reason) => format!("gave no value ({reason})"),
    };
    tracing::info!(
        "pool `{}`: {} {answer} in {:?}",
        pool.name,
        metric.source.describe(),
        started.elapsed()
    );
    Some(reading)
}

/// Probes the servers that are not in service yet; one without a usable endpoint is not ready.
async fn probe_new_servers(
    pool: &PoolConfig,
    scaling: &Scaling,
    instances: &[Discovered],
    state: &PoolState,
    now: i64,
) -> BTreeMap<String, bool> {
    let mut ready = BTreeMap::new();
    let mut targets = Vec::new();
    for found in scaling::probe_candidates(pool, scaling, instances, state, now) {
        match &found.endpoint {
            Ok(endpoint) => targets.push((found.instance.id.clone(), endpoint.clone())),
            Err(_) => {
                ready.insert(found.instance.id.clone(), false);
            }
        }
    }
    ready.extend(probe::ready_all(&pool.ready_check, targets).await);
    ready
}
