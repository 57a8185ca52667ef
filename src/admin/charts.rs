//! The status page's pictures, drawn by the server as inline SVG: per member, requests per second
//! and p50/p99 latency over the last 60 whole seconds (`SecondPoint`s), and the latency spectrum
//! since start (latency against percentile on a log scale of 1/(1-q), from the lifetime `Buckets`).
//!
//! Owns: the charts' geometry, scales, axis labels and colours. Each function takes report data
//! and returns one `<svg>` element of a fixed size. Must never: emit script, event handlers, links
//! or any external resource (the page works under a strict CSP and without JavaScript), put
//! unescaped text into the SVG, or emit a coordinate that is not a finite number (no data draws an
//! empty frame with a note). Invariant: every figure drawn comes from the `StatusReport`.

use std::fmt::Write;

use super::report::{Buckets, SecondPoint};
use super::text::{esc, human_us};

/// The sparklines' size (requests/s, latency), px.
const SPARK: (f64, f64) = (260.0, 90.0);
/// The spectrum's size, px.
const SPECTRUM: (f64, f64) = (320.0, 160.0);
/// The spectrum's x axis: 0 to 4.5 decades of 1/(1-q); 4 is 99.99 %, the last half decade holds
/// the tail up to the max, which always ends the curve at the right edge.
const DECADES: f64 = 4.5;
const REQUESTS: &str = "#2166ac";
const P50: &str = "#1b7837";
const P99: &str = "#d6604d";
const NO_DATA: &str = "no requests yet";

/// The plot area inside a chart: margins for the title and axis labels.
struct Frame {
    w: f64,
    h: f64,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
}

impl Frame {
    fn new((w, h): (f64, f64), left: f64, bottom_margin: f64) -> Frame {
        Frame {
            w,
            h,
            left,
            right: w - 8.0,
            top: 16.0,
            bottom: h - bottom_margin,
        }
    }

    /// A fraction of the width (0 left, 1 right) as px, clamped to the plot area.
    fn x(&self, f: f64) -> f64 {
        self.left + f.clamp(0.0, 1.0) * (self.right - self.left)
    }

    /// A fraction of the height (0 bottom, 1 top) as px, clamped to the plot area.
    fn y(&self, f: f64) -> f64 {
        self.bottom - f.clamp(0.0, 1.0) * (self.bottom - self.top)
    }

    /// Opens the `<svg>`: title, frame, a mid-height grid line, y-axis labels (0, half and `ymax`
    /// in `unit`'s words).
    fn open(
        &self,
        class: &str,
        title: &str,
        label: &str,
        ymax: f64,
        unit: fn(f64) -> String,
    ) -> String {
        let mut s = String::with_capacity(2048);
        let _ = write!(
            s,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart {class}\" width=\"{w}\" height=\"{h}\" \
viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{t}: {l}\" font-family=\"system-ui,sans-serif\" font-size=\"9\" fill=\"#444\">\
<title>{t}: {l}</title><rect x=\"{x}\" y=\"{y}\" width=\"{pw:.1}\" height=\"{ph:.1}\" fill=\"#f7f9fc\" stroke=\"#c8d0dc\"/>\
<line x1=\"{x}\" y1=\"{my:.1}\" x2=\"{r}\" y2=\"{my:.1}\" stroke=\"#dde3ec\" stroke-dasharray=\"3 3\"/>\
<text x=\"2\" y=\"10\" font-size=\"10\" font-weight=\"600\" fill=\"#222\">{t}</text>",
            w = self.w,
            h = self.h,
            t = esc(title),
            l = esc(label),
            x = self.left,
            y = self.top,
            r = self.right,
            pw = self.right - self.left,
            ph = self.bottom - self.top,
            my = self.y(0.5),
        );
        for (f, baseline) in [(1.0, 7.0), (0.5, 3.0), (0.0, 0.0)] {
            let _ = write!(
                s,
                "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                self.left - 3.0,
                self.y(f) + baseline,
                esc(&unit(ymax * f))
            );
        }
        s
    }

    /// A centred note in the plot area (no data).
    fn note(&self, s: &mut String, text: &str) {
        let _ = write!(
            s,
            "<text class=\"note\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\" fill=\"#888\">{}</text>",
            (self.left + self.right) / 2.0,
            (self.top + self.bottom) / 2.0 + 3.0,
            esc(text)
        );
    }

