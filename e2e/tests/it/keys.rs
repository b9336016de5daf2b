//! Keys end to end: nodelets join with the server's join key and keep a node
//! key; a disabled node key stops its nodelet with a clear message; and no
//! secret (admin, join, node or a created key) appears in any captured log of
//! the servers and nodelets.

use std::time::Duration;

use herd_e2e::{Node as E2eNode, NodeOptions, Server, bounded};

use crate::support::{TEST_LIMIT, assert_no_secret_in_logs, herd_cli};

#[tokio::test]
async fn joined_nodelets_and_no_secret_in_any_log() {
    bounded(TEST_LIMIT, async {
        let server = Server::start().await;
        let admin = server.admin_key().expect("the server wrote admin.key");
        let join = server.join_key().expect("the server wrote join.key");

        let mut a = E2eNode::start(&server.url, NodeOptions::beside("key-a")).await;
        let mut b = E2eNode::start(&server.url, NodeOptions::beside("key-b")).await;
        a.wait_registered(Duration::from_secs(30)).await;
        b.wait_registered(Duration::from_secs(30)).await;
        let node_key_path = a.state_dir().join("node.key");
        let node_key = herd_auth::read_key_file(&node_key_path).expect("node.key of key-a");

        // A restart reuses node.key: the same key, no second exchange.
        a.restart().await;
        a.wait_registered(Duration::from_secs(30)).await;
        assert_eq!(
            herd_auth::read_key_file(&node_key_path).expect("node.key"),
            node_key
        );
        let keys = herd_cli(&server, &["get", "apikeys", "-o", "name"]);
        let node_keys = keys.lines().filter(|l| l.contains("key-a")).count();
        assert_eq!(node_keys, 1, "one node key for key-a:\n{keys}");

        let created = herd_cli(&server, &["create", "apikey", "e2e-viewer", "--role", "viewer"]);
        let created = herd_auth::Token::parse(created.lines().nth(1).expect("secret line"))
            .expect("a herd key");

        // Disabling key-b's node key stops its nodelet, saying why.
        let b_key_name = herd_cli(&server, &["get", "apikeys", "-o", "name"])
            .lines()
            .find(|l| l.contains("key-b"))
            .expect("key-b's node key")
            .trim_start_matches("apikey/")
            .to_owned();
        herd_cli(&server, &["get", "apikey", &b_key_name]);
        let patch = format!(
            r#"{{"apiVersion":"herd/v1","kind":"ApiKey","metadata":{{"name":"{b_key_name}"}},"spec":{{"role":"node","node":"key-b","disabled":true}}}}"#
        );
        let mut apply = std::process::Command::new(herd_e2e::bins::herd());
        apply
            .args(["apply", "-f", "-", "--server", &server.url])
            .env("HERD_TOKEN", admin.expose())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = apply.spawn().expect("herd apply");
        {
            use std::io::Write as _;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(patch.as_bytes()).expect("write");
        }
        let out = child.wait_with_output().expect("apply");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let line = b
            .nodelet()
            .wait_for_line("the refusal", Duration::from_secs(20), |l| {
                l.contains("refused this nodelet's key")
            })
            .await;
        assert!(line.contains("disabled"), "{line}");
        eprintln!("key-b stopped: {line}");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = b.nodelet().try_exit() {
                break status;
            }
            assert!(std::time::Instant::now() < deadline, "key-b's nodelet keeps running");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(!status.success(), "{status}");

        let b_node_key =
            herd_auth::read_key_file(&b.state_dir().join("node.key")).expect("node.key of key-b");
        let secrets = [
            ("admin", admin.secret.expose().to_owned()),
            ("join", join.secret.expose().to_owned()),
            ("node key-a", node_key.secret.expose().to_owned()),
            ("node key-b", b_node_key.secret.expose().to_owned()),
            ("created", created.secret.expose().to_owned()),
        ];
        let logs = [
            ("server", server.proc.lines()),
            ("nodelet key-a", a.nodelet().lines()),
            ("nodelet key-b", b.nodelet().lines()),
        ];
        assert_no_secret_in_logs(&secrets, &logs);
    })
    .await;
}
