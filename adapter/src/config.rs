//! The adapter's metrics file: which series feed each metric, and the score's settings.
//!
//! YAML (or JSON), every key optional, defaults from ARCHITECTURE.md contracts 2 and 3:
//!
//! ```yaml
//! metrics:
//!   latency:                     # P95 frame latency per pod (queue + render), in milliseconds;
//!     name: render_frame_latency_ms  # the score's frame term
//!     series: framescale_frame_latency_seconds{quantile="0.95"}
//!     scale: 1000
//!   frame:                       # P95 render time per pod, in milliseconds
//!     name: render_frame_duration_ms
//!     series: framescale_frame_duration_seconds{quantile="0.95"}
//!     scale: 1000                # seconds → milliseconds
//!     aggregate: max             # several containers per pod: the worst
//!     window_series: framescale_exporter_window_seconds  # where the window comes from
//!   gpu:                         # device duty per pod, in percent
//!     name: nvidia_gpu_duty_cycle
//!     series: framescale_gpu_duty_cycle_ratio
//!     scale: 100                 # ratio → percent (DCGM_FI_DEV_GPU_UTIL is already percent: 1)
//!     aggregate: max
//!     window_series: framescale_exporter_device_poll_interval_seconds
//!     # window: 1s               # or say it: DCGM series say nothing of their window
//!   score:
//!     name: render_scaling_score
//! score:
//!   frame_target_ms: 100           # the latency P95 users accept
//!   gpu_target_pct: 65
//!   frame_weight: 0.4
//!   gpu_weight: 0.6
//!   holds: { frame_bound: 30s, gpu_bound: 15s, both: 10s }
//!   # Prometheus backend: the longest a series may go without a sample inside a hold (about
//!   # 1.5 × its scrape interval); a longer gap, or an end older than this, breaks the hold.
//!   # holds: { max_gap: 20s }
//!   boost: 1.5
//!   cap: 10
//!   partial: score_on_present    # or leave_out
//! max_age: 45s                   # older values are missing
//! ```
//!
//! The window a value covers (the API's `windowSeconds`) is `window` when the file gives it,
//! else the value of the `window_series` gauge of the exporter that served the pod (joined on
//! `instance` with the Prometheus backend), else unknown — and then left out, never guessed.

use std::path::Path;
use std::time::Duration;

use framescale_core::metrics::{self, custom};
use framescale_core::score::{self, PartialPolicy, ScoreConfig};
use serde::Deserialize;

use crate::series::{self, SeriesSelector};

/// How several series of one pod (containers, devices) become one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// The largest (the default: the worst container decides).
    #[default]
    Max,
    /// The mean.
    Avg,
    /// The sum.
    Sum,
}

impl Aggregate {
    /// Folds values; `None` when there are none.
    #[must_use]
    pub fn apply(self, values: &[f64]) -> Option<f64> {
        if values.is_empty() {
            return None;
        }
        Some(match self {
            Aggregate::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Aggregate::Sum => values.iter().sum(),
            Aggregate::Avg => values.iter().sum::<f64>() / values.len() as f64,
        })
    }
}

/// One measured signal served as a metric.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalMetric {
    /// Name in the custom metrics API.
    pub name: String,
    /// The series it is read from.
    pub series: SeriesSelector,
    /// Factor from the series' unit to the metric's.
    pub scale: f64,
    /// Label carrying the pod's namespace.
    pub namespace_label: String,
    /// Label carrying the pod's name.
    pub pod_label: String,
    /// How several series of one pod combine.
    pub aggregate: Aggregate,
    /// Where the window of a value comes from.
    pub window: WindowSource,
}

/// Where the window a value covers is read.
#[derive(Debug, Clone, PartialEq)]
pub enum WindowSource {
    /// Stated in the metrics file.
    Fixed(Duration),
    /// A gauge (in seconds) that each exporter serves about itself.
    Series(SeriesSelector),
}

/// Everything the adapter serves, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsConfig {
    /// The P95 frame latency (queue + render), milliseconds: the score's frame term.
    pub latency: SignalMetric,
    /// The P95 render time, milliseconds.
    pub frame: SignalMetric,
    /// The device duty, percent.
    pub gpu: SignalMetric,
    /// Name of the fused score.
    pub score_name: String,
    /// The score's settings.
    pub score: ScoreConfig,
    /// Values older than this are missing.
    pub max_age: Duration,
    /// Prometheus backend: the longest gap between a series' samples (and the oldest its last
    /// sample may be) for a hold to go on.
    pub hold_max_gap: Duration,
}

