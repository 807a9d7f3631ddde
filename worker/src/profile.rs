//! Load profiles — the offered request rate over time — and the open-loop arrival times they
//! give: a non-homogeneous Poisson process drawn by thinning, reproducible from a seed.
//!
//! Forms (`--profile`): `constant:R`, `step:LOW,HIGH,AT[,UNTIL]` (HIGH from AT until UNTIL,
//! LOW otherwise), `ramp:FROM,TO` (linear over the run), `sine:MEAN,AMPLITUDE,PERIOD`, and
//! `csv:FILE` with lines `seconds,rate[,…]` (a header line is allowed; further cells are ignored,
//! so the demo's and `framescale record`'s CSVs are profiles too), linear between points and
//! held after the last. Rates are requests per second; times take units (`30s`, `2m`) or bare
//! seconds.

use std::path::PathBuf;
use std::time::Duration;

use crate::random::SplitMix;

/// Why a `--profile` value is not usable; each message quotes the value.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Not one of the forms.
    #[error(
        "profile {0:?}: use constant:R, step:LOW,HIGH,AT[,UNTIL], ramp:FROM,TO, sine:MEAN,AMPLITUDE,PERIOD or csv:FILE"
    )]
    UnknownForm(String),
    /// A form with another number of values than it takes.
    #[error("profile {profile:?}: {form} takes {} values", counts.iter().map(ToString::to_string).collect::<Vec<_>>().join(" or "))]
    ValueCount {
        /// The value.
        profile: String,
        /// The form.
        form: String,
        /// The numbers of values it takes.
        counts: &'static [usize],
    },
    /// A value is not a number ≥ 0.
    #[error("profile {profile:?}: {source}")]
    BadValue {
        /// The value.
        profile: String,
        /// Why.
        source: NumberError,
    },
    /// A sine's period is 0.
    #[error("profile {0:?}: the period must be positive")]
    Period(String),
    /// The CSV file cannot be read.
    #[error("profile {profile:?}: {}: {source}", path.display())]
    CsvUnreadable {
        /// The value.
        profile: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The CSV file's lines are not a profile.
    #[error("profile {profile:?}: {}: {source}", path.display())]
    Csv {
        /// The value.
        profile: String,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: CsvError,
    },
}

/// Why a number of a profile is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    /// Neither a number nor a duration.
    #[error("{0:?} is not a number or a duration")]
    NotANumber(String),
    /// Negative or not finite.
    #[error("{0:?} must be a finite number ≥ 0")]
    OutOfRange(String),
}

/// What is wrong with a profile's CSV file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsvError {
    /// A time is not after the one before.
    #[error("line {0}: times must increase")]
    TimesNotIncreasing(usize),
    /// A line is not `seconds,rate`.
    #[error("line {line}: expected `seconds,rate` with both ≥ 0, got {text:?}")]
    BadLine {
        /// The line number.
        line: usize,
        /// The line.
        text: String,
    },
    /// No points at all.
    #[error("no `seconds,rate` lines")]
    Empty,
}

/// The offered rate over time.
#[derive(Debug, Clone, PartialEq)]
pub enum Profile {
    /// Always `rate`.
    Constant(f64),
    /// `high` from `at` until `until` (or the end), `low` otherwise.
    Step {
        /// Rate outside the step.
        low: f64,
        /// Rate during the step.
        high: f64,
        /// Start of the step, seconds.
        at: f64,
        /// End of the step, seconds.
        until: Option<f64>,
    },
    /// From `from` to `to`, linearly over the run.
    Ramp {
        /// Rate at the start.
        from: f64,
        /// Rate at the end.
        to: f64,
    },
    /// `mean + amplitude × sin(2π t / period)`, never below 0.
    Sine {
        /// Mean rate.
        mean: f64,
        /// Amplitude.
        amplitude: f64,
        /// Period, seconds.
        period: f64,
    },
    /// Points `(seconds, rate)`, sorted by time.
    Points(Vec<(f64, f64)>),
}

