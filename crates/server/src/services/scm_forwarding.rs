//! SCM requests go to the runner named in the request (or one the caller may
//! use that serves the host), with the calling user's credentials for the
//! hosts involved; the runner talks to the SCM and answers on its stream.

use std::time::{Duration, Instant};

use buffa::EnumValue;
use connectrpc::{ConnectError, ErrorCode, ErrorDetail, RequestContext};
use corral_api::corral::v1 as runner_api;
use runner_api::{respond_request, scm_request};
use uuid::Uuid;

use super::convert;
use crate::authz::{Access, RequestId, access};
use crate::domain::*;
use crate::metrics::{self, ForwardedLabels};
use crate::oauth_flow::OAuthState;
use crate::state::SharedState;

/// How many runners a pick considers at a time, and names at most when it
/// asks the caller to choose.
const CANDIDATES: usize = 100;

/// The longest a caller waits for a runner, whatever its own deadline.
const MAX_RUNNER_WAIT: Duration = Duration::from_secs(30);

/// A host as tokens and URLs name it: `host[:port]`, lower case, no scheme
/// (the key of a canonical host, as `corral_contract::scm_host` defines it).
pub fn host_key(host: &str) -> String {
    corral_contract::scm_host::lookup_key(host)
}

/// The host of a context or repository URL (https, ssh or `git@host:path`).
pub fn url_host(url: &str) -> Option<String> {
    let url = url.trim();
    let (ssh, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (scheme.contains("ssh"), rest),
        None => (true, url.split_once(':').map(|(user_host, _)| user_host)?),
    };
    let authority = rest.split('/').next()?;
    let host = authority
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(authority);
    // An ssh port is not part of the web host that tokens are kept for.
    let host = if ssh {
        host.split(':').next().unwrap_or(host)
    } else {
        host
    };
    let key = host_key(host);
    (!key.is_empty()).then_some(key)
}

pub struct ScmForwarding<'a> {
    pub state: &'a SharedState,
}

