//! `[pool.scaling]` and `[pool.launch]`, validated: plain data. Their TOML shapes are in
//! `raw.rs`, their validation in `validate_scaling.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

/// The load measure a policy looks at, per in-service server. Serialized as its name.
#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    /// New sessions per second (from the `stot` counter).
    SessionRate,
    /// HTTP requests per second (from the `req_tot` counter).
    RequestRate,
    /// Current sessions (`scur`).
    CurrentSessions,
    /// Requests queued in the backend (`qcur`), per in-service server.
    Queue,
    /// Average response time (`rtime`), in ms.
    ResponseTimeMs,
    /// One number from outside HAProxy: a PromQL instant query or the operator's command, with
    /// where to read it and how.
    External(ExternalMetric),
}

impl Metric {
    /// Whether the metric counts requests or sessions (a rate, or those in progress), in the
    /// unit of the requests queued in the backend.
    pub fn counts_requests(&self) -> bool {
        matches!(
            self,
            Metric::SessionRate | Metric::RequestRate | Metric::CurrentSessions
        )
    }

    /// Every metric's name in `[pool.scaling] metric`, in the order the README lists them.
    pub const NAMES: [&'static str; 7] = [
        "session_rate",
        "request_rate",
        "current_sessions",
        "queue",
        "response_time_ms",
        "prometheus",
        "command",
    ];

    /// Read from outside HAProxy: one value for the whole pool, the same on every node.
    pub fn is_external(&self) -> bool {
        self.external().is_some()
    }

    /// Where and how an external metric is read.
    pub fn external(&self) -> Option<&ExternalMetric> {
        match self {
            Metric::External(external) => Some(external),
            _ => None,
        }
    }

    /// The metric's name in `[pool.scaling] metric`.
    pub fn name(&self) -> &'static str {
        match self {
            Metric::SessionRate => "session_rate",
            Metric::RequestRate => "request_rate",
            Metric::CurrentSessions => "current_sessions",
            Metric::Queue => "queue",
            Metric::ResponseTimeMs => "response_time_ms",
            Metric::External(external) => external.source.name(),
        }
    }
}

impl serde::Serialize for Metric {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// A metric read from outside HAProxy: where, and how its one number becomes the per-server
/// figure a policy compares with its thresholds or target.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ExternalMetric {
    #[serde(skip)]
    pub source: ExternalSource,
    /// `true`: the value is the pool's total (a queue length) and is divided by the servers in
    /// service; `false`: it already is each server's (a CPU average).
    pub per_server: bool,
    /// A value older than this (by its timestamp) is no data.
    pub max_age_s: u64,
    /// How long the query or the command may take.
    #[serde(skip)]
    pub timeout: Duration,
}

/// Where an external metric comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ExternalSource {
    /// `GET {url}/api/v1/query?query=...`: an instant query that returns one number.
    Prometheus {
        url: String,
        query: String,
        /// The `Authorization` header's value, read from `basic_auth_file` (`user:password`)
        /// or `bearer_token_file` when the config is loaded.
        authorization: Option<super::Secret>,
    },
    /// argv; prints one number, or `{"value": N}` (with an optional `"at"`, Unix seconds).
    Command(Vec<String>),
}

impl ExternalSource {
    /// The metric's name for this source.
    pub fn name(&self) -> &'static str {
        match self {
            ExternalSource::Prometheus { .. } => "prometheus",
            ExternalSource::Command(_) => "command",
        }
    }

    /// What the source is, for messages: the query or the command line (never a credential).
    pub fn describe(&self) -> String {
        match self {
            ExternalSource::Prometheus { url, query, .. } => format!("query `{query}` on {url}"),
            ExternalSource::Command(argv) => format!("`{}`", crate::model::text::shell_words(argv)),
        }
    }
}

/// The default `metric_max_age_s`: two one-minute runs.
pub(super) const DEFAULT_METRIC_MAX_AGE_S: i64 = 120;
/// The default `metric_timeout_s`.
pub(super) const DEFAULT_METRIC_TIMEOUT_S: i64 = 10;

