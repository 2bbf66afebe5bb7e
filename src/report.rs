//! What the operator reads: a run's report in text or JSON on stdout, warnings and errors on
//! stderr. Printing never fails a run: a closed stdout or stderr loses the text, not the work.
//!
//! Every byte the tool prints goes through the writers here (issue 29, class 4): a line of text
//! through [`printable`](crate::model::text::printable) (control characters, C1 and Unicode's
//! bidi and format controls escaped visibly), a JSON document through
//! [`json_printable`](crate::model::text::json_printable) (the same characters as JSON `\u`
//! escapes of four hex digits: the same document to a parser). Text from outside (a command's
//! output, a host file, an error quoting a config value) cannot drive the terminal whoever
//! formats it.
//! `tests/integration/architecture.rs` fails when code elsewhere prints by itself.

use std::fmt;
use std::io::Write;

use serde::Serialize;

use crate::cli::{Cli, Format};
use crate::decide::plan::{Action, Plan};
use crate::decide::scaling::Role;

/// Whether a run only planned (`--plan`) or applied its plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Mode {
    Plan,
    Apply,
    Simulate,
    /// `init`, `completions`, `man`: commands that make no run.
    Tool,
    Check,
    Status,
}

impl Mode {
    /// The mode the command line asks for.
    pub(crate) fn of(cli: &Cli) -> Mode {
        match (&cli.command, cli.plan) {
            (Some(crate::cli::Command::Simulate(_)), _) => Mode::Simulate,
            (Some(crate::cli::Command::Check(_)), _) => Mode::Check,
            (Some(crate::cli::Command::Status | crate::cli::Command::History(_)), _) => {
                Mode::Status
            }
            (
                Some(
                    crate::cli::Command::Init(_)
                    | crate::cli::Command::Hosts(_)
                    | crate::cli::Command::Verb(_)
                    | crate::cli::Command::Completions { .. }
                    | crate::cli::Command::Man { .. },
                ),
                _,
            ) => Mode::Tool,
            (None, true) => Mode::Plan,
            (Some(crate::cli::Command::Apply { .. }), _) | (None, false) => Mode::Apply,
        }
    }
}

/// What a run did or would do.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub mode: Mode,
    /// True if the run has actions (or with `--plan`, would have): bookkeeping in the state
    /// file alone is not a change.
    pub changes: bool,
    pub plan: Plan,
    /// How many times another node's commit to the shared state came first during this run
    /// (a decision taken again, or a record carried onto a newer state). Said in JSON only when
    /// there were some.
    #[serde(skip_serializing_if = "is_zero")]
    pub conflicts: u32,
}

#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's `skip_serializing_if` passes a reference"
)]
fn is_zero(count: &u32) -> bool {
    *count == 0
}

/// One line on stderr, made printable. A closed or broken stderr (a pipe nobody reads) loses
/// the line, never the run: `eprintln!` would panic, and the run would exit 101 after doing its
/// work.
pub(crate) fn say(line: fmt::Arguments<'_>) {
    let line = crate::model::text::printable(&line.to_string());
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// One line on stdout, made printable; a reader that went away (`| head -1`) ends the output,
/// not the process (`println!` would panic and exit 101).
pub(crate) fn out(line: fmt::Arguments<'_>) {
    out_text(&format!("{line}\n"));
}

/// `text` (lines, each with its newline) on stdout, made printable.
pub(crate) fn out_text(text: &str) {
    let text = crate::model::text::printable(text);
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// A JSON document on stdout, pretty, with every character a terminal would act on escaped.
pub(crate) fn out_json(document: &impl Serialize) {
    if let Ok(text) = serde_json::to_string_pretty(document) {
        let text = crate::model::text::json_printable(&text);
        let _ = writeln!(std::io::stdout().lock(), "{text}");
    }
}

/// A line on stdout as is: only for `status`' table, whose state cells are coloured with
/// escape sequences of its own and whose other cells it makes printable itself.
pub(crate) fn out_styled(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Bytes the binary generates from its own definitions (the manual page, completion scripts),
/// on stdout as they are; a failure to write them is the command's failure.
pub(crate) fn out_generated(bytes: &[u8]) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes).and_then(|()| stdout.flush())
}

/// Whether stdout is a terminal (for colour).
pub(crate) fn stdout_is_terminal() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stdout())
}

pub(crate) fn print(cli: &Cli, report: &Report) {
    match cli.format {
        Format::Json => out_json(report),
        Format::Text if cli.plan => out_text(&report.plan.to_string()),
        Format::Text => {
            if !cli.quiet {
                for warning in &report.plan.warnings {
                    say(format_args!("warning: {warning}"));
                }
                for (line, news) in report.plan.left_out() {
                    if news {
                        say(format_args!("warning: {line}"));
                    } else {
                        tracing::info!("{line}");
                    }
                }
                for action in &report.plan.actions {
                    out(format_args!("{action}"));
                }
            }
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::AddServer {
                backend,
                server,
                address,
                reason,
                ..
            } => write!(f, "add server {backend}/{server} at {address}: {reason}"),
            Action::RemoveServer {
                backend,
                server,
                reason,
                ..
            } => write!(f, "remove server {backend}/{server}: {reason}"),
            Action::Launch {
                pool,
                count,
                token,
                retry,
                reason,
            } => {
                let again = if *retry { " again" } else { "" };
                write!(
                    f,
                    "launch {count} instance(s){again} for pool {pool} (token {token}): {reason}"
                )
            }
            Action::Drain {
                backend,
                server,
                reason,
                ..
            } => write!(f, "drain server {backend}/{server}: {reason}"),
            Action::Terminate {
                pool,
                server,
                reason,
            } => {
                write!(f, "terminate instance {server} of pool {pool}: {reason}")
            }
            Action::InstallConfig {
                path,
                sha256,
                reason,
            } => write!(
                f,
                "install {} (sha256 {}): {reason}",
                path.display(),
                &sha256[..12]
            ),
            Action::ApplyRuntime { commands, reason } => {
                write!(f, "apply through the runtime API: {reason}")?;
                for command in commands {
                    write!(f, "\n    {command}")?;
                }
                Ok(())
            }
            Action::Reload { reason } => write!(f, "reload haproxy: {reason}"),
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for warning in &self.warnings {
            writeln!(f, "warning: {warning}")?;
        }
        for (line, _) in self.left_out() {
            writeln!(f, "warning: {line}")?;
        }
        for pool in &self.pools {
            if let Some(scale) = &pool.scale {
                let d = &scale.decision;
                let metric = d.metric.map_or("no metric".to_owned(), |m| {
                    format!("metric {m:.2} per server")
                });
                let booting = scale
                    .roles
                    .values()
                    .filter(|role| **role == Role::Booting)
                    .count();
                writeln!(
                    f,
                    "pool {}: {metric}; {} server(s) ({booting} booting), bounds {}..{} → desired {}: {}",
                    pool.name, d.current, d.min, d.max, d.desired, d.reason
                )?;
                if let Some(forecast) = &scale.forecast {
                    writeln!(f, "pool {}: {}", pool.name, forecast.describe())?;
                }
            }
        }
        if self.actions.is_empty() {
            return writeln!(f, "No changes: haproxy.cfg is up to date.");
        }
        for action in &self.actions {
            writeln!(f, "{action}")?;
        }
        if !self.config.diff.is_empty() {
            writeln!(f)?;
            f.write_str(&self.config.diff)?;
        }
        Ok(())
    }
}
