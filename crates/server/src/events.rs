//! Change notifications for `EventService.WatchEvents`, across replicas.
//!
//! Whatever changes a resource (an RPC through `authz::Access`, a runner's
//! report, the liveness sweep) publishes a [`ChangeEvent`] here; every open
//! `WatchEvents` stream subscribes and passes on what its caller may see.
//!
//! A lone server delivers in process. Replicas on PostgreSQL publish with
//! `NOTIFY` on one channel ([`CHANNEL`]; an event is a few hundred bytes of
//! JSON, far below the 8000-byte payload limit) and every replica, the
//! publisher included, hands what it hears to its own subscribers, so each
//! event reaches every watcher once. Notifications are not stored: a watcher
//! that was not connected, or that fell behind, has missed events and is
//! told so (its stream ends), and re-reads what it watches. So is every
//! watcher of a replica whose listening connection was lost
//! ([`Heard::Gap`]): notices sent meanwhile never reach it.
//!
//! The hub also carries one signal of its own between replicas: *callers
//! changed* ([`CALLERS_CHANNEL`]), which tells every replica's
//! `auth::Authenticator` to forget the callers it resolved (a role, a group
//! membership or a token changed), so that no replica acts on a stale caller.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::PgListener;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::domain::ChangeEvent;
use crate::store::connections::{Connections, connecting_to, once_more_if_lost};

/// The PostgreSQL channel that carries change events between replicas.
pub const CHANNEL: &str = "corral_events";
/// The PostgreSQL channel on which replicas tell each other that callers changed.
pub const CALLERS_CHANNEL: &str = "corral_callers";
/// Connections that publish at once.
const PUBLISHERS: u32 = 2;
/// Events a slow watcher may fall behind by before it is dropped.
const BUFFER: usize = 4096;

/// What a watcher hears from the hub.
#[derive(Debug, Clone, PartialEq)]
pub enum Heard {
    /// A change on some replica.
    Change(ChangeEvent),
    /// Changes may have been missed: this replica's listening connection
    /// was lost for a while (it listens again already).
    Gap,
}

pub struct EventHub {
    local: broadcast::Sender<Heard>,
    /// Callers changed on another replica (the payload-free signal).
    callers: broadcast::Sender<()>,
    /// Set when the server stops: open streams end.
    closed: watch::Sender<bool>,
    postgres: Option<Postgres>,
}

struct Postgres {
    /// Held as the store holds its own: a notification is one round trip,
    /// without the check sqlx's pool makes around each use.
    publisher: Connections,
    listener: JoinHandle<()>,
}

impl Postgres {
    /// `NOTIFY` on `channel` with `payload`; once more, on another
    /// connection, when the one it took had been lost (a restart of the
    /// server ends them all): a notification is not stored anywhere else.
    async fn notify(&self, channel: &str, payload: &str) -> sqlx::Result<()> {
        once_more_if_lost(|| async {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(channel)
                .bind(payload)
                .execute(&mut self.publisher.acquire().await?)
                .await
        })
        .await?;
        Ok(())
    }
}

impl Drop for EventHub {
    fn drop(&mut self) {
        if let Some(pg) = &self.postgres {
            pg.listener.abort();
        }
    }
}

impl EventHub {
    /// Events of this process only (a lone server).
    pub fn local() -> Arc<Self> {
        Arc::new(Self {
            local: broadcast::channel(BUFFER).0,
            callers: broadcast::channel(BUFFER).0,
            closed: watch::channel(false).0,
            postgres: None,
        })
    }

    /// Events of every replica on the PostgreSQL database at `url`.
    pub async fn postgres(url: &str) -> anyhow::Result<Arc<Self>> {
        sqlx::any::install_default_drivers();
        let publisher = Connections::checked(PUBLISHERS, connecting_to(url));
        publisher
            .acquire()
            .await
            .context("connecting the change-event publisher to PostgreSQL")?;
        let mut listener = PgListener::connect(url)
            .await
            .context("opening the change-event listener")?;
        listener
            .listen_all([CHANNEL, CALLERS_CHANNEL])
            .await
            .context("listening for change events")?;
        let local = broadcast::channel(BUFFER).0;
        let callers = broadcast::channel(BUFFER).0;
        let listener = tokio::spawn(relay(listener, local.clone(), callers.clone()));
        Ok(Arc::new(Self {
            local,
            callers,
            closed: watch::channel(false).0,
            postgres: Some(Postgres {
                publisher,
                listener,
            }),
        }))
    }