/// How the desired number of servers is decided. Serialized (in `simulate --format json`) with
/// the names of its `[pool.scaling]` keys.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "policy", rename_all = "snake_case")]
pub enum Policy {
    /// loadscale-perl: when `instance_ratio` of the servers are above `up` → +step_up; below
    /// `down` → −step_down.
    Threshold {
        #[serde(rename = "scale_up_above")]
        up: f64,
        #[serde(rename = "scale_down_below")]
        down: f64,
        #[serde(rename = "instance_ratio")]
        ratio: f64,
    },
    /// autoscalebot: the pool average above `up` for `up_after` runs in a row → up; below `down`
    /// for `down_after` runs → down.
    Consecutive {
        #[serde(rename = "scale_up_above")]
        up: f64,
        #[serde(rename = "scale_down_below")]
        down: f64,
        up_after: u32,
        down_after: u32,
    },
    /// The mean of the last `average_of` pool averages above `up` → up; below `down` → down.
    Average {
        #[serde(rename = "scale_up_above")]
        up: f64,
        #[serde(rename = "scale_down_below")]
        down: f64,
        average_of: u32,
    },
    /// Kubernetes HPA: desired = ceil(in_service × metric / target), nothing within ±tolerance,
    /// scale-down to the highest recommendation of the last `window_s` seconds.
    Target {
        target: f64,
        tolerance: f64,
        #[serde(rename = "scale_down_window_s")]
        window_s: u64,
    },
    /// The default when `target` is given: HPA's rule on the highest load of the last
    /// `window_s` seconds (default 600) instead of this run's, or on this run's load carried
    /// `lead_s` ahead along the window's rise when that is higher: launches at once for the
    /// recent peak or the coming load, scales down only when the peak has left the window.
    Peak {
        target: f64,
        tolerance: f64,
        #[serde(rename = "scale_down_window_s")]
        window_s: u64,
        /// How far ahead a rising load is projected (0, the default: not at all); the time from
        /// a launch to the new server taking traffic, plus one run, when the load rises smoothly.
        lead_s: u64,
        /// The pool keeps what this quantile of its load over the last hour needs (0: the
        /// lowest load of the hour, which the window's peak always covers, so no effect).
        headroom_quantile: f64,
        /// How far below `target` per server the pool's need must fall before it scales down
        /// (`tolerance` is the band above).
        scale_down_tolerance: f64,
    },
}

/// A bound (`min` or `max`): a number, or a time-of-day schedule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum Bound {
    Fixed(u32),
    Schedule(Schedule),
}

/// A time-of-day schedule: (minute of the day, value) entries, at least one, sorted by minute;
/// the value holds from that minute on, and the last entry wraps around midnight. Serialized
/// as the list of its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    first: (u16, u32),
    rest: Vec<(u16, u32)>,
}

impl Schedule {
    /// The schedule of `entries`, sorted; `None` when there is none.
    pub fn new(mut entries: Vec<(u16, u32)>) -> Option<Schedule> {
        entries.sort_unstable();
        let mut entries = entries.into_iter();
        let first = entries.next()?;
        Some(Schedule {
            first,
            rest: entries.collect(),
        })
    }

    /// The entries, by minute.
    pub fn entries(&self) -> impl DoubleEndedIterator<Item = &(u16, u32)> {
        std::iter::once(&self.first).chain(&self.rest)
    }
}

impl serde::Serialize for Schedule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.entries())
    }
}

impl Bound {
    /// The bound at `minute` (0..1440) of the day.
    pub fn at(&self, minute: u16) -> u32 {
        match self {
            Bound::Fixed(value) => *value,
            Bound::Schedule(schedule) => {
                let last = schedule.rest.last().unwrap_or(&schedule.first);
                schedule
                    .entries()
                    .rev()
                    .find(|(start, _)| *start <= minute)
                    .unwrap_or(last)
                    .1
            }
        }
    }

    pub(super) fn change_points(&self) -> Vec<u16> {
        match self {
            Bound::Fixed(_) => vec![0],
            Bound::Schedule(schedule) => schedule.entries().map(|(minute, _)| *minute).collect(),
        }
    }
}

