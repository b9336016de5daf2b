//! Several `herd server` processes on one PostgreSQL: one store, one
//! revision sequence, one controller at a time, and routing on every
//! server through a database restart.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use herd_e2e::{
    Kind, LoadGen, MODEL, Node as E2eNode, NodeOptions, Server, ServerOptions, bounded, chat,
    eventually,
};
use herd_testkit::postgres::Postgres;
use serde_json::{Value, json};

use crate::support::figure;

const LIMIT: Duration = Duration::from_secs(240);

/// (type, name, resourceVersion) of every watch line that is not a bookmark.
type Seen = Arc<Mutex<Vec<(String, String, u64)>>>;

/// Follows `modelassignments` on `server` from revision `rv`.
async fn watch(server: &Server, rv: u64) -> Seen {
    let resp = server
        .authed_client(None)
        .get(format!(
            "{}/apis/herd/v1/modelassignments?watch=true&resourceVersion={rv}",
            server.url
        ))
        .send()
        .await
        .expect("watch");
    assert_eq!(resp.status().as_u16(), 200);
    let seen: Seen = Arc::default();
    let out = seen.clone();
    tokio::spawn(async move {
        let mut stream = resp.bytes_stream();
        let mut buf = Vec::new();
        while let Some(Ok(chunk)) = stream.next().await {
            buf.extend_from_slice(&chunk);
            while let Some(at) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=at).collect();
                let Ok(v) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                let type_ = v["type"].as_str().unwrap_or_default().to_owned();
                if type_ == "BOOKMARK" {
                    continue;
                }
                let meta = &v["object"]["metadata"];
                let rv = meta["resourceVersion"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let name = meta["name"].as_str().unwrap_or_default().to_owned();
                out.lock().expect("lock").push((type_, name, rv));
            }
        }
    });
    seen
}

fn rv_of(v: &Value) -> u64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("resourceVersion")
}

