//! A node whose heartbeats this process writes, with a CPU figure the test
//! sets.
//!
//! Every node of the suite runs on one machine, so every real nodelet reports
//! the same (noisy) CPU use; and the nodelet has no hook to report another.
//! To show the router preferring an idle node to one at 90 % CPU, this writes
//! what a nodelet's heartbeat writes — registration (spec.ollamaUrl), then
//! every interval `NodeletReady`, `OllamaInstalled`, `OllamaRunning`,
//! `lastHeartbeatTime`, `info`, `capacity`, `usage` and the models listed by
//! the node's (real, fake) Ollama — through the same API, with the CPU figure
//! chosen by the test. Everything else (controller, proxy, the Ollama) is real.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use herd_api::{
    Condition, ConditionStatus, Node, NodeCapacity, NodeInfo, NodeModel, NodeSpec, NodeUsage,
    Resource, Timestamp, conditions, set_condition,
};
use herd_client::Api;

/// A simulated nodelet, heartbeating until dropped.
pub struct SimNode {
    pub name: String,
    cpu: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl SimNode {
    /// Registers `name` with its Ollama at `ollama_url` and heartbeats every
    /// `interval` reporting `cpu_percent`.
    pub async fn start(
        server: &crate::Server,
        name: &str,
        ollama_url: &str,
        cpu_percent: f64,
        interval: Duration,
    ) -> SimNode {
        let nodes = server.nodes();
        let spec = NodeSpec {
            url: ollama_url.to_owned(),
            ..NodeSpec::default()
        };
        nodes
            .apply(&Node::new(name, spec))
            .await
            .unwrap_or_else(|e| panic!("register {name}: {e}"));
        let cpu = Arc::new(AtomicU64::new(cpu_percent.to_bits()));
        let task = tokio::spawn(heartbeats(
            nodes,
            name.to_owned(),
            ollama_url.trim_end_matches('/').to_owned(),
            cpu.clone(),
            interval,
        ));
        SimNode {
            name: name.to_owned(),
            cpu,
            task,
        }
    }

    /// The CPU use the next heartbeats report.
    pub fn set_cpu(&self, percent: f64) {
        self.cpu.store(percent.to_bits(), Ordering::Relaxed);
    }
}

impl Drop for SimNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn heartbeats(
    nodes: Api<Node>,
    name: String,
    ollama: String,
    cpu: Arc<AtomicU64>,
    interval: Duration,
) {
    let http = crate::http();
    let started = Timestamp::now();
    loop {
        let models = list_models(&http, &ollama).await;
        let cpu_percent = f64::from_bits(cpu.load(Ordering::Relaxed));
        let running = models.is_some();
        let host = ollama
            .trim_start_matches("http://")
            .rsplit_once(':')
            .map_or(String::new(), |(h, _)| h.to_owned());
        let result = nodes
            .update_status_with_retry(&name, |status| {
                let now = Timestamp::now();
                for c in [
                    Condition::new(
                        conditions::NODELET_READY,
                        ConditionStatus::True,
                        "Running",
                        "simulated nodelet",
                    ),
                    Condition::new(
                        conditions::OLLAMA_INSTALLED,
                        ConditionStatus::True,
                        "Found",
                        "external",
                    ),
                    Condition::new(
                        conditions::OLLAMA_RUNNING,
                        ConditionStatus::from_bool(running),
                        if running { "Answering" } else { "NotAnswering" },
                        "",
                    ),
                ] {
                    set_condition(&mut status.conditions, c, now);
                }
                status.last_heartbeat_time = Some(now);
                status.info = Some(NodeInfo {
                    machine_name: name.clone(),
                    addresses: vec![host.clone()],
                    os: std::env::consts::OS.to_owned(),
                    arch: std::env::consts::ARCH.to_owned(),
                    ollama_version: "0.33.0".to_owned(),
                    nodelet_version: "simulated".to_owned(),
                    start_time: Some(started),
                });
                status.capacity = Some(NodeCapacity {
                    cpus: 8,
                    memory_bytes: 16 << 30,
                    gpus: Vec::new(),
                });
                let in_flight = status.usage.as_ref().map_or(0, |u| u.in_flight);
                status.usage = Some(NodeUsage {
                    cpu_percent,
                    memory_percent: 10.0,
                    in_flight,
                });
                if let Some(m) = &models {
                    status.models.clone_from(m);
                }
            })
            .await;
        if let Err(e) = result {
            eprintln!("sim node {name}: heartbeat failed: {e}");
        }
        tokio::time::sleep(interval).await;
    }
}

/// The node's models from its Ollama's `/api/tags` and `/api/ps`.
async fn list_models(http: &reqwest::Client, ollama: &str) -> Option<Vec<NodeModel>> {
    let get = |path: &'static str| {
        let url = format!("{ollama}{path}");
        async move {
            let v: serde_json::Value = http.get(url).send().await.ok()?.json().await.ok()?;
            Some(
                v["models"]
                    .as_array()?
                    .iter()
                    .filter_map(|m| m["name"].as_str().map(str::to_owned))
                    .collect::<Vec<_>>(),
            )
        }
    };
    let tags = get("/api/tags").await?;
    let loaded = get("/api/ps").await.unwrap_or_default();
    Some(
        tags.into_iter()
            .map(|name| NodeModel {
                loaded: loaded.contains(&name),
                name,
                ..NodeModel::default()
            })
            .collect(),
    )
}
