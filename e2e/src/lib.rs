//! The harness of herd's end-to-end suite: herd as users run it, as separate
//! processes on real sockets, broken on purpose.
//!
//! - [`Server`]: one `herd server` process (API, store, proxy, controller) with
//!   fast controller timings, restartable on the same address and data.
//! - [`Node`]: one `herd nodelet` process and the Ollama it manages, on an
//!   address of its own (127.0.0.2, 127.0.0.3, … — see [`net`]). The Ollama is
//!   `fake-ollama` brought up through the real install path from a local
//!   [`ReleaseServer`] (download, SHA-256 check, unpack, start), or a
//!   `fake-ollama` process started beside the nodelet, or any URL (an
//!   in-process [`herd_testkit::FakeOllama`] whose counters a test reads).
//! - [`SimNode`]: a node whose heartbeats this process writes (for load it
//!   reports that no real machine can be made to show on demand).
//! - [`FaultProxy`]: a TCP forwarder between the router and one Ollama that
//!   passes, delays, black-holes, refuses or resets.
//! - [`load`]: steady client load with every outcome recorded.
//!
//! Every process is killed (SIGKILL) when its handle drops, its output is
//! kept, and the tail of every log is printed when a test panics. Every wait
//! is bounded.

pub mod bins;
pub mod fault_proxy;
pub mod load;
pub mod net;
pub mod node;
pub mod process;
pub mod release;
pub mod server;
pub mod sim;
pub mod wait;

pub use fault_proxy::{FaultProxy, Mode};
pub use load::{Kind, LoadGen, Outcome, Report};
pub use node::{Node, NodeOptions, OllamaSource};
pub use process::Proc;
pub use release::ReleaseServer;
pub use server::{Server, ServerOptions};
pub use sim::SimNode;
pub use wait::{bounded, eventually};

/// The model every node of the suite holds unless a test says otherwise.
pub const MODEL: &str = "tiny:1b";

/// An HTTP client for one-off calls in tests: 30 s timeout, no idle
/// connections kept (so nothing stale survives a server restart).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .pool_max_idle_per_host(0)
        .build()
        .expect("reqwest client")
}

/// `POST {url}/api/chat` without streaming: status, `X-Herd-Node` and the body.
pub async fn chat(url: &str, model: &str) -> (u16, Option<String>, serde_json::Value) {
    let resp = http()
        .post(format!("{url}/api/chat"))
        .json(&serde_json::json!({
            "model": model,
            "messages": [{"role": "user", "content": "hi"}],
            "stream": false,
        }))
        .send()
        .await
        .expect("POST /api/chat");
    let status = resp.status().as_u16();
    let node = resp
        .headers()
        .get("x-herd-node")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = resp.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, node, body)
}
