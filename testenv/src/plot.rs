//! PNG charts of the side-by-side bench, drawn from its JSON results (docs/bench/results.json)
//! so that anyone can redraw them (`kube-reloader-bench-plot`). Text is rendered with a font
//! embedded in the binary, so no system fonts or fontconfig are needed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::prelude::*;
use serde_json::Value;

const FONT: &str = "sans-serif";
const SIZE: (u32, u32) = (1000, 620);
/// Colours of the series, in order: kube-reloader's shades first, then the peer's.
const OURS: [RGBColor; 3] = [
    RGBColor(31, 119, 180),
    RGBColor(23, 190, 207),
    RGBColor(44, 60, 120),
];
const PEER: [RGBColor; 3] = [
    RGBColor(214, 39, 40),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
];

fn register_font() -> Result<(), String> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = plotters::style::register_font(
            FONT,
            FontStyle::Normal,
            epaint_default_fonts::HACK_REGULAR,
        )
        .map_err(|_| "the embedded font cannot be parsed".to_owned());
    });
    result
}

/// One line of a chart: its label and its (x, y) points, sorted by x.
struct Series {
    label: String,
    ours: bool,
    points: Vec<(f64, f64)>,
}

fn number(record: &Value, key: &str) -> Option<f64> {
    record.get(key).and_then(Value::as_f64)
}

fn text<'a>(record: &'a Value, key: &str) -> &'a str {
    record.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The series of `figure` in `scenario`, one per controller (and per `group` value when given),
/// with x read from the record's `x_key`.
fn collect(
    results: &Value,
    scenario: &str,
    figure: &str,
    x_key: &str,
    group: Option<&str>,
) -> Vec<Series> {
    // Only the controllers (the control plane's own RSS is in the results, not the charts).
    let controllers: Vec<&str> = results["meta"]["controllers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let mut lines: BTreeMap<(bool, String), Vec<(f64, f64)>> = BTreeMap::new();
    // A point at x = 0 (an empty cluster) is measured once and belongs to every group's line.
    let mut origins: BTreeMap<String, f64> = BTreeMap::new();
    for record in results["records"].as_array().into_iter().flatten() {
        if text(record, "scenario") != scenario
            || text(record, "figure") != figure
            || !controllers.contains(&text(record, "controller"))
        {
            continue;
        }
        let (Some(x), Some(y)) = (number(record, x_key), number(record, "value")) else {
            continue;
        };
        let controller = text(record, "controller");
        if group.is_some() && x == 0.0 {
            origins.insert(controller.to_owned(), y);
        }
        let mut label = controller.to_owned();
        if let Some(group) = group {
            let value = number(record, group).unwrap_or(0.0);
            label = format!("{controller}, {value} KiB Secrets");
        }
        lines
            .entry((controller != "kube-reloader", label))
            .or_default()
            .push((x, y));
    }
    lines
        .into_iter()
        .map(|((peer, label), mut points)| {
            let controller = label.split(',').next().unwrap_or_default();
            if let Some(&y) = origins.get(controller)
                && !points.iter().any(|p| p.0 == 0.0)
            {
                points.push((0.0, y));
            }
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series {
                label,
                ours: !peer,
                points,
            }
        })
        .collect()
}

fn chart(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
) -> Result<(), String> {
    let fail = |e: &dyn std::fmt::Display| format!("cannot draw {}: {e}", path.display());
    let x_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0_f64, f64::max);
    let y_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(1.0_f64, f64::max);
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 24))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max * 1.05, 0.0..y_max * 1.15)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 17))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(|e| fail(&e))?;
    let (mut ours, mut peer) = (0, 0);
    for s in series {
        let color = if s.ours {
            ours += 1;
            OURS[(ours - 1) % OURS.len()]
        } else {
            peer += 1;
            PEER[(peer - 1) % PEER.len()]
        };
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(3),
            ))
            .map_err(|e| fail(&e))?
            .label(s.label.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(3)));
        chart
            .draw_series(s.points.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(|e| fail(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

/// Draws every chart the results hold into `dir`; returns the files written.
pub fn draw(results: &Value, dir: &Path) -> Result<Vec<PathBuf>, String> {
    register_font()?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut written = Vec::new();
    let charts = [
        (
            "memory-vs-objects.png",
            "Resident memory after the initial sync vs Secrets + ConfigMaps",
            "Secrets + ConfigMaps in the cluster",
            "RSS after sync (MiB)",
            collect(
                results,
                "objects",
                "rss_after_sync",
                "objects",
                Some("secret_kib"),
            ),
        ),
        (
            "memory-vs-workloads.png",
            "Resident memory after the initial sync vs workloads",
            "Deployments in the cluster",
            "RSS after sync (MiB)",
            collect(results, "workloads", "rss_after_sync", "workloads", None),
        ),
        (
            "fanout.png",
            "One ConfigMap used by N Deployments: time until all are patched",
            "Deployments using the ConfigMap",
            "time until all carry the new marker (s)",
            collect(results, "fanout", "fanout_time", "workloads", None),
        ),
    ];
    for (file, title, x_desc, y_desc, series) in charts {
        if series.iter().all(|s| s.points.is_empty()) {
            continue;
        }
        let path = dir.join(file);
        chart(&path, title, x_desc, y_desc, &series)?;
        written.push(path);
    }
    Ok(written)
}
