//! The pure planner: facts in, [`Plan`] out.
//!
//! It takes the validated config, the instances each pool's provider listed, the installed
//! haproxy.cfg and the loaded state, and decides everything: the servers of each backend, the
//! rendered config, whether it differs from the installed one (by sha256, invariant 4), and the
//! state to save. It does no I/O and reads no clock. `--plan` prints the plan; a real run hands the
//! very same plan to [`crate::apply`], which makes no choices of its own.
//!
//! Guards (invariants 7 and 9): a pool whose discovery yields no server while its backend has
//! servers (as the state records what the last install rendered) is refused unless
//! `allow_empty`; instance ids must be valid HAProxy server
//! names and address tags must hold a plain `host:port`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::cloud::{Instance, InstanceState};
use crate::config::{AddressSource, Config, PoolConfig, StatsSource};
use crate::haproxy::installed::backend_servers;
use crate::haproxy::render::{RenderError, Renderer, is_haproxy_token};
use crate::lifecycle::{self, PoolFacts, Role, ScalePlan, StatsSnapshot};
use crate::state::{PoolState, State};

/// Why no plan could be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(
        "refusing to empty backend `{backend}`: haproxy.cfg has {installed} server(s) in it, but {}; set `allow_empty = true` on the pool if an empty backend is intended",
        found_words(*found, skipped)
    )]
    WouldEmpty {
        pool: String,
        backend: String,
        installed: usize,
        /// How many instances discovery found.
        found: usize,
        /// Why each found instance was left out.
        skipped: Vec<Skipped>,
    },
    #[error(transparent)]
    Render(#[from] RenderError),
}

/// What discovery found and why none of it is usable, for people: the reasons when instances
/// were found, the filters to check when none was.
fn found_words(found: usize, skipped: &[Skipped]) -> String {
    if found == 0 {
        "discovery found no instance: check the discovery filters (a typo matches nothing)"
            .to_owned()
    } else {
        format!(
            "discovery found {found} instance(s) and none is usable: {}",
            skipped
                .iter()
                .map(|skipped| format!(
                    "`{}` {}",
                    crate::text::shown(&skipped.instance_id),
                    skipped.reason
                ))
                .collect::<Vec<_>>()
                .join("; ")
        )
    }
}

/// What a pool's provider reported.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub pool: String,
    pub instances: Vec<Instance>,
    /// Scaling pools: the backend's stats, `None` if they could not be read.
    pub stats: Option<StatsSnapshot>,
    /// Scaling pools: readiness probe results.
    pub ready: BTreeMap<String, bool>,
    /// Scaling pools: instance ids found for launch tokens without recorded ids.
    pub found_by_token: BTreeMap<String, Vec<String>>,
}

/// Everything the planner needs.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub config: &'a Config,
    pub observed: &'a [Observed],
    /// The installed haproxy.cfg, `None` if there is none yet.
    pub installed: Option<&'a str>,
    pub state: &'a State,
    /// Unix seconds.
    pub now: i64,
}

/// One server of a backend, as the template sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Server {
    /// The HAProxy server name: the instance id.
    pub name: String,
    pub address: String,
    pub port: u16,
    pub instance_id: String,
    pub state: InstanceState,
    pub launch_time: Option<String>,
    pub zone: Option<String>,
    pub image_id: Option<String>,
    pub tags: BTreeMap<String, String>,
    /// Not yet taking traffic (pending, warming up or not proven ready): render it disabled.
    pub booting: bool,
    /// Being drained before termination: render it so a reload gives it no new traffic.
    pub draining: bool,
}

/// An instance that was discovered but is not rendered, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub instance_id: String,
    pub reason: String,
    /// True for a value that cannot be used (an unsafe tag, a bad address or id), as opposed to
    /// an address that is not there yet (a pending instance): the operator must fix it, so it is
    /// notified (`skipped`), once per instance.
    pub bad_value: bool,
}

/// A pool and the servers of its backend.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolPlan {
    pub name: String,
    pub backend: String,
    pub port: u16,
    pub servers: Vec<Server>,
    pub skipped: Vec<Skipped>,
    /// Instances left out for a bad value this run that the previous run did not leave out:
    /// the ones to notify about.
    pub newly_bad: Vec<String>,
    /// How many instances the provider listed.
    #[serde(skip)]
    pub found: usize,
    /// Scaling pools: the decision and the launches, drains and terminations.
    pub scale: Option<ScalePlan>,
}

