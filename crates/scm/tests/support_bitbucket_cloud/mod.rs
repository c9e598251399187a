//! A fake Bitbucket Cloud for the Bitbucket Cloud provider's tests: an axum
//! server on 127.0.0.1:0 answering the REST API 2.0 endpoints the provider
//! calls, with Bitbucket's paginated `{size, page, pagelen, next, values}`
//! answers, BBQL filtering (`q`, a subset: `field ~ "x"`, `=`, `!=`, `!~`,
//! joined by AND / OR) and Bitbucket's error bodies.
//!
//! Who is who:
//! - [`ALICE`] (Bearer) or [`ALICE_EMAIL`] + [`ALICE_API_TOKEN`] (Basic): member
//!   of the workspaces `acme` and `tooling`.
//! - [`BOB`]: member of `bobspace` only.
//! - [`LIMITED`]: a valid token whose rate limit is used up (429, `Retry-After: 42`).
//! - Any other credentials are refused (401).
//!
//! Special repositories: `acme/slow` answers after five seconds, `acme/flaky`
//! fails with 500, `acme/secret` is refused (403) to everyone but alice. The
//! cross-workspace listings Atlassian removed (`GET /repositories`,
//! `GET /workspaces`) answer 410 Gone as they do on bitbucket.org, and so do
//! the issues of `acme/empty` (the retired issue tracker).

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{OriginalUri, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use base64::Engine;
use corral_scm::host::ConfiguredHost;
use corral_scm::{Credentials, HostRegistry, Provider, ScmKind, provider_for};
use serde_json::{Value, json};

pub const ALICE: &str = "bb-oauth-alice-T9xq2LmZ7vRk4PwE";
pub const ALICE_EMAIL: &str = "alice@example.com";
pub const ALICE_API_TOKEN: &str = "ATATT3xFfGF0alice5Jp8Wn2Qz6Hc";
pub const BOB: &str = "bb-oauth-bob-H3kd8Zq1Xw5Nm2Vp";
pub const LIMITED: &str = "bb-oauth-carol-Y7tg3Bq9Lr1Ks6Ja";

pub const INITIAL: &str = "4f1c2e9a8b7d6c5e4f3a2b1c0d9e8f7a6b5c4d3e";
pub const LOGIN_HEAD: &str = "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b";
pub const FORK_HEAD: &str = "c0ffee1234567890abcdef1234567890abcdef12";
pub const GONE_HEAD: &str = "abcdefabcdef";

struct User {
    username: &'static str,
    display_name: &'static str,
    bearer: &'static str,
    /// (e-mail, API token) for Basic authentication.
    basic: Option<(&'static str, &'static str)>,
}

const USERS: &[User] = &[
    User {
        username: "alice",
        display_name: "Alice Liddell",
        bearer: ALICE,
        basic: Some((ALICE_EMAIL, ALICE_API_TOKEN)),
    },
    User {
        username: "bob",
        display_name: "Bob Builder",
        bearer: BOB,
        basic: None,
    },
    User {
        username: "jdoe",
        display_name: "Jane Doe",
        bearer: "bb-oauth-jdoe-never-used",
        basic: None,
    },
    User {
        username: "carol",
        display_name: "Carol Danvers",
        bearer: LIMITED,
        basic: None,
    },
];

/// (slug, name, members with their administrator flag)
type WorkspaceRow = (&'static str, &'static str, &'static [(&'static str, bool)]);

const WORKSPACES: &[WorkspaceRow] = &[
    ("acme", "Acme", &[("alice", true), ("carol", false)]),
    ("tooling", "Tooling", &[("alice", false)]),
    ("jdoe", "Jane Doe", &[("jdoe", true)]),
    ("bobspace", "Bob's space", &[("bob", true)]),
];

