//! `ringlb import-apache`: an Apache httpd configuration (mod_proxy, mod_proxy_balancer,
//! mod_proxy_ajp, mod_ssl, mod_status) turned into a ringlb configuration, with a note for
//! everything that was not carried over. Files: `apache_conf` (reading httpd's syntax and its
//! includes), `apache_map` (what each directive means for ringlb), `params` (worker and balancer
//! parameters), `quote` (TOML strings), `toml_out` (the output text).
//!
//! Owns: the command's result: the text, the notes, and whether the text is a configuration
//! ringlb accepts. Must never: write a file (the caller prints), or call a result good that
//! `Config::parse` refuses.

pub mod apache_conf;
pub mod apache_map;
pub mod params;
pub mod quote;
pub mod toml_out;

use std::path::Path;

pub use apache_map::Note;

/// What an import came to.
pub struct Imported {
    pub toml: String,
    pub notes: Vec<Note>,
    /// Why the text is not a configuration ringlb accepts (`None`: it is).
    pub invalid: Option<String>,
}

/// Reads the Apache configuration at `path` (and what it includes) and translates it.
pub fn apache(path: &Path) -> Result<Imported, String> {
    let (tree, problems) = apache_conf::read(path)?;
    let mut m = apache_map::translate(&tree);
    let mut notes: Vec<Note> = problems
        .into_iter()
        .map(|p| Note {
            at: p.at,
            text: p.why,
        })
        .collect();
    notes.append(&mut m.notes);
    let header = format!(
        "ringlb configuration imported from {} by `ringlb import-apache`.\n\
         Check it with `ringlb check --config <this file>`; what was not carried over was\n\
         printed with its file and line.",
        path.display()
    );
    let toml = toml_out::write(&m, &header);
    let invalid = if m.routes.is_empty() {
        Some("no ProxyPass to a balancer or URL was found: there is nothing to proxy".to_string())
    } else {
        crate::config::Config::parse(&toml)
            .err()
            .map(|e| e.to_string())
    };
    Ok(Imported {
        toml,
        notes,
        invalid,
    })
}