/// The haproxy.cfg change, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigChange {
    pub path: PathBuf,
    pub installed_sha256: Option<String>,
    pub rendered_sha256: String,
    pub changed: bool,
    /// Unified diff from the installed file to the rendered one; empty when unchanged.
    pub diff: String,
}

/// One thing a run does, with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
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
    Reload {
        reason: String,
    },
}

/// Everything a run will do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub pools: Vec<PoolPlan>,
    pub config: ConfigChange,
    pub actions: Vec<Action>,
    /// What the run says once, as `warning:` lines: a hand-edited haproxy.cfg replaced, an
    /// empty backend installed. Instances left out are in each pool's `skipped` (see
    /// [`Plan::left_out`]).
    pub warnings: Vec<String>,
    /// The full rendered haproxy.cfg that apply installs.
    #[serde(skip)]
    pub rendered: String,
    /// The state apply saves; equal to the loaded state when nothing changes.
    #[serde(skip)]
    pub next_state: State,
}

impl Plan {
    /// True if applying the plan does anything (bookkeeping in the state file aside).
    pub fn has_changes(&self) -> bool {
        !self.actions.is_empty()
    }

    /// One line per instance left out, and whether it is news: left out for a bad value that
    /// the previous run did not leave out. A run says the news (cron mails it once) and the
    /// rest only with `-v`; `--plan` says them all.
    pub fn left_out(&self) -> Vec<(String, bool)> {
        self.pools
            .iter()
            .flat_map(|pool| {
                let news: std::collections::BTreeSet<&String> = pool.newly_bad.iter().collect();
                pool.skipped.iter().map(move |skipped| {
                    (
                        format!(
                            "pool `{}`: instance `{}` left out: it {}",
                            pool.name,
                            crate::text::shown(&skipped.instance_id),
                            skipped.reason
                        ),
                        news.contains(&skipped.instance_id),
                    )
                })
            })
            .collect()
    }
}

/// The template's view of the world. Documented in the README; keep them in step.
#[derive(Debug, Serialize)]
struct TemplateContext<'a> {
    haproxy: TemplateHaproxy<'a>,
    pools: &'a [PoolPlan],
    backends: BTreeMap<&'a str, &'a PoolPlan>,
}

#[derive(Debug, Serialize)]
struct TemplateHaproxy<'a> {
    config: &'a std::path::Path,
    stats_socket: Option<&'a str>,
    stats_url: Option<&'a str>,
    master_socket: Option<&'a std::path::Path>,
}

/// Hex sha256 of a text.
pub fn sha256_hex(text: &str) -> String {
    crate::state::sha256_hex(text.as_bytes())
}

