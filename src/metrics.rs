//! `metrics_file`: after every run, success or failure (a busy lock is neither), the run's
//! figures in Prometheus' text exposition format for node_exporter's textfile collector,
//! written atomically (a scrape never reads half a file).
//!
//! Counters (`_total`) go on from the values in the file the previous run wrote; if that file is
//! gone they start again from 0, which Prometheus reads as a counter reset.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::decide::plan::Action;
use crate::decide::scaling::Role;
use crate::fs_atomic::{self, Ownership};
use crate::report::Report;

/// What one pool looked like after the run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PoolFigures {
    pub(crate) name: String,
    /// Servers in the rendered haproxy.cfg.
    pub(crate) servers: usize,
    pub(crate) scaling: Option<ScalingFigures>,
    /// What this run did to the pool: commands through HAProxy's runtime API, drains begun,
    /// instances terminated.
    pub(crate) runtime_changes: u64,
    pub(crate) drains: u64,
    pub(crate) terminations: u64,
}

/// A scaling pool's decision and roles.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ScalingFigures {
    pub(crate) metric_name: &'static str,
    pub(crate) desired: u32,
    pub(crate) current: u32,
    pub(crate) in_service: u32,
    pub(crate) booting: u32,
    pub(crate) draining: u32,
    pub(crate) metric: Option<f64>,
    /// How old that metric was (seconds).
    pub(crate) metric_age_s: Option<i64>,
    /// When the pool last scaled (Unix seconds) and which way (1 up, -1 down).
    pub(crate) last_scale: Option<(i64, i8)>,
    /// This run's decision, when it scaled: 1 up, -1 down.
    pub(crate) decided: Option<i8>,
    /// Why the pool held this run, when it did ([`crate::decide::policy::Hold::name`]).
    pub(crate) hold: Option<&'static str>,
    /// The forecast load `forecast_lead_s` ahead, and its mean absolute percentage error over
    /// the last day, when the forecast is on and has them.
    pub(crate) forecast: Option<f64>,
    pub(crate) forecast_error_pct: Option<f64>,
}

/// One run's figures.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RunFigures {
    pub(crate) success: bool,
    pub(crate) duration_s: f64,
    /// When the run ended, Unix seconds.
    pub(crate) at: f64,
    pub(crate) reloads: u64,
    pub(crate) launches: u64,
    /// How many times another node's commit to the shared state came first.
    pub(crate) conflicts: u64,
    /// Empty when the run failed: what it would have seen is unknown.
    pub(crate) pools: Vec<PoolFigures>,
}

