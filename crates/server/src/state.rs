//! What every service shares: the store, the server's keys, the runners
//! connected to the fleet, and the background duties.

use std::sync::Arc;
use std::time::Duration;

use crate::crypto::{DataKey, LogsTokenSigner};
use crate::duties::Duties;
use crate::runner_hub::RunnerHub;
use crate::store::Store;

pub struct AppState {
    pub store: Arc<dyn Store>,
    pub data_key: DataKey,
    pub logs_signer: LogsTokenSigner,
    pub hub: RunnerHub,
    /// Whether this replica leads, and how often it ran each duty.
    pub duties: Duties,
    /// A runner with no report for this long is INACTIVE.
    pub runner_grace: Duration,
    /// Where browsers reach this server (for OAuth callbacks), without a trailing slash.
    pub public_url: String,
}

impl AppState {
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
