//! Flags shared by the verbs that talk to a server.

use std::fmt;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use herd_auth::Token;
use herd_client::{Client, ClientTrust};
use serde::{Deserialize, Serialize};

use super::errors;

/// The server a verb talks to unless told otherwise.
pub const DEFAULT_SERVER: &str = "http://localhost:8080";
/// The variable that names the server when `--server` is not given.
pub const SERVER_ENV: &str = "HERD_SERVER";

/// The connection flags every verb that talks to a server shares, as typed.
///
/// They are global, so they go before or after the verb, as kubectl users
/// write them (`herd --server URL get nodes`, `herd get nodes --server URL`).
/// A subcommand with a flag of its own of the same name (`herd nodelet`, whose
/// `--server` reads `ROUTER_URL` and whose `--token` is its join key) keeps
/// it: clap does not hand a global flag to a subcommand that defines one with
/// the same name.
///
/// `HERD_SERVER`, `HERD_TOKEN` and `HERD_CA_CERT` are read by
/// [`ConnectArgs::resolve`], not by clap: clap copies a global's value into a
/// subcommand's argument of the same name whenever the global's came from a
/// "stronger" source, so an `env` here would hand `HERD_SERVER` to
/// `herd nodelet` in place of its own default.
#[derive(Args, Debug, Clone, Default)]
pub struct ConnectFlags {
    /// URL of the herd server, for the verbs and `herd controller`; several
    /// servers sharing one store comma-separated, tried in turn when one cannot
    /// be reached [env: HERD_SERVER] [default: the one `herd login` stored, else
    /// http://localhost:8080]
    #[arg(long = "server", global = true, value_name = "URL")]
    pub server: Option<String>,
    /// The API key to send [env: HERD_TOKEN] [default: the one `herd login`
    /// stored; for a server on this machine, its data directory's admin.key]
    #[arg(long = "token", global = true, value_name = "KEY", value_parser = parse_token)]
    pub token: Option<Token>,
    /// PEM file with the CA that signed an https server's certificate [env:
    /// HERD_CA_CERT]
    #[arg(long = "ca-cert", global = true, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
}

/// A key; the error names what is wrong with it, never its content.
pub fn parse_token(value: &str) -> Result<Token, String> {
    Token::parse(value.trim()).map_err(|e| e.to_string())
}

/// What the environment says, read apart so resolution is a pure function.
#[derive(Debug, Clone, Default)]
pub struct ConnectEnv {
    pub server: Option<String>,
    pub token: Option<String>,
    pub ca_cert: Option<PathBuf>,
    /// `HERD_DATA_DIR`, else the server's platform default.
    pub data_dir: PathBuf,
}

impl ConnectEnv {
    pub fn from_process() -> ConnectEnv {
        let var = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
        ConnectEnv {
            server: var(SERVER_ENV),
            token: var(TOKEN_ENV),
            ca_cert: var(CA_CERT_ENV).map(PathBuf::from),
            data_dir: var("HERD_DATA_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(crate::cmd::server::default_data_dir),
        }
    }
}

/// The variable that holds the key when `--token` is not given.
pub const TOKEN_ENV: &str = "HERD_TOKEN";
/// The variable that names the CA file when `--ca-cert` is not given.
pub const CA_CERT_ENV: &str = "HERD_CA_CERT";

/// Where the key in use came from, for messages about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Flag,
    Env,
    Login(PathBuf),
    LocalAdmin(PathBuf),
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Flag => f.write_str("--token"),
            KeySource::Env => f.write_str(TOKEN_ENV),
            KeySource::Login(path) => write!(f, "`herd login`'s {}", path.display()),
            KeySource::LocalAdmin(path) => write!(f, "the local server's {}", path.display()),
        }
    }
}

/// Where the herd server is, and how to talk to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectArgs {
    pub server: String,
    /// The key, and where it came from.
    pub token: Option<(Token, KeySource)>,
    pub ca_cert: Option<PathBuf>,
    /// Why a key that was looked for could not be used (a malformed
    /// `HERD_TOKEN`), reported when a verb needs the server.
    pub problem: Option<String>,
}

