//! Installs a rendered haproxy.cfg and reloads HAProxy (invariants 3 and 4).
//!
//! The candidate is written beside the installed file (mode 0600), checked with `check_command`,
//! the installed file is copied to `haproxy.cfg.bak`, the candidate renamed into place with the
//! installed file's owner and mode, and HAProxy reloaded. A reload is confirmed, not assumed: the
//! reload command must exit 0 and, when a master socket is configured, the master must say the
//! new config loaded (`haproxy::master` reads that the way each HAProxy version says it). If the
//! reload fails, the backup is restored and HAProxy reloaded again, so the installed file is
//! always the one HAProxy runs.

use std::io;
use std::path::{Path, PathBuf};

use crate::command::{self, CommandError};
use crate::config::{HaproxyConfig, Reload, StatsSource, with_suffix};
use crate::decide::runtime::RuntimeChange;
use crate::error_chain::error_chain;
use crate::failpoint;
use crate::fs_atomic::{self, Ownership, Staged};
use crate::haproxy::master::{Master, MasterError};
use crate::haproxy::runtime;

/// How long one runtime API command may take.
pub(crate) const RUNTIME_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// An install or reload problem.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("cannot read the installed config `{}`", path.display())]
    ReadInstalled {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write a candidate config beside `{}`", path.display())]
    Stage {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the rendered config was rejected by the check command; `{}` is untouched{lines}", path.display())]
    Check {
        path: PathBuf,
        /// The rendered lines the check's output points at (the candidate it names is gone by
        /// the time anyone reads the message).
        lines: Box<str>,
        #[source]
        source: CommandError,
    },
    /// The check command did not run to a verdict (missing program, timeout): nothing was
    /// judged, so nothing is installed.
    #[error("the check command could not check the rendered config; `{}` is untouched", path.display())]
    CheckNotRun {
        path: PathBuf,
        #[source]
        source: CommandError,
    },
    #[error("cannot write `{}`; `{}` is untouched", backup.display(), path.display())]
    Backup {
        path: PathBuf,
        backup: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot install `{}`", path.display())]
    Install {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reload failed; the previous config was restored from `{}` and HAProxy reloaded with it", backup.display())]
    ReloadRestored {
        backup: PathBuf,
        #[source]
        source: ReloadError,
    },
    #[error("reload failed, and so did restoring the previous config from `{}` ({restore}); HAProxy needs attention", backup.display())]
    ReloadRestoreFailed {
        backup: PathBuf,
        restore: String,
        #[source]
        source: ReloadError,
    },
    #[error(
        "reload failed after installing the first config `{}`; {}",
        path.display(),
        if *removed { "it was removed again, so the next run retries" } else { "removing it failed too: remove it by hand" }
    )]
    ReloadFirst {
        path: PathBuf,
        removed: bool,
        #[source]
        source: ReloadError,
    },
}

/// Why a reload did not happen or was not confirmed.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Master(#[from] MasterError),
}

/// The backup path of an installed config: `haproxy.cfg.bak`.
pub(crate) fn backup_path(path: &Path) -> PathBuf {
    with_suffix(path, ".bak")
}

/// Where the config this tool took over is kept, once: `haproxy.cfg.orig`.
pub(crate) fn original_path(path: &Path) -> PathBuf {
    with_suffix(path, ".orig")
}

/// The largest installed haproxy.cfg read.
const INSTALLED_LIMIT: u64 = 256 * 1024 * 1024;

/// Reads the installed config; `None` if there is none. A file that is not UTF-8 (a hand edit)
/// is read with the bad bytes replaced: it differs from any rendering, so it is warned about and
/// replaced, never a reason to fail every run.
pub(crate) fn read_installed(path: &Path) -> Result<Option<String>, InstallError> {
    Ok(
        read_installed_bytes(path)?.map(|bytes| match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
        }),
    )
}

/// The installed config's bytes as they are, for its backup; `None` if there is none.
fn read_installed_bytes(path: &Path) -> Result<Option<Vec<u8>>, InstallError> {
    match fs_atomic::read_regular(path, INSTALLED_LIMIT) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(InstallError::ReadInstalled {
            path: path.to_owned(),
            source,
        }),
    }
}

