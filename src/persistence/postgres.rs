//! Cluster mode: several engines (one per chat-server node) share one state in PostgreSQL.
//!
//! The engine's rules stay in Rust, written once; PostgreSQL provides the order and the
//! durability. Every write, on every node, runs as one transaction that
//! 1. locks the single row of `tessera_head` (`SELECT … FOR UPDATE`): writes are serialised
//!    cluster-wide, which is what makes "exactly one of two nodes creating the same id wins"
//!    and "never more than the cap of access tokens" hold without re-implementing either rule
//!    in SQL;
//! 2. applies to this node's memory whatever other nodes committed since it last looked
//!    (`begin_write` returns it), so the decision is taken on the whole cluster's state;
//! 3. appends the decided [`Mutation`] to `tessera_log` at position `head + 1`, projects it
//!    onto the plain tables operators query (users, access-token digests, devices, discovery
//!    keys, keys), advances the head and `NOTIFY`s;
//! 4. commits, and only then is the mutation applied to this node's memory. Nothing
//!    uncommitted is ever visible, and a lost connection at commit time leaves no doubt in
//!    memory: if the transaction did commit, the follower finds it in the log.
//!
//! Because a position is taken under the head lock and the head moves in the same
//! transaction, log order *is* commit order: a follower that reads `pos > applied` can never
//! skip a change that commits later with a smaller number (the `bigserial` trap).
//!
//! Each node runs a follower thread: `LISTEN tessera_log` is only a wake-up (notifications
//! are lost while a connection is down); the follower also polls the head, and always reads
//! the log from its own position, so it catches up after dropped connections, database
//! restarts and its own restarts. A node whose position fell below the pruned part of the
//! log reloads the whole state from the tables. A watchdog marks the node stale when it has
//! not confirmed being caught up for longer than `max_staleness`; verification then fails
//! with [`ErrorKind::Unavailable`] (fail closed) unless `max_staleness` is `None`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement};

use super::{Change, Persistence};
use crate::access_token::AccessTokenEntry;
use crate::device::Device;
use crate::engine::{Engine, WeakEngine};
use crate::error::{Error, ErrorKind, Result};
use crate::key_ring::{KeyId, StoredKey, StoredKeyRing};
use crate::mutation::Mutation;
use crate::user::UserRecord;

/// Version of the schema this library writes. A database with a newer one is refused with
/// [`ErrorKind::UnsupportedFormat`]; an older one is migrated on open.
pub(crate) const SCHEMA_VERSION: i32 = 1;

/// The channel `NOTIFY`ed on every commit.
const CHANNEL: &str = "tessera_log";

/// Log entry kinds.
const KIND_MUTATION: i16 = 1;
const KIND_KEYS: i16 = 2;

/// How a cluster node behaves; see [`crate::Engine::open_postgres`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterOptions {
    /// Longest time a node keeps verifying credentials without having confirmed that it is
    /// caught up with the database. Past it, verification fails with
    /// [`ErrorKind::Unavailable`] rather than accept a token that may have been revoked on
    /// another node meanwhile. `None` keeps serving from memory whatever happens (available,
    /// but a revocation made elsewhere during a partition is not seen until it heals).
    /// Default 5 s.
    pub max_staleness: Option<Duration>,
    /// How often the follower polls the head when no notification arrives; notifications make
    /// propagation immediate, the poll bounds it when they are lost. Default 100 ms.
    pub poll_interval: Duration,
    /// Log entries older than every live node's position are deleted once there are more than
    /// this many; a node that was away longer reloads the whole state. Default 100,000.
    pub log_retention: u64,
}

impl Default for ClusterOptions {
    fn default() -> ClusterOptions {
        ClusterOptions {
            max_staleness: Some(Duration::from_secs(5)),
            poll_interval: Duration::from_millis(100),
            log_retention: 100_000,
        }
    }
}

impl ClusterOptions {
    /// The defaults.
    pub fn new() -> ClusterOptions {
        ClusterOptions::default()
    }

    /// Sets [`ClusterOptions::max_staleness`].
    pub fn max_staleness(mut self, max: Option<Duration>) -> ClusterOptions {
        self.max_staleness = max;
        self
    }

    /// Sets [`ClusterOptions::poll_interval`].
    pub fn poll_interval(mut self, every: Duration) -> ClusterOptions {
        self.poll_interval = every;
        self
    }

    /// Sets [`ClusterOptions::log_retention`].
    pub fn log_retention(mut self, entries: u64) -> ClusterOptions {
        self.log_retention = entries;
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::new(ErrorKind::InvalidArgument, m.to_owned()));
        if self.poll_interval.is_zero() || self.poll_interval > Duration::from_secs(60) {
            return bad("poll_interval must be within 1 ms..=60 s");
        }
        if let Some(max) = self.max_staleness {
            if max < self.poll_interval * 2 {
                return bad("max_staleness must be at least twice poll_interval");
            }
        }
        if self.log_retention == 0 {
            return bad("log_retention must be at least 1");
        }
        Ok(())
    }
}