impl ConnectArgs {
    /// The server: `--server`, else a non-empty `HERD_SERVER`, else the
    /// server `herd login` stored, else [`DEFAULT_SERVER`]. The key:
    /// `--token`, else `HERD_TOKEN`, else the one `herd login` stored for that
    /// same server, else, for a server on a loopback address, the local
    /// server's `admin.key` (read by `read_admin`). The CA: `--ca-cert`, else
    /// `HERD_CA_CERT`, else the one `herd login` stored for that server.
    pub fn resolve(
        flags: &ConnectFlags,
        env: &ConnectEnv,
        login: Option<&(PathBuf, Login)>,
        read_admin: impl FnOnce(&Path) -> Option<Token>,
    ) -> ConnectArgs {
        let server = flags
            .server
            .clone()
            .or_else(|| env.server.clone())
            .or_else(|| login.map(|(_, l)| l.server.clone()))
            .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
        // A stored key goes only to the server it was stored for.
        let login = login.filter(|(_, l)| same_server(&l.server, &server));
        let mut problem = None;
        let token = if let Some(t) = &flags.token {
            Some((t.clone(), KeySource::Flag))
        } else if let Some(raw) = &env.token {
            match Token::parse(raw.trim()) {
                Ok(t) => Some((t, KeySource::Env)),
                Err(e) => {
                    problem = Some(format!("{TOKEN_ENV}: {e}"));
                    None
                }
            }
        } else if let Some((path, l)) = login {
            match Token::parse(l.token.trim()) {
                Ok(t) => Some((t, KeySource::Login(path.clone()))),
                Err(e) => {
                    problem = Some(format!("{}: {e}", path.display()));
                    None
                }
            }
        } else if is_loopback(&server) {
            let path = env.data_dir.join(ADMIN_KEY_FILE);
            read_admin(&path).map(|t| (t, KeySource::LocalAdmin(path)))
        } else {
            None
        };
        let ca_cert = flags
            .ca_cert
            .clone()
            .or_else(|| env.ca_cert.clone())
            .or_else(|| login.and_then(|(_, l)| l.ca_cert.clone()));
        ConnectArgs {
            server,
            token,
            ca_cert,
            problem,
        }
    }

    /// [`resolve`](Self::resolve) with this process's environment, login
    /// file and local admin key.
    pub fn from_flags(flags: &ConnectFlags) -> ConnectArgs {
        let login = login_path().and_then(|path| Login::read(&path).map(|l| (path, l)));
        Self::resolve(flags, &ConnectEnv::from_process(), login.as_ref(), |path| {
            herd_auth::read_key_file(path).ok()
        })
    }

    pub fn client(&self) -> anyhow::Result<Client> {
        if let Some(problem) = &self.problem {
            anyhow::bail!("{problem}");
        }
        errors::set_key_in_use(
            self.token
                .as_ref()
                .map(|(t, source)| format!("key {} (from {source})", t.id)),
        );
        self.build()
            .map_err(|e| errors::client_error(&e, &self.server))
    }

    fn build(&self) -> Result<Client, herd_client::Error> {
        let mut builder = Client::builder(&self.server).trust(self.trust());
        if let Some((token, _)) = &self.token {
            // The CA fingerprint a key may carry is for this side only.
            let mut bare = token.clone();
            bare.ca_sha256 = None;
            builder = builder.token(bare.expose());
        }
        builder.build()
    }

    /// `--ca-cert`, else the CA fingerprint the key carries (a key of a
    /// `--tls-self-signed` server), else the public roots.
    pub fn trust(&self) -> ClientTrust {
        let pin = self
            .token
            .as_ref()
            .and_then(|(t, _)| t.ca_sha256)
            .map(|sha| {
                let hex: String = sha.iter().map(|b| format!("{b:02x}")).collect();
                hex.parse::<herd_client::Fingerprint>()
                    .expect("64 hex digits are a fingerprint")
            });
        ClientTrust::choose(self.ca_cert.clone(), pin)
    }
}

/// The file the server writes its first admin key to, in its data directory.
pub const ADMIN_KEY_FILE: &str = "admin.key";

/// Whether `url` names this machine (`localhost`, 127.0.0.0/8, `::1`).
pub fn is_loopback(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => {
            let host = host.to_ascii_lowercase();
            host == "localhost" || host.ends_with(".localhost")
        }
    }
}

/// Two server URLs name the same server (ignoring a trailing slash).
fn same_server(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// What `herd login` stores: like a kubeconfig with one context.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Login {
    pub server: String,
    /// The whole key.
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("server", &self.server)
            .field("token", &"<redacted>")
            .field("ca_cert", &self.ca_cert)
            .finish()
    }
}

