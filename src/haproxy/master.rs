//! HAProxy's master CLI: reload through it, confirm a reload, and count the workers from before
//! a reload.
//!
//! How a reload's outcome shows differs between the versions the tool supports (measured on
//! 2.6.12, 3.0.11 and 3.2.0):
//!
//! - From 2.7 on, the master CLI's `reload` is synchronous: it answers `Success=1` or `Success=0`,
//!   `--`, then the startup messages of the load (the reason a load failed is there). 2.6 answers
//!   nothing.
//! - Up to 3.0 the master re-executes itself to load a config: its socket refuses connections
//!   meanwhile, and once it answers again `show proc`'s reload counter and its `[failed: N]` say
//!   how the load went.
//! - From 3.1 on a new worker loads the config while the master keeps answering: the reload
//!   counter goes up when the load *starts*, and `[failed: N]` counts failures since the last
//!   success (a success resets it). `show startup-logs` then begins with `Initializing new worker
//!   (PID)` and ends, once the load is over, with `Loading success.` or `Failed to load worker!`.
//!   After a failed load no worker is listed under `# workers`: the one still serving is listed
//!   under `# old workers`.
//!
//! So a reload is judged, in this order, by the `reload` answer when there is one; else, once the
//! reload counter went up, by the verdict in `show startup-logs` (waiting while a new worker is
//! still loading); else (2.6, which has no `show startup-logs` on the master) by the counters.
//! [`judge`] is that rule, pure and tested with each version's real answers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

/// How often `show proc` is polled while waiting for a reload.
const POLL: Duration = Duration::from_millis(100);

/// How long a refusing master socket is retried: the master re-executes itself after starting
/// its workers and on every reload, and refuses connections meanwhile.
const REEXEC_WAIT: Duration = Duration::from_secs(3);

/// How long one answer from the master may take (a `reload` answer: the command timeout).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest master CLI answer read: `show proc` of a master with many old workers, or the
/// startup messages of a config with many warnings, fit many times over.
const ANSWER_LIMIT: u64 = 4 * 1024 * 1024;

/// The most of HAProxy's own messages quoted in an error.
const REASON_LINES: usize = 10;

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
    #[error("HAProxy failed to load the new config (its previous worker kept serving){reason}")]
    ReloadFailed {
        /// HAProxy's own words (`: HAProxy said: ...`), or where to find them.
        reason: Box<str>,
    },
    #[error("HAProxy did not confirm the reload on `{}` within {}s: it may still be loading, or have failed; see `show proc` and `show startup-logs` on its master socket", path.display(), after.as_secs())]
    Unconfirmed { path: PathBuf, after: Duration },
}

/// One worker line of `show proc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Worker {
    pub pid: u32,
    /// Reloads this worker has survived.
    pub reloads: u64,
}

/// What `show proc` says: the master's counters and its workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShowProc {
    pub reloads: u64,
    pub failed: u64,
    /// Workers listed under `# workers`: the current one (none after a failed load on 3.1+).
    pub workers: Vec<Worker>,
    /// Workers listed under `# old workers`.
    pub old_workers: Vec<Worker>,
}

impl ShowProc {
    /// Workers from before a reload that are still finishing their connections. After a failed
    /// load on 3.1+ the worker still serving is listed among the old ones with no current worker
    /// beside it: it is not finishing anything, so the youngest old worker is not counted then.
    pub(crate) fn finishing_old_workers(&self) -> usize {
        if self.workers.is_empty() {
            self.old_workers.len().saturating_sub(1)
        } else {
            self.old_workers.len()
        }
    }
}