struct Repo {
    full_name: &'static str,
    mainbranch: Option<&'static str>,
    private: bool,
    /// Users with explicit access (what `role=member` lists).
    members: &'static [&'static str],
    parent: Option<&'static str>,
    branches: &'static [(&'static str, &'static str)],
    tags: &'static [(&'static str, &'static str)],
    commits: &'static [(&'static str, &'static str)],
    has_issues: bool,
}

const fn plain(full_name: &'static str, members: &'static [&'static str]) -> Repo {
    Repo {
        full_name,
        mainbranch: Some("main"),
        private: true,
        members,
        parent: None,
        branches: &[("main", INITIAL)],
        tags: &[],
        commits: &[(INITIAL, "Initial commit")],
        has_issues: false,
    }
}

const REPOS: &[Repo] = &[
    Repo {
        full_name: "acme/widgets",
        mainbranch: Some("main"),
        private: true,
        members: &["alice", "carol"],
        parent: None,
        branches: &[
            ("main", INITIAL),
            ("develop", INITIAL),
            ("feature", INITIAL),
            ("feature/login", LOGIN_HEAD),
            ("feature/login-v2", LOGIN_HEAD),
            ("release/2024/q1", INITIAL),
        ],
        tags: &[("v1.0", INITIAL), ("release/2024", INITIAL)],
        commits: &[(INITIAL, "Initial commit"), (LOGIN_HEAD, "Add OAuth login")],
        has_issues: true,
    },
    plain("acme/widget-docs", &["alice"]),
    Repo {
        mainbranch: None,
        branches: &[],
        commits: &[],
        ..plain("acme/empty", &["alice"])
    },
    plain("acme/secret", &["alice"]),
    plain("acme/slow", &["alice"]),
    plain("acme/flaky", &["alice"]),
    Repo {
        full_name: "jdoe/widgets",
        mainbranch: Some("main"),
        private: false,
        members: &["jdoe"],
        parent: Some("acme/widgets"),
        branches: &[("main", INITIAL), ("patch-1", FORK_HEAD)],
        tags: &[],
        commits: &[
            (INITIAL, "Initial commit"),
            (FORK_HEAD, "Fix typo in README"),
        ],
        has_issues: false,
    },
    plain("tooling/repo-01", &["alice"]),
    plain("tooling/repo-02", &["alice"]),
    plain("tooling/repo-03", &["alice"]),
    plain("tooling/repo-04", &["alice"]),
    plain("tooling/repo-05", &["alice"]),
    plain("bobspace/sandbox", &["bob"]),
];

struct PullRequest {
    repo: &'static str,
    id: u64,
    title: &'static str,
    /// None: the fork was deleted.
    source_repo: Option<&'static str>,
    source_branch: &'static str,
    source_commit: &'static str,
    destination_branch: &'static str,
    state: &'static str,
    draft: bool,
    author: &'static str,
}

const PULL_REQUESTS: &[PullRequest] = &[
    PullRequest {
        repo: "acme/widgets",
        id: 3,
        title: "Add OAuth login",
        source_repo: Some("acme/widgets"),
        source_branch: "feature/login",
        source_commit: LOGIN_HEAD,
        destination_branch: "main",
        state: "OPEN",
        draft: true,
        author: "alice",
    },
    PullRequest {
        repo: "acme/widgets",
        id: 4,
        title: "Fix typo in README",
        source_repo: Some("jdoe/widgets"),
        source_branch: "patch-1",
        source_commit: FORK_HEAD,
        destination_branch: "main",
        state: "MERGED",
        draft: false,
        author: "jdoe",
    },
    PullRequest {
        repo: "acme/widgets",
        id: 5,
        title: "Rewrite in COBOL",
        source_repo: Some("acme/widgets"),
        source_branch: "develop",
        source_commit: INITIAL,
        destination_branch: "main",
        state: "DECLINED",
        draft: false,
        author: "alice",
    },
    PullRequest {
        repo: "acme/widgets",
        id: 6,
        title: "From a fork since deleted",
        source_repo: None,
        source_branch: "gone",
        source_commit: GONE_HEAD,
        destination_branch: "main",
        state: "OPEN",
        draft: false,
        author: "jdoe",
    },
];

/// (repository, id, title)
const ISSUES: &[(&str, u64, &str)] = &[("acme/widgets", 2, "Crash on start")];

/// The running fake and what it was asked.
pub struct FakeBitbucket {
    pub base: String,
    pub port: u16,
    state: Arc<Fake>,
}

struct Fake {
    base: String,
    requests: Mutex<Vec<String>>,
    /// How each request authenticated: `Bearer`, `Basic` or `none`.
    schemes: Mutex<Vec<&'static str>>,
}

impl FakeBitbucket {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        let base = format!("http://127.0.0.1:{port}");
        let state = Arc::new(Fake {
            base: base.clone(),
            requests: Mutex::new(Vec::new()),
            schemes: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/2.0/user", get(current_user))
            .route("/2.0/user/workspaces", get(user_workspaces))
            .route("/2.0/workspaces", get(removed))
            .route("/2.0/repositories", get(removed))
            .route("/2.0/repositories/{workspace}", get(workspace_repositories))
            .route("/2.0/repositories/{workspace}/{slug}", get(repository))
            .route(
                "/2.0/repositories/{workspace}/{slug}/refs/branches",
                get(branches),
            )
            .route("/2.0/repositories/{workspace}/{slug}/refs/tags", get(tags))
            .route(
                "/2.0/repositories/{workspace}/{slug}/commit/{revision}",
                get(commit),
            )
            .route(
                "/2.0/repositories/{workspace}/{slug}/pullrequests/{id}",
                get(pull_request),
            )
            .route(
                "/2.0/repositories/{workspace}/{slug}/issues/{id}",
                get(issue),
            )
            .fallback(|| async { error(StatusCode::NOT_FOUND, "Resource not found") })
            .layer(middleware::from_fn_with_state(state.clone(), authenticate))
            .with_state(state.clone());
        tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("serving the fake Bitbucket");
        });
        Self { base, port, state }
    }

    /// The provider for this fake, as the runner would build it.
    pub fn provider(&self, timeout: Duration) -> Box<dyn Provider> {
        let registry = HostRegistry::new([ConfiguredHost {
            kind: ScmKind::BitbucketCloud,
            host: self.base.clone(),
            virtual_directory: None,
        }])
        .expect("a valid host");
        let host = registry
            .resolve(&format!("127.0.0.1:{}", self.port))
            .expect("the fake resolves");
        provider_for(host, timeout)
    }

    /// `METHOD /path?query` of every request so far.
    pub fn requests(&self) -> Vec<String> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn auth_schemes(&self) -> Vec<&'static str> {
        self.state.schemes.lock().unwrap().clone()
    }
}