fn sync_parent(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

/// How an installed config reached HAProxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Applied {
    /// Through the runtime API: no reload.
    Runtime,
    /// By a reload.
    Reloaded,
    /// By a reload, because the runtime API change did not take (the reason).
    FellBack(String),
}

/// Checks `rendered` and installs it over `haproxy.config`. With a `runtime` change (and the
/// admin socket), the change is made through the runtime API and read back before the file is
/// installed, with no reload; if it does not take, or without one, HAProxy is reloaded with the
/// file (after its server state is saved for the reload to keep).
pub(crate) async fn install(
    haproxy: &HaproxyConfig,
    rendered: &str,
    runtime: Option<&RuntimeChange>,
    takes_over: bool,
) -> Result<Applied, InstallError> {
    let path = &haproxy.config;
    let backup = backup_path(path);
    let previous = read_installed_bytes(path)?;
    check_folder(path)?;
    let staged =
        Staged::write(path, rendered.as_bytes()).map_err(|source| InstallError::Stage {
            path: path.clone(),
            source,
        })?;
    failpoint::hit("after-candidate-written");
    check(haproxy, staged.path()).await?;

    // A new file gets the usual mode of haproxy.cfg; an existing one keeps its owner and mode.
    let default_ownership = Ownership {
        mode: 0o644,
        uid_gid: None,
    };
    let ownership = Ownership::of_existing(path, default_ownership).map_err(|source| {
        InstallError::Install {
            path: path.clone(),
            source,
        }
    })?;
    let socket = match &haproxy.stats {
        Some(StatsSource::Socket(socket)) => Some(socket.as_str()),
        _ => None,
    };
    let kept = Kept {
        backup: &backup,
        previous: previous.as_deref(),
        takes_over,
    };
    let mut applied = Applied::Reloaded;
    if let (Some(change), Some(socket)) = (runtime, socket) {
        match runtime::apply(socket, change, RUNTIME_TIMEOUT).await {
            Ok(()) => {
                // A crash here leaves HAProxy ahead of the file. The next run sends the same
                // commands: an `add server` or `del server` is refused (done already), so it
                // reloads with the file; a `set server` is simply made again.
                failpoint::hit("after-runtime-commands");
                put_in_place(path, &kept, staged, ownership)?;
                failpoint::hit("after-install");
                return Ok(Applied::Runtime);
            }
            Err(not_taken) => {
                let why = error_chain(&not_taken);
                tracing::warn!("the runtime API change did not take ({why}): reloading instead");
                applied = Applied::FellBack(why);
            }
        }
    }
    put_in_place(path, &kept, staged, ownership)?;
    failpoint::hit("after-install");
    if let Some(socket) = socket {
        let installed = previous.as_deref().map(String::from_utf8_lossy);
        runtime::save_state(socket, installed.as_deref(), rendered, RUNTIME_TIMEOUT).await;
    }

    let Err(reload_error) = reload(haproxy).await else {
        failpoint::hit("after-reload");
        return Ok(applied);
    };
    let Some(previous) = previous else {
        // There was no config before: go back to that, so the next run installs and reloads again
        // instead of finding its config already in place.
        // The file itself, not a symlink that points at it.
        let removed = fs_atomic::write_target(path)
            .and_then(|file| std::fs::remove_file(&file).and_then(|()| sync_parent(&file)));
        return Err(InstallError::ReloadFirst {
            path: path.clone(),
            removed: removed.is_ok(),
            source: reload_error,
        });
    };
    // The reason is the run's error, printed once at its end.
    tracing::info!(
        "the reload failed: restoring `{}` and reloading HAProxy with it",
        backup.display()
    );
    let restored = match fs_atomic::write(path, &previous, ownership) {
        Ok(()) => reload(haproxy).await.map_err(|error| error.to_string()),
        Err(error) => Err(format!("cannot write `{}`: {error}", path.display())),
    };
    Err(match restored {
        Ok(()) => InstallError::ReloadRestored {
            backup,
            source: reload_error,
        },
        Err(restore) => InstallError::ReloadRestoreFailed {
            backup,
            restore,
            source: reload_error,
        },
    })
}

