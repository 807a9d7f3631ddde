//! The scaling report of `framescale demo` and `framescale simulate`: a CSV of the time series
//! and an HTML page with one SVG chart per signal (load, P95 vs target, duty vs target, score vs
//! 1.0, replicas), readable in any browser with nothing to load.
//!
//! A value that was missing at a time stays missing: an empty CSV cell and a gap in the line.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

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
    /// Mean P95 frame time of the pods, milliseconds.
    pub p95_ms: Option<f64>,
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
    /// P95 target, milliseconds.
    pub frame_target_ms: f64,
    /// Duty target, percent.
    pub gpu_target_pct: f64,
    /// The samples, in time order.
    pub rows: Vec<Row>,
}

const CSV_HEADER: &str = "t_s,offered_rate,replicas,desired,p95_ms,duty_pct,score,decision";

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
                "{:.3},{},{},{},{},{},{},\"{decision}\"",
                row.t,
                cell(row.offered_rate),
                row.replicas,
                row.desired.map(|d| d.to_string()).unwrap_or_default(),
                cell(row.p95_ms),
                cell(row.duty_pct),
                cell(row.score),
            );
        }
        out
    }

    /// The HTML page.
    #[must_use]
    pub fn html(&self) -> String {
        let column = |f: fn(&Row) -> Option<f64>| -> Vec<(f64, Option<f64>)> {
            self.rows.iter().map(|r| (r.t, f(r))).collect()
        };
        let charts = [
            Chart {
                title: "Offered load (frames/s)",
                series: column(|r| r.offered_rate),
                reference: None,
                color: "#1f77b4",
            },
            Chart {
                title: "P95 frame time (ms) vs target",
                series: column(|r| r.p95_ms),
                reference: Some(self.frame_target_ms),
                color: "#ff7f0e",
            },
            Chart {
                title: "Device duty (%) vs target",
                series: column(|r| r.duty_pct),
                reference: Some(self.gpu_target_pct),
                color: "#2ca02c",
            },
            Chart {
                title: "Score vs 1.0",
                series: column(|r| r.score),
                reference: Some(1.0),
                color: "#d62728",
            },
            Chart {
                title: "Replicas",
                series: column(|r| Some(f64::from(r.replicas))),
                reference: None,
                color: "#9467bd",
            },
        ];
        let mut out = String::new();
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
             <style>body{{font-family:sans-serif;margin:2em;max-width:900px}}svg{{display:block;margin-bottom:1.5em}}\
             li{{font-family:monospace}}</style></head><body>\n<h1>{title}</h1>\n<ul>\n",
            title = escape(&self.title)
        );
        for note in &self.notes {
            let _ = writeln!(out, "<li>{}</li>", escape(note));
        }
        out.push_str("</ul>\n");
        for chart in &charts {
            chart.svg(&mut out);
        }
        let decisions: Vec<&Row> = self.rows.iter().filter(|r| r.decision.is_some()).collect();
        if !decisions.is_empty() {
            out.push_str("<h2>Decisions</h2>\n<ul>\n");
            for row in decisions {
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

    /// Writes `<dir>/report.csv` and `<dir>/report.html` (creating `dir`); returns their paths.
    pub fn write(&self, dir: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir)?;
        let (csv, html) = (dir.join("report.csv"), dir.join("report.html"));
        std::fs::write(&csv, self.csv())?;
        std::fs::write(&html, self.html())?;
        Ok((csv, html))
    }
}

struct Chart {
    title: &'static str,
    series: Vec<(f64, Option<f64>)>,
    reference: Option<f64>,
    color: &'static str,
}

const WIDTH: f64 = 860.0;
const HEIGHT: f64 = 170.0;
const LEFT: f64 = 50.0;
const TOP: f64 = 24.0;
const BOTTOM: f64 = 22.0;

impl Chart {
    fn svg(&self, out: &mut String) {
        let t_max = self.series.last().map_or(1.0, |(t, _)| t.max(1.0));
        let y_max = self
            .series
            .iter()
            .filter_map(|(_, v)| *v)
            .chain(self.reference)
            .fold(0.0_f64, f64::max)
            .max(1e-9)
            * 1.1;
        let (plot_w, plot_h) = (WIDTH - LEFT - 10.0, HEIGHT - TOP - BOTTOM);
        let x = |t: f64| LEFT + t / t_max * plot_w;
        let y = |v: f64| TOP + plot_h - v / y_max * plot_h;
        let _ = write!(
            out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
             role=\"img\" aria-label=\"{title}\">\n<text x=\"{LEFT}\" y=\"15\" font-size=\"13\">{title}</text>\n\
             <rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" stroke=\"#ccc\"/>\n\
             <text x=\"{lx}\" y=\"{ty}\" font-size=\"11\" text-anchor=\"end\">{top}</text>\n\
             <text x=\"{lx}\" y=\"{by}\" font-size=\"11\" text-anchor=\"end\">0</text>\n\
             <text x=\"{rx}\" y=\"{tx}\" font-size=\"11\" text-anchor=\"end\">{t_max:.0} s</text>\n",
            title = self.title,
            lx = LEFT - 4.0,
            ty = TOP + 10.0,
            top = trim(y_max),
            by = TOP + plot_h,
            rx = WIDTH - 10.0,
            tx = HEIGHT - 6.0,
        );
        if let Some(reference) = self.reference {
            let _ = writeln!(
                out,
                "<line x1=\"{LEFT}\" x2=\"{x2}\" y1=\"{y0:.1}\" y2=\"{y0:.1}\" stroke=\"#888\" stroke-dasharray=\"5,4\"/>\
                 <text x=\"{x2}\" y=\"{ly:.1}\" font-size=\"11\" text-anchor=\"end\" fill=\"#666\">{label}</text>",
                x2 = LEFT + plot_w,
                y0 = y(reference),
                ly = y(reference) - 3.0,
                label = trim(reference),
            );
        }
        // One polyline per run of present values: a missing value is a gap, not a 0.
        for run in self
            .series
            .split(|(_, v)| v.is_none())
            .filter(|r| !r.is_empty())
        {
            let points: Vec<String> = run
                .iter()
                .filter_map(|(t, v)| Some(format!("{:.1},{:.1}", x(*t), y((*v)?))))
                .collect();
            let _ = writeln!(
                out,
                "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"/>",
                self.color,
                points.join(" ")
            );
        }
        out.push_str("</svg>\n");
    }
}

fn trim(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
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

    fn report() -> Report {
        Report {
            title: "demo <1>".into(),
            notes: vec!["seed 1".into()],
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
        assert_eq!(lines[1], "0.000,5.000,1,,,,,\"\"");
        assert_eq!(
            lines[2],
            "1.000,40.000,1,2,20.500,97.000,1.300,\"scale 1 → 2: \"\"above target\"\"\""
        );
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn html_has_one_chart_per_signal_and_gaps_for_missing_values() {
        let html = report().html();
        assert_eq!(html.matches("<svg").count(), 5);
        assert!(html.contains("<title>demo &lt;1&gt;</title>"));
        // P95 is present at t=1 and t=2 only: one polyline of two points.
        let chart = |title: &str| html.split("<svg").find(|c| c.contains(title)).unwrap();
        let p95 = chart("P95 frame time");
        assert_eq!(p95.matches("<polyline").count(), 1);
        // Duty is present only at t=1: a run of one point, between two gaps.
        let duty = chart("Device duty");
        assert_eq!(duty.matches("<polyline").count(), 1);
        assert!(html.contains("stroke-dasharray"), "targets are drawn");
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
