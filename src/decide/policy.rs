//! The scaling decision: pure, no I/O, no clock (the time is an input), no randomness.
//!
//! Rule, in order:
//! 1. Bounds: `min` and `max` at `now` (schedules are read in the pool's time zone).
//! 2. Capacity is `in_service + booting`: a booting server counts, so the next run does not
//!    launch again for the same load. Every policy judges a scale-up on the load as it will be
//!    once the booting servers take their share: the per-server metric measured on the servers
//!    in service, times `in_service / (in_service + booting)` (the threshold, consecutive and
//!    average policies; the target policy computes the servers the load needs, which is the same
//!    rule). Scale-downs are judged on the metric as measured, so a booting server never makes
//!    the pool shrink.
//! 3. Out of bounds: move toward the bounds (ignores cooldown and metrics, obeys the steps).
//! 4. No metric for this run (stats missing, counters reset, nothing in service): hold. A stats
//!    outage never scales anything down.
//! 5. Inside `cooldown_s` of the last scale: hold.
//! 6. The policy recommends a capacity (see [`crate::config::Policy`]); the change is capped at
//!    `step_up` / `step_down`, then clamped into `[min, max]`. Wanting more than `max` or less
//!    than `min` is reported as capped.
//!
//! The decision is monotonic in load: a higher metric never yields fewer servers.

use serde::Serialize;

use crate::config::{Policy, Scaling};
use crate::model::Capped;

/// Facts for one pool's decision.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Input<'a> {
    pub scaling: &'a Scaling,
    /// Unix seconds.
    pub now: i64,
    /// Servers taking traffic.
    pub in_service: u32,
    /// Launched or launching, not yet in service.
    pub booting: u32,
    /// This run's metric per in-service server (threshold policy); empty without stats.
    pub per_server: &'a [f64],
    /// The pool average per run, oldest first; the last entry is this run's. `None` = no data.
    pub history: &'a [Option<f64>],
    /// When the pool last scaled (Unix seconds).
    pub last_scale_at: Option<i64>,
    /// Earlier target-policy recommendations: (Unix seconds, servers).
    pub recommendations: &'a [(i64, u32)],
    /// The pool's load (the per-server metric summed over the servers in service) per run with
    /// a metric, as (Unix seconds, load), oldest first; ends with this run's when it has one.
    pub loads: &'a [(i64, f64)],
    /// The pool's loads over the last hour (one a run, across the load balancers), this run's
    /// included when it has one: what the peak policy's `headroom_quantile` is read from.
    pub hour: &'a [f64],
    /// Why this run has no metric, when its source said (an external metric's "no data").
    pub no_metric: Option<&'a str>,
    /// Requests queued in the pool's backend this run, summed over the load balancers (HAProxy's
    /// `qcur`); `None` without stats.
    pub queued: Option<f64>,
    /// The servers in service when the queue was sampled (this run's sample is taken before its
    /// decision puts newly booted servers in service).
    pub queued_over: u32,
    /// The load forecast for `forecast_lead_s` from now, when the forecast is to act on it
    /// (`forecast = "scale"`, with enough history).
    pub forecast: Option<f64>,
    /// Scale actions in the hour before `now`.
    pub actions_last_hour: u32,
}

/// What the pool should have, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// Capacity now (in service + booting).
    pub current: u32,
    /// Capacity wanted after this run.
    pub desired: u32,
    /// The bounds in force.
    pub min: u32,
    pub max: u32,
    /// The pool metric this run, if any.
    pub metric: Option<f64>,
    /// The policy's reasoning, for people.
    pub reason: String,
    /// Set when the policy wanted to go past a bound.
    pub capped: Option<Capped>,
    /// The target policy's raw recommendation, remembered for its scale-down window.
    pub recommendation: Option<u32>,
    /// Why the pool holds, when it does (for the metrics; the reason says it for people).
    #[serde(skip)]
    pub hold: Option<Hold>,
    /// The requests queued in the backend when the saturation guard raised the capacity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saturated: Option<f64>,
    /// Whether the forecast raised the capacity above the policy's.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub forecast_raised: bool,
}

/// Why a pool holds its capacity: the kinds of [`Decision::reason`] a dashboard can count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// No metric this run (stats missing, counters reset, an external source's no data).
    NoMetric,
    /// Inside `cooldown_s` of the last scale.
    Cooldown,
    /// The policy wants the capacity there is (within its thresholds, or booting servers will
    /// do).
    Policy,
    /// The policy wants more, and `max` is reached.
    AtMax,
    /// The policy wants fewer, and `min` is reached.
    AtMin,
    /// This node's clock is off the shared state's store: it takes no decision.
    ClockOff,
    /// `max_actions_per_hour` scale actions were made in the last hour.
    ActionLimit,
    /// The policy wants fewer, and no server may be drained.
    NotDrainable,
}

impl Hold {
    /// The label value the metrics file gives it.
    pub fn name(self) -> &'static str {
        match self {
            Hold::NoMetric => "no_metric",
            Hold::Cooldown => "cooldown",
            Hold::Policy => "policy",
            Hold::AtMax => "at_max",
            Hold::AtMin => "at_min",
            Hold::ClockOff => "clock_off",
            Hold::ActionLimit => "action_limit",
            Hold::NotDrainable => "not_drainable",
        }
    }
}

impl Decision {
    /// This decision, holding for `why` if it keeps the capacity there is.
    fn holding(mut self, why: Hold) -> Decision {
        if self.desired == self.current {
            self.hold = Some(why);
        }
        self
    }
}

/// The bounds `(min, max)` in force at `now`.
pub(crate) fn bounds_at(scaling: &Scaling, now: i64) -> (u32, u32) {
    let minute = minute_of_day(scaling, now);
    (scaling.min.at(minute), scaling.max.at(minute))
}

/// Minute of the day at `now` in the pool's time zone.
fn minute_of_day(scaling: &Scaling, now: i64) -> u16 {
    let Ok(timestamp) = jiff::Timestamp::from_second(now) else {
        return 0;
    };
    let local = timestamp.to_zoned(scaling.timezone.clone());
    (local.hour() as u16) * 60 + local.minute() as u16
}

/// The share of the measured per-server load that each server will carry once the booting ones
/// are in service: `in_service / (in_service + booting)`, 1 when nothing boots.
fn booting_spread(input: &Input<'_>) -> f64 {
    let capacity = input.in_service.saturating_add(input.booting);
    if input.booting == 0 || capacity == 0 {
        1.0
    } else {
        f64::from(input.in_service) / f64::from(capacity)
    }
}

/// How much a saturated pool grows in one run, as a share of its servers in service (at least
/// one server; steps and `max` still apply).
const SATURATION_GROWTH: f64 = 0.25;

/// Decides the pool's capacity: the policy's decision, raised by the forecast (with
/// `forecast = "scale"`) and by the saturation guard. Both only ever raise it, and only for a
/// pool within its bounds (outside them a pool goes toward them first, a step a run).
pub(crate) fn decide(input: &Input<'_>) -> Decision {
    let decision = decide_by_policy(input);
    if !(decision.min..=decision.max).contains(&decision.current) {
        return decision;
    }
    let decision = action_limit(input, forecast_raise(input, decision));
    saturation_guard(input, decision)
}

/// `max_actions_per_hour`: with that many scale actions in the last hour, the policy's and the
/// forecast's change waits (the saturation guard and the bounds still act).
fn action_limit(input: &Input<'_>, mut decision: Decision) -> Decision {
    let Some(limit) = input.scaling.max_actions_per_hour else {
        return decision;
    };
    if decision.desired == decision.current || input.actions_last_hour < limit {
        return decision;
    }
    decision.reason = format!(
        "{} scale action(s) in the last hour, max_actions_per_hour {limit}: holding (the policy: {})",
        input.actions_last_hour, decision.reason
    );
    decision.desired = decision.current;
    decision.capped = None;
    decision.forecast_raised = false;
    decision.hold = Some(Hold::ActionLimit);
    decision
}

