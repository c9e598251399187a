//! The runners connected to the fleet, and the requests in flight to them.
//!
//! A runner keeps one `WatchRequests` stream open on one replica; that
//! replica's hub holds the sending half and announces the stream on the
//! [`Bus`]. Services push spec changes and deletions with `notify`, and `call`
//! sends a request and waits (bounded) for the runner's `Respond`, whichever
//! replica holds the stream and whichever replica the answer lands on: the
//! hub asks the bus who holds the runner and sends it there, and an answer
//! for a call another replica made goes back to that replica.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use connectrpc::ConnectError;
use corral_api::corral::v1 as runner_api;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::bus::{self, Bus, LocalBus, Message, ReplicaId};

/// What a runner answered: its `Respond`, with a result or a failure.
pub type RunnerAnswer = runner_api::RespondRequest;

struct Connection {
    id: u64,
    sender: mpsc::Sender<runner_api::RunnerRequest>,
}

struct Pending {
    runner_id: Uuid,
    reply: oneshot::Sender<Result<RunnerAnswer, ConnectError>>,
}

pub struct RunnerHub {
    inner: Arc<Inner>,
}

struct Inner {
    bus: Arc<dyn Bus>,
    /// The streams open on this replica.
    streams: Mutex<HashMap<Uuid, Connection>>,
    /// Calls made on this replica, by request id.
    pending: Mutex<HashMap<String, Pending>>,
    next_connection: AtomicU64,
}

/// Requests queued for a runner before it reads them.
const QUEUE_DEPTH: usize = 64;

fn not_connected(runner_id: Uuid) -> ConnectError {
    ConnectError::unavailable(format!("runner {runner_id} is not connected"))
}

impl RunnerHub {
    /// A hub on `bus`; takes the bus's inbox and serves it for as long as the
    /// hub lives. Needs a Tokio runtime.
    pub fn new(bus: Arc<dyn Bus>) -> Self {
        let inner = Arc::new(Inner {
            bus,
            streams: Mutex::default(),
            pending: Mutex::default(),
            next_connection: AtomicU64::new(1),
        });
        if let Some(inbox) = inner.bus.take_inbox() {
            tokio::spawn(serve_inbox(Arc::downgrade(&inner), inbox));
        }
        Self { inner }
    }

    /// A hub for a server that runs alone.
    pub fn single() -> Self {
        Self::new(LocalBus::single())
    }

    pub fn replica_id(&self) -> ReplicaId {
        self.inner.bus.replica_id()
    }

    /// Registers a runner's stream, replacing an older one from the same
    /// runner (on this replica or another); `unavailable` if the fleet cannot
    /// be told.
    pub async fn connect(
        &self,
        runner_id: Uuid,
    ) -> Result<(u64, mpsc::Receiver<runner_api::RunnerRequest>), ConnectError> {
        let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
        let id = self.inner.next_connection.fetch_add(1, Ordering::Relaxed);
        self.inner
            .streams()
            .insert(runner_id, Connection { id, sender });
        if let Err(err) = self.inner.bus.announce(runner_id, id).await {
            tracing::warn!(%runner_id, error = %err, "could not announce a runner stream");
            self.inner.forget(runner_id, id);
            return Err(ConnectError::unavailable(
                "the management plane cannot register the stream right now; retry",
            ));
        }
        Ok((id, receiver))
    }

