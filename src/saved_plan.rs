//! Saved plans: `--plan --out FILE` writes what the plan was made from (the observations, the
//! state's and the installed haproxy.cfg's digests, the run's clock and launch-token salt) and
//! the plan's own digest; `apply FILE` carries out exactly that plan, or refuses (exit 3,
//! [`EXIT_STALE_PLAN`]) and changes nothing when the world no longer matches it: the config,
//! the state, the installed haproxy.cfg or any pool's instances.
//!
//! The plan is not replayed from the file: `apply` decides again from the saved observations,
//! and carries the decision out only if it is the saved one, digest for digest. So a file edited
//! by hand can never make a run do what no plan said.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::decide::plan::{Facts, Observations, Plan};
use crate::fs_atomic::{self, Ownership};
use crate::model::{Discovered, HaproxyVersion, Observed, State, sha256_hex};

/// The exit code of an `apply FILE` that the world no longer matches.
pub(crate) const EXIT_STALE_PLAN: u8 = 3;

/// How old a saved plan may be: its stats are that old when it is applied.
pub(crate) const MAX_PLAN_AGE_S: i64 = 3600;

/// What `FORMAT` says in every saved plan.
const FORMAT: &str = "haproxy-autoscaler saved plan";
const VERSION: u32 = 1;

/// The largest saved plan read (a fleet of 100,000 instances is well under it).
const MAX_PLAN_BYTES: u64 = 512 * 1024 * 1024;

/// A saved plan, as the file holds it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SavedPlan {
    pub(crate) format: String,
    pub(crate) version: u32,
    /// The config it was made with ([`Config::identity`]) and the node that made it.
    pub(crate) config: String,
    pub(crate) node: String,
    /// The run's clock (Unix seconds), and how far the node's clock was off a shared store.
    pub(crate) made_at: i64,
    pub(crate) clock_off_s: Option<i64>,
    pub(crate) haproxy_version: Option<HaproxyVersion>,
    pub(crate) token_salt: String,
    /// sha256 of the state it was made from, and of the installed haproxy.cfg (`None`: none).
    pub(crate) state_sha256: String,
    pub(crate) installed_sha256: Option<String>,
    /// What was observed of each pool, in the config's order.
    pub(crate) pools: Vec<(String, Observed)>,
    /// sha256 of the plan: its report, the rendered haproxy.cfg and the state it saves.
    pub(crate) plan_sha256: String,
    /// The plan's report, for people and tools (not read back).
    pub(crate) plan: serde_json::Value,
}

/// Why `apply FILE` refused.
#[derive(Debug, thiserror::Error)]
pub enum StalePlan {
    #[error("cannot read the saved plan `{}`", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("`{}` is not a saved plan of this version: {why}", path.display())]
    NotAPlan { path: PathBuf, why: String },
    #[error(
        "the saved plan `{}` no longer matches: {why}; nothing was changed: make a new plan with `--plan --out`",
        path.display()
    )]
    Changed { path: PathBuf, why: String },
}

/// The digest that says two plans are the same plan.
pub(crate) fn digest(plan: &Plan) -> String {
    let report = serde_json::to_string(plan).expect("a plan always encodes");
    let state = serde_json::to_string(&plan.next_state).expect("a state always encodes");
    sha256_hex(format!("{report}\n{}\n{state}", plan.rendered).as_bytes())
}

/// The digest of a state, as loaded.
pub(crate) fn state_digest(state: &State) -> String {
    sha256_hex(&serde_json::to_vec(state).expect("a state always encodes"))
}

/// Writes `plan`, made from `facts`, to `path` (mode 0600: it holds the fleet's addresses).
pub(crate) fn save(path: &Path, facts: &Facts<'_>, plan: &Plan) -> std::io::Result<()> {
    let config = facts.config;
    let saved = SavedPlan {
        format: FORMAT.to_owned(),
        version: VERSION,
        config: config.identity.clone(),
        node: config.node.clone(),
        made_at: facts.now,
        clock_off_s: facts.clock_off_s,
        haproxy_version: facts.haproxy_version,
        token_salt: facts.token_salt.to_owned(),
        state_sha256: state_digest(facts.state),
        installed_sha256: facts.installed.map(|text| sha256_hex(text.as_bytes())),
        pools: facts
            .observed
            .iter()
            .map(|(pool, observed)| (pool.name.clone(), observed.clone()))
            .collect(),
        plan_sha256: digest(plan),
        plan: serde_json::to_value(plan).expect("a plan always encodes"),
    };
    let text = serde_json::to_vec_pretty(&saved).expect("a saved plan always encodes");
    replaceable(path)?;
    let private = Ownership {
        mode: 0o600,
        uid_gid: None,
    };
    fs_atomic::write(path, &text, private)
}

/// How a saved plan's file begins (`to_vec_pretty` writes `format` first).
fn plan_opening() -> String {
    format!("{{\n  \"format\": \"{FORMAT}\"")
}

