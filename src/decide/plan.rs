//! The planner: facts in, [`Plan`] out.
//!
//! It takes the validated config, what was observed of each pool (instances with their
//! endpoints, stats, readiness), the installed haproxy.cfg and the loaded state, and decides
//! everything: the scaling of each pool ([`crate::decide::scaling`]), the servers of each
//! backend ([`crate::decide::membership`]), the rendered config, whether it differs from the
//! installed one (by sha256, invariant 4), whether the change goes through the runtime API or
//! needs a reload ([`crate::decide::runtime`]), and the state to save. `--plan` prints the plan; a
//! real run hands the very same plan to `apply`, which makes no choices of its own.
//!
//! Guard (invariant 7): a pool whose discovery yields no server while its backend has servers
//! (as the state records what the last install rendered) is refused unless `allow_empty`.

use std::collections::HashSet;
use std::path::PathBuf;

use serde::Serialize;

use crate::config::{ApplyMode, Config, PoolConfig, StatsSource};
use crate::decide::context::render_leaving_out_unsafe;
use crate::decide::installed_servers::backend_servers;
use crate::decide::membership::{self, BackendPlan, Skipped, found_words};
use crate::decide::render::{RenderError, Renderer};
use crate::decide::runtime::{self, RuntimeChange};
use crate::decide::scaling::{self, ScalingFacts};
use crate::model::{HaproxyVersion, Observed, PoolState, State, sha256_hex};

/// Why no plan could be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(
        "refusing to empty backend `{backend}`: haproxy.cfg has {installed} server(s) in it, but {}; set `allow_empty = true` on the pool if an empty backend is intended",
        found_words(*found, skipped, none_found)
    )]
    WouldEmpty {
        pool: String,
        backend: String,
        installed: usize,
        /// How many instances discovery found.
        found: usize,
        /// Why each found instance was left out.
        skipped: Vec<Skipped>,
        /// What to check when none was found, in the provider's terms.
        none_found: String,
    },
    #[error(transparent)]
    Render(#[from] RenderError),
}

/// What was observed of each pool of a config: exactly one [`Observed`] per pool, in the
/// config's order. The only ways to build it go through the config's pools, so a pool cannot be
/// missing (which would read as "no instances", and remove every server).
#[derive(Debug, Clone)]
pub struct Observations<'a> {
    pools: Vec<(&'a PoolConfig, Observed)>,
}

impl<'a> Observations<'a> {
    /// What was observed of each of `pools`, in their order; `None` unless there is exactly one
    /// observation per pool (a missing one would read as "no instances").
    pub(crate) fn of_each(
        pools: &'a [PoolConfig],
        observed: Vec<Observed>,
    ) -> Option<Observations<'a>> {
        (observed.len() == pools.len()).then(|| Observations {
            pools: pools.iter().zip(observed).collect(),
        })
    }

    /// Builds the observations from a function of each pool.
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn from_fn(
        pools: &'a [PoolConfig],
        observe: impl FnMut(&'a PoolConfig) -> Observed,
    ) -> Self {
        let mut observe = observe;
        Observations {
            pools: pools.iter().map(|pool| (pool, observe(pool))).collect(),
        }
    }

    /// Each pool with what was observed of it.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&'a PoolConfig, &Observed)> + '_ {
        self.pools.iter().map(|(pool, observed)| (*pool, observed))
    }
}

/// Everything the planner needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Facts<'a> {
    pub config: &'a Config,
    pub observed: &'a Observations<'a>,
    /// The installed haproxy.cfg, `None` if there is none yet.
    pub installed: Option<&'a str>,
    pub state: &'a State,
    /// Unix seconds.
    pub now: i64,
    /// How far this node's clock is off the shared state's store, when more than
    /// [`MAX_CLOCK_OFF_S`]: scaling pools hold.
    pub clock_off_s: Option<i64>,
    /// The running HAProxy's version (`show info`), when the runtime API may be used and it
    /// answered: what `add server` accepts depends on it.
    pub haproxy_version: Option<HaproxyVersion>,
    /// What makes this run's launch tokens unique: see [`scaling::launch_token`].
    pub token_salt: &'a str,
}

/// How far a node's clock may be from the shared state's store before it stops deciding.
pub(crate) const MAX_CLOCK_OFF_S: i64 = 5;

/// The haproxy.cfg change, if any: the one record of it that apply reads (`install`), and what
/// the report shows of it (serialized with `changed` for whether there is one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ConfigChange {
    pub path: PathBuf,
    pub installed_sha256: Option<String>,
    pub rendered_sha256: String,
    #[serde(rename = "changed", serialize_with = "is_install")]
    pub install: Install,
    /// Unified diff from the installed file to the rendered one; empty when unchanged.
    pub diff: String,
    /// The run takes over a file this tool never wrote (the state records no install): it is
    /// kept as `haproxy.cfg.orig` first, unless that file exists already.
    #[serde(skip)]
    pub takes_over: bool,
}

impl ConfigChange {
    /// True when the run installs the rendered config.
    pub(crate) fn changed(&self) -> bool {
        self.install != Install::Unchanged
    }

    /// The change made through the runtime API, when it is made so.
    pub(crate) fn runtime(&self) -> Option<&RuntimeChange> {
        match &self.install {
            Install::Runtime(change) => Some(change),
            _ => None,
        }
    }
}

/// How a run makes its haproxy.cfg change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Install {
    /// Nothing to install: HAProxy runs the rendered config.
    Unchanged,
    /// Installed without a reload, its server changes made through the runtime API.
    Runtime(RuntimeChange),
    /// Installed, and HAProxy reloaded, for `reason`.
    Reload { reason: String },
}

fn is_install<S: serde::Serializer>(install: &Install, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_bool(*install != Install::Unchanged)
}

