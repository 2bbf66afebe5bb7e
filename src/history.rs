//! `history`: the last decisions of each scaling pool, from the state (local or shared): when,
//! on which node, from → to, the policy's reason, the metric and its age, and what the run
//! launched, drained and terminated. Reads only: no lock, no cloud, no HAProxy.

use serde::Serialize;

use crate::cli::{Cli, Format, HistoryArgs};
use crate::config::Config;
use crate::error::{EXIT_OK, Error};
use crate::model::DecisionRecord;

#[derive(Debug, Serialize)]
struct View<'a> {
    mode: &'static str,
    pools: Vec<PoolHistory<'a>>,
}

#[derive(Debug, Serialize)]
struct PoolHistory<'a> {
    pool: &'a str,
    /// The decisions shown, oldest first, and how many the state keeps in all.
    decisions: &'a [DecisionRecord],
    kept: usize,
}

pub(crate) async fn history(cli: &Cli, args: &HistoryArgs) -> Result<u8, Error> {
    let config = Config::from_cli(cli)?;
    let scaling: Vec<&str> = config
        .pools
        .iter()
        .filter(|pool| pool.scaling.is_some())
        .map(|pool| pool.name.as_str())
        .collect();
    if let Some(wanted) = &args.pool
        && !scaling.contains(&wanted.as_str())
    {
        return Err(Error::UnknownPool {
            pool: wanted.clone(),
            pools: scaling.join(", "),
        });
    }
    let store = crate::reconcile::open_store(&config, None).await?;
    let (state, _) = store.peek().await?;
    let empty = Vec::new();
    let view = View {
        mode: "history",
        pools: scaling
            .iter()
            .filter(|name| args.pool.as_deref().is_none_or(|wanted| wanted == **name))
            .map(|name| {
                let all = state
                    .pools
                    .get(*name)
                    .map_or(&empty, |pool| &pool.decisions);
                PoolHistory {
                    pool: name,
                    decisions: &all[all.len().saturating_sub(args.last)..],
                    kept: all.len(),
                }
            })
            .collect(),
    };
    if cli.quiet {
        return Ok(EXIT_OK);
    }
    if scaling.is_empty() {
        crate::report::say(format_args!(
            "warning: {} has no scaling pool (`[pool.scaling]`): no decision to show",
            config.source
        ));
    }
    if cli.format == Format::Json {
        crate::report::out_json(&view);
    } else {
        crate::report::out_text(&text(&view));
    }
    Ok(EXIT_OK)
}

/// The text view: per pool, one line per decision and its reason below it.
fn text(view: &View<'_>) -> String {
    let mut out = String::new();
    for pool in &view.pools {
        out.push_str(&format!(
            "pool {}: {} of {} decisions kept\n",
            pool.pool,
            pool.decisions.len(),
            pool.kept
        ));
        for record in pool.decisions {
            out.push_str(&format!(
                "  {}  {}  {} → {}  {}\n    {}\n",
                when(record.at),
                record.node,
                record.from,
                record.to,
                did(record),
                because(record)
            ));
        }
    }
    out
}

/// A time as an operator reads it in a log: UTC, to the second.
fn when(at: i64) -> String {
    jiff::Timestamp::from_second(at).map_or_else(|_| format!("@{at}"), |time| time.to_string())
}

/// What the run did, or why it held.
fn did(record: &DecisionRecord) -> String {
    let mut parts = Vec::new();
    if record.launched > 0 {
        parts.push(format!("launched {}", record.launched));
    }
    if !record.drained.is_empty() {
        parts.push(format!("drained {}", record.drained.join(", ")));
    }
    if !record.terminated.is_empty() {
        parts.push(format!("terminated {}", record.terminated.join(", ")));
    }
    if parts.is_empty() {
        parts.push(match &record.hold {
            Some(hold) => format!("held ({hold})"),
            None => "held".to_owned(),
        });
    }
    parts.join("; ")
}

/// The metric and its age, then the policy's reason.
fn because(record: &DecisionRecord) -> String {
    match (record.metric, record.metric_age_s) {
        (Some(metric), Some(age)) => format!("metric {metric:.2} ({age} s old): {}", record.reason),
        (Some(metric), None) => format!("metric {metric:.2}: {}", record.reason),
        (None, _) => format!("no metric: {}", record.reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> DecisionRecord {
        DecisionRecord {
            at: 1_800_000_000,
            node: "lb1".to_owned(),
            from: 2,
            to: 3,
            reason: "session_rate 61.10 per server is above 50".to_owned(),
            metric: Some(61.1),
            metric_age_s: Some(0),
            launched: 1,
            ..DecisionRecord::default()
        }
    }

    #[test]
    fn a_decision_reads_when_where_what_and_why() {
        let records = [
            record(),
            DecisionRecord {
                at: 1_800_000_300,
                from: 3,
                to: 2,
                launched: 0,
                drained: vec!["i-2".to_owned()],
                terminated: vec!["i-1".to_owned()],
                metric_age_s: Some(45),
                ..record()
            },
            DecisionRecord {
                hold: Some("cooldown".to_owned()),
                launched: 0,
                metric: None,
                ..record()
            },
        ];
        let view = View {
            mode: "history",
            pools: vec![PoolHistory {
                pool: "web",
                decisions: &records,
                kept: 7,
            }],
        };
        let text = text(&view);
        assert_eq!(
            text,
            "pool web: 3 of 7 decisions kept\n\
             \x20 2027-01-15T08:00:00Z  lb1  2 → 3  launched 1\n\
             \x20   metric 61.10 (0 s old): session_rate 61.10 per server is above 50\n\
             \x20 2027-01-15T08:05:00Z  lb1  3 → 2  drained i-2; terminated i-1\n\
             \x20   metric 61.10 (45 s old): session_rate 61.10 per server is above 50\n\
             \x20 2027-01-15T08:00:00Z  lb1  2 → 3  held (cooldown)\n\
             \x20   no metric: session_rate 61.10 per server is above 50\n"
        );
    }
}
