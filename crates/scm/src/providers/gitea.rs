//! Gitea and Forgejo (which keeps Gitea's API), through `{web}/api/v1`.

use async_trait::async_trait;
use serde::Deserialize;

use super::Provider;
use super::github_like::{Dialect, Owner, Pull, Repo, Rest, issue_number, page_info};
use super::{page_of, yes};
use crate::http::{Answer, Auth, Http};
use crate::{
    Context, ContextUrl, Credentials, Organization, Paged, PatHelp, Repository, ScmError, ScmHost,
    SearchMode,
};

/// Gitea's default `MAX_RESPONSE_ITEMS`: larger pages are cut to this.
const MAX_PER_PAGE: u32 = 50;

/// First path segments of Gitea pages that are not repositories (Gitea reserves
/// them as user names).
const RESERVED_OWNERS: &[&str] = &[
    "-",
    ".well-known",
    "admin",
    "api",
    "assets",
    "attachments",
    "avatars",
    "captcha",
    "explore",
    "issues",
    "login",
    "metrics",
    "milestones",
    "notifications",
    "org",
    "pulls",
    "repo",
    "user",
    "v2",
];

/// Gitea's default `WORK_IN_PROGRESS_PREFIXES`: before drafts were a field,
/// a title starting with one of these marked a draft.
const WIP_PREFIXES: &[&str] = &["WIP:", "[WIP]"];

static DIALECT: Dialect = Dialect {
    max_per_page: MAX_PER_PAGE,
    paging: |page, limit| [("page", page.to_string()), ("limit", limit.to_string())],
    headers: &[("Accept", "application/json")],
    auth: Auth::Token,
    commit_path: &["git", "commits"],
    pull_page: "pulls",
    // Older Gitea has no `draft`: the title says it.
    is_draft: |p: &Pull| {
        p.draft.unwrap_or_else(|| {
            WIP_PREFIXES
                .iter()
                .any(|w| p.title.to_uppercase().starts_with(w))
        })
    },
    is_merged: |p: &Pull| p.merged,
};

pub struct Gitea {
    api: Rest,
}

#[derive(Deserialize)]
struct SearchAnswer {
    #[serde(default = "yes")]
    ok: bool,
    #[serde(default)]
    data: Vec<Repo>,
}

#[derive(Deserialize)]
struct Org {
    /// The organization's login name (`name` in newer versions, too).
    #[serde(default)]
    username: String,
    #[serde(default)]
    name: String,
}

impl Org {
    fn login(self) -> String {
        if self.username.is_empty() {
            self.name
        } else {
            self.username
        }
    }
}

impl Gitea {
    pub fn new(host: ScmHost, http: Http) -> Self {
        Self {
            api: Rest::new(host, http, &DIALECT),
        }
    }

    async fn orgs_page(
        &self,
        page: u32,
        limit: u32,
        auth: &Auth,
    ) -> Result<Answer<Vec<Org>>, ScmError> {
        let url = self
            .api
            .url(&["user", "orgs"], &self.api.paging(page, limit))?;
        self.api.get(&url, auth).await
    }
}

#[async_trait]
impl Provider for Gitea {
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
        let sub = rest.get(1).map(String::as_str);
        let resolved = match (kind, sub) {
            ("pulls" | "pull", Some(number)) => {
                let number = issue_number(number, "pull request")?;
                return api.pull_context(git, &number, &auth).await;
            }
            ("issues", Some(number)) => {
                let number = issue_number(number, "issue")?;
                return api.issue_context(git, &number, &auth).await;
            }
            ("commit", Some(sha)) => Some(api.commit_ref(&git, sha, &auth).await?),
            ("src" | "raw" | "blame" | "commits" | "media", Some(which)) => {
                let (branches, tags, from) = match which {
                    "branch" => (true, false, 2),
                    "tag" => (false, true, 2),
                    "commit" => (false, false, 2),
                    _ => (true, true, 1),
                };
                match rest.get(from) {
                    None => None,
                    Some(sha) if !branches && !tags => {
                        Some(api.commit_ref(&git, sha, &auth).await?)
                    }
                    Some(_) => Some(
                        api.resolve_ref(
                            &git.owner,
                            &git.repo,
                            &rest[from..],
                            branches,
                            tags,
                            &auth,
                        )
                        .await?,
                    ),
                }
            }
            ("releases", Some("tag")) if rest.len() > 2 => Some(
                api.resolve_ref(&git.owner, &git.repo, &rest[2..], false, true, &auth)
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
        // Gitea matches names (not descriptions, not topics) by default, and reads
        // commas as "any of these keywords".
        let q = match mode {
            SearchMode::Keyword => query.split_whitespace().collect::<Vec<_>>().join(","),
            SearchMode::Native => query.to_string(),
        };
        let mut params = vec![("q", q)];
        params.extend(self.api.paging(page, per_page));
        let url = self.api.url(&["repos", "search"], &params)?;
        let answer = self
            .api
            .get::<SearchAnswer>(&url, &auth)
            .await
            .map_err(|e| match e {
                ScmError::Unavailable(m) if m.contains("422") => {
                    ScmError::InvalidInput(format!("Gitea cannot search for {query:?}: {m}"))
                }
                e => e,
            })?;
        if !answer.body.ok {
            return Err(ScmError::Unavailable(format!(
                "{} could not search repositories",
                self.api.host.host
            )));
        }
        let info = page_info(
            &answer.headers,
            page,
            per_page,
            answer.body.data.len(),
            None,
        );
        let web = self.api.host.web_base();
        let items = answer
            .body
            .data
            .into_iter()
            .map(|r| Repository {
                url: format!("{web}/{}", r.full_name),
                name: r.full_name,
            })
            .collect();
        Ok(info.into_paged(items))
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
        let to_org = |o: Org| {
            let name = o.login();
            Organization {
                url: format!("{web}/{name}"),
                name,
                is_admin: None,
            }
        };
        let query = query.trim().to_lowercase();
        if query.is_empty() {
            let answer = self.orgs_page(page, per_page, &auth).await?;
            let info = page_info(&answer.headers, page, per_page, answer.body.len(), None);
            return Ok(info.into_paged(answer.body.into_iter().map(to_org).collect()));
        }
        // `/user/orgs` has no filter: read them all, filter, then page.
        let mut all: Vec<Organization> = self
            .api
            .all_pages::<Org>(&["user", "orgs"], &[], &auth)
            .await?
            .into_iter()
            .map(to_org)
            .collect();
        all.retain(|o| o.name.to_lowercase().contains(&query));
        Ok(page_of(all, page, per_page))
    }

    async fn check_token(&self, creds: &Credentials) -> Result<(), ScmError> {
        let auth = self.api.auth(creds)?;
        let url = self.api.url(&["user"], &[])?;
        self.api.get::<Owner>(&url, &auth).await.map(|_| ())
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
            create_url: format!("{}/user/settings/applications", self.api.host.web_base()),
            docs_url: "https://docs.gitea.com/development/api-usage#authentication".into(),
            example: "3f9a1c7e5b2d4086af1e9c3b7d5a2f4e6c8b0a19".into(),
            // `read:user` lets corral ask whom the token belongs to (`/user`).
            required_scopes: vec![
                "read:repository".into(),
                "read:organization".into(),
                "read:user".into(),
            ],
        }
    }

    fn oauth_paths(&self) -> (&'static str, &'static str) {
        ("/login/oauth/authorize", "/login/oauth/access_token")
    }

    fn oauth_scopes(&self) -> Vec<String> {
        vec![
            "read:repository".into(),
            "read:organization".into(),
            "read:user".into(),
        ]
    }
}
