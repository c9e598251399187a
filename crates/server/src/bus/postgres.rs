//! The bus on PostgreSQL (tables from `migrations/postgres/0003_replicas.sql`).
//!
//! - `replicas`: every replica upserts its row every [`HEARTBEAT`]; one not
//!   seen for [`REPLICA_TTL`] is dead, and the streams it announced are ignored.
//! - `runner_connections`: runner → the replica holding its stream (one row per
//!   runner; the newest stream wins).
//! - `runner_messages`: message bodies. `send` inserts a row and, in the same
//!   statement, `pg_notify`s the target replica's channel with the row id; the
//!   target deletes the row as it takes it, so each message is handled once.
//!   Rows a replica missed while its listening connection was down are picked
//!   up when it reconnects, and again by a periodic look for strays.
//!
//! The bus holds its own few connections to the database (as the store holds
//! its own, `store::connections`: a statement is one round trip, without the
//! check sqlx's pool makes before lending a connection and after it comes
//! back), and the listener its own, so that neither competes with the
//! store's queries. A statement whose connection had been lost (a restart of
//! PostgreSQL ends them all) runs once more on another one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use buffa::Message as _;
use corral_api::corral::v1 as runner_api;
use sqlx::any::{Any, AnyArguments, AnyRow};
use sqlx::postgres::PgListener;
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, Row};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::{Bus, Message, ReplicaId};
use crate::store::connections::{Connections, connecting_to, once_more_if_lost};

/// Connections the bus holds.
const CONNECTIONS: u32 = 4;

/// How often a replica says it is alive (and looks for stray messages).
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// A replica silent for this long is dead: its runners count as disconnected.
pub const REPLICA_TTL: Duration = Duration::from_secs(10);
/// Messages nobody took within this time are removed by [`Bus::cleanup`].
const MESSAGE_TTL_SECS: f64 = 600.0;
/// Replicas dead for this long are forgotten (with their connections) by cleanup.
const DEAD_REPLICA_TTL_SECS: f64 = 600.0;
/// A message the notification did not bring in this time is taken by the stray sweep.
const STRAY_AFTER_SECS: f64 = 2.0;

pub struct PgBus {
    inner: Arc<Inner>,
    inbox: Mutex<Option<mpsc::UnboundedReceiver<Message>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

struct Inner {
    replica: ReplicaId,
    connections: Connections,
    inbox: mpsc::UnboundedSender<Message>,
}

/// The channel a replica listens on.
fn channel(replica: ReplicaId) -> String {
    format!("corral_replica_{}", replica.simple())
}

impl PgBus {
    /// Joins the fleet on the database at `url`: registers this replica,
    /// listens on its channel, and starts the heartbeat.
    pub async fn start(url: &str) -> anyhow::Result<Arc<Self>> {
        sqlx::any::install_default_drivers();
        let connections = Connections::checked(CONNECTIONS, connecting_to(url));
        connections
            .acquire()
            .await
            .context("connecting the replica bus to PostgreSQL")?;
        let replica = Uuid::now_v7();
        let (sender, receiver) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            replica,
            connections,
            inbox: sender,
        });
        inner.heartbeat().await.context("registering the replica")?;
        let mut listener = PgListener::connect(url)
            .await
            .context("opening the replica bus listener")?;
        listener
            .listen(&channel(replica))
            .await
            .context("listening for replica messages")?;
        tracing::info!(%replica, "joined the replica fleet on PostgreSQL");
        let listening = tokio::spawn(inner.clone().listen(listener));
        let beating = tokio::spawn(inner.clone().keep_alive());
        Ok(Arc::new(Self {
            inner,
            inbox: Mutex::new(Some(receiver)),
            tasks: Mutex::new(vec![listening, beating]),
        }))
    }

    fn stop_tasks(&self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}

impl Drop for PgBus {
    fn drop(&mut self) {
        self.stop_tasks();
    }
}

