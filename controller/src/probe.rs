//! The active probe's decisions (pure): what a probe's answer means, and
//! what a run of results makes of the `Reachable` condition. The probe
//! itself, `GET {spec.url}/api/version` (`/v1/models` for an OpenAI node) on every node from the
//! router's side of the network, is sent by `probe_worker`.
//!
//! It catches what heartbeats cannot: a nodelet that is alive while its
//! Ollama is not, and a machine the router cannot reach though it can reach
//! the router. Results go through [`ProbeTracker`] (hysteresis: a single
//! lost probe does not take a node out of routing, a single good one brings
//! it back) and from there into the `Reachable` condition, which the node
//! reconciler writes ([`reachable_condition`]).
//!
//! Timing: a node that answers is probed every `probe_interval`; after a
//! failure the next probe comes after a quarter of it, so with the defaults
//! (5 s, 2 failures) a dead node is confirmed 1.25 s after the first failed
//! probe, 1.25–6.25 s after it died.

use herd_api::{Condition, ConditionStatus, Timestamp, conditions, find_condition};

/// How many results in a row flip the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hysteresis {
    /// Consecutive failures that make a reachable (or new) node unreachable.
    pub failure_threshold: u32,
    /// Consecutive successes that make an unreachable (or new) node reachable.
    pub success_threshold: u32,
}

impl Default for Hysteresis {
    fn default() -> Self {
        Self {
            failure_threshold: 2,
            success_threshold: 1,
        }
    }
}

/// A settled probe verdict: the latest result agrees with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeVerdict {
    pub reachable: bool,
    /// When the latest (agreeing) result was taken.
    pub at: Timestamp,
    /// The latest error, for an unreachable verdict.
    pub message: String,
}

/// The probe history of one node, reduced to what the hysteresis needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeTracker {
    failures: u32,
    successes: u32,
    reachable: Option<bool>,
    last: Option<(bool, Timestamp)>,
    last_error: String,
}

impl ProbeTracker {
    /// Adds one probe result taken at `at`. Returns true when the verdict
    /// changed (including the first verdict).
    pub fn record(&mut self, result: Result<(), String>, at: Timestamp, h: Hysteresis) -> bool {
        let before = self.reachable;
        match result {
            Ok(()) => {
                self.successes += 1;
                self.failures = 0;
                if self.successes >= h.success_threshold.max(1) {
                    self.reachable = Some(true);
                }
                self.last = Some((true, at));
            }
            Err(e) => {
                self.failures += 1;
                self.successes = 0;
                if self.failures >= h.failure_threshold.max(1) {
                    self.reachable = Some(false);
                }
                self.last = Some((false, at));
                self.last_error = e;
            }
        }
        self.reachable != before
    }

    /// The verdict, when the latest result agrees with it. While results
    /// disagree (below a threshold) there is none: the condition is left as
    /// it is.
    pub fn verdict(&self) -> Option<ProbeVerdict> {
        let reachable = self.reachable?;
        let (ok, at) = self.last?;
        (ok == reachable).then(|| ProbeVerdict {
            reachable,
            at,
            message: if reachable {
                String::new()
            } else {
                self.last_error.clone()
            },
        })
    }

    /// Whether the latest probe failed (the next one comes sooner).
    pub fn failing(&self) -> bool {
        self.failures > 0
    }
}