/// One thing a run does, with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub(crate) enum Action {
    AddServer {
        pool: String,
        backend: String,
        server: String,
        address: String,
        reason: String,
    },
    RemoveServer {
        pool: String,
        backend: String,
        server: String,
        reason: String,
    },
    Launch {
        pool: String,
        count: u32,
        token: String,
        retry: bool,
        reason: String,
    },
    Drain {
        pool: String,
        backend: String,
        server: String,
        reason: String,
    },
    Terminate {
        pool: String,
        server: String,
        reason: String,
    },
    InstallConfig {
        path: PathBuf,
        sha256: String,
        reason: String,
    },
    /// The installed config's server changes, made through the runtime API instead of a reload.
    ApplyRuntime {
        commands: Vec<String>,
        reason: String,
    },
    Reload {
        reason: String,
    },
}

/// Everything a run will do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub(crate) pools: Vec<BackendPlan>,
    pub(crate) config: ConfigChange,
    pub(crate) actions: Vec<Action>,
    /// What the run says once, as `warning:` lines: a hand-edited haproxy.cfg replaced, an
    /// empty backend installed. Instances left out are in each pool's `skipped` (see
    /// [`Plan::left_out`]).
    pub(crate) warnings: Vec<String>,
    /// The full rendered haproxy.cfg that apply installs.
    #[serde(skip)]
    pub(crate) rendered: String,
    /// The state apply saves; equal to the loaded state when nothing changes.
    #[serde(skip)]
    pub(crate) next_state: State,
    /// The run's clock (Unix seconds), for the state of a run that reloads after all.
    #[serde(skip)]
    pub(crate) now: i64,
}

impl Plan {
    /// True if applying the plan does anything (bookkeeping in the state file aside).
    pub(crate) fn has_changes(&self) -> bool {
        !self.actions.is_empty()
    }

    /// Records that the runtime API change did not take (`why`) and the run reloaded instead: the
    /// plan then says so, and the scaling pools' state records the reload.
    pub(crate) fn reloaded_instead(&mut self, why: &str) {
        for action in &mut self.actions {
            if matches!(action, Action::ApplyRuntime { .. }) {
                *action = Action::Reload {
                    reason: format!("the runtime API change did not take: {why}"),
                };
            }
        }
        self.config.install = Install::Reload {
            reason: format!("the runtime API change did not take: {why}"),
        };
        for pool in self.pools.iter().filter(|pool| pool.scale.is_some()) {
            if let Some(state) = self.next_state.pools.get_mut(&pool.name) {
                state.reloaded_at = Some(self.now);
            }
        }
    }

    /// One line per instance left out, and whether it is news: left out for a bad value that
    /// the previous run did not leave out. A run says the news (cron mails it once) and the
    /// rest only with `-v`; `--plan` says them all.
    pub(crate) fn left_out(&self) -> Vec<(String, bool)> {
        self.pools
            .iter()
            .flat_map(|pool| {
                let news: HashSet<&String> = pool.newly_bad.iter().collect();
                pool.skipped.iter().map(move |skipped| {
                    (
                        format!(
                            "pool `{}`: instance `{}` left out: it {}",
                            pool.name,
                            crate::model::text::shown(&skipped.instance_id),
                            skipped.reason
                        ),
                        news.contains(&skipped.instance_id),
                    )
                })
            })
            .collect()
    }
}

/// How the rendered config compares with the installed one and with the state's record.
#[derive(Debug)]
struct Comparison {
    installed_sha256: Option<String>,
    rendered_sha256: String,
    /// The installed file is not the rendered one.
    differs: bool,
    /// The file matches, but no run recorded reloading HAProxy with it.
    unconfirmed: bool,
    /// The installed file is not the one this tool last installed.
    hand_edited: bool,
}

impl Comparison {
    /// The installed file differs and was never written by this tool (the state records no
    /// install): Debian's stock haproxy.cfg, a hand-written one. It is kept as `.orig`.
    fn takes_over(&self, facts: &Facts<'_>) -> bool {
        self.differs
            && self.installed_sha256.is_some()
            && facts.state.installed_config_sha256.is_none()
    }

    fn changed(&self) -> bool {
        self.differs || self.unconfirmed
    }
}

/// Decides everything a run does.
pub(crate) fn build(facts: Facts<'_>, renderer: &Renderer) -> Result<Plan, PlanError> {
    let config = facts.config;
    let mut pools = plan_pools(&facts);
    let rendered = render_leaving_out_unsafe(renderer, config, &mut pools)?;
    membership::mark_newly_bad(&mut pools, facts.state);
    let mut actions = scale_actions(&pools);
    let empty_backends = membership_actions(&facts, &pools, &mut actions)?;
    let comparison = compare(&facts, &rendered);
    let changed = comparison.changed();
    let mut install = Install::Unchanged;
    let mut warnings = config_warnings(&facts, &comparison);
    for pool in &pools {
        if let Some(scale) = &pool.scale {
            warnings.extend(scale.warnings.iter().cloned());
        }
    }
    // A first install with an empty backend is said on the run that installs it, not on every
    // run after it.
    if changed {
        warnings.extend(empty_backends);
        actions.push(Action::InstallConfig {
            path: config.haproxy.config.clone(),
            sha256: comparison.rendered_sha256.clone(),
            reason: install_reason(&facts, &comparison, &actions),
        });
        let changed_to = format!(
            "config sha256 changed to {}",
            &comparison.rendered_sha256[..12]
        );
        match runtime_change(&facts, &comparison, &rendered) {
            Ok(change) => {
                actions.push(Action::ApplyRuntime {
                    commands: change.commands.iter().map(|c| c.command.clone()).collect(),
                    reason: format!(
                        "{changed_to}, only in the servers of managed backends: through the runtime API, no reload"
                    ),
                });
                install = Install::Runtime(change);
            }
            Err(why) => {
                let reason = format!("{changed_to}; a reload because {why}");
                actions.push(Action::Reload {
                    reason: reason.clone(),
                });
                install = Install::Reload { reason };
            }
        }
    }
    // In the order apply carries them out: a terminated server leaves the config (and HAProxy
    // is reloaded without it) before its instance goes.
    actions.extend(terminate_actions(&pools));
    let diff = if changed {
        let label = config.haproxy.config.display().to_string();
        crate::decide::diff::unified(facts.installed.unwrap_or_default(), &rendered, &label)
    } else {
        String::new()
    };
    let next_state = next_state(
        &facts,
        &pools,
        changed.then_some(&comparison.rendered_sha256),
        !matches!(install, Install::Runtime(_)),
    );
    let takes_over = comparison.takes_over(&facts);
    Ok(Plan {
        pools,
        config: ConfigChange {
            takes_over,
            path: config.haproxy.config.clone(),
            installed_sha256: comparison.installed_sha256,
            rendered_sha256: comparison.rendered_sha256,
            install,
            diff,
        },
        actions,
        warnings,
        rendered,
        next_state,
        now: facts.now,
    })
}