/// Decides everything a run does.
pub fn build(facts: Facts<'_>, renderer: &Renderer) -> Result<Plan, PlanError> {
    let config = facts.config;
    let mut pools = Vec::with_capacity(config.pools.len());
    let nothing = Observed::default();
    for pool in &config.pools {
        let observed = facts
            .observed
            .iter()
            .find(|observed| observed.pool == pool.name)
            .unwrap_or(&nothing);
        let default_state = PoolState::default();
        let scale = pool.scaling.as_ref().map(|scaling| {
            lifecycle::plan_pool(&PoolFacts {
                pool,
                scaling,
                instances: &observed.instances,
                stats: observed.stats.as_ref(),
                ready: &observed.ready,
                found_by_token: &observed.found_by_token,
                state: facts.state.pools.get(&pool.name).unwrap_or(&default_state),
                now: facts.now,
                rapid: (config.notify.rapid_scales, config.notify.rapid_window_s),
                launch_timeout_s: match &pool.provider {
                    crate::config::ProviderKind::Exec(commands) => commands.timeout.as_secs(),
                    crate::config::ProviderKind::Ec2 => config.aws.attempt_timeout.as_secs(),
                },
            })
        });
        pools.push(pool_plan(pool, &observed.instances, scale)?);
    }

    let rendered = render_leaving_out_unsafe(renderer, config, &mut pools)?;
    for pool in &mut pools {
        let before: std::collections::BTreeSet<&String> = facts
            .state
            .pools
            .get(&pool.name)
            .map(|state| state.bad_instances.iter().collect())
            .unwrap_or_default();
        pool.newly_bad = pool
            .skipped
            .iter()
            .filter(|skipped| skipped.bad_value && !before.contains(&skipped.instance_id))
            .map(|skipped| skipped.instance_id.clone())
            .collect();
    }

    let installed = facts.installed.unwrap_or_default();
    let mut warnings = Vec::new();
    let mut empty_warnings = Vec::new();
    let mut actions = Vec::new();
    for pool in &pools {
        let Some(scale) = &pool.scale else { continue };
        for launch in &scale.launches {
            actions.push(Action::Launch {
                pool: pool.name.clone(),
                count: launch.count,
                token: launch.token.clone(),
                retry: launch.retry,
                reason: launch.reason.clone(),
            });
        }
        for drain in &scale.drains {
            actions.push(Action::Drain {
                pool: pool.name.clone(),
                backend: pool.backend.clone(),
                server: drain.id.clone(),
                reason: drain.reason.clone(),
            });
        }
    }
    for pool in &pools {
        // What this tool rendered into the backend last time, as the state records it, whatever
        // the template calls the backend (`backend be_{{backend}}`). Only without a record (a
        // new state file, adopting an existing haproxy.cfg) is the installed file read for it.
        let recorded = facts
            .state
            .installed_config_sha256
            .as_ref()
            .and(facts.state.pools.get(&pool.name))
            .map(|state| state.servers.clone());
        let before = recorded.unwrap_or_else(|| backend_servers(installed, &pool.backend));
        // Sets, not scans: a backend can have 100,000 servers.
        let before_set: std::collections::HashSet<&str> =
            before.iter().map(String::as_str).collect();
        let rendered_set: std::collections::HashSet<&str> = pool
            .servers
            .iter()
            .map(|server| server.name.as_str())
            .collect();
        let pool_config = config
            .pools
            .iter()
            .find(|candidate| candidate.name == pool.name)
            .expect("pool plans are built from the config's pools");
        if pool.servers.is_empty() && !pool_config.allow_empty {
            if !before.is_empty() {
                return Err(PlanError::WouldEmpty {
                    pool: pool.name.clone(),
                    backend: pool.backend.clone(),
                    installed: before.len(),
                    found: pool.found,
                    skipped: pool.skipped.clone(),
                });
            }
            // A first install (or a backend that is empty already): allowed, but never silent.
            empty_warnings.push(format!(
                "pool `{}`: backend `{}` has no server: {}",
                pool.name,
                pool.backend,
                found_words(pool.found, &pool.skipped)
            ));
        }
        for server in &pool.servers {
            if !before_set.contains(server.name.as_str()) {
                actions.push(Action::AddServer {
                    pool: pool.name.clone(),
                    backend: pool.backend.clone(),
                    server: server.name.clone(),
                    address: format!("{}:{}", server.address, server.port),
                    reason: if server.booting {
                        format!(
                            "instance discovered ({}), booting: no traffic until ready",
                            server.state
                        )
                    } else {
                        format!("instance discovered ({})", server.state)
                    },
                });
            }
        }
        for name in &before {
            if !rendered_set.contains(name.as_str()) {
                actions.push(Action::RemoveServer {
                    pool: pool.name.clone(),
                    backend: pool.backend.clone(),
                    server: name.clone(),
                    reason: if pool
                        .scale
                        .as_ref()
                        .is_some_and(|scale| scale.terminates.iter().any(|t| &t.id == name))
                    {
                        "drained: it is being terminated".to_owned()
                    } else {
                        "no longer discovered (stopped, terminated or no longer matching)"
                            .to_owned()
                    },
                });
            }
        }
    }

    let rendered_sha256 = sha256_hex(&rendered);
    let installed_sha256 = facts.installed.map(sha256_hex);
    let differs = installed_sha256.as_deref() != Some(rendered_sha256.as_str());
    // The state records a config once HAProxy was reloaded with it. A file that matches the
    // rendering but is not recorded was installed by a run that stopped before its reload (or the
    // state file is new): reload, since HAProxy may still run the previous config.
    let unconfirmed = !differs
        && facts.state.installed_config_sha256.as_deref() != Some(rendered_sha256.as_str());
    let changed = differs || unconfirmed;

    let hand_edited = matches!(
        (&installed_sha256, &facts.state.installed_config_sha256),
        (Some(installed), Some(recorded)) if installed != recorded
    ) && differs;
    if hand_edited {
        warnings.push(format!(
            "`{}` was changed outside haproxy-autoscaler since its last install; it will be replaced",
            config.haproxy.config.display(),
        ));
    }
    // Taking over a file nobody told us about (Debian's stock haproxy.cfg, a hand-written one).
    if differs && installed_sha256.is_some() && facts.state.installed_config_sha256.is_none() {
        warnings.push(format!(
            "`{0}` was not written by haproxy-autoscaler (the state records no install): it will be replaced by the rendered config, and kept as `{0}.bak`",
            config.haproxy.config.display(),
        ));
    }
    for pool in &pools {
        if let Some(scale) = &pool.scale {
            warnings.extend(scale.warnings.iter().cloned());
        }
    }
    // A first install with an empty backend is said on the run that installs it, not on every
    // run after it.
    if changed {
        warnings.extend(empty_warnings);
    }

    let diff = if changed {
        let label = config.haproxy.config.display().to_string();
        // The installed side may hold anything a hand edit put there.
        crate::text::printable(
            &similar::TextDiff::from_lines(installed, rendered.as_str())
                .unified_diff()
                .context_radius(3)
                .header(&label, &format!("{label} (rendered)"))
                .to_string(),
        )
    } else {
        String::new()
    };
    if changed {
        let membership_changed = actions.iter().any(|action| {
            matches!(
                action,
                Action::AddServer { .. } | Action::RemoveServer { .. } | Action::Drain { .. }
            )
        });
        let reason = if facts.installed.is_none() {
            "no haproxy.cfg is installed yet".to_owned()
        } else if unconfirmed {
            "haproxy.cfg matches the rendered config, but no run recorded reloading HAProxy with it (a run stopped between install and reload, or the state file is new)".to_owned()
        } else if hand_edited {
            "haproxy.cfg was changed outside haproxy-autoscaler: putting back the rendered config"
                .to_owned()
        } else if membership_changed {
            "backend servers changed".to_owned()
        } else {
            "the rendered config differs from the installed one (a server's role, the template or settings changed)"
                .to_owned()
        };
        actions.push(Action::InstallConfig {
            path: config.haproxy.config.clone(),
            sha256: rendered_sha256.clone(),
            reason: reason.clone(),
        });
        actions.push(Action::Reload {
            reason: format!("config sha256 changed to {}", &rendered_sha256[..12]),
        });
    }

    // In the order apply carries them out: a terminated server leaves the config (and HAProxy
    // is reloaded without it) before its instance goes.
    for pool in &pools {
        let Some(scale) = &pool.scale else { continue };
        for terminate in &scale.terminates {
            actions.push(Action::Terminate {
                pool: pool.name.clone(),
                server: terminate.id.clone(),
                reason: terminate.reason.clone(),
            });
        }
    }

    let mut next_state = facts.state.clone();
    next_state.config = Some(config.identity.clone());
    if changed {
        next_state.installed_config_sha256 = Some(rendered_sha256.clone());
    }
    for pool in &pools {
        let entry = next_state.pools.entry(pool.name.clone()).or_default();
        if let Some(scale) = &pool.scale {
            *entry = scale.next.clone();
            if changed {
                entry.reloaded_at = Some(facts.now);
            }
        }
        entry.servers = pool
            .servers
            .iter()
            .map(|server| server.name.clone())
            .collect();
        entry.bad_instances = pool
            .skipped
            .iter()
            .filter(|skipped| skipped.bad_value)
            .map(|skipped| skipped.instance_id.clone())
            .collect();
    }
    next_state
        .pools
        .retain(|name, _| config.pools.iter().any(|pool| &pool.name == name));

    Ok(Plan {
        pools,
        config: ConfigChange {
            path: config.haproxy.config.clone(),
            installed_sha256,
            rendered_sha256,
            changed,
            diff,
        },
        actions,
        warnings,
        rendered,
        next_state,
    })
}

