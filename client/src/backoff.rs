//! Exponential backoff: the one retry schedule of herd's clients (pure, no I/O).
//!
//! Watches that reconnect, reconciles that failed, the nodelet's downloads, its
//! registration with the router and its restarts of `ollama serve` all retry on the same
//! shape of schedule: a base delay that grows after every failure, up to a cap, for a
//! bounded or unbounded number of tries, optionally jittered so a fleet that failed
//! together does not retry together. The schedule is a pure function of the retry number
//! (and, for jitter, of a random number the caller injects), so it is tested by tables
//! and never by sleeping; callers do the sleeping.

use std::time::Duration;

use rand::Rng;

/// How much randomness to mix into each delay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Jitter {
    /// Every delay exactly as scheduled.
    None,
    /// Uniform in `[0, delay]` ("full jitter"): spreads a fleet that failed together
    /// the most, at the price of sometimes retrying almost at once.
    Full,
    /// Uniform in `[delay·(1−f), delay·(1+f)]`, never above the cap. `f` is clamped
    /// to `[0, 1]`.
    Proportional(f64),
    /// Uniform in `[delay·(1−f), delay]`: only ever shorter than scheduled, so the cap
    /// stays a real upper bound (what a watch reconnecting after a server restart
    /// wants). `f` is clamped to `[0, 1]`; `Down(1.0)` is [`Jitter::Full`].
    Down(f64),
}

/// An exponential backoff schedule.
///
/// Try 1 runs at once; before try `n + 1` the caller waits [`Backoff::delay`]`(n)`,
/// that is `min(base · factor^(n−1), cap)` for `n ≥ 1`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// Delay before the second try.
    pub base: Duration,
    /// Growth per failure; 2 doubles.
    pub factor: u32,
    /// No delay is ever longer than this.
    pub cap: Duration,
    /// Total tries including the first; `None` retries forever.
    pub max_tries: Option<u32>,
    /// Randomness applied by [`Backoff::jittered_delay`].
    pub jitter: Jitter,
}

impl Backoff {
    /// The download schedule: 1 s doubling, capped at 60 s, 5 tries, no jitter.
    pub const DOWNLOAD: Backoff = Backoff {
        base: Duration::from_secs(1),
        factor: 2,
        cap: Duration::from_secs(60),
        max_tries: Some(5),
        jitter: Jitter::None,
    };

    /// For loops that must never give up (registration, restarting Ollama): 1 s
    /// doubling, capped at 60 s, forever, with ±20 % jitter so a fleet restarted
    /// together spreads out.
    pub const FOREVER: Backoff = Backoff {
        base: Duration::from_secs(1),
        factor: 2,
        cap: Duration::from_secs(60),
        max_tries: None,
        jitter: Jitter::Proportional(0.2),
    };

    /// For watches and reconciles: 500 ms doubling, capped at 30 s, forever, each delay
    /// shortened by up to half so the watchers of many clients spread out after a
    /// server restart.
    pub const WATCH: Backoff = Backoff {
        base: Duration::from_millis(500),
        factor: 2,
        cap: Duration::from_secs(30),
        max_tries: None,
        jitter: Jitter::Down(0.5),
    };

    /// This schedule between `base` and `cap`, keeping its growth, tries and jitter.
    #[must_use]
    pub fn between(self, base: Duration, cap: Duration) -> Backoff {
        Backoff { base, cap, ..self }
    }

    /// The same schedule with another base delay (tests use milliseconds). The cap
    /// scales with it so the shape of the schedule is kept.
    #[must_use]
    pub fn with_base(self, base: Duration) -> Backoff {
        let cap = scale(self.cap, base, self.base);
        Backoff { base, cap, ..self }
    }

    /// The same schedule with another number of tries.
    #[must_use]
    pub fn with_max_tries(self, max_tries: Option<u32>) -> Backoff {
        Backoff { max_tries, ..self }
    }

    /// The same schedule with another jitter.
    #[must_use]
    pub fn with_jitter(self, jitter: Jitter) -> Backoff {
        Backoff { jitter, ..self }
    }

    /// Whether another try is allowed after `tries_so_far` tries have failed.
    pub fn allows_another(&self, tries_so_far: u32) -> bool {
        self.max_tries.is_none_or(|max| tries_so_far < max)
    }

    /// The delay to wait after the `failures`-th failure (1-based), before jitter.
    /// `delay(0)` is zero: the first try runs at once.
    pub fn delay(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let growth = u64::from(self.factor.max(1)).saturating_pow(failures - 1);
        let nanos = self.base.as_nanos().saturating_mul(u128::from(growth));
        let capped = nanos.min(self.cap.as_nanos());
        duration_from_nanos(capped)
    }

    /// [`Backoff::delay`] with this schedule's jitter applied, drawing from `rng`.
    pub fn jittered_delay<R: Rng + ?Sized>(&self, failures: u32, rng: &mut R) -> Duration {
        match self.jitter {
            Jitter::None => self.delay(failures),
            _ => self.jittered(failures, rng.random::<f64>()),
        }
    }

