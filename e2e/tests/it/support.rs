//! Helpers shared by the tests.

use std::time::{Duration, Instant};

use herd_api::{ConditionStatus, Node, conditions, find_condition};
use herd_e2e::Server;

/// Hard limit of one test.
pub const TEST_LIMIT: Duration = Duration::from_secs(120);

/// The node's `Ready` condition: status and reason.
pub fn ready(node: &Node) -> (ConditionStatus, String) {
    find_condition(&node.status.conditions, conditions::READY)
        .map_or((ConditionStatus::Unknown, "<none>".to_owned()), |c| {
            (c.status, c.reason.clone())
        })
}

/// Waits until the proxy no longer routes to `name`; returns the time from `since`.
pub async fn wait_unroutable(
    server: &Server,
    name: &str,
    since: Instant,
    limit: Duration,
) -> Duration {
    herd_e2e::eventually(
        &format!("{name} out of routing"),
        limit,
        || async { server.node_stats(name).await },
        |n| n["routable"] == false,
    )
    .await;
    since.elapsed()
}

/// Writes a figure line the docs quote (`E2E-FIGURE name: value`), so a run's
/// output can be grepped for them.
pub fn figure(name: &str, value: impl std::fmt::Display) {
    eprintln!("E2E-FIGURE {name}: {value}");
}

/// `herd ARGS --server URL`, its stdout (panics on failure).
pub fn herd_cli(server: &Server, args: &[&str]) -> String {
    let mut cmd = std::process::Command::new(herd_e2e::bins::herd());
    cmd.args(args).args(["--server", &server.url]);
    if let Some(key) = server.admin_key() {
        cmd.env("HERD_TOKEN", key.expose());
    }
    let out = cmd.output().expect("run herd");
    assert!(
        out.status.success(),
        "herd {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Panics when any of `secrets` (what, secret) is in any of `logs` (whose,
/// lines), or when a log is empty (the check would prove nothing).
pub fn assert_no_secret_in_logs(secrets: &[(&str, String)], logs: &[(&str, Vec<String>)]) {
    for (who, lines) in logs {
        assert!(
            !lines.is_empty(),
            "{who} logged nothing: the check would prove nothing"
        );
        for (what, secret) in secrets {
            if let Some(line) = lines.iter().find(|l| l.contains(secret.as_str())) {
                panic!("the {what} secret is in the {who} log: {line}");
            }
        }
    }
}
