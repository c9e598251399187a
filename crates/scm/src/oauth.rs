//! The OAuth 2 token endpoint, as every provider documents it (RFC 6749):
//! trading an authorization code, and refreshing an expired token.

use serde::Deserialize;

use crate::ScmError;
use crate::http::Http;

/// What a token endpoint issues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// Seconds the access token lives, when the provider says.
    pub expires_in: Option<u64>,
    pub scopes: Vec<String>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    refresh_token: Option<String>,
    expires_in: Option<u64>,
    scope: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The client a runner signs users in as (its SCM integration's OAuth app).
#[derive(Clone)]
pub struct OAuthClient {
    pub client_id: String,
    pub client_secret: String,
    pub token_url: String,
}

impl OAuthClient {
    /// Trades an authorization code for a token.
    pub async fn exchange_code(
        &self,
        http: &Http,
        code: &str,
        redirect_uri: &str,
    ) -> Result<IssuedToken, ScmError> {
        self.token_request(
            http,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
            ],
        )
        .await
    }

    /// Gets a fresh access token with a refresh token.
    pub async fn refresh(&self, http: &Http, refresh_token: &str) -> Result<IssuedToken, ScmError> {
        self.token_request(
            http,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
        )
        .await
    }

    async fn token_request(
        &self,
        http: &Http,
        params: &[(&str, &str)],
    ) -> Result<IssuedToken, ScmError> {
        let mut form: Vec<(&str, &str)> = params.to_vec();
        form.push(("client_id", &self.client_id));
        form.push(("client_secret", &self.client_secret));
        let request = http
            .request(
                reqwest::Method::POST,
                &self.token_url,
                &crate::http::Auth::None,
            )
            .header("Accept", "application/json")
            .form(&form);
        let answer: TokenAnswer = http.send_json(request).await?.body;
        if let Some(error) = answer.error {
            let why = answer.error_description.unwrap_or_default();
            return Err(ScmError::AuthenticationRequired {
                host: self.token_url.clone(),
                reason: format!("the OAuth server refused: {error} {why}")
                    .trim()
                    .to_string(),
            });
        }
        let access_token = answer
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ScmError::Unavailable("the OAuth server issued no access token".into())
            })?;
        Ok(IssuedToken {
            access_token,
            refresh_token: answer.refresh_token.filter(|t| !t.is_empty()),
            expires_in: answer.expires_in,
            scopes: answer
                .scope
                .map(|s| {
                    s.split([' ', ','])
                        .filter(|p| !p.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

/// The browser's first stop: the provider's authorize page for this client.
pub fn authorize_url(
    authorize_endpoint: &str,
    client_id: &str,
    redirect_uri: &str,
    state: &str,
    scopes: &[String],
) -> String {
    let mut url = url::Url::parse(authorize_endpoint)
        .unwrap_or_else(|_| url::Url::parse("https://invalid.example").expect("static URL"));
    url.query_pairs_mut()
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("response_type", "code")
        .append_pair("state", state)
        .append_pair("scope", &scopes.join(" "));
    url.to_string()
}
