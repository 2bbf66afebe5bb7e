//! `haproxy-autoscaler simulate`: reads the config and the trace, runs the simulation, prints
//! its figures (text or JSON) and draws the plot.

use serde::Serialize;

use super::SimulateError;
use super::trace::Trace;
use super::{Figures, Settings, check, pick_pool, plot, simulate};
use crate::cli::{Cli, Format, SimulateArgs};
use crate::config::{Config, ForecastMode, Metric, Policy, Scaling};
use crate::error::Error;

/// How many servers the trace's peak needs when `--capacity` is not given.
const DEFAULT_PEAK_SERVERS: f64 = 50.0;

/// The JSON document `simulate --format json` prints.
#[derive(Debug, Serialize)]
struct Report<'a> {
    mode: &'static str,
    pool: &'a str,
    policy: &'a Policy,
    /// The common `[pool.scaling]` keys that change decisions beside the policy's own.
    forecast: ForecastMode,
    forecast_lead_s: u64,
    saturation_queue: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_actions_per_hour: Option<u32>,
    trace: String,
    step_s: u64,
    settings: Settings,
    #[serde(flatten)]
    figures: &'a Figures,
}

/// Runs `simulate`; returns the exit code.
pub(crate) fn run(cli: &Cli, args: &SimulateArgs) -> Result<u8, Error> {
    let config = Config::from_cli(cli)?;
    if let Some(plot) = &args.plot {
        let mut inputs = vec![(args.trace.clone(), "the trace".to_owned())];
        if let crate::config::Source::File(path) = &config.source {
            inputs.push((path.clone(), "the config file".to_owned()));
        }
        inputs.push((
            config.haproxy.template.clone(),
            "`haproxy.template`".to_owned(),
        ));
        inputs.push((config.haproxy.config.clone(), "`haproxy.config`".to_owned()));
        inputs.push((config.state_path.clone(), "`state.path`".to_owned()));
        if let Some((_, what)) = inputs
            .into_iter()
            .find(|(input, _)| crate::config::same_file(plot, input))
        {
            return Err(SimulateError::PlotOverInput {
                plot: plot.clone(),
                what,
            }
            .into());
        }
    }
    let trace = Trace::load(&args.trace)?;
    let (pool, scaling) = pick_pool(&config, args.pool.as_deref())?;
    let settings = Settings {
        capacity: args
            .capacity
            .unwrap_or_else(|| (trace.peak() * args.scale / DEFAULT_PEAK_SERVERS).max(1e-9)),
        boot_s: args.boot_s,
        interval_s: args.interval_s,
        scale: args.scale,
    };
    check(&settings)?;
    super::check_span(&trace, settings)?;
    check_model(scaling, settings)?;
    if let Some(warning) = saturation_warning(scaling, settings) {
        crate::report::say(format_args!("warning: {warning}"));
    }
    let started = std::time::Instant::now();
    let outcome = simulate(&config, (pool, scaling), &trace, settings);
    tracing::info!(
        "simulated {} runs in {:?}",
        outcome.figures.runs,
        started.elapsed()
    );
    let report = Report {
        mode: "simulate",
        pool: &pool.name,
        policy: &scaling.policy,
        forecast: scaling.forecast,
        forecast_lead_s: scaling.forecast_lead_s,
        saturation_queue: scaling.saturation_queue,
        max_actions_per_hour: scaling.max_actions_per_hour,
        trace: args.trace.display().to_string(),
        step_s: trace.step_s,
        settings,
        figures: &outcome.figures,
    };
    let draw = || -> Result<(), Error> {
        if let Some(path) = &args.plot {
            let title = format!("pool {}, {}", pool.name, policy_name(&scaling.policy));
            plot::draw(path, &outcome, settings, &title).map_err(Error::Plot)?;
        }
        Ok(())
    };
    match cli.format {
        // One JSON document on stdout: the figures, or the error if the plot cannot be written.
        Format::Json => {
            draw()?;
            crate::report::out_json(&report);
        }
        Format::Text => {
            // The figures first: a plot that cannot be written does not lose them.
            if !cli.quiet {
                crate::report::out_text(&text(&report, &trace, args.capacity.is_none()));
            }
            draw()?;
        }
    }
    Ok(0)
}

