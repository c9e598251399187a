//! The Gitea provider against a local server that answers Gitea's REST API
//! (`/api/v1`) the way Gitea does: the same JSON shapes, status codes,
//! `page`/`limit` paging with `Link` and `x-total-count`, and at most 50 items a
//! page (Gitea's default `MAX_RESPONSE_ITEMS`).

#![recursion_limit = "256"]

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

const GOOD: &str = "5f0e2b6c9d8a7b1c3e4f5a6b7c8d9e0f1a2b3c4d";
const EXHAUSTED: &str = "0000000000000000000000000000000000000403";
const THROTTLED: &str = "0000000000000000000000000000000000000429";

const MAIN_SHA: &str = "8f2d1c0b9a8e7d6c5b4a39281706f5e4d3c2b1a0";
const LOGIN_SHA: &str = "1e2d3c4b5a69788796a5b4c3d2e1f00112233445";
const FORK_SHA: &str = "bead5eed0123456789abcdef0123456789abcdef";
const OLD_SHA: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f011223344";

#[derive(Clone)]
struct Fake {
    base: String,
    searches: Arc<Mutex<Vec<String>>>,
}

fn user_json(base: &str, login: &str, id: u64) -> Value {
    json!({
        "id": id, "login": login, "login_name": "", "source_id": 0, "full_name": "", "email": format!("{login}@noreply.localhost"),
        "avatar_url": format!("{base}/avatars/{id}"), "html_url": format!("{base}/{login}"), "language": "en-US",
        "is_admin": false, "last_login": "2024-05-01T10:00:00Z", "created": "2023-01-01T10:00:00Z", "restricted": false,
        "active": true, "prohibit_login": false, "location": "", "website": "", "description": "", "visibility": "public",
        "followers_count": 0, "following_count": 0, "starred_repos_count": 0, "username": login,
    })
}

fn repo_json(base: &str, owner: &str, name: &str, default_branch: &str, fork: bool) -> Value {
    json!({
        "id": 42, "owner": user_json(base, owner, 3), "name": name, "full_name": format!("{owner}/{name}"),
        "description": format!("{name}, maintained by {owner}"), "empty": false, "private": false, "fork": fork,
        "template": false, "parent": null, "mirror": false, "size": 1234, "language": "Go", "languages_url": format!("{base}/api/v1/repos/{owner}/{name}/languages"),
        "html_url": format!("{base}/{owner}/{name}"), "url": format!("{base}/api/v1/repos/{owner}/{name}"), "link": "",
        "ssh_url": format!("git@127.0.0.1:{owner}/{name}.git"), "clone_url": format!("{base}/{owner}/{name}.git"),
        "original_url": "", "website": "", "stars_count": 3, "forks_count": 1, "watchers_count": 2, "open_issues_count": 1,
        "open_pr_counter": 4, "release_counter": 2, "default_branch": default_branch, "archived": false,
        "created_at": "2023-02-01T12:00:00Z", "updated_at": "2024-05-01T12:00:00Z", "archived_at": "1970-01-01T00:00:00Z",
        "permissions": {"admin": false, "push": true, "pull": true},
        "has_issues": true, "has_wiki": true, "has_pull_requests": true, "has_projects": false, "has_releases": true,
        "default_merge_style": "merge", "avatar_url": "", "internal": false, "mirror_interval": "", "object_format_name": "sha1",
    })
}

fn branches(repo: &str) -> Vec<(String, &'static str)> {
    match repo {
        "octo/hello" => [
            "main",
            "feature",
            "feature/login",
            "renovate/golang.org-x-net-0.x",
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
        // More than one page (50) of branches; the one with slashes comes last.
        "octo/big" => (0..70)
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
        "octo/big" => (0..55).map(|i| (format!("v0.{i}.0"), MAIN_SHA)).collect(),
        _ => vec![],
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

fn not_found(base: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"errors": ["The target couldn't be found."], "message": "The target couldn't be found.", "url": format!("{base}/api/swagger")})),
    )
        .into_response()
}