/// In words, for reports and the terminal: `a step from 2.5 to 20 frames/s at 36 s, back at 132 s`.
impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Profile::Constant(rate) => write!(f, "a constant {rate} frames/s"),
            Profile::Step {
                low,
                high,
                at,
                until,
            } => {
                write!(f, "a step from {low} to {high} frames/s at {at} s")?;
                match until {
                    Some(until) => write!(f, ", back to {low} at {until} s"),
                    None => write!(f, " until the end"),
                }
            }
            Profile::Ramp { from, to } => {
                write!(f, "a ramp from {from} to {to} frames/s over the run")
            }
            Profile::Sine {
                mean,
                amplitude,
                period,
            } => write!(
                f,
                "a wave of {mean} ± {amplitude} frames/s every {period} s"
            ),
            Profile::Points(points) => {
                let peak = points.iter().map(|(_, r)| *r).fold(0.0, f64::max);
                let end = points.last().map_or(0.0, |(t, _)| *t);
                write!(
                    f,
                    "{} points over {end} s, up to {peak} frames/s",
                    points.len()
                )
            }
        }
    }
}

impl Profile {
    /// Parses a `--profile` value; `csv:` files are read here.
    pub fn parse(text: &str) -> Result<Self, ProfileError> {
        let (form, args) = text.split_once(':').unwrap_or((text, ""));
        let profile = text.to_owned();
        let numbers = |counts: &'static [usize]| -> Result<Vec<f64>, ProfileError> {
            let parts: Vec<&str> = args.split(',').map(str::trim).collect();
            if !counts.contains(&parts.len()) {
                return Err(ProfileError::ValueCount {
                    profile: profile.clone(),
                    form: form.to_owned(),
                    counts,
                });
            }
            parts
                .iter()
                .map(|p| number(p))
                .collect::<Result<_, _>>()
                .map_err(|source| ProfileError::BadValue {
                    profile: profile.clone(),
                    source,
                })
        };
        let parsed = match form {
            "constant" => Profile::Constant(numbers(&[1])?[0]),
            "step" => {
                let v = numbers(&[3, 4])?;
                Profile::Step {
                    low: v[0],
                    high: v[1],
                    at: v[2],
                    until: v.get(3).copied(),
                }
            }
            "ramp" => {
                let v = numbers(&[2])?;
                Profile::Ramp {
                    from: v[0],
                    to: v[1],
                }
            }
            "sine" => {
                let v = numbers(&[3])?;
                if v[2] <= 0.0 {
                    return Err(ProfileError::Period(profile));
                }
                Profile::Sine {
                    mean: v[0],
                    amplitude: v[1],
                    period: v[2],
                }
            }
            "csv" => {
                let path = PathBuf::from(args);
                let contents = match std::fs::read_to_string(&path) {
                    Ok(contents) => contents,
                    Err(source) => {
                        return Err(ProfileError::CsvUnreadable {
                            profile,
                            path,
                            source,
                        });
                    }
                };
                match points(&contents) {
                    Ok(points) => Profile::Points(points),
                    Err(source) => {
                        return Err(ProfileError::Csv {
                            profile,
                            path,
                            source,
                        });
                    }
                }
            }
            _ => return Err(ProfileError::UnknownForm(profile)),
        };
        Ok(parsed)
    }

    /// The rate at `t` seconds into a run of `duration` seconds.
    #[must_use]
    pub fn rate_at(&self, t: f64, duration: f64) -> f64 {
        let rate = match self {
            Profile::Constant(rate) => *rate,
            Profile::Step {
                low,
                high,
                at,
                until,
            } => {
                if t >= *at && until.is_none_or(|u| t < u) {
                    *high
                } else {
                    *low
                }
            }
            Profile::Ramp { from, to } => from + (to - from) * (t / duration).clamp(0.0, 1.0),
            Profile::Sine {
                mean,
                amplitude,
                period,
            } => mean + amplitude * (2.0 * std::f64::consts::PI * t / period).sin(),
            Profile::Points(points) => interpolate(points, t),
        };
        rate.max(0.0)
    }

    /// The highest rate of a run of `duration` seconds (the thinning bound).
    fn peak(&self, duration: f64) -> f64 {
        match self {
            Profile::Constant(rate) => *rate,
            Profile::Step { low, high, .. } => low.max(*high),
            Profile::Ramp { from, to } => from.max(*to),
            Profile::Sine {
                mean, amplitude, ..
            } => mean + amplitude.abs(),
            Profile::Points(points) => points.iter().map(|p| p.1).fold(0.0, f64::max),
        }
        .max(0.0)
        .max(self.rate_at(duration, duration))
    }

    /// Arrival times over `duration`: a Poisson process of this rate, the same for the same
    /// `seed`.
    #[must_use]
    pub fn arrivals(&self, duration: Duration, seed: u64) -> Vec<Duration> {
        let total = duration.as_secs_f64();
        let peak = self.peak(total);
        let mut random = SplitMix::new(seed);
        let mut arrivals = Vec::new();
        if peak <= 0.0 {
            return arrivals;
        }
        let mut t = 0.0;
        loop {
            t += -(1.0 - random.next_f64()).ln() / peak;
            if t >= total {
                return arrivals;
            }
            if random.next_f64() * peak < self.rate_at(t, total) {
                arrivals.push(Duration::from_secs_f64(t));
            }
        }
    }
}

