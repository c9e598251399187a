//! Authentication: one interceptor turns the bearer token of every RPC into a
//! [`Caller`] in the request's extensions, so handlers never parse headers.

use std::sync::Arc;

use connectrpc::interceptor::{StreamRequest, StreamResponse, UnaryRequest, UnaryResponse};
use connectrpc::{ConnectError, Interceptor, Next, NextStream, PayloadStream, RequestContext};
use uuid::Uuid;

use crate::crypto;
use crate::domain::{OrgRole, Subject, TokenKind, User};
use crate::store::Store;

/// RPCs that need no token: they authenticate with what they carry.
const PUBLIC_PROCEDURES: &[&str] = &["/gitpod.v1.IdentityService/ExchangeToken"];

/// The runner-facing service: runner access tokens only.
const RUNNER_SERVICE_PREFIX: &str = "/corral.v1.RunnerInteractionService/";

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

    /// The calling user; runners get `permission_denied` on user RPCs.
    pub fn user(&self) -> Result<&UserCaller, ConnectError> {
        match self {
            Caller::User(u) => Ok(u),
            Caller::Runner(_) => Err(ConnectError::permission_denied(
                "runner tokens cannot call this RPC; use a user token",
            )),
        }
    }

    /// The calling user, who must be an admin of their organization.
    pub fn org_admin(&self) -> Result<&UserCaller, ConnectError> {
        let user = self.user()?;
        if user.role != OrgRole::Admin {
            return Err(ConnectError::permission_denied(
                "only organization admins may do this",
            ));
        }
        Ok(user)
    }
}

/// Reads the caller the interceptor put into the request.
pub fn caller(ctx: &RequestContext) -> Result<&Caller, ConnectError> {
    ctx.extensions()
        .get::<Caller>()
        .ok_or_else(|| ConnectError::unauthenticated("missing credentials"))
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

fn bearer_token(ctx: &RequestContext) -> Option<&str> {
    let value = ctx.header(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl Authenticator {
    /// Puts the caller into the request, or refuses it.
    async fn attach_caller(&self, ctx: &mut RequestContext) -> Result<(), ConnectError> {
        let path = ctx.path().unwrap_or_default().to_string();
        if PUBLIC_PROCEDURES.iter().any(|p| path.ends_with(p)) {
            return Ok(());
        }
        let token = bearer_token(ctx)
            .ok_or_else(|| ConnectError::unauthenticated("missing bearer token"))?;
        let caller = self.authenticate(token).await?;
        let runner_rpc = path.contains(RUNNER_SERVICE_PREFIX);
        if runner_rpc && !matches!(caller, Caller::Runner(_)) {
            return Err(ConnectError::permission_denied(
                "the runner interaction service takes a runner access token",
            ));
        }
        ctx.extensions_mut().insert(caller);
        Ok(())
    }
}

#[connectrpc::async_trait]
impl Interceptor for Authenticator {
    async fn intercept_unary(
        &self,
        mut req: UnaryRequest,
        next: Next<'_>,
    ) -> Result<UnaryResponse, ConnectError> {
        self.attach_caller(&mut req.ctx).await?;
        next.run(req).await
    }

    async fn intercept_streaming(
        &self,
        mut req: StreamRequest,
        inbound: PayloadStream,
        next: NextStream<'_>,
    ) -> Result<StreamResponse, ConnectError> {
        self.attach_caller(&mut req.ctx).await?;
        next.run(req, inbound).await
    }
}
