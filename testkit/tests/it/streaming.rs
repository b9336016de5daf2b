//! Streaming timing, chunk shapes and the final chunk.

use std::time::Duration;

use herd_testkit::reply_text;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::helpers::{bounded, client, content_type, fake, json_of, ndjson, ndjson_timed, post};

fn assert_rfc3339_utc(v: &Value) {
    let s = v.as_str().expect("created_at string");
    assert!(s.ends_with('Z'), "{s}");
    s.parse::<jiff::Timestamp>()
        .unwrap_or_else(|e| panic!("{s}: {e}"));
}

#[tokio::test]
async fn generate_streams_tokens_after_ttft_at_the_token_rate() {
    bounded(async {
        let ttft = Duration::from_millis(80);
        let interval = Duration::from_millis(25);
        let f = fake()
            .ttft(ttft)
            .tokens_per_sec(40.0)
            .tokens(6)
            .start()
            .await;

        let start = Instant::now();
        let resp = client()
            .post(format!("{}/api/generate", f.url()))
            .json(&json!({"model": "llama3.2:1b", "prompt": "why is the sky blue?"}))
            .send()
            .await
            .expect("send");
        // Nothing, not even headers, before the first token exists.
        assert!(
            start.elapsed() >= ttft,
            "headers came after {:?}",
            start.elapsed()
        );
        assert_eq!(resp.status(), 200);
        assert_eq!(content_type(&resp), "application/x-ndjson");
        let lines = ndjson_timed(resp, start).await;

        assert_eq!(lines.len(), 7, "6 tokens + final: {lines:?}");
        let first = lines[0].0;
        for (i, (at, v)) in lines.iter().enumerate().take(6) {
            assert_eq!(v["done"], false);
            assert_eq!(v["model"], "llama3.2:1b");
            assert_rfc3339_utc(&v["created_at"]);
            // Token i is never earlier than ttft + i intervals.
            let earliest = ttft + interval * u32::try_from(i).expect("small");
            assert!(
                *at >= earliest - Duration::from_millis(2),
                "token {i} at {at:?}, before {earliest:?}"
            );
        }
        let spread = lines[5].0 - first;
        assert!(
            spread >= interval * 5 - Duration::from_millis(2),
            "tokens too close: {spread:?}"
        );
        assert!(spread < interval * 5 * 4, "tokens far too slow: {spread:?}");

        let text: String = lines
            .iter()
            .map(|(_, v)| v["response"].as_str().expect("response"))
            .collect();
        assert_eq!(text, reply_text(6));

        let last = &lines[6].1;
        assert_eq!(last["done"], true);
        assert_eq!(last["done_reason"], "stop");
        assert_eq!(last["response"], "");
        assert_eq!(last["eval_count"], 6);
        assert_eq!(last["prompt_eval_duration"], 80_000_000);
        assert_eq!(last["eval_duration"], 6 * 25_000_000);
        assert!(last["prompt_eval_count"].as_u64().expect("count") >= 5);
        assert!(last["load_duration"].as_u64().is_some());
        assert!(last["total_duration"].as_u64().expect("total") >= 80_000_000 + 5 * 25_000_000);
        let context = last["context"].as_array().expect("generate has context");
        assert!(context.len() >= 6 + 5);
        // Tokens per second as a client computes it.
        let tps = last["eval_count"].as_f64().unwrap_or(0.0)
            / last["eval_duration"].as_f64().unwrap_or(1.0)
            * 1e9;
        assert!((tps - 40.0).abs() < 0.01, "{tps}");
    })
    .await;
}

