//! What every service shares: the server's keys, the runners connected to
//! the fleet, change notifications and the background duties — and the
//! store, which services reach only through `authz::Access`.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::Authenticator;
use crate::crypto::{DataKey, LogsTokenSigner, ReleaseSigner};
use crate::domain::Gateway;
use crate::duties::Duties;
use crate::events::EventHub;
use crate::metrics::Metrics;
use crate::pagination::PageKey;
use crate::runner_hub::RunnerHub;
use crate::store::Store;

pub struct AppState {
    /// Not public: services go through `authz::Access`; the rest of the
    /// server names why it may not with [`AppState::unrestricted_store`].
    store: Arc<dyn Store>,
    pub data_key: DataKey,
    pub logs_signer: LogsTokenSigner,
    /// Signs runner releases; runners get its public half at sign-up.
    pub release_signer: ReleaseSigner,
    /// Signs page tokens (shared by every replica).
    pub page_key: PageKey,
    pub hub: RunnerHub,
    /// Change notifications for `EventService.WatchEvents`.
    pub events: Arc<EventHub>,
    /// Bearer tokens to callers (kept briefly; forgotten on change).
    pub authenticator: Arc<Authenticator>,
    /// Whether this replica leads, and how often it ran each duty.
    pub duties: Duties,
    /// A runner with no report for this long is INACTIVE.
    pub runner_grace: Duration,
    /// Audit events older than this are pruned.
    pub audit_retention: Duration,
    /// Where browsers reach this server (for OAuth callbacks), without a trailing slash.
    pub public_url: String,
    /// This replica as runners' gateway_info names it.
    pub gateway: Gateway,
    /// What `GET /metrics` shows.
    pub metrics: Arc<Metrics>,
}

impl AppState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn Store>,
        data_key: DataKey,
        logs_signer: LogsTokenSigner,
        release_signer: ReleaseSigner,
        page_key: PageKey,
        hub: RunnerHub,
        events: Arc<EventHub>,
        duties: Duties,
        runner_grace: Duration,
        audit_retention: Duration,
        gateway: Gateway,
        caller_ttl: Duration,
    ) -> Self {
        let metrics = Arc::new(Metrics::new(duties.runs()));
        // Every use of the store is timed, the gate's and the duties' too.
        let store = crate::store::timed::TimedStore::wrap(store, metrics.clone());
        Self {
            authenticator: Authenticator::start(store.clone(), &events, caller_ttl),
            store,
            data_key,
            logs_signer,
            release_signer,
            page_key,
            hub,
            events,
            duties,
            runner_grace,
            audit_retention,
            public_url: gateway.url.clone(),
            gateway,
            metrics,
        }
    }

    /// The store without authorization. For work no caller asks for: the
    /// authorization gate itself, background duties, bootstrapping, the
    /// OAuth callback (which authenticates with its sealed state), and
    /// tests. Services never use it (a test checks): they get
    /// `authz::Access`.
    pub fn unrestricted_store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Where SCMs send the browser back after an OAuth sign-in.
    pub fn oauth_redirect_uri(&self) -> String {
        format!("{}{}", self.public_url, crate::oauth_flow::CALLBACK_PATH)
    }

    /// How often runners report in: three reports fit in the grace period.
    pub fn heartbeat_interval(&self) -> Duration {
        (self.runner_grace / 3).max(Duration::from_secs(1))
    }
}

pub type SharedState = Arc<AppState>;
