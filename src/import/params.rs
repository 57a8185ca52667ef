//! Apache's worker and balancer parameters (`BalancerMember url key=value…`, `ProxySet
//! key=value…`, the parameters after a `ProxyPass` URL) as ringlb keys, with TOML values.
//!
//! Owns: each parameter's meaning, unit and value check. Must never: write a value into the
//! output without `quote::q` or a number/duration check, or turn a value it cannot
//! read into a default without a note.

use super::quote::q;

/// Where a parameter goes.
pub enum Param {
    Member(&'static str, String),
    Balancer(&'static str, String),
    Note(String),
}

fn number<T: std::str::FromStr + ToString>(key: &'static str, v: &str, member: bool) -> Param {
    match v.parse::<T>() {
        Ok(n) if member => Param::Member(key, n.to_string()),
        Ok(n) => Param::Balancer(key, n.to_string()),
        Err(_) => Param::Note(format!("\"{v}\" is not a number: not translated")),
    }
}

fn duration(key: &'static str, v: &str, member: bool) -> Param {
    match seconds(v) {
        Some(d) if member => Param::Member(key, d),
        Some(d) => Param::Balancer(key, d),
        None => Param::Note(format!("\"{v}\" is not a duration: not translated")),
    }
}

/// A `BalancerMember` parameter (`ajp`: the member speaks AJP).
pub fn member(k: &str, v: &str, ajp: bool) -> Param {
    match k {
        "loadfactor" => number::<u32>("weight", v, true),
        "route" => Param::Member("route", q(v)),
        "lbset" => number::<u32>("lbset", v, true),
        "max" if v == "0" => Param::Note("0 is Apache's \"no limit\": no max_conns".into()),
        "max" => number::<u32>("max_conns", v, true),
        "secret" => Param::Member("secret", q(v)),
        "ping" if !ajp => Param::Note(
            "on an HTTP member Apache sends Expect: 100-continue; ringlb does not: not translated"
                .into(),
        ),
        // Apache's ping is how long to wait for the CPONG; ringlb CPINGs a connection idle
        // longer than this before reusing it.
        "ping" => duration("ping", v, true),
        "status" => status(v),
        "hcmethod" => Param::Member("hcmethod", q(&v.to_ascii_lowercase())),
        "hcuri" => Param::Member("hcuri", q(v)),
        "hcinterval" => duration("hcinterval", v, true),
        "hcpasses" => number::<u32>("hcpasses", v, true),
        "hcfails" => number::<u32>("hcfails", v, true),
        // A worker's I/O timeout; on a balancer `timeout` means something else (below).
        "timeout" => duration("response_timeout", v, false),
        _ => balancer(k, v),
    }
}

/// A balancer parameter (`ProxySet`, or after a `ProxyPass balancer://…`).
pub fn balancer(k: &str, v: &str) -> Param {
    let on = v.eq_ignore_ascii_case("on");
    match k {
        "lbmethod" => match v {
            "byrequests" => Param::Balancer("method", q("round_robin")),
            "bybusyness" => Param::Balancer("method", q("least_busy")),
            _ => Param::Note(format!(
                "lbmethod {v} is not supported: round robin is used"
            )),
        },
        "stickysession" => Param::Balancer("sticky_session", q(v)),
        "stickysessionsep" => Param::Balancer("sticky_session_sep", q(v)),
        "nofailover" => Param::Balancer("nofailover", on.to_string()),
        "failontimeout" => Param::Balancer("failontimeout", on.to_string()),
        "maxattempts" => number::<usize>("maxattempts", v, false),
        "failonstatus" => {
            let codes: Vec<String> = v
                .split(',')
                .filter_map(|c| c.trim().parse::<u16>().ok())
                .map(|c| c.to_string())
                .collect();
            Param::Balancer("failonstatus", format!("[{}]", codes.join(", ")))
        }
        // On a balancer: how long to wait for a free member.
        "timeout" => duration("queue_timeout", v, false),
        "connectiontimeout" => duration("connect_timeout", v, false),
        "retry" if seconds(v).as_deref() == Some("\"0s\"") => Param::Balancer("retry", q("100ms")),
        "retry" => duration("retry", v, false),
        "ttl" => duration("idle_ttl", v, false),
        "keepalive" | "disablereuse" | "enablereuse" | "flushpackets" | "flushwait" | "smax"
        | "min" | "acquire" | "iobuffersize" | "receivebuffersize" | "growth" | "forcerecovery"
        | "scolonpathdelim" | "nocanon" => {
            Param::Note("not needed by ringlb (its pools and buffers are its own)".into())
        }
        _ => Param::Note("not translated".into()),
    }
}

/// Apache's status flags (`+H`, `-D`, `+HD`, or bare letters, which set): the member's status
/// after them. `D`/`S` (disabled, stopped) win over `H` (standby) over `R` (hot spare).
fn status(v: &str) -> Param {
    let mut set = std::collections::BTreeSet::new();
    let mut on = true;
    for c in v.chars() {
        match c {
            '+' => on = true,
            '-' => on = false,
            c if on => {
                set.insert(c.to_ascii_uppercase());
            }
            c => {
                set.remove(&c.to_ascii_uppercase());
            }
        }
    }
    let is = |c: char| set.contains(&c);
    if is('D') || is('S') {
        Param::Member("status", q("disabled"))
    } else if is('H') {
        Param::Member("status", q("standby"))
    } else if is('R') {
        Param::Member("status", q("hot_spare"))
    } else if is('N') {
        Param::Note("N (drain): set it through ringlb's admin API (drain) instead".into())
    } else {
        Param::Note("nothing to translate (active)".into())
    }
}

/// An Apache duration (seconds, or with `ms`, `s`, `mi`, `h`) as a TOML string.
pub fn seconds(v: &str) -> Option<String> {
    let v = v.trim();
    for (suffix, unit) in [("ms", "ms"), ("mi", "m"), ("h", "h"), ("s", "s")] {
        if let Some(n) = v.strip_suffix(suffix) {
            return n.parse::<u64>().ok().map(|n| format!("\"{n}{unit}\""));
        }
    }
    v.parse::<u64>().ok().map(|n| format!("\"{n}s\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(p: Param) -> String {
        match p {
            Param::Member(k, v) => format!("member {k} = {v}"),
            Param::Balancer(k, v) => format!("balancer {k} = {v}"),
            Param::Note(n) => format!("note {n}"),
        }
    }

    #[test]
    fn parameters_become_ringlb_keys_with_their_units() {
        let cases = [
            (member("loadfactor", "5", false), "member weight = 5"),
            (
                member("loadfactor", "x", false),
                "note \"x\" is not a number: not translated",
            ),
            (member("status", "+H", false), "member status = \"standby\""),
            (
                member("status", "+HD", false),
                "member status = \"disabled\"",
            ),
            (
                member("status", "-D", false),
                "note nothing to translate (active)",
            ),
            (
                member("status", "R", false),
                "member status = \"hot_spare\"",
            ),
            (
                member("max", "0", false),
                "note 0 is Apache's \"no limit\": no max_conns",
            ),
            (member("ping", "5", true), "member ping = \"5s\""),
            (
                member("timeout", "30", false),
                "balancer response_timeout = \"30s\"",
            ),
            (member("route", "a\"b", false), "member route = \"a\\\"b\""),
            (
                balancer("timeout", "10"),
                "balancer queue_timeout = \"10s\"",
            ),
            (balancer("retry", "0"), "balancer retry = \"100ms\""),
            (balancer("retry", "2mi"), "balancer retry = \"2m\""),
            (
                balancer("connectiontimeout", "500ms"),
                "balancer connect_timeout = \"500ms\"",
            ),
            (
                balancer("failonstatus", "502, 503"),
                "balancer failonstatus = [502, 503]",
            ),
            (
                balancer("lbmethod", "bybusyness"),
                "balancer method = \"least_busy\"",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(shown(got), want);
        }
        assert!(matches!(member("ping", "5", false), Param::Note(_)));
    }
}
