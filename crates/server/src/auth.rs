//! Authentication: a bearer token becomes a [`Caller`]. The authorization
//! gate (`authz::Gate`) calls [`Authenticator::authenticate`] for every RPC
//! that needs a token; handlers never parse headers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use connectrpc::ConnectError;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use crate::crypto;
use crate::domain::{OrgRole, Subject, Timestamp, TokenKind, User, UserStatus};
use crate::events::EventHub;
use crate::expiring::Expiring;
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

/// How long a resolved caller is trusted without asking the store again, by
/// default (`corral serve --caller-ttl`). Changes made through the API make
/// every replica forget its callers at once; this bounds how long a change
/// made behind the server's back (`corral admin` on the database) goes
/// unnoticed.
pub const DEFAULT_CALLER_TTL: Duration = Duration::from_secs(10);

/// How many resolved callers one replica keeps.
const CALLER_CAPACITY: usize = 10_000;

/// How often the uses of tokens are written to the store, in one transaction.
const USE_FLUSH_INTERVAL: Duration = Duration::from_secs(10);

/// Whether a use at `now` should be recorded over the recorded `last_used`.
fn last_use_is_stale(last_used: Option<Timestamp>, now: Timestamp) -> bool {
    last_used.is_none_or(|at| now - at >= LAST_USE_RESOLUTION)
}

/// A caller as resolved from the store, with what each use must check again.
struct Resolved {
    caller: Caller,
    token_id: Uuid,
    expires_at: Option<Timestamp>,
    /// The generation of [`Authenticator::forget_callers`] it was read in.
    generation: u64,
    /// The token's last use as recorded or queued for recording.
    last_used: Mutex<Option<Timestamp>>,
}

/// Turns bearer tokens into callers. Resolving one takes a few queries
/// (token, user, role, groups), so resolved callers are kept briefly
/// (`ttl`, [`DEFAULT_CALLER_TTL`]) and forgotten, on every replica, when anything they
/// rest on changes. Uses of tokens are queued and written in batches, so
/// that a read never writes.
pub struct Authenticator {
    store: Arc<dyn Store>,
    /// By token hash; not used when the TTL is zero.
    callers: Expiring<String, Arc<Resolved>>,
    ttl: Duration,
    /// Bumped by [`Self::forget_callers`]: a caller read in an older
    /// generation is not used, even if it was stored after the bump (its
    /// resolution raced the change).
    generation: AtomicU64,
    /// Uses waiting to be written: token → when.
    pending_uses: Mutex<HashMap<Uuid, Timestamp>>,
}

