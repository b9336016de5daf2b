//! Real handshakes on 127.0.0.1: a TLS server built by herd-tls answering reqwest clients
//! built with each kind of trust.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use herd_tls::{ClientTrust, Fingerprint, Outcome, RenewReason, SelfSigned, ServerTls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves `ok` to every request over TLS until the test ends.
async fn serve(tls: ServerTls) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let tls = tls.clone();
            tokio::spawn(async move {
                let Ok(mut stream) = tls.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                let _ = stream.write_all(reply).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

async fn get(trust: &ClientTrust, host: &str, addr: SocketAddr) -> Result<String, reqwest::Error> {
    // Any host name reaches the test server, so only the certificate decides.
    let builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .resolve(host, addr);
    let client = trust.apply(builder).expect("trust").build()?;
    let url = format!("https://{host}:{}/healthz", addr.port());
    client
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await
}

/// The whole source chain of an error, one message per link.
fn chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(" <- ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

fn self_signed(dir: &Path, sans: &[&str]) -> SelfSigned {
    let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    SelfSigned::ensure(dir, &sans).expect("self-signed setup")
}

fn fast_reloading(setup: &SelfSigned) -> ServerTls {
    ServerTls::from_files_checking_every(setup.cert_path(), setup.key_path(), Duration::ZERO)
        .expect("server tls")
}

#[tokio::test]
async fn pinned_client_is_served_and_a_wrong_pin_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let setup = self_signed(tmp.path(), &[]);
    assert_eq!(setup.outcome(), Outcome::CreatedCa);
    let addr = serve(setup.server_tls().expect("server tls")).await;

    let pin: Fingerprint = setup.ca_sha256().parse().expect("fingerprint");
    let pinned = ClientTrust::PinnedCa(pin);
    assert_eq!(get(&pinned, "localhost", addr).await.expect("pinned"), "ok");
    assert_eq!(get(&pinned, "127.0.0.1", addr).await.expect("by ip"), "ok");

    let other = tempfile::tempdir().expect("tempdir");
    let wrong_pin = self_signed(other.path(), &[]).ca_fingerprint();
    let wrong = ClientTrust::PinnedCa(wrong_pin);
    let err = get(&wrong, "localhost", addr).await.expect_err("wrong pin");
    assert!(err.is_connect(), "{err:?}");
    let text = chain(&err);
    assert!(text.contains("certificate not trusted"), "{text}");
    assert!(text.contains("fingerprint mismatch"), "{text}");
    assert!(text.contains(&wrong_pin.to_string()), "{text}");
}

#[tokio::test]
async fn pinned_client_still_checks_the_name() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let setup = self_signed(tmp.path(), &[]);
    let addr = serve(setup.server_tls().expect("server tls")).await;
    let pinned = ClientTrust::PinnedCa(setup.ca_fingerprint());
    let err = get(&pinned, "elsewhere.herd.test", addr)
        .await
        .expect_err("name not in the certificate");
    let text = chain(&err);
    assert!(text.contains("not valid for name"), "{text}");
}

#[tokio::test]
async fn ca_file_client_is_served_and_other_trusts_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let setup = self_signed(tmp.path(), &[]);
    let addr = serve(setup.server_tls().expect("server tls")).await;

    let with_file = ClientTrust::CaFile(setup.ca_cert_path());
    assert_eq!(
        get(&with_file, "localhost", addr).await.expect("ca file"),
        "ok"
    );

    let other = tempfile::tempdir().expect("tempdir");
    let wrong_file = ClientTrust::CaFile(self_signed(other.path(), &[]).ca_cert_path());
    let err = get(&wrong_file, "localhost", addr)
        .await
        .expect_err("other CA");
    assert!(err.is_connect(), "{err:?}");
    assert!(chain(&err).contains("UnknownIssuer"), "{}", chain(&err));

    let public = ClientTrust::SystemRoots;
    let err = get(&public, "localhost", addr)
        .await
        .expect_err("public roots");
    assert!(chain(&err).contains("UnknownIssuer"), "{}", chain(&err));
}

#[tokio::test]
async fn renewal_keeps_the_ca_so_the_pinned_client_still_works() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let setup = self_signed(tmp.path(), &[]);
    let tls = fast_reloading(&setup);
    let addr = serve(tls.clone()).await;
    let pinned = ClientTrust::PinnedCa(setup.ca_fingerprint());
    assert_eq!(get(&pinned, "localhost", addr).await.expect("before"), "ok");
    let before = tls.current_chain();
    assert!(get(&pinned, "router.herd.test", addr).await.is_err());

    let reused = self_signed(tmp.path(), &[]);
    assert_eq!(reused.outcome(), Outcome::Reused);
    let renewed = self_signed(tmp.path(), &["router.herd.test"]);
    assert_eq!(
        renewed.outcome(),
        Outcome::Renewed(RenewReason::NamesChanged)
    );
    assert_eq!(renewed.ca_sha256(), setup.ca_sha256());
    assert!(renewed.names().iter().any(|n| n == "router.herd.test"));

    assert_eq!(get(&pinned, "localhost", addr).await.expect("after"), "ok");
    let new_name = get(&pinned, "router.herd.test", addr).await;
    assert_eq!(
        new_name.expect("name only the renewed certificate has"),
        "ok"
    );
    let after = tls.current_chain();
    assert_ne!(before[0], after[0], "the renewed certificate is served");
    assert_eq!(before[1], after[1], "under the same CA");
}

