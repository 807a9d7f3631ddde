//! What `framescale tune`'s search leaves on disk: the recommended setting as the adapter's
//! metrics file and an HPA manifest, every run as CSV, and the report — each policy's front of
//! bad frames against replica-hours, and the recommended setting's run.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::compare;
use crate::fronts::Front;
use crate::report::{self, Report, Row};
use crate::sweep::Scored;

/// The search's results, as they are written.
pub struct Search<'a> {
    /// Every setting scored, the fused score's defaults first.
    pub scored: &'a [Scored],
    /// Each family's front, the fused score's first.
    pub fronts: &'a [Front],
    /// The recommended setting (an index into `scored`).
    pub chosen: usize,
    /// The load profiles in words, in the runs' order.
    pub profiles: &'a [String],
    /// Lines saying how the search ran and what it found, written at the top of every file.
    pub header: String,
    /// The HPA's replica bounds, for the manifest.
    pub replicas: (i32, i32),
    /// The recommended setting's run on the first profile, for the report.
    pub rows: Vec<Row>,
    /// Its latency and duty targets, for the report's panels.
    pub targets: (f64, f64),
}

/// The files written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The adapter's metrics file.
    pub metrics: PathBuf,
    /// The HPA manifest.
    pub hpa: PathBuf,
    /// Every run.
    pub runs: PathBuf,
    /// The report.
    pub html: PathBuf,
}

/// Why the files cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or the directory cannot be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The recommendation is not a fused setting.
    #[error("the recommended setting is not a fused-score setting")]
    NotFused,
    /// The front chart cannot be drawn.
    #[error("cannot draw the fronts: {0}")]
    Chart(String),
}

/// Writes `recommended-metrics.yaml`, `recommended-hpa.yaml`, `runs.csv` and `report.html`
/// (with `report.csv`) into `dir`, creating it.
pub fn write(dir: &Path, search: &Search) -> Result<Written, Error> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| Error::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let best = &search.scored[search.chosen];
    let metrics = dir.join("recommended-metrics.yaml");
    let file = best
        .setting
        .metrics_file(&search.header)
        .ok_or(Error::NotFused)?;
    std::fs::write(&metrics, file).map_err(io(&metrics))?;
    let hpa = dir.join("recommended-hpa.yaml");
    let (min, max) = search.replicas;
    std::fs::write(&hpa, best.setting.hpa_manifest(&search.header, min, max)).map_err(io(&hpa))?;
    let runs = dir.join("runs.csv");
    std::fs::write(&runs, runs_csv(search)).map_err(io(&runs))?;

    let report = Report {
        title: "framescale tune".into(),
        notes: search
            .header
            .lines()
            .map(str::to_owned)
            .chain([
                format!("recommended: {}", best.setting.describe()),
                "every run (each setting on each profile) is in runs.csv".into(),
                format!("below: the recommended setting on {}", search.profiles[0]),
            ])
            .collect(),
        figures: vec![("Each policy's front".into(), fronts_svg(search)?)],
        frame_target_ms: search.targets.0,
        gpu_target_pct: search.targets.1,
        rows: search.rows.clone(),
    };
    let (_, html) = report.write(dir).map_err(io(dir))?;
    Ok(Written {
        metrics,
        hpa,
        runs,
        html,
    })
}

/// One line per setting and profile, then one per setting over every profile (`profile` =
/// `all`): what SREs and CI read.
#[must_use]
pub fn runs_csv(search: &Search) -> String {
    let mut out = String::from(
        "policy,setting,profile,frames,late,rejected,bad_frames_pct,slo_minutes,replica_hours,rescales,flaps_per_10_min,recovery_s,on_front,recommended\n",
    );
    let on_front = |i: usize| search.fronts.iter().any(|f| f.points.contains(&i));
    let quote = |text: &str| format!("\"{}\"", text.replace('"', "\"\""));
    for (i, s) in search.scored.iter().enumerate() {
        let lead = format!(
            "{},{}",
            quote(s.setting.policy.family()),
            quote(&s.setting.describe())
        );
        let tail = format!("{},{}", on_front(i), i == search.chosen);
        for (run, profile) in s.runs.iter().zip(search.profiles) {
            let _ = writeln!(
                out,
                "{lead},{},{},{},{},{:.4},{},{:.4},{},{:.3},{},{tail}",
                quote(profile),
                run.frames,
                run.late,
                run.rejected,
                compare::bad_pct(run.late, run.rejected, run.frames),
                run.slo_minutes,
                run.replica_hours,
                run.scale_events,
                run.flaps_per_10_min,
                run.recovery_s
                    .map(|r| format!("{r:.0}"))
                    .unwrap_or_default(),
            );
        }
        let _ = writeln!(
            out,
            "{lead},all,{},{},{},{:.4},{},{:.4},,{:.3},,{tail}",
            s.frames,
            s.late,
            s.rejected,
            s.bad_pct(),
            s.slo_minutes,
            s.replica_hours,
            s.flaps_per_10_min,
        );
    }
    out
}

/// Every setting, each family's front and the two settings marked.
fn fronts_svg(search: &Search) -> Result<String, Error> {
    let point = |s: &Scored| (s.replica_hours, s.bad_pct());
    let points: Vec<(f64, f64)> = search.scored.iter().map(point).collect();
    let fronts: Vec<(&str, Vec<(f64, f64)>)> = search
        .fronts
        .iter()
        .map(|f| (f.family, f.points.iter().map(|&i| points[i]).collect()))
        .collect();
    report::fronts(
        "Bad frames against replica-hours, every setting on every profile",
        &points,
        &fronts,
        &[
            ("the defaults", points[0]),
            ("recommended", points[search.chosen]),
        ],
        "replica-hours (summed over the profiles)",
        "bad frames (late or refused), %",
    )
    .map_err(Error::Chart)
}