    /// Forgets a stream that ended, unless a newer one replaced it.
    pub fn disconnect(&self, runner_id: Uuid, connection_id: u64) {
        self.inner.forget(runner_id, connection_id);
        let bus = self.inner.bus.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(err) = bus.withdraw(runner_id, connection_id).await {
                    tracing::warn!(%runner_id, error = %err, "could not withdraw a runner stream");
                }
            });
        }
    }

    /// Whether some replica holds a stream of the runner.
    pub async fn is_connected(&self, runner_id: Uuid) -> bool {
        self.connected(&[runner_id]).await.contains(&runner_id)
    }

    /// Which of `runner_ids` some replica holds a stream of.
    pub async fn connected(&self, runner_ids: &[Uuid]) -> HashSet<Uuid> {
        match self.inner.bus.holders(runner_ids).await {
            Ok(holders) => holders.into_keys().collect(),
            Err(err) => {
                tracing::warn!(error = %err, "cannot ask the fleet which runners are connected; answering for this replica");
                let streams = self.inner.streams();
                runner_ids
                    .iter()
                    .filter(|id| streams.get(id).is_some_and(|c| !c.sender.is_closed()))
                    .copied()
                    .collect()
            }
        }
    }

    /// Runner streams open on this replica.
    pub fn local_streams(&self) -> usize {
        self.inner.streams().len()
    }

    /// Ends every runner stream on this replica (the server is stopping):
    /// runners reconnect, to another replica or to this server once it is back.
    pub fn close_all(&self) {
        self.inner.streams().clear();
    }

    /// Removes what the bus no longer needs (a background duty of the leader).
    pub async fn cleanup(&self) -> anyhow::Result<u64> {
        self.inner.bus.cleanup().await
    }

    /// Leaves the fleet: other replicas stop sending here. Call before `close_all`.
    pub async fn leave(&self) {
        self.inner.bus.leave().await;
    }

    /// Sends without waiting for an answer; false when no replica holds the
    /// runner (or the message could not be passed on).
    pub async fn notify(&self, runner_id: Uuid, request: runner_api::RunnerRequest) -> bool {
        self.inner.route(runner_id, request).await.is_ok()
    }

    /// Sends `request` and waits up to `timeout` for the runner's answer.
    pub async fn call(
        &self,
        runner_id: Uuid,
        mut request: runner_api::RunnerRequest,
        timeout: Duration,
    ) -> Result<RunnerAnswer, ConnectError> {
        let request_id = bus::new_request_id(self.replica_id());
        request.request_id = request_id.clone();
        let (reply, answer) = oneshot::channel();
        self.inner
            .pending()
            .insert(request_id.clone(), Pending { runner_id, reply });
        let outcome = match self.inner.route(runner_id, request).await {
            Err(err) => Err(err),
            Ok(()) => match tokio::time::timeout(timeout, answer).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) => Err(ConnectError::unavailable(format!(
                    "runner {runner_id} went away before answering"
                ))),
                Err(_) => Err(ConnectError::deadline_exceeded(format!(
                    "runner {runner_id} did not answer within {timeout:?}"
                ))),
            },
        };
        self.inner.pending().remove(&request_id);
        outcome
    }

    /// Delivers a runner's answer, here or to the replica that made the call;
    /// false when no call of this runner waits for it.
    pub async fn respond(&self, runner_id: Uuid, request_id: &str, answer: RunnerAnswer) -> bool {
        if self.inner.waits_here(runner_id, request_id) {
            return self.inner.resolve(runner_id, request_id, Ok(answer));
        }
        match bus::request_origin(request_id) {
            Some(origin) if origin != self.replica_id() => {
                let message = Message::Answer { runner_id, answer };
                match self.inner.bus.send(origin, message).await {
                    Ok(()) => true,
                    Err(err) => {
                        tracing::warn!(%runner_id, %origin, error = %err, "could not pass an answer on");
                        false
                    }
                }
            }
            _ => false,
        }
    }
}

