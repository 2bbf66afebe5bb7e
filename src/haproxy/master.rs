//! HAProxy's master CLI: reload through it, and confirm a reload with `show proc`.
//!
//! In HAProxy 2.6 the master CLI's `reload` answers nothing, even when the new config fails to load
//! (the old worker keeps serving), so a reload is confirmed by reading `show proc` before and after:
//! the master's reload counter must go up while its `[failed: N]` counter stays the same.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// How often `show proc` is polled while waiting for a reload.
const POLL: Duration = Duration::from_millis(100);

/// How long a refusing master socket is retried: the master re-executes itself after starting
/// its workers and on every reload, and refuses connections meanwhile.
const REEXEC_WAIT: Duration = Duration::from_secs(3);

/// How long one answer from the master may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// A master CLI problem.
#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    #[error("cannot talk to the HAProxy master socket `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unexpected `show proc` answer from `{}`: {answer:?}", path.display())]
    Unparsable { path: PathBuf, answer: String },
    #[error(
        "HAProxy failed to load the new config (master `[failed: {failed}]`); the previous worker is still serving"
    )]
    ReloadFailed { failed: u64 },
    #[error("HAProxy did not confirm the reload on `{}` within {}s", path.display(), after.as_secs())]
    Unconfirmed { path: PathBuf, after: Duration },
}

/// The master's counters from `show proc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcCounters {
    pub reloads: u64,
    pub failed: u64,
}

/// Parses the master line of `show proc`: `PID master RELOADS [failed: N] UPTIME VERSION`.
pub(crate) fn parse_show_proc(answer: &str) -> Option<ProcCounters> {
    let line = answer
        .lines()
        .find(|line| line.split_whitespace().nth(1) == Some("master"))?;
    let mut words = line.split_whitespace().skip(2);
    let reloads = words.next()?.parse().ok()?;
    let failed = match (words.next(), words.next()) {
        (Some("[failed:"), Some(count)) => count.trim_end_matches(']').parse().ok()?,
        _ => 0,
    };
    Some(ProcCounters { reloads, failed })
}

/// Counts the workers listed under `# old workers` in `show proc`: workers from before a reload
/// that are still finishing their connections. `None` when the answer is not `show proc`'s.
pub(crate) fn parse_old_workers(answer: &str) -> Option<usize> {
    parse_show_proc(answer)?;
    let mut section = "";
    let mut count = 0;
    for line in answer.lines() {
        if let Some(header) = line.strip_prefix('#') {
            section = header.trim();
        } else if section == "old workers" && line.split_whitespace().nth(1) == Some("worker") {
            count += 1;
        }
    }
    Some(count)
}

/// A client of one master socket.
#[derive(Debug, Clone)]
pub(crate) struct Master {
    path: PathBuf,
}

impl Master {
    pub(crate) fn new(path: &Path) -> Master {
        Master {
            path: path.to_owned(),
        }
    }

    async fn connect_and_send(&self, command: &str) -> Result<UnixStream, MasterError> {
        let mut stream = self.connect().await?;
        stream
            .write_all(format!("{command}\n").as_bytes())
            .await
            .map_err(|source| self.io(source))?;
        // Half-close: the master CLI answers one command and closes only once its input ends.
        stream.shutdown().await.map_err(|source| self.io(source))?;
        Ok(stream)
    }

