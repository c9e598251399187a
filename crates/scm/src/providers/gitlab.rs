//! GitLab (gitlab.com and self-managed), through the REST API at `{web}/api/v4`.
//!
//! Projects live in namespaces that nest (`group/sub/sub2/project`), so a web
//! URL's project path is everything before its `/-/` separator; a URL without
//! one (the project page, a clone URL) is the project path whole. Projects are
//! looked up by their URL-encoded full path (`/projects/group%2Fsub%2Fproject`),
//! everything after that by the numeric id GitLab returns.

use super::change_context;
use async_trait::async_trait;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{Provider, Ref, change_number, looks_like_sha, pick_ref, plain_context, require_token};
use crate::http::{Answer, Auth, Http};
use crate::{
    ChangeRequest, ChangeState, Context, ContextUrl, Credentials, GitContext, Issue, Organization,
    Paged, PatHelp, Repository, ScmError, ScmHost, SearchMode,
};

/// GitLab's largest page.
const MAX_PER_PAGE: u32 = 100;
/// How many pages of matching branches or tags corral reads at most.
const MAX_REF_PAGES: u32 = 20;

/// First path segments of GitLab pages that are not projects (GitLab reserves them).
const RESERVED_TOP_LEVEL: &[&str] = &[
    "-",
    "admin",
    "api",
    "dashboard",
    "explore",
    "groups",
    "help",
    "oauth",
    "profile",
    "projects",
    "search",
    "snippets",
    "users",
];

pub struct GitLab {
    host: ScmHost,
    http: Http,
}

#[derive(Deserialize)]
struct Project {
    id: u64,
    path_with_namespace: String,
    #[serde(default)]
    default_branch: Option<String>,
    #[serde(default)]
    web_url: String,
}

#[derive(Deserialize)]
struct NamedRef {
    name: String,
}

#[derive(Deserialize)]
struct Commit {
    id: String,
}

#[derive(Deserialize)]
struct Author {
    username: String,
}

#[derive(Deserialize)]
struct MergeRequest {
    iid: u64,
    #[serde(default)]
    title: String,
    source_branch: String,
    target_branch: String,
    source_project_id: u64,
    target_project_id: u64,
    state: String,
    #[serde(default)]
    draft: bool,
    /// The name of `draft` before GitLab 13.
    #[serde(default)]
    work_in_progress: bool,
    #[serde(default)]
    sha: Option<String>,
    #[serde(default)]
    author: Option<Author>,
    #[serde(default)]
    web_url: String,
}

#[derive(Deserialize)]
struct IssueJson {
    iid: u64,
    #[serde(default)]
    title: String,
}

#[derive(Deserialize)]
struct Group {
    full_path: String,
    #[serde(default)]
    web_url: String,
}

/// Route words that may follow a project's path in URLs from before GitLab
/// put `/-/` in front of them.
const OLD_ROUTES: &[&str] = &[
    "tree",
    "blob",
    "raw",
    "blame",
    "commits",
    "commit",
    "merge_requests",
    "issues",
    "tags",
];

