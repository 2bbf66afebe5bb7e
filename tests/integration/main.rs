//! End-to-end tests of the real binary against moto (in server mode) and a real HAProxy
//! (Debian's, or the one `HAPROXY` names: see `haproxy/`).

#![allow(
    clippy::items_after_statements,
    clippy::needless_pass_by_value,
    reason = "a test's helpers stay beside the step that uses them, and its fixtures are handed over as they are written (`json!(..)`)"
)]

mod architecture;
mod cli;
mod cloud_faults;
mod discovery;
mod exec;
mod external_metrics;
mod files;
mod forecast;
mod haproxy;
mod healing;
mod hostile;
mod hostile_classes;
mod hostile_newer;
mod moto;
mod operator;
mod plan_output;
mod saved_plan;
mod scaling;
mod scripts;
mod shared_state;
mod simulate;
mod tools;
mod util;
