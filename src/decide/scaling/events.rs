//! What a run tells the operator about a pool, and the scale history it keeps.
//!
//! A scale is what was actually launched or drained: a scale-down with nothing drainable is not
//! one (no cooldown, no history, no `scaled`), only a blocked event, reported once until a drain
//! is possible again. Hitting a bound is reported when the pool first hits it, not on every run
//! it stays there. A pool that flaps (reverses its direction more than `rapid_scales` times
//! within the rapid window) is reported with the scale that makes the reversals too many, once
//! per episode: not again until the reversals in the window are few enough again. Steps in one
//! direction, a ramp met a server at a time, are not flapping.

use crate::decide::policy::Decision;
use crate::model::{PoolState, ScaleEvent};

use super::{Event, ScalingFacts};

/// How many scale events are kept per pool.
const KEEP_HISTORY: usize = 50;

/// How many servers a blocked scale-down names before it counts the rest.
const NAMED: usize = 5;

/// The events and the scale history after this run.
#[derive(Debug)]
pub(super) struct Outcome {
    pub(super) events: Vec<Event>,
    pub(super) scale_history: Vec<ScaleEvent>,
    pub(super) scale_down_blocked: bool,
    pub(super) flapping: bool,
}

/// `to` is the capacity the run actually reaches, and `token` a scale-up's launch token;
/// `not_drainable` says why a scale-down could drain nothing. A blocked scale-down's reason is
/// extended in `decision`.
pub(super) fn pool_events(
    facts: &ScalingFacts<'_>,
    state: &PoolState,
    decision: &mut Decision,
    (to, token): (u32, Option<String>),
    not_drainable: &[String],
) -> Outcome {
    let now = facts.now;
    let scaled = to != decision.current;
    let mut events = Vec::new();
    let mut scale_history = state.scale_history.clone();
    if scaled {
        events.push(Event::Scaled {
            from: decision.current,
            to,
            reason: decision.reason.clone(),
        });
        scale_history.push(ScaleEvent {
            at: now,
            from: decision.current,
            to,
            node: Some(facts.node.to_owned()),
            token: token.filter(|_| to > decision.current),
        });
    }
    let scale_down_blocked = decision.desired < decision.current && !scaled;
    if scale_down_blocked {
        decision.hold = Some(crate::decide::policy::Hold::NotDrainable);
        // Said in the plan every run; notified once.
        decision.reason = format!(
            "{}; but no server can be drained: {}",
            decision.reason,
            a_few(not_drainable)
        );
        if !state.scale_down_blocked {
            events.push(Event::ScaleDownBlocked {
                from: decision.current,
                wanted: decision.desired,
                reason: decision.reason.clone(),
            });
        }
    }
    if let Some(at) = decision.capped
        && state.capped != Some(at)
    {
        events.push(Event::Capped {
            at,
            reason: decision.reason.clone(),
        });
    }
    let (rapid_scales, rapid_window_s) = facts.rapid;
    let reversals = reversals_since(&scale_history, now.saturating_sub(rapid_window_s as i64));
    let flapping = reversals > rapid_scales;
    if scaled && flapping && !state.flapping {
        events.push(Event::Rapid {
            reversals,
            window_s: rapid_window_s,
        });
    }
    let keep_from = scale_history.len().saturating_sub(KEEP_HISTORY);
    scale_history.drain(..keep_from);
    Outcome {
        events,
        scale_history,
        scale_down_blocked,
        // An episode goes on while the reversals stay too many, and is reported when a scale
        // starts it.
        flapping: flapping && (state.flapping || scaled),
    }
}

/// How many times the scale actions since `since` went the other way from the one before.
fn reversals_since(history: &[ScaleEvent], since: i64) -> u32 {
    let directions: Vec<bool> = history
        .iter()
        .filter(|event| event.at >= since && event.to != event.from)
        .map(|event| event.to > event.from)
        .collect();
    directions
        .windows(2)
        .filter(|pair| pair[0] != pair[1])
        .count() as u32
}

/// An adopted fleet can be large: name a few, count the rest.
fn a_few(lines: &[String]) -> String {
    let mut text = lines[..lines.len().min(NAMED)].join(", ");
    if lines.len() > NAMED {
        text.push_str(&format!(" and {} more", lines.len() - NAMED));
    }
    text
}
