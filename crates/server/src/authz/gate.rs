//! [`Gate`]: the interceptor every RPC passes. It runs after the request body
//! is read but before it is decoded, so a refused call costs no decoding.
//!
//! In order: find the RPC's row in the policy table (none: refused); resolve
//! the bearer token unless the permission needs none; decide what can be
//! decided from the caller alone (token kind, read-only, organization admin);
//! hand the handler an [`Access`]; afterwards, for RPCs the table audits,
//! record the audit event (refusals included), and announce the changes the
//! call made. Every call is counted and timed (`corral_rpc_*`, by the policy
//! table's service and method, `unknown` for paths it lacks), and a refused
//! caller (unauthenticated, permission denied) is logged with the RPC, the
//! reason, the client's address and the kind of token — never the token.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use connectrpc::interceptor::{StreamRequest, StreamResponse, UnaryRequest, UnaryResponse};
use connectrpc::{ConnectError, Interceptor, Next, NextStream, PayloadStream, RequestContext};

use super::access::{Access, Notes};
use super::policy::{self, Rpc, Who};
use super::{Target, decide};
use crate::auth::{Authenticator, Caller};
use crate::browser_session;
use crate::domain::{AuditEvent, new_id};
use crate::events::EventHub;
use crate::metrics::{self, Metrics, RpcLabels};
use crate::pagination::PageKey;
use crate::store::{Store, group_commit};

/// The id of one HTTP request: from a sane `x-request-id` header, or new.
/// Logs and audit events carry it; it is echoed in the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// The peer address of the connection a request came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub SocketAddr);

pub struct Gate {
    authenticator: Arc<Authenticator>,
    store: Arc<dyn Store>,
    page_key: PageKey,
    events: Arc<EventHub>,
    metrics: Arc<Metrics>,
}

/// What the audit event of a call needs from its request.
struct CallInfo {
    request_id: String,
    /// Formatted only when an event is recorded.
    client_address: Option<std::net::IpAddr>,
}

impl CallInfo {
    fn of(ctx: &RequestContext) -> Self {
        let extensions = ctx.extensions();
        let client_address = extensions
            .get::<ClientAddress>()
            .map(|a| a.0)
            .or_else(|| {
                extensions
                    .get::<axum::extract::ConnectInfo<SocketAddr>>()
                    .map(|c| c.0)
            })
            .map(|a| a.ip());
        Self {
            request_id: extensions
                .get::<RequestId>()
                .map(|r| r.0.clone())
                .unwrap_or_default(),
            client_address,
        }
    }
}

