//! Carries out a [`Plan`]: the only module that changes the world.
//!
//! It makes no decisions; it follows the plan's actions in a crash-safe order, the protocol
//! `ARCHITECTURE.md` writes down ("Several nodes: one decision, carried out once"):
//! 1. **commit**: the run's decision (new launch intents with their tokens, drains started,
//!    terminations decided, the scale history, this node's samples) is saved by
//!    compare-and-swap *before* anything else.
//!    A node that loses that race has done nothing: it decides again from what the winner
//!    committed (invariant 5: no launch is made that the state does not hold first);
//! 2. launches, each with the token its intent holds; the instance ids are recorded right after;
//! 3. drains: `set server B/S state drain` on the admin socket (the rendered config also keeps
//!    them drained across the reload);
//! 4. haproxy.cfg: if the plan says it changed, installed, and either changed in HAProxy through
//!    the runtime API (read back to be sure) or reloaded;
//! 5. terminations, once the config no longer names those servers;
//! 6. **record**: the plan's next state, with what was done. A decision committed is never
//!    voided: when another node committed meanwhile, what this run did (instance ids, a launch
//!    call that ended, drains that ended in a termination, this node's own install record) is
//!    carried onto the newer state and saved again.
//!
//! If a step fails the run stops with an error; what was done is in the state, and the next
//! run sees the same facts and finishes the job.

#[cfg(test)]
mod interleavings;

use std::collections::BTreeMap;
use std::future::Future;

use crate::cloud::{Cause, CloudError, CloudErrorKind, Operation, Provider};
use crate::config::{Config, Launcher, PoolConfig, StatsSource};
use crate::decide::plan::{Action, Plan};
use crate::failpoint;
use crate::haproxy::admin_socket;
use crate::haproxy::install::{self, Applied, RUNTIME_TIMEOUT};
use crate::model::State;
use crate::store::shared::with_own_facts;
use crate::store::{StateError, StateStore};

/// Why applying a plan stopped: the steps' own errors, as they are (the top-level error wraps
/// each as its own variant, so the exit codes are those of the step).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApplyError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Cloud(#[from] CloudError),
    #[error(transparent)]
    Install(#[from] crate::haproxy::install::InstallError),
}

/// What a run changes besides its state: the cloud, and this node's haproxy.cfg and HAProxy.
/// [`Edges`] is the real one; the protocol's interleaving test has its own.
pub(crate) trait Effects {
    /// Launches `count` instances of `pool` with `token`; returns their ids.
    fn launch(
        &self,
        pool: &str,
        count: u32,
        token: &str,
    ) -> impl Future<Output = Result<Vec<String>, ApplyError>>;

    /// Drains `backend/server` through the runtime API (a failure is only a warning: the
    /// rendered config drains it too).
    fn drain(&self, backend: &str, server: &str) -> impl Future<Output = ()>;

    /// Checks and installs the rendered config, through the runtime API or by a reload.
    fn install(&self, plan: &Plan) -> impl Future<Output = Result<Applied, ApplyError>>;

    /// Terminates instances of `pool`.
    fn terminate(&self, pool: &str, ids: &[String])
    -> impl Future<Output = Result<(), ApplyError>>;
}

/// The real effects: the pools' providers and this node's HAProxy.
pub(crate) struct Edges<'a, P> {
    pub(crate) config: &'a Config,
    pub(crate) provider: &'a P,
}

impl<P: Provider> Effects for Edges<'_, P> {
    async fn launch(&self, pool: &str, count: u32, token: &str) -> Result<Vec<String>, ApplyError> {
        let (pool_config, launcher) = scaling_pool(self.config, pool, Operation::Launch)?;
        Ok(self
            .provider
            .launch(pool_config, launcher, count, token)
            .await?)
    }

    async fn drain(&self, backend: &str, server: &str) {
        if let Some(StatsSource::Socket(socket)) = &self.config.haproxy.stats {
            if let Err(error) = admin_socket::drain(socket, backend, server, RUNTIME_TIMEOUT).await
            {
                tracing::warn!("cannot drain {backend}/{server} through the runtime API: {error}");
            }
        } else {
            tracing::info!(
                "no stats socket: {backend}/{server} is drained by the config reload only"
            );
        }
    }

    async fn install(&self, plan: &Plan) -> Result<Applied, ApplyError> {
        let started = std::time::Instant::now();
        let applied = install::install(
            &self.config.haproxy,
            &plan.rendered,
            plan.config.runtime(),
            plan.config.takes_over,
        )
        .await?;
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
        Ok(applied)
    }

    async fn terminate(&self, pool: &str, ids: &[String]) -> Result<(), ApplyError> {
        let (pool_config, launcher) = scaling_pool(self.config, pool, Operation::Terminate)?;
        Ok(self.provider.terminate(pool_config, launcher, ids).await?)
    }
}