async fn auth(State(f): State<Fake>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match given.strip_prefix("token ") {
        Some(GOOD) => next.run(request).await,
        // A rate-limiting proxy in front of Gitea, GitHub style...
        Some(EXHAUSTED) => {
            let mut headers = HeaderMap::new();
            headers.insert("x-ratelimit-limit", HeaderValue::from_static("600"));
            headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
            headers.insert("x-ratelimit-reset", HeaderValue::from(unix_now() + 300));
            (StatusCode::FORBIDDEN, headers, Json(json!({"message": "rate limit exceeded"}))).into_response()
        }
        // ...or the plain kind.
        Some(THROTTLED) => (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "120")], "Too Many Requests").into_response(),
        _ => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "user does not exist [uid: 0, name: ]", "url": format!("{}/api/swagger", f.base)})),
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
    let orgs: Vec<Value> = ["acme", "acme-labs", "gitea-org", "forgejo", "rust-lang", "ACME-archive", "tooling"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            json!({
                "id": 100 + i, "name": name, "full_name": format!("The {name} organization"), "email": "",
                "avatar_url": format!("{}/avatars/o{i}", f.base), "description": "", "website": "", "location": "",
                "visibility": "public", "repo_admin_change_team_access": false, "username": name,
            })
        })
        .collect();
    let (page, size) = paging(&q, "limit", 30, 50);
    let (headers, items) = paginate(&f.base, &uri, &orgs, page, size, true);
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

/// Gitea's keyword search: comma-separated keywords, any of which a name contains.
async fn search(
    State(f): State<Fake>,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let query = q.get("q").cloned().unwrap_or_default();
    f.searches.lock().unwrap().push(query.clone());
    let keywords: Vec<String> = query
        .split(',')
        .map(|k| k.trim().to_lowercase())
        .filter(|k| !k.is_empty())
        .collect();
    let hits: Vec<Value> = catalog(&f.base)
        .into_iter()
        .filter(|r| {
            let name = r["name"].as_str().unwrap().to_lowercase();
            keywords.is_empty() || keywords.iter().any(|k| name.contains(k))
        })
        .collect();
    let (page, size) = paging(&q, "limit", 30, 50);
    let (headers, items) = paginate(&f.base, &uri, &hits, page, size, true);
    (headers, Json(json!({"ok": true, "data": items}))).into_response()
}

async fn repository(
    State(f): State<Fake>,
    Path((owner, repo)): Path<(String, String)>,
) -> Response {
    match owner.as_str() {
        "slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Json(repo_json(&f.base, &owner, &repo, "main", false)).into_response()
        }
        "broken" => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"message": "GetRepositoryByName: database is locked", "url": format!("{}/api/swagger", f.base)})),
        )
            .into_response(),
        "scoped" => (
            StatusCode::FORBIDDEN,
            Json(json!({"message": "token does not have at least one of required scope(s): [read:repository]", "url": format!("{}/api/swagger", f.base)})),
        )
            .into_response(),
        _ => match known_repo(&owner, &repo) {
            Some(default) => Json(repo_json(&f.base, &owner, &repo, default, owner == "forker")).into_response(),
            None => not_found(&f.base),
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
        return not_found(&f.base);
    }
    let all: Vec<Value> = branches(&format!("{owner}/{repo}"))
        .into_iter()
        .map(|(name, sha)| {
            json!({
                "name": name,
                "commit": {
                    "id": sha, "message": "Update README.md\n", "url": format!("{}/{owner}/{repo}/commit/{sha}", f.base),
                    "author": {"name": "alice", "email": "alice@noreply.localhost", "username": "alice"},
                    "committer": {"name": "alice", "email": "alice@noreply.localhost", "username": "alice"},
                    "verification": {"verified": false, "reason": "gpg.error.not_signed_commit", "signature": "", "signer": null, "payload": ""},
                    "timestamp": "2024-05-01T12:00:00Z", "added": null, "removed": null, "modified": null,
                },
                "protected": name == "main", "required_approvals": 0, "enable_status_check": false, "status_check_contexts": [],
                "user_can_push": true, "user_can_merge": true, "effective_branch_protection_name": "",
            })
        })
        .collect();
    let (page, size) = paging(&q, "limit", 30, 50);
    let (headers, items) = paginate(&f.base, &uri, &all, page, size, true);
    (headers, Json(items)).into_response()
}

