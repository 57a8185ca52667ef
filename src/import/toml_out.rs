//! Writes an `Import` as a ringlb configuration file: each table with a comment naming the
//! Apache lines it came from, listeners first, then the admin listener, balancers and routes.
//!
//! Owns: the text of the output. Must never: write a value without quoting it for TOML (paths
//! and names come from someone else's file).

use std::fmt::Write as _;

use super::apache_map::Import;
use super::quote::q;

/// A comment naming where a table came from (a file name's control characters shown as `?`:
/// a newline in one must not end the comment).
fn from(out: &mut String, places: &[String]) {
    if !places.is_empty() {
        let text = places.join(", ").replace(|c: char| c.is_control(), "?");
        let _ = writeln!(out, "# from {text}");
    }
}

/// The configuration text, starting with `header` (a comment block).
pub fn write(m: &Import, header: &str) -> String {
    let mut out = String::new();
    for line in header.lines() {
        let line = line.replace(|c: char| c.is_control(), "?");
        let _ = writeln!(out, "# {line}");
    }
    out.push('\n');
    for l in &m.listeners {
        from(&mut out, &l.from);
        let _ = writeln!(out, "[[listen]]\naddress = {}", q(&l.address));
        if l.redirect_https && l.certs.is_empty() {
            out.push_str("redirect_https = true\n");
        }
        if !l.certs.is_empty() {
            let pairs: Vec<String> = l
                .certs
                .iter()
                .map(|(c, k)| format!("{{ cert = {}, key = {} }}", q(c), q(k)))
                .collect();
            let _ = writeln!(out, "[listen.tls]\ncerts = [{}]", pairs.join(", "));
        }
        out.push('\n');
    }
    if !m.admin.is_empty() {
        from(&mut out, &m.admin);
        out.push_str("# balancer-manager and server-status: ringlb's status page, JSON, metrics and member API\n");
        out.push_str(
            "# are on this separate listener; give it a token before it listens beyond loopback.\n",
        );
    } else {
        out.push_str(
            "# The admin listener (status page, metrics, member API); `systemctl reload ringlb`\n",
        );
        out.push_str("# and `ringlb reload` talk to it. Apache had no balancer-manager here: loopback only.\n");
    }
    out.push_str("[admin]\naddress = \"127.0.0.1:9900\"\n\n");
    for b in &m.balancers {
        from(&mut out, &b.from);
        let _ = writeln!(out, "[[balancer]]\nname = {}", q(&b.name));
        let has_timeout = b.keys.iter().any(|(k, _)| k == "response_timeout");
        for (k, v) in &b.keys {
            let _ = writeln!(out, "{k} = {v}");
        }
        if let (Some(t), false) = (&m.response_timeout, has_timeout) {
            let _ = writeln!(out, "response_timeout = {t}");
        }
        out.push_str("members = [\n");
        for mb in &b.members {
            let mut fields = vec![format!("url = {}", q(&mb.url))];
            fields.extend(mb.keys.iter().map(|(k, v)| format!("{k} = {v}")));
            let from = mb.from.replace(|c: char| c.is_control(), "?");
            let _ = writeln!(out, "  {{ {} }}, # {from}", fields.join(", "));
        }
        out.push_str("]\n\n");
    }
    for r in &m.routes {
        from(&mut out, std::slice::from_ref(&r.from));
        out.push_str("[[route]]\n");
        if let Some(h) = &r.host {
            let _ = writeln!(out, "host = {}", q(h));
        }
        if r.exclude {
            let _ = writeln!(out, "path = {}\nexclude = true\n", q(&r.path));
            continue;
        }
        let _ = writeln!(out, "path = {}\nbalancer = {}", q(&r.path), q(&r.balancer));
        if let Some(mp) = &r.member_path {
            let _ = writeln!(out, "member_path = {}", q(mp));
        }
        if !r.cookie_domains.is_empty() {
            let pairs: Vec<String> = r
                .cookie_domains
                .iter()
                .map(|(f, t)| format!("{{ from = {}, to = {} }}", q(f), q(t)))
                .collect();
            let _ = writeln!(out, "cookie_domains = [{}]", pairs.join(", "));
        }
        match (r.reverse, r.member_path.is_some()) {
            (true, false) => out.push_str("reverse = true\n"),
            (false, true) => out.push_str("reverse = false\n"),
            _ => {}
        }
        if r.preserve_host {
            out.push_str("preserve_host = true\n");
        }
        if !r.upgrade.is_empty() {
            let names: Vec<String> = r.upgrade.iter().map(|u| q(u)).collect();
            let _ = writeln!(out, "upgrade = [{}]", names.join(", "));
        }
        out.push('\n');
    }
    out
}
