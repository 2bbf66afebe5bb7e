//! The scaling plan of one pool: pure, like [`crate::policy`], which it calls.
//!
//! Instances are sorted into roles:
//! - **draining**: listed in state as draining; terminated once `drain_s` has passed or HAProxy
//!   shows no current session on it (checked from the run after the drain started);
//! - **booting**: pending, inside `warmup_s` of its launch, or (the first time it is seen
//!   running) not yet proven ready by the run's readiness probe. It counts as capacity but takes
//!   no traffic;
//! - **in service**: the rest.
//!
//! Launch intents whose instance ids were never recorded (a crash mid-launch) are resolved by the
//! instances found with their token; an intent with none is re-sent with the same token. Victims
//! of a scale-down are chosen deterministically: fewest current sessions, then newest, then id;
//! only instances tagged for the pool and not tagged protected.
//!
//! The metric comes from counter deltas between this run's stats sample and the previous one of
//! the same HAProxy node; an interval across a reload (new pid, lower uptime or a counter that went
//! down) gives no metric. Servers that are not UP, booting or draining are left out.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::cloud::{Instance, InstanceState};
use crate::config::scaling::{TAG_POOL, TAG_PROTECTED};
use crate::config::{Metric, PoolConfig, ReadyCheck, Scaling};
use crate::haproxy::stats::{Info, Row};
use crate::policy::{self, Capped, Decision};
use crate::state::{Draining, LaunchIntent, PoolState, Sample, ScaleEvent, ServerCounters};

/// How many samples and scale events are kept per pool.
const KEEP_SAMPLES: usize = 20;
const KEEP_HISTORY: usize = 50;

/// One HAProxy node's stats for a backend.
#[derive(Debug, Clone)]
pub struct StatsSnapshot {
    pub node: String,
    pub info: Info,
    /// This backend's server lines and its `BACKEND` line.
    pub rows: Vec<Row>,
}

/// Facts for one scaling pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolFacts<'a> {
    pub pool: &'a PoolConfig,
    pub scaling: &'a Scaling,
    pub instances: &'a [Instance],
    /// `None` when the stats could not be read: membership still syncs, scaling holds.
    pub stats: Option<&'a StatsSnapshot>,
    /// Readiness probe results for the instances [`probe_candidates`] named.
    pub ready: &'a BTreeMap<String, bool>,
    /// Instance ids found by token, for intents without recorded ids.
    pub found_by_token: &'a BTreeMap<String, Vec<String>>,
    pub state: &'a PoolState,
    pub now: i64,
}

/// The role of an instance after this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    InService,
    Booting,
    Draining,
}

/// A launch to make (a new intent, or one re-sent with its token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LaunchAction {
    pub token: String,
    pub count: u32,
    pub retry: bool,
    pub reason: String,
}

/// A drain or a termination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceAction {
    pub id: String,
    pub reason: String,
}

/// What to tell the operator about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Scaled { from: u32, to: u32, reason: String },
    Capped { at: Capped, reason: String },
}

/// The scaling part of a pool's plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScalePlan {
    pub decision: Decision,
    /// Roles of the instances that stay in haproxy.cfg (terminating ones are absent).
    pub roles: BTreeMap<String, Role>,
    pub launches: Vec<LaunchAction>,
    pub drains: Vec<InstanceAction>,
    pub terminates: Vec<InstanceAction>,
    pub events: Vec<Event>,
    /// The pool's state after this run (its `servers` are filled in by the caller).
    #[serde(skip)]
    pub next: PoolState,
}

/// The instances whose readiness the run must probe: running, past warmup, not draining, and
/// not in service at the last run.
pub fn probe_candidates(
    pool: &PoolConfig,
    scaling: &Scaling,
    instances: &[Instance],
    state: &PoolState,
    now: i64,
) -> Vec<String> {
    if pool.ready_check == ReadyCheck::None {
        return Vec::new();
    }
    instances
        .iter()
        .filter(|instance| instance.state == InstanceState::Running)
        .filter(|instance| !in_warmup(instance, scaling, now))
        .filter(|instance| !state.draining.iter().any(|d| d.id == instance.id))
        .filter(|instance| !state.in_service.contains(&instance.id))
        .map(|instance| instance.id.clone())
        .collect()
}

fn in_warmup(instance: &Instance, scaling: &Scaling, now: i64) -> bool {
    launched_at(instance).is_some_and(|at| now < at.saturating_add(scaling.warmup_s as i64))
}

fn launched_at(instance: &Instance) -> Option<i64> {
    instance
        .launch_time
        .as_deref()
        .and_then(|text| text.parse::<jiff::Timestamp>().ok())
        .map(|timestamp| timestamp.as_second())
}

fn tagged_for(instance: &Instance, pool: &str) -> bool {
    instance.tags.get(TAG_POOL).map(String::as_str) == Some(pool)
}

