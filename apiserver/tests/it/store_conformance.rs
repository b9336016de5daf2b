//! The store conformance suite against SQLite.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use herd_apiserver::store::conformance::{self, KINDS};
use herd_apiserver::{SqliteStore, Store, StoreOptions};

fn open(dir: &Path, window: usize) -> Arc<dyn Store> {
    let options = StoreOptions {
        watch_window: window,
        ..StoreOptions::default()
    };
    Arc::new(SqliteStore::open(dir, KINDS, options).expect("open the store"))
}

/// A new store in its own directory for every call.
struct Fresh {
    tmp: tempfile::TempDir,
    made: AtomicUsize,
}

impl Fresh {
    fn new() -> Self {
        Self {
            tmp: tempfile::tempdir().expect("tmp"),
            made: AtomicUsize::new(0),
        }
    }

    fn dir(&self) -> PathBuf {
        let n = self.made.fetch_add(1, Ordering::Relaxed);
        self.tmp.path().join(n.to_string())
    }
}

macro_rules! cases {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let fresh = Fresh::new();
            conformance::$case(|window| {
                let dir = fresh.dir();
                async move { open(&dir, window) }
            })
            .await;
        }
    )*};
}

cases!(
    create,
    create_when_exists,
    update_stale,
    update_unconditional,
    delete_and_delete_missing,
    list,
    watch_from_revision,
    compaction,
    too_new,
    revisions_increase_across_kinds,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_everything() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().to_path_buf();
    conformance::restart_keeps_everything(|window| {
        let dir = dir.clone();
        async move { open(&dir, window) }
    })
    .await;
}

/// Set in the child process this test starts: where its store lives.
const CHILD_DIR: &str = "HERD_STORE_CONFORMANCE_DIR";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_durability() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        conformance::kill9_child(open(Path::new(&dir), 10_000)).await;
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().to_path_buf();
    let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"));
    child
        .args([
            "store_conformance::kill9_durability",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, &dir);
    conformance::kill9_durability(child, |window| {
        let dir = dir.clone();
        async move { open(&dir, window) }
    })
    .await;
}
