//! A child process whose output is kept, which is killed when dropped, and
//! whose log tail is printed when the test fails.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Lines kept per process (the oldest are dropped).
const KEEP_LINES: usize = 4000;
/// Lines printed per process when a test fails.
const PRINT_LINES: usize = 120;

type Lines = Arc<Mutex<VecDeque<String>>>;

/// A running (or stopped) child process.
pub struct Proc {
    pub name: String,
    child: Child,
    started: Instant,
    lines: Lines,
    exited: Option<ExitStatus>,
    /// Processes to SIGKILL with this one (found by their executable under
    /// this directory): a nodelet's Ollama lives in its own process group and
    /// outlives a `kill -9` of the nodelet.
    companions: Option<PathBuf>,
}

impl Proc {
    /// Spawns `command` with stdout and stderr captured.
    pub fn spawn(name: impl Into<String>, mut command: Command) -> Proc {
        let name = name.into();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let lines: Lines = Arc::new(Mutex::new(VecDeque::new()));
        let started = Instant::now();
        if let Some(out) = child.stdout.take() {
            collect(out, lines.clone(), started);
        }
        if let Some(err) = child.stderr.take() {
            collect(err, lines.clone(), started);
        }
        Proc {
            name,
            child,
            started,
            lines,
            exited: None,
            companions: None,
        }
    }

    /// Also kill, with this process, every process whose executable lies
    /// under `dir`.
    pub fn with_companions(mut self, dir: &Path) -> Proc {
        self.companions = Some(dir.canonicalize().unwrap_or_else(|_| dir.to_owned()));
        self
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process wrote so far (the last [`KEEP_LINES`] lines).
    pub fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// Waits (bounded) until a line satisfies `pred` and returns it.
    pub async fn wait_for_line(
        &mut self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| pred(l)) {
                return line;
            }
            if let Some(status) = self.try_exit() {
                self.dump();
                panic!("{} exited ({status}) before {what}", self.name);
            }
            if Instant::now() > deadline {
                self.dump();
                panic!("{}: {what}: not within {limit:?}", self.name);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The exit status, if it has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// `kill -9` of the process and its companions, and reap it.
    pub fn kill9(&mut self) {
        let companions = self.companion_pids();
        let _ = self.child.kill();
        for pid in &companions {
            kill(*pid, rustix::process::Signal::KILL);
        }
        if self.exited.is_none() {
            self.exited = self.child.wait().ok();
        }
        // SIGKILL is delivered asynchronously: wait (bounded) until they are gone.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !companions.is_empty()
            && self.companion_pids().iter().any(|p| companions.contains(p))
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGTERM, then waits up to `limit` for the exit (SIGKILL after that).
    pub async fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        if self.try_exit().is_none() {
            kill(self.pid(), rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + limit;
        while self.try_exit().is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let status = self.try_exit();
        if status.is_none() {
            self.kill9();
        }
        status
    }

    /// Pids of live processes whose executable is under the companions dir.
    pub fn companion_pids(&self) -> Vec<u32> {
        match &self.companions {
            Some(dir) => pids_with_exe_under(dir),
            None => Vec::new(),
        }
    }

    /// Resident set size in KiB, from `/proc/PID/status` (Linux).
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid())
    }

    /// Prints the last lines of the output to stderr (the test's output).
    pub fn dump(&self) {
        let lines = self.lines();
        let from = lines.len().saturating_sub(PRINT_LINES);
        eprintln!(
            "----- {} (pid {}, {} lines, last {}) -----",
            self.name,
            self.pid(),
            lines.len(),
            lines.len() - from
        );
        for l in &lines[from..] {
            eprintln!("{l}");
        }
    }

    /// Time since the process was spawned.
    pub fn age(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("HERD_E2E_DUMP").is_some() {
            self.dump();
        }
        self.kill9();
    }
}

fn collect(stream: impl Read + Send + 'static, lines: Lines, started: Instant) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let mut l = lines.lock().unwrap_or_else(PoisonError::into_inner);
            if l.len() == KEEP_LINES {
                l.pop_front();
            }
            l.push_back(format!(
                "[{:>8.3}s] {line}",
                started.elapsed().as_secs_f64()
            ));
        }
    });
}

/// Sends `signal` to `pid`; a process that is gone already is fine.
pub fn kill(pid: u32, signal: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// RSS of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Live (not zombie) processes whose executable lies under `dir` (Linux `/proc`).
pub fn pids_with_exe_under(dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe.starts_with(dir))
                && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .unwrap_or_default()
                    .rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .collect()
}
