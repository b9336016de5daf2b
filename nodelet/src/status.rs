//! What the nodelet writes into `Node.status`, decided by pure functions.
//!
//! The nodelet owns `NodeletReady`, `OllamaInstalled`, `OllamaRunning`,
//! `lastHeartbeatTime`, `info`, `capacity`, `usage.cpuPercent`, `usage.memoryPercent`,
//! `models` and `pulls`. Every write is a read-modify-write of the status in which only
//! those fields change (see [`apply_heartbeat`]); `Ready`, `Reachable`,
//! `usage.inFlight` and `routing` belong to the controller and the proxy and are left
//! as they were read.

use std::time::Duration;

use herd_api::{
    Condition, ConditionStatus, ModelPull, NodeCapacity, NodeInfo, NodeModel, NodeStatus,
    NodeUsage, PullPhase, Timestamp, conditions, model_name, set_condition,
};

use crate::ollama::{Probe, ProbeError, PsModel, TagModel};
use crate::supervisor::{OllamaState, Origin, ProcessState};

/// Condition reasons the nodelet writes, for whoever matches on them.
pub mod reasons {
    pub const NODELET_RUNNING: &str = "NodeletRunning";
    /// The nodelet shut down gracefully.
    pub const NODELET_STOPPED: &str = "NodeletStopped";

    pub const SEARCHING: &str = "Searching";
    pub const INSTALLING: &str = "Installing";
    pub const INSTALL_FAILED: &str = "InstallFailed";
    pub const NOT_FOUND: &str = "NotFound";
    pub const FOUND: &str = "Found";
    pub const INSTALLED: &str = "Installed";
    /// An Ollama that herd did not start answers at `--ollama-url`.
    pub const EXTERNAL: &str = "External";

    pub const ANSWERING: &str = "Answering";
    pub const NOT_INSTALLED: &str = "NotInstalled";
    pub const STARTING: &str = "Starting";
    pub const RESTARTING: &str = "Restarting";
    pub const STOPPED: &str = "Stopped";
    pub const UNREACHABLE: &str = "Unreachable";
    pub const NOT_RESPONDING: &str = "NotResponding";
    pub const ERROR_STATUS: &str = "ErrorStatus";
    pub const BAD_RESPONSE: &str = "BadResponse";
}

/// `NodeletReady`: True while running, False (`NodeletStopped`) once it shuts down.
pub fn nodelet_ready_condition(running: bool) -> Condition {
    if running {
        Condition::new(
            conditions::NODELET_READY,
            ConditionStatus::True,
            reasons::NODELET_RUNNING,
            "the nodelet is running",
        )
    } else {
        Condition::new(
            conditions::NODELET_READY,
            ConditionStatus::False,
            reasons::NODELET_STOPPED,
            "the nodelet was stopped; the node takes no new requests",
        )
    }
}

/// `OllamaInstalled`, from what the supervisor knows.
pub fn installed_condition(state: &OllamaState) -> Condition {
    let (status, reason, message) = match state {
        OllamaState::Searching => (
            ConditionStatus::Unknown,
            reasons::SEARCHING,
            "looking for Ollama".to_owned(),
        ),
        OllamaState::Installing(p) => (
            ConditionStatus::False,
            reasons::INSTALLING,
            crate::install::describe_progress(p),
        ),
        OllamaState::InstallFailed { error, retry_in } => (
            ConditionStatus::False,
            reasons::INSTALL_FAILED,
            format!("{error}; trying again in {}", human(*retry_in)),
        ),
        OllamaState::NotFound { reason } => {
            (ConditionStatus::False, reasons::NOT_FOUND, reason.clone())
        }
        OllamaState::External { url, version } => (
            ConditionStatus::True,
            reasons::EXTERNAL,
            format!(
                "Ollama{} answers at {url}; herd did not start it and leaves it alone",
                version
                    .as_deref()
                    .map(|v| format!(" {v}"))
                    .unwrap_or_default()
            ),
        ),
        OllamaState::Managed { binary, origin, .. } => {
            let at = binary.display();
            match origin {
                Origin::OnPath => (
                    ConditionStatus::True,
                    reasons::FOUND,
                    format!("{at} (on PATH)"),
                ),
                Origin::InstallDir { version } => (
                    ConditionStatus::True,
                    reasons::FOUND,
                    format!("{version} at {at} (herd's install directory)"),
                ),
                Origin::Installed { version } => (
                    ConditionStatus::True,
                    reasons::INSTALLED,
                    format!("herd installed {version} at {at}"),
                ),
            }
        }
    };
    Condition::new(conditions::OLLAMA_INSTALLED, status, reason, message)
}

