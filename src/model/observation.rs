//! What the shell observed of one pool, with each instance's endpoint resolved once.

use std::collections::BTreeMap;

use crate::model::{Endpoint, Instance, StatsSnapshot, Unusable};

/// One listed instance and where HAProxy would reach it (or why it cannot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    pub instance: Instance,
    pub endpoint: Result<Endpoint, Unusable>,
}

/// What a pool's provider, HAProxy and the readiness probes reported this run.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub instances: Vec<Discovered>,
    /// Scaling pools: the backend's stats, `None` if they could not be read.
    pub stats: Option<StatsSnapshot>,
    /// Scaling pools: readiness probe results.
    pub ready: BTreeMap<String, bool>,
    /// Scaling pools: instance ids found for launch tokens without recorded ids.
    pub found_by_token: BTreeMap<String, Vec<String>>,
}