async fn repo_tags(
    State(f): State<Fake>,
    Path((owner, repo)): Path<(String, String)>,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if known_repo(&owner, &repo).is_none() {
        return not_found(&f.base);
    }
    let all: Vec<Value> = tags(&format!("{owner}/{repo}"))
        .into_iter()
        .map(|(name, sha)| {
            json!({
                "name": name, "message": format!("{name}\n"), "id": "9d4a3e0b6c7f8e9d0a1b2c3d4e5f60718293a4b5",
                "commit": {"url": format!("{}/api/v1/repos/{owner}/{repo}/git/commits/{sha}", f.base), "sha": sha, "created": "2024-04-01T12:00:00Z"},
                "zipball_url": format!("{}/{owner}/{repo}/archive/{name}.zip", f.base),
                "tarball_url": format!("{}/{owner}/{repo}/archive/{name}.tar.gz", f.base),
            })
        })
        .collect();
    let (page, size) = paging(&q, "limit", 30, 50);
    let (headers, items) = paginate(&f.base, &uri, &all, page, size, true);
    (headers, Json(items)).into_response()
}

async fn commit(
    State(f): State<Fake>,
    Path((owner, repo, sha)): Path<(String, String, String)>,
) -> Response {
    if known_repo(&owner, &repo).is_none() {
        return not_found(&f.base);
    }
    let known = [MAIN_SHA, LOGIN_SHA, OLD_SHA, FORK_SHA];
    match known.iter().filter(|c| c.starts_with(&sha)).collect::<Vec<_>>().as_slice() {
        [full] => Json(json!({
            "url": format!("{}/api/v1/repos/{owner}/{repo}/git/commits/{full}", f.base), "sha": full,
            "created": "2024-05-01T12:00:00Z", "html_url": format!("{}/{owner}/{repo}/commit/{full}", f.base),
            "commit": {"url": "", "author": {"name": "alice", "email": "alice@noreply.localhost", "date": "2024-05-01T12:00:00Z"},
                       "committer": {"name": "alice", "email": "alice@noreply.localhost", "date": "2024-05-01T12:00:00Z"},
                       "message": "Update README.md\n", "tree": {"url": "", "sha": MAIN_SHA, "created": "2024-05-01T12:00:00Z"}},
            "author": user_json(&f.base, "alice", 1), "committer": user_json(&f.base, "alice", 1),
            "parents": [], "files": [], "stats": {"total": 2, "additions": 1, "deletions": 1},
        }))
        .into_response(),
        _ => not_found(&f.base),
    }
}

