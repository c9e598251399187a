//! OAuth sign-in for SCM hosts. The runner builds the SCM's authorize link
//! (it holds the OAuth app's secret); the SCM sends the browser back here;
//! the code travels to that runner, which trades it for a token; the token is
//! stored as the user's host token (source OAUTH).
//!
//! The `state` parameter is sealed with the data key, so it cannot be forged
//! or read, and it names the user, runner and host the sign-in is for.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use corral_api::corral::v1 as runner_api;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::authz::save_host_credential;
use crate::crypto::DataKey;
use crate::domain::Timestamp;
use crate::services::convert::host_credential;
use crate::state::SharedState;

/// Path of the callback, relative to the server's public URL.
pub const CALLBACK_PATH: &str = "/auth/oauth2/callback";

/// Whom a sign-in is for; travels through the browser sealed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OAuthState {
    pub user_id: Uuid,
    pub runner_id: Uuid,
    pub host: String,
    pub expires_at: Timestamp,
}

impl OAuthState {
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

fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{0}</title></head><body><h1>{0}</h1><p>{1}</p></body></html>",
        escape(title),
        escape(text)
    );
    (status, Html(body)).into_response()
}

/// `GET /auth/oauth2/callback?code=…&state=…`
pub async fn callback(
    State(state): State<SharedState>,
    request_id: Option<axum::Extension<crate::authz::RequestId>>,
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
    // No bearer token here: the sealed state, which only this server can
    // make, names the user and runner, so the store is used without an Access.
    let store = state.unrestricted_store().as_ref();
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
        let state = OAuthState {
            user_id: Uuid::now_v7(),
            runner_id: Uuid::now_v7(),
            host: "github.com".into(),
            expires_at: Utc::now() + chrono::Duration::minutes(5),
        };
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
