//! Tests of the `herd` binary as a process.

mod apikeys;
mod apply;
mod describe;
mod get;
mod global_flags;
mod keys;
mod kill9;
mod nodes;
mod secrets;
mod server_cmd;
mod up;
mod verbs;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Sends SIGTERM to `child`.
pub fn sigterm(child: &Child) {
    let pid = child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(sent.expect("kill").success(), "kill -TERM {pid}");
}

/// Waits for `child` to exit, failing the test (and killing it) after
/// `within`; `what` names it in the failure.
pub fn wait_exit(child: &mut Child, within: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not stop within {within:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `herd` process; killed (SIGKILL) when dropped.
pub struct HerdProcess {
    pub child: Child,
    pub url: String,
    pub stderr: mpsc::Receiver<String>,
}

impl HerdProcess {
    /// Starts `herd server` on a free loopback port and waits until it listens.
    pub fn server(data_dir: &Path, extra: &[&str]) -> Self {
        Self::start("server", data_dir, extra)
    }

    /// Starts `herd SUBCOMMAND --listen 127.0.0.1:0 --data-dir DIR EXTRA..`
    /// (`server` or `up`) and waits until it listens.
    pub fn start(subcommand: &str, data_dir: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_herd"))
            .args([subcommand, "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn herd server");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let url = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = rx
                .recv_timeout(left)
                .expect("herd server printed its address within 30 s");
            if let Some(i) = line.find("listening on http://") {
                let rest = &line[i + "listening on ".len()..];
                break rest.split_whitespace().next().unwrap_or(rest).to_owned();
            }
        };
        verbs::remember_data_dir(&url, data_dir);
        Self {
            child,
            url,
            stderr: rx,
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for HerdProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}
