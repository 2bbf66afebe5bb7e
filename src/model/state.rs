//! Everything a run remembers for the next one: the state file's data (format `"version": 1`).
//!
//! Plain data with its serde shape; loading, locking and saving live in [`crate::store`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The state file format this build reads and writes.
pub(crate) const STATE_VERSION: u64 = 1;

/// Everything a run remembers for the next one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub version: u64,
    /// The config whose runs write this file ([`crate::config::Config::identity`]): a run of
    /// another config refuses it rather than drop that config's pools, intents included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// sha256 of the haproxy.cfg this tool last installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed_config_sha256: Option<String>,
    #[serde(default)]
    pub pools: BTreeMap<String, PoolState>,
    /// Per node (by `node` name), what the fleet records of its runs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub nodes: BTreeMap<String, NodeRecord>,
}

/// What is remembered per pool. The scaling fields stay out of the file while empty, so a
/// discovery-only pool's state is just its servers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolState {
    /// Instance ids rendered into the backend by the last run that installed a config.
    #[serde(default)]
    pub servers: Vec<String>,
    /// Instances the last run left out for a bad value (notified once, when first left out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bad_instances: Vec<String>,
    /// Servers that were in service after the last run (booting ones are not).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_service: Vec<String>,
    /// Recent stats samples, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<Sample>,
    /// Launches asked for; `instance_ids` is `None` until the cloud call returned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub launches: Vec<LaunchIntent>,
    /// Servers being drained before they are terminated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub draining: Vec<Draining>,
    /// Recent scale actions, oldest first (cooldown and the flapping check).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scale_history: Vec<ScaleEvent>,
    /// Recent target-policy recommendations: (Unix seconds, servers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recommendations: Vec<(i64, u32)>,
    /// The bound the last decision was held at, so that "capped" is reported once, not every run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capped: Option<Capped>,
    /// The last decision wanted a scale-down that no drainable server allowed, so that it is
    /// reported once, not every run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub scale_down_blocked: bool,
    /// The pool has been flapping (more direction reversals than `notify.rapid_scales` within
    /// `notify.rapid_window_s`) since a run reported it, so that "rapid" is reported once per
    /// episode, not every run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub flapping: bool,
    /// When (Unix seconds, the run's `now`) a run of this tool last reloaded HAProxy: a stats
    /// interval that spans it gives no rate, whatever the stats source can tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reloaded_at: Option<i64>,
    /// The pool's load per run for the forecast (`decide::forecast`): the last day one a run,
    /// the week before in ten-minute slots. The fleet's, in a shared state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_history: Vec<LoadPoint>,
    /// The pool's recent decisions, oldest first, for `history`: every run that launched,
    /// drained or terminated, and every run whose reason to hold differs from the one before.
    /// The fleet's, in a shared state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decisions: Vec<DecisionRecord>,
    /// Servers in service that HAProxy reports unhealthy (DOWN, NOLB, MAINT not set with
    /// `maintenance`), and since when (Unix seconds, the first run that saw it).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unhealthy_since: BTreeMap<String, i64>,
    /// Servers replaced in the last hour, as (Unix seconds, server): `max_replacements_per_hour`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replacements: Vec<(i64, String)>,
    /// Servers the operator put under maintenance (`maintenance POOL/SERVER on`): never drained,
    /// replaced or counted as capacity, kept in maintenance by every run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub maintenance: Vec<String>,
    /// Servers the operator protected (`protect POOL/SERVER on`): never drained nor replaced,
    /// as if tagged `haproxy-autoscaler:protected=true`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protected: Vec<String>,
}

/// One decision of one run, as `history` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// Unix seconds.
    pub at: i64,
    /// The node whose run took it.
    pub node: String,
    /// Capacity before the decision (in service + booting), and the capacity it reached.
    pub from: u32,
    pub to: u32,
    /// The policy's reason, as the plan said it.
    pub reason: String,
    /// Why the pool held (`cooldown`, `policy`, `at_max`, ...), when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<String>,
    /// The pool metric the decision used, and how old it was (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_age_s: Option<i64>,
    /// Instances asked for (new launches and launches sent again).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub launched: u32,
    /// Servers whose drain began, and instances terminated (their drain over).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drained: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub terminated: Vec<String>,
}

#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
fn is_zero(count: &u32) -> bool {
    *count == 0
}

/// One run's pool load, and the forecast that run made for `lead` seconds later.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LoadPoint {
    /// Unix seconds.
    pub at: i64,
    /// The pool's load (the metric summed over the servers in service).
    pub load: f64,
    /// The load this run forecast for `at + lead`, and the lead, when it made one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast: Option<(f64, i64)>,
    /// The highest load this run forecast over the policy's window from then, which `scale`
    /// acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak: Option<f64>,
}

/// One stats sample of one HAProxy node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Unix seconds.
    pub at: i64,
    /// Which HAProxy node took it (each node has its own counters).
    pub node: String,
    /// The worker's pid and uptime: a change means the counters were reset.
    pub pid: u64,
    pub uptime_s: u64,
    /// Counters per server name.
    pub servers: BTreeMap<String, ServerCounters>,
    /// The backend's queue.
    pub backend_qcur: Option<u64>,
    /// The pool metric this sample gave (`None`: no data, or a skipped interval).
    pub metric: Option<f64>,
    /// The pool's load this sample gave: the metric summed over the servers in service (the
    /// forecast policy's history). Absent in files written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<f64>,
    /// With a shared state, when other nodes' samples counted too: the pool's metric and load
    /// across every node that reported recently (the decision's), beside this node's own
    /// `metric` and `load` (what the others combine). Absent when this node was alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_metric: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_load: Option<f64>,
}

/// One server's counters in a sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerCounters {
    pub up: bool,
    pub scur: u64,
    pub stot: u64,
    pub req_tot: Option<u64>,
    pub rtime: Option<u64>,
}

/// A launch, written to state before the cloud is asked (invariant 5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchIntent {
    /// Sent as EC2 `ClientToken` and as the tag `haproxy-autoscaler:launch-token`.
    pub token: String,
    pub count: u32,
    pub requested_at: i64,
    pub instance_ids: Option<Vec<String>>,
    /// The last launch call for this intent returned (with an error): it is over, so the next
    /// run may re-send at once. Unset while a call may still be running (its run was killed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attempt_ended: bool,
}

/// A server being drained.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draining {
    pub id: String,
    pub since: i64,
    /// When a run decided to terminate it (its drain over): committed before the call, so no
    /// other node decides it again while the call may still run; the entry goes once the call
    /// returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminating_at: Option<i64>,
}

/// A change of capacity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleEvent {
    pub at: i64,
    pub from: u32,
    pub to: u32,
    /// The node whose run took the decision (absent in files written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// A scale-up's launch token: the decision's instances carry it as a tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// What the fleet knows of one node's runs (shared state): when it last lost a race.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// When (Unix seconds) this node last found that another node had changed the shared state
    /// first (a compare-and-swap conflict).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_conflict_at: Option<i64>,
}

impl Default for State {
    fn default() -> State {
        State {
            version: STATE_VERSION,
            config: None,
            installed_config_sha256: None,
            pools: BTreeMap::new(),
            nodes: BTreeMap::new(),
        }
    }
}

/// Which bound stopped the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capped {
    AtMax,
    AtMin,
}
