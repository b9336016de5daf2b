//! The service definitions `herd service install` writes, as pure functions of what
//! to run: a systemd unit, a launchd property list, a Windows Task Scheduler task.
//! Each is checked by the tools that read it (`systemd-analyze verify`, an XML parser)
//! in the tests.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Which herd command the service runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// `herd server`: the router.
    Server,
    /// `herd nodelet`: this machine's agent, joined to a router.
    Nodelet,
    /// `herd up`: the router and this machine's nodelet in one process.
    Up,
}

impl Role {
    pub fn command(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Nodelet => "nodelet",
            Role::Up => "up",
        }
    }

    /// Whether the process starts and stops an Ollama of its own.
    fn runs_ollama(self) -> bool {
        matches!(self, Role::Nodelet | Role::Up)
    }
}

/// Installed for every user at boot, or for the current user at login.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    System,
    User,
}

/// What a service runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    pub role: Role,
    pub scope: Scope,
    /// The herd executable, absolute.
    pub herd: PathBuf,
    /// The arguments after the command (`--server URL --token-file F`).
    pub args: Vec<String>,
    /// For a system service: the account to run as (none: the service manager's default).
    pub run_as: Option<String>,
    /// Where launchd writes the output (systemd and Windows keep their own logs).
    pub log_dir: Option<PathBuf>,
}

/// Why a service cannot be defined from what was given.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error(
        "{flag} would write a key into the service definition, where anyone who can read \
         it (and every process list) sees it; put the key in a file readable only by the \
         service's account and pass --token-file PATH instead"
    )]
    SecretInArgs { flag: String },
    #[error(
        "an argument looks like a herd key (herd_…); keys never go into a service \
         definition: put it in a file and pass --token-file PATH"
    )]
    KeyInArgs,
    #[error("the herd executable must be an absolute path, not {0:?}")]
    RelativeHerd(PathBuf),
    #[error("argument {0:?} has a line break or NUL, which a service definition cannot carry")]
    BadChar(String),
    #[error(
        "--token-file {0:?} is relative; a service starts in another directory, so give \
         an absolute path"
    )]
    RelativeTokenFile(String),
}

/// Refuses arguments that would put a secret into a unit file, and a `--token-file`
/// that only makes sense from the current directory.
pub fn check_args(args: &[String]) -> Result<(), SpecError> {
    let mut after_token_file = false;
    for arg in args {
        if arg.contains(['\n', '\r', '\0']) {
            return Err(SpecError::BadChar(arg.clone()));
        }
        let (flag, inline_value) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value)),
            _ => (arg.as_str(), None),
        };
        if flag == "--token" {
            return Err(SpecError::SecretInArgs {
                flag: "--token".to_owned(),
            });
        }
        let value = inline_value.unwrap_or(arg);
        if herd_auth::Token::parse(value.trim()).is_ok() {
            return Err(SpecError::KeyInArgs);
        }
        let token_file = if after_token_file {
            Some(arg.as_str())
        } else if flag == "--token-file" {
            inline_value
        } else {
            None
        };
        if let Some(path) = token_file
            && !Path::new(path).is_absolute()
        {
            return Err(SpecError::RelativeTokenFile(path.to_owned()));
        }
        after_token_file = arg == "--token-file";
    }
    Ok(())
}

impl ServiceSpec {
    pub fn check(&self) -> Result<(), SpecError> {
        if !self.herd.is_absolute() {
            return Err(SpecError::RelativeHerd(self.herd.clone()));
        }
        check_args(&self.args)
    }

    /// The systemd unit's name: `herd-nodelet.service`.
    pub fn systemd_name(&self) -> String {
        format!("herd-{}.service", self.role.command())
    }

    /// launchd's label, also the plist's file stem: `dev.herd.nodelet`.
    pub fn launchd_label(&self) -> String {
        format!("dev.herd.{}", self.role.command())
    }

