//! Which servers a scale-down drains: deterministically the fewest current sessions, then the
//! newest, then by id; only those [`may_drain`] allows: tagged for the pool, not protected (by
//! tag or by `protect`), not under the operator's `maintenance`.

use std::collections::HashMap;

use crate::config::scaling::{TAG_POOL, TAG_PROTECTED};
use crate::model::{Draining, Instance, PoolState, Row};

use super::roles::Roles;
use super::{InstanceAction, Role, ScalingFacts, launched_at};

/// The drains a scale-down makes, and why the servers it could not drain are not drainable.
#[derive(Debug, Default)]
pub(super) struct Drains {
    pub(super) drains: Vec<InstanceAction>,
    /// One line per server the policy could have drained but may not (protected, or not tagged
    /// for the pool: an adopted fleet).
    pub(super) not_drainable: Vec<String>,
}

/// Drains `count` servers in service or booting, marking them draining in `roles`.
pub(super) fn drain_servers(
    facts: &ScalingFacts<'_>,
    rows: &HashMap<&str, &Row>,
    roles: &mut Roles,
    count: u32,
    reason: &str,
) -> Drains {
    let pool = &facts.pool.name;
    let candidates = facts
        .instances
        .iter()
        .map(|found| &found.instance)
        .filter(|instance| {
            matches!(
                roles.roles.get(&instance.id),
                Some(Role::InService | Role::Booting)
            )
        });
    let (mut victims, kept): (Vec<&Instance>, Vec<&Instance>) =
        candidates.partition(|instance| may_drain(instance, pool, facts.state).is_ok());
    let sessions = |instance: &Instance| rows.get(instance.id.as_str()).map_or(0, |row| row.scur);
    // Each key once, not once per comparison: a launch time is parsed text.
    victims.sort_by_cached_key(|instance| {
        (
            sessions(instance),
            std::cmp::Reverse(launched_at(instance)),
            instance.id.clone(),
        )
    });
    let mut drains = Vec::new();
    for victim in victims.into_iter().take(count as usize) {
        roles.roles.insert(victim.id.clone(), Role::Draining);
        roles.draining.push(Draining {
            id: victim.id.clone(),
            since: facts.now,
            terminating_at: None,
        });
        drains.push(InstanceAction {
            id: victim.id.clone(),
            reason: format!("{reason} ({} session(s))", sessions(victim)),
        });
    }
    Drains {
        drains,
        not_drainable: kept
            .iter()
            .filter_map(|instance| may_drain(instance, pool, facts.state).err())
            .collect(),
    }
}

/// Whether this tool may drain (and so terminate) `instance` of `pool`, or why not: the one
/// test every drain goes through, a scale-down's and a replacement's.
pub(crate) fn may_drain(instance: &Instance, pool: &str, state: &PoolState) -> Result<(), String> {
    let id = &instance.id;
    if !tagged_for(instance, pool) {
        Err(format!("{id} is not tagged {TAG_POOL}={pool}"))
    } else if protected(instance) {
        Err(format!("{id} is tagged {TAG_PROTECTED}=true"))
    } else if state.protected.contains(id) {
        Err(format!(
            "{id} is protected (`protect {pool}/{id} off` lifts it)"
        ))
    } else if state.maintenance.contains(id) {
        Err(format!(
            "{id} is under maintenance (`maintenance {pool}/{id} off` ends it)"
        ))
    } else {
        Ok(())
    }
}

pub(super) fn tagged_for(instance: &Instance, pool: &str) -> bool {
    instance.tags.get(TAG_POOL).map(String::as_str) == Some(pool)
}

pub(super) fn protected(instance: &Instance) -> bool {
    instance
        .tags
        .get(TAG_PROTECTED)
        .is_some_and(|value| value.eq_ignore_ascii_case("true"))
}
