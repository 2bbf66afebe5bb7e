//! Carries out a [`Plan`]: the only module that changes the world.
//!
//! It makes no decisions; it follows the plan's actions in a crash-safe order:
//! 1. launches: the intent (with its token) is saved to state *before* the cloud call and the
//!    instance ids right after it (invariant 5);
//! 2. drains: `set server B/S state drain` on the admin socket (the rendered config also keeps
//!    them drained across the reload);
//! 3. haproxy.cfg: installed and reloaded if the plan says it changed;
//! 4. terminations, once the config no longer names those servers;
//! 5. the plan's next state is saved.
//!
//! If a step fails the run stops with an error; what was done is in the state file, and the next
//! run sees the same facts and finishes the job.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cloud::{CloudError, Provider};
use crate::config::{Config, StatsSource};
use crate::failpoint;
use crate::haproxy::install::{self, InstallError};
use crate::haproxy::runtime;
use crate::plan::{Action, Plan};
use crate::state::{self, LaunchIntent, Loaded, State, StateError};

/// How long one runtime API command may take.
const RUNTIME_TIMEOUT: Duration = Duration::from_secs(5);

/// A step of the apply that failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Install(#[from] InstallError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Cloud(#[from] CloudError),
}

/// Applies `plan`, made from `loaded`.
pub async fn apply(
    config: &Config,
    plan: &Plan,
    loaded: &Loaded,
    provider: &impl Provider,
) -> Result<(), ApplyError> {
    let mut version = loaded.version.clone();
    let mut progress = loaded.state.clone();
    let mut launched: Vec<(&str, &str, Vec<String>)> = Vec::new();
    for action in &plan.actions {
        let Action::Launch {
            pool, count, token, ..
        } = action
        else {
            continue;
        };
        let pool_config = pool_config(config, pool);
        let requested_at = plan
            .next_state
            .pools
            .get(pool)
            .and_then(|next| next.launches.iter().find(|intent| &intent.token == token))
            .map_or(0, |intent| intent.requested_at);
        let intents = &mut progress.pools.entry(pool.clone()).or_default().launches;
        // This call may run until its timeout: a run that finds the intent meanwhile (this one
        // killed) must wait for it, so the intent says when it was sent and that it is not over.
        intents.retain(|intent| &intent.token != token);
        intents.push(LaunchIntent {
            token: token.clone(),
            count: *count,
            requested_at,
            instance_ids: None,
            attempt_ended: false,
        });
        version = state::save(&config.state_path, &progress, &version)?;
        failpoint::hit("after-launch-intent-saved");
        let ids = match provider.launch(pool_config, *count, token).await {
            Ok(ids) => ids,
            Err(error) => {
                // The call is over (it failed): the next run may send it again at once.
                if let Some(intent) = progress
                    .pools
                    .get_mut(pool.as_str())
                    .and_then(|state| state.launches.iter_mut().find(|i| &i.token == token))
                {
                    intent.attempt_ended = true;
                }
                state::save(&config.state_path, &progress, &version)?;
                return Err(error.into());
            }
        };
        failpoint::hit("after-run-instances");
        record_ids(&mut progress, pool, token, &ids);
        version = state::save(&config.state_path, &progress, &version)?;
        launched.push((pool, token, ids));
    }

    for action in &plan.actions {
        let Action::Drain {
            backend, server, ..
        } = action
        else {
            continue;
        };
        match &config.haproxy.stats {
            Some(StatsSource::Socket(socket)) => {
                if let Err(error) = runtime::drain(socket, backend, server, RUNTIME_TIMEOUT).await {
                    // The rendered config drains it too, from the next reload on.
                    tracing::warn!(
                        "cannot drain {backend}/{server} through the runtime API: {error}"
                    );
                }
            }
            _ => tracing::info!(
                "no stats socket: {backend}/{server} is drained by the config reload only"
            ),
        }
        failpoint::hit("after-drain");
    }

    if plan.config.changed {
        let started = std::time::Instant::now();
        install::install_and_reload(&config.haproxy, &plan.rendered).await?;
        tracing::info!(
            "check, install and reload: {:?} ({} bytes)",
            started.elapsed(),
            plan.rendered.len()
        );
    }

    let mut terminate: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for action in &plan.actions {
        if let Action::Terminate { pool, server, .. } = action {
            terminate
                .entry(pool.as_str())
                .or_default()
                .push(server.clone());
        }
    }
    for (pool, ids) in &terminate {
        provider.terminate(pool_config(config, pool), ids).await?;
        failpoint::hit("after-terminate");
    }

    let mut next = plan.next_state.clone();
    for (pool, token, ids) in &launched {
        record_ids(&mut next, pool, token, ids);
    }
    failpoint::hit("before-state-save");
    if next != loaded.state {
        state::save(&config.state_path, &next, &version)?;
    }
    Ok(())
}

fn pool_config<'a>(config: &'a Config, pool: &str) -> &'a crate::config::PoolConfig {
    config
        .pools
        .iter()
        .find(|candidate| candidate.name == pool)
        .expect("plan actions name the config's pools")
}

fn record_ids(state: &mut State, pool: &str, token: &str, ids: &[String]) {
    if let Some(pool_state) = state.pools.get_mut(pool) {
        for intent in pool_state
            .launches
            .iter_mut()
            .filter(|intent| intent.token == token)
        {
            intent.instance_ids = Some(ids.to_vec());
        }
    }
}
