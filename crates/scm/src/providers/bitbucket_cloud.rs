//! Bitbucket Cloud (bitbucket.org), through the REST API 2.0
//! (`https://api.bitbucket.org/2.0`, or `{web}/2.0` for other hosts).
//!
//! Repositories are `{workspace}/{repo_slug}`. Lists come in pages of
//! `{size, page, pagelen, next, values}`; corral follows `next` only while it
//! stays under the API root. Since Atlassian removed the cross-workspace
//! listings (`GET /repositories`, `GET /workspaces`; CHANGE-2770), repository
//! search walks the user's workspaces (`GET /user/workspaces`) and lists each
//! with `GET /repositories/{workspace}?role=member`.

use super::change_context;
use async_trait::async_trait;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;

use super::{
    Provider, Ref, change_number, looks_like_sha1, pick_ref, plain_context, require_token,
};
use crate::http::{Answer, Auth, Http};
use crate::{
    ChangeRequest, ChangeState, Context, ContextUrl, Credentials, GitContext, Issue, Organization,
    Paged, PatHelp, Repository, ScmError, ScmHost, SearchMode,
};

/// Bitbucket's largest page.
const MAX_PAGELEN: u32 = 100;
/// How many pages of one list (branches, tags, workspaces) corral reads at most.
const MAX_LIST_PAGES: u32 = 20;

/// First path segments of bitbucket.org pages that are not workspaces.
const RESERVED_TOP_LEVEL: &[&str] = &[
    "account",
    "dashboard",
    "product",
    "repo",
    "site",
    "snippets",
    "socialauth",
];

pub struct BitbucketCloud {
    host: ScmHost,
    http: Http,
}

#[derive(Deserialize, Default)]
struct Href {
    #[serde(default)]
    href: String,
}

#[derive(Deserialize, Default)]
struct Links {
    #[serde(default)]
    html: Option<Href>,
}

impl Links {
    fn html(&self) -> Option<&str> {
        self.html
            .as_ref()
            .map(|h| h.href.as_str())
            .filter(|h| !h.is_empty())
    }
}