pub fn creds(token: &str) -> Credentials {
    Credentials {
        token: token.to_string(),
        username: None,
    }
}

pub fn basic(username: &str, token: &str) -> Credentials {
    Credentials {
        token: token.to_string(),
        username: Some(username.to_string()),
    }
}

#[derive(Clone, Copy)]
struct Caller(&'static User);

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"type": "error", "error": {"message": message}})),
    )
        .into_response()
}

/// Logs the request, then lets it through only with known credentials.
async fn authenticate(State(fake): State<Arc<Fake>>, mut request: Request, next: Next) -> Response {
    fake.requests
        .lock()
        .unwrap()
        .push(format!("{} {}", request.method(), request.uri()));
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let user = if let Some(token) = authorization.strip_prefix("Bearer ") {
        fake.schemes.lock().unwrap().push("Bearer");
        USERS.iter().find(|u| u.bearer == token)
    } else if let Some(encoded) = authorization.strip_prefix("Basic ") {
        fake.schemes.lock().unwrap().push("Basic");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .unwrap_or_default();
        let (name, secret) = decoded.split_once(':').unwrap_or(("", ""));
        USERS.iter().find(|u| u.basic == Some((name, secret)))
    } else {
        fake.schemes.lock().unwrap().push("none");
        None
    };
    let Some(user) = user else {
        return error(
            StatusCode::UNAUTHORIZED,
            "Token is invalid, expired, or not supported for this endpoint.",
        );
    };
    if user.bearer == LIMITED {
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            "Rate limit for this resource has been exceeded",
        );
        response
            .headers_mut()
            .insert("retry-after", "42".parse().unwrap());
        return response;
    }
    request.extensions_mut().insert(Caller(user));
    next.run(request).await
}

