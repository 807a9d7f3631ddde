//! The fused render score (ARCHITECTURE.md, contract 3).
//!
//! Per pod, `f = latency_p95_ms / frame_target_ms` (the latency users accept: queue plus
//! render, a refused frame later than any target) and `g = duty_pct / gpu_target_pct`;
//! `score = w_f·max(f, g) + w_g·g`, where 1.0 means "at target". While frames are on time
//! relative to the device (`f ≤ g`) the score is the duty ratio itself, so a steady load settles
//! with the device at its target; frames later than the device is busy (`f > g`) pull the score
//! up by `w_f·(f − g)`. The score is a ratio, not clamped to 0..1, so the HPA's
//! `ceil(replicas × avg(score))` scales in proportion to the overload; a cap bounds outliers. A
//! regime — frame-bound (`f > 1`, `g ≤ 1`), GPU-bound (`f ≤ 1`, `g > 1`) or both — must have
//! held for its hold time before the score may exceed 1.0; until then it is held at 1.0. When
//! both are over (and held), the score is multiplied by the boost.
//!
//! Missing data is never zero: a pod with neither signal has no score; a pod with one signal is
//! scored on that one alone (its ratio), or left out, as [`PartialPolicy`] says.

use std::time::Duration;

/// What to do with a pod that has only one of the two signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PartialPolicy {
    /// Score it on the signal it has (the default).
    #[default]
    ScoreOnPresent,
    /// Leave it out of the answer.
    LeaveOut,
}

/// Every setting of the score, with the defaults of contract 3.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreConfig {
    /// P95 frame latency (queue + render) users accept, in milliseconds: the frame ratio is 1
    /// there (default 100).
    pub frame_target_ms: f64,
    /// GPU duty that counts as "at target", in percent (default 65).
    pub gpu_target_pct: f64,
    /// Weight of the frame ratio (default 0.4); the weights sum to 1.
    pub frame_weight: f64,
    /// Weight of the GPU ratio (default 0.6).
    pub gpu_weight: f64,
    /// How long a frame-bound regime must hold before the score may exceed 1 (default 0: the
    /// exporter's 60 s window already smooths the latency, and `framescale tune` measured holds
    /// of 30/15/10 s adding bad frames and replica-hours both).
    pub frame_bound_hold: Duration,
    /// How long a GPU-bound regime must hold (default 0).
    pub gpu_bound_hold: Duration,
    /// How long both-over must hold (default 0).
    pub both_hold: Duration,
    /// Factor applied when both are over and held (default 1.5).
    pub boost: f64,
    /// Largest score served (default 10).
    pub cap: f64,
    /// Pods with one signal.
    pub partial: PartialPolicy,
}

impl Default for ScoreConfig {
    fn default() -> Self {
        ScoreConfig {
            frame_target_ms: 100.0,
            gpu_target_pct: 65.0,
            frame_weight: 0.4,
            gpu_weight: 0.6,
            frame_bound_hold: Duration::ZERO,
            gpu_bound_hold: Duration::ZERO,
            both_hold: Duration::ZERO,
            boost: 1.5,
            cap: 10.0,
            partial: PartialPolicy::ScoreOnPresent,
        }
    }
}

/// Why a [`ScoreConfig`] is not usable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// A target is not a finite number above 0.
    #[error("{0} must be a finite number above 0")]
    NotPositive(&'static str),
    /// A weight is negative, or the weights do not sum to 1.
    #[error("weights must be ≥ 0 and sum to 1, got frame {frame} + gpu {gpu}")]
    Weights {
        /// Frame weight.
        frame: f64,
        /// GPU weight.
        gpu: f64,
    },
    /// The boost is below 1.
    #[error("boost must be a finite number ≥ 1, got {0}")]
    Boost(f64),
    /// The cap is below 1.
    #[error("cap must be a finite number ≥ 1, got {0}")]
    Cap(f64),
}

