//! Where time comes from: the system clock, or a manual clock that tests move forward. One
//! clock lives in the application state; everything that decides by time (key expiry, rate-limit
//! windows, token validity) reads it, so tests advance time instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// The system clock, or a manual one shared by its clones.
#[derive(Clone, Default, Debug)]
pub struct Clock(Option<Arc<AtomicI64>>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self(None)
    }

    /// A clock that stands still at `start` until [`Clock::advance`] moves it.
    pub fn manual(start: DateTime<Utc>) -> Self {
        Self(Some(Arc::new(AtomicI64::new(start.timestamp_millis()))))
    }

    /// Now, truncated to the millisecond (what both databases store).
    pub fn now(&self) -> DateTime<Utc> {
        let millis = match &self.0 {
            Some(manual) => manual.load(Ordering::SeqCst),
            None => Utc::now().timestamp_millis(),
        };
        DateTime::from_timestamp_millis(millis).unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// Now in whole seconds since the Unix epoch (JWT claims).
    pub fn unix_seconds(&self) -> u64 {
        u64::try_from(self.now().timestamp()).unwrap_or(0)
    }

    /// Moves a manual clock (and every clone of it) forward by `by`.
    ///
    /// # Panics
    /// On the system clock.
    pub fn advance(&self, by: Duration) {
        let manual = self
            .0
            .as_ref()
            .expect("only a manual clock can be advanced");
        manual.fetch_add(
            i64::try_from(by.as_millis()).unwrap_or(i64::MAX),
            Ordering::SeqCst,
        );
    }
}

/// Runs `step` now, then again `period` after each run ends, until `shutdown` (also while it
/// waits): the loop of the background janitors and sweepers. Real time, whatever the clock.
pub async fn repeat<F: std::future::Future<Output = ()>>(
    period: Duration,
    shutdown: &tokio_util::sync::CancellationToken,
    mut step: impl FnMut() -> F,
) {
    loop {
        step().await;
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(period) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::values::format_timestamp;

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let start = DateTime::parse_from_rfc3339("2030-01-01T00:00:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        let clock = Clock::manual(start);
        let shared = clock.clone();
        assert_eq!(format_timestamp(&clock.now()), "2030-01-01T00:00:00.123Z");
        shared.advance(Duration::from_millis(1500));
        assert_eq!(format_timestamp(&clock.now()), "2030-01-01T00:00:01.623Z");
        assert_eq!(clock.unix_seconds(), 1_893_456_001);
    }
}
