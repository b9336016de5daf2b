use std::process::Command;

use std::time::Duration;

use crate::{HerdProcess, sigterm, wait_exit};

#[test]
fn version_prints_the_crate_version() {
    let out = Command::new(env!("CARGO_BIN_EXE_herd"))
        .arg("version")
        .output()
        .expect("run");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("herd {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn server_help_lists_every_flag_and_env_var() {
    let out = Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(["server", "--help"])
        .output()
        .expect("run");
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--listen",
        "HERD_LISTEN",
        "--data-dir",
        "HERD_DATA_DIR",
        "--fsync",
        "--watch-window",
        "--bookmark-interval",
        "--origins",
        "HERD_ORIGINS",
        "--client-idle-timeout",
        "HERD_CLIENT_IDLE_TIMEOUT",
    ] {
        assert!(help.contains(needle), "{needle} missing from:\n{help}");
    }
}

#[tokio::test]
async fn sigterm_stops_the_server_cleanly_and_data_survives() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut server = HerdProcess::server(dir.path(), &[]);
    let http = crate::verbs::http_for(&server.url);
    let r = http
        .post(format!("{}/apis/herd/v1/nodes", server.url))
        .json(&serde_json::json!({"metadata":{"name":"a"}}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 201);
    // An open watch must not keep the server from stopping.
    let _watch = http
        .get(format!("{}/apis/herd/v1/nodes?watch=true", server.url))
        .send()
        .await
        .expect("watch");
    sigterm(&server.child);
    let status = tokio::task::spawn_blocking(move || {
        wait_exit(&mut server.child, Duration::from_secs(10), "herd server")
    })
    .await
    .expect("join");
    assert!(status.success(), "exit status {status}");
    let server = HerdProcess::server(dir.path(), &[]);
    let r = http
        .get(format!("{}/apis/herd/v1/nodes/a", server.url))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
}

/// A log reader that went away (stderr a closed pipe, as when whatever
/// collected the logs has died) must not keep the server from stopping:
/// the line "received SIGTERM" cannot be written, and writing it used to
/// panic the task that waits for the signal.
#[test]
fn sigterm_stops_the_server_whose_log_pipe_is_closed() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("tmp");
    let mut child = Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn herd server");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    while !line.contains("listening on") {
        line.clear();
        let n = stderr.read_line(&mut line).expect("read stderr");
        assert!(n > 0, "herd server ended before it listened");
    }
    // The reader goes away: from now on every log line fails with EPIPE.
    drop(stderr);
    sigterm(&child);
    let status = wait_exit(
        &mut child,
        Duration::from_secs(10),
        "herd server with a closed log pipe",
    );
    assert!(status.success(), "exit status {status}");
}

/// `--client-idle-timeout`: a silent connection is closed; a watch, a
/// request in flight for longer than that, is not.
#[tokio::test]
async fn idle_client_connections_are_closed_but_watches_are_not() {
    use futures_util::StreamExt as _;
    use tokio::io::AsyncReadExt as _;
    let dir = tempfile::tempdir().expect("tmp");
    let server = HerdProcess::server(dir.path(), &["--client-idle-timeout", "400ms"]);
    let http = crate::verbs::http_for(&server.url);
    let mut watch = http
        .get(format!("{}/apis/herd/v1/nodes?watch=true", server.url))
        .send()
        .await
        .expect("watch")
        .bytes_stream();
    let mut silent = tokio::net::TcpStream::connect(server.url.trim_start_matches("http://"))
        .await
        .expect("connect");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0))), "silent connection: {closed:?}");

    // Well past the limit, the watch still delivers.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r = http
        .post(format!("{}/apis/herd/v1/nodes", server.url))
        .json(&serde_json::json!({"metadata":{"name":"late"}}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 201);
    let event = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("an event")
        .expect("stream open")
        .expect("bytes");
    assert!(
        String::from_utf8_lossy(&event).contains("\"late\""),
        "{event:?}"
    );
}