impl Inner {
    fn streams(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Connection>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn forget(&self, runner_id: Uuid, connection_id: u64) {
        let mut streams = self.streams();
        if streams
            .get(&runner_id)
            .is_some_and(|c| c.id == connection_id)
        {
            streams.remove(&runner_id);
        }
    }

    /// Puts `request` on a stream open on this replica.
    fn deliver_here(&self, runner_id: Uuid, request: runner_api::RunnerRequest) -> bool {
        let sender = match self.streams().get(&runner_id) {
            Some(c) => c.sender.clone(),
            None => return false,
        };
        sender.try_send(request).is_ok()
    }

    /// Sends `request` to the runner's stream, on whichever replica holds it.
    async fn route(
        &self,
        runner_id: Uuid,
        request: runner_api::RunnerRequest,
    ) -> Result<(), ConnectError> {
        let me = self.bus.replica_id();
        let holder = match self.bus.holders(&[runner_id]).await {
            Ok(holders) => holders.get(&runner_id).copied(),
            Err(err) => {
                tracing::warn!(%runner_id, error = %err, "cannot ask the fleet who holds the runner; trying this replica");
                None
            }
        };
        match holder {
            Some(replica) if replica != me => self
                .bus
                .send(replica, Message::Deliver { runner_id, request })
                .await
                .map_err(|err| {
                    tracing::warn!(%runner_id, %replica, error = %err, "could not pass a request on");
                    ConnectError::unavailable(format!(
                        "runner {runner_id} cannot be reached right now"
                    ))
                }),
            // Held here, or the fleet could not say: a stream here is the best bet.
            _ => {
                if self.deliver_here(runner_id, request) {
                    Ok(())
                } else {
                    Err(not_connected(runner_id))
                }
            }
        }
    }

    fn waits_here(&self, runner_id: Uuid, request_id: &str) -> bool {
        self.pending()
            .get(request_id)
            .is_some_and(|p| p.runner_id == runner_id)
    }

    /// Completes a call made here; answers to other runners' calls are ignored.
    fn resolve(
        &self,
        runner_id: Uuid,
        request_id: &str,
        outcome: Result<RunnerAnswer, ConnectError>,
    ) -> bool {
        let mut pending = self.pending();
        match pending.get(request_id) {
            Some(p) if p.runner_id == runner_id => {
                let p = pending.remove(request_id).expect("present");
                p.reply.send(outcome).is_ok()
            }
            _ => false,
        }
    }
}

/// Handles what other replicas send here, for as long as the hub lives.
async fn serve_inbox(hub: std::sync::Weak<Inner>, mut inbox: mpsc::UnboundedReceiver<Message>) {
    while let Some(message) = inbox.recv().await {
        let Some(hub) = hub.upgrade() else { return };
        match message {
            Message::Deliver { runner_id, request } => {
                let request_id = request.request_id.clone();
                if hub.deliver_here(runner_id, request) || request_id.is_empty() {
                    continue;
                }
                // The runner left this replica: fail the call now, not at its deadline.
                if let Some(origin) = bus::request_origin(&request_id) {
                    let bus = hub.bus.clone();
                    tokio::spawn(async move {
                        let message = Message::Undeliverable {
                            runner_id,
                            request_id,
                        };
                        if let Err(err) = bus.send(origin, message).await {
                            tracing::debug!(%runner_id, error = %err, "could not report an undeliverable call");
                        }
                    });
                }
            }
            Message::Answer { runner_id, answer } => {
                let request_id = answer.request_id.clone();
                hub.resolve(runner_id, &request_id, Ok(answer));
            }
            Message::Undeliverable {
                runner_id,
                request_id,
            } => {
                hub.resolve(runner_id, &request_id, Err(not_connected(runner_id)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::LocalNetwork;

    fn ping() -> runner_api::RunnerRequest {
        runner_api::RunnerRequest {
            kind: Some(runner_api::runner_request::Kind::Ping(Box::default())),
            ..Default::default()
        }
    }

    fn failure(request_id: &str, message: &str) -> RunnerAnswer {
        runner_api::RespondRequest {
            request_id: request_id.into(),
            failure: buffa::MessageField::some(runner_api::Failure {
                code: "unavailable".into(),
                message: message.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn call_without_connection_is_unavailable_at_once() {
        let hub = RunnerHub::single();
        let err = hub
            .call(Uuid::now_v7(), ping(), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(err.code, connectrpc::ErrorCode::Unavailable);
    }

    #[tokio::test]
    async fn call_is_answered_by_the_right_runner_only() {
        let hub = Arc::new(RunnerHub::single());
        let runner = Uuid::now_v7();
        let (_, mut inbox) = hub.connect(runner).await.unwrap();
        let answering = {
            let hub = hub.clone();
            tokio::spawn(async move {
                let request = inbox.recv().await.unwrap();
                let id = request.request_id.clone();
                assert!(!hub.respond(Uuid::now_v7(), &id, failure(&id, "down")).await);
                assert!(hub.respond(runner, &id, failure(&id, "down")).await);
            })
        };
        let answer = hub
            .call(runner, ping(), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(answer.failure.as_option().unwrap().message, "down");
        answering.await.unwrap();
    }

    #[tokio::test]
    async fn unanswered_call_hits_its_deadline() {
        let hub = RunnerHub::single();
        let runner = Uuid::now_v7();
        let (_, _inbox) = hub.connect(runner).await.unwrap();
        let err = hub
            .call(runner, ping(), Duration::from_millis(50))
            .await
            .unwrap_err();
        assert_eq!(err.code, connectrpc::ErrorCode::DeadlineExceeded);
    }

    #[tokio::test]
    async fn closing_ends_every_stream() {
        let hub = RunnerHub::single();
        let (_, mut inbox) = hub.connect(Uuid::now_v7()).await.unwrap();
        hub.close_all();
        assert!(inbox.recv().await.is_none());
    }

    #[tokio::test]
    async fn newer_stream_replaces_older_one() {
        let hub = RunnerHub::single();
        let runner = Uuid::now_v7();
        let (old, _a) = hub.connect(runner).await.unwrap();
        let (_new, mut b) = hub.connect(runner).await.unwrap();
        hub.disconnect(runner, old);
        tokio::task::yield_now().await;
        assert!(hub.is_connected(runner).await);
        assert!(hub.notify(runner, ping()).await);
        assert!(b.recv().await.is_some());
    }

    /// Two replicas: the runner's stream is on A; B calls it, the answer
    /// lands on B (the runner's Respond went through another replica), or on A.
    #[tokio::test]
    async fn calls_and_answers_cross_replicas() {
        let network = Arc::new(LocalNetwork::default());
        let a = Arc::new(RunnerHub::new(LocalBus::join(&network)));
        let b = Arc::new(RunnerHub::new(LocalBus::join(&network)));
        let runner = Uuid::now_v7();
        let (_, mut stream) = a.connect(runner).await.unwrap();
        assert!(b.is_connected(runner).await);
        assert_eq!(b.local_streams(), 0);

        // Pushes from B reach the stream on A.
        assert!(b.notify(runner, ping()).await);
        assert!(stream.recv().await.unwrap().request_id.is_empty());

        let runner_side = {
            let (a, b) = (a.clone(), b.clone());
            tokio::spawn(async move {
                // First call: the answer lands on A, which passes it on to B.
                let first = stream.recv().await.unwrap();
                assert!(
                    a.respond(
                        runner,
                        &first.request_id,
                        failure(&first.request_id, "via A")
                    )
                    .await
                );
                // Second call: the answer lands on B itself.
                let second = stream.recv().await.unwrap();
                assert!(
                    b.respond(
                        runner,
                        &second.request_id,
                        failure(&second.request_id, "via B")
                    )
                    .await
                );
                stream
            })
        };
        for via in ["via A", "via B"] {
            let answer = b
                .call(runner, ping(), Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(answer.failure.as_option().unwrap().message, via);
        }
        let stream = runner_side.await.unwrap();

        // An answer nobody waits for is refused, wherever it lands.
        let stale = bus::new_request_id(a.replica_id());
        assert!(!a.respond(runner, &stale, failure(&stale, "late")).await);

        // The runner moves to B: the old stream on A no longer counts.
        drop(stream);
        let (_, mut moved) = b.connect(runner).await.unwrap();
        assert!(a.notify(runner, ping()).await);
        assert!(moved.recv().await.is_some());

        // Its stream ends: unavailable at once, from either replica.
        drop(moved);
        b.close_all();
        b.leave().await;
        for hub in [&a, &b] {
            assert!(!hub.is_connected(runner).await);
            let err = hub
                .call(runner, ping(), Duration::from_secs(5))
                .await
                .unwrap_err();
            assert_eq!(err.code, connectrpc::ErrorCode::Unavailable);
        }
    }

    /// The bus says A holds the runner, but A's stream is gone: the call from
    /// B fails at once instead of waiting for its deadline.
    #[tokio::test]
    async fn a_call_the_holder_cannot_deliver_fails_at_once() {
        let network = Arc::new(LocalNetwork::default());
        let a = RunnerHub::new(LocalBus::join(&network));
        let b = RunnerHub::new(LocalBus::join(&network));
        let runner = Uuid::now_v7();
        let (_, stream) = a.connect(runner).await.unwrap();
        drop(stream);
        a.close_all();
        let err = b
            .call(runner, ping(), Duration::from_secs(30))
            .await
            .unwrap_err();
        assert_eq!(err.code, connectrpc::ErrorCode::Unavailable);
    }
}
