//! The scaling report of `framescale demo` and `framescale simulate`: a CSV of the time series
//! and an HTML page with the settings in words and one SVG chart ([`chart`]) of every signal —
//! load, P95 against its target, duty against its target, score against 1.0, replicas — over
//! one time axis, readable in any browser with nothing to load.
//!
//! A value that was missing at a time stays missing: an empty CSV cell and a gap in the line.

mod chart;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub use chart::fronts;
use chart::{Line, Panel};
use plotters::style::{BLACK, BLUE, GREEN, RED, RGBColor};

const ORANGE: RGBColor = RGBColor(230, 120, 20);
const PURPLE: RGBColor = RGBColor(130, 80, 170);
const TEAL: RGBColor = RGBColor(0, 140, 140);
const DARK_RED: RGBColor = RGBColor(170, 0, 0);
const MAGENTA: RGBColor = RGBColor(200, 0, 200);

/// One sample of the loop.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    /// Seconds since the start.
    pub t: f64,
    /// Load offered, frames per second.
    pub offered_rate: Option<f64>,
    /// Replicas running.
    pub replicas: u32,
    /// Replicas the controller wants, at the syncs.
    pub desired: Option<u32>,
    /// Mean P95 render time of the pods, milliseconds.
    pub p95_ms: Option<f64>,
    /// Mean P95 frame latency the pods' exporters served, milliseconds (pods refusing frames,
    /// whose P95 is an hour, left out).
    pub latency_ms: Option<f64>,
    /// The users' latency P95 over the frames of this second, milliseconds (what the load
    /// generator measured).
    pub users_p95_ms: Option<f64>,
    /// Frames of this second users got late (over the latency target) or never, percent.
    pub bad_pct: Option<f64>,
    /// Mean device duty of the pods, percent.
    pub duty_pct: Option<f64>,
    /// Mean score of the pods (what the HPA averages).
    pub score: Option<f64>,
    /// The controller's decision at a sync, with its reason.
    pub decision: Option<String>,
}

/// A titled series of rows and the targets they are read against.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Page title.
    pub title: String,
    /// Lines under the title (settings, summary).
    pub notes: Vec<String>,
    /// Figures (title, SVG) shown before the time series: the settings search's front.
    pub figures: Vec<(String, String)>,
    /// P95 target, milliseconds.
    pub frame_target_ms: f64,
    /// Duty target, percent.
    pub gpu_target_pct: f64,
    /// The samples, in time order.
    pub rows: Vec<Row>,
}

const CSV_HEADER: &str = "t_s,offered_rate,replicas,desired,p95_ms,duty_pct,score,latency_ms,users_p95_ms,bad_pct,decision";

impl Report {
    /// The CSV: a header line, then one line per row; missing values are empty cells.
    #[must_use]
    pub fn csv(&self) -> String {
        let mut out = String::with_capacity(64 * (self.rows.len() + 1));
        out.push_str(CSV_HEADER);
        out.push('\n');
        let cell = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_default();
        for row in &self.rows {
            let decision = row.decision.as_deref().unwrap_or("").replace('"', "\"\"");
            let _ = writeln!(
                out,
                "{:.3},{},{},{},{},{},{},{},{},{},\"{decision}\"",
                row.t,
                cell(row.offered_rate),
                row.replicas,
                row.desired.map(|d| d.to_string()).unwrap_or_default(),
                cell(row.p95_ms),
                cell(row.duty_pct),
                cell(row.score),
                cell(row.latency_ms),
                cell(row.users_p95_ms),
                cell(row.bad_pct),
            );
        }
        out
    }

