//! Self-healing: a server in service that HAProxy has reported unhealthy (DOWN, NOLB, or MAINT
//! that the operator did not set with `maintenance`) for `unhealthy_after_s` stops counting as
//! capacity and is replaced: a launch of one server for it, then its drain and termination, in
//! that order, in the same run. Only a server tagged for the pool and not protected is replaced,
//! and at most `max_replacements_per_hour` in any hour, so that a broken image does not churn
//! the pool; one that may not be replaced is still not counted, and said in the plan.

use std::collections::{BTreeMap, HashMap};

use crate::model::{Draining, PoolState, Row, Status};

use super::launches::Launches;
use super::roles::Roles;
use super::victims::may_drain;
use super::{Event, InstanceAction, Role, ScalingFacts, launch_token};

const HOUR_S: i64 = 3600;

/// What self-healing decided this run.
#[derive(Debug, Default)]
pub(super) struct Healing {
    /// Servers in service that are unhealthy now, and since when (for the next state).
    pub(super) unhealthy_since: BTreeMap<String, i64>,
    /// Servers unhealthy for `unhealthy_after_s`: not capacity, replaced or not.
    pub(super) not_capacity: Vec<String>,
    /// The drains of the servers replaced this run, and the events that say so.
    pub(super) drains: Vec<InstanceAction>,
    pub(super) events: Vec<Event>,
    /// Replacements in the last hour, this run's included.
    pub(super) replacements: Vec<(i64, String)>,
    /// Unhealthy servers that may not be replaced, and why.
    pub(super) warnings: Vec<String>,
}

impl Healing {
    /// How many servers this run launches for the ones it replaces.
    pub(super) fn launches(&self) -> u32 {
        self.drains.len() as u32
    }

    /// The servers in service that count as capacity: not unhealthy for long, not under the
    /// operator's maintenance.
    pub(super) fn capacity<'a>(
        &self,
        facts: &ScalingFacts<'a>,
        state: &PoolState,
        roles: &Roles,
    ) -> Vec<&'a str> {
        facts
            .instances
            .iter()
            .map(|found| found.instance.id.as_str())
            .filter(|id| {
                roles.roles.get(*id) == Some(&Role::InService)
                    && !self.not_capacity.iter().any(|bad| bad == id)
                    && !state.maintenance.iter().any(|held| held == id)
            })
            .collect()
    }

    /// The replacements' launch, with its own token, recorded as an intent before it is made
    /// and listed before the drains of the servers it replaces.
    pub(super) fn launch(&self, facts: &ScalingFacts<'_>, launches: &mut Launches) {
        if self.launches() == 0 {
            return;
        }
        let replaced: Vec<&str> = self.drains.iter().map(|drain| drain.id.as_str()).collect();
        let pool = &facts.pool.name;
        launches.add_new(
            launch_token(&format!("{pool}/replace"), facts.now, facts.token_salt),
            self.launches(),
            facts.now,
            &format!("replaces unhealthy {}", replaced.join(", ")),
        );
    }

    /// Self-healing's part of the pool's plan put first beside the rest's, and its state in
    /// `next`.
    pub(super) fn merged(
        self,
        next: &mut PoolState,
        warnings: Vec<String>,
        events: Vec<Event>,
        drains: Vec<InstanceAction>,
    ) -> (Vec<String>, Vec<Event>, Vec<InstanceAction>) {
        next.unhealthy_since = self.unhealthy_since;
        next.replacements = self.replacements;
        (
            chain(warnings, self.warnings),
            chain(self.events, events),
            chain(self.drains, drains),
        )
    }
}

/// HAProxy's word for a server that takes no traffic by no choice of the operator's or of this
/// tool's, or `None` when it is healthy.
fn unhealthy_word(status: &Status) -> Option<String> {
    match status {
        Status::Down => Some("DOWN".to_owned()),
        Status::Maint => Some("MAINT".to_owned()),
        Status::Other(text) if text.starts_with("NOLB") => Some("NOLB".to_owned()),
        _ => None,
    }
}

/// Judges the servers in service in `roles`; the replaced ones become draining.
pub(super) fn heal(
    facts: &ScalingFacts<'_>,
    state: &PoolState,
    rows: &HashMap<&str, &Row>,
    roles: &mut Roles,
) -> Healing {
    let (scaling, now) = (facts.scaling, facts.now);
    let mut healing = Healing {
        replacements: state
            .replacements
            .iter()
            .filter(|(at, _)| now - at < HOUR_S)
            .cloned()
            .collect(),
        ..Healing::default()
    };
    // Without stats nothing is known; a clock that is off decides nothing.
    if facts.stats.is_none() || facts.clock_off_s.is_some() {
        healing.unhealthy_since = state.unhealthy_since.clone();
        return healing;
    }
    for found in facts.instances {
        let instance = &found.instance;
        let id = instance.id.as_str();
        if roles.roles.get(id) != Some(&Role::InService)
            || state.maintenance.iter().any(|held| held == id)
        {
            continue;
        }
        let Some(word) = rows.get(id).and_then(|row| unhealthy_word(&row.status)) else {
            continue;
        };
        let since = state
            .unhealthy_since
            .get(id)
            .copied()
            .unwrap_or(now)
            .min(now);
        healing.unhealthy_since.insert(id.to_owned(), since);
        let for_s = now - since;
        if scaling.unhealthy_after_s == 0 || for_s < scaling.unhealthy_after_s as i64 {
            continue;
        }
        healing.not_capacity.push(id.to_owned());
        let why = format!(
            "{word} for {for_s} s (unhealthy_after_s = {})",
            scaling.unhealthy_after_s
        );
        if let Err(not) = may_drain(instance, &facts.pool.name, state) {
            healing.warnings.push(format!(
                "pool `{}`: server {id} is {why}, not counted as capacity, and not replaced: {not}",
                facts.pool.name
            ));
            continue;
        }
        let limit = scaling.max_replacements_per_hour;
        if healing.replacements.len() as u32 >= limit {
            healing.warnings.push(format!(
                "pool `{}`: server {id} is {why}, not counted as capacity, and not replaced: {limit} server(s) were replaced in the last hour (max_replacements_per_hour); check the image and the backends' health checks",
                facts.pool.name
            ));
            continue;
        }
        roles.roles.insert(id.to_owned(), Role::Draining);
        roles.draining.push(Draining {
            id: id.to_owned(),
            since: now,
            terminating_at: None,
        });
        healing.replacements.push((now, id.to_owned()));
        healing.drains.push(InstanceAction {
            id: id.to_owned(),
            reason: format!("replaced: {why}; a new server is launched first"),
        });
        healing.events.push(Event::Replaced {
            server: id.to_owned(),
            status: word,
            for_s,
        });
    }
    healing
}

/// `first`, then `rest`.
fn chain<T>(mut first: Vec<T>, rest: Vec<T>) -> Vec<T> {
    first.extend(rest);
    first
}
