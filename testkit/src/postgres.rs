//! A real PostgreSQL for tests: Debian's package (`scripts/postgres.sh`
//! installs it), a new cluster in a temporary directory, served on
//! 127.0.0.1 and a free port with password (SCRAM) authentication, stopped
//! when the [`Postgres`] is dropped.
//!
//! PostgreSQL refuses to run as root, so when the tests do, the cluster
//! runs as `nobody` (uid and gid 65534). A watchdog process stops the
//! cluster and removes its directory should the test process die without
//! dropping it (a `kill -9`, an abort).
//!
//! ```no_run
//! let pg = herd_testkit::postgres::Postgres::start(&[("fsync", "off")]).expect("postgres");
//! pg.create_database("herd").expect("database");
//! let url = pg.url("herd"); // postgres://herd:…@127.0.0.1:PORT/herd
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The superuser every test cluster has.
pub const USER: &str = "herd";
/// Its password: a test cluster on loopback, never anything real.
pub const PASSWORD: &str = "herd-test-password";

/// The user the cluster runs as when the tests run as root.
const UNPRIVILEGED: &str = "65534";

/// Why a test cluster could not be had.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error(
        "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres, and HERD_PG_BIN is unset): run scripts/postgres.sh"
    )]
    NotInstalled,
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{what} failed: {output}")]
    Failed { what: String, output: String },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PostgresError {
    let what = what.into();
    move |source| PostgresError::Io { what, source }
}

/// A running test cluster.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    settings: Vec<(String, String)>,
    server: Option<Child>,
    watchdog: Option<Child>,
}

/// The directory of the newest installed PostgreSQL's programs.
pub fn bin_dir() -> Result<PathBuf, PostgresError> {
    if let Some(dir) = std::env::var_os("HERD_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| PostgresError::NotInstalled)?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, b)| b)
        .ok_or(PostgresError::NotInstalled)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// `program` run as the cluster's owner.
fn as_owner(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            &format!("--reuid={UNPRIVILEGED}"),
            &format!("--regid={UNPRIVILEGED}"),
            "--clear-groups",
            "--",
        ])
        .arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(what: &str, cmd: &mut Command) -> Result<(), PostgresError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(io(format!("running {what}")))?;
    if out.status.success() {
        return Ok(());
    }
    Err(PostgresError::Failed {
        what: what.to_owned(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    })
}

fn free_port() -> Result<u16, PostgresError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("finding a free port"))?;
    Ok(l.local_addr().map_err(io("finding a free port"))?.port())
}

impl Postgres {
    /// Makes a new cluster and starts it with `settings` (`-c name=value`)
    /// besides loopback-only TCP; waits until it accepts connections.
    pub fn start(settings: &[(&str, &str)]) -> Result<Self, PostgresError> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("herd-pg-")
            .tempdir()
            .map_err(io("making the cluster directory"))?;
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).map_err(io("writing the password file"))?;
        if is_root() {
            run(
                "chown",
                Command::new("chown")
                    .arg("-R")
                    .arg(format!("{UNPRIVILEGED}:{UNPRIVILEGED}"))
                    .arg(dir.path()),
            )?;
        }
        run(
            "initdb",
            as_owner(&bin.join("initdb"))
                .arg("-D")
                .arg(dir.path().join("data"))
                .args(["-U", USER, "-A", "scram-sha-256", "--no-sync", "-E", "UTF8"])
                .args(["--locale=C.UTF-8"])
                .arg(format!("--pwfile={}", pwfile.display())),
        )?;
        let mut pg = Self {
            dir,
            bin,
            port: free_port()?,
            settings: settings
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            server: None,
            watchdog: None,
        };
        pg.start_again()?;
        Ok(pg)
    }

    /// Starts the cluster (after [`Postgres::stop`]) on the same port.
    pub fn start_again(&mut self) -> Result<(), PostgresError> {
        if self.server.is_some() {
            return Ok(());
        }
        let log = std::fs::File::create(self.dir.path().join("postgres.log"))
            .map_err(io("creating the server log"))?;
        let mut cmd = as_owner(&self.bin.join("postgres"));
        cmd.arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-c", "unix_socket_directories="]);
        for (k, v) in &self.settings {
            cmd.arg("-c").arg(format!("{k}={v}"));
        }
        let stderr = log.try_clone().map_err(io("opening the server log"))?;
        let server = cmd
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .map_err(io("starting postgres"))?;
        let pid = server.id();
        self.server = Some(server);
        self.watchdog = Some(self.spawn_watchdog(pid)?);
        self.wait_ready()
    }

    /// Stops the cluster the way an administrator would (fast shutdown:
    /// clients are disconnected) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        if let Some(mut server) = self.server.take() {
            let _ = Command::new("kill")
                .args(["-INT", &server.id().to_string()])
                .status();
            let _ = server.wait();
        }
    }

    /// Stops the cluster, and any test process's orphans, if the test
    /// process dies first: polls that it is alive, then fast-shuts the
    /// cluster down and removes its directory.
    fn spawn_watchdog(&self, server: u32) -> Result<Child, PostgresError> {
        let script = format!(
            "while kill -0 {parent} 2>/dev/null && kill -0 {server} 2>/dev/null; do sleep 1; done; \
             if kill -0 {server} 2>/dev/null; then kill -INT {server}; \
             while kill -0 {server} 2>/dev/null; do sleep 0.2; done; rm -rf '{dir}'; fi",
            parent = std::process::id(),
            dir = self.dir.path().display(),
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io("starting the cluster's watchdog"))
    }

    fn wait_ready(&mut self) -> Result<(), PostgresError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(());
            }
            let exited = self
                .server
                .as_mut()
                .map(|s| s.try_wait().ok().flatten().is_some());
            if exited != Some(false) || Instant::now() > deadline {
                self.stop();
                return Err(PostgresError::Failed {
                    what: "starting postgres".into(),
                    output: self.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the server wrote to its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db`, password included.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{db}", self.port)
    }

    /// The URL of database `db` without the password.
    pub fn url_without_password(&self, db: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs `sql` in database `db` with `psql`; returns what it printed
    /// (unaligned, tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, PostgresError> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER])
            .args(["-d", db, "-c", sql])
            .env("PGPASSWORD", PASSWORD)
            .stdin(Stdio::null())
            .output()
            .map_err(io("running psql"))?;
        if !out.status.success() {
            return Err(PostgresError::Failed {
                what: format!("psql {sql:?}"),
                output: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Creates an empty database.
    pub fn create_database(&self, name: &str) -> Result<(), PostgresError> {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""))
            .map(drop)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
