//! Sliding-window quantiles of frame times, with HDR-histogram precision.
//!
//! A [`QuantileWindow`] is a ring of sub-windows (default 6 × 10 s = 60 s). A value lands in the
//! sub-window of its timestamp; a query merges the sub-windows that are still inside the window
//! ending now, so the window slides in steps of one sub-window (it covers between
//! `window − sub_window` and `window` of history). Values are kept in microseconds, from 1 µs to
//! 1 h (larger values are clamped to 1 h), at 3 significant digits, and quantiles are
//! `HdrHistogram`'s: the highest value equivalent to the sample at rank `⌈q·n⌉`.
//!
//! Memory is the design constraint: a dense 3-digit HDR histogram up to one second is ~45 KiB
//! (u32 counts), so six per pod for 1,000 pods would be ~270 MiB. A sub-window therefore holds
//! its samples as a plain list until it has [`DENSE_AT`] of them, and only then becomes a dense
//! [`Histogram`]: quiet pods cost a few bytes per frame, busy pods a bounded histogram. Both forms
//! answer the same quantiles, value for value (a property test checks it).

use std::time::Duration;

use hdrhistogram::Histogram;

/// Largest value kept, in microseconds (one hour).
pub const MAX_MICROS: u64 = 3_600_000_000;
/// Significant digits of every value.
pub const SIGNIFICANT_DIGITS: u8 = 3;
/// Samples a sub-window keeps as a list before it switches to a dense histogram (16 KiB).
pub const DENSE_AT: usize = 4096;

/// Length and granularity of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowConfig {
    sub_window_millis: u64,
    sub_windows: usize,
}

/// Why a [`WindowConfig`] cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Zero sub-windows, or more than 3,600.
    #[error("sub-windows must be between 1 and 3600, got {0}")]
    SubWindows(usize),
    /// The window does not split into whole milliseconds per sub-window, or is zero.
    #[error(
        "a window of {window:?} does not split into {sub_windows} sub-windows of whole milliseconds"
    )]
    Uneven {
        /// The window asked for.
        window: Duration,
        /// The number of sub-windows asked for.
        sub_windows: usize,
    },
}

impl WindowConfig {
    /// A window of `window` split into `sub_windows` equal sub-windows.
    pub fn new(window: Duration, sub_windows: usize) -> Result<Self, ConfigError> {
        if !(1..=3600).contains(&sub_windows) {
            return Err(ConfigError::SubWindows(sub_windows));
        }
        let millis = window.as_millis();
        let uneven = ConfigError::Uneven {
            window,
            sub_windows,
        };
        if millis == 0
            || !window.subsec_nanos().is_multiple_of(1_000_000)
            || !millis.is_multiple_of(sub_windows as u128)
        {
            return Err(uneven);
        }
        let sub_window_millis = u64::try_from(millis / sub_windows as u128).map_err(|_| uneven)?;
        Ok(WindowConfig {
            sub_window_millis,
            sub_windows,
        })
    }

    /// A window of `window` split into the number of sub-windows nearest to `preferred` that
    /// splits it into whole milliseconds (the fewer on a tie): `20s` with 6 preferred is 5 of
    /// 4 s. Fails only for a window of zero or of a fraction of a millisecond.
    pub fn fitting(window: Duration, preferred: usize) -> Result<Self, ConfigError> {
        let preferred = preferred.clamp(1, 3600);
        let uneven = ConfigError::Uneven {
            window,
            sub_windows: preferred,
        };
        let millis = window.as_millis();
        if millis == 0 || !window.subsec_nanos().is_multiple_of(1_000_000) {
            return Err(uneven);
        }
        (0..3600)
            .flat_map(|d| [preferred.checked_sub(d), Some(preferred + d)])
            .flatten()
            .filter(|&n| (1..=3600).contains(&n))
            .find(|&n| millis.is_multiple_of(n as u128))
            .map_or(Err(uneven), |n| Self::new(window, n))
    }

    /// How many sub-windows the window slides by.
    #[must_use]
    pub fn sub_windows(&self) -> usize {
        self.sub_windows
    }

    /// The whole window.
    #[must_use]
    pub fn window(&self) -> Duration {
        Duration::from_millis(self.sub_window_millis * self.sub_windows as u64)
    }
}

