//! The PostgreSQL side of the store: connecting, schema migrations, loading,
//! and the statements the writer and the follower run.

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, GenericClient, NoTls, Row, Statement, Transaction};

use super::PgTarget;
use super::follow::ObjectRow;
use super::plan::{EventRow, Plan};
use crate::store::{StoreError, migrations_to_run};

/// Numbered migrations; the `herd_schema` table records how many ran.
const MIGRATIONS: &[&str] = &[include_str!("../../../migrations/postgres/0001_init.sql")];

/// The advisory lock migrations run under, so that servers starting at the
/// same time apply each migration once ("herdmig" in ASCII).
const MIGRATION_LOCK: i64 = 0x0068_6572_646d_6967;

/// The channel commits notify, with the new revision as payload.
pub(super) const CHANNEL: &str = "herd_events";

pub(super) type Connection =
    tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>;

pub(super) async fn connect(target: &PgTarget) -> Result<(Client, Connection), StoreError> {
    target
        .config()
        .connect(NoTls)
        .await
        .map_err(|e| store_error(&format!("connecting to {}", target.describe()), &e))
}

/// Whether `e` means the database cannot be reached now (connection lost,
/// shutting down, not accepting connections, out of resources) rather than
/// that a statement is wrong.
pub(super) fn is_unavailable(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    e.code()
        .is_none_or(|c| matches!(c.code().get(..2), Some("08" | "57" | "53")))
}

