//! `HTTP_PROXY` / `HTTPS_PROXY` / `ALL_PROXY` / `NO_PROXY`, decided by one pure function.
//!
//! The configuration is read from an explicit environment map, never from the process
//! environment behind the caller's back, so tests (which run in parallel) can each
//! describe their own environment. The rules are the common ones of curl and Go:
//!
//! - `http://` URLs use `HTTP_PROXY`, `https://` URLs use `HTTPS_PROXY`; either falls
//!   back to `ALL_PROXY`. The upper-case name wins over the lower-case one when both are
//!   set (as in Go, which Ollama is written in); empty values count as unset.
//! - A proxy value without a scheme means `http://`. Only `http://` and `https://`
//!   proxies are supported.
//! - `NO_PROXY` is a comma- or space-separated list: `*` (no proxy at all), host names
//!   (`example.com` and `.example.com` both match the name and its subdomains), IP
//!   addresses, CIDR blocks (`10.0.0.0/8`), each optionally with `:port`. Matching is
//!   case-insensitive. Loopback is *not* special: it is proxied unless listed.

use std::net::IpAddr;

use reqwest::Url;

use crate::advertise::{Host, url_host};

/// A proxy variable that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HttpProxyError {
    #[error("{var}={value:?} is not a usable proxy URL: {reason}")]
    InvalidProxy {
        var: String,
        value: String,
        reason: String,
    },
}

/// The HTTP proxy settings of the nodelet's downloads: which proxy to use for which URL.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpProxySettings {
    pub http: Option<Url>,
    pub https: Option<Url>,
    pub all: Option<Url>,
    pub no_proxy: NoProxy,
}

impl HttpProxySettings {
    /// No proxy for anything.
    pub fn none() -> HttpProxySettings {
        HttpProxySettings::default()
    }

    /// Reads the proxy variables through `get` (a variable name → its value).
    pub fn from_env<F>(get: F) -> Result<HttpProxySettings, HttpProxyError>
    where
        F: Fn(&str) -> Option<String>,
    {
        let lookup = |upper: &str| -> Option<(String, String)> {
            [upper.to_owned(), upper.to_ascii_lowercase()]
                .into_iter()
                .find_map(|name| {
                    get(&name)
                        .filter(|v| !v.trim().is_empty())
                        .map(|v| (name, v))
                })
        };
        let proxy = |upper: &str| -> Result<Option<Url>, HttpProxyError> {
            lookup(upper)
                .map(|(var, value)| parse_proxy_url(&var, &value))
                .transpose()
        };
        Ok(HttpProxySettings {
            http: proxy("HTTP_PROXY")?,
            https: proxy("HTTPS_PROXY")?,
            all: proxy("ALL_PROXY")?,
            no_proxy: lookup("NO_PROXY")
                .map(|(_, v)| NoProxy::parse(&v))
                .unwrap_or_default(),
        })
    }

    /// Reads the proxy variables from a map, e.g. one built in a test.
    pub fn from_env_map<S: std::hash::BuildHasher>(
        env: &std::collections::HashMap<String, String, S>,
    ) -> Result<HttpProxySettings, HttpProxyError> {
        HttpProxySettings::from_env(|name| env.get(name).cloned())
    }

    /// Reads the proxy variables of this process.
    pub fn from_process_env() -> Result<HttpProxySettings, HttpProxyError> {
        HttpProxySettings::from_env(|name| std::env::var(name).ok())
    }

    /// The proxy to use for `url`, or `None` to connect directly.
    pub fn proxy_for(&self, url: &Url) -> Option<&Url> {
        if self.no_proxy.matches(url) {
            return None;
        }
        let specific = match url.scheme() {
            "http" => self.http.as_ref(),
            "https" => self.https.as_ref(),
            _ => None,
        };
        specific.or(self.all.as_ref())
    }
}

fn parse_proxy_url(var: &str, value: &str) -> Result<Url, HttpProxyError> {
    let invalid = |reason: String| HttpProxyError::InvalidProxy {
        var: var.to_owned(),
        value: value.to_owned(),
        reason,
    };
    let value = value.trim();
    let with_scheme = if value.contains("://") {
        value.to_owned()
    } else {
        format!("http://{value}")
    };
    let url = Url::parse(&with_scheme).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "{}:// proxies are not supported; use an http:// proxy",
            url.scheme()
        )));
    }
    if url_host(&url).is_none() {
        return Err(invalid("it names no host".to_owned()));
    }
    Ok(url)
}

