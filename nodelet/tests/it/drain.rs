//! Shutdown with requests in flight: the nodelet marks the node not ready, then waits
//! for the router's count (`status.usage.inFlight`, written here by the test as the
//! router would) to reach 0 before stopping the Ollama it started — or for the drain
//! timeout, a router that stopped answering, or a second signal.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use herd_api::{ConditionStatus, Node, NodeUsage, conditions};
use herd_client::Api;
use herd_nodelet::NodeletConfig;

use crate::harness::{
    Nodelet, Router, bounded, cond, config, free_port, init_logs, is_true, listening, node_where,
    nodelet_binary, pids_of, preinstall,
};

/// A nodelet running the `fake-ollama` it started, registered and healthy.
struct Running {
    router: Router,
    nodes: Api<Node>,
    name: &'static str,
    /// The Ollama binary herd runs.
    ollama: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn start(
        name: &'static str,
        tune: impl FnOnce(&mut NodeletConfig),
    ) -> (Running, Nodelet) {
        let router = Router::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let ollama = preinstall(dir.path(), "v0.33.0");
        let port = free_port().await;
        let mut c = config(&router.url, name, dir.path(), port);
        tune(&mut c);
        let nodelet = Nodelet::spawn_skippable(c);
        let running = Running {
            nodes: router.nodes(),
            router,
            name,
            ollama,
            port,
            _dir: dir,
        };
        running.wait_healthy().await;
        (running, nodelet)
    }

    async fn wait_healthy(&self) {
        node_where(&self.nodes, self.name, "healthy", |n| {
            is_true(n, conditions::NODELET_READY) && is_true(n, conditions::OLLAMA_RUNNING)
        })
        .await;
        assert!(self.ollama_running().await, "herd started the fake Ollama");
    }

    /// What the router writes: the count of requests in flight on the node.
    async fn set_in_flight(&self, n: u32) {
        set_in_flight(&self.nodes, self.name, n).await;
    }

    async fn wait_marked_not_ready(&self) {
        node_where(&self.nodes, self.name, "NodeletReady False", |n| {
            cond(n, conditions::NODELET_READY).0 == ConditionStatus::False
        })
        .await;
    }

    async fn ollama_running(&self) -> bool {
        ollama_running(&self.ollama, self.port).await
    }

    async fn assert_ollama_stopped(&self) {
        assert!(!listening(self.port).await, "Ollama still answers");
        assert!(pids_of(&self.ollama).is_empty(), "ollama serve still runs");
    }
}

async fn set_in_flight(nodes: &Api<Node>, name: &str, n: u32) {
    nodes
        .update_status_with_retry(name, |s| {
            s.usage.get_or_insert_with(NodeUsage::default).in_flight = n;
        })
        .await
        .expect("write inFlight");
}

async fn ollama_running(binary: &Path, port: u16) -> bool {
    pids_of(binary).len() == 1 && listening(port).await
}

/// Waits for `run` to return; panics after `limit`. Returns how long it took.
async fn join_within(nodelet: Nodelet, limit: Duration) -> Duration {
    let since = Instant::now();
    tokio::time::timeout(limit, nodelet.join())
        .await
        .unwrap_or_else(|_| panic!("the nodelet did not stop within {limit:?}"));
    since.elapsed()
}

