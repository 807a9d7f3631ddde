//! The per-frame model against a real `framescale demo` run: the demo's report (`report.csv`)
//! read back, and the model's run on the demo's load compared with it second by second —
//! replicas, the pods' mean P95, and when each first scaled up.

use crate::report::Row;

/// One second of a demo's report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DemoSecond {
    /// Seconds since the start.
    pub t: f64,
    /// Replicas running.
    pub replicas: u32,
    /// The pods' mean P95, ms, when any had one.
    pub p95_ms: Option<f64>,
}

/// Why a file is not a demo report.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DemoReportError {
    /// The header is not the report's.
    #[error("not a demo report (its header is t_s,offered_rate,replicas,desired,p95_ms,…)")]
    NotAReport,
    /// A line does not hold a time and replicas.
    #[error("line {line} is not a report row: {text}")]
    BadLine {
        /// The line number.
        line: usize,
        /// The line.
        text: String,
    },
    /// Less than a minute.
    #[error("{0} rows; a demo of at least a minute is needed")]
    TooShort(usize),
}

/// Reads a demo's `report.csv`.
pub fn parse_demo_report(text: &str) -> Result<Vec<DemoSecond>, DemoReportError> {
    let mut lines = text.lines();
    if !lines
        .next()
        .is_some_and(|h| h.starts_with("t_s,offered_rate,replicas,desired,p95_ms"))
    {
        return Err(DemoReportError::NotAReport);
    }
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').collect();
        let parsed = (|| {
            Some(DemoSecond {
                t: cells.first()?.parse().ok()?,
                replicas: cells.get(2)?.parse().ok()?,
                p95_ms: cells.get(4)?.parse().ok(),
            })
        })();
        rows.push(parsed.ok_or_else(|| DemoReportError::BadLine {
            line: i + 2,
            text: line.to_owned(),
        })?);
    }
    if rows.len() < 60 {
        return Err(DemoReportError::TooShort(rows.len()));
    }
    Ok(rows)
}

/// How the model's run differs from the demo's.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// Mean |model − demo| replicas per second.
    pub replica_error: f64,
    /// Replica-seconds of the demo.
    pub demo_replica_seconds: f64,
    /// Replica-seconds of the model.
    pub model_replica_seconds: f64,
    /// The demo's mean P95, over the seconds both have one, ms.
    pub demo_p95_ms: f64,
    /// The model's, over the same seconds.
    pub model_p95_ms: f64,
    /// Mean |model − demo| P95, ms.
    pub p95_error_ms: f64,
    /// Seconds with a P95 in both.
    pub p95_seconds: usize,
    /// When the demo first scaled up, seconds.
    pub demo_first_up: Option<f64>,
    /// When the model did.
    pub model_first_up: Option<f64>,
}

/// Compares the model's `rows` with the demo's seconds (each model second against the demo's
/// nearest).
#[must_use]
pub fn compare(demo: &[DemoSecond], rows: &[Row]) -> Calibration {
    let nearest = |t: f64| {
        demo.iter()
            .min_by(|a, b| (a.t - t).abs().total_cmp(&(b.t - t).abs()))
    };
    let (mut replica_error, mut seconds) = (0.0, 0.0);
    let mut p95s = Vec::new();
    for row in rows {
        let Some(second) = nearest(row.t) else {
            continue;
        };
        replica_error += (f64::from(row.replicas) - f64::from(second.replicas)).abs();
        seconds += 1.0;
        if let (Some(model), Some(demo)) = (row.p95_ms, second.p95_ms) {
            p95s.push((model, demo));
        }
    }
    let mean = |values: &mut dyn Iterator<Item = f64>| {
        let (sum, count) = values.fold((0.0, 0.0), |(s, c), x| (s + x, c + 1.0));
        sum / f64::max(count, 1.0)
    };
    let first_up = |replicas: &[(f64, u32)]| {
        replicas
            .windows(2)
            .find(|pair| pair[1].1 > pair[0].1)
            .map(|pair| pair[1].0)
    };
    let end = demo.last().map_or(0.0, |s| s.t).floor();
    let demo_replicas: Vec<(f64, u32)> = demo.iter().map(|s| (s.t, s.replicas)).collect();
    let model_replicas: Vec<(f64, u32)> = rows.iter().map(|r| (r.t, r.replicas)).collect();
    Calibration {
        replica_error: replica_error / f64::max(seconds, 1.0),
        demo_replica_seconds: mean(&mut demo.iter().map(|s| f64::from(s.replicas))) * end,
        model_replica_seconds: rows.iter().map(|r| f64::from(r.replicas)).sum(),
        demo_p95_ms: mean(&mut p95s.iter().map(|p| p.1)),
        model_p95_ms: mean(&mut p95s.iter().map(|p| p.0)),
        p95_error_ms: mean(&mut p95s.iter().map(|p| (p.0 - p.1).abs())),
        p95_seconds: p95s.len(),
        demo_first_up: first_up(&demo_replicas),
        model_first_up: first_up(&model_replicas),
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;

    fn report(replicas: impl Fn(u32) -> u32) -> String {
        let mut text =
            String::from("t_s,offered_rate,replicas,desired,p95_ms,duty_pct,score,decision\n");
        for t in 0..90 {
            let _ = writeln!(
                text,
                "{t}.000,10.000,{},,20.000,50.000,0.800,\"\"",
                replicas(t)
            );
        }
        text
    }

    #[test]
    fn a_report_reads_back_and_bad_ones_are_named() {
        let rows = parse_demo_report(&report(|t| if t < 40 { 1 } else { 2 })).unwrap();
        assert_eq!(rows.len(), 90);
        assert_eq!(
            rows[3],
            DemoSecond {
                t: 3.0,
                replicas: 1,
                p95_ms: Some(20.0)
            }
        );
        assert_eq!(
            parse_demo_report("a,b\n1,2\n"),
            Err(DemoReportError::NotAReport)
        );
        let short = report(|_| 1)
            .lines()
            .take(10)
            .collect::<Vec<_>>()
            .join("\n")
            + "\n";
        assert_eq!(parse_demo_report(&short), Err(DemoReportError::TooShort(9)));
        let bad = report(|_| 1).replace("5.000,10.000,1", "5.000,10.000,x");
        assert!(matches!(
            parse_demo_report(&bad),
            Err(DemoReportError::BadLine { line: 7, .. })
        ));
    }

    #[test]
    fn the_difference_is_measured_second_by_second() {
        let demo = parse_demo_report(&report(|t| if t < 40 { 1 } else { 2 })).unwrap();
        let rows: Vec<Row> = (1..=89)
            .map(|t| Row {
                t: f64::from(t),
                replicas: if t < 50 { 1 } else { 2 },
                p95_ms: Some(25.0),
                ..Row::default()
            })
            .collect();
        let c = compare(&demo, &rows);
        assert_eq!(
            (c.demo_first_up, c.model_first_up),
            (Some(40.0), Some(50.0))
        );
        assert!((c.replica_error - 10.0 / 89.0).abs() < 1e-9, "{c:?}");
        assert!((c.p95_error_ms - 5.0).abs() < 1e-9);
        assert_eq!(c.p95_seconds, 89);
    }
}