fn pg_error(what: &str, e: postgres::Error) -> Error {
    if let Some(db) = e.as_db_error() {
        return Error::new(
            ErrorKind::Unavailable,
            format!(
                "PostgreSQL refused {what}: {} ({})",
                db.message(),
                db.code().code()
            ),
        );
    }
    Error::new(
        ErrorKind::Unavailable,
        format!("PostgreSQL unreachable while {what}: {e}"),
    )
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!("serialising a cluster record: {e}"),
        )
    })
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| {
        Error::new(
            ErrorKind::Corrupt,
            format!("a {what} in PostgreSQL does not decode ({e})"),
        )
    })
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tessera_schema (
    version integer NOT NULL
);
CREATE TABLE IF NOT EXISTS tessera_head (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    pos bigint NOT NULL,
    next_handle bigint NOT NULL,
    next_token_id bigint NOT NULL,
    next_key_number bigint NOT NULL,
    retired_keys bytea NOT NULL DEFAULT '\\x'
);
CREATE TABLE IF NOT EXISTS tessera_log (
    pos bigint PRIMARY KEY,
    kind smallint NOT NULL,
    payload bytea NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS tessera_users (
    handle bigint PRIMARY KEY,
    user_id text NOT NULL UNIQUE,
    nickname text NOT NULL,
    profile_url text,
    is_active boolean NOT NULL,
    session_epoch bigint NOT NULL DEFAULT 0,
    token_required boolean NOT NULL DEFAULT false,
    created_at_ms bigint NOT NULL,
    record bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS tessera_access_tokens (
    id bigint PRIMARY KEY,
    handle bigint NOT NULL REFERENCES tessera_users ON DELETE CASCADE,
    sha256_digest bytea NOT NULL,
    label text,
    created_at_ms bigint NOT NULL,
    entry bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS tessera_access_tokens_handle ON tessera_access_tokens (handle, id);
CREATE TABLE IF NOT EXISTS tessera_devices (
    push_token text PRIMARY KEY,
    handle bigint NOT NULL REFERENCES tessera_users ON DELETE CASCADE,
    added_pos bigint NOT NULL,
    device jsonb NOT NULL,
    entry bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS tessera_devices_handle ON tessera_devices (handle, added_pos);
CREATE TABLE IF NOT EXISTS tessera_discovery_keys (
    discovery_key text PRIMARY KEY,
    handle bigint NOT NULL REFERENCES tessera_users ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS tessera_images (
    sha256 bytea PRIMARY KEY,
    bytes bytea NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS tessera_keys (
    number integer PRIMARY KEY,
    key_id text NOT NULL,
    created_at_ms bigint NOT NULL,
    active boolean NOT NULL,
    secret bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS tessera_nodes (
    node_id text PRIMARY KEY,
    applied_pos bigint NOT NULL,
    seen_at timestamptz NOT NULL DEFAULT now()
);
";

/// Any two nodes opening an empty database at once take this lock, so one creates the schema
/// and the key ring and the other finds them.
const INIT_LOCK: i64 = 0x7465_7373_6572_6131; // "tessera1"

/// The connection writes use, with the state of its open transaction. Only ever used with the
/// engine's writer mutex held, so its own mutex is never contended.
struct WriterConn {
    client: Option<Db>,
    /// A transaction is open (between `begin_write` and its append or `end_write`).
    in_txn: bool,
    /// The head position locked by the open transaction.
    head: u64,
}

/// State shared with the follower and watchdog threads.
struct Shared {
    conninfo: String,
    options: ClusterOptions,
    node_id: String,
    /// Log position applied to this node's memory (changed with the engine's writer mutex).
    applied: AtomicU64,
    /// Monotonic milliseconds (since `epoch`) of the last confirmation that memory held
    /// everything committed.
    fresh_at_ms: AtomicU64,
    epoch: Instant,
    /// Set by the watchdog when `fresh_at_ms` is older than `max_staleness`.
    stale: AtomicBool,
    stop: AtomicBool,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn mark_fresh(&self) {
        self.fresh_at_ms.store(self.now_ms(), Ordering::Release);
        self.stale.store(false, Ordering::Release);
    }
}

/// The PostgreSQL persistence of a cluster node.
pub(crate) struct PgPersistence {
    shared: Arc<Shared>,
    writer: Mutex<WriterConn>,
    /// For blobs, which are stored and read outside the writer mutex.
    blobs: Mutex<Option<Db>>,
}

impl PgPersistence {
    fn connect(&self) -> Result<Db> {
        connect(&self.shared.conninfo, "tessera-writer")
    }

    /// Runs `f` on the writer connection, connecting first if needed; a failed connection is
    /// dropped so the next call reconnects.
    fn with_writer<T>(&self, f: impl FnOnce(&mut WriterConn) -> Result<T>) -> Result<T> {
        let mut conn = self.writer.lock();
        if conn.client.is_none() {
            conn.client = Some(self.connect()?);
            conn.in_txn = false;
        }
        let result = f(&mut conn);
        if result.is_err() && conn.client.as_ref().is_some_and(Db::is_closed) {
            conn.client = None;
            conn.in_txn = false;
        }
        result
    }

    fn with_blobs<T>(&self, f: impl FnOnce(&mut Db) -> Result<T>) -> Result<T> {
        let mut conn = self.blobs.lock();
        if conn.is_none() {
            *conn = Some(connect(&self.shared.conninfo, "tessera-blobs")?);
        }
        let client = conn
            .as_mut()
            .ok_or_else(|| Error::new(ErrorKind::Internal, "no client"))?;
        let result = f(client);
        if result.is_err() && client.is_closed() {
            *conn = None;
        }
        result
    }

    /// Appends log entries in the write transaction (starting one if the caller did not),
    /// projects each onto the tables, advances the head and commits. Returns the position of
    /// the last entry.
    fn commit_entries(
        &self,
        count: u64,
        write: impl FnOnce(&mut Db, u64) -> Result<()>,
    ) -> Result<u64> {
        self.with_writer(|conn| {
            if !conn.in_txn {
                // A write that already committed once under this writer mutex (an import):
                // take the head lock again; nothing may have moved in between.
                self.lock_head(conn)?;
                if conn.head != self.shared.applied.load(Ordering::Acquire) {
                    self.rollback(conn);
                    return Err(Error::new(
                        ErrorKind::Unavailable,
                        "another node wrote in the middle of this multi-step write; retry",
                    ));
                }
            }
            let first = conn.head + 1;
            let last = conn.head + count;
            let client = conn
                .client
                .as_mut()
                .ok_or_else(|| Error::new(ErrorKind::Internal, "no writer connection"))?;
            let result = (|| {
                write(client, first)?;
                // The head moves and the followers are woken in one statement; the
                // notification is delivered when (and only if) the transaction commits.
                client
                    .execute(
                        "UPDATE tessera_head SET pos = $1 \
                         RETURNING pg_notify($2, pos::text)",
                        &[&(last as i64), &CHANNEL],
                    )
                    .map_err(|e| pg_error("advancing the head", e))?;
                #[cfg(feature = "fault-injection")]
                crate::fault::before_cluster_commit();
                client
                    .batch_execute("COMMIT")
                    .map_err(|e| pg_error("committing", e))
            })();
            conn.in_txn = false;
            match result {
                Ok(()) => {
                    conn.head = last;
                    self.shared.applied.store(last, Ordering::Release);
                    Ok(last)
                }
                Err(e) => {
                    // The transaction is aborted (or its fate unknown, if the connection
                    // died at commit: then the follower finds it in the log if it committed).
                    let _ = client.batch_execute("ROLLBACK");
                    Err(e)
                }
            }
        })
    }

    /// Opens the write transaction and locks the head row.
    fn lock_head(&self, conn: &mut WriterConn) -> Result<()> {
        let client = conn
            .client
            .as_mut()
            .ok_or_else(|| Error::new(ErrorKind::Internal, "no writer connection"))?;
        if conn.in_txn {
            let _ = client.batch_execute("ROLLBACK");
            conn.in_txn = false;
        }
        // One round trip: the transaction starts and the head row is locked together.
        conn.in_txn = true;
        let messages = client
            .client
            .simple_query("BEGIN; SELECT pos FROM tessera_head FOR UPDATE")
            .map_err(|e| pg_error("locking the head", e))?;
        conn.head = messages
            .iter()
            .find_map(|m| match m {
                postgres::SimpleQueryMessage::Row(r) => r.get(0)?.parse::<u64>().ok(),
                _ => None,
            })
            .ok_or_else(|| Error::new(ErrorKind::Corrupt, "tessera_head has no row"))?;
        Ok(())
    }

    fn rollback(&self, conn: &mut WriterConn) {
        if conn.in_txn {
            conn.in_txn = false;
            if let Some(client) = conn.client.as_mut() {
                if client.batch_execute("ROLLBACK").is_err() {
                    conn.client = None;
                }
            }
        }
    }

    /// Reads what was committed after `applied`, or the whole state when the log no longer
    /// reaches back that far. Runs in one repeatable-read transaction: a consistent view.
    fn read_changes(&self, client: &mut Db, applied: u64) -> Result<(u64, Vec<Change>)> {
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .map_err(|e| pg_error("starting a read", e))?;
        let result = read_changes_in_txn(client, applied);
        let _ = client.batch_execute(if result.is_ok() { "COMMIT" } else { "ROLLBACK" });
        result
    }
}

/// A connection with its prepared statements: each statement is parsed once per connection,
/// so a write costs one round trip per statement instead of two (parse, then execute).
pub(crate) struct Db {
    client: Client,
    prepared: HashMap<&'static str, Statement>,
}

impl Db {
    fn prepared(&mut self, sql: &'static str) -> std::result::Result<Statement, postgres::Error> {
        if let Some(s) = self.prepared.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.prepared.insert(sql, s.clone());
        Ok(s)
    }

    fn execute(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<u64, postgres::Error> {
        let s = self.prepared(sql)?;
        self.client.execute(&s, params)
    }

    fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<Vec<Row>, postgres::Error> {
        let s = self.prepared(sql)?;
        self.client.query(&s, params)
    }

    fn query_one(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<Row, postgres::Error> {
        let s = self.prepared(sql)?;
        self.client.query_one(&s, params)
    }

    fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<Option<Row>, postgres::Error> {
        let s = self.prepared(sql)?;
        self.client.query_opt(&s, params)
    }

    fn batch_execute(&mut self, sql: &str) -> std::result::Result<(), postgres::Error> {
        self.client.batch_execute(sql)
    }

    fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}

fn connect(conninfo: &str, app: &str) -> Result<Db> {
    let mut config: postgres::Config = conninfo.parse().map_err(|e| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("invalid PostgreSQL connection string: {e}"),
        )
    })?;
    if config.get_application_name().is_none() {
        config.application_name(app);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    config.keepalives_idle(Duration::from_secs(10));
    let client = config
        .connect(NoTls)
        .map_err(|e| pg_error("connecting", e))?;
    Ok(Db {
        client,
        prepared: HashMap::new(),
    })
}

fn read_changes_in_txn(client: &mut Db, applied: u64) -> Result<(u64, Vec<Change>)> {
    let head = read_head(client)?;
    if head.pos == applied {
        return Ok((head.pos, Vec::new()));
    }
    if head.pos < applied {
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "this node applied log position {applied} but the database head is {}: \
                 the database was replaced or restored from an older backup",
                head.pos
            ),
        ));
    }
    let rows = client
        .query(
            "SELECT pos, kind, payload FROM tessera_log WHERE pos > $1 AND pos <= $2 \
             ORDER BY pos",
            &[&(applied as i64), &(head.pos as i64)],
        )
        .map_err(|e| pg_error("reading the log", e))?;
    let complete = rows.len() as u64 == head.pos - applied
        && rows
            .first()
            .is_some_and(|r| r.get::<_, i64>(0) as u64 == applied + 1);
    if !complete {
        // Pruned past this node's position: start over from the tables.
        let (state, keys) = load_state(client, &head)?;
        return Ok((head.pos, vec![Change::Reload { state, keys }]));
    }
    let mut changes = Vec::with_capacity(rows.len());
    for row in rows {
        let pos = row.get::<_, i64>(0) as u64;
        let kind: i16 = row.get(1);
        let payload: &[u8] = row.get(2);
        changes.push(match kind {
            KIND_MUTATION => Change::Mutation {
                seq: pos,
                mutation: decode(payload, "log mutation")?,
            },
            KIND_KEYS => Change::Keys(crate::persistence::embedded::decode_key_ring(payload)?),
            other => {
                return Err(Error::new(
                    ErrorKind::UnsupportedFormat,
                    format!("log entry {pos} has kind {other}, unknown to this version"),
                ))
            }
        });
    }
    Ok((head.pos, changes))
}

struct Head {
    pos: u64,
    next_handle: u64,
    next_token_id: u64,
}

fn read_head(client: &mut Db) -> Result<Head> {
    let row = client
        .query_one(
            "SELECT pos, next_handle, next_token_id FROM tessera_head",
            &[],
        )
        .map_err(|e| pg_error("reading the head", e))?;
    Ok(Head {
        pos: row.get::<_, i64>(0) as u64,
        next_handle: row.get::<_, i64>(1) as u64,
        next_token_id: row.get::<_, i64>(2) as u64,
    })
}

/// The whole state as mutations (counters, then one `UserRestored` per user) and the key
/// ring: what a snapshot holds in the embedded store. Call inside a repeatable-read
/// transaction.
fn load_state(client: &mut Db, head: &Head) -> Result<(Vec<Mutation>, StoredKeyRing)> {
    let keys = load_keys(client)?;
    let mut tokens: HashMap<u64, Vec<AccessTokenEntry>> = HashMap::new();
    let mut devices: HashMap<u64, Vec<Device>> = HashMap::new();
    let mut state = vec![Mutation::Counters {
        next_handle: head.next_handle,
        next_token_id: head.next_token_id,
    }];
    {
        let mut rows = client
            .client
            .query_raw(
                "SELECT handle, entry FROM tessera_access_tokens ORDER BY handle, id",
                std::iter::empty::<i64>(),
            )
            .map_err(|e| pg_error("loading access tokens", e))?;
        while let Some(row) = rows
            .next()
            .map_err(|e| pg_error("loading access tokens", e))?
        {
            let handle = row.get::<_, i64>(0) as u64;
            tokens
                .entry(handle)
                .or_default()
                .push(decode(row.get::<_, &[u8]>(1), "access token")?);
        }
    }
    {
        let mut rows = client
            .client
            .query_raw(
                "SELECT handle, entry FROM tessera_devices ORDER BY handle, added_pos",
                std::iter::empty::<i64>(),
            )
            .map_err(|e| pg_error("loading devices", e))?;
        while let Some(row) = rows.next().map_err(|e| pg_error("loading devices", e))? {
            let handle = row.get::<_, i64>(0) as u64;
            devices
                .entry(handle)
                .or_default()
                .push(decode(row.get::<_, &[u8]>(1), "device")?);
        }
    }
    let mut rows = client
        .client
        .query_raw(
            "SELECT handle, session_epoch, token_required, record FROM tessera_users \
             ORDER BY handle",
            std::iter::empty::<i64>(),
        )
        .map_err(|e| pg_error("loading users", e))?;
    while let Some(row) = rows.next().map_err(|e| pg_error("loading users", e))? {
        let handle = row.get::<_, i64>(0) as u64;
        let epoch = u32::try_from(row.get::<_, i64>(1))
            .map_err(|_| Error::new(ErrorKind::Corrupt, "session_epoch out of range"))?;
        state.push(Mutation::UserRestored {
            handle,
            record: decode(row.get::<_, &[u8]>(3), "user record")?,
            epoch,
            token_required: row.get(2),
            tokens: tokens.remove(&handle).unwrap_or_default(),
            devices: devices.remove(&handle).unwrap_or_default(),
        });
    }
    Ok((state, keys))
}

fn load_keys(client: &mut Db) -> Result<StoredKeyRing> {
    let head = client
        .query_one(
            "SELECT next_key_number, retired_keys FROM tessera_head",
            &[],
        )
        .map_err(|e| pg_error("loading keys", e))?;
    let next = head.get::<_, i64>(0);
    let retired_bytes: &[u8] = head.get(1);
    let retired = if retired_bytes.is_empty() {
        Default::default()
    } else {
        decode(retired_bytes, "retired key set")?
    };
    let rows = client
        .query(
            "SELECT number, created_at_ms, secret FROM tessera_keys ORDER BY number",
            &[],
        )
        .map_err(|e| pg_error("loading keys", e))?;
    let mut keys = Vec::with_capacity(rows.len());
    for row in rows {
        let secret: &[u8] = row.get(2);
        let secret: [u8; 32] = secret
            .try_into()
            .map_err(|_| Error::new(ErrorKind::Corrupt, "a stored key is not 32 bytes"))?;
        keys.push(StoredKey {
            number: row.get::<_, i32>(0) as u32,
            created_at_ms: row.get(1),
            secret,
        });
    }
    Ok(StoredKeyRing {
        keys,
        next_number: u32::try_from(next)
            .map_err(|_| Error::new(ErrorKind::Corrupt, "next_key_number out of range"))?,
        retired,
    })
}

/// Replaces the key rows with `ring` (in the caller's transaction).
fn store_keys(client: &mut Db, ring: &StoredKeyRing) -> Result<()> {
    let err = |e| pg_error("storing keys", e);
    client
        .execute("DELETE FROM tessera_keys", &[])
        .map_err(err)?;
    let active = ring.keys.last().map(|k| k.number);
    for k in &ring.keys {
        client
            .execute(
                "INSERT INTO tessera_keys (number, key_id, created_at_ms, active, secret) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &(k.number as i32),
                    &KeyId::from_number(k.number).as_str(),
                    &k.created_at_ms,
                    &(Some(k.number) == active),
                    &&k.secret[..],
                ],
            )
            .map_err(err)?;
    }
    client
        .execute(
            "UPDATE tessera_head SET next_key_number = $1, retired_keys = $2",
            &[&i64::from(ring.next_number), &encode(&ring.retired)?],
        )
        .map_err(err)?;
    Ok(())
}

fn insert_log(client: &mut Db, pos: u64, kind: i16, payload: &[u8]) -> Result<()> {
    client
        .execute(
            "INSERT INTO tessera_log (pos, kind, payload) VALUES ($1, $2, $3)",
            &[&(pos as i64), &kind, &payload],
        )
        .map(|_| ())
        .map_err(|e| pg_error("appending to the log", e))
}

/// From this many mutations on, an append goes through `COPY` (an import of a whole state).
const BULK_MIN: usize = 256;

fn record_columns(r: &UserRecord) -> (&str, &str, Option<&str>, bool, i64) {
    (
        &r.id,
        &r.nickname,
        r.profile_url.as_deref(),
        r.active,
        r.created_at_ms,
    )
}

fn put_discovery_keys(client: &mut Db, handle: i64, record: &UserRecord) -> Result<()> {
    let err = |e| pg_error("storing discovery keys", e);
    client
        .execute(
            "DELETE FROM tessera_discovery_keys WHERE handle = $1",
            &[&handle],
        )
        .map_err(err)?;
    for k in record.discovery_keys() {
        client
            .execute(
                "INSERT INTO tessera_discovery_keys (discovery_key, handle) VALUES ($1, $2)",
                &[&&**k, &handle],
            )
            .map_err(err)?;
    }
    Ok(())
}

fn put_user(
    client: &mut Db,
    handle: i64,
    record: &UserRecord,
    epoch: u32,
    token_required: bool,
) -> Result<()> {
    let (id, nickname, url, active, created) = record_columns(record);
    client
        .execute(
            "INSERT INTO tessera_users (handle, user_id, nickname, profile_url, is_active, \
             session_epoch, token_required, created_at_ms, record) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &handle,
                &id,
                &nickname,
                &url,
                &active,
                &i64::from(epoch),
                &token_required,
                &created,
                &encode(record)?,
            ],
        )
        .map_err(|e| pg_error("storing a user", e))?;
    put_discovery_keys(client, handle, record)?;
    client
        .execute(
            "UPDATE tessera_head SET next_handle = GREATEST(next_handle, $1::bigint + 1)",
            &[&handle],
        )
        .map_err(|e| pg_error("storing a user", e))?;
    Ok(())
}

fn put_token(client: &mut Db, handle: i64, t: &AccessTokenEntry) -> Result<()> {
    let err = |e| pg_error("storing an access token", e);
    client
        .execute(
            "INSERT INTO tessera_access_tokens (id, handle, sha256_digest, label, \
             created_at_ms, entry) VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &(t.id as i64),
                &handle,
                &t.digest.0.as_slice(),
                &t.label.as_deref(),
                &t.created_at_ms,
                &encode(t)?,
            ],
        )
        .map_err(err)?;
    client
        .execute(
            "UPDATE tessera_head SET next_token_id = GREATEST(next_token_id, $1::bigint + 1)",
            &[&(t.id as i64)],
        )
        .map_err(err)?;
    Ok(())
}

fn issue_token(
    client: &mut Db,
    handle: u64,
    entry: &AccessTokenEntry,
    evicted: &[u64],
) -> Result<()> {
    if !evicted.is_empty() {
        let ids: Vec<i64> = evicted.iter().map(|&id| id as i64).collect();
        client
            .execute(
                "DELETE FROM tessera_access_tokens WHERE id = ANY($1)",
                &[&ids],
            )
            .map_err(|e| pg_error("evicting access tokens", e))?;
    }
    put_token(client, handle as i64, entry)
}

fn put_device(client: &mut Db, handle: i64, pos: u64, d: &Device) -> Result<()> {
    let json = serde_json::to_value(d)
        .map_err(|e| Error::new(ErrorKind::Internal, format!("serialising a device: {e}")))?;
    client
        .execute(
            "INSERT INTO tessera_devices (push_token, handle, added_pos, device, entry) \
             VALUES ($1, $2, $3, $4::text::jsonb, $5) ON CONFLICT (push_token) DO UPDATE SET \
             handle = EXCLUDED.handle, added_pos = EXCLUDED.added_pos, \
             device = EXCLUDED.device, entry = EXCLUDED.entry",
            &[
                &d.push_token.as_str(),
                &handle,
                &(pos as i64),
                &json.to_string(),
                &encode(d)?,
            ],
        )
        .map_err(|e| pg_error("storing a device", e))?;
    Ok(())
}

/// Projects a mutation onto the plain tables, in the writer's transaction. Every statement
/// follows from the mutation's facts; no rule is decided here.
fn project(client: &mut Db, pos: u64, m: &Mutation) -> Result<()> {
    let exec = |client: &mut Db, sql: &'static str, params: &[&(dyn ToSql + Sync)]| {
        client
            .execute(sql, params)
            .map(|_| ())
            .map_err(|e| pg_error("projecting a change", e))
    };
    match m {
        Mutation::Counters {
            next_handle,
            next_token_id,
        } => exec(
            client,
            "UPDATE tessera_head SET next_handle = GREATEST(next_handle, $1), \
             next_token_id = GREATEST(next_token_id, $2)",
            &[&(*next_handle as i64), &(*next_token_id as i64)],
        ),
        Mutation::UserCreated { handle, record } => {
            put_user(client, *handle as i64, record, 0, false)
        }
        Mutation::UserRestored {
            handle,
            record,
            epoch,
            token_required,
            tokens,
            devices,
        } => {
            let h = *handle as i64;
            put_user(client, h, record, *epoch, *token_required)?;
            for t in tokens {
                put_token(client, h, t)?;
            }
            for d in devices {
                put_device(client, h, pos, d)?;
            }
            Ok(())
        }
        Mutation::UserReplaced { handle, record } => {
            let h = *handle as i64;
            let (_, nickname, url, active, _) = record_columns(record);
            exec(
                client,
                "UPDATE tessera_users SET nickname = $2, profile_url = $3, is_active = $4, \
                 record = $5 WHERE handle = $1",
                &[&h, &nickname, &url, &active, &encode(record)?],
            )?;
            put_discovery_keys(client, h, record)
        }
        Mutation::UserDeleted { handle } => exec(
            client,
            "DELETE FROM tessera_users WHERE handle = $1",
            &[&(*handle as i64)],
        ),
        Mutation::DeviceAdded {
            handle,
            device,
            evicted,
            ..
        } => {
            if let Some(e) = evicted {
                exec(
                    client,
                    "DELETE FROM tessera_devices WHERE push_token = $1",
                    &[&e.as_str()],
                )?;
            }
            put_device(client, *handle as i64, pos, device)
        }
        Mutation::DeviceRemoved { push_token, .. } => exec(
            client,
            "DELETE FROM tessera_devices WHERE push_token = $1",
            &[&push_token.as_str()],
        ),
        Mutation::AccessTokenIssued {
            handle,
            entry,
            evicted,
        } => issue_token(client, *handle, entry, evicted.as_slice()),
        Mutation::AccessTokenIssuedEvicting {
            handle,
            entry,
            evicted,
        } => issue_token(client, *handle, entry, evicted),
        Mutation::AccessTokenRevoked { token_id, .. } => exec(
            client,
            "DELETE FROM tessera_access_tokens WHERE id = $1",
            &[&(*token_id as i64)],
        ),
        Mutation::AccessTokensRevoked { handle } => exec(
            client,
            "DELETE FROM tessera_access_tokens WHERE handle = $1",
            &[&(*handle as i64)],
        ),
        Mutation::SessionsRevoked { handle, epoch } => exec(
            client,
            "UPDATE tessera_users SET session_epoch = $2 WHERE handle = $1",
            &[&(*handle as i64), &i64::from(*epoch)],
        ),
        Mutation::TokenRequired { handle } => exec(
            client,
            "UPDATE tessera_users SET token_required = true WHERE handle = $1",
            &[&(*handle as i64)],
        ),
    }
}

impl Persistence for PgPersistence {
    fn begin_write(&self) -> Result<Vec<Change>> {
        self.with_writer(|conn| {
            let applied = self.shared.applied.load(Ordering::Acquire);
            self.lock_head(conn)?;
            let head = conn.head;
            if head == applied {
                self.shared.mark_fresh();
                return Ok(Vec::new());
            }
            let client = conn
                .client
                .as_mut()
                .ok_or_else(|| Error::new(ErrorKind::Internal, "no writer connection"))?;
            // Other nodes committed since this one looked: read them in this transaction
            // (the head lock keeps anyone from adding more meanwhile).
            let (_, changes) = read_changes_in_txn(client, applied)?;
            self.shared.applied.store(head, Ordering::Release);
            self.shared.mark_fresh();
            Ok(changes)
        })
    }

    fn end_write(&self) {
        self.rollback(&mut self.writer.lock());
    }

    fn append(&self, mutation: &Mutation) -> Result<u64> {
        self.append_batch(std::slice::from_ref(mutation))
    }

    fn append_batch(&self, mutations: &[Mutation]) -> Result<u64> {
        self.commit_entries(mutations.len() as u64, |client, first| {
            if mutations.len() >= BULK_MIN {
                return bulk::write(client, first, mutations);
            }
            for (i, m) in mutations.iter().enumerate() {
                let pos = first + i as u64;
                insert_log(client, pos, KIND_MUTATION, &encode(m)?)?;
                project(client, pos, m)?;
            }
            Ok(())
        })
    }

    fn wait(&self, _ticket: u64) -> Result<()> {
        Ok(()) // committed before it was applied
    }

    fn synced(&self) -> u64 {
        u64::MAX
    }

    fn readable(&self) -> u64 {
        u64::MAX
    }

    fn sync_through(&self, _ticket: u64) -> Result<()> {
        Ok(())
    }

    fn pull(&self) -> Result<Vec<Change>> {
        self.with_writer(|conn| {
            let applied = self.shared.applied.load(Ordering::Acquire);
            let client = conn
                .client
                .as_mut()
                .ok_or_else(|| Error::new(ErrorKind::Internal, "no writer connection"))?;
            // Usually nothing is new: one round trip says so, without a transaction.
            let head = client
                .query_one("SELECT pos FROM tessera_head", &[])
                .map_err(|e| pg_error("reading the head", e))?
                .get::<_, i64>(0) as u64;
            if head == applied {
                self.shared.mark_fresh();
                return Ok(Vec::new());
            }
            let (head, changes) = self.read_changes(client, applied)?;
            self.shared.applied.store(head, Ordering::Release);
            self.shared.mark_fresh();
            Ok(changes)
        })
    }

    fn check_fresh(&self) -> Result<()> {
        if self.shared.stale.load(Ordering::Acquire) {
            return Err(Error::new(
                ErrorKind::Unavailable,
                "this node has not caught up with PostgreSQL within max_staleness; \
                 refusing to verify a credential that may have been revoked elsewhere",
            ));
        }
        Ok(())
    }

    fn put_blob(&self, sha256: &[u8; 32], bytes: &[u8]) -> Result<()> {
        self.with_blobs(|client| {
            client
                .execute(
                    "INSERT INTO tessera_images (sha256, bytes) VALUES ($1, $2) \
                     ON CONFLICT (sha256) DO UPDATE SET stored_at = now()",
                    &[&sha256.as_slice(), &bytes],
                )
                .map(|_| ())
                .map_err(|e| pg_error("storing an image", e))
        })
    }

    fn get_blob(&self, sha256: &[u8; 32]) -> Result<Option<Vec<u8>>> {
        self.with_blobs(|client| {
            let row = client
                .query_opt(
                    "SELECT bytes FROM tessera_images WHERE sha256 = $1",
                    &[&sha256.as_slice()],
                )
                .map_err(|e| pg_error("reading an image", e))?;
            Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
        })
    }

    fn save_keys(&self, keys: &StoredKeyRing) -> Result<()> {
        let payload = encode(keys)?;
        self.commit_entries(1, |client, pos| {
            insert_log(client, pos, KIND_KEYS, &payload)?;
            store_keys(client, keys)
        })
        .map(|_| ())
    }

    fn compact(&self, _engine: &Engine) -> Result<()> {
        self.with_blobs(|client| prune(client, &self.shared))
    }

    fn close(&self) {
        // The follower and watchdog notice within one poll interval and end (the follower
        // holds only a weak handle, so the engine's state goes as soon as it lets go); the
        // follower's connection closes with it.
        self.shared.stop.store(true, Ordering::Release);
    }
}

/// Deletes log entries every live node has applied, keeping `log_retention` of them; a node
/// not seen for ten minutes no longer holds the log back (it reloads when it returns).
fn prune(client: &mut Db, shared: &Shared) -> Result<()> {
    client
        .execute(
            "DELETE FROM tessera_log WHERE pos < LEAST( \
                 (SELECT pos FROM tessera_head) - $1::bigint, \
                 COALESCE((SELECT min(applied_pos) FROM tessera_nodes \
                           WHERE seen_at > now() - interval '10 minutes'), 0) + 1)",
            &[&(shared.options.log_retention as i64)],
        )
        .map(|_| ())
        .map_err(|e| pg_error("pruning the log", e))
}

impl Drop for PgPersistence {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
    }
}