async fn removed() -> Response {
    (
        StatusCode::GONE,
        Json(json!({
            "type": "error",
            "error": {
                "message": "CHANGE-2770 - Functionality has been deprecated",
                "detail": "Please read the changelog entry for more details.",
                "data": {"announcement_url": "https://developer.atlassian.com/cloud/bitbucket/changelog#CHANGE-2770"},
            },
        })),
    )
        .into_response()
}

fn user_json(fake: &Fake, username: &str) -> Value {
    let user = USERS
        .iter()
        .find(|u| u.username == username)
        .expect("a known user");
    json!({
        "type": "user",
        "display_name": user.display_name,
        "nickname": user.username,
        "account_id": format!("557058:{}", user.username),
        "uuid": format!("{{{}-0000-4000-8000-000000000000}}", user.username),
        "links": {"html": {"href": format!("{}/{{{}}}/", fake.base, user.username)}},
    })
}

fn workspace_json(fake: &Fake, slug: &str) -> Value {
    let (_, name, _) = WORKSPACES
        .iter()
        .find(|(s, _, _)| *s == slug)
        .expect("a known workspace");
    json!({
        "type": "workspace",
        "slug": slug,
        "name": name,
        "uuid": format!("{{{slug}-0000-4000-8000-000000000000}}"),
        "links": {"html": {"href": format!("{}/{slug}/", fake.base)}},
    })
}

fn repo_json(fake: &Fake, repo: &Repo) -> Value {
    let (workspace, slug) = repo.full_name.split_once('/').unwrap();
    let mut value = json!({
        "type": "repository",
        "full_name": repo.full_name,
        "name": slug,
        "slug": slug,
        "uuid": format!("{{{slug}-1111-4000-8000-000000000000}}"),
        "is_private": repo.private,
        "scm": "git",
        "description": "",
        "language": "rust",
        "created_on": "2024-01-15T09:30:00.000000+00:00",
        "updated_on": "2024-06-01T12:00:00.000000+00:00",
        "size": 123456,
        "has_issues": repo.has_issues,
        "has_wiki": false,
        "fork_policy": "allow_forks",
        "mainbranch": repo.mainbranch.map(|b| json!({"type": "branch", "name": b})),
        "workspace": workspace_json(fake, workspace),
        "project": {"type": "project", "key": workspace.to_uppercase(), "name": workspace},
        "links": {
            "self": {"href": format!("{}/2.0/repositories/{}", fake.base, repo.full_name)},
            "html": {"href": format!("{}/{}", fake.base, repo.full_name)},
            "clone": [
                {"name": "https", "href": format!("{}/{}.git", fake.base.replacen("http://", "http://alice@", 1), repo.full_name)},
                {"name": "ssh", "href": format!("git@127.0.0.1:{}.git", repo.full_name)},
            ],
        },
    });
    if let Some(parent) = repo.parent {
        value["parent"] = json!({"type": "repository", "full_name": parent, "name": parent.split_once('/').unwrap().1});
    }
    value
}

