//! The GitHub provider against a local server that answers GitHub Enterprise
//! Server's REST API (`/api/v3`) the way GitHub does: the same JSON shapes,
//! status codes, `Link` paging and rate-limit headers.

mod support_github;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use corral_scm::{
    ChangeRequest, ChangeState, Context, ContextUrl, GitContext, Issue, ScmError, ScmKind,
    SearchMode, provider_for,
};
use serde_json::{Value, json};
use support_github::{Server, creds, paginate, paging, unix_now};

const GOOD: &str = "ghp_goodT0kenForTheFakeGitHubServer000001";
const EXHAUSTED: &str = "ghp_exhaustedRateLimitT0ken0000000000002";
const SECONDARY: &str = "ghp_secondaryRateLimitT0ken0000000000003";

const MAIN_SHA: &str = "6dcb09b5b57875f334f61aebed695e2e4193db5e";
const LOGIN_SHA: &str = "9a3e1f0c2b7d4e5f60718293a4b5c6d7e8f90a1b";
const FORK_SHA: &str = "c0ffee0123456789abcdef0123456789abcdef01";
const OLD_SHA: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f9001122334";

#[derive(Clone)]
struct Fake {
    base: String,
    /// Every `q` the search endpoint received.
    searches: Arc<Mutex<Vec<String>>>,
}

// ---- recorded-shape JSON ----

fn user_json(base: &str, login: &str, id: u64) -> Value {
    json!({
        "login": login, "id": id, "node_id": "MDQ6VXNlcjE=", "type": "User", "site_admin": false,
        "avatar_url": format!("{base}/avatars/u/{id}"), "url": format!("{base}/api/v3/users/{login}"),
        "html_url": format!("{base}/{login}"),
    })
}

fn repo_json(base: &str, owner: &str, name: &str, default_branch: &str, fork: bool) -> Value {
    json!({
        "id": 1296269, "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5", "name": name, "full_name": format!("{owner}/{name}"),
        "private": false, "owner": user_json(base, owner, 583231), "html_url": format!("{base}/{owner}/{name}"),
        "description": format!("{name}, maintained by {owner}"), "fork": fork,
        "url": format!("{base}/api/v3/repos/{owner}/{name}"),
        "clone_url": format!("{base}/{owner}/{name}.git"), "ssh_url": format!("git@127.0.0.1:{owner}/{name}.git"),
        "default_branch": default_branch, "visibility": "public", "archived": false,
        "permissions": {"admin": false, "maintain": false, "push": true, "triage": true, "pull": true},
        "created_at": "2011-01-26T19:01:12Z", "updated_at": "2024-05-02T10:11:12Z", "pushed_at": "2024-05-02T10:11:12Z",
        "stargazers_count": 80, "forks_count": 9, "open_issues_count": 4,
    })
}

fn branches(repo: &str) -> Vec<(String, &'static str)> {
    match repo {
        "octo/hello" => [
            "main",
            "feature",
            "feature/login",
            "dependabot/npm_and_yarn/lodash-4.17.21",
            "patch-1",
        ]
        .iter()
        .map(|b| {
            (
                b.to_string(),
                if *b == "feature/login" {
                    LOGIN_SHA
                } else {
                    MAIN_SHA
                },
            )
        })
        .collect(),
        // More than one page of branches; the one with slashes comes last.
        "octo/big" => (0..130)
            .map(|i| (format!("bulk/branch-{i:03}"), MAIN_SHA))
            .chain([
                ("trunk".to_string(), MAIN_SHA),
                ("topic/deep/nested".to_string(), LOGIN_SHA),
            ])
            .collect(),
        "forker/hello" => vec![("main".into(), MAIN_SHA), ("patch-1".into(), FORK_SHA)],
        _ => vec![],
    }
}

fn tags(repo: &str) -> Vec<(String, &'static str)> {
    match repo {
        "octo/hello" => vec![
            ("v1.0".into(), OLD_SHA),
            ("release".into(), OLD_SHA),
            ("release/v1.2".into(), MAIN_SHA),
        ],
        "octo/big" => (0..110)
            .map(|i| (format!("v0.{i}.0"), MAIN_SHA))
            .chain([("topic/deep".to_string(), OLD_SHA)])
            .collect(),
        _ => vec![],
    }
}

fn commits(repo: &str) -> &'static [&'static str] {
    match repo {
        "octo/hello" => &[MAIN_SHA, LOGIN_SHA, OLD_SHA],
        "octo/big" => &[MAIN_SHA, LOGIN_SHA, OLD_SHA],
        "forker/hello" => &[MAIN_SHA, FORK_SHA],
        _ => &[],
    }
}

fn known_repo(owner: &str, repo: &str) -> Option<&'static str> {
    match (owner, repo) {
        ("octo", "hello") => Some("main"),
        ("octo", "big") => Some("trunk"),
        ("forker", "hello") => Some("main"),
        _ => None,
    }
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest", "status": "404"})),
    )
        .into_response()
}

// ---- the server ----