/// Creates or checks the schema and the key ring; returns the ring to use.
fn initialise(client: &mut Db, fresh_ring: &StoredKeyRing) -> Result<StoredKeyRing> {
    client
        .batch_execute("BEGIN")
        .map_err(|e| pg_error("starting initialisation", e))?;
    let result = initialise_in_txn(client, fresh_ring);
    match &result {
        Ok(_) => client
            .batch_execute("COMMIT")
            .map_err(|e| pg_error("committing initialisation", e))?,
        Err(_) => {
            let _ = client.batch_execute("ROLLBACK");
        }
    }
    result
}

fn initialise_in_txn(txn: &mut Db, fresh_ring: &StoredKeyRing) -> Result<StoredKeyRing> {
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&INIT_LOCK])
        .map_err(|e| pg_error("locking initialisation", e))?;
    let exists = txn
        .query_one("SELECT to_regclass('tessera_schema') IS NOT NULL", &[])
        .map_err(|e| pg_error("checking the schema", e))?
        .get::<_, bool>(0);
    if exists {
        let version: Option<i32> = txn
            .query_opt("SELECT max(version) FROM tessera_schema", &[])
            .map_err(|e| pg_error("checking the schema", e))?
            .and_then(|r| r.get(0));
        match version {
            Some(v) if v > SCHEMA_VERSION => {
                return Err(Error::new(
                    ErrorKind::UnsupportedFormat,
                    format!(
                        "the database holds Tessera schema version {v}; this library knows \
                         up to {SCHEMA_VERSION}"
                    ),
                ))
            }
            Some(SCHEMA_VERSION) => {}
            _ => {
                // Version 1 is the first; later versions migrate here, step by step.
                txn.batch_execute(SCHEMA)
                    .map_err(|e| pg_error("creating the schema", e))?;
            }
        }
    } else {
        txn.batch_execute(SCHEMA)
            .map_err(|e| pg_error("creating the schema", e))?;
        txn.execute(
            "INSERT INTO tessera_schema (version) VALUES ($1)",
            &[&SCHEMA_VERSION],
        )
        .map_err(|e| pg_error("creating the schema", e))?;
    }
    let has_head = txn
        .query_opt("SELECT 1 FROM tessera_head", &[])
        .map_err(|e| pg_error("reading the head", e))?
        .is_some();
    if !has_head {
        txn.execute(
            "INSERT INTO tessera_head (pos, next_handle, next_token_id, next_key_number) \
             VALUES (0, 1, 1, $1)",
            &[&i64::from(fresh_ring.next_number)],
        )
        .map_err(|e| pg_error("creating the head", e))?;
    }
    let has_keys = txn
        .query_opt("SELECT 1 FROM tessera_keys LIMIT 1", &[])
        .map_err(|e| pg_error("reading keys", e))?
        .is_some();
    if has_keys {
        load_keys(txn)
    } else {
        store_keys(txn, fresh_ring)?;
        Ok(fresh_ring.clone())
    }
}

