//! Numbers and times as kubectl shows them.

use herd_api::Timestamp;

/// kubectl's `HumanDuration`: `5s`, `90s`, `3m20s`, `15m`, `2h30m`, `20h`,
/// `4d6h`, `40d`, `2y100d`. Precise where it matters (recent), short elsewhere.
pub fn duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".to_owned();
    }
    if seconds < 0 {
        return "0s".to_owned();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return with_rest(minutes, "m", seconds % 60, "s");
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return with_rest(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return with_rest(days, "d", hours % 24, "h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    if hours < 24 * 365 * 8 {
        return with_rest(days / 365, "y", days % 365, "d");
    }
    format!("{}y", days / 365)
}

fn with_rest(big: i64, big_unit: &str, rest: i64, rest_unit: &str) -> String {
    if rest == 0 {
        format!("{big}{big_unit}")
    } else {
        format!("{big}{big_unit}{rest}{rest_unit}")
    }
}

/// Time since `then` as an AGE column shows it; `<unknown>` without a time.
pub fn age(then: Option<Timestamp>, now: Timestamp) -> String {
    match then {
        Some(t) => duration(now.as_second() - t.as_second()),
        None => "<unknown>".to_owned(),
    }
}

/// An instant to the second, in UTC: `2026-01-02T03:04:05Z`.
pub fn timestamp(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `2026-01-02T03:04:05Z (5m ago)`, or `<unknown>`.
pub fn timestamp_and_age(t: Option<Timestamp>, now: Timestamp) -> String {
    match t {
        Some(t) => format!("{} ({} ago)", timestamp(t), age(Some(t), now)),
        None => "<unknown>".to_owned(),
    }
}

/// Bytes in binary units as Kubernetes writes quantities: `512Mi`, `7.6Gi`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["", "Ki", "Mi", "Gi", "Ti", "Pi"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let tenths = (value * 10.0).round();
    if unit == 0 {
        format!("{n}")
    } else if value >= 100.0 || tenths % 10.0 == 0.0 {
        format!("{value:.0}{}", UNITS[unit])
    } else {
        format!("{:.1}{}", tenths / 10.0, UNITS[unit])
    }
}

/// A percentage without decimals: `37%`.
pub fn percent(p: f64) -> String {
    format!("{:.0}%", p.clamp(0.0, 100.0))
}

/// Milliseconds, shortened: `850ms`, `1.2s`, `2m5s`.
pub fn millis(ms: f64) -> String {
    if !ms.is_finite() || ms < 0.0 {
        return "-".to_owned();
    }
    if ms > 0.0 && ms < 1.0 {
        return "<1ms".to_owned();
    }
    if ms < 1000.0 {
        return format!("{ms:.0}ms");
    }
    let s = ms / 1000.0;
    if s < 60.0 {
        return format!("{s:.1}s");
    }
    duration(s as i64)
}

/// `a=b,c=d`, or `<none>`.
pub fn labels(map: &std::collections::BTreeMap<String, String>) -> String {
    if map.is_empty() {
        return "<none>".to_owned();
    }
    map.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_like_kubectl() {
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (200, "3m20s"),
            (600, "10m"),
            (3 * 3600 - 1, "179m"),
            (3 * 3600, "3h"),
            (2 * 3600 + 30 * 60 + 3 * 3600, "5h30m"),
            (20 * 3600, "20h"),
            (4 * 86400 + 6 * 3600, "4d6h"),
            (4 * 86400, "4d"),
            (40 * 86400, "40d"),
            (2 * 365 * 86400 + 100 * 86400, "2y100d"),
            (10 * 365 * 86400, "10y"),
        ];
        for (secs, want) in cases {
            assert_eq!(duration(secs), want, "{secs}s");
        }
    }

    #[test]
    fn bytes_in_binary_units() {
        assert_eq!(bytes(0), "0");
        assert_eq!(bytes(1000), "1000");
        assert_eq!(bytes(1024), "1Ki");
        assert_eq!(bytes(1_300_000_000), "1.2Gi");
        assert_eq!(bytes(32 * 1024 * 1024 * 1024), "32Gi");
        assert_eq!(bytes(700 * 1024 * 1024), "700Mi");
        assert_eq!(bytes(25_757_220_864), "24Gi");
    }

    #[test]
    fn millis_shortened() {
        assert_eq!(millis(12.4), "12ms");
        assert_eq!(millis(0.4), "<1ms");
        assert_eq!(millis(1234.0), "1.2s");
        assert_eq!(millis(125_000.0), "2m5s");
        assert_eq!(millis(f64::NAN), "-");
    }
}