    /// [`Backoff::delay`] with this schedule's jitter applied for `unit`, a random
    /// number in `[0, 1)` the caller drew.
    pub fn jittered(&self, failures: u32, unit: f64) -> Duration {
        apply_jitter(self.delay(failures), self.cap, self.jitter, unit)
    }

    /// The delays between tries without jitter: `max_tries − 1` of them, or an
    /// endless iterator when `max_tries` is `None`.
    pub fn delays(&self) -> impl Iterator<Item = Duration> + '_ {
        self.delay_numbers().map(|n| self.delay(n))
    }

    /// The delays between tries with jitter drawn from `rng`.
    pub fn jittered_delays<'a, R: Rng + 'a>(
        &'a self,
        mut rng: R,
    ) -> impl Iterator<Item = Duration> + 'a {
        self.delay_numbers()
            .map(move |n| self.jittered_delay(n, &mut rng))
    }

    fn delay_numbers(&self) -> impl Iterator<Item = u32> + use<> {
        let last = match self.max_tries {
            Some(max) => max.saturating_sub(1),
            None => u32::MAX,
        };
        1..=last
    }
}

/// Applies `jitter` to `delay` using `unit`, a random number in `[0, 1)`; the result
/// never exceeds `cap` (unless `delay` already did).
pub fn apply_jitter(delay: Duration, cap: Duration, jitter: Jitter, unit: f64) -> Duration {
    let unit = if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let fraction = |f: f64| {
        if f.is_finite() {
            f.clamp(0.0, 1.0)
        } else {
            0.0
        }
    };
    let secs = delay.as_secs_f64();
    let jittered = match jitter {
        Jitter::None => return delay,
        Jitter::Full => secs * unit,
        Jitter::Proportional(f) => {
            let f = fraction(f);
            secs * (1.0 - f + 2.0 * f * unit)
        }
        Jitter::Down(f) => return delay.mul_f64(1.0 - fraction(f) * unit),
    };
    let out = Duration::try_from_secs_f64(jittered).unwrap_or(delay);
    out.min(cap.max(delay))
}

fn scale(value: Duration, new_base: Duration, old_base: Duration) -> Duration {
    if old_base.is_zero() {
        return value;
    }
    let nanos = value.as_nanos().saturating_mul(new_base.as_nanos()) / old_base.as_nanos();
    duration_from_nanos(nanos)
}