#[tokio::test]
async fn changed_files_are_served_and_bad_ones_keep_the_old_certificate() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let first = self_signed(&a, &[]);
    let second = self_signed(&b, &[]);
    let live = tmp.path().join("live");
    std::fs::create_dir_all(&live).expect("mkdir");
    let (cert, key) = (live.join("tls.crt"), live.join("tls.key"));
    std::fs::copy(first.cert_path(), &cert).expect("copy");
    std::fs::copy(first.key_path(), &key).expect("copy");

    let tls = ServerTls::from_files_checking_every(cert.clone(), key.clone(), Duration::ZERO)
        .expect("server tls");
    let addr = serve(tls).await;
    let trusts_first = ClientTrust::CaFile(first.ca_cert_path());
    let trusts_second = ClientTrust::CaFile(second.ca_cert_path());
    assert_eq!(
        get(&trusts_first, "localhost", addr).await.expect("first"),
        "ok"
    );
    assert!(get(&trusts_second, "localhost", addr).await.is_err());

    // A certificate without its key does not match the old key: keep serving the old pair.
    std::fs::copy(second.cert_path(), &cert).expect("copy");
    assert_eq!(
        get(&trusts_first, "localhost", addr).await.expect("kept"),
        "ok"
    );
    std::fs::write(&key, b"-----BEGIN PRIVATE KEY-----\ngarbage\n").expect("write");
    assert_eq!(
        get(&trusts_first, "localhost", addr).await.expect("kept"),
        "ok"
    );

    std::fs::copy(second.key_path(), &key).expect("copy");
    assert_eq!(
        get(&trusts_second, "localhost", addr)
            .await
            .expect("second"),
        "ok"
    );
    assert!(get(&trusts_first, "localhost", addr).await.is_err());
}

#[tokio::test]
async fn a_server_that_does_not_send_its_ca_fails_the_pin_clearly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let setup = self_signed(tmp.path(), &[]);
    let pem = std::fs::read_to_string(setup.cert_path()).expect("read");
    let leaf_only = pem
        .split_inclusive("-----END CERTIFICATE-----\n")
        .next()
        .expect("leaf");
    let cert = tmp.path().join("leaf-only.crt");
    std::fs::write(&cert, leaf_only).expect("write");
    let addr = serve(ServerTls::from_files(cert, setup.key_path()).expect("tls")).await;
    let err = get(
        &ClientTrust::PinnedCa(setup.ca_fingerprint()),
        "localhost",
        addr,
    )
    .await
    .expect_err("no CA sent");
    let text = chain(&err);
    assert!(
        text.contains("fingerprint mismatch: none of the 1 certificate(s)"),
        "{text}"
    );
}

#[test]
fn bad_files_give_errors_that_name_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let setup = self_signed(tmp.path(), &[]);
    let garbage = tmp.path().join("garbage.pem");
    std::fs::write(&garbage, b"this is not PEM").expect("write");
    let missing = tmp.path().join("missing.pem");

    let cases = [
        (garbage.clone(), setup.key_path(), "garbage.pem"),
        (setup.cert_path(), garbage.clone(), "garbage.pem"),
        (missing.clone(), setup.key_path(), "missing.pem"),
        (
            setup.ca_cert_path(),
            setup.key_path(),
            "do not form a usable certificate and key",
        ),
    ];
    for (cert, key, want) in cases {
        let err = ServerTls::from_files(cert, key).expect_err("must fail");
        assert!(err.to_string().contains(want), "{err}");
    }

    let err = ClientTrust::CaFile(garbage)
        .client_config()
        .expect_err("bad CA file");
    assert!(err.to_string().contains("garbage.pem"), "{err}");
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_the_handshake_timeout() {
    tokio::time::pause();
    let tmp = tempfile::tempdir().expect("tempdir");
    let tls = self_signed(tmp.path(), &[]).server_tls().expect("tls");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let _silent = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (tcp, _) = listener.accept().await.expect("accept");
    let err = tls.accept(tcp).await.expect_err("timed out");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
}

#[tokio::test]
async fn periodic_renewal_replaces_a_lost_certificate_while_serving() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let setup = self_signed(tmp.path(), &["renew.herd.test"]);
    let tls = fast_reloading(&setup);
    let addr = serve(tls.clone()).await;
    let pinned = ClientTrust::PinnedCa(setup.ca_fingerprint());
    let before = tls.current_chain();

    std::fs::remove_file(setup.cert_path()).expect("rm");
    // Until it is replaced the server keeps serving what it loaded.
    assert_eq!(get(&pinned, "localhost", addr).await.expect("kept"), "ok");

    let renewal = setup.spawn_renewal(Duration::from_millis(20));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !setup.cert_path().exists() {
        assert!(tokio::time::Instant::now() < deadline, "never renewed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    renewal.abort();
    // The key is written before the certificate, so both are in place now.
    assert_eq!(
        get(&pinned, "localhost", addr).await.expect("renewed"),
        "ok"
    );
    let after = tls.current_chain();
    assert_ne!(before[0], after[0]);
    assert_eq!(before[1], after[1]);
    // Renewed with the same extra names, so the same request finds nothing to change.
    let again = self_signed(tmp.path(), &["renew.herd.test"]);
    assert_eq!(again.outcome(), Outcome::Reused);
}
