//! Faults beyond the specification: the server killed under load, a node the
//! router cannot reach while its nodelet can, slow and garbage-answering
//! nodes, and a client that hangs up mid-stream.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use herd_api::{ConditionStatus, Node, conditions, find_condition};
use herd_e2e::{
    FaultProxy, Kind, LoadGen, MODEL, Mode, Node as E2eNode, NodeOptions, ReleaseServer, Server,
    ServerOptions, bounded, chat, eventually,
};

use crate::support::{TEST_LIMIT, figure, ready, wait_unroutable};

async fn load_model(ollama_url: &str) {
    let resp = herd_e2e::http()
        .post(format!("{ollama_url}/api/generate"))
        .json(&serde_json::json!({"model": MODEL, "prompt": ""}))
        .send()
        .await
        .expect("load model");
    assert!(resp.status().is_success(), "{}", resp.status());
}

async fn wait_loaded(server: &Server, name: &str) {
    eventually(
        &format!("{name} has the model loaded"),
        Duration::from_secs(10),
        || async { server.node_stats(name).await },
        |s| {
            s["loadedModels"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m == MODEL))
        },
    )
    .await;
}

/// `kill -9` of the server under load and writes: after a restart on the
/// same address and data the nodes heartbeat again by themselves, routing
/// resumes, and every write the server acknowledged before dying is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_server_kill9_under_load_recovers_and_keeps_acknowledged_writes() {
    bounded(TEST_LIMIT, async {
        let mut server = Server::start().await;
        let names = ["s1", "s2"];
        let mut nodes = Vec::new();
        for name in names {
            nodes.push(E2eNode::start(&server.url, NodeOptions::beside(name)).await);
        }
        server.wait_routable(&names, Duration::from_secs(30)).await;

        // Writes: ModelAssignments selecting no node, as fast as acknowledged.
        let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (url, acknowledged, stop) = (server.url.clone(), acknowledged.clone(), stop.clone());
            let http = server.authed_client(Some(Duration::from_secs(2)));
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let name = format!("w-{i}");
                    let body = serde_json::json!({
                        "apiVersion": "herd/v1", "kind": "ModelAssignment",
                        "metadata": {"name": name},
                        "spec": {"model": MODEL, "nodeSelector": {"matchLabels": {"e2e-nowhere": "x"}}},
                    });
                    match http.post(format!("{url}/apis/herd/v1/modelassignments")).json(&body).send().await {
                        Ok(r) if r.status().as_u16() == 201 => acknowledged.lock().expect("lock").push(name),
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            })
        };
        let load = LoadGen::start(
            &server.url,
            MODEL,
            3,
            &[Kind::Chat, Kind::ChatStream],
            Duration::from_millis(10),
            Duration::from_secs(60),
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let acked_before = acknowledged.lock().expect("lock").len();
        assert!(acked_before > 10, "writes flowing: {acked_before}");
        let killed_at = load.now();
        server.kill9();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let restart = Instant::now();
        server.restart().await;
        let listening = restart.elapsed();
        let restarted_at = load.now();
        // Routing resumes: the first proxied request that succeeds.
        let first_ok = eventually(
            "a proxied request succeeds again",
            Duration::from_secs(15),
            || async { Some(load.snapshot()) },
            |r| r.outcomes.iter().any(|o| o.ok() && o.sent >= restarted_at),
        )
        .await;
        let recovered = first_ok
            .outcomes
            .iter()
            .filter(|o| o.ok() && o.sent >= restarted_at)
            .map(|o| o.sent + o.took - restarted_at)
            .min()
            .unwrap_or_default();
        // The nodes heartbeat again by themselves.
        let api = server.nodes();
        let since = jiff::Timestamp::now();
        for name in names {
            eventually(
                &format!("{name} heartbeats again"),
                Duration::from_secs(10),
                || async { api.get_opt(name).await.ok().flatten() },
                |n: &Node| n.status.last_heartbeat_time.is_some_and(|t| t > since) && n.is_ready(),
            )
            .await;
        }
        let heartbeats_back = restart.elapsed();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
        let report = load.stop().await;

        figure("fault server restart: listening again", format!("{listening:?}"));
        figure("fault server restart: first proxied request answered", format!("{recovered:?}"));
        figure("fault server restart: every node Ready with a new heartbeat", format!("{heartbeats_back:?}"));
        let acked = acknowledged.lock().expect("lock").clone();
        let stored: Vec<String> = server
            .client()
            .api::<herd_api::ModelAssignment>()
            .list(&Default::default())
            .await
            .expect("list")
            .items
            .into_iter()
            .map(|a| a.metadata.name)
            .collect();
        let lost: Vec<&String> = acked.iter().filter(|n| !stored.contains(n)).collect();
        figure(
            "fault server kill -9: acknowledged writes lost",
            format!("{} of {} ({} before the kill)", lost.len(), acked.len(), acked_before),
        );
        assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
        // Requests fail only while no server listens: none sent once it
        // answered again.
        let late: Vec<_> = report
            .failures()
            .into_iter()
            .filter(|o| o.sent > restarted_at + recovered + Duration::from_millis(200))
            .collect();
        assert!(late.is_empty(), "failures after recovery: {late:#?}");
        let during = report.failures().len();
        figure(
            "fault server kill -9: requests failed while it was down",
            format!("{during} of {} (sent from {:?} to {:?})", report.total(), killed_at, restarted_at + recovered),
        );
    })
    .await;
}

