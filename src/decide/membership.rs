//! The servers of each backend: which discovered instances are rendered, and why the others are
//! left out.
//!
//! Guards (invariant 9): an instance id must be a valid HAProxy server name and its endpoint a
//! plain `host:port`; one bad instance is left out (skipped, with the reason) and never stops
//! the others. The same instance listed twice with different addresses is a provider that
//! cannot be trusted about it: neither is rendered. Servers are sorted by name so that the
//! rendered file depends on which instances exist, not on the order they were listed in.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::config::{PoolConfig, ProviderKind};
use crate::decide::scaling::{Role, ScalingPlan};
use crate::model::{Discovered, Instance, InstanceState, Observed, State, Tags, Unusable};

/// One server of a backend, as the template sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Server {
    /// The HAProxy server name: the instance id.
    pub name: String,
    pub address: String,
    pub port: u16,
    pub instance_id: String,
    pub state: InstanceState,
    pub launch_time: Option<String>,
    pub zone: Option<String>,
    pub image_id: Option<String>,
    pub tags: Tags,
    /// In service; booting: not yet taking traffic (pending, warming up or not proven ready),
    /// rendered disabled; or draining before termination, rendered so that a reload gives it no
    /// new traffic. One role, so a server cannot be both.
    pub role: Role,
    /// Under the operator's maintenance (`maintenance POOL/SERVER on`): rendered as a booting
    /// server is (every template disables those), so that a reload keeps it out of traffic.
    pub maintenance: bool,
}

impl Server {
    /// Takes no traffic until it is ready, or until the operator's maintenance ends: what the
    /// template's `booting` says.
    pub(crate) fn booting(&self) -> bool {
        self.role == Role::Booting || self.maintenance
    }

    /// Being drained before termination.
    pub(crate) fn draining(&self) -> bool {
        self.role == Role::Draining
    }

    /// The server as the plan's JSON and the template see it: its fields, with `booting` and
    /// `draining` for its role, and its tags unless `with_tags` is false.
    pub(crate) fn serialize_as<S: serde::Serializer>(
        &self,
        serializer: S,
        with_tags: bool,
    ) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut fields = serializer.serialize_struct("Server", 11 + usize::from(with_tags))?;
        fields.serialize_field("name", &self.name)?;
        fields.serialize_field("address", &self.address)?;
        fields.serialize_field("port", &self.port)?;
        fields.serialize_field("instance_id", &self.instance_id)?;
        fields.serialize_field("state", &self.state)?;
        fields.serialize_field("launch_time", &self.launch_time)?;
        fields.serialize_field("zone", &self.zone)?;
        fields.serialize_field("image_id", &self.image_id)?;
        if with_tags {
            fields.serialize_field("tags", &self.tags)?;
        }
        fields.serialize_field("booting", &self.booting())?;
        fields.serialize_field("draining", &self.draining())?;
        fields.serialize_field("maintenance", &self.maintenance)?;
        fields.end()
    }
}

impl Serialize for Server {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.serialize_as(serializer, true)
    }
}

/// An instance that was discovered but is not rendered, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub instance_id: String,
    pub reason: String,
    /// True for a value that cannot be used (an unsafe tag, a bad address or id), as opposed to
    /// an address that is not there yet (a pending instance): the operator must fix it, so it is
    /// notified (`skipped`), once per instance.
    pub bad_value: bool,
}

/// A pool and the servers of its backend.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendPlan {
    pub(crate) name: String,
    pub(crate) backend: String,
    pub(crate) port: u16,
    pub(crate) servers: Vec<Server>,
    pub(crate) skipped: Vec<Skipped>,
    /// Instances left out for a bad value this run that the previous run did not leave out:
    /// the ones to notify about.
    pub(crate) newly_bad: Vec<String>,
    /// How many instances the provider listed.
    #[serde(skip)]
    pub(crate) found: usize,
    /// `allow_empty`: an empty backend is intended.
    #[serde(skip)]
    pub(crate) allow_empty: bool,
    /// What to check when the provider listed nothing, in its own terms.
    #[serde(skip)]
    pub(crate) none_found: String,
    /// Scaling pools: the decision and the launches, drains and terminations.
    pub(crate) scale: Option<ScalingPlan>,
}

/// The servers of one pool, sorted by instance id.
pub(crate) fn plan_backend(
    pool: &PoolConfig,
    observed: &Observed,
    scale: Option<ScalingPlan>,
    maintenance: &[String],
) -> BackendPlan {
    let mut servers = Vec::new();
    let mut skipped = Vec::new();
    for found in &observed.instances {
        let role = scale
            .as_ref()
            .map(|scale| scale.roles.get(&found.instance.id));
        if role == Some(None) {
            continue; // terminating: out of the config before the instance goes
        }
        match server_of(found, role.flatten().copied()) {
            Ok(server) => servers.push(Server {
                maintenance: maintenance.contains(&server.name),
                ..server
            }),
            Err(left_out) => skipped.push(left_out),
        }
    }
    servers.sort_by(|a, b| a.name.cmp(&b.name));
    let servers = drop_ambiguous(servers, &mut skipped);
    skipped.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    BackendPlan {
        name: pool.name.clone(),
        backend: pool.backend.clone(),
        port: pool.port,
        servers,
        skipped,
        newly_bad: Vec::new(),
        found: observed.instances.len(),
        allow_empty: pool.allow_empty,
        none_found: none_found(pool),
        scale,
    }
}