impl RunFigures {
    /// The figures of a finished run.
    /// `report` is `None` for a run that failed.
    pub(crate) fn of(
        report: Option<&Report>,
        config: &crate::config::Config,
        duration_s: f64,
        at: f64,
    ) -> RunFigures {
        let Some(report) = report else {
            return RunFigures {
                success: false,
                duration_s,
                at,
                reloads: 0,
                launches: 0,
                conflicts: 0,
                pools: Vec::new(),
            };
        };
        let plan = &report.plan;
        let metric_of = |name: &str| {
            config
                .pools
                .iter()
                .find(|pool| pool.name == name)
                .and_then(|pool| pool.scaling.as_ref())
                .map_or("", |scaling| scaling.metric.name())
        };
        // Commands through the runtime API name their server as `BACKEND/SERVER`.
        let runtime_commands: Vec<&str> = plan
            .actions
            .iter()
            .filter_map(|action| match action {
                Action::ApplyRuntime { commands, .. } => Some(commands),
                _ => None,
            })
            .flatten()
            .filter_map(|command| {
                let target = command.split_whitespace().find(|word| word.contains('/'))?;
                Some(target.split_once('/')?.0)
            })
            .collect();
        let actions_of = |name: &str, kind: fn(&Action) -> Option<&String>| {
            plan.actions
                .iter()
                .filter(|action| kind(action).is_some_and(|pool| pool == name))
                .count() as u64
        };
        let pools = plan
            .pools
            .iter()
            .map(|pool| PoolFigures {
                name: pool.name.clone(),
                servers: pool.servers.len(),
                runtime_changes: runtime_commands
                    .iter()
                    .filter(|backend| **backend == pool.backend)
                    .count() as u64,
                drains: actions_of(&pool.name, |action| match action {
                    Action::Drain { pool, .. } => Some(pool),
                    _ => None,
                }),
                terminations: actions_of(&pool.name, |action| match action {
                    Action::Terminate { pool, .. } => Some(pool),
                    _ => None,
                }),
                scaling: pool.scale.as_ref().map(|scale| {
                    let count = |role| scale.roles.values().filter(|r| **r == role).count() as u32;
                    let last_scale = plan
                        .next_state
                        .pools
                        .get(&pool.name)
                        .and_then(|state| state.scale_history.last())
                        .map(|event| (event.at, if event.to > event.from { 1 } else { -1 }));
                    ScalingFigures {
                        metric_name: metric_of(&pool.name),
                        desired: scale.decision.desired,
                        current: scale.decision.current,
                        in_service: count(Role::InService),
                        booting: count(Role::Booting),
                        draining: count(Role::Draining),
                        metric: scale.decision.metric,
                        metric_age_s: scale.metric_age_s,
                        last_scale,
                        decided: scale.events.iter().find_map(|event| match event {
                            crate::decide::scaling::Event::Scaled { from, to, .. } => {
                                Some(if to > from { 1 } else { -1 })
                            }
                            _ => None,
                        }),
                        hold: scale.decision.hold.map(crate::decide::policy::Hold::name),
                        forecast: scale.forecast.as_ref().and_then(|report| report.load),
                        forecast_error_pct: scale
                            .forecast
                            .as_ref()
                            .and_then(|report| report.error_pct),
                    }
                }),
            })
            .collect();
        RunFigures {
            success: true,
            duration_s,
            at,
            reloads: plan
                .actions
                .iter()
                .filter(|action| matches!(action, Action::Reload { .. }))
                .count() as u64,
            launches: plan
                .actions
                .iter()
                .map(|action| match action {
                    Action::Launch { count, .. } => u64::from(*count),
                    _ => 0,
                })
                .sum(),
            conflicts: u64::from(report.conflicts),
            pools,
        }
    }
}

/// Samples of one family: (labels, value).
type Samples = Vec<(String, f64)>;

/// The counters a previous file holds, by series (`name{labels}`).
/// A value that is not a finite, non-negative number (`NaN`, `1e400`, `-3`) starts again from
/// 0, with a warning: no counter goes on from it.
pub(crate) fn previous_counters(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(series, _)| series.contains("_total"))
        .filter_map(|(series, value)| {
            let number: f64 = value.parse().ok()?;
            if number.is_finite() && number >= 0.0 {
                Some((series.to_owned(), number))
            } else {
                tracing::warn!(
                    "metrics_file: counter `{}` was {}: it starts again from 0",
                    crate::model::text::shown(series),
                    crate::model::text::shown(value)
                );
                None
            }
        })
        .collect()
}