/// Keeps the file this tool takes over as `haproxy.cfg.orig`, unless that exists already: it is
/// written once, never replaced (even by a file created since the check), so the
/// distribution's or the operator's original survives every later install.
fn keep_original(path: &Path, previous: &[u8]) -> Result<(), InstallError> {
    let original = original_path(path);
    // Anything at that path, even a dangling symlink, is there already: never written through.
    if std::fs::symlink_metadata(&original).is_ok() {
        return Ok(());
    }
    // With the taken-over file's owner and mode: it may hold secrets (a stats password).
    let fallback = Ownership {
        mode: 0o600,
        uid_gid: None,
    };
    let kept = Ownership::of_existing(path, fallback).and_then(|ownership| {
        Staged::write(&original, previous).and_then(|staged| staged.commit_new(ownership))
    });
    match kept {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(InstallError::Backup {
            path: path.to_owned(),
            backup: original,
            source,
        }),
    }
}

/// What an install keeps of the file it replaces.
struct Kept<'a> {
    /// `haproxy.cfg.bak`.
    backup: &'a Path,
    /// The installed file's bytes, if there is one.
    previous: Option<&'a [u8]>,
    /// Whether it is a file this tool never wrote, to keep as `haproxy.cfg.orig` too.
    takes_over: bool,
}

/// Keeps the installed file (as `haproxy.cfg.orig` too on a takeover: when the checked
/// candidate goes in, not before, so a rejected one leaves nothing behind) and renames the
/// checked candidate into place.
fn put_in_place(
    path: &Path,
    kept: &Kept<'_>,
    staged: Staged,
    ownership: Ownership,
) -> Result<(), InstallError> {
    if let Some(previous) = kept.previous {
        if kept.takes_over {
            keep_original(path, previous)?;
        }
        fs_atomic::write(kept.backup, previous, ownership).map_err(|source| {
            InstallError::Backup {
                path: path.to_owned(),
                backup: kept.backup.to_owned(),
                source,
            }
        })?;
    }
    staged
        .commit(ownership)
        .map_err(|source| InstallError::Install {
            path: path.to_owned(),
            source,
        })
}

/// What `--plan` checks before saying a run would install `rendered`: the checks the run makes
/// before acting, with nothing installed. The installed config's folder must exist (the run
/// writes its candidate there), and `check_command` must accept the candidate, which is written
/// to a private temporary file (mode 0600, removed afterwards), never beside the installed one.
pub(crate) async fn check_without_installing(
    haproxy: &HaproxyConfig,
    rendered: &str,
) -> Result<(), InstallError> {
    let path = &haproxy.config;
    check_folder(path)?;
    let stage_error = |source| InstallError::Stage {
        path: path.clone(),
        source,
    };
    let candidate =
        crate::fs_atomic::private_temp(".haproxy-autoscaler-plan-", ".cfg", rendered.as_bytes())
            .map_err(stage_error)?;
    check(haproxy, candidate.path()).await
}

/// The folder haproxy.cfg goes in must exist: the tool does not create it (a missing one is a
/// wrong path far more often than a folder to make).
fn check_folder(path: &Path) -> Result<(), InstallError> {
    let folder = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if folder.is_dir() {
        return Ok(());
    }
    Err(InstallError::Stage {
        path: path.to_owned(),
        source: io::Error::new(
            io::ErrorKind::NotFound,
            format!("folder `{}` does not exist", folder.display()),
        ),
    })
}

