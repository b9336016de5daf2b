//! Steady client load against the router, every outcome recorded.
//!
//! Workers loop over a mix of requests until stopped (or a hard limit):
//! non-streaming `/api/chat`, streaming `/api/chat` (NDJSON read to the end,
//! which must be a `done:true` object) and non-streaming
//! `/v1/chat/completions`. Each outcome says which node answered
//! (`X-Herd-Node`) or what went wrong.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::watch;

/// The kinds of request the load sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Chat,
    ChatStream,
    OpenAiChat,
}

impl Kind {
    pub fn streaming(self) -> bool {
        self == Kind::ChatStream
    }
}

/// One request's fate.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub kind: Kind,
    /// When it was sent, from the load's start.
    pub sent: Duration,
    pub took: Duration,
    /// The node that answered (`X-Herd-Node`), when one did.
    pub node: Option<String>,
    /// `None` when it succeeded; else the status and what was read.
    pub error: Option<String>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

/// Every outcome of one load run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub outcomes: Vec<Outcome>,
}

impl Report {
    pub fn total(&self) -> usize {
        self.outcomes.len()
    }

    pub fn failures(&self) -> Vec<&Outcome> {
        self.outcomes.iter().filter(|o| !o.ok()).collect()
    }

    /// Failed requests that were not streaming.
    pub fn failed_non_streaming(&self) -> Vec<&Outcome> {
        self.outcomes
            .iter()
            .filter(|o| !o.ok() && !o.kind.streaming())
            .collect()
    }

    /// Requests answered by `node`.
    pub fn served_by(&self, node: &str) -> usize {
        self.outcomes
            .iter()
            .filter(|o| o.ok() && o.node.as_deref() == Some(node))
            .count()
    }

    /// Requests answered by `node` that were sent after `from` (load time).
    pub fn served_by_after(&self, node: &str, from: Duration) -> usize {
        self.outcomes
            .iter()
            .filter(|o| o.ok() && o.sent >= from && o.node.as_deref() == Some(node))
            .count()
    }
}

/// A running load; [`LoadGen::stop`] ends it and returns the report.
pub struct LoadGen {
    pub started: Instant,
    stop: watch::Sender<bool>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl LoadGen {
    /// `workers` loops, each cycling through `mix`, against `url` for
    /// `model`, pausing `pause` between requests; never longer than `limit`.
    pub fn start(
        url: &str,
        model: &str,
        workers: usize,
        mix: &[Kind],
        pause: Duration,
        limit: Duration,
    ) -> LoadGen {
        let (stop, rx) = watch::channel(false);
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let workers = (0..workers)
            .map(|w| {
                let (url, model, client, outcomes, mut rx) = (
                    url.to_owned(),
                    model.to_owned(),
                    client.clone(),
                    outcomes.clone(),
                    rx.clone(),
                );
                let mix: Vec<Kind> = mix
                    .iter()
                    .copied()
                    .cycle()
                    .skip(w)
                    .take(mix.len().max(1))
                    .collect();
                tokio::spawn(async move {
                    let mut i = 0usize;
                    while !*rx.borrow() && started.elapsed() < limit {
                        let kind = mix[i % mix.len()];
                        i += 1;
                        let sent = started.elapsed();
                        let t = Instant::now();
                        let (node, error) = one(&client, &url, &model, kind).await;
                        let o = Outcome {
                            kind,
                            sent,
                            took: t.elapsed(),
                            node,
                            error,
                        };
                        outcomes
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(o);
                        tokio::select! {
                            () = tokio::time::sleep(pause) => {}
                            _ = rx.changed() => {}
                        }
                    }
                })
            })
            .collect();
        LoadGen {
            started,
            stop,
            outcomes,
            workers,
        }
    }

    /// Outcomes so far.
    pub fn snapshot(&self) -> Report {
        Report {
            outcomes: self
                .outcomes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }

    /// Time since the load started.
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops the workers (each finishes its current request) and reports.
    pub async fn stop(self) -> Report {
        self.stop.send_replace(true);
        for w in self.workers {
            let _ = tokio::time::timeout(Duration::from_secs(40), w).await;
        }
        let mut outcomes = self
            .outcomes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        outcomes.sort_by_key(|o| o.sent);
        Report { outcomes }
    }
}

/// Sends one request of `kind`; returns the answering node and the error.
pub async fn one(
    client: &reqwest::Client,
    url: &str,
    model: &str,
    kind: Kind,
) -> (Option<String>, Option<String>) {
    let messages = serde_json::json!([{"role": "user", "content": "hello"}]);
    let req = match kind {
        Kind::Chat => client
            .post(format!("{url}/api/chat"))
            .json(&serde_json::json!({"model": model, "messages": messages, "stream": false})),
        Kind::ChatStream => client
            .post(format!("{url}/api/chat"))
            .json(&serde_json::json!({"model": model, "messages": messages})),
        Kind::OpenAiChat => client
            .post(format!("{url}/v1/chat/completions"))
            .json(&serde_json::json!({"model": model, "messages": messages})),
    };
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return (None, Some(format!("send: {e}"))),
    };
    let status = resp.status();
    let node = resp
        .headers()
        .get("x-herd-node")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        return (node, Some(format!("{status}: {body}")));
    }
    match kind {
        Kind::Chat | Kind::OpenAiChat => match resp.json::<serde_json::Value>().await {
            Ok(v)
                if kind == Kind::Chat
                    && v["done"] == true
                    && v["message"]["content"].is_string() =>
            {
                (node, None)
            }
            Ok(v)
                if kind == Kind::OpenAiChat
                    && v["choices"][0]["message"]["content"].is_string() =>
            {
                (node, None)
            }
            Ok(v) => (node, Some(format!("unexpected body: {v}"))),
            Err(e) => (node, Some(format!("body: {e}"))),
        },
        Kind::ChatStream => {
            let mut body = resp.bytes_stream();
            let mut buf = Vec::new();
            while let Some(chunk) = body.next().await {
                match chunk {
                    Ok(c) => buf.extend_from_slice(&c),
                    Err(e) => return (node, Some(format!("stream: {e}"))),
                }
            }
            let text = String::from_utf8_lossy(&buf);
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            let last: serde_json::Value = lines
                .last()
                .and_then(|l| serde_json::from_str(l).ok())
                .unwrap_or(serde_json::Value::Null);
            if let Some(bad) = lines
                .iter()
                .find(|l| serde_json::from_str::<serde_json::Value>(l).is_err())
            {
                return (node, Some(format!("not NDJSON: {bad}")));
            }
            if last["done"] == true && lines.len() >= 2 {
                (node, None)
            } else {
                (
                    node,
                    Some(format!(
                        "stream ended without done: {}",
                        lines.last().unwrap_or(&"")
                    )),
                )
            }
        }
    }
}
