//! The runner's own logs: captured in memory, served over HTTP to holders of a
//! logs token.
//!
//! - [`Logging`] installs the tracing subscriber: stderr output (text or one
//!   JSON object per line, [`LogFormat`]), a ring buffer
//!   of the last [`LOG_CAPACITY`] lines ([`CaptureLayer`]), and a filter whose
//!   level the runner's spec changes at run time.
//! - [`verify_logs_token`] checks a `crl_lt_…` token: an Ed25519 signature by
//!   the management plane's logs key, not expired, issued for this runner.
//! - [`router`] serves `GET /logs` and `GET /support-bundle` behind that check.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use corral_api::gitpod::v1::LogLevel;
use ed25519_dalek::{Signature, VerifyingKey};
use serde::Deserialize;
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

use crate::agent::Shared;
use crate::bundle;

/// How many log lines the runner keeps in memory.
pub const LOG_CAPACITY: usize = 2000;

/// The last lines the runner logged, oldest first.
#[derive(Clone)]
pub struct LogBuffer {
    lines: Arc<Mutex<VecDeque<String>>>,
    capacity: usize,
}

impl LogBuffer {
    pub fn new(capacity: usize) -> Self {
        Self {
            lines: Arc::new(Mutex::new(VecDeque::with_capacity(capacity.min(4096)))),
            capacity: capacity.max(1),
        }
    }

    /// Appends a line (tokens in it are redacted), dropping the oldest when full.
    pub fn push(&self, line: &str) {
        let line = redact_tokens(line);
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == self.capacity {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// All kept lines, oldest first, each ending in a newline.
    pub fn text(&self) -> String {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for line in lines.iter() {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    pub fn len(&self) -> usize {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Replaces the secret part of corral tokens (`crl_<kind>_<secret>`) with
/// `[redacted]`, so that a token that slipped into a log line is not served.
pub fn redact_tokens(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find("crl_") {
        out.push_str(&rest[..at]);
        let candidate = &rest[at + 4..];
        let kind_len = candidate.bytes().take_while(u8::is_ascii_lowercase).count();
        let is_token = kind_len > 0 && candidate.as_bytes().get(kind_len) == Some(&b'_');
        if !is_token {
            out.push_str("crl_");
            rest = candidate;
            continue;
        }
        out.push_str(&rest[at..at + 4 + kind_len + 1]);
        let secret = &candidate[kind_len + 1..];
        let secret_len = secret
            .bytes()
            .take_while(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'=' | b'+' | b'/')
            })
            .count();
        if secret_len > 0 {
            out.push_str("[redacted]");
        }
        rest = &secret[secret_len..];
    }
    out.push_str(rest);
    out
}

/// A tracing layer that formats each event as one line into a [`LogBuffer`].
pub struct CaptureLayer {
    buffer: LogBuffer,
}

impl CaptureLayer {
    pub fn new(buffer: LogBuffer) -> Self {
        Self { buffer }
    }
}

impl<S: Subscriber> Layer<S> for CaptureLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut line = format!(
            "{} {:>5} {}:",
            Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            meta.level(),
            meta.target()
        );
        event.record(&mut LineVisitor(&mut line));
        self.buffer.push(&line);
    }
}

/// Appends an event's message and fields to a line.
struct LineVisitor<'a>(&'a mut String);

impl tracing::field::Visit for LineVisitor<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

/// The filter directives for a level from the runner's spec; `None` keeps the
/// current level (LOG_LEVEL_UNSPECIFIED or an unknown value).
pub fn filter_directives(level: LogLevel) -> Option<&'static str> {
    match level {
        // Debug for corral itself only; the HTTP stack is noisy at debug.
        LogLevel::LOG_LEVEL_DEBUG => Some("info,corral_runner=debug,corral=debug"),
        LogLevel::LOG_LEVEL_INFO => Some("info"),
        LogLevel::LOG_LEVEL_WARN => Some("warn"),
        LogLevel::LOG_LEVEL_ERROR => Some("error"),
        LogLevel::LOG_LEVEL_UNSPECIFIED => None,
    }
}