/// The runtime API change that makes the rendered config run, or why it takes a reload.
fn runtime_change(
    facts: &Facts<'_>,
    comparison: &Comparison,
    rendered: &str,
) -> Result<RuntimeChange, String> {
    let haproxy = &facts.config.haproxy;
    if haproxy.apply == ApplyMode::Reload {
        return Err("`haproxy.apply = \"reload\"`".to_owned());
    }
    if !matches!(haproxy.stats, Some(StatsSource::Socket(_))) {
        return Err(
            "the runtime API needs HAProxy's admin socket (`haproxy.stats_socket`)".to_owned(),
        );
    }
    let Some(installed) = facts.installed else {
        return Err("no haproxy.cfg is installed yet".to_owned());
    };
    // (This also holds when the file is the rendered one but its load was never confirmed.)
    if comparison.installed_sha256.as_deref() != facts.state.installed_config_sha256.as_deref() {
        return Err(
            "the installed haproxy.cfg is not the one this tool last loaded into HAProxy, so what runs is not known"
                .to_owned(),
        );
    }
    let managed: Vec<&str> = facts
        .config
        .pools
        .iter()
        .map(|pool| pool.backend.as_str())
        .collect();
    runtime::classify(installed, rendered, &managed, facts.haproxy_version)
}

/// Scales each scaling pool and sorts each pool's instances into servers and left-out ones.
pub(crate) fn plan_pools(facts: &Facts<'_>) -> Vec<BackendPlan> {
    let default_state = PoolState::default();
    let notify = &facts.config.notify;
    facts
        .observed
        .iter()
        .map(|(pool, observed)| {
            let scale = pool.scaling.as_ref().map(|scaling| {
                scaling::plan_scaling(&ScalingFacts {
                    pool,
                    scaling,
                    instances: &observed.instances,
                    stats: observed.stats.as_ref(),
                    ready: &observed.ready,
                    found_by_token: &observed.found_by_token,
                    external: observed.external.as_ref(),
                    state: facts.state.pools.get(&pool.name).unwrap_or(&default_state),
                    now: facts.now,
                    rapid: (notify.rapid_scales, notify.rapid_window_s),
                    launch_timeout_s: scaling.launcher.launch_timeout(&facts.config.aws).as_secs(),
                    clock_off_s: facts.clock_off_s,
                    token_salt: facts.token_salt,
                    node: &facts.config.node,
                })
            });
            let maintenance = facts
                .state
                .pools
                .get(&pool.name)
                .map_or(&[][..], |state| &state.maintenance);
            membership::plan_backend(pool, observed, scale, maintenance)
        })
        .collect()
}

/// Launches and drains, which come first in a run.
fn scale_actions(pools: &[BackendPlan]) -> Vec<Action> {
    let mut actions = Vec::new();
    for pool in pools {
        let Some(scale) = &pool.scale else { continue };
        actions.extend(scale.launches.iter().map(|launch| Action::Launch {
            pool: pool.name.clone(),
            count: launch.count,
            token: launch.token.clone(),
            retry: launch.retry,
            reason: launch.reason.clone(),
        }));
        actions.extend(scale.drains.iter().map(|drain| Action::Drain {
            pool: pool.name.clone(),
            backend: pool.backend.clone(),
            server: drain.id.clone(),
            reason: drain.reason.clone(),
        }));
    }
    actions
}

/// Terminations, which come last.
fn terminate_actions(pools: &[BackendPlan]) -> Vec<Action> {
    pools
        .iter()
        .flat_map(|pool| {
            pool.scale.iter().flat_map(|scale| {
                scale.terminates.iter().map(|terminate| Action::Terminate {
                    pool: pool.name.clone(),
                    server: terminate.id.clone(),
                    reason: terminate.reason.clone(),
                })
            })
        })
        .collect()
}

/// The servers each backend had before this run: what this tool rendered into it last time, as
/// the state records it, whatever the template calls the backend (`backend be_{{backend}}`).
/// Only without a record (a new state file, adopting an existing haproxy.cfg) is the installed
/// file read for it.
fn servers_before(facts: &Facts<'_>, pool: &BackendPlan) -> Vec<String> {
    facts
        .state
        .installed_config_sha256
        .as_ref()
        .and(facts.state.pools.get(&pool.name))
        .map_or_else(
            || backend_servers(facts.installed.unwrap_or_default(), &pool.backend),
            |state| state.servers.clone(),
        )
}

/// Whether servers are on their way to a pool's backend: launched by this run, or booting.
fn coming(pool: &BackendPlan) -> bool {
    pool.scale.as_ref().is_some_and(|scale| {
        !scale.launches.is_empty()
            || scale
                .roles
                .values()
                .any(|role| *role == scaling::Role::Booting)
    })
}

/// Adds the servers that join and leave each backend to `actions`, and refuses to empty a
/// backend (invariant 7). Returns the warnings for backends that are empty and may be.
fn membership_actions(
    facts: &Facts<'_>,
    pools: &[BackendPlan],
    actions: &mut Vec<Action>,
) -> Result<Vec<String>, PlanError> {
    let mut empty_backends = Vec::new();
    for pool in pools {
        let before = servers_before(facts, pool);
        if pool.servers.is_empty() && !pool.allow_empty {
            if !before.is_empty() {
                return Err(PlanError::WouldEmpty {
                    pool: pool.name.clone(),
                    backend: pool.backend.clone(),
                    installed: before.len(),
                    found: pool.found,
                    skipped: pool.skipped.clone(),
                    none_found: pool.none_found.clone(),
                });
            }
            // A first install (or a backend that is empty already): allowed, but never silent,
            // unless servers are on their way (the plan launches them, or they boot).
            if coming(pool) {
                continue;
            }
            empty_backends.push(format!(
                "pool `{}`: backend `{}` has no server: {}",
                pool.name,
                pool.backend,
                found_words(pool.found, &pool.skipped, &pool.none_found)
            ));
        }
        actions.extend(membership_changes(pool, &before));
    }
    Ok(empty_backends)
}