/// The exposition text: `previous` counters carried on.
pub(crate) fn exposition(run: &RunFigures, previous: &BTreeMap<String, f64>) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        // A counter's series never vanish: one this run did not write (a failed run, which
        // knows no pool) goes on at its last value.
        let mut samples = samples.to_vec();
        if kind == "counter" {
            let prefix = format!("haproxy_autoscaler_{name}");
            for (series, value) in previous {
                let Some(labels) = series.strip_prefix(&prefix) else {
                    continue;
                };
                if (labels.is_empty() || labels.starts_with('{'))
                    && !samples.iter().any(|(written, _)| written == labels)
                {
                    samples.push((labels.to_owned(), *value));
                }
            }
        }
        // A family with no sample (no scaling pool) is left out rather than written empty.
        if samples.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP haproxy_autoscaler_{name} {help}");
        let _ = writeln!(out, "# TYPE haproxy_autoscaler_{name} {kind}");
        for (labels, value) in &samples {
            let _ = writeln!(out, "haproxy_autoscaler_{name}{labels} {value}");
        }
    };
    let counter = |name: &str, labels: &str, add: f64| {
        let series = format!("haproxy_autoscaler_{name}{labels}");
        (
            labels.to_owned(),
            previous.get(&series).copied().unwrap_or(0.0) + add,
        )
    };
    family(
        "last_run_success",
        "gauge",
        "1 if the last run succeeded, 0 if it failed.",
        &[(String::new(), f64::from(u8::from(run.success)))],
    );
    family(
        "last_run_duration_seconds",
        "gauge",
        "How long the last run took.",
        &[(String::new(), run.duration_s)],
    );
    family(
        "last_run_timestamp_seconds",
        "gauge",
        "When the last run ended (Unix time).",
        &[(String::new(), run.at)],
    );
    family(
        "runs_total",
        "counter",
        "Runs, by result (a run that found the lock busy is not counted).",
        &[
            counter(
                "runs_total",
                "{result=\"success\"}",
                f64::from(u8::from(run.success)),
            ),
            counter(
                "runs_total",
                "{result=\"failure\"}",
                f64::from(u8::from(!run.success)),
            ),
        ],
    );
    family(
        "reloads_total",
        "counter",
        "HAProxy reloads made.",
        &[counter("reloads_total", "", run.reloads as f64)],
    );
    family(
        "launched_instances_total",
        "counter",
        "Instances asked for from the cloud.",
        &[counter("launched_instances_total", "", run.launches as f64)],
    );
    family(
        "cas_conflicts_total",
        "counter",
        "Times another node's commit to the shared state came first (this node decided again, or carried what it did onto the newer state).",
        &[counter("cas_conflicts_total", "", run.conflicts as f64)],
    );
    let pools = |pick: &dyn Fn(&PoolFigures) -> Option<Samples>| -> Samples {
        run.pools.iter().filter_map(pick).flatten().collect()
    };
    let label = |pool: &PoolFigures| format!("{{pool=\"{}\"}}", pool.name);
    family(
        "pool_servers",
        "gauge",
        "Servers in the pool's backend in the rendered haproxy.cfg.",
        &pools(&|pool| Some(vec![(label(pool), pool.servers as f64)])),
    );
    let scaling = |pick: fn(&ScalingFigures) -> Option<f64>| {
        pools(&move |pool| {
            let value = pick(pool.scaling.as_ref()?)?;
            Some(vec![(label(pool), value)])
        })
    };
    family(
        "pool_desired_servers",
        "gauge",
        "Capacity the policy wants (in service + booting).",
        &scaling(|s| Some(f64::from(s.desired))),
    );
    family(
        "pool_current_servers",
        "gauge",
        "Capacity before this run's decision (in service + booting).",
        &scaling(|s| Some(f64::from(s.current))),
    );
    family(
        "pool_role_servers",
        "gauge",
        "Servers by role after the run.",
        &pools(&|pool| {
            let s = pool.scaling.as_ref()?;
            Some(
                [
                    ("in_service", s.in_service),
                    ("booting", s.booting),
                    ("draining", s.draining),
                ]
                .into_iter()
                .map(|(role, count)| {
                    (
                        format!("{{pool=\"{}\",role=\"{role}\"}}", pool.name),
                        f64::from(count),
                    )
                })
                .collect(),
            )
        }),
    );
    family(
        "pool_metric",
        "gauge",
        "The pool's scaling metric this run (absent when the run had no metric).",
        &pools(&|pool| {
            let s = pool.scaling.as_ref()?;
            let value = s.metric?;
            Some(vec![(
                format!("{{pool=\"{}\",metric=\"{}\"}}", pool.name, s.metric_name),
                value,
            )])
        }),
    );
    family(
        "pool_metric_age_seconds",
        "gauge",
        "How old the metric this run's decision used was: 0 for HAProxy's own sample, the source's time for an external metric, the oldest node's sample in a shared state (absent without a metric).",
        &scaling(|s| s.metric_age_s.map(|age| age as f64)),
    );
    let per_pool = |name: &'static str, pick: fn(&PoolFigures) -> u64| {
        pools(&move |pool| Some(vec![counter(name, &label(pool), pick(pool) as f64)]))
    };
    family(
        "runtime_changes_total",
        "counter",
        "Server changes made through HAProxy's runtime API (no reload), by pool.",
        &per_pool("runtime_changes_total", |pool| pool.runtime_changes),
    );
    family(
        "drains_total",
        "counter",
        "Servers this node began to drain, by pool.",
        &per_pool("drains_total", |pool| pool.drains),
    );
    family(
        "terminations_total",
        "counter",
        "Instances this node terminated, by pool.",
        &per_pool("terminations_total", |pool| pool.terminations),
    );
    family(
        "decisions_total",
        "counter",
        "Scaling decisions this node took, by pool and direction.",
        &pools(&|pool| {
            let s = pool.scaling.as_ref()?;
            Some(
                [("up", 1), ("down", -1)]
                    .into_iter()
                    .map(|(direction, sign)| {
                        counter(
                            "decisions_total",
                            &format!("{{pool=\"{}\",direction=\"{direction}\"}}", pool.name),
                            f64::from(u8::from(s.decided == Some(sign))),
                        )
                    })
                    .collect(),
            )
        }),
    );
    family(
        "pool_hold_reason",
        "gauge",
        "1 for why the pool held its capacity this run (absent when it scaled): no_metric, cooldown, policy, at_max, at_min, clock_off, not_drainable, action_limit.",
        &pools(&|pool| {
            let reason = pool.scaling.as_ref()?.hold?;
            Some(vec![(
                format!("{{pool=\"{}\",reason=\"{reason}\"}}", pool.name),
                1.0,
            )])
        }),
    );
    family(
        "pool_forecast_load",
        "gauge",
        "The pool's load the forecast expects forecast_lead_s ahead (with forecast = observe or scale and two days of history).",
        &scaling(|s| s.forecast),
    );
    family(
        "pool_forecast_error_percent",
        "gauge",
        "The mean absolute percentage error of the pool's forecasts over the last day.",
        &scaling(|s| s.forecast_error_pct),
    );
    family(
        "pool_last_scale_timestamp_seconds",
        "gauge",
        "When the pool last scaled (Unix time).",
        &scaling(|s| s.last_scale.map(|(at, _)| at as f64)),
    );
    family(
        "pool_last_scale_direction",
        "gauge",
        "Which way the pool last scaled: 1 up, -1 down.",
        &scaling(|s| s.last_scale.map(|(_, direction)| f64::from(direction))),
    );
    out
}

