//! `--plot FILE.svg`: offered load and served capacity (top), servers in service and booting
//! with the scale actions (bottom), over the whole trace. Drawn with plotters. A long trace is
//! downsampled for drawing only, never for the figures: per pixel column the highest load, the
//! lowest capacity and in-service count, and the most booting, so peaks and shortfalls stay
//! visible at 90 days.

use std::path::{Path, PathBuf};

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::{Outcome, Point, Settings};

/// The drawing's size in pixels, and how many columns a series is reduced to.
const SIZE: (u32, u32) = (1600, 900);
const COLUMNS: usize = 1400;

/// The plot could not be drawn or written.
#[derive(Debug, thiserror::Error)]
#[error("`{}`: {message}", path.display())]
pub struct PlotError {
    path: PathBuf,
    message: String,
}

/// One drawn column: the extremes of the points it stands for.
#[derive(Debug, Clone, Copy)]
struct Column {
    x: f64,
    load: f64,
    capacity: f64,
    in_service: u32,
    /// The most servers in service and booting at one time.
    launched: u32,
}

fn columns(points: &[Point], unit_s: f64) -> Vec<Column> {
    let per = points.len().div_ceil(COLUMNS).max(1);
    points
        .chunks(per)
        .map(|chunk| Column {
            x: chunk[0].t as f64 / unit_s,
            load: chunk.iter().map(|p| p.load).fold(0.0, f64::max),
            capacity: chunk
                .iter()
                .map(|p| p.capacity)
                .fold(f64::INFINITY, f64::min),
            in_service: chunk.iter().map(|p| p.in_service).min().unwrap_or(0),
            launched: chunk
                .iter()
                .map(|p| p.in_service + p.booting)
                .max()
                .unwrap_or(0),
        })
        .collect()
}

/// Draws `outcome` into the SVG file at `path`.
pub(crate) fn draw(
    path: &Path,
    outcome: &Outcome,
    settings: Settings,
    pool: &str,
) -> Result<(), PlotError> {
    let failed = |error: &dyn std::fmt::Display| PlotError {
        path: path.to_owned(),
        message: error.to_string(),
    };
    let span = outcome.points.last().map_or(1, |p| p.t + 1);
    let (unit_s, unit) = if span > 2 * 86_400 {
        (86_400.0, "days")
    } else {
        (3_600.0, "hours")
    };
    // Drawn in memory, then written as every output is (issue 29, class 1): atomically, and
    // never through what is not a regular file.
    let mut svg = String::new();
    draw_into(&mut svg, outcome, settings, pool, (span, unit_s, unit)).map_err(|e| failed(&e))?;
    let readable = crate::fs_atomic::Ownership {
        mode: 0o644,
        uid_gid: None,
    };
    crate::fs_atomic::write(path, svg.as_bytes(), readable).map_err(|e| failed(&e))
}

/// Draws the plot into `svg`.
fn draw_into(
    svg: &mut String,
    outcome: &Outcome,
    settings: Settings,
    pool: &str,
    (span, unit_s, unit): (u64, f64, &str),
) -> Result<(), String> {
    let failed = |error: &dyn std::fmt::Display| error.to_string();
    let columns = columns(&outcome.points, unit_s);
    let x_end = span as f64 / unit_s;
    let load_top = columns
        .iter()
        .map(|c| c.load.max(c.capacity))
        .fold(1.0, f64::max)
        * 1.05;
    let servers_top = f64::from(columns.iter().map(|c| c.launched).max().unwrap_or(1).max(1)) * 1.1;
    let band = servers_top * 0.12;

    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(&e))?;
    let (top, bottom) = root.split_vertically(SIZE.1 * 55 / 100);
    let f = &outcome.figures;
    let title = format!(
        "{pool}: {:.3} % unserved, cost ratio {}, {} up / {} down (capacity {} req/s per server, boot {} s)",
        f.unserved_pct,
        f.cost_ratio.map_or("-".to_owned(), |r| format!("{r:.3}")),
        f.scale_ups,
        f.scale_downs,
        settings.capacity,
        settings.boot_s
    );
    let mut chart = ChartBuilder::on(&top)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_end, 0.0..load_top)
        .map_err(|e| failed(&e))?;
    chart
        .configure_mesh()
        .x_desc(unit)
        .y_desc("requests per second")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(|e| failed(&e))?;
    let load_style = RGBColor(200, 60, 40);
    let capacity_style = RGBColor(30, 100, 200);
    chart
        .draw_series(AreaSeries::new(
            columns.iter().map(|c| (c.x, c.capacity)),
            0.0,
            capacity_style.mix(0.25),
        ))
        .map_err(|e| failed(&e))?
        .label("served capacity (in service × capacity, lowest per column)")
        .legend(move |(x, y)| {
            Rectangle::new(
                [(x, y - 5), (x + 18, y + 5)],
                capacity_style.mix(0.4).filled(),
            )
        });
    line(
        &mut chart,
        columns.iter().map(|c| (c.x, c.load)),
        (load_style, 1),
        "offered load (highest per column)",
    )
    .map_err(|e| failed(&e))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(|e| failed(&e))?;

    let mut servers = ChartBuilder::on(&bottom)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_end, -band..servers_top)
        .map_err(|e| failed(&e))?;
    servers
        .configure_mesh()
        .x_desc(unit)
        .y_desc("servers")
        // The band below 0 holds the scale actions, not a count.
        .y_label_formatter(&|v| {
            if *v < 0.0 {
                String::new()
            } else {
                format!("{v:.0}")
            }
        })
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(|e| failed(&e))?;
    let serving_style = RGBColor(30, 130, 60);
    let booting_style = RGBColor(230, 150, 20);
    line(
        &mut servers,
        columns.iter().map(|c| (c.x, f64::from(c.in_service))),
        (serving_style, 2),
        "in service (lowest per column)",
    )
    .map_err(|e| failed(&e))?;
    line(
        &mut servers,
        columns.iter().map(|c| (c.x, f64::from(c.launched))),
        (booting_style, 1),
        "in service + booting (most per column)",
    )
    .map_err(|e| failed(&e))?;
    // Scale actions as ticks in a band below 0: up in green above, down in red below.
    let (up, down) = (RGBColor(0, 150, 0), RGBColor(200, 0, 0));
    servers
        .draw_series(outcome.actions.iter().map(|(t, direction)| {
            let x = *t as f64 / unit_s;
            let (from, to, colour) = if *direction > 0 {
                (-band * 0.45, -band * 0.05, up)
            } else {
                (-band * 0.95, -band * 0.55, down)
            };
            PathElement::new([(x, from), (x, to)], colour.stroke_width(1))
        }))
        .map_err(|e| failed(&e))?
        .label("scale actions, below 0 (up: green, down: red)")
        .legend(move |(x, y)| {
            PathElement::new([(x + 9, y - 6), (x + 9, y + 6)], up.stroke_width(2))
        });
    servers
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(|e| failed(&e))?;
    root.present().map_err(|e| failed(&e))?;
    Ok(())
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A line series of `colour` and `width`, with its legend entry.
fn line(
    chart: &mut Chart<'_, '_>,
    points: impl Iterator<Item = (f64, f64)>,
    (colour, width): (RGBColor, u32),
    label: &str,
) -> Result<(), String> {
    chart
        .draw_series(LineSeries::new(points, colour.stroke_width(width)))
        .map_err(|e| e.to_string())?
        .label(label)
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(2)));
    Ok(())
}
