//! A local Bitbucket Data Center REST API 1.0 for the provider's tests: the
//! endpoints the provider calls, with Bitbucket's JSON shapes, paging
//! (`start`/`limit`/`isLastPage`/`nextPageStart`), Bearer HTTP access tokens,
//! 401 bodies naming Bitbucket's exceptions, 429 with Retry-After, and one slow
//! repository. Served at the root and under the context path `/bitbucket`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{OriginalUri, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

/// A token of user `alice`, who sees everything.
pub const TOKEN: &str = "bbs-alice-token";
/// A token of user `guest`, who may not read project SEC.
pub const GUEST: &str = "bbs-guest-token";
/// A token whose user has used up the rate limit.
pub const THROTTLED: &str = "bbs-throttled-token";
pub const RETRY_AFTER: u64 = 17;
/// How many `hotfix-NNN` branches were pushed after `hotfix`.
pub const HOTFIXES: usize = 130;
/// `PRJ/service-NN` repositories, for search paging.
pub const SERVICES: usize = 30;

/// A fake but stable 40-hex commit id for `seed`.
pub fn sha(seed: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    let mut out = String::new();
    for round in 0u64..3 {
        for b in seed.bytes().chain(round.to_le_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100000001b3);
        }
        out.push_str(&format!("{h:016x}"));
    }
    out.truncate(40);
    out
}

#[derive(Clone)]
struct Repo {
    key: String,
    slug: String,
    /// Branches newest first (Bitbucket's default order is by modification).
    branches: Vec<(String, String)>,
    tags: Vec<(String, String)>,
    default_branch: Option<String>,
    commits: Vec<String>,
    origin: Option<(String, String)>,
}

struct Data {
    projects: Vec<(String, String)>,
    repos: Vec<Repo>,
    log: Mutex<Vec<String>>,
}

pub struct BitbucketServer {
    pub port: u16,
    data: Arc<Data>,
}

impl BitbucketServer {
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request so far: `path?query` (without the context path).
    pub fn requests(&self) -> Vec<String> {
        self.data.log.lock().unwrap().clone()
    }
}

fn repo(key: &str, slug: &str, branches: &[&str], default: Option<&str>) -> Repo {
    let branches: Vec<(String, String)> = branches
        .iter()
        .map(|b| (b.to_string(), sha(&format!("{key}/{slug}@{b}"))))
        .collect();
    let commits = branches.iter().map(|(_, c)| c.clone()).collect();
    Repo {
        key: key.into(),
        slug: slug.into(),
        branches,
        tags: Vec::new(),
        default_branch: default.map(str::to_string),
        commits,
        origin: None,
    }
}

fn data() -> Data {
    let mut app = repo(
        "PRJ",
        "app",
        &["feature/login/ui", "feature/login", "main", "develop"],
        Some("main"),
    );
    for i in 1..=HOTFIXES {
        let name = format!("hotfix-{i:03}");
        let c = sha(&format!("PRJ/app@{name}"));
        app.branches.push((name, c.clone()));
        app.commits.push(c);
    }
    let hotfix = sha("PRJ/app@hotfix");
    app.branches.push(("hotfix".into(), hotfix.clone()));
    app.commits.push(hotfix);
    for tag in ["v1.0", "release/2024.1"] {
        let c = sha(&format!("PRJ/app tag {tag}"));
        app.tags.push((tag.into(), c.clone()));
        app.commits.push(c);
    }
    app.commits.push(sha("PRJ/app initial commit"));

    let mut fork = repo("~JDOE", "app", &["fix/typo", "main"], Some("main"));
    fork.origin = Some(("PRJ".into(), "app".into()));

    let mut repos = vec![
        app,
        repo("PRJ", "empty", &[], None),
        repo("PRJ", "slow", &["main"], Some("main")),
        repo("OPS", "deploy", &["trunk"], Some("trunk")),
        repo("SEC", "vault", &["main"], Some("main")),
        repo("~JDOE", "dotfiles", &["master"], Some("master")),
        fork,
    ];
    for i in 1..=SERVICES {
        repos.push(repo(
            "PRJ",
            &format!("service-{i:02}"),
            &["main"],
            Some("main"),
        ));
    }
    Data {
        projects: vec![
            ("PRJ".into(), "Platform".into()),
            ("OPS".into(), "Operations".into()),
            ("SEC".into(), "Security".into()),
            ("PLAY".into(), "Platform Playground".into()),
        ],
        repos,
        log: Mutex::new(Vec::new()),
    }
}