/// The servers that join and leave one backend. Sets, not scans: a backend can have 100,000.
fn membership_changes(pool: &BackendPlan, before: &[String]) -> Vec<Action> {
    let before_set: HashSet<&str> = before.iter().map(String::as_str).collect();
    let rendered: HashSet<&str> = pool.servers.iter().map(|s| s.name.as_str()).collect();
    let terminating: HashSet<&str> = pool
        .scale
        .iter()
        .flat_map(|scale| scale.terminates.iter().map(|t| t.id.as_str()))
        .collect();
    let added = pool
        .servers
        .iter()
        .filter(|server| !before_set.contains(server.name.as_str()))
        .map(|server| Action::AddServer {
            pool: pool.name.clone(),
            backend: pool.backend.clone(),
            server: server.name.clone(),
            address: format!("{}:{}", server.address, server.port),
            reason: if server.booting() {
                format!(
                    "instance discovered ({}), booting: no traffic until ready",
                    server.state
                )
            } else {
                format!("instance discovered ({})", server.state)
            },
        });
    let removed = before
        .iter()
        .filter(|name| !rendered.contains(name.as_str()))
        .map(|name| Action::RemoveServer {
            pool: pool.name.clone(),
            backend: pool.backend.clone(),
            server: name.clone(),
            reason: if terminating.contains(name.as_str()) {
                "drained: it is being terminated".to_owned()
            } else {
                "no longer discovered (stopped, terminated or no longer matching)".to_owned()
            },
        });
    added.chain(removed).collect()
}

/// Compares the rendered config with the installed file and the state's record.
fn compare(facts: &Facts<'_>, rendered: &str) -> Comparison {
    let rendered_sha256 = sha256_hex(rendered.as_bytes());
    let installed_sha256 = facts.installed.map(|text| sha256_hex(text.as_bytes()));
    let recorded = facts.state.installed_config_sha256.as_deref();
    let differs = installed_sha256.as_deref() != Some(rendered_sha256.as_str());
    // The state records a config once HAProxy was reloaded with it. A file that matches the
    // rendering but is not recorded was installed by a run that stopped before its reload (or the
    // state file is new): reload, since HAProxy may still run the previous config.
    let unconfirmed = !differs && recorded != Some(rendered_sha256.as_str());
    let hand_edited = differs
        && matches!(
            (installed_sha256.as_deref(), recorded),
            (Some(installed), Some(recorded)) if installed != recorded
        );
    Comparison {
        installed_sha256,
        rendered_sha256,
        differs,
        unconfirmed,
        hand_edited,
    }
}

/// Warnings about the installed file: changed by hand, or never written by this tool.
fn config_warnings(facts: &Facts<'_>, comparison: &Comparison) -> Vec<String> {
    let path = facts.config.haproxy.config.display();
    let mut warnings = Vec::new();
    if comparison.hand_edited {
        warnings.push(format!(
            "`{path}` was changed outside haproxy-autoscaler since its last install; it will be replaced",
        ));
    }
    // Taking over a file nobody told us about (Debian's stock haproxy.cfg, a hand-written one).
    if comparison.takes_over(facts) {
        warnings.push(format!(
            "`{path}` was not written by haproxy-autoscaler (the state records no install): it will be replaced by the rendered config, and kept as `{path}.orig` (once: an existing one is never replaced) and `{path}.bak`",
        ));
    }
    warnings
}

/// Why the config is installed, for people.
fn install_reason(facts: &Facts<'_>, comparison: &Comparison, actions: &[Action]) -> String {
    let membership_changed = actions.iter().any(|action| {
        matches!(
            action,
            Action::AddServer { .. } | Action::RemoveServer { .. } | Action::Drain { .. }
        )
    });
    if facts.installed.is_none() {
        "no haproxy.cfg is installed yet".to_owned()
    } else if comparison.unconfirmed {
        "haproxy.cfg matches the rendered config, but no run recorded reloading HAProxy with it (a run stopped between install and reload, or the state file is new)".to_owned()
    } else if comparison.hand_edited {
        "haproxy.cfg was changed outside haproxy-autoscaler: putting back the rendered config"
            .to_owned()
    } else if membership_changed {
        "backend servers changed".to_owned()
    } else {
        "the rendered config differs from the installed one (a server's role, the template or settings changed)"
            .to_owned()
    }
}

