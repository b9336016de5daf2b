//! The fuzz targets' bodies: every parser herd runs on input from outside.
//! Each takes arbitrary bytes and must return without panicking, whatever
//! they are; the invariants it checks on the way (`assert!`) are crashes
//! too.
//!
//! The CLI's manifest parser lives in the `herd` binary crate, so its
//! module (and the kind table it uses) are compiled in here from their
//! source files.

#![allow(dead_code)]

use herd_api::{LabelSelector, ModelAssignment, ModelName, Node, Resource};

// At the crate root, so that `manifest`'s `super::kind` is `kind`.
#[path = "../../cli/src/ctl/kind.rs"]
mod kind;
#[path = "../../cli/src/ctl/manifest.rs"]
mod manifest;

/// Resource JSON as the API server decodes it, then validation and the
/// size check every write runs. Accepted objects must serialize again.
pub fn resource_json(data: &[u8]) {
    fn one<K: Resource>(data: &[u8]) {
        if let Ok(obj) = serde_json::from_slice::<K>(data) {
            let _ = obj.validate();
            let body = serde_json::to_vec(&obj).expect("a decoded object serializes");
            let _ = herd_api::validate::object_size(body.len());
            let again: K = serde_json::from_slice(&body).expect("what herd writes, it reads");
            assert_eq!(again, obj, "a round trip keeps the object");
            if let Some(ip) = herd_api::node_address::ip_literal_host(&String::from_utf8_lossy(data)) {
                let _ = herd_api::node_address::check(ip, &[]);
            }
        }
    }
    one::<Node>(data);
    one::<ModelAssignment>(data);
    if let Ok(patch) = serde_json::from_slice::<serde_json::Value>(data) {
        let base = Node::new(
            "n",
            herd_api::NodeSpec {
                url: "http://127.0.0.1:11434".into(),
                ..herd_api::NodeSpec::default()
            },
        );
        let _ = herd_apiserver_free_merge(&base, &patch);
    }
}

/// RFC 7386 merge of `patch` into `base`, then decoding, as a PATCH does
/// (kept here so the target does not pull in the whole API server).
fn herd_apiserver_free_merge(base: &Node, patch: &serde_json::Value) -> Option<Node> {
    fn merge(target: &mut serde_json::Value, patch: &serde_json::Value) {
        if let serde_json::Value::Object(p) = patch {
            if !target.is_object() {
                *target = serde_json::Value::Object(serde_json::Map::new());
            }
            if let serde_json::Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge(t.entry(k.clone()).or_insert(serde_json::Value::Null), v);
                    }
                }
            }
        } else {
            *target = patch.clone();
        }
    }
    let mut value = serde_json::to_value(base).ok()?;
    merge(&mut value, patch);
    let node: Node = serde_json::from_value(value).ok()?;
    let _ = node.validate();
    Some(node)
}

/// Manifests as `herd apply -f` reads them, YAML and JSON.
pub fn manifest(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for name in ["fuzz.yaml", "fuzz.json"] {
        let source = manifest::Source::new(name, text.as_ref());
        let parsed = manifest::parse_all(&[source]);
        for p in &parsed.problems {
            assert!(p.to_string().starts_with(name), "a problem names its file: {p}");
        }
    }
}

/// Label selectors (`?labelSelector=` and `nodeSelector`), matched against
/// labels made from the same input.
pub fn label_selector(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(selector) = LabelSelector::parse(&text) {
        let labels: std::collections::BTreeMap<String, String> = text
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let _ = selector.matches(&labels);
        let _ = selector.matches(&std::collections::BTreeMap::new());
    }
}

/// The proxy's reading of a request body's model, then the model name
/// parser it feeds.
pub fn proxy_model(data: &[u8]) {
    if let Ok(model) = herd_proxy::request_model(data) {
        let _ = ModelName::parse(&model);
    }
    let _ = ModelName::parse(&String::from_utf8_lossy(data));
}

/// The translation layer on both of its outside inputs: a client's body in
/// every dialect, and a node's answer (whole, and as a stream cut in two at
/// a point the data chooses). Every answer it makes must be valid JSON or
/// JSON lines / SSE of JSON.
pub fn translate(data: &[u8]) {
    use herd_translate::{Dialect, Plan, Timing, request};
    const DIALECTS: [Dialect; 6] = [
        Dialect::OllamaChat,
        Dialect::OllamaGenerate,
        Dialect::OllamaEmbed,
        Dialect::OllamaEmbeddings,
        Dialect::AnthropicMessages,
        Dialect::OpenAiResponses,
    ];
    let cut = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    for d in DIALECTS {
        if let Ok(Plan::Forward(up, _)) = request(d, data) {
            let _: serde_json::Value =
                serde_json::from_slice(&up.body).expect("the node's request is JSON");
        }
        let seed = match d {
            Dialect::AnthropicMessages => &br#"{"model":"m","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"x"}]}"#[..],
            Dialect::OpenAiResponses => br#"{"model":"m","stream":true,"input":"x"}"#,
            _ => br#"{"model":"m","prompt":"x","input":"x","messages":[{"role":"user","content":"x"}]}"#,
        };
        if let Ok(Plan::Forward(_, reply)) = request(d, seed) {
            let answer = reply.complete(200, data, Timing::default());
            let _: serde_json::Value =
                serde_json::from_slice(&answer.body).expect("a whole answer is JSON");
            let mut s = reply.into_stream();
            let mut out = s.feed(&data[..cut]);
            out.extend(s.feed(&data[cut..]));
            out.extend(s.finish(Timing::default()));
            let _ = String::from_utf8(out).expect("a stream is UTF-8");
        }
    }
    let _ = herd_translate::parse_models(data);
}

/// Every target by name, for the drivers.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("resource_json", resource_json),
    ("manifest", manifest),
    ("label_selector", label_selector),
    ("proxy_model", proxy_model),
    ("translate", translate),
];