/// Page `page` of `values` in Bitbucket's page object, with an absolute `next`.
fn paginate(
    fake: &Fake,
    uri: &OriginalUri,
    query: &HashMap<String, String>,
    values: Vec<Value>,
) -> Response {
    let page: usize = query
        .get("page")
        .and_then(|p| p.parse().ok())
        .filter(|p| *p > 0)
        .unwrap_or(1);
    let pagelen: usize = query
        .get("pagelen")
        .and_then(|p| p.parse().ok())
        .filter(|p| *p > 0)
        .unwrap_or(10)
        .min(100);
    let size = values.len();
    let link_to = |n: usize| {
        let mut pairs: Vec<(String, String)> = query
            .iter()
            .filter(|(k, _)| *k != "page")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        pairs.sort();
        pairs.push(("page".into(), n.to_string()));
        let encoded = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        format!("{}{}?{encoded}", fake.base, uri.path())
    };
    let mut body = json!({
        "size": size,
        "page": page,
        "pagelen": pagelen,
        "values": values.into_iter().skip((page - 1) * pagelen).take(pagelen).collect::<Vec<_>>(),
    });
    if page * pagelen < size {
        body["next"] = json!(link_to(page + 1));
    }
    if page > 1 {
        body["previous"] = json!(link_to(page - 1));
    }
    Json(body).into_response()
}

/// Keeps the values a BBQL `q` selects; a query the fake cannot read is a 400.
fn filter(
    query: &HashMap<String, String>,
    values: Vec<Value>,
) -> Result<Vec<Value>, Box<Response>> {
    let Some(q) = query.get("q") else {
        return Ok(values);
    };
    let expression = bbql::parse(q).map_err(|detail| {
        Box::new(
            (
                StatusCode::BAD_REQUEST,
                Json(json!({"type": "error", "error": {"message": "Invalid query", "detail": detail}})),
            )
                .into_response(),
        )
    })?;
    Ok(values
        .into_iter()
        .filter(|v| bbql::matches(&expression, v))
        .collect())
}

fn find_repo(workspace: &str, slug: &str, user: &User) -> Result<&'static Repo, Box<Response>> {
    let full_name = format!("{workspace}/{slug}");
    let Some(repo) = REPOS
        .iter()
        .find(|r| r.full_name.eq_ignore_ascii_case(&full_name))
    else {
        return Err(Box::new(error(
            StatusCode::NOT_FOUND,
            &format!("Repository {full_name} not found"),
        )));
    };
    if repo.private && !repo.members.contains(&user.username) {
        return Err(Box::new(if repo.full_name == "acme/secret" {
            error(
                StatusCode::FORBIDDEN,
                "You do not have access to this repository.",
            )
        } else {
            error(
                StatusCode::NOT_FOUND,
                &format!("Repository {full_name} not found"),
            )
        }));
    }
    Ok(repo)
}

async fn current_user(
    State(fake): State<Arc<Fake>>,
    Extension(Caller(user)): Extension<Caller>,
) -> Response {
    let mut value = user_json(&fake, user.username);
    value["account_status"] = json!("active");
    value["created_on"] = json!("2020-02-02T02:02:02.000000+00:00");
    Json(value).into_response()
}

/// `GET /user/workspaces`: the user's memberships, with `q` over them.
async fn user_workspaces(
    State(fake): State<Arc<Fake>>,
    Extension(Caller(user)): Extension<Caller>,
    uri: OriginalUri,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let values = WORKSPACES
        .iter()
        .filter_map(|(slug, _, members)| {
            let (_, admin) = members.iter().find(|(u, _)| *u == user.username)?;
            Some(json!({
                "type": "workspace_access",
                "administrator": admin,
                "workspace": {"type": "workspace_base", "slug": slug, "uuid": format!("{{{slug}-0000-4000-8000-000000000000}}")},
            }))
        })
        .collect();
    match filter(&query, values) {
        Ok(values) => paginate(&fake, &uri, &query, values),
        Err(response) => *response,
    }
}