    /// The Task Scheduler task's name: `herd nodelet`.
    pub fn task_name(&self) -> String {
        format!("herd {}", self.role.command())
    }

    fn argv(&self) -> Vec<String> {
        let mut argv = vec![
            self.herd.display().to_string(),
            self.role.command().to_owned(),
        ];
        argv.extend(self.args.iter().cloned());
        argv
    }
}

/// One argument in systemd's `ExecStart=` syntax: double-quoted, with `\`, `"`
/// escaped, and `%` and `$` doubled so systemd neither expands specifiers nor
/// variables in it.
pub fn systemd_quote(arg: &str) -> String {
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('"');
    for c in arg.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The systemd unit.
pub fn systemd_unit(spec: &ServiceSpec) -> String {
    let exec = spec
        .argv()
        .iter()
        .map(|a| systemd_quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    let mut unit = String::new();
    let role = spec.role.command();
    let _ = writeln!(
        unit,
        "# Written by `herd service install {role}`; remove it with"
    );
    let _ = writeln!(unit, "# `herd service uninstall {role}`.");
    unit.push_str("[Unit]\n");
    let _ = writeln!(unit, "Description=herd {role}");
    unit.push_str("Documentation=https://github.com/herd-project/herd\n");
    unit.push_str("Wants=network-online.target\nAfter=network-online.target\n\n");
    unit.push_str("[Service]\nType=exec\n");
    let _ = writeln!(unit, "ExecStart={exec}");
    if spec.scope == Scope::System
        && let Some(user) = &spec.run_as
    {
        let _ = writeln!(unit, "User={user}");
    }
    unit.push_str("Restart=on-failure\nRestartSec=3\n");
    if spec.role.runs_ollama() {
        // SIGTERM to herd alone: it first takes the node out of routing, waits for
        // in-flight requests, then stops the Ollama it started. systemd's default would
        // signal Ollama at the same moment.
        unit.push_str("KillMode=mixed\nTimeoutStopSec=90\n");
    }
    unit.push_str("\n[Install]\n");
    let target = match spec.scope {
        Scope::System => "multi-user.target",
        Scope::User => "default.target",
    };
    let _ = writeln!(unit, "WantedBy={target}");
    unit
}

/// Text for XML character data and attribute values.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The launchd property list (a LaunchDaemon for [`Scope::System`], a LaunchAgent for
/// [`Scope::User`]).
pub fn launchd_plist(spec: &ServiceSpec) -> String {
    let mut plist = String::new();
    plist.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    plist.push_str(
        "<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \
         \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n",
    );
    plist.push_str("<plist version=\"1.0\">\n<dict>\n");
    let _ = writeln!(
        plist,
        "  <key>Label</key>\n  <string>{}</string>",
        xml_escape(&spec.launchd_label())
    );
    plist.push_str("  <key>ProgramArguments</key>\n  <array>\n");
    for arg in spec.argv() {
        let _ = writeln!(plist, "    <string>{}</string>", xml_escape(&arg));
    }
    plist.push_str("  </array>\n");
    plist.push_str("  <key>RunAtLoad</key>\n  <true/>\n");
    // Restarted when it fails, not after a clean exit (a `launchctl bootout` stop).
    plist.push_str(
        "  <key>KeepAlive</key>\n  <dict>\n    <key>SuccessfulExit</key>\n    <false/>\n  </dict>\n",
    );
    if spec.role.runs_ollama() {
        // Time for the drain before launchd's SIGKILL (its default is 20 s).
        plist.push_str("  <key>ExitTimeOut</key>\n  <integer>90</integer>\n");
    }
    if spec.scope == Scope::System
        && let Some(user) = &spec.run_as
    {
        let _ = writeln!(
            plist,
            "  <key>UserName</key>\n  <string>{}</string>",
            xml_escape(user)
        );
    }
    if let Some(dir) = &spec.log_dir {
        let log = xml_escape(
            &dir.join(format!("{}.log", spec.role.command()))
                .display()
                .to_string(),
        );
        let _ = writeln!(
            plist,
            "  <key>StandardOutPath</key>\n  <string>{log}</string>"
        );
        let _ = writeln!(
            plist,
            "  <key>StandardErrorPath</key>\n  <string>{log}</string>"
        );
    }
    plist.push_str("</dict>\n</plist>\n");
    plist
}

/// One argument quoted for a Windows command line (the rules `CommandLineToArgvW`
/// and the C runtime undo): wrapped in `"` when it has a space, tab or quote, with
/// backslashes before a quote doubled.
pub fn windows_quote(arg: &str) -> String {
    if !arg.is_empty() && !arg.contains([' ', '\t', '"']) {
        return arg.to_owned();
    }
    let mut out = String::from("\"");
    let mut backslashes = 0usize;
    for c in arg.chars() {
        match c {
            '\\' => backslashes += 1,
            '"' => {
                out.push_str(&"\\".repeat(backslashes * 2 + 1));
                out.push('"');
                backslashes = 0;
            }
            c => {
                out.push_str(&"\\".repeat(backslashes));
                out.push(c);
                backslashes = 0;
            }
        }
    }
    out.push_str(&"\\".repeat(backslashes * 2));
    out.push('"');
    out
}

/// A Task Scheduler task (its XML, for `schtasks /Create /XML`) that starts herd when
/// the user logs on ([`Scope::User`]) or at boot as SYSTEM ([`Scope::System`]), and
/// restarts it when it fails. A plain program cannot be a Windows service (it would
/// have to answer the service control manager), so a task is what runs it.
pub fn windows_task_xml(spec: &ServiceSpec) -> String {
    let arguments = spec
        .args
        .iter()
        .map(|a| windows_quote(a))
        .fold(spec.role.command().to_owned(), |line, a| line + " " + &a);
    let (trigger, principal) = match spec.scope {
        Scope::User => (
            "<LogonTrigger><Enabled>true</Enabled></LogonTrigger>",
            "<Principal id=\"Author\"><LogonType>InteractiveToken</LogonType><RunLevel>LeastPrivilege</RunLevel></Principal>",
        ),
        Scope::System => (
            "<BootTrigger><Enabled>true</Enabled></BootTrigger>",
            "<Principal id=\"Author\"><UserId>S-1-5-18</UserId><RunLevel>HighestAvailable</RunLevel></Principal>",
        ),
    };
    let mut xml = String::new();
    xml.push_str("<?xml version=\"1.0\" encoding=\"UTF-16\"?>\n");
    xml.push_str(
        "<Task version=\"1.2\" xmlns=\"http://schemas.microsoft.com/windows/2004/02/mit/task\">\n",
    );
    let _ = writeln!(
        xml,
        "  <RegistrationInfo><Description>herd {}</Description></RegistrationInfo>",
        spec.role.command()
    );
    let _ = writeln!(xml, "  <Triggers>{trigger}</Triggers>");
    let _ = writeln!(xml, "  <Principals>{principal}</Principals>");
    xml.push_str("  <Settings>\n");
    xml.push_str("    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>\n");
    xml.push_str("    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>\n");
    xml.push_str("    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>\n");
    // No time limit: it is a server.
    xml.push_str("    <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>\n");
    xml.push_str(
        "    <RestartOnFailure><Interval>PT1M</Interval><Count>999</Count></RestartOnFailure>\n",
    );
    xml.push_str("  </Settings>\n");
    xml.push_str("  <Actions Context=\"Author\">\n    <Exec>\n");
    let _ = writeln!(
        xml,
        "      <Command>{}</Command>",
        xml_escape(&spec.herd.display().to_string())
    );
    let _ = writeln!(
        xml,
        "      <Arguments>{}</Arguments>",
        xml_escape(&arguments)
    );
    xml.push_str("    </Exec>\n  </Actions>\n</Task>\n");
    xml
}

/// Where the definition goes.
pub fn definition_path(
    os: &str,
    spec: &ServiceSpec,
    home: Option<&Path>,
    config_dir: Option<&Path>,
) -> Option<PathBuf> {
    match (os, spec.scope) {
        ("macos", Scope::System) => Some(
            PathBuf::from("/Library/LaunchDaemons").join(format!("{}.plist", spec.launchd_label())),
        ),
        ("macos", Scope::User) => home.map(|h| {
            h.join("Library/LaunchAgents")
                .join(format!("{}.plist", spec.launchd_label()))
        }),
        ("windows", _) => config_dir.map(|d| {
            d.join("herd")
                .join(format!("{}.task.xml", spec.role.command()))
        }),
        (_, Scope::System) => Some(PathBuf::from("/etc/systemd/system").join(spec.systemd_name())),
        (_, Scope::User) => config_dir.map(|d| d.join("systemd/user").join(spec.systemd_name())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(role: Role, scope: Scope, args: &[&str]) -> ServiceSpec {
        ServiceSpec {
            role,
            scope,
            herd: std::env::current_exe().expect("an absolute executable"),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            run_as: None,
            log_dir: None,
        }
    }

    #[test]
    fn secrets_never_reach_a_definition() {
        let ok: &[&[&str]] = &[
            &[],
            &[
                "--server",
                "https://router:8080",
                "--token-file",
                "/etc/herd/node.key",
            ],
            &["--token-file=/etc/herd/node.key"],
            &["--data-dir", "/var/lib/herd_data"],
            &["--listen", "0.0.0.0:8080"],
        ];
        for args in ok {
            let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
            assert_eq!(check_args(&args), Ok(()), "{args:?}");
        }
        let key = herd_auth::generate().expect("a key").token.expose();
        let bad: Vec<(Vec<&str>, &str)> = vec![
            (vec!["--token", "x"], "--token"),
            (vec!["--token=x"], "--token"),
            (vec!["--token-file", "node.key"], "relative"),
            (vec!["--token-file=./node.key"], "relative"),
            (vec!["--listen", "a\nExecStartPre=/bin/evil"], "line break"),
        ];
        for (args, want) in bad {
            let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
            let err = check_args(&args).expect_err("refused");
            assert!(err.to_string().contains(want), "{args:?}: {err}");
        }
        for args in [vec![key.clone()], vec![format!("--join={key}")]] {
            let err = check_args(&args).expect_err("a key");
            assert_eq!(err, SpecError::KeyInArgs);
            assert!(
                !err.to_string().contains(&key),
                "the error never repeats the key"
            );
        }
    }

    #[test]
    fn systemd_quote_table() {
        let cases = [
            ("plain", "\"plain\""),
            ("with space", "\"with space\""),
            ("100%", "\"100%%\""),
            ("$HOME", "\"$$HOME\""),
            ("a\"b", "\"a\\\"b\""),
            ("C:\\x", "\"C:\\\\x\""),
            ("", "\"\""),
        ];
        for (arg, expected) in cases {
            assert_eq!(systemd_quote(arg), expected, "{arg:?}");
        }
    }

    #[test]
    fn windows_quote_table() {
        let cases = [
            ("plain", "plain"),
            ("", "\"\""),
            ("with space", "\"with space\""),
            (
                "C:\\Program Files\\herd\\",
                "\"C:\\Program Files\\herd\\\\\"",
            ),
            ("say \"hi\"", "\"say \\\"hi\\\"\""),
            ("a\\\"b", "\"a\\\\\\\"b\""),
        ];
        for (arg, expected) in cases {
            assert_eq!(windows_quote(arg), expected, "{arg:?}");
        }
    }

    #[test]
    fn systemd_units_keep_the_drain_and_their_scope() {
        let unit = systemd_unit(&spec(
            Role::Nodelet,
            Scope::System,
            &["--token-file", "/etc/herd/k"],
        ));
        assert!(unit.contains("KillMode=mixed\n"), "{unit}");
        assert!(unit.contains("WantedBy=multi-user.target\n"), "{unit}");
        assert!(
            unit.contains(" \"nodelet\" \"--token-file\" \"/etc/herd/k\"\n"),
            "{unit}"
        );
        let unit = systemd_unit(&spec(Role::Server, Scope::User, &[]));
        assert!(!unit.contains("KillMode"), "{unit}");
        assert!(unit.contains("WantedBy=default.target\n"), "{unit}");
        let mut with_user = spec(Role::Up, Scope::System, &[]);
        with_user.run_as = Some("herd".into());
        assert!(systemd_unit(&with_user).contains("\nUser=herd\n"));
        with_user.scope = Scope::User;
        assert!(
            !systemd_unit(&with_user).contains("User="),
            "a user unit runs as its user"
        );
    }

    /// `systemd-analyze verify` (Debian's systemd) reads each unit as systemd would,
    /// with arguments that need quoting; any complaint fails the test.
    #[cfg(target_os = "linux")]
    #[test]
    fn systemd_analyze_accepts_the_units() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = dir.path().join("runtime");
        std::fs::create_dir(&runtime).expect("mkdir");
        let args = [
            "--listen",
            "127.0.0.1:8080",
            "--data-dir",
            "/var/lib/herd data/100%",
            "--labels",
            "a=$b",
        ];
        for role in [Role::Server, Role::Nodelet, Role::Up] {
            for scope in [Scope::System, Scope::User] {
                let spec = spec(role, scope, &args);
                let path = dir.path().join(spec.systemd_name());
                std::fs::write(&path, systemd_unit(&spec)).expect("write");
                let mut cmd = std::process::Command::new("systemd-analyze");
                if scope == Scope::User {
                    cmd.arg("--user").env("XDG_RUNTIME_DIR", &runtime);
                }
                let out = cmd
                    .arg("verify")
                    .arg(&path)
                    .output()
                    .expect("systemd-analyze (Debian: apt-get install systemd)");
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(
                    out.status.success() && !stderr.contains(spec.systemd_name().as_str()),
                    "{role:?} {scope:?}: {stderr}\n{}",
                    systemd_unit(&spec)
                );
            }
        }
        // And it does complain about a broken unit, so the check above means something.
        let broken = dir.path().join("herd-broken.service");
        std::fs::write(&broken, "[Service]\nExecStart=/nonexistent/herd up\n").expect("write");
        let out = std::process::Command::new("systemd-analyze")
            .arg("verify")
            .arg(&broken)
            .output()
            .expect("systemd-analyze");
        assert!(!out.status.success(), "a missing executable is an error");
    }

    fn plist_values(xml: &str) -> Vec<(String, String)> {
        let doc = roxmltree::Document::parse_with_options(
            xml,
            roxmltree::ParsingOptions {
                allow_dtd: true,
                ..Default::default()
            },
        )
        .expect("the plist is well-formed XML");
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "plist");
        let dict = root.children().find(|n| n.is_element()).expect("a dict");
        assert_eq!(dict.tag_name().name(), "dict");
        let children: Vec<_> = dict.children().filter(|n| n.is_element()).collect();
        assert_eq!(children.len() % 2, 0, "keys and values alternate");
        children
            .chunks(2)
            .map(|kv| {
                assert_eq!(kv[0].tag_name().name(), "key");
                let value = match kv[1].tag_name().name() {
                    "array" => kv[1]
                        .children()
                        .filter(|n| n.is_element())
                        .map(|n| n.text().unwrap_or_default().to_owned())
                        .collect::<Vec<_>>()
                        .join("\u{1f}"),
                    "dict" => "dict".to_owned(),
                    "true" | "false" => kv[1].tag_name().name().to_owned(),
                    _ => kv[1].text().unwrap_or_default().to_owned(),
                };
                (kv[0].text().unwrap_or_default().to_owned(), value)
            })
            .collect()
    }

    #[test]
    fn the_plist_parses_and_carries_the_arguments_exactly() {
        let args = [
            "--server",
            "https://r:8080/?a=1&b=<2>",
            "--token-file",
            "/Users/a b/\"k\"",
        ];
        let mut s = spec(Role::Nodelet, Scope::User, &args);
        s.log_dir = Some(PathBuf::from("/Users/a b/Library/Logs/herd"));
        let values = plist_values(&launchd_plist(&s));
        let get = |k: &str| {
            values
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("Label").as_deref(), Some("dev.herd.nodelet"));
        let mut argv = vec![s.herd.display().to_string(), "nodelet".to_owned()];
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        assert_eq!(get("ProgramArguments"), Some(argv.join("\u{1f}")));
        assert_eq!(get("RunAtLoad").as_deref(), Some("true"));
        assert_eq!(get("ExitTimeOut").as_deref(), Some("90"));
        assert_eq!(
            get("StandardErrorPath").as_deref(),
            Some("/Users/a b/Library/Logs/herd/nodelet.log")
        );
        assert_eq!(get("UserName"), None, "an agent runs as its user");
        let mut daemon = spec(Role::Server, Scope::System, &[]);
        daemon.run_as = Some("_herd".into());
        let values = plist_values(&launchd_plist(&daemon));
        assert!(values.contains(&("UserName".to_owned(), "_herd".to_owned())));
        assert!(!values.iter().any(|(k, _)| k == "ExitTimeOut"));
    }

    #[test]
    fn the_task_parses_and_runs_herd_at_logon() {
        let mut s = spec(
            Role::Up,
            Scope::User,
            &["--data-dir", "C:\\Users\\a b\\herd & co"],
        );
        s.herd = PathBuf::from("/opt/herd/herd.exe");
        let xml = windows_task_xml(&s);
        let doc = roxmltree::Document::parse(&xml).expect("the task is well-formed XML");
        let text = |tag: &str| {
            doc.descendants()
                .find(|n| n.tag_name().name() == tag)
                .and_then(|n| n.text())
                .map(str::to_owned)
        };
        assert_eq!(text("Command").as_deref(), Some("/opt/herd/herd.exe"));
        assert_eq!(
            text("Arguments").as_deref(),
            Some("up --data-dir \"C:\\Users\\a b\\herd & co\"")
        );
        assert!(
            doc.descendants()
                .any(|n| n.tag_name().name() == "LogonTrigger")
        );
        assert_eq!(text("ExecutionTimeLimit").as_deref(), Some("PT0S"));
        s.scope = Scope::System;
        let xml = windows_task_xml(&s);
        let doc = roxmltree::Document::parse(&xml).expect("xml");
        assert!(
            doc.descendants()
                .any(|n| n.tag_name().name() == "BootTrigger")
        );
        assert!(doc.descendants().any(|n| n.text() == Some("S-1-5-18")));
    }

    #[test]
    fn definition_paths() {
        let home = Path::new("/home/ann");
        let config = Path::new("/home/ann/.config");
        let cases = [
            (
                "linux",
                Scope::System,
                "/etc/systemd/system/herd-nodelet.service",
            ),
            (
                "linux",
                Scope::User,
                "/home/ann/.config/systemd/user/herd-nodelet.service",
            ),
            (
                "macos",
                Scope::System,
                "/Library/LaunchDaemons/dev.herd.nodelet.plist",
            ),
            (
                "macos",
                Scope::User,
                "/home/ann/Library/LaunchAgents/dev.herd.nodelet.plist",
            ),
            (
                "windows",
                Scope::User,
                "/home/ann/.config/herd/nodelet.task.xml",
            ),
        ];
        for (os, scope, expected) in cases {
            let s = spec(Role::Nodelet, scope, &[]);
            assert_eq!(
                definition_path(os, &s, Some(home), Some(config)),
                Some(PathBuf::from(expected)),
                "{os} {scope:?}"
            );
        }
    }
}
