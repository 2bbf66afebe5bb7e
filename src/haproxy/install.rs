//! Installs a rendered haproxy.cfg and reloads HAProxy (invariants 3 and 4).
//!
//! The candidate is written beside the installed file (mode 0600), checked with `check_command`,
//! the installed file is copied to `haproxy.cfg.bak`, the candidate renamed into place with the
//! installed file's owner and mode, and HAProxy reloaded. A reload is confirmed, not assumed: the
//! reload command must exit 0 and, when a master socket is configured, `show proc` must show a new
//! reload with no new failure. If the reload fails, the backup is restored and HAProxy reloaded
//! again, so the installed file is always the one HAProxy runs.

use std::io;
use std::path::{Path, PathBuf};

use crate::command::{self, CommandError};
use crate::config::HaproxyConfig;
use crate::fs_atomic::{self, Ownership, Staged};
use crate::haproxy::master::{Master, MasterError};

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
    #[error("the rendered config was rejected by the check command; `{}` is untouched", path.display())]
    Check {
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
    #[error("reload failed after installing the first config `{}` (there was nothing to restore)", path.display())]
    ReloadFirst {
        path: PathBuf,
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
pub fn backup_path(path: &Path) -> PathBuf {
    let mut backup = path.as_os_str().to_owned();
    backup.push(".bak");
    PathBuf::from(backup)
}

/// Reads the installed config; `None` if there is none.
pub fn read_installed(path: &Path) -> Result<Option<String>, InstallError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(InstallError::ReadInstalled {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Checks `rendered`, installs it over `haproxy.config` and reloads HAProxy.
pub async fn install_and_reload(
    haproxy: &HaproxyConfig,
    rendered: &str,
) -> Result<(), InstallError> {
    let path = &haproxy.config;
    let backup = backup_path(path);
    let previous = read_installed(path)?;
    let staged =
        Staged::write(path, rendered.as_bytes()).map_err(|source| InstallError::Stage {
            path: path.clone(),
            source,
        })?;
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
    if let Some(previous) = &previous {
        fs_atomic::write(&backup, previous.as_bytes(), ownership).map_err(|source| {
            InstallError::Backup {
                path: path.clone(),
                backup: backup.clone(),
                source,
            }
        })?;
    }
    staged
        .commit(ownership)
        .map_err(|source| InstallError::Install {
            path: path.clone(),
            source,
        })?;

    let Err(reload_error) = reload(haproxy).await else {
        return Ok(());
    };
    let Some(previous) = previous else {
        return Err(InstallError::ReloadFirst {
            path: path.clone(),
            source: reload_error,
        });
    };
    tracing::error!(
        "reload failed ({reload_error}); restoring `{}`",
        backup.display()
    );
    let restored = match fs_atomic::write(path, previous.as_bytes(), ownership) {
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

/// Runs `check_command` on a candidate file.
pub async fn check(haproxy: &HaproxyConfig, candidate: &Path) -> Result<(), InstallError> {
    let candidate_text = candidate.to_string_lossy();
    let argv: Vec<String> = haproxy
        .check_command
        .iter()
        .map(|arg| arg.replace("{config}", &candidate_text))
        .collect();
    command::run(&argv, haproxy.command_timeout)
        .await
        .map(drop)
        .map_err(|source| InstallError::Check {
            path: haproxy.config.clone(),
            source,
        })
}

/// Reloads HAProxy with the reload command or the master socket, and confirms it.
pub async fn reload(haproxy: &HaproxyConfig) -> Result<(), ReloadError> {
    let master = haproxy.reload.master_socket.as_deref().map(Master::new);
    let before = match &master {
        Some(master) => Some(master.counters().await?),
        None => None,
    };
    match (&haproxy.reload.command, &master) {
        (Some(argv), _) => {
            command::run(argv, haproxy.command_timeout).await?;
        }
        (None, Some(master)) => master.reload().await?,
        (None, None) => unreachable!("the config always sets a reload command or a master socket"),
    }
    if let (Some(master), Some(before)) = (master, before) {
        master.confirm(before, haproxy.command_timeout).await?;
    }
    Ok(())
}