impl Default for WindowConfig {
    /// 60 s in 6 sub-windows of 10 s.
    fn default() -> Self {
        WindowConfig {
            sub_window_millis: 10_000,
            sub_windows: 6,
        }
    }
}

/// Quantiles of the values inside the window at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowSnapshot {
    /// Number of values inside the window.
    pub count: u64,
    /// One value per quantile asked for, in the order asked.
    pub values: Vec<Duration>,
}

/// The sliding window of one series.
#[derive(Debug, Clone)]
pub struct QuantileWindow {
    config: WindowConfig,
    slots: Box<[Slot]>,
}

/// Buffers reused across queries, so a scrape of many windows allocates once.
#[derive(Debug)]
pub struct Scratch {
    samples: Vec<u32>,
    merged: Histogram<u32>,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            samples: Vec::new(),
            merged: dense_histogram(),
        }
    }
}

#[derive(Debug, Clone)]
struct Slot {
    /// Which sub-window of time (milliseconds since the epoch / sub-window length) this holds.
    epoch: u64,
    data: SlotData,
}

#[derive(Debug, Clone)]
enum SlotData {
    Samples(Vec<u32>),
    Dense(Box<Histogram<u32>>),
}

impl QuantileWindow {
    /// An empty window.
    #[must_use]
    pub fn new(config: WindowConfig) -> Self {
        let empty = Slot {
            epoch: 0,
            data: SlotData::Samples(Vec::new()),
        };
        QuantileWindow {
            config,
            slots: vec![empty; config.sub_windows].into_boxed_slice(),
        }
    }

    /// Records `value`, observed at `at_millis` (milliseconds since the Unix epoch). Returns
    /// false when the value is older than the sub-window now held in its slot, so it no longer
    /// belongs to any window that can be asked for; it is not recorded.
    pub fn record(&mut self, value: Duration, at_millis: u64) -> bool {
        let micros = value.as_micros().min(u128::from(MAX_MICROS)) as u32;
        let epoch = at_millis / self.config.sub_window_millis;
        let slot = &mut self.slots[(epoch % self.slots.len() as u64) as usize];
        if epoch < slot.epoch {
            return false;
        }
        if epoch > slot.epoch {
            slot.reset(epoch);
        }
        slot.record(micros);
        true
    }

    /// Whether any value lies inside the window ending at `now_millis`.
    #[must_use]
    pub fn is_empty_at(&self, now_millis: u64) -> bool {
        self.live_slots(now_millis).all(|slot| slot.len() == 0)
    }

    /// The `quantiles` (each in 0..=1, ascending) of the values inside the window ending at
    /// `now_millis`; `None` when the window holds no value — never a made-up zero.
    pub fn snapshot(
        &self,
        now_millis: u64,
        quantiles: &[f64],
        scratch: &mut Scratch,
    ) -> Option<WindowSnapshot> {
        let count: u64 = self.live_slots(now_millis).map(Slot::len).sum();
        if count == 0 {
            return None;
        }
        let any_dense = self
            .live_slots(now_millis)
            .any(|s| matches!(s.data, SlotData::Dense(_)));
        let values = if any_dense {
            self.dense_quantiles(now_millis, quantiles, scratch)
        } else {
            self.sparse_quantiles(now_millis, quantiles, scratch)
        };
        Some(WindowSnapshot { count, values })
    }

    fn live_slots(&self, now_millis: u64) -> impl Iterator<Item = &Slot> {
        let now_epoch = now_millis / self.config.sub_window_millis;
        let oldest = now_epoch.saturating_sub(self.slots.len() as u64 - 1);
        self.slots
            .iter()
            .filter(move |s| (oldest..=now_epoch).contains(&s.epoch))
    }

    fn sparse_quantiles(
        &self,
        now: u64,
        quantiles: &[f64],
        scratch: &mut Scratch,
    ) -> Vec<Duration> {
        let samples = &mut scratch.samples;
        samples.clear();
        for slot in self.live_slots(now) {
            if let SlotData::Samples(list) = &slot.data {
                samples.extend_from_slice(list);
            }
        }
        samples.sort_unstable();
        let count = samples.len() as u64;
        quantiles
            .iter()
            .map(|&q| {
                let sample = samples[(rank(q, count) - 1) as usize];
                micros(scratch.merged.highest_equivalent(u64::from(sample)))
            })
            .collect()
    }

