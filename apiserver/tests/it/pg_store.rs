//! The store conformance suite against a real PostgreSQL, then what only a
//! shared store must show: several servers on one database, the database
//! going away and coming back, a schema from a newer herd.
//!
//! Each test starts its own cluster (`herd_testkit::postgres`, about 1.5 s)
//! and each store a database of its own in it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use herd_apiserver::store::conformance::{self, KINDS};
use herd_apiserver::store::{Expect, Proposal, REVISION_PLACEHOLDER, Template};
use herd_apiserver::{PgEnv, PgOptions, PgStore, PgTarget, Store, StoreError};
use herd_testkit::postgres::Postgres;

/// Test clusters skip fsync: durability against power loss is
/// PostgreSQL's business, not what these tests show.
const FAST: &[(&str, &str)] = &[("fsync", "off"), ("full_page_writes", "off")];

fn cluster() -> Postgres {
    Postgres::start(FAST).unwrap_or_else(|e| panic!("starting PostgreSQL: {e}"))
}

async fn open_url(url: &str, window: usize) -> Result<PgStore, StoreError> {
    let target = PgTarget::parse(url, None, &PgEnv::default())?;
    let options = PgOptions {
        watch_window: window,
        ..PgOptions::default()
    };
    PgStore::open(target, KINDS, options).await
}

async fn open(url: &str, window: usize) -> Arc<dyn Store> {
    Arc::new(open_url(url, window).await.expect("open the store"))
}

/// A new database in the cluster for every call.
struct Fresh {
    pg: Postgres,
    made: AtomicUsize,
}

impl Fresh {
    fn new() -> Self {
        Self {
            pg: cluster(),
            made: AtomicUsize::new(0),
        }
    }

    fn url(&self) -> String {
        let name = format!("herd{}", self.made.fetch_add(1, Ordering::Relaxed));
        self.pg.create_database(&name).expect("create database");
        self.pg.url(&name)
    }
}