fn condition(node: &Node, type_: &str) -> Option<(ConditionStatus, String)> {
    find_condition(&node.status.conditions, type_).map(|c| (c.status, c.reason.clone()))
}

/// A node the router cannot reach while its nodelet can: the nodelet
/// advertises a fault proxy in front of its Ollama. Black-holed, refused or
/// reset, the node leaves routing (its nodelet still reporting Ollama
/// running) and no non-streaming request fails; healed, it comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_node_unreachable_from_the_router_only_leaves_routing() {
    bounded(TEST_LIMIT, async {
        let server =
            Server::start_with(ServerOptions::default().flags(&["--first-byte-timeout", "2s"]))
                .await;
        let host = herd_e2e::net::next_host();
        let fake = herd_testkit::FakeOllama::builder()
            .models([MODEL])
            .bind(host.ollama.to_string())
            .start()
            .await;
        let proxy = FaultProxy::start(host.free_addr(), host.ollama).await;
        let mut options = NodeOptions::external("cut-off", &fake.url());
        options.advertise_url = Some(proxy.url());
        let _cut = E2eNode::start(&server.url, options).await;
        let other = E2eNode::start(&server.url, NodeOptions::beside("other")).await;
        server
            .wait_routable(&["cut-off", "other"], Duration::from_secs(20))
            .await;
        load_model(&fake.url()).await;
        load_model(&other.ollama_url).await;
        wait_loaded(&server, "cut-off").await;
        wait_loaded(&server, "other").await;
        let api = server.nodes();
        assert_eq!(
            api.get("cut-off").await.expect("node").spec.url,
            proxy.url().trim_end_matches('/')
        );

        let load = LoadGen::start(
            &server.url,
            MODEL,
            3,
            &[Kind::Chat, Kind::OpenAiChat],
            Duration::from_millis(10),
            Duration::from_secs(80),
        );
        for mode in [Mode::Blackhole, Mode::Refuse, Mode::Reset] {
            let before = load.now();
            eventually(
                "cut-off takes part in the load",
                Duration::from_secs(10),
                || async { Some(load.snapshot().served_by_after("cut-off", before)) },
                |n| *n >= 2,
            )
            .await;
            let cut = Instant::now();
            proxy.set(mode);
            let gone = wait_unroutable(&server, "cut-off", cut, Duration::from_secs(10)).await;
            let n = eventually(
                "cut-off not Ready",
                Duration::from_secs(10),
                || async { api.get_opt("cut-off").await.ok().flatten() },
                |n: &Node| ready(n).0 != ConditionStatus::True,
            )
            .await;
            figure(
                &format!("fault unreachable node ({mode:?}): out of routing"),
                format!("{gone:?}"),
            );
            figure(
                &format!("fault unreachable node ({mode:?}): not Ready"),
                format!("{:?} ({:?})", cut.elapsed(), ready(&n)),
            );
            // The nodelet still reaches its Ollama: only the router's path is cut.
            assert_eq!(
                condition(&n, conditions::OLLAMA_RUNNING).map(|c| c.0),
                Some(ConditionStatus::True),
                "{:?}",
                n.status.conditions
            );
            tokio::time::sleep(Duration::from_millis(1000)).await;
            proxy.set(Mode::Pass);
            let heal = Instant::now();
            server
                .wait_routable(&["cut-off"], Duration::from_secs(15))
                .await;
            figure(
                &format!("fault unreachable node ({mode:?}): back after healing"),
                format!("{:?}", heal.elapsed()),
            );
        }
        let report = load.stop().await;
        let failed = report.failed_non_streaming();
        figure(
            "fault unreachable node: non-streaming requests failed",
            format!("{} of {}", failed.len(), report.total()),
        );
        assert!(failed.is_empty(), "{failed:#?}");
        assert!(fake.total_requests() > 0 && proxy.accepted() > 0);
    })
    .await;
}

