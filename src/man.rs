//! `ringlb man DIR` (hidden; for packaging): the manual pages, generated from the clap
//! definitions in `cli` (clap_mangen), so that `man ringlb` never disagrees with `--help`:
//! `ringlb.1` and one `ringlb-<command>.1` per command.
//!
//! Owns: which pages exist and their names. Must never: write outside the directory it is given,
//! or describe a command by hand (the text comes from `cli`).

use std::path::{Path, PathBuf};

use clap::CommandFactory;

use crate::cli::Cli;

/// Writes the pages into `dir` (created if missing); the paths written.
pub fn write_pages(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let cmd = Cli::command();
    let mut written = Vec::new();
    let mut page = |cmd: clap::Command, name: &str| -> std::io::Result<()> {
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut buf)?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, buf)?;
        written.push(path);
        Ok(())
    };
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("ringlb-{}", sub.get_name());
        page(sub.clone().name(name.clone()), &name)?;
    }
    page(cmd, "ringlb")?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_for_the_binary_and_each_visible_command() {
        let dir = std::env::temp_dir().join(format!("ringlb-man-{}", std::process::id()));
        let written = write_pages(&dir).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for want in [
            "ringlb.1",
            "ringlb-run.1",
            "ringlb-reload.1",
            "ringlb-check.1",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
        }
        assert!(!names.iter().any(|n| n == "ringlb-man.1"), "hidden");
        let main = std::fs::read_to_string(dir.join("ringlb.1")).unwrap();
        assert!(
            main.starts_with(".ie") || main.contains(".TH ringlb"),
            "{main}"
        );
        assert!(main.contains("reload"), "lists the commands");
        let run = std::fs::read_to_string(dir.join("ringlb-run.1")).unwrap();
        assert!(run.contains("upgrade"), "the run page has its flags");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
