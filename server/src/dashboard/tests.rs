use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use herd_api::Role;
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;
use crate::sessions::tests::stored;

struct Got {
    status: StatusCode,
    headers: HeaderMap,
    body: serde_json::Value,
}

impl Got {
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The session cookie's value from `Set-Cookie`.
    fn session(&self) -> String {
        let cookie = self.header(header::SET_COOKIE);
        let value = cookie
            .strip_prefix("herd_session=")
            .and_then(|rest| rest.split(';').next())
            .unwrap_or_else(|| panic!("no session cookie in {cookie:?}"));
        value.to_owned()
    }
}

struct Fixture {
    dashboard: Dashboard,
    admin: String,
    viewer: String,
    node: String,
}

fn fixture(tls: bool) -> Fixture {
    let (a, ah, admin) = stored("alice", Role::Admin);
    let (v, vh, viewer) = stored("val", Role::Viewer);
    let (n, nh, node) = stored("node-gpu-1", Role::Node);
    let ring = KeyRing::new();
    ring.reset(vec![a, v, n], vec![ah, vh, nh]);
    Fixture {
        dashboard: Dashboard {
            sessions: Arc::new(Sessions::new()),
            ring: Arc::new(ring),
            hosts: Arc::new(HostNames::new(["gpu-box"])),
            tls,
        },
        admin: admin.expose(),
        viewer: viewer.expose(),
        node: node.expose(),
    }
}

