//! A fake GitLab for the GitLab provider's tests: an axum server on
//! 127.0.0.1:0 answering the REST API v4 endpoints the provider calls, with
//! GitLab's JSON shapes, statuses and paging headers (`x-total`,
//! `x-total-pages`, `x-next-page`, `Link`).
//!
//! Who is who:
//! - [`ALICE`] is a member of everything under `acme` and of `private/vault`.
//! - [`BOB`] is a member of nothing; he sees public and internal projects only.
//! - [`LIMITED`] is a valid token whose rate limit is used up (429, `Retry-After: 42`).
//! - Any other token is refused (401).
//!
//! Special projects: `acme/slow` answers after five seconds, `acme/flaky`
//! fails with 502 as a proxy in front of GitLab would.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{OriginalUri, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use corral_scm::host::ConfiguredHost;
use corral_scm::{Credentials, HostRegistry, Provider, ScmKind, provider_for};
use serde_json::{Value, json};

pub const ALICE: &str = "glpat-alice-4Kq9xZ2mWv7Lp3Rt";
pub const BOB: &str = "glpat-bob-8Hn2cY6tQs1Jd5Fg";
pub const LIMITED: &str = "glpat-limited-3Vb7nM1kXe9Pw4Zu";

/// Commits of `acme/widgets` and its fork.
pub const INITIAL: &str = "4f1c2e9a8b7d6c5e4f3a2b1c0d9e8f7a6b5c4d3e";
pub const LOGIN_HEAD: &str = "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b";
pub const FORK_HEAD: &str = "c0ffee1234567890abcdef1234567890abcdef12";
pub const API_HEAD: &str = "1234abcd5678ef901234abcd5678ef901234abcd";

struct User {
    id: u64,
    username: &'static str,
    name: &'static str,
    token: &'static str,
}

const USERS: &[User] = &[
    User {
        id: 1,
        username: "alice",
        name: "Alice Liddell",
        token: ALICE,
    },
    User {
        id: 2,
        username: "bob",
        name: "Bob Builder",
        token: BOB,
    },
    User {
        id: 3,
        username: "jdoe",
        name: "Jane Doe",
        token: "glpat-jdoe-never-used-here",
    },
    User {
        id: 4,
        username: "carol",
        name: "Carol Danvers",
        token: LIMITED,
    },
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Visibility {
    Public,
    Internal,
    Private,
}

struct Project {
    id: u64,
    full_path: &'static str,
    default_branch: Option<&'static str>,
    visibility: Visibility,
    members: &'static [&'static str],
    forked_from: Option<u64>,
    /// (name, head commit)
    branches: &'static [(&'static str, &'static str)],
    tags: &'static [(&'static str, &'static str)],
    /// (sha, title)
    commits: &'static [(&'static str, &'static str)],
}

const WIDGET_COMMITS: &[(&str, &str)] =
    &[(INITIAL, "Initial commit"), (LOGIN_HEAD, "Add OAuth login")];