/// The server an instance is rendered as, or why it is left out. `role` is `None` for a
/// discovery-only pool.
fn server_of(found: &Discovered, role: Option<Role>) -> Result<Server, Skipped> {
    let instance = &found.instance;
    if !is_server_name(&instance.id) {
        return Err(skip(
            instance,
            "has an id that cannot be an HAProxy server name (letters, digits, `-`, `_`, `.` and `:` only)",
            true,
        ));
    }
    let endpoint = match &found.endpoint {
        Ok(endpoint) => endpoint,
        Err(Unusable::NotYet(reason)) => return Err(skip(instance, reason, false)),
        Err(Unusable::Bad(reason)) => return Err(skip(instance, reason, true)),
    };
    Ok(Server {
        name: instance.id.clone(),
        address: endpoint.host.clone(),
        port: endpoint.port,
        instance_id: instance.id.clone(),
        state: instance.state,
        launch_time: instance.launch_time.clone(),
        zone: instance.zone.clone(),
        image_id: instance.image_id.clone(),
        tags: instance.tags.clone(),
        // A discovery-only pool has no roles: a pending instance is booting.
        role: role.unwrap_or(if instance.state == InstanceState::Pending {
            Role::Booting
        } else {
            Role::InService
        }),
        maintenance: false,
    })
}

/// Letters, digits, `-`, `_`, `.` and `:`: a name HAProxy accepts for a server.
pub(crate) fn is_server_name(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

/// `servers` (sorted by name) without duplicates: the same server twice is one; twice with
/// different addresses is neither, and is added to `skipped`.
fn drop_ambiguous(servers: Vec<Server>, skipped: &mut Vec<Skipped>) -> Vec<Server> {
    let mut unique: Vec<Server> = Vec::with_capacity(servers.len());
    let mut ambiguous: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for server in servers {
        match unique.last() {
            Some(last) if last.name == server.name => {
                if last.address != server.address || last.port != server.port {
                    let addresses = ambiguous.entry(server.name.clone()).or_default();
                    addresses.insert(format!("{}:{}", last.address, last.port));
                    addresses.insert(format!("{}:{}", server.address, server.port));
                }
            }
            _ => unique.push(server),
        }
    }
    unique.retain(|server| !ambiguous.contains_key(&server.name));
    for (name, addresses) in ambiguous {
        skipped.push(Skipped {
            instance_id: name,
            reason: format!(
                "is listed more than once with different addresses ({}): none is used",
                addresses.into_iter().collect::<Vec<_>>().join(", ")
            ),
            bad_value: true,
        });
    }
    unique
}

fn skip(instance: &Instance, reason: &str, bad_value: bool) -> Skipped {
    Skipped {
        instance_id: instance.id.clone(),
        reason: reason.to_owned(),
        bad_value,
    }
}

/// Fills in each pool's `newly_bad`: left out for a bad value now, not by the previous run.
pub(crate) fn mark_newly_bad(pools: &mut [BackendPlan], state: &State) {
    for pool in pools {
        let before: BTreeSet<&String> = state
            .pools
            .get(&pool.name)
            .map(|state| state.bad_instances.iter().collect())
            .unwrap_or_default();
        pool.newly_bad = pool
            .skipped
            .iter()
            .filter(|skipped| skipped.bad_value && !before.contains(&skipped.instance_id))
            .map(|skipped| skipped.instance_id.clone())
            .collect();
    }
}

/// What to check when a pool's provider listed no instance, in that provider's terms.
fn none_found(pool: &PoolConfig) -> String {
    match &pool.provider {
        ProviderKind::Ec2 => "EC2 lists no running instance that matches `[pool.discover]`: check its tags, security group and image (a typo matches nothing)".to_owned(),
        ProviderKind::Exec(_) => "the `[pool.exec] list` command listed no instance".to_owned(),
        ProviderKind::Static(folder) => format!(
            "the hosts folder {} has no host (`hosts add` puts one there)",
            folder.display()
        ),
    }
}

/// What discovery found and why none of it is usable, for people: the reasons when instances
/// were found, what to check (`none_found`, in the provider's terms) when none was.
pub(crate) fn found_words(found: usize, skipped: &[Skipped], none_found: &str) -> String {
    if found == 0 {
        none_found.to_owned()
    } else {
        format!(
            "discovery found {found} instance(s) and none is usable: {}",
            skipped
                .iter()
                .map(|skipped| format!(
                    "`{}` {}",
                    crate::model::text::shown(&skipped.instance_id),
                    skipped.reason
                ))
                .collect::<Vec<_>>()
                .join("; ")
        )
    }
}