    /// Connects, waiting out the moment the master re-executes itself (after starting its
    /// workers, and on every reload), when its socket refuses connections.
    async fn connect(&self) -> Result<UnixStream, MasterError> {
        let deadline = tokio::time::Instant::now() + REEXEC_WAIT;
        loop {
            match UnixStream::connect(&self.path).await {
                Ok(stream) => return Ok(stream),
                Err(error)
                    if error.kind() == std::io::ErrorKind::ConnectionRefused
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(POLL / 2).await;
                }
                Err(error) => return Err(self.io(error)),
            }
        }
    }

    fn io(&self, source: std::io::Error) -> MasterError {
        MasterError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Sends a command and reads the answer up to the end of the connection.
    async fn send(&self, command: &str) -> Result<String, MasterError> {
        let mut stream = self.connect_and_send(command).await?;
        let mut answer = String::new();
        let read = stream.read_to_string(&mut answer);
        match tokio::time::timeout(ANSWER_TIMEOUT, read).await {
            Ok(result) => result.map_err(|source| self.io(source))?,
            Err(_) => {
                return Err(self.io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no complete answer to `{command}` within {ANSWER_TIMEOUT:?}"),
                )));
            }
        };
        Ok(answer)
    }

    /// Sends `show proc` and reads what `parse` takes from the answer.
    async fn show_proc<T>(&self, parse: fn(&str) -> Option<T>) -> Result<T, MasterError> {
        let answer = self.send("show proc").await?;
        parse(&answer).ok_or_else(|| MasterError::Unparsable {
            path: self.path.clone(),
            answer,
        })
    }

    /// Reads the master's counters.
    pub(crate) async fn counters(&self) -> Result<ProcCounters, MasterError> {
        self.show_proc(parse_show_proc).await
    }

    /// How many workers from before the last reload are still running.
    pub(crate) async fn old_workers(&self) -> Result<usize, MasterError> {
        self.show_proc(parse_old_workers).await
    }

    /// Asks the master to reload. It answers nothing, and the connection may stay open while the
    /// master re-executes itself, so nothing is read: [`Master::confirm`] checks the outcome.
    pub(crate) async fn reload(&self) -> Result<(), MasterError> {
        self.connect_and_send("reload").await.map(drop)
    }

    /// Waits until the master has reloaded since `before`, and fails if the load failed.
    pub(crate) async fn confirm(
        &self,
        before: ProcCounters,
        timeout: Duration,
    ) -> Result<(), MasterError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // While the master re-executes itself its socket briefly refuses connections.
            if let Ok(now) = self.counters().await
                && now.reloads > before.reloads
            {
                return if now.failed > before.failed {
                    Err(MasterError::ReloadFailed { failed: now.failed })
                } else {
                    Ok(())
                };
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(MasterError::Unconfirmed {
                    path: self.path.clone(),
                    after: timeout,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_master_that_refuses_while_it_re_executes_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.sock");
        // A socket file nobody listens on: connections are refused, as during a re-exec.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let master = Master::new(&path);
        let serve = {
            let path = path.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                std::fs::remove_file(&path).unwrap();
                let listener = tokio::net::UnixListener::bind(&path).unwrap();
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut command = String::new();
                stream.read_to_string(&mut command).await.unwrap();
                assert_eq!(command, "show proc\n");
                stream
                    .write_all(b"1 master 4 [failed: 0] 0d00h00m09s 2.6.12\n")
                    .await
                    .unwrap();
            })
        };
        let counters = master.counters().await.unwrap();
        assert_eq!(
            counters,
            ProcCounters {
                reloads: 4,
                failed: 0
            }
        );
        serve.await.unwrap();
        // A socket that keeps refusing is an error once the wait is over.
        let gone = dir.path().join("gone.sock");
        drop(std::os::unix::net::UnixListener::bind(&gone).unwrap());
        let started = tokio::time::Instant::now();
        assert!(Master::new(&gone).counters().await.is_err());
        assert!(started.elapsed() >= REEXEC_WAIT);
    }

    #[test]
    fn parses_show_proc_of_haproxy_2_6() {
        let answer = "#<PID>          <type>          <reloads>       <uptime>        <version>      \n\
6912            master          2 [failed: 1]   0d00h00m02s     2.6.12-1+deb12u4\n\
# workers\n\
7002            worker          1               0d00h00m01s     2.6.12-1+deb12u4\n\
# programs\n\n";
        assert_eq!(
            parse_show_proc(answer),
            Some(ProcCounters {
                reloads: 2,
                failed: 1
            })
        );
        assert_eq!(
            parse_show_proc("1 master 0 0d00h00m00s 2.4.0\n"),
            Some(ProcCounters {
                reloads: 0,
                failed: 0
            })
        );
        assert_eq!(parse_old_workers(answer), Some(0));
        assert_eq!(parse_show_proc("Unknown command.\n"), None);
        assert_eq!(parse_show_proc(""), None);
    }

    #[test]
    fn counts_old_workers_of_haproxy_2_6() {
        // Real 2.6.12 output one second after a reload, with a keep-alive client still connected.
        let answer = "#<PID>          <type>          <reloads>       <uptime>        <version>      \n\
29469           master          1 [failed: 0]   0d00h00m02s     2.6.12-1+deb12u4\n\
# workers\n\
29476           worker          0               0d00h00m01s     2.6.12-1+deb12u4\n\
# old workers\n\
29471           worker          1               0d00h00m02s     2.6.12-1+deb12u4\n\
# programs\n\n";
        assert_eq!(parse_old_workers(answer), Some(1));
        assert_eq!(parse_old_workers("Unknown command.\n"), None);
    }
}
