//! Named crash points in the apply path, for the crash-recovery tests (invariant 1 and 2).
//!
//! Compiled in only with the `failpoints` feature, which the crate's own dev-dependency turns on
//! for test builds; in any other build [`hit`] is an empty inline function. With the feature,
//! `HAPROXY_AUTOSCALER_FAILPOINT=NAME` makes the run abort at the point named NAME: no
//! destructor runs, no lock is released, no temporary file is removed, as in a real crash.

/// The environment variable that names the point to crash at.
pub const ENV: &str = "HAPROXY_AUTOSCALER_FAILPOINT";

/// The environment variable that names a point to pause at, for tests that act while a run is
/// there (another node's commit, say): `NAME:PATH`. At NAME the run creates `PATH.reached`,
/// then waits until `PATH` exists (at most a minute).
pub const WAIT_ENV: &str = "HAPROXY_AUTOSCALER_FAILPOINT_WAIT";

/// Every point, in the order a run reaches them.
pub const POINTS: [&str; 10] = [
    "after-decision-committed",
    "after-launch-intent-saved",
    "after-run-instances",
    "after-drain",
    "after-candidate-written",
    "after-runtime-commands",
    "after-install",
    "after-reload",
    "after-terminate",
    "before-state-save",
];

/// Aborts the process if `name` is the configured fail point.
#[cfg(feature = "failpoints")]
pub(crate) fn hit(name: &'static str) {
    debug_assert!(POINTS.contains(&name), "unknown fail point {name}");
    if std::env::var_os(ENV).is_some_and(|value| value == name) {
        // Test builds only, a constant text: printed directly, so that the adapters it stops
        // (layer 5) need not import the report (layer 4).
        eprintln!("fail point `{name}`: aborting");
        std::process::abort();
    }
    let wait = std::env::var(WAIT_ENV).unwrap_or_default();
    if let Some((point, release)) = wait.split_once(':')
        && point == name
    {
        let _ = std::fs::write(format!("{release}.reached"), name);
        let deadline = std::time::Instant::now() + std::time::Duration::from_mins(1);
        while !std::path::Path::new(release).exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// Does nothing: this build has no fail points.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn hit(_name: &'static str) {}
