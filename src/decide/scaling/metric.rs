//! This run's sample of the backend and the pool's metric.
//!
//! The metric comes from counter deltas between this run's stats sample and the previous one of
//! the same HAProxy node; an interval across a reload (new pid, lower uptime, a counter that went
//! down, or a reload this tool made) gives no metric. Servers that are not UP, booting or
//! draining are left out.
//!
//! Several load balancers sharing a state each see their share of the traffic, with their own
//! counters. Each node's sample keeps its own metric; the pool's is this node's combined with
//! the newest sample of every other node taken within [`FRESH_S`]: summed for the rates,
//! sessions and queue (each node's traffic is its own), averaged for the response time. A node
//! that stops reporting stops counting once its newest sample is older than that.
//!
//! An external metric (Prometheus, a command) is one value for the whole pool, the same on
//! every node: it is judged here ([`judge`]: a number, finite, not negative, recent), then
//! divided by the servers in service when it is the pool's total (`per_server = true`), and
//! never combined across nodes. The HAProxy sample is still taken: it says which servers are in
//! service, and its counters keep the next HAProxy-metric interval whole.

use std::collections::HashSet;

use crate::config::{ExternalMetric, Metric};
use crate::model::{PoolState, Reading, Sample, ServerCounters, StatsSnapshot};

use super::ScalingFacts;

/// How recent another node's sample must be to count in the pool's metric: two one-minute
/// runs and some slack.
pub(crate) const FRESH_S: i64 = 150;

/// What this run measured.
#[derive(Debug)]
pub(super) struct Measured {
    /// This run's sample (its `metric` is filled in), `None` without stats.
    pub(super) sample: Option<Sample>,
    /// The metric per in-service server that has one.
    pub(super) per_server: Vec<f64>,
    /// The pool average per run, oldest first, ending with this run's.
    pub(super) history: Vec<Option<f64>>,
    /// The pool's load per run that had one, as (Unix seconds, load), oldest first: this
    /// node's samples and this run's.
    pub(super) loads: Vec<(i64, f64)>,
    /// Why there is no metric, when the external source's answer is no data.
    pub(super) no_metric: Option<String>,
    /// Requests queued in the backend: this node's and the newest of every other node taken
    /// within [`FRESH_S`]; `None` without stats.
    pub(super) queued: Option<f64>,
    /// How old the metric is, in seconds, when there is one: HAProxy's is this run's sample
    /// (0) or, combined across nodes, its oldest part; an external one is as old as its source
    /// says (0 when it gives no time).
    pub(super) metric_age_s: Option<i64>,
}

/// The value of an external metric's answer, or why it is no data: not a number, NaN,
/// infinite, negative (no load is), or measured more than `max_age_s` before (or after) `now`.
pub(super) fn judge(reading: &Reading, now: i64, max_age_s: u64) -> Result<f64, String> {
    let (text, at) = match reading {
        Reading::Missing(reason) => return Err(reason.clone()),
        Reading::Value { text, at } => (text, at),
    };
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    if value.is_nan() {
        return Err("the value is NaN".to_owned());
    }
    if value.is_infinite() {
        return Err(format!("the value is {value}"));
    }
    if value < 0.0 {
        return Err(format!(
            "the value {value} is negative, which no load can be"
        ));
    }
    if let Some(at) = at {
        let age = now as f64 - at;
        if !age.is_finite() || age > max_age_s as f64 {
            return Err(format!(
                "the value is {age:.0} s old, more than metric_max_age_s ({max_age_s} s)"
            ));
        }
        // A time ahead by more than that is a clock that is off, or milliseconds.
        if -age > max_age_s as f64 {
            return Err(format!(
                "the value's time is {:.0} s ahead of this run's (more than metric_max_age_s): it must be Unix seconds, not milliseconds",
                -age
            ));
        }
    }
    Ok(value)
}