/// Writes through `server`; returns the status and the answer.
async fn send(server: &Server, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
    let mut req = server.authed_client(Some(Duration::from_secs(10))).request(
        method.clone(),
        format!("{}/apis/herd/v1/{path}", server.url),
    );
    req = if method == reqwest::Method::PATCH {
        req.header("content-type", "application/merge-patch+json")
            .body(body.to_string())
    } else {
        req.json(&body)
    };
    match req.send().await {
        Ok(r) => {
            let code = r.status().as_u16();
            (code, r.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

fn assignment(name: &str) -> Value {
    json!({"apiVersion": "herd/v1", "kind": "ModelAssignment", "metadata": {"name": name},
           "spec": {"model": MODEL, "nodeSelector": {"matchLabels": {"e2e-nowhere": "x"}}}})
}

/// The identity holding the controller lease, read through `server`.
async fn lease_holder(server: &Server) -> Option<String> {
    let (code, lease) = send(
        server,
        reqwest::Method::GET,
        "leases/controller",
        Value::Null,
    )
    .await;
    (code == 200)
        .then(|| lease["spec"]["holder"].as_str().map(str::to_owned))
        .flatten()
        .filter(|h| !h.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_on_one_postgres() {
    bounded(LIMIT, async {
        let mut pg = Postgres::start(&[]).expect("PostgreSQL");
        pg.create_database("herd").expect("database");
        let store = pg.url("herd");
        let options = ServerOptions::default().flags(&["--store", &store]);
        let first = Server::start_with(options.clone()).await;
        let mut servers = vec![first];
        for _ in 0..2 {
            let s = Server::start_with(options.clone()).await;
            // Keys are made once per store: the first server wrote them,
            // the others say so and are given copies.
            assert!(
                s.proc
                    .lines()
                    .iter()
                    .any(|l| l.contains("made by another server")),
                "a later server must not replace the store's bootstrap keys"
            );
            for file in ["admin.key", "join.key"] {
                std::fs::copy(servers[0].data_dir().join(file), s.data_dir().join(file))
                    .expect("copy the key");
            }
            servers.push(s);
        }
        for s in &servers {
            assert!(
                !s.proc.lines().iter().any(|l| l.contains(&store)),
                "the store URL (with its password) is never logged"
            );
        }

        // Writes through two servers, watches on the third and on the first:
        // every acknowledged write arrives once, in revision order, and both
        // watches see the same changes (the controller's status writes too).
        let (code, list) = send(
            &servers[2],
            reqwest::Method::GET,
            "modelassignments",
            Value::Null,
        )
        .await;
        assert_eq!(code, 200, "{list}");
        let seen = [
            watch(&servers[2], rv_of(&list)).await,
            watch(&servers[0], rv_of(&list)).await,
        ];
        let mut acked = Vec::new();
        for i in 0..20 {
            let name = format!("w-{i}");
            let (code, v) = send(
                &servers[i % 2],
                reqwest::Method::POST,
                "modelassignments",
                assignment(&name),
            )
            .await;
            assert_eq!(code, 201, "{v}");
            acked.push(rv_of(&v));
            let patch = json!({"metadata": {"labels": {"step": "2"}}});
            let (code, v) = send(
                &servers[(i + 1) % 2],
                reqwest::Method::PATCH,
                &format!("modelassignments/{name}"),
                patch,
            )
            .await;
            assert_eq!(code, 200, "{v}");
            acked.push(rv_of(&v));
        }
        let last = acked.iter().copied().max().unwrap_or(0);
        let mut views = Vec::new();
        for seen in &seen {
            let watched = eventually(
                "the watch reaches the last acknowledged write",
                Duration::from_secs(20),
                || async { Some(seen.lock().expect("lock").clone()) },
                |w: &Vec<(String, String, u64)>| w.iter().any(|(_, _, rv)| *rv >= last),
            )
            .await;
            let rvs: Vec<u64> = watched
                .iter()
                .map(|(_, _, rv)| *rv)
                .filter(|rv| *rv <= last)
                .collect();
            assert!(
                rvs.windows(2).all(|w| w[0] < w[1]),
                "in order, no duplicate: {rvs:?}"
            );
            let missing: Vec<&u64> = acked.iter().filter(|rv| !rvs.contains(rv)).collect();
            assert!(
                missing.is_empty(),
                "acknowledged writes missing from the watch: {missing:?}"
            );
            views.push(rvs);
        }
        assert_eq!(
            views[0], views[1],
            "watches on two servers see the same changes"
        );
        figure(
            "several servers: writes through two seen by watches on two",
            acked.len(),
        );

        // The controller lease is held by one server; nodes register
        // through another and every server routes to them.
        let holder = eventually(
            "a controller holds the lease",
            Duration::from_secs(20),
            || async { lease_holder(&servers[1]).await },
            |_| true,
        )
        .await;
        let held_by = servers
            .iter()
            .position(|s| s.proc.lines().iter().any(|l| l.contains(&holder)))
            .expect("the holder's log names it");
        let others: Vec<usize> = (0..3).filter(|i| *i != held_by).collect();
        let (via, routed) = (others[0], others[1]);
        let _node = E2eNode::start(&servers[via].url, NodeOptions::beside("n1")).await;
        for i in &others {
            servers[*i]
                .wait_routable(&["n1"], Duration::from_secs(30))
                .await;
        }

        // kill -9 of the holder: another controller takes over; requests
        // through a surviving server keep succeeding.
        let load = LoadGen::start(
            &servers[routed].url,
            MODEL,
            2,
            &[Kind::Chat],
            Duration::from_millis(20),
            Duration::from_secs(60),
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        servers[held_by].kill9();
        let killed = Instant::now();
        let successor = eventually(
            "another server's controller takes the lease over",
            Duration::from_secs(30),
            || async { lease_holder(&servers[routed]).await },
            |h: &String| *h != holder,
        )
        .await;
        let takeover = killed.elapsed();
        figure(
            "several servers: controller takeover after kill -9 (s)",
            format!("{:.1}", takeover.as_secs_f64()),
        );
        assert!(
            takeover < Duration::from_secs(20),
            "takeover took {takeover:?} (lease 15 s, renewed every 5 s)"
        );
        assert!(others.iter().any(|i| {
            servers[*i]
                .proc
                .lines()
                .iter()
                .any(|l| l.contains(&successor))
        }));
        let report = load.stop().await;
        assert!(report.total() > 10, "load ran: {}", report.total());
        assert!(
            report.failed_non_streaming().is_empty(),
            "failed requests through a surviving server: {:?}",
            report.failed_non_streaming()
        );

        // A database restart: routing continues, writes answer 503, then
        // succeed once it is back.
        pg.stop();
        let survivor = &servers[routed];
        eventually(
            "writes answer 503 while the database is down",
            Duration::from_secs(15),
            || async {
                Some(
                    send(
                        survivor,
                        reqwest::Method::POST,
                        "modelassignments",
                        assignment("during"),
                    )
                    .await
                    .0,
                )
            },
            |code| *code == 503,
        )
        .await;
        for i in &others {
            let (code, node, body) = chat(&servers[*i].url, MODEL).await;
            assert_eq!((code, node.as_deref()), (200, Some("n1")), "{body}");
        }
        pg.start_again().expect("restart PostgreSQL");
        let back = Instant::now();
        eventually(
            "writes succeed once the database is back",
            Duration::from_secs(30),
            || async {
                Some(
                    send(
                        survivor,
                        reqwest::Method::POST,
                        "modelassignments",
                        assignment("after"),
                    )
                    .await
                    .0,
                )
            },
            |code| *code == 201,
        )
        .await;
        figure(
            "several servers: writes accepted again after PostgreSQL restart (s)",
            format!("{:.1}", back.elapsed().as_secs_f64()),
        );
        let other = &servers[via];
        eventually(
            "the other server catches up",
            Duration::from_secs(10),
            || async {
                Some(
                    send(
                        other,
                        reqwest::Method::GET,
                        "modelassignments/after",
                        Value::Null,
                    )
                    .await
                    .0,
                )
            },
            |code| *code == 200,
        )
        .await;
    })
    .await;
}
