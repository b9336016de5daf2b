//! Making this machine's Ollama exist and keeping it running.
//!
//! At start the supervisor asks `--ollama-url` whether an Ollama already answers. If one
//! does, herd did not start it and leaves it alone (it neither restarts nor stops it).
//! Otherwise it finds a binary (herd's install directory, then `PATH`), installs one
//! when there is none (see [`crate::install`]), starts `<binary> serve` with
//! `OLLAMA_HOST` set to the bind address, waits until `GET /` answers, and restarts it
//! with backoff whenever it exits. It stops the process only when told to (SIGTERM,
//! then SIGKILL after a grace period). Everything it learns is published as an
//! [`OllamaState`] for the heartbeat to report.
//!
//! This module is the I/O shell (processes, signals, HTTP); its decisions are pure and
//! live elsewhere: the install plan in [`crate::install`], the restart schedule in
//! `herd_client::backoff`, and [`describe_exit`] here.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Timings;
use crate::install::{
    FoundOllama, InstallOptions, InstallPlan, InstallProgress, OllamaVersion, find_ollama,
    install_ollama, plan_install,
};
use crate::ollama::OllamaClient;
use herd_client::backoff::Backoff;

/// Where the managed binary came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// An `ollama` on `PATH`.
    OnPath,
    /// A version already in herd's install directory.
    InstallDir { version: String },
    /// Installed by this nodelet.
    Installed { version: String },
}

/// The process herd runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcessState {
    /// Started (for the `attempt`-th time), not answering yet.
    Starting { attempt: u32 },
    /// Answering.
    Running { pid: u32 },
    /// Exited (`how`, e.g. "exited with status 1"); started again after `restart_in`.
    Exited { how: String, restart_in: Duration },
    /// Stopped by herd.
    Stopped,
}

/// What the supervisor knows about this machine's Ollama.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OllamaState {
    /// The first moments: nothing known yet.
    Searching,
    /// Downloading and installing.
    Installing(InstallProgress),
    /// The last install failed; another is tried after `retry_in`.
    InstallFailed {
        error: String,
        retry_in: Option<Duration>,
    },
    /// Nothing found and installing is forbidden (`--no-install`); looked for again later.
    NotFound { reason: String },
    /// An Ollama herd did not start answers at `--ollama-url`.
    External {
        url: String,
        version: Option<String>,
    },
    /// herd runs `binary serve`.
    Managed {
        binary: PathBuf,
        origin: Origin,
        process: ProcessState,
    },
}

impl OllamaState {
    /// Whether herd started an Ollama that is (or may be) still running.
    pub fn herd_runs_ollama(&self) -> bool {
        matches!(
            self,
            OllamaState::Managed {
                process: ProcessState::Starting { .. } | ProcessState::Running { .. },
                ..
            }
        )
    }
}

/// What the supervisor needs.
#[derive(Clone, Debug)]
pub(crate) struct SupervisorConfig {
    pub ollama: OllamaClient,
    /// `OLLAMA_HOST` of the process herd starts.
    pub bind_addr: String,
    pub max_parallel: Option<u32>,
    pub install: InstallOptions,
    pub no_install: bool,
    pub path_var: Option<std::ffi::OsString>,
    pub timings: Timings,
}

/// Runs until `stop` is cancelled; then stops the Ollama it started, if any.
pub(crate) async fn supervise(
    config: SupervisorConfig,
    state: watch::Sender<OllamaState>,
    stop: CancellationToken,
) {
    let Some((binary, origin)) = find_or_install(&config, &state, &stop).await else {
        return;
    };
    run_process(&config, &binary, origin, &state, &stop).await;
}

