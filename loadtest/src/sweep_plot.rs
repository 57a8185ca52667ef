//! The sweep's pictures (plotters, SVG): (1) latency percentiles against the offered rate, for the
//! client and each member's own time, with the SLO lines; (2) each member's share of requests and
//! its own p50; (3) ringlb's CPU per request. Also the HTML report that holds them with the
//! summary and the step table.
//!
//! Owns: the drawing. Must never: compute a figure the sweep did not measure (a missing value is
//! left out, never drawn as zero).

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::knee::Summary;
use crate::sweep::{by_rate, member_names, Plan, StepResult};

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

/// A named line: (rate, value) points.
struct Line {
    name: String,
    points: Vec<(f64, f64)>,
}

/// Per member, `f` of each step that has that member's figures.
fn member_lines(
    steps: &[&StepResult],
    f: impl Fn(&crate::scrape::MemberStep) -> Option<f64>,
) -> Vec<Line> {
    member_names(steps)
        .into_iter()
        .enumerate()
        .map(|(i, name)| Line {
            points: steps
                .iter()
                .filter_map(|s| Some((s.offered_rate, f(s.server.as_ref()?.members.get(i)?)?)))
                .collect(),
            name,
        })
        .collect()
}

fn ms(us: u64) -> Option<f64> {
    (us > 0).then_some(us as f64 / 1000.0)
}

/// How a chart is drawn: its y scale and where its legend goes (away from the lines).
struct Style {
    log: bool,
    legend: SeriesLabelPosition,
}

const LOG_UPPER_LEFT: Style = Style {
    log: true,
    legend: SeriesLabelPosition::UpperLeft,
};
const LINEAR_LOWER_RIGHT: Style = Style {
    log: false,
    legend: SeriesLabelPosition::LowerRight,
};
const LINEAR_UPPER_LEFT: Style = Style {
    log: false,
    legend: SeriesLabelPosition::UpperLeft,
};

fn chart(
    area: &Area,
    title: &str,
    y: &str,
    lines: &[Line],
    hlines: &[(String, f64)],
    style: Style,
) -> anyhow::Result<()> {
    let pts = lines.iter().flat_map(|l| l.points.iter());
    let x_max = pts.clone().map(|p| p.0).fold(1.0, f64::max) * 1.05;
    let ys = pts.map(|p| p.1).chain(hlines.iter().map(|h| h.1));
    let y_max = ys.clone().fold(0.0, f64::max).max(1e-3) * 1.3;
    let y_min = ys.filter(|v| *v > 0.0).fold(f64::MAX, f64::min).min(y_max) / 1.5;
    let mut b = ChartBuilder::on(area);
    b.caption(title, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60);
    macro_rules! draw {
        ($c:expr) => {{
            let mut c = $c;
            c.configure_mesh()
                .x_desc("offered rate (requests/s)")
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_desc(y)
                .draw()?;
            for (i, l) in lines.iter().enumerate() {
                let colour = COLOURS[i % COLOURS.len()];
                c.draw_series(LineSeries::new(l.points.clone(), colour.stroke_width(2)))?
                    .label(l.name.clone())
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 16, y)], colour.stroke_width(2))
                    });
                c.draw_series(l.points.iter().map(|p| Circle::new(*p, 3, colour.filled())))?;
            }
            for (name, v) in hlines {
                c.draw_series(LineSeries::new(
                    [(0.0, *v), (x_max, *v)],
                    BLACK.stroke_width(1),
                ))?
                .label(name.clone())
                .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK));
            }
            if !lines.is_empty() {
                c.configure_series_labels()
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK.mix(0.3))
                    .position(style.legend)
                    .draw()?;
            }
        }};
    }
    if style.log {
        draw!(b.build_cartesian_2d(0.0..x_max, (y_min..y_max).log_scale())?);
    } else {
        draw!(b.build_cartesian_2d(0.0..x_max, 0.0..y_max)?);
    }
    Ok(())
}

/// The three panels as one SVG document.
pub fn svg(plan: &Plan, steps: &[StepResult], title: &str) -> anyhow::Result<String> {
    let steps = by_rate(steps);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (1000, 1150)).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(title, ("sans-serif", 20))?;
        let (top, rest) = root.split_vertically(520);
        let (middle, bottom) = rest.split_vertically(330);
        let client = |name: &str, q: &'static str| Line {
            name: format!("client {name}"),
            points: steps
                .iter()
                .filter_map(|s| Some((s.offered_rate, ms(s.latency_us[q])?)))
                .collect(),
        };
        let mut lines = vec![
            client("p50", "p50"),
            client("p99", "p99"),
            client("p99.9", "p99.9"),
        ];
        for l in member_lines(&steps, |m| ms(m.member_p99_us)) {
            lines.push(Line {
                name: format!("{} own p99", l.name),
                points: l.points,
            });
        }
        let slos: Vec<(String, f64)> = plan
            .slos
            .iter()
            .map(|s| (format!("SLO {}", s.label()), s.limit_us() as f64 / 1000.0))
            .collect();
        chart(
            &top,
            "latency against offered rate (log scale)",
            "latency (ms)",
            &lines,
            &slos,
            LOG_UPPER_LEFT,
        )?;
        let (left, right) = middle.split_horizontally(500);
        chart(
            &left,
            "each member's share of requests",
            "share (%)",
            &member_lines(&steps, |m| Some(m.share * 100.0)),
            &[],
            LINEAR_LOWER_RIGHT,
        )?;
        chart(
            &right,
            "each member's own p50",
            "ms",
            &member_lines(&steps, |m| ms(m.member_p50_us)),
            &[],
            LINEAR_UPPER_LEFT,
        )?;
        let cpu = Line {
            name: "ringlb".into(),
            points: steps
                .iter()
                .filter_map(|s| Some((s.offered_rate, s.server.as_ref()?.cpu_us_per_request)))
                .collect(),
        };
        let cpu = if cpu.points.is_empty() {
            vec![]
        } else {
            vec![cpu]
        };
        chart(
            &bottom,
            "ringlb CPU per request (needs --admin)",
            "CPU µs per request",
            &cpu,
            &[],
            LINEAR_LOWER_RIGHT,
        )?;
        root.present()?;
    }
    Ok(out)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The HTML report: the summary, the charts and every step.
pub fn html(
    plan: &Plan,
    steps: &[StepResult],
    summary: &Summary,
    max: f64,
    title: &str,
) -> anyhow::Result<String> {
    let mut h = format!(
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>{t}</title>\
<style>body{{font-family:system-ui,sans-serif;margin:1.5em}}pre{{background:#f4f4f4;padding:.8em}}</style></head><body>\n<h1>{t}</h1>\n<pre>",
        t = esc(title)
    );
    h.push_str(&esc(&crate::sweep_report::summary(summary, max)));
    h.push_str("</pre>\n");
    h.push_str(&svg(plan, steps, title)?);
    h.push_str("\n<h2>Steps, in the order run</h2>\n<pre>");
    h.push_str(&esc(&crate::sweep_report::header(plan)));
    h.push('\n');
    for s in steps {
        h.push_str(&esc(&crate::sweep_report::line(s)));
    }
    h.push_str("</pre>\n</body></html>\n");
    Ok(h)
}
