//! The state store and the run lock.
//!
//! One run at a time (invariant 1): [`StateLock::acquire`] takes an exclusive, non-blocking `fs2`
//! lock on `<state>.lock` and holds it for the whole run. A [`StateStore`] loads the state as
//! `(state, revision)` and saves it only against the revision it was loaded at: the shape a
//! compare-and-swap store (S3 with conditional writes) has too. [`FileStore`] is the local JSON
//! file; saving it is atomic (invariant 2). A corrupt or newer-version state file is an error and
//! is never reset or rewritten.

use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use fs2::FileExt;

pub(crate) mod s3;
pub(crate) mod shared;

use crate::fs_atomic::{self, Ownership};
use crate::model::{STATE_VERSION, State, sha256_hex};

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
    #[error(
        "cannot reach the shared state `{location}`: {message}; nothing was done (no cloud call, haproxy.cfg untouched): the next run tries again"
    )]
    Unreachable { location: String, message: String },
    #[error("the shared state `{location}` cannot be used: {message}")]
    Shared { location: String, message: String },
    #[error(
        "another node changed the shared state `{location}` since this run loaded it; this run's decision was dropped"
    )]
    Raced { location: String },
    #[error(
        "this run {done}, but cannot record it in the state: {cause}; the next run finds its instances from the cloud (by their launch token's tag) and records them"
    )]
    Unrecorded { done: String, cause: String },
    #[error("cannot encode the state for `{}`", path.display())]
    Encode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write state file `{}`", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}
/// Which stored state a state was loaded from. A save succeeds only if the store is still at the
/// revision it expects. Each store has its own kind (its `StateStore::Revision`), so a store is
/// only ever handed a revision it made.
pub(crate) trait Revision: Clone + std::fmt::Debug {
    /// Whether the store held no state at all.
    fn is_none(&self) -> bool;

    /// How many saves made the state this revision is of (a shared store's; 0 for a local
    /// file, which does not count them).
    fn state_generation(&self) -> u64 {
        0
    }
}

/// A local file's revision: the sha256 of its bytes, `None` when there was no file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileRevision(Option<String>);

impl Revision for FileRevision {
    fn is_none(&self) -> bool {
        self.0.is_none()
    }
}

/// Where the state lives: load it with its revision, save it against the revision it was
/// loaded at (a compare-and-swap).
pub(crate) trait StateStore {
    /// What this store's saves are checked against.
    type Revision: Revision;

    /// The stored state, or a fresh one when there is none.
    fn load(&self) -> impl Future<Output = Result<(State, Self::Revision), StateError>>;

    /// The store's own time (Unix seconds) as of its last answer, for a store shared by
    /// several nodes: their decisions go by one clock. `None` for a local store.
    fn clock(&self) -> Option<i64> {
        None
    }

    /// Saves `state` if the store is still at `expected`; returns the new revision.
    fn save(
        &self,
        state: &State,
        expected: &Self::Revision,
    ) -> impl Future<Output = Result<Self::Revision, StateError>>;
}

/// The local JSON state file.
#[derive(Debug, Clone)]
pub(crate) struct FileStore {
    path: PathBuf,
}

