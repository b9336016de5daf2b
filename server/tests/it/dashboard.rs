//! The dashboard's sessions through the whole server: a one-time link and a
//! key turned into cookies, the cookie opening the API for its key's role,
//! forged writes (no Origin, another Origin) refused, and sessions ended by
//! sign-out and by disabling their key.

use std::time::{Duration, Instant};

use herd_server::{Config, Server};
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::{admin_client, wait_key};

/// The session cookie (`herd_session=…`) a response sets.
fn session_cookie(resp: &reqwest::Response) -> String {
    let set = resp
        .headers()
        .get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .expect("a Set-Cookie");
    for part in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(part), "{set}");
    }
    set.split(';').next().expect("cookie").to_owned()
}

#[tokio::test]
async fn dashboard_sessions_through_the_whole_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::new(herd_apiserver::Config::new(dir.path()));
    config.controller = None;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let server = Server::build(config, listener).expect("build");
    let url = format!("http://{}", server.local_addr());
    let stop = server.shutdown_token();
    let done = tokio::spawn(server.serve(std::future::pending()));
    let admin = admin_client(dir.path()).await;
    let admin_key = dir.path().join(herd_server::ADMIN_KEY_FILE);
    wait_key(&admin_key).await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let nodes = format!("{url}/apis/herd/v1/nodes");
    let send = |method: Method, to: &str, cookie: &str, origin: Option<&str>| {
        let mut req = browser
            .request(method.clone(), to)
            .header(COOKIE, cookie.to_owned());
        if let Some(origin) = origin {
            req = req.header(ORIGIN, origin.to_owned());
        }
        if method == Method::POST {
            req = req
                .header(CONTENT_TYPE, "application/json")
                .body(json!({"metadata": {"name": "gpu-1"}, "spec": {}}).to_string());
        }
        req.send()
    };

    // herd up's link, as herd up asks for it.
    let link = herd_server::dashboard::signin_link(&url, &admin_key, None)
        .await
        .expect("link");
    assert!(
        link.starts_with(&format!("{url}/dashboard/signin?code=")),
        "{link}"
    );
    let resp = browser.get(&link).send().await.expect("redeem");
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[LOCATION], "/dashboard/");
    let admin_cookie = session_cookie(&resp);
    let again = browser.get(&link).send().await.expect("redeem again");
    assert_eq!(again.headers()[LOCATION], "/dashboard/?signin=link");
    assert!(again.headers().get(SET_COOKIE).is_none());

    // The cookie opens the API; a write needs the dashboard's own Origin.
    let resp = send(Method::GET, &nodes, &admin_cookie, None)
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::OK);
    for origin in [None, Some("http://evil.example"), Some("null")] {
        let resp = send(Method::POST, &nodes, &admin_cookie, origin)
            .await
            .expect("post");
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{origin:?}");
    }
    let resp = send(Method::POST, &nodes, &admin_cookie, Some(&url))
        .await
        .expect("post");
    assert_eq!(resp.status(), StatusCode::CREATED);

    // A viewer's key signs in to a session that reads but does not write.
    let resp = admin
        .post(format!("{url}/apis/herd/v1/apikeys"))
        .json(&json!({"metadata": {"name": "watcher"}, "spec": {"role": "viewer"}}))
        .send()
        .await
        .expect("create key");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let body: serde_json::Value = resp.json().await.expect("json");
    let viewer_key = body["status"]["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let resp = browser
        .post(format!("{url}/dashboard/session"))
        .header(ORIGIN, url.clone())
        .json(&json!({ "key": viewer_key }))
        .send()
        .await
        .expect("sign in");
    assert_eq!(resp.status(), StatusCode::OK);
    let viewer_cookie = session_cookie(&resp);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["role"], "viewer");
    let resp = send(Method::GET, &nodes, &viewer_cookie, None)
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = send(Method::POST, &nodes, &viewer_cookie, Some(&url))
        .await
        .expect("post");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    // Disabling the key ends its session, within a second.
    let resp = admin
        .patch(format!("{url}/apis/herd/v1/apikeys/watcher"))
        .header(CONTENT_TYPE, "application/merge-patch+json")
        .body(json!({"spec": {"disabled": true}}).to_string())
        .send()
        .await
        .expect("disable");
    assert_eq!(resp.status(), StatusCode::OK);
    let disabled = Instant::now();
    loop {
        let resp = send(Method::GET, &nodes, &viewer_cookie, None)
            .await
            .expect("get");
        if resp.status() == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(disabled.elapsed() < Duration::from_secs(1), "still open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Signing out ends the admin's session.
    let resp = send(
        Method::DELETE,
        &format!("{url}/dashboard/session"),
        &admin_cookie,
        Some(&url),
    )
    .await
    .expect("sign out");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = send(Method::GET, &nodes, &admin_cookie, None)
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), done)
        .await
        .expect("serve returns")
        .expect("join")
        .expect("served");
}