/// 20 sequential chats over `fast` and `other` (both with the model
/// loaded): how many each served; all must succeed.
async fn fast_vs(
    server: &Server,
    fast: &E2eNode,
    other: &E2eNode,
) -> std::collections::BTreeMap<String, usize> {
    for n in [fast, other] {
        load_model(&n.ollama_url).await;
        wait_loaded(server, &n.name).await;
    }
    let mut by = std::collections::BTreeMap::new();
    for _ in 0..20 {
        let (status, who, body) = chat(&server.url, MODEL).await;
        assert_eq!(status, 200, "{body}");
        *by.entry(who.unwrap_or_default()).or_insert(0) += 1;
    }
    by
}

/// A node that answers slowly (first token after 400 ms instead of 10 ms)
/// gets little of the traffic, and nothing fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_slow_node_gets_little_traffic_and_nothing_fails() {
    bounded(TEST_LIMIT, async {
        let server = Server::start().await;
        let slow = E2eNode::start(
            &server.url,
            NodeOptions::beside("slow").fake_args(&["--ttft-ms", "400"]),
        )
        .await;
        let fast = E2eNode::start(&server.url, NodeOptions::beside("fast")).await;
        server
            .wait_routable(&["slow", "fast"], Duration::from_secs(20))
            .await;
        let by = fast_vs(&server, &fast, &slow).await;
        figure("fault slow node: 20 sequential requests", format!("{by:?}"));
        assert!(by.get("fast").copied().unwrap_or(0) >= 16, "{by:?}");
    })
    .await;
}

/// A node behind a slow network path (the fault proxy delays every chunk by
/// 150 ms) gets little of the traffic, and nothing fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_node_behind_a_slow_network_path_gets_little_traffic() {
    bounded(TEST_LIMIT, async {
        let server = Server::start().await;
        let host = herd_e2e::net::next_host();
        let ollama = herd_testkit::FakeOllama::builder()
            .models([MODEL])
            .bind(host.ollama.to_string())
            .start()
            .await;
        let path = FaultProxy::start(host.free_addr(), host.ollama).await;
        path.set(Mode::Delay(Duration::from_millis(150)));
        let mut o = NodeOptions::external("laggy", &ollama.url());
        o.advertise_url = Some(path.url());
        let laggy = E2eNode::start(&server.url, o).await;
        let fast = E2eNode::start(&server.url, NodeOptions::beside("fast")).await;
        server
            .wait_routable(&["laggy", "fast"], Duration::from_secs(20))
            .await;
        let by = fast_vs(&server, &fast, &laggy).await;
        figure(
            "fault slow network path: 20 sequential requests",
            format!("{by:?}"),
        );
        assert!(by.get("fast").copied().unwrap_or(0) >= 16, "{by:?}");
        assert!(path.accepted() > 0);
    })
    .await;
}

