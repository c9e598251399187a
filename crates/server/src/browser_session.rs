//! Browser sessions for the dashboard: an API token is traded once for a
//! session, whose token travels only in an HttpOnly cookie. The dashboard
//! calls the same Connect API as every other client; the gate
//! (`authz::Gate`) takes the cookie when no bearer token is given, and then
//! demands the session's CSRF token in the `X-CSRF-Token` header.
//!
//! Why the header stops cross-site requests: a page of another origin can
//! make the browser send the cookie, but it cannot read the CSRF token (it is
//! only in the answers of this origin) and cannot set a custom header on a
//! cross-origin request without a CORS preflight, which this server never
//! grants.
//!
//! - `POST /auth/session` `{"token": "crl_pat_…"}` → the session ([`SessionInfo`]) and its cookie;
//! - `GET /auth/session` → the session of the cookie, or 401;
//! - `DELETE /auth/session` (with `X-CSRF-Token`) → the session is revoked.
//!
//! Sessions are tokens of kind [`TokenKind::Session`], stored hashed like
//! every token, and expire after [`SESSION_TTL`]; suspending the user or
//! deleting the token ends them at once.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::{Caller, UserCaller};
use crate::crypto;
use crate::domain::{
    ApiToken, AuditEvent, AuditKind, OrgRole, ResourceKind, Subject, Timestamp, TokenKind, new_id,
};
use crate::state::SharedState;

/// Path of the session endpoints.
pub const PATH: &str = "/auth/session";

/// The cookie that carries the session token.
pub const COOKIE: &str = "corral_session";

/// The header every cookie-authenticated call must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How long a session lasts from sign-in.
pub const SESSION_TTL: chrono::Duration = chrono::Duration::hours(12);

/// The largest sign-in body read (a token is ~50 bytes).
pub const MAX_SIGN_IN_BYTES: usize = 4 * 1024;

/// What the dashboard learns of its session.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    pub user_id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub email: String,
    /// `admin` or `member`.
    pub role: String,
    pub read_only: bool,
    /// To be sent back in `X-CSRF-Token` with every call.
    pub csrf_token: String,
    pub expires_at: Timestamp,
}

#[derive(Deserialize)]
pub struct SignIn {
    token: String,
}

/// The CSRF token of a session: derived from the session token, so that
/// nothing more is stored, and useless without the cookie it belongs to.
/// (The prefix keeps it from being the hash the store keeps of the token.)
pub fn csrf_token(session_token: &str) -> String {
    crypto::token_hash(&format!("corral csrf token\0{session_token}"))
}

/// The session token in the request's cookies, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim_matches('"'))
        .filter(|value| !value.is_empty())
}

/// Whether the request carries the CSRF token of `session_token`.
pub fn csrf_matches(headers: &HeaderMap, session_token: &str) -> bool {
    let Some(given) = headers.get(CSRF_HEADER).map(HeaderValue::as_bytes) else {
        return false;
    };
    constant_time_eq(given, csrf_token(session_token).as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why the gate turns a cookie-authenticated call away when its CSRF
/// header is missing or wrong.
pub const CSRF_REFUSAL: &str =
    "a call with a session cookie must carry the session's X-CSRF-Token header";

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// Whether the request came from a page of this server: the `Origin` header,
/// when the browser sends one, names the host the request was sent to or
/// the public URL.
fn same_origin(state: &SharedState, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true;
    };
    if origin == state.public_url {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let authority = origin.split_once("://").map(|(_, rest)| rest);
    matches!((authority, host), (Some(a), Some(h)) if a == h)
}

fn secure(state: &SharedState) -> bool {
    state.public_url.starts_with("https://")
}

fn set_cookie(state: &SharedState, token: &str, max_age: i64) -> HeaderValue {
    let secure = if secure(state) { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .expect("tokens are URL-safe base64")
}

fn info(user: &UserCaller, session_token: &str, expires_at: Timestamp) -> SessionInfo {
    SessionInfo {
        user_id: user.user.id,
        org_id: user.org_id,
        name: user.user.name.clone(),
        email: user.user.email.clone(),
        role: match user.role {
            OrgRole::Admin => "admin",
            OrgRole::Member => "member",
        }
        .into(),
        read_only: user.read_only,
        csrf_token: csrf_token(session_token),
        expires_at,
    }
}

/// `POST /auth/session`: an API token of a user becomes a browser session.
pub async fn sign_in(
    State(state): State<SharedState>,
    call: CallOrigin,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    if !json {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the token as JSON: {\"token\": \"…\"}",
        );
    }
    if !same_origin(&state, &headers) {
        return error(
            StatusCode::FORBIDDEN,
            "sign in from this server's own pages",
        );
    }
    let Ok(SignIn { token }) = serde_json::from_slice::<SignIn>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "send the token as JSON: {\"token\": \"…\"}",
        );
    };
    let token = token.trim();
    if crypto::token_kind(token) != Some(TokenKind::Personal) {
        return error(
            StatusCode::UNAUTHORIZED,
            "sign in with a personal access token (crl_pat_…)",
        );
    }
    let user = match state.authenticator.authenticate(token).await {
        Ok(Caller::User(user)) => user,
        Ok(Caller::Runner(_)) | Err(_) => {
            return error(StatusCode::UNAUTHORIZED, "that token is not valid");
        }
    };
    let session_token = crypto::new_token(TokenKind::Session);
    let now = Utc::now();
    let session = ApiToken {
        id: new_id(),
        kind: TokenKind::Session,
        hash: crypto::token_hash(&session_token),
        org_id: user.org_id,
        subject: Subject::User(user.user.id),
        creator: Subject::User(user.user.id),
        description: "browser session".into(),
        // A session can do no more than the token it was opened with.
        read_only: user.read_only,
        created_at: now,
        expires_at: Some(now + SESSION_TTL),
        last_used: None,
        used_at: None,
    };
    let store = state.unrestricted_store();
    if let Err(err) = store.create_token(&session).await {
        tracing::error!(%err, "storing a browser session failed");
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the session could not be stored",
        );
    }
    let opened = SessionEvent {
        org_id: user.org_id,
        user_id: user.user.id,
        token_id: user.token_id,
        action: "SignIn",
    };
    audit(&state, opened, &call).await;
    tracing::info!(user_id = %user.user.id, "browser session opened");
    let body = info(&user, &session_token, now + SESSION_TTL);
    let mut response = Json(body).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(&state, &session_token, SESSION_TTL.num_seconds()),
    );
    no_store(response)
}

