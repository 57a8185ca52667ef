//! Admin changes that survive a restart (`[admin] state_file`, like Apache's `BalancerPersist` and
//! HAProxy's `server-state-file`): every member whose status or weight an operator changed
//! through the admin API, with what the configuration file said for it at the time.
//!
//! Owns: the file's format, writing it atomically (a new temporary file of this process's own in
//! the same directory, fsync, rename) and applying it to the board at start (a reload keeps the
//! board's admin state itself, and the file is written again after it). Must never: run on a
//! worker (the main thread writes it after each change; the API only asks), leave a half-written
//! file where the state file was, or apply an entry whose member's file values changed since it
//! was written (as at a reload, the file then wins). Invariant: an entry names a member by its
//! identity (balancer name + URL), as the board's places do.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::board::BoardData;
use crate::config::MemberStatus;

/// One member's admin change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub balancer: String,
    pub url: String,
    pub status: String,
    pub weight: u32,
    /// What the configuration file said when the change was made.
    pub file_status: String,
    pub file_weight: u32,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    /// Bumped if the format ever changes.
    version: u32,
    members: Vec<Entry>,
}

/// The members of the generation in effect whose admin state differs from the file's.
pub fn entries(board: &BoardData) -> Vec<Entry> {
    let g = board.generation.clone();
    let mut out = Vec::new();
    for (b, bc) in g.config.balancers.iter().enumerate() {
        for (m, mc) in bc.members.iter().enumerate() {
            let a = board.admin_of(b, m);
            if (a.status, a.weight) != (mc.status, mc.weight) {
                out.push(Entry {
                    balancer: bc.name.clone(),
                    url: mc.url.clone(),
                    status: a.status.name().into(),
                    weight: a.weight,
                    file_status: mc.status.name().into(),
                    file_weight: mc.weight,
                });
            }
        }
    }
    out
}

/// Writes `entries` to `path` atomically.
pub fn save(path: &Path, entries: Vec<Entry>) -> Result<(), String> {
    let text = serde_json::to_string_pretty(&StateFile {
        version: 1,
        members: entries,
    })
    .map_err(|e| e.to_string())?;
    // A name of this process's own, created anew (never through a link someone planted).
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write the state file {}: {e}", path.display())
    })
}

/// Reads the state file (`Ok(empty)` when there is none yet).
pub fn load(path: &Path) -> Result<Vec<Entry>, String> {
    const MAX: u64 = 16 * 1024 * 1024;
    let why =
        |e: &dyn std::fmt::Display| format!("cannot read the state file {}: {e}", path.display());
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(why(&e)),
        Ok(m) if !m.is_file() => return Err(why(&"not a regular file")),
        Ok(m) if m.len() > MAX => return Err(why(&"larger than 16 MiB")),
        Ok(_) => {}
    }
    let text = std::fs::read_to_string(path).map_err(|e| why(&e))?;
    let file: StateFile = serde_json::from_str(&text)
        .map_err(|e| format!("the state file {} is not valid: {e}", path.display()))?;
    Ok(file.members)
}

/// Applies the entries whose member exists with the same file values; returns how many applied.
pub fn apply(board: &mut BoardData, entries: &[Entry]) -> usize {
    let g = board.generation.clone();
    let mut applied = 0;
    for e in entries {
        let Some(b) = g.config.balancers.iter().position(|b| b.name == e.balancer) else {
            continue;
        };
        let bc = &g.config.balancers[b];
        let Some(m) = bc.members.iter().position(|m| m.url == e.url) else {
            continue;
        };
        let mc = &bc.members[m];
        let (Some(status), Some(file_status)) = (
            MemberStatus::parse(&e.status),
            MemberStatus::parse(&e.file_status),
        ) else {
            continue;
        };
        if !(1..=1000).contains(&e.weight) {
            continue;
        }
        if (file_status, e.file_weight) != (mc.status, mc.weight) {
            tracing::info!(balancer = %e.balancer, member = %e.url,
                "state file: the configuration file changed this member since; its values win");
            continue;
        }
        board.set_member(b, m, Some(status), Some(e.weight));
        applied += 1;
    }
    applied
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn board(weight: u32) -> BoardData {
        let mut c = Config::parse(&format!(
            "[[listen]]\naddress = \"127.0.0.1:1\"\n[[balancer]]\nname = \"b\"\nmembers = [\
             {{ url = \"http://127.0.0.1:9\" }}, {{ url = \"http://127.0.0.1:10\", weight = {weight} }}]\n"
        ))
        .unwrap();
        c.server.workers = 1;
        BoardData::for_tests(c)
    }

    #[test]
    fn changes_round_trip_and_a_changed_file_wins() {
        let dir = std::env::temp_dir().join(format!("ringlb-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        assert_eq!(load(&path).unwrap(), [], "no file yet: nothing to apply");
        let mut b = board(1);
        b.set_member(0, 0, Some(MemberStatus::Draining), None);
        b.set_member(0, 1, None, Some(5));
        save(&path, entries(&b)).unwrap();
        let saved = load(&path).unwrap();
        assert_eq!(saved.len(), 2);
        // A restart with the same file: both changes come back.
        let mut again = board(1);
        assert_eq!(apply(&mut again, &saved), 2);
        assert_eq!(again.admin_of(0, 0).status, MemberStatus::Draining);
        assert_eq!(again.admin_of(0, 1).weight, 5);
        // The file re-weighted the second member meanwhile: the file wins for it.
        let mut changed = board(3);
        assert_eq!(apply(&mut changed, &saved), 1);
        assert_eq!(changed.admin_of(0, 1).weight, 3);
        std::fs::write(&path, "{ not json").unwrap();
        assert!(load(&path).unwrap_err().contains("not valid"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