fn duration_from_nanos(nanos: u128) -> Duration {
    let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
    let sub = u32::try_from(nanos % 1_000_000_000).unwrap_or(0);
    Duration::new(secs, sub)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn ms(m: u64) -> Duration {
        Duration::from_millis(m)
    }

    #[test]
    fn download_schedule_doubles_from_one_second_for_five_tries() {
        let delays: Vec<_> = Backoff::DOWNLOAD.delays().collect();
        assert_eq!(delays, vec![secs(1), secs(2), secs(4), secs(8)]);
    }

    #[test]
    fn delay_table() {
        let cases = [
            // (base, factor, cap, failures, expected)
            (secs(1), 2, secs(60), 0, secs(0)),
            (secs(1), 2, secs(60), 1, secs(1)),
            (secs(1), 2, secs(60), 2, secs(2)),
            (secs(1), 2, secs(60), 6, secs(32)),
            (secs(1), 2, secs(60), 7, secs(60)),
            (secs(1), 2, secs(60), 8, secs(60)),
            (secs(1), 2, secs(60), 1000, secs(60)),
            (secs(1), 2, secs(60), u32::MAX, secs(60)),
            (ms(10), 2, ms(600), 4, ms(80)),
            (ms(10), 3, ms(600), 3, ms(90)),
            (ms(10), 1, ms(600), 9, ms(10)),
            (ms(10), 0, ms(600), 9, ms(10)),
            (secs(5), 2, secs(3), 1, secs(3)),
        ];
        for (base, factor, cap, failures, expected) in cases {
            let b = Backoff {
                base,
                factor,
                cap,
                max_tries: None,
                jitter: Jitter::None,
            };
            assert_eq!(b.delay(failures), expected, "{b:?} failures={failures}");
        }
    }

    #[test]
    fn number_of_delays_follows_max_tries() {
        let cases = [(Some(0), 0), (Some(1), 0), (Some(2), 1), (Some(5), 4)];
        for (max_tries, expected) in cases {
            let b = Backoff::DOWNLOAD.with_max_tries(max_tries);
            assert_eq!(b.delays().count(), expected, "{max_tries:?}");
        }
        let endless = Backoff::DOWNLOAD.with_max_tries(None);
        let first: Vec<_> = endless.delays().take(9).collect();
        assert_eq!(first.last(), Some(&secs(60)));
    }

    #[test]
    fn allows_another_table() {
        let cases = [
            (Some(5), 0, true),
            (Some(5), 4, true),
            (Some(5), 5, false),
            (Some(5), 6, false),
            (Some(1), 1, false),
            (None, u32::MAX, true),
        ];
        for (max_tries, done, expected) in cases {
            let b = Backoff::DOWNLOAD.with_max_tries(max_tries);
            assert_eq!(b.allows_another(done), expected, "{max_tries:?} {done}");
        }
    }

    #[test]
    fn with_base_keeps_the_shape() {
        let b = Backoff::DOWNLOAD.with_base(ms(1));
        assert_eq!(b.cap, ms(60));
        let delays: Vec<_> = b.delays().collect();
        assert_eq!(delays, vec![ms(1), ms(2), ms(4), ms(8)]);
    }

    #[test]
    fn jitter_table() {
        let cap = secs(60);
        let cases = [
            (secs(8), Jitter::None, 0.7, secs(8)),
            (secs(8), Jitter::Full, 0.0, secs(0)),
            (secs(8), Jitter::Full, 0.5, secs(4)),
            (secs(8), Jitter::Full, 2.0, secs(8)),
            (secs(8), Jitter::Full, f64::NAN, secs(0)),
            (secs(10), Jitter::Proportional(0.2), 0.0, secs(8)),
            (secs(10), Jitter::Proportional(0.2), 0.5, secs(10)),
            (secs(10), Jitter::Proportional(0.2), 1.0, secs(12)),
            (secs(60), Jitter::Proportional(0.2), 1.0, secs(60)),
            (secs(10), Jitter::Proportional(7.0), 0.0, secs(0)),
            (secs(10), Jitter::Proportional(-1.0), 0.9, secs(10)),
            (secs(10), Jitter::Down(0.5), 0.0, secs(10)),
            (secs(10), Jitter::Down(0.5), 0.5, ms(7500)),
            (secs(10), Jitter::Down(0.5), 1.0, secs(5)),
            (secs(10), Jitter::Down(1.0), 0.5, secs(5)),
            (secs(10), Jitter::Down(3.0), 1.0, secs(0)),
            (secs(10), Jitter::Down(f64::NAN), 1.0, secs(10)),
            (secs(10), Jitter::Down(0.5), f64::NAN, secs(10)),
        ];
        for (delay, jitter, unit, expected) in cases {
            let got = apply_jitter(delay, cap, jitter, unit);
            let diff = got.abs_diff(expected);
            assert!(
                diff < ms(1),
                "{delay:?} {jitter:?} {unit} → {got:?}, want {expected:?}"
            );
        }
    }

    /// An RNG that always yields the same word, so jittered schedules are exact.
    struct FixedRng(u64);

    impl rand::RngCore for FixedRng {
        fn next_u32(&mut self) -> u32 {
            (self.0 >> 32) as u32
        }
        fn next_u64(&mut self) -> u64 {
            self.0
        }
        fn fill_bytes(&mut self, dst: &mut [u8]) {
            for (i, b) in dst.iter_mut().enumerate() {
                *b = self.0.to_le_bytes()[i % 8];
            }
        }
    }

    #[test]
    fn injected_rng_drives_the_jitter() {
        let b = Backoff::DOWNLOAD.with_jitter(Jitter::Full);
        let low: Vec<_> = b.jittered_delays(FixedRng(0)).collect();
        assert_eq!(low, vec![Duration::ZERO; 4]);
        let high: Vec<_> = b.jittered_delays(FixedRng(u64::MAX)).collect();
        for (got, want) in high.iter().zip(b.delays()) {
            assert!(want - *got < ms(1), "{got:?} vs {want:?}");
        }
        let forever = Backoff::FOREVER;
        let mut rng = FixedRng(u64::MAX / 2);
        // unit ≈ 0.5 → the proportional jitter lands on the schedule itself.
        let d = forever.jittered_delay(3, &mut rng);
        assert!(d.abs_diff(secs(4)) < ms(1), "{d:?}");
    }

    #[test]
    fn watch_schedule_doubles_caps_and_jitters_down() {
        let b = Backoff::WATCH.between(ms(100), secs(1));
        let ms_of = |failures, r| b.jittered(failures, r).as_millis();
        assert_eq!(ms_of(0, 0.0), 0);
        assert_eq!(
            [
                ms_of(1, 0.0),
                ms_of(2, 0.0),
                ms_of(3, 0.0),
                ms_of(4, 0.0),
                ms_of(5, 0.0)
            ],
            [100, 200, 400, 800, 1000]
        );
        assert_eq!(ms_of(1000, 0.0), 1000);
        assert_eq!(ms_of(2, 0.5), 150);
        assert_eq!(ms_of(2, 0.999_999), 100);
        let none = b.with_jitter(Jitter::None);
        assert_eq!(none.jittered(2, 0.9).as_millis(), 200);
        assert_eq!(Backoff::WATCH.delays().take(8).last(), Some(secs(30)));
        assert!(Backoff::WATCH.allows_another(u32::MAX));
    }
}