    /// Tells every watcher (on every replica) about `event`. Never fails
    /// the caller: a notification that cannot be sent is logged.
    pub async fn publish(&self, event: ChangeEvent) {
        let Some(pg) = &self.postgres else {
            // No receivers is fine: nobody watches.
            let _ = self.local.send(Heard::Change(event));
            return;
        };
        let payload = match serde_json::to_string(&event) {
            Ok(payload) => payload,
            Err(err) => {
                tracing::error!(%err, "a change event does not serialize");
                return;
            }
        };
        let sent = pg.notify(CHANNEL, &payload).await;
        if let Err(err) = sent {
            // Watchers on this replica at least hear of it.
            tracing::warn!(%err, "could not announce a change to other replicas");
            let _ = self.local.send(Heard::Change(event));
        }
    }

    /// Tells the other replicas that callers changed (this replica has
    /// already forgotten its own). A lone server has nobody to tell.
    pub async fn publish_callers_changed(&self) {
        let Some(pg) = &self.postgres else {
            return;
        };
        let sent = pg.notify(CALLERS_CHANNEL, "").await;
        if let Err(err) = sent {
            // They forget by themselves within `--caller-ttl`.
            tracing::warn!(%err, "could not tell other replicas that callers changed");
        }
    }

    /// A receiver of the *callers changed* signals of other replicas.
    pub fn subscribe_callers(&self) -> broadcast::Receiver<()> {
        self.callers.subscribe()
    }

    /// A receiver of every event from now on, and a signal that the server stops.
    pub fn subscribe(&self) -> (broadcast::Receiver<Heard>, watch::Receiver<bool>) {
        (self.local.subscribe(), self.closed.subscribe())
    }

    /// Ends every open watch stream (the server is stopping).
    pub fn close_all(&self) {
        let _ = self.closed.send(true);
    }

    /// How many watch streams are open on this replica.
    pub fn watchers(&self) -> usize {
        self.local.receiver_count()
    }
}