/// Why the metrics file is not usable.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Unreadable {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file's contents are not valid.
    #[error("{path}: {source}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        source: ParseError,
    },
}

/// What is wrong with the text of a metrics file; each message names the key to fix.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not YAML of the expected shape: a syntax error, an unknown key, a bad value.
    #[error(transparent)]
    Shape(#[from] serde_yaml_ng::Error),
    /// The score's settings do not hold together.
    #[error("score: {0}")]
    Score(#[from] score::ConfigError),
    /// A series selector does not parse.
    #[error("metrics.{key}.{field}: {source}")]
    Series {
        /// `latency`, `frame` or `gpu`.
        key: &'static str,
        /// `series` or `window_series`.
        field: &'static str,
        /// Why.
        source: series::Error,
    },
    /// A scale is zero, negative or not finite.
    #[error("metrics.{0}.scale must be a finite number above 0")]
    Scale(&'static str),
    /// A window is zero.
    #[error("metrics.{0}.window must be above 0")]
    Window(&'static str),
    /// A metric name cannot be served.
    #[error("metric name {0:?} must be non-empty and without '/'")]
    Name(String),
    /// Two metrics share a name.
    #[error("the four metric names must differ")]
    DuplicateNames,
    /// `holds.max_gap` is zero.
    #[error("score.holds.max_gap must be above 0")]
    MaxGap,
    /// `max_age` is zero.
    #[error("max_age must be above 0")]
    MaxAge,
}

impl MetricsConfig {
    /// Reads and validates a metrics file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Unreadable {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|source| Error::Invalid {
            path: path.display().to_string(),
            source,
        })
    }

    /// Parses and validates the text of a metrics file.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let file: File = serde_yaml_ng::from_str(text)?;
        file.into_config()
    }

    /// The names served, for discovery.
    #[must_use]
    pub fn metric_names(&self) -> [&str; 4] {
        [
            &self.latency.name,
            &self.frame.name,
            &self.gpu.name,
            &self.score_name,
        ]
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        File::default()
            .into_config()
            .expect("the defaults are valid")
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    metrics: MetricsFile,
    #[serde(default)]
    score: ScoreFile,
    #[serde(default, with = "humantime_opt")]
    max_age: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsFile {
    #[serde(default)]
    latency: SignalFile,
    #[serde(default)]
    frame: SignalFile,
    #[serde(default)]
    gpu: SignalFile,
    #[serde(default)]
    score: NameFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalFile {
    name: Option<String>,
    series: Option<String>,
    scale: Option<f64>,
    namespace_label: Option<String>,
    pod_label: Option<String>,
    aggregate: Option<Aggregate>,
    #[serde(default, with = "humantime_opt")]
    window: Option<Duration>,
    window_series: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NameFile {
    name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScoreFile {
    frame_target_ms: Option<f64>,
    gpu_target_pct: Option<f64>,
    frame_weight: Option<f64>,
    gpu_weight: Option<f64>,
    #[serde(default)]
    holds: HoldsFile,
    boost: Option<f64>,
    cap: Option<f64>,
    partial: Option<PartialFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldsFile {
    #[serde(default, with = "humantime_opt")]
    frame_bound: Option<Duration>,
    #[serde(default, with = "humantime_opt")]
    gpu_bound: Option<Duration>,
    #[serde(default, with = "humantime_opt")]
    both: Option<Duration>,
    #[serde(default, with = "humantime_opt")]
    max_gap: Option<Duration>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum PartialFile {
    ScoreOnPresent,
    LeaveOut,
}

/// What the file leaves out of a signal.
struct SignalDefaults {
    key: &'static str,
    name: &'static str,
    series: String,
    scale: f64,
    window_series: &'static str,
}

impl SignalDefaults {
    /// The P95 of one of the exporter's summaries (in seconds), served in milliseconds over the
    /// exporter's window.
    fn p95(key: &'static str, name: &'static str, summary: &str) -> Self {
        SignalDefaults {
            key,
            name,
            series: format!(r#"{summary}{{quantile="0.95"}}"#),
            scale: 1000.0,
            window_series: metrics::EXPORTER_WINDOW_SECONDS,
        }
    }
}

impl File {
    fn into_config(self) -> Result<MetricsConfig, ParseError> {
        let defaults = ScoreConfig::default();
        let s = self.score;
        let hold_max_gap = s.holds.max_gap.unwrap_or(Duration::from_secs(20));
        if hold_max_gap.is_zero() {
            return Err(ParseError::MaxGap);
        }
        let score = ScoreConfig {
            frame_target_ms: s.frame_target_ms.unwrap_or(defaults.frame_target_ms),
            gpu_target_pct: s.gpu_target_pct.unwrap_or(defaults.gpu_target_pct),
            frame_weight: s.frame_weight.unwrap_or(defaults.frame_weight),
            gpu_weight: s.gpu_weight.unwrap_or(defaults.gpu_weight),
            frame_bound_hold: s.holds.frame_bound.unwrap_or(defaults.frame_bound_hold),
            gpu_bound_hold: s.holds.gpu_bound.unwrap_or(defaults.gpu_bound_hold),
            both_hold: s.holds.both.unwrap_or(defaults.both_hold),
            boost: s.boost.unwrap_or(defaults.boost),
            cap: s.cap.unwrap_or(defaults.cap),
            partial: match s.partial {
                None => defaults.partial,
                Some(PartialFile::ScoreOnPresent) => PartialPolicy::ScoreOnPresent,
                Some(PartialFile::LeaveOut) => PartialPolicy::LeaveOut,
            },
        };
        score.validate()?;
        let latency = self.metrics.latency.into_signal(&SignalDefaults::p95(
            "latency",
            custom::FRAME_LATENCY_MS,
            metrics::FRAME_LATENCY_SECONDS,
        ))?;
        let frame = self.metrics.frame.into_signal(&SignalDefaults::p95(
            "frame",
            custom::FRAME_DURATION_MS,
            metrics::FRAME_DURATION_SECONDS,
        ))?;
        let gpu = self.metrics.gpu.into_signal(&SignalDefaults {
            key: "gpu",
            name: custom::GPU_DUTY_CYCLE,
            series: metrics::GPU_DUTY_CYCLE_RATIO.to_owned(),
            scale: 100.0,
            window_series: metrics::EXPORTER_DEVICE_POLL_INTERVAL_SECONDS,
        })?;
        let score_name = self
            .metrics
            .score
            .name
            .unwrap_or_else(|| custom::SCALING_SCORE.into());
        let names = [&latency.name, &frame.name, &gpu.name, &score_name];
        for name in names {
            if name.is_empty() || name.contains('/') {
                return Err(ParseError::Name(name.clone()));
            }
        }
        let distinct: std::collections::BTreeSet<_> = names.iter().collect();
        if distinct.len() < names.len() {
            return Err(ParseError::DuplicateNames);
        }
        let max_age = self.max_age.unwrap_or(Duration::from_secs(45));
        if max_age.is_zero() {
            return Err(ParseError::MaxAge);
        }
        Ok(MetricsConfig {
            latency,
            frame,
            gpu,
            score_name,
            score,
            max_age,
            hold_max_gap,
        })
    }
}

impl SignalFile {
    fn into_signal(self, defaults: &SignalDefaults) -> Result<SignalMetric, ParseError> {
        let key = defaults.key;
        let selector = |field: &'static str, text: &str| {
            SeriesSelector::parse(text).map_err(|source| ParseError::Series { key, field, source })
        };
        let series = selector("series", self.series.as_deref().unwrap_or(&defaults.series))?;
        let scale = self.scale.unwrap_or(defaults.scale);
        if !(scale.is_finite() && scale > 0.0) {
            return Err(ParseError::Scale(key));
        }
        let window = match self.window {
            Some(window) if window.is_zero() => return Err(ParseError::Window(key)),
            Some(window) => WindowSource::Fixed(window),
            None => WindowSource::Series(selector(
                "window_series",
                self.window_series
                    .as_deref()
                    .unwrap_or(defaults.window_series),
            )?),
        };
        Ok(SignalMetric {
            name: self.name.unwrap_or_else(|| defaults.name.into()),
            series,
            scale,
            namespace_label: self
                .namespace_label
                .unwrap_or_else(|| metrics::NAMESPACE_LABEL.into()),
            pod_label: self.pod_label.unwrap_or_else(|| metrics::POD_LABEL.into()),
            aggregate: self.aggregate.unwrap_or_default(),
            window,
        })
    }
}

/// Optional durations written as `30s`, `1m30s`.
mod humantime_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(deserializer)?;
        text.map(|t| {
            humantime::parse_duration(&t)
                .map_err(|e| serde::de::Error::custom(format!("{t:?}: {e}")))
        })
        .transpose()
    }
}

#[cfg(test)]
#[allow(
    clippy::float_cmp,
    reason = "values read back from the file exactly as written"
)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_contracts() {
        let config = MetricsConfig::parse("{}").unwrap();
        assert_eq!(
            config.metric_names(),
            [
                "render_frame_latency_ms",
                "render_frame_duration_ms",
                "nvidia_gpu_duty_cycle",
                "render_scaling_score"
            ]
        );
        assert_eq!(config.score, ScoreConfig::default());
        assert_eq!(config.max_age, Duration::from_secs(45));
        assert_eq!(config.frame.scale, 1000.0);
        assert_eq!(config, MetricsConfig::default());
    }

    #[test]
    fn dcgm_and_tuned_settings() {
        let config = MetricsConfig::parse(
            "metrics:\n  gpu:\n    series: DCGM_FI_DEV_GPU_UTIL\n    scale: 1\n    namespace_label: exported_namespace\n    aggregate: avg\n    window: 1s\n\
             score:\n  frame_target_ms: 40\n  holds: { both: 5s }\n  partial: leave_out\nmax_age: 1m\n",
        )
        .unwrap();
        assert_eq!(config.gpu.series.name, "DCGM_FI_DEV_GPU_UTIL");
        assert_eq!(config.gpu.namespace_label, "exported_namespace");
        assert_eq!(config.gpu.aggregate, Aggregate::Avg);
        assert_eq!(
            config.gpu.window,
            WindowSource::Fixed(Duration::from_secs(1))
        );
        assert_eq!(
            config.frame.window,
            WindowSource::Series(SeriesSelector::parse(metrics::EXPORTER_WINDOW_SECONDS).unwrap()),
            "the frame window still comes from the exporters"
        );
        assert_eq!(config.score.frame_target_ms, 40.0);
        assert_eq!(config.score.both_hold, Duration::from_secs(5));
        assert_eq!(config.score.frame_bound_hold, Duration::ZERO, "the default");
        assert_eq!(config.score.partial, PartialPolicy::LeaveOut);
        assert_eq!(config.max_age, Duration::from_mins(1));
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let cases = [
            ("metrics: { frame: { nme: x } }", "unknown field `nme`"),
            ("score: { frame_weight: 0.5 }", "weights"),
            ("score: { holds: { both: soon } }", "soon"),
            (
                "metrics: { gpu: { series: 'x{a=~\"b\"}' } }",
                "metrics.gpu.series",
            ),
            ("metrics: { gpu: { scale: 0 } }", "metrics.gpu.scale"),
            (
                "metrics: { gpu: { name: render_scaling_score } }",
                "must differ",
            ),
            ("max_age: 0s", "max_age"),
            ("score: { holds: { max_gap: 0s } }", "max_gap"),
            ("metrics: { gpu: { window: 0s } }", "metrics.gpu.window"),
            (
                "metrics: { frame: { window_series: '{}' } }",
                "metrics.frame.window_series",
            ),
            ("- a list", "invalid type"),
        ];
        for (text, want) in cases {
            let err = MetricsConfig::parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn aggregates() {
        assert_eq!(Aggregate::Max.apply(&[1.0, 3.0, 2.0]), Some(3.0));
        assert_eq!(Aggregate::Avg.apply(&[1.0, 3.0]), Some(2.0));
        assert_eq!(Aggregate::Sum.apply(&[1.0, 3.0]), Some(4.0));
        assert_eq!(Aggregate::Max.apply(&[]), None);
    }
}