/// The servers of one pool, sorted by instance id so that the rendered file is stable.
fn pool_plan(
    pool: &PoolConfig,
    instances: &[Instance],
    scale: Option<ScalePlan>,
) -> Result<PoolPlan, PlanError> {
    let mut servers = Vec::new();
    let mut skipped = Vec::new();
    for instance in instances {
        let role = scale.as_ref().map(|scale| scale.roles.get(&instance.id));
        if role == Some(None) {
            continue; // terminating: out of the config before the instance goes
        }
        if instance.id.is_empty()
            || !instance
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        {
            skipped.push(Skipped {
                instance_id: instance.id.clone(),
                reason: "has an id that cannot be an HAProxy server name (letters, digits, `-`, `_`, `.` and `:` only)".to_owned(),
                bad_value: true,
            });
            continue;
        }
        let (address, port) = match server_address(pool, instance) {
            Ok(address) => address,
            Err(Unusable::NotYet(reason)) => {
                skipped.push(skip(instance, &reason, false));
                continue;
            }
            Err(Unusable::Bad(reason)) => {
                skipped.push(skip(instance, &reason, true));
                continue;
            }
        };
        servers.push(Server {
            name: instance.id.clone(),
            address,
            port,
            instance_id: instance.id.clone(),
            state: instance.state,
            launch_time: instance.launch_time.clone(),
            zone: instance.zone.clone(),
            image_id: instance.image_id.clone(),
            tags: instance.tags.clone(),
            booting: match role {
                Some(role) => role == Some(&Role::Booting),
                None => instance.state == InstanceState::Pending,
            },
            draining: role == Some(Some(&Role::Draining)),
        });
    }
    servers.sort_by(|a, b| a.name.cmp(&b.name));
    // The same instance listed twice: the same server twice is one; twice with different
    // addresses is a provider that cannot be trusted about it, so neither is rendered.
    let mut unique: Vec<Server> = Vec::with_capacity(servers.len());
    let mut ambiguous: Vec<(String, Vec<String>)> = Vec::new();
    for server in servers {
        match unique.last() {
            Some(last) if last.name == server.name => {
                let at = format!("{}:{}", server.address, server.port);
                if last.address != server.address || last.port != server.port {
                    match ambiguous.last_mut() {
                        Some((name, addresses)) if *name == server.name => addresses.push(at),
                        _ => ambiguous.push((
                            server.name.clone(),
                            vec![format!("{}:{}", last.address, last.port), at],
                        )),
                    }
                }
            }
            _ => unique.push(server),
        }
    }
    let mut servers = unique;
    for (name, mut addresses) in ambiguous {
        servers.retain(|server| server.name != name);
        addresses.sort();
        addresses.dedup();
        skipped.push(Skipped {
            instance_id: name,
            reason: format!(
                "is listed more than once with different addresses ({}): none is used",
                addresses.join(", ")
            ),
            bad_value: true,
        });
    }
    skipped.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    Ok(PoolPlan {
        name: pool.name.clone(),
        backend: pool.backend.clone(),
        port: pool.port,
        servers,
        skipped,
        newly_bad: Vec::new(),
        found: instances.len(),
        scale,
    })
}

