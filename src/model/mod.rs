//! Plain data shared by every part of a run: instances and their endpoints, HAProxy's stats,
//! the state file's types, what was observed of each pool, and the one digest.
//!
//! No I/O and no async here: the decision core ([`crate::decide`]) imports only this and
//! [`crate::config`], and the shell builds these values from the world.

pub mod digest;
pub mod instance;
pub mod observation;
pub mod state;
pub mod stats;
pub mod tags;
pub mod text;
pub mod token;

pub use digest::sha256_hex;
pub use instance::{Endpoint, Instance, InstanceState, Unusable};
pub use observation::{Discovered, Observed, Reading};
pub use state::{
    Capped, Draining, LaunchIntent, NodeRecord, PoolState, STATE_VERSION, Sample, ScaleEvent,
    ServerCounters, State,
};
pub use stats::{HaproxyVersion, Info, OldWorkers, Row, ServerState, StatsSnapshot, Status};
pub use tags::Tags;
pub use token::{is_format_character, is_haproxy_token};