fn protected(instance: &Instance) -> bool {
    instance
        .tags
        .get(TAG_PROTECTED)
        .is_some_and(|value| value.eq_ignore_ascii_case("true"))
}

/// A deterministic launch token: at most 64 ASCII characters, unique per pool and run.
pub fn launch_token(pool: &str, now: i64) -> String {
    let digest = crate::state::sha256_hex(pool.as_bytes());
    format!("hxa-{}-{now}", &digest[..12])
}

/// Plans one scaling pool.
pub fn plan_pool(facts: &PoolFacts<'_>) -> ScalePlan {
    let (pool, scaling, state, now) = (facts.pool, facts.scaling, facts.state, facts.now);
    let rows: BTreeMap<&str, &Row> = facts
        .stats
        .map(|stats| {
            stats
                .rows
                .iter()
                .map(|row| (row.name.as_str(), row))
                .collect()
        })
        .unwrap_or_default();

    // Roles, and which drains end now.
    let mut roles = BTreeMap::new();
    let mut terminates = Vec::new();
    let mut draining = Vec::new();
    for instance in facts.instances {
        if let Some(drain) = state.draining.iter().find(|d| d.id == instance.id) {
            let elapsed = now.saturating_sub(drain.since);
            let idle = now > drain.since
                && rows
                    .get(instance.id.as_str())
                    .is_some_and(|row| row.scur == 0);
            if elapsed >= scaling.drain_s as i64 || idle {
                let why = if idle {
                    "no session left".to_owned()
                } else {
                    format!("drained for {elapsed}s")
                };
                terminates.push(InstanceAction {
                    id: instance.id.clone(),
                    reason: format!("scale-down: {why}"),
                });
            } else {
                roles.insert(instance.id.clone(), Role::Draining);
                draining.push(drain.clone());
            }
            continue;
        }
        let ready = pool.ready_check == ReadyCheck::None
            || state.in_service.contains(&instance.id)
            || facts.ready.get(&instance.id).copied().unwrap_or(false);
        let booting =
            instance.state == InstanceState::Pending || in_warmup(instance, scaling, now) || !ready;
        roles.insert(
            instance.id.clone(),
            if booting {
                Role::Booting
            } else {
                Role::InService
            },
        );
    }

    // Launch intents: resolve the ones without ids; re-send those with no instance.
    let mut launches = Vec::new();
    let mut pending_capacity = 0u32;
    let mut intents = Vec::new();
    for intent in &state.launches {
        if intent.instance_ids.is_some() {
            continue; // its instances carry the pool tag: discovery sees them from now on
        }
        match facts.found_by_token.get(&intent.token) {
            Some(ids) if !ids.is_empty() => {}
            _ => {
                pending_capacity += intent.count;
                launches.push(LaunchAction {
                    token: intent.token.clone(),
                    count: intent.count,
                    retry: true,
                    reason: "a launch was asked for but none of its instances exists: sending it again with the same token".to_owned(),
                });
                intents.push(intent.clone());
            }
        }
    }

    // This run's sample and metric.
    let in_service: Vec<&Instance> = facts
        .instances
        .iter()
        .filter(|instance| roles.get(&instance.id) == Some(&Role::InService))
        .collect();
    let booting = roles
        .values()
        .filter(|role| **role == Role::Booting)
        .count() as u32;
    let sample = facts.stats.map(|stats| sample_of(stats, now));
    let previous = sample.as_ref().and_then(|sample| {
        state
            .samples
            .iter()
            .rev()
            .find(|earlier| earlier.node == sample.node)
    });
    let per_server: Vec<f64> = match &sample {
        Some(sample) => in_service
            .iter()
            .filter_map(|instance| {
                server_metric(
                    scaling.metric,
                    &instance.id,
                    sample,
                    previous,
                    in_service.len(),
                )
            })
            .collect(),
        None => Vec::new(),
    };
    let metric =
        (!per_server.is_empty()).then(|| per_server.iter().sum::<f64>() / per_server.len() as f64);
    let mut history: Vec<Option<f64>> = state.samples.iter().map(|sample| sample.metric).collect();
    history.push(metric);

    let decision = policy::decide(&policy::Input {
        scaling,
        now,
        in_service: in_service.len() as u32,
        booting: booting + pending_capacity,
        per_server: &per_server,
        history: &history,
        last_scale_at: state.scale_history.last().map(|event| event.at),
        recommendations: &state.recommendations,
    });

    let mut drains = Vec::new();
    if decision.desired > decision.current {
        let count = decision.desired - decision.current;
        let token = launch_token(&pool.name, now);
        launches.push(LaunchAction {
            token: token.clone(),
            count,
            retry: false,
            reason: decision.reason.clone(),
        });
        intents.push(LaunchIntent {
            token,
            count,
            requested_at: now,
            instance_ids: None,
        });
    } else if decision.desired < decision.current {
        let mut victims: Vec<&Instance> = facts
            .instances
            .iter()
            .filter(|instance| {
                matches!(
                    roles.get(&instance.id),
                    Some(Role::InService | Role::Booting)
                )
            })
            .filter(|instance| tagged_for(instance, &pool.name) && !protected(instance))
            .collect();
        let sessions =
            |instance: &Instance| rows.get(instance.id.as_str()).map_or(0, |row| row.scur);
        victims.sort_by(|a, b| {
            sessions(a)
                .cmp(&sessions(b))
                .then_with(|| launched_at(b).cmp(&launched_at(a)))
                .then_with(|| a.id.cmp(&b.id))
        });
        for victim in victims
            .into_iter()
            .take((decision.current - decision.desired) as usize)
        {
            roles.insert(victim.id.clone(), Role::Draining);
            draining.push(Draining {
                id: victim.id.clone(),
                since: now,
            });
            drains.push(InstanceAction {
                id: victim.id.clone(),
                reason: format!("{} ({} session(s))", decision.reason, sessions(victim)),
            });
        }
    }

    let mut events = Vec::new();
    let mut scale_history = state.scale_history.clone();
    if decision.desired != decision.current {
        events.push(Event::Scaled {
            from: decision.current,
            to: decision.desired,
            reason: decision.reason.clone(),
        });
        scale_history.push(ScaleEvent {
            at: now,
            from: decision.current,
            to: decision.desired,
        });
    }
    if let Some(at) = decision.capped {
        events.push(Event::Capped {
            at,
            reason: decision.reason.clone(),
        });
    }
    let keep_from = scale_history.len().saturating_sub(KEEP_HISTORY);
    scale_history.drain(..keep_from);

    let mut samples = state.samples.clone();
    if let Some(mut sample) = sample {
        sample.metric = metric;
        samples.push(sample);
    }
    let keep_from = samples.len().saturating_sub(KEEP_SAMPLES);
    samples.drain(..keep_from);

    let mut recommendations = state.recommendations.clone();
    if let (Some(servers), crate::config::Policy::Target { window_s, .. }) =
        (decision.recommendation, &scaling.policy)
    {
        recommendations.push((now, servers));
        let since = now.saturating_sub(*window_s as i64);
        recommendations.retain(|(at, _)| *at >= since);
    }

    let next = PoolState {
        servers: Vec::new(),
        in_service: roles
            .iter()
            .filter(|(_, role)| **role == Role::InService)
            .map(|(id, _)| id.clone())
            .collect(),
        samples,
        launches: intents,
        draining,
        scale_history,
        recommendations,
    };
    ScalePlan {
        decision,
        roles,
        launches,
        drains,
        terminates,
        events,
        next,
    }
}