impl Authenticator {
    /// An authenticator over `store` that hears from `events` when other
    /// replicas change callers, and writes token uses every few seconds.
    /// Resolved callers are kept for `ttl` (zero: not kept).
    pub fn start(store: Arc<dyn Store>, events: &EventHub, ttl: Duration) -> Arc<Self> {
        let authenticator = Arc::new(Self::new(store, ttl));
        let mut changed = events.subscribe_callers();
        let weak = Arc::downgrade(&authenticator);
        tokio::spawn(async move {
            loop {
                let heard = changed.recv().await;
                let Some(this) = weak.upgrade() else { return };
                match heard {
                    // Missed signals are treated as one.
                    Ok(()) | Err(RecvError::Lagged(_)) => this.forget_callers(),
                    Err(RecvError::Closed) => return,
                }
            }
        });
        let weak = Arc::downgrade(&authenticator);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(USE_FLUSH_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(this) = weak.upgrade() else { return };
                this.record_uses().await;
            }
        });
        authenticator
    }

    fn new(store: Arc<dyn Store>, ttl: Duration) -> Self {
        Self {
            store,
            callers: Expiring::new(CALLER_CAPACITY, ttl),
            ttl,
            generation: AtomicU64::new(0),
            pending_uses: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets every resolved caller of this replica: the next call of each
    /// resolves its token again.
    pub fn forget_callers(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.callers.clear();
    }

    /// Writes the queued uses of tokens (also when the server stops).
    pub async fn record_uses(&self) {
        let uses: Vec<(Uuid, Timestamp)> = std::mem::take(&mut *lock(&self.pending_uses))
            .into_iter()
            .collect();
        if let Err(err) = self.store.record_token_uses(&uses).await {
            // Informational: a lost batch must not fail anything.
            tracing::warn!(%err, tokens = uses.len(), "could not record token uses");
        }
    }

    /// Resolves a bearer token to its caller, or says why it cannot.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, ConnectError> {
        match crypto::token_kind(token) {
            Some(TokenKind::Exchange) => Err(ConnectError::unauthenticated(
                "exchange tokens must be traded in with IdentityService.ExchangeToken first",
            )),
            // A session lives in an HttpOnly cookie; one that turns up as a
            // bearer token was lifted from a browser.
            Some(TokenKind::Session) => Err(ConnectError::unauthenticated(
                "a browser session is not a bearer token; use an API token",
            )),
            Some(kind) => self.resolve_cached(token, kind).await,
            None => Err(unauthenticated()),
        }
    }

    /// Resolves the token of a browser session cookie to its user.
    pub async fn authenticate_session(&self, token: &str) -> Result<Caller, ConnectError> {
        match crypto::token_kind(token) {
            Some(TokenKind::Session) => self.resolve_cached(token, TokenKind::Session).await,
            _ => Err(ConnectError::unauthenticated(
                "the session has ended; sign in again",
            )),
        }
    }

    async fn resolve_cached(&self, token: &str, kind: TokenKind) -> Result<Caller, ConnectError> {
        let hash = crypto::token_hash(token);
        let generation = self.generation.load(Ordering::SeqCst);
        let keep = !self.ttl.is_zero();
        let resolved = match self.callers.get(&hash) {
            Some(resolved) if keep && resolved.generation == generation => resolved,
            _ => {
                let resolved = Arc::new(self.resolve(&hash, kind, generation).await?);
                if keep {
                    self.callers.insert(hash, resolved.clone());
                }
                resolved
            }
        };
        let now = chrono::Utc::now();
        if resolved.expires_at.is_some_and(|at| now >= at) {
            return Err(unauthenticated());
        }
        self.note_use(&resolved, now);
        Ok(resolved.caller.clone())
    }

    /// Queues the use when the recorded one is older than the resolution.
    fn note_use(&self, resolved: &Resolved, now: Timestamp) {
        let mut last_used = lock(&resolved.last_used);
        if last_use_is_stale(*last_used, now) {
            *last_used = Some(now);
            lock(&self.pending_uses).insert(resolved.token_id, now);
        }
    }

    /// Reads the caller of the token whose hash is `hash` from the store.
    async fn resolve(
        &self,
        hash: &str,
        kind: TokenKind,
        generation: u64,
    ) -> Result<Resolved, ConnectError> {
        let stored = self
            .store
            .find_token_by_hash(hash)
            .await
            .map_err(internal)?
            .ok_or_else(unauthenticated)?;
        if stored.kind != kind {
            return Err(unauthenticated());
        }
        let caller = match stored.subject {
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
                Caller::User(UserCaller {
                    org_id: user.org_id,
                    user,
                    role,
                    group_ids,
                    token_id: stored.id,
                    read_only: stored.read_only,
                })
            }
            Subject::Runner(runner_id) => Caller::Runner(RunnerCaller {
                runner_id,
                org_id: stored.org_id,
                token_id: stored.id,
            }),
        };
        Ok(Resolved {
            caller,
            token_id: stored.id,
            expires_at: stored.expires_at,
            generation,
            last_used: Mutex::new(stored.last_used),
        })
    }
}