    /// The sparklines' x-axis labels: the window's oldest second and now.
    fn time_axis(&self, s: &mut String) {
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\">60 s ago</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">now</text>",
            self.left,
            self.h - 3.0,
            self.right,
            self.h - 3.0
        );
    }

    /// Right-aligned coloured legend entries on the title row.
    fn legend(&self, s: &mut String, entries: &[(&str, String)]) {
        let text: String = entries
            .iter()
            .map(|(colour, t)| format!("<tspan fill=\"{colour}\">{}</tspan> ", esc(t)))
            .collect();
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"10\" text-anchor=\"end\" font-weight=\"600\">{}</text>",
            self.right,
            text.trim_end()
        );
    }
}

/// The smallest 1, 2, 2.5 or 5 × 10^k at or above `v` (at least 1), for an axis maximum.
fn nice_ceiling(v: f64) -> f64 {
    if !v.is_finite() || v <= 1.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|&c| c >= v)
        .unwrap_or(10.0 * p)
}

/// A count as an axis label: 950, 1.2k, 3.4M.
fn short_count(n: f64) -> String {
    match n {
        n if n >= 1e6 => format!("{}M", trim(n / 1e6)),
        n if n >= 1e3 => format!("{}k", trim(n / 1e3)),
        n => trim(n),
    }
}

/// Horizontal position (0..1) of `second` in a window of 60 seconds ending at `last`.
fn time_frac(second: u64, last: u64) -> f64 {
    1.0 - last.saturating_sub(second) as f64 / 59.0
}

