//! SCM providers, as a runner uses them: which provider serves a host, what a
//! pasted context URL points at, and the few REST calls the runner makes on a
//! user's behalf (search repositories, list organizations, check access).
//!
//! The main types:
//! - [`ScmHost`]: a host with its provider kind, scheme, API root and (Azure
//!   DevOps Server) virtual directory. [`HostRegistry`] resolves a URL's host from
//!   the well-known hosts and the runner's SCM integrations.
//! - [`Provider`]: what every provider implements; [`provider_for`] picks one.
//! - [`ContextUrl`]: a pasted URL (https, ssh, `git@host:owner/repo`), normalised.
//! - [`GitContext`] / [`Context`]: what a context URL resolves to.
//! - [`ScmError`]: failures, each mapping to one Connect code at the runner edge.
//!
//! Nothing here knows about corral's protocol: the runner converts these types.

pub mod context_url;
pub mod error;
pub mod git_http;
pub mod host;
pub mod http;
pub mod oauth;
pub mod providers;

pub use context_url::ContextUrl;
pub use error::ScmError;
pub use host::{HostRegistry, ScmHost, ScmKind};
pub use providers::{OAuthEndpoints, Provider, provider_for};

/// A user's credential for a host, as the runner hands it to a provider.
#[derive(Clone)]
pub struct Credentials {
    pub token: String,
    /// Some providers (Bitbucket Cloud app passwords) pair the token with a user name.
    pub username: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("token", &"<redacted>")
            .field("username", &self.username)
            .finish()
    }
}

/// Where a context URL leads: the repository and what in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitContext {
    pub host: String,
    pub owner: String,
    pub repo: String,
    pub clone_url: String,
    pub branch: String,
    pub tag: String,
    pub commit: String,
    /// For a change from a fork: the base repository's clone URL (the one
    /// the change targets); `clone_url`, `owner` and `repo` then name the fork.
    pub upstream_remote_url: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ChangeState {
    #[default]
    Unspecified,
    Open,
    Closed,
    Merged,
}

/// A pull or merge request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeRequest {
    pub id: String,
    pub title: String,
    pub from_branch: String,
    pub to_branch: String,
    pub url: String,
    pub author: String,
    pub draft: bool,
    pub state: ChangeState,
    pub head_sha: String,
    /// Where the head branch lives (the fork, for changes from forks).
    pub head_clone_url: String,
    pub head_owner: String,
    pub head_repo: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Issue {
    pub id: String,
    pub title: String,
}

/// Everything a context URL resolved to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    pub git: GitContext,
    pub change: Option<ChangeRequest>,
    pub issue: Option<Issue>,
    /// The provider's id as in the runner's schema (`github`, `gitlab`, …).
    pub scm_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    /// `owner/name` (with subgroups for GitLab, `project/repo` for Azure DevOps).
    pub name: String,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    pub name: String,
    pub url: String,
    /// Whether the user administers it, where the SCM says.
    pub is_admin: Option<bool>,
}

/// One page of results and how many pages there are, where the SCM says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub page: u32,
    pub total_pages: Option<u32>,
    pub total_count: Option<u64>,
    pub has_next: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchMode {
    /// Match words in repository names.
    Keyword,
    /// Pass the query to the SCM's own search syntax unchanged.
    Native,
}

/// How a user becomes authenticated for a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatHelp {
    pub create_url: String,
    pub docs_url: String,
    pub example: String,
    pub required_scopes: Vec<String>,
}