/// Why an instance has no usable address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// Not there yet (a pending instance without an IP): it is left out quietly until it has one.
    NotYet(String),
    /// There, but not usable (an address tag that is not `host:port`): the operator must fix it.
    Bad(String),
}

/// Where HAProxy (and the readiness probe) reaches an instance.
pub fn server_address(pool: &PoolConfig, instance: &Instance) -> Result<(String, u16), Unusable> {
    match &pool.address {
        AddressSource::PrivateIp => match &instance.private_ip {
            Some(ip) => plain_host(ip, instance.port.unwrap_or(pool.port)),
            None => Err(Unusable::NotYet("has no private IP address yet".to_owned())),
        },
        AddressSource::PublicIp => match &instance.public_ip {
            Some(ip) => plain_host(ip, instance.port.unwrap_or(pool.port)),
            None => Err(Unusable::NotYet("has no public IP address".to_owned())),
        },
        AddressSource::Tag(key) => match instance.tags.get(key) {
            Some(value) => parse_host_port(value).ok_or_else(|| {
                Unusable::Bad(format!(
                    "has tag `{key}` = {value:?}, which is not a plain `host:port` address ({})",
                    host_port_problem(value)
                ))
            }),
            None => Err(Unusable::NotYet(format!("has no `{key}` tag"))),
        },
    }
}

