//! Carries out a [`Plan`]: the only module that changes the world.
//!
//! It makes no decisions; it follows the plan's actions in a crash-safe order:
//! 1. launches: the intent (with its token) is saved to state *before* the cloud call and the
//!    instance ids right after it (invariant 5);
//! 2. drains: `set server B/S state drain` on the admin socket (the rendered config also keeps
//!    them drained across the reload);
//! 3. haproxy.cfg: if the plan says it changed, installed, and either changed in HAProxy through
//!    the runtime API (read back to be sure) or reloaded;
//! 4. terminations, once the config no longer names those servers;
//! 5. the plan's next state is saved.
//!
//! If a step fails the run stops with an error; what was done is in the state file, and the next
//! run sees the same facts and finishes the job.

use std::collections::BTreeMap;

use crate::cloud::Provider;
use crate::config::{Config, Launcher, PoolConfig, StatsSource};
use crate::decide::plan::{Action, Plan};
use crate::error::Error;
use crate::failpoint;
use crate::haproxy::admin_socket;
use crate::haproxy::install::{self, Applied, RUNTIME_TIMEOUT};
use crate::model::{LaunchIntent, State};
use crate::store::{Revision, StateStore};

/// Applies `plan`, made from `loaded` (the state at `revision` in `store`).
/// A runtime API change that does not take is made by a reload instead, and `plan` then says so.
pub(crate) async fn apply(
    config: &Config,
    plan: &mut Plan,
    (loaded, revision): (&State, Revision),
    store: &impl StateStore,
    provider: &impl Provider,
) -> Result<(), Error> {
    let mut progress = Progress {
        store,
        state: loaded.clone(),
        revision,
    };
    let launched = launch(config, plan, &mut progress, provider).await?;
    drain(config, plan).await;
    if plan.config.changed {
        let started = std::time::Instant::now();
        let applied =
            install::install(&config.haproxy, &plan.rendered, plan.runtime.as_ref()).await?;
        tracing::info!(
            "check, install and {}: {:?} ({} bytes)",
            if applied == Applied::Runtime {
                "runtime API"
            } else {
                "reload"
            },
            started.elapsed(),
            plan.rendered.len()
        );
        if let Applied::FellBack(why) = applied {
            plan.reloaded_instead(&why);
        }
    }
    terminate(config, plan, provider).await?;
    let mut next = plan.next_state.clone();
    for (pool, token, ids) in &launched {
        record_ids(&mut next, pool, token, ids);
    }
    failpoint::hit("before-state-save");
    if next != *loaded {
        progress.state = next;
        progress.save().await?;
    }
    Ok(())
}

/// The state as saved so far, and the revision it was saved at.
struct Progress<'a, S> {
    store: &'a S,
    state: State,
    revision: Revision,
}

impl<S: StateStore> Progress<'_, S> {
    async fn save(&mut self) -> Result<(), Error> {
        self.revision = self.store.save(&self.state, &self.revision).await?;
        Ok(())
    }
}

/// Makes the plan's launches: each intent is saved before its cloud call, and its instance ids
/// right after it (invariant 5). Returns (pool, token, ids) per launch.
async fn launch(
    config: &Config,
    plan: &Plan,
    progress: &mut Progress<'_, impl StateStore>,
    provider: &impl Provider,
) -> Result<Vec<(String, String, Vec<String>)>, Error> {
    let mut launched = Vec::new();
    for action in &plan.actions {
        let Action::Launch {
            pool, count, token, ..
        } = action
        else {
            continue;
        };
        let requested_at = plan
            .next_state
            .pools
            .get(pool)
            .and_then(|next| next.launches.iter().find(|intent| &intent.token == token))
            .map_or(0, |intent| intent.requested_at);
        let intents = &mut progress
            .state
            .pools
            .entry(pool.clone())
            .or_default()
            .launches;
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
        progress.save().await?;
        failpoint::hit("after-launch-intent-saved");
        let (pool_config, launcher) = scaling_pool(config, pool);
        let ids = match provider.launch(pool_config, launcher, *count, token).await {
            Ok(ids) => ids,
            Err(error) => {
                // The call is over (it failed): the next run may send it again at once.
                if let Some(intent) = progress
                    .state
                    .pools
                    .get_mut(pool.as_str())
                    .and_then(|state| state.launches.iter_mut().find(|i| &i.token == token))
                {
                    intent.attempt_ended = true;
                }
                progress.save().await?;
                return Err(error.into());
            }
        };
        failpoint::hit("after-run-instances");
        record_ids(&mut progress.state, pool, token, &ids);
        progress.save().await?;
        launched.push((pool.clone(), token.clone(), ids));
    }
    Ok(launched)
}

/// Drains through the runtime API; the rendered config drains them too, from the next reload
/// on, so a failure here is only a warning.
async fn drain(config: &Config, plan: &Plan) {
    for action in &plan.actions {
        let Action::Drain {
            backend, server, ..
        } = action
        else {
            continue;
        };
        match &config.haproxy.stats {
            Some(StatsSource::Socket(socket)) => {
                if let Err(error) =
                    admin_socket::drain(socket, backend, server, RUNTIME_TIMEOUT).await
                {
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
}

/// Terminates the drained instances, one call per pool, once the config no longer names them.
async fn terminate(config: &Config, plan: &Plan, provider: &impl Provider) -> Result<(), Error> {
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
        let (pool_config, launcher) = scaling_pool(config, pool);
        provider.terminate(pool_config, launcher, ids).await?;
        failpoint::hit("after-terminate");
    }
    Ok(())
}

/// The scaling pool a launch or termination of the plan is for, and its launcher.
fn scaling_pool<'a>(config: &'a Config, pool: &str) -> (&'a PoolConfig, &'a Launcher) {
    config
        .pools
        .iter()
        .filter(|candidate| candidate.name == pool)
        .find_map(|candidate| Some((candidate, &candidate.scaling.as_ref()?.launcher)))
        .expect("the plan launches and terminates only for the config's scaling pools")
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