/// Finds (or installs) the binary to run; `None` when an external Ollama is used or
/// `stop` came first.
async fn find_or_install(
    config: &SupervisorConfig,
    state: &watch::Sender<OllamaState>,
    stop: &CancellationToken,
) -> Option<(PathBuf, Origin)> {
    let mut failures = 0u32;
    loop {
        let mut found = Vec::new();
        if let Ok(version) = config.ollama.version().await {
            found.push(FoundOllama::Running {
                url: config.ollama.base().clone(),
                version: Some(version),
            });
        }
        found.extend(find_ollama(
            config.path_var.as_deref(),
            &config.install.install_dir,
            &config.install.version,
        ));
        let plan = plan_install(&found, &config.install.plan_options(config.no_install));
        let wait = match plan {
            InstallPlan::UseExisting(FoundOllama::Running { url, version }) => {
                tracing::info!(%url, version = version.as_deref().unwrap_or("?"), "an Ollama not started by herd answers; using it as it is");
                state.send_replace(OllamaState::External {
                    url: url.to_string(),
                    version,
                });
                stop.cancelled().await;
                return None;
            }
            InstallPlan::UseExisting(FoundOllama::OnPath { binary }) => {
                tracing::info!(binary = %binary.display(), "using the Ollama installed on this machine");
                return Some((binary, Origin::OnPath));
            }
            InstallPlan::UseExisting(FoundOllama::InstallDir { binary, version }) => {
                tracing::info!(binary = %binary.display(), %version, "using Ollama from herd's install directory");
                return Some((binary, Origin::InstallDir { version }));
            }
            InstallPlan::Refuse(reason) => {
                failures += 1;
                let wait = config.timings.install_retry.delay(failures);
                tracing::error!(retry_in_ms = millis(wait), "{reason}");
                state.send_replace(OllamaState::NotFound { reason });
                wait
            }
            InstallPlan::Install(version) => match install(config, version, state, stop).await {
                Some(Ok(installed)) => {
                    return Some((
                        installed.binary,
                        Origin::Installed {
                            version: installed.version,
                        },
                    ));
                }
                Some(Err(error)) => {
                    failures += 1;
                    let wait = config
                        .timings
                        .install_retry
                        .jittered_delay(failures, &mut rand::rng());
                    tracing::error!(retry_in_ms = millis(wait), error = %error, "installing Ollama failed");
                    state.send_replace(OllamaState::InstallFailed {
                        error: error.to_string(),
                        retry_in: Some(wait),
                    });
                    wait
                }
                None => return None,
            },
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return None,
        }
    }
}

/// One install, with its progress forwarded to `state`; `None` when `stop` came first.
async fn install(
    config: &SupervisorConfig,
    version: OllamaVersion,
    state: &watch::Sender<OllamaState>,
    stop: &CancellationToken,
) -> Option<Result<crate::install::Installed, crate::install::InstallError>> {
    tracing::info!(%version, dir = %config.install.install_dir.display(), "no Ollama found; installing it");
    let (tx, mut rx) = watch::channel(InstallProgress::default());
    let options = InstallOptions {
        version,
        progress: Some(tx),
        ..config.install.clone()
    };
    state.send_replace(OllamaState::Installing(InstallProgress::default()));
    let work = install_ollama(&options);
    tokio::pin!(work);
    loop {
        tokio::select! {
            result = &mut work => return Some(result),
            changed = rx.changed() => {
                if changed.is_ok() {
                    state.send_replace(OllamaState::Installing(rx.borrow_and_update().clone()));
                }
            }
            () = stop.cancelled() => return None,
        }
    }
}