pub async fn start() -> BitbucketServer {
    let data = Arc::new(data());
    let api = Router::new()
        .route("/rest/api/1.0/projects", get(projects))
        .route("/rest/api/1.0/repos", get(repos))
        .route("/rest/api/1.0/projects/{key}/repos/{slug}", get(repository))
        .route(
            "/rest/api/1.0/projects/{key}/repos/{slug}/branches",
            get(branches),
        )
        .route(
            "/rest/api/1.0/projects/{key}/repos/{slug}/branches/default",
            get(default_branch),
        )
        .route(
            "/rest/api/1.0/projects/{key}/repos/{slug}/default-branch",
            get(default_branch_minimal),
        )
        .route("/rest/api/1.0/projects/{key}/repos/{slug}/tags", get(tags))
        .route(
            "/rest/api/1.0/projects/{key}/repos/{slug}/commits/{id}",
            get(commit),
        )
        .route(
            "/rest/api/1.0/projects/{key}/repos/{slug}/pull-requests/{id}",
            get(pull_request),
        )
        .layer(middleware::from_fn_with_state(data.clone(), authenticate))
        .with_state(data.clone());
    let app = Router::new().nest("/bitbucket", api.clone()).merge(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    BitbucketServer { port, data }
}

#[derive(Clone, Copy, PartialEq)]
enum User {
    Alice,
    Guest,
}

fn error(status: StatusCode, exception: &str, message: &str) -> Response {
    let body =
        json!({"errors": [{"context": null, "message": message, "exceptionName": exception}]});
    (status, Json(body)).into_response()
}

async fn authenticate(
    State(data): State<Arc<Data>>,
    OriginalUri(uri): OriginalUri,
    mut request: Request,
    next: Next,
) -> Response {
    let path = uri.path().strip_prefix("/bitbucket").unwrap_or(uri.path());
    let entry = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    data.log.lock().unwrap().push(entry);
    let bearer = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let user = match bearer.as_deref() {
        Some(TOKEN) => User::Alice,
        Some(GUEST) => User::Guest,
        Some(THROTTLED) => {
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "com.atlassian.bitbucket.ratelimit.RateLimitedException",
                "You have been rate limited.",
            );
            response
                .headers_mut()
                .insert("retry-after", RETRY_AFTER.to_string().parse().unwrap());
            return response;
        }
        _ => {
            return error(
                StatusCode::UNAUTHORIZED,
                "com.atlassian.bitbucket.auth.IncorrectPasswordAuthenticationException",
                "Authentication failed. Please check your credentials and try again.",
            );
        }
    };
    request.extensions_mut().insert(user);
    let mut response = next.run(request).await;
    let name = if user == User::Alice {
        "alice"
    } else {
        "guest"
    };
    response
        .headers_mut()
        .insert("x-ausername", name.parse().unwrap());
    response
}

