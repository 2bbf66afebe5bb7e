//! The run lock and the JSON state file.
//!
//! One run at a time (invariant 1): [`StateLock::acquire`] takes an exclusive, non-blocking `fs2`
//! lock on `<state>.lock` and holds it for the whole run. The state is loaded as `(state, version)`
//! and saved against the version it was loaded at, the shape a compare-and-swap store (S3 with
//! conditional writes) needs later. Saving is atomic (invariant 2). A corrupt or newer-version
//! state file is an error and is never reset or rewritten.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use fs2::FileExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fs_atomic::{self, Ownership};

/// The state file format this build reads and writes.
pub const STATE_VERSION: u64 = 1;

/// A state file problem.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot open lock file `{}`", path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("another run holds the lock `{}`; nothing was done", path.display())]
    Busy { path: PathBuf },
    #[error(
        "cannot read state file `{}`: permission denied; it is private (mode 0600) to the user the runs are made as: run this as that user (for example with sudo, and the same arguments)",
        path.display()
    )]
    ReadDenied { path: PathBuf },
    #[error("cannot read state file `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "state file `{}` is corrupt: {message}; it was left untouched: repair it, or move it aside to start afresh (the next run rebuilds it from the cloud and haproxy.cfg)",
        path.display()
    )]
    Corrupt { path: PathBuf, message: String },
    #[error(
        "state file `{}` has version {found}, newer than this build understands ({STATE_VERSION}); it was left untouched: upgrade haproxy-autoscaler",
        path.display()
    )]
    NewerVersion { path: PathBuf, found: u64 },
    #[error(
        "state file `{}` belongs to config `{owner}`, not to `{ours}`: two configs must not share one state file (each would drop the other's pools, launch intents included); give this config its own `[state] path` (if the config file was moved, remove the state's `config` field: jq 'del(.config)')",
        path.display()
    )]
    OtherConfig {
        path: PathBuf,
        owner: String,
        ours: String,
    },
    #[error("state file `{}` changed since this run loaded it; nothing was saved", path.display())]
    Conflict { path: PathBuf },
    #[error("cannot write state file `{}`", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Everything a run remembers for the next one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub version: u64,
    /// The config whose runs write this file ([`crate::config::Config::identity`]): a run of
    /// another config refuses it rather than drop that config's pools, intents included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// sha256 of the haproxy.cfg this tool last installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed_config_sha256: Option<String>,
    #[serde(default)]
    pub pools: BTreeMap<String, PoolState>,
}

/// What is remembered per pool. The scaling fields stay out of the file while empty, so a
/// discovery-only pool's state is just its servers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolState {
    /// Instance ids rendered into the backend by the last run that installed a config.
    #[serde(default)]
    pub servers: Vec<String>,
    /// Instances the last run left out for a bad value (notified once, when first left out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bad_instances: Vec<String>,
    /// Servers that were in service after the last run (booting ones are not).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_service: Vec<String>,
    /// Recent stats samples, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<Sample>,
    /// Launches asked for; `instance_ids` is `None` until the cloud call returned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub launches: Vec<LaunchIntent>,
    /// Servers being drained before they are terminated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub draining: Vec<Draining>,
    /// Recent scale actions, oldest first (cooldown and the rapid-scaling check).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scale_history: Vec<ScaleEvent>,
    /// Recent target-policy recommendations: (Unix seconds, servers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recommendations: Vec<(i64, u32)>,
    /// The bound the last decision was held at, so that "capped" is reported once, not every run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capped: Option<crate::policy::Capped>,
    /// The last decision wanted a scale-down that no drainable server allowed, so that it is
    /// reported once, not every run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub scale_down_blocked: bool,
    /// When (Unix seconds, the run's `now`) a run of this tool last reloaded HAProxy: a stats
    /// interval that spans it gives no rate, whatever the stats source can tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reloaded_at: Option<i64>,
}

