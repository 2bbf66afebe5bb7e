//! The decision core: facts in, a [`plan::Plan`] out. Pure: no I/O, no clock, no randomness.
//!
//! It imports only [`crate::model`] and [`crate::config`] (and its tests `crate::testing`); a
//! test (`decide_imports_no_io`) fails the build if a file here names `tokio`, `std::fs`,
//! `std::net`, `std::process`, `std::env`, a clock, logging, the cloud, HAProxy's runtime or a
//! state store.

pub mod address;
pub mod context;
pub mod diff;
pub mod installed_servers;
pub mod membership;
pub mod plan;
pub mod policy;
pub mod render;
pub mod runtime;
pub mod scaling;
