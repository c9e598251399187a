//! GitHub and GitHub Enterprise Server, through the REST API
//! (`https://api.github.com`, or `{web}/api/v3` on Enterprise Server).
//! What it shares with Gitea is in `github_like`; here are GitHub's own ways.

use async_trait::async_trait;
use serde::Deserialize;

use super::Provider;
use super::github_like::{Dialect, Owner, Pull, Repo, Rest, issue_number, page_info};
use super::page_of;
use crate::http::Auth;
use crate::http::Http;
use crate::{
    Context, ContextUrl, Credentials, Organization, Paged, PatHelp, Repository, ScmError, ScmHost,
    SearchMode,
};

/// The REST API version corral was written against.
const API_VERSION: &str = "2022-11-28";
/// GitHub's largest page.
const MAX_PER_PAGE: u32 = 100;
/// GitHub's search returns at most this many results, however many match.
const SEARCH_RESULT_CAP: u64 = 1000;

/// First path segments of github.com pages that are not repositories.
const RESERVED_OWNERS: &[&str] = &[
    "about",
    "apps",
    "codespaces",
    "collections",
    "dashboard",
    "enterprise",
    "enterprises",
    "explore",
    "features",
    "issues",
    "login",
    "logout",
    "marketplace",
    "new",
    "notifications",
    "organizations",
    "orgs",
    "pricing",
    "pulls",
    "search",
    "settings",
    "site",
    "sponsors",
    "topics",
    "trending",
];

static DIALECT: Dialect = Dialect {
    max_per_page: MAX_PER_PAGE,
    paging: |page, per_page| {
        [
            ("per_page", per_page.to_string()),
            ("page", page.to_string()),
        ]
    },
    headers: &[
        ("Accept", "application/vnd.github+json"),
        ("X-GitHub-Api-Version", API_VERSION),
    ],
    auth: Auth::Bearer,
    commit_path: &["commits"],
    pull_page: "pull",
    is_draft: |p: &Pull| p.draft.unwrap_or(false),
    // A closed pull request with `merged_at` set was merged, whatever `merged` says.
    is_merged: |p: &Pull| p.merged || p.merged_at.is_some(),
};

pub struct GitHub {
    api: Rest,
}

/// One of the user's organization memberships.
#[derive(Deserialize)]
struct Membership {
    /// `admin` or `member`.
    role: String,
    organization: Owner,
}

#[derive(Deserialize)]
struct SearchAnswer {
    total_count: u64,
    items: Vec<Repo>,
}

impl GitHub {
    pub fn new(host: ScmHost, http: Http) -> Self {
        Self {
            api: Rest::new(host, http, &DIALECT),
        }
    }
}

#[async_trait]
impl Provider for GitHub {
    fn host(&self) -> &ScmHost {
        &self.api.host
    }

    async fn parse_context(
        &self,
        url: &ContextUrl,
        creds: &Credentials,
    ) -> Result<Context, ScmError> {
        let api = &self.api;
        let auth = api.auth(creds)?;
        let (git, default_branch) = api.repo_context(url, RESERVED_OWNERS, &auth).await?;
        let rest = &url.segments[2..];
        let kind = rest.first().map(String::as_str).unwrap_or("");
        let resolved = match (kind, rest.get(1)) {
            ("pull", Some(number)) => {
                let number = issue_number(number, "pull request")?;
                return api.pull_context(git, &number, &auth).await;
            }
            ("issues", Some(number)) => {
                let number = issue_number(number, "issue")?;
                return api.issue_context(git, &number, &auth).await;
            }
            ("commit", Some(sha)) => Some(api.commit_ref(&git, sha, &auth).await?),
            ("tree" | "blob" | "commits" | "raw" | "blame", Some(_)) => Some(
                api.resolve_ref(&git.owner, &git.repo, &rest[1..], true, true, &auth)
                    .await?,
            ),
            ("releases", Some(tag)) if tag == "tag" && rest.len() > 2 => Some(
                api.resolve_ref(&git.owner, &git.repo, &rest[2..], true, true, &auth)
                    .await?,
            ),
            _ => None,
        };
        Ok(api.ref_context(git, resolved, default_branch))
    }