const PROJECTS: &[Project] = &[
    Project {
        id: 1,
        full_path: "acme/widgets",
        default_branch: Some("main"),
        visibility: Visibility::Private,
        members: &["alice", "carol"],
        forked_from: None,
        branches: &[
            ("main", INITIAL),
            ("develop", INITIAL),
            ("feature", INITIAL),
            ("feature/login", LOGIN_HEAD),
            ("feature/login-v2", LOGIN_HEAD),
            ("release/2024/q1", INITIAL),
        ],
        tags: &[
            ("v1.0.0", INITIAL),
            ("release/2024", INITIAL),
            ("develop", INITIAL),
        ],
        commits: WIDGET_COMMITS,
    },
    Project {
        id: 2,
        full_path: "acme/platform/backend/api",
        default_branch: Some("trunk"),
        visibility: Visibility::Internal,
        members: &["alice"],
        forked_from: None,
        branches: &[
            ("trunk", API_HEAD),
            ("fix/deep/nested/path", API_HEAD),
            ("fix", API_HEAD),
        ],
        tags: &[],
        commits: &[(API_HEAD, "Serve the API")],
    },
    Project {
        id: 3,
        full_path: "jdoe/widgets",
        default_branch: Some("main"),
        visibility: Visibility::Public,
        members: &["jdoe"],
        forked_from: Some(1),
        branches: &[("main", INITIAL), ("patch-1", FORK_HEAD)],
        tags: &[],
        commits: &[
            (INITIAL, "Initial commit"),
            (FORK_HEAD, "Fix typo in README"),
        ],
    },
    Project {
        id: 4,
        full_path: "acme/empty",
        default_branch: None,
        visibility: Visibility::Private,
        members: &["alice"],
        forked_from: None,
        branches: &[],
        tags: &[],
        commits: &[],
    },
    Project {
        id: 5,
        full_path: "private/vault",
        default_branch: Some("main"),
        visibility: Visibility::Private,
        members: &["alice"],
        forked_from: None,
        branches: &[("main", INITIAL)],
        tags: &[],
        commits: &[],
    },
    Project {
        id: 6,
        full_path: "acme/widget-docs",
        default_branch: Some("main"),
        visibility: Visibility::Private,
        members: &["alice"],
        forked_from: None,
        branches: &[("main", INITIAL)],
        tags: &[],
        commits: &[],
    },
    Project {
        id: 20,
        full_path: "acme/slow",
        default_branch: Some("main"),
        visibility: Visibility::Private,
        members: &["alice"],
        forked_from: None,
        branches: &[],
        tags: &[],
        commits: &[],
    },
    Project {
        id: 21,
        full_path: "acme/flaky",
        default_branch: Some("main"),
        visibility: Visibility::Private,
        members: &["alice"],
        forked_from: None,
        branches: &[],
        tags: &[],
        commits: &[],
    },
];

struct MergeRequest {
    project_id: u64,
    iid: u64,
    title: &'static str,
    source_project_id: u64,
    source_branch: &'static str,
    target_branch: &'static str,
    state: &'static str,
    draft: bool,
    sha: &'static str,
    author: &'static str,
}

const MERGE_REQUESTS: &[MergeRequest] = &[
    MergeRequest {
        project_id: 1,
        iid: 7,
        title: "Draft: Add OAuth login",
        source_project_id: 1,
        source_branch: "feature/login",
        target_branch: "main",
        state: "opened",
        draft: true,
        sha: LOGIN_HEAD,
        author: "alice",
    },
    MergeRequest {
        project_id: 1,
        iid: 8,
        title: "Fix typo in README",
        source_project_id: 3,
        source_branch: "patch-1",
        target_branch: "main",
        state: "merged",
        draft: false,
        sha: FORK_HEAD,
        author: "jdoe",
    },
    MergeRequest {
        project_id: 1,
        iid: 9,
        title: "Rewrite in COBOL",
        source_project_id: 1,
        source_branch: "develop",
        target_branch: "main",
        state: "closed",
        draft: false,
        sha: INITIAL,
        author: "alice",
    },
];

/// (project, iid, title)
const ISSUES: &[(u64, u64, &str)] = &[(1, 12, "Crash on startup"), (2, 3, "Rate limit the API")];

/// (id, full path, name, members with their access level)
type GroupRow = (
    u64,
    &'static str,
    &'static str,
    &'static [(&'static str, u32)],
);

const GROUPS: &[GroupRow] = &[
    (10, "acme", "Acme", &[("alice", 50), ("carol", 30)]),
    (11, "acme/platform", "Platform", &[("alice", 40)]),
    (12, "acme/platform/backend", "Backend", &[("alice", 30)]),
    (13, "tooling", "Tooling", &[("alice", 10)]),
    (14, "secret-society", "Secret Society", &[("jdoe", 50)]),
];

