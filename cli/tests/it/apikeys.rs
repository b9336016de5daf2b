//! Keys against the real `herd server`: `herd create apikey` prints the secret
//! once and no later read shows it; apply of an ApiKey prints it too; the
//! server's own machine needs no flags.

use std::process::Command;

use crate::HerdProcess;
use crate::verbs::{Run, herd, herd_stdin};

/// `herd ARGS` against `url` with only `HERD_DATA_DIR` to find a key by.
fn herd_local(url: &str, data_dir: &std::path::Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(args)
        .env("HERD_SERVER", url)
        .env("HERD_DATA_DIR", data_dir)
        .env("HERD_CONFIG", data_dir.join("no-login.json"))
        .env_remove("HERD_TOKEN")
        .env_remove("RUST_LOG")
        .output()
        .expect("run herd");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn create_apikey_prints_the_secret_once_and_reads_never_show_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = HerdProcess::server(dir.path(), &[]);
    let url = server.url.as_str();

    let made = herd(
        url,
        &[
            "create",
            "apikey",
            "ci",
            "--role",
            "viewer",
            "--expires",
            "30d",
            "--description",
            "for CI",
        ],
    )
    .success();
    let mut lines = made.stdout.lines();
    assert_eq!(lines.next(), Some("apikey/ci created"), "{}", made.stdout);
    let secret = lines.next().expect("the secret line").to_owned();
    let token = herd_auth::Token::parse(&secret).expect("a herd key");
    assert!(
        made.stderr.contains("will not show it again"),
        "{}",
        made.stderr
    );

    // The new key works, with its role's limits.
    let as_viewer = Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(["get", "nodes", "--server", url, "--token", &secret])
        .env("HERD_CONFIG", dir.path().join("no-login.json"))
        .output()
        .expect("run herd");
    assert!(
        as_viewer.status.success(),
        "{}",
        String::from_utf8_lossy(&as_viewer.stderr)
    );

    for args in [
        &["get", "apikeys", "-o", "yaml"][..],
        &["get", "apikey", "ci", "-o", "json"],
        &["get", "keys", "-o", "wide"],
        &["describe", "apikey", "ci"],
    ] {
        let run = herd(url, args).success();
        assert!(
            !run.stdout.contains(token.secret.expose()),
            "herd {args:?}: {}",
            run.stdout
        );
        assert!(run.stdout.contains("ci"), "herd {args:?}: {}", run.stdout);
    }
    let table = herd(url, &["get", "apikeys"]).success().stdout;
    let header = table.lines().next().expect("header");
    for column in ["NAME", "ROLE", "NODE", "EXPIRES", "DISABLED", "AGE"] {
        assert!(header.contains(column), "{header}");
    }
    let row = table
        .lines()
        .find(|l| l.starts_with("ci "))
        .expect("a row for ci");
    assert!(
        row.contains("viewer") && row.contains("in 29d") || row.contains("in 30d"),
        "{row}"
    );

    // Through apply, a create prints the secret too; an update has none to print.
    let manifest = r#"{"apiVersion":"herd/v1","kind":"ApiKey","metadata":{"name":"infer"},"spec":{"role":"inference"}}"#;
    let applied = herd_stdin(url, &["apply", "-f", "-"], manifest).success();
    let mut lines = applied.stdout.lines();
    assert_eq!(
        lines.next(),
        Some("apikey/infer created"),
        "{}",
        applied.stdout
    );
    herd_auth::Token::parse(lines.next().expect("secret")).expect("a herd key");
    let again = herd_stdin(url, &["apply", "-f", "-"], manifest).success();
    assert_eq!(again.stdout, "apikey/infer unchanged\n");

    let deleted = herd(url, &["delete", "apikey", "ci"]).success();
    assert!(deleted.stdout.contains("apikey/ci"), "{}", deleted.stdout);
    let refused = Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(["get", "nodes", "--server", url, "--token", &secret])
        .env("HERD_CONFIG", dir.path().join("no-login.json"))
        .output()
        .expect("run herd");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains(&format!("refused key {}", token.id)),
        "{stderr}"
    );
}

#[test]
fn on_the_servers_machine_herd_get_needs_no_flags() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = HerdProcess::server(dir.path(), &[]);
    let run = herd_local(&server.url, dir.path(), &["get", "nodes"]);
    assert!(run.ok, "{}", run.stderr);
    let elsewhere = tempfile::tempdir().expect("tmp");
    let run = herd_local(&server.url, elsewhere.path(), &["get", "nodes"]);
    assert!(!run.ok);
    assert!(run.stderr.contains("needs an API key"), "{}", run.stderr);
}