/// `OllamaRunning`: True only when Ollama answered every probe correctly. Otherwise
/// the supervisor's view explains why (installing, starting, restarting) or, when
/// Ollama should be up, the first failed probe does (unreachable, an error status, a
/// wrong body). `probe` is `None` before the first look.
pub fn running_condition(state: &OllamaState, probe: Option<&Probe>, url: &str) -> Condition {
    let condition = |status, reason: &str, message: String| {
        Condition::new(conditions::OLLAMA_RUNNING, status, reason, message)
    };
    if let Some(p) = probe
        && p.error().is_none()
    {
        let version = p.version.as_deref().unwrap_or_default();
        return condition(
            ConditionStatus::True,
            reasons::ANSWERING,
            format!("Ollama {version} answers at {url}"),
        );
    }
    let not_installed = |message: &str| {
        condition(
            ConditionStatus::False,
            reasons::NOT_INSTALLED,
            message.to_owned(),
        )
    };
    match state {
        OllamaState::Searching if probe.is_none() => condition(
            ConditionStatus::Unknown,
            reasons::SEARCHING,
            "looking for Ollama".to_owned(),
        ),
        OllamaState::Installing(_) => not_installed("Ollama is being installed"),
        OllamaState::InstallFailed { .. } | OllamaState::NotFound { .. } => {
            not_installed("no Ollama is installed")
        }
        OllamaState::Managed {
            process: ProcessState::Starting { attempt },
            ..
        } => condition(
            ConditionStatus::False,
            reasons::STARTING,
            format!(
                "ollama serve is starting (start {attempt}); waiting for it to answer at {url}"
            ),
        ),
        OllamaState::Managed {
            process: ProcessState::Exited { how, restart_in },
            ..
        } => condition(
            ConditionStatus::False,
            reasons::RESTARTING,
            format!(
                "ollama serve {how}; restarting it in {}",
                human(Some(*restart_in))
            ),
        ),
        OllamaState::Managed {
            process: ProcessState::Stopped,
            ..
        } => condition(
            ConditionStatus::False,
            reasons::STOPPED,
            "the nodelet stopped the Ollama it started".to_owned(),
        ),
        _ => match probe.and_then(Probe::error) {
            Some(e) => {
                let reason = match e {
                    ProbeError::Unreachable { .. } => reasons::UNREACHABLE,
                    ProbeError::TimedOut { .. } => reasons::NOT_RESPONDING,
                    ProbeError::Status { .. } | ProbeError::Stream { .. } => reasons::ERROR_STATUS,
                    ProbeError::BadBody { .. } => reasons::BAD_RESPONSE,
                };
                condition(ConditionStatus::False, reason, e.to_string())
            }
            None => condition(
                ConditionStatus::Unknown,
                reasons::SEARCHING,
                "Ollama has not been asked yet".to_owned(),
            ),
        },
    }
}

fn human(d: Option<Duration>) -> String {
    match d {
        // Whole milliseconds read better than humantime's nanoseconds.
        Some(d) => humantime::format_duration(Duration::from_millis(
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
        ))
        .to_string(),
        None => "a while".to_owned(),
    }
}