/// The runner's logging: the captured lines and the handle that changes the level.
#[derive(Clone)]
pub struct Logging {
    buffer: LogBuffer,
    reload: Option<reload::Handle<EnvFilter, Registry>>,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl Logging {
    /// Installs the global subscriber: stderr in `format` plus the in-memory
    /// buffer, at the level in `CORRAL_LOG` (default `info`) until the spec
    /// says otherwise. Fails if a global subscriber is already installed.
    pub fn init(format: LogFormat) -> Result<Self, crate::Error> {
        let initial =
            EnvFilter::try_from_env("CORRAL_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
        let (filter, handle) = reload::Layer::new(initial);
        let buffer = LogBuffer::new(LOG_CAPACITY);
        let json = format == LogFormat::Json;
        tracing_subscriber::registry()
            .with(filter)
            .with((!json).then(|| {
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal())
            }))
            .with(json.then(|| {
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
            }))
            .with(CaptureLayer::new(buffer.clone()))
            .try_init()
            .map_err(|e| crate::Error::Logging(e.to_string()))?;
        Ok(Self {
            buffer,
            reload: Some(handle),
        })
    }

    /// Logging that installs nothing: for embedding the agent (e.g. in tests)
    /// where the host owns the subscriber. Add [`CaptureLayer`] with
    /// [`Logging::buffer`] to the host's subscriber to fill the buffer.
    pub fn detached() -> Self {
        Self {
            buffer: LogBuffer::new(LOG_CAPACITY),
            reload: None,
        }
    }

    pub fn buffer(&self) -> &LogBuffer {
        &self.buffer
    }

    /// Applies the log level from the runner's spec.
    pub fn set_level(&self, level: LogLevel) {
        let (Some(handle), Some(directives)) = (&self.reload, filter_directives(level)) else {
            return;
        };
        if let Err(e) = handle.reload(EnvFilter::new(directives)) {
            tracing::warn!("could not change the log level: {e}");
        }
    }
}

/// What a valid logs token grants: reading this runner's logs until `expires_at`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LogsGrant {
    pub runner_id: String,
    pub subject_id: String,
    pub expires_at: String,
}

/// Why a logs token was refused; the message is the 401 body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    #[error("a logs token is required (Authorization: Bearer crl_lt_… or ?token=)")]
    Missing,
    #[error("not a logs token")]
    NotALogsToken,
    #[error("malformed logs token")]
    Malformed,
    #[error("logs token signature is not valid")]
    BadSignature,
    #[error("logs token has expired")]
    Expired,
    #[error("logs token is for another runner")]
    WrongRunner,
    #[error("the runner has not signed up yet and cannot check logs tokens")]
    NotSignedUp,
}

/// Checks a logs token (`crl_lt_<payload>.<signature>`, both base64url
/// without padding) against the management plane's key, the clock and this
/// runner's id.
pub fn verify_logs_token(
    key: &VerifyingKey,
    token: &str,
    runner_id: &str,
    now: DateTime<Utc>,
) -> Result<LogsGrant, TokenRejection> {
    let body = token
        .trim()
        .strip_prefix("crl_lt_")
        .ok_or(TokenRejection::NotALogsToken)?;
    let (payload, signature) = body.split_once('.').ok_or(TokenRejection::Malformed)?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenRejection::Malformed)?;
    let signature: [u8; 64] = URL_SAFE_NO_PAD
        .decode(signature)
        .ok()
        .and_then(|s| s.try_into().ok())
        .ok_or(TokenRejection::Malformed)?;
    key.verify_strict(&payload, &Signature::from_bytes(&signature))
        .map_err(|_| TokenRejection::BadSignature)?;
    let grant: LogsGrant =
        serde_json::from_slice(&payload).map_err(|_| TokenRejection::Malformed)?;
    let expires_at =
        DateTime::parse_from_rfc3339(&grant.expires_at).map_err(|_| TokenRejection::Malformed)?;
    if expires_at <= now {
        return Err(TokenRejection::Expired);
    }
    if !grant.runner_id.eq_ignore_ascii_case(runner_id.trim()) {
        return Err(TokenRejection::WrongRunner);
    }
    Ok(grant)
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// The token from `Authorization: Bearer …`, else from `?token=`.
fn presented_token(headers: &HeaderMap, query: &TokenQuery) -> Option<String> {
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_string())
        });
    from_header
        .or_else(|| query.token.clone())
        .filter(|t| !t.is_empty())
}