async fn auth(request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match given.strip_prefix("Bearer ") {
        Some(GOOD) => next.run(request).await,
        Some(EXHAUSTED) => {
            let mut headers = HeaderMap::new();
            headers.insert("x-ratelimit-limit", HeaderValue::from_static("5000"));
            headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
            headers.insert("x-ratelimit-used", HeaderValue::from_static("5000"));
            headers.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
            headers.insert("x-ratelimit-reset", HeaderValue::from(unix_now() + 1800));
            let body = json!({
                "message": "API rate limit exceeded for user ID 583231.",
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
                "status": "403",
            });
            (StatusCode::FORBIDDEN, headers, Json(body)).into_response()
        }
        Some(SECONDARY) => {
            let body = json!({
                "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
            });
            (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "60")], Json(body)).into_response()
        }
        _ => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest", "status": "401"})),
        )
            .into_response(),
    }
}

async fn user(State(f): State<Fake>) -> Response {
    Json(user_json(&f.base, "alice", 1)).into_response()
}

async fn user_orgs(
    State(f): State<Fake>,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    assert_eq!(q.get("state").map(String::as_str), Some("active"));
    let orgs: Vec<Value> = ["acme", "acme-labs", "octo-org", "github", "rust-lang", "ACME-archive", "tooling"]
        .iter()
        .enumerate()
        .map(|(i, login)| {
            json!({
                "url": format!("{}/api/v3/orgs/{login}/memberships/alice", f.base), "state": "active",
                "role": if *login == "acme" || *login == "tooling" { "admin" } else { "member" },
                "organization_url": format!("{}/api/v3/orgs/{login}", f.base),
                "organization": {
                    "login": login, "id": 9000 + i, "node_id": "MDEyOk9yZ2FuaXphdGlvbjE=",
                    "url": format!("{}/api/v3/orgs/{login}", f.base), "repos_url": format!("{}/api/v3/orgs/{login}/repos", f.base),
                    "avatar_url": format!("{}/avatars/o/{i}", f.base), "description": format!("The {login} organization"),
                },
                "user": {"login": "alice"},
            })
        })
        .collect();
    let (page, size) = paging(&q, "per_page", 30, 100);
    let (headers, items) = paginate(&f.base, &uri, &orgs, page, size, false);
    (headers, Json(items)).into_response()
}

fn catalog(base: &str) -> Vec<Value> {
    let mut all = vec![
        repo_json(base, "octo", "hello", "main", false),
        repo_json(base, "octo", "big", "trunk", false),
        repo_json(base, "forker", "hello", "main", true),
        repo_json(base, "someone", "goodbye", "main", false),
    ];
    all.extend((1..=23).map(|i| {
        repo_json(
            base,
            "octo",
            &format!("hello-service-{i:02}"),
            "main",
            false,
        )
    }));
    all
}

async fn user_repos(
    State(f): State<Fake>,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (page, size) = paging(&q, "per_page", 30, 100);
    let (headers, items) = paginate(&f.base, &uri, &catalog(&f.base), page, size, false);
    (headers, Json(items)).into_response()
}

/// A small subset of GitHub's search syntax: words, `in:name`, `user:`/`org:`.
async fn search_repositories(
    State(f): State<Fake>,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(query) = q.get("q").filter(|s| !s.trim().is_empty()) else {
        let body = json!({
            "message": "Validation Failed",
            "errors": [{"resource": "Search", "field": "q", "code": "missing"}],
            "documentation_url": "https://docs.github.com/v3/search",
        });
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response();
    };
    f.searches.lock().unwrap().push(query.clone());
    let mut words = Vec::new();
    let mut name_only = false;
    let mut owners = Vec::new();
    for term in query.split_whitespace() {
        match term.split_once(':') {
            Some(("in", "name")) => name_only = true,
            Some(("user" | "org", owner)) => owners.push(owner.to_lowercase()),
            Some((qualifier, _)) if !["in", "user", "org"].contains(&qualifier) => {
                let body = json!({
                    "message": "Validation Failed",
                    "errors": [{"message": format!("\"{qualifier}\" is not a recognized qualifier"), "resource": "Search", "field": "q", "code": "invalid"}],
                    "documentation_url": "https://docs.github.com/v3/search/",
                });
                return (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response();
            }
            _ => words.push(term.to_lowercase()),
        }
    }
    let hits: Vec<Value> = catalog(&f.base)
        .into_iter()
        .filter(|r| {
            let name = r["name"].as_str().unwrap().to_lowercase();
            let text = if name_only {
                name.clone()
            } else {
                format!("{name} {}", r["description"].as_str().unwrap())
            };
            let owner = r["owner"]["login"].as_str().unwrap().to_lowercase();
            words.iter().all(|w| text.contains(w)) && (owners.is_empty() || owners.contains(&owner))
        })
        .collect();
    let (page, size) = paging(&q, "per_page", 30, 100);
    let (headers, items) = paginate(&f.base, &uri, &hits, page, size, false);
    let body = json!({"total_count": hits.len(), "incomplete_results": false, "items": items});
    (headers, Json(body)).into_response()
}

async fn repository(
    State(f): State<Fake>,
    Path((owner, repo)): Path<(String, String)>,
) -> Response {
    match (owner.as_str(), repo.as_str()) {
        ("slow", _) => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Json(repo_json(&f.base, &owner, &repo, "main", false)).into_response()
        }
        ("broken", _) => (StatusCode::BAD_GATEWAY, "<html><body><h1>502 Bad Gateway</h1></body></html>").into_response(),
        ("sso-org", _) => (
            StatusCode::FORBIDDEN,
            Json(json!({
                "message": "Resource protected by organization SAML enforcement. You must grant your Personal Access token access to this organization.",
                "documentation_url": "https://docs.github.com/articles/authenticating-to-a-github-organization-with-saml-single-sign-on/",
            })),
        )
            .into_response(),
        _ => match known_repo(&owner, &repo) {
            Some(default) => Json(repo_json(&f.base, &owner, &repo, default, owner == "forker")).into_response(),
            None => not_found(),
        },
    }
}