impl ScoreConfig {
    /// Checks every setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, value) in [
            ("frame target", self.frame_target_ms),
            ("gpu target", self.gpu_target_pct),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(ConfigError::NotPositive(name));
            }
        }
        let (frame, gpu) = (self.frame_weight, self.gpu_weight);
        if !(frame >= 0.0 && gpu >= 0.0 && ((frame + gpu) - 1.0).abs() < 1e-9) {
            return Err(ConfigError::Weights { frame, gpu });
        }
        if !(self.boost.is_finite() && self.boost >= 1.0) {
            return Err(ConfigError::Boost(self.boost));
        }
        if !(self.cap.is_finite() && self.cap >= 1.0) {
            return Err(ConfigError::Cap(self.cap));
        }
        Ok(())
    }

    /// The settings in words, for reports and the terminal.
    #[must_use]
    pub fn describe(&self) -> String {
        let seconds = |d: Duration| format!("{} s", d.as_secs_f64());
        let partial = match self.partial {
            PartialPolicy::ScoreOnPresent => "scored on the signal it has",
            PartialPolicy::LeaveOut => "left out",
        };
        format!(
            "score = {} × max(latency P95 / {} ms, duty / {} %) + {} × duty / {} %; above 1 only \
             once the regime has held (frames late {}, device busy {}, both {} — then × {}); at \
             most {}; a pod with one signal is {partial}",
            self.frame_weight,
            self.frame_target_ms,
            self.gpu_target_pct,
            self.gpu_weight,
            self.gpu_target_pct,
            seconds(self.frame_bound_hold),
            seconds(self.gpu_bound_hold),
            seconds(self.both_hold),
            self.boost,
            self.cap,
        )
    }

    /// The frame ratio `f` of a latency P95 in milliseconds.
    #[must_use]
    pub fn frame_ratio(&self, p95_ms: f64) -> f64 {
        p95_ms / self.frame_target_ms
    }

    /// The GPU ratio `g` of a duty in percent.
    #[must_use]
    pub fn gpu_ratio(&self, duty_pct: f64) -> f64 {
        duty_pct / self.gpu_target_pct
    }
}

/// Which signal is over its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Regime {
    /// Neither is over.
    None,
    /// Frames are slow, the GPU is not busy past target.
    FrameBound,
    /// The GPU is busy past target, frames are on time.
    GpuBound,
    /// Both are over.
    Both,
}

impl Regime {
    /// A short name for logs and reports.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Regime::None => "none",
            Regime::FrameBound => "frame-bound",
            Regime::GpuBound => "gpu-bound",
            Regime::Both => "both",
        }
    }
}

/// The two measured signals of one pod; `None` is missing (or stale), never 0.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Signals {
    /// P95 frame latency (queue + render; render time where the pod reports no queue time)
    /// over the window, in milliseconds.
    pub p95_ms: Option<f64>,
    /// Device duty over the window, in percent.
    pub duty_pct: Option<f64>,
}

/// Whether each over-target condition has held for its hold time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Holds {
    /// `f > 1` throughout the frame-bound hold time.
    pub frame_over: bool,
    /// `g > 1` throughout the GPU-bound hold time.
    pub gpu_over: bool,
    /// `f > 1` and `g > 1` throughout the both hold time.
    pub both_over: bool,
}

/// A pod's score and how it came about.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// The value served; 1.0 is at target.
    pub value: f64,
    /// The regime of the current signals.
    pub regime: Regime,
    /// The score was held at 1.0 because the regime has not held long enough.
    pub held_back: bool,
}

/// The fused score of one pod, or `None` when it has no usable signal.
#[must_use]
pub fn score(config: &ScoreConfig, signals: Signals, holds: Holds) -> Option<Score> {
    let f = signals
        .p95_ms
        .filter(|v| v.is_finite())
        .map(|v| config.frame_ratio(v));
    let g = signals
        .duty_pct
        .filter(|v| v.is_finite())
        .map(|v| config.gpu_ratio(v));
    let (raw, regime) = match (f, g) {
        (Some(f), Some(g)) => (
            config.frame_weight * f.max(g) + config.gpu_weight * g,
            regime_of(f > 1.0, g > 1.0),
        ),
        (Some(_), None) | (None, Some(_)) if config.partial == PartialPolicy::LeaveOut => {
            return None;
        }
        (Some(f), None) => (f, regime_of(f > 1.0, false)),
        (None, Some(g)) => (g, regime_of(false, g > 1.0)),
        (None, None) => return None,
    };
    let held = match regime {
        Regime::None => true,
        Regime::FrameBound => holds.frame_over,
        Regime::GpuBound => holds.gpu_over,
        Regime::Both => holds.both_over,
    };
    let boosted = if regime == Regime::Both && held {
        raw * config.boost
    } else {
        raw
    };
    let (value, held_back) = if !held && boosted > 1.0 {
        (1.0, true)
    } else {
        (boosted, false)
    };
    Some(Score {
        value: value.clamp(0.0, config.cap),
        regime,
        held_back,
    })
}