/// Opens a cluster node: schema, key ring, the whole state, then the follower.
pub(crate) fn open(
    conninfo: &str,
    options: ClusterOptions,
    fresh_ring: StoredKeyRing,
    assemble: impl FnOnce(Arc<dyn Persistence>, StoredKeyRing) -> Result<Engine>,
) -> Result<Engine> {
    options.validate()?;
    let mut client = connect(conninfo, "tessera-writer")?;
    let ring = initialise(&mut client, &fresh_ring)?;
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .map_err(|e| pg_error("starting the load", e))?;
    let loaded = read_head(&mut client).and_then(|head| {
        let (state, keys) = load_state(&mut client, &head)?;
        Ok((head, state, keys))
    });
    let _ = client.batch_execute(if loaded.is_ok() { "COMMIT" } else { "ROLLBACK" });
    let (head, state, keys) = loaded?;
    drop(ring);
    let shared = Arc::new(Shared {
        conninfo: conninfo.to_owned(),
        options,
        node_id: node_id(),
        applied: AtomicU64::new(head.pos),
        fresh_at_ms: AtomicU64::new(0),
        epoch: Instant::now(),
        stale: AtomicBool::new(false),
        stop: AtomicBool::new(false),
    });
    shared.mark_fresh();
    let persistence = Arc::new(PgPersistence {
        shared: Arc::clone(&shared),
        writer: Mutex::new(WriterConn {
            client: Some(client),
            in_txn: false,
            head: head.pos,
        }),
        blobs: Mutex::new(None),
    });
    let engine = assemble(persistence, keys)?;
    for m in state {
        engine.replay(m)?;
    }
    start_threads(&shared, engine.downgrade())?;
    Ok(engine)
}

