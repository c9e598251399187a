//! OAuth sign-in for SCM hosts. The runner builds the SCM's authorize link
//! (it holds the OAuth app's secret); the SCM sends the browser back here;
//! the code travels to that runner, which trades it for a token; the token is
//! stored as the user's host token (source OAUTH).
//!
//! The `state` parameter is sealed with the data key, so it cannot be forged
//! or read, and it names the user, runner and host the sign-in is for. It
//! lives [`STATE_TTL`] and works once (its id is claimed in the store).
//!
//! The callback completes only in a browser signed in to corral (a dashboard
//! session, `browser_session`) as the user the state names: otherwise
//! someone could send a colleague their own sign-in link and have the
//! colleague's SCM token stored as theirs. A browser that is not signed in
//! is offered the sign-in page, which brings it back here.

use axum::extract::{Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use corral_api::corral::v1 as runner_api;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Caller;
use crate::authz::save_host_credential;
use crate::browser_session;
use crate::crypto::DataKey;
use crate::domain::Timestamp;
use crate::services::convert::host_credential;
use crate::state::SharedState;

/// Path of the callback, relative to the server's public URL.
pub const CALLBACK_PATH: &str = "/auth/oauth2/callback";

/// How long an authorize link may take to come back.
pub const STATE_TTL: chrono::Duration = chrono::Duration::minutes(10);

/// Whom a sign-in is for; travels through the browser sealed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OAuthState {
    /// Claimed when the callback completes, so the state works once.
    pub id: Uuid,
    pub user_id: Uuid,
    pub runner_id: Uuid,
    pub host: String,
    pub expires_at: Timestamp,
}

impl OAuthState {
    /// A sign-in for `user_id` through `runner_id`, valid for [`STATE_TTL`].
    pub fn new(user_id: Uuid, runner_id: Uuid, host: String) -> Self {
        Self {
            id: Uuid::now_v7(),
            user_id,
            runner_id,
            host,
            expires_at: Utc::now() + STATE_TTL,
        }
    }

    pub fn seal(&self, key: &DataKey) -> String {
        let json = serde_json::to_vec(self).expect("state always serializes");
        URL_SAFE_NO_PAD.encode(key.encrypt(&json))
    }