fn unauthenticated() -> ConnectError {
    ConnectError::unauthenticated("invalid or expired token")
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
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

    async fn fixture() -> (tempfile::TempDir, Arc<dyn Store>, bootstrap::NewUser) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            SqlStore::open_sqlite(&dir.path().join("corral.db"))
                .await
                .unwrap(),
        );
        let (org, admin) = bootstrap::create_organization(store.as_ref(), "org", "a@example.com")
            .await
            .unwrap();
        // A second admin, so that the first may be demoted.
        bootstrap::create_user(store.as_ref(), org.id, "b@example.com", OrgRole::Admin)
            .await
            .unwrap();
        (dir, store, admin)
    }

    fn role_of(caller: &Caller) -> OrgRole {
        match caller {
            Caller::User(u) => u.role,
            Caller::Runner(_) => panic!("a runner"),
        }
    }

    #[tokio::test]
    async fn reads_write_nothing_and_uses_are_recorded_in_batches() {
        let (_dir, store, admin) = fixture().await;
        let auth = Authenticator::new(store.clone(), DEFAULT_CALLER_TTL);
        auth.authenticate(&admin.token).await.unwrap();
        auth.authenticate(&admin.token).await.unwrap();
        assert_eq!(
            last_used(store.as_ref(), &admin.token).await,
            None,
            "authenticating wrote"
        );
        auth.record_uses().await;
        let first = last_used(store.as_ref(), &admin.token)
            .await
            .expect("recorded");

        // Within the resolution nothing more is queued.
        auth.authenticate(&admin.token).await.unwrap();
        auth.record_uses().await;
        assert_eq!(last_used(store.as_ref(), &admin.token).await, Some(first));

        // A recorded use older than the resolution is brought up to date.
        let id = store
            .find_token_by_hash(&crypto::token_hash(&admin.token))
            .await
            .unwrap()
            .unwrap()
            .id;
        let long_ago = first - LAST_USE_RESOLUTION - chrono::Duration::seconds(1);
        store.record_token_uses(&[(id, long_ago)]).await.unwrap();
        auth.forget_callers();
        auth.authenticate(&admin.token).await.unwrap();
        auth.record_uses().await;
        let now = last_used(store.as_ref(), &admin.token).await.unwrap();
        assert!(now >= first, "{now} is not after {first}");
    }

    #[tokio::test]
    async fn a_resolved_caller_is_kept_until_callers_change() {
        let (_dir, store, admin) = fixture().await;
        let auth = Authenticator::new(store.clone(), DEFAULT_CALLER_TTL);
        let caller = auth.authenticate(&admin.token).await.unwrap();
        assert_eq!(role_of(&caller), OrgRole::Admin);

        // Behind the authenticator's back: kept (for at most the TTL)…
        store
            .set_org_role(caller.org_id(), admin.user.id, OrgRole::Member)
            .await
            .unwrap();
        let kept = auth.authenticate(&admin.token).await.unwrap();
        assert_eq!(role_of(&kept), OrgRole::Admin);
        // …until callers change.
        auth.forget_callers();
        let fresh = auth.authenticate(&admin.token).await.unwrap();
        assert_eq!(role_of(&fresh), OrgRole::Member);

        // A deleted token stops working as soon as callers change.
        let id = store
            .find_token_by_hash(&crypto::token_hash(&admin.token))
            .await
            .unwrap()
            .unwrap()
            .id;
        store.delete_token(id).await.unwrap();
        auth.forget_callers();
        let refused = auth.authenticate(&admin.token).await.unwrap_err();
        assert_eq!(refused.code, connectrpc::ErrorCode::Unauthenticated);
    }

    /// A resolution that raced a change (read before it, stored after it)
    /// is not used.
    #[tokio::test]
    async fn a_caller_read_before_a_change_is_not_used_after_it() {
        let (_dir, store, admin) = fixture().await;
        let auth = Authenticator::new(store.clone(), DEFAULT_CALLER_TTL);
        let hash = crypto::token_hash(&admin.token);
        let before = auth.generation.load(Ordering::SeqCst);
        let stale = auth
            .resolve(&hash, TokenKind::Personal, before)
            .await
            .unwrap();
        let org_id = stale.caller.org_id();
        store
            .set_org_role(org_id, admin.user.id, OrgRole::Member)
            .await
            .unwrap();
        auth.forget_callers();
        auth.callers.insert(hash, Arc::new(stale));
        let caller = auth.authenticate(&admin.token).await.unwrap();
        assert_eq!(role_of(&caller), OrgRole::Member);
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
