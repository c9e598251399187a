//! The providers, one module each, behind one trait.

mod azure_devops;
mod bitbucket_cloud;
mod bitbucket_server;
mod gitea;
mod github;
mod github_like;
mod gitlab;

use std::time::Duration;

use async_trait::async_trait;

use crate::http::Http;
use crate::{
    ChangeRequest, Context, ContextUrl, Credentials, GitContext, Organization, Paged, PatHelp,
    Repository, ScmError, ScmHost, ScmKind, SearchMode,
};

/// What corral asks of an SCM. Every call takes the user's credentials for the
/// host; a missing or rejected token is [`ScmError::AuthenticationRequired`].
#[async_trait]
pub trait Provider: Send + Sync {
    fn host(&self) -> &ScmHost;

    /// Resolves a context URL of this provider's host: repository, branch or tag
    /// (names with slashes resolved against the real refs, longest match wins),
    /// commit, file or folder in a ref, pull/merge request, or issue.
    async fn parse_context(
        &self,
        url: &ContextUrl,
        creds: &Credentials,
    ) -> Result<Context, ScmError>;

    /// Repositories the user can see that match `query`; `page` starts at 1.
    async fn search_repositories(
        &self,
        creds: &Credentials,
        query: &str,
        mode: SearchMode,
        page: u32,
        per_page: u32,
    ) -> Result<Paged<Repository>, ScmError>;

    /// Organizations (groups, workspaces, projects) the user belongs to.
    async fn list_organizations(
        &self,
        creds: &Credentials,
        query: &str,
        page: u32,
        per_page: u32,
    ) -> Result<Paged<Organization>, ScmError>;

    /// Whether the SCM accepts the token (asks who the token belongs to).
    async fn check_token(&self, creds: &Credentials) -> Result<(), ScmError>;

    /// Whether the user may read the repository at `url`.
    async fn check_repository_access(
        &self,
        creds: &Credentials,
        url: &ContextUrl,
    ) -> Result<(), ScmError>;

    /// How to create a personal access token for this host.
    fn pat_help(&self) -> PatHelp;

    /// The root of this host's OAuth 2 server, when no `issuer_url` says
    /// otherwise: the host's web base, for most.
    fn oauth_root(&self) -> String {
        self.host().web_base()
    }

    /// The authorize and token endpoints' paths below the OAuth server's root.
    fn oauth_paths(&self) -> (&'static str, &'static str);

    /// The authorize and token endpoints: below the SCM integration's
    /// `issuer_url` when it has one (an OpenID issuer's trailing `/v2.0`, as
    /// Microsoft Entra names tenants, is not part of the root), else below
    /// [`Provider::oauth_root`].
    fn oauth_endpoints(&self, issuer_url: Option<&str>) -> OAuthEndpoints {
        let root = match issuer_url.map(|u| u.trim().trim_end_matches('/')) {
            Some(issuer) if !issuer.is_empty() => {
                issuer.strip_suffix("/v2.0").unwrap_or(issuer).to_string()
            }
            _ => self.oauth_root(),
        };
        let (authorize, token) = self.oauth_paths();
        OAuthEndpoints {
            authorize: format!("{root}{authorize}"),
            token: format!("{root}{token}"),
        }
    }

    /// The authorize endpoint of this host's own OAuth 2 server.
    fn oauth_authorize_url(&self) -> String {
        self.oauth_endpoints(None).authorize
    }

    /// The token endpoint of this host's own OAuth 2 server.
    fn oauth_token_url(&self) -> String {
        self.oauth_endpoints(None).token
    }

    /// Scopes corral asks for when signing in with OAuth.
    fn oauth_scopes(&self) -> Vec<String>;
}

/// Where a browser signs in and where codes are traded for tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthEndpoints {
    pub authorize: String,
    pub token: String,
}

/// The provider for `host`, with `timeout` on each SCM call.
pub fn provider_for(host: ScmHost, timeout: Duration) -> Box<dyn Provider> {
    let http = Http::new(&host.host, timeout);
    match host.kind {
        ScmKind::GitHub => Box::new(github::GitHub::new(host, http)),
        ScmKind::GitLab => Box::new(gitlab::GitLab::new(host, http)),
        ScmKind::BitbucketCloud => Box::new(bitbucket_cloud::BitbucketCloud::new(host, http)),
        ScmKind::BitbucketServer => Box::new(bitbucket_server::BitbucketServer::new(host, http)),
        ScmKind::AzureDevOps => Box::new(azure_devops::AzureDevOps::new(host, http)),
        ScmKind::Gitea => Box::new(gitea::Gitea::new(host, http)),
    }
}