/// `status.models`: every model of `/api/tags`, marked `loaded` when `/api/ps` lists
/// it (by name, or by digest for a model loaded under another tag), sorted by name.
pub fn node_models(tags: &[TagModel], ps: &[PsModel]) -> Vec<NodeModel> {
    let loaded = |t: &TagModel| {
        let name = model_name::canonical(&t.name);
        ps.iter().any(|p| {
            model_name::canonical(&p.name) == name || (!t.digest.is_empty() && p.digest == t.digest)
        })
    };
    let mut models: Vec<NodeModel> = tags
        .iter()
        .map(|t| NodeModel {
            name: t.name.clone(),
            digest: t.digest.clone(),
            size_bytes: t.size,
            loaded: loaded(t),
        })
        .collect();
    models.sort_by(|a, b| a.name.cmp(&b.name));
    models.dedup_by(|a, b| a.name == b.name);
    models
}

/// Everything one heartbeat writes.
#[derive(Clone, Debug, PartialEq)]
pub struct Heartbeat {
    pub now: Timestamp,
    /// `NodeletReady`, `OllamaInstalled`, `OllamaRunning`.
    pub conditions: Vec<Condition>,
    pub info: NodeInfo,
    pub capacity: NodeCapacity,
    pub cpu_percent: f64,
    pub memory_percent: f64,
    /// `None` when Ollama could not list its models: the last list stays.
    pub models: Option<Vec<NodeModel>>,
    pub pulls: Vec<ModelPull>,
}

/// Writes `heartbeat` into `status`, leaving every field the nodelet does not own as
/// it was (conditions of other types, `usage.inFlight`, `routing`).
pub fn apply_heartbeat(status: &mut NodeStatus, heartbeat: &Heartbeat) {
    for condition in &heartbeat.conditions {
        set_condition(&mut status.conditions, condition.clone(), heartbeat.now);
    }
    status.last_heartbeat_time = Some(heartbeat.now);
    status.info = Some(heartbeat.info.clone());
    status.capacity = Some(heartbeat.capacity.clone());
    let in_flight = status.usage.as_ref().map_or(0, |u| u.in_flight);
    status.usage = Some(NodeUsage {
        cpu_percent: heartbeat.cpu_percent,
        memory_percent: heartbeat.memory_percent,
        in_flight,
    });
    if let Some(models) = &heartbeat.models {
        status.models.clone_from(models);
    }
    status.pulls.clone_from(&heartbeat.pulls);
}