/// Hands what PostgreSQL notifies to this replica's subscribers.
async fn relay(
    mut listener: PgListener,
    local: broadcast::Sender<Heard>,
    callers: broadcast::Sender<()>,
) {
    loop {
        // `try_recv`, not `recv`: `recv` connects again by itself and never
        // says that the connection was lost.
        match listener.try_recv().await {
            Ok(Some(notification)) if notification.channel() == CALLERS_CHANNEL => {
                let _ = callers.send(());
            }
            Ok(Some(notification)) => {
                match serde_json::from_str::<ChangeEvent>(notification.payload()) {
                    Ok(event) => {
                        let _ = local.send(Heard::Change(event));
                    }
                    Err(err) => tracing::warn!(%err, "ignoring an unreadable change event"),
                }
            }
            Ok(None) => {
                // Lost, and listening again already: signals may have been
                // missed meanwhile.
                let _ = callers.send(());
                let _ = local.send(Heard::Gap);
                tracing::warn!("the change-event listener lost its connection and listens again");
            }
            Err(err) => {
                let _ = callers.send(());
                let _ = local.send(Heard::Gap);
                // The next try_recv connects again.
                tracing::warn!(%err, "the change-event listener lost its connection; reconnecting");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use corral_testkit::PostgresDatabase;
    use uuid::Uuid;

    use super::*;
    use crate::domain::{ChangeOperation, ResourceKind};

    fn change() -> ChangeEvent {
        ChangeEvent {
            org_id: Uuid::now_v7(),
            operation: ChangeOperation::Update,
            kind: ResourceKind::Runner,
            id: Uuid::now_v7(),
            creator_id: Some(Uuid::now_v7()),
            runner_id: None,
            owner_id: None,
        }
    }

    async fn heard(receiver: &mut broadcast::Receiver<Heard>) -> Heard {
        tokio::time::timeout(Duration::from_secs(10), receiver.recv())
            .await
            .expect("a notice within 10 s")
            .expect("the hub is open")
    }

    async fn next(receiver: &mut broadcast::Receiver<Heard>) -> ChangeEvent {
        match heard(receiver).await {
            Heard::Change(event) => event,
            Heard::Gap => panic!("a gap where a change was expected"),
        }
    }

    #[tokio::test]
    async fn a_lone_server_tells_its_watchers_and_stops_them() {
        let hub = EventHub::local();
        let (mut events, mut closed) = hub.subscribe();
        assert_eq!(hub.watchers(), 1);
        let sent = change();
        hub.publish(sent.clone()).await;
        assert_eq!(next(&mut events).await, sent);
        hub.close_all();
        tokio::time::timeout(Duration::from_secs(10), closed.changed())
            .await
            .expect("watchers hear that the server stops")
            .unwrap();
    }

    /// Two replicas' hubs on a database of their own.
    async fn two_replicas() -> (PostgresDatabase, Arc<EventHub>, Arc<EventHub>) {
        let database = PostgresDatabase::create().await;
        let a = EventHub::postgres(database.url()).await.unwrap();
        let b = EventHub::postgres(database.url()).await.unwrap();
        (database, a, b)
    }

    /// Two replicas on one PostgreSQL database: a change published on one
    /// reaches the watchers of both, once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL: run through scripts/test (cargo test -- --include-ignored)"]
    async fn changes_cross_replicas() {
        let (_database, a, b) = two_replicas().await;
        let (mut on_a, _) = a.subscribe();
        let (mut on_b, _) = b.subscribe();
        let first = change();
        a.publish(first.clone()).await;
        assert_eq!(next(&mut on_b).await, first);
        assert_eq!(next(&mut on_a).await, first);
        let second = change();
        b.publish(second.clone()).await;
        assert_eq!(next(&mut on_a).await, second);
        assert_eq!(next(&mut on_b).await, second);
        // Each event once: nothing else is waiting.
        assert!(on_a.try_recv().is_err() && on_b.try_recv().is_err());
        drop((a, b));
    }

    /// A replica whose publishing connections the server ended (as a
    /// restart does) still gets its next change to the other replicas.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL: run through scripts/test (cargo test -- --include-ignored)"]
    async fn a_change_published_after_the_connection_was_lost_still_crosses() {
        let (database, a, b) = two_replicas().await;
        let (mut on_b, _) = b.subscribe();
        let first = change();
        a.publish(first.clone()).await;
        assert_eq!(next(&mut on_b).await, first);
        // End the publishers' connections only: the listeners stay.
        let ended = database
            .end_connections_whose_last_statement_starts("SELECT pg_notify")
            .await;
        assert!(ended >= 1, "a publishing connection was open");
        let second = change();
        a.publish(second.clone()).await;
        assert_eq!(next(&mut on_b).await, second);
        drop((a, b));
    }

    /// Replicas tell each other that callers changed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL: run through scripts/test (cargo test -- --include-ignored)"]
    async fn callers_changed_reaches_every_replica() {
        let (_database, a, b) = two_replicas().await;
        let mut on_b = b.subscribe_callers();
        let (mut events_on_b, _) = b.subscribe();
        a.publish_callers_changed().await;
        tokio::time::timeout(Duration::from_secs(10), on_b.recv())
            .await
            .expect("the signal within 10 s")
            .unwrap();
        // The signal is not a change event.
        assert!(events_on_b.try_recv().is_err());
        drop((a, b));
    }

    /// A replica whose listening connection was lost may have missed that
    /// callers changed, and changes: it forgets its callers, tells its
    /// watchers that they may have missed changes, and listens again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL: run through scripts/test (cargo test -- --include-ignored)"]
    async fn a_replica_that_lost_its_listener_forgets_its_callers_and_listens_again() {
        let (database, a, b) = two_replicas().await;
        let mut on_b = b.subscribe_callers();
        let (mut watching_b, _) = b.subscribe();
        let ended = database
            .end_connections_whose_last_statement_starts("LISTEN")
            .await;
        assert_eq!(ended, 2, "the two replicas' listeners");
        tokio::time::timeout(Duration::from_secs(10), on_b.recv())
            .await
            .expect("the signal within 10 s")
            .unwrap();
        assert_eq!(heard(&mut watching_b).await, Heard::Gap);
        let (mut events_on_b, _) = b.subscribe();
        let after = change();
        a.publish(after.clone()).await;
        assert_eq!(next(&mut events_on_b).await, after);
        drop((a, b));
    }
}
