//! The config file's shapes as TOML gives them: every key optional or loosely typed, unknown
//! keys refused (`[pool.scaling]` and `[pool.launch]` are beside their validation, in
//! [`super::scaling`]). [`super::validate`] turns them into the validated types.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) state: RawState,
    #[serde(default)]
    pub(super) haproxy: RawHaproxy,
    #[serde(default)]
    pub(super) aws: RawAws,
    #[serde(default)]
    pub(super) pool: Vec<toml::Spanned<RawPool>>,
    pub(super) notify: Option<RawNotify>,
    pub(super) metrics_file: Option<toml::Value>,
    pub(super) enabled: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    pub(super) on: Option<Vec<String>>,
    pub(super) webhook: Option<String>,
    pub(super) command: Option<Vec<String>>,
    pub(super) rapid_scales: Option<i64>,
    pub(super) rapid_window_s: Option<i64>,
    pub(super) repeat_failed_s: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawState {
    pub(super) path: Option<PathBuf>,
    pub(super) local_path: Option<PathBuf>,
    pub(super) node: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHaproxy {
    pub(super) config: Option<PathBuf>,
    pub(super) template: Option<PathBuf>,
    pub(super) stats_socket: Option<String>,
    pub(super) stats_url: Option<String>,
    pub(super) check_command: Option<Vec<String>>,
    pub(super) reload_command: Option<Vec<String>>,
    pub(super) master_socket: Option<PathBuf>,
    pub(super) command_timeout_s: Option<i64>,
    pub(super) apply: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAws {
    pub(super) region: Option<String>,
    pub(super) endpoint_url: Option<String>,
    pub(super) max_attempts: Option<i64>,
    pub(super) attempt_timeout_s: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPool {
    pub(super) name: String,
    pub(super) backend: Option<String>,
    pub(super) port: i64,
    pub(super) address: Option<String>,
    pub(super) provider: Option<String>,
    pub(super) allow_empty: Option<bool>,
    pub(super) discover: Option<RawDiscover>,
    pub(super) ready_check: Option<String>,
    pub(super) launch: Option<RawLaunch>,
    pub(super) scaling: Option<RawScaling>,
    pub(super) exec: Option<RawExec>,
    #[serde(rename = "static")]
    pub(super) static_hosts: Option<RawStatic>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStatic {
    pub(super) dir: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExec {
    pub(super) list: Option<Vec<String>>,
    pub(super) launch: Option<Vec<String>>,
    pub(super) terminate: Option<Vec<String>>,
    pub(super) timeout_s: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDiscover {
    pub(super) security_group: Option<String>,
    pub(super) image_id: Option<String>,
    #[serde(default)]
    pub(super) tags: BTreeMap<String, String>,
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
    pub(super) min: Option<RawBound>,
    pub(super) max: Option<RawBound>,
    pub(super) timezone: Option<String>,
    pub(super) metric: Option<String>,
    pub(super) policy: Option<String>,
    pub(super) scale_up_above: Option<f64>,
    pub(super) scale_down_below: Option<f64>,
    pub(super) instance_ratio: Option<f64>,
    pub(super) up_after: Option<i64>,
    pub(super) down_after: Option<i64>,
    pub(super) average_of: Option<i64>,
    pub(super) target: Option<f64>,
    pub(super) tolerance: Option<f64>,
    pub(super) scale_down_window_s: Option<i64>,
    pub(super) lead_s: Option<i64>,
    pub(super) headroom_quantile: Option<f64>,
    pub(super) scale_down_tolerance: Option<f64>,
    pub(super) saturation_queue: Option<f64>,
    pub(super) forecast: Option<String>,
    pub(super) forecast_lead_s: Option<i64>,
    pub(super) max_actions_per_hour: Option<i64>,
    pub(super) unhealthy_after_s: Option<i64>,
    pub(super) max_replacements_per_hour: Option<i64>,
    pub(super) step_up: Option<i64>,
    pub(super) step_down: Option<i64>,
    pub(super) cooldown_s: Option<i64>,
    pub(super) drain_s: Option<i64>,
    pub(super) warmup_s: Option<i64>,
    pub(super) per_server: Option<bool>,
    pub(super) metric_max_age_s: Option<i64>,
    pub(super) metric_timeout_s: Option<i64>,
    pub(super) prometheus_url: Option<String>,
    pub(super) query: Option<String>,
    pub(super) basic_auth_file: Option<PathBuf>,
    pub(super) bearer_token_file: Option<PathBuf>,
    pub(super) metric_command: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLaunch {
    pub(super) launch_template: Option<String>,
    pub(super) launch_template_version: Option<toml::Value>,
    pub(super) image_id: Option<String>,
    pub(super) instance_type: Option<String>,
    #[serde(default)]
    pub(super) security_group_ids: Vec<String>,
    #[serde(default)]
    pub(super) subnet_ids: Vec<String>,
    pub(super) key_name: Option<String>,
    pub(super) user_data_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) tags: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::RawConfig;

    /// The book's configuration reference (also the manual page's CONFIGURATION section).
    const REFERENCE: &str = include_str!("../../docs/src/reference.md");

    /// The tables of the config file, each with a TOML document that puts an unknown key into
    /// it (first, so that nothing else is judged before it).
    const TABLES: [(&str, &str); 11] = [
        ("", ""),
        ("state", "[state]\n"),
        ("haproxy", "[haproxy]\n"),
        ("aws", "[aws]\n"),
        ("notify", "[notify]\n"),
        ("pool", "[[pool]]\n"),
        ("pool.discover", "[[pool]]\n[pool.discover]\n"),
        ("pool.launch", "[[pool]]\n[pool.launch]\n"),
        ("pool.exec", "[[pool]]\n[pool.exec]\n"),
        ("pool.static", "[[pool]]\n[pool.static]\n"),
        ("pool.scaling", "[[pool]]\n[pool.scaling]\n"),
    ];

    /// The keys the parser accepts in a table: the ones serde names when it refuses an unknown
    /// one, so this list is the code's own.
    fn accepted(document: &str) -> Vec<String> {
        let error = toml::from_str::<RawConfig>(&format!("{document}zz_not_a_key = 1\n"))
            .expect_err("an unknown key is refused")
            .to_string();
        let (_, expected) = error
            .split_once("expected")
            .unwrap_or_else(|| panic!("serde names the accepted keys: {error}"));
        let mut keys: Vec<String> = expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
        keys.sort();
        keys
    }

    /// The keys the reference documents, by table (`### \`[pool.scaling]\``; `### Top level`).
    fn documented() -> BTreeMap<String, Vec<String>> {
        let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut table = None;
        for line in REFERENCE.lines() {
            if let Some(heading) = line.strip_prefix("### ") {
                let name = heading.trim_matches(|c| matches!(c, '`' | '[' | ']'));
                table = Some(if name == "Top level" {
                    String::new()
                } else {
                    name.to_owned()
                });
            } else if let (Some(table), Some(row)) = (&table, line.strip_prefix("| `")) {
                let key = row.split('`').next().unwrap_or_default().to_owned();
                tables.entry(table.clone()).or_default().push(key);
            }
        }
        for keys in tables.values_mut() {
            keys.sort();
        }
        tables
    }

    /// Issue 32: the configuration reference documents every key the parser accepts, and no
    /// other, in every table; a key added to the code without its line here fails.
    #[test]
    fn the_reference_documents_exactly_the_keys_the_parser_accepts() {
        let documented = documented();
        let names: Vec<&str> = TABLES.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            documented.keys().map(String::as_str).collect::<Vec<_>>(),
            {
                let mut sorted = names.clone();
                sorted.sort_unstable();
                sorted
            },
            "the reference's tables"
        );
        for (name, document) in TABLES {
            assert_eq!(
                documented[name],
                accepted(document),
                "table `{name}`: docs/src/reference.md against the parser"
            );
        }
    }
}