/// Requests per whole second over the last 60 s, one line (a second without requests is a 0).
pub fn requests(series: &[SecondPoint], label: &str) -> String {
    let f = Frame::new(SPARK, 34.0, 12.0);
    let max = series.iter().map(|p| p.requests).max().unwrap_or(0);
    let ymax = nice_ceiling(max as f64);
    let mut s = f.open("requests", "requests/s", label, ymax, short_count);
    f.time_axis(&mut s);
    let last = series.last().map_or(0, |p| p.second);
    if max == 0 {
        f.note(&mut s, NO_DATA);
    } else {
        let points: Vec<String> = series
            .iter()
            .map(|p| {
                let (x, y) = (
                    f.x(time_frac(p.second, last)),
                    f.y(p.requests as f64 / ymax),
                );
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let now = series.last().map_or(0, |p| p.requests);
        f.legend(&mut s, &[(REQUESTS, format!("{now}/s"))]);
        let _ = write!(
            s,
            "<polyline class=\"requests\" points=\"{}\" fill=\"none\" stroke=\"{REQUESTS}\" stroke-width=\"1.5\" stroke-linejoin=\"round\"/>",
            points.join(" ")
        );
    }
    s + "</svg>"
}

/// An SVG path through the seconds that had requests, broken where one had none (no 0 latency
/// is drawn: it is no measurement).
fn latency_path(
    f: &Frame,
    series: &[SecondPoint],
    ymax: f64,
    value: fn(&SecondPoint) -> u64,
) -> String {
    let last = series.last().map_or(0, |p| p.second);
    let mut d = String::new();
    let mut joined = false;
    for p in series {
        if p.requests == 0 || value(p) == 0 {
            joined = false;
            continue;
        }
        let (x, y) = (f.x(time_frac(p.second, last)), f.y(value(p) as f64 / ymax));
        // A lone second is a zero-length segment: with round caps, a dot.
        let _ = if joined {
            write!(d, "L{x:.1},{y:.1}")
        } else {
            write!(d, "M{x:.1},{y:.1}l0,0")
        };
        joined = true;
    }
    d
}

/// p50 and p99 latency of each whole second over the last 60 s, two lines with a legend; seconds
/// without requests are gaps.
pub fn latency(series: &[SecondPoint], label: &str) -> String {
    let f = Frame::new(SPARK, 34.0, 12.0);
    let measured = || series.iter().filter(|p| p.requests > 0);
    let max = measured()
        .map(|p| p.p99_us.max(p.p50_us))
        .max()
        .unwrap_or(0);
    let ymax = nice_ceiling(max as f64);
    let mut s = f.open("latency", "latency", label, ymax, axis_us);
    f.time_axis(&mut s);
    let Some(now) = measured().next_back() else {
        f.note(&mut s, NO_DATA);
        return s + "</svg>";
    };
    f.legend(
        &mut s,
        &[
            (P50, format!("p50 {}", human_us(now.p50_us))),
            (P99, format!("p99 {}", human_us(now.p99_us))),
        ],
    );
    for (class, colour, value) in [
        (
            "p99",
            P99,
            (|p: &SecondPoint| p.p99_us) as fn(&SecondPoint) -> u64,
        ),
        ("p50", P50, |p: &SecondPoint| p.p50_us),
    ] {
        let _ = write!(
            s,
            "<path class=\"{class}\" d=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" stroke-linejoin=\"round\" stroke-linecap=\"round\"/>",
            latency_path(&f, series, ymax, value)
        );
    }
    s + "</svg>"
}

/// A latency as an axis label: "0", "500 µs", "2 ms", "1.5 s".
fn axis_us(us: f64) -> String {
    match us {
        v if v <= 0.0 => "0".into(),
        v if v < 1e3 => format!("{} µs", trim(v)),
        v if v < 1e6 => format!("{} ms", trim(v / 1e3)),
        v => format!("{} s", trim(v / 1e6)),
    }
}

/// A number with at most two decimals, without trailing zeros: 2, 1.5, 1.25.
fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The spectrum's step curve in data units: (decades of 1/(1-q), latency µs). Each bucket is a
/// flat step from the share of requests below it to the share at or below it; the last step ends
/// at `DECADES` (q = 1) at the highest value, the max.
fn spectrum_points(b: &Buckets) -> Vec<(f64, f64)> {
    let total: u64 = b.buckets.iter().map(|[_, n]| n).sum();
    let decades = |below: u64| match total.checked_sub(below) {
        Some(above) if above > 0 => (total as f64 / above as f64).log10().min(DECADES),
        _ => DECADES,
    };
    let mut below = 0;
    let mut points = Vec::with_capacity(2 * b.buckets.len());
    for &[value, n] in b.buckets.iter().filter(|[_, n]| *n > 0) {
        points.push((decades(below), value as f64));
        below += n;
        points.push((decades(below), value as f64));
    }
    thin(points)
}

/// At most one point per pixel column (the column's last, highest one), once there are more
/// points than columns: a member with a thousand buckets still draws a few hundred points. Fewer
/// points are kept as they are, every step's corners exact.
fn thin(points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    if points.len() <= 2 * SPECTRUM_COLUMNS {
        return points;
    }
    let column = |x: f64| (x / DECADES * SPECTRUM_COLUMNS as f64) as usize;
    let mut kept: Vec<(f64, f64)> = Vec::with_capacity(SPECTRUM_COLUMNS + 2);
    for p in points {
        let n = kept.len();
        if n > 1 && column(kept[n - 1].0) == column(p.0) {
            kept[n - 1] = p;
        } else {
            kept.push(p);
        }
    }
    kept
}

/// The spectrum's resolution along x: about one point per pixel column.
const SPECTRUM_COLUMNS: usize = 280;

/// Latency by percentile since start (HdrHistogram's plot): x is log10(1/(1-q)), ticks at 0 %,
/// 90 %, 99 %, 99.9 %, 99.99 %; y is linear from 0 to a round value above the max.
pub fn spectrum(b: &Buckets, label: &str) -> String {
    let f = Frame::new(SPECTRUM, 40.0, 24.0);
    let points = spectrum_points(b);
    let max = points.last().map_or(0.0, |p| p.1);
    let ymax = nice_ceiling(max);
    let mut s = f.open(
        "spectrum",
        "latency by percentile, since start",
        label,
        ymax,
        axis_us,
    );
    for (d, tick) in ["0%", "90%", "99%", "99.9%", "99.99%"].iter().enumerate() {
        let x = f.x(d as f64 / DECADES);
        let _ = write!(
            s,
            "<line x1=\"{x:.1}\" y1=\"{t}\" x2=\"{x:.1}\" y2=\"{b:.1}\" stroke=\"#dde3ec\"/><text x=\"{x:.1}\" y=\"{ly:.1}\" text-anchor=\"middle\">{tick}</text>",
            t = f.top,
            b = f.bottom + 3.0,
            ly = f.bottom + 12.0,
        );
    }
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">percentile</text>",
        f.x(0.5),
        f.h - 2.0
    );
    if points.is_empty() {
        f.note(&mut s, NO_DATA);
        return s + "</svg>";
    }
    let count: u64 = b.buckets.iter().map(|[_, n]| n).sum();
    f.legend(
        &mut s,
        &[
            (P99, format!("max {}", human_us(max as u64))),
            ("#444", format!("n={}", short_count(count as f64))),
        ],
    );
    let coords: Vec<String> = points
        .iter()
        .map(|&(d, v)| format!("{:.1},{:.1}", f.x(d / DECADES), f.y(v / ymax)))
        .collect();
    let _ = write!(
        s,
        "<polyline class=\"spectrum\" points=\"{}\" fill=\"none\" stroke=\"{REQUESTS}\" stroke-width=\"1.5\" stroke-linejoin=\"round\"/>",
        coords.join(" ")
    );
    s + "</svg>"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(second: u64, requests: u64, p50_us: u64, p99_us: u64) -> SecondPoint {
        SecondPoint {
            second,
            requests,
            p50_us,
            p99_us,
        }
    }

    /// The coordinates of the first `attr="..."` (points or d) after `marker`.
    fn coords(svg: &str, marker: &str, attr: &str) -> Vec<(f64, f64)> {
        let rest = &svg[svg
            .find(marker)
            .unwrap_or_else(|| panic!("{marker} in {svg}"))..];
        let start = rest.find(&format!("{attr}=\"")).unwrap() + attr.len() + 2;
        let body = &rest[start..start + rest[start..].find('"').unwrap()];
        body.split([' ', 'M', 'L', 'l'])
            .filter(|p| !p.is_empty() && *p != "0,0")
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn nice_ceilings_and_labels() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(150.0), 200.0);
        assert_eq!(nice_ceiling(2400.0), 2500.0);
        assert_eq!(axis_us(1250.0), "1.25 ms");
        assert_eq!(nice_ceiling(2000.0), 2000.0);
        assert_eq!(nice_ceiling(5001.0), 10000.0);
        assert_eq!(axis_us(500.0), "500 µs");
        assert_eq!(axis_us(2000.0), "2 ms");
        assert_eq!(axis_us(5e6), "5 s");
        assert_eq!(short_count(1200.0), "1.2k");
        assert_eq!(short_count(2e6), "2M");
    }

    #[test]
    fn requests_map_time_to_x_and_count_to_y_monotonically() {
        let series: Vec<_> = (100..160).map(|s| second(s, s - 99, 1000, 2000)).collect();
        let svg = requests(&series, "m");
        let pts = coords(&svg, "<polyline class=\"requests\"", "points");
        assert_eq!(pts.len(), 60);
        assert!(
            pts.windows(2).all(|w| w[1].0 > w[0].0),
            "time goes right: {pts:?}"
        );
        assert!(
            pts.windows(2).all(|w| w[1].1 < w[0].1),
            "more requests go up: {pts:?}"
        );
        let f = Frame::new(SPARK, 34.0, 12.0);
        assert_eq!((pts[0].0, pts[59].0), (f.left, f.right), "60 s ago to now");
        assert!(svg.contains(">100</text>"), "y max label: {svg}");
    }

    #[test]
    fn no_requests_draw_an_empty_frame_with_a_note() {
        let idle: Vec<_> = (0..60).map(|s| second(s, 0, 0, 0)).collect();
        for svg in [
            requests(&idle, "m"),
            requests(&[], "m"),
            latency(&idle, "m"),
            latency(&[], "m"),
            spectrum(&Buckets::default(), "m"),
        ] {
            assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>"), "{svg}");
            assert!(svg.contains(NO_DATA), "{svg}");
            assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
            assert!(
                !svg.contains("<polyline") && !svg.contains("<path"),
                "{svg}"
            );
        }
    }

    #[test]
    fn latency_skips_seconds_without_requests() {
        let mut series: Vec<_> = (0..60).map(|s| second(s, 10, 1000 + s, 3000 + s)).collect();
        series[30] = second(30, 0, 0, 0);
        let svg = latency(&series, "m");
        let d = |class: &str| {
            let rest = &svg[svg.find(&format!("class=\"{class}\" d=\"")).unwrap()..];
            rest[..rest.find("\" fill").unwrap()].to_string()
        };
        assert_eq!(
            d("p50").matches('M').count(),
            2,
            "a gap, not a 0: {}",
            d("p50")
        );
        let (p50, p99) = (
            coords(&svg, "class=\"p50\"", "d"),
            coords(&svg, "class=\"p99\"", "d"),
        );
        assert_eq!((p50.len(), p99.len()), (59, 59));
        assert!(
            p50.iter().zip(&p99).all(|(a, b)| b.1 < a.1),
            "p99 is drawn above p50"
        );
        assert!(
            svg.contains("p50 1.1 ms") && svg.contains("p99 3.1 ms"),
            "legend: {svg}"
        );
        assert!(svg.contains(">5 ms</text>"), "y max label in ms: {svg}");
    }

    #[test]
    fn labels_are_escaped() {
        let evil = "http://x/<script>alert(\"&\")</script>";
        let b = Buckets {
            count: 1,
            sum_us: 5,
            buckets: vec![[5, 1]],
        };
        for svg in [
            requests(&[second(1, 1, 5, 5)], evil),
            latency(&[], evil),
            spectrum(&b, evil),
        ] {
            assert!(
                !svg.contains("<script") && !svg.contains("alert(\""),
                "{svg}"
            );
            assert!(
                svg.contains("&lt;script&gt;alert(&quot;&amp;&quot;)"),
                "{svg}"
            );
        }
    }

    #[test]
    fn a_spectrum_of_many_buckets_is_thinned_to_the_columns() {
        // 3,000 buckets, one request each: 6,000 step corners before thinning.
        let b = Buckets {
            count: 3000,
            sum_us: 0,
            buckets: (1..=3000).map(|v| [v * 10, 1]).collect(),
        };
        let pts = spectrum_points(&b);
        assert!(pts.len() <= 2 * SPECTRUM_COLUMNS + 2, "{}", pts.len());
        assert!(pts.len() > SPECTRUM_COLUMNS / 4, "{}", pts.len());
        assert_eq!(pts.first(), Some(&(0.0, 10.0)));
        assert_eq!(pts.last(), Some(&(DECADES, 30_000.0)));
        assert!(pts.windows(2).all(|w| w[1].0 >= w[0].0 && w[1].1 >= w[0].1));
    }

    #[test]
    fn the_spectrum_rises_and_ends_at_the_max() {
        let b = Buckets {
            count: 10_000,
            sum_us: 0,
            buckets: vec![[100, 9000], [200, 900], [300, 0], [900, 90], [40_000, 10]],
        };
        let pts = spectrum_points(&b);
        assert_eq!(pts.first(), Some(&(0.0, 100.0)));
        assert!(
            (pts[1].0 - 1.0).abs() < 1e-9,
            "9000 of 10000 below: 90 % is 1 decade"
        );
        assert!((pts[3].0 - 2.0).abs() < 1e-9, "99 % is 2 decades");
        assert_eq!(
            pts.last(),
            Some(&(DECADES, 40_000.0)),
            "the last point is the max at q = 1"
        );
        assert!(pts.windows(2).all(|w| w[1].0 >= w[0].0 && w[1].1 >= w[0].1));
        let svg = spectrum(&b, "m");
        let drawn = coords(&svg, "<polyline class=\"spectrum\"", "points");
        let f = Frame::new(SPECTRUM, 40.0, 24.0);
        let top = f.y(40_000.0 / 50_000.0);
        assert_eq!(drawn.last(), Some(&(f.right, (top * 10.0).round() / 10.0)));
        assert!(
            drawn
                .windows(2)
                .all(|w| w[1].0 >= w[0].0 && w[1].1 <= w[0].1),
            "{drawn:?}"
        );
        for tick in [
            "0%",
            "90%",
            "99%",
            "99.9%",
            "99.99%",
            "50 ms",
            "max 40.0 ms",
        ] {
            assert!(svg.contains(tick), "{tick} in {svg}");
        }
    }
}
