//! Bitbucket Data Center (formerly Bitbucket Server): REST API 1.0 under
//! `{web_base}/rest/api/1.0`, HTTP access tokens as Bearer tokens.
//!
//! Repositories live in projects (`/projects/{KEY}/repos/{slug}`) or in a user's
//! personal project (`/users/{user}/repos/{slug}`, project key `~USER` in the API).
//! Refs in web URLs come as `?at=refs/heads/<branch>`, `?at=refs/tags/<tag>`, a
//! commit id, or a bare branch or tag name; a bare name is looked up among the
//! repository's branches first, then its tags.

use super::change_context;
use async_trait::async_trait;
use serde::Deserialize;
use url::Url;

use super::{Provider, looks_like_sha1, plain_context, yes};
use crate::http::{Auth, Http};
use crate::{
    ChangeRequest, ChangeState, Context, ContextUrl, Credentials, GitContext, Organization, Paged,
    PatHelp, Repository, ScmError, ScmHost, SearchMode,
};

/// Page size for ref lookups; Bitbucket's default page is 25.
const REF_PAGE: u32 = 100;
/// How many pages of refs a lookup reads before giving up.
const MAX_REF_PAGES: u32 = 20;

pub struct BitbucketServer {
    host: ScmHost,
    http: Http,
}

impl BitbucketServer {
    pub fn new(host: ScmHost, http: Http) -> Self {
        Self { host, http }
    }
}

/// What a context URL names, before asking the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Location {
    /// The project key as the REST API takes it: `PRJ`, or `~USER` for a personal project.
    pub project: String,
    pub slug: String,
    pub target: Target,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// The repository itself: its default branch.
    Repository,
    Branch(String),
    Tag(String),
    Commit(String),
    /// A bare `at=` value: a commit id if it looks like one and exists, else a branch, else a tag.
    Ref(String),
    PullRequest(u64),
}

/// Interprets a context URL's path (below the host's virtual directory) and query.
pub(crate) fn locate(host: &ScmHost, url: &ContextUrl) -> Result<Location, ScmError> {
    let not_a_repo = || {
        ScmError::InvalidInput(format!(
            "{:?} is not a Bitbucket repository URL (expected …/projects/KEY/repos/SLUG, …/users/NAME/repos/SLUG or a clone URL)",
            url.original.trim()
        ))
    };
    let mut segments: &[String] = &url.segments;
    if let Some(dir) = host
        .virtual_directory
        .as_deref()
        .filter(|_| url.scheme != "ssh")
    {
        let dir: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
        if segments.len() >= dir.len()
            && segments
                .iter()
                .zip(&dir)
                .all(|(a, b)| a.eq_ignore_ascii_case(b))
        {
            segments = &segments[dir.len()..];
        }
    }
    let seg = |i: usize| segments.get(i).map(String::as_str);
    let at = url.query_value("at").filter(|v| !v.is_empty());

    // Clone URLs: https `/scm/{key}/{slug}.git`, ssh `/{key}/{slug}.git`.
    if url.scheme == "ssh" && segments.len() == 2 {
        return Ok(Location {
            project: project_key(&segments[0]),
            slug: segments[1].clone(),
            target: Target::Repository,
        });
    }
    if seg(0) == Some("scm") && segments.len() == 3 {
        return Ok(Location {
            project: project_key(&segments[1]),
            slug: segments[2].clone(),
            target: Target::Repository,
        });
    }

    let project = match (seg(0), seg(1), seg(2), seg(3)) {
        (Some("projects"), Some(key), Some("repos"), Some(_)) => project_key(key),
        (Some("users"), Some(user), Some("repos"), Some(_)) => project_key(&format!("~{user}")),
        _ => return Err(not_a_repo()),
    };
    let slug = segments[3].clone();
    let rest = &segments[4..];
    let target = match rest.first().map(String::as_str) {
        Some("commits") if rest.len() >= 2 => Target::Commit(rest[1].clone()),
        Some("commits") => match url.query_value("until").filter(|v| !v.is_empty()) {
            Some(until) => at_target(until),
            None => Target::Repository,
        },
        Some("pull-requests") if rest.len() >= 2 => {
            let id = rest[1].parse::<u64>().map_err(|_| {
                ScmError::InvalidInput(format!("{:?} is not a pull request number", rest[1]))
            })?;
            Target::PullRequest(id)
        }
        _ => match at {
            Some(at) => at_target(at),
            None => Target::Repository,
        },
    };
    Ok(Location {
        project,
        slug,
        target,
    })
}