/// `GET /repositories/{workspace}?role=member&q=…`, by slug.
async fn workspace_repositories(
    State(fake): State<Arc<Fake>>,
    Extension(Caller(user)): Extension<Caller>,
    Path(workspace): Path<String>,
    uri: OriginalUri,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !WORKSPACES.iter().any(|(slug, _, _)| *slug == workspace) {
        return error(
            StatusCode::NOT_FOUND,
            &format!("No workspace with identifier '{workspace}'."),
        );
    }
    let role = query.get("role").map(String::as_str);
    if role.is_some_and(|r| !["member", "contributor", "admin", "owner"].contains(&r)) {
        return error(StatusCode::BAD_REQUEST, "Invalid role");
    }
    let values = REPOS
        .iter()
        .filter(|r| r.full_name.starts_with(&format!("{workspace}/")))
        .filter(|r| match role {
            Some(_) => r.members.contains(&user.username),
            None => !r.private || r.members.contains(&user.username),
        })
        .map(|r| repo_json(&fake, r))
        .collect();
    match filter(&query, values) {
        Ok(values) => paginate(&fake, &uri, &query, values),
        Err(response) => *response,
    }
}

async fn repository(
    State(fake): State<Arc<Fake>>,
    Extension(Caller(user)): Extension<Caller>,
    Path((workspace, slug)): Path<(String, String)>,
) -> Response {
    let repo = match find_repo(&workspace, &slug, user) {
        Ok(repo) => repo,
        Err(response) => return *response,
    };
    match repo.full_name {
        "acme/slow" => tokio::time::sleep(Duration::from_secs(5)).await,
        "acme/flaky" => return error(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong"),
        _ => {}
    }
    Json(repo_json(&fake, repo)).into_response()
}

fn refs(
    fake: &Fake,
    uri: &OriginalUri,
    query: &HashMap<String, String>,
    repo: &Repo,
    kind: &str,
    list: &[(&str, &str)],
) -> Response {
    let mut sorted: Vec<&(&str, &str)> = list.iter().collect();
    sorted.sort();
    let values = sorted
        .into_iter()
        .map(|(name, hash)| {
            json!({
                "type": kind,
                "name": name,
                "target": {"type": "commit", "hash": hash, "date": "2024-05-01T10:00:00+00:00"},
                "links": {"html": {"href": format!("{}/{}/branch/{name}", fake.base, repo.full_name)}},
            })
        })
        .collect();
    match filter(query, values) {
        Ok(values) => paginate(fake, uri, query, values),
        Err(response) => *response,
    }
}

async fn branches(
    State(fake): State<Arc<Fake>>,
    Extension(Caller(user)): Extension<Caller>,
    Path((workspace, slug)): Path<(String, String)>,
    uri: OriginalUri,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    match find_repo(&workspace, &slug, user) {
        Ok(repo) => refs(&fake, &uri, &query, repo, "branch", repo.branches),
        Err(response) => *response,
    }
}

async fn tags(
    State(fake): State<Arc<Fake>>,
    Extension(Caller(user)): Extension<Caller>,
    Path((workspace, slug)): Path<(String, String)>,
    uri: OriginalUri,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    match find_repo(&workspace, &slug, user) {
        Ok(repo) => refs(&fake, &uri, &query, repo, "tag", repo.tags),
        Err(response) => *response,
    }
}

/// A commit by full or abbreviated hash, or by branch or tag name.
async fn commit(
    State(fake): State<Arc<Fake>>,
    Extension(Caller(user)): Extension<Caller>,
    Path((workspace, slug, revision)): Path<(String, String, String)>,
) -> Response {
    let repo = match find_repo(&workspace, &slug, user) {
        Ok(repo) => repo,
        Err(response) => return *response,
    };
    let by_ref = repo
        .branches
        .iter()
        .chain(repo.tags)
        .find(|(n, _)| *n == revision)
        .map(|(_, h)| *h);
    let wanted = by_ref.unwrap_or(&revision);
    let matching: Vec<&(&str, &str)> = if wanted.len() >= 4 {
        repo.commits
            .iter()
            .filter(|(h, _)| h.starts_with(wanted))
            .collect()
    } else {
        Vec::new()
    };
    let [(hash, message)] = matching.as_slice() else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("Commit not found: {revision}"),
        );
    };
    Json(json!({
        "type": "commit",
        "hash": hash,
        "message": format!("{message}\n"),
        "date": "2024-05-01T10:00:00+00:00",
        "author": {"type": "author", "raw": "Alice Liddell <alice@example.com>"},
        "parents": [],
        "repository": {"type": "repository", "full_name": repo.full_name},
        "links": {"html": {"href": format!("{}/{}/commits/{hash}", fake.base, repo.full_name)}},
    }))
    .into_response()
}