impl ScmForwarding<'_> {
    /// Sends `call` to a runner for the calling user and returns its result.
    pub async fn forward(
        &self,
        ctx: &RequestContext,
        runner_id: &str,
        host: Option<String>,
        call: scm_request::Call,
    ) -> Result<respond_request::Result, ConnectError> {
        let access = access(ctx)?;
        let user = access.user()?;
        let (runner, candidates) = if runner_id.is_empty() {
            self.pick_runner(access, host.as_deref()).await?
        } else {
            let id = convert::parse_id("runner_id", runner_id)?;
            (access.usable_runner(id).await?, Vec::new())
        };
        if runner.is_cordoned() {
            return Err(ConnectError::failed_precondition(format!(
                "runner {} ({}) is set inactive; an admin must set it active again before it takes work",
                runner.id, runner.name
            )));
        }
        if !self.state.hub.is_connected(runner.id).await {
            return Err(ConnectError::unavailable(format!(
                "runner {} ({}) is not connected; start it and try again",
                runner.id, runner.name
            )));
        }
        let credentials = self.credentials(access, runner.id, host.as_deref()).await?;
        let state = OAuthState::new(user.user.id, runner.id, host.clone().unwrap_or_default());
        let call_name = call_name(&call);
        let request = runner_api::RunnerRequest {
            origin_request_id: ctx
                .extensions()
                .get::<RequestId>()
                .map(|r| r.0.clone())
                .unwrap_or_default(),
            kind: Some(runner_api::runner_request::Kind::Scm(Box::new(
                runner_api::ScmRequest {
                    user_id: user.user.id.to_string(),
                    credentials,
                    oauth_redirect_uri: self.state.oauth_redirect_uri(),
                    oauth_state: state.seal(&self.state.data_key),
                    call: Some(call),
                    ..Default::default()
                },
            ))),
            ..Default::default()
        };
        let wait = ctx
            .time_remaining()
            .unwrap_or(MAX_RUNNER_WAIT)
            .min(MAX_RUNNER_WAIT);
        let started = Instant::now();
        let answered = self.state.hub.call(runner.id, request, wait).await;
        self.state.metrics.record_forwarded_call(
            ForwardedLabels {
                call: call_name,
                provider: metrics::scm_provider(host.as_deref()),
                outcome: forwarded_outcome(&answered),
            },
            started.elapsed(),
        );
        let answer = answered?;
        for credential in &answer.refreshed {
            let credential = convert::host_credential(&self.state.data_key, credential);
            if let Err(err) = access.save_my_host_credential(runner.id, credential).await {
                tracing::warn!(runner_id = %runner.id, %err, "could not store a refreshed host token");
            }
        }
        if let Some(failure) = answer.failure.as_option() {
            return Err(failure_error(failure, &candidates));
        }
        answer.result.ok_or_else(|| {
            ConnectError::internal(format!("runner {} answered without a result", runner.id))
        })
    }

    /// Without a runner id: a connected runner the caller may use, preferring
    /// one with an SCM integration for the host. Also returns the candidates
    /// it chose from (at most a page). Candidates are read a page at a time,
    /// reporting runners only (runners set inactive or silent take no work),
    /// so the pick does not read every runner the caller may use.
    async fn pick_runner(
        &self,
        access: &Access,
        host: Option<&str>,
    ) -> Result<(Runner, Vec<Uuid>), ConnectError> {
        let mut page = PageRequest {
            after: None,
            limit: CANDIDATES,
        };
        let mut candidates = Vec::new();
        if let Some(host) = host {
            let integrations = access.usable_integrations_for_host(host, page).await?;
            let ids: Vec<Uuid> = integrations.items.iter().map(|i| i.runner_id).collect();
            candidates = self.connected(ids).await;
        }
        while candidates.is_empty() {
            let runners = access.usable_reporting_runners(page).await?;
            let ids = runners.items.iter().map(|r| r.id).collect();
            candidates = self.connected(ids).await;
            match runners.next_after {
                Some(after) => page.after = Some(after),
                None => break,
            }
        }
        let Some(&first) = candidates.first() else {
            return Err(ConnectError::unavailable(
                "no runner you may use is connected and active; start one or name it with runner_id",
            ));
        };
        Ok((access.usable_runner(first).await?, candidates))
    }

    /// Those of `ids` whose runner has a stream open, in their order.
    async fn connected(&self, mut ids: Vec<Uuid>) -> Vec<Uuid> {
        let online = self.state.hub.connected(&ids).await;
        ids.retain(|id| online.contains(id));
        ids
    }

    /// The caller's tokens on this runner for `host` (all of them without a host), decrypted.
    async fn credentials(
        &self,
        access: &Access,
        runner_id: Uuid,
        host: Option<&str>,
    ) -> Result<Vec<runner_api::HostCredential>, ConnectError> {
        let tokens: Vec<_> = access
            .my_host_tokens(runner_id)
            .await?
            .into_iter()
            .filter(|t| host.is_none_or(|h| host_key(&t.host) == h))
            .collect();
        // A host whose integration says `pat: false` never sees a personal
        // token; the integrations are read only when there is one to check.
        let integrations = if tokens
            .iter()
            .any(|t| HostTokenSource::is_personal(t.source))
        {
            access.integrations_of(&[runner_id]).await?
        } else {
            Vec::new()
        };
        let mut credentials = Vec::new();
        for token in tokens.iter().filter(|t| {
            !HostTokenSource::is_personal(t.source)
                || pat_refused_by(&integrations, &t.host).is_none()
        }) {
            let secret = match self.state.data_key.decrypt(&token.token_encrypted) {
                Ok(secret) => secret,
                Err(err) => {
                    tracing::error!(token_id = %token.id, %err, "a stored host token cannot be decrypted");
                    continue;
                }
            };
            let refresh = token
                .refresh_token_encrypted
                .as_ref()
                .and_then(|r| self.state.data_key.decrypt(r).ok())
                .unwrap_or_default();
            credentials.push(runner_api::HostCredential {
                id: token.id.to_string(),
                host: token.host.clone(),
                token: String::from_utf8_lossy(&secret).into_owned(),
                refresh_token: String::from_utf8_lossy(&refresh).into_owned(),
                expires_at: token.expires_at.map(|t| t.timestamp()).unwrap_or(0),
                source: EnumValue::Known(convert::host_token_source(token.source)),
                integration_id: token
                    .integration_id
                    .map(|i| i.to_string())
                    .unwrap_or_default(),
                scopes: token.scopes.clone(),
                ..Default::default()
            });
        }
        Ok(credentials)
    }
}

