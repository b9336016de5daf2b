//! A faithful fake Ollama for herd's tests.
//!
//! herd's router, nodelet and end-to-end tests all run against this fake,
//! so it behaves like Ollama 0.33 on the wire (see `shared/ollama-api.md`):
//! NDJSON streams with `stream` defaulting to true, nothing written before
//! the first token, Ollama's exact error strings and status codes, the
//! loopback `Host` check, the CORS check of browsers' `Origin` (default
//! origins), slots per model with a bounded queue and its 503,
//! pull progress, and the OpenAI-compatible endpoints with SSE.
//!
//! On top of that it can fail on demand ([`Fault`]), be stopped and
//! restarted on the same port, and it counts what it saw ([`Stats`]),
//! including requests whose client hung up mid-stream.
//!
//! ```no_run
//! # async fn demo() {
//! use std::time::Duration;
//! use herd_testkit::FakeOllama;
//!
//! let fake = FakeOllama::builder()
//!     .models(["llama3.2:1b", "qwen2.5:0.5b"])
//!     .ttft(Duration::from_millis(50))
//!     .tokens_per_sec(100.0)
//!     .num_parallel(2)
//!     .start()
//!     .await;
//! // Point the code under test at fake.url(), then:
//! fake.wait_for_in_flight(2).await;
//! # }
//! ```
//!
//! The `fake-ollama` binary wraps the same server for tests that need a
//! process (`fake-ollama serve` stands in for `ollama serve`).

mod body;
mod config;
mod cors;
mod error;
mod fault;
mod generation;
mod hostcheck;
mod json;
mod names;
pub mod postgres;
mod routes;
mod sched;
mod server;
mod shared;
mod stats;
mod store;
mod util;

pub mod ollama_host;

pub use config::{Api, DEFAULT_VERSION, KeepAlive};
pub use error::BUSY as BUSY_MESSAGE;
pub use fault::Fault;
pub use generation::reply_text;
pub use names::normalize_model_name;
pub use routes::embedding_vector;
pub use server::{FakeOllama, FakeOllamaBuilder, ProvidedListener};
pub use stats::Stats;
pub use store::STORE_FILE;
