//! Rate limits for warnings about bad input, so a flood of garbage is counted, not logged line
//! by line.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lets one message of each kind through per interval and counts the ones it holds back.
#[derive(Debug)]
pub struct Throttle {
    interval: Duration,
    last: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl Throttle {
    /// A throttle that lets one message of a kind through every `interval`.
    #[must_use]
    pub fn new(interval: Duration) -> Self {
        Throttle {
            interval,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a message of `kind` may be logged now; if so, how many were held back since the
    /// last one.
    pub fn allow(&self, kind: &'static str) -> Option<u64> {
        self.allow_at(kind, Instant::now())
    }

    /// [`Throttle::allow`] as of `now` (tests pass their own clock).
    pub fn allow_at(&self, kind: &'static str, now: Instant) -> Option<u64> {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match last.get_mut(kind) {
            Some((at, held)) if now.duration_since(*at) < self.interval => {
                *held += 1;
                None
            }
            Some((at, held)) => {
                let suppressed = *held;
                *at = now;
                *held = 0;
                Some(suppressed)
            }
            None => {
                last.insert(kind, (now, 0));
                Some(0)
            }
        }
    }
}

impl Default for Throttle {
    /// One message of each kind every 10 s.
    fn default() -> Self {
        Throttle::new(Duration::from_secs(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_message_per_interval_and_a_count_of_the_rest() {
        let throttle = Throttle::new(Duration::from_secs(10));
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        assert_eq!(throttle.allow_at("a", at(0)), Some(0));
        assert_eq!(throttle.allow_at("a", at(1)), None);
        assert_eq!(throttle.allow_at("a", at(9)), None);
        assert_eq!(throttle.allow_at("b", at(9)), Some(0), "kinds apart");
        assert_eq!(throttle.allow_at("a", at(10)), Some(2));
        assert_eq!(throttle.allow_at("a", at(11)), None);
        assert_eq!(throttle.allow_at("b", at(19)), Some(0));
    }
}