/// The running fake and what it was asked.
pub struct FakeGitLab {
    pub base: String,
    pub port: u16,
    state: Arc<Fake>,
}

struct Fake {
    base: String,
    requests: Mutex<Vec<String>>,
    /// How each request presented its token: `Bearer`, `PRIVATE-TOKEN` or `none`.
    schemes: Mutex<Vec<&'static str>>,
}

impl FakeGitLab {
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
            .route("/api/v4/user", get(current_user))
            .route("/api/v4/projects", get(list_projects))
            .route("/api/v4/projects/{id}", get(project))
            .route("/api/v4/projects/{id}/repository/branches", get(branches))
            .route("/api/v4/projects/{id}/repository/tags", get(tags))
            .route(
                "/api/v4/projects/{id}/repository/commits/{sha}",
                get(commit),
            )
            .route(
                "/api/v4/projects/{id}/merge_requests/{iid}",
                get(merge_request),
            )
            .route("/api/v4/projects/{id}/issues/{iid}", get(issue))
            .route("/api/v4/search", get(search))
            .route("/api/v4/groups", get(groups))
            .fallback(|| async { not_found("404 Not Found") })
            .layer(middleware::from_fn_with_state(state.clone(), authenticate))
            .with_state(state.clone());
        tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("serving the fake GitLab");
        });
        Self { base, port, state }
    }

    /// The provider for this fake, as the runner would build it.
    pub fn provider(&self, timeout: Duration) -> Box<dyn Provider> {
        let registry = HostRegistry::new([ConfiguredHost {
            kind: ScmKind::GitLab,
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

    /// How each request so far presented its token.
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

#[derive(Clone, Copy)]
struct Caller(&'static User);

/// Logs the request, then lets it through only with a known token
/// (`Authorization: Bearer` or `PRIVATE-TOKEN`, as GitLab accepts both).
async fn authenticate(State(fake): State<Arc<Fake>>, mut request: Request, next: Next) -> Response {
    fake.requests
        .lock()
        .unwrap()
        .push(format!("{} {}", request.method(), request.uri()));
    let headers = request.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let private = headers.get("private-token").and_then(|v| v.to_str().ok());
    fake.schemes.lock().unwrap().push(match (bearer, private) {
        (Some(_), _) => "Bearer",
        (None, Some(_)) => "PRIVATE-TOKEN",
        (None, None) => "none",
    });
    let token = bearer.or(private);
    let Some(user) = token.and_then(|t| USERS.iter().find(|u| u.token == t)) else {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "401 Unauthorized"})),
        )
            .into_response();
    };
    if user.token == LIMITED {
        let reset = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 42;
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [
                ("retry-after", "42".to_string()),
                ("ratelimit-limit", "2000".to_string()),
                ("ratelimit-observed", "2001".to_string()),
                ("ratelimit-remaining", "0".to_string()),
                ("ratelimit-reset", reset.to_string()),
                ("content-type", "text/plain".to_string()),
            ],
            "Retry later\n",
        )
            .into_response();
    }
    request.extensions_mut().insert(Caller(user));
    next.run(request).await
}

fn not_found(message: &str) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"message": message}))).into_response()
}

fn bad_request(error: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": error}))).into_response()
}

fn visible(project: &Project, user: &User) -> bool {
    project.visibility != Visibility::Private || project.members.contains(&user.username)
}

/// By numeric id or full path (any case), as GitLab finds projects; invisible
/// projects are not found.
fn find_project(id: &str, user: &User) -> Option<&'static Project> {
    let found = match id.parse::<u64>() {
        Ok(n) => PROJECTS.iter().find(|p| p.id == n),
        Err(_) => PROJECTS
            .iter()
            .find(|p| p.full_path.eq_ignore_ascii_case(id)),
    }?;
    visible(found, user).then_some(found)
}

