//! How runner traffic crosses between replicas of the management plane.
//!
//! A runner keeps its `WatchRequests` stream open on one replica, but any
//! replica may need to reach it (an SCM RPC, a spec push, a deletion), and the
//! runner's `Respond` may land on any replica (a load balancer picks). The bus
//! knows which replica holds each runner's stream and carries [`Message`]s to
//! a named replica. [`crate::runner_hub::RunnerHub`] is its only user:
//! services talk to the hub and never see the bus.
//!
//! ```text
//!  replica B: hub.call(runner)          replica A: holds the runner's stream
//!    holders(runner) ─► A
//!    send(A, Deliver{request}) ───────►  inbox ─► stream ─► runner
//!                                                             │ Respond (lands on A, or on C)
//!    inbox ◄─────────── send(B, Answer{…}) ◄─ hub.respond ◄───┘
//!    (the request id names the replica that waits: "<replica>/<uuid>")
//! ```
//!
//! Implementations:
//! - [`LocalBus`]: in process. A lone server (SQLite) is a network of one;
//!   tests join several hubs to one [`LocalNetwork`].
//! - [`PgBus`]: PostgreSQL. Replicas heartbeat into `replicas`, announce their
//!   streams in `runner_connections`, and store message bodies in
//!   `runner_messages`; `NOTIFY` on the target replica's channel carries only
//!   the row id (payloads are limited to 8000 bytes).

mod local;
mod postgres;

use std::collections::HashMap;

use async_trait::async_trait;
use corral_api::corral::v1 as runner_api;
use tokio::sync::mpsc;
use uuid::Uuid;

pub use local::{LocalBus, LocalNetwork};
pub use postgres::PgBus;
#[cfg(test)]
pub(crate) use postgres::tests::database_with_replica_tables;

/// Names one running `corral serve` process; new at every start.
pub type ReplicaId = Uuid;

/// What one replica sends another about a runner.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Put `request` on the runner's stream. With a `request_id` it is a call,
    /// and the replica named in the id waits for the answer.
    Deliver {
        runner_id: Uuid,
        request: runner_api::RunnerRequest,
    },
    /// The runner's answer, for the replica that waits for it.
    Answer {
        runner_id: Uuid,
        answer: runner_api::RespondRequest,
    },
    /// The call `request_id` could not be put on the runner's stream (it moved
    /// or went away); the waiting replica fails it at once.
    Undeliverable { runner_id: Uuid, request_id: String },
}

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// This replica.
    fn replica_id(&self) -> ReplicaId;

    /// This replica now holds the runner's stream `connection` (replacing
    /// whichever replica held it before).
    async fn announce(&self, runner_id: Uuid, connection: u64) -> anyhow::Result<()>;

    /// This replica's stream `connection` ended; a newer stream of the same
    /// runner (here or on another replica) stays announced.
    async fn withdraw(&self, runner_id: Uuid, connection: u64) -> anyhow::Result<()>;

    /// Which live replica holds each of `runner_ids`; runners no live replica
    /// holds are absent.
    async fn holders(&self, runner_ids: &[Uuid]) -> anyhow::Result<HashMap<Uuid, ReplicaId>>;

    /// Sends `message` to replica `to`; it arrives in that replica's inbox.
    async fn send(&self, to: ReplicaId, message: Message) -> anyhow::Result<()>;

    /// Messages sent to this replica, in the order they arrive; the hub takes
    /// the receiver once.
    fn take_inbox(&self) -> Option<mpsc::UnboundedReceiver<Message>>;

    /// Removes what the bus no longer needs (old messages, replicas long
    /// dead); run by the leader. Returns how many entries went.
    async fn cleanup(&self) -> anyhow::Result<u64>;

    /// The replica stops: its streams are no longer announced.
    async fn leave(&self);
}

/// The id of a call made by `replica`: the replica that waits for the answer
/// is part of it, so whichever replica receives the answer can forward it.
pub fn new_request_id(replica: ReplicaId) -> String {
    format!("{replica}/{}", Uuid::new_v4())
}

/// The replica waiting for the answer to `request_id`.
pub fn request_origin(request_id: &str) -> Option<ReplicaId> {
    let (replica, _) = request_id.split_once('/')?;
    Uuid::parse_str(replica).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_name_their_origin() {
        let replica = Uuid::now_v7();
        let id = new_request_id(replica);
        assert_eq!(request_origin(&id), Some(replica));
        assert_ne!(new_request_id(replica), id);
        assert_eq!(request_origin("not-a-replica/x"), None);
        assert_eq!(request_origin(&Uuid::new_v4().to_string()), None);
    }
}