/// The largest previous metrics file whose counters are carried on.
const MAX_PREVIOUS_BYTES: u64 = 4 * 1024 * 1024;

/// Writes the run's metrics to `path` (mode 0644: node_exporter reads it); a failure to write
/// is logged, never the run's failure.
pub(crate) fn write(path: &Path, run: &RunFigures) {
    // Bounded: a FIFO, a device or a huge file there is not read (issue 29, class 2); the
    // counters then start again from 0.
    let previous = fs_atomic::read_text(path, MAX_PREVIOUS_BYTES).unwrap_or_default();
    let text = exposition(run, &previous_counters(&previous));
    let readable = Ownership {
        mode: 0o644,
        uid_gid: None,
    };
    if let Err(error) = fs_atomic::write(path, text.as_bytes(), readable) {
        tracing::warn!("cannot write metrics_file `{}`: {error}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(success: bool) -> RunFigures {
        RunFigures {
            success,
            duration_s: 0.25,
            at: 1_800_000_000.0,
            reloads: 1,
            launches: 2,
            conflicts: 1,
            pools: vec![PoolFigures {
                name: "web".into(),
                servers: 3,
                runtime_changes: 2,
                drains: 0,
                terminations: 0,
                scaling: Some(ScalingFigures {
                    metric_name: "request_rate",
                    desired: 5,
                    current: 3,
                    in_service: 3,
                    booting: 0,
                    draining: 0,
                    metric: Some(42.5),
                    metric_age_s: Some(30),
                    last_scale: Some((1_799_999_000, 1)),
                    decided: Some(1),
                    hold: None,
                    forecast: Some(120.5),
                    forecast_error_pct: Some(7.25),
                }),
            }],
        }
    }

    /// Issue 29, classes 1 and 2: a FIFO at `metrics_file` is neither read (a run would hang
    /// on it) nor replaced; the run goes on (the write is a warning).
    #[test]
    fn a_fifo_at_the_metrics_file_is_neither_read_nor_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("metrics.prom");
        crate::testing::fifo(&fifo);
        write(&fifo, &run(true));
        let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(&kind));
    }

    /// A failed run knows no pool: the per-pool counters go on at their last values, and a
    /// counter that is not a finite, non-negative number starts again from 0.
    #[test]
    fn counters_survive_a_failed_run_and_a_bad_value_starts_again() {
        let first = exposition(&run(true), &BTreeMap::new());
        let failed = RunFigures {
            success: false,
            pools: Vec::new(),
            ..run(false)
        };
        let second = exposition(&failed, &previous_counters(&first));
        for line in [
            "haproxy_autoscaler_runtime_changes_total{pool=\"web\"} 2",
            "haproxy_autoscaler_decisions_total{pool=\"web\",direction=\"up\"} 1",
        ] {
            assert!(
                second.lines().any(|l| l == line),
                "{line} missing from:\n{second}"
            );
        }
        let bad = "haproxy_autoscaler_reloads_total NaN\nhaproxy_autoscaler_launched_instances_total 1e400\nhaproxy_autoscaler_runs_total{result=\"success\"} -3\n";
        assert!(previous_counters(bad).is_empty());
    }

    #[test]
    fn a_run_gives_every_family_and_counters_go_on_from_the_last_file() {
        let first = exposition(&run(true), &BTreeMap::new());
        for line in [
            "haproxy_autoscaler_last_run_success 1",
            "haproxy_autoscaler_runs_total{result=\"success\"} 1",
            "haproxy_autoscaler_runs_total{result=\"failure\"} 0",
            "haproxy_autoscaler_reloads_total 1",
            "haproxy_autoscaler_launched_instances_total 2",
            "haproxy_autoscaler_pool_desired_servers{pool=\"web\"} 5",
            "haproxy_autoscaler_pool_role_servers{pool=\"web\",role=\"booting\"} 0",
            "haproxy_autoscaler_pool_metric{pool=\"web\",metric=\"request_rate\"} 42.5",
            "haproxy_autoscaler_pool_metric_age_seconds{pool=\"web\"} 30",
            "haproxy_autoscaler_pool_last_scale_direction{pool=\"web\"} 1",
            "haproxy_autoscaler_pool_forecast_load{pool=\"web\"} 120.5",
            "haproxy_autoscaler_pool_forecast_error_percent{pool=\"web\"} 7.25",
            "haproxy_autoscaler_cas_conflicts_total 1",
            "haproxy_autoscaler_runtime_changes_total{pool=\"web\"} 2",
            "haproxy_autoscaler_decisions_total{pool=\"web\",direction=\"up\"} 1",
            "haproxy_autoscaler_decisions_total{pool=\"web\",direction=\"down\"} 0",
        ] {
            assert!(
                first.lines().any(|l| l == line),
                "{line} missing from:\n{first}"
            );
        }
        let second = exposition(&run(false), &previous_counters(&first));
        for line in [
            "haproxy_autoscaler_last_run_success 0",
            "haproxy_autoscaler_runs_total{result=\"success\"} 1",
            "haproxy_autoscaler_runs_total{result=\"failure\"} 1",
            "haproxy_autoscaler_reloads_total 2",
            "haproxy_autoscaler_cas_conflicts_total 2",
            "haproxy_autoscaler_decisions_total{pool=\"web\",direction=\"up\"} 2",
        ] {
            assert!(
                second.lines().any(|l| l == line),
                "{line} missing from:\n{second}"
            );
        }
    }
}
