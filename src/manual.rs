//! `completions SHELL` and `man`: generated from the command line's clap definitions, so they
//! never drift from `--help`.

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
    crate::report::out_generated(&out).map_err(Error::Stdout)
}

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
    let mut all = Vec::new();
    pages(command, &mut all);
    for page in all {
        let mut roff = Vec::new();
        page.render(&mut roff)?;
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
