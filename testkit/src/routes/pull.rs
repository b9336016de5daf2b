//! `POST /api/pull`, and the progress-stream machinery create and push use.
//!
//! A pull streams `pulling manifest`, then for each layer `pulling <first 12
//! hex of its digest>` with `digest`, `total` and `completed` (about every
//! 60 ms, scaled so the whole pull takes `pull_duration`), then `verifying
//! sha256 digest`, `writing manifest` and `success`. The model is installed
//! only when `success` goes out: a pull cut short leaves nothing behind.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::{Deserialize, Serialize};

use crate::body::{self, Body, JSON_PLAIN, NDJSON, ndjson_line};
use crate::error::ApiError;
use crate::names::{ModelRef, derive_info};
use crate::shared::Ctx;
use crate::store::ModelEntry;
use crate::util::{fake_sha256, lock};

use super::read_native;

/// Ollama's `api.ProgressResponse`.
#[derive(Serialize, Clone, Debug)]
pub(crate) struct Progress {
    status: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    digest: String,
    #[serde(skip_serializing_if = "is_zero")]
    total: u64,
    #[serde(skip_serializing_if = "is_zero")]
    completed: u64,
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(n: &u64) -> bool {
    *n == 0
}

enum Line {
    Progress(Progress),
    Error(String),
}

/// One line of a progress stream, sent after `wait`.
pub(crate) struct Step {
    wait: Duration,
    line: Line,
    install: Option<ModelEntry>,
}

impl Step {
    pub(crate) fn status(s: impl Into<String>) -> Step {
        Step {
            wait: Duration::ZERO,
            line: Line::Progress(Progress {
                status: s.into(),
                digest: String::new(),
                total: 0,
                completed: 0,
            }),
            install: None,
        }
    }

    /// `<verb> <12 hex>` with the layer's numbers.
    pub(crate) fn layer(verb: &str, digest_hex: &str, total: u64, completed: u64) -> Step {
        Step {
            wait: Duration::ZERO,
            line: Line::Progress(Progress {
                status: format!("{verb} {}", &digest_hex[..12.min(digest_hex.len())]),
                digest: format!("sha256:{digest_hex}"),
                total,
                completed,
            }),
            install: None,
        }
    }

    pub(crate) fn error(msg: impl Into<String>) -> Step {
        Step {
            wait: Duration::ZERO,
            line: Line::Error(msg.into()),
            install: None,
        }
    }

    fn after(mut self, wait: Duration) -> Step {
        self.wait = wait;
        self
    }

    /// Installs `entry` as this step is sent.
    pub(crate) fn installing(mut self, entry: ModelEntry) -> Step {
        self.install = Some(entry);
        self
    }
}

#[derive(Serialize)]
struct ErrorLine<'a> {
    error: &'a str,
}

/// Runs `step`'s wait and side effect; returns its line.
async fn play(ctx: &Ctx, step: Step) -> Line {
    if !step.wait.is_zero() {
        tokio::time::sleep(step.wait).await;
    }
    if let Some(entry) = step.install {
        ctx.shared.install(entry);
    }
    step.line
}

/// Streams the steps as NDJSON (`stream` unset or true), or plays them all
/// and answers the last status as one JSON object (Ollama's
/// `waitForStream`: an error becomes a 500).
pub(crate) async fn respond_with_steps(
    ctx: &Ctx,
    steps: Vec<Step>,
    stream: bool,
) -> Response<Body> {
    if !stream {
        let mut last = None;
        for step in steps {
            match play(ctx, step).await {
                Line::Progress(p) => last = Some(p),
                Line::Error(e) => {
                    return body::response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        Some(JSON_PLAIN),
                        Body::full(body::to_json_bytes(&ErrorLine { error: &e })),
                    );
                }
            }
        }
        let last = last.unwrap_or_else(|| Progress {
            status: String::new(),
            digest: String::new(),
            total: 0,
            completed: 0,
        });
        return body::response(
            StatusCode::OK,
            Some(JSON_PLAIN),
            Body::full(body::to_json_bytes(&last)),
        );
    }
    let ctx = ctx.clone();
    let queue: VecDeque<Step> = steps.into();
    let lines = stream::unfold((ctx, queue), |(ctx, mut queue)| async move {
        let step = queue.pop_front()?;
        let bytes: Bytes = match play(&ctx, step).await {
            Line::Progress(p) => ndjson_line(&p),
            Line::Error(e) => {
                queue.clear();
                ndjson_line(&ErrorLine { error: &e })
            }
        };
        Some((bytes, (ctx, queue)))
    });
    body::streaming(NDJSON, lines)
}

/// The layers of a model and their sizes.
pub(crate) fn layers(base: &str, size: u64) -> [(&'static str, u64); 4] {
    let _ = base;
    [
        ("model", size.saturating_sub(9_237)),
        ("template", 1_429),
        ("license", 7_712),
        ("params", 96),
    ]
}

fn pull_steps(ctx: &Ctx, canonical: &str, present: bool) -> Vec<Step> {
    let total = if present {
        Duration::ZERO
    } else {
        ctx.scaled(ctx.cfg().pull_duration)
    };
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let ticks = ((total.as_secs_f64() / 0.060).round() as u32).max(1);
    let tick = total / ticks;
    let base = canonical.to_ascii_lowercase();
    let info = derive_info(canonical);

    let mut steps = vec![Step::status("pulling manifest")];
    for (i, (kind, size)) in layers(canonical, info.size).into_iter().enumerate() {
        let digest = fake_sha256(&["layer", kind, &base]);
        if i == 0 && !total.is_zero() {
            steps.push(Step::layer("pulling", &digest, size, 0));
            for k in 1..=u64::from(ticks) {
                let done = size / u64::from(ticks) * k
                    + if k == u64::from(ticks) {
                        size % u64::from(ticks)
                    } else {
                        0
                    };
                steps.push(Step::layer("pulling", &digest, size, done).after(tick));
            }
        } else {
            steps.push(Step::layer("pulling", &digest, size, size));
        }
    }
    steps.push(Step::status("verifying sha256 digest"));
    steps.push(Step::status("writing manifest"));
    steps.push(Step::status("success").installing(ModelEntry::new(canonical.to_owned())));
    steps
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct PullRequest {
    model: Option<String>,
    name: Option<String>,
    insecure: Option<bool>,
    stream: Option<bool>,
}

pub(crate) async fn pull(ctx: &Ctx, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let r: PullRequest = read_native(req, "api.PullRequest").await?;
    let model = r
        .model
        .filter(|m| !m.is_empty())
        .or(r.name)
        .unwrap_or_default();
    let canonical = ModelRef::parse(&model)
        .ok_or_else(|| ApiError::bad_request("invalid model name"))?
        .display();
    let stream = r.stream != Some(false);
    let (present, pullable) = {
        let store = lock(&ctx.shared.store);
        (
            store.get(&canonical).is_some(),
            store.is_pullable(&canonical),
        )
    };
    let steps = if present || pullable {
        pull_steps(ctx, &canonical, present)
    } else {
        vec![
            Step::status("pulling manifest"),
            Step::error("pull model manifest: file does not exist"),
        ]
    };
    Ok(respond_with_steps(ctx, steps, stream).await)
}