/// What a context URL asks for within its project.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// The project itself, or one of its pages corral has no use for.
    Project,
    /// `tree/`, `blob/`, `commits/`…: a ref (maybe with slashes) and a path.
    Ref {
        segments: Vec<String>,
        only: Option<RefKind>,
    },
    Commit(String),
    MergeRequest(u64),
    Issue(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefKind {
    Branch,
    Tag,
}

impl GitLab {
    pub fn new(host: ScmHost, http: Http) -> Self {
        Self { host, http }
    }

    /// Bearer works for personal, project, group and OAuth tokens alike.
    fn auth(&self, creds: &Credentials) -> Result<Auth, ScmError> {
        let token = require_token(&self.host, creds)?;
        Ok(Auth::Bearer(token))
    }

    /// `{api}/{path…}?{query}`, each path segment percent-encoded (a project
    /// path's slashes become `%2F`, as GitLab wants).
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

    /// A project by full path (`group/sub/project`) or numeric id.
    async fn project(&self, id_or_path: &str, auth: &Auth) -> Result<Project, ScmError> {
        let url = self.api(&["projects", id_or_path], &[])?;
        self.get::<Project>(&url, auth)
            .await
            .map(|a| a.body)
            .map_err(|e| e.about(&format!("project {id_or_path}"), &self.host.host))
    }

    /// The project a context URL is in, and what in it: the first reading
    /// whose project GitLab knows. When none is known, the first reading's
    /// answer stands.
    async fn locate(&self, url: &ContextUrl, auth: &Auth) -> Result<(Project, Target), ScmError> {
        let mut first_error = None;
        for (path, target) in self.readings(url)? {
            match self.project(&path, auth).await {
                Ok(project) => return Ok((project, target)),
                Err(ScmError::NotFound(m)) => {
                    first_error.get_or_insert(ScmError::NotFound(m));
                }
                Err(e) => return Err(e),
            }
        }
        Err(first_error.expect("a URL has at least one reading"))
    }

    fn git_context(&self, project: &Project) -> GitContext {
        let (owner, repo) = split_full_path(&project.path_with_namespace);
        GitContext {
            host: self.host.host.clone(),
            owner,
            repo,
            clone_url: self.clone_url(&project.path_with_namespace),
            ..GitContext::default()
        }
    }

    fn clone_url(&self, full_path: &str) -> String {
        format!("{}/{full_path}.git", self.host.web_base())
    }

    fn context(&self, git: GitContext) -> Context {
        plain_context(&self.host, git)
    }

    /// The readings of a context URL as (project path, target), without
    /// asking GitLab. A URL with GitLab's `/-/` separator has one. Older URLs
    /// without it (`group/project/tree/main`) have one per place a route word
    /// could end the project path, the whole path first: only GitLab knows
    /// which prefix is a project (a path is never both a group and a project,
    /// so at most one reading finds one).
    fn readings(&self, url: &ContextUrl) -> Result<Vec<(String, Target)>, ScmError> {
        let mut segments: &[String] = &url.segments;
        // A self-managed GitLab under a relative URL root (`https://host/gitlab/…`):
        // web URLs carry the prefix, ssh paths do not.
        if let Some(dir) = self
            .host
            .virtual_directory
            .as_deref()
            .filter(|_| url.scheme != "ssh")
        {
            let prefix: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
            if segments.len() >= prefix.len() && segments.iter().zip(&prefix).all(|(s, p)| s == p) {
                segments = &segments[prefix.len()..];
            }
        }
        if let Some(at) = segments.iter().position(|s| s == "-") {
            return Ok(vec![self.reading(
                url,
                &segments[..at],
                &segments[at + 1..],
            )?]);
        }
        let mut readings = vec![self.reading(url, segments, &[])?];
        for at in 2..segments.len() {
            if OLD_ROUTES.contains(&segments[at].as_str())
                && let Ok(reading) = self.reading(url, &segments[..at], &segments[at..])
                && reading.1 != Target::Project
            {
                readings.push(reading);
            }
        }
        Ok(readings)
    }

    /// One reading: `project` is the project's path, `rest` what follows it.
    fn reading(
        &self,
        url: &ContextUrl,
        project: &[String],
        rest: &[String],
    ) -> Result<(String, Target), ScmError> {
        let not_project = || {
            ScmError::InvalidInput(format!(
                "{:?} does not point to a GitLab project (expected {}/GROUP/PROJECT)",
                url.original.trim(),
                self.host.web_base()
            ))
        };
        if project.len() < 2
            || RESERVED_TOP_LEVEL
                .iter()
                .any(|r| r.eq_ignore_ascii_case(&project[0]))
        {
            return Err(not_project());
        }
        let path = project.join("/");
        let kind = rest.first().map(String::as_str).unwrap_or("");
        let args = rest.get(1..).unwrap_or(&[]);
        let target = match (kind, args.first()) {
            ("merge_requests", Some(iid)) => {
                Target::MergeRequest(change_number(iid, "merge request")?)
            }
            ("issues" | "work_items", Some(iid)) => Target::Issue(change_number(iid, "issue")?),
            ("commit", Some(sha)) => Target::Commit(sha.clone()),
            ("tree" | "blob" | "raw" | "blame" | "commits", Some(_)) => Target::Ref {
                segments: args.to_vec(),
                only: match url.query_value("ref_type") {
                    Some("heads") => Some(RefKind::Branch),
                    Some("tags") => Some(RefKind::Tag),
                    _ => None,
                },
            },
            ("tags", Some(_)) => Target::Ref {
                segments: args.to_vec(),
                only: Some(RefKind::Tag),
            },
            _ => Target::Project,
        };
        Ok((path, target))
    }

    /// Names of the project's branches or tags that start with `prefix`.
    async fn ref_names(
        &self,
        project_id: u64,
        list: &str,
        prefix: &str,
        auth: &Auth,
    ) -> Result<Vec<String>, ScmError> {
        let id = project_id.to_string();
        let mut names = Vec::new();
        let mut page = 1;
        loop {
            let url = self.api(
                &["projects", &id, "repository", list],
                &[
                    // `^term`: names that begin with the term.
                    ("search", format!("^{prefix}")),
                    ("per_page", MAX_PER_PAGE.to_string()),
                    ("page", page.to_string()),
                ],
            )?;
            let answer = self.get::<Vec<NamedRef>>(&url, auth).await?;
            let count = answer.body.len();
            names.extend(answer.body.into_iter().map(|r| r.name));
            match next_page(&answer.headers, page, count, MAX_PER_PAGE) {
                Some(next) if next > page && page < MAX_REF_PAGES => page = next,
                Some(_) => {
                    tracing::warn!(host = %self.host.host, project_id, list, "stopped listing refs after {page} pages");
                    return Ok(names);
                }
                None => return Ok(names),
            }
        }
    }

    /// The full SHA of a commit named by a (maybe abbreviated) SHA.
    async fn commit_sha(
        &self,
        project: &Project,
        sha: &str,
        auth: &Auth,
    ) -> Result<String, ScmError> {
        let url = self.api(
            &[
                "projects",
                &project.id.to_string(),
                "repository",
                "commits",
                sha,
            ],
            &[],
        )?;
        match self.get::<Commit>(&url, auth).await {
            Ok(answer) => Ok(answer.body.id),
            Err(ScmError::NotFound(_)) => Err(ScmError::NotFound(format!(
                "{} has no commit {sha}",
                project.path_with_namespace
            ))),
            Err(e) => Err(e),
        }
    }

    /// Splits `segments` (what follows `tree/`, `blob/`…) into the branch, tag
    /// or commit they start with; the longest name wins, a branch wins a tie.
    async fn resolve_ref(
        &self,
        project: &Project,
        segments: &[String],
        only: Option<RefKind>,
        auth: &Auth,
    ) -> Result<Ref, ScmError> {
        let first = &segments[0];
        let branches = async {
            match only {
                Some(RefKind::Tag) => Ok(Vec::new()),
                _ => self.ref_names(project.id, "branches", first, auth).await,
            }
        };
        let tags = async {
            match only {
                Some(RefKind::Branch) => Ok(Vec::new()),
                _ => self.ref_names(project.id, "tags", first, auth).await,
            }
        };
        let (branches, tags) = tokio::try_join!(branches, tags)?;
        if let Some(found) = pick_ref(segments, &branches, &tags) {
            return Ok(found);
        }
        let no_ref = || {
            ScmError::NotFound(format!(
                "{} has no branch, tag or commit matching {:?}",
                project.path_with_namespace,
                segments.join("/")
            ))
        };
        if only.is_none() && looks_like_sha(first) {
            return match self.commit_sha(project, first, auth).await {
                Ok(sha) => Ok(Ref::Commit(sha)),
                Err(ScmError::NotFound(_)) => Err(no_ref()),
                Err(e) => Err(e),
            };
        }
        Err(no_ref())
    }

    async fn merge_request_context(
        &self,
        project: &Project,
        iid: u64,
        auth: &Auth,
    ) -> Result<Context, ScmError> {
        let url = self.api(
            &[
                "projects",
                &project.id.to_string(),
                "merge_requests",
                &iid.to_string(),
            ],
            &[],
        )?;
        let mr = self
            .get::<MergeRequest>(&url, auth)
            .await
            .map_err(|e| {
                e.if_not_found(|| {
                    ScmError::NotFound(format!(
                        "{} has no merge request !{iid}",
                        project.path_with_namespace
                    ))
                })
            })?
            .body;
        let from_fork = mr.source_project_id != mr.target_project_id;
        let source_path = if from_fork {
            self.project(&mr.source_project_id.to_string(), auth)
                .await
                .map_err(|e| e.if_not_found(|| ScmError::NotFound(format!(
                        "the fork merge request !{iid} of {} comes from was not found, or the token cannot see it",
                        project.path_with_namespace
                    ))))?
                .path_with_namespace
        } else {
            project.path_with_namespace.clone()
        };
        let (head_owner, head_repo) = split_full_path(&source_path);
        let head_clone_url = self.clone_url(&source_path);
        let state = match mr.state.as_str() {
            "opened" | "locked" => ChangeState::Open,
            "merged" => ChangeState::Merged,
            "closed" => ChangeState::Closed,
            _ => ChangeState::Unspecified,
        };
        let url = if mr.web_url.is_empty() {
            format!("{}/-/merge_requests/{}", project.web_url, mr.iid)
        } else {
            mr.web_url
        };
        let change = ChangeRequest {
            id: mr.iid.to_string(),
            title: mr.title,
            from_branch: mr.source_branch.clone(),
            to_branch: mr.target_branch,
            url,
            author: mr.author.map(|a| a.username).unwrap_or_default(),
            draft: mr.draft || mr.work_in_progress,
            state,
            head_sha: mr.sha.unwrap_or_default(),
            head_clone_url: head_clone_url.clone(),
            head_owner,
            head_repo,
        };
        Ok(change_context(
            &self.host,
            self.git_context(project),
            change,
            from_fork,
        ))
    }

    async fn issue_context(
        &self,
        project: &Project,
        iid: u64,
        auth: &Auth,
    ) -> Result<Context, ScmError> {
        let url = self.api(
            &[
                "projects",
                &project.id.to_string(),
                "issues",
                &iid.to_string(),
            ],
            &[],
        )?;
        let issue = self
            .get::<IssueJson>(&url, auth)
            .await
            .map_err(|e| {
                e.if_not_found(|| {
                    ScmError::NotFound(format!(
                        "{} has no issue #{iid}",
                        project.path_with_namespace
                    ))
                })
            })?
            .body;
        let git = GitContext {
            branch: project.default_branch.clone().unwrap_or_default(),
            ..self.git_context(project)
        };
        Ok(Context {
            issue: Some(Issue {
                id: issue.iid.to_string(),
                title: issue.title,
            }),
            ..self.context(git)
        })
    }
}

#[async_trait]
impl Provider for GitLab {
    fn host(&self) -> &ScmHost {
        &self.host
    }

    async fn parse_context(
        &self,
        url: &ContextUrl,
        creds: &Credentials,
    ) -> Result<Context, ScmError> {
        let auth = self.auth(creds)?;
        let (project, target) = self.locate(url, &auth).await?;
        let mut git = self.git_context(&project);
        match target {
            Target::MergeRequest(iid) => {
                return self.merge_request_context(&project, iid, &auth).await;
            }
            Target::Issue(iid) => return self.issue_context(&project, iid, &auth).await,
            Target::Commit(sha) => git.commit = self.commit_sha(&project, &sha, &auth).await?,
            Target::Ref { segments, only } => self
                .resolve_ref(&project, &segments, only, &auth)
                .await?
                .set_on(&mut git),
            // An empty project has no default branch.
            Target::Project => git.branch = project.default_branch.unwrap_or_default(),
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
        let per_page = per_page.clamp(1, MAX_PER_PAGE);
        let paging = [
            ("page", page.to_string()),
            ("per_page", per_page.to_string()),
        ];
        let words = query.split_whitespace().collect::<Vec<_>>().join(" ");
        let url = match mode {
            SearchMode::Keyword => {
                let mut params = vec![
                    ("membership", "true".to_string()),
                    ("simple", "true".to_string()),
                ];
                if !words.is_empty() {
                    // `group/proj` only matches when namespaces take part.
                    if words.contains('/') {
                        params.push(("search_namespaces", "true".to_string()));
                    }
                    params.push(("search", words));
                }
                params.extend(paging);
                self.api(&["projects"], &params)?
            }
            SearchMode::Native => {
                let query = query.trim();
                if query.is_empty() {
                    return Err(ScmError::InvalidInput("the search query is empty".into()));
                }
                let mut params = vec![
                    ("scope", "projects".to_string()),
                    ("search", query.to_string()),
                ];
                params.extend(paging);
                self.api(&["search"], &params)?
            }
        };
        let answer = self
            .get::<Vec<Project>>(&url, &auth)
            .await
            .map_err(|e| match e {
                // 400: GitLab could not use the query (too short, bad syntax).
                ScmError::Unavailable(m) if m.contains(" answered 400 ") => {
                    ScmError::InvalidInput(format!("GitLab cannot search for {query:?}: {m}"))
                }
                e => e,
            })?;
        let items = answer
            .body
            .into_iter()
            .map(|p| Repository {
                url: if p.web_url.is_empty() {
                    format!("{}/{}", self.host.web_base(), p.path_with_namespace)
                } else {
                    p.web_url
                },
                name: p.path_with_namespace,
            })
            .collect();
        Ok(paged(items, &answer.headers, page, per_page))
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
        // 10: Guest, the lowest role a member has.
        let mut params = vec![("min_access_level", "10".to_string())];
        let query = query.trim();
        if !query.is_empty() {
            params.push(("search", query.to_string()));
        }
        params.extend([
            ("page", page.to_string()),
            ("per_page", per_page.to_string()),
        ]);
        let url = self.api(&["groups"], &params)?;
        let answer = self.get::<Vec<Group>>(&url, &auth).await?;
        let items = answer
            .body
            .into_iter()
            .map(|g| Organization {
                url: if g.web_url.is_empty() {
                    format!("{}/{}", self.host.web_base(), g.full_path)
                } else {
                    g.web_url
                },
                name: g.full_path,
                is_admin: None,
            })
            .collect();
        Ok(paged(items, &answer.headers, page, per_page))
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
        let auth = self.auth(creds)?;
        // GitLab answers 404 for projects the token may not see.
        self.locate(url, &auth).await.map(|_| ())
    }

    fn pat_help(&self) -> PatHelp {
        PatHelp {
            create_url: format!(
                "{}/-/user_settings/personal_access_tokens?scopes=api,read_repository",
                self.host.web_base()
            ),
            docs_url: "https://docs.gitlab.com/user/profile/personal_access_tokens/".into(),
            example: "glpat-xxxxxxxxxxxxxxxxxxxx".into(),
            required_scopes: vec!["api".into(), "read_repository".into()],
        }
    }

    fn oauth_paths(&self) -> (&'static str, &'static str) {
        ("/oauth/authorize", "/oauth/token")
    }

    fn oauth_scopes(&self) -> Vec<String> {
        vec!["api".into(), "read_repository".into(), "read_user".into()]
    }
}

/// `group/sub/project` as (`group/sub`, `project`).
fn split_full_path(full_path: &str) -> (String, String) {
    match full_path.rsplit_once('/') {
        Some((namespace, name)) => (namespace.to_string(), name.to_string()),
        None => (String::new(), full_path.to_string()),
    }
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// The next page GitLab announces (`x-next-page`, empty on the last page);
/// without the header, a full page suggests another.
fn next_page(headers: &HeaderMap, page: u32, count: usize, per_page: u32) -> Option<u32> {
    match headers.get("x-next-page").and_then(|v| v.to_str().ok()) {
        Some(next) => next.trim().parse().ok(),
        None => (count > 0 && count as u32 >= per_page).then_some(page + 1),
    }
}

/// One page of results with GitLab's paging headers (`x-total` and
/// `x-total-pages` are left out for very large results).
fn paged<T>(items: Vec<T>, headers: &HeaderMap, page: u32, per_page: u32) -> Paged<T> {
    let has_next = match headers.get("x-next-page").and_then(|v| v.to_str().ok()) {
        Some(next) => !next.trim().is_empty(),
        None => items.len() as u32 >= per_page,
    };
    Paged {
        page: header_u64(headers, "x-page")
            .map(|p| p as u32)
            .unwrap_or(page),
        total_pages: header_u64(headers, "x-total-pages").map(|p| p as u32),
        total_count: header_u64(headers, "x-total"),
        has_next,
        items,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ScmKind;

    fn gitlab(dir: Option<&str>) -> GitLab {
        let host = ScmHost {
            kind: ScmKind::GitLab,
            host: "gitlab.example.com".into(),
            scheme: "https".into(),
            virtual_directory: dir.map(str::to_string),
        };
        GitLab::new(
            host,
            Http::new("gitlab.example.com", crate::http::DEFAULT_TIMEOUT),
        )
    }

    fn split(g: &GitLab, url: &str) -> Result<(String, Target), ScmError> {
        g.readings(&ContextUrl::parse(url).unwrap())
            .map(|mut r| r.remove(0))
    }

    #[test]
    fn urls_without_the_separator_have_a_reading_per_route_word() {
        let g = gitlab(None);
        let url = ContextUrl::parse("https://gitlab.example.com/a/tree/b/tree/main/src").unwrap();
        let paths: Vec<String> = g
            .readings(&url)
            .unwrap()
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(paths, ["a/tree/b/tree/main/src", "a/tree/b"]);
        let url = ContextUrl::parse("https://gitlab.example.com/a/b/-/tree/main").unwrap();
        assert_eq!(g.readings(&url).unwrap().len(), 1);
    }

    #[test]
    fn project_paths_end_at_the_separator() {
        let g = gitlab(None);
        assert_eq!(
            split(&g, "https://gitlab.example.com/a/b/c/d").unwrap(),
            ("a/b/c/d".into(), Target::Project)
        );
        assert_eq!(
            split(
                &g,
                "https://gitlab.example.com/a/b/c/-/merge_requests/4/diffs"
            )
            .unwrap(),
            ("a/b/c".into(), Target::MergeRequest(4))
        );
        assert_eq!(
            split(
                &g,
                "https://gitlab.example.com/a/b/-/tree/x/y?ref_type=tags"
            )
            .unwrap(),
            (
                "a/b".into(),
                Target::Ref {
                    segments: vec!["x".into(), "y".into()],
                    only: Some(RefKind::Tag)
                }
            )
        );
        assert!(matches!(
            split(&g, "https://gitlab.example.com/a"),
            Err(ScmError::InvalidInput(_))
        ));
        assert!(matches!(
            split(&g, "https://gitlab.example.com/explore/projects"),
            Err(ScmError::InvalidInput(_))
        ));
        assert!(matches!(
            split(&g, "https://gitlab.example.com/a/b/-/issues/x"),
            Err(ScmError::InvalidInput(_))
        ));
    }

    #[test]
    fn a_relative_url_root_is_not_part_of_the_project() {
        let g = gitlab(Some("gitlab"));
        assert_eq!(
            split(&g, "https://gitlab.example.com/gitlab/a/b/-/issues/3").unwrap(),
            ("a/b".into(), Target::Issue(3))
        );
        assert_eq!(
            split(&g, "git@gitlab.example.com:gitlab/b.git").unwrap(),
            ("gitlab/b".into(), Target::Project)
        );
    }

    #[test]
    fn api_paths_encode_project_paths() {
        let g = gitlab(None);
        assert_eq!(
            g.api(&["projects", "a/b c"], &[("search", "^x/y".into())])
                .unwrap(),
            "https://gitlab.example.com/api/v4/projects/a%2Fb%20c?search=%5Ex%2Fy"
        );
    }
}