fn pull_json(base: &str, number: u64) -> Option<Value> {
    let end = |owner: &str, repo: &str, branch: &str, sha: &str| json!({"label": branch, "ref": branch, "sha": sha, "repo_id": if owner == "forker" { 43 } else { 42 }, "repo": repo_json(base, owner, repo, "main", owner == "forker")});
    // Gitea before 1.22 has no `draft`: a "WIP:" title marks one.
    let (title, state, draft, merged, author, head) = match number {
        3 => (
            "Add login form",
            "open",
            Some(false),
            false,
            "alice",
            end("octo", "hello", "feature/login", LOGIN_SHA),
        ),
        4 => (
            "Fix typo in README",
            "open",
            Some(false),
            false,
            "bob",
            end("forker", "hello", "patch-1", FORK_SHA),
        ),
        5 => (
            "Release 1.2",
            "closed",
            Some(false),
            true,
            "alice",
            end("octo", "hello", "feature", MAIN_SHA),
        ),
        6 => (
            "WIP: rework settings",
            "open",
            None,
            false,
            "carol",
            end("octo", "hello", "feature", MAIN_SHA),
        ),
        7 => (
            "Abandoned idea",
            "closed",
            Some(false),
            false,
            "carol",
            end("octo", "hello", "feature", MAIN_SHA),
        ),
        _ => return None,
    };
    let mut pull = json!({
        "id": 900 + number, "url": format!("{base}/octo/hello/pulls/{number}"), "number": number, "user": user_json(base, author, 5),
        "title": title, "body": "", "labels": [], "milestone": null, "assignee": null, "assignees": null, "requested_reviewers": null,
        "state": state, "is_locked": false, "comments": 1, "html_url": format!("{base}/octo/hello/pulls/{number}"),
        "diff_url": format!("{base}/octo/hello/pulls/{number}.diff"), "patch_url": format!("{base}/octo/hello/pulls/{number}.patch"),
        "mergeable": true, "merged": merged, "merged_at": if merged { json!("2024-05-02T12:00:00Z") } else { Value::Null },
        "merge_commit_sha": if merged { json!(MAIN_SHA) } else { Value::Null }, "merged_by": null, "allow_maintainer_edit": false,
        "base": end("octo", "hello", "main", MAIN_SHA), "head": head, "merge_base": OLD_SHA, "due_date": null,
        "created_at": "2024-05-01T12:00:00Z", "updated_at": "2024-05-01T12:00:00Z", "closed_at": null, "pin_order": 0,
    });
    if let Some(draft) = draft {
        pull["draft"] = json!(draft);
    }
    Some(pull)
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
        _ => not_found(&f.base),
    }
}

async fn issue(
    State(f): State<Fake>,
    Path((owner, repo, number)): Path<(String, String, String)>,
) -> Response {
    if (owner.as_str(), repo.as_str()) != ("octo", "hello") {
        return not_found(&f.base);
    }
    let n: u64 = number.parse().unwrap_or(0);
    let (title, pull_request) = match n {
        12 => ("Settings page is blank", Value::Null),
        // Gitea numbers issues and pull requests alike and marks the latter.
        3 => (
            "Add login form",
            json!({"merged": false, "merged_at": null, "draft": false, "html_url": format!("{}/octo/hello/pulls/3", f.base)}),
        ),
        _ => return not_found(&f.base),
    };
    Json(json!({
        "id": 700 + n, "url": format!("{}/api/v1/repos/octo/hello/issues/{n}", f.base), "html_url": format!("{}/octo/hello/issues/{n}", f.base),
        "number": n, "user": user_json(&f.base, "erin", 9), "original_author": "", "original_author_id": 0, "title": title, "body": "",
        "ref": "", "assets": [], "labels": [], "milestone": null, "assignee": null, "assignees": null, "state": "open", "is_locked": false,
        "comments": 0, "created_at": "2024-05-01T12:00:00Z", "updated_at": "2024-05-01T12:00:00Z", "closed_at": null, "due_date": null,
        "pull_request": pull_request, "repository": {"id": 42, "name": "hello", "owner": "octo", "full_name": "octo/hello"}, "pin_order": 0,
    }))
    .into_response()
}

async fn start() -> (Server, Arc<Mutex<Vec<String>>>) {
    let searches = Arc::new(Mutex::new(Vec::new()));
    let recorded = searches.clone();
    let server = Server::start(move |base| {
        let fake = Fake { base, searches };
        let fallback_base = fake.base.clone();
        let api = Router::new()
            .route("/user", get(user))
            .route("/user/orgs", get(user_orgs))
            .route("/repos/search", get(search))
            .route("/repos/{owner}/{repo}", get(repository))
            .route("/repos/{owner}/{repo}/branches", get(repo_branches))
            .route("/repos/{owner}/{repo}/tags", get(repo_tags))
            .route("/repos/{owner}/{repo}/git/commits/{sha}", get(commit))
            .route("/repos/{owner}/{repo}/pulls/{number}", get(pull))
            .route("/repos/{owner}/{repo}/issues/{number}", get(issue))
            .fallback(move || async move { not_found(&fallback_base) })
            .route_layer(middleware::from_fn_with_state(fake.clone(), auth))
            .with_state(fake);
        Router::new().nest("/api/v1", api)
    })
    .await;
    (server, recorded)
}

