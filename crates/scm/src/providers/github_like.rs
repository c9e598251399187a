//! What GitHub and Gitea/Forgejo share: Gitea speaks a GitHub-shaped REST API, so the
//! repository, ref, commit, pull request and issue answers, the `Link` /
//! `x-total-count` paging and the way they become a context live here once.
//! Each product's own module keeps what differs: its endpoints and URL pages,
//! headers and auth style, page sizes, search, organizations, and how a pull
//! request's draft and merged states read ([`Dialect`]).

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use url::Url;

use super::{
    Ref, change_context, change_number, looks_like_sha, pick_ref, plain_context, require_token, yes,
};
use crate::http::{Answer, Auth, Http};
use crate::{
    ChangeRequest, ChangeState, Context, ContextUrl, Credentials, GitContext, Issue, Paged,
    Repository, ScmError, ScmHost,
};

/// How many pages of branches, tags or organizations corral reads at most
/// (5,000 entries at 100 a page).
pub(super) const MAX_LIST_PAGES: u32 = 50;

/// What one GitHub-like product does its own way.
pub(super) struct Dialect {
    /// The largest page the API serves.
    pub max_per_page: u32,
    /// The paging query parameters for page `page` of `per_page` items.
    pub paging: fn(page: u32, per_page: u32) -> [(&'static str, String); 2],
    /// Headers every API request carries.
    pub headers: &'static [(&'static str, &'static str)],
    /// How the token is sent.
    pub auth: fn(String) -> Auth,
    /// API path below `repos/{owner}/{repo}` that looks a commit up by SHA.
    pub commit_path: &'static [&'static str],
    /// Web path segment of a pull request page (`{web}/{owner}/{repo}/{this}/{n}`).
    pub pull_page: &'static str,
    pub is_draft: fn(&Pull) -> bool,
    pub is_merged: fn(&Pull) -> bool,
}

#[derive(Deserialize)]
pub(super) struct Owner {
    pub login: String,
}

#[derive(Deserialize)]
pub(super) struct Permissions {
    #[serde(default = "yes")]
    pub pull: bool,
}

#[derive(Deserialize)]
pub(super) struct Repo {
    pub name: String,
    pub full_name: String,
    pub owner: Owner,
    #[serde(default)]
    pub default_branch: Option<String>,
    #[serde(default)]
    pub permissions: Option<Permissions>,
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
pub(super) struct PullEnd {
    #[serde(rename = "ref")]
    pub name: String,
    #[serde(default)]
    pub sha: String,
    /// Null when the fork the change came from was deleted.
    #[serde(default)]
    pub repo: Option<Repo>,
}

/// A pull request. Which of `draft`, `merged` and `merged_at` count is the
/// [`Dialect`]'s call: older Gitea has no `draft`.
#[derive(Deserialize)]
pub(super) struct Pull {
    pub number: u64,
    #[serde(default)]
    pub title: String,
    pub state: String,
    #[serde(default)]
    pub draft: Option<bool>,
    #[serde(default)]
    pub merged: bool,
    #[serde(default)]
    pub merged_at: Option<String>,
    #[serde(default)]
    pub user: Option<Owner>,
    pub head: PullEnd,
    pub base: PullEnd,
}

#[derive(Deserialize)]
struct IssueJson {
    number: u64,
    #[serde(default)]
    title: String,
    /// Present (not null) when the "issue" is a pull request: both number them alike.
    #[serde(default)]
    pull_request: Option<serde_json::Value>,
}

/// A GitHub-shaped REST API of one host.
pub(super) struct Rest {
    pub host: ScmHost,
    http: Http,
    dialect: &'static Dialect,
}

impl Rest {
    pub fn new(host: ScmHost, http: Http, dialect: &'static Dialect) -> Self {
        Self {
            host,
            http,
            dialect,
        }
    }

    pub fn auth(&self, creds: &Credentials) -> Result<Auth, ScmError> {
        Ok((self.dialect.auth)(require_token(&self.host, creds)?))
    }

    pub fn url(&self, path: &[&str], query: &[(&str, String)]) -> Result<String, ScmError> {
        self.host.api_url(path, query)
    }

