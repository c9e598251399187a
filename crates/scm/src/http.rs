//! The one HTTP client providers share: a deadline on every call, and SCM
//! answers mapped to [`ScmError`] the same way for every provider.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;

use crate::ScmError;

/// How long one SCM call may take unless the caller sets otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    host: String,
}

/// How a provider presents a token.
#[derive(Debug, Clone)]
pub enum Auth {
    None,
    /// `Authorization: Bearer <token>`
    Bearer(String),
    /// `Authorization: token <token>` (GitHub and Gitea also accept Bearer).
    Token(String),
    /// `Authorization: Basic base64(user:password)`
    Basic {
        username: String,
        password: String,
    },
    /// A header of the provider's own, e.g. GitLab's `PRIVATE-TOKEN`.
    Header(&'static str, String),
}

/// A successful answer: the decoded body and the response headers (paging).
pub struct Answer<T> {
    pub body: T,
    pub headers: HeaderMap,
}

impl Http {
    /// A client for one SCM host (`host` names it in error messages).
    pub fn new(host: &str, timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("corral-runner/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("building an HTTP client with static settings");
        Self {
            client,
            host: host.to_string(),
        }
    }

    pub fn request(&self, method: Method, url: &str, auth: &Auth) -> RequestBuilder {
        let builder = self.client.request(method, url);
        match auth {
            Auth::None => builder,
            Auth::Bearer(t) => builder.bearer_auth(t),
            Auth::Token(t) => builder.header("Authorization", format!("token {t}")),
            Auth::Basic { username, password } => builder.basic_auth(username, Some(password)),
            Auth::Header(name, value) => builder.header(*name, value),
        }
    }

    /// GETs `url` and decodes its JSON body, mapping failures.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        url: &str,
        auth: &Auth,
    ) -> Result<Answer<T>, ScmError> {
        self.send_json(
            self.request(Method::GET, url, auth)
                .header("Accept", "application/json"),
        )
        .await
    }

    /// Sends a prepared request and decodes its JSON body, mapping failures.
    pub async fn send_json<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
    ) -> Result<Answer<T>, ScmError> {
        let response = request.send().await.map_err(|e| self.transport_error(e))?;
        let status = response.status();
        let headers = response.headers().clone();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(self.status_error(status, &headers, &body));
        }
        let body = response.json::<T>().await.map_err(|e| {
            ScmError::Unavailable(format!(
                "{} sent an answer corral cannot read: {e}",
                self.host
            ))
        })?;
        Ok(Answer { body, headers })
    }

    fn transport_error(&self, e: reqwest::Error) -> ScmError {
        if e.is_timeout() {
            ScmError::Unavailable(format!("{} did not answer in time", self.host))
        } else {
            ScmError::Unavailable(format!("cannot reach {}: {}", self.host, root_cause(&e)))
        }
    }

    /// How an SCM's error status reads to corral's callers.
    pub fn status_error(&self, status: StatusCode, headers: &HeaderMap, body: &str) -> ScmError {
        let retry_after = header_u64(headers.get("retry-after"));
        let remaining = header_u64(headers.get("x-ratelimit-remaining"))
            .or_else(|| header_u64(headers.get("ratelimit-remaining")));
        let detail = short(body);
        match status {
            StatusCode::UNAUTHORIZED => ScmError::AuthenticationRequired {
                host: self.host.clone(),
                reason: format!("the token was rejected ({detail})"),
            },
            StatusCode::TOO_MANY_REQUESTS => ScmError::RateLimited {
                host: self.host.clone(),
                retry_after_secs: retry_after,
            },
            StatusCode::FORBIDDEN if remaining == Some(0) || retry_after.is_some() => {
                ScmError::RateLimited {
                    host: self.host.clone(),
                    retry_after_secs: retry_after.or_else(|| seconds_until_reset(headers)),
                }
            }
            StatusCode::FORBIDDEN => {
                ScmError::PermissionDenied(format!("{} refused access: {detail}", self.host))
            }
            StatusCode::NOT_FOUND => {
                ScmError::NotFound(format!("{} has no such resource", self.host))
            }
            s if s.is_server_error() => {
                ScmError::Unavailable(format!("{} failed with {s}", self.host))
            }
            s => ScmError::Unavailable(format!("{} answered {s}: {detail}", self.host)),
        }
    }
}

fn header_u64(value: Option<&HeaderValue>) -> Option<u64> {
    value?.to_str().ok()?.trim().parse().ok()
}

fn seconds_until_reset(headers: &HeaderMap) -> Option<u64> {
    let reset = header_u64(headers.get("x-ratelimit-reset"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(reset.saturating_sub(now))
}

fn short(body: &str) -> String {
    let one_line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.len() > 200 {
        format!(
            "{}…",
            &one_line[..one_line
                .char_indices()
                .nth(200)
                .map(|(i, _)| i)
                .unwrap_or(one_line.len())]
        )
    } else if one_line.is_empty() {
        "no details".into()
    } else {
        one_line
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn statuses_map_to_errors() {
        let http = Http::new("scm.test", DEFAULT_TIMEOUT);
        let none = HeaderMap::new();
        assert!(matches!(
            http.status_error(StatusCode::UNAUTHORIZED, &none, ""),
            ScmError::AuthenticationRequired { .. }
        ));
        assert!(matches!(
            http.status_error(StatusCode::FORBIDDEN, &none, "nope"),
            ScmError::PermissionDenied(_)
        ));
        assert_eq!(
            http.status_error(
                StatusCode::FORBIDDEN,
                &headers(&[("x-ratelimit-remaining", "0"), ("retry-after", "30")]),
                ""
            ),
            ScmError::RateLimited {
                host: "scm.test".into(),
                retry_after_secs: Some(30)
            }
        );
        assert!(matches!(
            http.status_error(StatusCode::TOO_MANY_REQUESTS, &none, ""),
            ScmError::RateLimited { .. }
        ));
        assert!(matches!(
            http.status_error(StatusCode::NOT_FOUND, &none, ""),
            ScmError::NotFound(_)
        ));
        assert!(matches!(
            http.status_error(StatusCode::BAD_GATEWAY, &none, ""),
            ScmError::Unavailable(_)
        ));
    }
}
