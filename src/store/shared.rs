//! A shared state: the fleet's decisions in S3, this node's own facts in its local file.
//!
//! Each load balancer renders and reloads its own haproxy.cfg, so what describes that file and
//! that HAProxy stays on the node: the sha256 of the config it installed, the servers it
//! rendered, which of them its HAProxy had in service, and when it last reloaded. Everything
//! else (launch intents, drains, scale history, every node's stats samples under its node name)
//! is the fleet's and lives in S3, changed only by compare-and-swap. A node lost is replaced
//! by one that adopts its haproxy.cfg as on a first run; no decision is lost with it.

use super::s3::{S3Revision, S3Store};
use super::{FileRevision, FileStore, Revision, StateError, StateStore};
use crate::model::{PoolState, State};

#[derive(Debug)]
pub(crate) struct SharedStore {
    shared: S3Store,
    local: FileStore,
    /// The config's identity (the S3 URL): a local half written for another one is refused.
    identity: String,
}

/// A shared state's revision: where each half was loaded from, and what it held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Halves {
    shared: S3Revision,
    local: FileRevision,
    shared_digest: String,
    local_digest: String,
}

impl Revision for Halves {
    fn is_none(&self) -> bool {
        self.shared.is_none() && self.local.is_none()
    }

    /// The shared half's generation: how many saves the fleet's state has had.
    fn state_generation(&self) -> u64 {
        self.shared.state_generation()
    }
}

impl SharedStore {
    pub(crate) fn new(shared: S3Store, local: FileStore, identity: String) -> SharedStore {
        SharedStore {
            shared,
            local,
            identity,
        }
    }
}

/// This node's half: its own haproxy.cfg and HAProxy.
fn local_half(state: &State) -> State {
    State {
        version: state.version,
        config: state.config.clone(),
        installed_config_sha256: state.installed_config_sha256.clone(),
        pools: state
            .pools
            .iter()
            .map(|(name, pool)| {
                let local = PoolState {
                    servers: pool.servers.clone(),
                    in_service: pool.in_service.clone(),
                    reloaded_at: pool.reloaded_at,
                    ..PoolState::default()
                };
                (name.clone(), local)
            })
            .collect(),
        nodes: Default::default(),
    }
}

/// The fleet's half: everything but [`local_half`].
fn shared_half(state: &State) -> State {
    let mut shared = state.clone();
    shared.installed_config_sha256 = None;
    for pool in shared.pools.values_mut() {
        pool.servers = Vec::new();
        pool.in_service = Vec::new();
        pool.reloaded_at = None;
    }
    shared
}

/// Whether `state` holds more than a node's own facts.
fn has_fleet_facts(state: &State) -> bool {
    state.pools.values().any(|pool| {
        !(pool.launches.is_empty()
            && pool.draining.is_empty()
            && pool.samples.is_empty()
            && pool.scale_history.is_empty())
    })
}

/// `fleet`'s decisions with `node`'s own facts (what its haproxy.cfg and HAProxy run): the state
/// a run commits before it acts (its own facts not yet changed), or a record of what it did
/// carried onto a newer fleet state.
pub(crate) fn with_own_facts(fleet: &State, node: &State) -> State {
    merged(shared_half(fleet), local_half(node))
}

fn merged(mut shared: State, local: State) -> State {
    shared.installed_config_sha256 = local.installed_config_sha256;
    for (name, local) in local.pools {
        let pool = shared.pools.entry(name).or_default();
        pool.servers = local.servers;
        pool.in_service = local.in_service;
        pool.reloaded_at = local.reloaded_at;
    }
    shared
}

fn digest(state: &State) -> String {
    crate::model::sha256_hex(&serde_json::to_vec(state).expect("a state always encodes"))
}

impl StateStore for SharedStore {
    type Revision = Halves;

