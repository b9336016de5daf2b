//! Soak: steady mixed load (streaming and not, native and OpenAI) while nodes
//! join, leave gracefully, die (`kill -9`) and come back, for
//! `HERD_SOAK_SECS` seconds (20 by default; the one-hour run is
//! `HERD_SOAK_SECS=3600`, see docs/e2e.md). No unexpected error, and the
//! server's memory stays flat. The RSS series is written to
//! `target/e2e-soak/rss-<secs>s.csv`.

use std::time::{Duration, Instant};

use herd_e2e::{
    Kind, LoadGen, MODEL, Node as E2eNode, NodeOptions, ReleaseServer, Server, ServerOptions,
};

use crate::support::figure;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    Join,
    Leave,
    Kill,
    Restart,
}

fn soak_secs() -> u64 {
    std::env::var("HERD_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_mixed_load_while_nodes_join_leave_and_die() {
    let secs = soak_secs();
    let limit = Duration::from_secs(secs + 120);
    herd_e2e::bounded(limit, async move {
        // The server's bounded buffers (request history, watch window) small
        // enough to fill within the warm-up, so growth past it is a leak.
        let server = Server::start_with(ServerOptions::default().flags(&[
            "--request-history",
            "500",
            "--watch-window",
            "500",
        ]))
        .await;
        let release = ReleaseServer::start().await;
        let mut stable = Vec::new();
        // One request at a time per node (Ollama's OLLAMA_NUM_PARALLEL=1), so
        // the load does not fit on the nodes that have the model loaded and
        // every node takes part.
        let one_slot = |mut o: NodeOptions| {
            o.extra = vec!["--max-parallel".into(), "1".into()];
            o.fake_args(&["--tokens-per-sec", "400"])
        };
        for name in ["stable-1", "stable-2"] {
            stable.push(E2eNode::start(&server.url, one_slot(NodeOptions::beside(name))).await);
        }
        server.wait_routable(&["stable-1", "stable-2"], Duration::from_secs(30)).await;
        // Churning nodes: started (joining) and stopped by the schedule below.
        let churn_options = [
            one_slot(NodeOptions::install("churn-installed", &release)),
            one_slot(NodeOptions::beside("churn-a")),
            one_slot(NodeOptions::beside("churn-b")),
        ];
        let mut churn: Vec<Option<E2eNode>> = vec![None, None, None];

        let load = LoadGen::start(
            &server.url,
            MODEL,
            4,
            &[Kind::Chat, Kind::ChatStream, Kind::OpenAiChat, Kind::ChatStream],
            Duration::from_millis(5),
            Duration::from_secs(secs + 60),
        );
        let sampler = {
            let pid = server.proc.pid();
            tokio::spawn(async move {
                let t0 = Instant::now();
                let mut series = Vec::new();
                loop {
                    if let Some(kib) = herd_e2e::process::rss_kib(pid) {
                        series.push((t0.elapsed().as_secs_f64(), kib));
                    }
                    if t0.elapsed() > Duration::from_secs(secs) {
                        return series;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            })
        };

        // The schedule: every 1.5 s the next event. The three nodes join,
        // then the cycle kills, stops and restarts them, ending with all up.
        let joins = [(Event::Join, 0), (Event::Join, 1), (Event::Join, 2)];
        let cycle = [
            (Event::Kill, 0),
            (Event::Leave, 1),
            (Event::Restart, 0),
            (Event::Kill, 2),
            (Event::Restart, 1),
            (Event::Leave, 0),
            (Event::Restart, 2),
            (Event::Restart, 0),
        ];
        let mut events: Vec<(Duration, Event, String)> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut schedule = joins.into_iter().chain(cycle.into_iter().cycle());
        while Instant::now() + Duration::from_millis(1500) < deadline {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let Some((event, i)) = schedule.next() else { break };
            let name = churn_options[i].name.clone();
            let at = load.now();
            match (event, &mut churn[i]) {
                (Event::Join, slot @ None) => *slot = Some(E2eNode::start(&server.url, churn_options[i].clone()).await),
                (Event::Restart, Some(n)) => n.restart().await,
                (Event::Leave, Some(n)) => {
                    let status = n.stop().await;
                    assert!(status.is_some_and(|s| s.success()), "{name}: {status:?}");
                }
                (Event::Kill, Some(n)) => n.kill9(),
                (e, _) => panic!("schedule out of step: {e:?} {name}"),
            }
            eprintln!("soak: {at:?} {event:?} {name}");
            events.push((at, event, name));
        }
        let report = load.stop().await;
        let series = sampler.await.expect("sampler");

        // Errors: non-streaming requests never fail (retried before the first
        // byte); a stream fails only when the node sending it died or was
        // stopped while it was in flight.
        let failed = report.failed_non_streaming();
        let cut: Vec<_> = report.failures().into_iter().filter(|o| o.kind.streaming()).collect();
        let cause = |o: &herd_e2e::Outcome| {
            events
                .iter()
                .find(|(at, e, name)| {
                    matches!(e, Event::Kill | Event::Leave)
                        && o.node.as_deref() == Some(name.as_str())
                        && o.sent <= *at + Duration::from_millis(200)
                        && o.sent + o.took >= *at
                })
                .map(|(_, e, _)| *e)
        };
        let unexpected: Vec<_> = cut.iter().filter(|o| cause(o).is_none()).collect();
        for o in &cut {
            eprintln!("soak: stream cut: {:?} on {:?} ({:?}): {:?}", cause(o), o.node, o.sent, o.error);
        }
        let by_kill = cut.iter().filter(|o| cause(o) == Some(Event::Kill)).count();
        let by_stop = cut.iter().filter(|o| cause(o) == Some(Event::Leave)).count();
        let by_node = {
            let mut m = std::collections::BTreeMap::new();
            for o in report.outcomes.iter().filter(|o| o.ok()) {
                *m.entry(o.node.clone().unwrap_or_default()).or_insert(0usize) += 1;
            }
            m
        };
        figure(
            "soak requests",
            format!(
                "{} in {secs} s ({} failed non-streaming, {} streams cut: {by_kill} by a kill -9, {by_stop} by a SIGTERM; {} unexpected), {} node events, by node {by_node:?}",
                report.total(),
                failed.len(),
                cut.len(),
                unexpected.len(),
                events.len()
            ),
        );

        // Memory: the second half's median against the first half's (after
        // the first 30 % warm-up).
        let dir = herd_e2e::bins::workspace_dir().join("target/e2e-soak");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let csv: String = std::iter::once("seconds,rss_kib\n".to_owned())
            .chain(series.iter().map(|(t, k)| format!("{t:.1},{k}\n")))
            .collect();
        std::fs::write(dir.join(format!("rss-{secs}s.csv")), csv).expect("write the RSS series");
        let n = series.len();
        let (warm, half) = (n * 3 / 10, n / 2);
        let mut early: Vec<u64> = series[warm..half.max(warm + 1).min(n)].iter().map(|s| s.1).collect();
        let mut late: Vec<u64> = series[half..].iter().map(|s| s.1).collect();
        let (early, late) = (median(&mut early), median(&mut late));
        let peak = series.iter().map(|s| s.1).max().unwrap_or(0);
        figure(
            "soak server RSS",
            format!(
                "start {} KiB, after warm-up {early} KiB, second half {late} KiB, peak {peak} KiB ({n} samples, target/e2e-soak/rss-{secs}s.csv)",
                series.first().map_or(0, |s| s.1)
            ),
        );
        assert!(failed.is_empty(), "non-streaming failures: {failed:#?}");
        assert!(unexpected.is_empty(), "streams cut with no node event to explain them: {unexpected:#?}");
        // A SIGTERM'd nodelet drains: it stops its Ollama only once the
        // requests in flight on it have ended.
        assert_eq!(by_stop, 0, "streams cut by a graceful stop");
        assert!(report.total() > secs as usize * 20, "the load ran: {}", report.total());
        assert!(
            late <= early + (early / 2).max(30 * 1024),
            "server memory grew: {early} KiB → {late} KiB"
        );
        drop(churn);
        drop(stable);
    })
    .await;
}
