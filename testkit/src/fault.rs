//! Fault modes: the ways a real Ollama machine fails, on demand.

use std::fmt;
use std::str::FromStr;

/// A failure the fake injects, set with [`FakeOllama::set_fault`] (every path)
/// or [`FakeOllama::set_fault_on`] (one path) while the server runs.
///
/// Each mode mirrors something the router and the nodelet meet in the field:
/// a machine that is down, a stuck process, a crash mid-answer, an overloaded
/// box, an error page from a broken install, a proxy that answers nonsense.
///
/// [`FakeOllama::set_fault`]: crate::FakeOllama::set_fault
/// [`FakeOllama::set_fault_on`]: crate::FakeOllama::set_fault_on
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// The listener is closed and open connections are dropped, so new
    /// connects get `ECONNREFUSED` (a machine whose Ollama is not running).
    /// Scoped to one path it drops that request's connection without answer.
    RefuseConnections,
    /// Requests are read and never answered, not even with headers (a stuck
    /// model load). The connection stays open until the client gives up.
    Hang,
    /// The connection is closed abruptly after this many body chunks (an
    /// Ollama crash mid-stream). `0` closes it before the status line; a
    /// non-streamed reply is cut after its first half.
    DieMidStream {
        /// Chunks (NDJSON lines, SSE events) sent before the connection dies.
        after_chunks: usize,
    },
    /// Every delay (time to first token, per token, load, pull) is
    /// multiplied by `factor` (an overloaded or thermally throttled machine).
    SlowDown {
        /// `2.0` makes everything twice as slow.
        factor: f64,
    },
    /// Answers `code` with `body` before any work (sent as JSON when it
    /// parses as JSON, otherwise as text), e.g. 503 or 500 on every request.
    Status {
        /// HTTP status code.
        code: u16,
        /// Response body.
        body: String,
    },
    /// Answers 200 with bytes that are not JSON (a captive portal or a
    /// misconfigured proxy in front of Ollama).
    Garbage,
}

impl Fault {
    /// `Status` with the given code and body.
    pub fn status(code: u16, body: impl Into<String>) -> Fault {
        Fault::Status {
            code,
            body: body.into(),
        }
    }

    /// The 503 Ollama sends when its queue is full, verbatim.
    pub fn busy() -> Fault {
        Fault::status(
            503,
            r#"{"error":"server busy, please try again.  maximum pending requests exceeded"}"#,
        )
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::RefuseConnections => f.write_str("refuse"),
            Fault::Hang => f.write_str("hang"),
            Fault::DieMidStream { after_chunks } => write!(f, "die-mid-stream:{after_chunks}"),
            Fault::SlowDown { factor } => write!(f, "slow:{factor}"),
            Fault::Status { code, body } if body.is_empty() => write!(f, "status:{code}"),
            Fault::Status { code, body } => write!(f, "status:{code}:{body}"),
            Fault::Garbage => f.write_str("garbage"),
        }
    }
}

/// Parses the `--fault` syntax of the `fake-ollama` binary: `refuse`, `hang`,
/// `die-mid-stream:N`, `slow:FACTOR`, `status:CODE[:BODY]`, `garbage`.
impl FromStr for Fault {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, arg) = match s.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (s, None),
        };
        let need = |what: &str| format!("fault {kind:?} needs {what}, e.g. {kind}:{what}");
        match (kind.trim().to_ascii_lowercase().as_str(), arg) {
            ("refuse" | "refuse-connections", None) => Ok(Fault::RefuseConnections),
            ("hang", None) => Ok(Fault::Hang),
            ("garbage", None) => Ok(Fault::Garbage),
            ("die-mid-stream" | "die", Some(n)) => n
                .trim()
                .parse()
                .map(|after_chunks| Fault::DieMidStream { after_chunks })
                .map_err(|_| need("N")),
            ("slow" | "slow-down", Some(f)) => match f.trim().parse::<f64>() {
                Ok(factor) if factor.is_finite() && factor > 0.0 => Ok(Fault::SlowDown { factor }),
                _ => Err(need("a positive FACTOR")),
            },
            ("status", Some(rest)) => {
                let (code, body) = rest.split_once(':').unwrap_or((rest, ""));
                let code: u16 = code.trim().parse().map_err(|_| need("CODE"))?;
                if !(100..=999).contains(&code) {
                    return Err(format!("status code {code} is not a valid HTTP status"));
                }
                Ok(Fault::status(code, body))
            }
            _ => Err(format!(
                "unknown fault {s:?}; expected refuse, hang, die-mid-stream:N, slow:FACTOR, \
                 status:CODE[:BODY] or garbage"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cli_syntax_and_round_trips() {
        for s in [
            "refuse",
            "hang",
            "garbage",
            "die-mid-stream:3",
            "slow:2.5",
            "status:503",
            "status:500:{\"error\":\"boom\"}",
        ] {
            let f: Fault = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(f.to_string(), s);
        }
        assert!("slow:-1".parse::<Fault>().is_err());
        assert!("status:abc".parse::<Fault>().is_err());
        assert!("explode".parse::<Fault>().is_err());
    }
}
