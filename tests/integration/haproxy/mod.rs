//! Everything that talks to a real HAProxy: `haproxy -c` as the check (the crash tests check
//! every candidate with it), master-worker reloads, the runtime API, `status`, the local demo. This module is the HAProxy version matrix: the
//! whole suite runs it against Debian's HAProxy, and `scripts/test.sh` runs it again against each
//! other version (`cargo test --test integration -- haproxy::` with `HAPROXY` naming the binary).
//! A test that starts HAProxy or names its binary belongs here (`architecture.rs` checks).

pub(crate) mod crash;
mod fleet;
mod healing;
mod local_demo;
pub(crate) mod real;
mod runtime_api;
mod status;