/// One stats sample of one HAProxy node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Unix seconds.
    pub at: i64,
    /// Which HAProxy node took it (each node has its own counters).
    pub node: String,
    /// The worker's pid and uptime: a change means the counters were reset.
    pub pid: u64,
    pub uptime_s: u64,
    /// Counters per server name.
    pub servers: BTreeMap<String, ServerCounters>,
    /// The backend's queue.
    pub backend_qcur: Option<u64>,
    /// The pool metric this sample gave (`None`: no data, or a skipped interval).
    pub metric: Option<f64>,
}

/// One server's counters in a sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerCounters {
    pub up: bool,
    pub scur: u64,
    pub stot: u64,
    pub req_tot: Option<u64>,
    pub rtime: Option<u64>,
}

/// A launch, written to state before the cloud is asked (invariant 5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchIntent {
    /// Sent as EC2 `ClientToken` and as the tag `haproxy-autoscaler:launch-token`.
    pub token: String,
    pub count: u32,
    pub requested_at: i64,
    pub instance_ids: Option<Vec<String>>,
    /// The last launch call for this intent returned (with an error): it is over, so the next
    /// run may re-send at once. Unset while a call may still be running (its run was killed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attempt_ended: bool,
}

/// A server being drained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draining {
    pub id: String,
    pub since: i64,
}

/// A change of capacity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleEvent {
    pub at: i64,
    pub from: u32,
    pub to: u32,
}

impl Default for State {
    fn default() -> State {
        State {
            version: STATE_VERSION,
            config: None,
            installed_config_sha256: None,
            pools: BTreeMap::new(),
        }
    }
}

/// Which stored bytes a state was loaded from: `None` when there was no file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateVersion(Option<String>);

/// A loaded state and the version to save it against.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub state: State,
    pub version: StateVersion,
}

/// The exclusive run lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

/// The lock file that belongs to a state file.
pub fn lock_path(state_path: &Path) -> PathBuf {
    let mut path = state_path.as_os_str().to_owned();
    path.push(".lock");
    PathBuf::from(path)
}