/// A statement of the bus, built anew for each try.
type Statement<'a> = &'a (dyn Fn() -> Query<'static, Any, AnyArguments> + Sync);

impl Inner {
    /// Runs `statement` (see the module's documentation for the second try);
    /// how many rows it changed.
    async fn execute(&self, statement: Statement<'_>) -> sqlx::Result<u64> {
        once_more_if_lost(|| async {
            let mut conn = self.connections.acquire().await?;
            Ok(statement().execute(&mut conn).await?.rows_affected())
        })
        .await
    }

    /// Runs `statement` as [`Self::execute`] does; the rows it returned.
    async fn fetch_all(&self, statement: Statement<'_>) -> sqlx::Result<Vec<AnyRow>> {
        once_more_if_lost(|| async {
            let mut conn = self.connections.acquire().await?;
            statement().fetch_all(&mut conn).await
        })
        .await
    }

    async fn heartbeat(&self) -> anyhow::Result<()> {
        let replica = self.replica.to_string();
        self.execute(&|| {
            sqlx::query(
                "INSERT INTO replicas (id, started_at, seen_at) VALUES ($1::uuid, now(), now())
                 ON CONFLICT (id) DO UPDATE SET seen_at = now()",
            )
            .bind(replica.clone())
        })
        .await?;
        Ok(())
    }

    /// Heartbeats, and takes messages whose notification never arrived.
    async fn keep_alive(self: Arc<Self>) {
        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(err) = self.heartbeat().await {
                tracing::warn!(error = %err, "replica heartbeat failed");
                continue;
            }
            self.take(Take::Strays).await;
        }
    }

    /// Takes the messages notified on this replica's channel.
    async fn listen(self: Arc<Self>, mut listener: PgListener) {
        // Anything sent before the LISTEN took effect.
        self.take(Take::All).await;
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => match notification.payload().parse::<i64>() {
                    Ok(id) => self.take(Take::One(id)).await,
                    Err(_) => tracing::warn!(
                        payload = notification.payload(),
                        "ignoring a malformed replica notification"
                    ),
                },
                Ok(None) => {
                    // The connection was lost and is back (listening again):
                    // notifications sent meanwhile are gone, their rows are not.
                    tracing::warn!("the replica bus listener reconnected");
                    self.take(Take::All).await;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "the replica bus listener failed; retrying");
                    tokio::time::sleep(HEARTBEAT).await;
                }
            }
        }
    }

    /// Deletes this replica's messages (which: see [`Take`]) and puts them in the inbox.
    async fn take(&self, which: Take) {
        let condition = match which {
            Take::One(_) => "id = $2",
            Take::All => "TRUE",
            Take::Strays => "created_at < now() - make_interval(secs => $2)",
        };
        let sql = format!(
            "DELETE FROM runner_messages WHERE target = $1::uuid AND {condition}
             RETURNING id, channel, runner_id::text AS runner_id, payload"
        );
        let replica = self.replica.to_string();
        let statement = || {
            let query = sqlx::query(AssertSqlSafe(sql.clone())).bind(replica.clone());
            match which {
                Take::One(id) => query.bind(id),
                Take::All => query,
                Take::Strays => query.bind(STRAY_AFTER_SECS),
            }
        };
        let rows = match self.fetch_all(&statement).await {
            Ok(rows) => rows,
            Err(err) => {
                tracing::warn!(error = %err, "taking replica messages failed; they wait for the next look");
                return;
            }
        };
        let mut messages = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.get("id");
            match decode(
                &row.get::<String, _>("channel"),
                &row.get::<String, _>("runner_id"),
                row.get::<Vec<u8>, _>("payload"),
            ) {
                Ok(message) => messages.push((id, message)),
                Err(err) => {
                    tracing::warn!(id, error = %err, "dropping an unreadable replica message")
                }
            }
        }
        messages.sort_by_key(|(id, _)| *id);
        for (_, message) in messages {
            // Fails only while the replica shuts down.
            let _ = self.inbox.send(message);
        }
    }
}

#[derive(Clone, Copy)]
enum Take {
    /// The message with this id (its notification arrived).
    One(i64),
    /// Every message for this replica.
    All,
    /// Messages older than a notification takes.
    Strays,
}

/// A message as stored: its kind (the `channel` column), the runner, and a body.
fn encode(message: &Message) -> (&'static str, Uuid, Vec<u8>) {
    match message {
        Message::Deliver { runner_id, request } => ("deliver", *runner_id, request.encode_to_vec()),
        Message::Answer { runner_id, answer } => ("answer", *runner_id, answer.encode_to_vec()),
        Message::Undeliverable {
            runner_id,
            request_id,
        } => ("undeliverable", *runner_id, request_id.as_bytes().to_vec()),
    }
}

