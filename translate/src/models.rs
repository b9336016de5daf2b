//! Ollama's model listings (`/api/tags`, `/api/ps`, `/api/show`) made from
//! an OpenAI node's `/v1/models`.
//!
//! A node tells little about its models: an id, a creation time, an owner,
//! and, from llama.cpp, `meta` (parameters, size, training context). What it
//! does not tell is left empty rather than invented: no digest, no family,
//! no quantization.

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::TranslateError;
use crate::time::rfc3339;
use crate::value::to_vec;

/// One model a node lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeModel {
    /// The id requests name it by.
    pub id: String,
    /// Unix seconds (0 when the node gives none).
    pub created: i64,
    /// `owned_by`.
    pub owned_by: String,
    /// Parameters (llama.cpp's `meta.n_params`).
    pub parameters: Option<u64>,
    /// Bytes on disk (llama.cpp's `meta.size`).
    pub size: Option<u64>,
    /// Training context length (llama.cpp's `meta.n_ctx_train`; vLLM's
    /// `max_model_len`).
    pub context_length: Option<u64>,
}

/// Reads a node's `/v1/models` answer.
pub fn parse_models(body: &[u8]) -> Result<Vec<NodeModel>, TranslateError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| TranslateError::Body(e.to_string()))?;
    let data = match v.get("data") {
        Some(Value::Array(d)) => d,
        Some(Value::Null) => return Ok(Vec::new()),
        _ => return Err(TranslateError::field("data", "must be a list of models")),
    };
    data.iter()
        .enumerate()
        .map(|(i, m)| {
            let id = m
                .get("id")
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty())
                .ok_or_else(|| TranslateError::field(format!("data[{i}].id"), "is required"))?;
            let meta = |k: &str| m.get("meta").and_then(|x| x.get(k)).and_then(Value::as_u64);
            Ok(NodeModel {
                id: id.to_owned(),
                created: m.get("created").and_then(Value::as_i64).unwrap_or(0),
                owned_by: m
                    .get("owned_by")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                parameters: meta("n_params"),
                size: meta("size"),
                context_length: meta("n_ctx_train")
                    .or_else(|| m.get("max_model_len").and_then(Value::as_u64)),
            })
        })
        .collect()
}

#[derive(Serialize)]
struct Details {
    parent_model: &'static str,
    format: &'static str,
    family: &'static str,
    families: Option<Vec<String>>,
    parameter_size: String,
    quantization_level: &'static str,
}

/// `8.0B`, `135.0M`: Ollama's way of writing a parameter count.
fn parameter_size(n: Option<u64>) -> String {
    #[allow(clippy::cast_precision_loss)]
    match n {
        Some(n) if n >= 1_000_000_000 => format!("{:.1}B", n as f64 / 1e9),
        Some(n) if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        Some(n) if n > 0 => n.to_string(),
        _ => String::new(),
    }
}

fn details(m: &NodeModel) -> Details {
    Details {
        parent_model: "",
        format: "",
        family: "",
        families: None,
        parameter_size: parameter_size(m.parameters),
        quantization_level: "",
    }
}

#[derive(Serialize)]
struct Tag {
    name: String,
    model: String,
    modified_at: String,
    size: u64,
    digest: &'static str,
    details: Details,
}

/// `/api/tags` for the models (in the order given).
pub fn tags_from_models(models: &[NodeModel]) -> Vec<u8> {
    let models: Vec<Tag> = models
        .iter()
        .map(|m| Tag {
            name: m.id.clone(),
            model: m.id.clone(),
            modified_at: rfc3339(m.created),
            size: m.size.unwrap_or(0),
            digest: "",
            details: details(m),
        })
        .collect();
    to_vec(&json!({ "models": models }))
}

#[derive(Serialize)]
struct Running {
    name: String,
    model: String,
    size: u64,
    digest: &'static str,
    details: Details,
    expires_at: &'static str,
    size_vram: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    context_length: Option<u64>,
}

/// `/api/ps`: an OpenAI node serves every model it lists, so all of them
/// count as loaded, with no expiry (Go's zero time, as Ollama writes it).
pub fn ps_from_models(models: &[NodeModel]) -> Vec<u8> {
    let models: Vec<Running> = models
        .iter()
        .map(|m| Running {
            name: m.id.clone(),
            model: m.id.clone(),
            size: m.size.unwrap_or(0),
            digest: "",
            details: details(m),
            expires_at: "0001-01-01T00:00:00Z",
            size_vram: 0,
            context_length: m.context_length,
        })
        .collect();
    to_vec(&json!({ "models": models }))
}

/// `/api/show` for one model: what the node says about it, and the
/// capability every chat model has.
pub fn show_from_model(model: &NodeModel) -> Vec<u8> {
    let mut info = Map::new();
    if let Some(n) = model.parameters {
        info.insert("general.parameter_count".into(), n.into());
    }
    if let Some(c) = model.context_length {
        info.insert("general.context_length".into(), c.into());
    }
    to_vec(&json!({
        "license": "",
        "modelfile": "",
        "parameters": "",
        "template": "",
        "details": details(model),
        "model_info": info,
        "capabilities": ["completion"],
        "modified_at": rfc3339(model.created),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_from_llama_server_and_vllm() {
        let llama = br#"{"object":"list","data":[{"id":"smollm2","object":"model","created":1714564800,"owned_by":"llamacpp","meta":{"n_params":134515008,"size":270000000,"n_ctx_train":8192}}]}"#;
        let vllm = br#"{"object":"list","data":[{"id":"Qwen/Qwen2.5-0.5B","object":"model","created":1714564800,"owned_by":"vllm","max_model_len":32768}]}"#;
        let mut models = parse_models(llama).expect("llama");
        models.extend(parse_models(vllm).expect("vllm"));
        assert_eq!(models[0].parameters, Some(134_515_008));
        assert_eq!(models[1].context_length, Some(32_768));

        let tags: Value = serde_json::from_slice(&tags_from_models(&models)).expect("JSON");
        assert_eq!(tags["models"][0]["name"], "smollm2");
        assert_eq!(tags["models"][0]["modified_at"], "2024-05-01T12:00:00Z");
        assert_eq!(tags["models"][0]["size"], 270_000_000);
        assert_eq!(tags["models"][0]["details"]["parameter_size"], "134.5M");
        assert_eq!(tags["models"][1]["model"], "Qwen/Qwen2.5-0.5B");

        let ps: Value = serde_json::from_slice(&ps_from_models(&models)).expect("JSON");
        assert_eq!(ps["models"][0]["context_length"], 8192);
        assert_eq!(ps["models"][1]["expires_at"], "0001-01-01T00:00:00Z");

        let show: Value = serde_json::from_slice(&show_from_model(&models[0])).expect("JSON");
        assert_eq!(show["capabilities"], json!(["completion"]));
        assert_eq!(show["model_info"]["general.context_length"], 8192);
    }

    #[test]
    fn bad_lists_are_errors() {
        assert_eq!(parse_models(br#"{"data":null}"#), Ok(Vec::new()));
        assert!(parse_models(br#"{"data":[{"object":"model"}]}"#).is_err());
        assert!(parse_models(b"<html>").is_err());
        assert_eq!(parameter_size(Some(8_030_000_000)), "8.0B");
    }
}