fn regime_of(frame_over: bool, gpu_over: bool) -> Regime {
    match (frame_over, gpu_over) {
        (false, false) => Regime::None,
        (true, false) => Regime::FrameBound,
        (false, true) => Regime::GpuBound,
        (true, true) => Regime::Both,
    }
}

/// Tracks, from successive observations, since when each over-target condition has held, to
/// derive [`Holds`] where no history store (Prometheus) is at hand.
///
/// A hold is made of observations only: it lasts from the first to the latest of an unbroken
/// run of over-target observations. Time passing without an observation — a dead exporter, a
/// failed scrape — neither extends nor completes it: the holds are those as of the latest
/// observation, and [`HoldTracker::interrupt`] (a failed scrape) starts every hold over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HoldTracker {
    frame_over_since: Option<u64>,
    gpu_over_since: Option<u64>,
    latest: Option<u64>,
}

impl HoldTracker {
    /// Records the signals observed at `at_millis` (ms since the epoch). A missing signal ends
    /// its condition: a hold needs evidence all the way.
    pub fn observe(&mut self, config: &ScoreConfig, signals: Signals, at_millis: u64) {
        let frame_over = signals.p95_ms.is_some_and(|v| config.frame_ratio(v) > 1.0);
        let gpu_over = signals.duty_pct.is_some_and(|v| config.gpu_ratio(v) > 1.0);
        self.frame_over_since = frame_over.then(|| self.frame_over_since.unwrap_or(at_millis));
        self.gpu_over_since = gpu_over.then(|| self.gpu_over_since.unwrap_or(at_millis));
        self.latest = Some(self.latest.map_or(at_millis, |l| l.max(at_millis)));
    }

    /// An observation was due and none came (the scrape failed): every hold starts over at the
    /// next observation.
    pub fn interrupt(&mut self) {
        self.frame_over_since = None;
        self.gpu_over_since = None;
    }