    async fn load(&self) -> Result<(State, Halves), StateError> {
        let (shared, shared_revision) = self.shared.load().await?;
        let (local, local_revision) = self.local.load().await?;
        // Two configs on one machine sharing a `local_path` would each overwrite the other's
        // own facts (issue 29, class 6): refused as two configs on one local state are.
        if let Some(owner) = &local.config
            && *owner != self.identity
        {
            return Err(StateError::OtherConfig {
                path: self.local.path().to_owned(),
                owner: owner.clone(),
                ours: self.identity.clone(),
            });
        }
        // A whole deployment's state in the local file (its path was the state's before it was
        // shared) would lose its intents and drains when only this node's half is saved back.
        if shared_revision.is_none() && has_fleet_facts(&local) {
            return Err(StateError::Shared {
                location: self.shared.location().to_string(),
                message: format!(
                    "there is no state there yet, and the local file `{}` holds a whole deployment's state (launch intents, drains, samples): move it to S3 first (`jq 'del(.config)'` it, then `aws s3 cp`; see \"Several load balancers\" in the book, docs/src/several-load-balancers.md), or give `local_path` another file",
                    self.local.path().display()
                ),
            });
        }
        let halves = Halves {
            shared_digest: digest(&shared_half(&shared)),
            local_digest: digest(&local_half(&local)),
            shared: shared_revision,
            local: local_revision,
        };
        let state = merged(shared_half(&shared), local_half(&local));
        Ok((state, halves))
    }

    fn clock(&self) -> Option<i64> {
        self.shared.clock()
    }

    /// Saves each half that changed: this node's first, then the fleet's (compare-and-swap).
    ///
    /// This node's half says what it did to its own haproxy.cfg and HAProxy (installed, reloaded,
    /// changed through the runtime API), which is done by the time a run saves: it stays true
    /// whether or not the fleet's save then wins its race (issue 28). Saved only after the
    /// fleet's, a lost race dropped it, and the run deciding again found a haproxy.cfg it had no
    /// record of loading, and reloaded HAProxy for nothing.
    async fn save(&self, state: &State, expected: &Halves) -> Result<Halves, StateError> {
        let (shared, local) = (shared_half(state), local_half(state));
        let (shared_digest, local_digest) = (digest(&shared), digest(&local));
        let local_revision = if local_digest == expected.local_digest {
            expected.local.clone()
        } else {
            self.local.save(&local, &expected.local).await?
        };
        let shared_revision = if shared_digest == expected.shared_digest {
            expected.shared.clone()
        } else {
            self.shared.save(&shared, &expected.shared).await?
        };
        Ok(Halves {
            shared: shared_revision,
            local: local_revision,
            shared_digest,
            local_digest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Draining, LaunchIntent};

    #[test]
    fn the_halves_of_a_state_merge_back_into_it() {
        let mut state = State {
            installed_config_sha256: Some("abc".into()),
            config: Some("s3://b/k".into()),
            ..State::default()
        };
        state.pools.insert(
            "web".into(),
            PoolState {
                servers: vec!["i-1".into(), "i-2".into()],
                in_service: vec!["i-1".into()],
                reloaded_at: Some(7),
                draining: vec![Draining {
                    id: "i-2".into(),
                    since: 5,
                    terminating_at: None,
                }],
                launches: vec![LaunchIntent {
                    token: "t".into(),
                    count: 1,
                    requested_at: 6,
                    instance_ids: None,
                    attempt_ended: false,
                }],
                ..PoolState::default()
            },
        );
        let (shared, local) = (shared_half(&state), local_half(&state));
        assert_eq!(merged(shared.clone(), local.clone()), state);
        // Each half holds only its own fields.
        assert_eq!(shared.installed_config_sha256, None);
        assert!(shared.pools["web"].servers.is_empty());
        assert_eq!(shared.pools["web"].launches.len(), 1);
        assert!(local.pools["web"].launches.is_empty() && local.pools["web"].draining.is_empty());
        // A node's own facts changing leaves the fleet's half (and its digest) alone.
        let mut other_node = state.clone();
        other_node.installed_config_sha256 = Some("def".into());
        other_node.pools.get_mut("web").unwrap().servers.pop();
        assert_eq!(digest(&shared_half(&other_node)), digest(&shared));
        // A node's half alone is not a deployment's state; the whole one is.
        assert!(!has_fleet_facts(&local) && has_fleet_facts(&state));
    }
}
