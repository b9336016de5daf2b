//! Wall-clock arithmetic between `Timestamp`s (which come from other
//! machines' clocks) and `std::time::Duration`s (the controller's settings).

use std::time::Duration;

use herd_api::Timestamp;

/// `at + d`, saturating at the end of time.
pub fn add(at: Timestamp, d: Duration) -> Timestamp {
    at.saturating_add(d).unwrap_or(Timestamp::MAX)
}

/// How long from `earlier` to `later`; zero when `later` is not later.
pub fn since(later: Timestamp, earlier: Timestamp) -> Duration {
    Duration::try_from(later.duration_since(earlier)).unwrap_or(Duration::ZERO)
}

/// A duration the way an operator writes it (`15s`, `1m 30s`), at
/// millisecond precision.
pub fn human(d: Duration) -> String {
    let ms = Duration::from_millis(d.as_millis().try_into().unwrap_or(u64::MAX));
    humantime::format_duration(ms).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic() {
        let t = Timestamp::from_second(1_800_000_000).expect("valid");
        let later = add(t, Duration::from_millis(1500));
        assert_eq!(since(later, t), Duration::from_millis(1500));
        assert_eq!(since(t, later), Duration::ZERO);
        assert_eq!(add(Timestamp::MAX, Duration::from_secs(1)), Timestamp::MAX);
        assert_eq!(human(Duration::from_secs(15)), "15s");
        assert_eq!(human(Duration::from_micros(250_400)), "250ms");
    }
}
