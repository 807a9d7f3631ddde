//! The report's charts: one SVG of panels stacked over one time axis, drawn with plotters, so
//! that load, frame time, duty, score and replicas line up second by second. Each panel has a
//! value axis with ticks and its unit, the shared time axis is labelled under the last one, and
//! a target is a dashed line with its value written on it.
//!
//! A missing value is a gap in its line, never a 0.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Height of one panel's plot, pixels.
const PANEL_HEIGHT: u32 = 165;
/// Height of the time axis under the last panel, pixels.
const AXIS_HEIGHT: u32 = 42;
/// Width of the whole chart, pixels.
pub(super) const WIDTH: u32 = 900;

/// One line of a panel.
pub(super) struct Line {
    /// Its name in the legend (a panel with one line has none).
    pub label: &'static str,
    /// `(seconds, value)`; `None` is a gap.
    pub points: Vec<(f64, Option<f64>)>,
    /// Its colour.
    pub color: RGBColor,
    /// Whether the values are drawn as dots (a value taken now and then) instead of a line.
    pub dots: bool,
}

/// One panel: a title, the unit of its value axis, its lines and its target.
pub(super) struct Panel {
    /// Title over the panel.
    pub title: String,
    /// The value axis' label.
    pub unit: &'static str,
    /// What it draws.
    pub lines: Vec<Line>,
    /// A dashed horizontal line and its label, e.g. `(32.0, "target 32 ms")`.
    pub target: Option<(f64, String)>,
}

/// The SVG of `panels` over `0..t_max` seconds.
pub(super) fn svg(panels: &[Panel], t_max: f64) -> Result<String, String> {
    let mut out = String::new();
    let count = u32::try_from(panels.len()).map_err(|e| e.to_string())?;
    let height = count * PANEL_HEIGHT + AXIS_HEIGHT;
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let breaks: Vec<u32> = (1..count).map(|i| i * PANEL_HEIGHT).collect();
        let areas = root.split_by_breakpoints::<u32, u32, _, _>([], breaks);
        let t_max = t_max.max(1.0);
        for (i, (panel, area)) in panels.iter().zip(&areas).enumerate() {
            draw_panel(panel, area, t_max, i + 1 == panels.len()).map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

type DrawResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;

fn draw_panel(
    panel: &Panel,
    area: &DrawingArea<SVGBackend, Shift>,
    t_max: f64,
    last: bool,
) -> DrawResult {
    let y_max = panel
        .lines
        .iter()
        .flat_map(|line| line.points.iter().filter_map(|(_, v)| *v))
        .chain(panel.target.as_ref().map(|(v, _)| *v))
        .fold(0.0_f64, f64::max);
    // Head room over the highest value, more where a legend sits in the upper left corner.
    let room = if panel.lines.len() > 1 { 1.5 } else { 1.15 };
    let y_max = if y_max > 0.0 { y_max * room } else { 1.0 };
    // Past two minutes the time axis counts minutes, so its ticks fall on whole half minutes.
    let minutes = t_max >= 120.0;
    let x = |t: f64| if minutes { t / 60.0 } else { t };
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 15))
        .margin_left(8)
        .margin_right(24)
        .margin_top(4)
        .x_label_area_size(if last { AXIS_HEIGHT } else { 8 })
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x(t_max), 0.0..y_max)?;
    let clock = |x: &f64| clock(if minutes { x * 60.0 } else { *x }, t_max);
    let hide = |_: &f64| String::new();
    let value = |v: &f64| tick(*v);
    let mut mesh = chart.configure_mesh();
    mesh.x_labels(12)
        .y_labels(5)
        .y_desc(panel.unit)
        .y_label_formatter(&value)
        .max_light_lines(1)
        .light_line_style(RGBColor(242, 242, 242))
        .bold_line_style(RGBColor(215, 215, 215))
        .label_style(("sans-serif", 12));
    if last {
        mesh.x_desc(time_unit(t_max)).x_label_formatter(&clock);
    } else {
        mesh.x_label_formatter(&hide);
    }
    mesh.draw()?;

    if let Some((target, label)) = &panel.target {
        let grey = RGBColor(110, 110, 110);
        chart.draw_series(DashedLineSeries::new(
            [(0.0, *target), (x(t_max), *target)],
            6,
            4,
            grey.stroke_width(1),
        ))?;
        chart.draw_series(std::iter::once(Text::new(
            label.clone(),
            (x(t_max) * 0.995, *target),
            ("sans-serif", 12)
                .into_font()
                .color(&grey)
                .pos(Pos::new(HPos::Right, VPos::Bottom)),
        )))?;
    }
    for line in &panel.lines {
        let style = line.color.stroke_width(2);
        let mut drawn = false;
        if line.dots {
            let dots = line
                .points
                .iter()
                .filter_map(|(t, v)| Some(Circle::new((x(*t), (*v)?), 3, line.color.filled())));
            chart
                .draw_series(dots)?
                .label(line.label)
                .legend(move |(x, y)| Circle::new((x + 10, y), 3, line.color.filled()));
            continue;
        }
        for run in line
            .points
            .split(|(_, v)| v.is_none())
            .filter(|r| !r.is_empty())
        {
            let points = run.iter().filter_map(|(t, v)| Some((x(*t), (*v)?)));
            // A lone value between two gaps is a dot: a line of one point would not show.
            let series = if run.len() == 1 {
                chart.draw_series(points.map(|p| Circle::new(p, 2, line.color.filled())))?
            } else {
                chart.draw_series(LineSeries::new(points, style))?
            };
            if !drawn {
                series
                    .label(line.label)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
                drawn = true;
            }
        }
    }
    if panel.lines.len() > 1 {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .label_font(("sans-serif", 12))
            .draw()?;
    }
    Ok(())
}

