//! The loopback `Host` check. Requests only ever go to 127.0.0.1; only the
//! header names other hosts.

use herd_testkit::FakeOllama;

use crate::helpers::{bounded, client, raw_http};

#[tokio::test]
async fn foreign_host_gets_403_with_empty_body() {
    bounded(async {
        let f = FakeOllama::builder().start().await;
        let answer = raw_http(
            f.addr(),
            "GET /api/version HTTP/1.1\r\nHost: evil.example.com\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
        let (_, body) = answer.split_once("\r\n\r\n").expect("head/body");
        assert!(body.is_empty(), "403 must have an empty body: {body:?}");
        assert!(
            answer.to_ascii_lowercase().contains("content-length: 0"),
            "{answer}"
        );
        assert_eq!(f.last_host().as_deref(), Some("evil.example.com"));
        assert_eq!(f.requests("/api/version"), 1);

        // reqwest with an explicit Host header, as a careless proxy sends it.
        let resp = client()
            .get(format!("{}/api/tags", f.url()))
            .header("host", "evil.example.com:11434")
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 403);
        assert!(resp.bytes().await.expect("body").is_empty());

        for ok in [
            "localhost:11434",
            "127.0.0.1",
            "node.local",
            "10.0.0.7:11434",
        ] {
            let answer = raw_http(
                f.addr(),
                &format!("GET / HTTP/1.1\r\nHost: {ok}\r\nConnection: close\r\n\r\n"),
            )
            .await;
            assert!(answer.starts_with("HTTP/1.1 200"), "{ok}: {answer}");
            assert!(answer.ends_with("Ollama is running"), "{answer}");
            assert_eq!(f.last_host().as_deref(), Some(ok));
        }
    })
    .await;
}

#[tokio::test]
async fn host_check_can_be_turned_off() {
    bounded(async {
        let f = FakeOllama::builder().host_check(false).start().await;
        let answer = raw_http(
            f.addr(),
            "GET / HTTP/1.1\r\nHost: evil.example.com\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    })
    .await;
}