/// A node whose Ollama answers garbage (200, not JSON) from the start never
/// becomes Ready; one that starts answering garbage leaves
/// routing (its nodelet reports Ollama not running properly); the requests it
/// answered before that are counted; it comes back when healed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_node_answering_garbage_leaves_routing() {
    bounded(TEST_LIMIT, async {
        let server = Server::start().await;
        let host = herd_e2e::net::next_host();
        let fake = herd_testkit::FakeOllama::builder()
            .models([MODEL])
            .bind(host.ollama.to_string())
            .start()
            .await;
        let _bad = E2eNode::start(&server.url, NodeOptions::external("garbage", &fake.url())).await;
        let good = E2eNode::start(&server.url, NodeOptions::beside("good")).await;
        // A node whose Ollama answers garbage from the start (`fake-ollama
        // --fault garbage`) registers but never becomes Ready.
        let _born_bad = E2eNode::start(
            &server.url,
            NodeOptions::beside("born-bad").fake_args(&["--fault", "garbage"]),
        )
        .await;
        server
            .wait_routable(&["garbage", "good"], Duration::from_secs(20))
            .await;
        let api = server.nodes();
        let n = eventually(
            "born-bad registered",
            Duration::from_secs(10),
            || async { api.get_opt("born-bad").await.ok().flatten() },
            |n: &Node| n.status.last_heartbeat_time.is_some(),
        )
        .await;
        assert_ne!(
            ready(&n).0,
            ConditionStatus::True,
            "{:?}",
            n.status.conditions
        );
        assert_eq!(server.routable("born-bad").await, Some(false));
        load_model(&fake.url()).await;
        load_model(&good.ollama_url).await;
        wait_loaded(&server, "garbage").await;
        wait_loaded(&server, "good").await;
        let load = LoadGen::start(
            &server.url,
            MODEL,
            2,
            &[Kind::Chat],
            Duration::from_millis(10),
            Duration::from_secs(60),
        );
        eventually(
            "garbage node takes part",
            Duration::from_secs(10),
            || async { Some(load.snapshot().served_by("garbage")) },
            |n| *n >= 2,
        )
        .await;
        let t = Instant::now();
        let at = load.now();
        fake.set_fault(herd_testkit::Fault::Garbage).await;
        let gone = wait_unroutable(&server, "garbage", t, Duration::from_secs(10)).await;
        let gone_at = load.now();
        figure("fault garbage node: out of routing", format!("{gone:?}"));
        tokio::time::sleep(Duration::from_millis(1000)).await;
        fake.clear_fault().await;
        server
            .wait_routable(&["garbage"], Duration::from_secs(10))
            .await;
        let report = load.stop().await;
        let bad: Vec<_> = report.failures();
        figure(
            "fault garbage node: garbage answers passed to clients before it left routing",
            format!("{} of {}", bad.len(), report.total()),
        );
        assert_eq!(report.served_by("born-bad"), 0);
        for f in &bad {
            assert_eq!(f.node.as_deref(), Some("garbage"), "{f:?}");
            // A request already on its way when the fault began may be
            // answered with garbage too: it only has to end after `at`.
            assert!(
                f.sent + f.took >= at && f.sent <= gone_at + Duration::from_millis(100),
                "{f:?}"
            );
        }
    })
    .await;
}

/// A client that hangs up mid-stream (native NDJSON and OpenAI SSE) cancels
/// the generation on the node, and the node's in-flight count drops to 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_client_disconnect_mid_stream_cancels_the_upstream_request() {
    bounded(TEST_LIMIT, async {
        let server = Server::start().await;
        let host = herd_e2e::net::next_host();
        let fake = herd_testkit::FakeOllama::builder()
            .models([MODEL])
            .tokens(100)
            .tokens_per_sec(10.0)
            .bind(host.ollama.to_string())
            .start()
            .await;
        let _node = E2eNode::start(&server.url, NodeOptions::external("streamer", &fake.url())).await;
        server.wait_routable(&["streamer"], Duration::from_secs(20)).await;
        let client = reqwest::Client::new();
        let streams = [
            (
                "/api/chat",
                serde_json::json!({"model": MODEL, "messages": [{"role": "user", "content": "long"}]}),
            ),
            (
                "/v1/chat/completions",
                serde_json::json!({"model": MODEL, "stream": true, "messages": [{"role": "user", "content": "long"}]}),
            ),
        ];
        for (i, (path, body)) in streams.into_iter().enumerate() {
            let resp = client
                .post(format!("{}{path}", server.url))
                .json(&body)
                .send()
                .await
                .expect("send");
            assert_eq!(resp.status(), 200);
            let mut stream = resp.bytes_stream();
            let first = stream.next().await.expect("a first chunk").expect("chunk");
            assert!(!first.is_empty());
            assert_eq!(fake.in_flight(), 1);
            let hung_up = Instant::now();
            drop(stream);
            eventually(
                "the node saw the cancellation",
                Duration::from_secs(5),
                || async { Some(fake.cancelled()) },
                |c| *c == i as u64 + 1,
            )
            .await;
            figure(&format!("fault client hang-up on {path}: upstream cancelled"), format!("{:?}", hung_up.elapsed()));
            assert_eq!(fake.in_flight(), 0);
            eventually(
                "the router's in-flight count back to 0",
                Duration::from_secs(5),
                || async { server.node_stats("streamer").await },
                |s| s["inFlight"] == 0,
            )
            .await;
        }
    })
    .await;
}