/// Applies `plan`, made from `loaded` (the state at `revision` in `store`) by the node `node`.
/// A runtime API change that does not take is made by a reload instead, and `plan` then says so.
/// Returns how many times another node's commit made this run carry its record onto a newer
/// state (after its own decision was committed).
pub(crate) async fn apply<S: StateStore>(
    node: &str,
    plan: &mut Plan,
    (loaded, revision): (&State, S::Revision),
    store: &S,
    effects: &impl Effects,
) -> Result<u32, ApplyError> {
    // 1. The decision, committed before anything is done: this node's own facts stay as they
    //    were (nothing is installed yet), and a drain that ends in a termination stays
    //    recorded until the instance is gone.
    let decided = decision(plan, loaded);
    let mut record = Record {
        store,
        node,
        now: plan.now,
        revision,
        saved: loaded.clone(),
        state: decided,
        launched: Vec::new(),
        ended: Vec::new(),
        terminated: Vec::new(),
        unterminated: Vec::new(),
        conflicts: 0,
    };
    if record.state != record.saved {
        record.revision = store.save(&record.state, &record.revision).await?;
        record.saved = record.state.clone();
        failpoint::hit("after-decision-committed");
    }
    // 2. Launches, each recorded as soon as its call returns.
    for action in &plan.actions {
        let Action::Launch {
            pool, count, token, ..
        } = action
        else {
            continue;
        };
        failpoint::hit("after-launch-intent-saved");
        match effects.launch(pool, *count, token).await {
            Ok(ids) => {
                failpoint::hit("after-run-instances");
                record.launched.push((pool.clone(), token.clone(), ids));
            }
            Err(error) => {
                // The call is over (it failed): the next run may send it again at once.
                record.ended.push((pool.clone(), token.clone()));
                record.carry();
                record.save().await?;
                return Err(error);
            }
        }
        record.carry();
        record.save().await?;
    }
    // 3. Drains.
    for action in &plan.actions {
        if let Action::Drain {
            backend, server, ..
        } = action
        {
            effects.drain(backend, server).await;
            failpoint::hit("after-drain");
        }
    }
    // 4. haproxy.cfg.
    if plan.config.changed()
        && let Applied::FellBack(why) = effects.install(plan).await?
    {
        plan.reloaded_instead(&why);
    }
    // 5. Terminations, one call per pool.
    let mut terminate: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for action in &plan.actions {
        if let Action::Terminate { pool, server, .. } = action {
            terminate
                .entry(pool.as_str())
                .or_default()
                .push(server.clone());
        }
    }
    for (pool, ids) in terminate {
        if let Err(error) = effects.terminate(pool, &ids).await {
            // The call is over (it failed): the next run may send it again at once.
            record.unterminated.push((pool.to_owned(), ids));
            record.carry();
            record.save().await?;
            return Err(error);
        }
        failpoint::hit("after-terminate");
        record.terminated.push((pool.to_owned(), ids));
    }
    // 6. The next state, with what was done.
    failpoint::hit("before-state-save");
    // The fleet's state as last saved (another node's commits included, if this run carried
    // its record onto them), with this node's own facts after the run.
    record.state = of_the_plan(&record.state, &plan.next_state, plan);
    record.carry();
    record.save().await?;
    Ok(record.conflicts)
}

/// The state a run commits before it acts: the plan's next state for the fleet (a termination
/// decided is in it, `terminating_at`), with this node's own facts as loaded.
fn decision(plan: &Plan, loaded: &State) -> State {
    of_the_plan(&plan.next_state, loaded, plan)
}

/// `fleet`'s decisions with `own`'s facts of this node, for the plan's pools only: a pool gone
/// from the config is gone from the state, own facts included.
fn of_the_plan(fleet: &State, own: &State, plan: &Plan) -> State {
    let mut state = with_own_facts(fleet, own);
    state
        .pools
        .retain(|name, _| plan.next_state.pools.contains_key(name));
    state
}

/// How many times a run carries its record onto a newer state before it gives up (the next
/// run finds what it did from the cloud: instances by their launch token's tag).
const RECORD_ATTEMPTS: u32 = 8;

/// What a run did since its decision was committed, and the state that says so.
struct Record<'a, S: StateStore> {
    store: &'a S,
    node: &'a str,
    now: i64,
    /// The state to save.
    state: State,
    /// The state the store holds at `revision`, as far as this run knows.
    saved: State,
    revision: S::Revision,
    /// (pool, token, instance ids) per launch call that returned.
    launched: Vec<(String, String, Vec<String>)>,
    /// (pool, token) per launch call that failed.
    ended: Vec<(String, String)>,
    /// (pool, instance ids) terminated: their drain entries go.
    terminated: Vec<(String, Vec<String>)>,
    /// (pool, instance ids) whose termination call failed: decided again by the next run.
    unterminated: Vec<(String, Vec<String>)>,
    conflicts: u32,
}