/// The forecast's rule (AWS's predictive scaling's, which operators trust): the capacity the
/// forecast load needs at the policy's per-server line, `ceil(forecast / line)`, when that is
/// more than the decision; it never lowers one, so it never scales in.
fn forecast_raise(input: &Input<'_>, decision: Decision) -> Decision {
    let Some(load) = input.forecast else {
        return decision;
    };
    let line = per_server_line(&input.scaling.policy);
    let needed = (load / line).ceil().clamp(0.0, f64::from(u32::MAX)) as u32;
    if needed <= decision.desired {
        return decision;
    }
    // A scale-in the policy wants goes no lower than the forecast needs; within the policy's
    // tolerance above what there is, the forecast holds the pool (as HPA holds) rather than
    // adding a server for noise.
    let tolerance = match input.scaling.policy {
        Policy::Target { tolerance, .. } | Policy::Peak { tolerance, .. } => tolerance,
        _ => 0.1,
    };
    let current = decision.current;
    let wanted = if needed > current && f64::from(needed) <= f64::from(current) * (1.0 + tolerance)
    {
        current
    } else {
        needed
    };
    if wanted <= decision.desired {
        return decision;
    }
    let load = format!("{load:.2}");
    let reason = format!(
        "the forecast load from {} s on, {load}, needs {needed} server(s) at {line} each; the policy alone: {}",
        input.scaling.forecast_lead_s, decision.reason
    );
    let mut raised = raise(input, &decision, wanted, &reason);
    raised.forecast_raised = true;
    raised
}

/// The per-server metric a policy aims at: `target`, or the threshold policies' `scale_up_above`.
fn per_server_line(policy: &Policy) -> f64 {
    match *policy {
        Policy::Target { target, .. } | Policy::Peak { target, .. } => target,
        Policy::Threshold { up, .. }
        | Policy::Consecutive { up, .. }
        | Policy::Average { up, .. } => up,
    }
}

/// The saturation guard, the same for every policy. A saturated server's rate reads its
/// capacity, so a rate metric never passes a target set near it, and the pool would never grow;
/// but HAProxy shows saturation plainly: requests queue in the backend. More than
/// `saturation_queue` queued per server in service is demand the servers do not keep up with,
/// whatever the metric reads (HAProxy's or an external one, or none this run, or inside the
/// cooldown). The pool grows by a quarter of the servers that served that queue, and, with a
/// metric that counts requests or sessions, at least by the servers that carry the queued
/// requests at the policy's line (`ceil(queued / target)`: the queue read as that much demand
/// the servers did not serve, which a rate capped at their capacity hides), at most doubling
/// them in one run; those joining and booting since count, so a pool whose new servers are on
/// their way does not launch again. It never lowers a decision.
fn saturation_guard(input: &Input<'_>, decision: Decision) -> Decision {
    let Some(queued) = input.queued else {
        return decision;
    };
    let in_service = input.queued_over;
    let limit = input.scaling.saturation_queue * f64::from(in_service);
    if in_service == 0 || queued <= limit {
        return decision;
    }
    // Never fewer than there are: a saturated pool does not scale down.
    let grown = (f64::from(in_service) * (1.0 + SATURATION_GROWTH)).ceil() as u32;
    // The queue is a count at one instant: requests that wait long (a long `timeout queue`)
    // count many times over, so it grows the pool by at most as many servers as served it.
    let carried = if input.scaling.metric.counts_requests() {
        let servers = (queued / per_server_line(&input.scaling.policy)).ceil();
        in_service.saturating_add((servers.clamp(0.0, f64::from(u32::MAX)) as u32).min(in_service))
    } else {
        0
    };
    let wanted = grown
        .max(carried)
        .max(in_service.saturating_add(1))
        .max(decision.current);
    if wanted <= decision.desired {
        return decision;
    }
    let queue = format!(
        "saturated: {queued:.0} request(s) queued in the backend, more than {} per server in service, whatever the metric reads",
        input.scaling.saturation_queue
    );
    let reason = if wanted == decision.current {
        format!("{queue}: holding, the booting server(s) are on their way")
    } else {
        format!("{queue}: {in_service} in service → {wanted}")
    };
    let mut guarded = raise(input, &decision, wanted, &reason);
    guarded.saturated = Some(queued);
    guarded
}

/// `decision` raised to `wanted` (stepped and within the bounds) for `reason`.
fn raise(input: &Input<'_>, decision: &Decision, wanted: u32, reason: &str) -> Decision {
    let limits = Limits {
        scaling: input.scaling,
        current: decision.current,
        min: decision.min,
        max: decision.max,
        metric: decision.metric,
    };
    let mut raised = limits.within(wanted, reason, decision.recommendation);
    raised.forecast_raised = decision.forecast_raised;
    raised.hold = match raised.capped {
        Some(Capped::AtMax) if raised.desired == raised.current => Some(Hold::AtMax),
        _ => None,
    };
    raised
}

/// The policy's decision, before the saturation guard.
fn decide_by_policy(input: &Input<'_>) -> Decision {
    let scaling = input.scaling;
    let (min, max) = bounds_at(scaling, input.now);
    let current = input.in_service.saturating_add(input.booting);
    let metric = input.history.last().copied().flatten();
    let limits = Limits {
        scaling,
        current,
        min,
        max,
        metric,
    };
    if current < min {
        return limits.toward(min, "below", "min");
    }
    if current > max {
        return limits.toward(max, "above", "max");
    }
    let Some(metric_value) = metric else {
        return limits
            .decision(
                current,
                match input.no_metric {
                    Some(why) => format!("no metric this run ({why}): holding"),
                    None => "no metric this run (stats missing, counters reset or nothing in service): holding"
                        .to_owned(),
                },
                None,
                None,
            )
            .holding(Hold::NoMetric);
    };
    if let Some(last) = input.last_scale_at {
        let until = last.saturating_add(scaling.cooldown_s as i64);
        if input.now < until {
            return limits
                .decision(
                    current,
                    format!("in cooldown for {}s more", until - input.now),
                    None,
                    None,
                )
                .holding(Hold::Cooldown);
        }
    }
    let (wanted, reason, recommendation) = recommend(input, scaling, current, metric_value);
    let decision = limits.within(wanted, &reason, recommendation);
    let why = match decision.capped {
        Some(Capped::AtMax) => Hold::AtMax,
        Some(Capped::AtMin) => Hold::AtMin,
        None => Hold::Policy,
    };
    decision.holding(why)
}

/// What bounds a decision: the steps from `current`, and `[min, max]`.
struct Limits<'a> {
    scaling: &'a Scaling,
    current: u32,
    min: u32,
    max: u32,
    metric: Option<f64>,
}