async fn repo_branches(
    State(f): State<Fake>,
    Path((owner, repo)): Path<(String, String)>,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if known_repo(&owner, &repo).is_none() {
        return not_found();
    }
    let all: Vec<Value> = branches(&format!("{owner}/{repo}"))
        .into_iter()
        .map(|(name, sha)| {
            json!({"name": name, "commit": {"sha": sha, "url": format!("{}/api/v3/repos/{owner}/{repo}/commits/{sha}", f.base)}, "protected": name == "main"})
        })
        .collect();
    let (page, size) = paging(&q, "per_page", 30, 100);
    let (headers, items) = paginate(&f.base, &uri, &all, page, size, false);
    (headers, Json(items)).into_response()
}

async fn repo_tags(
    State(f): State<Fake>,
    Path((owner, repo)): Path<(String, String)>,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if known_repo(&owner, &repo).is_none() {
        return not_found();
    }
    let all: Vec<Value> = tags(&format!("{owner}/{repo}"))
        .into_iter()
        .map(|(name, sha)| {
            json!({
                "name": name, "node_id": "MDM6UmVmcmVmcy90YWdzL3YxLjA=",
                "commit": {"sha": sha, "url": format!("{}/api/v3/repos/{owner}/{repo}/commits/{sha}", f.base)},
                "zipball_url": format!("{}/api/v3/repos/{owner}/{repo}/zipball/{name}", f.base),
                "tarball_url": format!("{}/api/v3/repos/{owner}/{repo}/tarball/{name}", f.base),
            })
        })
        .collect();
    let (page, size) = paging(&q, "per_page", 30, 100);
    let (headers, items) = paginate(&f.base, &uri, &all, page, size, false);
    (headers, Json(items)).into_response()
}

async fn commit(
    State(f): State<Fake>,
    Path((owner, repo, sha)): Path<(String, String, String)>,
) -> Response {
    if known_repo(&owner, &repo).is_none() {
        return not_found();
    }
    let matches: Vec<&&str> = commits(&format!("{owner}/{repo}"))
        .iter()
        .filter(|c| c.starts_with(&sha))
        .collect();
    match matches.as_slice() {
        [full] if sha.len() >= 4 => Json(json!({
            "sha": full, "node_id": "MDY6Q29tbWl0NmRjYjA5YjViNTc4NzVmMzM0ZjYxYWViZWQ2OTVlMmU0MTkzZGI1ZQ==",
            "url": format!("{}/api/v3/repos/{owner}/{repo}/commits/{full}", f.base),
            "html_url": format!("{}/{owner}/{repo}/commit/{full}", f.base),
            "commit": {"message": "Fix all the bugs", "author": {"name": "Monalisa Octocat", "email": "support@github.com", "date": "2024-04-14T16:00:49Z"}},
            "author": user_json(&f.base, "octocat", 583231), "parents": [], "files": [],
        }))
        .into_response(),
        _ => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({
                "message": format!("No commit found for SHA: {sha}"),
                "documentation_url": "https://docs.github.com/rest/commits/commits#get-a-commit", "status": "422",
            })),
        )
            .into_response(),
    }
}

fn pull_json(base: &str, number: u64) -> Option<Value> {
    let end = |owner: &str, repo: &str, branch: &str, sha: &str| json!({"label": format!("{owner}:{branch}"), "ref": branch, "sha": sha, "user": user_json(base, owner, 7), "repo": repo_json(base, owner, repo, "main", owner == "forker")});
    let (title, state, draft, merged, author, head) = match number {
        7 => (
            "Add login form",
            "open",
            false,
            false,
            "alice",
            end("octo", "hello", "feature/login", LOGIN_SHA),
        ),
        8 => (
            "Fix typo in README",
            "open",
            true,
            false,
            "bob",
            end("forker", "hello", "patch-1", FORK_SHA),
        ),
        9 => (
            "Release 1.2",
            "closed",
            false,
            true,
            "alice",
            end("octo", "hello", "feature", MAIN_SHA),
        ),
        10 => (
            "Abandoned idea",
            "closed",
            false,
            false,
            "carol",
            end("octo", "hello", "feature", MAIN_SHA),
        ),
        // From a fork that was deleted since.
        11 => ("Orphaned change", "open", false, false, "dave", {
            let mut e = end("ghost", "hello", "wip", FORK_SHA);
            e["repo"] = Value::Null;
            e
        }),
        _ => return None,
    };
    Some(json!({
        "url": format!("{base}/api/v3/repos/octo/hello/pulls/{number}"), "id": 1000 + number, "node_id": "MDExOlB1bGxSZXF1ZXN0MQ==",
        "html_url": format!("{base}/octo/hello/pull/{number}"), "number": number, "state": state, "locked": false,
        "title": title, "user": user_json(base, author, 11), "body": "Please pull these awesome changes in!",
        "created_at": "2024-01-26T19:01:12Z", "updated_at": "2024-01-26T19:01:12Z",
        "closed_at": if state == "closed" { json!("2024-02-01T10:00:00Z") } else { Value::Null },
        "merged_at": if merged { json!("2024-02-01T10:00:00Z") } else { Value::Null },
        "merge_commit_sha": if merged { json!(MAIN_SHA) } else { Value::Null },
        "draft": draft, "head": head, "base": end("octo", "hello", "main", MAIN_SHA),
        "merged": merged, "mergeable": true, "comments": 10, "commits": 3, "additions": 100, "deletions": 3, "changed_files": 5,
    }))
}