/// Project keys are upper case in the API; clone URLs spell them in lower case.
fn project_key(raw: &str) -> String {
    raw.to_ascii_uppercase()
}

fn at_target(at: &str) -> Target {
    if let Some(branch) = at.strip_prefix("refs/heads/") {
        Target::Branch(branch.to_string())
    } else if let Some(tag) = at.strip_prefix("refs/tags/") {
        Target::Tag(tag.to_string())
    } else {
        Target::Ref(at.to_string())
    }
}

// --- The REST API's shapes (only the fields corral reads). ---

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page<T> {
    #[serde(default = "Vec::new")]
    values: Vec<T>,
    #[serde(default = "yes")]
    is_last_page: bool,
    next_page_start: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
struct RepoJson {
    slug: String,
    project: ProjectJson,
}

#[derive(Debug, Clone, Deserialize)]
struct ProjectJson {
    key: String,
    #[serde(default, rename = "type")]
    kind: String,
    owner: Option<UserJson>,
}

#[derive(Debug, Clone, Deserialize)]
struct UserJson {
    #[serde(default)]
    name: String,
    #[serde(default)]
    slug: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RefJson {
    id: String,
    display_id: String,
    #[serde(default)]
    latest_commit: Option<String>,
    repository: Option<RepoJson>,
}

#[derive(Debug, Deserialize)]
struct CommitJson {
    id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PullRequestJson {
    id: u64,
    #[serde(default)]
    title: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    draft: bool,
    from_ref: RefJson,
    to_ref: RefJson,
    author: Option<ParticipantJson>,
    links: Option<LinksJson>,
}

#[derive(Debug, Deserialize)]
struct ParticipantJson {
    user: UserJson,
}

#[derive(Debug, Deserialize)]
struct LinksJson {
    #[serde(default, rename = "self")]
    self_links: Vec<HrefJson>,
}

#[derive(Debug, Deserialize)]
struct HrefJson {
    href: String,
}

impl BitbucketServer {
    fn api(&self, path: &[&str], query: &[(&str, &str)]) -> String {
        let mut url = Url::parse(&self.host.api_base()).expect("the API base is a URL");
        url.path_segments_mut()
            .expect("the API base has a path")
            .pop_if_empty()
            .extend(path);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url.to_string()
    }

    fn auth(&self, creds: &Credentials) -> Result<Auth, ScmError> {
        if creds.token.trim().is_empty() {
            return Err(ScmError::AuthenticationRequired {
                host: self.host.host.clone(),
                reason: "no HTTP access token for this host".into(),
            });
        }
        Ok(Auth::Bearer(creds.token.trim().to_string()))
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        auth: &Auth,
    ) -> Result<T, ScmError> {
        match self.http.get_json::<T>(url, auth).await {
            Ok(answer) => Ok(answer.body),
            // Bitbucket answers 401 also to a valid token without permission; its
            // error body names an AuthorisationException then.
            Err(ScmError::AuthenticationRequired { reason, .. })
                if reason.contains("AuthorisationException") =>
            {
                Err(ScmError::PermissionDenied(format!(
                    "{} refused access: the token lacks permission",
                    self.host.host
                )))
            }
            Err(e) => Err(e),
        }
    }

    fn repo_path<'a>(project: &'a str, slug: &'a str) -> Vec<&'a str> {
        vec!["projects", project, "repos", slug]
    }

    async fn repository(
        &self,
        project: &str,
        slug: &str,
        auth: &Auth,
    ) -> Result<RepoJson, ScmError> {
        let url = self.api(&Self::repo_path(project, slug), &[]);
        self.get(&url, auth).await.map_err(|e| {
            e.if_not_found(|| {
                ScmError::NotFound(format!(
                    "repository {project}/{slug} not found on {} (or the token may not see it)",
                    self.host.host
                ))
            })
        })
    }

    /// A branch or tag by exact name, paging through Bitbucket's filtered list.
    async fn find_ref(
        &self,
        project: &str,
        slug: &str,
        kind: &str,
        name: &str,
        auth: &Auth,
    ) -> Result<Option<RefJson>, ScmError> {
        let full = format!(
            "refs/{}/{name}",
            if kind == "tags" { "tags" } else { "heads" }
        );
        let mut path = Self::repo_path(project, slug);
        path.push(kind);
        let mut start = 0u64;
        for _ in 0..MAX_REF_PAGES {
            let start_s = start.to_string();
            let limit = REF_PAGE.to_string();
            let url = self.api(
                &path,
                &[("filterText", name), ("start", &start_s), ("limit", &limit)],
            );
            let page: Page<RefJson> = self.get(&url, auth).await?;
            if let Some(found) = page
                .values
                .into_iter()
                .find(|r| r.id == full || r.display_id == name)
            {
                return Ok(Some(found));
            }
            match page.next_page_start {
                Some(next) if !page.is_last_page && next > start => start = next,
                _ => return Ok(None),
            }
        }
        Ok(None)
    }

    /// The default branch, or `None` for an empty repository.
    async fn default_branch(
        &self,
        project: &str,
        slug: &str,
        auth: &Auth,
    ) -> Result<Option<RefJson>, ScmError> {
        let mut path = Self::repo_path(project, slug);
        path.extend(["branches", "default"]);
        match self.get::<RefJson>(&self.api(&path, &[]), auth).await {
            Ok(branch) => return Ok(Some(branch)),
            Err(ScmError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        // Newer servers also (or only) answer at `/default-branch`, without the head commit.
        let mut path = Self::repo_path(project, slug);
        path.push("default-branch");
        match self.get::<RefJson>(&self.api(&path, &[]), auth).await {
            Ok(branch) => Ok(Some(branch)),
            Err(ScmError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn commit(
        &self,
        project: &str,
        slug: &str,
        sha: &str,
        auth: &Auth,
    ) -> Result<Option<String>, ScmError> {
        let mut path = Self::repo_path(project, slug);
        path.extend(["commits", sha]);
        match self.get::<CommitJson>(&self.api(&path, &[]), auth).await {
            Ok(c) => Ok(Some(c.id)),
            Err(ScmError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn clone_url(&self, project_key: &str, slug: &str) -> String {
        format!(
            "{}/scm/{}/{}.git",
            self.host.web_base(),
            project_key.to_ascii_lowercase(),
            slug
        )
    }

    fn web_url(&self, repo: &RepoJson) -> String {
        let web = self.host.web_base();
        match (&repo.project.owner, repo.project.kind.as_str()) {
            (Some(owner), "PERSONAL") => {
                let user = if owner.slug.is_empty() {
                    &owner.name
                } else {
                    &owner.slug
                };
                format!("{web}/users/{user}/repos/{}", repo.slug)
            }
            _ => format!("{web}/projects/{}/repos/{}", repo.project.key, repo.slug),
        }
    }

    fn git_context(&self, repo: &RepoJson) -> GitContext {
        GitContext {
            host: self.host.host.clone(),
            owner: repo.project.key.clone(),
            repo: repo.slug.clone(),
            clone_url: self.clone_url(&repo.project.key, &repo.slug),
            ..Default::default()
        }
    }

    fn not_found_ref(&self, what: &str, name: &str, repo: &RepoJson) -> ScmError {
        ScmError::NotFound(format!(
            "{what} {name:?} not found in {}/{} on {}",
            repo.project.key, repo.slug, self.host.host
        ))
    }

    async fn pull_request(
        &self,
        repo: &RepoJson,
        id: u64,
        auth: &Auth,
    ) -> Result<Context, ScmError> {
        let id_s = id.to_string();
        let mut path = Self::repo_path(&repo.project.key, &repo.slug);
        path.extend(["pull-requests", &id_s]);
        let pr: PullRequestJson = self
            .get(&self.api(&path, &[]), auth)
            .await
            .map_err(|e| e.if_not_found(|| self.not_found_ref("pull request", &id_s, repo)))?;
        let upstream = pr.to_ref.repository.clone().unwrap_or_else(|| repo.clone());
        let head = pr
            .from_ref
            .repository
            .clone()
            .unwrap_or_else(|| upstream.clone());
        let is_fork = !(head.project.key.eq_ignore_ascii_case(&upstream.project.key)
            && head.slug == upstream.slug);
        let head_clone_url = self.clone_url(&head.project.key, &head.slug);
        let head_sha = pr.from_ref.latest_commit.clone().unwrap_or_default();
        let url = pr
            .links
            .as_ref()
            .and_then(|l| l.self_links.first())
            .map(|l| l.href.clone())
            .unwrap_or_else(|| format!("{}/pull-requests/{}", self.web_url(&upstream), pr.id));
        let state = match pr.state.as_str() {
            "OPEN" => ChangeState::Open,
            "MERGED" => ChangeState::Merged,
            "DECLINED" => ChangeState::Closed,
            _ => ChangeState::Unspecified,
        };
        let change = ChangeRequest {
            id: pr.id.to_string(),
            title: pr.title,
            from_branch: pr.from_ref.display_id.clone(),
            to_branch: pr.to_ref.display_id,
            url,
            author: pr.author.map(|a| a.user.name).unwrap_or_default(),
            draft: pr.draft,
            state,
            head_sha: head_sha.clone(),
            head_clone_url: head_clone_url.clone(),
            head_owner: head.project.key.clone(),
            head_repo: head.slug.clone(),
        };
        Ok(change_context(
            &self.host,
            self.git_context(&upstream),
            change,
            is_fork,
        ))
    }

    fn check_host(&self, url: &ContextUrl) -> Result<(), ScmError> {
        let name = |h: &str| h.split(':').next().unwrap_or_default().to_string();
        if name(&url.host) != name(&self.host.host) {
            return Err(ScmError::InvalidInput(format!(
                "{} is not served by the Bitbucket host {}",
                url.host, self.host.host
            )));
        }
        Ok(())
    }

    fn paged<T>(items: Vec<T>, page: u32, is_last_page: bool) -> Paged<T> {
        Paged {
            items,
            page,
            total_pages: None,
            total_count: None,
            has_next: !is_last_page,
        }
    }
}

fn page_window(page: u32, per_page: u32) -> (u32, u32, String, String) {
    let page = page.max(1);
    let per_page = per_page.clamp(1, 100);
    let start = (u64::from(page) - 1) * u64::from(per_page);
    (page, per_page, start.to_string(), per_page.to_string())
}

#[async_trait]
impl Provider for BitbucketServer {
    fn host(&self) -> &ScmHost {
        &self.host
    }

    async fn parse_context(
        &self,
        url: &ContextUrl,
        creds: &Credentials,
    ) -> Result<Context, ScmError> {
        self.check_host(url)?;
        let location = locate(&self.host, url)?;
        let auth = self.auth(creds)?;
        let repo = self
            .repository(&location.project, &location.slug, &auth)
            .await?;
        let (key, slug) = (repo.project.key.clone(), repo.slug.clone());
        let mut git = self.git_context(&repo);
        match location.target {
            Target::PullRequest(id) => return self.pull_request(&repo, id, &auth).await,
            Target::Repository => {
                if let Some(branch) = self.default_branch(&key, &slug, &auth).await? {
                    git.commit = match branch.latest_commit {
                        Some(c) => c,
                        None => self
                            .find_ref(&key, &slug, "branches", &branch.display_id, &auth)
                            .await?
                            .and_then(|b| b.latest_commit)
                            .unwrap_or_default(),
                    };
                    git.branch = branch.display_id;
                }
            }
            Target::Branch(name) => {
                let branch = self
                    .find_ref(&key, &slug, "branches", &name, &auth)
                    .await?
                    .ok_or_else(|| self.not_found_ref("branch", &name, &repo))?;
                git.branch = branch.display_id;
                git.commit = branch.latest_commit.unwrap_or_default();
            }
            Target::Tag(name) => {
                let tag = self
                    .find_ref(&key, &slug, "tags", &name, &auth)
                    .await?
                    .ok_or_else(|| self.not_found_ref("tag", &name, &repo))?;
                git.tag = tag.display_id;
                git.commit = tag.latest_commit.unwrap_or_default();
            }
            Target::Commit(sha) => {
                git.commit = self
                    .commit(&key, &slug, &sha, &auth)
                    .await?
                    .ok_or_else(|| self.not_found_ref("commit", &sha, &repo))?;
            }
            Target::Ref(name) => {
                let commit = if looks_like_sha1(&name) {
                    self.commit(&key, &slug, &name, &auth).await?
                } else {
                    None
                };
                if let Some(commit) = commit {
                    git.commit = commit;
                } else if let Some(branch) =
                    self.find_ref(&key, &slug, "branches", &name, &auth).await?
                {
                    git.branch = branch.display_id;
                    git.commit = branch.latest_commit.unwrap_or_default();
                } else if let Some(tag) = self.find_ref(&key, &slug, "tags", &name, &auth).await? {
                    git.tag = tag.display_id;
                    git.commit = tag.latest_commit.unwrap_or_default();
                } else {
                    return Err(self.not_found_ref("ref", &name, &repo));
                }
            }
        }
        Ok(plain_context(&self.host, git))
    }

    /// Keyword mode filters by repository name (`/repos?name=`). Native mode passes
    /// `key=value` pairs (e.g. `name=api projectname=Platform permission=REPO_WRITE`)
    /// to `/repos` as they are; a query without `=` is a name, as in keyword mode.
    async fn search_repositories(
        &self,
        creds: &Credentials,
        query: &str,
        mode: SearchMode,
        page: u32,
        per_page: u32,
    ) -> Result<Paged<Repository>, ScmError> {
        let auth = self.auth(creds)?;
        let (page, _, start, limit) = page_window(page, per_page);
        let query = query.trim();
        let mut params: Vec<(String, String)> = Vec::new();
        if mode == SearchMode::Native && query.contains('=') {
            for pair in query
                .split(|c: char| c == '&' || c.is_whitespace())
                .filter(|p| !p.is_empty())
            {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                if k != "start" && k != "limit" {
                    params.push((k.to_string(), v.to_string()));
                }
            }
        } else if !query.is_empty() {
            params.push(("name".into(), query.to_string()));
        }
        params.push(("start".into(), start));
        params.push(("limit".into(), limit));
        let pairs: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let answer: Page<RepoJson> = self.get(&self.api(&["repos"], &pairs), &auth).await?;
        let items = answer
            .values
            .iter()
            .map(|r| Repository {
                name: format!("{}/{}", r.project.key, r.slug),
                url: self.web_url(r),
            })
            .collect();
        Ok(Self::paged(items, page, answer.is_last_page))
    }

    /// Projects the user can see, by project key; `query` filters by project name.
    async fn list_organizations(
        &self,
        creds: &Credentials,
        query: &str,
        page: u32,
        per_page: u32,
    ) -> Result<Paged<Organization>, ScmError> {
        let auth = self.auth(creds)?;
        let (page, _, start, limit) = page_window(page, per_page);
        let mut params = vec![("start", start.as_str()), ("limit", limit.as_str())];
        if !query.trim().is_empty() {
            params.insert(0, ("name", query.trim()));
        }
        let answer: Page<ProjectJson> = self.get(&self.api(&["projects"], &params), &auth).await?;
        let web = self.host.web_base();
        let items = answer
            .values
            .into_iter()
            .map(|p| Organization {
                url: format!("{web}/projects/{}", p.key),
                name: p.key,
                is_admin: None,
            })
            .collect();
        Ok(Self::paged(items, page, answer.is_last_page))
    }

    async fn check_token(&self, creds: &Credentials) -> Result<(), ScmError> {
        let auth = self.auth(creds)?;
        let _: Page<ProjectJson> = self
            .get(&self.api(&["projects"], &[("limit", "1")]), &auth)
            .await?;
        Ok(())
    }

    async fn check_repository_access(
        &self,
        creds: &Credentials,
        url: &ContextUrl,
    ) -> Result<(), ScmError> {
        self.check_host(url)?;
        let location = locate(&self.host, url)?;
        let auth = self.auth(creds)?;
        self.repository(&location.project, &location.slug, &auth)
            .await
            .map(|_| ())
    }

    fn pat_help(&self) -> PatHelp {
        PatHelp {
            create_url: format!(
                "{}/plugins/servlet/access-tokens/manage",
                self.host.web_base()
            ),
            docs_url:
                "https://confluence.atlassian.com/bitbucketserver/http-access-tokens-939515499.html"
                    .into(),
            example: "An HTTP access token with Project read and Repository read permissions"
                .into(),
            required_scopes: vec!["REPO_READ".into(), "PROJECT_READ".into()],
        }
    }

    fn oauth_paths(&self) -> (&'static str, &'static str) {
        ("/rest/oauth2/latest/authorize", "/rest/oauth2/latest/token")
    }

    fn oauth_scopes(&self) -> Vec<String> {
        vec!["REPO_WRITE".into()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ScmKind;

    fn host(dir: Option<&str>) -> ScmHost {
        ScmHost {
            kind: ScmKind::BitbucketServer,
            host: "bitbucket.example.com".into(),
            scheme: "https".into(),
            virtual_directory: dir.map(str::to_string),
        }
    }

    fn loc(dir: Option<&str>, url: &str) -> Result<(String, String, Target), ScmError> {
        let l = locate(&host(dir), &ContextUrl::parse(url).unwrap())?;
        Ok((l.project, l.slug, l.target))
    }

    #[test]
    fn urls_name_project_repo_and_target() {
        let b = "https://bitbucket.example.com";
        let repo = |t: Target| Ok(("PRJ".to_string(), "app".to_string(), t));
        assert_eq!(
            loc(None, &format!("{b}/projects/PRJ/repos/app")),
            repo(Target::Repository)
        );
        assert_eq!(
            loc(
                None,
                &format!("{b}/projects/prj/repos/app/browse/src?at=refs%2Fheads%2Ffeat%2Fx")
            ),
            repo(Target::Branch("feat/x".into()))
        );
        assert_eq!(
            loc(
                None,
                &format!("{b}/projects/PRJ/repos/app/browse?at=refs/tags/v1")
            ),
            repo(Target::Tag("v1".into()))
        );
        assert_eq!(
            loc(None, &format!("{b}/projects/PRJ/repos/app/browse?at=main")),
            repo(Target::Ref("main".into()))
        );
        assert_eq!(
            loc(None, &format!("{b}/projects/PRJ/repos/app/commits/abc1234")),
            repo(Target::Commit("abc1234".into()))
        );
        assert_eq!(
            loc(
                None,
                &format!("{b}/projects/PRJ/repos/app/commits?until=refs/heads/dev")
            ),
            repo(Target::Branch("dev".into()))
        );
        assert_eq!(
            loc(
                None,
                &format!("{b}/projects/PRJ/repos/app/pull-requests/12/overview")
            ),
            repo(Target::PullRequest(12))
        );
        assert_eq!(
            loc(None, &format!("{b}/scm/prj/app.git")),
            repo(Target::Repository)
        );
        assert_eq!(
            loc(None, "ssh://git@bitbucket.example.com:7999/prj/app.git"),
            repo(Target::Repository)
        );
        assert_eq!(
            loc(
                Some("bitbucket"),
                &format!("{b}/bitbucket/projects/PRJ/repos/app")
            ),
            repo(Target::Repository)
        );
        assert_eq!(
            loc(Some("bitbucket"), &format!("{b}/bitbucket/scm/prj/app.git")),
            repo(Target::Repository)
        );
        assert_eq!(
            loc(None, &format!("{b}/users/jdoe/repos/dotfiles")),
            Ok((
                "~JDOE".to_string(),
                "dotfiles".to_string(),
                Target::Repository
            ))
        );
        assert_eq!(
            loc(None, &format!("{b}/scm/~jdoe/dotfiles.git")),
            Ok((
                "~JDOE".to_string(),
                "dotfiles".to_string(),
                Target::Repository
            ))
        );
        for bad in [
            format!("{b}/projects/PRJ"),
            format!("{b}/dashboard"),
            format!("{b}/projects/PRJ/repos/app/pull-requests/x"),
        ] {
            assert!(
                matches!(loc(None, &bad), Err(ScmError::InvalidInput(_))),
                "{bad}"
            );
        }
    }
}