#[tokio::test]
async fn chat_streams_message_chunks_and_answers_whole_when_stream_is_false() {
    bounded(async {
        let f = fake().tokens(4).start().await;
        let lines = ndjson(
            post(
                &f,
                "/api/chat",
                json!({"model": "llama3.2:1b", "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await,
        )
        .await;
        assert_eq!(lines.len(), 5);
        for l in &lines[..4] {
            assert_eq!(l["message"]["role"], "assistant");
            assert_eq!(l["done"], false);
            assert!(l.get("done_reason").is_none());
            assert!(l.get("context").is_none());
        }
        let last = &lines[4];
        assert_eq!(last["done"], true);
        assert_eq!(last["done_reason"], "stop");
        assert_eq!(last["message"], json!({"role": "assistant", "content": ""}));
        assert!(last.get("context").is_none(), "chat has no context");

        let resp = post(
            &f,
            "/api/chat",
            json!({"model": "llama3.2:1b", "stream": false, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(content_type(&resp), "application/json; charset=utf-8");
        let whole = json_of(resp).await;
        assert_eq!(whole["message"]["content"], reply_text(4));
        assert_eq!(whole["done"], true);
        assert_eq!(whole["eval_count"], 4);
        assert_rfc3339_utc(&whole["created_at"]);

        let generated = json_of(
            post(&f, "/api/generate", json!({"model": "llama3.2:1b", "prompt": "x", "stream": false})).await,
        )
        .await;
        assert_eq!(generated["response"], reply_text(4));
        assert!(generated["context"].is_array());
    })
    .await;
}

#[tokio::test]
async fn num_predict_cuts_the_reply_with_done_reason_length() {
    bounded(async {
        let f = fake().tokens(8).start().await;
        let v = json_of(
            post(
                &f,
                "/api/generate",
                json!({"model": "llama3.2:1b", "prompt": "x", "stream": false, "options": {"num_predict": 3}}),
            )
            .await,
        )
        .await;
        assert_eq!(v["done_reason"], "length");
        assert_eq!(v["eval_count"], 3);
        assert_eq!(v["response"], reply_text(3));
    })
    .await;
}

#[tokio::test]
async fn empty_prompt_loads_and_keep_alive_zero_unloads() {
    bounded(async {
        let load = Duration::from_millis(120);
        let f = fake().load_time(load).start().await;

        let t = Instant::now();
        let resp = post(&f, "/api/generate", json!({"model": "llama3.2:1b"})).await;
        assert!(t.elapsed() >= load);
        assert_eq!(content_type(&resp), "application/json; charset=utf-8");
        let v = json_of(resp).await;
        assert_eq!(v["done"], true);
        assert_eq!(v["done_reason"], "load");
        assert_eq!(v["response"], "");
        assert_eq!(f.loaded_models(), vec!["llama3.2:1b".to_owned()]);

        // Loaded now: the next request pays no load time.
        let t = Instant::now();
        let lines = ndjson(post(&f, "/api/generate", json!({"model": "llama3.2:1b", "prompt": "x"})).await).await;
        assert!(t.elapsed() < load, "second request paid the load again");
        let last = lines.last().expect("lines");
        assert!(last["load_duration"].as_u64().expect("load") < 100_000_000);

        let v = json_of(post(&f, "/api/chat", json!({"model": "llama3.2:1b", "keep_alive": 0})).await).await;
        assert_eq!(v["done_reason"], "unload");
        assert_eq!(v["message"], json!({"role": "assistant", "content": ""}));
        assert!(f.loaded_models().is_empty());

        // Unloaded: the load time comes back, and shows in load_duration.
        let t = Instant::now();
        let v = json_of(
            post(&f, "/api/chat", json!({"model": "llama3.2:1b", "stream": false, "messages": [{"role": "user", "content": "x"}]})).await,
        )
        .await;
        assert!(t.elapsed() >= load);
        assert!(v["load_duration"].as_u64().expect("load") >= 120_000_000);
    })
    .await;
}

#[tokio::test]
async fn token_rate_can_change_mid_run() {
    bounded(async {
        let f = fake()
            .tokens(3)
            .tokens_per_sec(1000.0)
            .ttft(Duration::ZERO)
            .start()
            .await;
        f.set_tokens_per_sec(20.0);
        f.set_ttft(Duration::from_millis(30));
        let start = Instant::now();
        let lines = ndjson_timed(
            post(
                &f,
                "/api/generate",
                json!({"model": "llama3.2:1b", "prompt": "x"}),
            )
            .await,
            start,
        )
        .await;
        assert!(lines[0].0 >= Duration::from_millis(30));
        assert!(lines[2].0 - lines[0].0 >= Duration::from_millis(98));
        assert_eq!(lines[3].1["eval_duration"], 3 * 50_000_000);
    })
    .await;
}
