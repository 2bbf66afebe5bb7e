//! The scaling plan of one pool: pure, like [`crate::decide::policy`], which it calls.
//!
//! Steps, each in its own module: [`roles`] (booting, in service, draining; drains that end),
//! [`launches`] (intents carried over from earlier runs), [`metric`] (this run's sample and the
//! pool's metric), then [`crate::decide::policy`] decides, [`victims`] picks the servers a
//! scale-down drains, and [`events`] says what happened. [`plan_scaling`] strings them together and
//! builds the pool's next state.

mod events;
mod healing;
mod launches;
mod metric;
mod roles;
mod victims;

pub(crate) use victims::may_drain;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::config::{ForecastMode, Policy, PoolConfig, ReadyCheck, Scaling};
use crate::decide::forecast::{self, Forecast};
use crate::decide::policy::{self, Decision};
use crate::model::{
    Capped, DecisionRecord, Discovered, Instance, InstanceState, LoadPoint, PoolState, Reading,
    Row, Sample, StatsSnapshot,
};

/// How many samples are kept per pool.
const KEEP_SAMPLES: usize = 20;

/// Facts for one scaling pool.
#[derive(Debug, Clone, Copy)]
pub struct ScalingFacts<'a> {
    pub pool: &'a PoolConfig,
    pub scaling: &'a Scaling,
    pub instances: &'a [Discovered],
    /// `None` when the stats could not be read: membership still syncs, scaling holds.
    pub stats: Option<&'a StatsSnapshot>,
    /// Readiness probe results for the instances [`probe_candidates`] named.
    pub ready: &'a BTreeMap<String, bool>,
    /// Instance ids found by token, for intents without recorded ids.
    pub found_by_token: &'a BTreeMap<String, Vec<String>>,
    /// What the external metric's source answered (`None` for HAProxy's metrics).
    pub external: Option<&'a Reading>,
    pub state: &'a PoolState,
    pub now: i64,
    /// `[notify]`'s (rapid_scales, rapid_window_s).
    pub rapid: (u32, u64),
    /// How long one launch call may run (the exec command's timeout, or one EC2 attempt): an
    /// intent is re-sent only once a first attempt can no longer be running, even if the run
    /// that made it was killed mid-call.
    pub launch_timeout_s: u64,
    /// How far this node's clock is off the shared state's store, when more than
    /// [`crate::decide::plan::MAX_CLOCK_OFF_S`]: the pool holds (no new launch or drain), so a
    /// skewed clock cannot double a decision; intents already committed are still carried out.
    pub clock_off_s: Option<i64>,
    /// What makes this run's launch tokens its own: the node, the state's generation and a
    /// random part, drawn by the shell (the core draws nothing).
    pub token_salt: &'a str,
    /// The node taking the decision (`node` in the config), recorded with each scale.
    pub node: &'a str,
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
    Scaled {
        from: u32,
        to: u32,
        reason: String,
    },
    Capped {
        at: Capped,
        reason: String,
    },
    /// The pool reversed its direction more than `rapid_scales` times within `window_s`:
    /// reported once per episode.
    Rapid {
        reversals: u32,
        window_s: u64,
    },
    /// A server unhealthy for `unhealthy_after_s` was replaced: a server launched for it, and
    /// its drain begun.
    Replaced {
        server: String,
        /// HAProxy's word for it: `DOWN`, `NOLB` or `MAINT`.
        status: String,
        for_s: i64,
    },
    /// The policy wants fewer servers, but none of those it could drain may be: they are
    /// protected or not tagged for the pool (an adopted fleet). Reported once, until a drain is
    /// possible again; not a scale (no cooldown, no history, no `scaled`).
    ScaleDownBlocked {
        from: u32,
        wanted: u32,
        reason: String,
    },
}

/// The scaling part of a pool's plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScalingPlan {
    pub decision: Decision,
    /// Roles of the instances that stay in haproxy.cfg (terminating ones are absent).
    pub roles: BTreeMap<String, Role>,
    pub launches: Vec<LaunchAction>,
    pub drains: Vec<InstanceAction>,
    pub terminates: Vec<InstanceAction>,
    pub events: Vec<Event>,
    /// Facts the operator must fix (a launch time that cannot be read).
    pub warnings: Vec<String>,
    /// Why an external metric gave no value this run (the pool held).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_metric: Option<String>,
    /// What the forecast said, with `forecast` other than `off`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forecast: Option<ForecastReport>,
    /// How old the metric the decision used was (seconds), when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric_age_s: Option<i64>,
    /// The pool's state after this run (its `servers` and `bad_instances` are filled in by the
    /// caller).
    #[serde(skip)]
    pub next: PoolState,
}

/// What the forecast of the pool's load said this run, and how right its forecasts were.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForecastReport {
    pub mode: ForecastMode,
    pub lead_s: u64,
    /// The load expected `lead_s` from now; `None` while it learns.
    pub load: Option<f64>,
    /// The highest load expected from then over the policy's scale-down window (300 s for the
    /// threshold policies): what `scale` raises the capacity to, so that it does not take
    /// servers it will want back within the window.
    pub peak: Option<f64>,
    /// The days it was made from.
    pub days: u32,
    /// The history it has while it learns, of the two days it needs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learning_s: Option<i64>,
    /// The mean absolute percentage error of its forecasts over the last day.
    pub error_pct: Option<f64>,
}

impl ForecastReport {
    /// The forecast in words, for `--plan`.
    pub fn describe(&self) -> String {
        let what = match (self.load, self.learning_s) {
            (Some(load), _) => format!(
                "load {load:.2} in {} s (from {} day(s))",
                self.lead_s, self.days
            ),
            (None, Some(had)) => format!(
                "learning: {:.1} of the {} days of history it needs",
                had as f64 / forecast::DAY_S as f64,
                forecast::MIN_HISTORY_S / forecast::DAY_S
            ),
            (None, None) => "no forecast".to_owned(),
        };
        let error = self.error_pct.map_or("not scored yet".to_owned(), |pct| {
            format!("{pct:.1} % mean error over the last day")
        });
        let acts = match self.mode {
            ForecastMode::Scale => "acts",
            _ => "observed only",
        };
        format!("forecast ({acts}): {what}; {error}")
    }
}

/// The forecast for a pool, from its history, with its mode and score; `None` when off.
fn forecast_report(scaling: &Scaling, history: &[LoadPoint], now: i64) -> Option<ForecastReport> {
    if scaling.forecast == ForecastMode::Off {
        return None;
    }
    let lead_s = scaling.forecast_lead_s;
    let (load, days, learning_s) = match forecast::forecast(history, now, lead_s as i64, 0) {
        Forecast::Load { load, days } => (Some(load), days, None),
        Forecast::Learning { history_s } => (None, 0, Some(history_s.max(0))),
    };
    let peak = match forecast::forecast(history, now, lead_s as i64, window_s(scaling) as i64) {
        Forecast::Load { load, .. } => Some(load),
        Forecast::Learning { .. } => None,
    };
    Some(ForecastReport {
        mode: scaling.forecast,
        lead_s,
        load,
        peak,
        days,
        learning_s,
        error_pct: forecast::error_pct(history, now),
    })
}

/// The servers that served when this run's sample was taken: the last run's (this run's when
/// there was none).
fn queued_over(state: &PoolState, in_service: usize) -> u32 {
    if state.in_service.is_empty() {
        in_service as u32
    } else {
        state.in_service.len() as u32
    }
}

/// The scale actions in the hour before `now`.
fn actions_last_hour(state: &PoolState, now: i64) -> u32 {
    state
        .scale_history
        .iter()
        .filter(|event| event.at > now - 3_600)
        .count() as u32
}

/// The forecast peak the capacity is raised to: the highest of this run's and those made over
/// the policy's scale-down window, as HPA steadies its recommendations, so that a forecast
/// that dips for a run does not take servers it wants back the run after.
fn steady_peak(
    scaling: &Scaling,
    history: &[LoadPoint],
    report: &ForecastReport,
    now: i64,
) -> Option<f64> {
    let peak = report.peak?;
    let since = now.saturating_sub(window_s(scaling) as i64);
    let start = history.partition_point(|point| point.at <= since);
    Some(
        history[start..]
            .iter()
            .filter_map(|point| point.peak)
            .fold(peak, f64::max),
    )
}

/// The policy's scale-down window (300 s for the threshold policies).
fn window_s(scaling: &Scaling) -> u64 {
    match scaling.policy {
        Policy::Target { window_s, .. } | Policy::Peak { window_s, .. } => window_s,
        _ => 300,
    }
}

/// How far back the peak policy's `headroom_quantile` reads the pool's loads.
const HOUR_S: i64 = 3_600;

/// This run's load (this node's sample's, or the pool's across nodes), when it measured one.
fn this_run_load(sample: Option<&Sample>, now: i64) -> Option<f64> {
    sample
        .filter(|sample| sample.at == now)
        .and_then(|sample| sample.pool_load.or(sample.load))
}

/// The pool's loads over the last hour, from its history, and this run's.
fn hour_loads(history: &[LoadPoint], this_load: Option<f64>, now: i64) -> Vec<f64> {
    history
        .iter()
        .filter(|point| point.at > now - HOUR_S && point.at < now)
        .map(|point| point.load)
        .chain(this_load)
        .collect()
}

/// Whether the policy reads the last hour's loads (the peak policy with a `headroom_quantile`).
fn reads_the_hour(scaling: &Scaling) -> bool {
    matches!(scaling.policy, Policy::Peak { headroom_quantile, .. } if headroom_quantile > 0.0)
}

/// The load history with this run's load (this node's sample's, or the pool's across nodes)
/// and the forecast it made, for the next runs' forecasts and scores and the last hour's
/// quantile; unchanged by a run without a load. Without a forecast only the last hour is
/// kept.
fn recorded(
    report: Option<&ForecastReport>,
    history: &[LoadPoint],
    load: Option<f64>,
    now: i64,
) -> Vec<LoadPoint> {
    let Some(load) = load else {
        return history.to_vec();
    };
    let mut recorded = forecast::record(
        history,
        LoadPoint {
            at: now,
            load,
            forecast: report
                .and_then(|report| report.load.map(|expected| (expected, report.lead_s as i64))),
            peak: report.and_then(|report| report.peak),
        },
    );
    if report.is_none() {
        recorded.retain(|point| point.at > now - HOUR_S);
    }
    recorded
}