// A test table: the size of its rows does not matter.
#[allow(clippy::large_enum_variant)]
enum Want {
    Ctx(Context),
    Err(&'static str, &'static str),
}

#[tokio::test]
async fn context_urls_resolve_against_the_api() {
    let (server, _) = start().await;
    let provider = server.provider(ScmKind::Gitea);
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
            scm_id: "gitea".into(),
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
    let pr = |id: &str,
              title: &str,
              from: &str,
              author: &str,
              state: ChangeState,
              draft: bool,
              sha: &str,
              head: &str| {
        let head_clone_url = format!("{web}/{head}/hello.git");
        // A PR from a fork opens the fork at its branch, with the base upstream.
        let git = if head == "octo" {
            GitContext {
                branch: from.into(),
                ..hello.clone()
            }
        } else {
            GitContext {
                owner: head.into(),
                clone_url: head_clone_url.clone(),
                branch: from.into(),
                upstream_remote_url: hello.clone_url.clone(),
                ..hello.clone()
            }
        };
        Want::Ctx(Context {
            git,
            change: Some(ChangeRequest {
                id: id.into(),
                title: title.into(),
                from_branch: from.into(),
                to_branch: "main".into(),
                url: format!("{web}/octo/hello/pulls/{id}"),
                author: author.into(),
                draft,
                state,
                head_sha: sha.into(),
                head_clone_url,
                head_owner: head.into(),
                head_repo: "hello".into(),
            }),
            issue: None,
            scm_id: "gitea".into(),
        })
    };
    let login_pr = || {
        pr(
            "3",
            "Add login form",
            "feature/login",
            "alice",
            ChangeState::Open,
            false,
            LOGIN_SHA,
            "octo",
        )
    };

    let cases: Vec<(String, Want)> = vec![
        (format!("{web}/octo/hello"), on_branch("main")),
        (format!("{web}/octo/hello.git"), on_branch("main")),
        (format!("{web}/octo/hello/"), on_branch("main")),
        // What someone pastes from gitea.com; the registry routes hosts, the provider reads the path.
        ("https://www.gitea.com/octo/hello".into(), on_branch("main")),
        ("git@127.0.0.1:octo/hello.git".into(), on_branch("main")),
        (
            "ssh://git@127.0.0.1:2222/octo/hello.git".into(),
            on_branch("main"),
        ),
        (
            format!("{web}/octo/big/issues"),
            ctx(GitContext {
                branch: "trunk".into(),
                ..repo("octo", "big")
            }),
        ),
        // Branches and tags as Gitea writes them, slashes resolved against the real refs.
        (
            format!("{web}/octo/hello/src/branch/main"),
            on_branch("main"),
        ),
        (
            format!("{web}/octo/hello/src/branch/feature"),
            on_branch("feature"),
        ),
        (
            format!("{web}/octo/hello/src/branch/feature/login"),
            on_branch("feature/login"),
        ),
        (
            format!("{web}/octo/hello/src/branch/feature/login/cmd/app/main.go"),
            on_branch("feature/login"),
        ),
        (
            format!("{web}/octo/hello/raw/branch/renovate/golang.org-x-net-0.x/go.mod"),
            on_branch("renovate/golang.org-x-net-0.x"),
        ),
        (format!("{web}/octo/hello/src/tag/v1.0"), on_tag("v1.0")),
        (
            format!("{web}/octo/hello/src/tag/release/v1.2/docs"),
            on_tag("release/v1.2"),
        ),
        (
            format!("{web}/octo/hello/src/tag/release/notes.md"),
            on_tag("release"),
        ),
        (
            format!("{web}/octo/hello/releases/tag/v1.0"),
            on_tag("v1.0"),
        ),
        // Older Gitea: src/<ref>/…, branch or tag.
        (
            format!("{web}/octo/hello/src/main/README.md"),
            on_branch("main"),
        ),
        (
            format!("{web}/octo/hello/src/release/v1.2"),
            on_tag("release/v1.2"),
        ),
        // Past the first page (50) of branches.
        (
            format!("{web}/octo/big/src/branch/topic/deep/nested/docs"),
            ctx(GitContext {
                branch: "topic/deep/nested".into(),
                ..repo("octo", "big")
            }),
        ),
        // Commits, full and abbreviated.
        (
            format!("{web}/octo/hello/src/commit/{OLD_SHA}/README.md"),
            at_commit(OLD_SHA),
        ),
        (
            format!("{web}/octo/hello/commit/{LOGIN_SHA}"),
            at_commit(LOGIN_SHA),
        ),
        (
            format!("{web}/octo/hello/commit/1e2d3c4"),
            at_commit(LOGIN_SHA),
        ),
        // Pull requests: same repository, from a fork, merged, draft by title, closed.
        (format!("{web}/octo/hello/pulls/3"), login_pr()),
        (format!("{web}/octo/hello/pulls/3/files"), login_pr()),
        (
            format!("{web}/octo/hello/pulls/4"),
            pr(
                "4",
                "Fix typo in README",
                "patch-1",
                "bob",
                ChangeState::Open,
                false,
                FORK_SHA,
                "forker",
            ),
        ),
        (
            format!("{web}/octo/hello/pulls/5"),
            pr(
                "5",
                "Release 1.2",
                "feature",
                "alice",
                ChangeState::Merged,
                false,
                MAIN_SHA,
                "octo",
            ),
        ),
        (
            format!("{web}/octo/hello/pulls/6"),
            pr(
                "6",
                "WIP: rework settings",
                "feature",
                "carol",
                ChangeState::Open,
                true,
                MAIN_SHA,
                "octo",
            ),
        ),
        (
            format!("{web}/octo/hello/pulls/7"),
            pr(
                "7",
                "Abandoned idea",
                "feature",
                "carol",
                ChangeState::Closed,
                false,
                MAIN_SHA,
                "octo",
            ),
        ),
        // Issues; an issue number that is a pull request is one.
        (
            format!("{web}/octo/hello/issues/12"),
            Want::Ctx(Context {
                git: hello.clone(),
                change: None,
                issue: Some(Issue {
                    id: "12".into(),
                    title: "Settings page is blank".into(),
                }),
                scm_id: "gitea".into(),
            }),
        ),
        (format!("{web}/octo/hello/issues/3"), login_pr()),
        // What does not exist, and what is not a repository.
        (
            format!("{web}/octo/hello/src/branch/no-such-branch"),
            Want::Err("not_found", "no-such-branch"),
        ),
        (
            format!("{web}/octo/hello/src/branch/v1.0"),
            Want::Err("not_found", "no branch matching \"v1.0\""),
        ),
        (
            format!("{web}/octo/hello/src/tag/main/README.md"),
            Want::Err("not_found", "no tag matching \"main/README.md\""),
        ),
        (
            format!("{web}/octo/hello/commit/deadbeefcafe"),
            Want::Err("not_found", "deadbeefcafe"),
        ),
        (
            format!("{web}/octo/hello/pulls/999"),
            Want::Err("not_found", "#999"),
        ),
        (
            format!("{web}/octo/missing"),
            Want::Err("not_found", "octo/missing"),
        ),
        (
            format!("{web}/octo/hello/pulls/new"),
            Want::Err("invalid_argument", "new"),
        ),
        (
            format!("{web}/octo/hello/src/commit/HEAD"),
            Want::Err("invalid_argument", "HEAD"),
        ),
        (
            format!("{web}/octo"),
            Want::Err("invalid_argument", "does not point to a Gitea repository"),
        ),
        (
            format!("{web}/explore/repos"),
            Want::Err("invalid_argument", "does not point to a Gitea repository"),
        ),
        (
            format!("{web}/user/settings/applications"),
            Want::Err("invalid_argument", "does not point to a Gitea repository"),
        ),
    ];
    assert!(cases.len() >= 10);
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
async fn context_needs_a_token_in_giteas_header() {
    let (server, _) = start().await;
    let provider = server.provider(ScmKind::Gitea);
    let url = ContextUrl::parse(&format!("{}/octo/hello", server.base)).unwrap();
    assert!(matches!(
        provider.parse_context(&url, &creds("")).await,
        Err(ScmError::AuthenticationRequired { .. })
    ));
    assert!(matches!(
        provider
            .parse_context(&url, &creds("ffffffffffffffffffffffffffffffffffffffff"))
            .await,
        Err(ScmError::AuthenticationRequired { .. })
    ));
}

#[tokio::test]
async fn keyword_search_pages_by_total_count() {
    let (server, searches) = start().await;
    let provider = server.provider(ScmKind::Gitea);
    let first = provider
        .search_repositories(&creds(GOOD), "hello", SearchMode::Keyword, 1, 10)
        .await
        .unwrap();
    assert_eq!(searches.lock().unwrap().last().unwrap(), "hello");
    assert_eq!(
        (
            first.items.len(),
            first.total_count,
            first.total_pages,
            first.has_next
        ),
        (10, Some(25), Some(3), true)
    );
    assert_eq!(first.items[0].name, "octo/hello");
    assert_eq!(first.items[0].url, format!("{}/octo/hello", server.base));
    let last = provider
        .search_repositories(&creds(GOOD), "hello", SearchMode::Keyword, 3, 10)
        .await
        .unwrap();
    assert_eq!(
        (
            last.items.len(),
            last.total_count,
            last.total_pages,
            last.has_next
        ),
        (5, Some(25), Some(3), false)
    );
    // Several words: any of them (Gitea's comma-separated keywords).
    let either = provider
        .search_repositories(&creds(GOOD), "goodbye  big", SearchMode::Keyword, 1, 50)
        .await
        .unwrap();
    assert_eq!(searches.lock().unwrap().last().unwrap(), "goodbye,big");
    assert_eq!(
        either
            .items
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        ["octo/big", "someone/goodbye"]
    );
    // Page sizes above Gitea's maximum are cut to it.
    let all = provider
        .search_repositories(&creds(GOOD), "", SearchMode::Keyword, 1, 100)
        .await
        .unwrap();
    assert_eq!(
        (all.items.len(), all.total_count, all.has_next),
        (27, Some(27), false)
    );
}

#[tokio::test]
async fn native_search_passes_the_query_unchanged() {
    let (server, searches) = start().await;
    let provider = server.provider(ScmKind::Gitea);
    let found = provider
        .search_repositories(&creds(GOOD), "service-0", SearchMode::Native, 2, 5)
        .await
        .unwrap();
    assert_eq!(searches.lock().unwrap().last().unwrap(), "service-0");
    assert_eq!(
        found
            .items
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        [
            "octo/hello-service-06",
            "octo/hello-service-07",
            "octo/hello-service-08",
            "octo/hello-service-09"
        ]
    );
    assert_eq!(
        (
            found.page,
            found.total_count,
            found.total_pages,
            found.has_next
        ),
        (2, Some(9), Some(2), false)
    );
}

#[tokio::test]
async fn organizations_page_and_filter() {
    let (server, _) = start().await;
    let provider = server.provider(ScmKind::Gitea);
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
        ["acme", "acme-labs", "gitea-org"]
    );
    assert_eq!(first.items[2].url, format!("{}/gitea-org", server.base));
    assert_eq!(
        (first.total_count, first.total_pages, first.has_next),
        (Some(7), Some(3), true)
    );
    let acme = provider
        .list_organizations(&creds(GOOD), "ACME", 1, 50)
        .await
        .unwrap();
    assert_eq!(
        acme.items
            .iter()
            .map(|o| o.name.as_str())
            .collect::<Vec<_>>(),
        ["acme", "acme-labs", "ACME-archive"]
    );
    assert_eq!(
        (acme.total_count, acme.total_pages, acme.has_next),
        (Some(3), Some(1), false)
    );
}