/// A number of seconds or a rate: `12`, `0.5`, `30s`, `2m`.
fn number(text: &str) -> Result<f64, NumberError> {
    let value = if let Ok(value) = text.parse::<f64>() {
        value
    } else {
        humantime::parse_duration(text)
            .map_err(|_| NumberError::NotANumber(text.to_owned()))?
            .as_secs_f64()
    };
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(NumberError::OutOfRange(text.to_owned()))
    }
}

fn points(contents: &str) -> Result<Vec<(f64, f64)>, CsvError> {
    let mut points = Vec::new();
    for (i, line) in contents.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // The first two cells: `seconds,rate`, or the demo's report.csv (t_s,offered_rate,…).
        let mut cells = line.split(',');
        let parsed = cells.next().zip(cells.next()).and_then(|(t, r)| {
            Some((t.trim().parse::<f64>().ok()?, r.trim().parse::<f64>().ok()?))
        });
        match parsed {
            Some((t, rate)) if t.is_finite() && rate.is_finite() && t >= 0.0 && rate >= 0.0 => {
                if points.last().is_some_and(|(last, _)| t <= *last) {
                    return Err(CsvError::TimesNotIncreasing(i + 1));
                }
                points.push((t, rate));
            }
            None if points.is_empty() && i == 0 => {} // a header
            _ => {
                return Err(CsvError::BadLine {
                    line: i + 1,
                    text: line.to_owned(),
                });
            }
        }
    }
    if points.is_empty() {
        return Err(CsvError::Empty);
    }
    Ok(points)
}

