//! The admin API: `GET`/`POST /api/balancers/{balancer}/members/{member}`, the balancer-manager
//! of ringlb. A change is recorded on the board and applied by every core within about 100 ms
//! (`Board::changed`).
//!
//! Must never: change anything on a request it rejects. Invariant: `{member}` is the member's
//! 0-based index or its `host:port`, exactly as `/status.json` reports them.

use serde::{Deserialize, Serialize};

use crate::board::{Board, BoardData};
use crate::config::{Config, MemberStatus};
use crate::reload::ControlSender;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    status: Option<String>,
    weight: Option<u32>,
}

/// What `GET` (and a successful `POST`) returns.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct MemberState {
    pub balancer: String,
    pub index: usize,
    pub address: String,
    pub status: String,
    pub weight: u32,
    pub in_flight: u64,
    pub drained: bool,
    /// Every core has applied the latest admin change.
    pub applied: bool,
}

/// Finds `(balancer, member)` indexes from a balancer name and a member index or `host:port`.
pub fn find(config: &Config, balancer: &str, member: &str) -> Option<(usize, usize)> {
    let b = config.balancers.iter().position(|b| b.name == balancer)?;
    let members = &config.balancers[b].members;
    let m = match member.parse::<usize>() {
        Ok(i) if i < members.len() => i,
        _ => members.iter().position(|m| m.host_port == member)?,
    };
    Some((b, m))
}

fn state(config: &Config, board: &BoardData, b: usize, m: usize) -> MemberState {
    let admin = board.admin_of(b, m);
    MemberState {
        balancer: config.balancers[b].name.clone(),
        index: m,
        address: config.balancers[b].members[m].host_port.clone(),
        status: admin.status.name().into(),
        weight: admin.weight,
        in_flight: board.member(b, m).counters().in_flight,
        drained: board.drained(b, m),
        applied: board.applied.iter().all(|&v| v >= board.admin_version),
    }
}

/// Validates a change of member `(b, m)` and records it on the board; on a bad value, says why
/// and changes nothing.
pub fn apply(
    config: &Config,
    board: &mut BoardData,
    b: usize,
    m: usize,
    status: Option<&str>,
    weight: Option<u32>,
) -> Result<(), String> {
    let status = match status.map(|s| (s, MemberStatus::parse(s))) {
        None => None,
        Some((_, Some(s))) => Some(s),
        Some((s, None)) => {
            return Err(format!(
                "unknown status \"{s}\": use active, standby, hot_spare, disabled or draining"
            ))
        }
    };
    if weight.is_some_and(|w| w == 0 || w > 1000) {
        return Err("weight must be between 1 and 1000".into());
    }
    board.set_member(b, m, status, weight);
    tracing::info!(
        balancer = %config.balancers[b].name, member = %config.balancers[b].members[m].url,
        status = ?status, weight = ?weight, "admin change"
    );
    Ok(())
}

/// A member request under the board's lock (off the worker: it waits for the board,
/// `super::off_worker`), on the generation in effect (the one whose members the board's `(b, m)`
/// name); a POST answered 200 tells the cores once the lock is released.
pub(super) fn change(
    board: &Board,
    control: Option<&ControlSender>,
    method: &str,
    balancer: &str,
    member_index: &str,
    body: &[u8],
) -> super::Reply {
    let mut guard = board.lock();
    let config = guard.generation.config.clone();
    let (status, json) = member(&config, &mut guard, method, balancer, member_index, body);
    drop(guard);
    if method == "POST" && status == 200 {
        super::members_changed(board, control, &config);
    }
    super::Reply::new(status, "application/json", json)
}

/// Handles a member request: returns (status, JSON body).
pub fn member(
    config: &Config,
    board: &mut BoardData,
    method: &str,
    balancer: &str,
    member: &str,
    body: &[u8],
) -> (u16, String) {
    let Some((b, m)) = find(config, balancer, member) else {
        return (404, r#"{"error":"no such balancer or member"}"#.into());
    };
    match method {
        "GET" => {}
        "POST" => {
            let change: Change = match serde_json::from_slice(body) {
                Ok(c) => c,
                Err(e) => {
                    return (
                        400,
                        serde_json::json!({ "error": e.to_string() }).to_string(),
                    )
                }
            };
            if let Err(e) = apply(config, board, b, m, change.status.as_deref(), change.weight) {
                return (400, serde_json::json!({ "error": e }).to_string());
            }
        }
        _ => return (405, r#"{"error":"use GET or POST"}"#.into()),
    }
    (
        200,
        serde_json::to_string(&state(config, board, b, m)).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let mut c = Config::parse(
            "[[listen]]\naddress = \"127.0.0.1:1\"\n[[balancer]]\nname = \"app\"\nmembers = [{ url = \"http://127.0.0.1:9001\" }, { url = \"http://127.0.0.1:9002\" }]\n",
        )
        .unwrap();
        c.server.workers = 1;
        c
    }

    #[test]
    fn by_index_or_address_and_validated() {
        let cfg = config();
        let mut board = BoardData::for_tests(cfg.clone());
        let (s, body) = member(
            &cfg,
            &mut board,
            "POST",
            "app",
            "127.0.0.1:9002",
            br#"{"status":"draining"}"#,
        );
        assert_eq!(s, 200, "{body}");
        assert_eq!(board.admin_of(0, 1).status, MemberStatus::Draining);
        let (s, _) = member(&cfg, &mut board, "POST", "app", "0", br#"{"weight":7}"#);
        assert_eq!(s, 200);
        assert_eq!(board.admin_of(0, 0).weight, 7);
        let before = board.admin_version;
        for bad in [
            &br#"{"status":"gone"}"#[..],
            br#"{"weight":0}"#,
            br#"{"colour":1}"#,
            b"not json",
        ] {
            assert_eq!(member(&cfg, &mut board, "POST", "app", "0", bad).0, 400);
        }
        assert_eq!(
            board.admin_version, before,
            "a rejected change changed nothing"
        );
        assert_eq!(member(&cfg, &mut board, "GET", "app", "5", b"").0, 404);
        assert_eq!(member(&cfg, &mut board, "GET", "nope", "0", b"").0, 404);
        assert_eq!(member(&cfg, &mut board, "DELETE", "app", "0", b"").0, 405);
    }
}