/// Starts `binary serve`, keeps it running, stops it when `stop` is cancelled.
async fn run_process(
    config: &SupervisorConfig,
    binary: &Path,
    origin: Origin,
    state: &watch::Sender<OllamaState>,
    stop: &CancellationToken,
) {
    let publish = |process: ProcessState| {
        state.send_replace(OllamaState::Managed {
            binary: binary.to_owned(),
            origin: origin.clone(),
            process,
        });
    };
    let mut failures = 0u32;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        publish(ProcessState::Starting { attempt });
        let started = Instant::now();
        let how = match start(config, binary) {
            Err(e) => format!("could not be started: {e}"),
            Ok((mut child, tail)) => {
                let pid = child.id().unwrap_or_default();
                tracing::info!(pid, attempt, binary = %binary.display(), listen = %config.bind_addr, "started ollama serve");
                let outcome = watch_child(config, &mut child, pid, &publish, stop).await;
                match outcome {
                    ChildOutcome::Stop => {
                        terminate(&mut child, pid, config.timings.stop_timeout).await;
                        publish(ProcessState::Stopped);
                        return;
                    }
                    ChildOutcome::NotReady => {
                        tracing::warn!(
                            pid,
                            timeout_ms = millis(config.timings.ready_timeout),
                            "ollama serve did not answer in time; restarting it"
                        );
                        terminate(&mut child, pid, config.timings.stop_timeout).await;
                        "did not answer in time".to_owned()
                    }
                    ChildOutcome::Exited(status) => {
                        let last = tail.lines().join("\n");
                        let how = describe_exit(status);
                        tracing::warn!(pid, last_output = %last, "ollama serve {how}");
                        how
                    }
                }
            }
        };
        if started.elapsed() >= config.timings.stable_after {
            failures = 0;
        }
        failures += 1;
        let delay = restart_delay(&config.timings.restart_backoff, failures);
        tracing::warn!(
            restart_in_ms = millis(delay),
            "ollama serve {how}; restarting it"
        );
        publish(ProcessState::Exited {
            how,
            restart_in: delay,
        });
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => {
                publish(ProcessState::Stopped);
                return;
            }
        }
    }
}

fn restart_delay(backoff: &Backoff, failures: u32) -> Duration {
    backoff.jittered_delay(failures, &mut rand::rng())
}

enum ChildOutcome {
    Exited(ExitStatus),
    NotReady,
    Stop,
}

/// Waits for readiness, then for the process to exit, unless `stop` comes first.
async fn watch_child(
    config: &SupervisorConfig,
    child: &mut Child,
    pid: u32,
    publish: &impl Fn(ProcessState),
    stop: &CancellationToken,
) -> ChildOutcome {
    let ready = wait_ready(&config.ollama, config.timings.ready_poll);
    tokio::select! {
        status = child.wait() => return exited(status),
        () = stop.cancelled() => return ChildOutcome::Stop,
        () = tokio::time::sleep(config.timings.ready_timeout) => return ChildOutcome::NotReady,
        () = ready => {}
    }
    tracing::info!(pid, url = %config.ollama.base(), "ollama serve answers");
    publish(ProcessState::Running { pid });
    tokio::select! {
        status = child.wait() => exited(status),
        () = stop.cancelled() => ChildOutcome::Stop,
    }
}

fn exited(status: std::io::Result<ExitStatus>) -> ChildOutcome {
    match status {
        Ok(status) => ChildOutcome::Exited(status),
        // The child cannot be waited for: treat it as gone.
        Err(e) => {
            tracing::warn!(error = %e, "could not wait for ollama serve");
            ChildOutcome::Exited(ExitStatus::default())
        }
    }
}

async fn wait_ready(ollama: &OllamaClient, poll: Duration) {
    loop {
        if ollama.root().await.is_ok() {
            return;
        }
        tokio::time::sleep(poll).await;
    }
}

/// "exited with status 1", "was killed by signal 9".
pub fn describe_exit(status: ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return format!("was killed by signal {signal}");
        }
    }
    match status.code() {
        Some(code) => format!("exited with status {code}"),
        None => "exited".to_owned(),
    }
}

/// The last lines a process wrote, for the log when it dies.
#[derive(Clone, Default)]
struct Tail(Arc<Mutex<VecDeque<String>>>);

impl Tail {
    const LINES: usize = 20;

    fn push(&self, line: String) {
        let mut lines = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if lines.len() == Self::LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }
}

