//! `[pool.scaling]` and `[pool.launch]`: raw TOML shapes and their validation.
//!
//! Every key that the chosen policy does not use is refused, so that a `target = 15` left under
//! `policy = "threshold"` is caught instead of silently ignored.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::validate::Validator;
use super::{ConfigError, Key, PoolAt};

/// The load measure a policy looks at, per in-service server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
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
    /// One number from a PromQL instant query ([`ExternalMetric`]).
    Prometheus,
    /// One number printed by the operator's command ([`ExternalMetric`]).
    Command,
}

impl Metric {
    /// Every metric, in the order the README lists them.
    pub const ALL: [Metric; 7] = [
        Metric::SessionRate,
        Metric::RequestRate,
        Metric::CurrentSessions,
        Metric::Queue,
        Metric::ResponseTimeMs,
        Metric::Prometheus,
        Metric::Command,
    ];

    /// Read from outside HAProxy: one value for the whole pool, the same on every node.
    pub fn is_external(self) -> bool {
        matches!(self, Metric::Prometheus | Metric::Command)
    }

    /// The metric's name in `[pool.scaling] metric`.
    pub fn name(self) -> &'static str {
        match self {
            Metric::SessionRate => "session_rate",
            Metric::RequestRate => "request_rate",
            Metric::CurrentSessions => "current_sessions",
            Metric::Queue => "queue",
            Metric::ResponseTimeMs => "response_time_ms",
            Metric::Prometheus => "prometheus",
            Metric::Command => "command",
        }
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
    /// What the source is, for messages: the query or the command line (never a credential).
    pub fn describe(&self) -> String {
        match self {
            ExternalSource::Prometheus { url, query, .. } => format!("query `{query}` on {url}"),
            ExternalSource::Command(argv) => format!("`{}`", crate::command::display(argv)),
        }
    }
}

/// The default `metric_max_age_s`: two one-minute runs.
const DEFAULT_METRIC_MAX_AGE_S: i64 = 120;
/// The default `metric_timeout_s`.
const DEFAULT_METRIC_TIMEOUT_S: i64 = 10;

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
    },
}

/// A bound (`min` or `max`): a number, or a time-of-day schedule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum Bound {
    Fixed(u32),
    /// (minute of the day, value), sorted by minute; the value holds from that minute on, and
    /// the last entry wraps around midnight.
    Schedule(Vec<(u16, u32)>),
}

impl Bound {
    /// The bound at `minute` (0..1440) of the day.
    pub fn at(&self, minute: u16) -> u32 {
        match self {
            Bound::Fixed(value) => *value,
            Bound::Schedule(entries) => entries
                .iter()
                .rev()
                .find(|(start, _)| *start <= minute)
                .or_else(|| entries.last())
                .map(|(_, value)| *value)
                .expect("a schedule has at least one entry"),
        }
    }