/// Bitbucket's paged envelope around `items[start..start+limit]`.
fn paged(items: Vec<Value>, query: &HashMap<String, String>) -> Response {
    let start: usize = query.get("start").and_then(|s| s.parse().ok()).unwrap_or(0);
    let limit: usize = query
        .get("limit")
        .and_then(|s| s.parse().ok())
        .unwrap_or(25)
        .clamp(1, 1000);
    let total = items.len();
    let values: Vec<Value> = items.into_iter().skip(start).take(limit).collect();
    let is_last = start + values.len() >= total;
    let mut body = json!({
        "size": values.len(),
        "limit": limit,
        "start": start,
        "isLastPage": is_last,
        "values": values,
    });
    if !is_last {
        body["nextPageStart"] = json!(start + limit);
    }
    Json(body).into_response()
}

fn project_json(key: &str, name: &str) -> Value {
    if let Some(user) = key.strip_prefix('~') {
        let slug = user.to_ascii_lowercase();
        return json!({
            "key": key, "id": 90, "name": format!("{user} (personal)"), "type": "PERSONAL",
            "owner": {"name": slug, "emailAddress": format!("{slug}@example.com"), "id": 3,
                      "displayName": "John Doe", "active": true, "slug": slug, "type": "NORMAL"},
            "links": {"self": [{"href": format!("http://bitbucket.test/users/{slug}")}]}
        });
    }
    json!({
        "key": key, "id": 1, "name": name, "public": false, "type": "NORMAL",
        "links": {"self": [{"href": format!("http://bitbucket.test/projects/{key}")}]}
    })
}

fn repo_json(data: &Data, r: &Repo) -> Value {
    let name = data
        .projects
        .iter()
        .find(|(k, _)| *k == r.key)
        .map(|(_, n)| n.clone())
        .unwrap_or_default();
    let lower = r.key.to_ascii_lowercase();
    let mut v = json!({
        "slug": r.slug, "id": 10, "name": r.slug, "hierarchyId": "e3c939f9ef4a7fae272e",
        "scmId": "git", "state": "AVAILABLE", "statusMessage": "Available", "forkable": true,
        "project": project_json(&r.key, &name), "public": false, "archived": false,
        "links": {
            "clone": [
                {"href": format!("http://alice@bitbucket.test/scm/{lower}/{}.git", r.slug), "name": "http"},
                {"href": format!("ssh://git@bitbucket.test:7999/{lower}/{}.git", r.slug), "name": "ssh"}
            ],
            "self": [{"href": format!("http://bitbucket.test/projects/{}/repos/{}/browse", r.key, r.slug)}]
        }
    });
    let origin = r
        .origin
        .as_ref()
        .and_then(|(key, slug)| data.repos.iter().find(|o| &o.key == key && &o.slug == slug));
    if let Some(origin) = origin {
        v["origin"] = repo_json(data, origin);
    }
    v
}

/// The repository, if `user` may see it: Bitbucket answers 401 with an
/// AuthorisationException to a user without permission.
#[allow(clippy::result_large_err)]
fn find<'a>(data: &'a Data, user: User, key: &str, slug: &str) -> Result<&'a Repo, Response> {
    let key = key.to_ascii_uppercase();
    let Some(repo) = data.repos.iter().find(|r| r.key == key && r.slug == slug) else {
        return Err(error(
            StatusCode::NOT_FOUND,
            "com.atlassian.bitbucket.repository.NoSuchRepositoryException",
            &format!("Repository {key}/{slug} does not exist."),
        ));
    };
    if key == "SEC" && user == User::Guest {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "com.atlassian.bitbucket.AuthorisationException",
            "You are not permitted to access this resource",
        ));
    }
    Ok(repo)
}

fn visible(user: User, key: &str) -> bool {
    !(key == "SEC" && user == User::Guest)
}

async fn projects(
    State(data): State<Arc<Data>>,
    axum::Extension(user): axum::Extension<User>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let name = q
        .get("name")
        .map(|n| n.trim().to_lowercase())
        .unwrap_or_default();
    let items = data
        .projects
        .iter()
        .filter(|(k, n)| visible(user, k) && n.to_lowercase().contains(&name))
        .map(|(k, n)| project_json(k, n))
        .collect();
    paged(items, &q)
}