/// Checks, for `span`, that Ollama keeps running and the nodelet keeps waiting.
async fn assert_still_draining(running: &Running, nodelet: &Nodelet, span: Duration) {
    let until = Instant::now() + span;
    while Instant::now() < until {
        assert!(
            running.ollama_running().await,
            "Ollama was stopped with requests in flight"
        );
        assert!(
            !nodelet.is_finished(),
            "the nodelet returned while draining"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn shutdown_waits_for_requests_in_flight_before_stopping_ollama() {
    init_logs();
    bounded(async {
        let (running, mut nodelet) = Running::start("busy", |c| {
            c.drain_timeout = Duration::from_secs(20);
        })
        .await;
        running.set_in_flight(2).await;
        // Heartbeats keep the router's count.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let node = running.nodes.get("busy").await.expect("node");
        assert_eq!(node.status.usage.map(|u| u.in_flight), Some(2));

        nodelet.signal();
        running.wait_marked_not_ready().await;
        // Well past the time after which a 0 would be believed (300 ms here).
        assert_still_draining(&running, &nodelet, Duration::from_millis(1200)).await;

        running.set_in_flight(0).await;
        let took = join_within(nodelet, Duration::from_secs(5)).await;
        eprintln!("stopped {took:?} after the last request ended");
        running.assert_ollama_stopped().await;
        let node = running.nodes.get("busy").await.expect("node");
        assert_eq!(
            cond(&node, conditions::NODELET_READY),
            (ConditionStatus::False, "NodeletStopped".to_owned())
        );
        running.router.stop().await;
    })
    .await;
}

/// The router reports a count only every second or so, so a 0 read right after the
/// node left routing may be stale: a request it started just before is counted later.
#[tokio::test]
async fn an_early_zero_is_not_believed_and_a_late_count_is_waited_for() {
    init_logs();
    bounded(async {
        let settle = Duration::from_millis(1500);
        let (running, mut nodelet) = Running::start("late", |c| {
            c.drain_timeout = Duration::from_secs(20);
            c.timings.drain_settle = settle;
        })
        .await;
        let node = running.nodes.get("late").await.expect("node");
        assert_eq!(node.status.usage.map(|u| u.in_flight), Some(0));

        nodelet.signal();
        running.wait_marked_not_ready().await;
        let marked = Instant::now();
        assert_still_draining(&running, &nodelet, Duration::from_millis(200)).await;
        // The router's report of a request it sent just before it saw the node leave.
        running.set_in_flight(1).await;
        assert!(
            marked.elapsed() < settle,
            "the test was too slow to write the count in time"
        );
        assert_still_draining(&running, &nodelet, settle).await;

        running.set_in_flight(0).await;
        let took = join_within(nodelet, Duration::from_secs(5)).await;
        eprintln!("stopped {took:?} after the late request ended");
        running.assert_ollama_stopped().await;
        running.router.stop().await;
    })
    .await;
}

#[tokio::test]
async fn the_drain_timeout_is_honoured_when_requests_do_not_end() {
    init_logs();
    bounded(async {
        let timeout = Duration::from_millis(1500);
        let (running, mut nodelet) = Running::start("stuck", |c| c.drain_timeout = timeout).await;
        running.set_in_flight(2).await;

        let signalled = Instant::now();
        nodelet.signal();
        running.wait_marked_not_ready().await;
        assert_still_draining(&running, &nodelet, Duration::from_millis(900)).await;
        join_within(nodelet, Duration::from_secs(10)).await;
        let took = signalled.elapsed();
        eprintln!("stopped {took:?} after the signal, with a {timeout:?} drain timeout");
        assert!(
            took >= timeout,
            "stopped after {took:?}, before the timeout"
        );
        assert!(
            took < timeout + Duration::from_secs(5),
            "stopped after {took:?}, long after the timeout"
        );
        running.assert_ollama_stopped().await;
        running.router.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_zero_drain_timeout_stops_ollama_at_once() {
    init_logs();
    bounded(async {
        let (running, mut nodelet) =
            Running::start("hasty", |c| c.drain_timeout = Duration::ZERO).await;
        running.set_in_flight(2).await;
        nodelet.signal();
        let took = join_within(nodelet, Duration::from_secs(10)).await;
        eprintln!("stopped {took:?} after the signal");
        // fast timings wait 300 ms for a 0 to settle; with no drain nothing waits at all.
        assert!(took < Duration::from_secs(3), "took {took:?}");
        running.assert_ollama_stopped().await;
        running.router.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_second_signal_ends_the_drain() {
    init_logs();
    bounded(async {
        let (running, mut nodelet) = Running::start("impatient", |c| {
            c.drain_timeout = Duration::from_secs(30);
        })
        .await;
        running.set_in_flight(2).await;
        nodelet.signal();
        running.wait_marked_not_ready().await;
        assert_still_draining(&running, &nodelet, Duration::from_millis(500)).await;

        nodelet.signal_again();
        let took = join_within(nodelet, Duration::from_secs(10)).await;
        eprintln!("stopped {took:?} after the second signal");
        running.assert_ollama_stopped().await;
        let node = running.nodes.get("impatient").await.expect("node");
        assert_eq!(node.status.usage.map(|u| u.in_flight), Some(2));
        running.router.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_router_that_stops_answering_ends_the_drain_after_the_grace() {
    init_logs();
    bounded(async {
        let grace = Duration::from_secs(1);
        let (running, mut nodelet) = Running::start("cut-off", |c| {
            c.drain_timeout = Duration::from_secs(30);
            c.timings.drain_unreachable_grace = grace;
        })
        .await;
        running.set_in_flight(2).await;
        nodelet.signal();
        running.wait_marked_not_ready().await;
        assert_still_draining(&running, &nodelet, Duration::from_millis(300)).await;

        let Running {
            router,
            ollama,
            port,
            _dir,
            ..
        } = running;
        router.stop().await;
        let gone = Instant::now();
        assert!(
            ollama_running(&ollama, port).await,
            "still running when the router went"
        );
        join_within(nodelet, Duration::from_secs(10)).await;
        let took = gone.elapsed();
        eprintln!("stopped {took:?} after the router went, with a {grace:?} grace");
        assert!(took >= grace, "gave up after {took:?}, before the grace");
        assert!(!listening(port).await);
        assert!(pids_of(&ollama).is_empty());
    })
    .await;
}

/// The real signal path (the `nodelet` example wires SIGTERM/SIGINT as `herd nodelet`
/// does): the first SIGTERM starts the drain, the second ends it.
#[tokio::test]
async fn sigterm_drains_and_a_second_sigterm_skips_the_rest() {
    init_logs();
    bounded(async {
        let router = Router::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let ollama = preinstall(dir.path(), "v0.33.0");
        let port = free_port().await;
        let mut child = tokio::process::Command::new(nodelet_binary())
            .args(["--server", router.url.as_str(), "--name", "twice"])
            .args(["--ollama-url", &format!("127.0.0.1:{port}")])
            .args(["--heartbeat-interval", "100ms", "--no-default-model"])
            .args(["--drain-timeout", "60s"])
            .arg("--install-dir")
            .arg(dir.path())
            .env("PATH", "")
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the nodelet example");
        let nodes = router.nodes();
        node_where(&nodes, "twice", "healthy", |n| {
            is_true(n, conditions::NODELET_READY) && is_true(n, conditions::OLLAMA_RUNNING)
        })
        .await;
        assert!(ollama_running(&ollama, port).await);
        set_in_flight(&nodes, "twice", 3).await;

        let pid = child.id().expect("pid").to_string();
        let term = || {
            let sent = std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .expect("kill");
            assert!(sent.success());
        };
        term();
        node_where(&nodes, "twice", "NodeletReady False", |n| {
            cond(n, conditions::NODELET_READY).0 == ConditionStatus::False
        })
        .await;
        // Longer than the 2.5 s after which a 0 would be believed.
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            assert!(
                child.try_wait().expect("try_wait").is_none(),
                "exited while draining"
            );
            assert!(
                ollama_running(&ollama, port).await,
                "Ollama stopped while draining"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        term();
        let since = Instant::now();
        let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
            .await
            .expect("exits after the second SIGTERM, long before the 60 s drain timeout")
            .expect("wait");
        eprintln!("exited {:?} after the second SIGTERM", since.elapsed());
        assert!(status.success(), "{status}");
        assert!(pids_of(&ollama).is_empty(), "the Ollama it started is gone");
        assert!(!listening(port).await);
        router.stop().await;
    })
    .await;
}
