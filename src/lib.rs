//! haproxy-autoscaler: a one-shot reconciler that keeps HAProxy backends in sync with the cloud
//! instances of each pool. See `ARCHITECTURE` in the README for the shape of a run.

pub mod app;
pub mod apply;
pub mod cli;
pub mod cloud;
pub mod command;
pub mod config;
pub mod error;
pub mod failpoint;
pub mod fs_atomic;
pub mod haproxy;
pub mod http;
pub mod lifecycle;
pub mod logging;
pub mod notify;
pub mod plan;
pub mod policy;
pub mod probe;
pub mod state;
pub mod text;