impl FileStore {
    pub(crate) fn new(path: &Path) -> FileStore {
        FileStore {
            path: path.to_owned(),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl StateStore for FileStore {
    type Revision = FileRevision;

    async fn load(&self) -> Result<(State, FileRevision), StateError> {
        load(&self.path)
    }

    async fn save(
        &self,
        state: &State,
        expected: &FileRevision,
    ) -> Result<FileRevision, StateError> {
        save(&self.path, state, expected)
    }
}

/// The store a config names: the local file, or a shared S3 object.
#[derive(Debug)]
pub(crate) enum Store {
    File(FileStore),
    Shared(shared::SharedStore),
}

/// Evaluates `$body` with `$store` bound to the store a [`Store`] holds, whichever kind it is:
/// each kind has its own `Revision`, so the code that loads and saves is generic over the store,
/// and this is the one place a new backend adds its arm.
macro_rules! with_store {
    ($held:expr, $store:ident => $body:expr) => {
        match $held {
            $crate::store::Store::File($store) => $body,
            $crate::store::Store::Shared($store) => $body,
        }
    };
}
pub(crate) use with_store;

impl Store {
    /// The stored state, and whether there was none (for `status`, which saves nothing).
    pub(crate) async fn peek(&self) -> Result<(State, bool), StateError> {
        with_store!(self, store => {
            let (state, revision) = store.load().await?;
            Ok((state, revision.is_none()))
        })
    }
}

/// The exclusive run lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub(crate) struct StateLock {
    _file: File,
}

/// The lock file that belongs to a state file.
pub(crate) fn lock_path(state_path: &Path) -> PathBuf {
    crate::config::with_suffix(state_path, ".lock")
}

impl StateLock {
    /// Takes the lock without waiting; [`StateError::Busy`] if another run holds it.
    pub(crate) fn acquire(state_path: &Path) -> Result<StateLock, StateError> {
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
        let file = crate::fs_atomic::open_lock_file(&path).map_err(lock_error)?;
        match file.try_lock_exclusive() {
            Ok(()) => Ok(StateLock { _file: file }),
            Err(error) if error.kind() == fs2::lock_contended_error().kind() => {
                Err(StateError::Busy { path })
            }
            Err(error) => Err(lock_error(error)),
        }
    }
}

/// The largest state file read: 20 samples of 100,000 servers' counters fit.
pub(crate) const STATE_LIMIT: u64 = 512 * 1024 * 1024;

/// Loads the state file; a missing file is a fresh state.
pub(crate) fn load(path: &Path) -> Result<(State, FileRevision), StateError> {
    let bytes = match fs_atomic::read_regular(path, STATE_LIMIT) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Ok((State::default(), FileRevision(None)));
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
    Ok((
        from_bytes(&bytes, path)?,
        FileRevision(Some(sha256_hex(&bytes))),
    ))
}

/// Parses a state file's bytes; `path` only names it in errors.
pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<State, StateError> {
    Ok(from_stamped_bytes(bytes, path)?.0)
}

/// What a shared store writes into the state's body beside the state: how many saves came
/// before (`generation`) and a random `nonce` that tells this save's bytes from any other's.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Stamp {
    pub(crate) generation: u64,
    pub(crate) nonce: String,
}

/// Parses a stored state and its stamp, if it has one.
pub(crate) fn from_stamped_bytes(
    bytes: &[u8],
    path: &Path,
) -> Result<(State, Option<Stamp>), StateError> {
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

fn parse(bytes: &[u8]) -> Result<(State, Option<Stamp>), Problem> {
    // Read the version first, so that a newer file is reported as such rather than as corrupt.
    let mut value: serde_json::Value =
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
    let stamp =
        match value.as_object_mut() {
            Some(object) if object.contains_key("generation") || object.contains_key("nonce") => {
                let stamp = serde_json::json!({
                    "generation": object.remove("generation"),
                    "nonce": object.remove("nonce"),
                });
                Some(serde_json::from_value(stamp).map_err(|error| {
                    Problem::Corrupt(format!("`generation` or `nonce`: {error}"))
                })?)
            }
            _ => None,
        };
    let state =
        serde_json::from_value(value).map_err(|error| Problem::Corrupt(error.to_string()))?;
    Ok((state, stamp))
}

/// Saves `state` atomically with mode 0600, if the file is still at `expected`.
fn save(path: &Path, state: &State, expected: &FileRevision) -> Result<FileRevision, StateError> {
    let current = match fs_atomic::read_regular(path, STATE_LIMIT) {
        Ok(bytes) => FileRevision(Some(sha256_hex(&bytes))),
        Err(error) if error.kind() == io::ErrorKind::NotFound => FileRevision(None),
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
    let mut bytes = serde_json::to_vec_pretty(state).map_err(|source| StateError::Encode {
        path: path.to_owned(),
        source,
    })?;
    bytes.push(b'\n');
    fs_atomic::write(path, &bytes, Ownership::PRIVATE).map_err(|source| StateError::Write {
        path: path.to_owned(),
        source,
    })?;
    Ok(FileRevision(Some(sha256_hex(&bytes))))
}

/// 128 random bits, in hex: a save's nonce, a run's launch-token salt.
pub(crate) fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    crate::model::hex(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LaunchIntent, PoolState};
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn missing_file_is_a_fresh_state_and_a_save_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let (loaded, revision) = load(&path).unwrap();
        assert_eq!(loaded, State::default());
        let mut state = loaded;
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
        save(&path, &state, &revision).unwrap();
        assert_eq!(load(&path).unwrap().0, state);
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
        let (loaded, revision) = load(&path).unwrap();
        std::fs::write(&path, "{\"version\": 1}").unwrap();
        let error = save(&path, &loaded, &revision).unwrap_err();
        assert!(matches!(error, StateError::Conflict { .. }), "{error}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"version\": 1}");
    }

    /// A state file written by release 0.1.0 (before the code moved into model/decide/store):
    /// a scaling pool with samples, a launch intent, a scale history and a reload, and a
    /// discovery-only pool. It loads, and saving it again writes the very same bytes.
    #[test]
    fn a_state_written_by_0_1_0_loads_unchanged() {
        let bytes = include_bytes!("../../tests/fixtures/state-0.1.0.json");
        let state = from_bytes(bytes, Path::new("state-0.1.0.json")).unwrap();
        assert_eq!(state.version, 1);
        let web = &state.pools["web"];
        assert_eq!(web.servers, ["i-1", "i-3"]);
        assert_eq!(web.samples.len(), 4);
        assert_eq!(
            web.launches[0].instance_ids.as_deref(),
            Some(&["i-new1".to_owned()][..])
        );
        assert_eq!(web.scale_history.len(), 2);
        assert!(web.reloaded_at.is_some());
        assert_eq!(state.pools["static"].servers, ["i-1", "i-2", "i-3"]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        save(&path, &state, &FileRevision(None)).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
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
