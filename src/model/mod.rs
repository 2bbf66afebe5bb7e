//! Plain data shared by every part of a run: instances and their endpoints, HAProxy's stats,
//! the state file's types, what was observed of each pool, and the one digest.
//!
//! No I/O and no async here: the decision core ([`crate::decide`]) imports only this and
//! [`crate::config`], and the shell builds these values from the world.

// The core's functions stay short enough to read whole (100 lines; allowed elsewhere in
// Cargo.toml).
#![warn(clippy::too_many_lines)]

pub(crate) mod digest;
pub(crate) mod instance;
pub(crate) mod observation;
pub(crate) mod state;
pub(crate) mod stats;
pub(crate) mod tags;
pub(crate) mod text;
pub(crate) mod token;

pub(crate) use digest::{hex, sha256_hex};
pub(crate) use instance::{Endpoint, Instance, InstanceState, Unusable};
pub(crate) use observation::{Discovered, Observed, Reading};
pub(crate) use state::{
    Capped, DecisionRecord, Draining, LaunchIntent, LoadPoint, PoolState, STATE_VERSION, Sample,
    ScaleEvent, ServerCounters, State,
};
pub(crate) use stats::{HaproxyVersion, Info, OldWorkers, Row, ServerState, StatsSnapshot, Status};
pub(crate) use tags::Tags;
pub(crate) use token::{is_format_character, is_haproxy_token};
