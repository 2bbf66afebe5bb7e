//! What HAProxy's stats say, as typed data: the rows of `show stat`, `show info`, and one node's
//! snapshot of a backend. Parsing `show stat` and `show info` lives with the socket
//! (`crate::haproxy::stats`); a status word is read here ([`Status::parse`]).

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// `UP`, or `UP 1/3` (up, failing checks).
    Up,
    /// `no check`: up as far as HAProxy knows.
    NoCheck,
    /// `DOWN`, or `DOWN 1/2` (down, passing checks).
    Down,
    /// `DRAIN`: takes no new sessions except persistent ones.
    Drain,
    /// `MAINT`, `MAINT (via ...)`, `MAINT (resolution)`.
    Maint,
    /// Anything else (`NOLB`, `OPEN`, ...), kept verbatim.
    Other(String),
}

impl Status {
    pub fn parse(text: &str) -> Status {
        let word = text.split_whitespace().next().unwrap_or_default();
        match word {
            "UP" => Status::Up,
            "DOWN" => Status::Down,
            "DRAIN" => Status::Drain,
            "MAINT" => Status::Maint,
            "no" if text.trim() == "no check" => Status::NoCheck,
            _ => Status::Other(text.to_owned()),
        }
    }

    /// Takes traffic as far as HAProxy is concerned.
    pub fn is_up(&self) -> bool {
        matches!(self, Status::Up | Status::NoCheck)
    }
}

/// One `show stat` line of interest: a server, or a backend's `BACKEND` line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Row {
    pub proxy: String,
    pub name: String,
    pub status: Status,
    /// Current sessions.
    pub scur: u64,
    /// Total sessions (a counter).
    pub stot: u64,
    /// Total HTTP requests (a counter; on server lines in 2.6 too), when the proxy is HTTP.
    pub req_tot: Option<u64>,
    /// Queued requests.
    pub qcur: Option<u64>,
    /// Average response time over the last 1024 requests, in ms.
    pub rtime: Option<u64>,
    /// Sessions per second over the last second, and HTTP requests per second (`status`).
    pub rate: Option<u64>,
    pub req_rate: Option<u64>,
    /// The last health check's result (`L4OK`, `L7STS`, ...); `None` without checks.
    pub check_status: Option<String>,
}

impl Row {
    /// A line of `proxy`'s `name` with no traffic, no queue and no check yet.
    pub fn idle(proxy: &str, name: &str, status: Status) -> Row {
        Row {
            proxy: proxy.to_owned(),
            name: name.to_owned(),
            status,
            scur: 0,
            stot: 0,
            req_tot: None,
            qcur: None,
            rtime: None,
            rate: None,
            req_rate: None,
            check_status: None,
        }
    }

    pub fn is_backend(&self) -> bool {
        self.name == "BACKEND"
    }
}

/// What `show info` tells about the running process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Info {
    pub pid: u64,
    pub uptime_s: u64,
    /// `Version:`, when it says one (the stats page does not).
    pub version: Option<HaproxyVersion>,
}

/// The version of a running HAProxy, from `show info`'s `Version:` (`3.2.0-e134140d2`,
/// `2.6.12-1+deb12u4`): what the runtime API accepts differs between versions.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct HaproxyVersion {
    pub major: u32,
    pub minor: u32,
}

impl HaproxyVersion {
    /// Reads `MAJOR.MINOR` off the front of a version string; `None` when it does not start so.
    pub fn parse(text: &str) -> Option<HaproxyVersion> {
        let mut numbers = text.trim().split(['.', '-']);
        Some(HaproxyVersion {
            major: numbers.next()?.parse().ok()?,
            minor: numbers.next()?.parse().ok()?,
        })
    }
}

impl std::fmt::Display for HaproxyVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// One HAProxy node's stats for a backend.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StatsSnapshot {
    pub node: String,
    pub info: Info,
    /// This backend's server lines and its `BACKEND` line.
    pub rows: Vec<Row>,
    /// Workers from before a reload that are still running: the stats come from the current
    /// worker only, and an old one may still be finishing requests on a draining server.
    pub old_workers: OldWorkers,
}

/// What the master CLI says about workers from before a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OldWorkers {
    /// No master socket configured: the current worker's sessions are all there is to go by.
    Untracked,
    Running(usize),
    /// The master socket could not be read: a drain runs its full `drain_s`.
    Unknown,
}

/// One server of `show servers state`: what the runtime API's read-back compares with haproxy.cfg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    pub backend: String,
    pub name: String,
    pub address: String,
    pub port: u16,
    /// `srv_admin_state`: bit flags (forced, inherited, config and resolver maintenance, drain).
    pub admin: u32,
    /// The weight HAProxy uses now (`srv_uweight`).
    pub weight: u32,
    /// `srv_check_state`: bit flags (configured, enabled, paused ...).
    pub check: u32,
}

impl ServerState {
    /// In maintenance (forced, inherited or by the resolver): takes no traffic.
    pub fn in_maintenance(&self) -> bool {
        self.admin & 0x23 != 0
    }

    /// Its health check is configured and enabled.
    pub fn checked(&self) -> bool {
        self.check & 0x06 == 0x06
    }
}
