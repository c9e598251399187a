//! Azure DevOps: Services (`dev.azure.com/{org}`, legacy `{org}.visualstudio.com`)
//! and Azure DevOps Server (`{server}/{virtual directory}/{collection}`).
//!
//! Every repository lives in a *collection* (a Services organization or a Server
//! collection) and a project: `{collection}/{project}/_git/{repo}`. Where the
//! collection sits depends on the host:
//! - `dev.azure.com` and Server hosts: the first path segment names it
//!   (`https://dev.azure.com/{org}/…`), below the Server's virtual directory
//!   when it has one (`https://tfs.example.com/tfs/{collection}/…` with the
//!   virtual directory `/tfs`, as the published API defines it).
//! - `{org}.visualstudio.com`: the host names it; a `/DefaultCollection` segment may follow.
//!
//! PATs go as Basic credentials with an empty user name (or the configured one);
//! Microsoft Entra OAuth tokens (JWTs) go as Bearer tokens. Services speaks REST
//! api-version 7.1; Server hosts get 6.0, which Azure DevOps Server 2020 and later
//! accept (2022 stops at 7.0).

use super::change_context;
use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use url::Url;

use super::{Provider, page_of, plain_context};
use crate::http::{Answer, Auth, Http};
use crate::{
    ChangeRequest, ChangeState, Context, ContextUrl, Credentials, GitContext, Organization, Paged,
    PatHelp, Repository, ScmError, ScmHost, SearchMode,
};

const CLOUD_API_VERSION: &str = "7.1";
const SERVER_API_VERSION: &str = "6.0";
/// Where Services keeps user profiles and the organizations a user belongs to.
const VSSPS: &str = "https://app.vssps.visualstudio.com";
/// The Azure DevOps resource in Microsoft Entra ID.
const ADO_RESOURCE: &str = "499b84ac-1321-427f-aa17-267ca6975798";
const PAGE: usize = 100;
const MAX_PAGES: usize = 50;
/// How many collections a search across all of a user's organizations visits.
const MAX_COLLECTIONS: usize = 20;

pub struct AzureDevOps {
    host: ScmHost,
    http: Http,
}

impl AzureDevOps {
    pub fn new(host: ScmHost, http: Http) -> Self {
        Self { host, http }
    }
}

/// What a context URL names, before asking the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Location {
    /// The organization (Services) or collection (Server).
    pub org: String,
    /// The collection's URL: REST paths `{project}/_apis/…` hang off it.
    pub collection_url: String,
    pub project: String,
    pub repo: String,
    pub target: Target,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// The repository itself: its default branch.
    Repository,
    Branch(String),
    Tag(String),
    Commit(String),
    PullRequest(u64),
}

fn is_services(host: &ScmHost) -> bool {
    host.host == "dev.azure.com" || host.host.ends_with(".visualstudio.com")
}

/// Whether the collection is the first path segment below the virtual
/// directory (not known from the host).
fn collection_in_path(host: &ScmHost) -> bool {
    !host.host.ends_with(".visualstudio.com")
}

fn collection_url(host: &ScmHost, org: &str) -> String {
    if collection_in_path(host) {
        join(&host.web_base(), &[org])
    } else {
        host.web_base()
    }
}

/// The collection named by the host, if any.
fn fixed_collection(host: &ScmHost) -> Option<String> {
    host.host
        .strip_suffix(".visualstudio.com")
        .map(|org| org.split(':').next().unwrap_or(org).to_string())
}

/// `base` with `segments` appended, each percent-encoded as a path segment.
fn join(base: &str, segments: &[&str]) -> String {
    let mut url = Url::parse(base).expect("an Azure DevOps base URL");
    url.path_segments_mut()
        .expect("an http(s) URL")
        .pop_if_empty()
        .extend(segments);
    url.to_string()
}