/// `GET /auth/session`: the session of the cookie.
pub async fn current(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    let Some(session_token) = session_cookie(&headers) else {
        return error(StatusCode::UNAUTHORIZED, "not signed in");
    };
    let Ok(Caller::User(user)) = state
        .authenticator
        .authenticate_session(session_token)
        .await
    else {
        return error(
            StatusCode::UNAUTHORIZED,
            "the session has ended; sign in again",
        );
    };
    let stored = state
        .unrestricted_store()
        .find_token_by_hash(&crypto::token_hash(session_token))
        .await;
    let Ok(Some(ApiToken {
        expires_at: Some(expires_at),
        ..
    })) = stored
    else {
        return error(
            StatusCode::UNAUTHORIZED,
            "the session has ended; sign in again",
        );
    };
    no_store(Json(info(&user, session_token, expires_at)).into_response())
}

/// `DELETE /auth/session`: revokes the session and clears its cookie.
pub async fn sign_out(
    State(state): State<SharedState>,
    call: CallOrigin,
    headers: HeaderMap,
) -> Response {
    let Some(session_token) = session_cookie(&headers) else {
        return error(StatusCode::UNAUTHORIZED, "not signed in");
    };
    if !csrf_matches(&headers, session_token) {
        return error(StatusCode::FORBIDDEN, CSRF_REFUSAL);
    }
    let store = state.unrestricted_store();
    let found = store
        .find_token_by_hash(&crypto::token_hash(session_token))
        .await;
    if let Ok(Some(session)) = found {
        if let Err(err) = store.delete_token(session.id).await {
            tracing::error!(%err, "revoking a browser session failed");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the session could not be revoked",
            );
        }
        // Every replica forgets the session now, not after the caller TTL.
        state.authenticator.forget_callers();
        state.events.publish_callers_changed().await;
        if let Subject::User(user_id) = session.subject {
            let closed = SessionEvent {
                org_id: session.org_id,
                user_id,
                token_id: session.id,
                action: "SignOut",
            };
            audit(&state, closed, &call).await;
        }
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, set_cookie(&state, "", 0));
    response
}

/// Answers about sessions are never cached.
fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Who opened or closed a session, for the audit trail.
struct SessionEvent {
    org_id: Uuid,
    user_id: Uuid,
    /// The token that acted: the API token at sign-in, the session at sign-out.
    token_id: Uuid,
    action: &'static str,
}

async fn audit(state: &SharedState, what: SessionEvent, call: &CallOrigin) {
    let event = AuditEvent {
        id: new_id(),
        org_id: what.org_id,
        at: Utc::now(),
        actor: Some(Subject::User(what.user_id)),
        token_id: Some(what.token_id),
        rpc: format!("corral.dashboard/{}", what.action),
        kind: AuditKind::ResourceChange,
        subject_kind: ResourceKind::User,
        subject_id: Some(what.user_id),
        outcome: "ok".into(),
        request_id: call.request_id.clone(),
        client_address: call.client_address.clone(),
    };
    if let Err(err) = state.unrestricted_store().record_audit_event(&event).await {
        tracing::error!(%err, rpc = %event.rpc, "could not record an audit event");
    }
}

/// The request id and client address of an HTTP request, for its audit event.
pub struct CallOrigin {
    request_id: String,
    client_address: String,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for CallOrigin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        let extensions = &parts.extensions;
        Ok(Self {
            request_id: extensions
                .get::<crate::authz::RequestId>()
                .map(|r| r.0.clone())
                .unwrap_or_default(),
            client_address: extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip().to_string())
                .unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; corral_session=crl_ses_x; b=2")]);
        assert_eq!(session_cookie(&h), Some("crl_ses_x"));
        let h = headers(&[("cookie", "a=1"), ("cookie", "corral_session=crl_ses_y")]);
        assert_eq!(session_cookie(&h), Some("crl_ses_y"));
        let h = headers(&[("cookie", "corral_sessionx=1; corral_session=")]);
        assert_eq!(session_cookie(&h), None);
    }

    #[test]
    fn the_csrf_token_belongs_to_its_session_only() {
        let token = crypto::new_token(TokenKind::Session);
        let other = crypto::new_token(TokenKind::Session);
        let right = csrf_token(&token);
        assert_ne!(right, csrf_token(&other));
        assert_ne!(
            right,
            crypto::token_hash(&token),
            "the stored hash is no CSRF token"
        );
        assert!(csrf_matches(&headers(&[("x-csrf-token", &right)]), &token));
        assert!(!csrf_matches(&headers(&[("x-csrf-token", &right)]), &other));
        assert!(!csrf_matches(&headers(&[]), &token));
        assert!(!csrf_matches(&headers(&[("x-csrf-token", "")]), &token));
    }
}