impl Limits<'_> {
    fn decision(
        &self,
        desired: u32,
        reason: String,
        capped: Option<Capped>,
        recommendation: Option<u32>,
    ) -> Decision {
        Decision {
            current: self.current,
            desired,
            min: self.min,
            max: self.max,
            metric: self.metric,
            reason,
            capped,
            recommendation,
            hold: None,
            saturated: None,
            forecast_raised: false,
        }
    }

    /// `wanted`, at most a step away from `current`.
    fn step(&self, wanted: u32) -> u32 {
        wanted.clamp(
            self.current.saturating_sub(self.scaling.step_down),
            self.current.saturating_add(self.scaling.step_up),
        )
    }

    /// Out of bounds: toward the bound, a step at a time; the reason says so when one step does
    /// not reach it, so that `desired` below `min` does not read as a mistake.
    fn toward(&self, bound: u32, side: &str, which: &str) -> Decision {
        let current = self.current;
        let desired = self.step(bound);
        let reason = if desired == bound {
            format!("{current} server(s), {side} {which} {bound}")
        } else {
            format!(
                "{current} server(s), {side} {which} {bound}: {desired} this run (a step of {}), {which} in a later run",
                desired.abs_diff(current)
            )
        };
        self.decision(desired, reason, None, None)
    }

    /// The policy's `wanted` capacity, stepped and clamped into the bounds; wanting past a bound
    /// is reported as capped.
    fn within(&self, wanted: u32, reason: &str, recommendation: Option<u32>) -> Decision {
        let (min, max) = (self.min, self.max);
        let stepped = self.step(wanted);
        let capped = if wanted > max && stepped > max {
            Some(Capped::AtMax)
        } else if wanted < min && stepped < min {
            Some(Capped::AtMin)
        } else {
            None
        };
        let reason = match capped {
            Some(Capped::AtMax) => format!("{reason}; capped at max {max}"),
            Some(Capped::AtMin) => format!("{reason}; held at min {min}"),
            None if stepped != wanted => format!(
                "{reason}; limited to a step of {}",
                stepped.abs_diff(self.current)
            ),
            None => reason.to_owned(),
        };
        self.decision(stepped.clamp(min, max), reason, capped, recommendation)
    }
}

/// The peak policy: HPA's rule on the highest of three loads instead of this run's, so that the
/// pool has, before it comes, the load that can come before a server launched now takes
/// traffic:
/// - the peak of the last `window_s` seconds (a load that has just been that high can be that
///   high again);
/// - the `headroom_quantile` of the last hour's loads (a noisy load is met at its usual highs,
///   not at each run's draw, and a pool does not drain in a lull what the next draw needs);
/// - with `lead_s` above 0, this run's load carried `lead_s` ahead along the window's rise
///   (least-squares slope; a falling trend lowers nothing).
///
/// It launches at once for that load at `target`, holds within `tolerance` above and
/// `scale_down_tolerance` below what the pool carries at target, holds while booting servers
/// are on their way, and does not scale down when one server fewer would put this run's load
/// above target. Only past and present loads are used.
fn peak(
    judge: &Judge<'_>,
    target: f64,
    (tolerance, down_tolerance): (f64, f64),
    (window_s, lead_s): (u64, u64),
    quantile: f64,
) -> Recommendation {
    let (input, current, metric, name) = (judge.input, judge.current, judge.metric, judge.name);
    let load = pool_load(input, metric);
    let since = input.now.saturating_sub(window_s as i64);
    // The loads are oldest first: the window is their tail.
    let window = &input.loads[input.loads.partition_point(|(at, _)| *at < since)..];
    let peaked = window.iter().map(|(_, load)| *load).fold(load, f64::max);
    let coming = load + rise_per_s(window, input.now) * lead_s as f64;
    let usual = quantile_of(input.hour, quantile).unwrap_or(0.0);
    let highest = peaked.max(coming).max(usual);
    let needed = (highest / target).ceil().max(1.0) as u32;
    let what = format!("{name} {metric:.2} × {} in service", input.in_service);
    let why = if coming > peaked && coming >= usual {
        format!("{what}; rising, {coming:.1} in {lead_s}s")
    } else if usual > peaked {
        format!(
            "{what}; the last hour's loads at their {:.0}th percentile, {usual:.1}",
            quantile * 100.0
        )
    } else {
        format!("{what}; the last {window_s}s peaked at {highest:.1}")
    };
    let hold = |reason: String| (current, reason, None);
    let ratio = highest / (f64::from(current.max(1)) * target);
    if (1.0 - down_tolerance..=1.0 + tolerance).contains(&ratio) {
        return hold(format!(
            "{why}: within {:.0}% above or {:.0}% below what {current} server(s) carry at target {target}, holding",
            tolerance * 100.0,
            down_tolerance * 100.0
        ));
    }
    if needed > current {
        return (
            needed,
            format!("{why}, which needs ceil({highest:.1} / {target}) = {needed}"),
            None,
        );
    }
    if metric > target * (1.0 + tolerance) {
        // Booting servers are already on their way for this load.
        return hold(format!(
            "{why}: {needed} would do once the {} booting arrive, holding",
            input.booting
        ));
    }
    if current > 1 && load / f64::from(current - 1) > target {
        return hold(format!(
            "{why}, but one server fewer would put {name} above target {target}: holding"
        ));
    }
    (
        needed,
        format!("{why}, which {needed} server(s) serve"),
        None,
    )
}

/// The `quantile` (0 to 1) of `loads`, by the nearest rank; `None` without loads.
fn quantile_of(loads: &[f64], quantile: f64) -> Option<f64> {
    let mut sorted = loads.to_vec();
    sorted.sort_by(f64::total_cmp);
    let last = sorted.len().checked_sub(1)?;
    let rank = (last as f64 * quantile).round() as usize;
    sorted.get(rank.min(last)).copied()
}

/// How fast the load rises, per second: the least-squares slope of `loads` (times from `now`),
/// 0 when it falls or when fewer than 3 loads give no trend worth following.
fn rise_per_s(loads: &[(i64, f64)], now: i64) -> f64 {
    if loads.len() < 3 {
        return 0.0;
    }
    let count = loads.len() as f64;
    let points = || loads.iter().map(|(at, load)| ((at - now) as f64, *load));
    let mean_t = points().map(|(t, _)| t).sum::<f64>() / count;
    let mean_load = points().map(|(_, load)| load).sum::<f64>() / count;
    let (covariance, variance) = points().fold((0.0, 0.0), |(cov, var), (t, load)| {
        let dt = t - mean_t;
        (cov + dt * (load - mean_load), var + dt * dt)
    });
    if variance > 0.0 {
        (covariance / variance).max(0.0)
    } else {
        0.0
    }
}

/// The pool's load: the per-server metrics summed over the servers that have one. A server
/// that just entered service has none yet (it served nothing in the interval): counting it at
/// the others' average would read load that is not there, and launch for it.
fn pool_load(input: &Input<'_>, metric: f64) -> f64 {
    if input.per_server.is_empty() {
        f64::from(input.in_service) * metric
    } else {
        input.per_server.iter().sum()
    }
}

/// What a policy recommends: the capacity it wants before steps and bounds, its reasoning, and
/// (the target policy) its raw recommendation, remembered for its scale-down window.
type Recommendation = (u32, String, Option<u32>);

/// What every policy looks at, and the three answers it can give.
struct Judge<'a> {
    input: &'a Input<'a>,
    scaling: &'a Scaling,
    current: u32,
    /// The pool metric this run.
    metric: f64,
    /// The metric's name, for reasons.
    name: &'static str,
    /// [`booting_spread`]: a scale-up is judged on the load × this.
    spread: f64,
}

impl Judge<'_> {
    fn up(&self, reason: String) -> Recommendation {
        (
            self.current.saturating_add(self.scaling.step_up),
            reason,
            None,
        )
    }

    fn down(&self, reason: String) -> Recommendation {
        (
            self.current.saturating_sub(self.scaling.step_down),
            reason,
            None,
        )
    }

    fn hold(&self, reason: String) -> Recommendation {
        (self.current, reason, None)
    }

    /// Said when the measured load alone would have scaled up, but not once the booting servers
    /// take their share.
    fn spread_note(&self, measured_above: bool) -> String {
        if measured_above {
            format!(
                "; the {} booting server(s) will take their share (load × {:.2}): holding",
                self.input.booting, self.spread
            )
        } else {
            ": holding".to_owned()
        }
    }
}

