//! `init`: a starting config and the default template, written into a folder for the operator
//! to edit. Nothing is ever overwritten: if either file exists, neither is written.

use std::io;
use std::path::{Path, PathBuf};

use crate::fs_atomic::{Ownership, Staged};

/// The commented example config `init` writes.
pub(crate) const EXAMPLE_CONFIG: &str = include_str!("../examples/config.toml");

/// The default template, as shipped.
pub(crate) const DEFAULT_TEMPLATE: &str = include_str!("../templates/haproxy.cfg.hbs");

/// Why `init` wrote nothing, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("`{0}` exists; init never overwrites a file: move it away or give another --dir")]
    Exists(PathBuf),
    #[error(
        "`{}` would be both the config and the template: name the config otherwise (--config)",
        .0.display()
    )]
    OneFileTwice(PathBuf),
    #[error("cannot create the folder `{path}`")]
    Folder {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write `{path}`")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// `init`: into `--dir` as config.toml, or where `--config` (or the default) says; prints what it
/// wrote.
pub(crate) fn run(cli: &crate::cli::Cli, args: &crate::cli::InitArgs) -> Result<(), InitError> {
    let config = cli
        .config
        .clone()
        .unwrap_or_else(|| crate::cli::DEFAULT_CONFIG_PATH.into());
    let (dir, name) = match &args.dir {
        Some(dir) => (dir.clone(), "config.toml".into()),
        None => (
            config.parent().map(Path::to_owned).unwrap_or_default(),
            config
                .file_name()
                .map_or_else(|| "config.toml".into(), ToOwned::to_owned),
        ),
    };
    let written = init(&dir, &name)?;
    if cli.format == crate::cli::Format::Json {
        crate::report::out_json(&serde_json::json!({"mode": "init", "written": written}));
    } else if !cli.quiet {
        for path in &written {
            crate::report::out(format_args!("wrote {}", path.display()));
        }
    }
    Ok(())
}

/// Writes the config as `config_name` (mode 0640: it may come to hold a webhook URL) and
/// `haproxy.cfg.hbs` (0644) into `dir`, creating it; returns the paths written.
pub(crate) fn init(dir: &Path, config_name: &std::ffi::OsStr) -> Result<Vec<PathBuf>, InitError> {
    let files = [
        (dir.join(config_name), EXAMPLE_CONFIG, 0o640),
        (dir.join("haproxy.cfg.hbs"), DEFAULT_TEMPLATE, 0o644),
    ];
    // Two outputs, one file: the second write would find the first (issue 29, class 1).
    if files[0].0 == files[1].0 {
        return Err(InitError::OneFileTwice(files[0].0.clone()));
    }
    if let Some((path, _, _)) = files.iter().find(|(path, _, _)| exists(path)) {
        return Err(InitError::Exists(path.clone()));
    }
    std::fs::create_dir_all(dir).map_err(|source| InitError::Folder {
        path: dir.to_owned(),
        source,
    })?;
    let mut written = Vec::new();
    for (path, contents, mode) in files {
        let write_error = |source: io::Error| {
            if source.kind() == io::ErrorKind::AlreadyExists {
                InitError::Exists(path.clone())
            } else {
                InitError::Write {
                    path: path.clone(),
                    source,
                }
            }
        };
        Staged::write(&path, contents.as_bytes())
            .and_then(|staged| {
                staged.commit_new(Ownership {
                    mode,
                    uid_gid: None,
                })
            })
            .map_err(write_error)?;
        written.push(path);
    }
    Ok(written)
}

/// A path that exists, or is a link (even a dangling one: writing would follow it).
fn exists(path: &Path) -> bool {
    path.symlink_metadata().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_both_files_with_their_modes_into_a_new_folder() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("etc/haproxy-autoscaler");
        let written = init(&dir, "config.toml".as_ref()).unwrap();
        assert_eq!(written.len(), 2);
        let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
        assert_eq!(config, EXAMPLE_CONFIG);
        let mode = |name: &str| {
            std::fs::metadata(dir.join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(
            (mode("config.toml"), mode("haproxy.cfg.hbs")),
            (0o640, 0o644)
        );
    }

    #[test]
    fn an_existing_file_is_never_overwritten_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("haproxy.cfg.hbs"), "mine").unwrap();
        let error = init(dir.path(), "config.toml".as_ref())
            .unwrap_err()
            .to_string();
        assert!(error.contains("haproxy.cfg.hbs") && error.contains("never overwrites"));
        assert!(!dir.path().join("config.toml").exists());
        let template = std::fs::read_to_string(dir.path().join("haproxy.cfg.hbs")).unwrap();
        assert_eq!(template, "mine");
    }
}