impl Login {
    /// The stored login, when there is a readable one. An unreadable file is
    /// reported and ignored, so a broken file never blocks a verb given a key.
    pub fn read(path: &Path) -> Option<Login> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                eprintln!("warning: ignoring {}: {e}", path.display());
                return None;
            }
        };
        match serde_json::from_str(&text) {
            Ok(login) => Some(login),
            Err(e) => {
                // serde_json's message quotes no value, only its position.
                eprintln!("warning: ignoring {}: {e}", path.display());
                None
            }
        }
    }

    /// Writes the login readable by its owner only (0600 on Unix), through a
    /// new file renamed over the old one.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write as _;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        let written = options.open(&tmp).and_then(|mut file| {
            file.write_all(text.as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()
        });
        if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(())
    }
}

/// `<config dir>/herd/config.json`; `HERD_CONFIG` names another file.
pub fn login_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("HERD_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    dirs::config_dir().map(|d| d.join("herd").join("config.json"))
}

/// How `get` prints what it found.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputFormat {
    /// Columns for people.
    #[default]
    Table,
    /// The table with more columns.
    Wide,
    /// The objects as YAML (re-applies cleanly with `herd apply -f -`).
    Yaml,
    /// The objects as JSON (re-applies cleanly with `herd apply -f -`).
    Json,
    /// `kind/name`, one per line, for scripts.
    Name,
}

impl OutputFormat {
    pub fn is_table(self) -> bool {
        matches!(self, Self::Table | Self::Wide)
    }
}