impl StateLock {
    /// Takes the lock without waiting; [`StateError::Busy`] if another run holds it.
    pub fn acquire(state_path: &Path) -> Result<StateLock, StateError> {
        let path = lock_path(state_path);
        let lock_error = |source| StateError::Lock {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            // 0700 whatever the umask (`umask 000` would make it 0777): no other local user
            // may plant or swap a state file in it. Existing folders are left as they are.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(lock_error)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(lock_error)?;
        match file.try_lock_exclusive() {
            Ok(()) => Ok(StateLock { _file: file }),
            Err(error) if error.kind() == fs2::lock_contended_error().kind() => {
                Err(StateError::Busy { path })
            }
            Err(error) => Err(lock_error(error)),
        }
    }
}

/// Loads the state file; a missing file is a fresh state.
/// The largest state file read: 20 samples of 100,000 servers' counters fit.
pub const STATE_LIMIT: u64 = 512 * 1024 * 1024;

pub fn load(path: &Path) -> Result<Loaded, StateError> {
    let bytes = match fs_atomic::read_regular(path, STATE_LIMIT) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Ok(Loaded {
                state: State::default(),
                version: StateVersion(None),
            });
        }
        Err(source) if source.kind() == io::ErrorKind::PermissionDenied => {
            return Err(StateError::ReadDenied {
                path: path.to_owned(),
            });
        }
        Err(source) => {
            return Err(StateError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    Ok(Loaded {
        state: from_bytes(&bytes, path)?,
        version: StateVersion(Some(sha256_hex(&bytes))),
    })
}

/// Parses a state file's bytes; `path` only names it in errors.
pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<State, StateError> {
    parse(bytes).map_err(|problem| match problem {
        Problem::Newer(found) => StateError::NewerVersion {
            path: path.to_owned(),
            found,
        },
        Problem::Corrupt(message) => StateError::Corrupt {
            path: path.to_owned(),
            message,
        },
    })
}

enum Problem {
    Newer(u64),
    Corrupt(String),
}

fn parse(bytes: &[u8]) -> Result<State, Problem> {
    // Read the version first, so that a newer file is reported as such rather than as corrupt.
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|error| Problem::Corrupt(error.to_string()))?;
    match value.get("version").map(serde_json::Value::as_u64) {
        None => return Err(Problem::Corrupt("it has no `version`".to_owned())),
        Some(None) => {
            return Err(Problem::Corrupt(
                "`version` is not a positive integer".to_owned(),
            ));
        }
        Some(Some(found)) if found > STATE_VERSION => return Err(Problem::Newer(found)),
        Some(Some(found)) if found < 1 => {
            return Err(Problem::Corrupt(format!("unknown version {found}")));
        }
        Some(Some(_)) => {}
    }
    serde_json::from_value(value).map_err(|error| Problem::Corrupt(error.to_string()))
}

/// Saves `state` atomically with mode 0600, if the file is still at `expected`.
pub fn save(
    path: &Path,
    state: &State,
    expected: &StateVersion,
) -> Result<StateVersion, StateError> {
    let current = match std::fs::read(path) {
        Ok(bytes) => StateVersion(Some(sha256_hex(&bytes))),
        Err(error) if error.kind() == io::ErrorKind::NotFound => StateVersion(None),
        Err(source) => {
            return Err(StateError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    if &current != expected {
        return Err(StateError::Conflict {
            path: path.to_owned(),
        });
    }
    let mut bytes = serde_json::to_vec_pretty(state).expect("the state always serializes");
    bytes.push(b'\n');
    fs_atomic::write(path, &bytes, Ownership::PRIVATE).map_err(|source| StateError::Write {
        path: path.to_owned(),
        source,
    })?;
    Ok(StateVersion(Some(sha256_hex(&bytes))))
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            use std::fmt::Write;
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn missing_file_is_a_fresh_state_and_a_save_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.state, State::default());
        let mut state = loaded.state;
        state.pools.insert(
            "web".into(),
            PoolState {
                servers: vec!["i-1".into()],
                launches: vec![LaunchIntent {
                    attempt_ended: false,
                    token: "t".into(),
                    count: 2,
                    requested_at: 5,
                    instance_ids: None,
                }],
                ..PoolState::default()
            },
        );
        save(&path, &state, &loaded.version).unwrap();
        assert_eq!(load(&path).unwrap().state, state);
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
    }

    #[test]
    fn bad_files_are_errors_and_stay_untouched() {
        let cases: [(&str, &str); 7] = [
            ("", "corrupt"),
            ("{\"version\": 1, \"pools\": {", "corrupt"),
            ("garbage", "corrupt"),
            ("{\"pools\": {}}", "no `version`"),
            ("{\"version\": \"1\"}", "not a positive integer"),
            (
                "{\"version\": 1, \"pools\": {\"web\": {\"servers\": 3}}}",
                "corrupt",
            ),
            ("{\"version\": 2}", "version 2, newer"),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        for (text, expected) in cases {
            std::fs::write(&path, text).unwrap();
            let error = load(&path).unwrap_err().to_string();
            assert!(
                error.contains(expected) && error.contains("state.json"),
                "{text:?}: {error}"
            );
            assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        }
    }

    #[test]
    fn save_refuses_a_file_that_changed_since_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let loaded = load(&path).unwrap();
        std::fs::write(&path, "{\"version\": 1}").unwrap();
        let error = save(&path, &loaded.state, &loaded.version).unwrap_err();
        assert!(matches!(error, StateError::Conflict { .. }), "{error}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"version\": 1}");
    }

    #[test]
    fn sha256_is_lowercase_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn second_lock_is_busy_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        let first = StateLock::acquire(&path).unwrap();
        assert!(matches!(
            StateLock::acquire(&path),
            Err(StateError::Busy { .. })
        ));
        drop(first);
        StateLock::acquire(&path).unwrap();
    }
}