/// The parsed `NO_PROXY` list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NoProxy {
    everything: bool,
    entries: Vec<NoProxyEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum NoProxyEntry {
    Domain { name: String, port: Option<u16> },
    Ip { ip: IpAddr, port: Option<u16> },
    Cidr { network: IpAddr, prefix: u8 },
}

impl NoProxy {
    /// Parses a `NO_PROXY` value. Entries that cannot match anything (a bad CIDR or
    /// port) are dropped with a warning rather than failing the whole list.
    pub fn parse(value: &str) -> NoProxy {
        let mut out = NoProxy::default();
        for raw in value
            .split([',', ' ', '\t'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            if raw == "*" {
                out.everything = true;
                continue;
            }
            match parse_entry(raw) {
                Some(entry) => out.entries.push(entry),
                None => tracing::warn!(
                    entry = raw,
                    "ignoring a NO_PROXY entry that cannot match any host"
                ),
            }
        }
        out
    }

    /// Whether `url` must be reached directly.
    pub fn matches(&self, url: &Url) -> bool {
        if self.everything {
            return true;
        }
        let port = url.port_or_known_default();
        let (ip, domain) = match url_host(url) {
            Some(Host::Ip(ip)) => (Some(ip), None),
            Some(Host::Domain(d)) => (None, Some(d)),
            None => return false,
        };
        let port_ok = |want: &Option<u16>| want.is_none() || *want == port;
        self.entries.iter().any(|entry| match entry {
            NoProxyEntry::Domain { name, port: want } => domain.as_deref().is_some_and(|d| {
                port_ok(want)
                    && (d == name
                        || d.strip_suffix(name.as_str())
                            .is_some_and(|p| p.ends_with('.')))
            }),
            NoProxyEntry::Ip {
                ip: entry_ip,
                port: want,
            } => ip == Some(*entry_ip) && port_ok(want),
            NoProxyEntry::Cidr { network, prefix } => {
                ip.is_some_and(|ip| in_cidr(ip, *network, *prefix))
            }
        })
    }
}

fn parse_entry(raw: &str) -> Option<NoProxyEntry> {
    let lower = raw.to_ascii_lowercase();
    if let Some((net, prefix)) = lower.split_once('/') {
        let network: IpAddr = net.trim_matches(|c| c == '[' || c == ']').parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        return (prefix <= max).then_some(NoProxyEntry::Cidr { network, prefix });
    }
    if let Ok(ip) = lower.parse::<IpAddr>() {
        return Some(NoProxyEntry::Ip { ip, port: None });
    }
    if let Some(rest) = lower.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let ip = ip.parse().ok()?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some(NoProxyEntry::Ip { ip, port });
    }
    let (host, port) = match lower.rsplit_once(':') {
        Some((host, port)) => (host, Some(port.parse::<u16>().ok()?)),
        None => (lower.as_str(), None),
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(NoProxyEntry::Ip { ip, port });
    }
    let name = host
        .trim_start_matches("*.")
        .trim_start_matches('.')
        .trim_end_matches('.');
    (!name.is_empty()).then(|| NoProxyEntry::Domain {
        name: name.to_owned(),
        port,
    })
}