/// The context of a pull or merge request: the repository its head branch
/// lives in, on that branch (its tip, so `commit` stays empty; the head SHA
/// is in the change). For a change from a fork that is the fork — its clone
/// URL and the branch can be fetched as they stand — and
/// `upstream_remote_url` names the base repository the change targets, as
/// Gitpod has always opened them. A fork that is gone leaves the base.
pub(crate) fn change_context(
    scm: &ScmHost,
    base: GitContext,
    change: ChangeRequest,
    from_fork: bool,
) -> Context {
    let git = if from_fork && !change.head_clone_url.is_empty() {
        GitContext {
            owner: change.head_owner.clone(),
            repo: change.head_repo.clone(),
            clone_url: change.head_clone_url.clone(),
            branch: change.from_branch.clone(),
            commit: String::new(),
            upstream_remote_url: base.clone_url.clone(),
            ..base
        }
    } else {
        GitContext {
            branch: change.from_branch.clone(),
            commit: String::new(),
            upstream_remote_url: String::new(),
            ..base
        }
    };
    Context {
        git,
        change: Some(change),
        issue: None,
        scm_id: scm.kind.id().to_string(),
    }
}

/// What the ref part of a URL (after `tree/`, `src/branch/`, `-/blob/`…) names.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Ref {
    Branch(String),
    Tag(String),
    Commit(String),
}

impl Ref {
    /// Puts the ref where a context keeps it.
    pub(super) fn set_on(self, git: &mut GitContext) {
        match self {
            Ref::Branch(name) => git.branch = name,
            Ref::Tag(name) => git.tag = name,
            Ref::Commit(sha) => git.commit = sha,
        }
    }
}

/// The longest branch or tag `segments` start with; a branch wins a tie.
pub(super) fn pick_ref(segments: &[String], branches: &[String], tags: &[String]) -> Option<Ref> {
    let branch = longest_ref_prefix(segments, branches.iter().map(String::as_str));
    let tag = longest_ref_prefix(segments, tags.iter().map(String::as_str));
    match (branch, tag) {
        (Some((b, bn)), Some((t, tn))) => Some(if tn > bn { Ref::Tag(t) } else { Ref::Branch(b) }),
        (Some((b, _)), None) => Some(Ref::Branch(b)),
        (None, Some((t, _))) => Some(Ref::Tag(t)),
        (None, None) => None,
    }
}

/// The context of a repository at a ref, with no change or issue.
pub(crate) fn plain_context(scm: &ScmHost, git: GitContext) -> Context {
    Context {
        git,
        change: None,
        issue: None,
        scm_id: scm.kind.id().to_string(),
    }
}

/// The token, or why there is none.
pub(super) fn require_token(host: &ScmHost, creds: &Credentials) -> Result<String, ScmError> {
    let token = creds.token.trim();
    if token.is_empty() {
        return Err(ScmError::AuthenticationRequired {
            host: host.host.clone(),
            reason: format!("no {} token was given", host.kind.display_name()),
        });
    }
    Ok(token.to_string())
}

/// A pull request, merge request or issue number as in `/pull/12`: positive.
pub(super) fn change_number(segment: &str, what: &str) -> Result<u64, ScmError> {
    match segment.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ScmError::InvalidInput(format!(
            "{segment:?} is not a {what} number"
        ))),
    }
}