/// An address a provider reported (exec commands print what they like): a plain IP address or
/// host name, or the instance is left out.
fn plain_host(host: &str, port: u16) -> Result<(String, u16), Unusable> {
    if port == 0 {
        return Err(Unusable::Bad(
            "has port 0, which is not a port a server listens on".to_owned(),
        ));
    }
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        // `::1:8080` would be ambiguous in `address:port`.
        Ok((format!("[{host}]"), port))
    } else if is_plain_host(host) {
        Ok((host.to_owned(), port))
    } else {
        Err(Unusable::Bad(format!(
            "has address {host:?}, which is not a plain IP address or host name"
        )))
    }
}

fn skip(instance: &Instance, reason: &str, bad_value: bool) -> Skipped {
    Skipped {
        instance_id: instance.id.clone(),
        reason: reason.to_owned(),
        bad_value,
    }
}

/// The template's context for these pools.
fn template_context<'a>(config: &'a Config, pools: &'a [PoolPlan]) -> TemplateContext<'a> {
    TemplateContext {
        haproxy: TemplateHaproxy {
            config: &config.haproxy.config,
            stats_socket: match &config.haproxy.stats {
                Some(StatsSource::Socket(socket)) => Some(socket),
                _ => None,
            },
            stats_url: match &config.haproxy.stats {
                Some(StatsSource::Url(url)) => Some(url),
                _ => None,
            },
            master_socket: config.haproxy.reload.master_socket(),
        },
        pools,
        backends: pools
            .iter()
            .map(|pool| (pool.backend.as_str(), pool))
            .collect(),
    }
}

/// Renders the template. When it refuses a value that is not a plain HAProxy token, the servers
/// whose unsafe values the template writes are left out (skipped, with the key and the value)
/// and the rest is rendered: one bad instance never stops the others (invariant 12).
///
/// Which servers those are is found by rendering once more with every unsafe value of every
/// server replaced by a unique marker: a marker that reaches the output names its server and
/// field. Values the template does not write (a tag it never uses) leave nothing out.
fn render_leaving_out_unsafe(
    renderer: &Renderer,
    config: &Config,
    pools: &mut [PoolPlan],
) -> Result<String, PlanError> {
    let refused = match renderer.render(&template_context(config, pools)) {
        Ok(text) => return Ok(text),
        Err(error @ RenderError::UnsafeValue { .. }) => error,
        Err(error) => return Err(error.into()),
    };
    let mut probe = pools.to_vec();
    // (pool, server, where the value is, the value), in the order of the markers.
    let mut marked: Vec<(usize, usize, String, String)> = Vec::new();
    for (pool_index, pool) in probe.iter_mut().enumerate() {
        for (server_index, server) in pool.servers.iter_mut().enumerate() {
            // Tag keys too: a template may write them (`{{#each tags}}{{@key}}`).
            let unsafe_keys: Vec<String> = server
                .tags
                .keys()
                .filter(|key| !is_haproxy_token(key))
                .cloned()
                .collect();
            for key in unsafe_keys {
                let value = server.tags.remove(&key).unwrap_or_default();
                let marker = format!("hxaprobe{}z", marked.len());
                server.tags.insert(marker, value);
                marked.push((pool_index, server_index, "a tag key".to_owned(), key));
            }
            let fields = server
                .tags
                .iter_mut()
                .map(|(key, value)| (format!("tag `{key}`"), value))
                .chain(server.zone.as_mut().map(|zone| ("zone".to_owned(), zone)))
                .chain(
                    server
                        .image_id
                        .as_mut()
                        .map(|id| ("image_id".to_owned(), id)),
                )
                .chain(
                    server
                        .launch_time
                        .as_mut()
                        .map(|time| ("launch_time".to_owned(), time)),
                );
            for (field, value) in fields {
                if !is_haproxy_token(value) {
                    let marker = format!("hxaprobe{}z", marked.len());
                    let original = std::mem::replace(value, marker);
                    marked.push((pool_index, server_index, field, original));
                }
            }
        }
    }
    let Ok(probed) = renderer.render(&template_context(config, &probe)) else {
        // Still refused with every server value marked: the value is not a server's.
        return Err(refused.into());
    };
    let mut leave_out: BTreeMap<(usize, usize), (String, String)> = BTreeMap::new();
    for (marker, (pool_index, server_index, field, value)) in marked.into_iter().enumerate() {
        if probed.contains(&format!("hxaprobe{marker}z")) {
            leave_out
                .entry((pool_index, server_index))
                .or_insert((field, value));
        }
    }
    if leave_out.is_empty() {
        return Err(refused.into());
    }
    for ((pool_index, server_index), (field, value)) in leave_out.into_iter().rev() {
        let pool = &mut pools[pool_index];
        let server = pool.servers.remove(server_index);
        pool.skipped.push(Skipped {
            instance_id: server.instance_id,
            reason: format!(
                "has {field} = {value:?}, which the template writes into haproxy.cfg but is not a plain HAProxy token (whitespace, `#`, quotes, backslashes and control characters are refused)"
            ),
            bad_value: true,
        });
        pool.skipped
            .sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    }
    Ok(renderer.render(&template_context(config, pools))?)
}

