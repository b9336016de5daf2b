//! Which URL the router should use to reach this node's Ollama, and which address the
//! Ollama that herd starts should bind.
//!
//! The router sends proxied requests to the URL a node advertises, so that URL must
//! name an address of this machine that the router can reach. On a multi-homed machine
//! (LAN, VPN, Docker bridge) only one interface may be right; the one the kernel would
//! use to send packets to the router is the best guess, and it is found without
//! sending anything by connecting a UDP socket to the router and reading its local
//! address. When the router runs on this machine, loopback is right and stays private.
//!
//! The decisions are pure ([`advertise_url`], [`ollama_bind_addr`],
//! [`parse_ollama_host`]); [`local_ip_towards`] and [`resolve_advertise_url`] are the
//! thin I/O around them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::Url;

/// Ollama's default port.
pub const OLLAMA_DEFAULT_PORT: u16 = 11434;

/// Why no advertise URL could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum AdvertiseError {
    /// `--ollama-url` / `OLLAMA_HOST` could not be understood.
    #[error("invalid Ollama address {value:?} (from --ollama-url or OLLAMA_HOST): {reason}")]
    InvalidOllamaHost { value: String, reason: String },
    /// `--advertise-url` is not something the router could connect to.
    #[error("invalid --advertise-url {value:?}: {reason}")]
    InvalidOverride { value: String, reason: String },
    /// The router URL names no host.
    #[error("the router URL {url} has no host; set ROUTER_URL or --server to http://HOST:PORT")]
    RouterWithoutHost { url: String },
    /// The router is elsewhere and this machine's address towards it is unknown.
    #[error(
        "could not tell which local address reaches the router at {router}; \
         pass --advertise-url http://THIS-MACHINE:PORT"
    )]
    NoLocalAddress { router: String },
    /// Looking up the router or probing the route to it failed.
    #[error("could not find the local address towards the router at {router}: {source}")]
    Probe {
        router: String,
        #[source]
        source: std::io::Error,
    },
}

/// Parses an `OLLAMA_HOST`-style value the way Ollama itself does: `host`, `host:port`,
/// `:port`, `scheme://host[:port][/path]`, IPv6 in brackets. No scheme means `http` and
/// port 11434; an explicit `http://` or `https://` without a port means 80 or 443; an
/// empty host means all interfaces (`0.0.0.0`); an empty value means `127.0.0.1:11434`.
pub fn parse_ollama_host(value: &str) -> Result<Url, AdvertiseError> {
    let invalid = |reason: &str| AdvertiseError::InvalidOllamaHost {
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = value.trim();
    let (scheme, rest, default_port) = match trimmed.split_once("://") {
        None => ("http", trimmed, OLLAMA_DEFAULT_PORT),
        Some(("http", rest)) => ("http", rest, 80),
        Some(("https", rest)) => ("https", rest, 443),
        Some((other, _)) => return Err(invalid(&format!("scheme {other:?} is not http or https"))),
    };
    let (hostport, path) = match rest.split_once('/') {
        Some((hostport, path)) => (hostport, path),
        None => (rest, ""),
    };
    let (host, port) = split_host_port(hostport).map_err(|reason| invalid(&reason))?;
    let port = port.unwrap_or(default_port);
    let host = match host {
        "" if hostport.is_empty() => "127.0.0.1".to_owned(),
        "" => "0.0.0.0".to_owned(),
        h => match h.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("[{ip}]"),
            Ok(IpAddr::V4(ip)) => ip.to_string(),
            Err(_) => h.to_owned(),
        },
    };
    let url = format!("{scheme}://{host}:{port}/{path}");
    Url::parse(&url).map_err(|e| invalid(&e.to_string()))
}

/// Splits `host:port`, `[v6]:port`, `host`, `v6` and `:port`.
fn split_host_port(hostport: &str) -> Result<(&str, Option<u16>), String> {
    let parse_port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("port {p:?} is not a number from 0 to 65535"))
    };
    if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| "missing ']' after an IPv6 address".to_owned())?;
        return match after.strip_prefix(':') {
            Some(port) => Ok((host, Some(parse_port(port)?))),
            None if after.is_empty() => Ok((host, None)),
            None => Err(format!("unexpected {after:?} after the IPv6 address")),
        };
    }
    if hostport.parse::<Ipv6Addr>().is_ok() {
        return Ok((hostport, None));
    }
    match hostport.rsplit_once(':') {
        Some((host, port)) => Ok((host, Some(parse_port(port)?))),
        None => Ok((hostport, None)),
    }
}

