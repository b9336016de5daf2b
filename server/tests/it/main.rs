//! Integration tests: the host serving any router (`host`), the whole
//! assembly on 127.0.0.1:0 over a temporary SQLite store (`assembly`), and
//! keys, roles and their enforcement through real HTTP (`auth`).

mod assembly;
mod auth;
mod host;

use std::path::Path;
use std::time::Duration;

/// The token in a key file the server writes, once it is there.
pub async fn wait_key(path: &Path) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && !text.trim().is_empty()
        {
            return text.trim().to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} was not written",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A client that sends `token` on every request.
pub fn client_with(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("header value"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client")
}

/// A client with the admin key the server at `data_dir` wrote.
pub async fn admin_client(data_dir: &Path) -> reqwest::Client {
    client_with(&wait_key(&data_dir.join(herd_server::ADMIN_KEY_FILE)).await)
}