/// The instances whose readiness the run must probe: running, past warmup, not draining, and
/// not in service at the last run.
pub(crate) fn probe_candidates<'a>(
    pool: &PoolConfig,
    scaling: &Scaling,
    instances: &'a [Discovered],
    state: &PoolState,
    now: i64,
) -> Vec<&'a Discovered> {
    if pool.ready_check == ReadyCheck::None {
        return Vec::new();
    }
    let draining: HashSet<&str> = state.draining.iter().map(|d| d.id.as_str()).collect();
    let in_service: HashSet<&str> = state.in_service.iter().map(String::as_str).collect();
    instances
        .iter()
        .filter(|found| found.instance.state == InstanceState::Running)
        .filter(|found| !in_warmup(&found.instance, scaling, now))
        .filter(|found| !draining.contains(found.instance.id.as_str()))
        .filter(|found| !in_service.contains(found.instance.id.as_str()))
        .collect()
}

/// Inside `warmup_s` of its launch. A launch time that cannot be read counts as inside: the
/// server stays out of traffic rather than skip its warm-up (the plan warns about it).
fn in_warmup(instance: &Instance, scaling: &Scaling, now: i64) -> bool {
    in_warmup_since(instance, launched_at(instance), scaling, now)
}

/// [`in_warmup`] with the instance's launch time already read (`launched`).
fn in_warmup_since(
    instance: &Instance,
    launched: Option<i64>,
    scaling: &Scaling,
    now: i64,
) -> bool {
    match (&instance.launch_time, launched) {
        (Some(_), None) => true,
        (_, at) => at.is_some_and(|at| now < at.saturating_add(scaling.warmup_s as i64)),
    }
}

fn launched_at(instance: &Instance) -> Option<i64> {
    instance
        .launch_time
        .as_deref()
        .and_then(|text| text.parse::<jiff::Timestamp>().ok())
        .map(jiff::Timestamp::as_second)
}

/// A launch token, `hxa-<12 hex>-<unix time>` (27 ASCII characters; EC2 takes 64): the hex is
/// a digest of the pool and the run's `salt`. Tokens of one pool and second differ by the salt:
/// two decisions taken in the same second, on one node or two, never share a token, so an
/// instance launched for one never makes the other's intent look fulfilled, and EC2 never folds
/// two launches into one.
pub(crate) fn launch_token(pool: &str, now: i64, salt: &str) -> String {
    let digest = crate::model::sha256_hex(format!("{pool}\n{salt}").as_bytes());
    format!("hxa-{}-{now}", &digest[..12])
}

/// Each instance's launch time, read once: reading RFC 3339 text is most of what a run costs
/// per server.
fn launch_times(facts: &ScalingFacts<'_>) -> Vec<Option<i64>> {
    facts
        .instances
        .iter()
        .map(|found| launched_at(&found.instance))
        .collect()
}

/// Plans one scaling pool.
pub fn plan_scaling(facts: &ScalingFacts<'_>) -> ScalingPlan {
    let now = facts.now;
    // Times from the future (written while the clock was ahead) would hold a cooldown or a drain
    // for as long as the clock was off: every stored time counts as `now` at the latest.
    let state = &clamp_to(facts.state, now);
    let rows = rows_by_server(facts.stats);
    let launched = launch_times(facts);
    let mut roles = roles::assign_roles(facts, state, &rows, &launched);
    let healing = healing::heal(facts, state, &rows, &mut roles);
    let in_service = healing.capacity(facts, state, &roles);
    let present = in_service.len() as u32 + roles.count(Role::Booting);
    let mut launches = launches::carry_intents(facts, state, present);
    let measured = metric::measure(facts, state, &in_service);
    let forecast = forecast_report(facts.scaling, &state.load_history, now);
    let this_load = this_run_load(measured.sample.as_ref(), now);
    let hour = hour_loads(&state.load_history, this_load, now);
    let mut decision = policy::decide(&policy::Input {
        scaling: facts.scaling,
        now,
        in_service: in_service.len() as u32,
        // A replacement stands in for the server it replaces, as a launch on its way.
        booting: roles
            .count(Role::Booting)
            .saturating_add(launches.pending_capacity)
            .saturating_add(healing.launches()),
        per_server: &measured.per_server,
        history: &measured.history,
        last_scale_at: state.scale_history.last().map(|event| event.at),
        recommendations: &state.recommendations,
        loads: &measured.loads,
        hour: &hour,
        no_metric: measured.no_metric.as_deref(),
        queued: measured.queued,
        queued_over: queued_over(state, in_service.len()),
        forecast: forecast
            .as_ref()
            .filter(|report| report.mode == ForecastMode::Scale)
            .and_then(|report| steady_peak(facts.scaling, &state.load_history, report, now)),
        actions_last_hour: actions_last_hour(state, now),
    });
    if let Some(off) = facts.clock_off_s {
        hold_for_the_clock(&mut decision, off);
    }
    let (current, desired) = (decision.current, decision.desired);
    let no_metric = measured.no_metric.clone();
    healing.launch(facts, &mut launches);
    let mut drained = victims::Drains::default();
    let mut new_token = None;
    if desired > current {
        let token = launch_token(&facts.pool.name, now, facts.token_salt);
        new_token = Some(token.clone());
        launches.add_new(token, desired - current, now, &decision.reason);
    } else if desired < current {
        drained = victims::drain_servers(
            facts,
            &rows,
            &mut roles,
            current - desired,
            &decision.reason,
        );
    }
    let reached = if desired < current {
        current - drained.drains.len() as u32
    } else {
        desired
    };
    let outcome = events::pool_events(
        facts,
        state,
        &mut decision,
        (reached, new_token),
        &drained.not_drainable,
    );
    let metric_age_s = measured.metric_age_s;
    let mut next = next_state(
        facts, state, &decision, &roles, &launches, &outcome, measured,
    );
    let (warnings, events, drains) = healing.merged(
        &mut next,
        launch_time_warnings(facts, &launched),
        outcome.events,
        drained.drains,
    );
    if forecast.is_some() || reads_the_hour(facts.scaling) {
        next.load_history = recorded(forecast.as_ref(), &state.load_history, this_load, now);
    }
    let mut plan = ScalingPlan {
        warnings,
        no_metric,
        forecast,
        metric_age_s,
        roles: roles.roles,
        launches: launches.launches,
        drains,
        terminates: roles.terminates,
        events,
        decision,
        next,
    };
    plan.next.decisions = decisions_after(&plan, state, facts, reached);
    plan
}

/// A node whose clock is `off` seconds off the shared state's store takes no decision.
fn hold_for_the_clock(decision: &mut Decision, off: i64) {
    decision.desired = decision.current;
    decision.capped = None;
    decision.hold = Some(policy::Hold::ClockOff);
    decision.saturated = None;
    decision.forecast_raised = false;
    decision.reason = format!(
        "this node's clock is {off} s off the shared state's store's: it renders, but takes no scaling decision until its clock is right"
    );
}

/// How many decisions `history` can show per pool.
const KEEP_DECISIONS: usize = 100;

/// The pool's decision log after this run: this run's decision is added when it launched,
/// drained or terminated, or held for another reason than the last one recorded.
fn decisions_after(
    plan: &ScalingPlan,
    state: &PoolState,
    facts: &ScalingFacts<'_>,
    reached: u32,
) -> Vec<DecisionRecord> {
    let mut decisions = state.decisions.clone();
    let decision = &plan.decision;
    let hold = decision.hold.map(|hold| hold.name().to_owned());
    let acted = !plan.launches.is_empty()
        || !plan.drains.is_empty()
        || !plan.terminates.is_empty()
        || reached != decision.current;
    let held_otherwise = decisions.last().is_none_or(|last| last.hold != hold);
    if acted || held_otherwise {
        decisions.push(DecisionRecord {
            at: facts.now,
            node: facts.node.to_owned(),
            from: decision.current,
            to: reached,
            reason: decision.reason.clone(),
            hold,
            metric: decision.metric,
            metric_age_s: plan.metric_age_s,
            launched: plan.launches.iter().map(|launch| launch.count).sum(),
            drained: plan.drains.iter().map(|drain| drain.id.clone()).collect(),
            terminated: plan.terminates.iter().map(|end| end.id.clone()).collect(),
        });
    }
    let keep_from = decisions.len().saturating_sub(KEEP_DECISIONS);
    decisions.drain(..keep_from);
    decisions
}

/// The backend's rows by server name (empty without stats).
fn rows_by_server(stats: Option<&StatsSnapshot>) -> HashMap<&str, &Row> {
    stats
        .map(|stats| {
            stats
                .rows
                .iter()
                .map(|row| (row.name.as_str(), row))
                .collect()
        })
        .unwrap_or_default()
}

/// The pool's state after this run (its `servers` and `bad_instances` are filled in by the
/// membership plan; `reloaded_at` is set there when this run reloads).
fn next_state(
    facts: &ScalingFacts<'_>,
    state: &PoolState,
    decision: &Decision,
    roles: &roles::Roles,
    launches: &launches::Launches,
    outcome: &events::Outcome,
    measured: metric::Measured,
) -> PoolState {
    let now = facts.now;
    // Only the newest sample of a node is ever compared with the next: older ones keep their
    // metric and load, not every server's counters (a state file of 100,000 servers stays one
    // sample of counters per node), and are copied without them.
    let node = measured.sample.as_ref().map(|sample| sample.node.as_str());
    let mut samples: Vec<Sample> = state
        .samples
        .iter()
        .map(|older| {
            if Some(older.node.as_str()) == node {
                Sample {
                    at: older.at,
                    node: older.node.clone(),
                    pid: older.pid,
                    uptime_s: older.uptime_s,
                    servers: BTreeMap::new(),
                    backend_qcur: older.backend_qcur,
                    metric: older.metric,
                    load: older.load,
                    pool_metric: older.pool_metric,
                    pool_load: older.pool_load,
                }
            } else {
                older.clone()
            }
        })
        .collect();
    samples.extend(measured.sample);
    let keep_from = samples.len().saturating_sub(KEEP_SAMPLES);
    samples.drain(..keep_from);
    let mut recommendations = state.recommendations.clone();
    if let (Some(servers), Policy::Target { window_s, .. }) =
        (decision.recommendation, &facts.scaling.policy)
    {
        recommendations.push((now, servers));
        let since = now.saturating_sub(*window_s as i64);
        recommendations.retain(|(at, _)| *at >= since);
    }
    PoolState {
        servers: Vec::new(),
        bad_instances: Vec::new(),
        in_service: roles
            .roles
            .iter()
            .filter(|(_, role)| **role == Role::InService)
            .map(|(id, _)| id.clone())
            .collect(),
        samples,
        launches: launches.intents.clone(),
        draining: roles.draining.clone(),
        scale_history: outcome.scale_history.clone(),
        recommendations,
        capped: decision.capped,
        scale_down_blocked: outcome.scale_down_blocked,
        flapping: outcome.flapping,
        reloaded_at: state.reloaded_at,
        load_history: state.load_history.clone(),
        decisions: Vec::new(),
        unhealthy_since: BTreeMap::new(),
        replacements: Vec::new(),
        maintenance: state.maintenance.clone(),
        protected: state.protected.clone(),
    }
}