macro_rules! cases {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let fresh = Fresh::new();
            conformance::$case(|window| {
                let url = fresh.url();
                async move { open(&url, window).await }
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
    let pg = cluster();
    pg.create_database("herd").expect("create database");
    let url = pg.url("herd");
    conformance::restart_keeps_everything(|window| {
        let url = url.clone();
        async move { open(&url, window).await }
    })
    .await;
}

/// Set in the child process this test starts: the database it writes to.
const CHILD_URL: &str = "HERD_PG_CONFORMANCE_URL";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_durability() {
    if let Ok(url) = std::env::var(CHILD_URL) {
        conformance::kill9_child(open(&url, 10_000).await).await;
        return;
    }
    let pg = cluster();
    pg.create_database("herd").expect("create database");
    let url = pg.url("herd");
    let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"));
    child
        .args([
            "pg_store::kill9_durability",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_URL, &url);
    conformance::kill9_durability(child, |window| {
        let url = url.clone();
        async move { open(&url, window).await }
    })
    .await;
}

fn put(name: &str, n: u64) -> Proposal {
    let body = format!(
        r#"{{"metadata":{{"name":"{name}","resourceVersion":"{REVISION_PLACEHOLDER}","labels":{{}}}},"spec":{{"n":{n}}}}}"#
    );
    Proposal::Put {
        template: Template::new(Bytes::from(body)).expect("placeholder"),
        labels: Arc::default(),
    }
}

fn n_of(store: &dyn Store, name: &str) -> Option<u64> {
    let obj = store.get("nodes", name)?;
    let v: serde_json::Value = serde_json::from_slice(&obj.body).expect("json");
    v["spec"]["n"].as_u64()
}

/// Waits until `store` has seen revision `rev`.
async fn wait_for(store: &dyn Store, rev: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.revision() < rev {
        assert!(
            Instant::now() < deadline,
            "the store stayed at revision {} waiting for {rev}",
            store.revision()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Three servers write the same counter and their own objects at once:
/// no increment is lost, every revision is taken once, and each server's
/// log holds the same changes in the same order, without gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_share_one_revision_sequence() {
    let pg = cluster();
    pg.create_database("herd").expect("create database");
    let url = pg.url("herd");
    let servers = [
        open(&url, 10_000).await,
        open(&url, 10_000).await,
        open(&url, 10_000).await,
    ];
    let start = servers[0].revision();
    servers[0]
        .commit("nodes", "counter".into(), Expect::Absent, put("counter", 0))
        .await
        .expect("create the counter");
    const EACH: u64 = 20;
    let mut tasks = Vec::new();
    for (i, store) in servers.iter().enumerate() {
        for t in 0..2 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for k in 0..EACH {
                    let own = format!("s{i}-t{t}-{k}");
                    store
                        .commit("nodes", own.clone(), Expect::Absent, put(&own, k))
                        .await
                        .expect("create");
                    loop {
                        let Some(cur) = store.get("nodes", "counter") else {
                            tokio::task::yield_now().await;
                            continue;
                        };
                        let n = n_of(&*store, "counter").expect("n");
                        match store
                            .commit(
                                "nodes",
                                "counter".into(),
                                Expect::At(cur.rv),
                                put("counter", n + 1),
                            )
                            .await
                        {
                            Ok(_) => break,
                            Err(StoreError::Conflict { .. }) => {}
                            Err(e) => panic!("unexpected: {e}"),
                        }
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let writes = 1 + 3 * 2 * EACH * 2;
    let last = start + writes;
    let mut logs = Vec::new();
    for s in &servers {
        wait_for(&**s, last).await;
        assert_eq!(s.revision(), last, "one revision per write, no more");
        assert_eq!(
            n_of(&**s, "counter"),
            Some(3 * 2 * EACH),
            "no increment lost"
        );
        let log: Vec<(u64, String)> = s
            .events_after(start, 10_000)
            .expect("within the window")
            .iter()
            .map(|c| (c.rv, String::from_utf8_lossy(&c.line).into_owned()))
            .collect();
        let rvs: Vec<u64> = log.iter().map(|(rv, _)| *rv).collect();
        assert_eq!(rvs, ((start + 1)..=last).collect::<Vec<_>>(), "contiguous");
        logs.push(log);
    }
    assert_eq!(logs[0], logs[1], "servers see the same changes");
    assert_eq!(logs[0], logs[2], "servers see the same changes");
}

/// A write through one server wakes watchers on another, and a write the
/// other has not seen yet is still checked against the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_on_one_server_wakes_watchers_on_another() {
    let pg = cluster();
    pg.create_database("herd").expect("create database");
    let url = pg.url("herd");
    let (a, b) = (open(&url, 100).await, open(&url, 100).await);
    let mut woken = b.subscribe();
    woken.borrow_and_update();
    let w = a
        .commit("nodes", "x".into(), Expect::Absent, put("x", 1))
        .await
        .expect("commit");
    tokio::time::timeout(Duration::from_secs(5), woken.changed())
        .await
        .expect("woken within 5 s")
        .expect("store alive");
    wait_for(&*b, w.object.rv).await;
    assert_eq!(n_of(&*b, "x"), Some(1));
    // A stale write on the other server is refused even if it had not
    // seen the change yet: the check runs against the database.
    let err = b
        .commit("nodes", "x".into(), Expect::Absent, put("x", 2))
        .await
        .expect_err("exists");
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err:?}");
}

/// The database going away: reads go on, writes fail with `Unavailable`
/// (503), and once it is back the servers reconnect, take writes again and
/// catch up with each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_restart_is_unavailable_then_caught_up() {
    let mut pg = cluster();
    pg.create_database("herd").expect("create database");
    let url = pg.url("herd");
    let (a, b) = (open(&url, 100).await, open(&url, 100).await);
    a.commit("nodes", "before".into(), Expect::Absent, put("before", 1))
        .await
        .expect("commit");
    pg.stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.writable() || b.writable() {
        assert!(
            Instant::now() < deadline,
            "still writable with the database down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err = a
        .commit("nodes", "during".into(), Expect::Absent, put("during", 1))
        .await
        .expect_err("no database");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert_eq!(n_of(&*a, "before"), Some(1), "reads go on from the cache");

    pg.start_again().expect("restart postgres");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(a.writable() && b.writable()) {
        assert!(
            Instant::now() < deadline,
            "not writable after the database returned"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let w = a
        .commit("nodes", "after".into(), Expect::Absent, put("after", 2))
        .await
        .expect("writes succeed again");
    wait_for(&*b, w.object.rv).await;
    assert_eq!(n_of(&*b, "after"), Some(2));
    assert!(b.get("nodes", "during").is_none());
}

/// A store whose schema a newer herd wrote is refused at start, naming
/// both versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused() {
    let pg = cluster();
    pg.create_database("herd").expect("create database");
    let url = pg.url("herd");
    drop(open(&url, 100).await);
    pg.psql("herd", "UPDATE herd_schema SET version = 99")
        .expect("bump the schema");
    let err = open_url(&url, 100).await.err().expect("refused");
    assert_eq!(
        err,
        StoreError::SchemaTooNew {
            found: 99,
            known: 1
        }
    );
}

/// The password can come from a file rather than the URL; a wrong one is
/// refused without being repeated in the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_from_a_file_and_a_wrong_one_refused() {
    let pg = cluster();
    pg.create_database("herd").expect("create database");
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("pw");
    std::fs::write(&file, format!("{}\n", herd_testkit::postgres::PASSWORD)).expect("write");
    let target = PgTarget::parse(
        &pg.url_without_password("herd"),
        Some(&file),
        &PgEnv::default(),
    )
    .expect("target");
    let store = PgStore::open(target, KINDS, PgOptions::default())
        .await
        .expect("open with the password file");
    assert!(store.writable());
    std::fs::write(&file, "wrong-password-xyz").expect("write");
    let target = PgTarget::parse(
        &pg.url_without_password("herd"),
        Some(&file),
        &PgEnv::default(),
    )
    .expect("target");
    let err = PgStore::open(target, KINDS, PgOptions::default())
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(!err.contains("wrong-password-xyz"), "{err}");
}

/// Over HTTP: while the database is down the API still reads, `/readyz`
/// stays ready and says the store is unavailable, and writes answer 503;
/// once it is back, writes succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_answers_503_while_the_database_is_down() {
    let mut pg = cluster();
    pg.create_database("herd").expect("create database");
    let tmp = tempfile::tempdir().expect("tmp");
    let mut config = herd_apiserver::Config::new(tmp.path());
    config.postgres =
        Some(PgTarget::parse(&pg.url("herd"), None, &PgEnv::default()).expect("target"));
    let s = crate::TestServer::start_with(config).await;
    let (code, _) = s.post("/nodes", crate::node("a")).await;
    assert_eq!(code, 201);
    assert!(
        !tmp.path().join("herd.db").exists(),
        "the store is in PostgreSQL, not in the data directory"
    );
    pg.stop();
    let deadline = Instant::now() + Duration::from_secs(15);
    let body = loop {
        let (code, body) = s.post("/nodes", crate::node("b")).await;
        if code == 503 {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "writes still answer {code}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(body["reason"], "ServiceUnavailable", "{body}");
    let (code, node) = s.get("/nodes/a").await;
    assert_eq!(code, 200, "reads go on: {node}");
    let ready = s
        .http
        .get(format!("{}/readyz", s.url))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    assert!(
        ready
            .text()
            .await
            .expect("body")
            .contains("store: unavailable")
    );

    pg.start_again().expect("restart postgres");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, body) = s.post("/nodes", crate::node("b")).await;
        if code == 201 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "writes still answer {code}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.stop().await;
}

/// A single server's SQLite store copied into a new PostgreSQL database:
/// the same objects at the same revisions, writes go on from there, and a
/// second copy into the same database is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_store_copies_into_postgres() {
    let pg = cluster();
    pg.create_database("herd").expect("create database");
    let tmp = tempfile::tempdir().expect("tmp");
    let sqlite: Arc<dyn Store> = Arc::new(
        herd_apiserver::SqliteStore::open(
            tmp.path(),
            KINDS,
            herd_apiserver::StoreOptions::default(),
        )
        .expect("sqlite"),
    );
    for i in 0..5 {
        let name = format!("n{i}");
        sqlite
            .commit("nodes", name.clone(), Expect::Absent, put(&name, i))
            .await
            .expect("write");
    }
    let gone = sqlite.get("nodes", "n4").expect("n4").rv;
    sqlite
        .commit("nodes", "n4".into(), Expect::At(gone), put("n4", 40))
        .await
        .expect("update");
    let target = PgTarget::parse(&pg.url("herd"), None, &PgEnv::default()).expect("target");
    let copied = PgStore::import(&target, KINDS, &*sqlite)
        .await
        .expect("copy");
    assert_eq!(copied, 5);
    let err = PgStore::import(&target, KINDS, &*sqlite)
        .await
        .expect_err("not empty any more");
    assert!(err.to_string().contains("not empty"), "{err}");

    let store = open(&pg.url("herd"), 100).await;
    assert_eq!(store.revision(), sqlite.revision());
    let (_, before) = sqlite.list("nodes", &|_| true);
    let (_, after) = store.list("nodes", &|_| true);
    let pairs = |v: &[Arc<herd_apiserver::store::StoredObject>]| {
        v.iter().map(|o| (o.rv, o.body.clone())).collect::<Vec<_>>()
    };
    assert_eq!(pairs(&after), pairs(&before));
    let w = store
        .commit("nodes", "n5".into(), Expect::Absent, put("n5", 5))
        .await
        .expect("writes go on");
    assert_eq!(w.object.rv, sqlite.revision() + 1);
}
