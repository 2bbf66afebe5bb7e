//! End-to-end tests of the real binary against moto (in server mode) and Debian's HAProxy.

mod architecture;
mod cli;
mod cloud_faults;
mod crash;
mod discovery;
mod exec;
mod external_metrics;
mod files;
mod haproxy_real;
mod hostile;
mod hostile_classes;
mod local_demo;
mod moto;
mod operator;
mod plan_output;
mod runtime_api;
mod scaling;
mod shared_state;
mod simulate;
mod tools;
mod util;