/// Facts the operator must fix: a launch time that cannot be read keeps its server booting.
fn launch_time_warnings(facts: &ScalingFacts<'_>, launched: &[Option<i64>]) -> Vec<String> {
    facts
        .instances
        .iter()
        .map(|found| &found.instance)
        .zip(launched)
        .filter_map(|(instance, at)| {
            let text = instance.launch_time.as_deref()?;
            at.is_none().then(|| {
                format!(
                    "pool `{}`: instance `{}` has launch time {text:?}, which is not an RFC 3339 time: it is kept booting (no traffic) until its provider reports a readable one",
                    facts.pool.name, instance.id
                )
            })
        })
        .collect()
}

/// `state` with its times at most `now`: borrowed as it is when none is later (the normal
/// case), a corrected copy otherwise.
fn clamp_to(state: &PoolState, now: i64) -> Cow<'_, PoolState> {
    let later = state
        .draining
        .iter()
        .any(|drain| drain.since > now || drain.terminating_at.is_some_and(|at| at > now))
        || state.scale_history.iter().any(|event| event.at > now)
        || state
            .launches
            .iter()
            .any(|intent| intent.requested_at > now)
        || state.samples.iter().any(|sample| sample.at > now)
        || state.recommendations.iter().any(|(at, _)| *at > now)
        || state.reloaded_at.is_some_and(|at| at > now);
    if !later {
        return Cow::Borrowed(state);
    }
    let mut state = state.clone();
    for drain in &mut state.draining {
        drain.since = drain.since.min(now);
        drain.terminating_at = drain.terminating_at.map(|at| at.min(now));
    }
    for event in &mut state.scale_history {
        event.at = event.at.min(now);
    }
    for intent in &mut state.launches {
        intent.requested_at = intent.requested_at.min(now);
    }
    for sample in &mut state.samples {
        sample.at = sample.at.min(now);
    }
    for (at, _) in &mut state.recommendations {
        *at = (*at).min(now);
    }
    state.reloaded_at = state.reloaded_at.map(|at| at.min(now));
    Cow::Owned(state)
}

#[cfg(test)]
#[allow(
    clippy::float_cmp,
    reason = "the figures compared exactly are sums of whole numbers, exact in binary"
)]
mod tests {
    use super::metric::sample_of;
    use super::victims::{protected, tagged_for};
    use super::*;
    use crate::config::scaling::Bound;
    use crate::config::scaling::{TAG_POOL, TAG_PROTECTED};
    use crate::model::{Draining, Info, LaunchIntent, OldWorkers, ScaleEvent, Status};
    use crate::testing;

    const NOW: i64 = 1_800_000_000;

    fn pool(scaling: &str, ready_check: &str) -> PoolConfig {
        testing::ConfigBuilder::new()
            .section("stats_socket = \"/s\"")
            .scaling_pool(
                "web",
                80,
                &format!("ready_check = \"{ready_check}\""),
                scaling,
            )
            .build()
            .pools
            .remove(0)
    }

    fn threshold(extra: &str) -> PoolConfig {
        pool(
            &format!(
                "min = 1\nmax = 10\nscale_up_above = 20\nscale_down_below = 10\ncooldown_s = 0\nwarmup_s = 60\ndrain_s = 120\n{extra}"
            ),
            "none",
        )
    }

    fn instance(id: &str, launched_ago: i64) -> Instance {
        let launch = jiff::Timestamp::from_second(NOW - launched_ago)
            .unwrap()
            .to_string();
        Instance {
            launch_time: Some(launch),
            ..testing::tagged(testing::instance(id, "127.0.0.1"), &[(TAG_POOL, "web")])
        }
    }

    fn row(name: &str, scur: u64, stot: u64) -> Row {
        Row {
            scur,
            stot,
            req_tot: Some(stot),
            qcur: Some(0),
            rtime: Some(5),
            ..Row::idle("web", name, Status::Up)
        }
    }

    fn snapshot(pid: u64, uptime_s: u64, rows: Vec<Row>) -> StatsSnapshot {
        StatsSnapshot {
            node: "local".into(),
            info: Info {
                pid,
                uptime_s,
                version: None,
            },
            rows,
            old_workers: OldWorkers::Untracked,
        }
    }

    struct World {
        pool: PoolConfig,
        instances: Vec<Instance>,
        stats: Option<StatsSnapshot>,
        ready: BTreeMap<String, bool>,
        found: BTreeMap<String, Vec<String>>,
        state: PoolState,
        now: i64,
        clock_off_s: Option<i64>,
        external: Option<Reading>,
        /// Requests queued in the backend in the stats `with_rate` makes.
        queued: u64,
    }

    impl World {
        fn new(pool: PoolConfig, instances: Vec<Instance>) -> World {
            World {
                pool,
                instances,
                stats: None,
                ready: BTreeMap::new(),
                found: BTreeMap::new(),
                state: PoolState::default(),
                now: NOW,
                clock_off_s: None,
                queued: 0,
                external: None,
            }
        }

        fn plan(&self) -> ScalingPlan {
            let instances = testing::discovered(&self.pool, &self.instances);
            plan_scaling(&ScalingFacts {
                pool: &self.pool,
                scaling: self.pool.scaling.as_ref().unwrap(),
                instances: &instances,
                stats: self.stats.as_ref(),
                ready: &self.ready,
                found_by_token: &self.found,
                external: self.external.as_ref(),
                state: &self.state,
                now: self.now,
                rapid: (2, 600),
                launch_timeout_s: 30,
                clock_off_s: self.clock_off_s,
                token_salt: "test",
                node: "lb-test",
            })
        }

        /// Two samples 60 s apart with `rate` new sessions per second on every server.
        fn with_rate(mut self, rate: u64, scur: &[u64]) -> World {
            let ids: Vec<String> = self.instances.iter().map(|i| i.id.clone()).collect();
            let rows = |base: u64| {
                let mut rows: Vec<Row> = ids
                    .iter()
                    .zip(scur)
                    .map(|(id, s)| row(id, *s, base))
                    .collect();
                let mut backend = row("BACKEND", 0, 0);
                backend.qcur = Some(self.queued);
                rows.push(backend);
                rows
            };
            let earlier = snapshot(7, 1000, rows(100));
            self.state.samples = vec![sample_of(&earlier, self.now - 60)];
            self.state.in_service = ids.clone();
            self.stats = Some(snapshot(7, 1060, rows(100 + rate * 60)));
            self
        }
    }

    /// A pool on an external metric: four servers in service, HAProxy's stats read, and the
    /// source's answer `text` measured at `at`.
    fn external_world(per_server: bool, policy: &str, text: &str, at: Option<f64>) -> World {
        let pool = pool(
            &format!(
                "min = 1\nmax = 20\nstep_up = 10\nstep_down = 10\ncooldown_s = 0\nmetric = \"command\"\nmetric_command = [\"/bin/true\"]\nper_server = {per_server}\n{policy}"
            ),
            "none",
        );
        let ids = ["i-1", "i-2", "i-3", "i-4"];
        let mut world = World::new(pool, ids.iter().map(|id| instance(id, 600)).collect())
            .with_rate(1, &[1, 1, 1, 1]);
        world.external = Some(Reading::Value {
            text: text.to_owned(),
            at,
        });
        world
    }

    #[test]
    fn an_external_value_is_judged_before_it_is_used() {
        let at = |age: i64| Some((NOW - age) as f64);
        let value = |text: &str, at| Reading::Value {
            text: text.to_owned(),
            at,
        };
        assert_eq!(metric::judge(&value("0.75", at(10)), NOW, 120), Ok(0.75));
        assert_eq!(metric::judge(&value(" 12 ", None), NOW, 120), Ok(12.0));
        assert_eq!(metric::judge(&value("0", at(120)), NOW, 120), Ok(0.0));
        let no_data = [
            (value("NaN", at(0)), "NaN"),
            (value("+Inf", at(0)), "inf"),
            (value("-Inf", at(0)), "inf"),
            (value("-0.5", at(0)), "negative"),
            (value("busy", at(0)), "`busy` is not a number"),
            (value("", None), "is not a number"),
            (
                value("3", at(121)),
                "121 s old, more than metric_max_age_s (120 s)",
            ),
            (value("3", at(-121)), "121 s ahead of this run's"),
            (value("3", Some(NOW as f64 * 1000.0)), "not milliseconds"),
            (Reading::Missing("exit 3".into()), "exit 3"),
        ];
        for (reading, words) in no_data {
            let why = metric::judge(&reading, NOW, 120).unwrap_err();
            assert!(why.contains(words), "{reading:?}: {why}");
        }
    }

