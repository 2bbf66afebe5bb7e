//! The decision core: facts in, a [`plan::Plan`] out. Pure: no I/O, no clock, no randomness.
//!
//! It imports only [`crate::model`] and [`crate::config`] (and its tests `crate::testing`); a
//! test (`decide_imports_no_io`) fails the build if a file here names `tokio`, `std::fs`,
//! `std::net`, `std::process`, `std::env`, a clock, logging, the cloud, HAProxy's runtime or a
//! state store.

// The core's functions stay short enough to read whole (100 lines; allowed elsewhere in
// Cargo.toml).
#![warn(clippy::too_many_lines)]

pub(crate) mod address;
pub(crate) mod context;
pub(crate) mod diff;
pub(crate) mod forecast;
pub(crate) mod installed_servers;
pub(crate) mod membership;
pub(crate) mod plan;
pub(crate) mod policy;
pub(crate) mod render;
pub(crate) mod runtime;
pub(crate) mod scaling;