    fn dense_quantiles(&self, now: u64, quantiles: &[f64], scratch: &mut Scratch) -> Vec<Duration> {
        let merged = &mut scratch.merged;
        merged.reset();
        for slot in self.live_slots(now) {
            match &slot.data {
                SlotData::Samples(list) => {
                    for &sample in list {
                        record_dense(merged, sample);
                    }
                }
                SlotData::Dense(histogram) => {
                    // Both histograms auto-resize and share their precision, so adding cannot fail.
                    merged
                        .add(histogram.as_ref())
                        .expect("histograms of one precision add");
                }
            }
        }
        quantiles
            .iter()
            .map(|&q| micros(merged.value_at_quantile(q)))
            .collect()
    }
}

impl Slot {
    fn len(&self) -> u64 {
        match &self.data {
            SlotData::Samples(list) => list.len() as u64,
            SlotData::Dense(histogram) => histogram.len(),
        }
    }

    fn reset(&mut self, epoch: u64) {
        self.epoch = epoch;
        match &mut self.data {
            SlotData::Samples(list) => {
                list.clear();
                // A burst once should not pin its memory for the life of the pod.
                if list.capacity() > 256 {
                    list.shrink_to(256);
                }
            }
            SlotData::Dense(_) => self.data = SlotData::Samples(Vec::new()),
        }
    }

    fn record(&mut self, micros: u32) {
        match &mut self.data {
            SlotData::Samples(list) if list.len() < DENSE_AT => list.push(micros),
            SlotData::Samples(list) => {
                let mut histogram = dense_histogram();
                for &sample in list.iter() {
                    record_dense(&mut histogram, sample);
                }
                record_dense(&mut histogram, micros);
                self.data = SlotData::Dense(Box::new(histogram));
            }
            SlotData::Dense(histogram) => record_dense(histogram, micros),
        }
    }
}

/// `HdrHistogram`'s rank for quantile `q` of `count` values: `max(1, ⌈q·count⌉)`, at most `count`.
fn rank(q: f64, count: u64) -> u64 {
    ((q.clamp(0.0, 1.0) * count as f64).ceil() as u64).clamp(1, count)
}

fn dense_histogram() -> Histogram<u32> {
    // An auto-resizing histogram grows its counts only as far as the largest value recorded.
    let mut histogram =
        Histogram::new_with_bounds(1, 2, SIGNIFICANT_DIGITS).expect("valid HDR bounds");
    histogram.auto(true);
    histogram
}

/// Records into an auto-resizing histogram. `saturating_record` would clamp to the size the
/// histogram has so far instead of growing it; `record` grows it, and cannot fail for values
/// up to [`MAX_MICROS`].
fn record_dense(histogram: &mut Histogram<u32>, micros: u32) {
    if histogram.record(u64::from(micros)).is_err() {
        histogram.saturating_record(u64::from(micros));
    }
}