/// Interprets a context URL of `host`: collection, project, repository, and what in it.
pub(crate) fn locate(host: &ScmHost, url: &ContextUrl) -> Result<Location, ScmError> {
    let invalid = || {
        ScmError::InvalidInput(format!(
            "{:?} is not an Azure DevOps repository URL (expected …/{{project}}/_git/{{repository}})",
            url.original.trim()
        ))
    };
    let mut segments: &[String] = &url.segments;
    if let Some(dir) = &host.virtual_directory {
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

    // Services ssh: `git@ssh.dev.azure.com:v3/{org}/{project}/{repo}`.
    if url.scheme == "ssh" && segments.len() == 4 && segments[0] == "v3" {
        let org = segments[1].clone();
        return Ok(Location {
            collection_url: collection_url(host, &org),
            org,
            project: segments[2].clone(),
            repo: segments[3].clone(),
            target: Target::Repository,
        });
    }

    let (org, rest) = if collection_in_path(host) {
        let (org, rest) = segments.split_first().ok_or_else(invalid)?;
        (org.clone(), rest)
    } else {
        let org = fixed_collection(host).unwrap_or_default();
        let rest = match segments.first() {
            Some(first) if first.eq_ignore_ascii_case("DefaultCollection") => &segments[1..],
            _ => segments,
        };
        (org, rest)
    };
    if org.starts_with('_') {
        return Err(invalid());
    }
    let git = rest.iter().position(|s| s == "_git").ok_or_else(invalid)?;
    let (project, repo, tail) = match git {
        // `_git/{project}`: the project's default repository, named like the project.
        0 => {
            let name = rest.get(1).ok_or_else(invalid)?;
            (name.clone(), name.clone(), &rest[2..])
        }
        1 => {
            let repo = rest.get(2).ok_or_else(invalid)?;
            (rest[0].clone(), repo.clone(), &rest[3..])
        }
        _ => return Err(invalid()),
    };
    if project.starts_with('_') || repo.starts_with('_') {
        return Err(invalid());
    }
    let target = match (tail.first().map(String::as_str), tail.get(1)) {
        (Some("commit"), Some(sha)) => Target::Commit(sha.clone()),
        (Some("pullrequest"), Some(id)) => {
            Target::PullRequest(id.parse().map_err(|_| {
                ScmError::InvalidInput(format!("{id:?} is not a pull request number"))
            })?)
        }
        _ => match url.query_value("version").filter(|v| !v.is_empty()) {
            None => Target::Repository,
            Some(v) => {
                if let Some(b) = v.strip_prefix("GB") {
                    Target::Branch(b.to_string())
                } else if let Some(t) = v.strip_prefix("GT") {
                    Target::Tag(t.to_string())
                } else if let Some(c) = v.strip_prefix("GC") {
                    Target::Commit(c.to_string())
                } else {
                    return Err(ScmError::InvalidInput(format!(
                        "version {v:?} is neither a branch (GB…), a tag (GT…) nor a commit (GC…)"
                    )));
                }
            }
        },
    };
    Ok(Location {
        collection_url: collection_url(host, &org),
        org,
        project,
        repo,
        target,
    })
}

// --- The REST API's shapes (only the fields corral reads). ---

#[derive(Debug, Deserialize)]
struct List<T> {
    #[serde(default = "Vec::new")]
    value: Vec<T>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RepoJson {
    name: String,
    project: ProjectJson,
    #[serde(default)]
    default_branch: Option<String>,
    #[serde(default)]
    is_disabled: bool,
}

#[derive(Debug, Clone, Deserialize)]
struct ProjectJson {
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RefJson {
    name: String,
    object_id: String,
    #[serde(default)]
    peeled_object_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CommitJson {
    commit_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PullRequestJson {
    pull_request_id: u64,
    #[serde(default)]
    title: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    is_draft: bool,
    #[serde(default)]
    source_ref_name: String,
    #[serde(default)]
    target_ref_name: String,
    created_by: Option<IdentityJson>,
    last_merge_source_commit: Option<CommitJson>,
    repository: Option<RepoJson>,
    fork_source: Option<ForkJson>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdentityJson {
    #[serde(default)]
    display_name: String,
}

#[derive(Debug, Deserialize)]
struct ForkJson {
    #[serde(default)]
    name: String,
    repository: RepoJson,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileJson {
    id: String,
    #[serde(default)]
    public_alias: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccountJson {
    account_name: String,
}

#[derive(Debug, Deserialize)]
struct NamedJson {
    name: String,
}

fn strip_heads(name: &str) -> &str {
    name.strip_prefix("refs/heads/").unwrap_or(name)
}

/// Entra ID access tokens are JWTs; PATs are not.
fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.split('.').count() == 3
}

/// One collection to list things in: its name and URL.
struct Collection {
    name: String,
    url: String,
}

impl AzureDevOps {
    fn api_version(&self) -> &'static str {
        if is_services(&self.host) {
            CLOUD_API_VERSION
        } else {
            SERVER_API_VERSION
        }
    }

    fn api(&self, base: &str, path: &[&str], query: &[(&str, &str)]) -> String {
        let mut url = Url::parse(&join(base, path)).expect("an Azure DevOps API URL");
        {
            let mut pairs = url.query_pairs_mut();
            pairs.extend_pairs(query);
            pairs.append_pair("api-version", self.api_version());
        }
        url.to_string()
    }

    fn auth(&self, creds: &Credentials) -> Result<Auth, ScmError> {
        let token = creds.token.trim();
        if token.is_empty() {
            return Err(ScmError::AuthenticationRequired {
                host: self.host.host.clone(),
                reason: "no personal access token for this host".into(),
            });
        }
        Ok(match creds.username.as_deref().filter(|u| !u.is_empty()) {
            Some(user) => Auth::Basic {
                username: user.to_string(),
                password: token.to_string(),
            },
            None if looks_like_jwt(token) => Auth::Bearer(token.to_string()),
            None => Auth::Basic {
                username: String::new(),
                password: token.to_string(),
            },
        })
    }

    async fn get<T: DeserializeOwned>(
        &self,
        url: &str,
        auth: &Auth,
    ) -> Result<Answer<T>, ScmError> {
        // Without this header a rejected credential gets 203 and a sign-in page.
        let request = self
            .http
            .request(Method::GET, url, auth)
            .header("Accept", "application/json")
            .header("X-TFS-FedAuthRedirect", "Suppress");
        self.http.send_json(request).await
    }

    async fn repository(&self, at: &Location, auth: &Auth) -> Result<RepoJson, ScmError> {
        let url = self.api(
            &at.collection_url,
            &[&at.project, "_apis", "git", "repositories", &at.repo],
            &[],
        );
        let repo: RepoJson = self
            .get(&url, auth)
            .await
            .map_err(|e| {
                e.if_not_found(|| {
                    ScmError::NotFound(format!(
                        "repository {}/{} not found in {} on {} (or the token may not see it)",
                        at.project, at.repo, at.org, self.host.host
                    ))
                })
            })?
            .body;
        if repo.is_disabled {
            return Err(ScmError::PermissionDenied(format!(
                "repository {}/{} is disabled",
                repo.project.name, repo.name
            )));
        }
        Ok(repo)
    }

    fn repo_api(
        &self,
        at: &Location,
        repo: &RepoJson,
        rest: &[&str],
        query: &[(&str, &str)],
    ) -> String {
        let mut path = vec![
            repo.project.name.as_str(),
            "_apis",
            "git",
            "repositories",
            repo.name.as_str(),
        ];
        path.extend(rest);
        self.api(&at.collection_url, &path, query)
    }

    /// The ref `refs/{kind}/{name}` (`kind` is `heads` or `tags`), following continuation tokens.
    async fn find_ref(
        &self,
        at: &Location,
        repo: &RepoJson,
        kind: &str,
        name: &str,
        auth: &Auth,
    ) -> Result<Option<RefJson>, ScmError> {
        let filter = format!("{kind}/{name}");
        let full = format!("refs/{filter}");
        let top = PAGE.to_string();
        let mut continuation: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut query = vec![
                ("filter", filter.as_str()),
                ("peelTags", "true"),
                ("$top", top.as_str()),
            ];
            if let Some(token) = &continuation {
                query.push(("continuationToken", token));
            }
            let answer: Answer<List<RefJson>> = self
                .get(&self.repo_api(at, repo, &["refs"], &query), auth)
                .await?;
            if let Some(found) = answer.body.value.into_iter().find(|r| r.name == full) {
                return Ok(Some(found));
            }
            match answer
                .headers
                .get("x-ms-continuationtoken")
                .and_then(|v| v.to_str().ok())
            {
                Some(next) if !next.is_empty() && continuation.as_deref() != Some(next) => {
                    continuation = Some(next.to_string())
                }
                _ => return Ok(None),
            }
        }
        Ok(None)
    }

    fn not_found(&self, what: &str, name: &str, repo: &RepoJson) -> ScmError {
        ScmError::NotFound(format!(
            "{what} {name:?} not found in {}/{} on {}",
            repo.project.name, repo.name, self.host.host
        ))
    }

    fn clone_url(collection_url: &str, project: &str, repo: &str) -> String {
        join(collection_url, &[project, "_git", repo])
    }

    fn git_context(&self, at: &Location, repo: &RepoJson) -> GitContext {
        GitContext {
            host: self.host.host.clone(),
            owner: repo.project.name.clone(),
            repo: repo.name.clone(),
            clone_url: Self::clone_url(&at.collection_url, &repo.project.name, &repo.name),
            ..Default::default()
        }
    }

    async fn pull_request(
        &self,
        at: &Location,
        repo: &RepoJson,
        id: u64,
        auth: &Auth,
    ) -> Result<Context, ScmError> {
        let id_s = id.to_string();
        let pr: PullRequestJson = self
            .get(
                &self.repo_api(at, repo, &["pullrequests", &id_s], &[]),
                auth,
            )
            .await
            .map_err(|e| e.if_not_found(|| self.not_found("pull request", &id_s, repo)))?
            .body;
        let upstream = pr.repository.clone().unwrap_or_else(|| repo.clone());
        let (head_repo, from_branch) = match &pr.fork_source {
            Some(fork) => (fork.repository.clone(), strip_heads(&fork.name).to_string()),
            None => (
                upstream.clone(),
                strip_heads(&pr.source_ref_name).to_string(),
            ),
        };
        let head_clone_url =
            Self::clone_url(&at.collection_url, &head_repo.project.name, &head_repo.name);
        let head_sha = pr
            .last_merge_source_commit
            .map(|c| c.commit_id)
            .unwrap_or_default();
        let state = match pr.status.as_str() {
            "active" => ChangeState::Open,
            "completed" => ChangeState::Merged,
            "abandoned" => ChangeState::Closed,
            _ => ChangeState::Unspecified,
        };
        let upstream_clone =
            Self::clone_url(&at.collection_url, &upstream.project.name, &upstream.name);
        let change = ChangeRequest {
            id: pr.pull_request_id.to_string(),
            title: pr.title,
            from_branch: from_branch.clone(),
            to_branch: strip_heads(&pr.target_ref_name).to_string(),
            url: format!("{upstream_clone}/pullrequest/{}", pr.pull_request_id),
            author: pr.created_by.map(|c| c.display_name).unwrap_or_default(),
            draft: pr.is_draft,
            state,
            head_sha: head_sha.clone(),
            head_clone_url: head_clone_url.clone(),
            head_owner: head_repo.project.name.clone(),
            head_repo: head_repo.name.clone(),
        };
        let from_fork = pr.fork_source.is_some();
        Ok(change_context(
            &self.host,
            self.git_context(at, &upstream),
            change,
            from_fork,
        ))
    }

    fn check_host(&self, url: &ContextUrl) -> Result<(), ScmError> {
        let name = |h: &str| h.split(':').next().unwrap_or_default().to_string();
        let (theirs, ours) = (name(&url.host), name(&self.host.host));
        let ssh_alias = (ours == "dev.azure.com" && theirs == "ssh.dev.azure.com")
            || (ours.ends_with(".visualstudio.com") && theirs == "vs-ssh.visualstudio.com");
        if theirs != ours && !ssh_alias {
            return Err(ScmError::InvalidInput(format!(
                "{} is not served by the Azure DevOps host {}",
                url.host, self.host.host
            )));
        }
        Ok(())
    }

    /// The collections to list projects and repositories in: the host's own, or
    /// every organization (Services) or collection (Server) the user can see.
    async fn collections(&self, auth: &Auth) -> Result<Vec<Collection>, ScmError> {
        if let Some(name) = fixed_collection(&self.host) {
            return Ok(vec![Collection {
                name,
                url: self.host.web_base(),
            }]);
        }
        let names: Vec<String> = if self.host.host == "dev.azure.com" {
            let profile: ProfileJson = self
                .get(
                    &self.api(VSSPS, &["_apis", "profile", "profiles", "me"], &[]),
                    auth,
                )
                .await?
                .body;
            let member = profile.public_alias.unwrap_or(profile.id);
            let url = self.api(VSSPS, &["_apis", "accounts"], &[("memberId", &member)]);
            let accounts: List<AccountJson> = self.get(&url, auth).await?.body;
            accounts.value.into_iter().map(|a| a.account_name).collect()
        } else {
            let url = self.api(&self.host.web_base(), &["_apis", "projectCollections"], &[]);
            let collections: List<NamedJson> = self.get(&url, auth).await?.body;
            collections.value.into_iter().map(|c| c.name).collect()
        };
        Ok(names
            .into_iter()
            .take(MAX_COLLECTIONS)
            .map(|name| Collection {
                url: collection_url(&self.host, &name),
                name,
            })
            .collect())
    }

    async fn projects(
        &self,
        collection: &Collection,
        auth: &Auth,
    ) -> Result<Vec<String>, ScmError> {
        let mut names = Vec::new();
        for page in 0..MAX_PAGES {
            let (top, skip) = (PAGE.to_string(), (page * PAGE).to_string());
            let url = self.api(
                &collection.url,
                &["_apis", "projects"],
                &[("$top", &top), ("$skip", &skip)],
            );
            let list: List<NamedJson> = self.get(&url, auth).await?.body;
            let n = list.value.len();
            names.extend(list.value.into_iter().map(|p| p.name));
            if n < PAGE {
                break;
            }
        }
        Ok(names)
    }
}

/// Page `page` (from 1) of `items`, `per_page` (at most 100) at a time.
fn slice<T>(items: Vec<T>, page: u32, per_page: u32) -> Paged<T> {
    page_of(items, page.max(1), per_page.clamp(1, 100))
}

fn matches(name: &str, query: &str, mode: SearchMode) -> bool {
    let name = name.to_lowercase();
    let query = query.trim().to_lowercase();
    match mode {
        SearchMode::Keyword => query.split_whitespace().all(|word| name.contains(word)),
        SearchMode::Native => name.contains(&query),
    }
}

#[async_trait]
impl Provider for AzureDevOps {
    fn host(&self) -> &ScmHost {
        &self.host
    }

    async fn parse_context(
        &self,
        url: &ContextUrl,
        creds: &Credentials,
    ) -> Result<Context, ScmError> {
        self.check_host(url)?;
        let at = locate(&self.host, url)?;
        let auth = self.auth(creds)?;
        let repo = self.repository(&at, &auth).await?;
        let mut git = self.git_context(&at, &repo);
        match at.target.clone() {
            Target::PullRequest(id) => return self.pull_request(&at, &repo, id, &auth).await,
            Target::Repository => {
                if let Some(default) = repo.default_branch.as_deref() {
                    let branch = strip_heads(default).to_string();
                    // An empty repository names a default branch that does not exist yet.
                    if let Some(head) = self.find_ref(&at, &repo, "heads", &branch, &auth).await? {
                        git.commit = head.object_id;
                    }
                    git.branch = branch;
                }
            }
            Target::Branch(name) => {
                let head = self
                    .find_ref(&at, &repo, "heads", &name, &auth)
                    .await?
                    .ok_or_else(|| self.not_found("branch", &name, &repo))?;
                git.branch = name;
                git.commit = head.object_id;
            }
            Target::Tag(name) => {
                let tag = self
                    .find_ref(&at, &repo, "tags", &name, &auth)
                    .await?
                    .ok_or_else(|| self.not_found("tag", &name, &repo))?;
                git.tag = name;
                git.commit = tag
                    .peeled_object_id
                    .filter(|p| !p.is_empty())
                    .unwrap_or(tag.object_id);
            }
            Target::Commit(sha) => {
                let commit: CommitJson = self
                    .get(&self.repo_api(&at, &repo, &["commits", &sha], &[]), &auth)
                    .await
                    .map_err(|e| e.if_not_found(|| self.not_found("commit", &sha, &repo)))?
                    .body;
                git.commit = commit.commit_id;
            }
        }
        Ok(plain_context(&self.host, git))
    }

    /// Azure DevOps has no repository search: this lists the repositories of the
    /// collection(s) and filters `project/repo` names. Keyword mode wants every
    /// word in the name; native mode the whole query as one piece (case-insensitive).
    async fn search_repositories(
        &self,
        creds: &Credentials,
        query: &str,
        mode: SearchMode,
        page: u32,
        per_page: u32,
    ) -> Result<Paged<Repository>, ScmError> {
        let auth = self.auth(creds)?;
        let mut found = Vec::new();
        for collection in self.collections(&auth).await? {
            let url = self.api(&collection.url, &["_apis", "git", "repositories"], &[]);
            let repos: List<RepoJson> = self.get(&url, &auth).await?.body;
            found.extend(
                repos
                    .value
                    .into_iter()
                    .filter(|r| !r.is_disabled)
                    .map(|r| Repository {
                        name: format!("{}/{}", r.project.name, r.name),
                        url: Self::clone_url(&collection.url, &r.project.name, &r.name),
                    })
                    .filter(|r| matches(&r.name, query, mode)),
            );
        }
        found.sort_by_key(|r| (r.name.to_lowercase(), r.url.clone()));
        Ok(slice(found, page, per_page))
    }

    /// Projects of the collection(s); named `collection/project` when the host
    /// does not fix one collection.
    async fn list_organizations(
        &self,
        creds: &Credentials,
        query: &str,
        page: u32,
        per_page: u32,
    ) -> Result<Paged<Organization>, ScmError> {
        let auth = self.auth(creds)?;
        let prefix = fixed_collection(&self.host).is_none();
        let mut found = Vec::new();
        for collection in self.collections(&auth).await? {
            for project in self.projects(&collection, &auth).await? {
                let name = if prefix {
                    format!("{}/{project}", collection.name)
                } else {
                    project.clone()
                };
                if matches(&name, query, SearchMode::Keyword) {
                    found.push(Organization {
                        url: join(&collection.url, &[&project]),
                        name,
                        is_admin: None,
                    });
                }
            }
        }
        found.sort_by_key(|o| o.name.to_lowercase());
        Ok(slice(found, page, per_page))
    }

    async fn check_token(&self, creds: &Credentials) -> Result<(), ScmError> {
        let auth = self.auth(creds)?;
        let url = if self.host.host == "dev.azure.com" {
            self.api(VSSPS, &["_apis", "profile", "profiles", "me"], &[])
        } else {
            // Not versioned; the collection's, or the server's without a fixed collection.
            join(&self.host.web_base(), &["_apis", "connectionData"])
        };
        let _: Answer<serde_json::Value> = self.get(&url, &auth).await?;
        Ok(())
    }

    async fn check_repository_access(
        &self,
        creds: &Credentials,
        url: &ContextUrl,
    ) -> Result<(), ScmError> {
        self.check_host(url)?;
        let at = locate(&self.host, url)?;
        let auth = self.auth(creds)?;
        self.repository(&at, &auth).await.map(|_| ())
    }

    fn pat_help(&self) -> PatHelp {
        PatHelp {
            create_url: format!("{}/_usersSettings/tokens", self.host.web_base()),
            docs_url: "https://learn.microsoft.com/en-us/azure/devops/organizations/accounts/use-personal-access-tokens-to-authenticate".into(),
            example: "A personal access token with the Code (Read) scope".into(),
            required_scopes: vec!["vso.code".into()],
        }
    }

    /// Microsoft Entra ID (the Azure DevOps OAuth app model is retired); also
    /// for Server hosts, whose own OAuth needs no separate endpoints here.
    /// Microsoft Entra ID, for accounts of any tenant unless an issuer
    /// names one.
    fn oauth_root(&self) -> String {
        "https://login.microsoftonline.com/common".into()
    }

    fn oauth_paths(&self) -> (&'static str, &'static str) {
        ("/oauth2/v2.0/authorize", "/oauth2/v2.0/token")
    }

    fn oauth_scopes(&self) -> Vec<String> {
        vec![
            format!("{ADO_RESOURCE}/vso.code_write"),
            "offline_access".into(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ScmKind;

    fn host(name: &str, dir: Option<&str>) -> ScmHost {
        ScmHost {
            kind: ScmKind::AzureDevOps,
            host: name.into(),
            scheme: "https".into(),
            virtual_directory: dir.map(str::to_string),
        }
    }

    /// (host, virtual directory, URL) and what it names: (org, collection URL, project, repo, target).
    type Case<'a> = (
        &'a str,
        Option<&'a str>,
        &'a str,
        (&'a str, &'a str, &'a str, &'a str, Target),
    );

    #[test]
    fn public_and_server_urls_name_collection_project_repo_and_ref() {
        use Target::*;
        let cases: &[Case] = &[
            (
                "dev.azure.com",
                None,
                "https://dev.azure.com/contoso/Fabrikam/_git/web",
                (
                    "contoso",
                    "https://dev.azure.com/contoso",
                    "Fabrikam",
                    "web",
                    Repository,
                ),
            ),
            (
                "dev.azure.com",
                None,
                "https://contoso@dev.azure.com/contoso/Fabrikam/_git/web",
                (
                    "contoso",
                    "https://dev.azure.com/contoso",
                    "Fabrikam",
                    "web",
                    Repository,
                ),
            ),
            (
                "dev.azure.com",
                None,
                "https://dev.azure.com/contoso/Fabrikam/_git/web?version=GBfeature/login&path=/src/app.ts",
                (
                    "contoso",
                    "https://dev.azure.com/contoso",
                    "Fabrikam",
                    "web",
                    Branch("feature/login".into()),
                ),
            ),
            (
                "dev.azure.com",
                None,
                "https://dev.azure.com/contoso/Fabrikam/_git/web?path=%2Fsrc&version=GBusers%2Fjd%2Fspike",
                (
                    "contoso",
                    "https://dev.azure.com/contoso",
                    "Fabrikam",
                    "web",
                    Branch("users/jd/spike".into()),
                ),
            ),
            (
                "dev.azure.com",
                None,
                "https://dev.azure.com/contoso/Fabrikam/_git/web?version=GTv1.0",
                (
                    "contoso",
                    "https://dev.azure.com/contoso",
                    "Fabrikam",
                    "web",
                    Tag("v1.0".into()),
                ),
            ),
            (
                "dev.azure.com",
                None,
                "https://dev.azure.com/contoso/Fabrikam/_git/web?version=GCabc1234",
                (
                    "contoso",
                    "https://dev.azure.com/contoso",
                    "Fabrikam",
                    "web",
                    Commit("abc1234".into()),
                ),
            ),
            (
                "dev.azure.com",
                None,
                "https://dev.azure.com/contoso/Fabrikam/_git/web/commit/abc1234def",
                (
                    "contoso",
                    "https://dev.azure.com/contoso",
                    "Fabrikam",
                    "web",
                    Commit("abc1234def".into()),
                ),
            ),
            (
                "dev.azure.com",
                None,
                "https://dev.azure.com/contoso/Fabrikam/_git/web/pullrequest/42",
                (
                    "contoso",
                    "https://dev.azure.com/contoso",
                    "Fabrikam",
                    "web",
                    PullRequest(42),
                ),
            ),
            (
                "dev.azure.com",
                None,
                "https://dev.azure.com/contoso/_git/Fabrikam",
                (
                    "contoso",
                    "https://dev.azure.com/contoso",
                    "Fabrikam",
                    "Fabrikam",
                    Repository,
                ),
            ),
            (
                "dev.azure.com",
                None,
                "https://dev.azure.com/contoso/Fabrikam%20Fiber/_git/fiber%20app.git",
                (
                    "contoso",
                    "https://dev.azure.com/contoso",
                    "Fabrikam Fiber",
                    "fiber app",
                    Repository,
                ),
            ),
            (
                "dev.azure.com",
                None,
                "git@ssh.dev.azure.com:v3/contoso/Fabrikam/web",
                (
                    "contoso",
                    "https://dev.azure.com/contoso",
                    "Fabrikam",
                    "web",
                    Repository,
                ),
            ),
            (
                "contoso.visualstudio.com",
                None,
                "https://contoso.visualstudio.com/Fabrikam/_git/web",
                (
                    "contoso",
                    "https://contoso.visualstudio.com",
                    "Fabrikam",
                    "web",
                    Repository,
                ),
            ),
            (
                "contoso.visualstudio.com",
                None,
                "https://contoso.visualstudio.com/DefaultCollection/Fabrikam/_git/web?version=GBmain",
                (
                    "contoso",
                    "https://contoso.visualstudio.com",
                    "Fabrikam",
                    "web",
                    Branch("main".into()),
                ),
            ),
            (
                "contoso.visualstudio.com",
                None,
                "https://contoso.visualstudio.com/DefaultCollection/_git/Fabrikam/pullrequest/7",
                (
                    "contoso",
                    "https://contoso.visualstudio.com",
                    "Fabrikam",
                    "Fabrikam",
                    PullRequest(7),
                ),
            ),
            (
                "tfs.example.com",
                Some("tfs"),
                "https://tfs.example.com/tfs/DefaultCollection/Fabrikam/_git/web?version=GTrelease/2024",
                (
                    "DefaultCollection",
                    "https://tfs.example.com/tfs/DefaultCollection",
                    "Fabrikam",
                    "web",
                    Tag("release/2024".into()),
                ),
            ),
            (
                "ado.example.com",
                None,
                "https://ado.example.com/Main/Fabrikam/_git/web?version=GBmain",
                (
                    "Main",
                    "https://ado.example.com/Main",
                    "Fabrikam",
                    "web",
                    Branch("main".into()),
                ),
            ),
            (
                "tfs.example.com",
                Some("tfs"),
                "ssh://tfs.example.com:22/tfs/DefaultCollection/Fabrikam/_git/web",
                (
                    "DefaultCollection",
                    "https://tfs.example.com/tfs/DefaultCollection",
                    "Fabrikam",
                    "web",
                    Repository,
                ),
            ),
        ];
        for (name, dir, url, (org, coll, project, repo, target)) in cases {
            let got = locate(&host(name, *dir), &ContextUrl::parse(url).unwrap())
                .unwrap_or_else(|e| panic!("{url}: {e}"));
            let want = Location {
                org: org.to_string(),
                collection_url: coll.to_string(),
                project: project.to_string(),
                repo: repo.to_string(),
                target: target.clone(),
            };
            assert_eq!(got, want, "{url}");
        }
    }

    #[test]
    fn urls_without_a_repository_are_invalid_input() {
        let dev = host("dev.azure.com", None);
        for bad in [
            "https://dev.azure.com/contoso",
            "https://dev.azure.com/contoso/Fabrikam",
            "https://dev.azure.com/contoso/Fabrikam/_boards/board",
            "https://dev.azure.com/contoso/Fabrikam/_git",
            "https://dev.azure.com/_git/web",
            "https://dev.azure.com/contoso/Fabrikam/_git/web/pullrequest/abc",
            "https://dev.azure.com/contoso/Fabrikam/_git/web?version=XYmain",
        ] {
            assert!(
                matches!(
                    locate(&dev, &ContextUrl::parse(bad).unwrap()),
                    Err(ScmError::InvalidInput(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn clone_urls_encode_spaces_and_tokens_pick_their_scheme() {
        assert_eq!(
            AzureDevOps::clone_url(
                "https://dev.azure.com/contoso",
                "Fabrikam Fiber",
                "fiber app"
            ),
            "https://dev.azure.com/contoso/Fabrikam%20Fiber/_git/fiber%20app"
        );
        assert!(looks_like_jwt("eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl"));
        assert!(!looks_like_jwt(
            "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrst"
        ));
    }
}
