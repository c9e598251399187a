//! What every service shares: the store and the server's keys.

use std::sync::Arc;

use crate::crypto::{DataKey, LogsTokenSigner};
use crate::store::Store;

pub struct AppState {
    pub store: Arc<dyn Store>,
    pub data_key: DataKey,
    pub logs_signer: LogsTokenSigner,
}

pub type SharedState = Arc<AppState>;