    #[test]
    fn an_external_metric_scales_up_and_down_and_holds_on_no_data() {
        // A queue of 120 jobs for 4 servers, target 10 per server: 12 servers.
        let plan = external_world(true, "target = 10", "120", Some(NOW as f64)).plan();
        assert_eq!(plan.decision.metric, Some(30.0), "{}", plan.decision.reason);
        assert_eq!(plan.decision.desired, 12, "{}", plan.decision.reason);
        // A CPU average of 0.9 on each of 4 servers, target 0.6: 6 servers.
        let plan = external_world(false, "target = 0.6", "0.9", Some(NOW as f64)).plan();
        assert_eq!(plan.decision.metric, Some(0.9));
        assert_eq!(plan.decision.desired, 6, "{}", plan.decision.reason);
        // Low: the threshold policy drains.
        let plan = external_world(
            false,
            "scale_up_above = 0.8\nscale_down_below = 0.3",
            "0.1",
            None,
        )
        .plan();
        assert!(plan.decision.desired < 4, "{}", plan.decision.reason);
        assert!(!plan.drains.is_empty());
        // No data holds, and says why.
        for (text, why) in [("NaN", "NaN"), ("-1", "negative"), ("x", "not a number")] {
            let plan = external_world(true, "target = 10", text, None).plan();
            assert_eq!(
                (plan.decision.metric, plan.decision.desired),
                (None, 4),
                "{text}"
            );
            assert!(
                plan.decision.reason.contains(why) && plan.decision.reason.contains("holding"),
                "{}",
                plan.decision.reason
            );
        }
        let mut stale = external_world(true, "target = 10", "500", Some((NOW - 600) as f64));
        assert_eq!(stale.plan().decision.desired, 4);
        stale.external = Some(Reading::Missing("query `q` returned 2 series".into()));
        assert!(stale.plan().decision.reason.contains("returned 2 series"));
        // Without HAProxy's stats nothing is known in service: hold.
        let mut blind = external_world(true, "target = 10", "500", None);
        blind.stats = None;
        assert_eq!(blind.plan().decision.desired, 4);
    }

    #[test]
    fn a_per_server_value_is_shared_with_the_servers_that_joined_since_it_was_measured() {
        // 0.9 measured on the 2 servers in service at the last run; 2 more join now.
        // (A scale-down tolerance of 0.1, so that 3 for 4 is not held within the default 0.25.)
        let mut world = external_world(
            false,
            "target = 0.6\nscale_down_tolerance = 0.1",
            "0.9",
            None,
        );
        world.state.in_service = vec!["i-1".into(), "i-2".into()];
        let plan = world.plan();
        assert_eq!(plan.decision.metric, Some(0.45));
        assert_eq!(plan.decision.desired, 3, "{}", plan.decision.reason);
    }

    #[test]
    fn an_external_value_is_the_same_on_every_node_and_never_summed() {
        let mut world = external_world(true, "target = 10", "120", None);
        // Another node's fresh sample of the same value.
        let mut other = world.state.samples[0].clone();
        other.node = "lb-2".into();
        other.at = NOW - 10;
        other.metric = Some(30.0);
        world.state.samples.push(other);
        assert_eq!(world.plan().decision.metric, Some(30.0));
        assert_eq!(world.plan().decision.desired, 12);
    }

    proptest::proptest! {
        /// A larger external value never asks for fewer servers, whichever way it is read.
        #[test]
        fn external_metrics_are_monotonic(low in 0.0f64..1000.0, more in 0.0f64..1000.0, per_server: bool) {
            let desired = |value: f64| {
                external_world(per_server, "target = 10", &value.to_string(), None)
                    .plan()
                    .decision
                    .desired
            };
            proptest::prop_assert!(desired(low) <= desired(low + more));
        }
    }

    /// Issue 9, item 1: two hot servers, `step_up = 2`, no cooldown, new servers inside
    /// `warmup_s`, runs two seconds apart: every policy launches 2 once and then holds, ending
    /// with 4 instances (not 8).
    #[test]
    fn issue_9_1_no_overshoot_while_servers_boot_for_any_policy() {
        for policy in [
            "policy = \"threshold\"\nscale_up_above = 20\nscale_down_below = 10",
            "policy = \"consecutive\"\nscale_up_above = 20\nscale_down_below = 10\nup_after = 2\ndown_after = 2",
            "policy = \"average\"\nscale_up_above = 20\nscale_down_below = 10\naverage_of = 2",
            "policy = \"target\"\ntarget = 15",
        ] {
            let pool = pool(
                &format!("min = 1\nmax = 10\nstep_up = 2\ncooldown_s = 0\nwarmup_s = 60\n{policy}"),
                "none",
            );
            let mut world = World::new(pool, vec![instance("i-1", 600), instance("i-2", 600)]);
            world.state.in_service = vec!["i-1".into(), "i-2".into()];
            let mut stot = 0;
            let mut launched = 0;
            for run in 0..6 {
                world.now = NOW + 2 * run;
                // 30 new sessions per second on each server in service; booting ones get none.
                stot += 60;
                let rows = world
                    .instances
                    .iter()
                    .map(|i| row(&i.id, 1, if i.id.starts_with("i-new") { 0 } else { stot }))
                    .collect();
                world.stats = Some(snapshot(7, 1000 + 2 * run as u64, rows));
                let plan = world.plan();
                for launch in &plan.launches {
                    for _ in 0..launch.count {
                        launched += 1;
                        world
                            .instances
                            .push(instance(&format!("i-new{launched}"), NOW - world.now));
                    }
                }
                world.state = plan.next.clone();
                world.state.launches.clear(); // the fake launched them at once, with ids
            }
            assert_eq!(world.instances.len(), 4, "{policy}: launched {launched}");
        }
    }

    /// A pool of three in service at 15 sessions/s (within the thresholds: the policy holds),
    /// `i-2` reported `status` by HAProxy since `down_for` seconds ago.
    fn with_one_unhealthy(status: Status, down_for: Option<i64>) -> World {
        let mut world = World::new(
            threshold(""),
            vec![
                instance("i-1", 600),
                instance("i-2", 600),
                instance("i-3", 600),
            ],
        )
        .with_rate(15, &[1, 1, 1]);
        let stats = world.stats.as_mut().unwrap();
        stats.rows[1].status = status;
        stats.rows[1].scur = 0;
        if let Some(down_for) = down_for {
            world
                .state
                .unhealthy_since
                .insert("i-2".into(), NOW - down_for);
        }
        world
    }

    /// Self-healing: a server DOWN for `unhealthy_after_s` (300 by default) is replaced, a launch
    /// first and its drain after, once; before that it is remembered and still counted.
    #[test]
    fn a_server_down_for_long_is_replaced_launch_first() {
        let fresh = with_one_unhealthy(Status::Down, None).plan();
        assert!(
            fresh.launches.is_empty() && fresh.drains.is_empty(),
            "{fresh:?}"
        );
        assert_eq!(fresh.next.unhealthy_since.get("i-2"), Some(&NOW));
        assert_eq!(fresh.decision.current, 3, "counted until unhealthy_after_s");

        let plan = with_one_unhealthy(Status::Down, Some(300)).plan();
        assert_eq!(plan.decision.current, 3, "{}", plan.decision.reason);
        assert_eq!(plan.decision.desired, 3, "{}", plan.decision.reason);
        assert_eq!(plan.launches.len(), 1, "{:?}", plan.launches);
        assert_eq!(plan.launches[0].count, 1);
        assert_eq!(plan.launches[0].reason, "replaces unhealthy i-2");
        assert_eq!(plan.drains.len(), 1);
        assert_eq!(plan.drains[0].id, "i-2");
        assert!(
            plan.drains[0]
                .reason
                .starts_with("replaced: DOWN for 300 s"),
            "{}",
            plan.drains[0].reason
        );
        assert_eq!(plan.roles.get("i-2"), Some(&Role::Draining));
        assert!(plan.events.contains(&Event::Replaced {
            server: "i-2".into(),
            status: "DOWN".into(),
            for_s: 300
        }));
        assert_eq!(plan.next.replacements, vec![(NOW, "i-2".to_owned())]);
        assert_eq!(
            plan.next.launches.len(),
            1,
            "the replacement is an intent, saved first"
        );

        // NOLB and MAINT too, unless the operator set maintenance.
        for status in [Status::Maint, Status::Other("NOLB".into())] {
            assert_eq!(with_one_unhealthy(status, Some(600)).plan().drains.len(), 1);
        }
        let mut held = with_one_unhealthy(Status::Maint, Some(600));
        held.state.maintenance = vec!["i-2".into()];
        let plan = held.plan();
        assert!(plan.drains.is_empty() && plan.launches.is_empty());
        assert!(plan.next.unhealthy_since.is_empty());
        assert_eq!(plan.decision.current, 2, "under maintenance: not capacity");
    }

    #[test]
    fn an_unhealthy_server_that_may_not_be_replaced_is_no_capacity_and_said() {
        let mut protected = with_one_unhealthy(Status::Down, Some(900));
        protected.state.protected = vec!["i-2".into()];
        let mut limited = with_one_unhealthy(Status::Down, Some(900));
        limited.state.replacements = vec![(NOW - 3000, "i-8".into()), (NOW - 60, "i-9".into())];
        let mut tagged = with_one_unhealthy(Status::Down, Some(900));
        tagged.instances[1]
            .tags
            .insert(TAG_PROTECTED.into(), "true".into());
        for (world, words) in [
            (
                protected,
                "i-2 is protected (`protect web/i-2 off` lifts it)",
            ),
            (
                limited,
                "2 server(s) were replaced in the last hour (max_replacements_per_hour)",
            ),
            (tagged, "is tagged haproxy-autoscaler:protected=true"),
        ] {
            let plan = world.plan();
            assert!(plan.drains.is_empty(), "{words}: {:?}", plan.drains);
            assert_eq!(plan.decision.current, 2, "{words}: not counted");
            assert!(
                plan.warnings
                    .iter()
                    .any(|warning| warning.contains("i-2 is DOWN for 900 s")
                        && warning.contains(words)),
                "{words}: {:?}",
                plan.warnings
            );
        }
        // An hour later the limit allows one again.
        let mut later = with_one_unhealthy(Status::Down, Some(900));
        later.state.replacements = vec![(NOW - 3600, "i-8".into()), (NOW - 3700, "i-9".into())];
        assert_eq!(later.plan().drains.len(), 1);
        let mut off = with_one_unhealthy(Status::Down, Some(90_000));
        off.pool.scaling.as_mut().unwrap().unhealthy_after_s = 0;
        assert!(off.plan().drains.is_empty(), "unhealthy_after_s = 0: never");
    }