/// A runner's failure as the caller sees it.
/// The metrics' name of an SCM call.
fn call_name(call: &scm_request::Call) -> &'static str {
    match call {
        scm_request::Call::ParseContextUrl(_) => "parse_context_url",
        scm_request::Call::SearchRepositories(_) => "search_repositories",
        scm_request::Call::ListScmOrganizations(_) => "list_scm_organizations",
        scm_request::Call::CheckAuthenticationForHost(_) => "check_authentication_for_host",
        scm_request::Call::CheckRepositoryAccess(_) => "check_repository_access",
    }
}

/// How a forwarded call ended, for metrics: `ok`, the Connect code of a call
/// that failed on the way, or the code of the runner's failure.
pub(crate) fn forwarded_outcome(
    answered: &Result<crate::runner_hub::RunnerAnswer, ConnectError>,
) -> &'static str {
    match answered {
        Err(err) => err.code.as_str(),
        Ok(answer) => match answer.failure.as_option() {
            Some(failure) => code_from_name(&failure.code).as_str(),
            None => "ok",
        },
    }
}

fn failure_error(failure: &runner_api::Failure, candidates: &[Uuid]) -> ConnectError {
    let code = code_from_name(&failure.code);
    let mut err = ConnectError::new(code, failure.message.clone());
    if code == ErrorCode::FailedPrecondition {
        let mut details = failure
            .authentication
            .as_option()
            .cloned()
            .unwrap_or_default();
        if details.runner_ids.is_empty() && candidates.len() > 1 {
            details.runner_ids = candidates.iter().map(Uuid::to_string).collect();
        }
        err = err.with_detail(ErrorDetail::from_message(
            "gitpod.v1.ParseContextURLPreconditionFailureDetails",
            &details,
        ));
    }
    err
}

fn code_from_name(name: &str) -> ErrorCode {
    match name {
        "invalid_argument" => ErrorCode::InvalidArgument,
        "failed_precondition" => ErrorCode::FailedPrecondition,
        "permission_denied" => ErrorCode::PermissionDenied,
        "not_found" => ErrorCode::NotFound,
        "resource_exhausted" => ErrorCode::ResourceExhausted,
        "deadline_exceeded" => ErrorCode::DeadlineExceeded,
        "unimplemented" => ErrorCode::Unimplemented,
        "unauthenticated" => ErrorCode::Unauthenticated,
        "unavailable" => ErrorCode::Unavailable,
        _ => ErrorCode::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_pasted_urls() {
        assert_eq!(
            url_host("https://GitHub.com/a/b").as_deref(),
            Some("github.com")
        );
        assert_eq!(
            url_host("https://www.github.com/a/b").as_deref(),
            Some("github.com")
        );
        assert_eq!(
            url_host("http://127.0.0.1:3000/a/b").as_deref(),
            Some("127.0.0.1:3000")
        );
        assert_eq!(
            url_host("git@gitlab.com:g/p.git").as_deref(),
            Some("gitlab.com")
        );
        assert_eq!(
            url_host("ssh://git@host.example:7999/k/r.git").as_deref(),
            Some("host.example")
        );
        assert_eq!(url_host("not a url"), None);
    }
}