async fn pull_request(
    State(fake): State<Arc<Fake>>,
    Extension(Caller(user)): Extension<Caller>,
    Path((workspace, slug, id)): Path<(String, String, String)>,
) -> Response {
    let repo = match find_repo(&workspace, &slug, user) {
        Ok(repo) => repo,
        Err(response) => return *response,
    };
    let Some(pr) = PULL_REQUESTS
        .iter()
        .find(|p| p.repo == repo.full_name && id.parse() == Ok(p.id))
    else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("No PullRequest with id {id}"),
        );
    };
    let repository = |full_name: &str| {
        json!({
            "type": "repository",
            "full_name": full_name,
            "name": full_name.split_once('/').unwrap().1,
            "links": {"html": {"href": format!("{}/{full_name}", fake.base)}},
        })
    };
    Json(json!({
        "type": "pullrequest",
        "id": pr.id,
        "title": pr.title,
        "description": "",
        "state": pr.state,
        "draft": pr.draft,
        "author": user_json(&fake, pr.author),
        "source": {
            "branch": {"name": pr.source_branch},
            // Bitbucket abbreviates the hashes of pull requests to 12 digits.
            "commit": {"type": "commit", "hash": &pr.source_commit[..12]},
            "repository": pr.source_repo.map(repository),
        },
        "destination": {
            "branch": {"name": pr.destination_branch},
            "commit": {"type": "commit", "hash": &INITIAL[..12]},
            "repository": repository(repo.full_name),
        },
        "merge_commit": null,
        "comment_count": 0,
        "task_count": 0,
        "close_source_branch": false,
        "created_on": "2024-05-02T08:00:00.000000+00:00",
        "updated_on": "2024-05-03T08:00:00.000000+00:00",
        "links": {"html": {"href": format!("{}/{}/pull-requests/{}", fake.base, repo.full_name, pr.id)}},
    }))
    .into_response()
}

async fn issue(
    State(fake): State<Arc<Fake>>,
    Extension(Caller(user)): Extension<Caller>,
    Path((workspace, slug, id)): Path<(String, String, String)>,
) -> Response {
    let repo = match find_repo(&workspace, &slug, user) {
        Ok(repo) => repo,
        Err(response) => return *response,
    };
    // Where Atlassian already retired the issue tracker API.
    if repo.full_name == "acme/empty" {
        return removed().await;
    }
    if !repo.has_issues {
        return error(StatusCode::NOT_FOUND, "Repository has no issue tracker.");
    }
    let Some((_, id, title)) = ISSUES
        .iter()
        .find(|(r, n, _)| *r == repo.full_name && id.parse() == Ok(*n))
    else {
        return error(StatusCode::NOT_FOUND, "Issue not found");
    };
    Json(json!({
        "type": "issue",
        "id": id,
        "title": title,
        "state": "new",
        "kind": "bug",
        "priority": "major",
        "reporter": user_json(&fake, "alice"),
        "links": {"html": {"href": format!("{}/{}/issues/{id}", fake.base, repo.full_name)}},
    }))
    .into_response()
}

/// The part of BBQL the fake understands: comparisons joined by AND and OR
/// (AND binds tighter), no parentheses.
mod bbql {
    use serde_json::Value;

    pub struct Comparison {
        field: String,
        op: String,
        value: Value,
    }

    /// Alternatives, each a conjunction of comparisons.
    pub type Expression = Vec<Vec<Comparison>>;

