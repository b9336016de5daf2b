//! Where the PostgreSQL store is and how to log in: a `postgres://` URL,
//! completed from the usual `PG*` variables and password files as `psql`
//! would be. The password never leaves [`PgTarget`] except towards the
//! database: its `Debug` and [`PgTarget::describe`] leave it out.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_postgres::config::Host;

use crate::store::StoreError;

/// How long connecting to the database may take before the attempt counts
/// as failed (the server then retries, and writes answer 503 meanwhile).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A PostgreSQL database to keep the store in.
#[derive(Clone)]
pub struct PgTarget {
    config: tokio_postgres::Config,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgTarget({})", self.describe())
    }
}

/// The process environment a target reads: the `PG*` variables and the home
/// directory (for `~/.pgpass`). Taken as a value so tests need no real
/// environment.
#[derive(Clone, Debug, Default)]
pub struct PgEnv {
    pub user: Option<String>,
    pub password: Option<String>,
    pub passfile: Option<PathBuf>,
    pub home: Option<PathBuf>,
}

impl PgEnv {
    /// `PGUSER`, `PGPASSWORD`, `PGPASSFILE` and `HOME` of this process.
    pub fn from_process() -> Self {
        let var = |k| std::env::var(k).ok().filter(|v: &String| !v.is_empty());
        Self {
            user: var("PGUSER"),
            password: var("PGPASSWORD"),
            passfile: var("PGPASSFILE").map(PathBuf::from),
            home: var("HOME").map(PathBuf::from),
        }
    }
}

/// Whether `s` names a PostgreSQL store rather than a SQLite one.
pub fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

impl PgTarget {
    /// Parses `url` (`postgres://USER@HOST:PORT/DB?options`) and fills in
    /// what it leaves out: the user from `PGUSER`; the password from
    /// `PGPASSWORD`, else from `password_file` (the password alone), else
    /// from the `PGPASSFILE` (or `~/.pgpass`) line matching host, port,
    /// database and user. Errors never repeat the URL, which may hold a
    /// password.
    pub fn parse(url: &str, password_file: Option<&Path>, env: &PgEnv) -> Result<Self, StoreError> {
        if !is_postgres_url(url) {
            return Err(StoreError::Backend(
                "a PostgreSQL store is named by a postgres:// URL".into(),
            ));
        }
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            StoreError::Backend(format!("the PostgreSQL store URL is not valid: {e}"))
        })?;
        if config.get_user().is_none()
            && let Some(user) = &env.user
        {
            config.user(user.clone());
        }
        if config.get_password().is_none()
            && let Some(pw) = password_from(&config, password_file, env)?
        {
            config.password(pw);
        }
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .application_name("herd")
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30));
        Ok(Self { config })
    }

    /// `user@host:port/db`, for logs and errors: never the password.
    pub fn describe(&self) -> String {
        let host = self
            .config
            .get_hosts()
            .first()
            .map_or_else(|| "localhost".to_owned(), host_name);
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!(
            "{}@{host}:{port}/{}",
            self.config.get_user().unwrap_or("?"),
            self.config.get_dbname().unwrap_or("?")
        )
    }

    pub(super) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }
}

fn host_name(h: &Host) -> String {
    match h {
        Host::Tcp(name) => name.clone(),
        // A socket directory: only Unix has them (and only there does the
        // driver's enum have this variant).
        #[cfg(unix)]
        Host::Unix(path) => path.display().to_string(),
    }
}

fn password_from(
    config: &tokio_postgres::Config,
    password_file: Option<&Path>,
    env: &PgEnv,
) -> Result<Option<String>, StoreError> {
    if let Some(pw) = &env.password {
        return Ok(Some(pw.clone()));
    }
    if let Some(path) = password_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            StoreError::Backend(format!(
                "reading the store password file {}: {e}",
                path.display()
            ))
        })?;
        return Ok(Some(text.trim_end_matches(['\n', '\r']).to_owned()));
    }
    let passfile = env
        .passfile
        .clone()
        .or_else(|| env.home.as_ref().map(|h| h.join(".pgpass")));
    let Some(text) = passfile.and_then(|p| std::fs::read_to_string(p).ok()) else {
        return Ok(None);
    };
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        // No host, or a Unix socket directory: `.pgpass` calls that localhost.
        _ => "localhost".to_owned(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = config.get_user().unwrap_or_default();
    let db = config.get_dbname().unwrap_or(user);
    Ok(pgpass_lookup(&text, [&host, &port, db, user]))
}