    fn change_points(&self) -> Vec<u16> {
        match self {
            Bound::Fixed(_) => vec![0],
            Bound::Schedule(entries) => entries.iter().map(|(minute, _)| *minute).collect(),
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
    /// Set exactly when `metric` is external (`prometheus`, `command`).
    pub external: Option<ExternalMetric>,
    pub policy: Policy,
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

/// EC2's most user data, before base64.
const USER_DATA_LIMIT: usize = 16 * 1024;

/// The largest credential file read (its first line is the secret).
const SECRET_FILE_LIMIT: u64 = 64 * 1024;

/// True for a launch template id: `lt-` then 17 hexadecimal digits.
fn is_launch_template_id(value: &str) -> bool {
    value
        .strip_prefix("lt-")
        .is_some_and(|hex| hex.len() == 17 && hex.chars().all(|c| c.is_ascii_hexdigit()))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum RawBound {
    Fixed(i64),
    Schedule(BTreeMap<String, i64>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScaling {
    min: Option<RawBound>,
    max: Option<RawBound>,
    timezone: Option<String>,
    metric: Option<String>,
    policy: Option<String>,
    scale_up_above: Option<f64>,
    scale_down_below: Option<f64>,
    instance_ratio: Option<f64>,
    up_after: Option<i64>,
    down_after: Option<i64>,
    average_of: Option<i64>,
    target: Option<f64>,
    tolerance: Option<f64>,
    scale_down_window_s: Option<i64>,
    lead_s: Option<i64>,
    step_up: Option<i64>,
    step_down: Option<i64>,
    cooldown_s: Option<i64>,
    drain_s: Option<i64>,
    warmup_s: Option<i64>,
    per_server: Option<bool>,
    metric_max_age_s: Option<i64>,
    metric_timeout_s: Option<i64>,
    prometheus_url: Option<String>,
    query: Option<String>,
    basic_auth_file: Option<PathBuf>,
    bearer_token_file: Option<PathBuf>,
    metric_command: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLaunch {
    launch_template: Option<String>,
    launch_template_version: Option<toml::Value>,
    image_id: Option<String>,
    instance_type: Option<String>,
    #[serde(default)]
    security_group_ids: Vec<String>,
    #[serde(default)]
    subnet_ids: Vec<String>,
    key_name: Option<String>,
    user_data_file: Option<PathBuf>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

/// Tag keys the tool owns; a launch may not set them.
pub const TAG_POOL: &str = "haproxy-autoscaler:pool";
pub const TAG_LAUNCH_TOKEN: &str = "haproxy-autoscaler:launch-token";
pub const TAG_PROTECTED: &str = "haproxy-autoscaler:protected";

/// The policies, as `policy` names them, and the keys each one uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PolicyKind {
    Threshold,
    Consecutive,
    Average,
    Target,
    Peak,
}

impl PolicyKind {
    fn parse(name: &str) -> Option<PolicyKind> {
        match name {
            "threshold" => Some(PolicyKind::Threshold),
            "consecutive" => Some(PolicyKind::Consecutive),
            "average" => Some(PolicyKind::Average),
            "target" => Some(PolicyKind::Target),
            "peak" => Some(PolicyKind::Peak),
            _ => None,
        }
    }

    /// The keys of `[pool.scaling]` this policy reads; the others are refused.
    fn keys(self) -> &'static [&'static str] {
        match self {
            PolicyKind::Threshold => &["scale_up_above", "scale_down_below", "instance_ratio"],
            PolicyKind::Consecutive => &[
                "scale_up_above",
                "scale_down_below",
                "up_after",
                "down_after",
            ],
            PolicyKind::Average => &["scale_up_above", "scale_down_below", "average_of"],
            PolicyKind::Target => &["target", "tolerance", "scale_down_window_s"],
            PolicyKind::Peak => &["target", "tolerance", "scale_down_window_s", "lead_s"],
        }
    }
}

/// The most `lead_s` may be: a day (a trend is not followed further).
const LEAD_S_MOST: i64 = 86_400;

/// The most a count in `[pool.scaling]` may be.
const MOST: i64 = u32::MAX as i64;

impl Validator {
    pub(super) fn scaling(
        &self,
        pool: &PoolAt,
        raw: RawScaling,
        launcher: Launcher,
    ) -> Result<Scaling, ConfigError> {
        let at = |key: &str| pool.key(&format!("scaling.{key}"));
        let count = |key: &str, value: Option<i64>, default: i64, least: i64| {
            self.in_range(at(key), value.unwrap_or(default), least..=MOST)
        };
        let (min, max) = self.bounds(pool, raw.min.clone(), raw.max.clone())?;
        let timezone_name = raw.timezone.clone().unwrap_or_else(|| "UTC".to_owned());
        let timezone = jiff::tz::TimeZone::get(&timezone_name).map_err(|_| {
            self.invalid(
                at("timezone"),
                format!(
                    "unknown time zone `{timezone_name}`; use an IANA name such as `Europe/Paris`"
                ),
            )
        })?;
        let metric = self.metric(pool, raw.metric.as_deref())?;
        Ok(Scaling {
            min,
            max,
            timezone,
            timezone_name,
            metric,
            external: self.external(pool, metric, &raw)?,
            policy: self.policy(pool, &raw)?,
            step_up: count("step_up", raw.step_up, 1, 1)? as u32,
            step_down: count("step_down", raw.step_down, 1, 1)? as u32,
            cooldown_s: count("cooldown_s", raw.cooldown_s, 60, 0)? as u64,
            drain_s: count("drain_s", raw.drain_s, 120, 0)? as u64,
            warmup_s: count("warmup_s", raw.warmup_s, 90, 0)? as u64,
            launcher,
        })
    }

    /// `min` and `max`, and `min <= max` at every minute either changes.
    fn bounds(
        &self,
        pool: &PoolAt,
        min: Option<RawBound>,
        max: Option<RawBound>,
    ) -> Result<(Bound, Bound), ConfigError> {
        let min = self.bound(
            pool.key("scaling.min"),
            min.unwrap_or(RawBound::Fixed(1)),
            0,
        )?;
        let max = max.ok_or_else(|| {
            self.invalid(
                pool.key("scaling.max"),
                "is required: the most servers the pool may have",
            )
        })?;
        let max = self.bound(pool.key("scaling.max"), max, 1)?;
        let mut points = min.change_points();
        points.extend(max.change_points());
        for minute in points {
            if min.at(minute) > max.at(minute) {
                let when = match (&min, &max) {
                    (Bound::Fixed(_), Bound::Fixed(_)) => String::new(),
                    _ => format!(" at {:02}:{:02}", minute / 60, minute % 60),
                };
                return Err(self.invalid(
                    pool.key("scaling.min"),
                    format!(
                        "min {} is above max {}{when}",
                        min.at(minute),
                        max.at(minute)
                    ),
                ));
            }
        }
        Ok((min, max))
    }

    fn metric(&self, pool: &PoolAt, name: Option<&str>) -> Result<Metric, ConfigError> {
        let name = name.unwrap_or(Metric::SessionRate.name());
        Metric::ALL
            .into_iter()
            .find(|metric| metric.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Metric::ALL.iter().map(|metric| metric.name()).collect();
                self.invalid(
                    pool.key("scaling.metric"),
                    format!("unknown metric `{name}`; expected {}", names.join(", ")),
                )
            })
    }

    /// An external metric's source and reading, from the keys of its `metric`; a key of another
    /// source is refused.
    fn external(
        &self,
        pool: &PoolAt,
        metric: Metric,
        raw: &RawScaling,
    ) -> Result<Option<ExternalMetric>, ConfigError> {
        let at = |key: &str| pool.key(&format!("scaling.{key}"));
        let given = [
            ("per_server", raw.per_server.is_some()),
            ("metric_max_age_s", raw.metric_max_age_s.is_some()),
            ("metric_timeout_s", raw.metric_timeout_s.is_some()),
            ("prometheus_url", raw.prometheus_url.is_some()),
            ("query", raw.query.is_some()),
            ("basic_auth_file", raw.basic_auth_file.is_some()),
            ("bearer_token_file", raw.bearer_token_file.is_some()),
            ("metric_command", raw.metric_command.is_some()),
        ];
        let keys: &[&str] = match metric {
            Metric::Prometheus => &[
                "per_server",
                "metric_max_age_s",
                "metric_timeout_s",
                "prometheus_url",
                "query",
                "basic_auth_file",
                "bearer_token_file",
            ],
            Metric::Command => &[
                "per_server",
                "metric_max_age_s",
                "metric_timeout_s",
                "metric_command",
            ],
            _ => &[],
        };
        if let Some((key, _)) = given.iter().find(|(key, set)| *set && !keys.contains(key)) {
            return Err(self.invalid(
                at(key),
                format!(
                    "is not used by metric `{}`; remove it or change `metric`",
                    metric.name()
                ),
            ));
        }
        let required = |key: &str, why: &str| {
            self.invalid(
                at(key),
                format!("is required by metric `{}`: {why}", metric.name()),
            )
        };
        let source = match metric {
            Metric::Prometheus => {
                let url = raw.prometheus_url.clone().ok_or_else(|| {
                    required(
                        "prometheus_url",
                        "the server, such as http://127.0.0.1:9090",
                    )
                })?;
                if !(url.starts_with("http://") || url.starts_with("https://")) || url.contains('?')
                {
                    return Err(self.invalid(
                        at("prometheus_url"),
                        format!("`{url}` is not an http:// or https:// URL without a query"),
                    ));
                }
                // A password in the URL would be printed in every message naming it.
                let authority = url.split("://").nth(1).unwrap_or_default();
                if authority
                    .split('/')
                    .next()
                    .unwrap_or_default()
                    .contains('@')
                {
                    return Err(self.invalid(
                        at("prometheus_url"),
                        "must not hold a user or password (it would show in messages): put `user:password` in a basic_auth_file",
                    ));
                }
                let query = raw
                    .query
                    .clone()
                    .ok_or_else(|| required("query", "the PromQL that gives the pool's number"))?;
                let query = self.non_empty(at("query"), query)?;
                let authorization = match (&raw.basic_auth_file, &raw.bearer_token_file) {
                    (Some(_), Some(_)) => {
                        return Err(self.invalid(
                            at("bearer_token_file"),
                            "is not used with `basic_auth_file`: give one of the two",
                        ));
                    }
                    (Some(file), None) => {
                        let pair = self.secret_file(at("basic_auth_file"), file)?;
                        if !pair.contains(':') {
                            return Err(self.invalid(
                                at("basic_auth_file"),
                                "must hold `user:password` on one line",
                            ));
                        }
                        Some(format!(
                            "Basic {}",
                            base64::Engine::encode(
                                &base64::engine::general_purpose::STANDARD,
                                pair.as_bytes()
                            )
                        ))
                    }
                    (None, Some(file)) => Some(format!(
                        "Bearer {}",
                        self.secret_file(at("bearer_token_file"), file)?
                    )),
                    (None, None) => None,
                };
                ExternalSource::Prometheus {
                    url: url.trim_end_matches('/').to_owned(),
                    query,
                    authorization: authorization.map(super::Secret::new),
                }
            }
            Metric::Command => {
                let argv = raw.metric_command.clone().ok_or_else(|| {
                    required(
                        "metric_command",
                        "the program that prints the pool's number",
                    )
                })?;
                ExternalSource::Command(self.argv(at("metric_command"), argv)?)
            }
            _ => return Ok(None),
        };
        let per_server = raw.per_server.ok_or_else(|| {
            required(
                "per_server",
                "true divides the value by the servers in service (a queue length), false takes it as each server's (a CPU average)",
            )
        })?;
        let max_age_s = self.in_range(
            at("metric_max_age_s"),
            raw.metric_max_age_s.unwrap_or(DEFAULT_METRIC_MAX_AGE_S),
            1..=MOST,
        )?;
        let timeout_s = self.in_range(
            at("metric_timeout_s"),
            raw.metric_timeout_s.unwrap_or(DEFAULT_METRIC_TIMEOUT_S),
            1..=300,
        )?;
        Ok(Some(ExternalMetric {
            source,
            per_server,
            max_age_s: max_age_s as u64,
            timeout: Duration::from_secs(timeout_s as u64),
        }))
    }

    /// The first line of a credential file, read now so that a missing file fails the config.
    fn secret_file(&self, key: Key, file: &std::path::Path) -> Result<String, ConfigError> {
        let path = self.path(file.to_owned());
        let text = crate::fs_atomic::read_text(&path, SECRET_FILE_LIMIT).map_err(|error| {
            self.invalid(
                key.clone(),
                format!("cannot read `{}`: {error}", path.display()),
            )
        })?;
        let line = text.lines().next().unwrap_or_default().trim().to_owned();
        if line.is_empty() {
            return Err(self.invalid(key, format!("`{}` is empty", path.display())));
        }
        // It goes into an HTTP header: only visible ASCII and spaces (never quoted: a secret).
        if !line.chars().all(|c| c == ' ' || c.is_ascii_graphic()) {
            return Err(self.invalid(
                key,
                format!(
                    "`{}` holds a character an HTTP header cannot carry (a control character or one that is not ASCII)",
                    path.display()
                ),
            ));
        }
        Ok(line)
    }

    /// The policy and its keys; a key another policy uses is refused.
    fn policy(&self, pool: &PoolAt, raw: &RawScaling) -> Result<Policy, ConfigError> {
        let at = |key: &str| pool.key(&format!("scaling.{key}"));
        // `target` alone names the peak policy; HPA's rule is `policy = "target"`.
        let default = if raw.target.is_some() {
            "peak"
        } else {
            "threshold"
        };
        let name = raw.policy.as_deref().unwrap_or(default);
        let kind = PolicyKind::parse(name).ok_or_else(|| {
            self.invalid(
                at("policy"),
                format!(
                    "unknown policy `{name}`; expected threshold, consecutive, average, target or peak"
                ),
            )
        })?;
        let given = [
            ("scale_up_above", raw.scale_up_above.is_some()),
            ("scale_down_below", raw.scale_down_below.is_some()),
            ("instance_ratio", raw.instance_ratio.is_some()),
            ("up_after", raw.up_after.is_some()),
            ("down_after", raw.down_after.is_some()),
            ("average_of", raw.average_of.is_some()),
            ("target", raw.target.is_some()),
            ("tolerance", raw.tolerance.is_some()),
            ("scale_down_window_s", raw.scale_down_window_s.is_some()),
            ("lead_s", raw.lead_s.is_some()),
        ];
        if let Some((key, _)) = given
            .iter()
            .find(|(key, set)| *set && !kind.keys().contains(key))
        {
            return Err(self.invalid(
                at(key),
                format!("is not used by policy `{name}`; remove it or change `policy`"),
            ));
        }
        let count = |key: &str, value: Option<i64>, default: i64| {
            self.in_range(at(key), value.unwrap_or(default), 1..=MOST)
        };
        Ok(match kind {
            PolicyKind::Threshold => {
                let (up, down) = self.thresholds(pool, raw, name)?;
                let ratio = raw.instance_ratio.unwrap_or(0.5);
                if !(ratio > 0.0 && ratio <= 1.0) {
                    return Err(self.invalid(
                        at("instance_ratio"),
                        format!("must be above 0 and at most 1, got {ratio}"),
                    ));
                }
                Policy::Threshold { up, down, ratio }
            }
            PolicyKind::Consecutive => {
                let (up, down) = self.thresholds(pool, raw, name)?;
                Policy::Consecutive {
                    up,
                    down,
                    up_after: count("up_after", raw.up_after, 3)? as u32,
                    down_after: count("down_after", raw.down_after, 5)? as u32,
                }
            }
            PolicyKind::Average => {
                let (up, down) = self.thresholds(pool, raw, name)?;
                Policy::Average {
                    up,
                    down,
                    average_of: count("average_of", raw.average_of, 3)? as u32,
                }
            }
            PolicyKind::Target => {
                let (target, tolerance, window_s) = self.target(pool, raw, name, 300)?;
                Policy::Target {
                    target,
                    tolerance,
                    window_s,
                }
            }
            PolicyKind::Peak => {
                let (target, tolerance, window_s) = self.target(pool, raw, name, 600)?;
                let lead_s =
                    self.in_range(at("lead_s"), raw.lead_s.unwrap_or(0), 0..=LEAD_S_MOST)?;
                Policy::Peak {
                    target,
                    tolerance,
                    window_s,
                    lead_s: lead_s as u64,
                }
            }
        })
    }

    /// `scale_up_above` and `scale_down_below`, each judged on its own first so that the
    /// message names the one at fault.
    fn thresholds(
        &self,
        pool: &PoolAt,
        raw: &RawScaling,
        policy: &str,
    ) -> Result<(f64, f64), ConfigError> {
        let at = |key: &str| pool.key(&format!("scaling.{key}"));
        let required =
            |key: &str| self.invalid(at(key), format!("is required by policy `{policy}`"));
        let up = raw
            .scale_up_above
            .ok_or_else(|| required("scale_up_above"))?;
        let down = raw
            .scale_down_below
            .ok_or_else(|| required("scale_down_below"))?;
        if !(up.is_finite() && up > 0.0) {
            return Err(self.invalid(
                at("scale_up_above"),
                format!("must be a number above 0, got {up}"),
            ));
        }
        if !(down.is_finite() && down >= 0.0 && up > down) {
            return Err(self.invalid(
                at("scale_down_below"),
                format!("must be a number at least 0 and below scale_up_above ({up}), got {down}"),
            ));
        }
        Ok((up, down))
    }

    /// `target`, `tolerance` and the scale-down window, as the target and forecast policies
    /// read them.
    fn target(
        &self,
        pool: &PoolAt,
        raw: &RawScaling,
        policy: &str,
        default_window_s: i64,
    ) -> Result<(f64, f64, u64), ConfigError> {
        let at = |key: &str| pool.key(&format!("scaling.{key}"));
        let target = raw.target.ok_or_else(|| {
            self.invalid(at("target"), format!("is required by policy `{policy}`"))
        })?;
        if !(target.is_finite() && target > 0.0) {
            return Err(self.invalid(at("target"), format!("must be above 0, got {target}")));
        }
        let tolerance = raw.tolerance.unwrap_or(0.1);
        if !(0.0..1.0).contains(&tolerance) {
            return Err(self.invalid(
                at("tolerance"),
                format!("must be at least 0 and below 1, got {tolerance}"),
            ));
        }
        let window_s = raw.scale_down_window_s.unwrap_or(default_window_s);
        let window_s = self.in_range(at("scale_down_window_s"), window_s, 0..=MOST)? as u64;
        Ok((target, tolerance, window_s))
    }

    fn bound(&self, key: Key, raw: RawBound, least: i64) -> Result<Bound, ConfigError> {
        let value = |value: i64| -> Result<u32, ConfigError> {
            if value < least || value > 10_000 {
                return Err(self.invalid(
                    key.clone(),
                    format!("must be between {least} and 10000, got {value}"),
                ));
            }
            Ok(value as u32)
        };
        match raw {
            RawBound::Fixed(fixed) => Ok(Bound::Fixed(value(fixed)?)),
            RawBound::Schedule(entries) => {
                if entries.is_empty() {
                    return Err(self.invalid(
                        key.clone(),
                        "a schedule needs at least one `\"HH:MM\" = N` entry",
                    ));
                }
                let mut schedule = Vec::with_capacity(entries.len());
                for (time, count) in entries {
                    let minute = parse_time_of_day(&time).ok_or_else(|| {
                        self.invalid(
                            key.clone(),
                            format!("`{time}` is not a time of day `HH:MM`"),
                        )
                    })?;
                    schedule.push((minute, value(count)?));
                }
                schedule.sort_unstable();
                Ok(Bound::Schedule(schedule))
            }
        }
    }

    pub(super) fn launch(&self, pool: &PoolAt, raw: RawLaunch) -> Result<Launch, ConfigError> {
        let at = |key: &str| pool.key(&format!("launch.{key}"));
        if raw.launch_template.is_none() && (raw.image_id.is_none() || raw.instance_type.is_none())
        {
            return Err(self.invalid(
                at("image_id"),
                "needs `launch_template`, or both `image_id` and `instance_type`",
            ));
        }
        for key in raw.tags.keys() {
            if key.starts_with("haproxy-autoscaler:") {
                return Err(self.invalid(
                    at("tags"),
                    format!("tag `{key}` is set by haproxy-autoscaler itself"),
                ));
            }
        }
        let version = match raw.launch_template_version {
            None => None,
            Some(toml::Value::Integer(number)) if number >= 1 => Some(number.to_string()),
            Some(toml::Value::String(text))
                if text == "$Latest"
                    || text == "$Default"
                    || (!text.is_empty() && text.chars().all(|c| c.is_ascii_digit())) =>
            {
                Some(text)
            }
            Some(other) => {
                return Err(self.invalid(
                    at("launch_template_version"),
                    format!("`{other}`: expected a version number, \"$Latest\" or \"$Default\""),
                ));
            }
        };
        let launch_template = match raw.launch_template {
            None if version.is_some() => {
                return Err(self.invalid(
                    at("launch_template_version"),
                    "is only meaningful with `launch_template`",
                ));
            }
            None => None,
            Some(template) if template.trim().is_empty() => {
                return Err(self.invalid(at("launch_template"), "must not be empty"));
            }
            Some(template) => Some(LaunchTemplate {
                reference: if is_launch_template_id(&template) {
                    LaunchTemplateRef::Id(template)
                } else {
                    LaunchTemplateRef::Name(template)
                },
                version,
            }),
        };
        let user_data = match raw.user_data_file {
            None => None,
            Some(path) => {
                let path = self.path(path);
                let data = crate::fs_atomic::read_regular(&path, 4 * USER_DATA_LIMIT as u64)
                    .map_err(|error| {
                        self.invalid(
                            at("user_data_file"),
                            format!("cannot read `{}`: {error}", path.display()),
                        )
                    })?;
                if data.len() > USER_DATA_LIMIT {
                    return Err(self.invalid(
                        at("user_data_file"),
                        format!(
                            "`{}` is {} bytes; EC2 takes at most {USER_DATA_LIMIT}",
                            path.display(),
                            data.len()
                        ),
                    ));
                }
                Some(data)
            }
        };
        Ok(Launch {
            launch_template,
            image_id: raw.image_id,
            instance_type: raw.instance_type,
            security_group_ids: raw.security_group_ids,
            subnet_ids: raw.subnet_ids,
            key_name: raw.key_name,
            user_data,
            tags: raw.tags,
        })
    }
}

/// `HH:MM` → minute of the day.
fn parse_time_of_day(text: &str) -> Option<u16> {
    let (hours, minutes) = text.split_once(':')?;
    let (hours, minutes): (u16, u16) = (hours.parse().ok()?, minutes.parse().ok()?);
    (hours < 24 && minutes < 60 && text.len() == 5).then_some(hours * 60 + minutes)
}

#[cfg(test)]
mod tests {
    use crate::config::{Bound, Config, Metric, Policy};
    use std::path::Path;

    fn pool(scaling: &str) -> String {
        format!(
            "[haproxy]\nstats_socket = \"/run/haproxy/admin.sock\"\n[[pool]]\nname = \"web\"\nport = 80\n[pool.discover]\nsecurity_group = \"web\"\n[pool.launch]\nimage_id = \"ami-1\"\ninstance_type = \"t3.micro\"\n[pool.scaling]\n{scaling}\n"
        )
    }

    fn parse(scaling: &str) -> Result<Config, crate::config::ConfigError> {
        Config::parse(&pool(scaling), Path::new("test.toml"))
    }

    #[test]
    fn defaults() {
        let config = parse("max = 4\nscale_up_above = 20\nscale_down_below = 10").unwrap();
        let scaling = config.pools[0].scaling.clone().unwrap();
        assert_eq!(scaling.min, Bound::Fixed(1));
        assert_eq!(scaling.max, Bound::Fixed(4));
        assert_eq!(scaling.metric, Metric::SessionRate);
        assert_eq!(
            scaling.policy,
            Policy::Threshold {
                up: 20.0,
                down: 10.0,
                ratio: 0.5
            }
        );
        assert_eq!((scaling.step_up, scaling.step_down), (1, 1));
        assert_eq!(
            (scaling.cooldown_s, scaling.drain_s, scaling.warmup_s),
            (60, 120, 90)
        );
        assert_eq!(scaling.timezone_name, "UTC");
        let target = parse("max = 4\npolicy = \"target\"\ntarget = 15")
            .unwrap()
            .pools[0]
            .scaling
            .clone()
            .unwrap();
        assert_eq!(
            target.policy,
            Policy::Target {
                target: 15.0,
                tolerance: 0.1,
                window_s: 300
            }
        );
        let consecutive =
            parse("max = 4\npolicy = \"consecutive\"\nscale_up_above = 2\nscale_down_below = 1")
                .unwrap();
        let peak = parse("max = 4\ntarget = 15").unwrap().pools[0]
            .scaling
            .clone()
            .unwrap();
        assert_eq!(
            peak.policy,
            Policy::Peak {
                target: 15.0,
                tolerance: 0.1,
                window_s: 600,
                lead_s: 0
            }
        );
        assert_eq!(
            consecutive.pools[0].scaling.as_ref().unwrap().policy,
            Policy::Consecutive {
                up: 2.0,
                down: 1.0,
                up_after: 3,
                down_after: 5
            }
        );
        let average =
            parse("max = 4\npolicy = \"average\"\nscale_up_above = 2\nscale_down_below = 1")
                .unwrap();
        assert_eq!(
            average.pools[0].scaling.as_ref().unwrap().policy,
            Policy::Average {
                up: 2.0,
                down: 1.0,
                average_of: 3
            }
        );
    }

    #[test]
    fn an_external_metric_names_its_source_and_how_to_read_it() {
        use crate::config::{ExternalMetric, ExternalSource};
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cr3t\n").unwrap();
        let auth = dir.path().join("auth");
        std::fs::write(&auth, "scaler:pa:ss\n").unwrap();
        let external = |keys: &str| {
            parse(&format!("max = 4\ntarget = 0.6\n{keys}")).map(|config| {
                let scaling = config.pools[0].scaling.clone().unwrap();
                (scaling.metric, scaling.external.unwrap())
            })
        };
        let (metric, prometheus) = external(&format!(
            "metric = \"prometheus\"\nprometheus_url = \"http://127.0.0.1:9090/\"\nquery = \"avg(cpu)\"\nper_server = false\nbearer_token_file = \"{}\"",
            token.display()
        ))
        .unwrap();
        assert_eq!(metric, Metric::Prometheus);
        assert_eq!(
            prometheus,
            ExternalMetric {
                source: ExternalSource::Prometheus {
                    url: "http://127.0.0.1:9090".into(),
                    query: "avg(cpu)".into(),
                    authorization: Some(crate::config::Secret::new("Bearer s3cr3t".into())),
                },
                per_server: false,
                max_age_s: 120,
                timeout: std::time::Duration::from_secs(10),
            }
        );
        // The credential never shows, not even in Debug.
        assert!(!format!("{prometheus:?}").contains("s3cr3t"));
        let (_, basic) = external(&format!(
            "metric = \"prometheus\"\nprometheus_url = \"https://prom\"\nquery = \"q\"\nper_server = true\nbasic_auth_file = \"{}\"",
            auth.display()
        ))
        .unwrap();
        let ExternalSource::Prometheus { authorization, .. } = basic.source else {
            panic!("{basic:?}");
        };
        // base64("scaler:pa:ss")
        assert_eq!(authorization.unwrap().expose(), "Basic c2NhbGVyOnBhOnNz");
        let (metric, command) = external(
            "metric = \"command\"\nmetric_command = [\"/bin/queue-length\", \"jobs\"]\nper_server = true\nmetric_max_age_s = 300\nmetric_timeout_s = 3",
        )
        .unwrap();
        assert_eq!(metric, Metric::Command);
        assert_eq!(
            (
                command.source,
                command.per_server,
                command.max_age_s,
                command.timeout
            ),
            (
                ExternalSource::Command(vec!["/bin/queue-length".into(), "jobs".into()]),
                true,
                300,
                std::time::Duration::from_secs(3)
            )
        );
        let escaped = dir.path().join("escaped");
        std::fs::write(&escaped, "s3\u{1b}[2Jcr3t\n").unwrap();
        let refused: [(String, &[&str]); 12] = [
            (
                format!("metric = \"prometheus\"\nprometheus_url = \"http://p\"\nquery = \"q\"\nper_server = true\nbearer_token_file = \"{}\"", escaped.display()),
                &["scaling.bearer_token_file", "a character an HTTP header cannot carry"],
            ),
            (
                "metric = \"prometheus\"\nprometheus_url = \"http://me:pw@p:9090\"\nquery = \"q\"\nper_server = true".into(),
                &["scaling.prometheus_url", "must not hold a user or password", "basic_auth_file"],
            ),
            (
                "metric = \"prometheus\"\nquery = \"q\"\nper_server = true".into(),
                &["scaling.prometheus_url", "required by metric `prometheus`"],
            ),
            (
                "metric = \"prometheus\"\nprometheus_url = \"http://p\"\nper_server = true".into(),
                &["scaling.query", "required"],
            ),
            (
                "metric = \"prometheus\"\nprometheus_url = \"http://p\"\nquery = \"q\"".into(),
                &["scaling.per_server", "required", "a queue length", "a CPU average"],
            ),
            (
                "metric = \"prometheus\"\nprometheus_url = \"p:9090\"\nquery = \"q\"\nper_server = true".into(),
                &["scaling.prometheus_url", "not an http:// or https:// URL"],
            ),
            (
                "metric = \"prometheus\"\nprometheus_url = \"http://p\"\nquery = \" \"\nper_server = true".into(),
                &["scaling.query", "must not be empty"],
            ),
            (
                "metric = \"prometheus\"\nprometheus_url = \"http://p\"\nquery = \"q\"\nper_server = true\nbearer_token_file = \"/nonexistent/token\"".into(),
                &["scaling.bearer_token_file", "cannot read `/nonexistent/token`"],
            ),
            (
                format!("metric = \"prometheus\"\nprometheus_url = \"http://p\"\nquery = \"q\"\nper_server = true\nbasic_auth_file = \"{}\"", token.display()),
                &["scaling.basic_auth_file", "user:password"],
            ),
            (
                "metric = \"command\"\nper_server = true\nquery = \"q\"".into(),
                &["scaling.query", "not used by metric `command`"],
            ),
            (
                "metric = \"request_rate\"\nper_server = true".into(),
                &["scaling.per_server", "not used by metric `request_rate`"],
            ),
            (
                "metric = \"command\"\nmetric_command = []\nper_server = true".into(),
                &["scaling.metric_command", "empty"],
            ),
        ];
        for (keys, words) in refused {
            let error = external(&keys).unwrap_err().to_string();
            assert!(
                words.iter().all(|word| error.contains(word)),
                "{keys}: {error}"
            );
        }
    }

    #[test]
    fn schedules_pick_the_entry_in_force_and_wrap_at_midnight() {
        let config = parse("min = { \"08:00\" = 3, \"18:00\" = 1 }\nmax = 10\ntimezone = \"Europe/Paris\"\nscale_up_above = 2\nscale_down_below = 1").unwrap();
        let min = &config.pools[0].scaling.as_ref().unwrap().min;
        assert_eq!(
            min.at(0),
            1,
            "before the first entry, the last one of the day before holds"
        );
        assert_eq!(min.at(8 * 60), 3);
        assert_eq!(min.at(17 * 60 + 59), 3);
        assert_eq!(min.at(18 * 60), 1);
    }

    #[test]
    fn invalid_scaling_names_the_key() {
        let cases: [(&str, &[&str]); 23] = [
            (
                "scale_up_above = 2\nscale_down_below = 1",
                &["scaling.max", "required"],
            ),
            (
                "max = 0\nscale_up_above = 2\nscale_down_below = 1",
                &["scaling.max", "got 0"],
            ),
            (
                "min = 5\nmax = 3\nscale_up_above = 2\nscale_down_below = 1",
                &["scaling.min", "min 5 is above max 3"],
            ),
            (
                "min = -1\nmax = 3\nscale_up_above = 2\nscale_down_below = 1",
                &["scaling.min", "got -1"],
            ),
            (
                "min = { \"8h\" = 2 }\nmax = 3\nscale_up_above = 2\nscale_down_below = 1",
                &["scaling.min", "`8h`"],
            ),
            (
                "min = { \"08:00\" = 4 }\nmax = { \"00:00\" = 5, \"09:00\" = 3 }\nscale_up_above = 2\nscale_down_below = 1",
                &["min 4 is above max 3 at 09:00"],
            ),
            (
                "max = 3\nscale_up_above = 2\nscale_down_below = 1\ntimezone = \"Mars/Base\"",
                &["scaling.timezone", "Mars/Base"],
            ),
            (
                "max = 3\nmetric = \"cpu\"\nscale_up_above = 2\nscale_down_below = 1",
                &["scaling.metric", "`cpu`"],
            ),
            ("max = 3\npolicy = \"pid\"", &["scaling.policy", "`pid`"]),
            (
                "max = 3\nscale_up_above = 2",
                &["scaling.scale_down_below", "required"],
            ),
            (
                "max = 3\nscale_up_above = 1\nscale_down_below = 2",
                &["scaling.scale_down_below", "below scale_up_above"],
            ),
            (
                "max = 3\nscale_up_above = 2\nscale_down_below = 1\ntarget = 5",
                // `target` alone names the peak policy, which has no thresholds.
                &["scaling.scale_up_above", "not used by policy `peak`"],
            ),
            (
                "policy = \"threshold\"\nmax = 3\nscale_up_above = 2\nscale_down_below = 1\ntarget = 5",
                &["scaling.target", "not used by policy `threshold`"],
            ),
            (
                "policy = \"peak\"\nmax = 3\ntarget = 5\nscale_up_above = 6",
                &["scaling.scale_up_above", "not used by policy `peak`"],
            ),
            (
                "max = 3\nscale_up_above = 2\nscale_down_below = 1\ninstance_ratio = 0",
                &["scaling.instance_ratio"],
            ),
            (
                "max = 3\nscale_up_above = 2\nscale_down_below = 1\nstep_up = 0",
                &["scaling.step_up", "between 1 and 4294967295, got 0"],
            ),
            (
                "max = 3\npolicy = \"target\"\ntarget = 5\ntolerance = 1.5",
                &["scaling.tolerance"],
            ),
            (
                "max = 3\npolicy = \"target\"\ntarget = 5\nlead_s = 180",
                &["scaling.lead_s", "not used by policy `target`"],
            ),
            (
                "max = 3\ntarget = 5\nlead_s = 86401",
                &["scaling.lead_s", "between 0 and 86400, got 86401"],
            ),
            // Issue 10, class 21: the key at fault and the real bound.
            (
                "max = 3\nscale_up_above = nan\nscale_down_below = 1",
                &["scaling.scale_up_above", "got NaN"],
            ),
            (
                "max = 3\nscale_up_above = -inf\nscale_down_below = 1",
                &["scaling.scale_up_above", "above 0"],
            ),
            (
                "max = 3\nscale_up_above = 2\nscale_down_below = 1\ncooldown_s = 99999999999",
                &[
                    "scaling.cooldown_s",
                    "between 0 and 4294967295, got 99999999999",
                ],
            ),
            (
                "max = 3\nscale_up_above = 2\nscale_down_below = nan",
                &["scaling.scale_down_below", "got NaN"],
            ),
        ];
        for (scaling, expected) in cases {
            let error = parse(scaling).expect_err(scaling).to_string();
            for word in expected {
                assert!(
                    error.contains(word),
                    "for\n{scaling}\ngot `{error}`, expected `{word}`"
                );
            }
        }
        let no_launch = pool("max = 3\nscale_up_above = 2\nscale_down_below = 1").replace(
            "[pool.launch]\nimage_id = \"ami-1\"\ninstance_type = \"t3.micro\"\n",
            "",
        );
        let error = Config::parse(&no_launch, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("needs `[pool.launch]`"), "{error}");
        let reserved = pool("max = 3\nscale_up_above = 2\nscale_down_below = 1").replace(
            "instance_type = \"t3.micro\"\n",
            "instance_type = \"t3.micro\"\ntags = { \"haproxy-autoscaler:pool\" = \"x\" }\n",
        );
        let error = Config::parse(&reserved, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("set by haproxy-autoscaler itself"),
            "{error}"
        );
    }
}