#[tokio::test]
async fn tokens_and_repository_access() {
    let (server, _) = start().await;
    let provider = server.provider(ScmKind::Gitea);
    provider.check_token(&creds(GOOD)).await.unwrap();
    assert!(matches!(
        provider.check_token(&creds("nope")).await,
        Err(ScmError::AuthenticationRequired { .. })
    ));
    assert!(matches!(
        provider.check_token(&creds("")).await,
        Err(ScmError::AuthenticationRequired { .. })
    ));

    let url = |path: &str| ContextUrl::parse(&format!("{}/{path}", server.base)).unwrap();
    provider
        .check_repository_access(&creds(GOOD), &url("octo/hello/src/branch/main"))
        .await
        .unwrap();
    provider
        .check_repository_access(
            &creds(GOOD),
            &ContextUrl::parse("git@127.0.0.1:forker/hello.git").unwrap(),
        )
        .await
        .unwrap();
    match provider
        .check_repository_access(&creds(GOOD), &url("octo/secret"))
        .await
    {
        Err(ScmError::NotFound(m)) => assert!(
            m.contains("octo/secret") && m.contains("cannot see it"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    match provider
        .check_repository_access(&creds(GOOD), &url("scoped/repo"))
        .await
    {
        Err(ScmError::PermissionDenied(m)) => assert!(
            m.contains("scoped/repo") && m.contains("read:repository"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn rate_limits_failures_and_deadlines() {
    let (server, _) = start().await;
    let provider = server.provider(ScmKind::Gitea);
    let hello = ContextUrl::parse(&format!("{}/octo/hello", server.base)).unwrap();
    match provider.parse_context(&hello, &creds(EXHAUSTED)).await {
        Err(ScmError::RateLimited {
            retry_after_secs: Some(secs),
            ..
        }) => assert!(secs > 0 && secs <= 300, "{secs}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        provider
            .list_organizations(&creds(THROTTLED), "", 1, 10)
            .await,
        Err(ScmError::RateLimited {
            host: server.host_name(),
            retry_after_secs: Some(120)
        })
    );
    let broken = ContextUrl::parse(&format!("{}/broken/repo", server.base)).unwrap();
    assert!(matches!(
        provider.parse_context(&broken, &creds(GOOD)).await,
        Err(ScmError::Unavailable(_))
    ));
    let hasty = provider_for(server.host(ScmKind::Gitea), Duration::from_millis(300));
    let slow = ContextUrl::parse(&format!("{}/slow/repo", server.base)).unwrap();
    match hasty.check_repository_access(&creds(GOOD), &slow).await {
        Err(ScmError::Unavailable(m)) => assert!(m.contains("did not answer in time"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn sign_in_help_points_at_the_host() {
    let (server, _) = start().await;
    let provider = server.provider(ScmKind::Gitea);
    let help = provider.pat_help();
    assert_eq!(
        help.create_url,
        format!("{}/user/settings/applications", server.base)
    );
    assert!(help.docs_url.starts_with("https://docs.gitea.com/"));
    assert!(help.example.len() == 40 && help.example.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(help.required_scopes.iter().any(|s| s == "read:repository"));
    assert!(
        help.required_scopes
            .iter()
            .any(|s| s == "read:organization")
    );
    assert_eq!(
        provider.oauth_authorize_url(),
        format!("{}/login/oauth/authorize", server.base)
    );
    assert_eq!(
        provider.oauth_token_url(),
        format!("{}/login/oauth/access_token", server.base)
    );
    assert_eq!(
        provider.oauth_scopes(),
        ["read:repository", "read:organization", "read:user"]
    );
    assert_eq!(
        provider.host().api_base(),
        format!("{}/api/v1", server.base)
    );
}
