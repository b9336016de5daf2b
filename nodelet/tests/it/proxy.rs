//! HTTP_PROXY / HTTPS_PROXY / NO_PROXY from an explicit environment map.

use std::collections::HashMap;

use herd_nodelet::install::{DownloadError, HttpProxySettings, InstallError, install_ollama};

use crate::support::{
    Behaviour, CountingProxy, ReleaseServer, bounded, release_files, release_tar, test_options,
    zstd,
};

const ASSET: &str = "ollama-linux-amd64.tar.zst";

fn env(pairs: &[(&str, String)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

#[tokio::test]
async fn http_proxy_from_the_env_map_carries_every_request() {
    bounded(async {
        let archive = zstd(&release_tar("0.33.0", 0o755));
        let server = ReleaseServer::start(
            release_files("v0.33.0", ASSET, &archive),
            Behaviour::default(),
        )
        .await;
        let proxy = CountingProxy::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut options = test_options(dir.path(), &server.base, "v0.33.0");
        options.http.proxy =
            HttpProxySettings::from_env_map(&env(&[("http_proxy", proxy.url.to_string())]))
                .expect("proxy");
        install_ollama(&options)
            .await
            .expect("install through the proxy");
        let expected = vec![
            format!("{}download/v0.33.0/sha256sum.txt", server.base),
            format!("{}download/v0.33.0/{ASSET}", server.base),
        ];
        assert_eq!(proxy.forwarded(), expected);
        assert_eq!(server.seen().len(), 2);
    })
    .await;
}

#[tokio::test]
async fn no_proxy_bypasses_the_proxy() {
    bounded(async {
        let archive = zstd(&release_tar("0.33.0", 0o755));
        let server = ReleaseServer::start(
            release_files("v0.33.0", ASSET, &archive),
            Behaviour::default(),
        )
        .await;
        let proxy = CountingProxy::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut options = test_options(dir.path(), &server.base, "v0.33.0");
        let vars = env(&[
            ("HTTP_PROXY", proxy.url.to_string()),
            ("HTTPS_PROXY", proxy.url.to_string()),
            ("NO_PROXY", "example.com, 127.0.0.0/8".to_owned()),
        ]);
        options.http.proxy = HttpProxySettings::from_env_map(&vars).expect("proxy");
        install_ollama(&options).await.expect("direct install");
        assert_eq!(proxy.connections(), 0);
        assert_eq!(server.seen().len(), 2);
    })
    .await;
}

#[tokio::test]
async fn https_proxy_is_used_for_https_urls_through_connect() {
    bounded(async {
        // The release server speaks plain HTTP, so the TLS handshake inside the tunnel
        // fails; what matters is that the client went through the proxy's CONNECT.
        let server = ReleaseServer::start(Vec::new(), Behaviour::default()).await;
        let proxy = CountingProxy::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let https_base = reqwest::Url::parse(&format!("https://{}", server.addr())).expect("url");
        let mut options = test_options(dir.path(), &https_base, "v0.33.0");
        options.http.proxy =
            HttpProxySettings::from_env_map(&env(&[("HTTPS_PROXY", proxy.url.to_string())]))
                .expect("proxy");
        let err = install_ollama(&options)
            .await
            .expect_err("no TLS behind the tunnel");
        assert!(
            matches!(
                err,
                InstallError::Download(DownloadError::GaveUp { attempts: 5, .. })
            ),
            "{err}"
        );
        let connects = proxy.connects();
        assert_eq!(connects.len(), 5, "one CONNECT per try: {connects:?}");
        assert!(connects.iter().all(|c| *c == server.addr()), "{connects:?}");
        assert!(proxy.forwarded().is_empty());
        assert!(
            server.seen().is_empty(),
            "no plain request reached the server"
        );
    })
    .await;
}