impl Gate {
    pub fn new(
        authenticator: Arc<Authenticator>,
        store: Arc<dyn Store>,
        page_key: PageKey,
        events: Arc<EventHub>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            authenticator,
            store,
            page_key,
            events,
            metrics,
        }
    }

    /// Counts and times a call of `(service, method)` that began at `started`.
    fn record(
        &self,
        called: (&'static str, &'static str),
        started: Instant,
        outcome: &'static str,
    ) {
        let (service, method) = called;
        self.metrics.record_rpc(
            RpcLabels {
                service,
                method,
                code: outcome,
            },
            started.elapsed(),
        );
    }

    /// Decides whether the call may go ahead; `Ok` carries the access the
    /// handler works through. A refusal of a known caller is returned with
    /// that access so that it can be audited.
    async fn admit(&self, ctx: &RequestContext) -> Result<Access, (ConnectError, Option<Access>)> {
        let path = ctx.path().unwrap_or_default();
        let Some(rpc) = policy::rpc_for(path) else {
            return Err((
                ConnectError::permission_denied(format!("no authorization policy covers {path}")),
                None,
            ));
        };
        let Some(permission) = rpc.permission() else {
            return Err((
                ConnectError::permission_denied(format!("nobody may call {}", rpc.procedure)),
                None,
            ));
        };
        let caller = if permission.who == Who::Anyone {
            None
        } else {
            Some(self.authenticate(ctx).await.map_err(|e| (e, None))?)
        };
        let mut decided = decide(caller.as_ref(), permission, Target::Unknown);
        for &(resource, action) in rpc.also {
            if decided.is_err() {
                break;
            }
            decided = match policy::permission(resource, action) {
                Some(also) => decide(caller.as_ref(), also, Target::Unknown),
                None => Err(super::Denial::Forbidden(format!(
                    "nobody may call {}",
                    rpc.procedure
                ))),
            };
        }
        let access = Access::new(self.store.clone(), caller, rpc, self.page_key.clone());
        match decided {
            Ok(()) => Ok(access),
            Err(denial) => Err((denial.into_error(rpc.procedure), Some(access))),
        }
    }

    /// The caller: by the bearer token, or else by the dashboard's session
    /// cookie together with its CSRF header (`browser_session`).
    async fn authenticate(&self, ctx: &RequestContext) -> Result<Caller, ConnectError> {
        if let Some(token) = bearer_token(ctx) {
            return self.authenticator.authenticate(token).await;
        }
        let Some(session) = browser_session::session_cookie(ctx.headers()) else {
            return Err(ConnectError::unauthenticated("missing bearer token"));
        };
        if !browser_session::csrf_matches(ctx.headers(), session) {
            return Err(ConnectError::unauthenticated(browser_session::CSRF_REFUSAL));
        }
        self.authenticator.authenticate_session(session).await
    }

    /// After a call: the audit event, and the changes it made announced.
    async fn finish(&self, access: &Access, info: &CallInfo, outcome: Result<(), &ConnectError>) {
        let rpc = access.rpc();
        let notes = access.take_notes();
        // Before the answer leaves: the caller's next call must not find a
        // stale caller here; other replicas hear of it just after.
        if notes.callers_changed {
            self.authenticator.forget_callers();
            self.events.publish_callers_changed().await;
        }
        if let Some(kind) = rpc.audit {
            self.audit(rpc, kind, access, &notes, info, outcome).await;
        }
        if outcome.is_ok() {
            for change in notes.changes {
                self.events.publish(change).await;
            }
        }
    }

    async fn audit(
        &self,
        rpc: &'static Rpc,
        kind: crate::domain::AuditKind,
        access: &Access,
        notes: &Notes,
        info: &CallInfo,
        outcome: Result<(), &ConnectError>,
    ) {
        let (org_id, actor, token_id) = match access.caller() {
            Ok(caller) => (
                caller.org_id(),
                Some(caller.subject()),
                Some(token_id(caller)),
            ),
            Err(_) => match notes.anonymous_actor {
                Some((org_id, actor)) => (org_id, Some(actor), None),
                // Nobody to attribute it to (a rejected exchange token):
                // the log has it, the trail of no organization does.
                None => return,
            },
        };
        let event = AuditEvent {
            id: new_id(),
            org_id,
            at: Utc::now(),
            actor,
            token_id,
            rpc: rpc.procedure.to_string(),
            kind,
            subject_kind: rpc.subject_kind(),
            subject_id: notes.subject,
            outcome: match outcome {
                Ok(()) => "ok".into(),
                Err(err) => err.code.as_str().to_string(),
            },
            request_id: info.request_id.clone(),
            client_address: info
                .client_address
                .map(|a| a.to_string())
                .unwrap_or_default(),
        };
        // The change is made; a trail that cannot be written must not undo
        // it, but must not go unnoticed either.
        if let Err(err) = self.store.record_audit_event(&event).await {
            tracing::error!(
                error = %err,
                rpc = rpc.procedure,
                request_id = %info.request_id,
                "could not record an audit event"
            );
        }
    }
}

fn token_id(caller: &Caller) -> uuid::Uuid {
    match caller {
        Caller::User(u) => u.token_id,
        Caller::Runner(r) => r.token_id,
    }
}