/// 7 to 40 (or 64, for SHA-256 repositories) hex digits.
pub(super) fn looks_like_sha(s: &str) -> bool {
    (7..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// 7 to 40 hex digits: for SCMs whose repositories are SHA-1 only.
pub(super) fn looks_like_sha1(s: &str) -> bool {
    (7..=40).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Page `page` (from 1) of a list corral filtered itself.
pub(super) fn page_of<T>(all: Vec<T>, page: u32, per_page: u32) -> Paged<T> {
    let total = all.len();
    let per = per_page as usize;
    let start = (page as usize - 1).saturating_mul(per).min(total);
    let end = start.saturating_add(per).min(total);
    let total_pages = total.div_ceil(per) as u32;
    let items = all.into_iter().skip(start).take(end - start).collect();
    Paged {
        items,
        page,
        total_pages: Some(total_pages),
        total_count: Some(total as u64),
        has_next: page < total_pages,
    }
}

/// For `#[serde(default = "yes")]`: fields that are true unless the SCM says otherwise.
pub(super) fn yes() -> bool {
    true
}

/// The longest `ref_names` entry that `segments` starts with (joined by `/`),
/// and how many segments it used. Branch and tag names may contain slashes,
/// so `feature/x/src/main.rs` needs the real refs to split.
pub fn longest_ref_prefix<'a>(
    segments: &[String],
    ref_names: impl IntoIterator<Item = &'a str>,
) -> Option<(String, usize)> {
    let mut best: Option<(String, usize)> = None;
    for name in ref_names {
        let parts = name.split('/').count();
        if parts <= segments.len()
            && segments[..parts].join("/") == name
            && best.as_ref().is_none_or(|(_, n)| parts > *n)
        {
            best = Some((name.to_string(), parts));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(kind: ScmKind, host: &str) -> Box<dyn Provider> {
        let host = ScmHost {
            kind,
            host: host.into(),
            scheme: "https".into(),
            virtual_directory: None,
        };
        provider_for(host, Duration::from_secs(1))
    }

    #[test]
    fn oauth_endpoints_hang_off_the_issuer_url_when_there_is_one() {
        let ghe = provider(ScmKind::GitHub, "ghe.example.com");
        assert_eq!(
            ghe.oauth_endpoints(None),
            OAuthEndpoints {
                authorize: "https://ghe.example.com/login/oauth/authorize".into(),
                token: "https://ghe.example.com/login/oauth/access_token".into(),
            }
        );
        assert_eq!(ghe.oauth_endpoints(Some("")), ghe.oauth_endpoints(None));
        assert_eq!(
            ghe.oauth_endpoints(Some("https://sso.example.com/github/")),
            OAuthEndpoints {
                authorize: "https://sso.example.com/github/login/oauth/authorize".into(),
                token: "https://sso.example.com/github/login/oauth/access_token".into(),
            }
        );
        let ado = provider(ScmKind::AzureDevOps, "dev.azure.com");
        assert_eq!(
            ado.oauth_endpoints(None).token,
            "https://login.microsoftonline.com/common/oauth2/v2.0/token"
        );
        assert_eq!(
            ado.oauth_endpoints(Some("https://login.microsoftonline.com/tenant-1/v2.0"))
                .authorize,
            "https://login.microsoftonline.com/tenant-1/oauth2/v2.0/authorize"
        );
        let gitlab = provider(ScmKind::GitLab, "gitlab.example.com");
        assert_eq!(
            gitlab.oauth_endpoints(Some("http://127.0.0.1:9000")).token,
            "http://127.0.0.1:9000/oauth/token"
        );
    }

    #[test]
    fn longest_ref_wins() {
        let segs: Vec<String> = ["feature", "x", "src", "main.rs"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            longest_ref_prefix(&segs, ["feature", "feature/x", "main"]),
            Some(("feature/x".into(), 2))
        );
        assert_eq!(longest_ref_prefix(&segs, ["main"]), None);
    }

    #[test]
    fn filtered_pages() {
        let p = page_of((1..=5).collect::<Vec<_>>(), 2, 2);
        assert_eq!(
            (p.items, p.total_pages, p.total_count, p.has_next),
            (vec![3, 4], Some(3), Some(5), true)
        );
        let beyond = page_of((1..=5).collect::<Vec<_>>(), 9, 2);
        assert!(beyond.items.is_empty() && !beyond.has_next);
    }

    #[test]
    fn ties_go_to_branches_and_longer_tags_win() {
        let segs: Vec<String> = ["release", "v1", "docs"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            pick_ref(&segs, &s(&["release"]), &s(&["release/v1"])),
            Some(Ref::Tag("release/v1".into()))
        );
        assert_eq!(
            pick_ref(&segs, &s(&["release/v1"]), &s(&["release/v1"])),
            Some(Ref::Branch("release/v1".into()))
        );
        assert_eq!(pick_ref(&segs, &s(&["main"]), &s(&[])), None);
    }
}
