//! `/status`: the HTML page an Apache admin recognises from mod_status and the balancer-manager:
//! server facts at the top, then one table of members per balancer with state, traffic and
//! latency percentiles (recent window and since start), and per member the balancer-manager's
//! form (state and weight, posted to `/status` with the form token); under each table, per member,
//! a row of inline SVG charts drawn by `charts` (no JavaScript).
//!
//! Must never: put unescaped configuration text into the page. Invariant: every figure shown comes
//! from the `StatusReport`, so the page and `/status.json` always agree.

use std::fmt::Write;

use super::charts;
use super::report::{
    BalancerReport, HealthReport, LoopLag, MemberReport, Percentiles, StatusReport,
};
use super::text::{esc, human_bytes, human_us};

fn pct_cells(out: &mut String, p: &Percentiles) {
    for v in [p.p50_us, p.p90_us, p.p99_us, p.p999_us, p.max_us] {
        let _ = write!(out, "<td class=num>{}</td>", human_us(v));
    }
}

/// The health check cell: "get: up · 200 in 1.2 ms, 0 s ago · 3 passes in a row".
fn check_cell(h: &HealthReport) -> String {
    if h.method.is_empty() || h.method == "none" {
        return "–".into();
    }
    let Some(age) = h.seconds_since_check else {
        return format!("{}: {} · not checked yet", h.method, h.state);
    };
    let run = if h.consecutive_fails > 0 {
        format!("{} failures in a row", h.consecutive_fails)
    } else {
        format!("{} passes in a row", h.consecutive_passes)
    };
    format!(
        "{}: {} · {} in {}, {age} s ago · {run}",
        h.method,
        h.state,
        h.last_result,
        human_us(h.last_latency_us)
    )
}

/// The state cell and the row's class.
fn state_of(m: &MemberReport) -> (String, &str) {
    let serving = m.status == "active" || m.status == "standby" || m.status == "hot_spare";
    let state = if m.health.state == "down" && serving {
        format!("{} (check down)", m.status)
    } else if m.failed && serving {
        format!("{} (failed)", m.status)
    } else if m.drained {
        "draining (drained)".into()
    } else {
        m.status.clone()
    };
    let class = if m.failed || m.health.state == "down" {
        "failed"
    } else {
        m.status.as_str()
    };
    (state, class)
}

/// The states an administrator can set from the page, as the member API names them.
const STATES: [&str; 5] = ["active", "standby", "hot_spare", "disabled", "draining"];

/// The member's form cell: its state and weight, applied with one button.
fn form_cell(out: &mut String, balancer: &str, m: &MemberReport, csrf: &str) {
    let _ = write!(
        out,
        "<td><form method=post action=\"/status\" class=change data-member=\"{}/{}\">\
<input type=hidden name=csrf value=\"{csrf}\"><input type=hidden name=balancer value=\"{}\">\
<input type=hidden name=member value=\"{}\"><input type=hidden name=address value=\"{}\">\
<select name=status aria-label=\"state of member {}\">",
        esc(balancer),
        m.index,
        esc(balancer),
        m.index,
        esc(&m.address),
        m.index
    );
    for s in STATES {
        let selected = if s == m.status { " selected" } else { "" };
        let _ = write!(out, "<option{selected}>{s}</option>");
    }
    let _ = write!(
        out,
        "</select> <input name=weight type=number min=1 max=1000 value=\"{}\" aria-label=\"weight of member {}\" style=\"width:5em\"> \
<button>Apply</button></form></td>",
        m.weight, m.index
    );
}