fn node_id() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    format!(
        "{}{}{}-{:016x}",
        host,
        if host.is_empty() { "" } else { "-" },
        std::process::id(),
        u64::from_le_bytes(b)
    )
}

fn start_threads(shared: &Arc<Shared>, engine: WeakEngine) -> Result<()> {
    let follower = Arc::clone(shared);
    std::thread::Builder::new()
        .name("tessera-follower".into())
        .spawn(move || follow(&follower, &engine))
        .map_err(|e| Error::io("spawning the cluster follower", e))?;
    if let Some(max) = shared.options.max_staleness {
        let watchdog = Arc::clone(shared);
        let max_ms = max.as_millis() as u64;
        let tick = (max / 20).clamp(Duration::from_millis(5), Duration::from_millis(250));
        std::thread::Builder::new()
            .name("tessera-staleness".into())
            .spawn(move || {
                while !watchdog.stop.load(Ordering::Acquire) {
                    let seen = watchdog.fresh_at_ms.load(Ordering::Acquire);
                    if watchdog.now_ms().saturating_sub(seen) > max_ms {
                        watchdog.stale.store(true, Ordering::Release);
                        // A confirmation that landed meanwhile wins: `mark_fresh` stores the
                        // time before it clears `stale`, so a changed time means it ran.
                        if watchdog.fresh_at_ms.load(Ordering::Acquire) != seen {
                            watchdog.stale.store(false, Ordering::Release);
                        }
                    }
                    std::thread::sleep(tick);
                }
            })
            .map_err(|e| Error::io("spawning the cluster staleness watchdog", e))?;
    }
    Ok(())
}