    /// The HTML page: the settings and summary, one chart of every signal over one time axis,
    /// and the controller's decisions.
    #[must_use]
    pub fn html(&self) -> String {
        let panels = self.panels();
        let t_max = self.rows.last().map_or(1.0, |r| r.t);
        let mut out = String::new();
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
             <style>body{{font-family:sans-serif;margin:2em;max-width:{width}px}}\
             figure{{margin:1em 0}}li{{margin:.2em 0}}</style></head><body>\n<h1>{title}</h1>\n<ul>\n",
            title = escape(&self.title),
            width = chart::WIDTH + 40,
        );
        for note in &self.notes {
            let _ = writeln!(out, "<li>{}</li>", escape(note));
        }
        out.push_str("</ul>\n");
        for (title, svg) in &self.figures {
            let _ = write!(
                out,
                "<h2>{}</h2>\n<figure>\n{svg}\n</figure>\n",
                escape(title)
            );
        }
        out.push_str("<figure>\n");
        match chart::svg(&panels, t_max) {
            Ok(svg) => out.push_str(&svg),
            Err(error) => {
                let _ = write!(
                    out,
                    "<p>The chart could not be drawn: {}</p>",
                    escape(&error)
                );
            }
        }
        out.push_str(
            "\n<figcaption>A missing value is a gap in its line, never a 0.</figcaption>\n</figure>\n",
        );
        let rescales: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| {
                r.decision
                    .as_deref()
                    .is_some_and(|d| !d.starts_with("keep"))
            })
            .collect();
        if !rescales.is_empty() {
            out.push_str(
                "<h2>Rescales</h2>\n<p>Every sync's decision, with its reason, is in report.csv.</p>\n<ul>\n",
            );
            for row in rescales {
                let _ = writeln!(
                    out,
                    "<li>{:>6.1} s: {}</li>",
                    row.t,
                    escape(row.decision.as_deref().unwrap_or(""))
                );
            }
            out.push_str("</ul>\n");
        }
        out.push_str("</body></html>\n");
        out
    }

    /// The chart's panels, top to bottom; a panel with no value at all is left out (a
    /// simulation has no load generator to say what each second's users felt).
    fn panels(&self) -> Vec<Panel> {
        let column = |f: fn(&Row) -> Option<f64>| -> Vec<(f64, Option<f64>)> {
            self.rows.iter().map(|r| (r.t, f(r))).collect()
        };
        let line = |label, points, color, dots| Line {
            label,
            points,
            color,
            dots,
        };
        [
            Panel {
                title: "Offered load".into(),
                unit: "frames/s",
                lines: vec![line("offered", column(|r| r.offered_rate), BLUE, false)],
                target: None,
            },
            Panel {
                title: "What users felt: latency P95 of each second's frames, against the latency target".into(),
                unit: "ms",
                lines: vec![line("users' P95", column(|r| r.users_p95_ms), TEAL, false)],
                target: Some((
                    self.frame_target_ms,
                    format!("target {} ms", chart::tick(self.frame_target_ms)),
                )),
            },
            Panel {
                title: "What users felt: bad frames (late or refused), % of each second's".into(),
                unit: "%",
                lines: vec![line("bad frames", column(|r| r.bad_pct), DARK_RED, false)],
                target: None,
            },
            Panel {
                title: "Served: P95 latency and render time (mean of the pods; pods refusing frames left out)".into(),
                unit: "ms",
                lines: vec![
                    line("latency", column(|r| r.latency_ms), MAGENTA, false),
                    line("render time", column(|r| r.p95_ms), ORANGE, false),
                ],
                target: Some((
                    self.frame_target_ms,
                    format!("target {} ms", chart::tick(self.frame_target_ms)),
                )),
            },
            Panel {
                title: "Device duty (mean of the pods) against its target".into(),
                unit: "%",
                lines: vec![line("duty", column(|r| r.duty_pct), GREEN, false)],
                target: Some((
                    self.gpu_target_pct,
                    format!("target {} %", chart::tick(self.gpu_target_pct)),
                )),
            },
            Panel {
                title: "Score (what the HPA averages) against 1.0".into(),
                unit: "score",
                lines: vec![line("score", column(|r| r.score), RED, false)],
                target: Some((1.0, "1.0: at target".into())),
            },
            Panel {
                title: "Replicas".into(),
                unit: "replicas",
                lines: vec![
                    line(
                        "running",
                        column(|r| Some(f64::from(r.replicas))),
                        PURPLE,
                        false,
                    ),
                    line(
                        "desired at a sync",
                        column(|r| r.desired.map(f64::from)),
                        BLACK,
                        true,
                    ),
                ],
                target: None,
            },
        ]
        .into_iter()
        .filter(|p| p.lines.iter().any(|l| l.points.iter().any(|(_, v)| v.is_some())))
        .collect()
    }

    /// Writes `<dir>/report.csv` and `<dir>/report.html` (creating `dir`); returns their paths.
    pub fn write(&self, dir: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir)?;
        let (csv, html) = (dir.join("report.csv"), dir.join("report.html"));
        std::fs::write(&csv, self.csv())?;
        std::fs::write(&html, self.html())?;
        Ok((csv, html))
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn report() -> Report {
        Report {
            title: "demo <1>".into(),
            notes: vec!["seed 1".into()],
            figures: Vec::new(),
            frame_target_ms: 32.0,
            gpu_target_pct: 65.0,
            rows: vec![
                Row {
                    t: 0.0,
                    offered_rate: Some(5.0),
                    replicas: 1,
                    ..Row::default()
                },
                Row {
                    t: 1.0,
                    offered_rate: Some(40.0),
                    replicas: 1,
                    desired: Some(2),
                    p95_ms: Some(20.5),
                    latency_ms: Some(80.0),
                    users_p95_ms: Some(95.5),
                    bad_pct: Some(12.5),
                    duty_pct: Some(97.0),
                    score: Some(1.3),
                    decision: Some("scale 1 → 2: \"above target\"".into()),
                },
                Row {
                    t: 2.0,
                    offered_rate: Some(40.0),
                    replicas: 2,
                    p95_ms: Some(21.0),
                    ..Row::default()
                },
            ],
        }
    }

    #[test]
    fn csv_keeps_missing_values_empty() {
        let csv = report().csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], CSV_HEADER);
        assert_eq!(lines[1], "0.000,5.000,1,,,,,,,,\"\"");
        assert_eq!(
            lines[2],
            "1.000,40.000,1,2,20.500,97.000,1.300,80.000,95.500,12.500,\"scale 1 → 2: \"\"above target\"\"\""
        );
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn html_has_one_chart_with_axes_and_gaps_for_missing_values() {
        let html = report().html();
        assert_eq!(html.matches("<svg").count(), 1, "one chart, one time axis");
        assert!(html.contains("<title>demo &lt;1&gt;</title>"));
        for label in [
            "Offered load",
            "What users felt: latency P95",
            "What users felt: bad frames",
            "Served: P95 latency and render time",
            "Device duty",
            "Score",
            "Replicas",
            "frames/s",
            "time since the start (s)",
            "target 32 ms",
            "target 65 %",
            "desired at a sync",
        ] {
            assert!(html.contains(label), "{label} is written");
        }
        // Tick labels on the value axes and on the time axis.
        let texts: Vec<&str> = html
            .split("<text")
            .skip(1)
            .map(|t| {
                t.split_once('>')
                    .unwrap()
                    .1
                    .split("</text>")
                    .next()
                    .unwrap()
                    .trim()
            })
            .collect();
        for tick in ["0", "0.5", "1", "2", "10", "20", "40"] {
            assert!(texts.contains(&tick), "tick {tick} in {texts:?}");
        }
        // A polyline per run of present values: P95 is present at t=1 and t=2 (one line),
        // duty only at t=1 (a run of one point, no line through the missing samples).
        let polylines = |color: &str| {
            html.matches(&format!(
                "<polyline fill=\"none\" opacity=\"1\" stroke=\"{color}\""
            ))
            .count()
        };
        assert_eq!(
            polylines("#E67814"),
            2,
            "one render-time line, and its sample in the panel's legend"
        );
        assert_eq!(polylines("#00FF00"), 0, "no duty line");
        assert!(html.contains("<circle cx"), "the lone duty value is a dot");
        assert!(html.contains("scale 1 → 2: &quot;above target&quot;"));
    }

    #[test]
    fn write_puts_both_files_in_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (csv, html) = report().write(&dir.path().join("out")).unwrap();
        assert!(
            std::fs::read_to_string(csv)
                .unwrap()
                .starts_with(CSV_HEADER)
        );
        assert!(
            std::fs::read_to_string(html)
                .unwrap()
                .ends_with("</html>\n")
        );
    }
}