/// Samples the backend and computes the metric of the servers in service (`in_service` ids).
pub(super) fn measure(
    facts: &ScalingFacts<'_>,
    state: &PoolState,
    in_service: &[&str],
) -> Measured {
    if let Some(external) = facts.scaling.metric.external() {
        return measure_external(facts, state, in_service, external);
    }
    let sample = facts.stats.map(|stats| sample_of(stats, facts.now));
    let per_server: Vec<f64> = match &sample {
        Some(sample) => {
            let previous = state
                .samples
                .iter()
                .rev()
                .find(|earlier| earlier.node == sample.node);
            in_service
                .iter()
                .filter_map(|id| {
                    server_metric(
                        &facts.scaling.metric,
                        id,
                        sample,
                        previous,
                        state.reloaded_at,
                        in_service.len(),
                    )
                })
                .collect()
        }
        None => Vec::new(),
    };
    let metric =
        (!per_server.is_empty()).then(|| per_server.iter().sum::<f64>() / per_server.len() as f64);
    let load = metric.map(|_| per_server.iter().sum::<f64>());
    let node = sample.as_ref().map(|sample| sample.node.clone());
    let others: Vec<(i64, f64)> = match (&node, metric) {
        (Some(node), Some(_)) => newest_of_other_nodes(&state.samples, node, facts.now)
            .iter()
            .filter_map(|sample| Some((sample.at, sample.metric?)))
            .collect(),
        _ => Vec::new(),
    };
    let metric_age_s = metric.map(|_| {
        others
            .iter()
            .map(|(at, _)| facts.now - at)
            .max()
            .unwrap_or(0)
    });
    let others: Vec<f64> = others.into_iter().map(|(_, value)| value).collect();
    let (per_server, pool_metric) = match metric {
        Some(own) if !others.is_empty() => {
            let pool = combine(&facts.scaling.metric, own, &others);
            (spread_as(&per_server, own, pool), Some(pool))
        }
        _ => (per_server, None),
    };
    let pool_load = pool_metric.map(|_| per_server.iter().sum::<f64>());
    let history = history(state, pool_metric.or(metric));
    let sample = sample.map(|sample| Sample {
        metric,
        load,
        pool_metric,
        pool_load,
        ..sample
    });
    // The pool's load over time: every sample that measured it across nodes, and this node's
    // own where it was alone.
    let loads = state
        .samples
        .iter()
        .chain(sample.iter())
        .filter_map(|sample| match sample.pool_load {
            Some(load) => Some((sample.at, load)),
            None if Some(&sample.node) == node.as_ref() => Some((sample.at, sample.load?)),
            None => None,
        })
        .collect();
    Measured {
        queued: queued(state, sample.as_ref(), facts.now),
        sample,
        per_server,
        history,
        loads,
        no_metric: None,
        metric_age_s,
    }
}

/// The pool's metric per run, oldest first, ending with this run's.
fn history(state: &PoolState, this_run: Option<f64>) -> Vec<Option<f64>> {
    state
        .samples
        .iter()
        .map(|sample| sample.pool_metric.or(sample.metric))
        .chain(std::iter::once(this_run))
        .collect()
}

/// [`measure`] for an external metric: the same value for every server in service (the pool's
/// total shared among them with `per_server`), nothing combined across nodes.
fn measure_external(
    facts: &ScalingFacts<'_>,
    state: &PoolState,
    in_service: &[&str],
    external: &ExternalMetric,
) -> Measured {
    // Without HAProxy's stats nothing is known to be in service: no metric, as for HAProxy's
    // own metrics. The reason is kept only for the source's own failures.
    let judged = match facts.external {
        Some(reading) => judge(reading, facts.now, external.max_age_s),
        None => Err("its source was not read".to_owned()),
    };
    let usable = facts.stats.is_some() && !in_service.is_empty();
    let n = in_service.len() as f64;
    let per_server = match &judged {
        Ok(_) if !usable => Vec::new(),
        Ok(value) if external.per_server => vec![value / n; in_service.len()],
        Ok(value) => {
            // Each server's figure, measured on the servers that were in service before this
            // run: one that joined now carried none of that load, which it now shares.
            let before: HashSet<&str> = state.in_service.iter().map(String::as_str).collect();
            let carried = in_service.iter().filter(|id| before.contains(*id)).count();
            let carried = if carried == 0 { n } else { carried as f64 };
            vec![value * carried / n; in_service.len()]
        }
        Err(_) => Vec::new(),
    };
    let metric = per_server.first().copied();
    let metric_age_s = metric.map(|_| match facts.external {
        Some(Reading::Value { at: Some(at), .. }) => {
            (facts.now as f64 - at).round().max(0.0) as i64
        }
        _ => 0,
    });
    let load = metric.map(|_| per_server.iter().sum::<f64>());
    let sample = facts.stats.map(|stats| Sample {
        metric,
        load,
        ..sample_of(stats, facts.now)
    });
    let history = history(state, metric);
    let loads = state
        .samples
        .iter()
        .chain(sample.iter())
        .filter_map(|sample| Some((sample.at, sample.pool_load.or(sample.load)?)))
        .collect();
    Measured {
        queued: queued(state, sample.as_ref(), facts.now),
        sample,
        per_server,
        history,
        loads,
        no_metric: judged.err(),
        metric_age_s,
    }
}

