//! The connection flags are global: `--server` works before the verb, as
//! kubectl users write it, and after it, and wins over `HERD_SERVER`.

use std::process::Command;

use serde_json::json;

use crate::verbs::{ApiServer, Run, create};

/// Nothing listens here: a run that used it would fail to connect.
const NOWHERE: &str = "http://127.0.0.1:1";

/// Runs `herd ARGS` with `HERD_SERVER` pointing nowhere, so only a
/// `--server` flag can make it reach a server.
fn herd_misdirected(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(args)
        .env("HERD_SERVER", NOWHERE)
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
fn server_flag_works_before_and_after_the_verb() {
    let server = ApiServer::plain();
    let url = server.url.as_str();
    create(url, "nodes", json!({"metadata": {"name": "gpu-1"}}));

    let cases: [&[&str]; 4] = [
        &["--server", url, "get", "nodes", "-o", "name"],
        &["get", "nodes", "-o", "name", "--server", url],
        &["get", "--server", url, "nodes", "-o", "name"],
        &[&format!("--server={url}"), "get", "no", "-o", "name"],
    ];
    for args in cases {
        let run = herd_misdirected(args).success();
        assert_eq!(run.stdout, "node/gpu-1\n", "herd {args:?}");
    }

    let before = herd_misdirected(&["--server", url, "describe", "node", "gpu-1"]).success();
    assert!(before.stdout.contains("gpu-1"), "{}", before.stdout);
    let after = herd_misdirected(&["cordon", "gpu-1", "--server", url]).success();
    assert_eq!(after.stdout, "node/gpu-1 cordoned\n");
}

#[test]
fn without_the_flag_the_environment_decides() {
    let run = herd_misdirected(&["get", "nodes"]).failure();
    assert!(run.stderr.contains("127.0.0.1:1"), "{}", run.stderr);
}

#[test]
fn herd_server_does_not_reach_the_nodelet() {
    // The nodelet's server is `--server`/`ROUTER_URL`, else its default; a
    // `HERD_SERVER` set for the verbs must not take its place. The invalid
    // name fails the start after the server was checked, so the run ends
    // either way and the error says which check failed.
    let out = Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(["nodelet", "--name", "Not A Node Name!"])
        .env("HERD_SERVER", "ftp://meant-for-the-verbs")
        .env_remove("ROUTER_URL")
        .env_remove("RUST_LOG")
        .output()
        .expect("run herd");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("invalid --name"), "{stderr}");
}

#[test]
fn the_nodelet_keeps_its_own_server_flag() {
    // `herd nodelet --server` is the router it registers with (ROUTER_URL),
    // checked before the nodelet starts anything.
    let run = herd_misdirected(&["nodelet", "--server", "ftp://router.lan"]).failure();
    assert!(
        run.stderr.contains("invalid --server / ROUTER_URL"),
        "{}",
        run.stderr
    );
}