async fn repos(
    State(data): State<Arc<Data>>,
    axum::Extension(user): axum::Extension<User>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let name = q
        .get("name")
        .map(|n| n.trim().to_lowercase())
        .unwrap_or_default();
    let project_name = q.get("projectname").map(|n| n.trim().to_lowercase());
    let items = data
        .repos
        .iter()
        .filter(|r| visible(user, &r.key) && !r.key.starts_with('~'))
        .filter(|r| r.slug.to_lowercase().contains(&name))
        .filter(|r| match &project_name {
            Some(p) => data
                .projects
                .iter()
                .any(|(k, n)| *k == r.key && n.to_lowercase() == *p),
            None => true,
        })
        .map(|r| repo_json(&data, r))
        .collect();
    paged(items, &q)
}

async fn repository(
    State(data): State<Arc<Data>>,
    axum::Extension(user): axum::Extension<User>,
    Path((key, slug)): Path<(String, String)>,
) -> Response {
    let repo = match find(&data, user, &key, &slug) {
        Ok(r) => r,
        Err(e) => return e,
    };
    if repo.slug == "slow" {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    Json(repo_json(&data, repo)).into_response()
}

fn branch_json(name: &str, commit: &str, default: bool) -> Value {
    json!({
        "id": format!("refs/heads/{name}"), "displayId": name, "type": "BRANCH",
        "latestCommit": commit, "latestChangeset": commit, "isDefault": default
    })
}

async fn branches(
    State(data): State<Arc<Data>>,
    axum::Extension(user): axum::Extension<User>,
    Path((key, slug)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let repo = match find(&data, user, &key, &slug) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let filter = q
        .get("filterText")
        .map(|f| f.to_lowercase())
        .unwrap_or_default();
    let items = repo
        .branches
        .iter()
        .filter(|(n, _)| n.to_lowercase().contains(&filter))
        .map(|(n, c)| branch_json(n, c, repo.default_branch.as_deref() == Some(n)))
        .collect();
    paged(items, &q)
}

async fn tags(
    State(data): State<Arc<Data>>,
    axum::Extension(user): axum::Extension<User>,
    Path((key, slug)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let repo = match find(&data, user, &key, &slug) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let filter = q
        .get("filterText")
        .map(|f| f.to_lowercase())
        .unwrap_or_default();
    let items = repo
        .tags
        .iter()
        .filter(|(n, _)| n.to_lowercase().contains(&filter))
        .map(|(n, c)| {
            json!({"id": format!("refs/tags/{n}"), "displayId": n, "type": "TAG",
                   "latestCommit": c, "latestChangeset": c, "hash": sha(&format!("tag object {n}"))})
        })
        .collect();
    paged(items, &q)
}

fn no_default_branch() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "com.atlassian.bitbucket.repository.NoDefaultBranchException",
        "The repository does not have a default branch.",
    )
}

async fn default_branch(
    State(data): State<Arc<Data>>,
    axum::Extension(user): axum::Extension<User>,
    Path((key, slug)): Path<(String, String)>,
) -> Response {
    let repo = match find(&data, user, &key, &slug) {
        Ok(r) => r,
        Err(e) => return e,
    };
    match repo
        .default_branch
        .as_deref()
        .and_then(|d| repo.branches.iter().find(|(n, _)| n == d))
    {
        Some((n, c)) => Json(branch_json(n, c, true)).into_response(),
        None => no_default_branch(),
    }
}

async fn default_branch_minimal(
    State(data): State<Arc<Data>>,
    axum::Extension(user): axum::Extension<User>,
    Path((key, slug)): Path<(String, String)>,
) -> Response {
    let repo = match find(&data, user, &key, &slug) {
        Ok(r) => r,
        Err(e) => return e,
    };
    match &repo.default_branch {
        Some(n) => Json(json!({"id": format!("refs/heads/{n}"), "displayId": n, "type": "BRANCH"}))
            .into_response(),
        None => no_default_branch(),
    }
}

async fn commit(
    State(data): State<Arc<Data>>,
    axum::Extension(user): axum::Extension<User>,
    Path((key, slug, id)): Path<(String, String, String)>,
) -> Response {
    let repo = match find(&data, user, &key, &slug) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let hits: Vec<&String> = if id.len() >= 4 {
        repo.commits
            .iter()
            .filter(|c| c.starts_with(&id.to_ascii_lowercase()))
            .collect()
    } else {
        Vec::new()
    };
    match hits.as_slice() {
        [c] => Json(json!({
            "id": c, "displayId": &c[..11],
            "author": {"name": "alice", "emailAddress": "alice@example.com", "displayName": "Alice"},
            "authorTimestamp": 1_700_000_000_000u64, "message": "Change things", "parents": []
        }))
        .into_response(),
        _ => error(
            StatusCode::NOT_FOUND,
            "com.atlassian.bitbucket.commit.NoSuchCommitException",
            &format!("Commit '{id}' does not exist in repository '{slug}'."),
        ),
    }
}

async fn pull_request(
    State(data): State<Arc<Data>>,
    axum::Extension(user): axum::Extension<User>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Path((key, slug, id)): Path<(String, String, u64)>,
) -> Response {
    let repo = match find(&data, user, &key, &slug) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let web = format!(
        "http://{}{}",
        headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1"),
        if uri.path().starts_with("/bitbucket/") {
            "/bitbucket"
        } else {
            ""
        }
    );
    let this = repo_json(&data, repo);
    let fork = data
        .repos
        .iter()
        .find(|r| r.key == "~JDOE" && r.slug == "app")
        .unwrap();
    let head = |name: &str, r: &Repo| {
        r.branches
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.clone())
            .unwrap()
    };
    let ref_json = |name: &str, r: &Repo| {
        json!({"id": format!("refs/heads/{name}"), "displayId": name, "latestCommit": head(name, r),
               "type": "BRANCH", "repository": repo_json(&data, r)})
    };
    let (title, state, draft, from, author) = match (repo.slug.as_str(), id) {
        ("app", 3) => (
            "Log in with SSO",
            "MERGED",
            false,
            ref_json("feature/login", repo),
            "alice",
        ),
        ("app", 5) => (
            "Try a new build",
            "DECLINED",
            false,
            ref_json("develop", repo),
            "bob",
        ),
        ("app", 7) => (
            "Fix a typo",
            "OPEN",
            false,
            ref_json("fix/typo", fork),
            "jdoe",
        ),
        ("app", 8) => (
            "WIP: login UI",
            "OPEN",
            true,
            ref_json("feature/login/ui", repo),
            "alice",
        ),
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                "com.atlassian.bitbucket.pull.NoSuchPullRequestException",
                &format!(
                    "Pull request {id} does not exist in {}/{}.",
                    repo.key, repo.slug
                ),
            );
        }
    };
    let mut to = ref_json("main", repo);
    to["repository"] = this;
    Json(json!({
        "id": id, "version": 2, "title": title, "description": "", "state": state,
        "open": state == "OPEN", "closed": state != "OPEN", "draft": draft,
        "createdDate": 1_700_000_000_000u64, "updatedDate": 1_700_000_500_000u64,
        "fromRef": from, "toRef": to, "locked": false,
        "author": {"user": {"name": author, "emailAddress": format!("{author}@example.com"), "id": 7,
                            "displayName": author.to_uppercase(), "active": true, "slug": author, "type": "NORMAL"},
                   "role": "AUTHOR", "approved": false, "status": "UNAPPROVED"},
        "reviewers": [], "participants": [],
        "links": {"self": [{"href": format!("{web}/projects/{}/repos/{}/pull-requests/{id}", repo.key, repo.slug)}]}
    }))
    .into_response()
}
