//! Prefix affinity: turns of one conversation go back to the node that
//! served the turns before, within the load bound.

use std::time::Duration;

use futures_util::future::join_all;
use herd_testkit::FakeOllama;
use serde_json::{Value, json};

use super::*;

const MODEL: &str = "llama3";

/// A conversation's messages after `turns` user turns (each answered).
fn conversation(system: &str, turns: usize) -> Vec<Value> {
    let mut m = vec![json!({"role": "system", "content": system})];
    for t in 0..turns {
        m.push(json!({"role": "user", "content": format!("question {t}")}));
        if t + 1 < turns {
            m.push(json!({"role": "assistant", "content": format!("answer {t}")}));
        }
    }
    m
}

fn system_prompt(conversation: usize) -> String {
    format!("You are assistant number {conversation}. ").repeat(60)
}

impl Herd {
    async fn turn(&self, messages: Vec<Value>, session: Option<&str>) -> String {
        let mut req = self
            .http
            .post(self.at("/api/chat"))
            .json(&json!({"model": MODEL, "stream": false, "messages": messages}));
        if let Some(s) = session {
            req = req.header("X-Herd-Session", s);
        }
        let r = req.send().await.expect("chat");
        assert_eq!(r.status(), 200);
        node_of(&r)
    }
}

async fn fleet(herd: &Herd, n: usize) -> Vec<FakeOllama> {
    let mut fakes = Vec::new();
    for i in 0..n {
        let f = fake(&[MODEL]).await;
        herd.add_fake(&format!("n{i}"), &f, &[MODEL]).await;
        fakes.push(f);
    }
    fakes
}

#[tokio::test]
async fn follow_up_turns_return_to_the_node_of_the_first() {
    bounded(async {
        let herd = Herd::start().await;
        let _fakes = fleet(&herd, 3).await;
        let mut first_nodes = Vec::new();
        for c in 0..6 {
            let system = system_prompt(c);
            let first = herd.turn(conversation(&system, 1), None).await;
            for turns in 2..=4 {
                let next = herd.turn(conversation(&system, turns), None).await;
                assert_eq!(next, first, "conversation {c}, turn {turns}");
            }
            first_nodes.push(first);
        }
        // First turns are spread by load, not all on one node.
        assert!(tally(&first_nodes).len() > 1, "{first_nodes:?}");
        let records: Value = herd
            .http
            .get(herd.at("/apis/herd/v1/requests?limit=100"))
            .send()
            .await
            .expect("history")
            .json()
            .await
            .expect("json");
        let items = records["items"].as_array().expect("items");
        let routed = items.iter().filter(|r| r["affinity"] == true).count();
        assert_eq!(routed, 18, "three follow-ups in each of six conversations");
        assert!(
            items
                .iter()
                .filter(|r| r["affinity"] == true)
                .all(|r| r["prefixBytes"].as_u64().is_some_and(|b| b >= 1024)),
            "{items:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn off_means_the_balancer_alone() {
    bounded(async {
        let herd = Herd::with(ProxyConfig {
            prefix_affinity: false,
            ..test_config()
        })
        .await;
        let _fakes = fleet(&herd, 3).await;
        let system = system_prompt(0);
        let mut nodes = Vec::new();
        for turns in 1..=12 {
            nodes.push(herd.turn(conversation(&system, turns), None).await);
        }
        // Load alone spreads the turns of one conversation.
        assert!(tally(&nodes).len() > 1, "{nodes:?}");
    })
    .await;
}

#[tokio::test]
async fn a_session_key_keeps_different_prompts_together() {
    bounded(async {
        let herd = Herd::start().await;
        let _fakes = fleet(&herd, 3).await;
        for s in ["alpha", "beta", "gamma"] {
            let first = herd
                .turn(vec![json!({"role": "user", "content": "hi"})], Some(s))
                .await;
            for i in 0..4 {
                let other = vec![json!({"role": "user", "content": format!("unrelated {i}")})];
                assert_eq!(herd.turn(other, Some(s)).await, first, "session {s}");
            }
        }
    })
    .await;
}

#[tokio::test]
async fn a_node_that_leaves_routing_loses_its_conversations() {
    bounded(async {
        let herd = Herd::start().await;
        let _fakes = fleet(&herd, 2).await;
        let system = system_prompt(7);
        let first = herd.turn(conversation(&system, 1), None).await;
        // Its node goes away (not ready): the next turn goes elsewhere and
        // that node holds the conversation from now on.
        herd.status(&first, |s| s.conditions = vec![ready_condition(false)])
            .await;
        let f = first.clone();
        herd.wait_stats("node out of routing", move |s| {
            s.nodes.iter().any(|n| n.node == f && !n.routable)
        })
        .await;
        let second = herd.turn(conversation(&system, 2), None).await;
        assert_ne!(second, first);
        herd.status(&first, |s| s.conditions = vec![ready_condition(true)])
            .await;
        let f = first.clone();
        herd.wait_stats("node back", move |s| {
            s.nodes.iter().any(|n| n.node == f && n.routable)
        })
        .await;
        for turns in 3..=5 {
            assert_eq!(
                herd.turn(conversation(&system, turns), None).await,
                second,
                "the returning node is not sent what it no longer holds"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn one_hot_prefix_does_not_pin_every_client_to_one_node() {
    bounded(async {
        let herd = Herd::start().await;
        let mut fakes = Vec::new();
        for i in 0..3 {
            // Slow answers, so requests overlap and load is visible.
            let f = FakeOllama::builder()
                .models([MODEL])
                .ttft(Duration::from_millis(150))
                .tokens(3)
                .tokens_per_sec(100.0)
                .num_parallel(16)
                .start()
                .await;
            herd.add_fake(&format!("n{i}"), &f, &[MODEL]).await;
            fakes.push(f);
        }
        let system = system_prompt(1);
        // The prefix is known on one node first.
        let _ = herd.turn(conversation(&system, 1), None).await;
        let nodes = join_all((0..24).map(|_| herd.turn(conversation(&system, 1), None))).await;
        let t = tally(&nodes);
        let most = t.values().copied().max().unwrap_or(0);
        // 24 at once over 3 nodes: 8 each on average; the bound (1.25× the
        // mean, counted as requests arrive) keeps the holder near it.
        assert!(t.len() == 3 && most <= 12, "{t:?}");
    })
    .await;
}
