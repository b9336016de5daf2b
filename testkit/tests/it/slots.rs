//! Slots per model, the FIFO queue, and the 503 past `max_queue`.

use std::time::Duration;

use herd_testkit::BUSY_MESSAGE;
use serde_json::json;
use tokio::time::Instant;

use crate::helpers::{bounded, client, fake, json_of, ndjson_timed, post};

fn chat_body() -> serde_json::Value {
    json!({"model": "llama3.2:1b", "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn parallel_slots_then_queue_then_503() {
    bounded(async {
        let f = fake()
            .num_parallel(2)
            .max_queue(1)
            .ttft(Duration::from_millis(250))
            .tokens(2)
            .start()
            .await;

        let start = Instant::now();
        let spawn = |f: &herd_testkit::FakeOllama| {
            let url = format!("{}/api/chat", f.url());
            tokio::spawn(async move {
                let resp = client()
                    .post(url)
                    .json(&chat_body())
                    .send()
                    .await
                    .expect("send");
                ndjson_timed(resp, start).await
            })
        };
        let a = spawn(&f);
        let b = spawn(&f);
        f.wait_for_in_flight(2).await;
        let c = spawn(&f);
        f.wait_for_queued(1).await;

        // The queue is full: an immediate 503 with Ollama's exact body.
        let t = Instant::now();
        let resp = post(&f, "/api/chat", chat_body()).await;
        assert!(
            t.elapsed() < Duration::from_millis(200),
            "503 must not wait"
        );
        assert_eq!(resp.status(), 503);
        assert_eq!(json_of(resp).await, json!({"error": BUSY_MESSAGE}));

        let a = a.await.expect("a");
        let b = b.await.expect("b");
        let c = c.await.expect("c");
        // a and b ran side by side; c only got a slot when one of them ended.
        assert!(a[0].0 >= Duration::from_millis(250) && b[0].0 >= Duration::from_millis(250));
        let first_end = a.last().expect("a").0.min(b.last().expect("b").0);
        assert!(
            c[0].0 >= first_end + Duration::from_millis(250),
            "c started before a slot freed"
        );
        assert_eq!(c.last().expect("c").1["done"], true);
        let s = f.stats();
        assert_eq!((s.queued, s.in_flight), (0, 0));
        assert_eq!(s.completed, 4);
    })
    .await;
}

#[tokio::test]
async fn waiting_requests_are_served_in_arrival_order() {
    bounded(async {
        let f = fake()
            .ttft(Duration::from_millis(40))
            .tokens(1)
            .start()
            .await;
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..4usize {
            let url = format!("{}/api/generate", f.url());
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                let v = client()
                    .post(url)
                    .json(&json!({"model": "llama3.2:1b", "prompt": "x", "stream": false}))
                    .send()
                    .await
                    .expect("send");
                assert_eq!(v.status(), 200);
                order.lock().expect("lock").push(i);
            }));
            // Make arrival order deterministic: the next one starts only
            // after this one is counted (in flight or queued).
            f.wait_for_in_flight(i + 1).await;
            if i > 0 {
                f.wait_for_queued(i).await;
            }
        }
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(*order.lock().expect("lock"), vec![0, 1, 2, 3]);
    })
    .await;
}

#[tokio::test]
async fn different_models_have_their_own_slots() {
    bounded(async {
        let f = fake()
            .ttft(Duration::from_millis(200))
            .tokens(1)
            .start()
            .await;
        let start = Instant::now();
        let one = post(
            &f,
            "/api/generate",
            json!({"model": "llama3.2:1b", "prompt": "x", "stream": false}),
        );
        let two = post(
            &f,
            "/api/generate",
            json!({"model": "qwen2.5:0.5b", "prompt": "x", "stream": false}),
        );
        let (one, two) = tokio::join!(one, two);
        assert_eq!((one.status().as_u16(), two.status().as_u16()), (200, 200));
        assert!(
            start.elapsed() < Duration::from_millis(390),
            "models should not share a slot"
        );
    })
    .await;
}

/// `prompt_eval_duration` of a non-streamed chat, in milliseconds.
async fn prompt_eval_ms(f: &herd_testkit::FakeOllama, messages: serde_json::Value) -> u64 {
    let body = json!({"model": "llama3.2:1b", "stream": false, "messages": messages});
    let v = json_of(post(f, "/api/chat", body).await).await;
    v["prompt_eval_duration"].as_u64().expect("duration") / 1_000_000
}

#[tokio::test]
async fn a_slot_reuses_the_cached_prefix_of_its_last_prompt() {
    bounded(async {
        // 1,000 words a second beyond what the slot holds; 400-word system prompt.
        let f = fake()
            .num_parallel(2)
            .ttft(Duration::ZERO)
            .prompt_tokens_per_sec(1000.0)
            .tokens(2)
            .start()
            .await;
        let system = "word ".repeat(400);
        let turn1 = json!([{"role": "system", "content": system},
            {"role": "user", "content": "one two three four five"}]);
        assert_eq!(prompt_eval_ms(&f, turn1).await, 405);
        // The next turn repeats the conversation: only its new words count.
        let turn2 = json!([{"role": "system", "content": system},
            {"role": "user", "content": "one two three four five"},
            {"role": "assistant", "content": "six seven"},
            {"role": "user", "content": "eight nine ten"}]);
        assert_eq!(prompt_eval_ms(&f, turn2.clone()).await, 5);
        // Another conversation takes the other slot, cold; the first slot
        // still holds the first conversation.
        let other = json!([{"role": "system", "content": "other ".repeat(300)}]);
        assert_eq!(prompt_eval_ms(&f, other).await, 300);
        let mut turn3 = turn2.as_array().expect("array").clone();
        turn3.push(json!({"role": "user", "content": "eleven"}));
        assert_eq!(prompt_eval_ms(&f, json!(turn3)).await, 1);
        // Without a prompt rate the time to first token ignores the prompt.
        let plain = fake()
            .ttft(Duration::from_millis(20))
            .tokens(2)
            .start()
            .await;
        let long = json!([{"role": "user", "content": "w ".repeat(2000)}]);
        assert_eq!(prompt_eval_ms(&plain, long).await, 20);
    })
    .await;
}