    enum Token {
        Word(String),
        Op(String),
        Str(String),
    }

    fn tokens(q: &str) -> Result<Vec<Token>, String> {
        let mut out = Vec::new();
        let mut chars = q.chars().peekable();
        while let Some(&c) = chars.peek() {
            match c {
                c if c.is_whitespace() => {
                    chars.next();
                }
                '"' => {
                    chars.next();
                    let mut s = String::new();
                    loop {
                        match chars.next() {
                            Some('\\') => s.push(chars.next().ok_or("dangling escape")?),
                            Some('"') => break,
                            Some(c) => s.push(c),
                            None => return Err("unterminated string".into()),
                        }
                    }
                    out.push(Token::Str(s));
                }
                '~' | '=' => {
                    chars.next();
                    out.push(Token::Op(c.to_string()));
                }
                '!' => {
                    chars.next();
                    match chars.next() {
                        Some(o @ ('~' | '=')) => out.push(Token::Op(format!("!{o}"))),
                        _ => return Err("expected ~ or = after !".into()),
                    }
                }
                c if c.is_alphanumeric() || c == '_' || c == '.' || c == '-' => {
                    let mut w = String::new();
                    while let Some(&c) = chars.peek() {
                        if c.is_alphanumeric() || c == '_' || c == '.' || c == '-' {
                            w.push(c);
                            chars.next();
                        } else {
                            break;
                        }
                    }
                    out.push(Token::Word(w));
                }
                other => return Err(format!("unexpected {other:?}")),
            }
        }
        Ok(out)
    }

    pub fn parse(q: &str) -> Result<Expression, String> {
        let tokens = tokens(q)?;
        let mut expression = vec![Vec::new()];
        let mut i = 0;
        while i < tokens.len() {
            let Token::Word(field) = &tokens[i] else {
                return Err("expected a field name".into());
            };
            let Some(Token::Op(op)) = tokens.get(i + 1) else {
                return Err(format!("expected an operator after {field}"));
            };
            let value = match tokens.get(i + 2) {
                Some(Token::Str(s)) => Value::String(s.clone()),
                Some(Token::Word(w)) if w == "true" || w == "false" => Value::Bool(w == "true"),
                Some(Token::Word(w)) if w == "null" => Value::Null,
                Some(Token::Word(w)) => w
                    .parse::<f64>()
                    .map(Value::from)
                    .map_err(|_| format!("invalid value {w}"))?,
                _ => return Err(format!("expected a value after {field} {op}")),
            };
            expression.last_mut().unwrap().push(Comparison {
                field: field.clone(),
                op: op.clone(),
                value,
            });
            i += 3;
            match tokens.get(i) {
                None => {}
                Some(Token::Word(w)) if w.eq_ignore_ascii_case("AND") => i += 1,
                Some(Token::Word(w)) if w.eq_ignore_ascii_case("OR") => {
                    expression.push(Vec::new());
                    i += 1;
                }
                Some(_) => return Err("expected AND or OR".into()),
            }
        }
        if expression.iter().any(Vec::is_empty) {
            return Err("empty query".into());
        }
        Ok(expression)
    }

    fn lookup<'a>(value: &'a Value, field: &str) -> Option<&'a Value> {
        field.split('.').try_fold(value, |v, part| v.get(part))
    }

    fn compare(c: &Comparison, value: &Value) -> bool {
        let found = lookup(value, &c.field).unwrap_or(&Value::Null);
        let contains = || match (found, &c.value) {
            (Value::String(have), Value::String(want)) => {
                have.to_lowercase().contains(&want.to_lowercase())
            }
            _ => false,
        };
        match c.op.as_str() {
            "=" => found == &c.value,
            "!=" => found != &c.value,
            "~" => contains(),
            "!~" => !contains(),
            _ => false,
        }
    }

    pub fn matches(expression: &Expression, value: &Value) -> bool {
        expression
            .iter()
            .any(|all| all.iter().all(|c| compare(c, value)))
    }
}
