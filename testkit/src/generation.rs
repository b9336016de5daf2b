//! The token engine behind every generation endpoint.
//!
//! Timeline of one request, as Ollama has it: wait for a slot (queue), load
//! the model if needed (`load_time`), evaluate the prompt (`ttft`), then one
//! token every `1 / tokens_per_sec`, then the final `done` chunk straight
//! after the last token. Nothing is sent before the first token exists, so
//! a handler awaits [`Generation::begin`] before it builds its response.

use std::time::Duration;

use futures_util::stream::{self, BoxStream, StreamExt};
use tokio::time::Instant;

use crate::config::KeepAlive;
use crate::error::ApiError;
use crate::sched::Lease;
use crate::shared::Ctx;
use crate::store::ModelEntry;
use crate::util::{hash64, nanos};

/// The fake's vocabulary. Replies cycle through it, so a reply of `n`
/// tokens is always [`reply_text`]`(n)`.
const VOCAB: &[&str] = &[
    "Hello",
    " from",
    " the",
    " fake",
    " Ollama",
    ",",
    " a",
    " faithful",
    " stand",
    "-in",
    " for",
    " herd",
    "'s",
    " tests",
    ".",
];

/// Token `i` of every reply.
pub(crate) fn token_text(i: usize) -> &'static str {
    VOCAB[i % VOCAB.len()]
}

/// The full text of a reply of `tokens` tokens: what a non-streamed answer
/// holds and what the streamed chunks concatenate to.
pub fn reply_text(tokens: usize) -> String {
    (0..tokens).map(token_text).collect()
}

/// Rough token count of a prompt: one per word, at least one (the template
/// adds some in real Ollama).
pub(crate) fn count_tokens(text: &str) -> usize {
    text.split_whitespace().count().max(1)
}

/// The numbers of the final `done: true` chunk.
#[derive(Debug, Clone)]
pub(crate) struct Final {
    pub done_reason: &'static str,
    pub total_duration: u64,
    pub load_duration: u64,
    pub prompt_eval_count: u64,
    pub prompt_eval_duration: u64,
    pub eval_count: u64,
    pub eval_duration: u64,
}

pub(crate) enum Event {
    Token(&'static str),
    Done(Final),
}

/// A generation past its time to first token, ready to emit tokens.
pub(crate) struct Generation {
    ctx: Ctx,
    lease: Option<Lease>,
    start: Instant,
    load_duration: Duration,
    prompt_eval: Duration,
    prompt_tokens: usize,
    n_tokens: usize,
    done_reason: &'static str,
    emitted: usize,
    next_at: Option<Instant>,
    finished: bool,
}

/// What a handler asks the engine for.
pub(crate) struct Plan<'a> {
    pub entry: &'a ModelEntry,
    pub prompt_tokens: usize,
    pub num_predict: Option<i64>,
    pub keep_alive: Option<KeepAlive>,
    pub start: Instant,
}

impl Generation {
    /// Queues for a slot, loads, evaluates the prompt. Returns when the first
    /// token is ready; fails with Ollama's 503 when the queue is full.
    pub(crate) async fn begin(ctx: &Ctx, plan: Plan<'_>) -> Result<Generation, ApiError> {
        let cfg = ctx.cfg();
        let lease = ctx
            .shared
            .sched
            .acquire(
                plan.entry,
                plan.keep_alive.unwrap_or(cfg.keep_alive),
                cfg.num_parallel,
                cfg.max_queue,
                &ctx.shared.stats,
                true,
            )
            .await
            .map_err(|_| ApiError::busy())?;
        lease.ensure_loaded(ctx.scaled(cfg.load_time)).await;
        let load_duration = plan.start.elapsed();
        let prompt_eval = ctx.scaled(cfg.ttft);
        tokio::time::sleep(prompt_eval).await;

        let (n_tokens, done_reason) = match plan.num_predict {
            Some(p) if p >= 0 && usize::try_from(p).is_ok_and(|p| p < cfg.tokens) => {
                (usize::try_from(p).unwrap_or(0), "length")
            }
            _ => (cfg.tokens, "stop"),
        };
        Ok(Generation {
            ctx: ctx.clone(),
            lease: Some(lease),
            start: plan.start,
            load_duration,
            prompt_eval,
            prompt_tokens: plan.prompt_tokens,
            n_tokens,
            done_reason,
            emitted: 0,
            next_at: None,
            finished: false,
        })
    }

    pub(crate) fn prompt_tokens(&self) -> usize {
        self.prompt_tokens
    }

    /// Tokens this reply will have.
    pub(crate) fn n_tokens(&self) -> usize {
        self.n_tokens
    }

    /// The next token, paced; then the final event; then `None`.
    pub(crate) async fn next(&mut self) -> Option<Event> {
        if self.finished {
            return None;
        }
        if self.emitted < self.n_tokens {
            if let Some(at) = self.next_at {
                tokio::time::sleep_until(at).await;
            }
            let base = self.next_at.unwrap_or_else(Instant::now);
            self.next_at = Some(base + self.ctx.interval());
            let t = token_text(self.emitted);
            self.emitted += 1;
            return Some(Event::Token(t));
        }
        self.finished = true;
        // The runner frees its slot as the last token comes out.
        self.lease = None;
        let eval_count = self.emitted as u64;
        Some(Event::Done(Final {
            done_reason: self.done_reason,
            total_duration: nanos(self.start.elapsed()),
            load_duration: nanos(self.load_duration),
            prompt_eval_count: self.prompt_tokens as u64,
            prompt_eval_duration: nanos(self.prompt_eval),
            eval_count,
            eval_duration: nanos(self.ctx.interval()).saturating_mul(eval_count),
        }))
    }

    pub(crate) fn into_stream(self) -> BoxStream<'static, Event> {
        stream::unfold(self, |mut g| async move { g.next().await.map(|e| (e, g)) }).boxed()
    }

    /// Runs to the end (a non-streamed reply): the whole text and the final
    /// numbers.
    pub(crate) async fn collect(mut self) -> (String, Final) {
        let mut text = String::new();
        loop {
            match self.next().await {
                Some(Event::Token(t)) => text.push_str(t),
                Some(Event::Done(f)) => return (text, f),
                None => {
                    // `next` always ends with `Done`; this is unreachable.
                    return (text, self.empty_final());
                }
            }
        }
    }

    fn empty_final(&self) -> Final {
        Final {
            done_reason: self.done_reason,
            total_duration: nanos(self.start.elapsed()),
            load_duration: 0,
            prompt_eval_count: 0,
            prompt_eval_duration: 0,
            eval_count: 0,
            eval_duration: 0,
        }
    }
}

/// Generate's `context`: token ids of prompt and reply, stable per input.
pub(crate) fn context_tokens(seed: &str, count: usize) -> Vec<u32> {
    (0..count)
        .map(|i| {
            #[allow(clippy::cast_possible_truncation)]
            let id = (hash64(i as u64, seed.as_bytes()) % 128_000) as u32;
            id
        })
        .collect()
}
