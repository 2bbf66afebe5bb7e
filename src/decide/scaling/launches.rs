//! Launch intents: resolving the ones a crash left without instance ids, re-sending those whose
//! instances never came, and recording a new one before the launch is made.
//!
//! An intent is re-decided against today's `max` (it may have been lowered since): never more
//! than it allows. One whose first attempt may still be running (its run was killed mid-call)
//! waits, counted as capacity, rather than be sent twice at once.

use crate::decide::policy;
use crate::model::{LaunchIntent, PoolState};

use super::{LaunchAction, ScalingFacts};

/// The launches of this run and the intents the state keeps.
#[derive(Debug, Default)]
pub(super) struct Launches {
    pub(super) launches: Vec<LaunchAction>,
    pub(super) intents: Vec<LaunchIntent>,
    /// Capacity asked for that has no instance yet: it counts as booting.
    pub(super) pending_capacity: u32,
}

/// Carries the state's intents into this run: waiting, re-sent, or dropped at `max`.
/// `present` is the pool's capacity that exists (in service and booting).
pub(super) fn carry_intents(facts: &ScalingFacts<'_>, state: &PoolState, present: u32) -> Launches {
    let now = facts.now;
    let (_, max_now) = policy::bounds_at(facts.scaling, now);
    let mut carried = Launches::default();
    for intent in &state.launches {
        if intent.instance_ids.is_some() {
            continue; // its instances carry the pool tag: discovery sees them from now on
        }
        let room = max_now.saturating_sub(present.saturating_add(carried.pending_capacity));
        let found = facts
            .found_by_token
            .get(&intent.token)
            .map_or(0, |ids| ids.len() as u32);
        if found > 0 {
            // Found: discovery lists them. Fewer than asked for (launches are all or nothing)
            // is a listing made while they were being created, or EC2's eventually consistent
            // one: the rest are on their way, not missing, for a while.
            if found < intent.count && now < listing_deadline(intent, facts.launch_timeout_s) {
                carried.pending_capacity = carried
                    .pending_capacity
                    .saturating_add((intent.count - found).min(room));
                carried.intents.push(intent.clone());
            }
            continue;
        }
        if may_still_run(intent, now, facts.launch_timeout_s) {
            // Never counted as more than today's max leaves room for, so that phantom capacity
            // never makes the pool drain a real server.
            carried.pending_capacity = carried
                .pending_capacity
                .saturating_add(intent.count.min(room));
            carried.intents.push(intent.clone());
            continue;
        }
        let count = intent.count.min(room);
        if count == 0 {
            continue; // max is reached without it: the intent is dropped
        }
        carried.pending_capacity = carried.pending_capacity.saturating_add(count);
        carried.launches.push(LaunchAction {
            token: intent.token.clone(),
            count,
            retry: true,
            reason: resend_reason(intent.count, count, max_now),
        });
        carried.intents.push(LaunchIntent {
            count,
            requested_at: now,
            attempt_ended: false,
            ..intent.clone()
        });
    }
    carried
}

/// How long after a launch call's bound its instances may still be missing from a listing.
const LISTING_GRACE_S: i64 = 120;

/// Until when instances of `intent` not listed yet still count as launched.
fn listing_deadline(intent: &LaunchIntent, launch_timeout_s: u64) -> i64 {
    intent
        .requested_at
        .saturating_add(launch_timeout_s as i64)
        .saturating_add(LISTING_GRACE_S)
}

/// A first attempt of this intent may still be running.
fn may_still_run(intent: &LaunchIntent, now: i64, launch_timeout_s: u64) -> bool {
    !intent.attempt_ended && now < intent.requested_at.saturating_add(launch_timeout_s as i64)
}

fn resend_reason(asked: u32, count: u32, max_now: u32) -> String {
    if count < asked {
        format!(
            "a launch of {asked} was asked for but none of its instances exists: sending it again with the same token, for {count} (max is {max_now})"
        )
    } else {
        "a launch was asked for but none of its instances exists: sending it again with the same token".to_owned()
    }
}

impl Launches {
    /// A new launch of `count`, recorded as an intent (saved before the launch is made).
    pub(super) fn add_new(&mut self, token: String, count: u32, now: i64, reason: &str) {
        self.launches.push(LaunchAction {
            token: token.clone(),
            count,
            retry: false,
            reason: reason.to_owned(),
        });
        self.intents.push(LaunchIntent {
            token,
            count,
            requested_at: now,
            instance_ids: None,
            attempt_ended: false,
        });
    }
}
