use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::Timestamp;

/// One request the proxy handled, as kept in its bounded history and served
/// at `GET /apis/herd/v1/requests` (newest first).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    /// Unique per server run, increasing.
    pub id: u64,
    /// When the request arrived.
    pub time: Option<Timestamp>,
    pub method: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
    /// The node that answered (empty when none was chosen).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// HTTP status sent to the client.
    pub status: u16,
    pub stream: bool,
    /// Until the last byte went out, in milliseconds.
    pub latency_ms: f64,
    /// Until the first body byte, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<f64>,
    /// `prompt_eval_count` of the final chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_in: Option<u64>,
    /// `eval_count` of the final chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_out: Option<u64>,
    /// Nodes tried before the one that answered.
    #[serde(default, skip_serializing_if = "u32::is_zero")]
    pub retries: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// Sent to the node that served this conversation before (prefix
    /// affinity), rather than picked by load alone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub affinity: bool,
    /// Bytes of the request's rendered prefix that node was known to hold;
    /// absent when an explicit session key (`X-Herd-Session`, `user`) chose it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_bytes: Option<u64>,
}

trait IsZero {
    fn is_zero(&self) -> bool;
}
impl IsZero for u32 {
    fn is_zero(&self) -> bool {
        *self == 0
    }
}
