//! Which role each instance has this run, and which drains end now.
//!
//! A draining instance is terminated once `drain_s` has passed, or earlier when HAProxy shows no
//! current session on it and no worker from before a reload is still running (an old worker may
//! still be finishing a request on it); that is checked from the run after the drain started. A
//! booting one is pending, inside `warmup_s`, or not yet proven ready; the rest are in service.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::config::ReadyCheck;
use crate::model::{Draining, InstanceState, OldWorkers, PoolState, Row};

use super::{InstanceAction, Role, ScalingFacts, in_warmup_since};

/// Roles after this run, with the drains that go on and the ones that end.
#[derive(Debug, Default)]
pub(super) struct Roles {
    /// Every instance that stays in haproxy.cfg (terminating ones are absent).
    pub(super) roles: BTreeMap<String, Role>,
    /// Drains that go on, and those whose termination is decided, as the state keeps them.
    pub(super) draining: Vec<Draining>,
    /// Drains that ended: their instances are terminated.
    pub(super) terminates: Vec<InstanceAction>,
}

impl Roles {
    pub(super) fn count(&self, role: Role) -> u32 {
        self.roles.values().filter(|r| **r == role).count() as u32
    }
}

/// Sorts the pool's instances into roles.
pub(super) fn assign_roles(
    facts: &ScalingFacts<'_>,
    state: &PoolState,
    rows: &HashMap<&str, &Row>,
    launched: &[Option<i64>],
) -> Roles {
    let (scaling, now) = (facts.scaling, facts.now);
    let drains: HashMap<&str, &Draining> = state
        .draining
        .iter()
        .map(|drain| (drain.id.as_str(), drain))
        .collect();
    let in_service: HashSet<&str> = state.in_service.iter().map(String::as_str).collect();
    let no_old_worker = no_old_worker(facts);
    let mut roles = Roles::default();
    for (instance, launched) in facts
        .instances
        .iter()
        .map(|found| &found.instance)
        .zip(launched)
    {
        if let Some(drain) = drains.get(instance.id.as_str()) {
            if let Some(at) = drain.terminating_at {
                // A run decided its termination: while that call may still run, nobody decides
                // it again (it is out of haproxy.cfg and counts for nothing); after, it is sent
                // again.
                if now.saturating_sub(at) <= facts.launch_timeout_s as i64 {
                    roles.draining.push((*drain).clone());
                } else {
                    roles.terminates.push(InstanceAction {
                        id: instance.id.clone(),
                        reason: format!(
                            "scale-down: its termination, decided {}s ago, did not finish",
                            now.saturating_sub(at)
                        ),
                    });
                    roles.draining.push(Draining {
                        terminating_at: Some(now),
                        ..(*drain).clone()
                    });
                }
                continue;
            }
            let idle = now > drain.since
                && no_old_worker
                && rows
                    .get(instance.id.as_str())
                    .is_some_and(|row| row.scur == 0);
            if let Some(why) = drain_end(now.saturating_sub(drain.since), scaling.drain_s, idle) {
                roles.terminates.push(InstanceAction {
                    id: instance.id.clone(),
                    reason: format!("its drain is over: {why}"),
                });
                // Committed with the decision; the entry goes once the call returned.
                roles.draining.push(Draining {
                    terminating_at: Some(now),
                    ..(*drain).clone()
                });
            } else {
                roles.roles.insert(instance.id.clone(), Role::Draining);
                roles.draining.push((*drain).clone());
            }
            continue;
        }
        let ready = facts.pool.ready_check == ReadyCheck::None
            || in_service.contains(instance.id.as_str())
            || facts.ready.get(&instance.id).copied().unwrap_or(false);
        let booting = instance.state == InstanceState::Pending
            || in_warmup_since(instance, *launched, scaling, now)
            || !ready;
        let role = if booting {
            Role::Booting
        } else {
            Role::InService
        };
        roles.roles.insert(instance.id.clone(), role);
    }
    roles
}

/// Why a drain ends now, or `None` while it goes on.
fn drain_end(elapsed: i64, drain_s: u64, idle: bool) -> Option<String> {
    if idle {
        Some("no session left".to_owned())
    } else if elapsed >= drain_s as i64 {
        Some(format!("drained for {elapsed}s"))
    } else {
        None
    }
}

/// No worker from before a reload may still be finishing a request on a draining server.
fn no_old_worker(facts: &ScalingFacts<'_>) -> bool {
    facts.stats.is_some_and(|stats| {
        matches!(
            stats.old_workers,
            OldWorkers::Untracked | OldWorkers::Running(0)
        )
    })
}
