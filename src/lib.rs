//! haproxy-autoscaler: a one-shot reconciler that keeps HAProxy backends in sync with the cloud
//! instances of each pool. `ARCHITECTURE.md` at the repository root describes the parts and the
//! one-way flow of a run: config → observe → decide → apply → report.

pub mod app;
pub mod apply;
pub mod cli;
pub mod cloud;
pub mod command;
pub mod config;
pub mod decide;
pub mod error;
pub mod failpoint;
pub mod fs_atomic;
pub mod haproxy;
pub mod http;
pub mod logging;
pub mod model;
pub mod notify;
pub mod observe;
pub mod probe;
pub mod report;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