/// The password of the first line of a pgpass file (`host:port:db:user:pw`,
/// `*` matching anything, `\:` and `\\` escaped) that matches `want`.
pub fn pgpass_lookup(text: &str, want: [&str; 4]) -> Option<String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let fields = split_pgpass(l);
            let [h, p, d, u, pw]: [String; 5] = fields.try_into().ok()?;
            let matches = [h, p, d, u]
                .iter()
                .zip(want)
                .all(|(f, w)| f == "*" || f == w);
            matches.then_some(pw)
        })
        .next()
}

fn split_pgpass(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(n), Some(last)) = (chars.next(), fields.last_mut()) {
                    last.push(n);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => {
                if let Some(last) = fields.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgpass_lines_match_in_order_with_wildcards_and_escapes() {
        let text = "# comment\n\
                    db1:5432:herd:alice:first\n\
                    *:5432:herd:bob:b\\:o\\\\b\n\
                    *:*:*:*:fallback\n";
        for (want, expect) in [
            (["db1", "5432", "herd", "alice"], Some("first")),
            (["db2", "5432", "herd", "alice"], Some("fallback")),
            (["db2", "5432", "herd", "bob"], Some("b:o\\b")),
            (["db2", "5433", "herd", "bob"], Some("fallback")),
        ] {
            assert_eq!(pgpass_lookup(text, want).as_deref(), expect, "{want:?}");
        }
        assert_eq!(pgpass_lookup("a:b:c:d\n", ["a", "b", "c", "d"]), None);
        assert_eq!(pgpass_lookup("", ["a", "b", "c", "d"]), None);
    }

    fn password_of(t: &PgTarget) -> Option<String> {
        t.config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    }

    #[test]
    fn password_comes_from_url_then_env_then_file_then_pgpass() {
        let tmp = tempfile::tempdir().expect("tmp");
        let pwfile = tmp.path().join("pw");
        std::fs::write(&pwfile, "from-file\n").expect("write");
        let pgpass = tmp.path().join("pgpass");
        std::fs::write(&pgpass, "db:5432:herd:herd:from-pgpass\n").expect("write");
        let env_pw = PgEnv {
            password: Some("from-env".into()),
            passfile: Some(pgpass.clone()),
            ..PgEnv::default()
        };
        let env_passfile = PgEnv {
            passfile: Some(pgpass),
            ..PgEnv::default()
        };
        let url = "postgres://herd@db:5432/herd";
        for (case, url, file, env, want) in [
            (
                "in the URL",
                "postgres://herd:in-url@db/herd",
                None,
                &env_pw,
                Some("in-url"),
            ),
            (
                "PGPASSWORD",
                url,
                Some(pwfile.as_path()),
                &env_pw,
                Some("from-env"),
            ),
            (
                "password file",
                url,
                Some(pwfile.as_path()),
                &env_passfile,
                Some("from-file"),
            ),
            ("pgpass", url, None, &env_passfile, Some("from-pgpass")),
            (
                "no pgpass line",
                "postgres://other@db/herd",
                None,
                &env_passfile,
                None,
            ),
            ("nothing", url, None, &PgEnv::default(), None),
        ] {
            let t = PgTarget::parse(url, file, env).expect(case);
            assert_eq!(password_of(&t).as_deref(), want, "{case}");
        }
    }

    #[test]
    fn descriptions_and_errors_never_show_the_password() {
        let env = PgEnv::default();
        let t = PgTarget::parse("postgres://herd:s3cret@db.example:6543/fleet", None, &env)
            .expect("valid");
        assert_eq!(t.describe(), "herd@db.example:6543/fleet");
        assert!(!format!("{t:?}").contains("s3cret"));
        for bad in [
            "postgres://herd:s3cret@db:notaport/fleet",
            "postgres://herd:s3cret@db/fleet?sslmode=s3cret",
        ] {
            let e = PgTarget::parse(bad, None, &env).expect_err(bad).to_string();
            assert!(!e.contains("s3cret"), "{e}");
            assert!(e.contains("not valid"), "{e}");
        }
        assert!(PgTarget::parse("mysql://x", None, &env).is_err());
    }

    #[test]
    fn the_user_comes_from_pguser_when_the_url_has_none() {
        let env = PgEnv {
            user: Some("fromenv".into()),
            ..PgEnv::default()
        };
        let t = PgTarget::parse("postgres://db/fleet", None, &env).expect("valid");
        assert_eq!(t.describe(), "fromenv@db:5432/fleet");
        let t = PgTarget::parse("postgres://alice@db/fleet", None, &env).expect("valid");
        assert_eq!(t.describe(), "alice@db:5432/fleet");
    }
}
