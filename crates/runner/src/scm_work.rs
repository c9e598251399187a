//! SCM work the management plane forwards to this runner: context URLs,
//! repository search, organizations, authentication and access checks, and
//! finishing OAuth sign-ins. The runner talks to the SCM itself, with the
//! user's credential for the host, so private hosts need only be reachable
//! from the runner.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use buffa::{EnumValue, MessageField};
use corral_api::corral::v1::{
    Failure, HostCredential, OAuthCodeExchange, RespondRequest, ScmRequest, respond_request,
    scm_request,
};
use corral_api::gitpod::v1 as api;
use corral_scm::host::ConfiguredHost;
use corral_scm::oauth::{OAuthClient, authorize_url};
use corral_scm::{
    Context, ContextUrl, Credentials, HostRegistry, OAuthEndpoints, Paged, Provider, ScmError,
    ScmHost, ScmKind, SearchMode, provider_for,
};
use crypto_box::SecretKey;

use crate::metrics::ScmLabels;
use crate::open_sealed_secret;

/// How long one SCM call may take.
pub const SCM_TIMEOUT: Duration = Duration::from_secs(10);
/// Page size when the request names none.
const DEFAULT_PAGE_SIZE: u32 = 25;
/// The provider (and host) label of work on no host this runner knows.
const UNKNOWN: &str = "unknown";
/// Refresh OAuth tokens this long before they expire.
const REFRESH_MARGIN_SECS: i64 = 60;

/// What the runner knows for one request: its integrations and its key.
pub struct ScmWork<'a> {
    pub integrations: &'a [api::SCMIntegration],
    pub key: &'a SecretKey,
    pub timeout: Duration,
}

/// A failure to report: code name, message, and sign-in help where it applies.
struct WorkError {
    code: &'static str,
    message: String,
    /// Boxed: it is rare and large, and errors travel by value.
    authentication: Option<Box<api::ParseContextURLPreconditionFailureDetails>>,
}

impl WorkError {
    fn invalid(message: impl Into<String>) -> Self {
        Self {
            code: "invalid_argument",
            message: message.into(),
            authentication: None,
        }
    }
}

