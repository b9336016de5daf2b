//! Ollama's DNS-rebinding guard (`allowedHostsMiddleware` in
//! server/routes.go).
//!
//! When Ollama listens on a loopback address it answers 403 with an empty
//! body to any request whose `Host` is not a loopback, private or unspecified
//! IP, `localhost`, the machine's hostname, or a name under `.localhost`,
//! `.local` or `.internal`. A proxy that forwards the client's `Host`
//! unchanged trips over this, which is exactly what the fake must catch.

use std::net::IpAddr;
use std::sync::OnceLock;

/// Whether a request with this `Host` header passes the check.
pub(crate) fn allowed(host_header: Option<&str>) -> bool {
    let raw = host_header.unwrap_or("").trim();
    let host = split_host(raw);
    if let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        && ip_allowed(ip)
    {
        return true;
    }
    let host = host.to_ascii_lowercase();
    if host.is_empty() || host == "localhost" {
        return true;
    }
    if machine_hostname().is_some_and(|h| h == host) {
        return true;
    }
    [".localhost", ".local", ".internal"]
        .iter()
        .any(|tld| host.ends_with(tld))
}

/// Go's `net.SplitHostPort`, falling back to the whole string.
fn split_host(raw: &str) -> &str {
    if let Some(rest) = raw.strip_prefix('[') {
        if let Some((h, port)) = rest.split_once(']')
            && (port.is_empty() || port.starts_with(':'))
        {
            return h;
        }
        return raw;
    }
    match raw.rsplit_once(':') {
        // More than one colon without brackets is a bare IPv6 address.
        Some((h, _)) if !h.contains(':') => h,
        _ => raw,
    }
}

fn ip_allowed(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_unique_local()
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| v4.is_loopback() || v4.is_private())
        }
    }
}

fn machine_hostname() -> Option<&'static str> {
    static HOSTNAME: OnceLock<Option<String>> = OnceLock::new();
    HOSTNAME
        .get_or_init(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .or_else(|_| std::fs::read_to_string("/etc/hostname"))
                .ok()
                .or_else(|| std::env::var("HOSTNAME").ok())
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
        })
        .as_deref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_ollama_rules() {
        for ok in [
            None,
            Some(""),
            Some("localhost"),
            Some("localhost:11434"),
            Some("LOCALHOST:1"),
            Some("127.0.0.1:11434"),
            Some("127.0.0.1"),
            Some("[::1]:11434"),
            Some("::1"),
            Some("10.1.2.3:80"),
            Some("192.168.1.20:11434"),
            Some("172.16.0.1"),
            Some("0.0.0.0:11434"),
            Some("[fd00::1]:1"),
            Some("node.local"),
            Some("box.internal:11434"),
            Some("app.localhost"),
        ] {
            assert!(allowed(ok), "{ok:?} should pass");
        }
        for bad in [
            Some("evil.example.com"),
            Some("evil.example.com:11434"),
            Some("8.8.8.8:11434"),
            Some("localhost.evil.com"),
            Some("[2001:db8::1]:80"),
        ] {
            assert!(!allowed(bad), "{bad:?} should be refused");
        }
    }
}
