//! `--plot FILE.svg`: the latency distribution as a percentile spectrum (latency against
//! percentile on a log scale of 1/(1-q), as HdrHistogram's plots), drawn with plotters.

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

pub fn draw(path: &Path, hist: &Histogram<u64>, title: &str) -> anyhow::Result<()> {
    if hist.is_empty() {
        anyhow::bail!("no latencies recorded: nothing to plot");
    }
    let points: Vec<(f64, f64)> = hist
        .iter_quantiles(2)
        .map(|v| {
            (
                v.quantile_iterated_to(),
                v.value_iterated_to() as f64 / 1000.0,
            )
        })
        .filter(|(q, _)| *q < 0.99999)
        .map(|(q, ms)| (1.0 / (1.0 - q), ms))
        .collect();
    let max_ms = points.iter().map(|p| p.1).fold(0.0, f64::max) * 1.1 + 0.001;
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((1.0f64..100_000.0f64).log_scale(), 0.0..max_ms)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| format!("{}%", (100.0 - 100.0 / x).max(0.0)))
        .draw()?;
    chart.draw_series(LineSeries::new(points, &BLUE))?;
    root.present()?;
    Ok(())
}