#[derive(Args, Debug, Clone, Default)]
pub struct OutputArgs {
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// How write verbs (`apply`, `delete`) report what they did.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutput {
    /// Only `kind/name`, one per line.
    Name,
    /// The resulting objects as YAML.
    Yaml,
    /// The resulting objects as JSON.
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ca: Option<u8>) -> Token {
        let t = herd_auth::generate().expect("random").token;
        match ca {
            Some(b) => t.with_ca_sha256([b; 32]),
            None => t,
        }
    }

    #[test]
    fn server_resolution_table() {
        // (flag, HERD_SERVER, login's server, resolved)
        let cases = [
            (
                Some("http://flag:1"),
                Some("http://env:2"),
                None,
                "http://flag:1",
            ),
            (
                Some("http://flag:1"),
                None,
                Some("http://login:3"),
                "http://flag:1",
            ),
            (
                None,
                Some("http://env:2"),
                Some("http://login:3"),
                "http://env:2",
            ),
            (None, None, Some("http://login:3"), "http://login:3"),
            (None, None, None, DEFAULT_SERVER),
        ];
        for (flag, env, login, want) in cases {
            let flags = ConnectFlags {
                server: flag.map(str::to_owned),
                ..ConnectFlags::default()
            };
            let env = ConnectEnv {
                server: env.map(str::to_owned),
                ..ConnectEnv::default()
            };
            let login = login.map(|server| {
                (
                    PathBuf::from("/c/config.json"),
                    Login {
                        server: server.to_owned(),
                        token: key(None).expose(),
                        ca_cert: None,
                    },
                )
            });
            let got = ConnectArgs::resolve(&flags, &env, login.as_ref(), |_| None);
            assert_eq!(got.server, want, "{flag:?} {env:?}");
        }
    }

    #[test]
    fn key_resolution_table() {
        let (flag, env, stored, admin) = (key(None), key(None), key(None), key(Some(1)));
        let login = |server: &str| {
            (
                PathBuf::from("/c/config.json"),
                Login {
                    server: server.to_owned(),
                    token: stored.expose(),
                    ca_cert: Some(PathBuf::from("/c/ca.pem")),
                },
            )
        };
        let local = login("http://127.0.0.1:8080");
        let remote = login("https://herd.lan");
        let data = PathBuf::from("/d");
        let admin_path = data.join(ADMIN_KEY_FILE);
        // (--server, --token, HERD_TOKEN, login, key wanted, CA wanted)
        type Case<'a> = (
            &'a str,
            Option<&'a Token>,
            Option<&'a Token>,
            Option<&'a (PathBuf, Login)>,
            Option<(&'a Token, KeySource)>,
            Option<&'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                "http://127.0.0.1:8080",
                Some(&flag),
                Some(&env),
                Some(&local),
                Some((&flag, KeySource::Flag)),
                Some("/c/ca.pem"),
            ),
            (
                "http://127.0.0.1:8080",
                None,
                Some(&env),
                Some(&local),
                Some((&env, KeySource::Env)),
                Some("/c/ca.pem"),
            ),
            (
                "http://127.0.0.1:8080",
                None,
                None,
                Some(&local),
                Some((&stored, KeySource::Login("/c/config.json".into()))),
                Some("/c/ca.pem"),
            ),
            // The stored key is for another server: the local admin key instead.
            (
                "http://127.0.0.1:8080",
                None,
                None,
                Some(&remote),
                Some((&admin, KeySource::LocalAdmin(admin_path.clone()))),
                None,
            ),
            (
                "http://localhost:9",
                None,
                None,
                None,
                Some((&admin, KeySource::LocalAdmin(admin_path.clone()))),
                None,
            ),
            (
                "http://[::1]:9",
                None,
                None,
                None,
                Some((&admin, KeySource::LocalAdmin(admin_path.clone()))),
                None,
            ),
            // Never the local admin key for a server elsewhere.
            ("http://10.0.0.5:8080", None, None, None, None, None),
            ("https://herd.lan", None, None, Some(&local), None, None),
            (
                "https://herd.lan/",
                None,
                None,
                Some(&remote),
                Some((&stored, KeySource::Login("/c/config.json".into()))),
                Some("/c/ca.pem"),
            ),
        ];
        for (server, flag_token, env_token, login, want, want_ca) in cases {
            let flags = ConnectFlags {
                server: Some(server.to_owned()),
                token: flag_token.cloned(),
                ca_cert: None,
            };
            let env = ConnectEnv {
                token: env_token.map(Token::expose),
                data_dir: data.clone(),
                ..ConnectEnv::default()
            };
            let got = ConnectArgs::resolve(&flags, &env, login, |path| {
                (path == admin_path).then(|| admin.clone())
            });
            let want = want.map(|(t, s)| (t.clone(), s));
            assert_eq!(
                got.token, want,
                "{server} {flag_token:?} {env_token:?} {login:?}"
            );
            assert_eq!(got.ca_cert.as_deref(), want_ca.map(Path::new), "{server}");
            assert_eq!(got.problem, None);
        }
    }

    #[test]
    fn trust_is_the_ca_file_then_the_keys_pin() {
        let args = |token: Option<Token>, ca: Option<&str>| ConnectArgs {
            server: "https://herd.lan".into(),
            token: token.map(|t| (t, KeySource::Flag)),
            ca_cert: ca.map(PathBuf::from),
            problem: None,
        };
        let pinned = key(Some(0xab));
        let pin: herd_client::Fingerprint = "ab".repeat(32).parse().expect("hex");
        assert_eq!(args(None, None).trust(), ClientTrust::SystemRoots);
        assert_eq!(
            args(Some(key(None)), None).trust(),
            ClientTrust::SystemRoots
        );
        assert_eq!(
            args(Some(pinned.clone()), None).trust(),
            ClientTrust::PinnedCa(pin)
        );
        assert_eq!(
            args(Some(pinned), Some("/ca.pem")).trust(),
            ClientTrust::CaFile("/ca.pem".into())
        );
    }

    #[test]
    fn a_malformed_env_key_is_reported_without_its_content() {
        let env = ConnectEnv {
            token: Some("herd_SECRETSECRET".to_owned()),
            ..ConnectEnv::default()
        };
        let got = ConnectArgs::resolve(&ConnectFlags::default(), &env, None, |_| None);
        let problem = got.problem.clone().expect("a problem");
        assert!(
            problem.contains(TOKEN_ENV) && !problem.contains("SECRET"),
            "{problem}"
        );
        assert!(!format!("{got:?}").contains("SECRET"));
    }

    #[test]
    fn login_file_round_trip_is_owner_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("herd").join("config.json");
        let login = Login {
            server: "https://herd.lan".into(),
            token: key(None).expose(),
            ca_cert: Some("/etc/ca.pem".into()),
        };
        login.write(&path).expect("write");
        assert_eq!(Login::read(&path), Some(login.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        }
        assert!(!format!("{login:?}").contains(&login.token));
        assert_eq!(Login::read(&dir.path().join("absent.json")), None);
    }
}