    async fn search_repositories(
        &self,
        creds: &Credentials,
        query: &str,
        mode: SearchMode,
        page: u32,
        per_page: u32,
    ) -> Result<Paged<Repository>, ScmError> {
        let auth = self.api.auth(creds)?;
        let page = page.max(1);
        let per_page = per_page.clamp(1, MAX_PER_PAGE);
        let words = query.split_whitespace().collect::<Vec<_>>().join(" ");
        let paging = self.api.paging(page, per_page);
        if words.is_empty() {
            if mode == SearchMode::Native {
                return Err(ScmError::InvalidInput("the search query is empty".into()));
            }
            // No words: every repository the user can see, most recently updated first.
            let mut query = vec![("sort", "updated".to_string())];
            query.extend(paging);
            let url = self.api.url(&["user", "repos"], &query)?;
            let answer = self.api.get::<Vec<Repo>>(&url, &auth).await?;
            let paging = page_info(&answer.headers, page, per_page, answer.body.len(), None);
            return Ok(paging.into_paged(self.api.repositories(answer.body)));
        }
        let q = match mode {
            SearchMode::Keyword => format!("{words} in:name"),
            SearchMode::Native => query.trim().to_string(),
        };
        let mut params = vec![("q", q)];
        params.extend(paging);
        let url = self.api.url(&["search", "repositories"], &params)?;
        let answer = self
            .api
            .get::<SearchAnswer>(&url, &auth)
            .await
            .map_err(|e| match e {
                // 422: GitHub could not read the query.
                ScmError::Unavailable(m) if m.contains("422") => {
                    ScmError::InvalidInput(format!("GitHub cannot search for {query:?}: {m}"))
                }
                e => e,
            })?;
        let total = answer.body.total_count;
        let mut info = page_info(
            &answer.headers,
            page,
            per_page,
            answer.body.items.len(),
            Some(total),
        );
        // Only the first 1,000 results can be paged to.
        let reachable = SEARCH_RESULT_CAP.div_ceil(u64::from(per_page)) as u32;
        info.total_pages = info.total_pages.map(|p| p.min(reachable));
        info.has_next = info.has_next && page < reachable;
        Ok(info.into_paged(self.api.repositories(answer.body.items)))
    }

    async fn list_organizations(
        &self,
        creds: &Credentials,
        query: &str,
        page: u32,
        per_page: u32,
    ) -> Result<Paged<Organization>, ScmError> {
        let auth = self.api.auth(creds)?;
        let page = page.max(1);
        let per_page = per_page.clamp(1, MAX_PER_PAGE);
        let web = self.api.host.web_base();
        // Memberships rather than `/user/orgs`: they carry the user's role.
        let to_org = |m: Membership| Organization {
            url: format!("{web}/{}", m.organization.login),
            name: m.organization.login,
            is_admin: Some(m.role == "admin"),
        };
        let query = query.trim().to_lowercase();
        if query.is_empty() {
            let url = self.api.url(
                &["user", "memberships", "orgs"],
                &[
                    ("state", "active".to_string()),
                    ("per_page", per_page.to_string()),
                    ("page", page.to_string()),
                ],
            )?;
            let answer = self.api.get::<Vec<Membership>>(&url, &auth).await?;
            let info = page_info(&answer.headers, page, per_page, answer.body.len(), None);
            return Ok(info.into_paged(answer.body.into_iter().map(to_org).collect()));
        }
        // The API has no filter: read every organization, filter, then page.
        let all = self
            .api
            .all_pages::<Membership>(
                &["user", "memberships", "orgs"],
                &[("state", "active".to_string())],
                &auth,
            )
            .await?;
        let matching: Vec<Organization> = all
            .into_iter()
            .filter(|m| m.organization.login.to_lowercase().contains(&query))
            .map(to_org)
            .collect();
        Ok(page_of(matching, page, per_page))
    }

    async fn check_token(&self, creds: &Credentials) -> Result<(), ScmError> {
        let auth = self.api.auth(creds)?;
        let url = self.api.url(&["user"], &[])?;
        self.api
            .get::<serde_json::Value>(&url, &auth)
            .await
            .map(|_| ())
    }

    async fn check_repository_access(
        &self,
        creds: &Credentials,
        url: &ContextUrl,
    ) -> Result<(), ScmError> {
        self.api
            .check_repository_access(creds, url, RESERVED_OWNERS)
            .await
    }

    fn pat_help(&self) -> PatHelp {
        PatHelp {
            create_url: format!("{}/settings/tokens/new?scopes=repo,read:org&description=corral", self.api.host.web_base()),
            docs_url: "https://docs.github.com/en/authentication/keeping-your-account-and-data-secure/managing-your-personal-access-tokens".into(),
            example: "ghp_R2x9kQ7mZpL4vT1bN8cW3yH6jD0sF5aE2gUo".into(),
            required_scopes: vec!["repo".into(), "read:org".into()],
        }
    }

    fn oauth_paths(&self) -> (&'static str, &'static str) {
        ("/login/oauth/authorize", "/login/oauth/access_token")
    }

    fn oauth_scopes(&self) -> Vec<String> {
        vec!["repo".into(), "read:org".into(), "read:user".into()]
    }
}