/// Renders the page; `refresh` adds a reload every N seconds; `csrf` (this process's form token)
/// adds the forms that change members.
pub fn render(r: &StatusReport, refresh: Option<u32>, csrf: Option<&str>) -> String {
    let mut out = String::with_capacity(8192);
    out.push_str(
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>\n<title>ringlb status</title>\n",
    );
    if let Some(n) = refresh {
        let _ = writeln!(out, "<meta http-equiv=refresh content=\"{n}\">");
    }
    out.push_str(
        "<style>body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}\
table{border-collapse:collapse;font-size:.9em}th,td{border:1px solid #bbb;padding:.25em .5em}\
th{background:#e8eef6}td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}\
tr.active td.state{color:#176117}tr.standby td.state{color:#7a5d00}\
tr.disabled td.state,tr.draining td.state,tr.failed td.state{color:#a11}\
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{font-weight:600}\
figure.member{margin:.8em 0 0}figure.member figcaption{font-size:.85em;margin-bottom:.2em}\
div.charts{display:flex;flex-wrap:wrap;gap:.8em;align-items:flex-start}svg.chart{background:#fff}</style>\n</head><body>\n",
    );
    let _ = writeln!(out, "<h1>ringlb status</h1>\n<dl>");
    let facts = [
        ("Version", r.version.clone()),
        ("Uptime", format!("{} s", r.uptime_seconds)),
        (
            "Workers",
            format!("{} (io driver: {})", r.workers, r.driver),
        ),
        ("Loop lag (since start)", loop_lag(&r.loop_lag)),
        (
            "Requests/s",
            format!("{:.1} (last {} s)", r.requests_per_second, r.window_seconds),
        ),
        (
            "Connections",
            format!(
                "{} active ({} idle, {} tunnels), {} since start",
                r.connections.active,
                r.connections.idle,
                r.connections.tunnels,
                r.connections.total
            ),
        ),
        (
            "Refused",
            r.refused
                .iter()
                .map(|(s, n)| format!("{s}: {n}"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("Not found (404)", r.not_found.to_string()),
    ];
    for (k, v) in facts {
        let _ = writeln!(out, "<dt>{k}</dt><dd>{}</dd>", esc(&v));
    }
    out.push_str("</dl>\n");
    if let Some(t) = &r.tls {
        tls_section(&mut out, t);
    }
    for b in &r.balancers {
        let _ = writeln!(
            out,
            "<h2>Balancer <code>{}</code></h2>\n<p>Answered 503 (no usable member): {}</p>",
            esc(&b.name),
            b.unavailable
        );
        let change = if csrf.is_some() {
            "<th rowspan=2>Change</th>"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<table class=members>\n<thead><tr><th rowspan=2>#</th><th rowspan=2>Member</th><th rowspan=2>State</th>\
<th rowspan=2>Health check</th><th rowspan=2>Weight</th><th rowspan=2>Selected</th><th rowspan=2>In flight</th>\
<th rowspan=2>Failures</th><th rowspan=2>Marked failed</th>\
<th rowspan=2>2xx / 4xx / 5xx</th><th rowspan=2>Sent</th><th rowspan=2>Received</th>\
<th colspan=5>Last 60 s</th><th colspan=5>Since start</th>{change}</tr>\n\
<tr><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr></thead>\n<tbody>\n",
        );
        for m in &b.members {
            let (state, class) = state_of(m);
            let failures: u64 = m.failures.values().sum();
            let rc = |k: &str| m.responses.get(k).copied().unwrap_or(0);
            let _ = write!(
                out,
                "<tr class={class}><td class=num>{}</td><td>{}</td><td class=state>{}</td><td>{}</td><td class=num>{}</td>\
<td class=num>{}</td><td class=num>{}</td><td class=num>{failures}</td><td class=num>{}</td><td class=num>{} / {} / {}</td>\
<td class=num>{}</td><td class=num>{}</td>",
                m.index,
                esc(&m.url),
                esc(&state),
                esc(&check_cell(&m.health)),
                m.weight,
                m.selected,
                m.in_flight,
                m.marked_failed,
                rc("2xx"),
                rc("4xx"),
                rc("5xx"),
                human_bytes(m.bytes_sent),
                human_bytes(m.bytes_received),
            );
            pct_cells(&mut out, &m.total.window);
            pct_cells(&mut out, &m.total.lifetime);
            if let Some(token) = csrf {
                form_cell(&mut out, &b.name, m, token);
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody></table>\n");
        charts_section(&mut out, b);
    }
    out.push_str(
        "<p>Latency: request head received to last response byte written, merged over all cores. \
Charts: requests and p50/p99 latency of each whole second of the last 60 s (a gap: a second \
without requests); latency by percentile since start. \
Data refreshes once a second. <a href=\"/status.json\">JSON</a> · <a href=\"/metrics\">Prometheus</a></p>\n</body></html>\n",
    );
    out
}

/// Under a balancer's table, one row of charts per member: requests/s and p50/p99 latency over
/// the last 60 s, and the latency spectrum since start (`charts`), captioned with the member.
fn charts_section(out: &mut String, b: &BalancerReport) {
    for m in &b.members {
        let label = format!("member {} ({})", m.index, m.url);
        let _ = writeln!(
            out,
            "<figure class=member><figcaption>#{} <code>{}</code></figcaption><div class=charts>{}{}{}</div></figure>",
            m.index,
            esc(&m.url),
            charts::requests(&m.series, &label),
            charts::latency(&m.series, &label),
            charts::spectrum(&m.histograms.total, &label),
        );
    }
}

/// Each worker's mean loop lag and its ticks more than 25 ms late, since start.
fn loop_lag(lags: &[LoopLag]) -> String {
    let per_worker: Vec<String> = lags
        .iter()
        .enumerate()
        .map(|(w, l)| {
            let (mean, late) = (l.mean_us(), l.over(LoopLag::SHOWN_US));
            let bound = LoopLag::SHOWN_US / 1000;
            format!("worker {w}: mean {mean} µs, {late} ticks over {bound} ms")
        })
        .collect();
    per_worker.join("; ")
}

/// The TLS section: handshakes, failures by reason, each listener's certificates.
fn tls_section(out: &mut String, t: &super::tls_report::TlsReport) {
    let join = |m: &std::collections::BTreeMap<String, u64>| {
        m.iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(
        out,
        "<h2>TLS</h2>\n<dl>\n<dt>Handshakes</dt><dd>{}</dd>\n<dt>Failed handshakes</dt><dd>{}</dd>\n<dt>Certificate reloads</dt><dd>{}</dd>\n</dl>",
        esc(&join(&t.handshakes)),
        esc(&join(&t.failures)),
        t.reloads
    );
    out.push_str("<table>\n<tr><th>Listener</th><th>Certificate</th><th>Names</th><th>Expires in</th></tr>\n");
    for l in &t.listeners {
        for c in &l.certificates {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} days</td></tr>",
                esc(&l.address),
                esc(&c.file),
                esc(&c.names.join(", ")),
                c.days_left
            );
        }
    }
    out.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanises() {
        assert_eq!(human_us(850), "850 µs");
        assert_eq!(human_us(12_300), "12.3 ms");
        assert_eq!(human_us(1_200_000), "1.20 s");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(esc("<a&\"b\">"), "&lt;a&amp;&quot;b&quot;&gt;");
    }
}