async fn pull(
    State(f): State<Fake>,
    Path((owner, repo, number)): Path<(String, String, String)>,
) -> Response {
    match (
        owner.as_str(),
        repo.as_str(),
        number
            .parse::<u64>()
            .ok()
            .and_then(|n| pull_json(&f.base, n)),
    ) {
        ("octo", "hello", Some(p)) => Json(p).into_response(),
        _ => not_found(),
    }
}

async fn issue(
    State(f): State<Fake>,
    Path((owner, repo, number)): Path<(String, String, String)>,
) -> Response {
    if (owner.as_str(), repo.as_str()) != ("octo", "hello") {
        return not_found();
    }
    let n: u64 = number.parse().unwrap_or(0);
    let base = json!({
        "url": format!("{}/api/v3/repos/octo/hello/issues/{n}", f.base), "html_url": format!("{}/octo/hello/issues/{n}", f.base),
        "id": 5000 + n, "number": n, "state": "open", "user": user_json(&f.base, "erin", 12), "labels": [], "comments": 2,
        "created_at": "2024-03-01T09:00:00Z", "updated_at": "2024-03-02T09:00:00Z", "closed_at": null,
    });
    match n {
        42 => {
            let mut i = base;
            i["title"] = json!("App crashes on startup");
            Json(i).into_response()
        }
        // GitHub serves pull requests from the issues API too, marked so.
        7 => {
            let mut i = base;
            i["title"] = json!("Add login form");
            i["pull_request"] = json!({"url": format!("{}/api/v3/repos/octo/hello/pulls/7", f.base), "html_url": format!("{}/octo/hello/pull/7", f.base), "merged_at": null});
            Json(i).into_response()
        }
        _ => not_found(),
    }
}

async fn start() -> (Server, Arc<Mutex<Vec<String>>>) {
    let searches = Arc::new(Mutex::new(Vec::new()));
    let recorded = searches.clone();
    let server = Server::start(move |base| {
        let fake = Fake { base, searches };
        let api = Router::new()
            .route("/user", get(user))
            .route("/user/memberships/orgs", get(user_orgs))
            .route("/user/repos", get(user_repos))
            .route("/search/repositories", get(search_repositories))
            .route("/repos/{owner}/{repo}", get(repository))
            .route("/repos/{owner}/{repo}/branches", get(repo_branches))
            .route("/repos/{owner}/{repo}/tags", get(repo_tags))
            .route("/repos/{owner}/{repo}/commits/{sha}", get(commit))
            .route("/repos/{owner}/{repo}/pulls/{number}", get(pull))
            .route("/repos/{owner}/{repo}/issues/{number}", get(issue))
            .fallback(|| async { not_found() })
            .route_layer(middleware::from_fn(auth))
            .with_state(fake);
        Router::new().nest("/api/v3", api)
    })
    .await;
    (server, recorded)
}

// ---- context URLs ----

// A test table: the size of its rows does not matter.
#[allow(clippy::large_enum_variant)]
enum Want {
    Ctx(Context),
    Err(&'static str, &'static str),
}