/// The last write of a nodelet that shuts down: `NodeletReady` False, and when it is
/// about to stop the Ollama it started, `OllamaRunning` False too. Pulls it was running
/// are reported as interrupted.
pub fn apply_shutdown(status: &mut NodeStatus, now: Timestamp, stopping_ollama: bool) {
    set_condition(&mut status.conditions, nodelet_ready_condition(false), now);
    if stopping_ollama {
        set_condition(
            &mut status.conditions,
            Condition::new(
                conditions::OLLAMA_RUNNING,
                ConditionStatus::False,
                reasons::STOPPED,
                "the nodelet is stopping the Ollama it started (once the requests in flight end)",
            ),
            now,
        );
    }
    for pull in &mut status.pulls {
        if matches!(pull.phase, PullPhase::Pending | PullPhase::Pulling) {
            pull.phase = PullPhase::Failed;
            pull.message = "interrupted: the nodelet stopped".to_owned();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use herd_api::{RoutingStatus, find_condition};

    use super::*;
    use crate::install::{InstallPhase, InstallProgress};

    const URL: &str = "http://127.0.0.1:11434/";

    fn ok_probe() -> Probe {
        Probe {
            version: Ok("0.33.0".into()),
            tags: Ok(vec![]),
            ps: Ok(vec![]),
        }
    }

    fn tags_500() -> Probe {
        Probe {
            tags: Err(ProbeError::Status {
                method: "GET",
                path: "/api/tags".into(),
                code: 500,
                message: "boom".into(),
            }),
            ..ok_probe()
        }
    }

    fn refused() -> Probe {
        let e = ProbeError::Unreachable {
            method: "GET",
            path: "/api/version".into(),
            url: URL.into(),
            error: "connection refused".into(),
        };
        Probe {
            version: Err(e.clone()),
            tags: Err(e.clone()),
            ps: Err(e),
        }
    }

    fn managed(process: ProcessState) -> OllamaState {
        OllamaState::Managed {
            binary: PathBuf::from("/herd/versions/v0.33.0/bin/ollama"),
            origin: Origin::InstallDir {
                version: "v0.33.0".into(),
            },
            process,
        }
    }

    #[test]
    fn running_condition_table() {
        use ConditionStatus::{False, True, Unknown};
        let external = OllamaState::External {
            url: URL.into(),
            version: Some("0.33.0".into()),
        };
        let timed_out = Probe {
            ps: Err(ProbeError::TimedOut {
                method: "GET",
                path: "/api/ps".into(),
                timeout: Duration::from_secs(5),
            }),
            ..ok_probe()
        };
        let garbage = Probe {
            version: Err(ProbeError::BadBody {
                method: "GET",
                path: "/api/version".into(),
                error: "expected value".into(),
            }),
            ..ok_probe()
        };
        // (case, state, probe, status, reason, message contains)
        type Case<'a> = (
            &'a str,
            OllamaState,
            Option<Probe>,
            ConditionStatus,
            &'a str,
            &'a str,
        );
        let cases: Vec<Case> = vec![
            (
                "not asked yet",
                OllamaState::Searching,
                None,
                Unknown,
                "Searching",
                "looking",
            ),
            (
                "answers",
                external.clone(),
                Some(ok_probe()),
                True,
                "Answering",
                "0.33.0 answers at",
            ),
            (
                "answers while supervisor says starting",
                managed(ProcessState::Starting { attempt: 1 }),
                Some(ok_probe()),
                True,
                "Answering",
                "",
            ),
            (
                "500 on tags",
                external.clone(),
                Some(tags_500()),
                False,
                "ErrorStatus",
                "GET /api/tags answered 500: boom",
            ),
            (
                "500 on tags, managed",
                managed(ProcessState::Running { pid: 7 }),
                Some(tags_500()),
                False,
                "ErrorStatus",
                "boom",
            ),
            (
                "refused",
                external.clone(),
                Some(refused()),
                False,
                "Unreachable",
                "connection refused",
            ),
            (
                "hung",
                external.clone(),
                Some(timed_out),
                False,
                "NotResponding",
                "/api/ps",
            ),
            (
                "garbage",
                external,
                Some(garbage),
                False,
                "BadResponse",
                "/api/version",
            ),
            (
                "starting",
                managed(ProcessState::Starting { attempt: 2 }),
                Some(refused()),
                False,
                "Starting",
                "start 2",
            ),
            (
                "restarting",
                managed(ProcessState::Exited {
                    how: "was killed by signal 9".into(),
                    restart_in: Duration::from_millis(1500),
                }),
                Some(refused()),
                False,
                "Restarting",
                "killed by signal 9; restarting it in 1s 500ms",
            ),
            (
                "stopped",
                managed(ProcessState::Stopped),
                Some(refused()),
                False,
                "Stopped",
                "",
            ),
            (
                "installing",
                OllamaState::Installing(InstallProgress::default()),
                Some(refused()),
                False,
                "NotInstalled",
                "being installed",
            ),
            (
                "not found",
                OllamaState::NotFound { reason: "x".into() },
                Some(refused()),
                False,
                "NotInstalled",
                "",
            ),
        ];
        for (case, state, probe, status, reason, message) in cases {
            let c = running_condition(&state, probe.as_ref(), URL);
            assert_eq!(c.type_, conditions::OLLAMA_RUNNING);
            assert_eq!(
                (c.status, c.reason.as_str()),
                (status, reason),
                "{case}: {c:?}"
            );
            assert!(c.message.contains(message), "{case}: {:?}", c.message);
        }
    }

    #[test]
    fn installed_condition_table() {
        use ConditionStatus::{False, True, Unknown};
        let downloading = InstallProgress {
            phase: InstallPhase::Downloading,
            file: "ollama-linux-amd64.tar.zst".into(),
            completed: 50,
            total: Some(200),
            ..InstallProgress::default()
        };
        let cases: Vec<(OllamaState, ConditionStatus, &str, &str)> = vec![
            (OllamaState::Searching, Unknown, "Searching", ""),
            (
                OllamaState::Installing(downloading),
                False,
                "Installing",
                "25%",
            ),
            (
                OllamaState::InstallFailed {
                    error: "checksum mismatch".into(),
                    retry_in: Some(Duration::from_secs(30)),
                },
                False,
                "InstallFailed",
                "checksum mismatch; trying again in 30s",
            ),
            (
                OllamaState::NotFound {
                    reason: "no Ollama; --no-install".into(),
                },
                False,
                "NotFound",
                "--no-install",
            ),
            (
                OllamaState::External {
                    url: URL.into(),
                    version: None,
                },
                True,
                "External",
                "leaves it alone",
            ),
            (
                managed(ProcessState::Running { pid: 1 }),
                True,
                "Found",
                "v0.33.0 at /herd/versions",
            ),
            (
                OllamaState::Managed {
                    binary: "/usr/bin/ollama".into(),
                    origin: Origin::OnPath,
                    process: ProcessState::Stopped,
                },
                True,
                "Found",
                "on PATH",
            ),
            (
                OllamaState::Managed {
                    binary: "/h/bin/ollama".into(),
                    origin: Origin::Installed {
                        version: "v0.33.0".into(),
                    },
                    process: ProcessState::Running { pid: 1 },
                },
                True,
                "Installed",
                "herd installed v0.33.0",
            ),
        ];
        for (state, status, reason, message) in cases {
            let c = installed_condition(&state);
            assert_eq!(c.type_, conditions::OLLAMA_INSTALLED);
            assert_eq!((c.status, c.reason.as_str()), (status, reason), "{state:?}");
            assert!(c.message.contains(message), "{state:?}: {:?}", c.message);
        }
    }

    #[test]
    fn models_are_marked_loaded_by_name_or_digest() {
        let tags = vec![
            TagModel {
                name: "qwen2.5:0.5b".into(),
                digest: "d2".into(),
                size: 2,
                ..Default::default()
            },
            TagModel {
                name: "llama3:latest".into(),
                digest: "d1".into(),
                size: 1,
                ..Default::default()
            },
            TagModel {
                name: "alias:latest".into(),
                digest: "d3".into(),
                size: 3,
                ..Default::default()
            },
        ];
        let ps = vec![
            PsModel {
                name: "llama3".into(),
                digest: "other".into(),
                ..Default::default()
            },
            PsModel {
                name: "loaded-under-another-name:x".into(),
                digest: "d3".into(),
                ..Default::default()
            },
        ];
        let got: Vec<(String, bool, u64)> = node_models(&tags, &ps)
            .into_iter()
            .map(|m| (m.name, m.loaded, m.size_bytes))
            .collect();
        assert_eq!(
            got,
            [
                ("alias:latest".into(), true, 3),
                ("llama3:latest".into(), true, 1),
                ("qwen2.5:0.5b".into(), false, 2),
            ]
        );
    }

    fn heartbeat(now: Timestamp, running: bool) -> Heartbeat {
        Heartbeat {
            now,
            conditions: vec![
                nodelet_ready_condition(true),
                installed_condition(&managed(ProcessState::Running { pid: 1 })),
                running_condition(
                    &managed(ProcessState::Running { pid: 1 }),
                    Some(&if running { ok_probe() } else { tags_500() }),
                    URL,
                ),
            ],
            info: NodeInfo {
                machine_name: "box".into(),
                ..NodeInfo::default()
            },
            capacity: NodeCapacity {
                cpus: 8,
                memory_bytes: 1 << 30,
                gpus: vec![],
            },
            cpu_percent: 12.5,
            memory_percent: 40.0,
            models: running.then(Vec::new),
            pulls: vec![],
        }
    }

    #[test]
    fn heartbeat_changes_only_the_nodelets_fields() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().expect("ts");
        let t1: Timestamp = "2026-01-01T00:00:05Z".parse().expect("ts");
        let mut status = NodeStatus {
            conditions: vec![
                Condition::new(
                    conditions::READY,
                    ConditionStatus::True,
                    "Up",
                    "controller's",
                ),
                Condition::new(
                    conditions::REACHABLE,
                    ConditionStatus::True,
                    "Ok",
                    "proxy's",
                ),
            ],
            usage: Some(NodeUsage {
                cpu_percent: 99.0,
                memory_percent: 99.0,
                in_flight: 3,
            }),
            routing: Some(RoutingStatus {
                weight: 70,
                reason: "slow".into(),
            }),
            models: vec![NodeModel {
                name: "old:latest".into(),
                ..NodeModel::default()
            }],
            ..NodeStatus::default()
        };
        let before = status.clone();
        apply_heartbeat(&mut status, &heartbeat(t0, true));
        assert_eq!(status.routing, before.routing);
        assert_eq!(status.conditions[..2], before.conditions[..2]);
        let usage = status.usage.clone().expect("usage");
        assert_eq!(
            (usage.cpu_percent, usage.memory_percent, usage.in_flight),
            (12.5, 40.0, 3)
        );
        assert_eq!(status.last_heartbeat_time, Some(t0));
        assert!(
            status.models.is_empty(),
            "tags answered: the list is replaced"
        );
        for t in [
            conditions::NODELET_READY,
            conditions::OLLAMA_INSTALLED,
            conditions::OLLAMA_RUNNING,
        ] {
            let c = find_condition(&status.conditions, t).expect(t);
            assert_eq!(c.status, ConditionStatus::True, "{t}");
        }

        status.models = before.models.clone();
        apply_heartbeat(&mut status, &heartbeat(t1, false));
        assert_eq!(
            status.models, before.models,
            "tags failed: the last list stays"
        );
        let running =
            find_condition(&status.conditions, conditions::OLLAMA_RUNNING).expect("running");
        assert_eq!(running.status, ConditionStatus::False);
        assert_eq!(running.last_transition_time, Some(t1));
        let ready = find_condition(&status.conditions, conditions::NODELET_READY).expect("ready");
        assert_eq!(
            ready.last_transition_time,
            Some(t0),
            "unchanged status keeps its transition time"
        );
        assert_eq!(status.usage.as_ref().map(|u| u.in_flight), Some(3));
    }

    #[test]
    fn shutdown_marks_the_node_not_ready_and_interrupts_pulls() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().expect("ts");
        let mut status = NodeStatus::default();
        apply_heartbeat(&mut status, &heartbeat(t0, true));
        status.pulls = vec![
            ModelPull {
                model: "a".into(),
                phase: PullPhase::Pulling,
                ..ModelPull::default()
            },
            ModelPull {
                model: "b".into(),
                phase: PullPhase::Succeeded,
                ..ModelPull::default()
            },
        ];
        apply_shutdown(&mut status, t0, true);
        let ready = find_condition(&status.conditions, conditions::NODELET_READY).expect("ready");
        assert_eq!(
            (ready.status, ready.reason.as_str()),
            (ConditionStatus::False, "NodeletStopped")
        );
        let running =
            find_condition(&status.conditions, conditions::OLLAMA_RUNNING).expect("running");
        assert_eq!(
            (running.status, running.reason.as_str()),
            (ConditionStatus::False, "Stopped")
        );
        assert_eq!(status.pulls[0].phase, PullPhase::Failed);
        assert_eq!(status.pulls[1].phase, PullPhase::Succeeded);

        let mut external = NodeStatus::default();
        apply_heartbeat(&mut external, &heartbeat(t0, true));
        apply_shutdown(&mut external, t0, false);
        let running =
            find_condition(&external.conditions, conditions::OLLAMA_RUNNING).expect("running");
        assert_eq!(
            running.status,
            ConditionStatus::True,
            "an Ollama herd leaves running stays True"
        );
    }
}
