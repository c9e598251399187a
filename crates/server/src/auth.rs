//! Authentication: a bearer token becomes a [`Caller`]. The authorization
//! gate (`authz::Gate`) calls [`Authenticator::authenticate`] for every RPC
//! that needs a token; handlers never parse headers.

use std::sync::Arc;

use connectrpc::ConnectError;
use uuid::Uuid;

use crate::crypto;
use crate::domain::{OrgRole, Subject, TokenKind, User, UserStatus};
use crate::store::Store;

/// Who is calling, resolved from the bearer token.
#[derive(Debug, Clone)]
pub enum Caller {
    User(UserCaller),
    Runner(RunnerCaller),
}

#[derive(Debug, Clone)]
pub struct UserCaller {
    pub user: User,
    pub org_id: Uuid,
    pub role: OrgRole,
    /// Every group the user belongs to (system groups included).
    pub group_ids: Vec<Uuid>,
    pub token_id: Uuid,
    pub read_only: bool,
}

#[derive(Debug, Clone)]
pub struct RunnerCaller {
    pub runner_id: Uuid,
    pub org_id: Uuid,
    pub token_id: Uuid,
}

impl Caller {
    pub fn org_id(&self) -> Uuid {
        match self {
            Caller::User(u) => u.org_id,
            Caller::Runner(r) => r.org_id,
        }
    }

    pub fn subject(&self) -> Subject {
        match self {
            Caller::User(u) => Subject::User(u.user.id),
            Caller::Runner(r) => Subject::Runner(r.runner_id),
        }
    }
}

pub struct Authenticator {
    store: Arc<dyn Store>,
}

impl Authenticator {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Resolves a bearer token to its caller, or says why it cannot.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, ConnectError> {
        let unauthenticated = || ConnectError::unauthenticated("invalid or expired token");
        let kind = crypto::token_kind(token).ok_or_else(unauthenticated)?;
        if kind == TokenKind::Exchange {
            return Err(ConnectError::unauthenticated(
                "exchange tokens must be traded in with IdentityService.ExchangeToken first",
            ));
        }
        let stored = self
            .store
            .find_token_by_hash(&crypto::token_hash(token))
            .await
            .map_err(internal)?
            .ok_or_else(unauthenticated)?;
        let now = chrono::Utc::now();
        if stored.kind != kind || stored.is_expired(now) {
            return Err(unauthenticated());
        }
        // Last use is informational; a failure to record it must not fail the call.
        if let Err(err) = self.store.touch_token(stored.id, now).await {
            tracing::warn!(%err, "could not record token use");
        }
        match stored.subject {
            Subject::User(user_id) => {
                let user = self
                    .store
                    .get_user(user_id)
                    .await
                    .map_err(|_| unauthenticated())?;
                if user.status != UserStatus::Active {
                    return Err(ConnectError::unauthenticated(
                        "this user is suspended; ask an organization admin",
                    ));
                }
                let role = self
                    .store
                    .org_role(user.org_id, user.id)
                    .await
                    .map_err(internal)?
                    .ok_or_else(unauthenticated)?;
                let group_ids = self.store.groups_of_user(user.id).await.map_err(internal)?;
                Ok(Caller::User(UserCaller {
                    org_id: user.org_id,
                    user,
                    role,
                    group_ids,
                    token_id: stored.id,
                    read_only: stored.read_only,
                }))
            }
            Subject::Runner(runner_id) => Ok(Caller::Runner(RunnerCaller {
                runner_id,
                org_id: stored.org_id,
                token_id: stored.id,
            })),
        }
    }
}

fn internal(err: impl std::fmt::Display) -> ConnectError {
    tracing::error!(%err, "authentication lookup failed");
    ConnectError::internal("authentication failed")
}
