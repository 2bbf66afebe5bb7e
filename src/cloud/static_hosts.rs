//! The static provider: a pool's servers are the files of a folder (`hosts.d`), one per host,
//! named after the server and holding its `ADDRESS:PORT`. `hosts add|remove|list` manage them;
//! an operator may also write them by hand. Files whose name starts with `.` (an editor's or
//! an interrupted write's temporary file) are not hosts.

use std::path::{Path, PathBuf};

use super::{Cause, CloudError, CloudErrorKind, Operation};
use crate::config::PoolConfig;
use crate::model::{Instance, InstanceState};

/// One host file: its name (the server's) and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostFile {
    pub(crate) name: String,
    /// The file's first line, trimmed: `ADDRESS:PORT`.
    pub(crate) endpoint: String,
}

/// The largest host file read (it holds one `ADDRESS:PORT` line).
const HOST_FILE_LIMIT: u64 = 64 * 1024;

/// The host files of `dir`, sorted by name; a file that cannot be read (not UTF-8, too large)
/// is left out with a warning.
pub(crate) fn read_hosts(dir: &Path) -> std::io::Result<Vec<HostFile>> {
    let mut hosts = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.file_type()?.is_file() {
            continue;
        }
        // Bounded, and one bad file is left out with a warning, never the whole folder (issue
        // 29, classes 2 and 3).
        let text = match crate::fs_atomic::read_text(&entry.path(), HOST_FILE_LIMIT) {
            Ok(text) => text,
            Err(error) => {
                tracing::warn!(
                    "host file `{}` left out: {error}",
                    crate::model::text::shown(&entry.path().display().to_string())
                );
                continue;
            }
        };
        hosts.push(HostFile {
            name,
            endpoint: text.lines().next().unwrap_or("").trim().to_owned(),
        });
    }
    hosts.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(hosts)
}

/// The pool's hosts as instances: running, at the address and port their file holds. A file
/// that does not hold `ADDRESS:PORT` gives an instance without a port, which is left out with
/// the reason (one bad file never stops the others).
pub(crate) fn list(pool: &PoolConfig, dir: &Path) -> Result<Vec<Instance>, CloudError> {
    let hosts = read_hosts(dir).map_err(|error| CloudError {
        pool: pool.name.clone(),
        operation: Operation::List,
        kind: CloudErrorKind::Fatal,
        cause: Cause::Api(format!(
            "cannot read the hosts folder `{}`: {error}",
            dir.display()
        )),
    })?;
    Ok(hosts
        .into_iter()
        .map(|host| {
            let (address, port) = match host.endpoint.rsplit_once(':') {
                Some((address, port)) => match port.parse::<u16>() {
                    // `[::1]:8080`: the address is what is inside the brackets.
                    Ok(port) => (
                        address
                            .strip_prefix('[')
                            .and_then(|v6| v6.strip_suffix(']'))
                            .unwrap_or(address)
                            .to_owned(),
                        Some(port),
                    ),
                    Err(_) => (host.endpoint.clone(), None),
                },
                None => (host.endpoint.clone(), None),
            };
            Instance {
                id: host.name,
                state: InstanceState::Running,
                private_ip: Some(address),
                public_ip: None,
                port,
                launch_time: None,
                zone: None,
                image_id: None,
                tags: Default::default(),
            }
        })
        .collect())
}

/// The file that holds host `name` in `dir`.
pub(crate) fn host_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 29, classes 2 and 3: a host file that is not UTF-8, or too large, is left out;
    /// the others are read.
    #[test]
    fn one_bad_host_file_is_left_out_and_the_others_are_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("web-1"), "127.0.0.1:9001\n").unwrap();
        std::fs::write(dir.path().join("web-2"), [0xff, 0xfe, b'\n']).unwrap();
        std::fs::write(dir.path().join("web-3"), vec![b'x'; 65 * 1024]).unwrap();
        let hosts = read_hosts(dir.path()).unwrap();
        let names: Vec<&str> = hosts.iter().map(|host| host.name.as_str()).collect();
        assert_eq!(names, ["web-1"]);
    }

    #[test]
    fn hosts_are_the_files_of_the_folder_sorted_and_dot_files_are_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("web-2"), "127.0.0.1:9002\n").unwrap();
        std::fs::write(dir.path().join("web-1"), "  127.0.0.1:9001  \n# a note\n").unwrap();
        std::fs::write(dir.path().join(".web-3.swp"), "junk").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let hosts = read_hosts(dir.path()).unwrap();
        assert_eq!(
            hosts,
            [
                HostFile {
                    name: "web-1".into(),
                    endpoint: "127.0.0.1:9001".into()
                },
                HostFile {
                    name: "web-2".into(),
                    endpoint: "127.0.0.1:9002".into()
                },
            ]
        );
    }
}