fn user_json(fake: &Fake, username: &str) -> Value {
    let user = USERS
        .iter()
        .find(|u| u.username == username)
        .expect("a known user");
    json!({
        "id": user.id,
        "username": user.username,
        "name": user.name,
        "state": "active",
        "locked": false,
        "avatar_url": format!("{}/uploads/-/system/user/avatar/{}/avatar.png", fake.base, user.id),
        "web_url": format!("{}/{}", fake.base, user.username),
    })
}

fn project_json(fake: &Fake, p: &Project, simple: bool) -> Value {
    let (namespace, path) = p.full_path.rsplit_once('/').unwrap();
    let namespace_kind = if USERS.iter().any(|u| u.username == namespace) {
        "user"
    } else {
        "group"
    };
    let mut value = json!({
        "id": p.id,
        "description": null,
        "name": path.replace('-', " "),
        "name_with_namespace": p.full_path.replace('/', " / "),
        "path": path,
        "path_with_namespace": p.full_path,
        "created_at": "2024-01-15T09:30:00.000Z",
        "default_branch": p.default_branch,
        "tag_list": [],
        "topics": [],
        "ssh_url_to_repo": format!("git@127.0.0.1:{}.git", p.full_path),
        "http_url_to_repo": format!("{}/{}.git", fake.base, p.full_path),
        "web_url": format!("{}/{}", fake.base, p.full_path),
        "readme_url": p.default_branch.map(|b| format!("{}/{}/-/blob/{b}/README.md", fake.base, p.full_path)),
        "forks_count": 0,
        "avatar_url": null,
        "star_count": 3,
        "last_activity_at": "2024-06-01T12:00:00.000Z",
        "namespace": {
            "id": 100 + p.id,
            "name": namespace,
            "path": namespace.rsplit('/').next().unwrap(),
            "kind": namespace_kind,
            "full_path": namespace,
            "parent_id": null,
            "avatar_url": null,
            "web_url": format!("{}/{}", fake.base, namespace),
        },
    });
    if !simple {
        let extra = value.as_object_mut().unwrap();
        extra.insert(
            "visibility".into(),
            json!(match p.visibility {
                Visibility::Public => "public",
                Visibility::Internal => "internal",
                Visibility::Private => "private",
            }),
        );
        extra.insert("archived".into(), json!(false));
        extra.insert("empty_repo".into(), json!(p.branches.is_empty()));
        extra.insert("issues_enabled".into(), json!(true));
        extra.insert("merge_requests_enabled".into(), json!(true));
        if let Some(parent) = p
            .forked_from
            .and_then(|id| PROJECTS.iter().find(|q| q.id == id))
        {
            extra.insert(
                "forked_from_project".into(),
                project_json(fake, parent, true),
            );
        }
    }
    value
}

/// Page `page` of `items` with GitLab's paging headers.
fn paginate(
    fake: &Fake,
    uri: &OriginalUri,
    query: &HashMap<String, String>,
    items: Vec<Value>,
) -> Response {
    let page: usize = query
        .get("page")
        .and_then(|p| p.parse().ok())
        .filter(|p| *p > 0)
        .unwrap_or(1);
    let per_page: usize = query
        .get("per_page")
        .and_then(|p| p.parse().ok())
        .filter(|p| *p > 0)
        .unwrap_or(20)
        .min(100);
    let total = items.len();
    let total_pages = total.div_ceil(per_page).max(1);
    let slice: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
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
    let mut links = Vec::new();
    if page < total_pages {
        links.push(format!("<{}>; rel=\"next\"", link_to(page + 1)));
    }
    if page > 1 {
        links.push(format!("<{}>; rel=\"prev\"", link_to(page - 1)));
    }
    links.push(format!("<{}>; rel=\"first\"", link_to(1)));
    links.push(format!("<{}>; rel=\"last\"", link_to(total_pages)));
    let next = if page < total_pages {
        (page + 1).to_string()
    } else {
        String::new()
    };
    let prev = if page > 1 {
        (page - 1).to_string()
    } else {
        String::new()
    };
    let mut response = Json(slice).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-page", page.to_string()),
        ("x-per-page", per_page.to_string()),
        ("x-total", total.to_string()),
        ("x-total-pages", total_pages.to_string()),
        ("x-next-page", next),
        ("x-prev-page", prev),
        ("link", links.join(", ")),
    ] {
        headers.insert(name, HeaderValue::from_str(&value).unwrap());
    }
    response
}