/// Parses `host:port` (or `[v6]:port`) where host is an IP address or a DNS name.
fn parse_host_port(value: &str) -> Option<(String, u16)> {
    let (host, port) = value.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|port| *port != 0)?;
    let valid = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => is_plain_host(host),
    };
    valid.then(|| (host.to_owned(), port))
}

/// What is wrong with a `host:port` that [`parse_host_port`] refused, in words.
fn host_port_problem(value: &str) -> String {
    let Some((_, port)) = value.rsplit_once(':') else {
        return "no `:PORT`".to_owned();
    };
    match port.parse::<u64>() {
        Ok(number) if !(1..=65535).contains(&number) => {
            format!("port {number} is not between 1 and 65535")
        }
        Ok(_) => "the host is not a plain IP address or host name".to_owned(),
        Err(_) => format!("{port:?} is not a port number"),
    }
}

/// An IPv4 or IPv6 address, or a host name as DNS allows it (RFC 1123: dot-separated labels of
/// 1 to 63 letters, digits and inner hyphens, at most 253 characters, the last label not all
/// digits), so that neither HAProxy nor a resolver reads it as anything else (`-x`, `a..b` and
/// `1.2.3.4.5` are not host names).
fn is_plain_host(host: &str) -> bool {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    let labels: Vec<&str> = host.split('.').collect();
    !host.is_empty()
        && host.len() <= 253
        && labels.iter().all(|label| {
            (1..=63).contains(&label.len())
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
        && labels
            .last()
            .is_some_and(|last| !last.chars().all(|c| c.is_ascii_digit()))
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::AddServer {
                backend,
                server,
                address,
                reason,
                ..
            } => write!(f, "add server {backend}/{server} at {address}: {reason}"),
            Action::RemoveServer {
                backend,
                server,
                reason,
                ..
            } => write!(f, "remove server {backend}/{server}: {reason}"),
            Action::Launch {
                pool,
                count,
                token,
                retry,
                reason,
            } => {
                let again = if *retry { " again" } else { "" };
                write!(
                    f,
                    "launch {count} instance(s){again} for pool {pool} (token {token}): {reason}"
                )
            }
            Action::Drain {
                backend,
                server,
                reason,
                ..
            } => write!(f, "drain server {backend}/{server}: {reason}"),
            Action::Terminate {
                pool,
                server,
                reason,
            } => {
                write!(f, "terminate instance {server} of pool {pool}: {reason}")
            }
            Action::InstallConfig {
                path,
                sha256,
                reason,
            } => write!(
                f,
                "install {} (sha256 {}): {reason}",
                path.display(),
                &sha256[..12]
            ),
            Action::Reload { reason } => write!(f, "reload haproxy: {reason}"),
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for warning in &self.warnings {
            writeln!(f, "warning: {warning}")?;
        }
        for (line, _) in self.left_out() {
            writeln!(f, "warning: {line}")?;
        }
        for pool in &self.pools {
            if let Some(scale) = &pool.scale {
                let d = &scale.decision;
                let metric = d.metric.map_or("no metric".to_owned(), |m| {
                    format!("metric {m:.2} per server")
                });
                let booting = scale
                    .roles
                    .values()
                    .filter(|role| **role == Role::Booting)
                    .count();
                writeln!(
                    f,
                    "pool {}: {metric}; {} server(s) ({booting} booting), bounds {}..{} → desired {}: {}",
                    pool.name, d.current, d.min, d.max, d.desired, d.reason
                )?;
            }
        }
        if self.actions.is_empty() {
            return writeln!(f, "No changes: haproxy.cfg is up to date.");
        }
        for action in &self.actions {
            writeln!(f, "{action}")?;
        }
        if !self.config.diff.is_empty() {
            writeln!(f)?;
            f.write_str(&self.config.diff)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    const TEMPLATE: &str = "{{#each pools}}backend {{backend}}\n{{#each servers}}    server {{name}} {{address}}:{{port}}\n{{/each}}{{/each}}";

    fn config(extra: &str) -> Config {
        let text = format!(
            "[haproxy]\nconfig = \"/etc/haproxy/haproxy.cfg\"\n[[pool]]\nname = \"web\"\nport = 8080\n{extra}\n[pool.discover]\nsecurity_group = \"web\"\n"
        );
        Config::parse(&text, Path::new("test.toml")).unwrap()
    }

    fn instance(id: &str, ip: &str) -> Instance {
        Instance {
            id: id.to_owned(),
            state: InstanceState::Running,
            private_ip: Some(ip.to_owned()),
            public_ip: None,
            port: None,
            launch_time: None,
            zone: Some("eu-west-1a".into()),
            image_id: None,
            tags: BTreeMap::new(),
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
    fn plan_rendered_by(
        renderer: &Renderer,
        config: &Config,
        instances: Vec<Instance>,
        installed: Option<&str>,
        state: &State,
    ) -> Result<Plan, PlanError> {
        let observed = [Observed {
            pool: "web".into(),
            instances,
            ..Observed::default()
        }];
        build(
            Facts {
                config,
                observed: &observed,
                installed,
                state,
                now: 1_000,
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
        assert!(plan.config.changed);
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
            Some(sha256_hex(&plan.rendered).as_str())
        );
        assert_eq!(plan.next_state.pools["web"].servers, ["i-1", "i-2"]);
    }

    #[test]
    fn identical_config_means_no_action_and_no_reload() {
        let config = config("");
        let instances = vec![instance("i-1", "10.0.0.1")];
        let first = plan(&config, instances.clone(), None, &State::default()).unwrap();
        let second = plan(&config, instances, Some(&first.rendered), &first.next_state).unwrap();
        assert!(!second.config.changed);
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
                .any(|w| w.contains("found no instance: check the discovery filters")),
            "{:?}",
            nothing.warnings
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
        assert_eq!(parse_host_port("[::1]:80"), Some(("[::1]".into(), 80)));
        // Issue 10, class 4 (hostile trial): host names as DNS allows them.
        for bad in [
            "-x:80",
            "a..b:80",
            "1.2.3.4.5:80",
            "x-:80",
            "a_b:80",
            "a%b:80",
        ] {
            assert_eq!(parse_host_port(bad), None, "{bad}");
        }
        for good in [
            "web-1.internal:80",
            "localhost:80",
            "host.example.:80",
            "10.0.0.1:80",
        ] {
            assert!(parse_host_port(good).is_some(), "{good}");
        }
        assert_eq!(
            parse_host_port("web-1.internal:8080"),
            Some(("web-1.internal".into(), 8080))
        );
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
        assert!(second.config.changed);
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
        assert!(crashed.config.changed);
        assert!(crashed.warnings.is_empty(), "{:?}", crashed.warnings);
        assert!(
            crashed
                .actions
                .iter()
                .any(|action| matches!(action, Action::Reload { .. }))
        );
        // Once recorded, the same file is no change.
        let settled = plan(&config, instances, Some(&first.rendered), &first.next_state).unwrap();
        assert!(!settled.config.changed && settled.actions.is_empty());
    }

    #[test]
    fn shipped_template_renders_the_golden_config() {
        let text = include_str!("../templates/haproxy.cfg.hbs");
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
                prop_assert_eq!(second.config.changed, first.rendered != second.rendered);
            }
        }
    }
}