fn decode(kind: &str, runner_id: &str, payload: Vec<u8>) -> anyhow::Result<Message> {
    let runner_id = Uuid::parse_str(runner_id)?;
    Ok(match kind {
        "deliver" => Message::Deliver {
            runner_id,
            request: runner_api::RunnerRequest::decode_from_slice(&payload)?,
        },
        "answer" => Message::Answer {
            runner_id,
            answer: runner_api::RespondRequest::decode_from_slice(&payload)?,
        },
        "undeliverable" => Message::Undeliverable {
            runner_id,
            request_id: String::from_utf8(payload)?,
        },
        other => anyhow::bail!("unknown message kind {other:?}"),
    })
}

#[async_trait]
impl Bus for PgBus {
    fn replica_id(&self) -> ReplicaId {
        self.inner.replica
    }

    async fn announce(&self, runner_id: Uuid, connection: u64) -> anyhow::Result<()> {
        let (runner_id, replica) = (runner_id.to_string(), self.inner.replica.to_string());
        self.inner
            .execute(&|| {
                sqlx::query(
                    "INSERT INTO runner_connections (runner_id, replica_id, connection_id, since)
                     VALUES ($1::uuid, $2::uuid, $3, now())
                     ON CONFLICT (runner_id) DO UPDATE
                     SET replica_id = EXCLUDED.replica_id, connection_id = EXCLUDED.connection_id,
                         since = EXCLUDED.since",
                )
                .bind(runner_id.clone())
                .bind(replica.clone())
                .bind(connection as i64)
            })
            .await?;
        Ok(())
    }

    async fn withdraw(&self, runner_id: Uuid, connection: u64) -> anyhow::Result<()> {
        let (runner_id, replica) = (runner_id.to_string(), self.inner.replica.to_string());
        self.inner
            .execute(&|| {
                sqlx::query(
                    "DELETE FROM runner_connections
                     WHERE runner_id = $1::uuid AND replica_id = $2::uuid AND connection_id = $3",
                )
                .bind(runner_id.clone())
                .bind(replica.clone())
                .bind(connection as i64)
            })
            .await?;
        Ok(())
    }

    async fn holders(&self, runner_ids: &[Uuid]) -> anyhow::Result<HashMap<Uuid, ReplicaId>> {
        if runner_ids.is_empty() {
            return Ok(HashMap::new());
        }
        // One text of ids, split by the server: sqlx's `Any` driver, which
        // the held connections speak, binds no arrays.
        let ids = runner_ids
            .iter()
            .map(Uuid::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let rows = self
            .inner
            .fetch_all(&|| {
                sqlx::query(
                    "SELECT c.runner_id::text AS runner_id, c.replica_id::text AS replica_id
                     FROM runner_connections c JOIN replicas r ON r.id = c.replica_id
                     WHERE c.runner_id = ANY(string_to_array($1, ',')::uuid[])
                       AND r.seen_at > now() - make_interval(secs => $2)",
                )
                .bind(ids.clone())
                .bind(REPLICA_TTL.as_secs_f64())
            })
            .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    Uuid::parse_str(&row.get::<String, _>("runner_id"))?,
                    Uuid::parse_str(&row.get::<String, _>("replica_id"))?,
                ))
            })
            .collect()
    }

    /// A message whose connection was lost is sent again on another (see
    /// the module's documentation): should the first have been stored
    /// after all, the message arrives twice, which a runner's request (by
    /// its id) and a forwarded answer (to a call already answered) bear.
    async fn send(&self, to: ReplicaId, message: Message) -> anyhow::Result<()> {
        let (kind, runner_id, payload) = encode(&message);
        let (to_text, runner_id, to_channel) = (to.to_string(), runner_id.to_string(), channel(to));
        self.inner
            .execute(&|| {
                sqlx::query(
                    "WITH m AS (
                         INSERT INTO runner_messages (channel, target, runner_id, payload)
                         VALUES ($1, $2::uuid, $3::uuid, $4) RETURNING id)
                     SELECT pg_notify($5, m.id::text) FROM m",
                )
                .bind(kind)
                .bind(to_text.clone())
                .bind(runner_id.clone())
                .bind(payload.clone())
                .bind(to_channel.clone())
            })
            .await?;
        Ok(())
    }

    fn take_inbox(&self) -> Option<mpsc::UnboundedReceiver<Message>> {
        self.inbox.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    async fn cleanup(&self) -> anyhow::Result<u64> {
        let messages = self
            .inner
            .execute(&|| {
                sqlx::query(
                    "DELETE FROM runner_messages WHERE created_at < now() - make_interval(secs => $1)",
                )
                .bind(MESSAGE_TTL_SECS)
            })
            .await?;
        // Their runner_connections go with them (ON DELETE CASCADE).
        let replicas = self
            .inner
            .execute(&|| {
                sqlx::query(
                    "DELETE FROM replicas WHERE seen_at < now() - make_interval(secs => $1)",
                )
                .bind(DEAD_REPLICA_TTL_SECS)
            })
            .await?;
        Ok(messages + replicas)
    }

    async fn leave(&self) {
        self.stop_tasks();
        let replica = self.inner.replica.to_string();
        // The replica's runner_connections go with it (ON DELETE CASCADE).
        let result = self
            .inner
            .execute(&|| {
                sqlx::query("DELETE FROM replicas WHERE id = $1::uuid").bind(replica.clone())
            })
            .await;
        if let Err(err) = result {
            tracing::warn!(error = %err, "could not leave the replica fleet cleanly");
        }
        let _ = self
            .inner
            .execute(&|| {
                sqlx::query("DELETE FROM runner_messages WHERE target = $1::uuid")
                    .bind(replica.clone())
            })
            .await;
        self.inner.connections.close().await;
    }
}

