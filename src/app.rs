//! The router: parses nothing itself (that is `cli`), sends each command to its module, runs
//! the reconcile under the stop signals, prints its report and gives the exit code. The run
//! itself is `reconcile`.

use crate::cli::{Cli, Command};
use crate::error::{EXIT_CHANGES_PENDING, EXIT_OK, Error};
use crate::report;

/// Runs the command line and prints the report; returns the exit code of a successful run.
pub fn main(cli: &Cli) -> Result<u8, Error> {
    match &cli.command {
        Some(Command::Simulate(args)) => return crate::simulate::command::run(cli, args),
        Some(Command::Init(args)) => {
            crate::init::run(cli, args)?;
            return Ok(EXIT_OK);
        }
        Some(Command::Completions { shell }) => {
            return crate::manual::completions(*shell).map(|()| EXIT_OK);
        }
        Some(Command::Man { out_dir }) => {
            return crate::manual::man(out_dir.as_deref()).map(|()| EXIT_OK);
        }
        Some(Command::Hosts(command)) => return crate::hosts::run(cli, command),
        Some(Command::Verb(verb)) => return crate::verbs::run(cli, verb),
        Some(Command::Check(_) | Command::Status | Command::History(_) | Command::Apply { .. })
        | None => {}
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    if let Some(Command::Check(args)) = &cli.command {
        return runtime.block_on(crate::check::check(cli, args.offline));
    }
    if let Some(Command::Status) = &cli.command {
        return runtime.block_on(crate::status::status(cli));
    }
    if let Some(Command::History(args)) = &cli.command {
        return runtime.block_on(crate::history::history(cli, args));
    }
    let report = runtime.block_on(async {
        tokio::select! {
            outcome = crate::reconcile::run(cli) => outcome,
            signal = stop_signal() => {
                // Dropping the run's future stops it where it is, as a crash would (every step
                // is crash-safe); the commands it was running are killed as they are dropped.
                Err(Error::Stopped { signal: signal.0, code: signal.1 })
            }
        }
    })?;
    report::print(cli, &report);
    Ok(if cli.plan && cli.detailed_exitcode && report.changes {
        EXIT_CHANGES_PENDING
    } else {
        0
    })
}

/// Resolves when the run is asked to stop (SIGTERM, SIGINT, SIGHUP), with the signal's name and
/// the exit code that reports it (128 + its number).
async fn stop_signal() -> (&'static str, u8) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => ("SIGTERM", 143),
        _ = int.recv() => ("SIGINT", 130),
        _ = hup.recv() => ("SIGHUP", 129),
    }
}

/// Prints a failed run's error once: `error: …` and each `caused by: …` on stderr, and with
/// `--format json` also a JSON document on stdout. A busy lock is a normal overlap of two runs,
/// not a failure: it is said only with `-v` (cron mails whatever a job prints).
pub fn print_error(cli: &Cli, error: &Error) {
    let busy = error.is_someone_elses_turn();
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    if cli.format == crate::cli::Format::Json {
        report::out_json(&serde_json::json!({
            "mode": report::Mode::of(cli),
            "changes": false,
            "error": {
                "message": error.to_string(),
                "causes": causes,
                "exit_code": error.exit_code(),
            },
        }));
    }
    // A `hosts` command is typed by a person, who is owed the reason it did nothing.
    let typed = matches!(cli.command, Some(crate::cli::Command::Hosts(_)));
    if busy && !typed {
        // Not an error: another run (or node) is doing the job.
        if cli.verbose > 0 {
            report::say(format_args!("note: {error} (exit 75)"));
        }
        return;
    }
    report::say(format_args!("error: {error}"));
    for cause in &causes {
        report::say(format_args!("caused by: {cause}"));
    }
}