    pub fn paging(&self, page: u32, per_page: u32) -> [(&'static str, String); 2] {
        (self.dialect.paging)(page, per_page)
    }

    pub fn max_per_page(&self) -> u32 {
        self.dialect.max_per_page
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        url: &str,
        auth: &Auth,
    ) -> Result<Answer<T>, ScmError> {
        let mut request = self.http.request(Method::GET, url, auth);
        for (name, value) in self.dialect.headers {
            request = request.header(*name, *value);
        }
        self.http.send_json(request).await
    }

    pub async fn repo(&self, owner: &str, repo: &str, auth: &Auth) -> Result<Repo, ScmError> {
        let url = self.url(&["repos", owner, repo], &[])?;
        self.get::<Repo>(&url, auth)
            .await
            .map(|a| a.body)
            .map_err(|e| repo_error(e, &self.host, owner, repo))
    }

    /// The repository a context URL points to, and its context before any ref
    /// is resolved (names as the SCM spells them).
    pub async fn repo_context(
        &self,
        url: &ContextUrl,
        reserved: &[&str],
        auth: &Auth,
    ) -> Result<(GitContext, Option<String>), ScmError> {
        let (owner, repo) = owner_and_repo(url, reserved, &self.host)?;
        let found = self.repo(&owner, &repo, auth).await?;
        let (owner, repo) = (found.owner.login, found.name);
        let web = self.host.web_base();
        let git = GitContext {
            host: self.host.host.clone(),
            clone_url: format!("{web}/{owner}/{repo}.git"),
            owner,
            repo,
            ..GitContext::default()
        };
        Ok((git, found.default_branch))
    }

    /// Every entry of a paginated list at `path` (at most [`MAX_LIST_PAGES`]
    /// pages of the largest size), `query` going before the paging parameters.
    pub async fn all_pages<T: DeserializeOwned>(
        &self,
        path: &[&str],
        query: &[(&str, String)],
        auth: &Auth,
    ) -> Result<Vec<T>, ScmError> {
        let per_page = self.max_per_page();
        let mut all = Vec::new();
        for page in 1..=MAX_LIST_PAGES {
            let mut params = query.to_vec();
            params.extend(self.paging(page, per_page));
            let url = self.url(path, &params)?;
            let answer = self.get::<Vec<T>>(&url, auth).await?;
            let count = answer.body.len();
            all.extend(answer.body);
            if !has_more(&answer.headers, count, per_page, all.len()) {
                return Ok(all);
            }
        }
        tracing::warn!(host = %self.host.host, list = path.join("/"), "stopped listing after {MAX_LIST_PAGES} pages");
        Ok(all)
    }

    /// Every name of a paginated list (`branches`, `tags`) of a repository.
    async fn ref_names(
        &self,
        owner: &str,
        repo: &str,
        list: &str,
        auth: &Auth,
    ) -> Result<Vec<String>, ScmError> {
        let refs = self
            .all_pages::<NamedRef>(&["repos", owner, repo, list], &[], auth)
            .await?;
        Ok(refs.into_iter().map(|r| r.name).collect())
    }

    /// The commit a URL names by a full or abbreviated SHA.
    pub async fn commit_ref(
        &self,
        git: &GitContext,
        sha: &str,
        auth: &Auth,
    ) -> Result<Ref, ScmError> {
        if !looks_like_sha(sha) {
            return Err(ScmError::InvalidInput(format!(
                "{sha:?} is not a commit SHA"
            )));
        }
        Ok(Ref::Commit(
            self.commit_sha(&git.owner, &git.repo, sha, auth).await?,
        ))
    }

    /// The full SHA of a commit given by a full or abbreviated SHA.
    pub async fn commit_sha(
        &self,
        owner: &str,
        repo: &str,
        sha: &str,
        auth: &Auth,
    ) -> Result<String, ScmError> {
        let mut path = vec!["repos", owner, repo];
        path.extend(self.dialect.commit_path);
        path.push(sha);
        let url = self.url(&path, &[])?;
        match self.get::<Commit>(&url, auth).await {
            Ok(answer) => Ok(answer.body.sha),
            Err(ScmError::NotFound(_)) => Err(no_commit(owner, repo, sha)),
            // 422 ("No commit found for SHA", not a valid commit id) for SHAs it does not know.
            Err(ScmError::Unavailable(m)) if m.contains("422") => Err(no_commit(owner, repo, sha)),
            Err(e) => Err(e),
        }
    }

    /// The ref `segments` start with: a branch (`branches`), a tag (`tags`) or
    /// either (both lists, then a commit SHA).
    pub async fn resolve_ref(
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
        if branches && tags && looks_like_sha(&segments[0]) {
            return match self.commit_sha(owner, repo, &segments[0], auth).await {
                Ok(sha) => Ok(Ref::Commit(sha)),
                Err(ScmError::NotFound(_)) => Err(no_ref(owner, repo, segments)),
                Err(e) => Err(e),
            };
        }
        let what = match (branches, tags) {
            (true, false) => "branch",
            (false, true) => "tag",
            _ => "branch, tag or commit",
        };
        Err(ScmError::NotFound(format!(
            "{owner}/{repo} has no {what} matching {:?}",
            segments.join("/")
        )))
    }

    pub async fn pull_context(
        &self,
        git: GitContext,
        number: &str,
        auth: &Auth,
    ) -> Result<Context, ScmError> {
        let (owner, repo) = (git.owner.clone(), git.repo.clone());
        let url = self.url(&["repos", &owner, &repo, "pulls", number], &[])?;
        let pull = self.get::<Pull>(&url, auth).await.map_err(|e| {
            e.if_not_found(|| {
                ScmError::NotFound(format!("{owner}/{repo} has no pull request #{number}"))
            })
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
            _ if (self.dialect.is_merged)(&pull) => ChangeState::Merged,
            "closed" => ChangeState::Closed,
            _ => ChangeState::Unspecified,
        };
        let draft = (self.dialect.is_draft)(&pull);
        let change = ChangeRequest {
            id: pull.number.to_string(),
            url: format!(
                "{web}/{owner}/{repo}/{}/{}",
                self.dialect.pull_page, pull.number
            ),
            title: pull.title,
            from_branch: pull.head.name,
            to_branch: pull.base.name,
            author: pull.user.map(|u| u.login).unwrap_or_default(),
            draft,
            state,
            head_sha: pull.head.sha,
            head_clone_url,
            head_owner,
            head_repo,
        };
        Ok(change_context(&self.host, git, change, from_fork))
    }

    pub async fn issue_context(
        &self,
        git: GitContext,
        number: &str,
        auth: &Auth,
    ) -> Result<Context, ScmError> {
        let (owner, repo) = (git.owner.clone(), git.repo.clone());
        let url = self.url(&["repos", &owner, &repo, "issues", number], &[])?;
        let issue = self.get::<IssueJson>(&url, auth).await.map_err(|e| {
            e.if_not_found(|| ScmError::NotFound(format!("{owner}/{repo} has no issue #{number}")))
        })?;
        if issue.body.pull_request.is_some() {
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

    /// The context of a repository URL: at the ref it named, else on the
    /// default branch (the repository itself, or one of its other pages).
    pub fn ref_context(
        &self,
        mut git: GitContext,
        resolved: Option<Ref>,
        default_branch: Option<String>,
    ) -> Context {
        match resolved {
            Some(found) => found.set_on(&mut git),
            None => git.branch = default_branch.unwrap_or_default(),
        }
        plain_context(&self.host, git)
    }

    pub fn repositories(&self, repos: Vec<Repo>) -> Vec<Repository> {
        let web = self.host.web_base();
        repos
            .into_iter()
            .map(|r| Repository {
                url: format!("{web}/{}", r.full_name),
                name: r.full_name,
            })
            .collect()
    }

    pub async fn check_repository_access(
        &self,
        creds: &Credentials,
        url: &ContextUrl,
        reserved: &[&str],
    ) -> Result<(), ScmError> {
        let (owner, repo) = owner_and_repo(url, reserved, &self.host)?;
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
}

/// The owner and repository a URL's path starts with.
pub(super) fn owner_and_repo(
    url: &ContextUrl,
    reserved: &[&str],
    host: &ScmHost,
) -> Result<(String, String), ScmError> {
    let not_repo = || {
        ScmError::InvalidInput(format!(
            "{:?} does not point to a {} repository (expected {}/OWNER/REPOSITORY)",
            url.original.trim(),
            host.kind.display_name(),
            host.web_base()
        ))
    };
    if url.segments.len() < 2 {
        return Err(not_repo());
    }
    let owner = &url.segments[0];
    if reserved.iter().any(|r| r.eq_ignore_ascii_case(owner)) {
        return Err(not_repo());
    }
    Ok((owner.clone(), url.segments[1].clone()))
}

/// Repository-level failures, in words a user can act on.
pub(super) fn repo_error(e: ScmError, host: &ScmHost, owner: &str, repo: &str) -> ScmError {
    e.about(&format!("repository {owner}/{repo}"), &host.host)
}

/// A number as in `/pull/12` or `/issues/12`.
pub(super) fn issue_number(segment: &str, what: &str) -> Result<String, ScmError> {
    change_number(segment, what).map(|n| n.to_string())
}

pub(super) fn is_full_sha(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

pub(super) fn no_ref(owner: &str, repo: &str, segments: &[String]) -> ScmError {
    ScmError::NotFound(format!(
        "{owner}/{repo} has no branch, tag or commit matching {:?}",
        segments.join("/")
    ))
}

pub(super) fn no_commit(owner: &str, repo: &str, sha: &str) -> ScmError {
    ScmError::NotFound(format!("{owner}/{repo} has no commit {sha}"))
}

/// The `page` numbers of a `Link` header's `rel="next"` and `rel="last"`.
pub(super) fn link_pages(headers: &HeaderMap) -> Option<(Option<u32>, Option<u32>)> {
    let link = headers.get("link")?.to_str().ok()?;
    let mut next = None;
    let mut last = None;
    for part in link.split(',') {
        let mut pieces = part.split(';');
        let target = pieces
            .next()?
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>');
        let page = Url::parse(target).ok().and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "page")
                .and_then(|(_, v)| v.parse().ok())
        });
        for param in pieces {
            let param = param.trim();
            if let Some(rel) = param.strip_prefix("rel=") {
                for rel in rel.trim_matches('"').split_whitespace() {
                    match rel {
                        "next" => next = page,
                        "last" => last = page,
                        _ => {}
                    }
                }
            }
        }
    }
    Some((next, last))
}

/// Whether another page follows: by `Link`, else by `x-total-count`, else by a full page.
pub(super) fn has_more(headers: &HeaderMap, count: usize, per_page: u32, seen: usize) -> bool {
    if count == 0 {
        return false;
    }
    if let Some((next, _)) = link_pages(headers) {
        return next.is_some();
    }
    if let Some(total) = total_count_header(headers) {
        return (seen as u64) < total;
    }
    count as u32 >= per_page
}

pub(super) fn total_count_header(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("x-total-count")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Paging facts of one answer.
pub(super) struct PageInfo {
    pub page: u32,
    pub total_pages: Option<u32>,
    pub total_count: Option<u64>,
    pub has_next: bool,
}

impl PageInfo {
    pub(super) fn into_paged<T>(self, items: Vec<T>) -> Paged<T> {
        Paged {
            items,
            page: self.page,
            total_pages: self.total_pages,
            total_count: self.total_count,
            has_next: self.has_next,
        }
    }
}

/// What `Link` and `x-total-count` (or `total_count` from the body) say about
/// page `page` holding `count` items.
pub(super) fn page_info(
    headers: &HeaderMap,
    page: u32,
    per_page: u32,
    count: usize,
    total: Option<u64>,
) -> PageInfo {
    let total_count = total.or_else(|| total_count_header(headers));
    let link = link_pages(headers);
    let has_next = match (link, total_count) {
        (Some((next, _)), _) => next.is_some(),
        (None, Some(total)) => u64::from(page) * u64::from(per_page) < total,
        (None, None) => false,
    };
    // On the last page `Link` has no `last`: this page is it, if it holds anything.
    let on_last = !has_next && (count > 0 || page == 1);
    let total_pages = match link.and_then(|(_, last)| last) {
        Some(last) => Some(last),
        None if on_last => Some(if count == 0 { 0 } else { page }),
        None => total_count.map(|t| t.div_ceil(u64::from(per_page)) as u32),
    };
    let total_count = total_count
        .or_else(|| on_last.then(|| u64::from(page - 1) * u64::from(per_page) + count as u64));
    PageInfo {
        page,
        total_pages,
        total_count,
        has_next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn link(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("link", HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn link_headers_give_next_and_last() {
        let h = link(
            r#"<https://api.github.com/user/repos?per_page=2&page=3>; rel="next", <https://api.github.com/user/repos?per_page=2&page=5>; rel="last""#,
        );
        assert_eq!(link_pages(&h), Some((Some(3), Some(5))));
        let last_page = link(
            r#"<https://x.test/a?page=1>; rel="first", <https://x.test/a?page=4>; rel="prev""#,
        );
        assert_eq!(link_pages(&last_page), Some((None, None)));
        assert_eq!(link_pages(&HeaderMap::new()), None);
    }

    #[test]
    fn page_info_on_the_last_page_counts_what_it_saw() {
        let h = link(
            r#"<https://x.test/a?page=1>; rel="first", <https://x.test/a?page=2>; rel="prev""#,
        );
        let info = page_info(&h, 3, 10, 4, None);
        assert_eq!(
            (info.total_pages, info.total_count, info.has_next),
            (Some(3), Some(24), false)
        );
        let empty = page_info(&HeaderMap::new(), 1, 10, 0, None);
        assert_eq!(
            (empty.total_pages, empty.total_count, empty.has_next),
            (Some(0), Some(0), false)
        );
    }

    #[test]
    fn shas_and_numbers() {
        assert!(looks_like_sha("a1b2c3d"));
        assert!(!looks_like_sha("a1b2c3"));
        assert!(!looks_like_sha("main"));
        assert!(is_full_sha(&"f".repeat(40)));
        assert!(matches!(
            issue_number("0", "issue"),
            Err(ScmError::InvalidInput(_))
        ));
        assert_eq!(issue_number("12", "issue").unwrap(), "12");
    }
}