    /// `history`'s log: a run that acts is recorded with its reason, metric and what it did; a
    /// run that holds for the reason the last record gave is not; a new reason to hold is; the
    /// log keeps the newest [`KEEP_DECISIONS`].
    #[test]
    fn the_decision_log_records_acts_and_changes_of_reason_and_is_bounded() {
        let hot = World::new(
            threshold("step_up = 2"),
            vec![instance("i-1", 600), instance("i-2", 600)],
        )
        .with_rate(30, &[1, 1]);
        let plan = hot.plan();
        let record = plan.next.decisions.last().expect("a scale-up is recorded");
        assert_eq!(
            (record.at, record.node.as_str(), record.from, record.to),
            (NOW, "lb-test", 2, 4)
        );
        assert_eq!(
            (record.launched, record.metric, record.metric_age_s),
            (2, Some(30.0), Some(0))
        );
        assert_eq!(record.reason, plan.decision.reason);
        assert_eq!(record.hold, None);

        let mut calm = World::new(
            threshold(""),
            vec![instance("i-1", 600), instance("i-2", 600)],
        )
        .with_rate(15, &[1, 1]);
        let first = calm.plan();
        assert_eq!(first.next.decisions.len(), 1, "a first hold is recorded");
        assert_eq!(first.next.decisions[0].hold.as_deref(), Some("policy"));
        calm.state.decisions = first.next.decisions.clone();
        assert_eq!(
            calm.plan().next.decisions.len(),
            1,
            "the same hold again is not"
        );
        calm.state.decisions[0].hold = Some("cooldown".to_owned());
        assert_eq!(
            calm.plan().next.decisions.len(),
            2,
            "another reason to hold is"
        );

        calm.state.decisions = vec![first.next.decisions[0].clone(); KEEP_DECISIONS];
        calm.state.decisions[0].hold = None;
        let bounded = calm.plan().next.decisions;
        assert_eq!(bounded.len(), KEEP_DECISIONS);

        // An external metric's age is its source's.
        let plan = external_world(true, "target = 10", "120", Some((NOW - 42) as f64)).plan();
        assert_eq!(plan.metric_age_s, Some(42));
        assert_eq!(plan.next.decisions.last().unwrap().metric_age_s, Some(42));
    }

    #[test]
    fn scale_up_launches_with_a_deterministic_token_recorded_as_an_intent() {
        let world = World::new(
            threshold("step_up = 2"),
            vec![instance("i-1", 600), instance("i-2", 600)],
        )
        .with_rate(30, &[1, 1]);
        let plan = world.plan();
        assert_eq!(plan.decision.metric, Some(30.0));
        assert_eq!(
            (plan.decision.current, plan.decision.desired),
            (2, 4),
            "{}",
            plan.decision.reason
        );
        assert_eq!(plan.launches.len(), 1);
        assert_eq!(plan.launches[0].count, 2);
        assert_eq!(plan.launches[0].token, launch_token("web", NOW, "test"));
        assert!(plan.launches[0].token.len() <= 64);
        assert_eq!(plan.next.launches[0].instance_ids, None);
        assert_eq!(
            plan.next.scale_history.last().map(|e| (e.from, e.to)),
            Some((2, 4))
        );
        assert!(matches!(
            plan.events[0],
            Event::Scaled { from: 2, to: 4, .. }
        ));
        assert_eq!(plan, world.plan(), "deterministic");
    }

    #[test]
    fn a_node_whose_clock_is_off_holds_the_pool_and_still_carries_out_committed_intents() {
        let mut world = World::new(
            threshold("step_up = 2"),
            vec![instance("i-1", 600), instance("i-2", 600)],
        )
        .with_rate(30, &[1, 1]);
        assert_eq!(world.plan().decision.desired, 4, "in step, it scales up");
        world.clock_off_s = Some(-42);
        let plan = world.plan();
        assert_eq!((plan.decision.current, plan.decision.desired), (2, 2));
        assert!(
            plan.decision.reason.contains("42 s off"),
            "{}",
            plan.decision.reason
        );
        assert!(plan.launches.is_empty() && plan.next.scale_history.is_empty());
        // Below min, it does not launch either: another node (or a corrected clock) will.
        let min_3 = pool(
            "min = 3\nmax = 10\nscale_up_above = 20\nscale_down_below = 10\ncooldown_s = 0\nwarmup_s = 60\ndrain_s = 120",
            "none",
        );
        let mut below = World::new(min_3, vec![instance("i-1", 600)]);
        below.clock_off_s = Some(30);
        assert!(below.plan().launches.is_empty());
        // An intent committed by a node in step is finished, whatever this clock says.
        below.state.launches = vec![LaunchIntent {
            token: "hxa-t".into(),
            count: 2,
            requested_at: NOW - 120,
            instance_ids: None,
            attempt_ended: true,
        }];
        let launches: Vec<_> = below
            .plan()
            .launches
            .iter()
            .map(|l| l.token.clone())
            .collect();
        assert_eq!(launches, ["hxa-t"]);
    }

    /// Another node's newest sample: `metric` per server, `ago` seconds before now.
    fn other_node(node: &str, ago: i64, metric: f64) -> Sample {
        Sample {
            at: NOW - ago,
            node: node.into(),
            pid: 1,
            uptime_s: 1,
            servers: BTreeMap::new(),
            backend_qcur: None,
            metric: Some(metric),
            load: Some(metric * 2.0),
            pool_metric: None,
            pool_load: None,
        }
    }

    /// Issue 31: with `forecast = "observe"` the forecast is shown and scored and changes
    /// nothing; with `"scale"` it raises the capacity; with `"off"` it is not computed and
    /// nothing is recorded. The history is this run's load with the forecast it made.
    #[test]
    fn the_forecast_is_shown_and_scored_and_acts_only_in_scale_mode() {
        const DAY: i64 = forecast::DAY_S;
        // Eight days of a pool load of 30, with a daily spike to 100 three minutes from now,
        // each day's forecast made a minute apart and 10 % high.
        let history: Vec<LoadPoint> = (0..8 * 1_440)
            .map(|i| NOW - 8 * DAY + i * 60)
            .map(|at| LoadPoint {
                at,
                load: if (at - NOW - 180).rem_euclid(DAY) == 0 {
                    100.0
                } else {
                    30.0
                },
                forecast: Some((33.0, 60)),
                peak: None,
            })
            .collect();
        let plan_with = |mode: &str| {
            let mut world = World::new(
                threshold(&format!("forecast = \"{mode}\"\nstep_up = 5")),
                vec![instance("i-1", 600), instance("i-2", 600)],
            )
            .with_rate(15, &[1, 1]);
            world.state.load_history = history.clone();
            world.plan()
        };
        let off = plan_with("off");
        assert_eq!((off.decision.desired, &off.forecast), (2, &None));
        assert_eq!(off.next.load_history, history, "off records nothing");

        let observed = plan_with("observe");
        assert_eq!(observed.decision, off.decision, "observe changes nothing");
        let report = observed.forecast.clone().unwrap();
        assert_eq!(
            (report.load, report.days, report.lead_s),
            (Some(100.0), 7, 180)
        );
        let error = report.error_pct.unwrap();
        assert!((error - 10.0).abs() < 0.5, "{error}");
        assert_eq!(
            report.describe(),
            format!(
                "forecast (observed only): load 100.00 in 180 s (from 7 day(s)); {error:.1} % mean error over the last day"
            )
        );
        let recorded = observed.next.load_history.last().unwrap();
        assert_eq!(
            (recorded.at, recorded.load, recorded.forecast),
            (NOW, 30.0, Some((100.0, 180)))
        );
        assert!(observed.next.load_history.len() < history.len());

        let scaled = plan_with("scale");
        assert_eq!(
            (scaled.decision.desired, scaled.decision.forecast_raised),
            (5, true),
            "{}",
            scaled.decision.reason
        );
        assert_eq!(scaled.launches.iter().map(|l| l.count).sum::<u32>(), 3);

        // Without two days of history it says it is learning, and scales nothing.
        let mut world = World::new(
            threshold("forecast = \"scale\""),
            vec![instance("i-1", 600), instance("i-2", 600)],
        )
        .with_rate(15, &[1, 1]);
        world.state.load_history = history[history.len() - 1_440..].to_vec();
        let learning = world.plan();
        assert_eq!(learning.decision.desired, 2);
        let report = learning.forecast.unwrap();
        assert_eq!(
            (report.load, report.learning_s.map(|s| s / 3_600)),
            (None, Some(24))
        );
        assert!(
            report
                .describe()
                .starts_with("forecast (acts): learning: 1.0 of the 2 days of history it needs"),
            "{}",
            report.describe()
        );
    }

    /// Issue 31: the saturation guard reads the backend queue of every load balancer that
    /// reported recently, as the metric adds their traffic up.
    #[test]
    fn the_backend_queue_of_every_recent_node_counts_toward_saturation() {
        let servers = || vec![instance("i-1", 600), instance("i-2", 600)];
        let queued = |node: &str, ago: i64, queue: u64| Sample {
            backend_qcur: Some(queue),
            ..other_node(node, ago, 0.0)
        };
        // (this node's queue, other nodes' samples, the queue seen, desired of 2)
        let cases: [(u64, Vec<Sample>, f64, u32); 4] = [
            (2, vec![], 2.0, 2),
            (3, vec![], 3.0, 3),
            (1, vec![queued("lb-a", 30, 4)], 5.0, 3),
            (1, vec![queued("lb-a", metric::FRESH_S + 1, 4)], 1.0, 2),
        ];
        for (own, others, seen, desired) in cases {
            let mut world = World {
                queued: own,
                ..World::new(threshold(""), servers())
            }
            .with_rate(15, &[1, 1]);
            world.state.samples.splice(0..0, others.iter().cloned());
            world.state.samples.sort_by_key(|sample| sample.at);
            let plan = world.plan();
            let label = format!("queue {own}, others {others:?}: {}", plan.decision.reason);
            assert_eq!(plan.decision.desired, desired, "{label}");
            let guarded = plan.decision.saturated;
            assert_eq!(guarded, (desired > 2).then_some(seen), "{label}");
        }
    }