/// Colours of the fronts, in order.
const FRONT_COLORS: [RGBColor; 8] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// A scatter of every setting's `points` (x, y), each of the `fronts` drawn as a line through
/// its points in its own colour with its name in the legend, and the `marks` labelled. The
/// value axis stops at four times the first front's worst point (points above it are left out
/// and counted in the caption), so that a policy that never scales does not flatten the rest.
pub fn fronts(
    caption: &str,
    points: &[(f64, f64)],
    fronts: &[(&str, Vec<(f64, f64)>)],
    marks: &[(&str, (f64, f64))],
    x_desc: &str,
    y_desc: &str,
) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let x_max = points.iter().map(|p| p.0).fold(0.0, f64::max).max(1e-9) * 1.1;
        let all_y = points.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-9);
        let first_y = fronts
            .first()
            .map_or(all_y, |(_, f)| f.iter().map(|p| p.1).fold(0.0, f64::max));
        let y_max = all_y.min(4.0 * first_y.max(1e-9)) * 1.1;
        let shown = |p: &(f64, f64)| p.1 <= y_max;
        let hidden = points.iter().filter(|p| !shown(p)).count();
        let caption = if hidden > 0 {
            format!("{caption} ({hidden} above {} left out)", tick(y_max))
        } else {
            caption.to_owned()
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 15))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(|e| e.to_string())?;
        let value = |v: &f64| tick(*v);
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(&value)
            .y_label_formatter(&value)
            .max_light_lines(1)
            .light_line_style(RGBColor(242, 242, 242))
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|e| e.to_string())?;
        let grey = RGBColor(200, 200, 200);
        chart
            .draw_series(
                points
                    .iter()
                    .filter(|p| shown(p))
                    .map(|p| Circle::new(*p, 2, grey.filled())),
            )
            .map_err(|e| e.to_string())?
            .label("a setting")
            .legend(move |(x, y)| Circle::new((x + 10, y), 2, grey.filled()));
        for (i, (name, front)) in fronts.iter().enumerate() {
            let color = FRONT_COLORS[i % FRONT_COLORS.len()];
            let width = if i == 0 { 3 } else { 2 };
            chart
                .draw_series(
                    LineSeries::new(
                        front.iter().copied().filter(|p| shown(p)),
                        color.stroke_width(width),
                    )
                    .point_size(3),
                )
                .map_err(|e| e.to_string())?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], color.stroke_width(width))
                });
        }
        for (label, at) in marks.iter().filter(|(_, at)| shown(at)) {
            chart
                .draw_series([Circle::new(*at, 6, BLACK.stroke_width(2))])
                .map_err(|e| e.to_string())?;
            chart
                .draw_series(std::iter::once(Text::new(
                    (*label).to_owned(),
                    *at,
                    ("sans-serif", 12)
                        .into_font()
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Left, VPos::Bottom)),
                )))
                .map_err(|e| e.to_string())?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// The time axis' label: minutes and seconds past two minutes, seconds below.
fn time_unit(t_max: f64) -> &'static str {
    if t_max >= 120.0 {
        "time since the start (min:s)"
    } else {
        "time since the start (s)"
    }
}

/// A time tick: `m:ss` past two minutes, whole seconds below.
fn clock(t: f64, t_max: f64) -> String {
    if t_max >= 120.0 {
        let seconds = t.round() as u64;
        format!("{}:{:02}", seconds / 60, seconds % 60)
    } else {
        format!("{t:.0}")
    }
}

/// A value tick: at most three significant decimals, no trailing zeros.
pub(super) fn tick(value: f64) -> String {
    let text = if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    };
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_short() {
        assert_eq!(tick(0.0), "0");
        assert_eq!(tick(0.1 + 0.2), "0.3");
        assert_eq!(tick(12.26), "12.3");
        assert_eq!(tick(150.0), "150");
        assert_eq!(clock(90.0, 300.0), "1:30");
        assert_eq!(clock(45.0, 60.0), "45");
    }
}
