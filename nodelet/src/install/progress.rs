//! Progress of an install, shown to the person watching and published for the nodelet.
//!
//! Three audiences: a person at a terminal gets an indicatif bar (percent, bytes,
//! speed, ETA); a log collector gets a plain `tracing` line every few seconds; the
//! nodelet's heartbeat gets an [`InstallProgress`] value through a `watch` channel so it
//! can report the install in `Node.status`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::watch;

/// Where an install is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InstallPhase {
    #[default]
    Starting,
    /// Fetching `sha256sum.txt` or the archive.
    Downloading,
    /// Waiting before another try.
    Retrying,
    Verifying,
    Extracting,
    Installed,
    Failed,
}

/// A snapshot of an install, as published on the watch channel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstallProgress {
    pub phase: InstallPhase,
    /// The file being fetched, e.g. `ollama-linux-amd64.tar.zst`.
    pub file: String,
    /// Bytes on disk so far (including a resumed prefix).
    pub completed: u64,
    /// The file's size when the server said.
    pub total: Option<u64>,
    /// Recent download speed.
    pub bytes_per_second: u64,
    /// The current try, from 1.
    pub attempt: u32,
    /// Why the last try failed, or why the install failed.
    pub error: Option<String>,
}

/// One line saying where an install is, e.g. `downloading ollama-linux-amd64.tar.zst:
/// 25% of 1.2 GB at 10.5 MB/s`; for `Node.status` and logs.
pub fn describe_progress(p: &InstallProgress) -> String {
    let file = if p.file.is_empty() {
        "Ollama"
    } else {
        p.file.as_str()
    };
    match p.phase {
        InstallPhase::Starting => "starting the Ollama install".to_owned(),
        InstallPhase::Downloading => {
            let speed = if p.bytes_per_second > 0 {
                format!(" at {}/s", indicatif::HumanBytes(p.bytes_per_second))
            } else {
                String::new()
            };
            match p.total {
                Some(total) if total > 0 => format!(
                    "downloading {file}: {}% of {}{speed}",
                    p.completed.saturating_mul(100) / total,
                    indicatif::HumanBytes(total)
                ),
                _ => format!(
                    "downloading {file}: {}{speed}",
                    indicatif::HumanBytes(p.completed)
                ),
            }
        }
        InstallPhase::Retrying => format!(
            "downloading {file} failed (try {}): {}; retrying",
            p.attempt,
            p.error.as_deref().unwrap_or("unknown error")
        ),
        InstallPhase::Verifying => format!("verifying the SHA-256 of {file}"),
        InstallPhase::Extracting => format!("unpacking {file}"),
        InstallPhase::Installed => format!("installed {file}"),
        InstallPhase::Failed => format!(
            "the install failed: {}",
            p.error.as_deref().unwrap_or("unknown error")
        ),
    }
}

/// How to show progress locally.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProgressDisplay {
    /// A bar when stderr is a terminal, log lines otherwise.
    #[default]
    Auto,
    Bar,
    Log,
    /// Nothing locally (the watch channel still gets updates).
    Hidden,
}

impl ProgressDisplay {
    fn resolve(self) -> ProgressDisplay {
        match self {
            ProgressDisplay::Auto if std::io::stderr().is_terminal() => ProgressDisplay::Bar,
            ProgressDisplay::Auto => ProgressDisplay::Log,
            other => other,
        }
    }
}

/// Feeds one install's progress to the bar, the log and the watch channel.
pub(crate) struct Reporter {
    display: ProgressDisplay,
    log_every: Duration,
    sender: Option<watch::Sender<InstallProgress>>,
    state: InstallProgress,
    bar: Option<ProgressBar>,
    last_log: Instant,
    last_publish: Instant,
    speed_window: (Instant, u64),
}

impl Reporter {
    pub(crate) fn new(
        display: ProgressDisplay,
        log_every: Duration,
        sender: Option<watch::Sender<InstallProgress>>,
    ) -> Reporter {
        let now = Instant::now();
        Reporter {
            display: display.resolve(),
            log_every,
            sender,
            state: InstallProgress::default(),
            bar: None,
            last_log: now,
            last_publish: now,
            speed_window: (now, 0),
        }
    }

    #[cfg(test)]
    pub(crate) fn snapshot(&self) -> &InstallProgress {
        &self.state
    }

    /// A new phase with no byte counts (verifying, extracting, …).
    pub(crate) fn phase(&mut self, phase: InstallPhase, file: &str) {
        self.finish_bar();
        self.state.phase = phase;
        self.state.file = file.to_owned();
        self.state.bytes_per_second = 0;
        if phase != InstallPhase::Failed {
            self.state.error = None;
        }
        self.publish();
    }