#[derive(Deserialize)]
struct Repo {
    /// `workspace/repo_slug`.
    full_name: String,
    /// Null for a repository nobody has pushed to.
    #[serde(default)]
    mainbranch: Option<Named>,
    #[serde(default)]
    links: Links,
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

/// One page of a paginated list.
#[derive(Deserialize)]
struct Page<T> {
    #[serde(default = "Vec::new")]
    values: Vec<T>,
    /// Total number of values; Bitbucket leaves it out where it is costly.
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    page: Option<u32>,
    #[serde(default)]
    pagelen: Option<u32>,
    #[serde(default)]
    next: Option<String>,
}

#[derive(Deserialize)]
struct Commit {
    hash: String,
}

#[derive(Deserialize)]
struct RepoRef {
    full_name: String,
}

#[derive(Deserialize)]
struct Endpoint {
    #[serde(default)]
    branch: Option<Named>,
    #[serde(default)]
    commit: Option<Commit>,
    /// Null when the fork the change came from was deleted.
    #[serde(default)]
    repository: Option<RepoRef>,
}

#[derive(Deserialize)]
struct Account {
    #[serde(default)]
    nickname: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
}

#[derive(Deserialize)]
struct PullRequest {
    id: u64,
    #[serde(default)]
    title: String,
    state: String,
    #[serde(default)]
    draft: bool,
    #[serde(default)]
    author: Option<Account>,
    source: Endpoint,
    destination: Endpoint,
    #[serde(default)]
    links: Links,
}

#[derive(Deserialize)]
struct IssueJson {
    id: u64,
    #[serde(default)]
    title: String,
}

#[derive(Deserialize)]
struct WorkspaceAccess {
    workspace: Workspace,
    /// Whether the user administers the workspace.
    #[serde(default)]
    administrator: Option<bool>,
}

#[derive(Deserialize)]
struct Workspace {
    slug: String,
    #[serde(default)]
    links: Links,
}

/// What a context URL asks for within its repository.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// The repository itself, or one of its pages corral has no use for.
    Repository,
    /// `src/<ref>/<path>` or `branch/<name>`: a ref (maybe with slashes), then a path.
    Ref {
        segments: Vec<String>,
        only: Option<RefKind>,
    },
    Commit(String),
    PullRequest(u64),
    Issue(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefKind {
    Branch,
    Tag,
}

/// A workspace's matching repositories: how many, and the first page of them.
struct WorkspaceHits {
    workspace: String,
    size: u64,
    first: Vec<Repo>,
}

impl BitbucketCloud {
    pub fn new(host: ScmHost, http: Http) -> Self {
        Self { host, http }
    }

    /// Bearer for OAuth and access tokens; Basic `username:token` when a user
    /// name comes with the token (API tokens with the Atlassian e-mail, app passwords).
    fn auth(&self, creds: &Credentials) -> Result<Auth, ScmError> {
        let token = require_token(&self.host, creds)?;
        Ok(
            match creds
                .username
                .as_deref()
                .map(str::trim)
                .filter(|u| !u.is_empty())
            {
                Some(username) => Auth::Basic {
                    username: username.to_string(),
                    password: token,
                },
                None => Auth::Bearer(token),
            },
        )
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

    /// A `next` link corral may follow with the user's credentials.
    fn followable(&self, next: Option<String>) -> Option<String> {
        let root = format!("{}/", self.host.api_base());
        next.filter(|n| n.starts_with(&root))
    }

    /// Every value of a list, following `next` for at most [`MAX_LIST_PAGES`] pages.
    async fn all_values<T: DeserializeOwned>(
        &self,
        first_url: String,
        auth: &Auth,
    ) -> Result<Vec<T>, ScmError> {
        let mut values = Vec::new();
        let mut url = Some(first_url);
        for _ in 0..MAX_LIST_PAGES {
            let Some(current) = url.take() else {
                return Ok(values);
            };
            let page = self.get::<Page<T>>(&current, auth).await?.body;
            values.extend(page.values);
            url = self.followable(page.next);
        }
        if url.is_some() {
            tracing::warn!(host = %self.host.host, "stopped following a list after {MAX_LIST_PAGES} pages");
        }
        Ok(values)
    }

    async fn repo(&self, workspace: &str, slug: &str, auth: &Auth) -> Result<Repo, ScmError> {
        let url = self.api(&["repositories", workspace, slug], &[])?;
        self.get::<Repo>(&url, auth)
            .await
            .map(|a| a.body)
            .map_err(|e| e.about(&format!("repository {workspace}/{slug}"), &self.host.host))
    }

    fn clone_url(&self, full_name: &str) -> String {
        format!("{}/{full_name}.git", self.host.web_base())
    }

    fn git_context(&self, repo: &Repo) -> GitContext {
        let (owner, name) = repo
            .full_name
            .split_once('/')
            .unwrap_or(("", &repo.full_name));
        GitContext {
            host: self.host.host.clone(),
            owner: owner.to_string(),
            repo: name.to_string(),
            clone_url: self.clone_url(&repo.full_name),
            ..GitContext::default()
        }
    }

    fn context(&self, git: GitContext) -> Context {
        plain_context(&self.host, git)
    }

    /// Workspace, repository slug and target of a context URL, without asking Bitbucket.
    fn split(&self, url: &ContextUrl) -> Result<(String, String, Target), ScmError> {
        let segments = &url.segments;
        if segments.len() < 2
            || RESERVED_TOP_LEVEL
                .iter()
                .any(|r| r.eq_ignore_ascii_case(&segments[0]))
        {
            return Err(ScmError::InvalidInput(format!(
                "{:?} does not point to a Bitbucket repository (expected {}/WORKSPACE/REPOSITORY)",
                url.original.trim(),
                self.host.web_base()
            )));
        }
        let kind = segments.get(2).map(String::as_str).unwrap_or("");
        let args = segments.get(3..).unwrap_or(&[]);
        let target = match (kind, args.first().map(String::as_str)) {
            // `src/<commit>/<path>?at=<branch>`: the web UI pins the commit and names the branch.
            ("src", _) if url.query_value("at").is_some_and(|at| !at.is_empty()) => Target::Ref {
                segments: ref_segments(url.query_value("at").unwrap_or_default()),
                only: None,
            },
            ("src", Some(_)) => Target::Ref {
                segments: args.to_vec(),
                only: None,
            },
            ("branch", Some(_)) => Target::Ref {
                segments: args.to_vec(),
                only: Some(RefKind::Branch),
            },
            ("commits" | "commit", Some("branch")) if args.len() > 1 => Target::Ref {
                segments: args[1..].to_vec(),
                only: Some(RefKind::Branch),
            },
            ("commits" | "commit", Some("tag")) if args.len() > 1 => Target::Ref {
                segments: args[1..].to_vec(),
                only: Some(RefKind::Tag),
            },
            ("commits" | "commit", Some(sha)) if looks_like_sha1(sha) => {
                Target::Commit(sha.to_string())
            }
            ("pull-requests", Some(id)) => Target::PullRequest(change_number(id, "pull request")?),
            ("issues", Some(id)) => Target::Issue(change_number(id, "issue")?),
            _ => Target::Repository,
        };
        Ok((segments[0].clone(), segments[1].clone(), target))
    }

    /// Names of the repository's branches or tags that contain `word`.
    async fn ref_names(
        &self,
        full_name: &str,
        list: &str,
        word: &str,
        auth: &Auth,
    ) -> Result<Vec<String>, ScmError> {
        let (workspace, slug) = full_name.split_once('/').unwrap_or((full_name, ""));
        let url = self.api(
            &["repositories", workspace, slug, "refs", list],
            &[
                ("q", format!("name ~ {}", bbql_string(word))),
                ("pagelen", MAX_PAGELEN.to_string()),
            ],
        )?;
        let refs: Vec<Named> = self.all_values(url, auth).await?;
        Ok(refs.into_iter().map(|r| r.name).collect())
    }

    /// The full hash of a commit named by a (maybe abbreviated) hash.
    async fn commit_hash(
        &self,
        full_name: &str,
        sha: &str,
        auth: &Auth,
    ) -> Result<String, ScmError> {
        let (workspace, slug) = full_name.split_once('/').unwrap_or((full_name, ""));
        let url = self.api(&["repositories", workspace, slug, "commit", sha], &[])?;
        match self.get::<Commit>(&url, auth).await {
            Ok(answer) => Ok(answer.body.hash),
            Err(ScmError::NotFound(_)) => Err(ScmError::NotFound(format!(
                "{full_name} has no commit {sha}"
            ))),
            Err(e) => Err(e),
        }
    }

    /// Splits `segments` into the branch, tag or commit they start with; the
    /// longest name wins, a branch wins a tie.
    async fn resolve_ref(
        &self,
        full_name: &str,
        segments: &[String],
        only: Option<RefKind>,
        auth: &Auth,
    ) -> Result<Ref, ScmError> {
        let first = &segments[0];
        let branches = async {
            match only {
                Some(RefKind::Tag) => Ok(Vec::new()),
                _ => self.ref_names(full_name, "branches", first, auth).await,
            }
        };
        let tags = async {
            match only {
                Some(RefKind::Branch) => Ok(Vec::new()),
                _ => self.ref_names(full_name, "tags", first, auth).await,
            }
        };
        let (branches, tags) = tokio::try_join!(branches, tags)?;
        if let Some(found) = pick_ref(segments, &branches, &tags) {
            return Ok(found);
        }
        let what = match only {
            Some(RefKind::Branch) => "branch",
            Some(RefKind::Tag) => "tag",
            None => "branch, tag or commit",
        };
        let no_ref = || {
            ScmError::NotFound(format!(
                "{full_name} has no {what} matching {:?}",
                segments.join("/")
            ))
        };
        if only.is_none() && looks_like_sha1(first) {
            return match self.commit_hash(full_name, first, auth).await {
                Ok(hash) => Ok(Ref::Commit(hash)),
                Err(ScmError::NotFound(_)) => Err(no_ref()),
                Err(e) => Err(e),
            };
        }
        Err(no_ref())
    }

    async fn pull_request_context(
        &self,
        repo: &Repo,
        id: u64,
        auth: &Auth,
    ) -> Result<Context, ScmError> {
        let full_name = &repo.full_name;
        let (workspace, slug) = full_name.split_once('/').unwrap_or((full_name, ""));
        let url = self.api(
            &[
                "repositories",
                workspace,
                slug,
                "pullrequests",
                &id.to_string(),
            ],
            &[],
        )?;
        let pr = self
            .get::<PullRequest>(&url, auth)
            .await
            .map_err(|e| {
                e.if_not_found(|| {
                    ScmError::NotFound(format!("{full_name} has no pull request #{id}"))
                })
            })?
            .body;
        let source = pr.source.repository.map(|r| r.full_name);
        let from_fork = source
            .as_ref()
            .is_some_and(|s| !s.eq_ignore_ascii_case(full_name));
        let from_branch = pr.source.branch.map(|b| b.name).unwrap_or_default();
        // Pull requests carry abbreviated hashes; the source repository knows the full one.
        let mut head_sha = pr.source.commit.map(|c| c.hash).unwrap_or_default();
        if let Some(source) = source
            .as_deref()
            .filter(|_| !head_sha.is_empty() && head_sha.len() < 40)
        {
            match self.commit_hash(source, &head_sha, auth).await {
                Ok(full) => head_sha = full,
                // A fork the token cannot read: the short hash is all there is.
                Err(ScmError::NotFound(_) | ScmError::PermissionDenied(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let (head_owner, head_repo) = source
            .as_deref()
            .and_then(|s| s.split_once('/'))
            .map(|(o, r)| (o.to_string(), r.to_string()))
            .unwrap_or_default();
        let head_clone_url = source
            .as_deref()
            .map(|s| self.clone_url(s))
            .unwrap_or_default();
        let state = match pr.state.as_str() {
            "OPEN" => ChangeState::Open,
            "MERGED" => ChangeState::Merged,
            "DECLINED" | "SUPERSEDED" => ChangeState::Closed,
            _ => ChangeState::Unspecified,
        };
        let change = ChangeRequest {
            id: pr.id.to_string(),
            title: pr.title,
            from_branch: from_branch.clone(),
            to_branch: pr.destination.branch.map(|b| b.name).unwrap_or_default(),
            url: pr.links.html().map(str::to_string).unwrap_or_else(|| {
                format!(
                    "{}/{full_name}/pull-requests/{}",
                    self.host.web_base(),
                    pr.id
                )
            }),
            author: pr
                .author
                .and_then(|a| a.nickname.filter(|n| !n.is_empty()).or(a.display_name))
                .unwrap_or_default(),
            draft: pr.draft,
            state,
            head_sha,
            head_clone_url: head_clone_url.clone(),
            head_owner,
            head_repo,
        };
        Ok(change_context(
            &self.host,
            self.git_context(repo),
            change,
            from_fork,
        ))
    }

    async fn issue_context(&self, repo: &Repo, id: u64, auth: &Auth) -> Result<Context, ScmError> {
        let full_name = &repo.full_name;
        let (workspace, slug) = full_name.split_once('/').unwrap_or((full_name, ""));
        let url = self.api(
            &["repositories", workspace, slug, "issues", &id.to_string()],
            &[],
        )?;
        let no_issue = || {
            ScmError::NotFound(format!(
                "{full_name} has no issue #{id} (or no issue tracker: Bitbucket Cloud has retired them)"
            ))
        };
        let issue = match self.get::<IssueJson>(&url, auth).await {
            Ok(answer) => answer.body,
            Err(ScmError::NotFound(_)) => return Err(no_issue()),
            // 410 Gone: the issue tracker API was retired.
            Err(ScmError::Unavailable(m)) if m.contains(" answered 410 ") => return Err(no_issue()),
            Err(e) => return Err(e),
        };
        let git = GitContext {
            branch: repo
                .mainbranch
                .as_ref()
                .map(|b| b.name.clone())
                .unwrap_or_default(),
            ..self.git_context(repo)
        };
        Ok(Context {
            issue: Some(Issue {
                id: issue.id.to_string(),
                title: issue.title,
            }),
            ..self.context(git)
        })
    }

    /// Slugs of the workspaces the user belongs to, in order.
    async fn workspace_slugs(&self, auth: &Auth) -> Result<Vec<String>, ScmError> {
        let url = self.api(
            &["user", "workspaces"],
            &[("pagelen", MAX_PAGELEN.to_string())],
        )?;
        let access: Vec<WorkspaceAccess> = self.all_values(url, auth).await?;
        let mut slugs: Vec<String> = access.into_iter().map(|a| a.workspace.slug).collect();
        slugs.sort();
        slugs.dedup();
        Ok(slugs)
    }

    /// `/repositories/{workspace}?role=member[&q=…]`, page `page` of `pagelen`.
    fn repositories_url(
        &self,
        workspace: &str,
        q: Option<&str>,
        page: u64,
        pagelen: u32,
    ) -> Result<String, ScmError> {
        let mut params = vec![("role", "member".to_string())];
        if let Some(q) = q {
            params.push(("q", q.to_string()));
        }
        params.extend([("page", page.to_string()), ("pagelen", pagelen.to_string())]);
        self.api(&["repositories", workspace], &params)
    }

    /// How many repositories of each workspace match, with their first pages,
    /// asked of all workspaces at once.
    async fn workspace_hits(
        &self,
        workspaces: &[String],
        q: Option<&str>,
        pagelen: u32,
        auth: &Auth,
    ) -> Result<Vec<WorkspaceHits>, ScmError> {
        let mut tasks = JoinSet::new();
        for (index, workspace) in workspaces.iter().enumerate() {
            let url = self.repositories_url(workspace, q, 1, pagelen)?;
            let http = self.http.clone();
            let auth = auth.clone();
            tasks.spawn(async move { (index, http.get_json::<Page<Repo>>(&url, &auth).await) });
        }
        let mut hits: Vec<Option<WorkspaceHits>> = workspaces.iter().map(|_| None).collect();
        while let Some(joined) = tasks.join_next().await {
            let (index, answer) = joined
                .map_err(|e| ScmError::Unavailable(format!("listing repositories failed: {e}")))?;
            let workspace = workspaces[index].clone();
            let page = match answer {
                Ok(answer) => answer.body,
                // A workspace the user lost access to since it was listed.
                Err(ScmError::NotFound(_) | ScmError::PermissionDenied(_)) => continue,
                Err(ScmError::Unavailable(m)) if m.contains(" answered 400 ") => {
                    return Err(ScmError::InvalidInput(format!(
                        "Bitbucket cannot search with {q:?}: {m}"
                    )));
                }
                Err(e) => return Err(e),
            };
            let size = match page.size {
                Some(size) => size,
                None => self.count(&page, pagelen, auth).await?,
            };
            hits[index] = Some(WorkspaceHits {
                workspace,
                size,
                first: page.values,
            });
        }
        Ok(hits.into_iter().flatten().collect())
    }

    /// The number of values of a list whose first page gave no `size`.
    async fn count(&self, first: &Page<Repo>, pagelen: u32, auth: &Auth) -> Result<u64, ScmError> {
        let mut total = first.values.len() as u64;
        let mut next = self.followable(first.next.clone());
        let mut pages = 1;
        while let Some(url) = next {
            if pages >= MAX_LIST_PAGES {
                // Past what corral reads, call it one more page.
                return Ok(total + u64::from(pagelen));
            }
            let page = self.get::<Page<serde_json::Value>>(&url, auth).await?.body;
            total += page.values.len() as u64;
            next = self.followable(page.next);
            pages += 1;
        }
        Ok(total)
    }
}

#[async_trait]
impl Provider for BitbucketCloud {
    fn host(&self) -> &ScmHost {
        &self.host
    }

    async fn parse_context(
        &self,
        url: &ContextUrl,
        creds: &Credentials,
    ) -> Result<Context, ScmError> {
        let (workspace, slug, target) = self.split(url)?;
        let auth = self.auth(creds)?;
        let repo = self.repo(&workspace, &slug, &auth).await?;
        let mut git = self.git_context(&repo);
        match target {
            Target::PullRequest(id) => return self.pull_request_context(&repo, id, &auth).await,
            Target::Issue(id) => return self.issue_context(&repo, id, &auth).await,
            Target::Commit(sha) => {
                git.commit = self.commit_hash(&repo.full_name, &sha, &auth).await?
            }
            Target::Ref { segments, only } => self
                .resolve_ref(&repo.full_name, &segments, only, &auth)
                .await?
                .set_on(&mut git),
            Target::Repository => git.branch = repo.mainbranch.map(|b| b.name).unwrap_or_default(),
        }
        Ok(self.context(git))
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
        let per_page = per_page.clamp(1, MAX_PAGELEN);
        let words = query.split_whitespace().collect::<Vec<_>>().join(" ");
        let q = match mode {
            SearchMode::Keyword => {
                (!words.is_empty()).then(|| format!("name ~ {}", bbql_string(&words)))
            }
            SearchMode::Native => {
                let raw = query.trim();
                if raw.is_empty() {
                    return Err(ScmError::InvalidInput("the search query is empty".into()));
                }
                Some(raw.to_string())
            }
        };
        let workspaces = self.workspace_slugs(&auth).await?;
        let hits = self
            .workspace_hits(&workspaces, q.as_deref(), per_page, &auth)
            .await?;

        // The workspaces' results one after another, and the slice of them this page shows.
        let per = u64::from(per_page);
        let start = u64::from(page - 1) * per;
        let end = start + per;
        let total: u64 = hits.iter().map(|h| h.size).sum();
        let mut items = Vec::new();
        let mut offset = 0;
        for mut hit in hits {
            let (from, to) = (start.max(offset), end.min(offset + hit.size));
            if from < to {
                let (local_from, local_to) = (from - offset, to - offset);
                let mut repos: Vec<(u64, Repo)> = Vec::new();
                for local_page in (local_from / per + 1)..=((local_to - 1) / per + 1) {
                    let values = if local_page == 1 {
                        std::mem::take(&mut hit.first)
                    } else {
                        let url = self.repositories_url(
                            &hit.workspace,
                            q.as_deref(),
                            local_page,
                            per_page,
                        )?;
                        self.get::<Page<Repo>>(&url, &auth).await?.body.values
                    };
                    let base = (local_page - 1) * per;
                    repos.extend(
                        values
                            .into_iter()
                            .enumerate()
                            .map(|(i, r)| (base + i as u64, r)),
                    );
                }
                items.extend(
                    repos
                        .into_iter()
                        .filter(|(i, _)| (local_from..local_to).contains(i))
                        .map(|(_, r)| self.repository(r)),
                );
            }
            offset += hit.size;
        }
        Ok(Paged {
            items,
            page,
            total_pages: Some(total.div_ceil(per) as u32),
            total_count: Some(total),
            has_next: end < total,
        })
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
        let per_page = per_page.clamp(1, MAX_PAGELEN);
        let mut params = Vec::new();
        let query = query.trim();
        if !query.is_empty() {
            params.push(("q", format!("workspace.slug ~ {}", bbql_string(query))));
        }
        params.extend([
            ("page", page.to_string()),
            ("pagelen", per_page.to_string()),
        ]);
        let url = self.api(&["user", "workspaces"], &params)?;
        let answer = self.get::<Page<WorkspaceAccess>>(&url, &auth).await?.body;
        let web = self.host.web_base();
        let pagelen = answer.pagelen.unwrap_or(per_page).max(1);
        let has_next = self.followable(answer.next).is_some();
        Ok(Paged {
            page: answer.page.unwrap_or(page),
            total_pages: answer.size.map(|s| s.div_ceil(u64::from(pagelen)) as u32),
            total_count: answer.size,
            has_next,
            items: answer
                .values
                .into_iter()
                .map(|a| Organization {
                    url: a
                        .workspace
                        .links
                        .html()
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("{web}/{}", a.workspace.slug)),
                    name: a.workspace.slug,
                    is_admin: a.administrator,
                })
                .collect(),
        })
    }

    async fn check_token(&self, creds: &Credentials) -> Result<(), ScmError> {
        let auth = self.auth(creds)?;
        let url = self.api(&["user"], &[])?;
        self.get::<serde_json::Value>(&url, &auth).await.map(|_| ())
    }

    async fn check_repository_access(
        &self,
        creds: &Credentials,
        url: &ContextUrl,
    ) -> Result<(), ScmError> {
        let (workspace, slug, _) = self.split(url)?;
        let auth = self.auth(creds)?;
        self.repo(&workspace, &slug, &auth).await.map(|_| ())
    }

    fn pat_help(&self) -> PatHelp {
        // App passwords can no longer be created (September 2025) nor used
        // (June 2026); API tokens replace them, sent with the Atlassian e-mail as user name.
        PatHelp {
            create_url: "https://id.atlassian.com/manage-profile/security/api-tokens".into(),
            docs_url: "https://support.atlassian.com/bitbucket-cloud/docs/using-api-tokens/".into(),
            example: "ATATT3xFfGF0T4nB9kQ2mZ7pL1vR8cW5yH3jD6sE0gUa".into(),
            required_scopes: vec![
                "read:repository:bitbucket".into(),
                "read:pullrequest:bitbucket".into(),
                "read:user:bitbucket".into(),
                "read:workspace:bitbucket".into(),
            ],
        }
    }

    fn oauth_paths(&self) -> (&'static str, &'static str) {
        ("/site/oauth2/authorize", "/site/oauth2/access_token")
    }

    fn oauth_scopes(&self) -> Vec<String> {
        vec!["repository".into(), "pullrequest".into(), "account".into()]
    }
}

impl BitbucketCloud {
    fn repository(&self, repo: Repo) -> Repository {
        Repository {
            url: repo
                .links
                .html()
                .map(str::to_string)
                .unwrap_or_else(|| format!("{}/{}", self.host.web_base(), repo.full_name)),
            name: repo.full_name,
        }
    }
}

/// A ref name from a query parameter, as path segments.
fn ref_segments(name: &str) -> Vec<String> {
    let name = name
        .strip_prefix("refs/heads/")
        .or_else(|| name.strip_prefix("refs/tags/"))
        .unwrap_or(name);
    name.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A BBQL string literal.
fn bbql_string(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ScmKind;

    fn bitbucket() -> BitbucketCloud {
        let host = ScmHost {
            kind: ScmKind::BitbucketCloud,
            host: "bitbucket.org".into(),
            scheme: "https".into(),
            virtual_directory: None,
        };
        BitbucketCloud::new(
            host,
            Http::new("bitbucket.org", crate::http::DEFAULT_TIMEOUT),
        )
    }

    fn split(url: &str) -> Result<(String, String, Target), ScmError> {
        bitbucket().split(&ContextUrl::parse(url).unwrap())
    }

    #[test]
    fn urls_name_workspace_repository_and_target() {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            split("https://bitbucket.org/ws/repo").unwrap(),
            ("ws".into(), "repo".into(), Target::Repository)
        );
        assert_eq!(
            split(
                "https://bitbucket.org/ws/repo/src/0a1b2c3d4e5f/README.md?at=refs/heads/feature/x"
            )
            .unwrap()
            .2,
            Target::Ref {
                segments: strings(&["feature", "x"]),
                only: None
            }
        );
        assert_eq!(
            split("https://bitbucket.org/ws/repo/commits/branch/a/b")
                .unwrap()
                .2,
            Target::Ref {
                segments: strings(&["a", "b"]),
                only: Some(RefKind::Branch)
            }
        );
        assert_eq!(
            split("https://bitbucket.org/ws/repo/commits/all")
                .unwrap()
                .2,
            Target::Repository
        );
        assert_eq!(
            split("https://bitbucket.org/ws/repo/pull-requests/7/diff")
                .unwrap()
                .2,
            Target::PullRequest(7)
        );
        assert!(matches!(
            split("https://bitbucket.org/ws"),
            Err(ScmError::InvalidInput(_))
        ));
        assert!(matches!(
            split("https://bitbucket.org/account/settings"),
            Err(ScmError::InvalidInput(_))
        ));
        assert!(matches!(
            split("https://bitbucket.org/ws/repo/issues/x"),
            Err(ScmError::InvalidInput(_))
        ));
    }

    #[test]
    fn bbql_strings_are_escaped() {
        assert_eq!(bbql_string(r#"a "b" \c"#), r#""a \"b\" \\c""#);
    }

    #[test]
    fn api_token_users_get_basic_auth() {
        let b = bitbucket();
        let with_user = Credentials {
            token: "t".into(),
            username: Some("me@example.com".into()),
        };
        assert!(matches!(b.auth(&with_user), Ok(Auth::Basic { .. })));
        let bare = Credentials {
            token: "t".into(),
            username: Some(" ".into()),
        };
        assert!(matches!(b.auth(&bare), Ok(Auth::Bearer(_))));
    }
}