fn sample_of(stats: &StatsSnapshot, now: i64) -> Sample {
    Sample {
        at: now,
        node: stats.node.clone(),
        pid: stats.info.pid,
        uptime_s: stats.info.uptime_s,
        servers: stats
            .rows
            .iter()
            .filter(|row| !row.is_backend())
            .map(|row| {
                (
                    row.name.clone(),
                    ServerCounters {
                        up: row.status.is_up(),
                        scur: row.scur,
                        stot: row.stot,
                        req_tot: row.req_tot,
                        rtime: row.rtime,
                    },
                )
            })
            .collect(),
        backend_qcur: stats
            .rows
            .iter()
            .find(|row| row.is_backend())
            .and_then(|row| row.qcur),
        metric: None,
    }
}

/// One in-service server's metric, or `None` if it has none this run.
fn server_metric(
    metric: Metric,
    id: &str,
    sample: &Sample,
    previous: Option<&Sample>,
    in_service: usize,
) -> Option<f64> {
    let now = sample.servers.get(id).filter(|counters| counters.up)?;
    let rate = |pick: fn(&ServerCounters) -> Option<u64>| -> Option<f64> {
        let previous = previous?;
        // Counters reset on reload: a new pid, a lower uptime or a smaller counter skips this interval.
        if previous.pid != sample.pid
            || previous.uptime_s > sample.uptime_s
            || sample.at <= previous.at
        {
            return None;
        }
        let (before, after) = (pick(previous.servers.get(id)?)?, pick(now)?);
        let delta = after.checked_sub(before)?;
        Some(delta as f64 / (sample.at - previous.at) as f64)
    };
    match metric {
        Metric::SessionRate => rate(|counters| Some(counters.stot)),
        Metric::RequestRate => rate(|counters| counters.req_tot),
        Metric::CurrentSessions => Some(now.scur as f64),
        Metric::Queue => sample
            .backend_qcur
            .map(|queue| queue as f64 / in_service.max(1) as f64),
        Metric::ResponseTimeMs => now.rtime.map(|ms| ms as f64),
    }
}
