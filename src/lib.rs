//! haproxy-autoscaler: a one-shot reconciler that keeps HAProxy backends in sync with the cloud
//! instances of each pool. `ARCHITECTURE.md` at the repository root describes the parts and the
//! one-way flow of a run: config → observe → decide → apply → report.

pub mod app;
mod apply;
mod check;
pub mod cli;
mod cloud;
mod command;
pub mod config;
pub mod decide;
pub mod error;
mod error_chain;
mod exchange;
mod external;
pub mod failpoint;
mod fs_atomic;
pub mod haproxy;
mod hosts;
mod http;
mod init;
pub mod logging;
mod manual;
mod metrics;
pub mod model;
mod notify;
mod observe;
mod probe;
mod reconcile;
pub mod report;
pub mod simulate;
mod status;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