/// Tests against a real PostgreSQL, each on a database of its own from
/// `corral_testkit` (ignored unless asked for: `scripts/test` runs them).
#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use corral_testkit::PostgresDatabase;
    use sqlx::Connection as _;

    /// A database of a test's own with the replica tables (not the store's).
    pub(crate) async fn database_with_replica_tables() -> PostgresDatabase {
        let database = PostgresDatabase::create().await;
        let mut conn = sqlx::PgConnection::connect(database.url()).await.unwrap();
        sqlx::raw_sql(include_str!("../../migrations/postgres/0003_replicas.sql"))
            .execute(&mut conn)
            .await
            .unwrap();
        let _ = conn.close().await;
        database
    }

    fn ping(request_id: &str) -> runner_api::RunnerRequest {
        runner_api::RunnerRequest {
            request_id: request_id.into(),
            kind: Some(runner_api::runner_request::Kind::Ping(Box::default())),
            ..Default::default()
        }
    }

    async fn next(inbox: &mut mpsc::UnboundedReceiver<Message>) -> Message {
        tokio::time::timeout(Duration::from_secs(20), inbox.recv())
            .await
            .expect("a message within 20 s")
            .expect("the inbox is open")
    }

    /// Two replicas' buses on a database of their own, and the first one's inbox.
    async fn two_replicas() -> (
        PostgresDatabase,
        Arc<PgBus>,
        Arc<PgBus>,
        mpsc::UnboundedReceiver<Message>,
    ) {
        let db = database_with_replica_tables().await;
        let a = PgBus::start(db.url()).await.unwrap();
        let b = PgBus::start(db.url()).await.unwrap();
        let inbox_a = a.take_inbox().unwrap();
        (db, a, b, inbox_a)
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL: run through scripts/test (cargo test -- --include-ignored)"]
    async fn messages_cross_replicas_and_holders_are_fleet_wide() {
        let (db, a, b, mut inbox_a) = two_replicas().await;
        let runner = Uuid::now_v7();
        assert!(b.holders(&[runner]).await.unwrap().is_empty());

        a.announce(runner, 1).await.unwrap();
        assert_eq!(
            b.holders(&[runner]).await.unwrap().get(&runner),
            Some(&a.replica_id())
        );

        // A body far larger than a NOTIFY payload may be.
        let mut big = ping("x/y");
        big.request_id = "r".repeat(20_000);
        let deliver = Message::Deliver {
            runner_id: runner,
            request: big,
        };
        b.send(a.replica_id(), deliver.clone()).await.unwrap();
        assert_eq!(next(&mut inbox_a).await, deliver);
        let mut sql = sqlx::PgConnection::connect(db.url()).await.unwrap();
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM runner_messages")
            .fetch_one(&mut sql)
            .await
            .unwrap();
        assert_eq!(left, 0, "a taken message is deleted");

        // A newer stream elsewhere wins; withdrawing the old one changes nothing.
        b.announce(runner, 7).await.unwrap();
        a.withdraw(runner, 1).await.unwrap();
        assert_eq!(
            a.holders(&[runner]).await.unwrap().get(&runner),
            Some(&b.replica_id())
        );
        b.withdraw(runner, 7).await.unwrap();
        assert!(a.holders(&[runner]).await.unwrap().is_empty());

        // A replica that leaves takes its streams with it.
        a.announce(runner, 2).await.unwrap();
        a.leave().await;
        assert!(b.holders(&[runner]).await.unwrap().is_empty());
        b.leave().await;
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL: run through scripts/test (cargo test -- --include-ignored)"]
    async fn the_bus_answers_after_its_connections_were_lost() {
        let (db, a, b, mut inbox_a) = two_replicas().await;
        let runner = Uuid::now_v7();
        a.announce(runner, 1).await.unwrap();
        assert_eq!(
            b.holders(&[runner]).await.unwrap().get(&runner),
            Some(&a.replica_id())
        );
        // As a restart of PostgreSQL would: the connection that just asked
        // (idle since, so lent again next without a check) is ended.
        let ended = db
            .end_connections_whose_last_statement_starts("SELECT c.runner_id")
            .await;
        assert!(ended >= 1, "{ended} connections ended");
        assert_eq!(
            b.holders(&[runner]).await.unwrap().get(&runner),
            Some(&a.replica_id()),
            "asked again on another connection"
        );
        let deliver = Message::Deliver {
            runner_id: runner,
            request: ping("after/loss"),
        };
        db.end_connections_whose_last_statement_starts("SELECT c.runner_id")
            .await;
        b.send(a.replica_id(), deliver.clone()).await.unwrap();
        assert_eq!(next(&mut inbox_a).await, deliver);
        a.leave().await;
        b.leave().await;
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL: run through scripts/test (cargo test -- --include-ignored)"]
    async fn a_dead_replica_holds_nothing_and_missed_messages_are_taken() {
        let db = database_with_replica_tables().await;
        let a = PgBus::start(db.url()).await.unwrap();
        // A replica that stopped heartbeating long ago, with a stream it announced.
        let mut sql = sqlx::PgConnection::connect(db.url()).await.unwrap();
        let dead = Uuid::now_v7().to_string();
        let runner = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO replicas (id, started_at, seen_at)
             VALUES ($1::uuid, now() - interval '1 hour', now() - interval '1 hour')",
        )
        .bind(&dead)
        .execute(&mut sql)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO runner_connections (runner_id, replica_id, connection_id)
             VALUES ($1::uuid, $2::uuid, 1)",
        )
        .bind(runner.to_string())
        .bind(&dead)
        .execute(&mut sql)
        .await
        .unwrap();
        assert!(a.holders(&[runner]).await.unwrap().is_empty());

        // A message stored without a notification is found by the stray sweep.
        let mut inbox = a.take_inbox().unwrap();
        let message = Message::Undeliverable {
            runner_id: runner,
            request_id: "r/1".into(),
        };
        let (kind, runner_id, payload) = encode(&message);
        sqlx::query(
            "INSERT INTO runner_messages (channel, target, runner_id, payload)
             VALUES ($1, $2::uuid, $3::uuid, $4)",
        )
        .bind(kind)
        .bind(a.replica_id().to_string())
        .bind(runner_id.to_string())
        .bind(payload)
        .execute(&mut sql)
        .await
        .unwrap();
        assert_eq!(next(&mut inbox).await, message);
        assert_eq!(
            a.cleanup().await.unwrap(),
            1,
            "the dead replica is forgotten"
        );
        let connections: i64 = sqlx::query_scalar("SELECT count(*) FROM runner_connections")
            .fetch_one(&mut sql)
            .await
            .unwrap();
        assert_eq!(connections, 0, "with its streams");
        a.leave().await;
    }
}
