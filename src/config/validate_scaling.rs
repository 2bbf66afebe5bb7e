//! `[pool.scaling]` and `[pool.launch]`: their raw TOML (in `raw.rs`) validated into the
//! types of `scaling.rs`, each error naming the file, line, pool and key. Reads the files the
//! keys name (user data, credentials), bounded.
//!
//! Every key that the chosen policy does not use is refused, so that a `target = 15` left under
//! `policy = "threshold"` is caught instead of silently ignored.

use std::time::Duration;

use super::raw::{RawBound, RawLaunch, RawScaling};
use super::scaling::{
    Bound, DEFAULT_METRIC_MAX_AGE_S, DEFAULT_METRIC_TIMEOUT_S, ExternalMetric, ExternalSource,
    ForecastMode, Launch, LaunchTemplate, LaunchTemplateRef, Launcher, Metric, Policy, Scaling,
    Schedule,
};
use super::validate::Validator;
use super::{ConfigError, Key, PoolAt};

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
    const ALL: [PolicyKind; 5] = [
        PolicyKind::Threshold,
        PolicyKind::Consecutive,
        PolicyKind::Average,
        PolicyKind::Target,
        PolicyKind::Peak,
    ];

    fn name(self) -> &'static str {
        match self {
            PolicyKind::Threshold => "threshold",
            PolicyKind::Consecutive => "consecutive",
            PolicyKind::Average => "average",
            PolicyKind::Target => "target",
            PolicyKind::Peak => "peak",
        }
    }

    fn parse(name: &str) -> Option<PolicyKind> {
        PolicyKind::ALL.into_iter().find(|kind| kind.name() == name)
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
            PolicyKind::Peak => &[
                "target",
                "tolerance",
                "scale_down_window_s",
                "lead_s",
                "headroom_quantile",
                "scale_down_tolerance",
            ],
        }
    }
}

/// Requests queued per server in service above which a pool is saturated, by default: with
/// `maxconn` on the servers HAProxy queues only when every one of them is full, and a queue
/// this long at the instant of a run's sample is demand the servers do not keep up with.
const DEFAULT_SATURATION_QUEUE: f64 = 1.0;

/// The peak policy's `headroom_quantile` by default: the pool keeps what the load of the last
/// hour needs at its 80th percentile (see `scripts/policy-protocol.sh` and the README).
const DEFAULT_HEADROOM_QUANTILE: f64 = 0.8;

/// The peak policy's `scale_down_tolerance` by default (or `tolerance`, if that is more): a
/// pool scales down only once what it needs is a quarter below what it has, so that a load
/// that wanders a little does not drain a server and launch it back.
const DEFAULT_SCALE_DOWN_TOLERANCE: f64 = 0.25;

/// The most `lead_s` may be: a day (a trend is not followed further).
const LEAD_S_MOST: i64 = 86_400;

/// The most a count in `[pool.scaling]` may be.
const MOST: i64 = u32::MAX as i64;