/// The `Reachable` condition the controller wants, or `None` to leave the
/// current one alone.
///
/// - Unreachable verdict: `False` (reason `ProbeFailed`), unless it is already
///   `False` (the proxy's `ConnectFailed` says the same; rewriting the reason
///   would only churn).
/// - Reachable verdict: `True` (reason `ProbeSucceeded`), but a `False` newer
///   than the latest successful probe is left alone: the proxy saw a failure
///   after our success, and the next probe decides.
pub fn reachable_condition(
    current: &[Condition],
    verdict: Option<&ProbeVerdict>,
) -> Option<Condition> {
    let verdict = verdict?;
    let existing = find_condition(current, conditions::REACHABLE);
    if verdict.reachable {
        match existing {
            Some(c) if c.status == ConditionStatus::True => None,
            Some(c)
                if c.status == ConditionStatus::False
                    && c.last_transition_time.is_some_and(|t| t >= verdict.at) =>
            {
                None
            }
            _ => Some(Condition::new(
                conditions::REACHABLE,
                ConditionStatus::True,
                "ProbeSucceeded",
                "the router reached the node's Ollama",
            )),
        }
    } else {
        match existing {
            Some(c) if c.status == ConditionStatus::False => None,
            _ => Some(Condition::new(
                conditions::REACHABLE,
                ConditionStatus::False,
                "ProbeFailed",
                verdict.message.clone(),
            )),
        }
    }
}

/// `{"version":"0.5.7"}` without pulling in a JSON parser for one field.
pub(crate) fn looks_like_version(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    let t = text.trim();
    t.starts_with('{') && t.ends_with('}') && t.contains("\"version\"")
}

/// Why a probe failed, in the words the node's `Reachable` condition uses.
/// Never the socket's own error text: conditions are readable by anyone who
/// may read nodes, and raw errors ("Connection refused" against "timed out"
/// on any address) would make the probe a port scanner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeFailure {
    Refused,
    Timeout,
    /// The name did not resolve, or no route to the address.
    Unreachable,
    /// The address is link-local or cloud metadata and not allowed.
    AddressNotAllowed,
    /// A 3xx: redirects are not followed, so the probe fails.
    Redirect(u16),
    /// An answer that is not 2xx.
    BadStatus(u16),
    /// A 2xx that is not Ollama's `{"version": ...}`.
    NotOllama,
    /// A 2xx to `/v1/models` that is not an OpenAI model list.
    NotOpenAi,
    /// The connection broke after it was made.
    Broken,
}

impl ProbeFailure {
    pub fn message(self) -> String {
        match self {
            Self::Refused => "refused: nothing accepts connections at the node URL".into(),
            Self::Timeout => "timeout: no answer within the probe timeout".into(),
            Self::Unreachable => {
                "unreachable: the node URL's host does not resolve or has no route".into()
            }
            Self::AddressNotAllowed => "refused by policy: the node URL resolves to a link-local or cloud metadata address (see --allow-node-addresses)".into(),
            Self::Redirect(code) => format!("redirect: answered HTTP {code}; probes do not follow redirects"),
            Self::BadStatus(code @ (401 | 403)) => {
                format!("bad answer: HTTP {code}; the backend refused the router's credentials")
            }
            Self::BadStatus(code) => format!("bad answer: HTTP {code}"),
            Self::NotOllama => "bad answer: not Ollama's {\"version\": ...}".into(),
            Self::NotOpenAi => "bad answer: not an OpenAI-compatible model list".into(),
            Self::Broken => "bad answer: the connection broke before the answer was complete".into(),
        }
    }
}

/// What a transport error says about itself, as far as classifying it goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ErrorFacts {
    pub timeout: bool,
    /// Failed while connecting (resolving included).
    pub connect: bool,
    /// The address policy refused every resolved address.
    pub policy: bool,
    /// The innermost I/O error's kind, if there is one.
    pub io_kind: Option<std::io::ErrorKind>,
}

/// The failure a transport error stands for.
pub fn classify_error(f: ErrorFacts) -> ProbeFailure {
    use std::io::ErrorKind;
    if f.policy {
        ProbeFailure::AddressNotAllowed
    } else if f.timeout || f.io_kind == Some(ErrorKind::TimedOut) {
        ProbeFailure::Timeout
    } else if f.io_kind == Some(ErrorKind::ConnectionRefused) {
        ProbeFailure::Refused
    } else if f.connect {
        ProbeFailure::Unreachable
    } else {
        ProbeFailure::Broken
    }
}