/// The policy's wanted capacity before steps and bounds, with its reasoning.
fn recommend(input: &Input<'_>, scaling: &Scaling, current: u32, metric: f64) -> Recommendation {
    let judge = Judge {
        input,
        scaling,
        current,
        metric,
        name: scaling.metric.name(),
        spread: booting_spread(input),
    };
    match scaling.policy {
        Policy::Threshold { up, down, ratio } => threshold(&judge, up, down, ratio),
        Policy::Consecutive {
            up,
            down,
            up_after,
            down_after,
        } => consecutive(&judge, (up, up_after), (down, down_after)),
        Policy::Average {
            up,
            down,
            average_of,
        } => average(&judge, up, down, average_of),
        Policy::Target {
            target,
            tolerance,
            window_s,
        } => toward_target(&judge, target, tolerance, window_s),
        Policy::Peak {
            target,
            tolerance,
            window_s,
            lead_s,
            headroom_quantile,
            scale_down_tolerance,
        } => peak(
            &judge,
            target,
            (tolerance, scale_down_tolerance),
            (window_s, lead_s),
            headroom_quantile,
        ),
    }
}

/// `ratio` of the servers above `up` → up; below `down` → down.
fn threshold(judge: &Judge<'_>, up: f64, down: f64, ratio: f64) -> Recommendation {
    let (per_server, spread, name) = (judge.input.per_server, judge.spread, judge.name);
    let servers = per_server.len();
    if servers == 0 {
        return judge.hold("no server in service to measure: holding".to_owned());
    }
    let count = |test: &dyn Fn(f64) -> bool| per_server.iter().filter(|v| test(**v)).count();
    let above = count(&|value| value * spread > up);
    let measured_above = count(&|value| value > up);
    let below = count(&|value| value < down);
    let share = |count: usize| count as f64 / servers as f64;
    if share(above) >= ratio {
        judge.up(if spread < 1.0 {
            format!(
                "{above} of {servers} server(s) have {name} above {up} (ratio {ratio}) even once the {} booting server(s) take their share",
                judge.input.booting
            )
        } else {
            format!("{above} of {servers} server(s) have {name} above {up} (ratio {ratio})")
        })
    } else if share(below) >= ratio {
        judge.down(format!(
            "{below} of {servers} server(s) have {name} below {down} (ratio {ratio})"
        ))
    } else {
        judge.hold(format!(
            "{above} above {up} and {below} below {down} of {servers} server(s) ({name}, ratio {ratio}){}",
            judge.spread_note(share(measured_above) >= ratio)
        ))
    }
}

/// The pool average above `up` for `up_after` runs in a row → up; below `down` for
/// `down_after` runs → down.
fn consecutive(
    judge: &Judge<'_>,
    (up, up_after): (f64, u32),
    (down, down_after): (f64, u32),
) -> Recommendation {
    let (history, spread, name, metric) =
        (judge.input.history, judge.spread, judge.name, judge.metric);
    let run = |count: u32, test: &dyn Fn(f64) -> bool| {
        let count = count as usize;
        history.len() >= count
            && history[history.len() - count..]
                .iter()
                .all(|value| value.is_some_and(test))
    };
    if run(up_after, &|value| value * spread > up) {
        judge.up(format!(
            "{name} {metric:.2} above {up} for {up_after} run(s) in a row"
        ))
    } else if run(down_after, &|value| value < down) {
        judge.down(format!(
            "{name} {metric:.2} below {down} for {down_after} run(s) in a row"
        ))
    } else {
        judge.hold(format!(
            "{name} {metric:.2}; not {up_after} run(s) above {up} nor {down_after} below {down} in a row{}",
            judge.spread_note(run(up_after, &|value| value > up))
        ))
    }
}

/// The mean of the last `average_of` pool averages above `up` → up; below `down` → down.
fn average(judge: &Judge<'_>, up: f64, down: f64, average_of: u32) -> Recommendation {
    let name = judge.name;
    let count = average_of as usize;
    let recent: Vec<f64> = judge
        .input
        .history
        .iter()
        .rev()
        .take(count)
        .map_while(|value| *value)
        .collect();
    if recent.len() < count {
        return judge.hold(format!(
            "{} of {count} sample(s) for the average: holding",
            recent.len()
        ));
    }
    let mean = recent.iter().sum::<f64>() / count as f64;
    let of = format!("mean {name} of the last {count} run(s) {mean:.2}");
    if mean * judge.spread > up {
        judge.up(format!("{of} above {up}"))
    } else if mean < down {
        judge.down(format!("{of} below {down}"))
    } else if mean > up {
        judge.hold(format!("{of} above {up}{}", judge.spread_note(true)))
    } else {
        judge.hold(format!("{of} within [{down}, {up}]: holding"))
    }
}