    #[test]
    fn the_pool_metric_is_the_traffic_of_every_node_that_reported_recently() {
        let servers = || vec![instance("i-1", 600), instance("i-2", 600)];
        // (this node's rate per server, other nodes' samples, the pool's metric, desired of 2)
        let cases: [(u64, Vec<Sample>, f64, u32); 5] = [
            // Alone: its own traffic; samples are not marked as combined.
            (15, vec![], 15.0, 2),
            // Active-active: 15 here and 15 there make 30 per server: scale up (by step_up, 1).
            (15, vec![other_node("lb-a", 30, 15.0)], 30.0, 3),
            // This node is passive (no traffic): the active node's 30 keeps the pool from
            // shrinking, and even grows it.
            (0, vec![other_node("lb-a", 30, 30.0)], 30.0, 3),
            // The other node stopped reporting (its newest sample is past FRESH_S): alone again.
            (
                15,
                vec![other_node("lb-a", metric::FRESH_S + 1, 30.0)],
                15.0,
                2,
            ),
            // Only each node's newest sample counts: lb-a's older 100 is not added.
            (
                5,
                vec![other_node("lb-a", 90, 100.0), other_node("lb-a", 30, 1.0)],
                6.0,
                1,
            ),
        ];
        for (rate, others, metric, desired) in cases {
            let mut world = World::new(threshold(""), servers()).with_rate(rate, &[1, 1]);
            let alone = others.is_empty();
            world.state.samples.splice(0..0, others.iter().cloned());
            // Samples are oldest first: the others' go before this node's previous one only
            // when older; keep them in time order.
            world.state.samples.sort_by_key(|sample| sample.at);
            let plan = world.plan();
            let label = format!("rate {rate}, others {others:?}");
            assert_eq!(plan.decision.metric, Some(metric), "{label}");
            assert_eq!(
                plan.decision.desired, desired,
                "{label}: {}",
                plan.decision.reason
            );
            let own = plan.next.samples.last().unwrap();
            assert_eq!(
                own.metric,
                Some(rate as f64),
                "{label}: its own stays its own"
            );
            let combined = !alone && metric != rate as f64;
            assert_eq!(own.pool_metric.is_some(), combined, "{label}");
        }
    }

    #[test]
    fn a_launch_without_ids_is_resolved_by_token_or_sent_again_never_doubled() {
        let mut world =
            World::new(threshold("step_up = 2"), vec![instance("i-1", 600)]).with_rate(30, &[1]);
        world.state.launches = vec![LaunchIntent {
            attempt_ended: false,
            token: "hxa-t".into(),
            count: 2,
            requested_at: NOW - 60,
            instance_ids: None,
        }];
        world.state.scale_history = vec![ScaleEvent {
            at: NOW - 60,
            from: 1,
            to: 3,
            ..ScaleEvent::default()
        }];
        // Nothing found for the token: send it again, and count it as capacity: its 2 servers
        // will take their share of the load (30 per server over 3 is 10), so no new launch.
        let plan = world.plan();
        let launches: Vec<(String, u32, bool)> = plan
            .launches
            .iter()
            .map(|l| (l.token.clone(), l.count, l.retry))
            .collect();
        assert_eq!(launches, [("hxa-t".to_owned(), 2, true)]);
        assert_eq!(plan.decision.current, 3);
        // Hot enough for 3 even once they boot (90 over 3 is 30): a new launch besides.
        let plan =
            World::new(threshold("step_up = 2"), vec![instance("i-1", 600)]).with_rate(90, &[1]);
        let mut hot = plan;
        hot.state.launches = world.state.launches.clone();
        let launches: Vec<(String, u32, bool)> = hot
            .plan()
            .launches
            .iter()
            .map(|l| (l.token.clone(), l.count, l.retry))
            .collect();
        assert_eq!(
            launches,
            [
                ("hxa-t".to_owned(), 2, true),
                (launch_token("web", NOW, "test"), 2, false)
            ]
        );
        // One of its two listed (the listing raced the launch, or lags): the other is on its
        // way: counted, not sent again, and no new launch for it.
        let mut a = instance("i-2", 30);
        a.state = InstanceState::Pending;
        world.instances.push(a);
        world.found.insert("hxa-t".into(), vec!["i-2".into()]);
        let plan = world.plan();
        assert!(plan.launches.is_empty(), "{:?}", plan.launches);
        assert_eq!(plan.decision.current, 3, "{}", plan.decision.reason);
        assert!(plan.next.launches.iter().any(|i| i.token == "hxa-t"));
        // Both listed: the intent is done.
        let mut b = instance("i-3", 30);
        b.state = InstanceState::Pending;
        world.instances.push(b);
        world
            .found
            .insert("hxa-t".into(), vec!["i-2".into(), "i-3".into()]);
        let plan = world.plan();
        assert!(plan.launches.is_empty(), "{:?}", plan.launches);
        assert!(plan.next.launches.iter().all(|i| i.token != "hxa-t"));
        // Still one of two long after the launch: what is listed is what there is.
        world.instances.pop();
        world.found.insert("hxa-t".into(), vec!["i-2".into()]);
        world.now = NOW + 600;
        let plan = world.plan();
        assert!(plan.next.launches.iter().all(|i| i.token != "hxa-t"));
        assert!(
            plan.launches.iter().all(|l| !l.retry),
            "{:?}",
            plan.launches
        );
    }

    #[test]
    fn scale_down_drains_the_idlest_newest_tagged_unprotected_server() {
        let mut protected_one = instance("i-0", 50_000);
        protected_one
            .tags
            .insert(TAG_PROTECTED.into(), "true".into());
        let mut untagged = instance("i-9", 50_000);
        untagged.tags.clear();
        let instances = vec![
            protected_one,
            instance("i-1", 9000),
            instance("i-2", 8000),
            instance("i-3", 7000),
            untagged,
        ];
        let world =
            World::new(threshold("step_down = 2"), instances).with_rate(1, &[0, 3, 0, 0, 0]);
        let plan = world.plan();
        assert_eq!(
            (plan.decision.current, plan.decision.desired),
            (5, 3),
            "{}",
            plan.decision.reason
        );
        let drained: Vec<&str> = plan.drains.iter().map(|d| d.id.as_str()).collect();
        // i-1 has 3 sessions; i-3 is the newest of the idle ones, then i-2.
        assert_eq!(drained, ["i-3", "i-2"]);
        assert_eq!(plan.roles["i-3"], Role::Draining);
        assert_eq!(
            plan.next
                .draining
                .iter()
                .map(|d| (d.id.as_str(), d.since))
                .collect::<Vec<_>>(),
            [("i-3", NOW), ("i-2", NOW)]
        );
        assert!(
            plan.terminates.is_empty(),
            "terminated only from a later run"
        );
    }

    /// Issue 9, item 3: when every scale-down candidate is protected or not tagged for the pool,
    /// nothing is recorded as a scale (no history, no cooldown, no `scaled`); a `blocked` event
    /// says why, once.
    #[test]
    fn issue_9_3_no_phantom_scale_down_when_nothing_can_be_drained() {
        let mut protected_one = instance("i-1", 9000);
        protected_one
            .tags
            .insert(TAG_PROTECTED.into(), "true".into());
        let mut untagged = instance("i-2", 9000);
        untagged.tags.clear();
        let mut world =
            World::new(threshold(""), vec![protected_one, untagged]).with_rate(1, &[0, 0]);
        let plan = world.plan();
        assert_eq!((plan.decision.current, plan.decision.desired), (2, 1));
        assert!(plan.drains.is_empty());
        assert!(plan.next.scale_history.is_empty(), "no scale was made");
        match &plan.events[..] {
            [
                Event::ScaleDownBlocked {
                    from: 2,
                    wanted: 1,
                    reason,
                },
            ] => assert!(
                reason.contains("i-1 is tagged haproxy-autoscaler:protected=true")
                    && reason.contains("i-2 is not tagged haproxy-autoscaler:pool=web"),
                "{reason}"
            ),
            other => panic!("{other:?}"),
        }
        // The next run, same facts: said once only.
        world.state.scale_down_blocked = plan.next.scale_down_blocked;
        world.state.capped = plan.next.capped;
        let again = world.plan();
        assert!(again.events.is_empty(), "{:?}", again.events);
        assert!(again.next.scale_history.is_empty());

        // One drainable of two wanted: the scale recorded is the one drain made.
        let mut pool = threshold("step_down = 2");
        pool.scaling.as_mut().unwrap().min = Bound::Fixed(0);
        let mut kept = instance("i-1", 9000);
        kept.tags.clear();
        let world = World::new(pool, vec![kept, instance("i-2", 9000)]).with_rate(1, &[0, 0]);
        let plan = world.plan();
        assert_eq!(plan.drains.len(), 1);
        assert!(
            matches!(plan.events[..], [Event::Scaled { from: 2, to: 1, .. }]),
            "{:?}",
            plan.events
        );
    }

    /// Issue 10, class 16: a launch time that cannot be read keeps the server booting (no
    /// traffic, warm-up not skipped) and is warned about, naming the instance and the value.
    #[test]
    fn class_16_an_unreadable_launch_time_keeps_the_server_booting() {
        for bad in ["yesterday", "2026-13-45T99:00:00Z", ""] {
            let mut odd = instance("i-2", 0);
            odd.launch_time = Some(bad.to_owned());
            let world = World::new(threshold(""), vec![instance("i-1", 9000), odd]);
            let plan = world.plan();
            assert_eq!(plan.roles["i-2"], Role::Booting, "{bad:?}");
            assert!(
                plan.warnings.len() == 1
                    && plan.warnings[0].contains("instance `i-2`")
                    && plan.warnings[0].contains(&format!("{bad:?}")),
                "{bad:?}: {:?}",
                plan.warnings
            );
        }
    }

    /// Issue 10, class 15: a launch intent is not re-sent while a first attempt may still be
    /// running (its run was killed mid-call and the lock freed at once); it counts as capacity.
    #[test]
    fn class_15_an_intent_is_resent_only_once_its_first_attempt_cannot_be_running() {
        for (ago, ended, resent) in [
            (0, false, false),
            (29, false, false),
            (30, false, true),
            (600, false, true),
            // The call returned (with an error): over, so sent again at once.
            (0, true, true),
        ] {
            let mut world = World::new(threshold("step_up = 2"), vec![instance("i-1", 600)])
                .with_rate(30, &[1]);
            world.state.launches = vec![LaunchIntent {
                attempt_ended: ended,
                token: "hxa-t".into(),
                count: 2,
                requested_at: NOW - ago,
                instance_ids: None,
            }];
            let plan = world.plan();
            assert_eq!(
                plan.launches.iter().any(|launch| launch.retry),
                resent,
                "{ago}s ago: {:?}",
                plan.launches
            );
            assert_eq!(plan.decision.current, 3, "{ago}s ago: counted as capacity");
            assert!(
                plan.launches.iter().all(|launch| launch.retry),
                "no second launch"
            );
            assert_eq!(
                plan.next.launches.len(),
                1,
                "{ago}s ago: the intent is kept"
            );
        }
    }