/// The service and method of the call as the policy table names them;
/// `unknown` for a path it lacks, so no request adds label values.
fn called(ctx: &RequestContext) -> (&'static str, &'static str) {
    match policy::rpc_for(ctx.path().unwrap_or_default()) {
        Some(rpc) => (
            rpc.procedure.split('/').next().unwrap_or(metrics::UNKNOWN),
            rpc.method(),
        ),
        None => (metrics::UNKNOWN, metrics::UNKNOWN),
    }
}

/// One line for an operator when the gate turns a caller away for who they
/// are (not for what they sent): which RPC, why, from where, and the kind of
/// token they showed, told from its prefix. The token itself stays out.
fn log_refusal(ctx: &RequestContext, info: &CallInfo, err: &ConnectError) {
    if !matches!(
        err.code,
        connectrpc::ErrorCode::Unauthenticated | connectrpc::ErrorCode::PermissionDenied
    ) {
        return;
    }
    let token_kind = match bearer_token(ctx) {
        None if browser_session::session_cookie(ctx.headers()).is_some() => "session_cookie",
        None => "none",
        Some(token) => match crate::crypto::token_kind(token) {
            Some(crate::domain::TokenKind::Personal) => "personal",
            Some(crate::domain::TokenKind::RunnerAccess) => "runner_access",
            Some(crate::domain::TokenKind::Exchange) => "exchange",
            Some(crate::domain::TokenKind::Session) => "session",
            None => "unrecognized",
        },
    };
    let rpc = policy::rpc_for(ctx.path().unwrap_or_default())
        .map_or(metrics::UNKNOWN, |rpc| rpc.procedure);
    tracing::info!(
        rpc,
        code = err.code.as_str(),
        reason = err.message.as_deref().unwrap_or_default(),
        client_address = %info.client_address.map(|a| a.to_string()).unwrap_or_default(),
        token_kind,
        request_id = %info.request_id,
        "refused a caller"
    );
}

fn bearer_token(ctx: &RequestContext) -> Option<&str> {
    let value = ctx.header(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[connectrpc::async_trait]
impl Interceptor for Gate {
    async fn intercept_unary(
        &self,
        mut req: UnaryRequest,
        next: Next<'_>,
    ) -> Result<UnaryResponse, ConnectError> {
        let started = Instant::now();
        let called = called(&req.ctx);
        let info = CallInfo::of(&req.ctx);
        let access = match self.admit(&req.ctx).await {
            Ok(access) => access,
            Err((err, access)) => {
                log_refusal(&req.ctx, &info, &err);
                if let Some(access) = access {
                    self.finish(&access, &info, Err(&err)).await;
                }
                self.record(called, started, err.code.as_str());
                return Err(err);
            }
        };
        req.ctx.extensions_mut().insert(access.clone());
        // The call's writes and its audit event share one flush to disk
        // (store::group_commit); the answer waits for it.
        let (mut result, deferred) = group_commit::deferring(next.run(req)).await;
        self.finish(&access, &info, result.as_ref().map(|_| ()))
            .await;
        if let Err(err) = deferred.settle().await {
            tracing::error!(error = %err, request_id = %info.request_id, "a write could not be made durable");
            result = Err(ConnectError::internal(
                "the change could not be saved to disk",
            ));
        }
        self.record(called, started, metrics::outcome(&result));
        result
    }

    async fn intercept_streaming(
        &self,
        mut req: StreamRequest,
        inbound: PayloadStream,
        next: NextStream<'_>,
    ) -> Result<StreamResponse, ConnectError> {
        // Streams (a runner's work, change notifications) are not audited:
        // they change nothing themselves.
        let started = Instant::now();
        let called = called(&req.ctx);
        let access = match self.admit(&req.ctx).await {
            Ok(access) => access,
            Err((err, _)) => {
                log_refusal(&req.ctx, &CallInfo::of(&req.ctx), &err);
                self.record(called, started, err.code.as_str());
                return Err(err);
            }
        };
        req.ctx.extensions_mut().insert(access);
        let result = next.run(req, inbound).await;
        self.record(called, started, metrics::outcome(&result));
        result
    }
}