    /// A download try begins; `completed` bytes are already on disk.
    pub(crate) fn download_started(
        &mut self,
        file: &str,
        attempt: u32,
        completed: u64,
        total: Option<u64>,
    ) {
        self.finish_bar();
        let now = Instant::now();
        self.state = InstallProgress {
            phase: InstallPhase::Downloading,
            file: file.to_owned(),
            completed,
            total,
            bytes_per_second: 0,
            attempt,
            error: None,
        };
        self.last_log = now;
        self.speed_window = (now, completed);
        if self.display == ProgressDisplay::Bar {
            let bar = match total {
                Some(total) => {
                    ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
                }
                None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            };
            let template = if total.is_some() {
                "{msg} [{bar:30}] {percent:>3}% {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}"
            } else {
                "{msg} {spinner} {bytes} {bytes_per_sec}"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(format!("downloading {file}"));
            bar.set_position(completed);
            bar.reset_eta();
            self.bar = Some(bar);
        } else if self.display == ProgressDisplay::Log {
            match (completed, total) {
                (0, Some(total)) => {
                    tracing::info!(file, attempt, total_bytes = total, "downloading")
                }
                (0, None) => tracing::info!(file, attempt, "downloading"),
                (from, _) => tracing::info!(file, attempt, resume_from = from, "resuming download"),
            }
        }
        self.publish();
    }

    /// `n` more bytes are on disk.
    pub(crate) fn advance(&mut self, n: u64) {
        self.state.completed += n;
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
        let now = Instant::now();
        let (since, at) = self.speed_window;
        let elapsed = now.duration_since(since);
        if elapsed >= Duration::from_millis(500) {
            let bytes = self.state.completed.saturating_sub(at);
            self.state.bytes_per_second = (bytes as f64 / elapsed.as_secs_f64()) as u64;
            self.speed_window = (now, self.state.completed);
        }
        if self.display == ProgressDisplay::Log
            && now.duration_since(self.last_log) >= self.log_every
        {
            self.last_log = now;
            self.log_line();
        }
        if now.duration_since(self.last_publish) >= Duration::from_millis(250) {
            self.publish();
        }
    }

    /// A try failed and the next one starts after `delay`.
    pub(crate) fn retrying(&mut self, reason: &str, delay: Duration) {
        self.finish_bar();
        self.state.phase = InstallPhase::Retrying;
        self.state.error = Some(reason.to_owned());
        self.state.bytes_per_second = 0;
        tracing::warn!(
            file = %self.state.file,
            attempt = self.state.attempt,
            retry_in_ms = delay.as_millis() as u64,
            error = reason,
            "download failed; retrying"
        );
        self.publish();
    }

    /// The current download finished.
    pub(crate) fn download_finished(&mut self) {
        self.finish_bar();
        if self.display == ProgressDisplay::Log {
            tracing::info!(file = %self.state.file, bytes = self.state.completed, "downloaded");
        }
        self.publish();
    }

    pub(crate) fn failed(&mut self, error: &str) {
        self.finish_bar();
        self.state.phase = InstallPhase::Failed;
        self.state.error = Some(error.to_owned());
        self.publish();
    }

    fn log_line(&self) {
        let s = &self.state;
        let speed = s.bytes_per_second;
        match s.total {
            Some(total) if total > 0 => {
                let percent = s.completed.saturating_mul(100) / total;
                let eta_secs = (speed > 0).then(|| total.saturating_sub(s.completed) / speed);
                tracing::info!(
                    file = %s.file,
                    percent,
                    completed_bytes = s.completed,
                    total_bytes = total,
                    bytes_per_second = speed,
                    eta_secs,
                    "downloading"
                );
            }
            _ => {
                tracing::info!(file = %s.file, completed_bytes = s.completed, bytes_per_second = speed, "downloading")
            }
        }
    }

    fn publish(&mut self) {
        self.last_publish = Instant::now();
        if let Some(sender) = &self.sender {
            sender.send_replace(self.state.clone());
        }
    }

    fn finish_bar(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.finish_bar();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_channel_sees_phases_and_bytes() {
        let (tx, rx) = watch::channel(InstallProgress::default());
        let mut r = Reporter::new(ProgressDisplay::Hidden, Duration::from_secs(5), Some(tx));
        r.download_started("a.tar.zst", 1, 0, Some(100));
        assert_eq!(rx.borrow().phase, InstallPhase::Downloading);
        assert_eq!(rx.borrow().total, Some(100));
        r.advance(40);
        r.advance(60);
        r.download_finished();
        assert_eq!(rx.borrow().completed, 100);
        r.retrying("boom", Duration::from_millis(1));
        assert_eq!(rx.borrow().error.as_deref(), Some("boom"));
        r.phase(InstallPhase::Verifying, "a.tar.zst");
        assert_eq!(rx.borrow().phase, InstallPhase::Verifying);
        assert_eq!(rx.borrow().error, None);
        r.failed("bad");
        assert_eq!(rx.borrow().phase, InstallPhase::Failed);
    }

    #[test]
    fn progress_descriptions() {
        let mut p = InstallProgress {
            phase: InstallPhase::Downloading,
            file: "a.tar.zst".into(),
            completed: 512,
            total: Some(2048),
            bytes_per_second: 1024,
            ..InstallProgress::default()
        };
        assert_eq!(
            describe_progress(&p),
            "downloading a.tar.zst: 25% of 2.00 KiB at 1.00 KiB/s"
        );
        p.total = None;
        p.bytes_per_second = 0;
        assert_eq!(describe_progress(&p), "downloading a.tar.zst: 512 B");
        p.phase = InstallPhase::Retrying;
        p.attempt = 2;
        p.error = Some("503".into());
        assert_eq!(
            describe_progress(&p),
            "downloading a.tar.zst failed (try 2): 503; retrying"
        );
        p.phase = InstallPhase::Verifying;
        assert!(describe_progress(&p).contains("SHA-256"));
    }

    #[test]
    fn bar_and_log_modes_do_not_panic_without_a_terminal() {
        for display in [
            ProgressDisplay::Bar,
            ProgressDisplay::Log,
            ProgressDisplay::Auto,
        ] {
            let mut r = Reporter::new(display, Duration::ZERO, None);
            r.download_started("f", 1, 10, None);
            r.advance(5);
            r.download_started("f", 2, 0, Some(20));
            r.advance(20);
            r.download_finished();
            assert_eq!(r.snapshot().completed, 20);
        }
    }
}