    /// Issue 10, class 14 (from the hostile trial): launch intents still waiting on their first
    /// attempt count as capacity only up to max, so they never push the pool above max and make
    /// it drain the only server in service.
    #[test]
    fn class_14_waiting_intents_never_make_the_pool_drain_a_real_server() {
        for intents in [3u32, 10, 1000] {
            let mut pool = threshold("step_down = 5");
            pool.scaling.as_mut().unwrap().max = Bound::Fixed(3);
            let mut world = World::new(pool, vec![instance("i-1", 9000)]).with_rate(30, &[1]);
            world.state.launches = (0..intents)
                .map(|n| LaunchIntent {
                    attempt_ended: false,
                    token: format!("hxa-{n}"),
                    count: 1,
                    requested_at: NOW,
                    instance_ids: None,
                })
                .collect();
            let plan = world.plan();
            assert!(
                plan.drains.is_empty(),
                "{intents} intents: {:?}",
                plan.drains
            );
            assert!(
                plan.decision.current <= 3,
                "{intents}: {}",
                plan.decision.current
            );
        }
    }

    /// Issue 10, class 13: times from the future (a clock that was ahead) hold a cooldown or a
    /// drain for at most their configured length from now.
    #[test]
    fn class_13_future_times_are_bounded_by_their_length_from_now() {
        for ahead in [86_400, 365 * 86_400, i64::MAX - NOW] {
            let pool = pool(
                "min = 1\nmax = 10\nscale_up_above = 20\nscale_down_below = 10\ncooldown_s = 300\nwarmup_s = 60\ndrain_s = 120",
                "none",
            );
            let mut world = World::new(pool, vec![instance("i-1", 9000), instance("i-2", 9000)])
                .with_rate(30, &[1, 0]);
            world.state.scale_history = vec![ScaleEvent {
                at: NOW.saturating_add(ahead),
                from: 1,
                to: 2,
                ..ScaleEvent::default()
            }];
            world.state.draining = vec![Draining {
                id: "i-2".into(),
                since: NOW.saturating_add(ahead),
                ..Draining::default()
            }];
            let plan = world.plan();
            assert!(
                plan.decision.reason.contains("in cooldown for 300s"),
                "{ahead}: {}",
                plan.decision.reason
            );
            // The drain counts from now: over once drain_s has passed.
            let mut later = world;
            later.state = plan.next.clone();
            later.now = NOW + 121;
            let plan = later.plan();
            let terminated: Vec<&str> = plan.terminates.iter().map(|t| t.id.as_str()).collect();
            assert_eq!(terminated, ["i-2"], "{ahead}");
        }
    }

    /// Issue 10, class 14: a launch intent re-sent after a failure is re-decided against today's
    /// max: lowered since, it is cut (or dropped), never sent as it was.
    #[test]
    fn class_14_a_resent_intent_never_exceeds_todays_max() {
        for (max, expected) in [(3u32, Some(2u32)), (2, Some(1)), (1, None)] {
            let mut pool = threshold("step_up = 9");
            pool.scaling.as_mut().unwrap().max = Bound::Fixed(max);
            let mut world = World::new(pool, vec![instance("i-1", 600)]).with_rate(0, &[1]);
            world.state.launches = vec![LaunchIntent {
                attempt_ended: false,
                token: "hxa-t".into(),
                count: 9,
                requested_at: NOW - 60,
                instance_ids: None,
            }];
            world.state.scale_history = vec![ScaleEvent {
                at: NOW - 60,
                from: 1,
                to: 10,
                ..ScaleEvent::default()
            }];
            let plan = world.plan();
            let retried: Vec<u32> = plan
                .launches
                .iter()
                .filter(|launch| launch.retry)
                .map(|launch| launch.count)
                .collect();
            assert_eq!(
                retried,
                expected.into_iter().collect::<Vec<_>>(),
                "max {max}"
            );
            let kept: Vec<u32> = plan.next.launches.iter().map(|i| i.count).collect();
            assert_eq!(kept, expected.into_iter().collect::<Vec<_>>(), "max {max}");
            let total: u32 = plan.launches.iter().map(|launch| launch.count).sum();
            assert!(
                total < max,
                "1 in service + {total} launched > max {max}: {:?}",
                plan.launches
            );
        }
    }

    /// Issue 32: flapping is judged by direction reversals within the window (the world's
    /// `rapid` is 2 in 600 s), not by steps in one direction, and reported once per episode.
    #[test]
    fn more_reversals_than_rapid_scales_within_the_window_are_reported_once_per_episode() {
        let mut world = World::new(
            threshold(""),
            vec![instance("i-1", 600), instance("i-2", 600)],
        )
        .with_rate(30, &[1, 1]);
        let history = |steps: &[(i64, u32, u32)]| -> Vec<ScaleEvent> {
            steps
                .iter()
                .map(|&(ago, from, to)| ScaleEvent {
                    at: NOW - ago,
                    from,
                    to,
                    ..ScaleEvent::default()
                })
                .collect()
        };
        let rapid = |plan: &ScalingPlan| {
            plan.events
                .iter()
                .find(|e| matches!(e, Event::Rapid { .. }))
                .cloned()
        };
        // A ramp met a server at a time: five scale-ups and this run's are no flapping.
        world.state.scale_history = history(&[
            (500, 1, 2),
            (400, 2, 3),
            (300, 3, 4),
            (200, 4, 5),
            (100, 5, 6),
        ]);
        let plan = world.plan();
        assert!(
            plan.decision.desired > plan.decision.current,
            "{}",
            plan.decision.reason
        );
        assert_eq!((rapid(&plan), plan.next.flapping), (None, false));
        // Up, down, up, down, and this run's up: 4 reversals, more than 2.
        world.state.scale_history = history(&[
            (700, 2, 1),
            (500, 1, 2),
            (400, 2, 1),
            (300, 1, 2),
            (200, 2, 1),
        ]);
        let plan = world.plan();
        assert_eq!(
            rapid(&plan),
            Some(Event::Rapid {
                reversals: 4,
                window_s: 600
            })
        );
        assert!(plan.next.flapping);
        // The same episode, already reported: not again.
        world.state.flapping = true;
        let plan = world.plan();
        assert_eq!((rapid(&plan), plan.next.flapping), (None, true));
        // Two reversals left in the window: the episode is over.
        world.state.scale_history = history(&[(700, 2, 1), (400, 1, 2), (200, 2, 1)]);
        let plan = world.plan();
        assert_eq!((rapid(&plan), plan.next.flapping), (None, false));
    }

    #[test]
    fn capped_is_reported_when_the_bound_is_first_hit_only() {
        let mut pool = threshold("");
        pool.scaling.as_mut().unwrap().max = Bound::Fixed(2);
        let mut world = World::new(pool, vec![instance("i-1", 600), instance("i-2", 600)])
            .with_rate(30, &[1, 1]);
        let first = world.plan();
        assert!(
            matches!(
                first.events[..],
                [Event::Capped {
                    at: Capped::AtMax,
                    ..
                }]
            ),
            "{:?}",
            first.events
        );
        world.state.capped = first.next.capped;
        assert!(world.plan().events.is_empty());
    }

    #[test]
    fn draining_servers_are_terminated_after_drain_s_or_when_idle() {
        let mut world = World::new(
            threshold(""),
            vec![
                instance("i-1", 9000),
                instance("i-2", 9000),
                instance("i-3", 9000),
            ],
        )
        .with_rate(15, &[4, 2, 0]);
        world.state.draining = vec![
            Draining {
                id: "i-1".into(),
                since: NOW - 200,
                ..Draining::default()
            },
            Draining {
                id: "i-2".into(),
                since: NOW - 30,
                ..Draining::default()
            },
        ];
        let plan = world.plan();
        let terminated: Vec<&str> = plan.terminates.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(
            terminated,
            ["i-1"],
            "drain_s passed; i-2 still has sessions"
        );
        assert!(!plan.roles.contains_key("i-1"), "out of the config");
        assert_eq!(plan.roles["i-2"], Role::Draining);
        world.stats.as_mut().unwrap().rows[1].scur = 0; // i-2
        let terminated: Vec<String> = world.plan().terminates.into_iter().map(|t| t.id).collect();
        assert_eq!(terminated, ["i-1", "i-2"]);
        // The current worker shows no session, but a worker from before a reload may still be
        // finishing a request on i-2 (or the master could not say): i-2 drains on.
        for old in [OldWorkers::Running(1), OldWorkers::Unknown] {
            world.stats.as_mut().unwrap().old_workers = old;
            let plan = world.plan();
            let terminated: Vec<&str> = plan.terminates.iter().map(|t| t.id.as_str()).collect();
            assert_eq!(terminated, ["i-1"], "{old:?}");
            assert_eq!(plan.roles["i-2"], Role::Draining);
        }
        world.stats.as_mut().unwrap().old_workers = OldWorkers::Running(0);
        assert_eq!(world.plan().terminates.len(), 2);
    }