/// GitLab's `search` for branches and tags: `^term` begins, `term$` ends, else contains.
fn ref_matches(name: &str, search: Option<&String>) -> bool {
    let Some(search) = search else { return true };
    match (search.strip_prefix('^'), search.strip_suffix('$')) {
        (Some(prefix), _) => name.starts_with(prefix),
        (None, Some(suffix)) => name.ends_with(suffix),
        (None, None) => name.contains(search.as_str()),
    }
}

async fn current_user(
    State(fake): State<Arc<Fake>>,
    Extension(Caller(user)): Extension<Caller>,
) -> Response {
    let mut value = user_json(&fake, user.username);
    value["email"] = json!(format!("{}@example.com", user.username));
    Json(value).into_response()
}

async fn project(
    State(fake): State<Arc<Fake>>,
    Extension(Caller(user)): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let Some(p) = find_project(&id, user) else {
        return not_found("404 Project Not Found");
    };
    match p.full_path {
        "acme/slow" => tokio::time::sleep(Duration::from_secs(5)).await,
        "acme/flaky" => {
            return (
                StatusCode::BAD_GATEWAY,
                [("content-type", "text/html")],
                "<html><body><h1>502 Bad Gateway</h1></body></html>",
            )
                .into_response();
        }
        _ => {}
    }
    Json(project_json(&fake, p, false)).into_response()
}

fn ref_list(
    fake: &Fake,
    uri: &OriginalUri,
    query: &HashMap<String, String>,
    refs: &[(&str, &str)],
    commits: &[(&str, &str)],
    branch: bool,
    default_branch: Option<&str>,
) -> Response {
    let mut names: Vec<&(&str, &str)> = refs
        .iter()
        .filter(|(n, _)| ref_matches(n, query.get("search")))
        .collect();
    names.sort_by_key(|(n, _)| *n);
    let items = names
        .into_iter()
        .map(|(name, sha)| {
            let title = commits.iter().find(|(s, _)| s == sha).map(|(_, t)| *t).unwrap_or("Update");
            let commit = json!({"id": sha, "short_id": &sha[..8], "title": title, "author_name": "Alice Liddell"});
            if branch {
                json!({
                    "name": name,
                    "merged": false,
                    "protected": Some(*name) == default_branch,
                    "default": Some(*name) == default_branch,
                    "developers_can_push": false,
                    "developers_can_merge": false,
                    "can_push": true,
                    "web_url": format!("{}/-/tree/{name}", fake.base),
                    "commit": commit,
                })
            } else {
                json!({"name": name, "message": null, "target": sha, "release": null, "protected": false, "commit": commit})
            }
        })
        .collect();
    paginate(fake, uri, query, items)
}

async fn branches(
    State(fake): State<Arc<Fake>>,
    Extension(Caller(user)): Extension<Caller>,
    Path(id): Path<String>,
    uri: OriginalUri,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(p) = find_project(&id, user) else {
        return not_found("404 Project Not Found");
    };
    ref_list(
        &fake,
        &uri,
        &query,
        p.branches,
        p.commits,
        true,
        p.default_branch,
    )
}

async fn tags(
    State(fake): State<Arc<Fake>>,
    Extension(Caller(user)): Extension<Caller>,
    Path(id): Path<String>,
    uri: OriginalUri,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(p) = find_project(&id, user) else {
        return not_found("404 Project Not Found");
    };
    ref_list(&fake, &uri, &query, p.tags, p.commits, false, None)
}

