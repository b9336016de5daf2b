//! Small helpers: deterministic hashing, fake digests, base64, time and locks.
//!
//! The fake must give the same digest, sizes and vectors for the same input on
//! every run and on every fake instance (a router merging `/api/tags` from two
//! fakes dedups by digest), so everything here is a pure function of its input.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// Locks a mutex, ignoring poisoning: a panicking test thread must not wedge
/// the fake for every later request.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(PoisonError::into_inner)
}

/// splitmix64 finaliser: spreads the bits of a weak hash.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a over `data`, seeded, then mixed. Not cryptographic; only stable.
pub(crate) fn hash64(seed: u64, data: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325_u64 ^ mix64(seed);
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(h)
}

/// 64 lowercase hex characters derived from `parts`: looks like a sha256
/// digest, which is all a client can check without the blob itself.
pub(crate) fn fake_sha256(parts: &[&str]) -> String {
    let joined = parts.join("\u{0}");
    (0..4u64)
        .map(|i| format!("{:016x}", hash64(i, joined.as_bytes())))
        .collect()
}

pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let idx = |shift: u32| char::from(ALPHABET[((n >> shift) & 63) as usize]);
        out.push(idx(18));
        out.push(idx(12));
        out.push(if chunk.len() > 1 { idx(6) } else { '=' });
        out.push(if chunk.len() > 2 { idx(0) } else { '=' });
    }
    out
}

/// `created_at` as Go's `time.Time` marshals a UTC time: RFC 3339 with
/// nanoseconds, trailing zeros trimmed (jiff's `Display` does the same).
pub(crate) fn now_rfc3339() -> String {
    Timestamp::now().to_string()
}

pub(crate) fn unix_now() -> i64 {
    Timestamp::now().as_second()
}

/// `ts + d`, saturating at the largest timestamp jiff can represent.
pub(crate) fn ts_add(ts: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|sd| ts.checked_add(sd).ok())
        .unwrap_or(Timestamp::MAX)
}

/// What Go prints for `time.Now().Add(math.MaxInt64)`: about 292 years on.
/// Ollama shows that as `expires_at` of a model kept alive forever.
pub(crate) fn forever_from(ts: Timestamp) -> Timestamp {
    ts_add(ts, Duration::from_nanos(i64::MAX.unsigned_abs()))
}

/// Multiplies a duration by a fault's slow-down factor without panicking on
/// odd factors (NaN, negative, huge).
pub(crate) fn scale(d: Duration, factor: f64) -> Duration {
    if !factor.is_finite() || factor <= 0.0 {
        return d;
    }
    Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(Duration::from_secs(86_400))
}

/// Time between two tokens at `tokens_per_sec`; zero (as fast as possible)
/// for a non-positive or non-finite rate.
pub(crate) fn token_interval(tokens_per_sec: f64) -> Duration {
    if !tokens_per_sec.is_finite() || tokens_per_sec <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(1.0 / tokens_per_sec).unwrap_or(Duration::ZERO)
}

/// Duration as whole nanoseconds, Ollama's unit for every `*_duration` field.
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A cheap pseudo-random number below `n` (OpenAI ids are `chatcmpl-<0..999>`
/// in Ollama); no need for a real RNG.
pub(crate) fn small_random(n: u64) -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let c = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = u64::try_from(Timestamp::now().as_nanosecond()).unwrap_or(0);
    mix64(t ^ c.rotate_left(32)) % n.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn fake_digest_is_stable_and_hex() {
        let a = fake_sha256(&["llama3:latest"]);
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a, fake_sha256(&["llama3:latest"]));
        assert_ne!(a, fake_sha256(&["llama3:8b"]));
    }

    #[test]
    fn timestamps_look_like_go() {
        let s = now_rfc3339();
        assert!(s.ends_with('Z'), "{s}");
        assert!(s.parse::<Timestamp>().is_ok());
        let forever = forever_from(Timestamp::UNIX_EPOCH);
        assert!(forever.to_string().starts_with("2262-"), "{forever}");
    }
}