/// Parses `show proc`: the master line `PID master RELOADS [failed: N] UPTIME VERSION`, then the
/// workers under `# workers` and `# old workers`. `None` when the answer is not `show proc`'s.
pub(crate) fn parse_show_proc(answer: &str) -> Option<ShowProc> {
    let line = answer
        .lines()
        .find(|line| line.split_whitespace().nth(1) == Some("master"))?;
    let mut words = line.split_whitespace().skip(2);
    let reloads = words.next()?.parse().ok()?;
    let failed = match (words.next(), words.next()) {
        (Some("[failed:"), Some(count)) => count.trim_end_matches(']').parse().ok()?,
        _ => 0,
    };
    let mut show = ShowProc {
        reloads,
        failed,
        workers: Vec::new(),
        old_workers: Vec::new(),
    };
    let mut section = "";
    for line in answer.lines() {
        if let Some(header) = line.strip_prefix('#') {
            section = header.trim();
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(pid), Some("worker"), Some(reloads)) = (words.next(), words.next(), words.next())
        else {
            continue;
        };
        let worker = Worker {
            pid: pid.parse().ok()?,
            reloads: reloads.parse().ok()?,
        };
        match section {
            "workers" => show.workers.push(worker),
            "old workers" => show.old_workers.push(worker),
            _ => {}
        }
    }
    Some(show)
}

/// How a reload went, as far as the master has said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not over yet (or not started).
    Pending,
    Loaded,
    /// HAProxy's own reason, or where to find it.
    Failed(String),
}

/// The verdict of a synchronous `reload` answer (2.7+): `Success=0|1`, `--`, the startup
/// messages. `None` for no answer (2.6) or an answer that is not one.
pub(crate) fn reload_answer_verdict(answer: &str) -> Option<Verdict> {
    let mut lines = answer.lines();
    let verdict = match lines.next()?.trim() {
        "Success=1" => Verdict::Loaded,
        "Success=0" => Verdict::Failed(quoted_reason(answer)),
        _ => return None,
    };
    Some(verdict)
}

/// The verdict of `show startup-logs` on the master: `None` when it says nothing of a reload's
/// outcome (2.6 has no such command; a log without a verdict line), `Pending` while the new
/// worker of a 3.1+ reload is still loading.
pub(crate) fn startup_logs_verdict(logs: &str) -> Option<Verdict> {
    let mut loading = false;
    let mut verdict = None;
    for line in logs.lines() {
        let message = line
            .split_once(") : ")
            .map_or(line, |(_, message)| message)
            .trim();
        if message.starts_with("Initializing new worker") {
            loading = true;
        } else if message == "Loading success." {
            verdict = Some(Verdict::Loaded);
        } else if message == "Failed to load worker!" || message == "Loading failure!" {
            verdict = Some(Verdict::Failed(quoted_reason(logs)));
        }
    }
    verdict.or(loading.then_some(Verdict::Pending))
}

/// Judges a reload from the master's `show proc` before it, and now, with `show startup-logs`
/// read now (`None` when the master has no such command).
pub(crate) fn judge(before: &ShowProc, now: &ShowProc, startup_logs: Option<&str>) -> Verdict {
    if now.reloads <= before.reloads {
        return Verdict::Pending;
    }
    if let Some(verdict) = startup_logs.and_then(startup_logs_verdict) {
        return verdict;
    }
    if now.failed > before.failed {
        Verdict::Failed(
            "; this HAProxy (2.6 or older) does not say why on its master socket: the reason is in its own output (its stderr; `journalctl -u haproxy` under systemd)"
                .to_owned(),
        )
    } else {
        Verdict::Loaded
    }
}