    pub fn open(key: &DataKey, sealed: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        let state: Self = serde_json::from_slice(&key.decrypt(&bytes).ok()?).ok()?;
        (state.expires_at > Utc::now()).then_some(state)
    }
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(status: StatusCode, title: &str, text: &str) -> Response {
    page_with_link(status, title, text, None)
}

/// A short page; `link` is `(href, label)`.
fn page_with_link(
    status: StatusCode,
    title: &str,
    text: &str,
    link: Option<(&str, &str)>,
) -> Response {
    let link = link.map_or(String::new(), |(href, label)| {
        format!("<p><a href=\"{}\">{}</a></p>", escape(href), escape(label))
    });
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{0}</title></head><body><h1>{0}</h1><p>{1}</p>{link}</body></html>",
        escape(title),
        escape(text)
    );
    let mut response = (status, Html(body)).into_response();
    // The page echoes nothing secret, but it must not be framed or cached.
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    headers.insert(
        axum::http::header::CONTENT_SECURITY_POLICY,
        axum::http::HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    response
}

/// Whether the browser is signed in as the user the sign-in is for.
enum Browser {
    SignedIn,
    NotSignedIn,
    SomeoneElse,
}

async fn browser_of(state: &SharedState, headers: &HeaderMap, user_id: Uuid) -> Browser {
    let Some(session) = browser_session::session_cookie(headers) else {
        return Browser::NotSignedIn;
    };
    match state.authenticator.authenticate_session(session).await {
        Ok(Caller::User(user)) if user.user.id == user_id => Browser::SignedIn,
        Ok(_) => Browser::SomeoneElse,
        Err(_) => Browser::NotSignedIn,
    }
}

/// `GET /auth/oauth2/callback?code=…&state=…`
pub async fn callback(
    State(state): State<SharedState>,
    request_id: Option<axum::Extension<crate::authz::RequestId>>,
    headers: HeaderMap,
    RawQuery(raw_query): RawQuery,
    Query(query): Query<CallbackQuery>,
) -> Response {
    if let Some(error) = query.error {
        let why = query.error_description.unwrap_or_default();
        return page(
            StatusCode::BAD_REQUEST,
            "Sign-in was not completed",
            &format!("The SCM said: {error} {why}"),
        );
    }
    let (Some(code), Some(sealed)) = (query.code, query.state) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "The request lacks its code or state.",
        );
    };
    let Some(sign_in) = OAuthState::open(&state.data_key, &sealed) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "This sign-in link is invalid or has expired; start again.",
        );
    };
    match browser_of(&state, &headers, sign_in.user_id).await {
        Browser::SignedIn => {}
        Browser::NotSignedIn => {
            // The sign-in page sends the browser back here afterwards.
            let back = format!("{CALLBACK_PATH}?{}", raw_query.unwrap_or_default());
            let next: String = url::form_urlencoded::byte_serialize(back.as_bytes()).collect();
            return page_with_link(
                StatusCode::UNAUTHORIZED,
                "Sign in to continue",
                "To finish connecting your SCM account, sign in to corral in this browser as the user who started it.",
                Some((&format!("/?next={next}"), "Sign in and continue")),
            );
        }
        Browser::SomeoneElse => {
            return page(
                StatusCode::FORBIDDEN,
                "Sign-in refused",
                "This sign-in was started by another user than the one signed in to corral in this browser. Nothing was stored. If you did not start it, someone may have sent you their link.",
            );
        }
    }
    // The sealed state, which only this server can make, names the user and
    // runner, and the browser's session is that user's: the store is used
    // without an Access.
    let store = state.unrestricted_store().as_ref();
    match store
        .claim_oauth_sign_in(sign_in.id, sign_in.expires_at)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return page(
                StatusCode::BAD_REQUEST,
                "Sign-in failed",
                "This sign-in link was already used; start again.",
            );
        }
        Err(err) => {
            tracing::error!(%err, "claiming an OAuth sign-in failed");
            return page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Sign-in failed",
                "The sign-in could not be checked; try again.",
            );
        }
    }
    match store.get_runner(sign_in.runner_id).await {
        Ok(runner) if runner.is_cordoned() => {
            return page(
                StatusCode::CONFLICT,
                "Sign-in failed",
                "The runner is set inactive; an admin must set it active again.",
            );
        }
        Ok(_) => {}
        Err(_) => {
            return page(
                StatusCode::BAD_REQUEST,
                "Sign-in failed",
                "The runner no longer exists.",
            );
        }
    }
    let request = runner_api::RunnerRequest {
        origin_request_id: request_id.map(|r| r.0.0).unwrap_or_default(),
        kind: Some(runner_api::runner_request::Kind::OauthCodeExchange(
            Box::new(runner_api::OAuthCodeExchange {
                user_id: sign_in.user_id.to_string(),
                host: sign_in.host.clone(),
                code,
                redirect_uri: state.oauth_redirect_uri(),
                ..Default::default()
            }),
        )),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let answered = state
        .hub
        .call(
            sign_in.runner_id,
            request,
            std::time::Duration::from_secs(30),
        )
        .await;
    state.metrics.record_forwarded_call(
        crate::metrics::ForwardedLabels {
            call: "oauth_code_exchange",
            provider: crate::metrics::scm_provider(Some(&sign_in.host)),
            outcome: crate::services::scm_forwarding::forwarded_outcome(&answered),
        },
        started.elapsed(),
    );
    let answer = match answered {
        Ok(answer) => answer,
        Err(err) => {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in failed",
                &err.message.unwrap_or_default(),
            );
        }
    };
    if let Some(failure) = answer.failure.as_option() {
        return page(StatusCode::BAD_GATEWAY, "Sign-in failed", &failure.message);
    }
    let Some(runner_api::respond_request::Result::OauthToken(credential)) = answer.result else {
        return page(
            StatusCode::BAD_GATEWAY,
            "Sign-in failed",
            "The runner returned no token.",
        );
    };
    let user = match store.get_user(sign_in.user_id).await {
        Ok(user) => user,
        Err(_) => {
            return page(
                StatusCode::BAD_REQUEST,
                "Sign-in failed",
                "The user no longer exists.",
            );
        }
    };
    let credential = host_credential(&state.data_key, &credential);
    let host = credential.host.clone();
    match save_host_credential(store, user.org_id, sign_in.runner_id, user.id, credential).await {
        Ok(_) => page(
            StatusCode::OK,
            "Signed in",
            &format!("You are signed in to {host}. You can close this window."),
        ),
        Err(err) => {
            tracing::error!(%err, "storing an OAuth host token failed");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Sign-in failed",
                "The token could not be stored.",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_state_opens_only_with_the_key_and_before_expiry() {
        let key = DataKey::from_bytes([3; 32]);
        let state = OAuthState::new(Uuid::now_v7(), Uuid::now_v7(), "github.com".into());
        let sealed = state.seal(&key);
        assert_eq!(OAuthState::open(&key, &sealed), Some(state.clone()));
        assert_eq!(
            OAuthState::open(&DataKey::from_bytes([4; 32]), &sealed),
            None
        );
        assert_eq!(OAuthState::open(&key, "garbage"), None);
        let expired = OAuthState {
            expires_at: Utc::now() - chrono::Duration::seconds(1),
            ..state
        };
        assert_eq!(OAuthState::open(&key, &expired.seal(&key)), None);
    }
}
