//! `--plot FILE.svg`: throughput, loss, latency and CPU over the run.

use std::path::Path;

use plotters::prelude::*;

use super::report::TimelinePoint;

type Series<'a> = (
    &'a str,
    RGBColor,
    Box<dyn Fn(&TimelinePoint) -> Option<f64> + 'a>,
);

/// Draws four stacked charts sharing the time axis.
pub fn draw(path: &Path, timeline: &[TimelinePoint], title: &str) -> Result<(), String> {
    let root = SVGBackend::new(path, (1000, 1100)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root
        .titled(title, ("sans-serif", 20))
        .map_err(|e| e.to_string())?;
    let areas = root.split_evenly((4, 1));
    let t_max = timeline.last().map_or(1.0, |p| p.t.max(1.0));
    let charts: [(&str, Vec<Series>); 4] = [
        (
            "throughput (Mbit/s)",
            vec![
                (
                    "received",
                    BLUE,
                    Box::new(|p: &TimelinePoint| Some(p.mbps_in)),
                ),
                (
                    "sent",
                    GREEN,
                    Box::new(|p: &TimelinePoint| Some(p.mbps_out)),
                ),
            ],
        ),
        (
            "loss (%)",
            vec![("loss", RED, Box::new(|p: &TimelinePoint| Some(p.loss_pct)))],
        ),
        (
            "latency (ms)",
            vec![
                (
                    "p50",
                    BLUE,
                    Box::new(|p: &TimelinePoint| Some(p.latency_p50_ms)),
                ),
                (
                    "p99",
                    MAGENTA,
                    Box::new(|p: &TimelinePoint| Some(p.latency_p99_ms)),
                ),
            ],
        ),
        (
            "CPU (% of a core)",
            vec![
                (
                    "server",
                    RED,
                    Box::new(|p: &TimelinePoint| p.server_cpu_pct),
                ),
                (
                    "load tool",
                    BLACK,
                    Box::new(|p: &TimelinePoint| p.tool_cpu_pct),
                ),
            ],
        ),
    ];
    for (area, (name, series)) in areas.iter().zip(charts.iter()) {
        let y_max = series
            .iter()
            .flat_map(|(_, _, f)| timeline.iter().filter_map(f))
            .fold(0.0f64, f64::max);
        let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
        let mut chart = ChartBuilder::on(area)
            .caption(*name, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..t_max, 0.0..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("s")
            .draw()
            .map_err(|e| e.to_string())?;
        for (label, color, f) in series {
            let points: Vec<(f64, f64)> = timeline
                .iter()
                .filter_map(|p| f(p).map(|v| (p.t, v)))
                .collect();
            if points.is_empty() {
                continue;
            }
            let color = *color;
            chart
                .draw_series(LineSeries::new(points, color))
                .map_err(|e| e.to_string())?
                .label(*label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}