impl Validator {
    pub(super) fn scaling(
        &self,
        pool: &PoolAt,
        raw: &RawScaling,
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
        let metric = self.metric(pool, raw.metric.as_deref(), raw)?;
        let saturation_queue = raw.saturation_queue.unwrap_or(DEFAULT_SATURATION_QUEUE);
        if !(saturation_queue.is_finite() && saturation_queue > 0.0) {
            return Err(self.invalid(
                at("saturation_queue"),
                format!("must be a number above 0, got {saturation_queue}"),
            ));
        }
        let forecast = match raw.forecast.as_deref() {
            None => ForecastMode::Off,
            Some(name) => ForecastMode::ALL
                .into_iter()
                .find(|mode| mode.name() == name)
                .ok_or_else(|| {
                    self.invalid(
                        at("forecast"),
                        format!(
                            "unknown forecast `{name}`; expected {}",
                            ForecastMode::ALL.map(ForecastMode::name).join(", ")
                        ),
                    )
                })?,
        };
        let forecast_lead_s = count("forecast_lead_s", raw.forecast_lead_s, 180, 0)? as u64;
        // The state keeps the last 50 scale actions: a limit above that could not be counted.
        let max_actions_per_hour = raw
            .max_actions_per_hour
            .map(|limit| self.in_range(at("max_actions_per_hour"), limit, 1..=50))
            .transpose()?
            .map(|limit| limit as u32);
        let unhealthy_after_s = count("unhealthy_after_s", raw.unhealthy_after_s, 300, 0)? as u64;
        let max_replacements_per_hour = self.in_range(
            at("max_replacements_per_hour"),
            raw.max_replacements_per_hour.unwrap_or(2),
            0..=50,
        )? as u32;
        Ok(Scaling {
            min,
            max,
            timezone,
            timezone_name,
            metric,
            policy: self.policy(pool, raw)?,
            saturation_queue,
            forecast,
            forecast_lead_s,
            max_actions_per_hour,
            unhealthy_after_s,
            max_replacements_per_hour,
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
            &pool.key("scaling.min"),
            min.unwrap_or(RawBound::Fixed(1)),
            0,
        )?;
        let max = max.ok_or_else(|| {
            self.invalid(
                pool.key("scaling.max"),
                "is required: the most servers the pool may have",
            )
        })?;
        let max = self.bound(&pool.key("scaling.max"), max, 1)?;
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

    /// The metric `name` says (the default: `session_rate`), an external one with its source
    /// and reading from its keys; a key of another metric is refused.
    fn metric(
        &self,
        pool: &PoolAt,
        name: Option<&str>,
        raw: &RawScaling,
    ) -> Result<Metric, ConfigError> {
        let name = name.unwrap_or("session_rate");
        let builtin = match name {
            "session_rate" => Some(Metric::SessionRate),
            "request_rate" => Some(Metric::RequestRate),
            "current_sessions" => Some(Metric::CurrentSessions),
            "queue" => Some(Metric::Queue),
            "response_time_ms" => Some(Metric::ResponseTimeMs),
            "prometheus" | "command" => None,
            _ => {
                return Err(self.invalid(
                    pool.key("scaling.metric"),
                    format!(
                        "unknown metric `{name}`; expected {}",
                        Metric::NAMES.join(", ")
                    ),
                ));
            }
        };
        match (builtin, self.external(pool, name, raw)?) {
            (Some(builtin), _) => Ok(builtin),
            (None, Some(external)) => Ok(Metric::External(external)),
            // `external` gives a reading for `prometheus` and `command`, or an error.
            (None, None) => Err(self.invalid(
                pool.key("scaling.metric"),
                format!("metric `{name}` needs its keys"),
            )),
        }
    }

    /// An external metric's source and reading, from the keys of its `metric`; a key of another
    /// source is refused.
    fn external(
        &self,
        pool: &PoolAt,
        metric: &str,
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
            "prometheus" => &[
                "per_server",
                "metric_max_age_s",
                "metric_timeout_s",
                "prometheus_url",
                "query",
                "basic_auth_file",
                "bearer_token_file",
            ],
            "command" => &[
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
                format!("is not used by metric `{metric}`; remove it or change `metric`"),
            ));
        }
        let required = |key: &str, why: &str| {
            self.invalid(at(key), format!("is required by metric `{metric}`: {why}"))
        };
        let source = match metric {
            "prometheus" => {
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
            "command" => {
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
            ("headroom_quantile", raw.headroom_quantile.is_some()),
            ("scale_down_tolerance", raw.scale_down_tolerance.is_some()),
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
                let headroom_quantile = raw.headroom_quantile.unwrap_or(DEFAULT_HEADROOM_QUANTILE);
                if !(0.0..=1.0).contains(&headroom_quantile) {
                    return Err(self.invalid(
                        at("headroom_quantile"),
                        format!("must be between 0 and 1, got {headroom_quantile}"),
                    ));
                }
                let scale_down_tolerance = raw
                    .scale_down_tolerance
                    .unwrap_or(DEFAULT_SCALE_DOWN_TOLERANCE.max(tolerance));
                if !(0.0..1.0).contains(&scale_down_tolerance) {
                    return Err(self.invalid(
                        at("scale_down_tolerance"),
                        format!("must be at least 0 and below 1, got {scale_down_tolerance}"),
                    ));
                }
                Policy::Peak {
                    target,
                    tolerance,
                    window_s,
                    lead_s: lead_s as u64,
                    headroom_quantile,
                    scale_down_tolerance,
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

    fn bound(&self, key: &Key, raw: RawBound, least: i64) -> Result<Bound, ConfigError> {
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
                Schedule::new(schedule).map(Bound::Schedule).ok_or_else(|| {
                    self.invalid(
                        key.clone(),
                        "a schedule needs at least one `\"HH:MM\" = N` entry",
                    )
                })
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
    use crate::config::scaling::Bound;
    use crate::config::{Config, Metric, Policy};
    use std::path::Path;

    fn pool(scaling: &str) -> String {
        format!(
            "[haproxy]\nstats_socket = \"/run/haproxy/admin.sock\"\n[[pool]]\nname = \"web\"\nport = 80\n[pool.discover]\nsecurity_group = \"web\"\n[pool.launch]\nimage_id = \"ami-1\"\ninstance_type = \"t3.micro\"\n[pool.scaling]\n{scaling}\n"
        )
    }

    fn parse(scaling: &str) -> Result<Config, crate::config::ConfigError> {
        Config::parse(&pool(scaling), Path::new("test.toml"))
    }

    /// A key set under a policy that does not read it is refused, for every policy and every
    /// key any policy reads: a key added to a policy's `keys()` but not to the keys `policy`
    /// checks as given would be accepted silently.
    #[test]
    fn every_policy_key_is_refused_by_the_policies_that_do_not_read_it() {
        use super::PolicyKind;
        let mut keys: Vec<&str> = PolicyKind::ALL
            .iter()
            .flat_map(|kind| kind.keys())
            .copied()
            .collect();
        keys.sort_unstable();
        keys.dedup();
        for kind in PolicyKind::ALL {
            let needed = if kind.keys().contains(&"target") {
                "target = 15"
            } else {
                "scale_up_above = 20\nscale_down_below = 10"
            };
            parse(&format!("max = 4\npolicy = \"{}\"\n{needed}", kind.name()))
                .unwrap_or_else(|error| panic!("{}: {error}", kind.name()));
            for key in keys.iter().filter(|key| !kind.keys().contains(key)) {
                let text = format!("max = 4\npolicy = \"{}\"\n{needed}\n{key} = 1", kind.name());
                let error = parse(&text).expect_err(&text).to_string();
                assert!(
                    error.contains(key) && error.contains("is not used by policy"),
                    "{}: {key}: {error}",
                    kind.name()
                );
            }
        }
    }

    #[test]
    fn the_common_keys_of_issue_31_are_checked() {
        let scaling = |extra: &str| {
            parse(&format!(
                "max = 4\nscale_up_above = 20\nscale_down_below = 10\n{extra}"
            ))
            .map(|config| config.pools[0].scaling.clone().unwrap())
        };
        let fine = scaling("saturation_queue = 2.5\nforecast = \"observe\"\nforecast_lead_s = 300\nmax_actions_per_hour = 12").unwrap();
        assert_eq!(
            (
                fine.saturation_queue,
                fine.forecast,
                fine.forecast_lead_s,
                fine.max_actions_per_hour
            ),
            (2.5, crate::config::ForecastMode::Observe, 300, Some(12))
        );
        let defaults = scaling("").unwrap();
        assert_eq!(
            (
                defaults.saturation_queue,
                defaults.forecast,
                defaults.forecast_lead_s,
                defaults.max_actions_per_hour
            ),
            (1.0, crate::config::ForecastMode::Off, 180, None)
        );
        for (extra, words) in [
            (
                "saturation_queue = 0",
                "`scaling.saturation_queue`: must be a number above 0, got 0",
            ),
            ("saturation_queue = -1", "must be a number above 0, got -1"),
            (
                "forecast = \"later\"",
                "unknown forecast `later`; expected off, observe, scale",
            ),
            ("forecast_lead_s = -1", "`scaling.forecast_lead_s`"),
            ("max_actions_per_hour = 0", "`scaling.max_actions_per_hour`"),
            (
                "max_actions_per_hour = 51",
                "`scaling.max_actions_per_hour`",
            ),
        ] {
            let error = scaling(extra).unwrap_err().to_string();
            assert!(error.contains(words), "{extra}: {error}");
        }
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
                lead_s: 0,
                headroom_quantile: 0.8,
                scale_down_tolerance: 0.25,
            }
        );
        // A `tolerance` above the scale-down tolerance's default is the band below too; each
        // can be set.
        let wide = parse("max = 4\ntarget = 15\ntolerance = 0.3\nheadroom_quantile = 0")
            .unwrap()
            .pools[0]
            .scaling
            .clone()
            .unwrap();
        let narrow = parse("max = 4\ntarget = 15\nscale_down_tolerance = 0.05")
            .unwrap()
            .pools[0]
            .scaling
            .clone()
            .unwrap();
        assert!(matches!(
            wide.policy,
            Policy::Peak {
                headroom_quantile: 0.0,
                scale_down_tolerance: 0.3,
                ..
            }
        ));
        assert!(matches!(
            narrow.policy,
            Policy::Peak {
                headroom_quantile: 0.8,
                scale_down_tolerance: 0.05,
                ..
            }
        ));
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
                let external = scaling.metric.external().cloned().unwrap();
                (scaling.metric.name(), external)
            })
        };
        let (metric, prometheus) = external(&format!(
            "metric = \"prometheus\"\nprometheus_url = \"http://127.0.0.1:9090/\"\nquery = \"avg(cpu)\"\nper_server = false\nbearer_token_file = \"{}\"",
            token.display()
        ))
        .unwrap();
        assert_eq!(metric, "prometheus");
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
        assert_eq!(metric, "command");
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
    }

    /// `keys` under `[pool.scaling]` (after `max` and `target`) are refused with an error that
    /// holds every one of `words`; `{token}` in them names a file holding a token, `{escaped}`
    /// one holding a control character.
    fn assert_external_refused(keys: &str, words: &[&str]) {
        let dir = tempfile::tempdir().unwrap();
        let (token, escaped) = (dir.path().join("token"), dir.path().join("escaped"));
        std::fs::write(&token, "s3cr3t\n").unwrap();
        std::fs::write(&escaped, "s3\u{1b}[2Jcr3t\n").unwrap();
        let keys = keys
            .replace("{token}", &token.display().to_string())
            .replace("{escaped}", &escaped.display().to_string());
        let error = parse(&format!("max = 4\ntarget = 0.6\n{keys}"))
            .expect_err(&keys)
            .to_string();
        assert!(
            words.iter().all(|word| error.contains(word)),
            "{keys}: {error}"
        );
    }

    invalid_cases! {
        mod invalid_external, assert_external_refused;
        a_token_file_holding_a_control_character: "metric = \"prometheus\"\nprometheus_url = \"http://p\"\nquery = \"q\"\nper_server = true\nbearer_token_file = \"{escaped}\"" => ["scaling.bearer_token_file", "a character an HTTP header cannot carry"];
        a_password_in_the_prometheus_url: "metric = \"prometheus\"\nprometheus_url = \"http://me:pw@p:9090\"\nquery = \"q\"\nper_server = true" => ["scaling.prometheus_url", "must not hold a user or password", "basic_auth_file"];
        prometheus_without_its_url: "metric = \"prometheus\"\nquery = \"q\"\nper_server = true" => ["scaling.prometheus_url", "required by metric `prometheus`"];
        prometheus_without_a_query: "metric = \"prometheus\"\nprometheus_url = \"http://p\"\nper_server = true" => ["scaling.query", "required"];
        prometheus_without_per_server: "metric = \"prometheus\"\nprometheus_url = \"http://p\"\nquery = \"q\"" => ["scaling.per_server", "required", "a queue length", "a CPU average"];
        a_prometheus_url_that_is_not_http: "metric = \"prometheus\"\nprometheus_url = \"p:9090\"\nquery = \"q\"\nper_server = true" => ["scaling.prometheus_url", "not an http:// or https:// URL"];
        an_empty_query: "metric = \"prometheus\"\nprometheus_url = \"http://p\"\nquery = \" \"\nper_server = true" => ["scaling.query", "must not be empty"];
        a_token_file_that_cannot_be_read: "metric = \"prometheus\"\nprometheus_url = \"http://p\"\nquery = \"q\"\nper_server = true\nbearer_token_file = \"/nonexistent/token\"" => ["scaling.bearer_token_file", "cannot read `/nonexistent/token`"];
        a_basic_auth_file_without_a_user: "metric = \"prometheus\"\nprometheus_url = \"http://p\"\nquery = \"q\"\nper_server = true\nbasic_auth_file = \"{token}\"" => ["scaling.basic_auth_file", "user:password"];
        a_query_under_the_command_metric: "metric = \"command\"\nper_server = true\nquery = \"q\"" => ["scaling.query", "not used by metric `command`"];
        per_server_under_a_haproxy_metric: "metric = \"request_rate\"\nper_server = true" => ["scaling.per_server", "not used by metric `request_rate`"];
        an_empty_metric_command: "metric = \"command\"\nmetric_command = []\nper_server = true" => ["scaling.metric_command", "empty"];
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

    /// `scaling` under `[pool.scaling]` is refused with an error that holds every one of
    /// `words`.
    fn assert_refused(scaling: &str, words: &[&str]) {
        let error = parse(scaling).expect_err(scaling).to_string();
        for word in words {
            assert!(
                error.contains(word),
                "for\n{scaling}\ngot `{error}`, expected `{word}`"
            );
        }
    }

    invalid_cases! {
        mod invalid, assert_refused;
        max_is_required: "scale_up_above = 2\nscale_down_below = 1" => ["scaling.max", "required"];
        max_zero: "max = 0\nscale_up_above = 2\nscale_down_below = 1" => ["scaling.max", "got 0"];
        min_above_max: "min = 5\nmax = 3\nscale_up_above = 2\nscale_down_below = 1" => ["scaling.min", "min 5 is above max 3"];
        min_negative: "min = -1\nmax = 3\nscale_up_above = 2\nscale_down_below = 1" => ["scaling.min", "got -1"];
        schedule_time_not_hh_mm: "min = { \"8h\" = 2 }\nmax = 3\nscale_up_above = 2\nscale_down_below = 1" => ["scaling.min", "`8h`"];
        min_above_max_in_a_schedule: "min = { \"08:00\" = 4 }\nmax = { \"00:00\" = 5, \"09:00\" = 3 }\nscale_up_above = 2\nscale_down_below = 1" => ["min 4 is above max 3 at 09:00"];
        unknown_timezone: "max = 3\nscale_up_above = 2\nscale_down_below = 1\ntimezone = \"Mars/Base\"" => ["scaling.timezone", "Mars/Base"];
        unknown_metric: "max = 3\nmetric = \"cpu\"\nscale_up_above = 2\nscale_down_below = 1" => ["scaling.metric", "`cpu`"];
        unknown_policy: "max = 3\npolicy = \"pid\"" => ["scaling.policy", "`pid`"];
        scale_down_below_is_required: "max = 3\nscale_up_above = 2" => ["scaling.scale_down_below", "required"];
        scale_down_below_above_scale_up_above: "max = 3\nscale_up_above = 1\nscale_down_below = 2" => ["scaling.scale_down_below", "below scale_up_above"];
        // `target` alone names the peak policy, which has no thresholds.
        thresholds_under_the_peak_policy: "max = 3\nscale_up_above = 2\nscale_down_below = 1\ntarget = 5" => ["scaling.scale_up_above", "not used by policy `peak`"];
        target_under_the_threshold_policy: "policy = \"threshold\"\nmax = 3\nscale_up_above = 2\nscale_down_below = 1\ntarget = 5" => ["scaling.target", "not used by policy `threshold`"];
        scale_up_above_under_the_peak_policy: "policy = \"peak\"\nmax = 3\ntarget = 5\nscale_up_above = 6" => ["scaling.scale_up_above", "not used by policy `peak`"];
        instance_ratio_zero: "max = 3\nscale_up_above = 2\nscale_down_below = 1\ninstance_ratio = 0" => ["scaling.instance_ratio"];
        step_up_zero: "max = 3\nscale_up_above = 2\nscale_down_below = 1\nstep_up = 0" => ["scaling.step_up", "between 1 and 4294967295, got 0"];
        tolerance_above_one: "max = 3\npolicy = \"target\"\ntarget = 5\ntolerance = 1.5" => ["scaling.tolerance"];
        lead_s_under_the_target_policy: "max = 3\npolicy = \"target\"\ntarget = 5\nlead_s = 180" => ["scaling.lead_s", "not used by policy `target`"];
        lead_s_above_a_day: "max = 3\ntarget = 5\nlead_s = 86401" => ["scaling.lead_s", "between 0 and 86400, got 86401"];
        headroom_quantile_above_one: "max = 3\ntarget = 5\nheadroom_quantile = 1.5" => ["scaling.headroom_quantile", "between 0 and 1, got 1.5"];
        headroom_quantile_below_zero: "max = 3\ntarget = 5\nheadroom_quantile = -0.1" => ["scaling.headroom_quantile", "between 0 and 1, got -0.1"];
        headroom_quantile_under_the_target_policy: "max = 3\npolicy = \"target\"\ntarget = 5\nheadroom_quantile = 0.8" => ["scaling.headroom_quantile", "not used by policy `target`"];
        scale_down_tolerance_of_one: "max = 3\ntarget = 5\nscale_down_tolerance = 1" => ["scaling.scale_down_tolerance", "at least 0 and below 1, got 1"];
        scale_down_tolerance_under_the_threshold_policy: "max = 3\nscale_up_above = 2\nscale_down_below = 1\nscale_down_tolerance = 0.2" => ["scaling.scale_down_tolerance", "not used by policy `threshold`"];
        // Issue 10, class 21: the key at fault and the real bound.
        scale_up_above_nan: "max = 3\nscale_up_above = nan\nscale_down_below = 1" => ["scaling.scale_up_above", "got NaN"];
        scale_up_above_negative_infinity: "max = 3\nscale_up_above = -inf\nscale_down_below = 1" => ["scaling.scale_up_above", "above 0"];
        cooldown_s_too_large: "max = 3\nscale_up_above = 2\nscale_down_below = 1\ncooldown_s = 99999999999" => ["scaling.cooldown_s", "between 0 and 4294967295, got 99999999999"];
        scale_down_below_nan: "max = 3\nscale_up_above = 2\nscale_down_below = nan" => ["scaling.scale_down_below", "got NaN"];
    }

    #[test]
    fn a_scaling_pool_needs_a_launch_and_may_not_set_the_tools_tags() {
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
