//! `steward completion` and `steward man`: shell completions and man pages,
//! generated from the same clap definition as `--help`, so that they never
//! disagree with it.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::cli::error::CliError;
use crate::engine::cluster::file::{WriteError, write_atomic};

/// Writes the completion script for `shell` to `out`.
///
/// # Errors
/// `out` cannot be written.
pub fn completion(shell: clap_complete::Shell, out: &mut dyn Write) -> Result<(), CliError> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "steward", &mut script);
    out.write_all(&script).map_err(CliError::Output)
}

/// Writes `steward.1` and one page per subcommand (`steward-backup.1`,
/// `steward-agent-status.1`, ...) into `dir`, creating it if needed;
/// returns the names written.
///
/// # Errors
/// The directory or a page cannot be written.
pub fn man_pages(dir: &Path) -> Result<Vec<String>, CliError> {
    std::fs::create_dir_all(dir).map_err(|source| {
        CliError::Write(WriteError {
            action: "create the directory",
            path: dir.to_owned(),
            source,
        })
    })?;
    let mut command = Cli::command();
    command.build();
    let mut written = Vec::new();
    write_pages(&command, "steward", dir, &mut written)?;
    Ok(written)
}

fn write_pages(command: &clap::Command, name: &str, dir: &Path, written: &mut Vec<String>) -> Result<(), CliError> {
    let page = command.clone().name(name.to_owned());
    let mut roff = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut roff)
        .map_err(CliError::Output)?;
    let file = format!("{name}.1");
    write_atomic(&dir.join(&file), &roff)?;
    written.push(file);
    for sub in command
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_gets_a_script_naming_the_subcommands() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut out = Vec::new();
            completion(shell, &mut out).unwrap();
            let script = String::from_utf8(out).unwrap();
            for word in ["upgrade", "restore", "agent-cacert"] {
                assert!(script.contains(word), "{shell:?} lacks {word}");
            }
        }
    }

    #[test]
    fn a_man_page_per_subcommand() {
        let dir = tempfile::tempdir().unwrap();
        let written = man_pages(dir.path()).unwrap();
        for page in [
            "steward.1",
            "steward-upgrade.1",
            "steward-agent-status.1",
            "steward-fleet-backup.1",
        ] {
            assert!(written.iter().any(|w| w == page), "{page} missing from {written:?}");
        }
        let upgrade = std::fs::read_to_string(dir.path().join("steward-upgrade.1")).unwrap();
        assert!(upgrade.contains(".TH"), "roff header");
        assert!(upgrade.contains("\\-\\-to"), "documents --to");
    }
}