/// One streamed chat through the router: the node that served it and the
/// last line it sent.
async fn long_stream(url: String) -> (Option<String>, serde_json::Value) {
    let resp = herd_e2e::http()
        .post(format!("{url}/api/chat"))
        .json(&serde_json::json!({"model": MODEL,
            "messages": [{"role": "user", "content": "a long answer"}]}))
        .send()
        .await
        .expect("send");
    let node = resp
        .headers()
        .get("x-herd-node")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp.text().await.unwrap_or_default();
    let last = body
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(serde_json::Value::Null);
    (node, last)
}

/// A graceful stop (SIGTERM to the nodelet, as Ctrl-C or systemd sends it)
/// of a node serving long streams: the node leaves routing at once, the
/// streams in flight on it finish whole, and only then does the nodelet
/// stop the Ollama it installed and exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_graceful_stop_lets_the_streams_in_flight_finish() {
    bounded(TEST_LIMIT, async {
        let server = Server::start().await;
        let release = ReleaseServer::start().await;
        let mut node = E2eNode::start(
            &server.url,
            NodeOptions::install("drainer", &release).env("FAKE_OLLAMA_TOKENS", "300"),
        )
        .await;
        server
            .wait_routable(&["drainer"], Duration::from_secs(60))
            .await;
        // Three streams of 300 tokens at the fake's 100 tokens/s: 3 s each.
        let streams: Vec<_> = (0..3)
            .map(|_| tokio::spawn(long_stream(server.url.clone())))
            .collect();
        eventually(
            "three streams in flight on drainer",
            Duration::from_secs(5),
            || async { server.node_stats("drainer").await },
            |n| n["inFlight"].as_u64() == Some(3),
        )
        .await;
        let stopping = Instant::now();
        // Watch the router's view while the nodelet drains.
        let left = {
            let stats = format!("{}/apis/herd/v1/requests/stats", server.url);
            let http = server.authed_client(None);
            tokio::spawn(async move {
                loop {
                    let v: serde_json::Value = match http.get(&stats).send().await {
                        Ok(r) => r.json().await.unwrap_or_default(),
                        Err(_) => serde_json::Value::Null,
                    };
                    let routable = v["nodes"].as_array().and_then(|ns| {
                        ns.iter()
                            .find(|n| n["node"] == "drainer")
                            .and_then(|n| n["routable"].as_bool())
                    });
                    if routable == Some(false) {
                        return stopping.elapsed();
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        let status = node.stop().await;
        let stopped_after = stopping.elapsed();
        assert!(status.is_some_and(|s| s.success()), "{status:?}");
        for s in streams {
            let (by, last) = s.await.expect("join");
            assert_eq!(by.as_deref(), Some("drainer"));
            assert_eq!(last["done"], true, "stream cut: {last}");
            assert!(last.get("error").is_none(), "{last}");
            assert_eq!(last["eval_count"], 300, "{last}");
        }
        let left_after = left.await.expect("join");
        figure(
            "graceful stop with 3 streams in flight: out of routing after, nodelet exit after",
            format!("{left_after:?}, {stopped_after:?}"),
        );
        assert!(left_after < Duration::from_secs(2), "{left_after:?}");
        assert!(stopped_after > left_after);
        assert!(
            node.installed_ollama_pids().is_empty(),
            "the installed Ollama was stopped"
        );
        assert_eq!(server.routable("drainer").await, Some(false));
    })
    .await;
}