fn interpolate(points: &[(f64, f64)], t: f64) -> f64 {
    match points.iter().position(|(time, _)| *time > t) {
        None => points[points.len() - 1].1,
        Some(0) => points[0].1,
        Some(i) => {
            let ((t0, r0), (t1, r1)) = (points[i - 1], points[i]);
            r0 + (r1 - r0) * (t - t0) / (t1 - t0)
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::float_cmp,
    reason = "the rates compared are exact by construction (constants and halves)"
)]
mod tests {
    use super::*;

    #[test]
    fn profiles_read_in_words() {
        let words = |text: &str| Profile::parse(text).unwrap().to_string();
        assert_eq!(
            words("step:2.5,20,36,132"),
            "a step from 2.5 to 20 frames/s at 36 s, back to 2.5 at 132 s"
        );
        assert_eq!(
            words("step:1,4,10"),
            "a step from 1 to 4 frames/s at 10 s until the end"
        );
        assert_eq!(words("constant:3"), "a constant 3 frames/s");
        assert_eq!(
            words("ramp:0,8"),
            "a ramp from 0 to 8 frames/s over the run"
        );
        assert_eq!(words("sine:5,2,60"), "a wave of 5 ± 2 frames/s every 60 s");
    }

    #[test]
    fn forms_parse_and_give_their_rates() {
        let step = Profile::parse("step:2,10,30s,1m").unwrap();
        assert_eq!(
            [0.0, 30.0, 59.9, 60.0].map(|t| step.rate_at(t, 120.0)),
            [2.0, 10.0, 10.0, 2.0]
        );
        let ramp = Profile::parse("ramp:0,10").unwrap();
        assert_eq!(ramp.rate_at(30.0, 60.0), 5.0);
        let sine = Profile::parse("sine:5,10,40").unwrap();
        assert!((sine.rate_at(10.0, 60.0) - 15.0).abs() < 1e-9);
        assert_eq!(sine.rate_at(30.0, 60.0), 0.0, "never negative");
        assert_eq!(Profile::parse("constant:3").unwrap().rate_at(1.0, 2.0), 3.0);

        let dir = std::env::temp_dir().join(format!("framescale-profile-{}", std::process::id()));
        std::fs::write(&dir, "seconds,rate\n0,0\n10,10\n20,4\n").unwrap();
        let csv = Profile::parse(&format!("csv:{}", dir.display())).unwrap();
        assert_eq!(
            [5.0, 15.0, 99.0].map(|t| csv.rate_at(t, 100.0)),
            [5.0, 7.0, 4.0]
        );
        // The demo's report.csv: the rate is its second cell.
        std::fs::write(
            &dir,
            "t_s,offered_rate,replicas,desired,p95_ms,duty_pct,score,decision\n0.000,2.000,1,,,,,\"\"\n10.000,6.000,1,2,20.1,50.0,0.9,\"keep 1: x\"\n",
        )
        .unwrap();
        let demo = Profile::parse(&format!("csv:{}", dir.display())).unwrap();
        assert_eq!(demo.rate_at(5.0, 10.0), 4.0);
        std::fs::write(&dir, "0,1\n0,2\n").unwrap();
        assert!(matches!(
            Profile::parse(&format!("csv:{}", dir.display())),
            Err(ProfileError::Csv {
                source: CsvError::TimesNotIncreasing(2),
                ..
            })
        ));
        std::fs::remove_file(&dir).unwrap();

        for (bad, why) in [
            ("burst:1", "use constant"),
            ("step:1,2", "step takes 3 or 4 values"),
            ("constant:-1", "≥ 0"),
            ("constant:x", "not a number"),
            ("sine:1,1,0", "period"),
            ("csv:/nonexistent.csv", "/nonexistent.csv"),
        ] {
            let error = Profile::parse(bad).unwrap_err().to_string();
            assert!(error.contains(why), "{bad}: {error}");
        }
    }

    #[test]
    fn arrivals_follow_the_rate_and_the_seed() {
        let profile = Profile::parse("step:5,50,10,20").unwrap();
        let arrivals = profile.arrivals(Duration::from_secs(30), 7);
        assert_eq!(arrivals, profile.arrivals(Duration::from_secs(30), 7));
        assert_ne!(arrivals, profile.arrivals(Duration::from_secs(30), 8));
        let count = |from: u64, to: u64| {
            arrivals
                .iter()
                .filter(|a| (from..to).contains(&a.as_secs()))
                .count() as f64
        };
        // Expected 100 outside the step (20 s × 5/s) and 500 inside (10 s × 50/s); a Poisson
        // count stays within 4 standard deviations (√n) of its mean.
        let (outside, inside) = (count(0, 10) + count(20, 30), count(10, 20));
        assert!(
            (outside - 100.0).abs() < 4.0 * 100.0_f64.sqrt(),
            "{outside}"
        );
        assert!((inside - 500.0).abs() < 4.0 * 500.0_f64.sqrt(), "{inside}");
        assert!(arrivals.windows(2).all(|w| w[0] <= w[1]));
    }
}