/// The policy's name, as `policy` names it.
fn policy_name(policy: &Policy) -> String {
    serde_json::to_value(policy)
        .ok()
        .and_then(|value| value.get("policy")?.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Refuses what the simulated HAProxy does not model.
fn check_model(scaling: &Scaling, _settings: Settings) -> Result<(), Error> {
    if scaling.metric == Metric::ResponseTimeMs {
        return Err(SimulateError::Unmodelled(scaling.metric.name()).into());
    }
    Ok(())
}

/// A server serves at most `capacity`, so its metric never reads above it: a target (or
/// threshold) the metric cannot pass beyond its tolerance never scales up by itself; only the
/// saturation guard does.
fn saturation_warning(scaling: &Scaling, settings: Settings) -> Option<String> {
    if !matches!(scaling.metric, Metric::RequestRate | Metric::SessionRate) {
        return None;
    }
    let (line, name) = match scaling.policy {
        Policy::Target {
            target, tolerance, ..
        }
        | Policy::Peak {
            target, tolerance, ..
        } => (target * (1.0 + tolerance), "target × (1 + tolerance)"),
        Policy::Threshold { up, .. }
        | Policy::Consecutive { up, .. }
        | Policy::Average { up, .. } => (up, "scale_up_above"),
    };
    (line >= settings.capacity).then(|| {
        format!(
            "the metric can never scale the pool up: a server serves at most --capacity {} req/s, so its {} never passes {name} ({line:.2}); only the saturation guard (the backend's queue) grows it; lower the target or give the real --capacity",
            settings.capacity,
            scaling.metric.name()
        )
    })
}

/// The figures for people.
fn text(report: &Report<'_>, trace: &Trace, default_capacity: bool) -> String {
    let f = report.figures;
    let s = report.settings;
    let mut policy = policy_name(report.policy);
    if report.forecast != ForecastMode::Off {
        policy.push_str(&format!(", forecast {}", report.forecast.name()));
    }
    let capacity = if default_capacity {
        format!(
            "{:.2} req/s per server (the peak over {DEFAULT_PEAK_SERVERS})",
            s.capacity
        )
    } else {
        format!("{} req/s per server", s.capacity)
    };
    let cost = f
        .cost_ratio
        .map_or("no load".to_owned(), |ratio| format!("{ratio:.3}"));
    let foresight = f
        .foresight_cost_ratio
        .map_or("no load".to_owned(), |ratio| {
            format!("cost ratio {ratio:.3}")
        });
    format!(
        "pool {} (policy {policy}) on {}: {} intervals of {} s ({:.1} days)\n\
capacity {capacity}, boot {} s, a run every {} s, load × {}\n\
requests        {:.0} in all, {:.0} unserved ({:.3} %)\n\
overloaded      {} minute(s)\n\
instance-hours  {:.1} (oracle {:.1}): cost ratio {cost}; foresight with these boots and runs {:.1}: {foresight}\n\
scale actions   {} up, {} down ({:.1} a day), {} reversal(s) within 10 minutes; {} launch(es), at most {} server(s)\n",
        report.pool,
        report.trace,
        trace.loads.len(),
        trace.step_s,
        trace.span_s() as f64 / 86_400.0,
        s.boot_s,
        s.interval_s,
        s.scale,
        f.requests_total,
        f.requests_unserved,
        f.unserved_pct,
        // Whole minutes as such, parts of one (a trace stepped below a minute) to a tenth.
        format!("{:.1}", f.overloaded_minutes).trim_end_matches(".0"),
        f.instance_hours,
        f.oracle_instance_hours,
        f.foresight_instance_hours,
        f.scale_ups,
        f.scale_downs,
        f.actions_per_day,
        f.reversals,
        f.launches,
        f.peak_servers,
    )
}
