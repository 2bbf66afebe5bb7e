//! What the shell observed of one pool, with each instance's endpoint resolved once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{Endpoint, Instance, StatsSnapshot, Unusable};

/// One listed instance and where HAProxy would reach it (or why it cannot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discovered {
    pub instance: Instance,
    pub endpoint: Result<Endpoint, Unusable>,
}

/// What a pool's provider, HAProxy and the readiness probes reported this run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Observed {
    pub instances: Vec<Discovered>,
    /// Scaling pools: the backend's stats, `None` if they could not be read.
    pub stats: Option<StatsSnapshot>,
    /// Scaling pools: readiness probe results.
    pub ready: BTreeMap<String, bool>,
    /// Scaling pools: instance ids found for launch tokens without recorded ids.
    pub found_by_token: BTreeMap<String, Vec<String>>,
    /// Scaling pools with an external metric: what its source answered.
    pub external: Option<Reading>,
}

/// What an external metric's source answered this run, as it said it: judged by the pure core.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reading {
    /// One value, as the source wrote it (`"0.42"`, `"NaN"`, `"+Inf"`), and when it was
    /// measured (Unix seconds), if the source says.
    Value { text: String, at: Option<f64> },
    /// No value, and why: the source failed, answered nothing, or answered several series.
    Missing(String),
}
