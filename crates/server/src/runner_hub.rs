//! The runners connected to this server, and the requests in flight to them.
//!
//! A runner keeps one `WatchRequests` stream open; the hub holds the sending
//! half. Services push spec changes and deletions through it, and `call`
//! sends a request and waits (bounded) for the runner's `Respond`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use connectrpc::ConnectError;
use corral_api::corral::v1 as runner_api;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// What a runner answered: its `Respond`, with a result or a failure.
pub type RunnerAnswer = runner_api::RespondRequest;

struct Connection {
    id: u64,
    sender: mpsc::Sender<runner_api::RunnerRequest>,
}

struct Pending {
    runner_id: Uuid,
    reply: oneshot::Sender<RunnerAnswer>,
}

#[derive(Default)]
pub struct RunnerHub {
    connections: Mutex<HashMap<Uuid, Connection>>,
    pending: Mutex<HashMap<String, Pending>>,
    next_connection: std::sync::atomic::AtomicU64,
}

/// Requests queued for a runner before it reads them.
const QUEUE_DEPTH: usize = 64;

impl RunnerHub {
    /// Registers a runner's stream, replacing an older one from the same runner.
    pub fn connect(&self, runner_id: Uuid) -> (u64, mpsc::Receiver<runner_api::RunnerRequest>) {
        let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
        let id = self
            .next_connection
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.connections
            .lock()
            .expect("hub lock")
            .insert(runner_id, Connection { id, sender });
        (id, receiver)
    }

    /// Forgets a stream that ended, unless a newer one replaced it.
    pub fn disconnect(&self, runner_id: Uuid, connection_id: u64) {
        let mut connections = self.connections.lock().expect("hub lock");
        if connections
            .get(&runner_id)
            .is_some_and(|c| c.id == connection_id)
        {
            connections.remove(&runner_id);
        }
    }

    pub fn is_connected(&self, runner_id: Uuid) -> bool {
        self.connections
            .lock()
            .expect("hub lock")
            .get(&runner_id)
            .is_some_and(|c| !c.sender.is_closed())
    }

    /// Ends every runner stream (the server is stopping): runners reconnect,
    /// to another replica or to this server once it is back.
    pub fn close_all(&self) {
        self.connections.lock().expect("hub lock").clear();
    }

    /// Sends without waiting for an answer; false when the runner is not connected here.
    pub fn notify(&self, runner_id: Uuid, request: runner_api::RunnerRequest) -> bool {
        let sender = match self.connections.lock().expect("hub lock").get(&runner_id) {
            Some(c) => c.sender.clone(),
            None => return false,
        };
        sender.try_send(request).is_ok()
    }

    /// Sends `request` and waits up to `timeout` for the runner's answer.
    pub async fn call(
        &self,
        runner_id: Uuid,
        mut request: runner_api::RunnerRequest,
        timeout: Duration,
    ) -> Result<RunnerAnswer, ConnectError> {
        let request_id = Uuid::new_v4().to_string();
        request.request_id = request_id.clone();
        let (reply, answer) = oneshot::channel();
        self.pending
            .lock()
            .expect("hub lock")
            .insert(request_id.clone(), Pending { runner_id, reply });
        let sent = self.notify(runner_id, request);
        let outcome = if !sent {
            Err(ConnectError::unavailable(format!(
                "runner {runner_id} is not connected"
            )))
        } else {
            match tokio::time::timeout(timeout, answer).await {
                Ok(Ok(answer)) => Ok(answer),
                Ok(Err(_)) => Err(ConnectError::unavailable(format!(
                    "runner {runner_id} went away before answering"
                ))),
                Err(_) => Err(ConnectError::deadline_exceeded(format!(
                    "runner {runner_id} did not answer within {timeout:?}"
                ))),
            }
        };
        self.pending.lock().expect("hub lock").remove(&request_id);
        outcome
    }

    /// Delivers a runner's answer; answers to other runners' requests are ignored.
    pub fn respond(&self, runner_id: Uuid, request_id: &str, answer: RunnerAnswer) -> bool {
        let mut pending = self.pending.lock().expect("hub lock");
        match pending.get(request_id) {
            Some(p) if p.runner_id == runner_id => {
                let p = pending.remove(request_id).expect("present");
                p.reply.send(answer).is_ok()
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ping() -> runner_api::RunnerRequest {
        runner_api::RunnerRequest {
            kind: Some(runner_api::runner_request::Kind::Ping(Box::default())),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn call_without_connection_is_unavailable_at_once() {
        let hub = RunnerHub::default();
        let err = hub
            .call(Uuid::now_v7(), ping(), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(err.code, connectrpc::ErrorCode::Unavailable);
    }

    #[tokio::test]
    async fn call_is_answered_by_the_right_runner_only() {
        let hub = std::sync::Arc::new(RunnerHub::default());
        let runner = Uuid::now_v7();
        let (_, mut inbox) = hub.connect(runner);
        let answering = {
            let hub = hub.clone();
            tokio::spawn(async move {
                let request = inbox.recv().await.unwrap();
                let failure = runner_api::RespondRequest {
                    request_id: request.request_id.clone(),
                    failure: buffa::MessageField::some(runner_api::Failure {
                        code: "unavailable".into(),
                        message: "down".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                assert!(!hub.respond(Uuid::now_v7(), &request.request_id, failure.clone()));
                assert!(hub.respond(runner, &request.request_id, failure));
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
        let hub = RunnerHub::default();
        let runner = Uuid::now_v7();
        let (_, _inbox) = hub.connect(runner);
        let err = hub
            .call(runner, ping(), Duration::from_millis(50))
            .await
            .unwrap_err();
        assert_eq!(err.code, connectrpc::ErrorCode::DeadlineExceeded);
    }

    #[tokio::test]
    async fn closing_ends_every_stream() {
        let hub = RunnerHub::default();
        let (_, mut inbox) = hub.connect(Uuid::now_v7());
        hub.close_all();
        assert!(inbox.recv().await.is_none());
    }

    #[tokio::test]
    async fn newer_stream_replaces_older_one() {
        let hub = RunnerHub::default();
        let runner = Uuid::now_v7();
        let (old, _a) = hub.connect(runner);
        let (_new, mut b) = hub.connect(runner);
        hub.disconnect(runner, old);
        assert!(hub.is_connected(runner));
        assert!(hub.notify(runner, ping()));
        assert!(b.recv().await.is_some());
    }
}