async fn send(
    d: &Dashboard,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Got {
    let mut req = Request::builder().method(method).uri(uri);
    if !headers.iter().any(|(k, _)| *k == "host") {
        req = req.header(header::HOST, "127.0.0.1:8080");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = router(d.clone())
        .oneshot(req.body(Body::from(body.to_owned())).expect("request"))
        .await
        .expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Got {
        status,
        headers,
        body,
    }
}

const ORIGIN: (&str, &str) = ("origin", "http://127.0.0.1:8080");

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_cookie_and_whoami_reads_it() {
    let f = fixture(false);
    let d = &f.dashboard;
    let body = format!(r#"{{"key": "{}"}}"#, f.viewer);
    let got = send(d, Method::POST, "/dashboard/session", &[ORIGIN], &body).await;
    assert_eq!(got.status, StatusCode::OK, "{:?}", got.body);
    assert_eq!(got.body["role"], "viewer");
    let cookie = got.header(header::SET_COOKIE).to_owned();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "{cookie}");
    assert!(!cookie.contains(&f.viewer), "the key is not the cookie");
    let jar = format!("herd_session={}", got.session());

    let me = send(
        d,
        Method::GET,
        "/dashboard/session",
        &[("cookie", &jar)],
        "",
    )
    .await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["name"], "val");
    assert_eq!(me.body["role"], "viewer");

    // Signing out needs the Origin too; then the cookie is worthless.
    let out = send(
        d,
        Method::DELETE,
        "/dashboard/session",
        &[("cookie", &jar)],
        "",
    )
    .await;
    assert_eq!(out.status, StatusCode::FORBIDDEN);
    let out = send(
        d,
        Method::DELETE,
        "/dashboard/session",
        &[("cookie", &jar), ORIGIN],
        "",
    )
    .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert!(out.header(header::SET_COOKIE).contains("Max-Age=0"));
    let me = send(
        d,
        Method::GET,
        "/dashboard/session",
        &[("cookie", &jar)],
        "",
    )
    .await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sign_in_table() {
    let f = fixture(false);
    let d = &f.dashboard;
    let json = |k: &str| format!(r#"{{"key": "{k}"}}"#);
    let bearer_admin = format!("Bearer {}", f.admin);
    type Case<'a> = (Vec<(&'a str, &'a str)>, String, StatusCode);
    let cases: Vec<Case<'_>> = vec![
        (vec![ORIGIN], json(&f.admin), StatusCode::OK),
        (vec![], json(&f.admin), StatusCode::OK),
        (
            vec![("authorization", &bearer_admin)],
            String::new(),
            StatusCode::OK,
        ),
        (vec![ORIGIN], json(&f.node), StatusCode::FORBIDDEN),
        (vec![ORIGIN], json("herd_abc"), StatusCode::UNAUTHORIZED),
        (vec![ORIGIN], json("ollama"), StatusCode::UNAUTHORIZED),
        (vec![ORIGIN], "not json".to_owned(), StatusCode::BAD_REQUEST),
        (vec![], String::new(), StatusCode::BAD_REQUEST),
        // Login forgery from another site's page.
        (
            vec![("origin", "http://evil.example")],
            json(&f.admin),
            StatusCode::FORBIDDEN,
        ),
        // A rebound name.
        (
            vec![("host", "evil.example:8080")],
            json(&f.admin),
            StatusCode::FORBIDDEN,
        ),
    ];
    for (headers, body, want) in cases {
        let got = send(d, Method::POST, "/dashboard/session", &headers, &body).await;
        assert_eq!(got.status, want, "{headers:?} {body}: {:?}", got.body);
        if want != StatusCode::OK {
            assert!(got.header(header::SET_COOKIE).is_empty());
            assert!(!got.body.to_string().contains(&f.admin[18..]));
        }
    }
}

#[tokio::test]
async fn the_cookie_is_secure_over_tls() {
    let f = fixture(true);
    let body = format!(r#"{{"key": "{}"}}"#, f.admin);
    let got = send(
        &f.dashboard,
        Method::POST,
        "/dashboard/session",
        &[("origin", "https://127.0.0.1:8080")],
        &body,
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(got.header(header::SET_COOKIE).contains("; Secure"));
}

#[tokio::test]
async fn a_link_signs_in_once() {
    let f = fixture(false);
    let d = &f.dashboard;
    let bearer = format!("Bearer {}", f.admin);
    let got = send(
        d,
        Method::POST,
        "/dashboard/links",
        &[("authorization", &bearer)],
        "",
    )
    .await;
    assert_eq!(got.status, StatusCode::CREATED, "{:?}", got.body);
    let url = got.body["url"].as_str().expect("url").to_owned();
    let path = url
        .strip_prefix("http://127.0.0.1:8080")
        .expect("the link names the host asked");
    assert!(path.starts_with("/dashboard/signin?code="), "{path}");

    let first = send(d, Method::GET, path, &[], "").await;
    assert_eq!(first.status, StatusCode::SEE_OTHER);
    assert_eq!(first.header(header::LOCATION), "/dashboard/");
    let jar = format!("herd_session={}", first.session());
    let me = send(
        d,
        Method::GET,
        "/dashboard/session",
        &[("cookie", &jar)],
        "",
    )
    .await;
    assert_eq!(me.body["role"], "admin");

    let again = send(d, Method::GET, path, &[], "").await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert_eq!(again.header(header::LOCATION), "/dashboard/?signin=link");
    assert!(again.header(header::SET_COOKIE).is_empty());
}

#[tokio::test]
async fn links_table() {
    let f = fixture(false);
    let d = &f.dashboard;
    let admin = format!("Bearer {}", f.admin);
    let viewer = format!("Bearer {}", f.viewer);
    // A signed-in admin browser.
    let body = format!(r#"{{"key": "{}"}}"#, f.admin);
    let signed = send(d, Method::POST, "/dashboard/session", &[ORIGIN], &body).await;
    let jar = format!("herd_session={}", signed.session());
    let cases: Vec<(Vec<(&str, &str)>, StatusCode)> = vec![
        (vec![("authorization", &admin)], StatusCode::CREATED),
        (vec![("authorization", &viewer)], StatusCode::FORBIDDEN),
        (vec![], StatusCode::UNAUTHORIZED),
        (vec![("cookie", &jar), ORIGIN], StatusCode::CREATED),
        (vec![("cookie", &jar)], StatusCode::FORBIDDEN),
        (
            vec![("cookie", &jar), ("origin", "http://evil.example")],
            StatusCode::FORBIDDEN,
        ),
        (
            vec![("cookie", "herd_session=made-up"), ORIGIN],
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for (headers, want) in cases {
        let got = send(d, Method::POST, "/dashboard/links", &headers, "").await;
        assert_eq!(got.status, want, "{headers:?}: {:?}", got.body);
    }
}

#[tokio::test]
async fn every_answer_forbids_framing_and_sniffing_and_caching() {
    let f = fixture(false);
    let d = &f.dashboard;
    for (method, uri) in [
        (Method::GET, "/dashboard/session"),
        (Method::POST, "/dashboard/session"),
        (Method::DELETE, "/dashboard/session"),
        (Method::POST, "/dashboard/links"),
        (Method::GET, "/dashboard/signin?code=x"),
    ] {
        let got = send(d, method.clone(), uri, &[ORIGIN], "").await;
        assert_eq!(
            got.header(header::X_CONTENT_TYPE_OPTIONS),
            "nosniff",
            "{uri}"
        );
        assert_eq!(got.header(header::X_FRAME_OPTIONS), "DENY", "{uri}");
        assert!(
            got.header(header::CONTENT_SECURITY_POLICY)
                .contains("frame-ancestors 'none'"),
            "{uri}"
        );
        assert_eq!(got.header(header::CACHE_CONTROL), "no-store", "{uri}");
    }
}