/// `: HAProxy said: ...` with the `[ALERT]` lines of HAProxy's startup messages (every message
/// when none is an alert), at most [`REASON_LINES`].
fn quoted_reason(messages: &str) -> String {
    let lines: Vec<&str> = messages
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with('['))
        .collect();
    let alerts: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|line| line.starts_with("[ALERT]"))
        .collect();
    let chosen = if alerts.is_empty() { lines } else { alerts };
    if chosen.is_empty() {
        return String::new();
    }
    let mut reason = String::from(": HAProxy said:");
    for line in chosen.iter().take(REASON_LINES) {
        reason.push_str("\n  ");
        reason.push_str(line);
    }
    reason
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

    /// Connects, waiting out the moment the master re-executes itself (after starting its
    /// workers, and on every reload up to 3.0), when its socket refuses connections.
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

    /// Sends a command and reads the answer up to the end of the connection, at most
    /// [`ANSWER_LIMIT`] bytes within `timeout`.
    async fn send(&self, command: &str, timeout: Duration) -> Result<String, MasterError> {
        let mut stream = self.connect().await?;
        stream
            .write_all(format!("{command}\n").as_bytes())
            .await
            .map_err(|source| self.io(source))?;
        // Half-close: the master CLI answers one command and closes only once its input ends.
        stream.shutdown().await.map_err(|source| self.io(source))?;
        let deadline = tokio::time::Instant::now() + timeout;
        let answer = crate::exchange::read_stream(stream, ANSWER_LIMIT, deadline)
            .await
            .map_err(|source| {
                self.io(std::io::Error::new(
                    source.kind(),
                    format!("`{command}`: {source}"),
                ))
            })?;
        Ok(String::from_utf8_lossy(&answer).into_owned())
    }

    /// Reads `show proc`.
    pub(crate) async fn show_proc(&self) -> Result<ShowProc, MasterError> {
        let answer = self.send("show proc", ANSWER_TIMEOUT).await?;
        parse_show_proc(&answer).ok_or_else(|| MasterError::Unparsable {
            path: self.path.clone(),
            answer,
        })
    }

    /// How many workers from before the last reload are still finishing their connections.
    pub(crate) async fn old_workers(&self) -> Result<usize, MasterError> {
        Ok(self.show_proc().await?.finishing_old_workers())
    }

    /// `show startup-logs`, or `None` when the master does not know the command (2.6).
    async fn startup_logs(&self) -> Result<Option<String>, MasterError> {
        let answer = self.send("show startup-logs", ANSWER_TIMEOUT).await?;
        Ok((!answer.starts_with("Unknown command")).then_some(answer))
    }

    /// Reloads through the master socket and waits for the outcome: the synchronous answer of
    /// 2.7+, else (2.6 answers nothing) what [`Master::confirm`] finds. `before` is `show proc`
    /// read just before.
    pub(crate) async fn reload(
        &self,
        before: &ShowProc,
        timeout: Duration,
    ) -> Result<(), MasterError> {
        let started = tokio::time::Instant::now();
        let answer = match self.send("reload", timeout).await {
            Ok(answer) => answer,
            // 2.6 may drop the connection as its master re-executes itself; an answer that
            // never ended leaves the outcome to what the master says next.
            Err(MasterError::Io { source, .. })
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::TimedOut
                ) =>
            {
                String::new()
            }
            Err(error) => return Err(error),
        };
        match reload_answer_verdict(&answer) {
            Some(verdict) => self.verdict(verdict, timeout),
            None => self.confirm_until(before, started + timeout, timeout).await,
        }
    }

    /// Waits until the reload that followed `before` is over, and fails if its load failed.
    pub(crate) async fn confirm(
        &self,
        before: &ShowProc,
        timeout: Duration,
    ) -> Result<(), MasterError> {
        self.confirm_until(before, tokio::time::Instant::now() + timeout, timeout)
            .await
    }

    /// [`Master::confirm`] until `deadline`, at least once; `timeout` is the wait it says.
    async fn confirm_until(
        &self,
        before: &ShowProc,
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Result<(), MasterError> {
        loop {
            // While the master re-executes itself its socket briefly refuses connections.
            if let Ok(now) = self.show_proc().await
                && now.reloads > before.reloads
                && let Ok(logs) = self.startup_logs().await
            {
                let verdict = judge(before, &now, logs.as_deref());
                if verdict != Verdict::Pending {
                    return self.verdict(verdict, timeout);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return self.verdict(Verdict::Pending, timeout);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn verdict(&self, verdict: Verdict, timeout: Duration) -> Result<(), MasterError> {
        match verdict {
            Verdict::Loaded => Ok(()),
            Verdict::Failed(reason) => Err(MasterError::ReloadFailed {
                reason: reason.into(),
            }),
            Verdict::Pending => Err(MasterError::Unconfirmed {
                path: self.path.clone(),
                after: timeout,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

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
        let show = master.show_proc().await.unwrap();
        assert_eq!((show.reloads, show.failed), (4, 0));
        serve.await.unwrap();
        // A socket that keeps refusing is an error once the wait is over.
        let gone = dir.path().join("gone.sock");
        drop(std::os::unix::net::UnixListener::bind(&gone).unwrap());
        let started = tokio::time::Instant::now();
        assert!(Master::new(&gone).show_proc().await.is_err());
        assert!(started.elapsed() >= REEXEC_WAIT);
    }

    /// A master socket that answers each command from `answers` (by its first word pair), any
    /// number of times; an unknown command gets `Unknown command.`.
    fn fake_master(
        dir: &Path,
        answers: &'static [(&'static str, &'static str)],
    ) -> (PathBuf, tokio::task::JoinHandle<()>) {
        let path = dir.join("master.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let serve = tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut command = String::new();
                stream.read_to_string(&mut command).await.unwrap();
                let answer = answers
                    .iter()
                    .find(|(asked, _)| command.trim() == *asked)
                    .map_or("Unknown command.\n", |(_, answer)| answer);
                stream.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        (path, serve)
    }

    #[tokio::test]
    async fn a_reload_the_master_never_confirms_is_unconfirmed_and_a_refused_one_says_why() {
        let dir = tempfile::tempdir().unwrap();
        // 2.6-like: `reload` answers nothing and the counters never move.
        let (path, serve) = fake_master(
            dir.path(),
            &[
                (
                    "show proc",
                    "1 master 2 [failed: 0] 0d00h00m09s 2.6.12\n# workers\n7 worker 0 0d 2.6.12\n",
                ),
                ("reload", ""),
            ],
        );
        let master = Master::new(&path);
        let before = master.show_proc().await.unwrap();
        let error = master
            .reload(&before, Duration::from_millis(400))
            .await
            .unwrap_err();
        assert!(matches!(error, MasterError::Unconfirmed { .. }), "{error}");
        assert!(
            error.to_string().contains("did not confirm the reload"),
            "{error}"
        );
        serve.abort();

        // 3.x-like: `reload` answers its outcome.
        let dir = tempfile::tempdir().unwrap();
        let (path, serve) = fake_master(
            dir.path(),
            &[
                ("show proc", "1 master 2 [failed: 0] 0d00h00m09s 3.2.0\n"),
                ("reload", V32_RELOAD_FAILED),
            ],
        );
        let master = Master::new(&path);
        let error = master
            .reload(&before, Duration::from_secs(5))
            .await
            .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("failed to load the new config"),
            "{message}"
        );
        assert!(
            message.contains("cannot bind socket (Address already in use)"),
            "{message}"
        );
        serve.abort();
    }

    fn worker(pid: u32, reloads: u64) -> Worker {
        Worker { pid, reloads }
    }

    // Real `show proc` answers (uptimes as printed), each after the event its name says.
    const V26_FAILED: &str = "#<PID>          <type>          <reloads>       <uptime>        <version>      \n\
6912            master          2 [failed: 1]   0d00h00m02s     2.6.12-1+deb12u4\n\
# workers\n\
7002            worker          1               0d00h00m01s     2.6.12-1+deb12u4\n\
# programs\n\n";
    const V26_KEEP_ALIVE_AFTER_RELOAD: &str = "#<PID>          <type>          <reloads>       <uptime>        <version>      \n\
29469           master          1 [failed: 0]   0d00h00m02s     2.6.12-1+deb12u4\n\
# workers\n\
29476           worker          0               0d00h00m01s     2.6.12-1+deb12u4\n\
# old workers\n\
29471           worker          1               0d00h00m02s     2.6.12-1+deb12u4\n\
# programs\n\n";
    const V30_FAILED: &str = "#<PID>          <type>          <reloads>       <uptime>        <version>      \n\
9874            master          2 [failed: 1]   0d00h00m04s     3.0.11-9e587df \n\
# workers\n\
9880            worker          1               0d00h00m03s     3.0.11-9e587df \n\
# programs\n\n";
    const V32_BEFORE: &str = "#<PID>          <type>          <reloads>       <uptime>        <version>      \n\
8186            master          0 [failed: 0]   0d00h00m01s     3.2.0-e134140d2\n\
# workers\n\
8188            worker          0               0d00h00m01s     3.2.0-e134140d2\n\n";
    const V32_LOADING: &str = "#<PID>          <type>          <reloads>       <uptime>        <version>      \n\
8186            master          1 [failed: 0]   0d00h00m01s     3.2.0-e134140d2\n\
# workers\n\
8201            worker          0               0d00h00m00s     3.2.0-e134140d2\n\
# old workers\n\
8188            worker          1               0d00h00m01s     3.2.0-e134140d2\n\n";
    const V32_FAILED: &str = "#<PID>          <type>          <reloads>       <uptime>        <version>      \n\
8186            master          1 [failed: 1]   0d00h00m03s     3.2.0-e134140d2\n\
# workers\n\
# old workers\n\
8188            worker          1               0d00h00m03s     3.2.0-e134140d2\n\n";

    #[test]
    fn parses_show_proc_of_each_version() {
        let parsed = parse_show_proc(V26_KEEP_ALIVE_AFTER_RELOAD).unwrap();
        assert_eq!((parsed.reloads, parsed.failed), (1, 0));
        assert_eq!(parsed.workers, [worker(29476, 0)]);
        assert_eq!(parsed.old_workers, [worker(29471, 1)]);
        let parsed = parse_show_proc(V30_FAILED).unwrap();
        assert_eq!((parsed.reloads, parsed.failed), (2, 1));
        assert_eq!(parsed.workers, [worker(9880, 1)]);
        let parsed = parse_show_proc(V32_FAILED).unwrap();
        assert_eq!((parsed.reloads, parsed.failed), (1, 1));
        assert_eq!(parsed.workers, []);
        assert_eq!(parsed.old_workers, [worker(8188, 1)]);
        let bare = parse_show_proc("1 master 0 0d00h00m00s 2.4.0\n").unwrap();
        assert_eq!((bare.reloads, bare.failed), (0, 0));
        assert_eq!(parse_show_proc("Unknown command.\n"), None);
        assert_eq!(parse_show_proc(""), None);
    }

    #[test]
    fn the_worker_that_survives_a_failed_load_is_not_an_old_worker() {
        for (answer, finishing) in [
            (V26_FAILED, 0),
            (V26_KEEP_ALIVE_AFTER_RELOAD, 1),
            (V30_FAILED, 0),
            (V32_BEFORE, 0),
            (V32_LOADING, 1),
            (V32_FAILED, 0),
            // 3.2 after a failed load, with a worker from an earlier reload still finishing.
            (
                "1 master 3 [failed: 1] 0d00h00m03s 3.2.0\n# workers\n# old workers\n\
20 worker 1 0d00h00m03s 3.2.0\n10 worker 2 0d00h00m09s 3.2.0\n",
                1,
            ),
        ] {
            assert_eq!(
                parse_show_proc(answer).unwrap().finishing_old_workers(),
                finishing,
                "{answer}"
            );
        }
    }

    // Real answers of the master's `reload` and `show startup-logs`.
    const V32_RELOAD_FAILED: &str = "Success=0\n--\n\
[NOTICE]   (7037) : Initializing new worker (7112)\n\
[NOTICE]   (7112) : haproxy version is 3.2.0-e134140d2\n\
[NOTICE]   (7112) : path to executable is target/haproxy/3.2.0/haproxy\n\
[ALERT]    (7112) : Binding [/tmp/m/3.2.0/h.cfg:12] for frontend taken: protocol tcpv4: cannot bind socket (Address already in use) for [127.0.0.1:46917].\n\
[ALERT]    (7112) : [haproxy.main()] Some protocols failed to start their listeners! Exiting.\n\
[NOTICE]   (7037) : haproxy version is 3.2.0-e134140d2\n\
[NOTICE]   (7037) : path to executable is target/haproxy/3.2.0/haproxy\n\
[WARNING]  (7037) : Failed to load worker!\n\n";
    const V30_RELOAD_LOADED: &str = "Success=1\n--\n\
[NOTICE]   (9874) : New worker (9880) forked\n\
[NOTICE]   (9874) : Loading success.\n\
[NOTICE]   (9874) : haproxy version is 3.0.11-9e587df\n\n";
    const V30_LOGS_FAILED: &str = "[NOTICE]   (9943) : haproxy version is 3.0.11-9e587df\n\
[ALERT]    (9943) : Binding [/tmp/h.cfg:12] for frontend taken: protocol tcpv4: cannot bind socket (Address already in use) for [127.0.0.1:60935].\n\
[WARNING]  (9943) : Loading failure!\n";
    const V32_LOGS_LOADING: &str = "[NOTICE]   (8186) : Initializing new worker (8201)\n";
    const V32_LOGS_LOADED: &str = "[NOTICE]   (8278) : Initializing new worker (8305)\n\
[NOTICE]   (8278) : Loading success.\n\
[WARNING]  (8278) : Former worker (8280) exited with code 0 (Exit)\n";
    const V26_NO_STARTUP_LOGS: Option<&str> = None;

    #[test]
    fn the_reload_answer_of_2_7_and_later_decides() {
        let Some(Verdict::Failed(reason)) = reload_answer_verdict(V32_RELOAD_FAILED) else {
            panic!("a failure");
        };
        assert!(reason.starts_with(": HAProxy said:\n  [ALERT]"), "{reason}");
        assert!(reason.contains("cannot bind socket (Address already in use)"));
        assert!(!reason.contains("[NOTICE]"), "only the alerts: {reason}");
        assert_eq!(
            reload_answer_verdict(V30_RELOAD_LOADED),
            Some(Verdict::Loaded)
        );
        // 2.6 answers nothing; anything else is not a verdict either.
        assert_eq!(reload_answer_verdict(""), None);
        assert_eq!(reload_answer_verdict("Unknown command.\n"), None);
    }

    #[test]
    fn a_reload_is_judged_by_the_startup_logs_where_there_are_some_else_by_the_counters() {
        let show = |answer| parse_show_proc(answer).unwrap();
        let v26_before =
            show("1 master 1 [failed: 0] 0d00h00m02s 2.6.12\n# workers\n2 worker 0 0d 2.6.12\n");
        let v30_before = show(
            "9874 master 1 [failed: 0] 0d00h00m02s 3.0.11\n# workers\n9880 worker 0 0d 3.0.11\n",
        );
        let failed = |verdict: &Verdict, says: &str| matches!(verdict, Verdict::Failed(reason) if reason.contains(says));
        // 2.6: no startup logs on the master; the counters say it, but not why.
        let verdict = judge(&v26_before, &show(V26_FAILED), V26_NO_STARTUP_LOGS);
        assert!(failed(&verdict, "journalctl"), "{verdict:?}");
        assert_eq!(
            judge(&v26_before, &show(V26_KEEP_ALIVE_AFTER_RELOAD), None),
            Verdict::Pending,
            "the reload counter has not moved"
        );
        // 3.0: the counters settle with the load, and the logs say why.
        let verdict = judge(&v30_before, &show(V30_FAILED), Some(V30_LOGS_FAILED));
        assert!(failed(&verdict, "cannot bind socket"), "{verdict:?}");
        // 3.2: the counter moves when the load starts; the logs say when it is over.
        let before = show(V32_BEFORE);
        assert_eq!(
            judge(&before, &show(V32_LOADING), Some(V32_LOGS_LOADING)),
            Verdict::Pending
        );
        assert_eq!(
            judge(&before, &show(V32_LOADING), Some(V32_LOGS_LOADED)),
            Verdict::Loaded
        );
        let failed_logs = V32_RELOAD_FAILED.split_once("--\n").unwrap().1;
        let verdict = judge(&before, &show(V32_FAILED), Some(failed_logs));
        assert!(failed(&verdict, "cannot bind socket"), "{verdict:?}");
        assert_eq!(
            judge(&before, &show(V32_BEFORE), Some(V32_LOGS_LOADED)),
            Verdict::Pending
        );
    }
}