/// The lines of `candidate` that a check's `output` names as `CANDIDATE:LINE` (HAProxy's
/// `parsing [FILE:LINE]`), quoted, at most five.
fn quoted_lines(output: &str, candidate: &Path) -> String {
    let name = candidate.to_string_lossy();
    let Ok(text) = crate::fs_atomic::read_text(candidate, 64 * 1024 * 1024) else {
        return String::new();
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut numbers: Vec<usize> = output
        .match_indices(&format!("{name}:"))
        .filter_map(|(at, found)| {
            let rest = &output[at + found.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect();
    numbers.dedup();
    numbers.truncate(5);
    numbers
        .into_iter()
        .filter_map(|number| {
            let line = lines.get(number.checked_sub(1)?)?;
            Some(format!("\n  rendered line {number}: {}", line.trim_end()))
        })
        .collect()
}

/// Runs `check_command` on a candidate file.
pub(crate) async fn check(haproxy: &HaproxyConfig, candidate: &Path) -> Result<(), InstallError> {
    let candidate_text = candidate.to_string_lossy();
    let argv: Vec<String> = haproxy
        .check_command
        .iter()
        .map(|arg| arg.replace("{config}", &candidate_text))
        .collect();
    command::run(&argv, haproxy.command_timeout)
        .await
        .map(drop)
        .map_err(|source| match source {
            CommandError::Failed { ref output, .. } => InstallError::Check {
                path: haproxy.config.clone(),
                lines: quoted_lines(output, candidate).into(),
                source,
            },
            _ => InstallError::CheckNotRun {
                path: haproxy.config.clone(),
                source,
            },
        })
}

/// Reloads HAProxy with the reload command or the master socket, and confirms it: with a master
/// socket, a load HAProxy failed is an error quoting HAProxy's reason, on every version.
pub(crate) async fn reload(haproxy: &HaproxyConfig) -> Result<(), ReloadError> {
    let timeout = haproxy.command_timeout;
    match &haproxy.reload {
        Reload::MasterSocket(path) => {
            let master = Master::new(path);
            let before = master.show_proc().await?;
            master.reload(&before, timeout).await?;
        }
        Reload::Command {
            argv,
            master_socket,
        } => {
            let master = master_socket.as_deref().map(Master::new);
            let before = match &master {
                Some(master) => Some(master.show_proc().await?),
                None => None,
            };
            command::run(argv, timeout).await?;
            if let (Some(master), Some(before)) = (master, before) {
                master.confirm(&before, timeout).await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Reload;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::time::Duration;

    fn haproxy(dir: &Path, reload: &str) -> HaproxyConfig {
        let count = dir.join("reloads");
        HaproxyConfig {
            config: dir.join("haproxy.cfg"),
            template: dir.join("t.hbs"),
            stats: None,
            check_command: [
                "sh",
                "-c",
                "grep -q valid \"$0\" || { echo \"$0: not valid\"; exit 1; }",
                "{config}",
            ]
            .map(String::from)
            .to_vec(),
            reload: Reload::Command {
                argv: vec![
                    "sh".into(),
                    "-c".into(),
                    format!("echo x >> {}; {reload}", count.display()),
                ],
                master_socket: None,
            },
            command_timeout: Duration::from_millis(500),
            apply: crate::config::ApplyMode::Reload,
        }
    }

    fn reloads(dir: &Path) -> usize {
        std::fs::read_to_string(dir.join("reloads")).map_or(0, |t| t.lines().count())
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Issue 32: the file taken over is kept as `haproxy.cfg.orig` once; a later takeover (a
    /// lost state) does not replace it, and nothing already at that path (an operator's file, a
    /// dangling symlink) is replaced or written through.
    #[tokio::test]
    async fn a_takeover_keeps_the_original_once_and_never_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let h = haproxy(dir.path(), "true");
        let original = original_path(&h.config);
        std::fs::write(&h.config, "stock\n").unwrap();
        std::fs::set_permissions(&h.config, std::fs::Permissions::from_mode(0o640)).unwrap();
        // A rejected candidate installs nothing, and keeps nothing either.
        install(&h, "broken\n", None, true).await.unwrap_err();
        assert!(!original.exists());
        install(&h, "first valid\n", None, true).await.unwrap();
        assert_eq!(std::fs::read_to_string(&original).unwrap(), "stock\n");
        assert_eq!(std::fs::metadata(&original).unwrap().mode() & 0o777, 0o640);
        install(&h, "second valid\n", None, true).await.unwrap();
        assert_eq!(std::fs::read_to_string(&original).unwrap(), "stock\n");
        assert_eq!(
            std::fs::read_to_string(backup_path(&h.config)).unwrap(),
            "first valid\n"
        );
        // Not taking over: nothing is kept.
        std::fs::remove_file(&original).unwrap();
        install(&h, "third valid\n", None, false).await.unwrap();
        assert!(!original.exists());
        // A dangling symlink at `.orig`: left as it is, nothing written where it points.
        let elsewhere = dir.path().join("elsewhere");
        std::os::unix::fs::symlink(&elsewhere, &original).unwrap();
        install(&h, "fourth valid\n", None, true).await.unwrap();
        assert!(
            std::fs::symlink_metadata(&original)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(!elsewhere.exists());
        assert_eq!(
            std::fs::read_to_string(&h.config).unwrap(),
            "fourth valid\n"
        );
    }

    #[tokio::test]
    async fn success_keeps_a_backup_and_the_installed_mode() {
        let dir = tempfile::tempdir().unwrap();
        let h = haproxy(dir.path(), "true");
        std::fs::write(&h.config, "old valid\n").unwrap();
        std::fs::set_permissions(&h.config, std::fs::Permissions::from_mode(0o640)).unwrap();
        install(&h, "new valid\n", None, false).await.unwrap();
        assert_eq!(std::fs::read_to_string(&h.config).unwrap(), "new valid\n");
        assert_eq!(
            std::fs::read_to_string(backup_path(&h.config)).unwrap(),
            "old valid\n"
        );
        assert_eq!(std::fs::metadata(&h.config).unwrap().mode() & 0o777, 0o640);
        assert_eq!(reloads(dir.path()), 1);
        assert_eq!(
            entries(dir.path()),
            ["haproxy.cfg", "haproxy.cfg.bak", "reloads"]
        );
    }

    #[tokio::test]
    async fn a_rejected_candidate_leaves_everything_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let h = haproxy(dir.path(), "true");
        std::fs::write(&h.config, "old valid\n").unwrap();
        let error = install(&h, "broken\n", None, false).await.unwrap_err();
        assert!(matches!(error, InstallError::Check { .. }), "{error}");
        let chain = format!("{error}: {}", std::error::Error::source(&error).unwrap());
        assert!(
            chain.contains("not valid"),
            "the checker's message is shown: {chain}"
        );
        assert_eq!(std::fs::read_to_string(&h.config).unwrap(), "old valid\n");
        assert_eq!(entries(dir.path()), ["haproxy.cfg"]);
    }

    #[tokio::test]
    async fn a_failed_or_hanging_reload_restores_the_previous_config_and_reloads_again() {
        for reload in [
            "test -e {}.marker || { touch {}.marker; exit 1; }",
            "test -e {}.marker || { touch {}.marker; sleep 5; }",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let marker = dir.path().join("first").display().to_string();
            let h = haproxy(dir.path(), &reload.replace("{}", &marker));
            std::fs::write(&h.config, "old valid\n").unwrap();
            let error = install(&h, "new valid\n", None, false).await.unwrap_err();
            assert!(
                matches!(error, InstallError::ReloadRestored { .. }),
                "{reload}: {error}"
            );
            assert_eq!(std::fs::read_to_string(&h.config).unwrap(), "old valid\n");
            assert_eq!(
                reloads(dir.path()),
                2,
                "reloaded again with the restored file"
            );
        }
    }

    #[tokio::test]
    async fn a_failed_first_reload_removes_the_new_config_so_the_next_run_retries() {
        let dir = tempfile::tempdir().unwrap();
        let h = haproxy(dir.path(), "exit 1");
        let error = install(&h, "new valid\n", None, false).await.unwrap_err();
        assert!(
            matches!(error, InstallError::ReloadFirst { removed: true, .. }),
            "{error}"
        );
        assert!(!h.config.exists());
        assert_eq!(reloads(dir.path()), 1);
    }

    #[tokio::test]
    async fn a_restore_that_cannot_reload_says_haproxy_needs_attention() {
        let dir = tempfile::tempdir().unwrap();
        let h = haproxy(dir.path(), "exit 1");
        std::fs::write(&h.config, "old valid\n").unwrap();
        let error = install(&h, "new valid\n", None, false).await.unwrap_err();
        assert!(
            matches!(error, InstallError::ReloadRestoreFailed { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("needs attention"));
        assert_eq!(std::fs::read_to_string(&h.config).unwrap(), "old valid\n");
    }
}
