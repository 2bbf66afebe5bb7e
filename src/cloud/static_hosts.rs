//! The static provider: a pool's servers are the files of a folder (`hosts.d`), one per host,
//! named after the server and holding its `ADDRESS:PORT`. `hosts add|remove|list` manage them;
//! an operator may also write them by hand. Files whose name starts with `.` (an editor's or
//! an interrupted write's temporary file) are not hosts.

use std::path::{Path, PathBuf};

use super::{Cause, CloudError, CloudErrorKind, Operation, Provider, fatal_call};
use crate::config::{Launcher, PoolConfig};
use crate::model::{Instance, InstanceState};

/// One host file: its name (the server's) and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostFile {
    pub(crate) name: String,
    /// The file's first line, trimmed: `ADDRESS:PORT`; or why the file cannot be read as a
    /// host (not a regular file, not UTF-8, too large).
    pub(crate) endpoint: Result<String, String>,
}

/// The largest host file read (it holds one `ADDRESS:PORT` line).
const HOST_FILE_LIMIT: u64 = 64 * 1024;

/// The host files of `dir`, sorted by name. A symlink is followed (a host file may be a link
/// to one kept elsewhere). An entry that cannot be read as a host (a FIFO, a device, a folder,
/// a dangling link, bytes that are not UTF-8, a file too large) is never read past its bound,
/// is warned about, and is returned with the reason: one bad entry never hides the others, nor
/// itself (issue 29, classes 2 and 3).
pub(crate) fn read_hosts(dir: &Path) -> std::io::Result<Vec<HostFile>> {
    let mut hosts = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let endpoint = match crate::fs_atomic::read_text(&entry.path(), HOST_FILE_LIMIT) {
            Ok(text) => Ok(text.lines().next().unwrap_or("").trim().to_owned()),
            Err(error) => {
                tracing::warn!(
                    "host file `{}` left out: {error}",
                    crate::model::text::shown(&entry.path().display().to_string())
                );
                Err(error.to_string())
            }
        };
        hosts.push(HostFile { name, endpoint });
    }
    hosts.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(hosts)
}

/// The static provider of one pool: its hosts folder. Its pools do not scale.
pub(crate) struct StaticHosts<'a> {
    dir: &'a Path,
}

impl<'a> StaticHosts<'a> {
    pub(crate) fn new(dir: &'a Path) -> StaticHosts<'a> {
        StaticHosts { dir }
    }
}

/// Why a static pool was asked to launch or terminate.
const NO_LAUNCHES: &str = "a static pool's hosts are added and removed with `hosts add|remove`";

impl Provider for StaticHosts<'_> {
    async fn list(&self, pool: &PoolConfig) -> Result<Vec<Instance>, CloudError> {
        list(pool, self.dir)
    }

    /// Nothing launches into a static pool: no token is ever looked up.
    fn lists_every_launch(&self, _pool: &PoolConfig) -> bool {
        true
    }

    async fn find_by_token(
        &self,
        _pool: &PoolConfig,
        _token: &str,
    ) -> Result<Vec<String>, CloudError> {
        Ok(Vec::new())
    }

    async fn launch(
        &self,
        pool: &PoolConfig,
        _launcher: &Launcher,
        _count: u32,
        _token: &str,
    ) -> Result<Vec<String>, CloudError> {
        Err(fatal_call(pool, Operation::Launch, NO_LAUNCHES))
    }

    async fn terminate(
        &self,
        pool: &PoolConfig,
        _launcher: &Launcher,
        _ids: &[String],
    ) -> Result<(), CloudError> {
        Err(fatal_call(pool, Operation::Terminate, NO_LAUNCHES))
    }
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
        // Unreadable entries were warned about as they were read.
        .filter_map(|host| Some((host.name, host.endpoint.ok()?)))
        .map(|(name, endpoint)| {
            let (address, port) = match endpoint.rsplit_once(':') {
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
                    Err(_) => (endpoint.clone(), None),
                },
                None => (endpoint.clone(), None),
            };
            Instance {
                id: name,
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

    /// Issue 29, classes 2 and 3: an entry that cannot be read as a host (not UTF-8, too large,
    /// a FIFO, a folder, a dangling link) is returned with its reason and never read past its
    /// bound; the others are read, a symlink to a host file included.
    #[test]
    fn one_bad_host_file_is_left_out_with_its_reason_and_the_others_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("web-1"), "127.0.0.1:9001\n").unwrap();
        std::fs::write(d.join("web-2"), [0xff, 0xfe, b'\n']).unwrap();
        std::fs::write(d.join("web-3"), vec![b'x'; 65 * 1024]).unwrap();
        crate::testing::fifo(&d.join("web-4"));
        std::fs::create_dir(d.join("web-5")).unwrap();
        std::os::unix::fs::symlink(d.join("nowhere"), d.join("web-6")).unwrap();
        std::fs::write(d.join(".real"), "127.0.0.1:9007\n").unwrap();
        std::os::unix::fs::symlink(".real", d.join("web-7")).unwrap();
        let hosts = read_hosts(d).unwrap();
        let seen: Vec<(&str, Result<&str, &str>)> = hosts
            .iter()
            .map(|host| {
                (
                    host.name.as_str(),
                    host.endpoint
                        .as_deref()
                        .map_err(std::string::String::as_str),
                )
            })
            .collect();
        assert_eq!(seen[0], ("web-1", Ok("127.0.0.1:9001")));
        assert_eq!(seen[6], ("web-7", Ok("127.0.0.1:9007")));
        for (index, why) in [
            (1, "not valid UTF-8"),
            (2, "larger than 65536 bytes"),
            (3, "not a regular file"),
            (4, "not a regular file"),
            (5, "No such file"),
        ] {
            let (name, endpoint) = seen[index];
            assert!(
                endpoint.is_err_and(|error| error.contains(why)),
                "{name}: {endpoint:?}"
            );
        }
    }

    #[test]
    fn hosts_are_the_files_of_the_folder_sorted_and_dot_files_are_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("web-2"), "127.0.0.1:9002\n").unwrap();
        std::fs::write(dir.path().join("web-1"), "  127.0.0.1:9001  \n# a note\n").unwrap();
        std::fs::write(dir.path().join(".web-3.swp"), "junk").unwrap();
        let hosts = read_hosts(dir.path()).unwrap();
        assert_eq!(
            hosts,
            [
                HostFile {
                    name: "web-1".into(),
                    endpoint: Ok("127.0.0.1:9001".into())
                },
                HostFile {
                    name: "web-2".into(),
                    endpoint: Ok("127.0.0.1:9002".into())
                },
            ]
        );
    }
}