fn in_cidr(ip: IpAddr, network: IpAddr, prefix: u8) -> bool {
    match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn url(s: &str) -> Url {
        Url::parse(s).expect("test URL")
    }

    #[test]
    fn proxy_choice_table() {
        // (environment, target URL, proxy used)
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, Option<&'a str>);
        let cases: &[Case] = &[
            (&[], "https://github.com/x", None),
            (
                &[("HTTPS_PROXY", "http://p:3128")],
                "https://github.com/x",
                Some("http://p:3128/"),
            ),
            (&[("HTTPS_PROXY", "http://p:3128")], "http://mirror/x", None),
            (
                &[("HTTP_PROXY", "http://p:3128")],
                "http://mirror/x",
                Some("http://p:3128/"),
            ),
            (
                &[("HTTP_PROXY", "http://p:3128")],
                "https://github.com/x",
                None,
            ),
            (
                &[("https_proxy", "p2:8080")],
                "https://github.com/x",
                Some("http://p2:8080/"),
            ),
            (
                &[
                    ("HTTPS_PROXY", "http://upper:1"),
                    ("https_proxy", "http://lower:1"),
                ],
                "https://g/x",
                Some("http://upper:1/"),
            ),
            (
                &[("HTTPS_PROXY", " "), ("https_proxy", "http://lower:1")],
                "https://g/x",
                Some("http://lower:1/"),
            ),
            (
                &[("ALL_PROXY", "http://all:1")],
                "https://g/x",
                Some("http://all:1/"),
            ),
            (
                &[("ALL_PROXY", "http://all:1"), ("HTTP_PROXY", "http://h:1")],
                "http://g/x",
                Some("http://h:1/"),
            ),
            (
                &[("HTTPS_PROXY", "http://user:pw@p:3128")],
                "https://g/x",
                Some("http://user:pw@p:3128/"),
            ),
            (
                &[("HTTPS_PROXY", "http://p:1"), ("NO_PROXY", "*")],
                "https://github.com/x",
                None,
            ),
            (
                &[("HTTPS_PROXY", "http://p:1"), ("no_proxy", "github.com")],
                "https://github.com/x",
                None,
            ),
            (
                &[("HTTPS_PROXY", "http://p:1"), ("NO_PROXY", "github.com")],
                "https://objects.github.com/x",
                None,
            ),
            (
                &[("HTTPS_PROXY", "http://p:1"), ("NO_PROXY", "github.com")],
                "https://notgithub.com/x",
                Some("http://p:1/"),
            ),
            (
                &[("HTTP_PROXY", "http://p:1"), ("NO_PROXY", "127.0.0.1")],
                "http://127.0.0.1:9/x",
                None,
            ),
            (
                &[("HTTP_PROXY", "http://p:1"), ("NO_PROXY", "localhost")],
                "http://127.0.0.1:9/x",
                Some("http://p:1/"),
            ),
            (
                &[("HTTP_PROXY", "http://p:1")],
                "http://127.0.0.1:9/x",
                Some("http://p:1/"),
            ),
        ];
        for (vars, target, expected) in cases {
            let config = HttpProxySettings::from_env_map(&env(vars)).expect("valid config");
            let got = config.proxy_for(&url(target)).map(Url::as_str);
            assert_eq!(got, *expected, "{vars:?} {target}");
        }
    }

    #[test]
    fn no_proxy_table() {
        let cases = [
            ("example.com", "http://example.com/", true),
            ("example.com", "http://EXAMPLE.com./", true),
            ("example.com", "http://a.b.example.com/", true),
            ("example.com", "http://badexample.com/", false),
            (".example.com", "http://example.com/", true),
            (".example.com", "http://www.example.com/", true),
            ("*.example.com", "http://www.example.com/", true),
            ("example.com:8080", "http://example.com:8080/", true),
            ("example.com:8080", "http://example.com/", false),
            ("example.com:443", "https://example.com/", true),
            ("10.0.0.0/8", "http://10.20.30.40/", true),
            ("10.0.0.0/8", "http://11.0.0.1/", false),
            ("10.0.0.0/8", "http://ten.example/", false),
            ("0.0.0.0/0", "http://1.2.3.4/", true),
            ("192.168.1.5", "http://192.168.1.5:11434/", true),
            ("192.168.1.5:80", "http://192.168.1.5:11434/", false),
            ("127.0.0.1:9000", "http://127.0.0.1:9000/", true),
            ("::1", "http://[::1]:8080/", true),
            ("[::1]:8080", "http://[::1]:8080/", true),
            ("[::1]:8080", "http://[::1]:8081/", false),
            ("fd00::/8", "http://[fd12::1]/", true),
            ("fd00::/8", "http://10.0.0.1/", false),
            ("a.com, b.com ,c.com", "http://b.com/", true),
            ("a.com b.com", "http://b.com/", true),
            ("*", "http://anything/", true),
            ("", "http://anything/", false),
            ("10.0.0.0/99, host:notaport", "http://10.0.0.1/", false),
        ];
        for (list, target, expected) in cases {
            assert_eq!(
                NoProxy::parse(list).matches(&url(target)),
                expected,
                "NO_PROXY={list:?} {target}"
            );
        }
    }

    #[test]
    fn invalid_proxy_values_name_the_variable() {
        for (var, value) in [
            ("HTTPS_PROXY", "socks5://p:1080"),
            ("http_proxy", "http://"),
            ("ALL_PROXY", "http://a b"),
        ] {
            let err = HttpProxySettings::from_env_map(&env(&[(var, value)])).expect_err(value);
            let msg = err.to_string();
            assert!(msg.contains(var) && msg.contains(value.trim()), "{msg}");
        }
    }
}