fn micros(value: u64) -> Duration {
    Duration::from_micros(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_a_user_picks_fits_into_sub_windows() {
        let fit = |secs: f64| WindowConfig::fitting(Duration::from_secs_f64(secs), 6).unwrap();
        assert_eq!(fit(60.0).sub_windows(), 6);
        assert_eq!(fit(20.0).sub_windows(), 5, "20 s: 5 of 4 s");
        assert_eq!(fit(10.0).sub_windows(), 5, "10 s: 5 of 2 s");
        assert_eq!(fit(7.0).sub_windows(), 5);
        assert_eq!(fit(0.001).sub_windows(), 1);
        for secs in [20.0, 10.0, 7.0, 45.0, 90.0, 0.25] {
            assert_eq!(fit(secs).window(), Duration::from_secs_f64(secs));
        }
        assert!(WindowConfig::fitting(Duration::ZERO, 6).is_err());
        assert!(WindowConfig::fitting(Duration::from_micros(1500), 6).is_err());
    }
    use proptest::prelude::*;

    const QS: [f64; 4] = [0.5, 0.9, 0.95, 0.99];

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    #[test]
    fn config_validation() {
        assert!(WindowConfig::new(ms(60_000), 6).is_ok());
        assert_eq!(
            WindowConfig::new(ms(60_000), 6).unwrap().window(),
            ms(60_000)
        );
        assert!(WindowConfig::new(ms(60_000), 0).is_err());
        assert!(WindowConfig::new(ms(10), 3).is_err());
        assert!(WindowConfig::new(Duration::ZERO, 1).is_err());
        assert!(WindowConfig::new(Duration::from_micros(1500), 1).is_err());
    }

    #[test]
    fn empty_window_has_no_quantiles() {
        let window = QuantileWindow::new(WindowConfig::default());
        assert_eq!(
            window.snapshot(1_000_000, &QS, &mut Scratch::default()),
            None
        );
        assert!(window.is_empty_at(1_000_000));
    }

    #[test]
    fn values_leave_the_window_as_it_slides() {
        let mut window = QuantileWindow::new(WindowConfig::default());
        let start = 1_700_000_000_000;
        assert!(window.record(ms(100), start));
        assert!(window.record(ms(300), start + 30_000));
        let mut scratch = Scratch::default();
        let at =
            |w: &QuantileWindow, now, s: &mut Scratch| w.snapshot(now, &[1.0], s).map(|x| x.count);
        assert_eq!(at(&window, start + 30_000, &mut scratch), Some(2));
        // 60 s after the first value's sub-window began, it has left.
        assert_eq!(at(&window, start + 60_000, &mut scratch), Some(1));
        assert_eq!(at(&window, start + 100_000, &mut scratch), None);
    }

    #[test]
    fn values_older_than_their_slot_are_refused() {
        let mut window = QuantileWindow::new(WindowConfig::default());
        let now = 1_700_000_000_000;
        assert!(window.record(ms(5), now));
        assert!(!window.record(ms(5), now - 60_000));
    }

    #[test]
    fn values_are_clamped_to_one_hour() {
        let mut window = QuantileWindow::new(WindowConfig::default());
        window.record(Duration::from_hours(2), 0);
        let snap = window.snapshot(0, &[1.0], &mut Scratch::default()).unwrap();
        let top = snap.values[0].as_micros() as f64;
        assert!(
            (top - MAX_MICROS as f64).abs() / (MAX_MICROS as f64) < 1e-3,
            "{top}"
        );
    }

    /// The reference: exact nearest-rank quantile of the sorted samples.
    fn exact(samples: &mut [u64], q: f64) -> u64 {
        samples.sort_unstable();
        samples[(rank(q, samples.len() as u64) - 1) as usize]
    }

    proptest! {
        #[test]
        fn quantiles_agree_with_an_exact_sort(
            samples in proptest::collection::vec(0u64..MAX_MICROS, 1..3000),
            dense in any::<bool>(),
        ) {
            let mut window = QuantileWindow::new(WindowConfig::default());
            let now = 1_000_000_000;
            for &s in &samples {
                window.record(Duration::from_micros(s), now);
            }
            if dense {
                // Force the dense form by crossing the threshold in another live sub-window.
                for _ in 0..=DENSE_AT {
                    window.record(Duration::from_micros(samples[0]), now - 10_000);
                }
            }
            let mut all = samples.clone();
            if dense {
                all.extend(std::iter::repeat_n(samples[0], DENSE_AT + 1));
            }
            let snap = window.snapshot(now, &QS, &mut Scratch::default()).unwrap();
            prop_assert_eq!(snap.count, all.len() as u64);
            for (q, got) in QS.iter().zip(&snap.values) {
                let want = exact(&mut all, *q) as f64;
                let got = got.as_micros() as f64;
                // The reported value is the top of the sample's bucket: never below it, and
                // above it by less than one part in 10^3 (3 significant digits).
                prop_assert!(got >= want && got - want <= (want / 1000.0).max(1.0), "q={} want={} got={}", q, want, got);
            }
        }

        #[test]
        fn sparse_and_dense_forms_answer_alike(samples in proptest::collection::vec(0u64..10_000_000, 1..500)) {
            let mut sparse = QuantileWindow::new(WindowConfig::default());
            for &s in &samples {
                sparse.record(Duration::from_micros(s), 0);
            }
            let mut dense = sparse.clone();
            let Slot { data, .. } = &mut dense.slots[0];
            let SlotData::Samples(list) = data else { unreachable!() };
            let mut histogram = dense_histogram();
            for &s in list.iter() {
                record_dense(&mut histogram, s);
            }
            *data = SlotData::Dense(Box::new(histogram));
            let mut scratch = Scratch::default();
            prop_assert_eq!(sparse.snapshot(0, &QS, &mut scratch), dense.snapshot(0, &QS, &mut scratch));
        }
    }
}