impl<S: StateStore> Record<'_, S> {
    /// Writes what was done into `self.state`.
    fn carry(&mut self) {
        carry_into(
            &mut self.state,
            (&self.launched, &self.ended),
            (&self.terminated, &self.unterminated),
        );
    }

    /// Saves the record (unless the store holds it already); when another node committed
    /// first, carries it onto that node's state and tries again. What was done is never dropped
    /// for a lost race.
    async fn save(&mut self) -> Result<(), ApplyError> {
        for _ in 0..RECORD_ATTEMPTS {
            if self.state == self.saved {
                return Ok(());
            }
            match self.store.save(&self.state, &self.revision).await {
                Ok(revision) => {
                    self.revision = revision;
                    self.saved = self.state.clone();
                    return Ok(());
                }
                Err(StateError::Raced { .. }) => {
                    self.conflicts += 1;
                    tracing::info!(
                        "another node changed the shared state since this run committed its decision: carrying what this run did onto it"
                    );
                    let (latest, revision) = match self.store.load().await {
                        Ok(loaded) => loaded,
                        Err(error) => return Err(self.unrecorded(&error)),
                    };
                    let mut state = with_own_facts(&latest, &self.state);
                    self.saved = latest;
                    state
                        .nodes
                        .entry(self.node.to_owned())
                        .or_default()
                        .last_conflict_at = Some(self.now);
                    self.state = state;
                    self.revision = revision;
                    self.carry();
                }
                Err(error) => return Err(self.unrecorded(&error)),
            }
        }
        Err(self.unrecorded(&format!(
            "other nodes changed it {RECORD_ATTEMPTS} times in a row"
        )))
    }

    /// The error of a run that did something and could not record it.
    fn unrecorded(&self, cause: &dyn std::fmt::Display) -> ApplyError {
        let mut done: Vec<String> = self
            .launched
            .iter()
            .map(|(pool, token, ids)| {
                format!(
                    "launched {} in pool `{pool}` (token {token})",
                    ids.join(", ")
                )
            })
            .collect();
        done.extend(
            self.terminated
                .iter()
                .map(|(pool, ids)| format!("terminated {} in pool `{pool}`", ids.join(", "))),
        );
        if done.is_empty() {
            done.push("its decision was committed".to_owned());
        }
        ApplyError::State(StateError::Unrecorded {
            done: done.join("; "),
            cause: cause.to_string(),
        })
    }
}

/// Writes what a run did into `state`: instance ids per launch token, launch calls that ended,
/// drains that ended in a termination, and terminations whose call failed.
#[allow(
    clippy::type_complexity,
    reason = "the record's own four lists, named where `Record` declares them"
)]
fn carry_into(
    state: &mut State,
    (launched, ended): (&[(String, String, Vec<String>)], &[(String, String)]),
    (terminated, unterminated): (&[(String, Vec<String>)], &[(String, Vec<String>)]),
) {
    for (pool, token, ids) in launched {
        for intent in intents(state, pool, token) {
            intent.instance_ids = Some(ids.clone());
        }
    }
    for (pool, token) in ended {
        for intent in intents(state, pool, token) {
            intent.attempt_ended = true;
        }
    }
    for (pool, ids) in terminated {
        if let Some(pool_state) = state.pools.get_mut(pool) {
            pool_state.draining.retain(|drain| !ids.contains(&drain.id));
        }
    }
    for (pool, ids) in unterminated {
        for drain in state
            .pools
            .get_mut(pool)
            .into_iter()
            .flat_map(|pool_state| pool_state.draining.iter_mut())
            .filter(|drain| ids.contains(&drain.id))
        {
            drain.terminating_at = None;
        }
    }
}

/// The intents of `pool` with `token`.
fn intents<'a>(
    state: &'a mut State,
    pool: &str,
    token: &'a str,
) -> impl Iterator<Item = &'a mut crate::model::LaunchIntent> {
    state
        .pools
        .get_mut(pool)
        .into_iter()
        .flat_map(|pool_state| pool_state.launches.iter_mut())
        .filter(move |intent| intent.token == token)
}

/// The scaling pool a launch or termination of the plan is for, and its launcher. The plan
/// names only the config's scaling pools; a name that is not one fails that call (fatal), never
/// the process.
fn scaling_pool<'a>(
    config: &'a Config,
    pool: &str,
    operation: Operation,
) -> Result<(&'a PoolConfig, &'a Launcher), CloudError> {
    config
        .pools
        .iter()
        .filter(|candidate| candidate.name == pool)
        .find_map(|candidate| Some((candidate, &candidate.scaling.as_ref()?.launcher)))
        .ok_or_else(|| CloudError {
            pool: pool.to_owned(),
            operation,
            kind: CloudErrorKind::Fatal,
            cause: Cause::Api("the config has no scaling pool of that name".to_owned()),
        })
}
