//! `OLLAMA_HOST` parsing, as Ollama's `envconfig.Host()` does it.
//!
//! The same variable tells `ollama serve` where to listen and the `ollama`
//! CLI where to connect, so the fake binary reads it the same way for both.

/// A parsed `OLLAMA_HOST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OllamaHost {
    /// `http` or `https`.
    pub scheme: String,
    /// Host or IP, without brackets; empty means every interface.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl OllamaHost {
    /// `host:port` for binding or connecting (IPv6 in brackets; an empty
    /// host binds every interface).
    pub fn host_port(&self) -> String {
        let host = if self.host.is_empty() {
            "0.0.0.0"
        } else {
            &self.host
        };
        if host.contains(':') {
            format!("[{host}]:{}", self.port)
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// `scheme://host:port`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.host_port())
    }
}

/// Parses like Ollama: `host:port`, `scheme://host:port`, a bare host or IP
/// (default port 11434; 80/443 when an http/https scheme is given), `:port`
/// (every interface). Empty means `127.0.0.1:11434`. A bad port falls back
/// to the default, as Ollama does.
pub fn parse(s: &str) -> OllamaHost {
    let s = s.trim();
    let (scheme, hostport, default_port) = match s.split_once("://") {
        None => ("http", s, 11434),
        Some(("http", rest)) => ("http", rest, 80),
        Some(("https", rest)) => ("https", rest, 443),
        Some((other, rest)) => (other, rest, 11434),
    };
    let hostport = hostport.split('/').next().unwrap_or("");
    let (host, port) = match split_host_port(hostport) {
        Some((h, p)) => (h.to_owned(), p.parse::<u16>().unwrap_or(default_port)),
        None => {
            let bare = hostport.trim_start_matches('[').trim_end_matches(']');
            let host = if bare.is_empty() { "127.0.0.1" } else { bare };
            (host.to_owned(), default_port)
        }
    };
    OllamaHost {
        scheme: scheme.to_owned(),
        host,
        port,
    }
}

/// Go's `net.SplitHostPort` for the cases that matter here.
fn split_host_port(s: &str) -> Option<(&str, &str)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        return Some((h, after.strip_prefix(':')?));
    }
    let (h, p) = s.rsplit_once(':')?;
    (!h.contains(':')).then_some((h, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(s: &str) -> String {
        parse(s).host_port()
    }

    #[test]
    fn parses_like_envconfig() {
        assert_eq!(hp(""), "127.0.0.1:11434");
        assert_eq!(hp("0.0.0.0"), "0.0.0.0:11434");
        assert_eq!(hp("127.0.0.1:8080"), "127.0.0.1:8080");
        assert_eq!(hp("http://127.0.0.1:8080"), "127.0.0.1:8080");
        assert_eq!(hp("http://10.0.0.1"), "10.0.0.1:80");
        assert_eq!(hp("https://example.com"), "example.com:443");
        assert_eq!(hp(":9999"), "0.0.0.0:9999");
        assert_eq!(hp("[::1]:11434"), "[::1]:11434");
        assert_eq!(hp("::1"), "[::1]:11434");
        assert_eq!(hp("localhost:x"), "localhost:11434");
        assert_eq!(hp("http://127.0.0.1:5/api"), "127.0.0.1:5");
        assert_eq!(parse("https://h:1").url(), "https://h:1");
    }
}