    #[test]
    fn a_reload_between_samples_gives_no_metric_and_no_decision() {
        let mut world = World::new(
            threshold(""),
            vec![instance("i-1", 9000), instance("i-2", 9000)],
        )
        .with_rate(1, &[0, 0]);
        world.stats.as_mut().unwrap().info.pid = 8;
        let plan = world.plan();
        assert_eq!(plan.decision.metric, None);
        assert_eq!(plan.decision.desired, 2, "{}", plan.decision.reason);
        // Issue 9, item 2: the stats page has no pid or uptime, and after a reload the counters
        // may have grown past their old values again (49 → 52): the tool's own reload between
        // the two samples skips the interval all the same.
        let mut world = World::new(threshold(""), vec![instance("i-1", 9000)]).with_rate(1, &[0]);
        for sample in &mut world.state.samples {
            (sample.pid, sample.uptime_s) = (0, 0);
        }
        world.stats.as_mut().unwrap().info = Info {
            pid: 0,
            uptime_s: 0,
            version: None,
        };
        assert!(world.plan().decision.metric.is_some(), "no reload: a rate");
        world.state.reloaded_at = Some(NOW - 60);
        assert_eq!(
            world.plan().decision.metric,
            None,
            "reloaded at the previous sample's run"
        );
        world.state.reloaded_at = Some(NOW - 61);
        assert!(
            world.plan().decision.metric.is_some(),
            "reloaded before the previous sample"
        );
        // A counter that went down is a reset too (the stats page has no pid).
        let mut world = World::new(threshold(""), vec![instance("i-1", 9000)]).with_rate(1, &[0]);
        world.stats.as_mut().unwrap().rows[0].stot = 5;
        assert_eq!(world.plan().decision.metric, None);
        // No stats at all: membership goes on, nothing scales.
        let mut world = World::new(
            threshold(""),
            vec![instance("i-1", 9000), instance("i-2", 9000)],
        );
        world.state.in_service = vec!["i-1".into(), "i-2".into()];
        let plan = world.plan();
        assert_eq!((plan.decision.metric, plan.decision.desired), (None, 2));
        assert!(plan.drains.is_empty() && plan.launches.is_empty());
    }

    #[test]
    fn new_servers_boot_until_warm_and_ready() {
        let tcp = pool(
            "min = 1\nmax = 10\nscale_up_above = 20\nscale_down_below = 10\nwarmup_s = 60",
            "tcp",
        );
        let mut pending = instance("i-1", 10);
        pending.state = InstanceState::Pending;
        let instances = vec![
            pending,
            instance("i-2", 30),
            instance("i-3", 120),
            instance("i-4", 120),
        ];
        let mut world = World::new(tcp, instances);
        world.state.in_service = vec!["i-4".into()];
        let found = testing::discovered(&world.pool, &world.instances);
        let candidates = probe_candidates(
            &world.pool,
            world.pool.scaling.as_ref().unwrap(),
            &found,
            &world.state,
            NOW,
        );
        let ids: Vec<&str> = candidates.iter().map(|c| c.instance.id.as_str()).collect();
        assert_eq!(ids, ["i-3"], "running, warm, not yet in service");
        world.ready.insert("i-3".into(), false);
        let roles = world.plan().roles;
        assert_eq!(
            roles.values().copied().collect::<Vec<_>>(),
            [Role::Booting, Role::Booting, Role::Booting, Role::InService]
        );
        world.ready.insert("i-3".into(), true);
        let plan = world.plan();
        assert_eq!(plan.roles["i-3"], Role::InService);
        assert_eq!(plan.next.in_service, ["i-3", "i-4"]);
    }

    #[test]
    fn metrics_per_kind() {
        for (metric, expected) in [
            ("session_rate", 2.0),
            ("request_rate", 2.0),
            ("current_sessions", 3.0),
            ("queue", 2.0),
            ("response_time_ms", 5.0),
        ] {
            let world = World {
                queued: 4,
                ..World::new(
                    threshold(&format!("metric = \"{metric}\"")),
                    vec![instance("i-1", 9000), instance("i-2", 9000)],
                )
            }
            .with_rate(2, &[3, 3]);
            assert_eq!(world.plan().decision.metric, Some(expected), "{metric}");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Runs the planner against a simulated pool with a constant total load spread over the
        /// servers in service, applying each plan (launches run at once, drains end the next
        /// run), and returns the plans.
        fn simulate(load: f64, start: usize, runs: usize) -> Vec<ScalingPlan> {
            let pool = pool(
                "min = 1\nmax = 20\npolicy = \"target\"\ntarget = 15\nscale_down_window_s = 0\nstep_up = 4\nstep_down = 2\ncooldown_s = 0\nwarmup_s = 0\ndrain_s = 0",
                "none",
            );
            let mut world = World::new(
                pool,
                (0..start)
                    .map(|n| instance(&format!("i-{n:03}"), 9000))
                    .collect(),
            );
            let mut counters: BTreeMap<String, u64> = BTreeMap::new();
            let mut next_id = start;
            let mut plans = Vec::new();
            for run in 0..runs {
                world.now = NOW + 60 * run as i64;
                let serving: Vec<String> = world.state.in_service.clone();
                let share = if serving.is_empty() {
                    0
                } else {
                    (load * 60.0 / serving.len() as f64) as u64
                };
                for id in &serving {
                    *counters.entry(id.clone()).or_default() += share;
                }
                let rows = world
                    .instances
                    .iter()
                    .map(|i| row(&i.id, 0, counters.get(&i.id).copied().unwrap_or(0)))
                    .collect();
                world.stats = Some(snapshot(7, 1000 + 60 * run as u64, rows));
                let plan = world.plan();
                for launch in &plan.launches {
                    for _ in 0..launch.count {
                        world
                            .instances
                            .push(instance(&format!("i-{next_id:03}"), 9000));
                        next_id += 1;
                    }
                }
                world
                    .instances
                    .retain(|i| !plan.terminates.iter().any(|t| t.id == i.id));
                world.state = plan.next.clone();
                world.state.launches.clear(); // the fake launched them at once, with ids
                plans.push(plan);
            }
            plans
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(200))]

            /// Constant load: the pool settles, then every further plan is empty.
            #[test]
            fn converges_under_constant_load(load in 0.0f64..250.0, start in 1usize..12) {
                let plans = simulate(load, start, 25);
                for plan in &plans[20..] {
                    prop_assert!(plan.launches.is_empty() && plan.drains.is_empty() && plan.terminates.is_empty(),
                        "load {load}: {}", plan.decision.reason);
                }
                // Settled within the tolerance band (±10 % of target 15 per server).
                let settled = plans.last().unwrap().decision.current;
                let fewest = (load / (15.0 * 1.1)).ceil().max(1.0) as u32;
                let most = ((load / (15.0 * 0.9)).ceil() as u32 + 1).max(1);
                prop_assert!((fewest.min(20)..=most).contains(&settled), "load {load}: {settled} servers, expected {fewest}..={most}");
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(500))]

            /// Issue 10, class 7: absurd but well-formed state (times at the ends of i64, counts
            /// near u32::MAX) never panics (debug builds check overflow) and never launches past
            /// max.
            #[test]
            fn class_7_absurd_state_never_panics_nor_exceeds_max(
                times in proptest::collection::vec(prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0i64), any::<i64>()], 6),
                counts in proptest::collection::vec(prop_oneof![Just(u32::MAX), Just(u32::MAX - 1), any::<u32>()], 3),
                pid in any::<u64>(), uptime in any::<u64>(), stot in any::<u64>(),
            ) {
                let world = {
                    let mut world = World::new(threshold("step_up = 4294967295"), vec![instance("i-1", 600)])
                        .with_rate(30, &[1]);
                    world.state.launches = counts.iter().enumerate().map(|(n, count)| LaunchIntent {
                        attempt_ended: false,
                        token: format!("hxa-{n}"),
                        count: *count,
                        requested_at: times[n],
                        instance_ids: None,
                    }).collect();
                    world.state.scale_history = vec![ScaleEvent { at: times[3], from: u32::MAX, to: 0, ..ScaleEvent::default() }];
                    world.state.draining = vec![Draining { id: "i-9".into(), since: times[4], ..Draining::default() }];
                    world.state.recommendations = vec![(times[5], u32::MAX)];
                    for sample in &mut world.state.samples {
                        sample.at = times[0];
                        sample.pid = pid;
                        sample.uptime_s = uptime;
                        for counters in sample.servers.values_mut() {
                            counters.stot = stot;
                        }
                    }
                    world
                };
                let plan = world.plan();
                let launched: u64 = plan.launches.iter().map(|launch| u64::from(launch.count)).sum();
                prop_assert!(launched < 10, "1 in service + {launched} launched > max 10: {:?}", plan.launches);
            }

            /// Only tagged, unprotected servers are drained; never more than step_down, never
            /// below min; the same facts give the same plan.
            #[test]
            fn victims_are_safe(
                servers in proptest::collection::vec((any::<bool>(), any::<bool>(), 0u64..5, 100i64..10_000), 1..10),
                load in 0u64..40, min in 0u32..4, step_down in 1u32..4,
            ) {
                let mut pool = threshold(&format!("step_down = {step_down}"));
                pool.scaling.as_mut().unwrap().min = Bound::Fixed(min);
                let instances: Vec<Instance> = servers.iter().enumerate().map(|(n, (tagged, protect, _, age))| {
                    let mut i = instance(&format!("i-{n}"), *age);
                    if !tagged { i.tags.clear(); }
                    if *protect { i.tags.insert(TAG_PROTECTED.into(), "true".into()); }
                    i
                }).collect();
                let scur: Vec<u64> = servers.iter().map(|s| s.2).collect();
                let world = World::new(pool, instances.clone()).with_rate(load, &scur);
                let plan = world.plan();
                prop_assert_eq!(&plan, &world.plan());
                prop_assert!(plan.drains.len() as u32 <= step_down);
                let current = instances.len() as u32;
                prop_assert!(current - plan.drains.len() as u32 >= min.min(current));
                for drain in &plan.drains {
                    let victim = instances.iter().find(|i| i.id == drain.id).unwrap();
                    prop_assert!(tagged_for(victim, "web") && !protected(victim));
                }
            }
        }
    }

    /// Issue 28: two decisions in the same second (two nodes, or one node deciding again after
    /// losing a race) never share a token; a token fits EC2's 64 characters.
    #[test]
    fn launch_tokens_of_the_same_pool_and_second_differ_by_the_salt() {
        let (a, b) = (
            launch_token("web", NOW, "lb-1:7:0f3a"),
            launch_token("web", NOW, "lb-2:7:91c2"),
        );
        assert_ne!(a, b);
        assert_eq!(a, launch_token("web", NOW, "lb-1:7:0f3a"), "deterministic");
        assert_ne!(a, launch_token("api", NOW, "lb-1:7:0f3a"));
        assert!(
            a.starts_with("hxa-") && a.ends_with(&format!("-{NOW}")),
            "{a}"
        );
        assert!(a.len() <= 64 && a.is_ascii(), "{a}");
    }
}