/// Spawns `binary serve` with its output logged.
fn start(config: &SupervisorConfig, binary: &Path) -> std::io::Result<(Child, Tail)> {
    let mut command = Command::new(binary);
    command
        .arg("serve")
        .env("OLLAMA_HOST", &config.bind_addr)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Should the nodelet die without stopping it, it is at least killed with it
        // when the runtime drops the handle.
        .kill_on_drop(true);
    if let Some(n) = config.max_parallel {
        command.env("OLLAMA_NUM_PARALLEL", n.to_string());
    }
    // `ollama serve` refuses to start without a home for its key pair.
    if std::env::var_os("HOME").is_none_or(|h| h.is_empty()) {
        command.env("HOME", &config.install.install_dir);
    }
    // Its own process group: a Ctrl-C at the terminal reaches only the nodelet, which
    // first takes the node out of routing and then stops Ollama itself.
    #[cfg(unix)]
    command.process_group(0);
    // The same on Windows (a new console process group), and no console window of its
    // own popping up when the nodelet runs as a service or from the tray.
    #[cfg(windows)]
    {
        const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;
        const CREATE_NO_WINDOW: u32 = 0x0800_0000;
        command.creation_flags(CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW);
    }
    let mut child = command.spawn()?;
    let tail = Tail::default();
    if let Some(out) = child.stdout.take() {
        tokio::spawn(log_lines(out, tail.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(log_lines(err, tail.clone()));
    }
    Ok((child, tail))
}

/// Logs each line Ollama writes: warnings and errors at info, the rest at debug.
async fn log_lines(stream: impl AsyncRead + Unpin, tail: Tail) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.contains("level=ERROR") || line.contains("level=WARN") {
            tracing::info!(target: "ollama", "{line}");
        } else {
            tracing::debug!(target: "ollama", "{line}");
        }
        tail.push(line);
    }
}

/// SIGTERM, then SIGKILL when it has not exited after `grace`. On Windows, where a
/// console program without a window gets no close request it could act on, the
/// process is ended at once (TerminateProcess); Ollama keeps nothing it would lose.
async fn terminate(child: &mut Child, pid: u32, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    #[cfg(unix)]
    {
        let sent = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .map(|p| rustix::process::kill_process(p, rustix::process::Signal::TERM));
        match sent {
            Some(Ok(())) => match tokio::time::timeout(grace, child.wait()).await {
                Ok(status) => {
                    tracing::info!(pid, status = ?status.ok(), "ollama serve stopped");
                    return;
                }
                Err(_) => tracing::warn!(
                    pid,
                    grace_ms = millis(grace),
                    "ollama serve ignored SIGTERM; killing it"
                ),
            },
            Some(Err(e)) => {
                tracing::warn!(pid, error = %e, "could not send SIGTERM to ollama serve; killing it")
            }
            None => {}
        }
    }
    #[cfg(not(unix))]
    let _ = (pid, grace);
    if let Err(e) = child.kill().await {
        tracing::warn!(pid, error = %e, "could not kill ollama serve");
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn exits_are_described() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            describe_exit(ExitStatus::from_raw(0)),
            "exited with status 0"
        );
        assert_eq!(
            describe_exit(ExitStatus::from_raw(1 << 8)),
            "exited with status 1"
        );
        assert_eq!(
            describe_exit(ExitStatus::from_raw(9)),
            "was killed by signal 9"
        );
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let tail = Tail::default();
        for i in 0..30 {
            tail.push(i.to_string());
        }
        let lines = tail.lines();
        assert_eq!(lines.len(), Tail::LINES);
        assert_eq!(lines.first().map(String::as_str), Some("10"));
        assert_eq!(lines.last().map(String::as_str), Some("29"));
    }

    #[test]
    fn only_a_live_managed_process_counts_as_herds() {
        let managed = |process| OllamaState::Managed {
            binary: "/x".into(),
            origin: Origin::OnPath,
            process,
        };
        assert!(managed(ProcessState::Running { pid: 1 }).herd_runs_ollama());
        assert!(managed(ProcessState::Starting { attempt: 1 }).herd_runs_ollama());
        assert!(!managed(ProcessState::Stopped).herd_runs_ollama());
        assert!(
            !OllamaState::External {
                url: "u".into(),
                version: None
            }
            .herd_runs_ollama()
        );
    }
}