impl From<ScmError> for WorkError {
    fn from(e: ScmError) -> Self {
        Self {
            code: e.code(),
            message: e.to_string(),
            authentication: None,
        }
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A host as credentials name it: `host[:port]`, lower case, no scheme.
fn host_key(host: &str) -> String {
    let host = host.trim().trim_end_matches('/').to_ascii_lowercase();
    let host = host
        .split_once("://")
        .map(|(_, rest)| rest.to_string())
        .unwrap_or(host);
    host.split('/').next().unwrap_or_default().to_string()
}

impl ScmWork<'_> {
    fn registry(&self) -> Result<HostRegistry, WorkError> {
        let configured = self.integrations.iter().filter_map(|i| {
            Some(ConfiguredHost {
                kind: ScmKind::from_id(&i.scm_id)?,
                host: i.host.clone(),
                virtual_directory: i.virtual_directory.clone(),
            })
        });
        HostRegistry::new(configured).map_err(WorkError::from)
    }

    fn integration_for(&self, host: &ScmHost) -> Option<&api::SCMIntegration> {
        self.integrations
            .iter()
            .find(|i| host_key(&i.host) == host.host)
    }

    /// The endpoints of the OAuth server for `host`: its integration's
    /// `issuer_url` when set, else the provider's own.
    fn oauth_endpoints(&self, host: &ScmHost, provider: &dyn Provider) -> OAuthEndpoints {
        let issuer = self
            .integration_for(host)
            .and_then(|i| i.oauth.as_option())
            .map(|o| o.issuer_url.as_str());
        provider.oauth_endpoints(issuer)
    }

    fn oauth_client(&self, host: &ScmHost, provider: &dyn Provider) -> Option<OAuthClient> {
        let oauth = self.integration_for(host)?.oauth.as_option()?;
        if oauth.client_id.is_empty() || oauth.encrypted_client_secret.is_empty() {
            return None;
        }
        let secret = open_sealed_secret(self.key, &oauth.encrypted_client_secret).ok()?;
        Some(OAuthClient {
            client_id: oauth.client_id.clone(),
            client_secret: String::from_utf8(secret).ok()?,
            token_url: self.oauth_endpoints(host, provider).token,
        })
    }

    /// Where the user can authenticate for `host`: the OAuth sign-in when the
    /// runner has an OAuth app for it, else the page that creates a token.
    fn authentication_details(
        &self,
        host: &ScmHost,
        provider: &dyn Provider,
        request: &ScmRequest,
    ) -> api::ParseContextURLPreconditionFailureDetails {
        let url = self
            .oauth_sign_in_url(host, provider, request)
            .unwrap_or_else(|| provider.pat_help().create_url);
        api::ParseContextURLPreconditionFailureDetails {
            authentication_required_url: url,
            scm_id: host.kind.id().to_string(),
            ..Default::default()
        }
    }

    fn oauth_sign_in_url(
        &self,
        host: &ScmHost,
        provider: &dyn Provider,
        request: &ScmRequest,
    ) -> Option<String> {
        let oauth = self.integration_for(host)?.oauth.as_option()?;
        if oauth.client_id.is_empty()
            || oauth.encrypted_client_secret.is_empty()
            || request.oauth_redirect_uri.is_empty()
        {
            return None;
        }
        Some(authorize_url(
            &self.oauth_endpoints(host, provider).authorize,
            &oauth.client_id,
            &request.oauth_redirect_uri,
            &request.oauth_state,
            &provider.oauth_scopes(),
        ))
    }

    /// The user's credential for `host`, refreshed first when it is an
    /// expiring OAuth token. Refreshed credentials are added to `refreshed`.
    async fn credentials(
        &self,
        host: &ScmHost,
        provider: &dyn Provider,
        request: &ScmRequest,
        refreshed: &mut Vec<HostCredential>,
    ) -> Result<Credentials, WorkError> {
        let needs_auth = |reason: &str| WorkError {
            code: "failed_precondition",
            message: format!(
                "authenticate with {} ({}) first: {reason}",
                host.host,
                host.kind.display_name()
            ),
            authentication: Some(Box::new(
                self.authentication_details(host, provider, request),
            )),
        };
        // With `pat: false` the host takes OAuth tokens only.
        let pat_allowed = self.integration_for(host).is_none_or(|i| i.pat);
        let oauth = api::HostAuthenticationTokenSource::HOST_AUTHENTICATION_TOKEN_SOURCE_OAUTH;
        let stored = request
            .credentials
            .iter()
            .filter(|c| pat_allowed || c.source.as_known() == Some(oauth))
            .find(|c| host_key(&c.host) == host.host)
            .ok_or_else(|| needs_auth("you have no token for this host on this runner"))?;
        let expiring =
            stored.expires_at != 0 && stored.expires_at - REFRESH_MARGIN_SECS <= now_secs();
        if !expiring {
            return Ok(Credentials {
                token: stored.token.clone(),
                username: None,
            });
        }
        let client = self.oauth_client(host, provider);
        match (client, stored.refresh_token.is_empty()) {
            (Some(client), false) => {
                let http = corral_scm::http::Http::new(&host.host, self.timeout);
                let issued = client
                    .refresh(&http, &stored.refresh_token)
                    .await
                    .map_err(|e| {
                        needs_auth(&format!(
                            "the token expired and could not be refreshed: {e}"
                        ))
                    })?;
                let mut renewed = stored.clone();
                renewed.token = issued.access_token.clone();
                if let Some(refresh) = issued.refresh_token {
                    renewed.refresh_token = refresh;
                }
                renewed.expires_at = issued
                    .expires_in
                    .map(|s| now_secs() + s as i64)
                    .unwrap_or(0);
                if !issued.scopes.is_empty() {
                    renewed.scopes = issued.scopes;
                }
                refreshed.push(renewed);
                Ok(Credentials {
                    token: issued.access_token,
                    username: None,
                })
            }
            _ => Err(needs_auth("the token has expired")),
        }
    }

    /// Provider, host and call of `request` for metrics (outcome left
    /// empty); `unknown` where the request names no host this runner knows.
    pub fn metric_labels(&self, request: &ScmRequest) -> ScmLabels {
        use scm_request::Call;
        let (call, host) = match request.call.as_ref() {
            None => ("none", String::new()),
            Some(Call::ParseContextUrl(c)) => (
                "parse_context_url",
                ContextUrl::parse(&c.context_url)
                    .map(|u| u.host)
                    .unwrap_or_default(),
            ),
            Some(Call::SearchRepositories(c)) => ("search_repositories", c.scm_host.clone()),
            Some(Call::ListScmOrganizations(c)) => ("list_scm_organizations", c.scm_host.clone()),
            Some(Call::CheckAuthenticationForHost(c)) => {
                ("check_authentication_for_host", c.host.clone())
            }
            Some(Call::CheckRepositoryAccess(c)) => (
                "check_repository_access",
                ContextUrl::parse(&c.repository_url)
                    .map(|u| u.host)
                    .unwrap_or_default(),
            ),
        };
        let resolved = self.registry().ok().and_then(|registry| {
            if host.trim().is_empty() {
                default_host(&registry, request).ok()
            } else {
                resolve(&registry, &host).ok()
            }
        });
        let mut labels = self.labels(call, resolved);
        if labels.provider == UNKNOWN && !host.trim().is_empty() {
            labels.host = host_key(&host);
            // check_access asks git itself when the host has no SCM API.
            if call == "check_repository_access" {
                labels.provider = "git".into();
            }
        }
        labels
    }

    /// Provider and host of an OAuth code exchange, for metrics.
    pub fn exchange_labels(&self, exchange: &OAuthCodeExchange) -> ScmLabels {
        let resolved = self
            .registry()
            .ok()
            .and_then(|registry| resolve(&registry, &exchange.host).ok());
        self.labels("oauth_code_exchange", resolved)
    }

    fn labels(&self, call: &str, host: Option<ScmHost>) -> ScmLabels {
        let (provider, host) = match host {
            Some(h) => (h.kind.id().to_string(), h.host),
            None => (UNKNOWN.to_string(), UNKNOWN.to_string()),
        };
        ScmLabels {
            provider,
            host,
            call: call.to_string(),
            outcome: String::new(),
        }
    }

    /// Runs `request` and builds the answer (without its request id).
    pub async fn execute(&self, request: &ScmRequest) -> RespondRequest {
        let mut refreshed = Vec::new();
        let outcome = self.dispatch(request, &mut refreshed).await;
        let mut answer = RespondRequest {
            refreshed,
            ..Default::default()
        };
        match outcome {
            Ok(result) => answer.result = Some(result),
            Err(e) => {
                answer.failure = MessageField::some(Failure {
                    code: e.code.to_string(),
                    message: e.message,
                    authentication: e
                        .authentication
                        .map(|a| MessageField::some(*a))
                        .unwrap_or_default(),
                    ..Default::default()
                })
            }
        }
        answer
    }

    async fn dispatch(
        &self,
        request: &ScmRequest,
        refreshed: &mut Vec<HostCredential>,
    ) -> Result<respond_request::Result, WorkError> {
        use respond_request::Result as Out;
        use scm_request::Call;
        let registry = self.registry()?;
        match request.call.as_ref() {
            None => Err(WorkError::invalid("the request names no SCM call")),
            Some(Call::ParseContextUrl(call)) => {
                let url = ContextUrl::parse(&call.context_url).map_err(WorkError::from)?;
                let host = resolve(&registry, &url.host)?;
                let provider = provider_for(host.clone(), self.timeout);
                let creds = self
                    .credentials(&host, provider.as_ref(), request, refreshed)
                    .await?;
                let context = provider
                    .parse_context(&url, &creds)
                    .await
                    .map_err(|e| self.with_sign_in(e, &host, provider.as_ref(), request))?;
                Ok(Out::ParseContextUrl(Box::new(context_response(
                    &call.context_url,
                    context,
                ))))
            }
            Some(Call::SearchRepositories(call)) => {
                let host = match call.scm_host.trim() {
                    "" => default_host(&registry, request)?,
                    h => resolve(&registry, h)?,
                };
                let provider = provider_for(host.clone(), self.timeout);
                let creds = self
                    .credentials(&host, provider.as_ref(), request, refreshed)
                    .await?;
                let (page, per_page) = paging(call.pagination.as_option(), call.limit)?;
                let mode = match call.search_mode.as_known() {
                    Some(api::SearchMode::SEARCH_MODE_NATIVE) => SearchMode::Native,
                    _ => SearchMode::Keyword,
                };
                let found = provider
                    .search_repositories(&creds, &call.search_string, mode, page, per_page)
                    .await
                    .map_err(|e| self.with_sign_in(e, &host, provider.as_ref(), request))?;
                let (next_token, last_page) = page_token(&found);
                Ok(Out::SearchRepositories(Box::new(
                    api::SearchRepositoriesResponse {
                        // A page never holds more than asked for (the server refuses more).
                        repositories: found
                            .items
                            .into_iter()
                            .take(per_page as usize)
                            .map(|r| api::search_repositories_response::Repository {
                                name: r.name,
                                url: r.url,
                                ..Default::default()
                            })
                            .collect(),
                        pagination: MessageField::some(api::PaginationResponse {
                            next_token,
                            ..Default::default()
                        }),
                        last_page,
                        ..Default::default()
                    },
                )))
            }
            Some(Call::ListScmOrganizations(call)) => {
                let host = resolve(&registry, &call.scm_host)?;
                let provider = provider_for(host.clone(), self.timeout);
                let creds = self
                    .credentials(&host, provider.as_ref(), request, refreshed)
                    .await?;
                let (page, per_page) = paging(call.pagination.as_option(), 0)?;
                let found = provider
                    .list_organizations(&creds, &call.query, page, per_page)
                    .await
                    .map_err(|e| self.with_sign_in(e, &host, provider.as_ref(), request))?;
                let (next_token, _) = page_token(&found);
                Ok(Out::ListScmOrganizations(Box::new(
                    api::ListSCMOrganizationsResponse {
                        organizations: found
                            .items
                            .into_iter()
                            .take(per_page as usize)
                            .map(|o| api::list_scm_organizations_response::SCMOrganization {
                                name: o.name,
                                url: o.url,
                                is_admin: o.is_admin.unwrap_or(false),
                                ..Default::default()
                            })
                            .collect(),
                        pagination: MessageField::some(api::PaginationResponse {
                            next_token,
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                )))
            }
            Some(Call::CheckAuthenticationForHost(call)) => {
                let host = resolve(&registry, &call.host)?;
                let provider = provider_for(host.clone(), self.timeout);
                Ok(Out::CheckAuthenticationForHost(Box::new(
                    self.check_authentication(&host, provider.as_ref(), request, refreshed)
                        .await,
                )))
            }
            Some(Call::CheckRepositoryAccess(call)) => Ok(Out::CheckRepositoryAccess(Box::new(
                self.check_access(&registry, &call.repository_url, request, refreshed)
                    .await?,
            ))),
        }
    }

    /// A rejected token becomes `failed_precondition` with sign-in help.
    fn with_sign_in(
        &self,
        e: ScmError,
        host: &ScmHost,
        provider: &dyn Provider,
        request: &ScmRequest,
    ) -> WorkError {
        match e {
            ScmError::AuthenticationRequired { reason, .. } => WorkError {
                code: "failed_precondition",
                message: format!("authenticate with {} again: {reason}", host.host),
                authentication: Some(Box::new(
                    self.authentication_details(host, provider, request),
                )),
            },
            other => other.into(),
        }
    }

    async fn check_authentication(
        &self,
        host: &ScmHost,
        provider: &dyn Provider,
        request: &ScmRequest,
        refreshed: &mut Vec<HostCredential>,
    ) -> api::CheckAuthenticationForHostResponse {
        let authenticated = match self.credentials(host, provider, request, refreshed).await {
            Ok(creds) => provider.check_token(&creds).await.is_ok(),
            Err(_) => false,
        };
        let integration = self.integration_for(host);
        let pat_allowed = integration.is_none_or(|i| i.pat);
        let help = provider.pat_help();
        let oauth_url = self.oauth_sign_in_url(host, provider, request);
        api::CheckAuthenticationForHostResponse {
            authenticated,
            authentication_url: oauth_url.clone().unwrap_or_else(|| help.create_url.clone()),
            pat_supported: pat_allowed,
            scm_id: host.kind.id().to_string(),
            scm_name: host.kind.display_name().to_string(),
            supports_oauth2: oauth_url
                .map(|auth_url| {
                    MessageField::some(
                        api::check_authentication_for_host_response::AuthenticationMethodOAuth2 {
                            auth_url,
                            docs_url: help.docs_url.clone(),
                            ..Default::default()
                        },
                    )
                })
                .unwrap_or_default(),
            supports_pat: if pat_allowed {
                MessageField::some(api::check_authentication_for_host_response::AuthenticationMethodPersonalAccessToken {
                    create_url: help.create_url,
                    docs_url: help.docs_url,
                    example: help.example,
                    required_scopes: help.required_scopes,
                    ..Default::default()
                })
            } else {
                MessageField::none()
            },
            ..Default::default()
        }
    }

    async fn check_access(
        &self,
        registry: &HostRegistry,
        repository_url: &str,
        request: &ScmRequest,
        refreshed: &mut Vec<HostCredential>,
    ) -> Result<api::CheckRepositoryAccessResponse, WorkError> {
        let url = ContextUrl::parse(repository_url).map_err(WorkError::from)?;
        let outcome = match registry.resolve(&url.host) {
            Some(host) => {
                let provider = provider_for(host.clone(), self.timeout);
                match self
                    .credentials(&host, provider.as_ref(), request, refreshed)
                    .await
                {
                    Ok(creds) => provider.check_repository_access(&creds, &url).await,
                    Err(e) => Err(ScmError::AuthenticationRequired {
                        host: host.host.clone(),
                        reason: e.message,
                    }),
                }
            }
            // No SCM API for this host: ask git itself.
            None => {
                let creds = request
                    .credentials
                    .iter()
                    .find(|c| host_key(&c.host) == url.host)
                    .map(|c| Credentials {
                        token: c.token.clone(),
                        username: None,
                    });
                let http = corral_scm::http::Http::new(&url.host, self.timeout);
                corral_scm::git_http::check_access(&http, repository_url, creds.as_ref()).await
            }
        };
        Ok(match outcome {
            Ok(()) => api::CheckRepositoryAccessResponse {
                has_access: true,
                ..Default::default()
            },
            Err(
                e @ (ScmError::Unavailable(_)
                | ScmError::RateLimited { .. }
                | ScmError::InvalidInput(_)),
            ) => {
                return Err(e.into());
            }
            Err(e) => api::CheckRepositoryAccessResponse {
                has_access: false,
                error_message: access_message(&e),
                ..Default::default()
            },
        })
    }

    /// Finishes an OAuth sign-in: trades the code with the integration's app.
    pub async fn exchange_code(&self, exchange: &OAuthCodeExchange) -> RespondRequest {
        let outcome = async {
            let registry = self.registry()?;
            let host = resolve(&registry, &exchange.host)?;
            let provider = provider_for(host.clone(), self.timeout);
            let client = self
                .oauth_client(&host, provider.as_ref())
                .ok_or_else(|| WorkError {
                    code: "failed_precondition",
                    message: format!(
                        "this runner has no OAuth app for {} whose secret it can open",
                        host.host
                    ),
                    authentication: None,
                })?;
            let http = corral_scm::http::Http::new(&host.host, self.timeout);
            let issued = client
                .exchange_code(&http, &exchange.code, &exchange.redirect_uri)
                .await?;
            Ok::<_, WorkError>(HostCredential {
                host: host.host.clone(),
                token: issued.access_token,
                refresh_token: issued.refresh_token.unwrap_or_default(),
                expires_at: issued
                    .expires_in
                    .map(|s| now_secs() + s as i64)
                    .unwrap_or(0),
                source: EnumValue::Known(
                    api::HostAuthenticationTokenSource::HOST_AUTHENTICATION_TOKEN_SOURCE_OAUTH,
                ),
                integration_id: self
                    .integration_for(&host)
                    .map(|i| i.id.clone())
                    .unwrap_or_default(),
                scopes: issued.scopes,
                ..Default::default()
            })
        }
        .await;
        match outcome {
            Ok(credential) => RespondRequest {
                result: Some(respond_request::Result::OauthToken(Box::new(credential))),
                ..Default::default()
            },
            Err(e) => RespondRequest {
                failure: MessageField::some(Failure {
                    code: e.code.to_string(),
                    message: e.message,
                    ..Default::default()
                }),
                ..Default::default()
            },
        }
    }
}

fn resolve(registry: &HostRegistry, host: &str) -> Result<ScmHost, WorkError> {
    let key = host_key(host);
    if key.is_empty() {
        return Err(WorkError::invalid("the SCM host is empty"));
    }
    registry.resolve(&key).ok_or_else(|| {
        WorkError::invalid(format!(
            "{key} is not a known SCM host: add an SCM integration for it to this runner"
        ))
    })
}

/// Without a host, search where the user has a token (the first), else GitHub.
fn default_host(registry: &HostRegistry, request: &ScmRequest) -> Result<ScmHost, WorkError> {
    request
        .credentials
        .iter()
        .find_map(|c| registry.resolve(&host_key(&c.host)))
        .or_else(|| registry.resolve("github.com"))
        .ok_or_else(|| WorkError::invalid("name the SCM host to search"))
}

/// Page number and size from a request; tokens look like `NEXT_PAGE/TOTAL_PAGES/TOTAL_COUNT`.
fn paging(
    pagination: Option<&api::PaginationRequest>,
    limit: i32,
) -> Result<(u32, u32), WorkError> {
    let size = pagination.map(|p| p.page_size).unwrap_or(0);
    let per_page = match (size, limit) {
        (s, _) if s > 0 => s as u32,
        (_, l) if l > 0 => l as u32,
        _ => DEFAULT_PAGE_SIZE,
    };
    let token = pagination.map(|p| p.token.as_str()).unwrap_or("");
    let page = if token.is_empty() {
        1
    } else {
        token
            .split('/')
            .next()
            .and_then(|p| p.parse::<u32>().ok())
            .filter(|p| *p >= 1)
            .ok_or_else(|| WorkError::invalid("pagination.token: not a page token from this API"))?
    };
    Ok((page, per_page))
}

/// The next page's token (`NEXT/TOTAL_PAGES/TOTAL_COUNT`, empty on the last
/// page) and the last page number where known.
fn page_token<T>(found: &Paged<T>) -> (String, i32) {
    let total_pages = found.total_pages.unwrap_or(0);
    let token = if found.has_next {
        format!(
            "{}/{}/{}",
            found.page + 1,
            total_pages,
            found.total_count.unwrap_or(0)
        )
    } else {
        String::new()
    };
    (token, total_pages as i32)
}

fn access_message(e: &ScmError) -> String {
    match e {
        ScmError::AuthenticationRequired { host, .. } => {
            format!("you are not authenticated with {host}; add a token for it or sign in")
        }
        ScmError::PermissionDenied(m) | ScmError::NotFound(m) => {
            format!("the repository does not exist or you may not read it ({m})")
        }
        other => other.to_string(),
    }
}

fn context_response(original: &str, context: Context) -> api::ParseContextURLResponse {
    let git = context.git;
    let change = context.change;
    api::ParseContextURLResponse {
        original_context_url: original.to_string(),
        git: MessageField::some(api::parse_context_url_response::GitContext {
            clone_url: git.clone_url,
            branch: git.branch,
            commit: git.commit,
            host: git.host.clone(),
            owner: git.owner.clone(),
            repo: git.repo.clone(),
            upstream_remote_url: git.upstream_remote_url,
            tag: git.tag,
            ..Default::default()
        }),
        pr: change
            .as_ref()
            .map(|c| {
                MessageField::some(api::parse_context_url_response::PullRequest {
                    id: c.id.clone(),
                    title: c.title.clone(),
                    from_branch: c.from_branch.clone(),
                    to_branch: c.to_branch.clone(),
                    ..Default::default()
                })
            })
            .unwrap_or_default(),
        issue: context
            .issue
            .map(|i| {
                MessageField::some(api::parse_context_url_response::Issue {
                    id: i.id,
                    title: i.title,
                    ..Default::default()
                })
            })
            .unwrap_or_default(),
        pull_request: change
            .map(|c| {
                use corral_scm::ChangeState as S;
                let state = match c.state {
                    S::Open => api::pull_request::State::STATE_OPEN,
                    S::Closed => api::pull_request::State::STATE_CLOSED,
                    S::Merged => api::pull_request::State::STATE_MERGED,
                    S::Unspecified => api::pull_request::State::STATE_UNSPECIFIED,
                };
                MessageField::some(api::PullRequest {
                    id: c.id,
                    title: c.title,
                    from_branch: c.from_branch,
                    to_branch: c.to_branch,
                    url: c.url,
                    author: c.author,
                    repository: MessageField::some(api::pull_request::Repository {
                        clone_url: c.head_clone_url,
                        host: git.host,
                        owner: c.head_owner,
                        name: c.head_repo,
                        ..Default::default()
                    }),
                    draft: c.draft,
                    state: EnumValue::Known(state),
                    head_sha: c.head_sha,
                    ..Default::default()
                })
            })
            .unwrap_or_default(),
        scm_id: context.scm_id,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_keys_drop_scheme_and_path() {
        assert_eq!(host_key("HTTP://127.0.0.1:3000/"), "127.0.0.1:3000");
        assert_eq!(host_key("github.com"), "github.com");
        assert_eq!(
            host_key("https://tfs.example.com/tfs/Coll"),
            "tfs.example.com"
        );
    }

    /// A host whose integration says `pat: false` takes only OAuth tokens:
    /// a personal token in the request is as good as none.
    #[tokio::test]
    async fn personal_tokens_are_ignored_where_pat_is_false() {
        let integrations = [api::SCMIntegration {
            id: "integration".into(),
            scm_id: "gitlab".into(),
            host: "http://git.example.test".into(),
            pat: false,
            ..Default::default()
        }];
        let key = SecretKey::generate(&mut crypto_box::aead::OsRng);
        let work = ScmWork {
            integrations: &integrations,
            key: &key,
            timeout: SCM_TIMEOUT,
        };
        let host = work
            .registry()
            .ok()
            .and_then(|r| r.resolve("git.example.test"))
            .unwrap();
        let provider = provider_for(host.clone(), SCM_TIMEOUT);
        let credential = |token: &str, source| HostCredential {
            host: "git.example.test".into(),
            token: token.into(),
            source: EnumValue::Known(source),
            ..Default::default()
        };
        use api::HostAuthenticationTokenSource as Source;
        let mut request = ScmRequest {
            credentials: vec![credential(
                "personal",
                Source::HOST_AUTHENTICATION_TOKEN_SOURCE_PAT,
            )],
            ..Default::default()
        };
        let refused = work
            .credentials(&host, provider.as_ref(), &request, &mut Vec::new())
            .await
            .err()
            .unwrap();
        assert_eq!(refused.code, "failed_precondition");
        request.credentials.push(credential(
            "signed-in",
            Source::HOST_AUTHENTICATION_TOKEN_SOURCE_OAUTH,
        ));
        let used = work
            .credentials(&host, provider.as_ref(), &request, &mut Vec::new())
            .await
            .ok()
            .unwrap();
        assert_eq!(used.token, "signed-in");
    }

    #[test]
    fn page_tokens_follow_the_published_format() {
        let found = Paged {
            items: vec![1, 2],
            page: 2,
            total_pages: Some(5),
            total_count: Some(42),
            has_next: true,
        };
        assert_eq!(page_token(&found), ("3/5/42".to_string(), 5));
        let last = Paged {
            items: vec![1],
            page: 5,
            total_pages: Some(5),
            total_count: Some(42),
            has_next: false,
        };
        assert_eq!(page_token(&last).0, "");
        let req = api::PaginationRequest {
            page_size: 10,
            token: "3/5/42".into(),
            ..Default::default()
        };
        assert_eq!(paging(Some(&req), 0).ok(), Some((3, 10)));
        assert_eq!(paging(None, 7).ok(), Some((1, 7)));
        assert_eq!(paging(None, 0).ok(), Some((1, DEFAULT_PAGE_SIZE)));
        let bad = api::PaginationRequest {
            token: "x".into(),
            ..Default::default()
        };
        assert!(paging(Some(&bad), 0).is_err());
    }
}