/// `e` while doing `what`, as a store error: `Unavailable` when worth
/// retrying later. Database errors name the statement's problem, never a
/// credential.
pub(super) fn store_error(what: &str, e: &tokio_postgres::Error) -> StoreError {
    let message = match e.as_db_error() {
        Some(db) => format!("{what}: {}", db.message()),
        None => format!("{what}: {e}"),
    };
    if is_unavailable(e) {
        StoreError::Unavailable(message)
    } else {
        StoreError::Backend(message)
    }
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(super) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Brings the schema up to date under an advisory lock, or refuses a store
/// written by a newer herd.
pub(super) async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let err = |e: tokio_postgres::Error| store_error("migrating the store schema", &e);
    let tx = client.transaction().await.map_err(err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(err)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS herd_schema (version BIGINT NOT NULL)")
        .await
        .map_err(err)?;
    let found: Option<i64> = tx
        .query_opt("SELECT max(version) FROM herd_schema", &[])
        .await
        .map_err(err)?
        .and_then(|r| r.get(0));
    let todo = migrations_to_run(found.map_or(0, to_u64), MIGRATIONS.len())?;
    if todo.is_empty() {
        return Ok(());
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(todo.start) {
        tx.batch_execute(sql).await.map_err(err)?;
        tracing::info!(migration = i + 1, "applied store migration");
    }
    let version = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    tx.execute("DELETE FROM herd_schema", &[])
        .await
        .map_err(err)?;
    tx.execute("INSERT INTO herd_schema (version) VALUES ($1)", &[&version])
        .await
        .map_err(err)?;
    tx.commit().await.map_err(err)
}

/// Writes `objects` (kind, name, revision, body) into an empty store and sets
/// its revision, in one transaction; refuses a store that holds anything.
pub(super) async fn import(
    client: &mut Client,
    objects: &[(&str, &str, u64, &[u8])],
    revision: u64,
) -> Result<(), StoreError> {
    let err = |e: tokio_postgres::Error| store_error("copying into the store", &e);
    let tx = client.transaction().await.map_err(err)?;
    let current: i64 = tx
        .query_one(
            "SELECT revision FROM herd_revision WHERE id = 1 FOR UPDATE",
            &[],
        )
        .await
        .map_err(err)?
        .get(0);
    let held: i64 = tx
        .query_one("SELECT count(*) FROM herd_objects", &[])
        .await
        .map_err(err)?
        .get(0);
    if current != 0 || held != 0 {
        return Err(StoreError::Backend(format!(
            "the target store is not empty (revision {current}, {held} objects); copy only into a new database"
        )));
    }
    let kinds: Vec<&str> = objects.iter().map(|o| o.0).collect();
    let names: Vec<&str> = objects.iter().map(|o| o.1).collect();
    let rvs: Vec<i64> = objects.iter().map(|o| to_i64(o.2)).collect();
    let bodies: Vec<&[u8]> = objects.iter().map(|o| o.3).collect();
    tx.execute(
        "INSERT INTO herd_objects (kind, name, rv, body) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bytea[])",
        &[&kinds, &names, &rvs, &bodies],
    )
    .await
    .map_err(err)?;
    tx.execute(
        "UPDATE herd_revision SET revision = $1 WHERE id = 1",
        &[&to_i64(revision)],
    )
    .await
    .map_err(err)?;
    tx.commit().await.map_err(err)
}

/// Everything a cache starts from, read in one snapshot: the revision, the
/// objects, and the last `window` events.
pub(super) struct Snapshot {
    pub revision: u64,
    pub objects: Vec<ObjectRow>,
    pub events: Vec<EventRow>,
}

/// Reads a [`Snapshot`] through `client`: a repeatable-read transaction,
/// or one holding the revision lock, so that the three reads agree.
pub(super) async fn snapshot(
    client: &impl GenericClient,
    window: usize,
) -> Result<Snapshot, StoreError> {
    let err = |e: tokio_postgres::Error| store_error("loading the store", &e);
    let revision: i64 = client
        .query_one("SELECT revision FROM herd_revision WHERE id = 1", &[])
        .await
        .map_err(err)?
        .get(0);
    let revision = to_u64(revision);
    let objects = client
        .query("SELECT kind, name, rv, body FROM herd_objects", &[])
        .await
        .map_err(err)?
        .iter()
        .map(|r| ObjectRow {
            kind: r.get(0),
            name: r.get(1),
            rv: to_u64(r.get(2)),
            body: r.get::<_, Vec<u8>>(3).into(),
        })
        .collect();
    let from = to_i64(revision.saturating_sub(window as u64));
    let events = client
        .query(
            "SELECT rv, kind, name, type, body FROM herd_events WHERE rv > $1 ORDER BY rv",
            &[&from],
        )
        .await
        .map_err(err)?
        .iter()
        .map(event_row)
        .collect();
    Ok(Snapshot {
        revision,
        objects,
        events,
    })
}

fn event_row(r: &Row) -> EventRow {
    EventRow {
        rv: to_u64(r.get(0)),
        kind: r.get(1),
        name: r.get(2),
        type_: r.get(3),
        body: r.get::<_, Vec<u8>>(4).into(),
    }
}

pub(super) const EVENTS_AFTER: &str =
    "SELECT rv, kind, name, type, body FROM herd_events WHERE rv > $1 ORDER BY rv LIMIT $2";

/// Up to `limit` events after revision `after`, in order.
pub(super) async fn events_after(
    client: &impl GenericClient,
    statement: &Statement,
    after: u64,
    limit: i64,
) -> Result<Vec<EventRow>, tokio_postgres::Error> {
    let rows = client.query(statement, &[&to_i64(after), &limit]).await?;
    Ok(rows.iter().map(event_row).collect())
}

/// The statements the writer runs, prepared once per connection.
pub(super) struct Writes {
    /// Locks the revision counter: commits from every server queue here.
    pub lock: Statement,
    pub events_after: Statement,
    upsert: Statement,
    delete: Statement,
    insert_events: Statement,
    bump: Statement,
    notify: Statement,
    prune: Statement,
}

impl Writes {
    pub async fn prepare(client: &Client) -> Result<Self, tokio_postgres::Error> {
        let (lock, events_after, upsert, delete, insert_events, bump, notify, prune) = tokio::try_join!(
            client.prepare("SELECT revision FROM herd_revision WHERE id = 1 FOR UPDATE"),
            client.prepare(EVENTS_AFTER),
            client.prepare(
                "INSERT INTO herd_objects (kind, name, rv, body) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bytea[]) \
                 ON CONFLICT (kind, name) DO UPDATE SET rv = EXCLUDED.rv, body = EXCLUDED.body"
            ),
            client.prepare(
                "DELETE FROM herd_objects o USING unnest($1::text[], $2::text[]) AS d(kind, name) \
                 WHERE o.kind = d.kind AND o.name = d.name"
            ),
            client.prepare(
                "INSERT INTO herd_events (rv, kind, name, type, body) \
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bytea[])"
            ),
            client.prepare("UPDATE herd_revision SET revision = $1 WHERE id = 1"),
            client.prepare("SELECT pg_notify($1, $2)"),
            client.prepare("DELETE FROM herd_events WHERE rv <= $1"),
        )?;
        Ok(Self {
            lock,
            events_after,
            upsert,
            delete,
            insert_events,
            bump,
            notify,
            prune,
        })
    }

    /// Writes a planned batch: its objects' final states, its events, the
    /// new revision, and a notification sent when the transaction commits.
    /// The statements are pipelined: one round trip for all of them.
    pub async fn write(
        &self,
        tx: &Transaction<'_>,
        plan: &Plan,
    ) -> Result<(), tokio_postgres::Error> {
        let (mut up_kinds, mut up_names, mut up_rvs, mut up_bodies) =
            (vec![], vec![], vec![], vec![]);
        let (mut del_kinds, mut del_names) = (vec![], vec![]);
        for ((kind, name), obj) in &plan.overlay {
            match obj {
                Some(o) => {
                    up_kinds.push(*kind);
                    up_names.push(name.as_str());
                    up_rvs.push(to_i64(o.rv));
                    up_bodies.push(&o.body[..]);
                }
                None => {
                    del_kinds.push(*kind);
                    del_names.push(name.as_str());
                }
            }
        }
        let ev_rvs: Vec<i64> = plan.events.iter().map(|e| to_i64(e.rv)).collect();
        let ev_kinds: Vec<&str> = plan.events.iter().map(|e| e.kind.as_str()).collect();
        let ev_names: Vec<&str> = plan.events.iter().map(|e| e.name.as_str()).collect();
        let ev_types: Vec<&str> = plan.events.iter().map(|e| e.type_.as_str()).collect();
        let ev_bodies: Vec<&[u8]> = plan.events.iter().map(|e| &e.body[..]).collect();
        let rev = to_i64(plan.rev);
        let payload = plan.rev.to_string();
        let up: [&(dyn ToSql + Sync); 4] = [&up_kinds, &up_names, &up_rvs, &up_bodies];
        let del: [&(dyn ToSql + Sync); 2] = [&del_kinds, &del_names];
        let ev: [&(dyn ToSql + Sync); 5] = [&ev_rvs, &ev_kinds, &ev_names, &ev_types, &ev_bodies];
        let bump: [&(dyn ToSql + Sync); 1] = [&rev];
        let notify: [&(dyn ToSql + Sync); 2] = [&CHANNEL, &payload];
        tokio::try_join!(
            tx.execute(&self.upsert, &up),
            tx.execute(&self.delete, &del),
            tx.execute(&self.insert_events, &ev),
            tx.execute(&self.bump, &bump),
            tx.execute(&self.notify, &notify),
        )?;
        Ok(())
    }

    /// Deletes the events up to revision `through`.
    pub async fn prune(&self, client: &Client, through: u64) -> Result<u64, tokio_postgres::Error> {
        client.execute(&self.prune, &[&to_i64(through)]).await
    }
}
