//! Gitea and Forgejo (which keeps Gitea's API), through `{web}/api/v1`.

use super::change_context;
use async_trait::async_trait;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::Provider;
use super::github::{
    MAX_LIST_PAGES, Ref, has_more, is_full_sha, issue_number, looks_like_sha, no_commit, no_ref,
    owner_and_repo, page_info, page_of, pick_ref, repo_error, require_token,
};
use crate::http::{Answer, Auth, Http};
use crate::{
    ChangeRequest, ChangeState, Context, ContextUrl, Credentials, GitContext, Issue, Organization,
    Paged, PatHelp, Repository, ScmError, ScmHost, SearchMode,
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

pub struct Gitea {
    host: ScmHost,
    http: Http,
}

#[derive(Deserialize)]
struct User {
    login: String,
}

#[derive(Deserialize)]
struct Permissions {
    #[serde(default = "yes")]
    pull: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct Repo {
    name: String,
    full_name: String,
    owner: User,
    #[serde(default)]
    default_branch: Option<String>,
    #[serde(default)]
    permissions: Option<Permissions>,
}

#[derive(Deserialize)]
struct NamedRef {
    name: String,
}

#[derive(Deserialize)]
struct Commit {
    sha: String,
}

#[derive(Deserialize)]
struct PullEnd {
    #[serde(rename = "ref")]
    name: String,
    #[serde(default)]
    sha: String,
    #[serde(default)]
    repo: Option<Repo>,
}

#[derive(Deserialize)]
struct Pull {
    number: u64,
    #[serde(default)]
    title: String,
    state: String,
    #[serde(default)]
    draft: Option<bool>,
    #[serde(default)]
    merged: bool,
    #[serde(default)]
    user: Option<User>,
    head: PullEnd,
    base: PullEnd,
}

#[derive(Deserialize)]
struct IssueJson {
    number: u64,
    #[serde(default)]
    title: String,
    /// Set when the issue is a pull request.
    #[serde(default)]
    pull_request: Option<serde_json::Value>,
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
        Self { host, http }
    }

    fn auth(&self, creds: &Credentials) -> Result<Auth, ScmError> {
        Ok(Auth::Token(require_token(&self.host, creds)?))
    }

    fn api(&self, path: &[&str], query: &[(&str, String)]) -> Result<String, ScmError> {
        self.host.api_url(path, query)
    }

    async fn get<T: DeserializeOwned>(
        &self,
        url: &str,
        auth: &Auth,
    ) -> Result<Answer<T>, ScmError> {
        self.http.get_json(url, auth).await
    }

    fn paging(page: u32, limit: u32) -> [(&'static str, String); 2] {
        [("page", page.to_string()), ("limit", limit.to_string())]
    }

    async fn repo(&self, owner: &str, repo: &str, auth: &Auth) -> Result<Repo, ScmError> {
        let url = self.api(&["repos", owner, repo], &[])?;
        self.get::<Repo>(&url, auth)
            .await
            .map(|a| a.body)
            .map_err(|e| repo_error(e, &self.host, owner, repo))
    }

    async fn ref_names(
        &self,
        owner: &str,
        repo: &str,
        list: &str,
        auth: &Auth,
    ) -> Result<Vec<String>, ScmError> {
        let mut names = Vec::new();
        for page in 1..=MAX_LIST_PAGES {
            let url = self.api(
                &["repos", owner, repo, list],
                &Self::paging(page, MAX_PER_PAGE),
            )?;
            let answer = self.get::<Vec<NamedRef>>(&url, auth).await?;
            let count = answer.body.len();
            names.extend(answer.body.into_iter().map(|r| r.name));
            if !has_more(&answer.headers, count, MAX_PER_PAGE, names.len()) {
                return Ok(names);
            }
        }
        tracing::warn!(host = %self.host.host, owner, repo, list, "stopped listing refs after {MAX_LIST_PAGES} pages");
        Ok(names)
    }

    async fn commit_sha(
        &self,
        owner: &str,
        repo: &str,
        sha: &str,
        auth: &Auth,
    ) -> Result<String, ScmError> {
        let url = self.api(&["repos", owner, repo, "git", "commits", sha], &[])?;
        match self.get::<Commit>(&url, auth).await {
            Ok(answer) => Ok(answer.body.sha),
            Err(ScmError::NotFound(_)) => Err(no_commit(owner, repo, sha)),
            // 422: not a valid commit id.
            Err(ScmError::Unavailable(m)) if m.contains("422") => Err(no_commit(owner, repo, sha)),
            Err(e) => Err(e),
        }
    }

    /// `segments` start with a branch (`branches`), a tag (`tags`) or either
    /// (both lists, then a commit SHA), as Gitea's `src/branch/…`, `src/tag/…`
    /// and older `src/<ref>/…` URLs say.
    async fn resolve_ref(
        &self,
        owner: &str,
        repo: &str,
        segments: &[String],
        branches: bool,
        tags: bool,
        auth: &Auth,
    ) -> Result<Ref, ScmError> {
        if branches && tags && is_full_sha(&segments[0]) {
            return Ok(Ref::Commit(
                self.commit_sha(owner, repo, &segments[0], auth).await?,
            ));
        }
        let empty = async { Ok::<_, ScmError>(Vec::new()) };
        let (branch_names, tag_names) = match (branches, tags) {
            (true, true) => tokio::try_join!(
                self.ref_names(owner, repo, "branches", auth),
                self.ref_names(owner, repo, "tags", auth)
            )?,
            (true, false) => (
                self.ref_names(owner, repo, "branches", auth).await?,
                empty.await?,
            ),
            _ => (
                empty.await?,
                self.ref_names(owner, repo, "tags", auth).await?,
            ),
        };
        if let Some(found) = pick_ref(segments, &branch_names, &tag_names) {
            return Ok(found);
        }
        let what = match (branches, tags) {
            (true, false) => "branch",
            (false, true) => "tag",
            _ => "branch, tag or commit",
        };
        let missing = || {
            ScmError::NotFound(format!(
                "{owner}/{repo} has no {what} matching {:?}",
                segments.join("/")
            ))
        };
        if branches && tags && looks_like_sha(&segments[0]) {
            return match self.commit_sha(owner, repo, &segments[0], auth).await {
                Ok(sha) => Ok(Ref::Commit(sha)),
                Err(ScmError::NotFound(_)) => Err(no_ref(owner, repo, segments)),
                Err(e) => Err(e),
            };
        }
        Err(missing())
    }

    async fn pull_context(
        &self,
        git: GitContext,
        number: &str,
        auth: &Auth,
    ) -> Result<Context, ScmError> {
        let (owner, repo) = (git.owner.clone(), git.repo.clone());
        let url = self.api(&["repos", &owner, &repo, "pulls", number], &[])?;
        let pull = self.get::<Pull>(&url, auth).await.map_err(|e| match e {
            ScmError::NotFound(_) => {
                ScmError::NotFound(format!("{owner}/{repo} has no pull request #{number}"))
            }
            e => e,
        })?;
        let pull = pull.body;
        let web = self.host.web_base();
        let base_name = pull
            .base
            .repo
            .as_ref()
            .map(|r| r.full_name.clone())
            .unwrap_or_else(|| format!("{owner}/{repo}"));
        let (head_owner, head_repo, head_clone_url, from_fork) = match &pull.head.repo {
            Some(r) => (
                r.owner.login.clone(),
                r.name.clone(),
                format!("{web}/{}/{}.git", r.owner.login, r.name),
                !r.full_name.eq_ignore_ascii_case(&base_name),
            ),
            None => (String::new(), String::new(), String::new(), false),
        };
        let state = match pull.state.as_str() {
            "open" => ChangeState::Open,
            _ if pull.merged => ChangeState::Merged,
            "closed" => ChangeState::Closed,
            _ => ChangeState::Unspecified,
        };
        let draft = pull.draft.unwrap_or_else(|| {
            WIP_PREFIXES
                .iter()
                .any(|p| pull.title.to_uppercase().starts_with(p))
        });
        let change = ChangeRequest {
            id: pull.number.to_string(),
            title: pull.title,
            from_branch: pull.head.name.clone(),
            to_branch: pull.base.name,
            url: format!("{web}/{owner}/{repo}/pulls/{}", pull.number),
            author: pull.user.map(|u| u.login).unwrap_or_default(),
            draft,
            state,
            head_sha: pull.head.sha,
            head_clone_url: head_clone_url.clone(),
            head_owner,
            head_repo,
        };
        Ok(change_context(&self.host, git, change, from_fork))
    }

    async fn issue_context(
        &self,
        git: GitContext,
        number: &str,
        auth: &Auth,
    ) -> Result<Context, ScmError> {
        let (owner, repo) = (git.owner.clone(), git.repo.clone());
        let url = self.api(&["repos", &owner, &repo, "issues", number], &[])?;
        let issue = self
            .get::<IssueJson>(&url, auth)
            .await
            .map_err(|e| match e {
                ScmError::NotFound(_) => {
                    ScmError::NotFound(format!("{owner}/{repo} has no issue #{number}"))
                }
                e => e,
            })?;
        if issue
            .body
            .pull_request
            .as_ref()
            .is_some_and(|p| !p.is_null())
        {
            return self.pull_context(git, number, auth).await;
        }
        Ok(Context {
            git,
            change: None,
            issue: Some(Issue {
                id: issue.body.number.to_string(),
                title: issue.body.title,
            }),
            scm_id: self.host.kind.id().to_string(),
        })
    }

    async fn orgs_page(
        &self,
        page: u32,
        limit: u32,
        auth: &Auth,
    ) -> Result<Answer<Vec<Org>>, ScmError> {
        let url = self.api(&["user", "orgs"], &Self::paging(page, limit))?;
        self.get(&url, auth).await
    }
}

#[async_trait]
impl Provider for Gitea {
    fn host(&self) -> &ScmHost {
        &self.host
    }

    async fn parse_context(
        &self,
        url: &ContextUrl,
        creds: &Credentials,
    ) -> Result<Context, ScmError> {
        let (owner, repo) = owner_and_repo(url, RESERVED_OWNERS, &self.host)?;
        let auth = self.auth(creds)?;
        let found = self.repo(&owner, &repo, &auth).await?;
        let (owner, repo) = (found.owner.login, found.name);
        let web = self.host.web_base();
        let mut git = GitContext {
            host: self.host.host.clone(),
            clone_url: format!("{web}/{owner}/{repo}.git"),
            owner,
            repo,
            ..GitContext::default()
        };
        let rest = &url.segments[2..];
        let kind = rest.first().map(String::as_str).unwrap_or("");
        let sub = rest.get(1).map(String::as_str);
        let resolved = match (kind, sub) {
            ("pulls" | "pull", Some(number)) => {
                let number = issue_number(number, "pull request")?;
                return self.pull_context(git, &number, &auth).await;
            }
            ("issues", Some(number)) => {
                let number = issue_number(number, "issue")?;
                return self.issue_context(git, &number, &auth).await;
            }
            ("commit", Some(sha)) => {
                if !looks_like_sha(sha) {
                    return Err(ScmError::InvalidInput(format!(
                        "{sha:?} is not a commit SHA"
                    )));
                }
                Some(Ref::Commit(
                    self.commit_sha(&git.owner, &git.repo, sha, &auth).await?,
                ))
            }
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
                        if !looks_like_sha(sha) {
                            return Err(ScmError::InvalidInput(format!(
                                "{sha:?} is not a commit SHA"
                            )));
                        }
                        Some(Ref::Commit(
                            self.commit_sha(&git.owner, &git.repo, sha, &auth).await?,
                        ))
                    }
                    Some(_) => Some(
                        self.resolve_ref(
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
                self.resolve_ref(&git.owner, &git.repo, &rest[2..], false, true, &auth)
                    .await?,
            ),
            _ => None,
        };
        match resolved {
            Some(Ref::Branch(name)) => git.branch = name,
            Some(Ref::Tag(name)) => git.tag = name,
            Some(Ref::Commit(sha)) => git.commit = sha,
            // The repository itself, or one of its pages (`/pulls`, `/wiki`…).
            None => git.branch = found.default_branch.unwrap_or_default(),
        }
        Ok(Context {
            git,
            change: None,
            issue: None,
            scm_id: self.host.kind.id().to_string(),
        })
    }

    async fn search_repositories(
        &self,
        creds: &Credentials,
        query: &str,
        mode: SearchMode,
        page: u32,
        per_page: u32,
    ) -> Result<Paged<Repository>, ScmError> {
        let auth = self.auth(creds)?;
        let page = page.max(1);
        let per_page = per_page.clamp(1, MAX_PER_PAGE);
        // Gitea matches names (not descriptions, not topics) by default, and reads
        // commas as "any of these keywords".
        let q = match mode {
            SearchMode::Keyword => query.split_whitespace().collect::<Vec<_>>().join(","),
            SearchMode::Native => query.to_string(),
        };
        let mut params = vec![("q", q)];
        params.extend(Self::paging(page, per_page));
        let url = self.api(&["repos", "search"], &params)?;
        let answer = self
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
                self.host.host
            )));
        }
        let info = page_info(
            &answer.headers,
            page,
            per_page,
            answer.body.data.len(),
            None,
        );
        let web = self.host.web_base();
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
        let auth = self.auth(creds)?;
        let page = page.max(1);
        let per_page = per_page.clamp(1, MAX_PER_PAGE);
        let web = self.host.web_base();
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
        let mut all = Vec::new();
        for api_page in 1..=MAX_LIST_PAGES {
            let answer = self.orgs_page(api_page, MAX_PER_PAGE, &auth).await?;
            let count = answer.body.len();
            all.extend(answer.body.into_iter().map(to_org));
            if !has_more(&answer.headers, count, MAX_PER_PAGE, all.len()) {
                break;
            }
        }
        all.retain(|o| o.name.to_lowercase().contains(&query));
        Ok(page_of(all, page, per_page))
    }

    async fn check_token(&self, creds: &Credentials) -> Result<(), ScmError> {
        let auth = self.auth(creds)?;
        let url = self.api(&["user"], &[])?;
        self.get::<User>(&url, &auth).await.map(|_| ())
    }

    async fn check_repository_access(
        &self,
        creds: &Credentials,
        url: &ContextUrl,
    ) -> Result<(), ScmError> {
        let (owner, repo) = owner_and_repo(url, RESERVED_OWNERS, &self.host)?;
        let auth = self.auth(creds)?;
        let found = self.repo(&owner, &repo, &auth).await?;
        if found.permissions.is_some_and(|p| !p.pull) {
            return Err(ScmError::PermissionDenied(format!(
                "the token may not read {owner}/{repo} on {}",
                self.host.host
            )));
        }
        Ok(())
    }

    fn pat_help(&self) -> PatHelp {
        PatHelp {
            create_url: format!("{}/user/settings/applications", self.host.web_base()),
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