/// Whether `--out` may write `path`: nothing there, or an earlier saved plan. A link is never
/// written through, and any other file is never replaced (a mistyped `--out` must not destroy
/// a config, or `/etc/hostname`); FIFOs, devices and folders are refused by the write itself.
fn replaceable(path: &Path) -> std::io::Result<()> {
    let refused = |why: &str| Err(std::io::Error::other(why.to_owned()));
    match std::fs::symlink_metadata(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
        Ok(meta) if meta.file_type().is_symlink() => refused(
            "it is a symbolic link, and a plan is never written through one: name the file itself",
        ),
        Ok(meta) if meta.is_file() => {
            let opening = plan_opening();
            if fs_atomic::read_prefix(path, opening.len() as u64)? == opening.as_bytes() {
                Ok(())
            } else {
                refused(
                    "it exists and is not a saved plan, so it is never replaced: remove it, or name another file",
                )
            }
        }
        Ok(_) => Ok(()),
    }
}

/// Reads a saved plan and checks what needs no cloud: its format, its config and node, its age.
pub(crate) fn load(path: &Path, config: &Config, now: i64) -> Result<SavedPlan, StalePlan> {
    let text =
        fs_atomic::read_text(path, MAX_PLAN_BYTES).map_err(|error| StalePlan::Unreadable {
            path: path.to_owned(),
            error,
        })?;
    let not_a_plan = |why: String| StalePlan::NotAPlan {
        path: path.to_owned(),
        why,
    };
    let saved: SavedPlan =
        serde_json::from_str(&text).map_err(|error| not_a_plan(error.to_string()))?;
    if saved.format != FORMAT || saved.version != VERSION {
        return Err(not_a_plan(format!(
            "it says format {:?} version {}, this build writes {FORMAT:?} version {VERSION}",
            saved.format, saved.version
        )));
    }
    let changed = |why: String| StalePlan::Changed {
        path: path.to_owned(),
        why,
    };
    if saved.config != config.identity {
        return Err(changed(format!(
            "it was made with the config {}, not {}",
            saved.config, config.identity
        )));
    }
    if saved.node != config.node {
        return Err(changed(format!(
            "it was made on node `{}`, this is `{}`",
            saved.node, config.node
        )));
    }
    let age = now - saved.made_at;
    if !(0..=MAX_PLAN_AGE_S).contains(&age) {
        return Err(changed(format!(
            "it was made {age} s ago, and a plan is applied within {MAX_PLAN_AGE_S} s (its stats are that old)"
        )));
    }
    Ok(saved)
}

impl SavedPlan {
    /// The facts the plan was made from, with what was read again now (the state and haproxy.cfg,
    /// checked equal by [`SavedPlan::check_files`]).
    pub(crate) fn facts<'a>(
        &'a self,
        config: &'a Config,
        observed: &'a Observations<'a>,
        state: &'a State,
        installed: Option<&'a str>,
    ) -> Facts<'a> {
        Facts {
            config,
            observed,
            installed,
            state,
            now: self.made_at,
            clock_off_s: self.clock_off_s,
            haproxy_version: self.haproxy_version,
            token_salt: &self.token_salt,
        }
    }

    /// The saved observations, one per pool of `config` in its order; refused when the config's
    /// pools are not the plan's.
    pub(crate) fn observations<'a>(
        &self,
        config: &'a Config,
        path: &Path,
    ) -> Result<Observations<'a>, StalePlan> {
        let names: Vec<&str> = self.pools.iter().map(|(name, _)| name.as_str()).collect();
        let ours: Vec<&str> = config.pools.iter().map(|pool| pool.name.as_str()).collect();
        let changed = |why: String| StalePlan::Changed {
            path: path.to_owned(),
            why,
        };
        if names != ours {
            return Err(changed(format!(
                "it has the pools {names:?}, the config {ours:?}"
            )));
        }
        let observed = self
            .pools
            .iter()
            .map(|(_, observed)| observed.clone())
            .collect();
        Observations::of_each(&config.pools, observed)
            .ok_or_else(|| changed("its pools are not the config's".to_owned()))
    }

    /// Refuses when the state or the installed haproxy.cfg is not the one the plan was made from.
    pub(crate) fn check_files(
        &self,
        path: &Path,
        state: &State,
        installed: Option<&str>,
    ) -> Result<(), StalePlan> {
        let changed = |why: &str| StalePlan::Changed {
            path: path.to_owned(),
            why: why.to_owned(),
        };
        if state_digest(state) != self.state_sha256 {
            return Err(changed(
                "the state changed since (another run, or another node of the shared state, has run)",
            ));
        }
        if installed.map(|text| sha256_hex(text.as_bytes())) != self.installed_sha256 {
            return Err(changed("the installed haproxy.cfg changed since"));
        }
        Ok(())
    }
}

/// Refuses when a pool's instances, as listed now, are not those the plan was made from.
pub(crate) fn check_instances(
    path: &Path,
    pool: &str,
    saved: &[Discovered],
    now: &[Discovered],
) -> Result<(), StalePlan> {
    let sorted = |list: &[Discovered]| {
        let mut list = list.to_vec();
        list.sort_by(|a, b| a.instance.id.cmp(&b.instance.id));
        list
    };
    let (saved, now) = (sorted(saved), sorted(now));
    if saved == now {
        return Ok(());
    }
    let ids = |list: &[Discovered]| -> Vec<String> {
        list.iter().map(|found| found.instance.id.clone()).collect()
    };
    let why = if ids(&saved) == ids(&now) {
        format!("pool `{pool}`: an instance's state, address or tags changed since")
    } else {
        format!(
            "pool `{pool}`: its instances were {:?} and are now {:?}",
            ids(&saved),
            ids(&now)
        )
    };
    Err(StalePlan::Changed {
        path: path.to_owned(),
        why,
    })
}
