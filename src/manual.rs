//! `completions SHELL` and `man`: generated from the command line's clap definitions, so they
//! never drift from `--help`. The main page also has CONFIGURATION, made from the book's
//! configuration reference (which a test checks against the parser's keys), FILES and
//! ENVIRONMENT.

use std::path::Path;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::Error;

/// Prints `shell`'s completion script on stdout.
pub(crate) fn completions(shell: clap_complete::Shell) -> Result<(), Error> {
    let mut command = Cli::command();
    let name = command.get_name().to_owned();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, &name, &mut out);
    if shell == clap_complete::Shell::Bash {
        // clap_complete's bash script spells a hyphenated binary's subcommand states two ways
        // (`haproxy__autoscaler__subcmd__hosts` in its loop, `haproxy__subcmd__autoscaler__...`
        // in its case arms: clap-rs/clap#6421), so nothing past the first word completes. The
        // arms are respelled as the loop spells them; a test completes past the first word.
        let text = String::from_utf8_lossy(&out)
            .replace(&name.replace('-', "__subcmd__"), &name.replace('-', "__"));
        return crate::report::out_generated(text.as_bytes()).map_err(Error::Stdout);
    }
    crate::report::out_generated(&out).map_err(Error::Stdout)
}

/// Prints the manual page (roff) on stdout, or writes it and one page per command (the pages
/// its SUBCOMMANDS section names) into `out_dir`.
pub(crate) fn man(out_dir: Option<&Path>) -> Result<(), Error> {
    // `help` is a flag on every page, not a page of its own.
    let command = Cli::command().disable_help_subcommand(true);
    if let Some(dir) = out_dir {
        return write_pages(command, dir).map_err(|source| Error::Manual {
            dir: dir.to_owned(),
            source,
        });
    }
    let mut out = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut out)
        .map_err(Error::Stdout)?;
    out.extend_from_slice(main_page_sections().as_bytes());
    crate::report::out_generated(&out).map_err(Error::Stdout)
}

/// The book's configuration reference: `### \`[table]\`` headings and `| \`key\` | default |
/// what it does |` rows.
const REFERENCE: &str = include_str!("../docs/src/reference.md");

/// Markdown's inline marks made plain: backticks dropped, `[text](target)` as its text.
fn plain(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let link = after.find("](").and_then(|close| {
            let end = after[close..].find(')')? + close;
            Some((close, end))
        });
        if let Some((close, end)) = link {
            out.push_str(&after[..close]);
            rest = &after[end + 1..];
        } else {
            out.push('[');
            rest = after;
        }
    }
    out.push_str(rest);
    out.replace('`', "")
}

/// CONFIGURATION, FILES and ENVIRONMENT, in roff, for the end of the main page.
fn main_page_sections() -> String {
    use roff::{Roff, bold, roman};
    let mut page = Roff::new();
    page.control("SH", ["CONFIGURATION"]).text([roman(
        "The config file is TOML; unknown keys are errors. Every key, by table (durations in seconds; relative paths from the config file's folder):",
    )]);
    for line in REFERENCE.lines() {
        if let Some(heading) = line.strip_prefix("### ") {
            page.control("SS", [plain(heading).as_str()]);
        } else if line.starts_with("| `") {
            let cells: Vec<String> = line
                .trim_matches('|')
                .split('|')
                .map(|cell| plain(cell.trim()))
                .collect();
            let [key, default, what] = [0, 1, 2].map(|i| cells.get(i).cloned().unwrap_or_default());
            page.control("TP", []);
            if default.is_empty() {
                page.text([bold(key)]);
            } else {
                page.text([bold(key), roman(format!(" (default: {default})"))]);
            }
            page.text([roman(what)]);
        }
    }
    page.control("SH", ["FILES"]);
    for (file, what) in FILES {
        page.control("TP", [])
            .text([bold(*file)])
            .text([roman(*what)]);
    }
    page.control("SH", ["ENVIRONMENT"]);
    for (name, what) in ENVIRONMENT {
        page.control("TP", [])
            .text([bold(*name)])
            .text([roman(*what)]);
    }
    page.to_roff()
}

/// The files a run reads and writes, at their default paths.
const FILES: &[(&str, &str)] = &[
    (
        "/etc/haproxy-autoscaler/config.toml",
        "The config file (--config, HAPROXY_AUTOSCALER_CONFIG).",
    ),
    (
        "/etc/haproxy-autoscaler/haproxy.cfg.hbs",
        "The Handlebars template; /usr/share/haproxy-autoscaler/haproxy.cfg.hbs when it is missing.",
    ),
    (
        "/etc/haproxy/haproxy.cfg",
        "The rendered config, installed atomically; haproxy.cfg.bak holds the file before the last install, haproxy.cfg.orig the one this tool first took over (kept once).",
    ),
    (
        "/var/lib/haproxy-autoscaler/state.json",
        "The state (a shared one: state.path = s3://BUCKET/KEY, with this node's own half here); state.json.lock is the run lock, state.json.failing the outage notify remembers.",
    ),
    (
        "/etc/haproxy-autoscaler/hosts.d",
        "A static pool's hosts, one file each ([pool.static] dir, relative to the config's folder).",
    ),
    (
        "metrics_file",
        "The run's figures for node_exporter's textfile collector, when the config sets it.",
    ),
];

/// The environment a run reads.
const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "HAPROXY_AUTOSCALER_CONFIG",
        "The config file, when --config is not given.",
    ),
    (
        "RUST_LOG",
        "How much to log to stderr (for example haproxy_autoscaler=debug); wins over -q and -v, except that the AWS SDK's lines below warn are never shown.",
    ),
    (
        "AWS_REGION, AWS_PROFILE, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN",
        "The AWS SDK's usual chain: the environment first, then the profile files, then the instance's role (IMDS); [aws] region in the config, when set, wins over AWS_REGION.",
    ),
    (
        "NO_COLOR, TERM",
        "status paints HAProxy's states on a terminal unless NO_COLOR is set and not empty, or TERM is dumb.",
    ),
];

/// Writes the page of `command` and of each of its subcommands into `dir`, each as every output
/// is written (atomically; never through a FIFO, a device or a folder at its name).
fn write_pages(mut command: clap::Command, dir: &Path) -> std::io::Result<()> {
    fn pages(command: clap::Command, into: &mut Vec<clap_mangen::Man>) {
        for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
            pages(sub.clone(), into);
        }
        into.push(clap_mangen::Man::new(command));
    }
    command.build();
    let main_page = format!("{}.1", command.get_name());
    let mut all = Vec::new();
    pages(command, &mut all);
    for page in all {
        let mut roff = Vec::new();
        page.render(&mut roff)?;
        if page.get_filename() == main_page {
            roff.extend_from_slice(main_page_sections().as_bytes());
        }
        let path = dir.join(page.get_filename());
        let ownership = crate::fs_atomic::Ownership::of_existing(
            &path,
            crate::fs_atomic::Ownership {
                mode: 0o644,
                uid_gid: None,
            },
        )?;
        crate::fs_atomic::write(&path, &roff, ownership)?;
    }
    Ok(())
}