#[tokio::test]
async fn context_urls_resolve_against_the_api() {
    let (server, _) = start().await;
    let provider = server.provider(ScmKind::GitHub);
    let web = server.base.clone();
    let host = server.host_name();
    let repo = |owner: &str, name: &str| GitContext {
        host: host.clone(),
        owner: owner.into(),
        repo: name.into(),
        clone_url: format!("{web}/{owner}/{name}.git"),
        ..GitContext::default()
    };
    let ctx = |git: GitContext| {
        Want::Ctx(Context {
            git,
            change: None,
            issue: None,
            scm_id: "github".into(),
        })
    };
    let hello = repo("octo", "hello");
    let on_branch = |b: &str| {
        ctx(GitContext {
            branch: b.into(),
            ..hello.clone()
        })
    };
    let on_tag = |t: &str| {
        ctx(GitContext {
            tag: t.into(),
            ..hello.clone()
        })
    };
    let at_commit = |c: &str| {
        ctx(GitContext {
            commit: c.into(),
            ..hello.clone()
        })
    };
    let change = |id: &str,
                  title: &str,
                  from: &str,
                  author: &str,
                  state: ChangeState,
                  draft: bool,
                  sha: &str,
                  head: (&str, &str)| ChangeRequest {
        id: id.into(),
        title: title.into(),
        from_branch: from.into(),
        to_branch: "main".into(),
        url: format!("{web}/octo/hello/pull/{id}"),
        author: author.into(),
        draft,
        state,
        head_sha: sha.into(),
        head_clone_url: if head.0.is_empty() {
            String::new()
        } else {
            format!("{web}/{}/{}.git", head.0, head.1)
        },
        head_owner: head.0.into(),
        head_repo: head.1.into(),
    };
    // A PR from a fork opens the fork (owner, repository) at its branch,
    // with the base repository upstream.
    let pr = |branch: &str, fork: Option<(&str, &str)>, change: ChangeRequest| {
        let git = match fork {
            Some((owner, repo)) => GitContext {
                owner: owner.into(),
                repo: repo.into(),
                clone_url: format!("{web}/{owner}/{repo}.git"),
                branch: branch.into(),
                upstream_remote_url: hello.clone_url.clone(),
                ..hello.clone()
            },
            None => GitContext {
                branch: branch.into(),
                ..hello.clone()
            },
        };
        Want::Ctx(Context {
            git,
            change: Some(change),
            issue: None,
            scm_id: "github".into(),
        })
    };
    let login_pr = || {
        pr(
            "feature/login",
            None,
            change(
                "7",
                "Add login form",
                "feature/login",
                "alice",
                ChangeState::Open,
                false,
                LOGIN_SHA,
                ("octo", "hello"),
            ),
        )
    };

    let cases: Vec<(String, Want)> = vec![
        // The repository, however it is pasted.
        (format!("{web}/octo/hello"), on_branch("main")),
        (format!("{web}/octo/hello.git"), on_branch("main")),
        (format!("{web}/octo/hello/"), on_branch("main")),
        // What someone pastes from github.com; the registry routes hosts, the provider reads the path.
        (
            "https://www.github.com/octo/hello/".into(),
            on_branch("main"),
        ),
        ("git@127.0.0.1:octo/hello.git".into(), on_branch("main")),
        (
            "ssh://git@127.0.0.1:22/octo/hello.git".into(),
            on_branch("main"),
        ),
        (
            format!("{web}/octo/big"),
            ctx(GitContext {
                branch: "trunk".into(),
                ..repo("octo", "big")
            }),
        ),
        // Repository pages that are not refs.
        (format!("{web}/octo/hello/pulls"), on_branch("main")),
        (format!("{web}/octo/hello/tree"), on_branch("main")),
        // Branches and tags, slashes resolved against the real refs, longest first.
        (format!("{web}/octo/hello/tree/main"), on_branch("main")),
        (
            format!("{web}/octo/hello/tree/feature"),
            on_branch("feature"),
        ),
        (
            format!("{web}/octo/hello/tree/feature/login"),
            on_branch("feature/login"),
        ),
        (
            format!("{web}/octo/hello/tree/feature/login/src/app"),
            on_branch("feature/login"),
        ),
        (
            format!("{web}/octo/hello/blob/feature/login/src/app/main.rs"),
            on_branch("feature/login"),
        ),
        (
            format!("{web}/octo/hello/tree/dependabot/npm_and_yarn/lodash-4.17.21"),
            on_branch("dependabot/npm_and_yarn/lodash-4.17.21"),
        ),
        (
            format!("{web}/octo/hello/blob/main/docs/README.md#L10-L20"),
            on_branch("main"),
        ),
        (
            format!("{web}/octo/hello/tree/release/v1.2"),
            on_tag("release/v1.2"),
        ),
        (
            format!("{web}/octo/hello/tree/release/notes"),
            on_tag("release"),
        ),
        (
            format!("{web}/octo/hello/blob/v1.0/README.md"),
            on_tag("v1.0"),
        ),
        (
            format!("{web}/octo/hello/releases/tag/v1.0"),
            on_tag("v1.0"),
        ),
        // Past the first page of branches (130+) and tags (110+); the longer branch beats the shorter tag.
        (
            format!("{web}/octo/big/tree/topic/deep/nested/docs/guide.md"),
            ctx(GitContext {
                branch: "topic/deep/nested".into(),
                ..repo("octo", "big")
            }),
        ),
        (
            format!("{web}/octo/big/tree/topic/deep/other"),
            ctx(GitContext {
                tag: "topic/deep".into(),
                ..repo("octo", "big")
            }),
        ),
        // Commits: full SHA, abbreviated SHA (resolved to the full one), SHA in tree/.
        (
            format!("{web}/octo/hello/commit/{LOGIN_SHA}"),
            at_commit(LOGIN_SHA),
        ),
        (
            format!("{web}/octo/hello/commit/9a3e1f0"),
            at_commit(LOGIN_SHA),
        ),
        (
            format!("{web}/octo/hello/tree/{OLD_SHA}/src"),
            at_commit(OLD_SHA),
        ),
        (
            format!("{web}/octo/hello/tree/a1b2c3d4/src"),
            at_commit(OLD_SHA),
        ),
        // Pull requests.
        (format!("{web}/octo/hello/pull/7"), login_pr()),
        (format!("{web}/octo/hello/pull/7/files"), login_pr()),
        (
            format!("{web}/octo/hello/pull/8"),
            pr(
                "patch-1",
                Some(("forker", "hello")),
                change(
                    "8",
                    "Fix typo in README",
                    "patch-1",
                    "bob",
                    ChangeState::Open,
                    true,
                    FORK_SHA,
                    ("forker", "hello"),
                ),
            ),
        ),
        (
            format!("{web}/octo/hello/pull/9"),
            pr(
                "feature",
                None,
                change(
                    "9",
                    "Release 1.2",
                    "feature",
                    "alice",
                    ChangeState::Merged,
                    false,
                    MAIN_SHA,
                    ("octo", "hello"),
                ),
            ),
        ),
        (
            format!("{web}/octo/hello/pull/10"),
            pr(
                "feature",
                None,
                change(
                    "10",
                    "Abandoned idea",
                    "feature",
                    "carol",
                    ChangeState::Closed,
                    false,
                    MAIN_SHA,
                    ("octo", "hello"),
                ),
            ),
        ),
        (
            format!("{web}/octo/hello/pull/11"),
            pr(
                "wip",
                None,
                change(
                    "11",
                    "Orphaned change",
                    "wip",
                    "dave",
                    ChangeState::Open,
                    false,
                    FORK_SHA,
                    ("", ""),
                ),
            ),
        ),
        // Issues; an issue number that is a pull request is one.
        (
            format!("{web}/octo/hello/issues/42"),
            Want::Ctx(Context {
                git: hello.clone(),
                change: None,
                issue: Some(Issue {
                    id: "42".into(),
                    title: "App crashes on startup".into(),
                }),
                scm_id: "github".into(),
            }),
        ),
        (format!("{web}/octo/hello/issues/7"), login_pr()),
        // What does not exist, and what is not a repository.
        (
            format!("{web}/octo/hello/tree/no-such-branch"),
            Want::Err("not_found", "no-such-branch"),
        ),
        (
            format!("{web}/octo/hello/tree/nope/src/lib.rs"),
            Want::Err("not_found", "nope/src/lib.rs"),
        ),
        (
            format!("{web}/octo/hello/commit/deadbeefcafe"),
            Want::Err("not_found", "deadbeefcafe"),
        ),
        (
            format!("{web}/octo/hello/pull/999"),
            Want::Err("not_found", "#999"),
        ),
        (
            format!("{web}/octo/hello/issues/404"),
            Want::Err("not_found", "#404"),
        ),
        (
            format!("{web}/octo/missing"),
            Want::Err("not_found", "octo/missing"),
        ),
        (
            format!("{web}/octo/hello/pull/latest"),
            Want::Err("invalid_argument", "latest"),
        ),
        (
            format!("{web}/octo/hello/commit/main"),
            Want::Err("invalid_argument", "main"),
        ),
        (
            format!("{web}/octo"),
            Want::Err("invalid_argument", "does not point to a GitHub repository"),
        ),
        (
            format!("{web}/settings/tokens"),
            Want::Err("invalid_argument", "does not point to a GitHub repository"),
        ),
        (
            format!("{web}/"),
            Want::Err("invalid_argument", "does not point to a GitHub repository"),
        ),
    ];
    assert!(cases.len() >= 20);
    let mut failures = Vec::new();
    for (url, want) in &cases {
        let parsed = ContextUrl::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        let got = provider.parse_context(&parsed, &creds(GOOD)).await;
        match (want, got) {
            (Want::Ctx(want), Ok(got)) if *want == got => {}
            (Want::Err(code, needle), Err(e))
                if e.code() == *code && e.to_string().contains(needle) => {}
            (Want::Ctx(want), got) => {
                failures.push(format!("{url}\n  want {want:?}\n  got  {got:?}"))
            }
            (Want::Err(code, needle), got) => failures.push(format!(
                "{url}\n  want {code} naming {needle:?}\n  got  {got:?}"
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn context_needs_a_token() {
    let (server, _) = start().await;
    let provider = server.provider(ScmKind::GitHub);
    let url = ContextUrl::parse(&format!("{}/octo/hello", server.base)).unwrap();
    for token in ["", "   "] {
        match provider.parse_context(&url, &creds(token)).await {
            Err(ScmError::AuthenticationRequired { host, .. }) => {
                assert_eq!(host, server.host_name())
            }
            other => panic!("{token:?}: {other:?}"),
        }
    }
    assert!(matches!(
        provider.parse_context(&url, &creds("ghp_revoked")).await,
        Err(ScmError::AuthenticationRequired { .. })
    ));
}

// ---- search and organizations ----

#[tokio::test]
async fn keyword_search_matches_names_and_pages_by_link() {
    let (server, searches) = start().await;
    let provider = server.provider(ScmKind::GitHub);
    let first = provider
        .search_repositories(&creds(GOOD), "  hello  ", SearchMode::Keyword, 1, 10)
        .await
        .unwrap();
    assert_eq!(searches.lock().unwrap().last().unwrap(), "hello in:name");
    // octo/hello, forker/hello and 23 hello-service repositories.
    assert_eq!(
        (
            first.total_count,
            first.total_pages,
            first.has_next,
            first.page
        ),
        (Some(25), Some(3), true, 1)
    );
    assert_eq!(first.items.len(), 10);
    assert_eq!(first.items[0].name, "octo/hello");
    assert_eq!(first.items[0].url, format!("{}/octo/hello", server.base));
    let last = provider
        .search_repositories(&creds(GOOD), "hello", SearchMode::Keyword, 3, 10)
        .await
        .unwrap();
    assert_eq!(
        (last.items.len(), last.total_pages, last.has_next),
        (5, Some(3), false)
    );
    // "maintained" is only in descriptions: a name search does not find it.
    let none = provider
        .search_repositories(&creds(GOOD), "maintained", SearchMode::Keyword, 1, 10)
        .await
        .unwrap();
    assert_eq!(
        (none.items.len(), none.total_count, none.has_next),
        (0, Some(0), false)
    );
}

#[tokio::test]
async fn native_search_passes_the_query_unchanged() {
    let (server, searches) = start().await;
    let provider = server.provider(ScmKind::GitHub);
    let found = provider
        .search_repositories(
            &creds(GOOD),
            "maintained user:forker",
            SearchMode::Native,
            1,
            30,
        )
        .await
        .unwrap();
    assert_eq!(
        searches.lock().unwrap().last().unwrap(),
        "maintained user:forker"
    );
    assert_eq!(
        found
            .items
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        ["forker/hello"]
    );
    assert_eq!(
        (found.total_count, found.total_pages, found.has_next),
        (Some(1), Some(1), false)
    );
    // GitHub rejects what it cannot parse (422): that is the user's input.
    let bad = provider
        .search_repositories(&creds(GOOD), "stars:>10", SearchMode::Native, 1, 30)
        .await;
    assert!(matches!(bad, Err(ScmError::InvalidInput(_))), "{bad:?}");
    let empty = provider
        .search_repositories(&creds(GOOD), " ", SearchMode::Native, 1, 30)
        .await;
    assert!(matches!(empty, Err(ScmError::InvalidInput(_))), "{empty:?}");
}

#[tokio::test]
async fn an_empty_keyword_lists_the_users_repositories() {
    let (server, _) = start().await;
    let provider = server.provider(ScmKind::GitHub);
    let page = provider
        .search_repositories(&creds(GOOD), "", SearchMode::Keyword, 2, 20)
        .await
        .unwrap();
    assert_eq!(
        (page.items.len(), page.page, page.has_next, page.total_pages),
        (7, 2, false, Some(2))
    );
    assert_eq!(page.total_count, Some(27));
    let first = provider
        .search_repositories(&creds(GOOD), "", SearchMode::Keyword, 1, 20)
        .await
        .unwrap();
    assert_eq!(
        (
            first.items.len(),
            first.has_next,
            first.total_pages,
            first.total_count
        ),
        (20, true, Some(2), None)
    );
}

#[tokio::test]
async fn organizations_page_and_filter() {
    let (server, _) = start().await;
    let provider = server.provider(ScmKind::GitHub);
    let first = provider
        .list_organizations(&creds(GOOD), "", 1, 3)
        .await
        .unwrap();
    assert_eq!(
        first
            .items
            .iter()
            .map(|o| o.name.as_str())
            .collect::<Vec<_>>(),
        ["acme", "acme-labs", "octo-org"]
    );
    assert_eq!(first.items[0].url, format!("{}/acme", server.base));
    // The membership's role says who administers an organization.
    assert_eq!(
        first.items.iter().map(|o| o.is_admin).collect::<Vec<_>>(),
        [Some(true), Some(false), Some(false)]
    );
    assert_eq!((first.has_next, first.total_pages), (true, Some(3)));
    let last = provider
        .list_organizations(&creds(GOOD), "", 3, 3)
        .await
        .unwrap();
    assert_eq!(
        (
            last.items.len(),
            last.has_next,
            last.total_pages,
            last.total_count
        ),
        (1, false, Some(3), Some(7))
    );
    // No filter in the API: corral filters (case-insensitively) and pages itself.
    let acme = provider
        .list_organizations(&creds(GOOD), "Acme", 1, 2)
        .await
        .unwrap();
    assert_eq!(
        acme.items
            .iter()
            .map(|o| o.name.as_str())
            .collect::<Vec<_>>(),
        ["acme", "acme-labs"]
    );
    assert_eq!(
        (acme.total_count, acme.total_pages, acme.has_next),
        (Some(3), Some(2), true)
    );
    let acme2 = provider
        .list_organizations(&creds(GOOD), "acme", 2, 2)
        .await
        .unwrap();
    assert_eq!(
        acme2
            .items
            .iter()
            .map(|o| o.name.as_str())
            .collect::<Vec<_>>(),
        ["ACME-archive"]
    );
}

// ---- tokens, access, errors ----

#[tokio::test]
async fn tokens_are_checked_against_the_user_endpoint() {
    let (server, _) = start().await;
    let provider = server.provider(ScmKind::GitHub);
    provider.check_token(&creds(GOOD)).await.unwrap();
    assert!(matches!(
        provider.check_token(&creds("ghp_wrong")).await,
        Err(ScmError::AuthenticationRequired { .. })
    ));
    assert!(matches!(
        provider.check_token(&creds("")).await,
        Err(ScmError::AuthenticationRequired { .. })
    ));
}

#[tokio::test]
async fn repository_access_says_what_is_wrong() {
    let (server, _) = start().await;
    let provider = server.provider(ScmKind::GitHub);
    let url = |path: &str| ContextUrl::parse(&format!("{}/{path}", server.base)).unwrap();
    provider
        .check_repository_access(&creds(GOOD), &url("octo/hello/tree/main"))
        .await
        .unwrap();
    match provider
        .check_repository_access(&creds(GOOD), &url("octo/private-thing"))
        .await
    {
        Err(ScmError::NotFound(m)) => assert!(
            m.contains("octo/private-thing") && m.contains("cannot see it"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    match provider
        .check_repository_access(&creds(GOOD), &url("sso-org/app"))
        .await
    {
        Err(ScmError::PermissionDenied(m)) => {
            assert!(m.contains("sso-org/app") && m.contains("SAML"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        provider
            .check_repository_access(&creds("ghp_wrong"), &url("octo/hello"))
            .await,
        Err(ScmError::AuthenticationRequired { .. })
    ));
    assert!(matches!(
        provider
            .check_repository_access(&creds(GOOD), &url("octo"))
            .await,
        Err(ScmError::InvalidInput(_))
    ));
}

#[tokio::test]
async fn rate_limits_are_reported_with_when_to_retry() {
    let (server, _) = start().await;
    let provider = server.provider(ScmKind::GitHub);
    let url = ContextUrl::parse(&format!("{}/octo/hello", server.base)).unwrap();
    match provider.parse_context(&url, &creds(EXHAUSTED)).await {
        Err(ScmError::RateLimited {
            host,
            retry_after_secs: Some(secs),
        }) => {
            assert_eq!(host, server.host_name());
            assert!(secs > 0 && secs <= 1800, "{secs}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        provider
            .search_repositories(&creds(SECONDARY), "hello", SearchMode::Keyword, 1, 10)
            .await,
        Err(ScmError::RateLimited {
            host: server.host_name(),
            retry_after_secs: Some(60)
        })
    );
    assert!(matches!(
        provider
            .list_organizations(&creds(EXHAUSTED), "", 1, 10)
            .await,
        Err(ScmError::RateLimited { .. })
    ));
}

#[tokio::test]
async fn server_failures_and_slow_answers_are_unavailable() {
    let (server, _) = start().await;
    let provider = server.provider(ScmKind::GitHub);
    let broken = ContextUrl::parse(&format!("{}/broken/repo", server.base)).unwrap();
    assert!(matches!(
        provider.parse_context(&broken, &creds(GOOD)).await,
        Err(ScmError::Unavailable(_))
    ));
    let hasty = provider_for(server.host(ScmKind::GitHub), Duration::from_millis(300));
    let slow = ContextUrl::parse(&format!("{}/slow/repo", server.base)).unwrap();
    match hasty.parse_context(&slow, &creds(GOOD)).await {
        Err(ScmError::Unavailable(m)) => assert!(m.contains("did not answer in time"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Nothing listening at all.
    let gone = provider_for(
        corral_scm::HostRegistry::new([corral_scm::host::ConfiguredHost {
            kind: ScmKind::GitHub,
            host: "http://127.0.0.1:9".into(),
            virtual_directory: None,
        }])
        .unwrap()
        .resolve("127.0.0.1:9")
        .unwrap(),
        Duration::from_millis(300),
    );
    assert!(matches!(
        gone.check_token(&creds(GOOD)).await,
        Err(ScmError::Unavailable(_))
    ));
}

// ---- what needs no server ----

#[tokio::test]
async fn sign_in_help_points_at_the_host() {
    let (server, _) = start().await;
    let ghe = server.provider(ScmKind::GitHub);
    let help = ghe.pat_help();
    assert!(
        help.create_url
            .starts_with(&format!("{}/settings/tokens/new?scopes=repo", server.base)),
        "{}",
        help.create_url
    );
    assert!(help.docs_url.starts_with("https://docs.github.com/"));
    assert!(help.example.starts_with("ghp_") && help.example.len() == 40);
    assert_eq!(help.required_scopes, ["repo", "read:org"]);
    assert_eq!(
        ghe.oauth_authorize_url(),
        format!("{}/login/oauth/authorize", server.base)
    );
    assert_eq!(
        ghe.oauth_token_url(),
        format!("{}/login/oauth/access_token", server.base)
    );
    assert_eq!(ghe.oauth_scopes(), ["repo", "read:org", "read:user"]);

    let dotcom = provider_for(
        corral_scm::HostRegistry::default()
            .resolve("github.com")
            .unwrap(),
        Duration::from_secs(1),
    );
    assert_eq!(
        dotcom.oauth_authorize_url(),
        "https://github.com/login/oauth/authorize"
    );
    assert_eq!(dotcom.host().api_base(), "https://api.github.com");
    assert!(
        dotcom
            .pat_help()
            .create_url
            .starts_with("https://github.com/settings/tokens/new?scopes=repo")
    );
}
