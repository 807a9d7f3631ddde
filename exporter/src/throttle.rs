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
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
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
        let throttle = Throttle::new(Duration::from_millis(50));
        assert_eq!(throttle.allow("a"), Some(0));
        assert_eq!(throttle.allow("a"), None);
        assert_eq!(throttle.allow("a"), None);
        assert_eq!(throttle.allow("b"), Some(0));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(throttle.allow("a"), Some(2));
    }
}