/// A commit by full or abbreviated SHA, or by branch or tag name.
async fn commit(
    Extension(Caller(user)): Extension<Caller>,
    Path((id, sha)): Path<(String, String)>,
) -> Response {
    let Some(p) = find_project(&id, user) else {
        return not_found("404 Project Not Found");
    };
    let by_ref = p
        .branches
        .iter()
        .chain(p.tags)
        .find(|(n, _)| *n == sha)
        .map(|(_, s)| *s);
    let wanted = by_ref.unwrap_or(&sha);
    let matching: Vec<&(&str, &str)> = if wanted.len() >= 4 {
        p.commits
            .iter()
            .filter(|(s, _)| s.starts_with(wanted))
            .collect()
    } else {
        Vec::new()
    };
    let [(full, title)] = matching.as_slice() else {
        return not_found("404 Commit Not Found");
    };
    Json(json!({
        "id": full,
        "short_id": &full[..8],
        "title": title,
        "message": format!("{title}\n"),
        "author_name": "Alice Liddell",
        "author_email": "alice@example.com",
        "authored_date": "2024-05-01T10:00:00.000+00:00",
        "committed_date": "2024-05-01T10:00:00.000+00:00",
        "parent_ids": [],
        "web_url": format!("/{}/-/commit/{full}", p.full_path),
    }))
    .into_response()
}

async fn merge_request(
    State(fake): State<Arc<Fake>>,
    Extension(Caller(user)): Extension<Caller>,
    Path((id, iid)): Path<(String, String)>,
) -> Response {
    let Some(p) = find_project(&id, user) else {
        return not_found("404 Project Not Found");
    };
    let Some(mr) = MERGE_REQUESTS
        .iter()
        .find(|m| m.project_id == p.id && iid.parse() == Ok(m.iid))
    else {
        return not_found("404 Not found");
    };
    let closed = mr.state == "closed";
    let merged = mr.state == "merged";
    Json(json!({
        "id": 1000 + mr.iid,
        "iid": mr.iid,
        "project_id": p.id,
        "title": mr.title,
        "description": "",
        "state": mr.state,
        "created_at": "2024-05-02T08:00:00.000Z",
        "updated_at": "2024-05-03T08:00:00.000Z",
        "merged_at": merged.then_some("2024-05-03T08:00:00.000Z"),
        "closed_at": closed.then_some("2024-05-03T08:00:00.000Z"),
        "target_branch": mr.target_branch,
        "source_branch": mr.source_branch,
        "author": user_json(&fake, mr.author),
        "source_project_id": mr.source_project_id,
        "target_project_id": mr.project_id,
        "draft": mr.draft,
        "work_in_progress": mr.draft,
        "merge_status": "can_be_merged",
        "detailed_merge_status": "mergeable",
        "sha": mr.sha,
        "merge_commit_sha": null,
        "squash_commit_sha": null,
        "references": {"short": format!("!{}", mr.iid), "full": format!("{}!{}", p.full_path, mr.iid)},
        "web_url": format!("{}/{}/-/merge_requests/{}", fake.base, p.full_path, mr.iid),
    }))
    .into_response()
}

async fn issue(
    State(fake): State<Arc<Fake>>,
    Extension(Caller(user)): Extension<Caller>,
    Path((id, iid)): Path<(String, String)>,
) -> Response {
    let Some(p) = find_project(&id, user) else {
        return not_found("404 Project Not Found");
    };
    let Some((_, iid, title)) = ISSUES
        .iter()
        .find(|(pid, n, _)| *pid == p.id && iid.parse() == Ok(*n))
    else {
        return not_found("404 Not found");
    };
    Json(json!({
        "id": 5000 + iid,
        "iid": iid,
        "project_id": p.id,
        "title": title,
        "description": "",
        "state": "opened",
        "labels": ["bug"],
        "author": user_json(&fake, "alice"),
        "created_at": "2024-04-01T08:00:00.000Z",
        "web_url": format!("{}/{}/-/issues/{iid}", fake.base, p.full_path),
    }))
    .into_response()
}

