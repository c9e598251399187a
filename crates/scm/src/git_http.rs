//! Repository access through git's smart-HTTP protocol, for hosts with no SCM API.
//!
//! [`check_access`] asks for the ref advertisement a `git clone` starts with
//! (`GET {repo}/info/refs?service=git-upload-pack`), presenting the token as
//! Basic credentials the way git's credential helpers do. A server that answers
//! with `application/x-git-upload-pack-advertisement` lets the user read the
//! repository.

use reqwest::{Method, StatusCode};
use url::Url;

use crate::http::{Auth, Http};
use crate::{Credentials, ScmError};

/// The content type of a smart-HTTP ref advertisement for fetching.
pub const UPLOAD_PACK_ADVERTISEMENT: &str = "application/x-git-upload-pack-advertisement";

/// The user name sent with a token when the credentials name none. Git hosts
/// that take tokens as passwords accept it (GitLab requires exactly this one).
pub const DEFAULT_USERNAME: &str = "oauth2";

/// Whether the git server at `repo_url` (a clone URL over http or https) lets
/// `creds` (or anyone, with `None`) fetch the repository.
///
/// 401 is [`ScmError::AuthenticationRequired`], 403 [`ScmError::PermissionDenied`]
/// (or a rate limit, as [`Http::status_error`] reads it), 404 [`ScmError::NotFound`];
/// a 200 that is not a ref advertisement is `NotFound`, or `AuthenticationRequired`
/// when the server redirected to an HTML page (a sign-in form).
pub async fn check_access(
    http: &Http,
    repo_url: &str,
    creds: Option<&Credentials>,
) -> Result<(), ScmError> {
    let creds = creds.filter(|c| !c.token.is_empty());
    let url = info_refs_url(repo_url, creds.is_some())?;
    let host = url.host_str().unwrap_or_default().to_string();
    let auth = match creds {
        Some(c) => Auth::Basic {
            username: c
                .username
                .as_deref()
                .filter(|u| !u.is_empty())
                .unwrap_or(DEFAULT_USERNAME)
                .to_string(),
            password: c.token.clone(),
        },
        None => Auth::None,
    };
    let response = http
        .request(Method::GET, url.as_str(), &auth)
        // Some hosts only speak smart HTTP to clients that introduce themselves as git.
        .header(
            "User-Agent",
            concat!("git/2.0 (corral-runner/", env!("CARGO_PKG_VERSION"), ")"),
        )
        .header("Accept", "*/*")
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                ScmError::Unavailable(format!("{host} did not answer in time"))
            } else {
                ScmError::Unavailable(format!("cannot reach {host}: {}", root_cause(&e)))
            }
        })?;
    let status = response.status();
    let redirected = response.url().as_str() != url.as_str();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if status == StatusCode::UNAUTHORIZED {
        return Err(ScmError::AuthenticationRequired {
            host,
            reason: if creds.is_some() {
                "the git server rejected the credentials".into()
            } else {
                "the git server wants credentials for this repository".into()
            },
        });
    }
    if !status.is_success() {
        let headers = response.headers().clone();
        let body = response.text().await.unwrap_or_default();
        return Err(match http.status_error(status, &headers, &body) {
            ScmError::NotFound(_) => {
                ScmError::NotFound(format!("no git repository at {}", display(repo_url)))
            }
            e => e,
        });
    }
    if content_type.starts_with(UPLOAD_PACK_ADVERTISEMENT) {
        return Ok(());
    }
    if redirected && content_type.starts_with("text/html") {
        return Err(ScmError::AuthenticationRequired {
            host,
            reason: "the git server sent a sign-in page instead of the repository".into(),
        });
    }
    Err(ScmError::NotFound(format!(
        "{} does not serve a git repository over smart HTTP",
        display(repo_url)
    )))
}

/// `{repo}/info/refs?service=git-upload-pack`, without query, fragment, and
/// (when other credentials are given) user info of the pasted URL.
fn info_refs_url(repo_url: &str, drop_userinfo: bool) -> Result<Url, ScmError> {
    let mut url = Url::parse(repo_url.trim())
        .map_err(|_| ScmError::InvalidInput(format!("{:?} is not a URL", display(repo_url))))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ScmError::InvalidInput(format!(
            "{:?} is not an http(s) clone URL",
            display(repo_url)
        )));
    }
    if drop_userinfo {
        let _ = url.set_username("");
        let _ = url.set_password(None);
    }
    let path = format!("{}/info/refs", url.path().trim_end_matches('/'));
    url.set_path(&path);
    url.set_query(Some("service=git-upload-pack"));
    url.set_fragment(None);
    Ok(url)
}

/// The URL for messages, without user info (it may hold a password).
fn display(repo_url: &str) -> String {
    match Url::parse(repo_url.trim()) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        Err(_) => repo_url.trim().to_string(),
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

    #[test]
    fn info_refs_urls_keep_the_repository_path_only() {
        let url = |s: &str, drop: bool| info_refs_url(s, drop).map(|u| u.to_string());
        assert_eq!(
            url("https://git.example.com/team/app.git", false).unwrap(),
            "https://git.example.com/team/app.git/info/refs?service=git-upload-pack"
        );
        assert_eq!(
            url("https://me:secret@git.example.com/team/app/?x=1#top", true).unwrap(),
            "https://git.example.com/team/app/info/refs?service=git-upload-pack"
        );
        assert!(matches!(
            url("git@git.example.com:team/app.git", false),
            Err(ScmError::InvalidInput(_))
        ));
        assert!(matches!(
            url("ssh://git@git.example.com/team/app.git", false),
            Err(ScmError::InvalidInput(_))
        ));
        assert_eq!(
            display("https://me:secret@git.example.com/a.git"),
            "https://git.example.com/a.git"
        );
    }
}
