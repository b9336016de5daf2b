//! Bounded waits: nothing in the suite waits without a limit.

use std::future::Future;
use std::time::{Duration, Instant};

/// Runs a test body with a hard time limit.
pub async fn bounded<T>(limit: Duration, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("test did not finish within {limit:?}"),
    }
}

/// Polls `get` every 25 ms until `pred` holds and returns the value, or
/// panics with the last value seen after `limit`.
pub async fn eventually<T: std::fmt::Debug, F, Fut>(
    what: &str,
    limit: Duration,
    mut get: F,
    pred: impl Fn(&T) -> bool,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    let mut last = None;
    loop {
        if let Some(v) = get().await {
            if pred(&v) {
                return v;
            }
            last = Some(v);
        }
        if Instant::now() > deadline {
            panic!("{what}: not within {limit:?}; last seen: {last:#?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
