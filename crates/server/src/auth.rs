//! Authentication: a bearer token becomes a [`Caller`]. The authorization
//! gate (`authz::Gate`) calls [`Authenticator::authenticate`] for every RPC
//! that needs a token; handlers never parse headers.

use std::sync::Arc;

use connectrpc::ConnectError;
use uuid::Uuid;

use crate::crypto;
use crate::domain::{OrgRole, Subject, Timestamp, TokenKind, User, UserStatus};
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

/// How stale a token's recorded last use (`last_used`) may get. Recording
/// every use would make every read a write: on SQLite every call would queue
/// for the one writer, on PostgreSQL every read would be a write.
pub const LAST_USE_RESOLUTION: chrono::Duration = chrono::Duration::seconds(60);

/// Whether a use at `now` should be recorded over the recorded `last_used`.
fn last_use_is_stale(last_used: Option<Timestamp>, now: Timestamp) -> bool {
    last_used.is_none_or(|at| now - at >= LAST_USE_RESOLUTION)
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
        // Last use is informational: recorded when the stored one is older than
        // the resolution, so that reads do not each write; a failure to record
        // it must not fail the call.
        if last_use_is_stale(stored.last_used, now)
            && let Err(err) = self.store.touch_token(stored.id, now).await
        {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap;
    use crate::store::sql::SqlStore;

    async fn last_used(store: &dyn Store, token: &str) -> Option<Timestamp> {
        store
            .find_token_by_hash(&crypto::token_hash(token))
            .await
            .unwrap()
            .unwrap()
            .last_used
    }

    #[tokio::test]
    async fn a_tokens_last_use_is_recorded_at_most_once_per_resolution() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            SqlStore::open_sqlite(&dir.path().join("corral.db"))
                .await
                .unwrap(),
        );
        let (_, admin) = bootstrap::create_organization(store.as_ref(), "org", "a@example.com")
            .await
            .unwrap();
        let auth = Authenticator::new(store.clone());
        assert_eq!(last_used(store.as_ref(), &admin.token).await, None);

        auth.authenticate(&admin.token).await.unwrap();
        let first = last_used(store.as_ref(), &admin.token)
            .await
            .expect("recorded");
        auth.authenticate(&admin.token).await.unwrap();
        assert_eq!(
            last_used(store.as_ref(), &admin.token).await,
            Some(first),
            "a use within the resolution writes nothing"
        );

        // A recorded use older than the resolution is brought up to date.
        let id = store
            .find_token_by_hash(&crypto::token_hash(&admin.token))
            .await
            .unwrap()
            .unwrap()
            .id;
        let long_ago = first - LAST_USE_RESOLUTION - chrono::Duration::seconds(1);
        store.touch_token(id, long_ago).await.unwrap();
        auth.authenticate(&admin.token).await.unwrap();
        let now = last_used(store.as_ref(), &admin.token).await.unwrap();
        assert!(now >= first, "{now} is not after {first}");
    }

    #[test]
    fn staleness_is_measured_against_the_resolution() {
        let now = chrono::Utc::now();
        assert!(last_use_is_stale(None, now));
        assert!(!last_use_is_stale(Some(now), now));
        assert!(!last_use_is_stale(
            Some(now - LAST_USE_RESOLUTION + chrono::Duration::seconds(1)),
            now
        ));
        assert!(last_use_is_stale(Some(now - LAST_USE_RESOLUTION), now));
    }
}
