//! The bus inside one process: a lone server, or several hubs in a test.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{Bus, Message, ReplicaId};

/// The replicas of one process and the runner streams they hold.
#[derive(Default)]
pub struct LocalNetwork {
    state: Mutex<NetworkState>,
}

#[derive(Default)]
struct NetworkState {
    /// Runner → (replica, connection).
    holders: HashMap<Uuid, (ReplicaId, u64)>,
    members: HashMap<ReplicaId, mpsc::UnboundedSender<Message>>,
}

impl LocalNetwork {
    fn state(&self) -> std::sync::MutexGuard<'_, NetworkState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct LocalBus {
    replica: ReplicaId,
    network: Arc<LocalNetwork>,
    inbox: Mutex<Option<mpsc::UnboundedReceiver<Message>>>,
}

impl LocalBus {
    /// A network of one: the bus of a server that runs alone.
    pub fn single() -> Arc<Self> {
        Self::join(&Arc::new(LocalNetwork::default()))
    }

    /// A new replica on `network`.
    pub fn join(network: &Arc<LocalNetwork>) -> Arc<Self> {
        let replica = Uuid::now_v7();
        let (sender, receiver) = mpsc::unbounded_channel();
        network.state().members.insert(replica, sender);
        Arc::new(Self {
            replica,
            network: network.clone(),
            inbox: Mutex::new(Some(receiver)),
        })
    }
}

#[async_trait]
impl Bus for LocalBus {
    fn replica_id(&self) -> ReplicaId {
        self.replica
    }

    async fn announce(&self, runner_id: Uuid, connection: u64) -> anyhow::Result<()> {
        self.network
            .state()
            .holders
            .insert(runner_id, (self.replica, connection));
        Ok(())
    }

    async fn withdraw(&self, runner_id: Uuid, connection: u64) -> anyhow::Result<()> {
        let mut state = self.network.state();
        if state.holders.get(&runner_id) == Some(&(self.replica, connection)) {
            state.holders.remove(&runner_id);
        }
        Ok(())
    }

    async fn holders(&self, runner_ids: &[Uuid]) -> anyhow::Result<HashMap<Uuid, ReplicaId>> {
        let state = self.network.state();
        Ok(runner_ids
            .iter()
            .filter_map(|id| state.holders.get(id).map(|(replica, _)| (*id, *replica)))
            .collect())
    }

    async fn send(&self, to: ReplicaId, message: Message) -> anyhow::Result<()> {
        let state = self.network.state();
        let member = state
            .members
            .get(&to)
            .ok_or_else(|| anyhow::anyhow!("replica {to} is not running"))?;
        member
            .send(message)
            .map_err(|_| anyhow::anyhow!("replica {to} is not reading its messages"))
    }

    fn take_inbox(&self) -> Option<mpsc::UnboundedReceiver<Message>> {
        self.inbox.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    async fn cleanup(&self) -> anyhow::Result<u64> {
        Ok(0)
    }

    async fn leave(&self) {
        let mut state = self.network.state();
        state.members.remove(&self.replica);
        state
            .holders
            .retain(|_, (replica, _)| *replica != self.replica);
    }
}