/// The requests queued in the backend across the load balancers: `sample`'s (this run's) and the
/// newest fresh one of every other node; each queues its own traffic.
fn queued(state: &PoolState, sample: Option<&Sample>, now: i64) -> Option<f64> {
    let sample = sample?;
    let others = newest_of_other_nodes(&state.samples, &sample.node, now);
    Some(
        std::iter::once(sample)
            .chain(others)
            .filter_map(|sample| sample.backend_qcur)
            .map(|queue| queue as f64)
            .sum(),
    )
}

/// The newest sample of each node but `node`, when it was taken within [`FRESH_S`] of `now`.
fn newest_of_other_nodes<'a>(samples: &'a [Sample], node: &str, now: i64) -> Vec<&'a Sample> {
    let mut seen: Vec<&str> = Vec::new();
    let mut newest = Vec::new();
    for sample in samples.iter().rev() {
        if sample.node == node || seen.contains(&sample.node.as_str()) {
            continue;
        }
        seen.push(&sample.node);
        if now - sample.at <= FRESH_S && sample.at <= now {
            newest.push(sample);
        }
    }
    newest
}

/// The pool's metric from this node's and the others': traffic adds up across nodes; a
/// response time does not.
fn combine(metric: &Metric, own: f64, others: &[f64]) -> f64 {
    let total = own + others.iter().sum::<f64>();
    match metric {
        Metric::ResponseTimeMs => total / (others.len() + 1) as f64,
        Metric::SessionRate | Metric::RequestRate | Metric::CurrentSessions | Metric::Queue => {
            total
        }
        // Never combined: every node reads the same value (`measure_external`).
        Metric::External(_) => own,
    }
}

/// This node's per-server metrics scaled to average `pool`; evenly when this node saw nothing
/// (a passive node).
fn spread_as(per_server: &[f64], own: f64, pool: f64) -> Vec<f64> {
    if own > 0.0 {
        per_server.iter().map(|value| value * pool / own).collect()
    } else {
        vec![pool; per_server.len()]
    }
}

/// The counters of one HAProxy node's stats, as the state keeps them.
pub(super) fn sample_of(stats: &StatsSnapshot, now: i64) -> Sample {
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
        load: None,
        pool_metric: None,
        pool_load: None,
    }
}

/// One in-service server's metric, or `None` if it has none this run.
fn server_metric(
    metric: &Metric,
    id: &str,
    sample: &Sample,
    previous: Option<&Sample>,
    reloaded_at: Option<i64>,
    in_service: usize,
) -> Option<f64> {
    let now = sample.servers.get(id).filter(|counters| counters.up)?;
    let rate = |pick: fn(&ServerCounters) -> Option<u64>| -> Option<f64> {
        let previous = previous.filter(|previous| same_counters(previous, sample, reloaded_at))?;
        let (before, after) = (pick(previous.servers.get(id)?)?, pick(now)?);
        let delta = after.checked_sub(before)?;
        Some(delta as f64 / sample.at.checked_sub(previous.at)? as f64)
    };
    match metric {
        Metric::SessionRate => rate(|counters| Some(counters.stot)),
        Metric::RequestRate => rate(|counters| counters.req_tot),
        Metric::CurrentSessions => Some(now.scur as f64),
        Metric::Queue => sample
            .backend_qcur
            .map(|queue| queue as f64 / in_service.max(1) as f64),
        Metric::ResponseTimeMs => now.rtime.map(|ms| ms as f64),
        Metric::External(_) => None,
    }
}

/// True if the counters of `previous` and `sample` are from one HAProxy process, so their
/// difference is traffic. Counters reset on reload: a reload this tool made after the previous
/// sample, a new pid, a lower uptime skips the interval (a smaller counter is caught by the
/// subtraction). The stats page has no pid or uptime, and a counter that grew again past its
/// old value since the reset hides it, so the tool's own record of its reloads comes first.
fn same_counters(previous: &Sample, sample: &Sample, reloaded_at: Option<i64>) -> bool {
    !(reloaded_at.is_some_and(|at| previous.at <= at && at < sample.at)
        || previous.pid != sample.pid
        || previous.uptime_s > sample.uptime_s
        || sample.at <= previous.at)
}