/// Kubernetes HPA's rule: ceil(in_service × metric / target) servers, nothing within
/// ±tolerance, scale-down only to the highest recommendation of the last `window_s` seconds and
/// not when one server fewer would push the metric back above target.
fn toward_target(judge: &Judge<'_>, target: f64, tolerance: f64, window_s: u64) -> Recommendation {
    let (input, current, metric, name) = (judge.input, judge.current, judge.metric, judge.name);
    let load = pool_load(input, metric);
    let raw = (load / target).ceil().max(0.0) as u32;
    let ratio = metric / target;
    if (ratio - 1.0).abs() <= tolerance {
        return (
            current,
            format!(
                "{name} {metric:.2} within {:.0}% of target {target}: holding",
                tolerance * 100.0
            ),
            Some(current),
        );
    }
    let (wanted, reason) = if metric > target && raw < current {
        // Booting servers are already on their way for this load.
        (
            current,
            format!(
                "{name} {metric:.2} above target {target}; {raw} in service would do once the {} booting arrive: holding",
                input.booting
            ),
        )
    } else if raw >= current {
        (
            raw,
            format!(
                "{name} {metric:.2} vs target {target}: ceil({} × {metric:.2} / {target}) = {raw}",
                input.in_service
            ),
        )
    } else if current > 1 && load / f64::from(current - 1) > target {
        (
            current,
            format!(
                "{name} {metric:.2} below target {target}, but one server fewer would put it above: holding"
            ),
        )
    } else {
        let since = input.now.saturating_sub(window_s as i64);
        let highest = input
            .recommendations
            .iter()
            .filter(|(at, _)| *at >= since)
            .map(|(_, servers)| *servers)
            .fold(raw, u32::max);
        (
            highest.min(current),
            format!(
                "{name} {metric:.2} below target {target}: {raw} would do, highest in the last {window_s}s is {highest}"
            ),
        )
    };
    (wanted, reason, Some(raw))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::scaling::Bound;
    use crate::config::{Launcher, Metric};

    fn scaling(policy: Policy) -> Scaling {
        Scaling {
            min: Bound::Fixed(1),
            max: Bound::Fixed(10),
            timezone: jiff::tz::TimeZone::UTC,
            timezone_name: "UTC".into(),
            metric: Metric::SessionRate,
            policy,
            saturation_queue: 1.0,
            forecast: crate::config::ForecastMode::Off,
            forecast_lead_s: 180,
            max_actions_per_hour: None,
            unhealthy_after_s: 300,
            max_replacements_per_hour: 2,
            step_up: 2,
            step_down: 1,
            cooldown_s: 60,
            drain_s: 120,
            warmup_s: 90,
            launcher: Launcher::Exec {
                launch: vec!["launch".into()],
                terminate: vec!["terminate".into()],
                timeout: std::time::Duration::from_secs(30),
            },
        }
    }

    const THRESHOLD: Policy = Policy::Threshold {
        up: 20.0,
        down: 10.0,
        ratio: 0.5,
    };

    fn input<'a>(
        s: &'a Scaling,
        in_service: u32,
        per_server: &'a [f64],
        history: &'a [Option<f64>],
    ) -> Input<'a> {
        Input {
            scaling: s,
            now: 1_000_000,
            in_service,
            booting: 0,
            per_server,
            history,
            last_scale_at: None,
            recommendations: &[],
            loads: &[],
            hour: &[],
            no_metric: None,
            queued: None,
            queued_over: in_service,
            forecast: None,
            actions_last_hour: 0,
        }
    }

    /// What the peak policy (target 10, tolerance 0.1, a 300 s window, steps of 20, max 50)
    /// wants for 4 servers in service at `per_server` each, with these past loads.
    fn peak_desired(lead_s: u64, per_server: f64, loads: &[(i64, f64)]) -> u32 {
        let mut s = scaling(Policy::Peak {
            target: 10.0,
            tolerance: 0.1,
            window_s: 300,
            lead_s,
            headroom_quantile: 0.0,
            scale_down_tolerance: 0.1,
        });
        s.step_up = 20;
        s.step_down = 20;
        s.max = Bound::Fixed(50);
        let per = vec![per_server; 4];
        let history = [Some(per_server)];
        decide(&Input {
            loads,
            ..input(&s, 4, &per, &history)
        })
        .desired
    }

    /// The peak policy on a flat load does what HPA's rule does; after a spike it keeps what
    /// the spike needs until the spike leaves the window; a spike in the window launches at once.
    #[test]
    fn peak_table() {
        let now = 1_000_000;
        let decide_with =
            |per_server: f64, loads: &[(i64, f64)]| peak_desired(0, per_server, loads);
        let at = |ago: i64| now - ago;
        // Flat at 60 (15 per server on 4): HPA's ceil(60 / 10) = 6.
        let flat = [(at(120), 60.0), (at(60), 60.0), (at(0), 60.0)];
        assert_eq!(decide_with(15.0, &flat), 6);
        // 8 now, but 40 four minutes ago: the 4 servers that peak needs stay.
        let fell = [(at(240), 40.0), (at(120), 8.0), (at(0), 8.0)];
        assert_eq!(decide_with(2.0, &fell), 4);
        // 8 now, 90 four minutes ago: launch for the peak (9) rather than drain for now.
        let spike = [(at(240), 90.0), (at(0), 8.0)];
        assert_eq!(decide_with(2.0, &spike), 9);
        // The peak has left the window: 1 server carries 8.
        let quiet = [(at(400), 90.0), (at(0), 8.0)];
        assert_eq!(decide_with(2.0, &quiet), 1);
        // Within ±10 % of what 4 servers carry at target (41 vs 40): hold.
        let near = [(at(60), 41.0), (at(0), 40.0)];
        assert_eq!(decide_with(10.0, &near), 4);
    }

    /// A rising load is met where it will be `lead_s` from now; a falling one, or two loads,
    /// give no trend; the trend never lowers what the peak keeps.
    #[test]
    fn peak_meets_a_rising_load_where_it_will_be() {
        let now = 1_000_000;
        let at = |ago: i64| now - ago;
        let decide_with = peak_desired;
        // 20, 40, 60 over two minutes: a third of a request per second more each second; in
        // 180 s, 60 + 60 = 120 needs 12 servers. Without a lead, the peak (60) needs 6.
        let rising = [(at(120), 20.0), (at(60), 40.0), (at(0), 60.0)];
        assert_eq!(decide_with(180, 15.0, &rising), 12);
        assert_eq!(decide_with(0, 15.0, &rising), 6);
        // Falling: the window's peak (60) holds 6, the trend does not lower it.
        let falling = [(at(120), 60.0), (at(60), 40.0), (at(0), 20.0)];
        assert_eq!(decide_with(180, 5.0, &falling), 6);
        // Two loads are no trend.
        let two = [(at(60), 20.0), (at(0), 60.0)];
        assert_eq!(decide_with(180, 15.0, &two), 6);
    }

    /// Issue 31: the peak policy keeps what the last hour's loads need at their
    /// `headroom_quantile`, and scales down only once it needs `scale_down_tolerance` less.
    #[test]
    fn peak_keeps_the_hours_usual_highs() {
        // 4 servers at 5 each (20 now), target 10, nothing else in the window; the hour's
        // loads 10, 20, ..., 100 and this run's 20: ranked, 10 20 20 30 40 50 ... 100.
        let hour: Vec<f64> = (1..=10)
            .map(|tenth| f64::from(tenth) * 10.0)
            .chain([20.0])
            .collect();
        let want = |headroom_quantile: f64, scale_down_tolerance: f64| {
            let mut s = scaling(Policy::Peak {
                target: 10.0,
                tolerance: 0.1,
                window_s: 300,
                lead_s: 0,
                headroom_quantile,
                scale_down_tolerance,
            });
            (s.step_up, s.step_down, s.max) = (20, 20, Bound::Fixed(50));
            let per = [5.0; 4];
            let history = [Some(5.0)];
            decide(&Input {
                hour: &hour,
                ..input(&s, 4, &per, &history)
            })
            .desired
        };
        let cases = [
            // (quantile, scale-down tolerance, servers): the 80th percentile is 80, the 90th 90.
            (0.8, 0.25, 8),
            (0.9, 0.25, 9),
            // The 50th is 50: 5 servers; the 35th is 40, what the 4 carry: hold.
            (0.5, 0.25, 5),
            (0.35, 0.25, 4),
            // The 30th is 30, a quarter below what 4 carry: held at 0.25, not at 0.1.
            (0.3, 0.25, 4),
            (0.3, 0.1, 3),
            // 0 is the hour's lowest (10), below this run's 20: 2 servers, as without it.
            (0.0, 0.25, 2),
        ];
        for (quantile, down, servers) in cases {
            assert_eq!(
                want(quantile, down),
                servers,
                "quantile {quantile}, scale-down tolerance {down}"
            );
        }
        assert_eq!(quantile_of(&[], 0.8), None);
    }

    /// Issue 31: with a metric that counts requests or sessions, a long queue is read as demand
    /// the servers did not serve, and the pool grows by the servers that carry it at the line;
    /// with a metric in other units, or a short queue, by a quarter.
    #[test]
    fn a_long_queue_grows_the_pool_by_the_servers_it_needs() {
        let per = [21.0; 8];
        let history = [Some(21.0)];
        let cases = [
            // 8 + ceil(9 / 20) = 9 is less than a quarter more.
            (Metric::SessionRate, 9.0, 10),
            (Metric::RequestRate, 100.0, 13),
            (Metric::CurrentSessions, 100.0, 13),
            // At most twice the servers that served the queue, however long it is.
            (Metric::SessionRate, 1_000.0, 16),
            (Metric::ResponseTimeMs, 100.0, 10),
        ];
        for (metric, queued, servers) in cases {
            let mut s = scaling(Policy::Target {
                target: 20.0,
                tolerance: 0.1,
                window_s: 300,
            });
            (s.metric, s.step_up, s.max) = (metric.clone(), 40, Bound::Fixed(40));
            let d = decide(&Input {
                queued: Some(queued),
                ..input(&s, 8, &per, &history)
            });
            assert_eq!(
                (d.desired, d.saturated),
                (servers, Some(queued)),
                "{metric:?}, {queued} queued: {d:?}"
            );
        }
    }

    #[test]
    fn threshold_table() {
        let s = scaling(THRESHOLD);
        // (per-server metric, expected desired from 4 servers)
        let cases: [(&[f64], u32); 6] = [
            (&[25.0, 25.0, 5.0, 5.0], 6),              // half above: up by step_up
            (&[25.0, 15.0, 15.0, 15.0], 4),            // a quarter above: hold
            (&[5.0, 5.0, 15.0, 15.0], 3),              // half below: down by step_down
            (&[15.0, 15.0, 15.0, 15.0], 4),            // in band
            (&[25.0, 25.0, 5.0, 5.0][..2], 4 + 2 - 2), // only 2 measured, both above → 2 in service +2
            (&[], 4),                                  // nothing measured: hold
        ];
        for (per_server, expected) in cases {
            let in_service = if per_server.len() == 2 { 2 } else { 4 };
            let average = if per_server.is_empty() {
                None
            } else {
                Some(per_server.iter().sum::<f64>() / per_server.len() as f64)
            };
            let history = [average];
            let d = decide(&input(&s, in_service, per_server, &history));
            assert_eq!(d.desired, expected, "{per_server:?}: {}", d.reason);
        }
    }

    #[test]
    fn consecutive_needs_a_run_of_breaches() {
        let s = scaling(Policy::Consecutive {
            up: 20.0,
            down: 10.0,
            up_after: 3,
            down_after: 2,
        });
        let cases: [(&[Option<f64>], u32); 6] = [
            (&[Some(25.0), Some(25.0), Some(25.0)], 6),
            (&[Some(25.0), Some(15.0), Some(25.0), Some(25.0)], 4),
            (&[None, Some(25.0), Some(25.0)], 4),
            (&[Some(5.0), Some(5.0)], 3),
            (&[Some(5.0)], 4),
            (&[Some(5.0), None], 4),
        ];
        for (history, expected) in cases {
            assert_eq!(
                decide(&input(&s, 4, &[], history)).desired,
                expected,
                "{history:?}"
            );
        }
    }

    #[test]
    fn average_uses_the_newest_samples() {
        let s = scaling(Policy::Average {
            up: 20.0,
            down: 10.0,
            average_of: 3,
        });
        let cases: [(&[Option<f64>], u32); 5] = [
            (&[Some(0.0), Some(30.0), Some(30.0), Some(30.0)], 6),
            (&[Some(100.0), Some(5.0), Some(5.0), Some(5.0)], 3),
            (&[Some(10.0), Some(30.0), Some(10.0)], 4), // mean 16.7: hold
            (&[Some(30.0), Some(30.0)], 4),             // not enough samples
            (&[Some(30.0), None, Some(30.0)], 4),       // a gap breaks the run
        ];
        for (history, expected) in cases {
            assert_eq!(
                decide(&input(&s, 4, &[], history)).desired,
                expected,
                "{history:?}"
            );
        }
    }

    #[test]
    fn target_follows_hpa() {
        let mut s = scaling(Policy::Target {
            target: 10.0,
            tolerance: 0.1,
            window_s: 300,
        });
        s.step_up = 100;
        s.step_down = 100;
        let d = decide(&input(&s, 4, &[], &[Some(15.0)]));
        assert_eq!((d.desired, d.recommendation), (6, Some(6)), "{}", d.reason);
        let d = decide(&input(&s, 4, &[], &[Some(10.5)]));
        assert_eq!(d.desired, 4, "within tolerance: {}", d.reason);
        let d = decide(&input(&s, 4, &[], &[Some(2.0)]));
        assert_eq!(d.desired, 1, "{}", d.reason);
        // A recommendation of 3 in the window keeps the pool at 3.
        let mut i = input(&s, 4, &[], &[Some(2.0)]);
        i.recommendations = &[(1_000_000 - 100, 3), (1_000_000 - 400, 9)];
        assert_eq!(decide(&i).desired, 3);
        // 4 × 8 = 32 load; 3 servers would see 10.7 > 10: no scale-in.
        let d = decide(&input(&s, 4, &[], &[Some(8.0)]));
        assert_eq!(d.desired, 4, "{}", d.reason);
    }

    #[test]
    fn common_rules() {
        let s = scaling(THRESHOLD);
        let hot = [Some(30.0)];
        let all_hot = [30.0, 30.0];
        // Cooldown holds.
        let mut i = input(&s, 2, &all_hot, &hot);
        i.last_scale_at = Some(i.now - 30);
        let d = decide(&i);
        assert_eq!(d.desired, 2);
        assert!(d.reason.contains("cooldown for 30s"), "{}", d.reason);
        // Booting servers count as capacity, and take their share of the load: 2 × 30 over 4
        // servers is 15 each, below 20, so the pool holds; 2 × 45 over 4 is 22.5: up again.
        let mut i = input(&s, 2, &all_hot, &hot);
        i.booting = 2;
        let d = decide(&i);
        assert_eq!(d.desired, 4, "{}", d.reason);
        assert!(
            d.reason.contains("booting server(s) will take their share"),
            "{}",
            d.reason
        );
        let very_hot = [45.0, 45.0];
        let mut i = input(&s, 2, &very_hot, &[Some(45.0)]);
        i.booting = 2;
        assert_eq!(decide(&i).desired, 6);
        // Missing metrics never scale down, even far above min.
        let d = decide(&input(&s, 8, &[], &[None]));
        assert_eq!(d.desired, 8);
        // Below min snaps up, step-limited, without metrics and in cooldown.
        let mut low = scaling(THRESHOLD);
        low.min = Bound::Fixed(6);
        let mut i = input(&low, 1, &[], &[None]);
        i.last_scale_at = Some(i.now);
        let d = decide(&i);
        assert_eq!(d.desired, 3);
        // Issue 9, item 14: a bound repair that takes several runs says so.
        assert_eq!(
            d.reason,
            "1 server(s), below min 6: 3 this run (a step of 2), min in a later run"
        );
        // Above max comes down one step at a time.
        let mut high = scaling(THRESHOLD);
        high.max = Bound::Fixed(2);
        assert_eq!(decide(&input(&high, 5, &[], &[None])).desired, 4);
        // Capped at max is reported.
        let d = decide(&input(&high, 2, &all_hot, &hot));
        assert_eq!((d.desired, d.capped), (2, Some(Capped::AtMax)));
        let d = decide(&input(&s, 1, &[1.0], &[Some(1.0)]));
        assert_eq!((d.desired, d.capped), (1, Some(Capped::AtMin)));
    }

    #[test]
    fn schedules_follow_the_time_zone() {
        let mut s = scaling(THRESHOLD);
        s.min = Bound::Schedule(
            crate::config::scaling::Schedule::new(vec![(8 * 60, 4), (18 * 60, 1)]).unwrap(),
        );
        s.step_up = 10;
        s.timezone = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
        // 2026-01-15 07:30 UTC is 08:30 in Paris (UTC+1): min 4.
        let at = jiff::Timestamp::from_second(1_768_462_200).unwrap();
        assert_eq!(at.to_string(), "2026-01-15T07:30:00Z");
        let mut i = input(&s, 1, &[], &[None]);
        i.now = at.as_second();
        assert_eq!(decide(&i).desired, 4);
        i.now -= 3600;
        assert_eq!(
            decide(&i).desired,
            1,
            "07:30 in Paris: the evening minimum still holds"
        );
    }

    /// Each policy at a rate metric pinned just under its scale-up line (where a saturated
    /// server's rate sits when the line is near its capacity), so that the policy alone holds.
    fn pinned() -> Vec<(Policy, f64)> {
        vec![
            (THRESHOLD, 19.0),
            (
                Policy::Consecutive {
                    up: 20.0,
                    down: 10.0,
                    up_after: 2,
                    down_after: 3,
                },
                19.0,
            ),
            (
                Policy::Average {
                    up: 20.0,
                    down: 10.0,
                    average_of: 3,
                },
                19.0,
            ),
            (
                Policy::Target {
                    target: 20.0,
                    tolerance: 0.1,
                    window_s: 300,
                },
                21.0,
            ),
            (
                Policy::Peak {
                    target: 20.0,
                    tolerance: 0.1,
                    window_s: 300,
                    lead_s: 0,
                    headroom_quantile: 0.8,
                    scale_down_tolerance: 0.25,
                },
                21.0,
            ),
        ]
    }

    /// Issue 31: the saturation guard in every policy. An overloaded pool whose rate metric is
    /// pinned where the policy holds grows once its backend queues; it holds without a queue,
    /// while its new servers boot, and never scales down while saturated.
    #[test]
    fn a_saturated_pool_grows_under_every_policy() {
        for (policy, rate) in pinned() {
            let mut s = scaling(policy.clone());
            s.step_up = 10;
            s.max = Bound::Fixed(20);
            let per = [rate; 8];
            let history = [Some(rate), Some(rate), Some(rate), Some(rate)];
            let at = |queued: Option<f64>| Input {
                queued,
                ..input(&s, 8, &per, &history)
            };
            let name = format!("{policy:?}");
            for queued in [None, Some(0.0), Some(8.0)] {
                let d = decide(&at(queued));
                assert_eq!(
                    (d.desired, d.saturated),
                    (8, None),
                    "{name}, queue {queued:?}: {d:?}"
                );
            }
            let d = decide(&at(Some(9.0)));
            assert_eq!((d.desired, d.saturated), (10, Some(9.0)), "{name}: {d:?}");
            assert!(
                d.reason.starts_with("saturated: 9 request(s) queued in the backend, more than 1 per server in service"),
                "{name}: {}",
                d.reason
            );
            // Inside the cooldown, and with no metric this run, the queue still counts.
            let mut cooling = at(Some(40.0));
            cooling.last_scale_at = Some(cooling.now);
            assert_eq!(decide(&cooling).desired, 10, "{name} in cooldown");
            let blind = Input {
                per_server: &[],
                history: &[None],
                ..at(Some(40.0))
            };
            assert_eq!(decide(&blind).desired, 10, "{name} without a metric");
            // Servers on their way hold it; a policy wanting fewer does not get them.
            let booting = Input {
                booting: 2,
                ..at(Some(40.0))
            };
            let d = decide(&booting);
            assert_eq!(d.desired, 10, "{name} with 2 booting: {d:?}");
            let idle = [1.0; 8];
            let quiet = [Some(1.0); 4];
            let d = decide(&Input {
                queued: Some(40.0),
                booting: 2,
                ..input(&s, 8, &idle, &quiet)
            });
            assert_eq!(
                d.desired, 10,
                "{name} saturated at a low rate, 2 booting: {d:?}"
            );
            assert!(
                d.reason
                    .ends_with("holding, the booting server(s) are on their way"),
                "{name}: {}",
                d.reason
            );
            // At max it says so, and holds.
            s.max = Bound::Fixed(8);
            let d = decide(&Input {
                queued: Some(40.0),
                ..input(&s, 8, &per, &history)
            });
            assert_eq!(
                (d.desired, d.capped, d.hold),
                (8, Some(Capped::AtMax), Some(Hold::AtMax)),
                "{name}"
            );
        }
    }

    /// Issue 31: the forecast only raises, for every policy: to the capacity the forecast load
    /// needs at the policy's line, never below what the policy decided, never as a scale-in.
    #[test]
    fn the_forecast_raises_capacity_and_never_lowers_it() {
        for (policy, rate) in pinned() {
            let mut s = scaling(policy.clone());
            s.step_up = 10;
            s.max = Bound::Fixed(20);
            let name = format!("{policy:?}");
            let per = [rate; 8];
            let history = [Some(rate); 4];
            let with = |forecast: Option<f64>| {
                decide(&Input {
                    forecast,
                    ..input(&s, 8, &per, &history)
                })
            };
            let alone = with(None);
            assert_eq!(alone.desired, 8, "{name}: {alone:?}");
            // 250 at a line of 20 needs 13.
            let d = with(Some(250.0));
            assert_eq!((d.desired, d.forecast_raised), (13, true), "{name}: {d:?}");
            assert!(
                d.reason.starts_with("the forecast load from 180 s on, 250.00, needs 13 server(s) at 20 each; the policy alone: "),
                "{name}: {}",
                d.reason
            );
            // Less than the policy keeps: nothing changes.
            for low in [0.0, 100.0, 160.0] {
                assert_eq!(with(Some(low)), alone, "{name}: forecast {low}");
            }
            // A pool the policy shrinks: the forecast may keep servers, never take them.
            let idle = [1.0; 8];
            let quiet = [Some(1.0); 4];
            let shrinking = |forecast: Option<f64>| {
                decide(&Input {
                    forecast,
                    ..input(&s, 8, &idle, &quiet)
                })
            };
            let reactive = shrinking(None);
            let forecast = shrinking(Some(5.0));
            assert!(forecast.desired >= reactive.desired, "{name}: {forecast:?}");
        }
    }

    /// Issue 31: `max_actions_per_hour` holds the policy's and the forecast's changes once the
    /// last hour had that many, and never the saturation guard.
    #[test]
    fn the_action_limit_holds_the_policy_but_not_the_guard() {
        let mut s = scaling(THRESHOLD);
        s.step_up = 5;
        s.max_actions_per_hour = Some(2);
        let hot = [30.0; 4];
        let history = [Some(30.0)];
        let at = |actions_last_hour: u32, queued: Option<f64>| {
            decide(&Input {
                queued,
                actions_last_hour,
                ..input(&s, 4, &hot, &history)
            })
        };
        assert_eq!(at(1, None).desired, 9);
        let held = at(2, None);
        assert_eq!((held.desired, held.hold), (4, Some(Hold::ActionLimit)));
        assert!(
            held.reason.starts_with(
                "2 scale action(s) in the last hour, max_actions_per_hour 2: holding (the policy: "
            ),
            "{}",
            held.reason
        );
        assert_eq!(held.hold.map(Hold::name), Some("action_limit"));
        // 40 queued at 20 per server: 2 more servers.
        let saturated = at(5, Some(40.0));
        assert_eq!((saturated.desired, saturated.saturated), (6, Some(40.0)));
        // Bound repairs are not held either.
        s.min = Bound::Fixed(6);
        assert_eq!(
            decide(&Input {
                actions_last_hour: 9,
                ..input(&s, 4, &hot, &history)
            })
            .desired,
            6
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn any_policy() -> impl Strategy<Value = Policy> {
            prop_oneof![
                (0.1f64..1.0).prop_map(|ratio| Policy::Threshold {
                    up: 20.0,
                    down: 10.0,
                    ratio
                }),
                (1u32..4, 1u32..4).prop_map(|(up_after, down_after)| Policy::Consecutive {
                    up: 20.0,
                    down: 10.0,
                    up_after,
                    down_after
                }),
                (1u32..4).prop_map(|average_of| Policy::Average {
                    up: 20.0,
                    down: 10.0,
                    average_of
                }),
                (0.0f64..0.5, 0u64..900, 0u64..600, 0.0f64..=1.0, 0.0f64..0.5).prop_map(
                    |(tolerance, window_s, lead_s, headroom_quantile, scale_down_tolerance)| {
                        Policy::Peak {
                            target: 15.0,
                            tolerance,
                            window_s,
                            lead_s,
                            headroom_quantile,
                            scale_down_tolerance,
                        }
                    }
                ),
                (0.0f64..0.5, 0u64..600).prop_map(|(tolerance, window_s)| Policy::Target {
                    target: 15.0,
                    tolerance,
                    window_s
                }),
            ]
        }

        prop_compose! {
            fn any_scaling()(policy in any_policy(), min in 0u32..5, extra in 0u32..10, step_up in 1u32..5, step_down in 1u32..5, cooldown_s in 0u64..300) -> Scaling {
                let mut s = scaling(policy);
                s.min = Bound::Fixed(min);
                s.max = Bound::Fixed((min + extra).max(1));
                s.step_up = step_up;
                s.step_down = step_down;
                s.cooldown_s = cooldown_s;
                s
            }
        }

        #[derive(Debug, Clone)]
        struct Case {
            scaling: Scaling,
            in_service: u32,
            booting: u32,
            load: f64,
            history: Vec<Option<f64>>,
            since_scale: Option<i64>,
            recommendations: Vec<(i64, u32)>,
        }

        prop_compose! {
            fn any_case()(scaling in any_scaling(), in_service in 0u32..20, booting in 0u32..5, load in 0.0f64..60.0,
                          history in proptest::collection::vec(proptest::option::weighted(0.9, 0.0f64..60.0), 0..6),
                          since_scale in proptest::option::of(0i64..600),
                          recommendations in proptest::collection::vec((0i64..900, 0u32..20), 0..4)) -> Case {
                Case { scaling, in_service, booting, load, history, since_scale, recommendations }
            }
        }

        fn run(case: &Case, load: f64) -> Decision {
            let now = 1_000_000;
            let per_server = vec![load; case.in_service as usize];
            let mut history = case.history.clone();
            history.push((case.in_service > 0).then_some(load));
            let recommendations: Vec<(i64, u32)> = case
                .recommendations
                .iter()
                .map(|(ago, n)| (now - ago, *n))
                .collect();
            // The pool's load per run, a minute apart, from the same history.
            let loads: Vec<(i64, f64)> = history
                .iter()
                .enumerate()
                .filter_map(|(i, metric)| {
                    let ago = (history.len() - 1 - i) as i64 * 60;
                    Some((now - ago, (*metric)? * f64::from(case.in_service)))
                })
                .collect();
            decide(&Input {
                scaling: &case.scaling,
                now,
                in_service: case.in_service,
                booting: case.booting,
                per_server: &per_server,
                history: &history,
                last_scale_at: case.since_scale.map(|ago| now - ago),
                recommendations: &recommendations,
                loads: &loads,
                hour: &[],
                no_metric: None,
                queued: None,
                queued_over: case.in_service,
                forecast: None,
                actions_last_hour: 0,
            })
        }

        /// The decision on `case`'s load this run alone (no history, cooldown or earlier
        /// recommendations), with `input` changed by `change`.
        fn with_this_run(
            case: &Case,
            hour: &[f64],
            change: impl FnOnce(Input<'_>) -> Input<'_>,
        ) -> Decision {
            let per_server = vec![case.load; case.in_service as usize];
            let history = vec![(case.in_service > 0).then_some(case.load)];
            decide(&change(Input {
                scaling: &case.scaling,
                now: 1_000_000,
                in_service: case.in_service,
                booting: case.booting,
                per_server: &per_server,
                history: &history,
                last_scale_at: None,
                recommendations: &[],
                loads: &[],
                hour,
                no_metric: None,
                queued: None,
                queued_over: case.in_service,
                forecast: None,
                actions_last_hour: 0,
            }))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Within bounds (or moving toward them), never more than a step per run.
            #[test]
            fn bounds_and_steps(case in any_case()) {
                let d = run(&case, case.load);
                let s = &case.scaling;
                let (min, max) = (s.min.at(0), s.max.at(0));
                let current = case.in_service + case.booting;
                prop_assert!(d.desired <= current + s.step_up && d.desired + s.step_down >= current, "{d:?}");
                if (min..=max).contains(&current) {
                    prop_assert!((min..=max).contains(&d.desired), "{d:?}");
                } else {
                    prop_assert!(d.desired.abs_diff(min.max(current.min(max))) < current.abs_diff(min.max(current.min(max))) || d.desired == min.max(current.min(max)), "moves toward the bounds: {d:?}");
                }
            }

            /// Inside the cooldown, only the bounds can change anything.
            #[test]
            fn cooldown_holds(case in any_case()) {
                let s = &case.scaling;
                let current = case.in_service + case.booting;
                if let Some(ago) = case.since_scale && (ago as u64) < s.cooldown_s && (s.min.at(0)..=s.max.at(0)).contains(&current) {
                    prop_assert_eq!(run(&case, case.load).desired, current);
                }
            }

            /// Issue 9, item 1 (overshoot while servers boot), for all four policies: when the
            /// load measured on the servers in service, spread over in-service + booting
            /// servers, is not above the scale-up line, no policy launches again.
            #[test]
            fn booting_capacity_is_counted_by_every_policy(case in any_case(), runs in 1usize..6) {
                let s = &case.scaling;
                let current = case.in_service + case.booting;
                let history = vec![(case.in_service > 0).then_some(case.load); runs];
                let line = match s.policy { Policy::Target { target, .. } | Policy::Peak { target, .. } => target, _ => 20.0 };
                let projected = case.load * f64::from(case.in_service) / f64::from(current.max(1));
                let per_server = vec![case.load; case.in_service as usize];
                let d = decide(&Input {
                    scaling: s,
                    now: 1_000_000,
                    in_service: case.in_service,
                    booting: case.booting,
                    per_server: &per_server,
                    history: &history,
                    last_scale_at: None,
                    recommendations: &[],
                    loads: &[],
                    hour: &[],
                    no_metric: None,
                    queued: None,
                    queued_over: case.in_service,
                    forecast: None,
                    actions_last_hour: 0,
                });
                if current >= s.min.at(0) && projected <= line {
                    prop_assert!(d.desired <= current, "{projected} per server once booted: {d:?}");
                }
            }

            /// Issue 31: a higher load anywhere in the last hour never gives fewer servers.
            #[test]
            fn the_hours_loads_only_raise(case in any_case(), hour in proptest::collection::vec(0.0f64..200.0, 0..40), index in 0usize..40, more in 0.0f64..200.0) {
                let decide_with = |hour: &[f64]| with_this_run(&case, hour, |input| input).desired;
                let mut higher = hour.clone();
                if let Some(load) = higher.get_mut(index) {
                    *load += more;
                }
                prop_assert!(decide_with(&higher) >= decide_with(&hour));
            }

            /// Issue 31: more queued requests never give fewer servers, and a saturated pool
            /// within its bounds never shrinks.
            #[test]
            fn the_saturation_guard_only_raises(case in any_case(), queued in 0.0f64..100.0, more in 0.0f64..100.0) {
                let decide_with = |queued: f64| {
                    with_this_run(&case, &[], |input| Input { queued: Some(queued), ..input })
                };
                let low = decide_with(queued);
                let high = decide_with(queued + more);
                prop_assert!(high.desired >= low.desired, "queue {queued} → {}, {} → {}", low.desired, queued + more, high.desired);
                let s = &case.scaling;
                let current = case.in_service + case.booting;
                if high.saturated.is_some() && (s.min.at(0)..=s.max.at(0)).contains(&current) {
                    prop_assert!(high.desired >= current, "{high:?}");
                }
            }

            /// Issue 31: the forecast is never below the reactive decision, never lowers it,
            /// and a higher forecast never gives fewer servers.
            #[test]
            fn the_forecast_only_raises(case in any_case(), forecast in 0.0f64..400.0, more in 0.0f64..400.0) {
                let decide_with = |forecast: Option<f64>| {
                    with_this_run(&case, &[], |input| Input { forecast, ..input })
                };
                let reactive = decide_with(None);
                let low = decide_with(Some(forecast));
                let high = decide_with(Some(forecast + more));
                prop_assert!(low.desired >= reactive.desired, "{reactive:?} → {low:?}");
                prop_assert!(high.desired >= low.desired, "{low:?} → {high:?}");
                if low.desired < low.current {
                    prop_assert!(reactive.desired <= low.desired, "a scale-in is the policy's, never deeper: {reactive:?} → {low:?}");
                }
            }

            /// The same facts give the same decision; more load never gives fewer servers.
            #[test]
            fn deterministic_and_monotonic_in_load(case in any_case(), more in 0.0f64..60.0) {
                prop_assert_eq!(run(&case, case.load), run(&case, case.load));
                let low = run(&case, case.load);
                let high = run(&case, case.load + more);
                prop_assert!(high.desired >= low.desired, "load {} → {}, load {} → {}", case.load, low.desired, case.load + more, high.desired);
            }
        }
    }
}
