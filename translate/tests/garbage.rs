//! Whatever a client or a node sends, the translation answers with JSON
//! (or JSON lines, or SSE of JSON) and never panics: seeds, every prefix of
//! them, and bytes flipped in them, deterministically.

use herd_translate::{Dialect, Plan, Timing, request};
use serde_json::Value;

const DIALECTS: [Dialect; 6] = [
    Dialect::OllamaChat,
    Dialect::OllamaGenerate,
    Dialect::OllamaEmbed,
    Dialect::OllamaEmbeddings,
    Dialect::AnthropicMessages,
    Dialect::OpenAiResponses,
];

const SEEDS: &[&str] = &[
    r#"{"model":"m","messages":[{"role":"user","content":"hi","images":["iVBORw0KGgo="]},{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":{"a":1}}}]},{"role":"tool","content":"x"}],"options":{"temperature":0.2,"num_predict":3},"format":{"type":"object"},"think":"high","tools":[{"type":"function","function":{"name":"f"}}]}"#,
    r#"{"model":"m","max_tokens":5,"system":[{"type":"text","text":"s"}],"messages":[{"role":"user","content":[{"type":"text","text":"x"},{"type":"tool_result","tool_use_id":"t","content":"r"}]}],"tools":[{"name":"f","input_schema":{}}],"tool_choice":{"type":"any"},"stream":true}"#,
    r#"{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":"x"}]},{"type":"function_call","call_id":"c","name":"f","arguments":"{}"},{"type":"function_call_output","call_id":"c","output":"o"}],"text":{"format":{"type":"json_object"}},"stream":true}"#,
    "data: {\"id\":\"c\",\"created\":1,\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"r\",\"content\":\"Hi\",\"tool_calls\":[{\"index\":0,\"id\":\"a\",\"function\":{\"name\":\"f\",\"arguments\":\"{\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n",
    r#"{"id":"c","created":1,"choices":[{"message":{"content":"x","tool_calls":[{"id":"a","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"stop"}],"data":[{"index":0,"embedding":[1.0]}],"usage":{"prompt_tokens":1}}"#,
];

fn check_stream(d: Dialect, out: &[u8]) {
    let text = std::str::from_utf8(out).expect("UTF-8");
    match d {
        Dialect::AnthropicMessages | Dialect::OpenAiResponses => {
            for e in text.split("\n\n").filter(|e| !e.is_empty()) {
                let data = e.split_once("\ndata: ").expect("event and data").1;
                let _: Value = serde_json::from_str(data).expect("SSE data is JSON");
            }
        }
        _ => {
            for l in text.lines() {
                let _: Value = serde_json::from_str(l).expect("NDJSON line");
            }
        }
    }
}

fn exercise(data: &[u8]) {
    let cut = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    for d in DIALECTS {
        match request(d, data) {
            Ok(Plan::Forward(up, _)) => {
                let _: Value = serde_json::from_slice(&up.body).expect("request JSON");
            }
            Ok(Plan::Answer(a)) => {
                let _: Value = serde_json::from_slice(&a.body).expect("answer JSON");
            }
            Err(e) => {
                let _: Value = serde_json::from_slice(&e.answer(d).body).expect("error JSON");
            }
        }
        for stream in [false, true] {
            let seed = format!(
                r#"{{"model":"m","max_tokens":5,"prompt":"x","input":"x","messages":[{{"role":"user","content":"x"}}],"stream":{stream}}}"#
            );
            let Ok(Plan::Forward(_, reply)) = request(d, seed.as_bytes()) else {
                continue;
            };
            for status in [200, 500] {
                let a = reply.complete(status, data, Timing::default());
                let _: Value = serde_json::from_slice(&a.body).expect("whole answer JSON");
            }
            let mut s = reply.into_stream();
            let mut out = s.feed(&data[..cut]);
            out.extend(s.feed(&data[cut..]));
            out.extend(s.finish(Timing::default()));
            check_stream(d, &out);
        }
    }
    let _ = herd_translate::parse_models(data);
}

#[test]
fn seeds_prefixes_and_flipped_bytes() {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for seed in SEEDS {
        let bytes = seed.as_bytes();
        for end in (0..=bytes.len()).step_by(3) {
            exercise(&bytes[..end]);
        }
        for _ in 0..200 {
            let mut b = bytes.to_vec();
            for _ in 0..1 + next() % 4 {
                let i = usize::try_from(next() % b.len() as u64).unwrap_or(0);
                b[i] = u8::try_from(next() % 256).unwrap_or(b'"');
            }
            exercise(&b);
        }
    }
}