/// The host of a URL, as an address or a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Host {
    Ip(IpAddr),
    /// Lower-case, without a trailing dot.
    Domain(String),
}

/// The host of `url`; `None` for URLs without one (`unix:/x`) or with an empty one.
pub(crate) fn url_host(url: &Url) -> Option<Host> {
    let raw = url.host_str()?;
    if raw.is_empty() {
        return None;
    }
    let unbracketed = raw.trim_start_matches('[').trim_end_matches(']');
    Some(match unbracketed.parse::<IpAddr>() {
        Ok(ip) => Host::Ip(ip),
        Err(_) => Host::Domain(raw.trim_end_matches('.').to_ascii_lowercase()),
    })
}

/// Whether `url` names this machine through loopback (`localhost`, `127.0.0.0/8`, `::1`).
pub fn is_loopback(url: &Url) -> bool {
    match url_host(url) {
        Some(Host::Ip(ip)) => ip.is_loopback(),
        Some(Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
        None => false,
    }
}

fn is_unspecified(url: &Url) -> bool {
    matches!(url_host(url), Some(Host::Ip(ip)) if ip.is_unspecified())
}

/// The URL the router should use to reach this node's Ollama.
///
/// - An explicit `--advertise-url` wins (it must be an http(s) URL with a host).
/// - A router on loopback reaches Ollama on loopback: `ollama_url` as it is, with an
///   all-interfaces host (`0.0.0.0`, `::`) replaced by `127.0.0.1` / `::1`.
/// - A router elsewhere: an `ollama_url` naming a specific address or host name is what
///   the user chose and is kept; a loopback or all-interfaces one is replaced by
///   `local_ip_towards_router`, the address this machine uses to reach the router.
///   The port, scheme and path always come from `ollama_url`.
pub fn advertise_url(
    ollama_url: &Url,
    router_url: &Url,
    local_ip_towards_router: Option<IpAddr>,
    explicit_override: Option<&Url>,
) -> Result<Url, AdvertiseError> {
    if let Some(url) = explicit_override {
        check_override(url)?;
        return Ok(url.clone());
    }
    if url_host(router_url).is_none() {
        return Err(AdvertiseError::RouterWithoutHost {
            url: router_url.to_string(),
        });
    }
    let router_is_local = is_loopback(router_url);
    let replace_with = if router_is_local {
        match url_host(ollama_url) {
            Some(Host::Ip(IpAddr::V4(ip))) if ip.is_unspecified() => {
                Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
            }
            Some(Host::Ip(IpAddr::V6(ip))) if ip.is_unspecified() => {
                Some(IpAddr::V6(Ipv6Addr::LOCALHOST))
            }
            _ => None,
        }
    } else if is_loopback(ollama_url)
        || is_unspecified(ollama_url)
        || url_host(ollama_url).is_none()
    {
        match local_ip_towards_router {
            Some(ip) => Some(ip),
            None => {
                return Err(AdvertiseError::NoLocalAddress {
                    router: router_url.to_string(),
                });
            }
        }
    } else {
        None
    };
    let mut url = ollama_url.clone();
    if let Some(ip) = replace_with {
        url.set_ip_host(ip)
            .map_err(|()| AdvertiseError::InvalidOllamaHost {
                value: ollama_url.to_string(),
                reason: "it cannot carry a host".to_owned(),
            })?;
    }
    Ok(url)
}

fn check_override(url: &Url) -> Result<(), AdvertiseError> {
    let invalid = |reason: &str| AdvertiseError::InvalidOverride {
        value: url.to_string(),
        reason: reason.to_owned(),
    };
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if url_host(url).is_none() {
        return Err(invalid("it names no host"));
    }
    if is_unspecified(url) {
        return Err(invalid(
            "0.0.0.0 and :: are listen addresses, not addresses to connect to",
        ));
    }
    Ok(())
}

/// The address (`OLLAMA_HOST` value, `host:port`) the `ollama serve` that herd starts
/// should listen on.
///
/// - Advertised on loopback (router on this machine): exactly `ollama_url`'s address,
///   so Ollama stays private to the machine.
/// - Advertised elsewhere while `ollama_url` is loopback: all interfaces (`0.0.0.0`, or
///   `[::]` when the advertised address is IPv6, which Linux also serves IPv4 on), so
///   the router reaches it on the advertised address *and* the nodelet still reaches it
///   on `ollama_url`. Binding only the advertised address would cut the nodelet off
///   and would break when DHCP changes it.
/// - Otherwise `ollama_url`'s address: the user chose a specific one.
pub fn ollama_bind_addr(ollama_url: &Url, advertise_url: &Url) -> String {
    let port = ollama_url
        .port_or_known_default()
        .unwrap_or(OLLAMA_DEFAULT_PORT);
    let host_of = |url: &Url| match url_host(url) {
        Some(Host::Ip(IpAddr::V6(ip))) => format!("[{ip}]"),
        Some(Host::Ip(ip)) => ip.to_string(),
        Some(Host::Domain(d)) => d,
        None => Ipv4Addr::UNSPECIFIED.to_string(),
    };
    if !is_loopback(advertise_url) && is_loopback(ollama_url) {
        let all = match url_host(advertise_url) {
            Some(Host::Ip(IpAddr::V6(_))) => "[::]",
            _ => "0.0.0.0",
        };
        return format!("{all}:{port}");
    }
    format!("{}:{port}", host_of(ollama_url))
}

/// The local address this machine uses to reach `router_url`. Connecting a UDP socket
/// only asks the kernel for a route; no packet is sent.
pub async fn local_ip_towards(router_url: &Url) -> Result<IpAddr, AdvertiseError> {
    let router = router_url.to_string();
    let port = router_url.port_or_known_default().unwrap_or(80);
    let targets: Vec<SocketAddr> = match url_host(router_url) {
        Some(Host::Ip(ip)) => vec![SocketAddr::new(ip, port)],
        Some(Host::Domain(name)) => tokio::net::lookup_host((name.as_str(), port))
            .await
            .map_err(|source| AdvertiseError::Probe {
                router: router.clone(),
                source,
            })?
            .collect(),
        None => return Err(AdvertiseError::RouterWithoutHost { url: router }),
    };
    let mut last_error = None;
    for target in targets {
        let bind: SocketAddr = if target.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let probe = async {
            let socket = tokio::net::UdpSocket::bind(bind).await?;
            socket.connect(target).await?;
            socket.local_addr()
        };
        match probe.await {
            Ok(local) => return Ok(local.ip()),
            Err(e) => last_error = Some(e),
        }
    }
    match last_error {
        Some(source) => Err(AdvertiseError::Probe { router, source }),
        None => Err(AdvertiseError::NoLocalAddress { router }),
    }
}

/// [`advertise_url`] with the local address probed when it is needed.
pub async fn resolve_advertise_url(
    ollama_url: &Url,
    router_url: &Url,
    explicit_override: Option<&Url>,
) -> Result<Url, AdvertiseError> {
    let needs_probe = explicit_override.is_none() && !is_loopback(router_url);
    let local_ip = if needs_probe {
        Some(local_ip_towards(router_url).await?)
    } else {
        None
    };
    advertise_url(ollama_url, router_url, local_ip, explicit_override)
}

/// How a URL is written into `spec.ollamaUrl`: as people write it, without
/// the trailing slash the URL type adds to an empty path
/// (`http://10.0.0.5:11434`, `http://gw.local/ollama`).
pub fn spec_url(url: &Url) -> String {
    let s = url.as_str();
    if url.query().is_none() && url.fragment().is_none() {
        s.trim_end_matches('/').to_owned()
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_urls_have_no_trailing_slash() {
        for (url, want) in [
            ("http://10.0.0.5:11434/", "http://10.0.0.5:11434"),
            ("http://10.0.0.5:11434", "http://10.0.0.5:11434"),
            ("http://gw.local/ollama/", "http://gw.local/ollama"),
            ("http://[::1]:11434/", "http://[::1]:11434"),
        ] {
            let parsed = Url::parse(url).expect("url");
            assert_eq!(spec_url(&parsed), want, "{url}");
        }
    }

    fn url(s: &str) -> Url {
        Url::parse(s).expect("test URL parses")
    }

    #[test]
    fn parse_ollama_host_table() {
        let cases = [
            ("", "http://127.0.0.1:11434/"),
            ("127.0.0.1", "http://127.0.0.1:11434/"),
            ("127.0.0.1:11434", "http://127.0.0.1:11434/"),
            ("0.0.0.0", "http://0.0.0.0:11434/"),
            ("0.0.0.0:8000", "http://0.0.0.0:8000/"),
            (":11500", "http://0.0.0.0:11500/"),
            ("example.com", "http://example.com:11434/"),
            ("example.com:56789", "http://example.com:56789/"),
            ("http://example.com", "http://example.com/"),
            ("https://example.com", "https://example.com/"),
            (
                "https://example.com:8443/ollama",
                "https://example.com:8443/ollama",
            ),
            ("::1", "http://[::1]:11434/"),
            ("[::1]", "http://[::1]:11434/"),
            ("[::1]:4321", "http://[::1]:4321/"),
            ("http://[0:0:0:0:0:0:0:1]:5000", "http://[::1]:5000/"),
            ("  10.1.2.3:11434  ", "http://10.1.2.3:11434/"),
        ];
        for (input, expected) in cases {
            let got = parse_ollama_host(input).map(|u| u.to_string());
            assert_eq!(got.ok().as_deref(), Some(expected), "{input:?}");
        }
        for bad in ["ftp://host", "host:99999", "host:abc", "[::1", "[::1]x"] {
            let err = parse_ollama_host(bad).expect_err(bad).to_string();
            assert!(err.contains(bad.trim()), "{err}");
        }
    }

    #[test]
    fn advertise_url_table() {
        let lan = Some("192.168.1.20".parse::<IpAddr>().expect("ip"));
        let lan6 = Some("fd00::20".parse::<IpAddr>().expect("ip"));
        // (--ollama-url, router URL, local address towards the router, --advertise-url, expected)
        type Case<'a> = (&'a str, &'a str, Option<IpAddr>, Option<&'a str>, &'a str);
        let cases: &[Case] = &[
            // Router on this machine: loopback stays loopback.
            (
                "http://127.0.0.1:11434",
                "http://localhost:8080",
                None,
                None,
                "http://127.0.0.1:11434/",
            ),
            (
                "http://127.0.0.1:11434",
                "http://127.0.0.1:8080",
                lan,
                None,
                "http://127.0.0.1:11434/",
            ),
            (
                "http://localhost:11434",
                "http://[::1]:8080",
                None,
                None,
                "http://localhost:11434/",
            ),
            (
                "http://0.0.0.0:11434",
                "http://localhost:8080",
                None,
                None,
                "http://127.0.0.1:11434/",
            ),
            (
                "http://[::]:11434",
                "http://localhost:8080",
                None,
                None,
                "http://[::1]:11434/",
            ),
            // Router elsewhere: the address towards it, with Ollama's port.
            (
                "http://127.0.0.1:11434",
                "http://router.lan:8080",
                lan,
                None,
                "http://192.168.1.20:11434/",
            ),
            (
                "http://127.0.0.1:12000",
                "http://10.0.0.1:8080",
                lan,
                None,
                "http://192.168.1.20:12000/",
            ),
            (
                "http://0.0.0.0:11434",
                "http://router.lan:8080",
                lan,
                None,
                "http://192.168.1.20:11434/",
            ),
            (
                "http://127.0.0.1:11434",
                "http://router.lan:8080",
                lan6,
                None,
                "http://[fd00::20]:11434/",
            ),
            (
                "https://localhost:443/ollama",
                "http://router:8080",
                lan,
                None,
                "https://192.168.1.20/ollama",
            ),
            // A specific address the user chose is kept.
            (
                "http://10.9.9.9:11434",
                "http://router.lan:8080",
                lan,
                None,
                "http://10.9.9.9:11434/",
            ),
            (
                "http://gpu-box:11434",
                "http://router.lan:8080",
                None,
                None,
                "http://gpu-box:11434/",
            ),
            // The override wins.
            (
                "http://127.0.0.1:11434",
                "http://router.lan:8080",
                lan,
                Some("http://public.example:80"),
                "http://public.example/",
            ),
            (
                "http://127.0.0.1:11434",
                "http://localhost:8080",
                None,
                Some("http://10.0.0.5:11434"),
                "http://10.0.0.5:11434/",
            ),
        ];
        for (ollama, router, local, explicit, expected) in cases {
            let explicit = explicit.map(url);
            let got = advertise_url(&url(ollama), &url(router), *local, explicit.as_ref())
                .map(|u| u.to_string());
            assert_eq!(
                got.ok().as_deref(),
                Some(*expected),
                "{ollama} {router} {local:?} {explicit:?}"
            );
        }
    }

    #[test]
    fn advertise_url_errors() {
        let err = advertise_url(
            &url("http://127.0.0.1:11434"),
            &url("http://router:8080"),
            None,
            None,
        )
        .expect_err("no local address");
        assert!(
            matches!(err, AdvertiseError::NoLocalAddress { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("--advertise-url"), "{err}");
        for bad in ["ftp://x:1", "http://0.0.0.0:11434", "unix:/tmp/sock"] {
            let err = advertise_url(
                &url("http://127.0.0.1:11434"),
                &url("http://localhost:8080"),
                None,
                Some(&url(bad)),
            )
            .expect_err(bad);
            assert!(
                matches!(err, AdvertiseError::InvalidOverride { .. }),
                "{bad}: {err}"
            );
        }
        let err = advertise_url(
            &url("http://127.0.0.1:11434"),
            &url("unix:/router"),
            None,
            None,
        )
        .expect_err("router without host");
        assert!(
            matches!(err, AdvertiseError::RouterWithoutHost { .. }),
            "{err}"
        );
    }

    #[test]
    fn bind_addr_table() {
        let cases = [
            // Router local → stay on loopback.
            (
                "http://127.0.0.1:11434",
                "http://127.0.0.1:11434",
                "127.0.0.1:11434",
            ),
            (
                "http://localhost:11500",
                "http://localhost:11500",
                "localhost:11500",
            ),
            ("http://[::1]:11434", "http://[::1]:11434", "[::1]:11434"),
            // Router elsewhere, Ollama configured on loopback → all interfaces.
            (
                "http://127.0.0.1:11434",
                "http://192.168.1.20:11434",
                "0.0.0.0:11434",
            ),
            (
                "http://127.0.0.1:12000",
                "http://router-facing.example:12000",
                "0.0.0.0:12000",
            ),
            (
                "http://127.0.0.1:11434",
                "http://[fd00::20]:11434",
                "[::]:11434",
            ),
            // The user chose an address → exactly that.
            (
                "http://10.9.9.9:11434",
                "http://10.9.9.9:11434",
                "10.9.9.9:11434",
            ),
            (
                "http://0.0.0.0:11434",
                "http://192.168.1.20:11434",
                "0.0.0.0:11434",
            ),
            (
                "http://0.0.0.0:11434",
                "http://127.0.0.1:11434",
                "0.0.0.0:11434",
            ),
        ];
        for (ollama, advertised, expected) in cases {
            assert_eq!(
                ollama_bind_addr(&url(ollama), &url(advertised)),
                expected,
                "{ollama} {advertised}"
            );
        }
    }

    #[tokio::test]
    async fn loopback_router_is_reached_from_loopback() {
        let ip = local_ip_towards(&url("http://127.0.0.1:8080"))
            .await
            .expect("probe");
        assert!(ip.is_loopback(), "{ip}");
        // A loopback router needs no probe at all.
        let got = resolve_advertise_url(
            &url("http://127.0.0.1:11434"),
            &url("http://localhost:8080"),
            None,
        )
        .await
        .expect("resolve");
        assert_eq!(got.as_str(), "http://127.0.0.1:11434/");
    }
}