    /// The holds as of the latest observation.
    #[must_use]
    pub fn holds(&self, config: &ScoreConfig) -> Holds {
        let latest = self.latest.unwrap_or(0);
        let held_for = |since: Option<u64>, hold: Duration| {
            since.is_some_and(|since| latest.saturating_sub(since) >= hold.as_millis() as u64)
        };
        let both_since = self
            .frame_over_since
            .zip(self.gpu_over_since)
            .map(|(f, g)| f.max(g));
        Holds {
            frame_over: held_for(self.frame_over_since, config.frame_bound_hold),
            gpu_over: held_for(self.gpu_over_since, config.gpu_bound_hold),
            both_over: held_for(both_since, config.both_hold),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_settings_read_in_words() {
        assert_eq!(
            ScoreConfig::default().describe(),
            "score = 0.4 × max(latency P95 / 100 ms, duty / 65 %) + 0.6 × duty / 65 %; above 1 \
             only once the regime has held (frames late 0 s, device busy 0 s, both 0 s — then × \
             1.5); at most 10; a pod with one signal is scored on the signal it has"
        );
    }

    fn signals(p95_ms: Option<f64>, duty_pct: Option<f64>) -> Signals {
        Signals { p95_ms, duty_pct }
    }

    const ALL_HELD: Holds = Holds {
        frame_over: true,
        gpu_over: true,
        both_over: true,
    };
    const NONE_HELD: Holds = Holds {
        frame_over: false,
        gpu_over: false,
        both_over: false,
    };

    #[test]
    #[allow(clippy::too_many_lines, reason = "one table of cases")]
    fn score_table() {
        let config = ScoreConfig {
            frame_target_ms: 32.0,
            ..ScoreConfig::default()
        };
        // (p95 ms, duty %, holds, want value, want regime, want held back)
        let cases = [
            // At target exactly: 0.4·1 + 0.6·1.
            (
                Some(32.0),
                Some(65.0),
                NONE_HELD,
                Some(1.0),
                Regime::None,
                false,
            ),
            // Under target: the score says how far under.
            (
                Some(16.0),
                Some(32.5),
                NONE_HELD,
                Some(0.5),
                Regime::None,
                false,
            ),
            // Frames on time and the device at target: the frame term does not dilute the
            // score, which is 1 at the duty target whatever the latency below it.
            (
                Some(8.0),
                Some(65.0),
                NONE_HELD,
                Some(1.0),
                Regime::None,
                false,
            ),
            // Frames later than the device is busy pull the score up: 0.4·0.9 + 0.6·0.5.
            (
                Some(28.8),
                Some(32.5),
                NONE_HELD,
                Some(0.66),
                Regime::None,
                false,
            ),
            // Frame-bound, held: 0.4·2 + 0.6·0.5 = 1.1.
            (
                Some(64.0),
                Some(32.5),
                ALL_HELD,
                Some(1.1),
                Regime::FrameBound,
                false,
            ),
            // Frame-bound, not held yet: held at 1.0.
            (
                Some(64.0),
                Some(32.5),
                NONE_HELD,
                Some(1.0),
                Regime::FrameBound,
                true,
            ),
            // Frame-bound but weighted below 1: nothing to hold back.
            (
                Some(40.0),
                Some(13.0),
                NONE_HELD,
                Some(0.62),
                Regime::FrameBound,
                false,
            ),
            // GPU-bound, held: frames on time relative to the device (f ≤ g), so the score is
            // the duty ratio: 0.4·1.4 + 0.6·1.4 = 1.4.
            (
                Some(16.0),
                Some(91.0),
                ALL_HELD,
                Some(1.4),
                Regime::GpuBound,
                false,
            ),
            (
                Some(16.0),
                Some(91.0),
                Holds {
                    gpu_over: false,
                    ..ALL_HELD
                },
                Some(1.0),
                Regime::GpuBound,
                true,
            ),
            // Both over and held: (0.4·2 + 0.6·1.4) · 1.5 = 2.46.
            (
                Some(64.0),
                Some(91.0),
                ALL_HELD,
                Some(2.46),
                Regime::Both,
                false,
            ),
            // Both over, the both-hold not elapsed (even if single holds did): held at 1.0.
            (
                Some(64.0),
                Some(91.0),
                Holds {
                    both_over: false,
                    ..ALL_HELD
                },
                Some(1.0),
                Regime::Both,
                true,
            ),
            // The cap bounds outliers: (0.4·100 + 0.6·10) · 1.5 = 69 → 10.
            (
                Some(3200.0),
                Some(650.0),
                ALL_HELD,
                Some(10.0),
                Regime::Both,
                false,
            ),
            // One signal: scored on it alone.
            (
                Some(48.0),
                None,
                ALL_HELD,
                Some(1.5),
                Regime::FrameBound,
                false,
            ),
            (None, Some(32.5), NONE_HELD, Some(0.5), Regime::None, false),
            (
                None,
                Some(130.0),
                NONE_HELD,
                Some(1.0),
                Regime::GpuBound,
                true,
            ),
            // No signal, or only NaN: no score — never 0.
            (None, None, ALL_HELD, None, Regime::None, false),
            (Some(f64::NAN), None, ALL_HELD, None, Regime::None, false),
        ];
        for (p95, duty, holds, want, regime, held_back) in cases {
            let got = score(&config, signals(p95, duty), holds);
            match (got, want) {
                (None, None) => {}
                (Some(got), Some(want)) => {
                    assert!(
                        (got.value - want).abs() < 1e-9,
                        "{p95:?} {duty:?}: {} != {want}",
                        got.value
                    );
                    assert_eq!(
                        (got.regime, got.held_back),
                        (regime, held_back),
                        "{p95:?} {duty:?}"
                    );
                }
                _ => panic!("{p95:?} {duty:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn partial_data_can_be_left_out() {
        let config = ScoreConfig {
            partial: PartialPolicy::LeaveOut,
            ..ScoreConfig::default()
        };
        assert_eq!(score(&config, signals(Some(48.0), None), ALL_HELD), None);
        assert!(score(&config, signals(Some(48.0), Some(10.0)), ALL_HELD).is_some());
    }

    /// The settings with the original design's holds (30/15/10 s).
    fn held() -> ScoreConfig {
        ScoreConfig {
            frame_bound_hold: Duration::from_secs(30),
            gpu_bound_hold: Duration::from_secs(15),
            both_hold: Duration::from_secs(10),
            ..ScoreConfig::default()
        }
    }

    #[test]
    fn zero_holds_are_met_by_one_observation() {
        let config = ScoreConfig::default();
        let mut tracker = HoldTracker::default();
        tracker.observe(&config, signals(Some(500.0), Some(91.0)), 1_000);
        assert_eq!(tracker.holds(&config), ALL_HELD);
        tracker.observe(&config, signals(None, Some(10.0)), 2_000);
        assert_eq!(
            tracker.holds(&config),
            NONE_HELD,
            "but still need the observation"
        );
    }

    #[test]
    fn holds_follow_the_observations() {
        let config = ScoreConfig {
            frame_target_ms: 32.0,
            ..held()
        };
        let mut tracker = HoldTracker::default();
        let over_both = signals(Some(64.0), Some(91.0));
        let at = |tracker: &mut HoldTracker, millis: u64, s: Signals| {
            tracker.observe(&config, s, millis);
            tracker.holds(&config)
        };
        assert_eq!(at(&mut tracker, 0, over_both), NONE_HELD);
        assert_eq!(at(&mut tracker, 9_999, over_both), NONE_HELD);
        assert_eq!(
            at(&mut tracker, 10_000, over_both),
            Holds {
                both_over: true,
                ..NONE_HELD
            }
        );
        assert_eq!(
            at(&mut tracker, 15_000, over_both),
            Holds {
                gpu_over: true,
                both_over: true,
                frame_over: false
            }
        );
        assert_eq!(at(&mut tracker, 30_000, over_both), ALL_HELD);
        // The GPU drops under target: its hold restarts from scratch.
        at(&mut tracker, 31_000, signals(Some(64.0), Some(10.0)));
        at(&mut tracker, 32_000, over_both);
        assert_eq!(
            at(&mut tracker, 41_999, over_both),
            Holds {
                frame_over: true,
                ..NONE_HELD
            }
        );
        assert_eq!(at(&mut tracker, 47_000, over_both), ALL_HELD);
        // A missing signal ends its hold too.
        assert_eq!(
            at(&mut tracker, 48_000, signals(None, Some(91.0))),
            Holds {
                gpu_over: true,
                ..NONE_HELD
            }
        );
    }

    #[test]
    fn time_without_observations_completes_no_hold() {
        let config = ScoreConfig {
            frame_target_ms: 32.0,
            ..held()
        };
        let over_frame = signals(Some(40.0), None);
        let mut tracker = HoldTracker::default();
        for millis in (0..=5_000).step_by(1_000) {
            tracker.observe(&config, over_frame, millis);
        }
        // The exporter dies at 5 s: whenever the holds are read, they are those of 5 s.
        assert_eq!(tracker.holds(&config), NONE_HELD);
        // Observations resume after failed scrapes: the hold starts over from them.
        tracker.interrupt();
        tracker.observe(&config, over_frame, 31_000);
        assert_eq!(tracker.holds(&config), NONE_HELD);
        tracker.observe(&config, over_frame, 60_999);
        assert_eq!(tracker.holds(&config), NONE_HELD);
        tracker.observe(&config, over_frame, 61_000);
        assert!(tracker.holds(&config).frame_over);
        // An observation older than the latest (a slow scrape) does not move time back.
        tracker.observe(&config, over_frame, 50_000);
        assert!(tracker.holds(&config).frame_over);
    }

    #[test]
    fn config_validation() {
        assert_eq!(ScoreConfig::default().validate(), Ok(()));
        let bad = [
            ScoreConfig {
                frame_target_ms: 0.0,
                ..ScoreConfig::default()
            },
            ScoreConfig {
                gpu_target_pct: f64::NAN,
                ..ScoreConfig::default()
            },
            ScoreConfig {
                frame_weight: 0.5,
                ..ScoreConfig::default()
            },
            ScoreConfig {
                frame_weight: -0.4,
                gpu_weight: 1.4,
                ..ScoreConfig::default()
            },
            ScoreConfig {
                boost: 0.5,
                ..ScoreConfig::default()
            },
            ScoreConfig {
                cap: 0.9,
                ..ScoreConfig::default()
            },
        ];
        for config in bad {
            assert!(config.validate().is_err(), "{config:?}");
        }
    }
}