fn matches_search(p: &Project, search: &str, namespaces: bool) -> bool {
    let search = search.to_lowercase();
    let path = p.full_path.rsplit('/').next().unwrap();
    path.contains(&search)
        || path.replace('-', " ").contains(&search)
        || (namespaces && p.full_path.contains(&search))
}

/// `GET /projects`: `membership`, `search`, `search_namespaces`, `simple`; newest first.
async fn list_projects(
    State(fake): State<Arc<Fake>>,
    Extension(Caller(user)): Extension<Caller>,
    uri: OriginalUri,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let membership = query.get("membership").is_some_and(|v| v == "true");
    let namespaces = query.get("search_namespaces").is_some_and(|v| v == "true");
    let simple = query.get("simple").is_some_and(|v| v == "true");
    let mut found: Vec<&Project> = PROJECTS
        .iter()
        .filter(|p| visible(p, user))
        .filter(|p| !membership || p.members.contains(&user.username))
        .filter(|p| {
            query
                .get("search")
                .is_none_or(|s| matches_search(p, s, namespaces))
        })
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.id));
    let items = found
        .into_iter()
        .map(|p| project_json(&fake, p, simple))
        .collect();
    paginate(&fake, &uri, &query, items)
}

/// `GET /search?scope=projects&search=…`: every visible project, not only the user's.
async fn search(
    State(fake): State<Arc<Fake>>,
    Extension(Caller(user)): Extension<Caller>,
    uri: OriginalUri,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(search) = query.get("search").filter(|s| !s.is_empty()) else {
        return bad_request("search is missing");
    };
    match query.get("scope").map(String::as_str) {
        Some("projects") => {}
        Some(_) => return bad_request("scope does not have a valid value"),
        None => return bad_request("scope is missing"),
    }
    let mut found: Vec<&Project> = PROJECTS
        .iter()
        .filter(|p| visible(p, user))
        .filter(|p| matches_search(p, search, true))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.id));
    let items = found
        .into_iter()
        .map(|p| project_json(&fake, p, false))
        .collect();
    paginate(&fake, &uri, &query, items)
}

/// `GET /groups?min_access_level=…&search=…`
async fn groups(
    State(fake): State<Arc<Fake>>,
    Extension(Caller(user)): Extension<Caller>,
    uri: OriginalUri,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let min_level: u32 = match query.get("min_access_level").map(|v| v.parse()) {
        None => 0,
        Some(Ok(level @ (5 | 10 | 15 | 20 | 30 | 40 | 50))) => level,
        Some(_) => return bad_request("min_access_level does not have a valid value"),
    };
    let search = query.get("search").map(|s| s.to_lowercase());
    let items = GROUPS
        .iter()
        .filter(|(_, _, _, members)| {
            let level = members
                .iter()
                .find(|(u, _)| *u == user.username)
                .map(|(_, l)| *l);
            if min_level == 0 {
                level.is_some()
            } else {
                level.is_some_and(|l| l >= min_level)
            }
        })
        .filter(|(_, path, name, _)| {
            search.as_ref().is_none_or(|s| {
                path.rsplit('/').next().unwrap().contains(s.as_str())
                    || name.to_lowercase().contains(s.as_str())
            })
        })
        .map(|(id, path, name, _)| {
            json!({
                "id": id,
                "name": name,
                "path": path.rsplit('/').next().unwrap(),
                "full_name": path.split('/').collect::<Vec<_>>().join(" / "),
                "full_path": path,
                "description": "",
                "visibility": "private",
                "parent_id": null,
                "avatar_url": null,
                "web_url": format!("{}/groups/{path}", fake.base),
            })
        })
        .collect();
    paginate(&fake, &uri, &query, items)
}