/// `forecast`: what the forecast of the pool's load does (every policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ForecastMode {
    /// Not computed.
    Off,
    /// Computed, shown and scored; it changes nothing.
    Observe,
    /// Computed, shown and scored, and it raises the capacity to what the forecast load needs.
    Scale,
}

impl ForecastMode {
    pub const ALL: [ForecastMode; 3] = [
        ForecastMode::Off,
        ForecastMode::Observe,
        ForecastMode::Scale,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ForecastMode::Off => "off",
            ForecastMode::Observe => "observe",
            ForecastMode::Scale => "scale",
        }
    }
}

/// `[pool.scaling]`, validated.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Scaling {
    pub min: Bound,
    pub max: Bound,
    #[serde(skip)]
    pub timezone: jiff::tz::TimeZone,
    pub timezone_name: String,
    pub metric: Metric,
    pub policy: Policy,
    /// Requests queued in the backend per server in service above which the pool is saturated
    /// and grows, whatever its metric reads (every policy).
    pub saturation_queue: f64,
    /// What the forecast of the pool's load does.
    pub forecast: ForecastMode,
    /// How far ahead it forecasts: from a launch to the server taking traffic, plus a run.
    pub forecast_lead_s: u64,
    /// At most this many scale actions in any hour (the policy's and the forecast's; bound
    /// repairs and the saturation guard are not held by it).
    pub max_actions_per_hour: Option<u32>,
    /// A server in service that HAProxy has reported DOWN, NOLB or MAINT (not set with
    /// `maintenance`) for this long stops counting as capacity and is replaced; 0: never.
    pub unhealthy_after_s: u64,
    /// At most this many servers replaced in any hour (a broken image does not churn the pool).
    pub max_replacements_per_hour: u32,
    pub step_up: u32,
    pub step_down: u32,
    pub cooldown_s: u64,
    pub drain_s: u64,
    pub warmup_s: u64,
    /// How the pool launches and terminates instances: a scaling pool always can.
    #[serde(skip)]
    pub launcher: Launcher,
}

/// How a scaling pool launches and terminates instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launcher {
    /// `[pool.launch]`: RunInstances with these settings, TerminateInstances.
    Ec2(Launch),
    /// `[pool.exec]`'s `launch` and `terminate` commands (argv), killed after `timeout` like
    /// `list`.
    Exec {
        launch: Vec<String>,
        terminate: Vec<String>,
        timeout: Duration,
    },
}

impl Launcher {
    /// How long one launch call may run: the exec command's timeout, or one EC2 attempt. An
    /// intent is re-sent only once a first attempt can no longer be running.
    pub fn launch_timeout(&self, aws: &super::AwsConfig) -> Duration {
        match self {
            Launcher::Ec2(_) => aws.attempt_timeout,
            Launcher::Exec { timeout, .. } => *timeout,
        }
    }
}

/// `[pool.launch]` for EC2, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub launch_template: Option<LaunchTemplate>,
    pub image_id: Option<String>,
    pub instance_type: Option<String>,
    pub security_group_ids: Vec<String>,
    pub subnet_ids: Vec<String>,
    pub key_name: Option<String>,
    /// The contents of `user_data_file`, read when the config is loaded so that a missing file
    /// fails the config (exit 2, also under `--plan`), not the launch.
    pub user_data: Option<Vec<u8>>,
    pub tags: BTreeMap<String, String>,
}

/// `launch_template`: an id (`lt-` and 17 hex digits) or a name, with its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchTemplate {
    pub reference: LaunchTemplateRef,
    /// `launch_template_version`: a number, `$Latest` or `$Default` (EC2's default when unset).
    pub version: Option<String>,
}

/// How a launch template is named to EC2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaunchTemplateRef {
    Id(String),
    Name(String),
}

/// Tag keys the tool owns; a launch may not set them.
pub(crate) const TAG_POOL: &str = "haproxy-autoscaler:pool";
pub(crate) const TAG_LAUNCH_TOKEN: &str = "haproxy-autoscaler:launch-token";
pub(crate) const TAG_PROTECTED: &str = "haproxy-autoscaler:protected";