fn authorize(
    shared: &Shared,
    headers: &HeaderMap,
    query: &TokenQuery,
) -> Result<LogsGrant, TokenRejection> {
    let token = presented_token(headers, query).ok_or(TokenRejection::Missing)?;
    let (key, runner_id) = shared.logs_verifier().ok_or(TokenRejection::NotSignedUp)?;
    verify_logs_token(&key, &token, &runner_id, Utc::now())
}

/// 401 with the reason as the body.
fn unauthorized(rejection: TokenRejection) -> Response {
    tracing::info!("refused a logs request: {rejection}");
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        format!("{rejection}\n"),
    )
        .into_response()
}

async fn logs(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
) -> Response {
    let grant = match authorize(&shared, &headers, &query) {
        Ok(grant) => grant,
        Err(rejection) => return unauthorized(rejection),
    };
    tracing::debug!(subject = %grant.subject_id, "serving logs");
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        shared.logs.text(),
    )
        .into_response()
}

async fn support_bundle(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
) -> Response {
    let grant = match authorize(&shared, &headers, &query) {
        Ok(grant) => grant,
        Err(rejection) => return unauthorized(rejection),
    };
    tracing::info!(subject = %grant.subject_id, "serving a support bundle");
    match bundle::support_bundle(&shared.bundle_contents()) {
        Ok(bytes) => {
            let name = format!(
                "attachment; filename=\"corral-runner-{}-support-bundle.tar.gz\"",
                shared.runner_id().unwrap_or_default()
            );
            (
                [
                    (header::CONTENT_TYPE, "application/gzip".to_string()),
                    (header::CONTENT_DISPOSITION, name),
                    (header::CACHE_CONTROL, "no-store".to_string()),
                ],
                bytes,
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!("could not build a support bundle: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not build the support bundle\n",
            )
                .into_response()
        }
    }
}

/// `GET /logs` and `GET /support-bundle`, both behind a logs token.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/logs", get(logs))
        .route("/support-bundle", get(support_bundle))
        .with_state(shared)
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};

    use super::*;

    const RUNNER: &str = "0190a000-0000-7000-8000-000000000001";

    fn sign(key: &SigningKey, payload: &str) -> String {
        let signature = key.sign(payload.as_bytes());
        format!(
            "crl_lt_{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }

    fn payload(runner_id: &str, expires_at: DateTime<Utc>) -> String {
        serde_json::json!({
            "runner_id": runner_id,
            "subject_id": "0190a000-0000-7000-8000-0000000000aa",
            "expires_at": expires_at.to_rfc3339(),
        })
        .to_string()
    }

    #[test]
    fn logs_tokens_verify_only_when_signed_fresh_and_for_this_runner() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let public = key.verifying_key();
        let now = Utc::now();
        let later = now + chrono::Duration::minutes(15);

        let good = sign(&key, &payload(RUNNER, later));
        let grant = verify_logs_token(&public, &good, RUNNER, now).unwrap();
        assert_eq!(grant.runner_id, RUNNER);
        assert_eq!(grant.subject_id, "0190a000-0000-7000-8000-0000000000aa");

        let expired = sign(&key, &payload(RUNNER, now - chrono::Duration::seconds(1)));
        assert_eq!(
            verify_logs_token(&public, &expired, RUNNER, now),
            Err(TokenRejection::Expired)
        );

        let other_runner = sign(
            &key,
            &payload("0190a000-0000-7000-8000-000000000002", later),
        );
        assert_eq!(
            verify_logs_token(&public, &other_runner, RUNNER, now),
            Err(TokenRejection::WrongRunner)
        );

        let forged = sign(&SigningKey::from_bytes(&[8; 32]), &payload(RUNNER, later));
        assert_eq!(
            verify_logs_token(&public, &forged, RUNNER, now),
            Err(TokenRejection::BadSignature)
        );

        // The signature covers the payload: swapping payloads breaks it.
        let (_, signature) = good.split_once('.').unwrap();
        let tampered = format!(
            "crl_lt_{}.{signature}",
            URL_SAFE_NO_PAD.encode(payload(RUNNER, later + chrono::Duration::days(365)))
        );
        assert_eq!(
            verify_logs_token(&public, &tampered, RUNNER, now),
            Err(TokenRejection::BadSignature)
        );

        assert_eq!(
            verify_logs_token(&public, "crl_pat_abc", RUNNER, now),
            Err(TokenRejection::NotALogsToken)
        );
        assert_eq!(
            verify_logs_token(&public, "crl_lt_abc", RUNNER, now),
            Err(TokenRejection::Malformed)
        );
        assert_eq!(
            verify_logs_token(&public, "crl_lt_!!.??", RUNNER, now),
            Err(TokenRejection::Malformed)
        );
        let not_json = sign(&key, "hello");
        assert_eq!(
            verify_logs_token(&public, &not_json, RUNNER, now),
            Err(TokenRejection::Malformed)
        );
    }

    #[test]
    fn tokens_come_from_the_header_or_the_query() {
        let mut headers = HeaderMap::new();
        let none = TokenQuery { token: None };
        assert_eq!(presented_token(&headers, &none), None);
        let query = TokenQuery {
            token: Some("crl_lt_q".into()),
        };
        assert_eq!(
            presented_token(&headers, &query).as_deref(),
            Some("crl_lt_q")
        );
        headers.insert(header::AUTHORIZATION, "Bearer crl_lt_h".parse().unwrap());
        assert_eq!(
            presented_token(&headers, &query).as_deref(),
            Some("crl_lt_h")
        );
    }

    #[test]
    fn ring_buffer_keeps_the_last_lines() {
        let buffer = LogBuffer::new(3);
        for i in 0..5 {
            buffer.push(&format!("line {i}"));
        }
        assert_eq!(buffer.len(), 3);
        assert_eq!(buffer.text(), "line 2\nline 3\nline 4\n");
    }

    #[test]
    fn tokens_in_log_lines_are_redacted() {
        assert_eq!(
            redact_tokens("got crl_rt_abcDEF-123 and crl_lt_e30.sig, not crl_ or crl_X"),
            "got crl_rt_[redacted] and crl_lt_[redacted], not crl_ or crl_X"
        );
        assert_eq!(redact_tokens("plain"), "plain");
    }

    #[test]
    fn capture_layer_formats_events() {
        let buffer = LogBuffer::new(10);
        let subscriber = tracing_subscriber::registry().with(CaptureLayer::new(buffer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(attempt = 3, "server unreachable");
        });
        let text = buffer.text();
        assert!(
            text.contains(" WARN corral_runner::logs::tests: server unreachable attempt=3"),
            "{text}"
        );
    }

    #[test]
    fn spec_levels_map_to_filters() {
        assert_eq!(filter_directives(LogLevel::LOG_LEVEL_WARN), Some("warn"));
        assert!(
            filter_directives(LogLevel::LOG_LEVEL_DEBUG)
                .unwrap()
                .contains("corral_runner=debug")
        );
        assert_eq!(filter_directives(LogLevel::LOG_LEVEL_UNSPECIFIED), None);
    }
}
