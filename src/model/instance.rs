//! An instance as a provider reports it, and the endpoint HAProxy reaches it at.
//!
//! Plain data: providers build it, the decision core reads it.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Tags;

/// One instance as the provider reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub id: String,
    pub state: InstanceState,
    pub private_ip: Option<String>,
    pub public_ip: Option<String>,
    /// The port, when the provider knows it (exec); otherwise the pool's `port`.
    pub port: Option<u16>,
    /// RFC 3339.
    pub launch_time: Option<String>,
    pub zone: Option<String>,
    pub image_id: Option<String>,
    pub tags: Tags,
}

/// The instance states discovery returns; stopped or terminated instances are not listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    Pending,
    Running,
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InstanceState::Pending => "pending",
            InstanceState::Running => "running",
        })
    }
}

/// Where HAProxy (and the readiness probe) reaches an instance: a plain host (an IP address, an
/// IPv6 address in brackets, or a DNS name) and a port other than 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Why an instance has no usable endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unusable {
    /// Not there yet (a pending instance without an IP): it is left out quietly until it has one.
    NotYet(String),
    /// There, but not usable (an address tag that is not `host:port`): the operator must fix it.
    Bad(String),
}