/// The failure an answer stands for, if any: `body` is read only for 2xx.
pub fn classify_answer(code: u16, body: &[u8]) -> Option<ProbeFailure> {
    match code {
        200..=299 if looks_like_version(body) => None,
        200..=299 => Some(ProbeFailure::NotOllama),
        300..=399 => Some(ProbeFailure::Redirect(code)),
        _ => Some(ProbeFailure::BadStatus(code)),
    }
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;

    #[test]
    fn failure_classification_table() {
        let facts = |timeout, connect, policy, io_kind| ErrorFacts {
            timeout,
            connect,
            policy,
            io_kind,
        };
        for (f, want) in [
            (
                facts(false, true, false, Some(ErrorKind::ConnectionRefused)),
                ProbeFailure::Refused,
            ),
            (facts(true, true, false, None), ProbeFailure::Timeout),
            (
                facts(false, true, false, Some(ErrorKind::TimedOut)),
                ProbeFailure::Timeout,
            ),
            (facts(false, true, false, None), ProbeFailure::Unreachable),
            (
                facts(false, true, false, Some(ErrorKind::Other)),
                ProbeFailure::Unreachable,
            ),
            (
                facts(false, true, true, Some(ErrorKind::Other)),
                ProbeFailure::AddressNotAllowed,
            ),
            (
                facts(false, false, false, Some(ErrorKind::ConnectionReset)),
                ProbeFailure::Broken,
            ),
        ] {
            assert_eq!(classify_error(f), want, "{f:?}");
        }
        for (code, body, want) in [
            (200, &br#"{"version":"0.5.7"}"#[..], None),
            (200, b"Ollama is running", Some(ProbeFailure::NotOllama)),
            (301, b"", Some(ProbeFailure::Redirect(301))),
            (302, b"", Some(ProbeFailure::Redirect(302))),
            (307, b"", Some(ProbeFailure::Redirect(307))),
            (404, b"", Some(ProbeFailure::BadStatus(404))),
            (
                500,
                br#"{"version":"x"}"#,
                Some(ProbeFailure::BadStatus(500)),
            ),
        ] {
            assert_eq!(classify_answer(code, body), want, "{code}");
        }
        for (f, word) in [
            (ProbeFailure::Refused, "refused"),
            (ProbeFailure::Timeout, "timeout"),
            (ProbeFailure::Redirect(302), "redirect"),
            (ProbeFailure::BadStatus(404), "bad answer"),
            (ProbeFailure::NotOllama, "bad answer"),
        ] {
            assert!(f.message().starts_with(word), "{f:?}: {}", f.message());
        }
    }

    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).expect("valid")
    }

    fn run(h: Hysteresis, results: &[bool]) -> Vec<Option<bool>> {
        let mut tr = ProbeTracker::default();
        results
            .iter()
            .enumerate()
            .map(|(i, ok)| {
                let r = if *ok { Ok(()) } else { Err("refused".into()) };
                tr.record(r, t(i as i64), h);
                tr.verdict().map(|v| v.reachable)
            })
            .collect()
    }

    #[test]
    fn hysteresis_table() {
        let d = Hysteresis::default(); // 2 failures, 1 success
        let strict = Hysteresis {
            failure_threshold: 1,
            success_threshold: 3,
        };
        let (y, n, x) = (Some(true), Some(false), None);
        type Case = (&'static str, Hysteresis, &'static [bool], Vec<Option<bool>>);
        let cases: [Case; 8] = [
            ("healthy", d, &[true, true, true], vec![y, y, y]),
            (
                "one lost probe is ignored",
                d,
                &[true, false, true],
                vec![y, x, y],
            ),
            (
                "two in a row flip it",
                d,
                &[true, false, false, false],
                vec![y, x, n, n],
            ),
            (
                "one success brings it back",
                d,
                &[false, false, true],
                vec![x, n, y],
            ),
            (
                "flapping never settles on down",
                d,
                &[true, false, true, false, true, false],
                vec![y, x, y, x, y, x],
            ),
            (
                "new node that never answers",
                d,
                &[false, false],
                vec![x, n],
            ),
            (
                "strict: first failure flips",
                strict,
                &[true, true, true, false],
                vec![x, x, y, n],
            ),
            (
                "strict: needs three successes back",
                strict,
                &[false, true, true, true],
                vec![n, x, x, y],
            ),
        ];
        for (name, h, results, want) in cases {
            assert_eq!(run(h, results), want, "{name}");
        }
    }

    #[test]
    fn record_reports_verdict_changes() {
        let h = Hysteresis::default();
        let mut tr = ProbeTracker::default();
        assert!(tr.record(Ok(()), t(0), h), "first verdict");
        assert!(!tr.record(Ok(()), t(1), h));
        assert!(!tr.record(Err("x".into()), t(2), h));
        assert!(tr.failing());
        assert!(tr.record(Err("y".into()), t(3), h));
        assert_eq!(
            tr.verdict(),
            Some(ProbeVerdict {
                reachable: false,
                at: t(3),
                message: "y".into()
            })
        );
        assert!(tr.record(Ok(()), t(4), h));
        assert!(!tr.failing());
    }

    fn cond(status: ConditionStatus, reason: &str, at: i64) -> Vec<Condition> {
        let mut c = Condition::new(conditions::REACHABLE, status, reason, "");
        c.last_transition_time = Some(t(at));
        vec![c]
    }

    fn verdict(reachable: bool, at: i64) -> ProbeVerdict {
        ProbeVerdict {
            reachable,
            at: t(at),
            message: if reachable { "" } else { "refused" }.into(),
        }
    }

    #[test]
    fn reachable_condition_table() {
        use ConditionStatus::{False, True};
        let none: Vec<Condition> = vec![];
        type Case = (
            &'static str,
            Vec<Condition>,
            Option<ProbeVerdict>,
            Option<(ConditionStatus, &'static str)>,
        );
        let cases: [Case; 8] = [
            (
                "no verdict leaves it",
                cond(True, "ProbeSucceeded", 0),
                None,
                None,
            ),
            (
                "first success",
                none.clone(),
                Some(verdict(true, 5)),
                Some((True, "ProbeSucceeded")),
            ),
            (
                "first failure verdict",
                none,
                Some(verdict(false, 5)),
                Some((False, "ProbeFailed")),
            ),
            (
                "already true",
                cond(True, "ProbeSucceeded", 0),
                Some(verdict(true, 5)),
                None,
            ),
            (
                "proxy's False older than our success is overruled",
                cond(False, "ConnectFailed", 3),
                Some(verdict(true, 5)),
                Some((True, "ProbeSucceeded")),
            ),
            (
                "proxy's False newer than our success stands",
                cond(False, "ConnectFailed", 7),
                Some(verdict(true, 5)),
                None,
            ),
            (
                "already False (by the proxy) is not rewritten",
                cond(False, "ConnectFailed", 3),
                Some(verdict(false, 5)),
                None,
            ),
            (
                "true becomes false",
                cond(True, "ProbeSucceeded", 0),
                Some(verdict(false, 5)),
                Some((False, "ProbeFailed")),
            ),
        ];
        for (name, current, v, want) in cases {
            let got = reachable_condition(&current, v.as_ref());
            assert_eq!(
                got.as_ref().map(|c| (c.status, c.reason.as_str())),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn version_bodies() {
        assert!(looks_like_version(br#"{"version":"0.5.7"}"#));
        assert!(looks_like_version(b" {\"version\": \"0.33.0\"}\n"));
        assert!(!looks_like_version(b"Ollama is running"));
        assert!(!looks_like_version(b"<html>{\"version\"}"));
    }
}
