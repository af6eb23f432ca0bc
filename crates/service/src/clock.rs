//! The time the node reads (its collectives engine, its API, its repo service): the system
//! clock in production, a shifted or set one in tests (a node whose clock runs fast or slow),
//! so that every rule that depends on "now" can be exercised without waiting or changing the
//! machine's clock. The node hands one clock to all of them.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time, in microseconds since the Unix epoch. Cheap to clone.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl Clock {
    /// The machine's clock.
    pub fn system() -> Clock {
        Clock(Arc::new(system_micros))
    }

    /// The machine's clock shifted by `offset` microseconds (a node whose clock is off), the
    /// offset readable and settable while the clock is in use.
    pub fn offset(offset: Arc<AtomicI64>) -> Clock {
        Clock(Arc::new(move || {
            system_micros().saturating_add(offset.load(Ordering::Relaxed))
        }))
    }

    /// A clock that reads `f`.
    pub fn from_fn(f: impl Fn() -> i64 + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(f))
    }

    /// Now, in microseconds since the Unix epoch.
    pub fn now_micros(&self) -> i64 {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock({})", self.now_micros())
    }
}

fn system_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_clock_follows_its_offset() {
        let offset = Arc::new(AtomicI64::new(3_600_000_000));
        let clock = Clock::offset(Arc::clone(&offset));
        let ahead = clock.now_micros() - Clock::system().now_micros();
        assert!((3_599_000_000..=3_601_000_000).contains(&ahead), "{ahead}");
        offset.store(0, Ordering::Relaxed);
        let now = clock.now_micros() - Clock::system().now_micros();
        assert!(now.abs() < 1_000_000, "{now}");
        assert_eq!(Clock::from_fn(|| 7).now_micros(), 7);
    }
}