/// The follower: waits for a notification (or the poll interval), then applies everything
/// committed since this node's position. Reconnects after any failure.
fn follow(shared: &Shared, engine: &WeakEngine) {
    let mut listener: Option<Db> = None;
    let mut backoff = Duration::from_millis(20);
    // `None` until the first heartbeat (an `Instant` in the past could underflow right after
    // boot).
    let mut last_heartbeat: Option<Instant> = None;
    let mut last_pull = Instant::now();
    let mut needed = true;
    while !shared.stop.load(Ordering::Acquire) {
        if listener.as_ref().is_none_or(Db::is_closed) {
            match connect(&shared.conninfo, "tessera-follower").and_then(|mut c| {
                c.batch_execute(&format!("LISTEN {CHANNEL}"))
                    .map_err(|e| pg_error("listening", e))?;
                Ok(c)
            }) {
                Ok(c) => {
                    listener = Some(c);
                    backoff = Duration::from_millis(20);
                }
                Err(_) => {
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            }
        }
        // Catch up (also right after reconnecting: what was missed is in the log), unless
        // the only wake-ups were for positions this node already applied — its own writes.
        if needed || last_pull.elapsed() >= shared.options.poll_interval {
            let Some(e) = engine.upgrade() else { return };
            let caught_up = e.catch_up();
            drop(e);
            last_pull = Instant::now();
            if caught_up.is_err() {
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
        needed = true;
        let Some(client) = listener.as_mut() else {
            continue;
        };
        if last_heartbeat.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            last_heartbeat = Some(Instant::now());
            let applied = shared.applied.load(Ordering::Acquire) as i64;
            let beat = client.execute(
                "INSERT INTO tessera_nodes (node_id, applied_pos, seen_at) \
                 VALUES ($1, $2, now()) ON CONFLICT (node_id) DO UPDATE SET \
                 applied_pos = EXCLUDED.applied_pos, seen_at = now()",
                &[&shared.node_id, &applied],
            );
            if beat.is_ok() {
                let _ = prune(client, shared);
            }
        }
        // Wait for a wake-up; several queued notifications are one catch-up.
        let woke = client
            .client
            .notifications()
            .timeout_iter(shared.options.poll_interval)
            .next();
        match woke {
            Ok(Some(first)) => {
                // The payload is the committed head; a wake-up at or below what this node
                // applied needs no read.
                let mut newest = first.payload().parse::<u64>().unwrap_or(u64::MAX);
                let mut pending = client.client.notifications();
                let mut more = pending.iter();
                while let Ok(Some(n)) = more.next() {
                    newest = newest.max(n.payload().parse::<u64>().unwrap_or(u64::MAX));
                }
                needed = newest > shared.applied.load(Ordering::Acquire);
            }
            Ok(None) => {}
            Err(_) => listener = None,
        }
    }
    if let Some(mut c) = listener {
        let _ = c.execute(
            "DELETE FROM tessera_nodes WHERE node_id = $1",
            &[&shared.node_id],
        );
    }
}

impl crate::engine::EngineBuilder {
    /// A cluster node on the PostgreSQL database `conninfo` (libpq form, `host=… dbname=…`, or
    /// a `postgresql://` URL): creates the schema on first use, loads the whole state, and
    /// follows what other nodes commit. Every write returns only after its transaction
    /// committed; reads and verification are served from this node's memory. See
    /// [`ClusterOptions`] for the staleness trade-off, and docs/DESIGN.md for the guarantees.
    pub fn open_postgres(self, conninfo: &str, options: ClusterOptions) -> Result<Engine> {
        self.config.validate()?;
        let rng = ring::rand::SystemRandom::new();
        let fresh = crate::key_ring::KeyRing::generate(&rng, self.clock.now_ms())?.to_stored();
        let (config, clock) = (self.config, self.clock);
        open(conninfo, options, fresh, move |persistence, keys| {
            let ring = crate::key_ring::KeyRing::from_stored(&keys)?;
            Ok(Engine::assemble(config, clock, persistence, ring))
        })
    }
}

impl Engine {
    /// A cluster node with the default configuration and [`ClusterOptions`]; see
    /// [`crate::EngineBuilder::open_postgres`].
    pub fn open_postgres(conninfo: &str) -> Result<Engine> {
        Engine::builder().open_postgres(conninfo, ClusterOptions::default())
    }
}

/// `COPY` for large appends (an import of a whole state: counters and one `UserRestored` per
/// user), an order of magnitude faster than a statement per row.
mod bulk {
    use std::fmt::Write as _;
    use std::io::Write as _;

    use super::{encode, pg_error, project, Db, KIND_MUTATION};
    use crate::error::{Error, ErrorKind, Result};
    use crate::mutation::Mutation;

    /// A text-format `COPY` value: backslash escapes for the characters the format reserves.
    fn text(out: &mut String, s: &str) {
        for c in s.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c => out.push(c),
            }
        }
    }

    fn opt_text(out: &mut String, s: Option<&str>) {
        match s {
            Some(s) => text(out, s),
            None => out.push_str("\\N"),
        }
    }

    fn bytea(out: &mut String, b: &[u8]) {
        out.push_str("\\\\x");
        for byte in b {
            let _ = write!(out, "{byte:02x}");
        }
    }

    fn copy(client: &mut Db, sql: &str, rows: &str) -> Result<()> {
        let err = |e| pg_error("bulk-loading", e);
        let mut w = client.client.copy_in(sql).map_err(err)?;
        w.write_all(rows.as_bytes()).map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("bulk-loading into PostgreSQL: {e}"),
            )
        })?;
        w.finish().map(|_| ()).map_err(err)
    }

    /// Writes `mutations` at positions `first..`; falls back to a statement per row unless
    /// the batch is a state (counters and whole users).
    pub(super) fn write(client: &mut Db, first: u64, mutations: &[Mutation]) -> Result<()> {
        let state_only = mutations
            .iter()
            .all(|m| matches!(m, Mutation::Counters { .. } | Mutation::UserRestored { .. }));
        if !state_only {
            for (i, m) in mutations.iter().enumerate() {
                let pos = first + i as u64;
                super::insert_log(client, pos, KIND_MUTATION, &encode(m)?)?;
                project(client, pos, m)?;
            }
            return Ok(());
        }
        let (mut log, mut users, mut tokens, mut devices, mut keys) = (
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        );
        let (log, users, tokens, devices, keys) =
            (&mut log, &mut users, &mut tokens, &mut devices, &mut keys);
        let mut counters = Vec::new();
        for (i, m) in mutations.iter().enumerate() {
            let pos = first + i as u64;
            let _ = write!(log, "{pos}\t{KIND_MUTATION}\t");
            bytea(log, &encode(m)?);
            log.push('\n');
            match m {
                Mutation::Counters { .. } => counters.push((pos, m)),
                Mutation::UserRestored {
                    handle,
                    record,
                    epoch,
                    token_required,
                    tokens: entries,
                    devices: devs,
                } => {
                    let _ = write!(users, "{handle}\t");
                    text(users, &record.id);
                    users.push('\t');
                    text(users, &record.nickname);
                    users.push('\t');
                    opt_text(users, record.profile_url.as_deref());
                    let _ = write!(
                        users,
                        "\t{}\t{epoch}\t{token_required}\t{}\t",
                        record.active, record.created_at_ms
                    );
                    bytea(users, &encode(record)?);
                    users.push('\n');
                    for t in entries {
                        let _ = write!(tokens, "{}\t{handle}\t", t.id);
                        bytea(tokens, &t.digest.0);
                        tokens.push('\t');
                        opt_text(tokens, t.label.as_deref());
                        let _ = write!(tokens, "\t{}\t", t.created_at_ms);
                        bytea(tokens, &encode(t)?);
                        tokens.push('\n');
                    }
                    for d in devs {
                        text(devices, &d.push_token);
                        let _ = write!(devices, "\t{handle}\t{pos}\t");
                        let json = serde_json::to_string(d).map_err(|e| {
                            Error::new(ErrorKind::Internal, format!("serialising a device: {e}"))
                        })?;
                        text(devices, &json);
                        devices.push('\t');
                        bytea(devices, &encode(d)?);
                        devices.push('\n');
                    }
                    for k in record.discovery_keys() {
                        text(keys, k);
                        let _ = writeln!(keys, "\t{handle}");
                    }
                }
                _ => {
                    return Err(Error::new(
                        ErrorKind::Internal,
                        "a bulk state holds only counters and users",
                    ))
                }
            }
        }
        copy(
            client,
            "COPY tessera_log (pos, kind, payload) FROM STDIN",
            log,
        )?;
        copy(
            client,
            "COPY tessera_users (handle, user_id, nickname, profile_url, is_active, \
             session_epoch, token_required, created_at_ms, record) FROM STDIN",
            users,
        )?;
        copy(
            client,
            "COPY tessera_access_tokens (id, handle, sha256_digest, label, created_at_ms, \
             entry) FROM STDIN",
            tokens,
        )?;
        copy(
            client,
            "COPY tessera_devices (push_token, handle, added_pos, device, entry) FROM STDIN",
            devices,
        )?;
        copy(
            client,
            "COPY tessera_discovery_keys (discovery_key, handle) FROM STDIN",
            keys,
        )?;
        for (pos, m) in counters {
            project(client, pos, m)?;
        }
        client
            .execute(
                "UPDATE tessera_head SET \
                 next_handle = GREATEST(next_handle, \
                     (SELECT COALESCE(max(handle), 0) + 1 FROM tessera_users)), \
                 next_token_id = GREATEST(next_token_id, \
                     (SELECT COALESCE(max(id), 0) + 1 FROM tessera_access_tokens))",
                &[],
            )
            .map(|_| ())
            .map_err(|e| pg_error("bulk-loading", e))
    }
}