/// The state after this run; `installed` is the rendered config's sha256 when this run installs
/// it. When it also `reloads`, the scaling pools record when, so the interval across it gives no
/// metric (a change through the runtime API keeps HAProxy's counters).
fn next_state(
    facts: &Facts<'_>,
    pools: &[BackendPlan],
    installed: Option<&String>,
    reloads: bool,
) -> State {
    let mut next = facts.state.clone();
    next.config = Some(facts.config.identity.clone());
    if let Some(sha256) = installed {
        next.installed_config_sha256 = Some(sha256.clone());
    }
    for pool in pools {
        let entry = next.pools.entry(pool.name.clone()).or_default();
        if let Some(scale) = &pool.scale {
            *entry = scale.next.clone();
            if installed.is_some() && reloads {
                entry.reloaded_at = Some(facts.now);
            }
        }
        entry.servers = pool.servers.iter().map(|s| s.name.clone()).collect();
        // The operator's marks go with their server.
        let servers = &entry.servers;
        entry.maintenance.retain(|id| servers.contains(id));
        entry.protected.retain(|id| servers.contains(id));
        entry.bad_instances = pool
            .skipped
            .iter()
            .filter(|skipped| skipped.bad_value)
            .map(|skipped| skipped.instance_id.clone())
            .collect();
    }
    let configured: HashSet<&str> = facts
        .config
        .pools
        .iter()
        .map(|pool| pool.name.as_str())
        .collect();
    next.pools
        .retain(|name, _| configured.contains(name.as_str()));
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Instance, InstanceState};
    use crate::testing::{self, ConfigBuilder};
    use std::path::Path;

    const TEMPLATE: &str = "{{#each pools}}backend {{backend}}\n{{#each servers}}    server {{name}} {{address}}:{{port}}\n{{/each}}{{/each}}";

    fn config(extra: &str) -> Config {
        ConfigBuilder::new().pool("web", 8080, extra).build()
    }

    fn instance(id: &str, ip: &str) -> Instance {
        Instance {
            zone: Some("eu-west-1a".into()),
            ..testing::instance(id, ip)
        }
    }

    fn plan(
        config: &Config,
        instances: Vec<Instance>,
        installed: Option<&str>,
        state: &State,
    ) -> Result<Plan, PlanError> {
        let renderer = Renderer::compile(TEMPLATE, Path::new("t.hbs")).unwrap();
        plan_rendered_by(&renderer, config, instances, installed, state)
    }

    /// [`plan`] with another template.
    #[allow(
        clippy::needless_pass_by_value,
        reason = "the tests hand their instances over as they write them, `vec![..]`"
    )]
    fn plan_rendered_by(
        renderer: &Renderer,
        config: &Config,
        instances: Vec<Instance>,
        installed: Option<&str>,
        state: &State,
    ) -> Result<Plan, PlanError> {
        let observed =
            Observations::from_fn(&config.pools, |pool| testing::observed(pool, &instances));
        build(
            Facts {
                config,
                observed: &observed,
                installed,
                state,
                now: 1_000,
                clock_off_s: None,
                haproxy_version: None,
                token_salt: "test",
            },
            renderer,
        )
    }

    #[test]
    fn first_run_installs_sorted_servers() {
        let config = config("");
        let plan = plan(
            &config,
            vec![instance("i-2", "10.0.0.2"), instance("i-1", "10.0.0.1")],
            None,
            &State::default(),
        )
        .unwrap();
        assert_eq!(
            plan.rendered,
            "backend web\n    server i-1 10.0.0.1:8080\n    server i-2 10.0.0.2:8080\n"
        );
        assert!(plan.config.changed());
        let lines: Vec<String> = plan.actions.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines[0],
            "add server web/i-1 at 10.0.0.1:8080: instance discovered (running)"
        );
        assert!(
            lines[2].starts_with("install /etc/haproxy/haproxy.cfg (sha256 "),
            "{lines:?}"
        );
        assert!(
            lines[2].ends_with("no haproxy.cfg is installed yet"),
            "{lines:?}"
        );
        assert!(lines[3].starts_with("reload haproxy: config sha256 changed"));
        assert_eq!(
            plan.next_state.installed_config_sha256.as_deref(),
            Some(sha256_hex(plan.rendered.as_bytes()).as_str())
        );
        assert_eq!(plan.next_state.pools["web"].servers, ["i-1", "i-2"]);
    }

    #[test]
    fn identical_config_means_no_action_and_no_reload() {
        let config = config("");
        let instances = vec![instance("i-1", "10.0.0.1")];
        let first = plan(&config, instances.clone(), None, &State::default()).unwrap();
        let second = plan(&config, instances, Some(&first.rendered), &first.next_state).unwrap();
        assert!(!second.config.changed());
        assert!(second.actions.is_empty());
        assert!(!second.has_changes());
        assert_eq!(
            second.to_string(),
            "No changes: haproxy.cfg is up to date.\n"
        );
    }

    #[test]
    fn removed_instance_is_one_remove_and_one_reload() {
        let config = config("");
        let first = plan(
            &config,
            vec![instance("i-1", "10.0.0.1"), instance("i-2", "10.0.0.2")],
            None,
            &State::default(),
        )
        .unwrap();
        let second = plan(
            &config,
            vec![instance("i-1", "10.0.0.1")],
            Some(&first.rendered),
            &first.next_state,
        )
        .unwrap();
        let kinds: Vec<String> = second.actions.iter().map(ToString::to_string).collect();
        assert_eq!(kinds.len(), 3, "{kinds:?}");
        assert!(kinds[0].starts_with("remove server web/i-2"));
        assert!(
            second.config.diff.contains("-    server i-2 10.0.0.2:8080"),
            "{}",
            second.config.diff
        );
    }

    #[test]
    fn refuses_to_empty_a_backend_unless_allowed() {
        let installed = "backend web\n    server i-1 10.0.0.1:8080\n";
        let error = plan(&config(""), vec![], Some(installed), &State::default()).unwrap_err();
        assert!(
            matches!(error, PlanError::WouldEmpty { installed: 1, .. }),
            "{error}"
        );
        let allowed = plan(
            &config("allow_empty = true"),
            vec![],
            Some(installed),
            &State::default(),
        )
        .unwrap();
        assert_eq!(allowed.rendered, "backend web\n");
        // An empty discovery with an already empty backend is fine.
        plan(
            &config(""),
            vec![],
            Some("backend web\n"),
            &State::default(),
        )
        .unwrap();
    }

    #[test]
    fn instances_without_a_usable_address_are_skipped_and_count_as_empty() {
        let mut pending = instance("i-1", "x");
        pending.private_ip = None;
        let plan_ok = plan(&config(""), vec![pending.clone()], None, &State::default()).unwrap();
        assert_eq!(plan_ok.pools[0].skipped[0].instance_id, "i-1");
        let left_out = plan_ok.left_out();
        assert!(
            left_out[0].0.contains("no private IP") && !left_out[0].1,
            "not yet there is not news: {left_out:?}"
        );
        // Issue 9, item 13: an empty first install is not silent, and a refusal says what was
        // found and why each was left out.
        assert!(
            plan_ok
                .warnings
                .iter()
                .any(|w| w.contains("backend `web` has no server")
                    && w.contains("`i-1` has no private IP address yet")),
            "{:?}",
            plan_ok.warnings
        );
        let nothing = plan(&config(""), vec![], None, &State::default()).unwrap();
        assert!(
            nothing
                .warnings
                .iter()
                .any(|w| w.contains("EC2 lists no running instance that matches `[pool.discover]`")),
            "{:?}",
            nothing.warnings
        );
        // Issue 32: in each provider's own terms.
        for (provider, words) in [
            (
                "provider = \"exec\"\n[pool.exec]\nlist = [\"true\"]",
                "the `[pool.exec] list` command listed no instance",
            ),
            (
                "provider = \"static\"\n[pool.static]\ndir = \"/nowhere/hosts.d\"",
                "the hosts folder /nowhere/hosts.d has no host",
            ),
        ] {
            let config = ConfigBuilder::new()
                .section(&format!(
                    "[[pool]]\nname = \"web\"\nport = 8080\n{provider}"
                ))
                .build();
            let nothing = plan(&config, vec![], None, &State::default()).unwrap();
            assert!(
                nothing.warnings.iter().any(|w| w.contains(words)),
                "{words}: {:?}",
                nothing.warnings
            );
        }
        // Not in the run that launches the pool's first servers: they are on their way.
        let scaling = ConfigBuilder::default()
            .section("[haproxy]\nconfig = \"/etc/haproxy/haproxy.cfg\"\nstats_socket = \"/s\"")
            .scaling_pool("web", 8080, "", "min = 2\nmax = 4\ntarget = 10")
            .build();
        let launching = plan(&scaling, vec![], None, &State::default()).unwrap();
        assert_eq!(
            launching.pools[0].scale.as_ref().map(|s| s.launches.len()),
            Some(1)
        );
        assert!(
            !launching
                .warnings
                .iter()
                .any(|w| w.contains("has no server")),
            "{:?}",
            launching.warnings
        );
        let error = plan(
            &config(""),
            vec![pending],
            Some("backend web\n server i-9 1.2.3.4:80\n"),
            &State::default(),
        )
        .unwrap_err();
        assert!(matches!(error, PlanError::WouldEmpty { .. }));
        let message = error.to_string();
        assert!(
            message.contains(
                "found 1 instance(s) and none is usable: `i-1` has no private IP address yet"
            ) && !message.contains("check the discovery filters"),
            "{message}"
        );
    }

    #[test]
    fn address_tags_must_be_plain_host_port() {
        let config = config("address = \"tag:endpoint\"");
        let with_tag = |value: &str| {
            let mut i = instance("i-1", "10.0.0.1");
            i.tags.insert("endpoint".into(), value.into());
            i
        };
        let ok = plan(
            &config,
            vec![with_tag("127.0.0.1:9001")],
            None,
            &State::default(),
        )
        .unwrap();
        assert_eq!(ok.rendered, "backend web\n    server i-1 127.0.0.1:9001\n");
        // Issue 9, item 9: a bad value leaves that instance out with a warning naming it and
        // the value; every other server still syncs.
        for bad in [
            "127.0.0.1",
            "127.0.0.1:0",
            "127.0.0.1:99999",
            "a b:80",
            "h#x:80",
            "host:80\nserver evil 1.1.1.1:80",
            ":80",
            "[zz]:80",
        ] {
            let mut good = with_tag("127.0.0.1:9002");
            good.id = "i-2".into();
            let plan = plan(&config, vec![with_tag(bad), good], None, &State::default()).unwrap();
            assert_eq!(
                plan.rendered, "backend web\n    server i-2 127.0.0.1:9002\n",
                "{bad:?}"
            );
            let skipped = &plan.pools[0].skipped;
            assert!(
                skipped[0].bad_value && skipped[0].instance_id == "i-1",
                "{skipped:?}"
            );
            let left_out = plan.left_out();
            assert!(
                left_out[0].0.contains("instance `i-1`")
                    && left_out[0].0.contains(&format!("{bad:?}"))
                    && left_out[0].1,
                "{left_out:?}"
            );
            assert_eq!(plan.pools[0].newly_bad, ["i-1"]);
            assert_eq!(plan.next_state.pools["web"].bad_instances, ["i-1"]);
        }
    }

    /// Issue 10, class 6: an instance listed twice with different addresses is left out, named
    /// with every address; listed twice the same, it is one server.
    #[test]
    fn class_6_an_instance_listed_twice_with_different_addresses_is_left_out() {
        let config = config("");
        for (listing, rendered, left_out) in [
            (
                vec![
                    instance("i-1", "10.0.0.1"),
                    instance("i-1", "10.0.0.9"),
                    instance("i-2", "10.0.0.2"),
                ],
                "backend web\n    server i-2 10.0.0.2:8080\n",
                Some("(10.0.0.1:8080, 10.0.0.9:8080)"),
            ),
            (
                vec![
                    instance("i-2", "10.0.0.2"),
                    instance("i-1", "10.0.0.9"),
                    instance("i-1", "10.0.0.1"),
                    instance("i-1", "10.0.0.5"),
                ],
                "backend web\n    server i-2 10.0.0.2:8080\n",
                Some("(10.0.0.1:8080, 10.0.0.5:8080, 10.0.0.9:8080)"),
            ),
            (
                vec![
                    instance("i-1", "10.0.0.1"),
                    instance("i-1", "10.0.0.1"),
                    instance("i-2", "10.0.0.2"),
                ],
                "backend web\n    server i-1 10.0.0.1:8080\n    server i-2 10.0.0.2:8080\n",
                None,
            ),
        ] {
            let plan = plan(&config, listing, None, &State::default()).unwrap();
            assert_eq!(plan.rendered, rendered);
            let skipped: Vec<&str> = plan.pools[0]
                .skipped
                .iter()
                .map(|s| s.reason.as_str())
                .collect();
            match left_out {
                Some(addresses) => assert!(
                    skipped.len() == 1 && skipped[0].contains(addresses),
                    "{skipped:?}"
                ),
                None => assert!(skipped.is_empty(), "{skipped:?}"),
            }
        }
    }

    /// Issue 10, class 1: the empty-backend guard and the membership diff work from what the
    /// tool rendered and recorded, whatever the template calls the backend.
    #[test]
    fn class_1_the_guard_and_the_diff_do_not_depend_on_how_the_template_spells_backends() {
        let config = config("");
        for template in [
            "{{#each pools}}backend be_{{backend}}\n{{#each servers}}    server {{name}} {{address}}:{{port}}\n{{/each}}{{/each}}",
            "{{#each pools}}listen {{backend}}_lst\n    bind :80\n{{#each servers}}    server {{name}} {{address}}:{{port}}\n{{/each}}{{/each}}",
            "{{#each pools}}backend {{backend}}-{{port}}\n{{#each servers}}    server   {{name}}   {{address}}:{{port}}\n{{/each}}{{/each}}",
        ] {
            let renderer = Renderer::compile(template, Path::new("t.hbs")).unwrap();
            let run = |instances, installed, state: &State| {
                plan_rendered_by(&renderer, &config, instances, installed, state)
            };
            let first = run(vec![instance("i-1", "10.0.0.1")], None, &State::default()).unwrap();
            let installed = first.rendered.clone();
            let error = run(vec![], Some(&installed), &first.next_state).unwrap_err();
            assert!(
                matches!(error, PlanError::WouldEmpty { installed: 1, .. }),
                "{template}: {error}"
            );
            let again = run(
                vec![instance("i-1", "10.0.0.1")],
                Some(&installed),
                &first.next_state,
            )
            .unwrap();
            assert!(again.actions.is_empty(), "{template}: {:?}", again.actions);
        }
    }

    #[test]
    fn hostile_instance_ids_are_left_out() {
        for bad in ["i-1 backup", "i-1\n", "", "i#1"] {
            let plan = plan(
                &config(""),
                vec![instance(bad, "10.0.0.1"), instance("i-2", "10.0.0.2")],
                None,
                &State::default(),
            )
            .unwrap();
            assert_eq!(
                plan.rendered, "backend web\n    server i-2 10.0.0.2:8080\n",
                "{bad:?}"
            );
            assert!(plan.pools[0].skipped[0].bad_value, "{bad:?}");
        }
    }

    /// Issue 9, item 9: a tag value the template writes that is not a plain token leaves that
    /// instance out (not the run); a bad value the template does not write leaves nothing out;
    /// a left-out instance is new (notified) only the first time.
    #[test]
    fn issue_9_9_an_unsafe_value_the_template_writes_leaves_only_its_instance_out() {
        let config = config("");
        let renderer = Renderer::compile(
            "{{#each pools}}backend {{backend}}\n{{#each servers}}    server {{name}} {{address}}:{{port}} # {{default tags.Name instance_id}}\n{{/each}}{{/each}}",
            Path::new("t.hbs"),
        )
        .unwrap();
        let named = |id: &str, ip: &str, name: Option<&str>, other: &str| {
            let mut i = instance(id, ip);
            if let Some(name) = name {
                i.tags.insert("Name".into(), name.into());
            }
            i.tags.insert("Owner".into(), other.into());
            i
        };
        let run =
            |instances, state: &State| plan_rendered_by(&renderer, &config, instances, None, state);
        let instances = vec![
            named("i-1", "10.0.0.1", Some("web one"), "ops"),
            named("i-2", "10.0.0.2", None, "ops team"),
            named("i-3", "10.0.0.3", Some("web-3"), "ops"),
        ];
        let plan = run(instances.clone(), &State::default()).unwrap();
        assert_eq!(
            plan.rendered,
            "backend web\n    server i-2 10.0.0.2:8080 # i-2\n    server i-3 10.0.0.3:8080 # web-3\n"
        );
        let skipped = &plan.pools[0].skipped;
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert!(
            skipped[0].instance_id == "i-1"
                && skipped[0].reason.contains("tag `Name` = \"web one\""),
            "{skipped:?}"
        );
        assert_eq!(plan.pools[0].newly_bad, ["i-1"]);
        let again = run(instances, &plan.next_state).unwrap();
        assert!(again.pools[0].newly_bad.is_empty());

        // A tag key the template writes (hostile trial): only its instance is left out.
        let keys = Renderer::compile(
            "{{#each pools}}{{#each servers}}server {{name}} {{#each tags}}{{@key}} {{/each}}\n{{/each}}{{/each}}",
            Path::new("t.hbs"),
        )
        .unwrap();
        let mut bad = instance("i-1", "10.0.0.1");
        bad.tags.insert("k\n  bind 0.0.0.0:1 #".into(), "v".into());
        let good = instance("i-2", "10.0.0.2");
        let plan =
            plan_rendered_by(&keys, &config, vec![bad, good], None, &State::default()).unwrap();
        assert_eq!(plan.rendered, "server i-2 \n");
        assert!(
            plan.pools[0].skipped[0].reason.contains("a tag key"),
            "{:?}",
            plan.pools[0].skipped
        );
    }

    /// Pools `web` (port 8080) and `api` (8081).
    fn web_and_api() -> Config {
        ConfigBuilder::new()
            .pool("web", 8080, "")
            .pool("api", 8081, "")
            .build()
    }

    /// `position` numbers each backend's rendered servers from 1, as HAProxy numbers servers
    /// it is given no `id`: a server left out for an unsafe value leaves no gap.
    #[test]
    fn positions_number_the_rendered_servers_of_each_backend_from_one() {
        let config = web_and_api();
        let renderer = Renderer::compile(
            "{{#each pools}}backend {{backend}}\n{{#each servers}}server {{name}} id {{position}} # {{default tags.Name instance_id}}\n{{/each}}{{/each}}",
            Path::new("t.hbs"),
        )
        .unwrap();
        let mut bad = instance("i-2", "10.0.0.2");
        bad.tags.insert("Name".into(), "web two".into());
        let instances = vec![
            instance("i-3", "10.0.0.3"),
            bad,
            instance("i-1", "10.0.0.1"),
        ];
        let plan =
            plan_rendered_by(&renderer, &config, instances, None, &State::default()).unwrap();
        assert_eq!(
            plan.rendered,
            "backend web\nserver i-1 id 1 # i-1\nserver i-3 id 2 # i-3\nbackend api\nserver i-1 id 1 # i-1\nserver i-3 id 2 # i-3\n"
        );
    }

    /// `backends.NAME` is the pool of that backend (it is in the context only for templates
    /// that name it).
    #[test]
    fn backends_are_the_pools_by_backend_name() {
        let config = web_and_api();
        let renderer = Renderer::compile(
            "{{#each backends.api.servers}}{{name}} {{position}}\n{{/each}}{{backends.web.name}} {{backends.api.port}}",
            Path::new("t.hbs"),
        )
        .unwrap();
        let instances = vec![instance("i-1", "10.0.0.1"), instance("i-2", "10.0.0.2")];
        let plan =
            plan_rendered_by(&renderer, &config, instances, None, &State::default()).unwrap();
        assert_eq!(plan.rendered, "i-1 1\ni-2 2\nweb 8081");
    }

    /// Issue 11 review: a tag whose key and value are both unsafe, with a template that writes
    /// only the value, is named by its key, never by the internal marker that stood in for it.
    #[test]
    fn a_left_out_value_is_named_by_its_own_key_not_by_a_marker() {
        let config = config("");
        let values = Renderer::compile(
            "{{#each pools}}{{#each servers}}server {{name}} {{#each tags}}{{this}} {{/each}}\n{{/each}}{{/each}}",
            Path::new("t.hbs"),
        )
        .unwrap();
        let bad = testing::tagged(instance("i-1", "10.0.0.1"), &[("bad key", "bad value")]);
        let plan = plan_rendered_by(
            &values,
            &config,
            vec![bad, instance("i-2", "10.0.0.2")],
            None,
            &State::default(),
        )
        .unwrap();
        assert_eq!(plan.rendered, "server i-2 \n");
        let reason = &plan.pools[0].skipped[0].reason;
        assert!(
            reason.contains("tag `bad key` = \"bad value\"") && !reason.contains("hxaprobe"),
            "{reason}"
        );
    }

    #[test]
    fn hand_edited_config_is_reported() {
        let config = config("");
        let instances = vec![instance("i-1", "10.0.0.1")];
        let first = plan(&config, instances.clone(), None, &State::default()).unwrap();
        let edited = format!("{}# hand edit\n", first.rendered);
        // Issue 9: taking over a file the tool did not write (Debian's stock haproxy.cfg) is said.
        let stock = plan(
            &config,
            instances.clone(),
            Some("global\n    daemon\n"),
            &State::default(),
        )
        .unwrap();
        assert!(
            stock
                .warnings
                .iter()
                .any(|w| w.contains("was not written by haproxy-autoscaler")
                    && w.contains("haproxy.cfg.bak")),
            "{:?}",
            stock.warnings
        );
        let second = plan(&config, instances, Some(&edited), &first.next_state).unwrap();
        assert!(
            second.warnings[0].contains("changed outside"),
            "{:?}",
            second.warnings
        );
        assert!(second.config.changed());
    }

    #[test]
    fn an_installed_config_not_recorded_as_loaded_is_reloaded() {
        // A run installed this rendering and stopped before its reload and state save.
        let config = config("");
        let instances = vec![instance("i-1", "10.0.0.1")];
        let first = plan(&config, instances.clone(), None, &State::default()).unwrap();
        let crashed = plan(
            &config,
            instances.clone(),
            Some(&first.rendered),
            &State::default(),
        )
        .unwrap();
        assert!(crashed.config.changed());
        assert!(crashed.warnings.is_empty(), "{:?}", crashed.warnings);
        assert!(
            crashed
                .actions
                .iter()
                .any(|action| matches!(action, Action::Reload { .. }))
        );
        // Once recorded, the same file is no change.
        let settled = plan(&config, instances, Some(&first.rendered), &first.next_state).unwrap();
        assert!(!settled.config.changed() && settled.actions.is_empty());
    }

    #[test]
    fn shipped_template_renders_the_golden_config() {
        let text = include_str!("../../templates/haproxy.cfg.hbs");
        let renderer = Renderer::compile(text, Path::new("templates/haproxy.cfg.hbs")).unwrap();
        let config = config("");
        let mut pending = instance("i-0b", "10.0.0.11");
        pending.state = InstanceState::Pending;
        let mut tagged = instance("i-0a", "10.0.0.10");
        tagged
            .tags
            .insert("Name".into(), "web 1 # not rendered".into());
        let plan = plan_rendered_by(
            &renderer,
            &config,
            vec![pending, tagged],
            None,
            &State::default(),
        )
        .unwrap();
        insta::assert_snapshot!(plan.rendered);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn instances() -> impl Strategy<Value = Vec<Instance>> {
            proptest::collection::btree_set(0u32..40, 0..12).prop_map(|ids| {
                ids.into_iter()
                    .map(|n| {
                        instance(
                            &format!("i-{n:04}"),
                            &format!("10.0.{}.{}", n / 200, n % 200 + 1),
                        )
                    })
                    .collect()
            })
        }

        proptest! {
            /// The rendered file depends on which instances exist, not on the order they are listed in.
            #[test]
            fn rendering_is_independent_of_listing_order(instances in instances(), seed in any::<u64>()) {
                let config = config("allow_empty = true");
                let mut shuffled = instances.clone();
                shuffled.sort_by_key(|i| (seed ^ i.id.bytes().map(u64::from).sum::<u64>()).wrapping_mul(0x9e37_79b9));
                let a = plan(&config, instances, None, &State::default()).unwrap();
                let b = plan(&config, shuffled, None, &State::default()).unwrap();
                prop_assert_eq!(a, b);
            }

            /// Applying a plan and planning again from the result finds nothing to do, and each
            /// discovered instance is a server exactly once.
            #[test]
            fn a_plan_applied_converges(before in instances(), after in instances()) {
                let config = config("allow_empty = true");
                let first = plan(&config, before, None, &State::default()).unwrap();
                let second = plan(&config, after.clone(), Some(&first.rendered), &first.next_state).unwrap();
                let third = plan(&config, after.clone(), Some(&second.rendered), &second.next_state).unwrap();
                prop_assert!(third.actions.is_empty());
                prop_assert!(!third.has_changes());
                let names: Vec<&str> = second.pools[0].servers.iter().map(|s| s.name.as_str()).collect();
                let mut expected: Vec<&str> = after.iter().map(|i| i.id.as_str()).collect();
                expected.sort_unstable();
                prop_assert_eq!(names, expected);
                prop_assert_eq!(second.config.changed(), first.rendered != second.rendered);
            }
        }
    }
}
