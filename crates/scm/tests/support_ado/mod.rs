//! A local Azure DevOps Server for the provider's tests, with two ways in:
//! collections named by the first path segment (`/contoso/…`, `/archive/…`,
//! listed at `/_apis/projectCollections`), as on a server configured without a
//! virtual directory or on dev.azure.com, and one collection below a virtual
//! directory (`/tfs/DefaultCollection/…`).
//!
//! Like Azure DevOps Server 2022 it speaks REST api-versions up to 7.0 and
//! refuses newer ones; it takes PATs as Basic passwords (any user name) and
//! Entra tokens as Bearer; a rejected credential gets 401 only when the client
//! sends `X-TFS-FedAuthRedirect: Suppress`, else 203 and a sign-in page. Refs
//! page with `$top` and `x-ms-continuationtoken`, projects with `$top`/`$skip`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

/// A PAT of Alice, who sees everything.
pub const PAT: &str = "ado-alice-pat-52charsxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
/// A PAT of a reader who only sees project Fabrikam.
pub const READER: &str = "ado-reader-pat";
/// A PAT whose user has used up the rate limit.
pub const THROTTLED: &str = "ado-throttled-pat";
pub const RETRY_AFTER: u64 = 30;
/// An Entra ID access token (a JWT) of Alice.
pub const ENTRA: &str = "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
/// `Team NNN` projects in each collection besides the named ones, for paging.
pub const TEAMS: usize = 120;

/// A fake but stable 40-hex object id for `seed`.
pub fn sha(seed: &str) -> String {
    let mut h: u64 = 0x84222325cbf29ce4;
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
    id: String,
    project: String,
    name: String,
    default_branch: Option<String>,
    /// Full ref names with object ids and, for annotated tags, peeled commits.
    refs: Vec<(String, String, Option<String>)>,
    commits: Vec<String>,
}

struct Collection {
    projects: Vec<String>,
    repos: Vec<Repo>,
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub query: String,
    /// The Basic user name, if Basic credentials came.
    pub basic_user: Option<String>,
    pub bearer: bool,
}

struct Data {
    collections: HashMap<&'static str, Collection>,
    log: Mutex<Vec<Seen>>,
}

pub struct AzureDevOpsServer {
    pub port: u16,
    data: Arc<Data>,
}

impl AzureDevOpsServer {
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.data.log.lock().unwrap().clone()
    }
}

fn repo(project: &str, name: &str, branches: &[&str], default: Option<&str>) -> Repo {
    let refs: Vec<(String, String, Option<String>)> = branches
        .iter()
        .map(|b| {
            (
                format!("refs/heads/{b}"),
                sha(&format!("{project}/{name}@{b}")),
                None,
            )
        })
        .collect();
    let commits = refs.iter().map(|(_, c, _)| c.clone()).collect();
    Repo {
        id: uuid_for(&format!("{project}/{name}")),
        project: project.into(),
        name: name.into(),
        default_branch: default.map(|d| format!("refs/heads/{d}")),
        refs,
        commits,
    }
}

fn uuid_for(seed: &str) -> String {
    let h = sha(seed);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn full_collection() -> Collection {
    let mut web = repo(
        "Fabrikam",
        "web",
        &[
            "main",
            "feature/login",
            "feature/login/ui",
            "users/jd/spike",
        ],
        Some("main"),
    );
    for i in 1..=40 {
        let name = format!("feature/login-{i:03}");
        let c = sha(&format!("Fabrikam/web@{name}"));
        web.refs
            .push((format!("refs/heads/{name}"), c.clone(), None));
        web.commits.push(c);
    }
    // v1.0 is annotated (its object is a tag object), v2.0 lightweight.
    let v1 = sha("Fabrikam/web tag v1.0 commit");
    web.refs.push((
        "refs/tags/v1.0".into(),
        sha("Fabrikam/web tag object v1.0"),
        Some(v1.clone()),
    ));
    let v2 = sha("Fabrikam/web tag v2.0 commit");
    web.refs.push(("refs/tags/v2.0".into(), v2.clone(), None));
    web.commits
        .extend([v1, v2, sha("Fabrikam/web initial commit")]);
    web.refs.sort_by(|a, b| a.0.cmp(&b.0));

    let mut projects = vec![
        "Fabrikam".to_string(),
        "Fabrikam Fiber".to_string(),
        "Tailspin".to_string(),
    ];
    projects.extend((1..=TEAMS).map(|i| format!("Team {i:03}")));
    Collection {
        projects,
        repos: vec![
            web,
            repo("Fabrikam", "Fabrikam", &["main"], Some("main")),
            repo("Fabrikam", "empty", &[], None),
            repo("Fabrikam", "slow", &["main"], Some("main")),
            repo("Fabrikam Fiber", "fiber app", &["develop"], Some("develop")),
            repo("Tailspin", "web-fork", &["main", "fix/css"], Some("main")),
            repo("Tailspin", "toys", &["main"], Some("main")),
        ],
    }
}

pub async fn start() -> AzureDevOpsServer {
    let mut collections = HashMap::new();
    collections.insert("contoso", full_collection());
    collections.insert("DefaultCollection", full_collection());
    collections.insert(
        "archive",
        Collection {
            projects: vec!["Legacy".into()],
            repos: vec![repo("Legacy", "old-web", &["master"], Some("master"))],
        },
    );
    let data = Arc::new(Data {
        collections,
        log: Mutex::new(Vec::new()),
    });
    let app = Router::new().fallback(handle).with_state(data.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    AzureDevOpsServer { port, data }
}

#[derive(Clone, Copy, PartialEq)]
enum User {
    Alice,
    Reader,
}

fn json_status(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn vss_error(status: StatusCode, type_key: &str, message: &str) -> Response {
    json_status(
        status,
        json!({"$id": "1", "innerException": null, "message": message,
               "typeName": format!("Microsoft.TeamFoundation.{type_key}, Microsoft.TeamFoundation"),
               "typeKey": type_key, "errorCode": 0, "eventId": 3000}),
    )
}

fn decode(segment: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", segment.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn authenticate(headers: &HeaderMap) -> (Result<User, Response>, Option<String>, bool) {
    let header = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let (secret, basic_user, bearer) = if let Some(b64) = header.strip_prefix("Basic ") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .unwrap_or_default();
        let (user, pass) = decoded.split_once(':').unwrap_or(("", ""));
        (pass.to_string(), Some(user.to_string()), false)
    } else if let Some(t) = header.strip_prefix("Bearer ") {
        (t.to_string(), None, true)
    } else {
        (String::new(), None, false)
    };
    let user = match (secret.as_str(), bearer) {
        (PAT, false) | (ENTRA, true) => Ok(User::Alice),
        (READER, false) => Ok(User::Reader),
        (THROTTLED, false) => {
            let mut r = vss_error(
                StatusCode::TOO_MANY_REQUESTS,
                "RequestBlockedException",
                "TF400733: The request has been blocked: too many requests.",
            );
            r.headers_mut().insert("retry-after", RETRY_AFTER.to_string().parse().unwrap());
            Err(r)
        }
        _ if headers.get("x-tfs-fedauthredirect").and_then(|v| v.to_str().ok()) == Some("Suppress") => Err(vss_error(
            StatusCode::UNAUTHORIZED,
            "UnauthorizedRequestException",
            "TF400813: The user '' is not authorized to access this resource.",
        )),
        _ => Err((
            StatusCode::NON_AUTHORITATIVE_INFORMATION,
            [("content-type", "text/html; charset=utf-8")],
            "<!DOCTYPE html><html><head><title>Azure DevOps Services | Sign In</title></head><body>Sign in</body></html>",
        )
            .into_response()),
    };
    (user, basic_user, bearer)
}

async fn handle(State(data): State<Arc<Data>>, request: Request) -> Response {
    let uri = request.uri().clone();
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let (user, basic_user, bearer) = authenticate(request.headers());
    data.log.lock().unwrap().push(Seen {
        path: uri.path().to_string(),
        query: uri.query().unwrap_or_default().to_string(),
        basic_user,
        bearer,
    });
    let user = match user {
        Ok(u) => u,
        Err(r) => return r,
    };
    let segments: Vec<String> = uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode)
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();

    // connectionData is unversioned; everything else wants an api-version this server knows.
    let versioned = !segs.ends_with(&["_apis", "connectionData"]);
    if versioned {
        match query
            .get("api-version")
            .map(|v| v.split('-').next().unwrap_or_default().parse::<f32>())
        {
            None => {
                return vss_error(
                    StatusCode::BAD_REQUEST,
                    "VssServiceException",
                    "No api-version was supplied for the GET request.",
                );
            }
            Some(Ok(v)) if v <= 7.0 => {}
            Some(_) => {
                return vss_error(
                    StatusCode::BAD_REQUEST,
                    "VssVersionOutOfRangeException",
                    "The requested REST API version is out of range for this server. The latest REST API version for this server is 7.0.",
                );
            }
        }
    }

    let (collection, rest) = match segs.as_slice() {
        ["_apis", "connectionData"] => return connection_data(),
        ["_apis", "projectCollections"] => {
            let mut names: Vec<&str> = vec!["contoso", "archive"];
            names.sort();
            let value: Vec<Value> = names
                .iter()
                .map(|n| json!({"id": uuid_for(n), "name": n, "url": format!("http://127.0.0.1/_apis/projectCollections/{}", uuid_for(n))}))
                .collect();
            return axum::Json(json!({"count": value.len(), "value": value})).into_response();
        }
        // The server's virtual directory, with one collection below it.
        ["tfs", "_apis", "connectionData"] => return connection_data(),
        ["tfs", "_apis", "projectCollections"] => {
            let n = "DefaultCollection";
            let value = vec![
                json!({"id": uuid_for(n), "name": n, "url": format!("http://127.0.0.1/tfs/_apis/projectCollections/{}", uuid_for(n))}),
            ];
            return axum::Json(json!({"count": value.len(), "value": value})).into_response();
        }
        ["tfs", "DefaultCollection", rest @ ..] => ("DefaultCollection", rest),
        [name @ ("contoso" | "archive"), rest @ ..] => (*name, rest),
        _ => {
            return vss_error(
                StatusCode::NOT_FOUND,
                "CollectionNotFound",
                "TF400898: collection not found",
            );
        }
    };
    let coll = &data.collections[collection];
    let can_see = |project: &str| user == User::Alice || project == "Fabrikam";
    let base = match collection {
        "DefaultCollection" => "http://127.0.0.1/tfs/DefaultCollection".to_string(),
        c => format!("http://127.0.0.1/{c}"),
    };

    match rest {
        ["_apis", "connectionData"] => connection_data(),
        ["_apis", "projects"] => {
            let top: usize = query
                .get("$top")
                .and_then(|t| t.parse().ok())
                .unwrap_or(100);
            let skip: usize = query.get("$skip").and_then(|t| t.parse().ok()).unwrap_or(0);
            let value: Vec<Value> = coll
                .projects
                .iter()
                .filter(|p| can_see(p))
                .skip(skip)
                .take(top)
                .map(|p| project_json(&base, p))
                .collect();
            axum::Json(json!({"count": value.len(), "value": value})).into_response()
        }
        ["_apis", "git", "repositories"] => {
            let value: Vec<Value> = coll
                .repos
                .iter()
                .filter(|r| can_see(&r.project))
                .map(|r| repo_json(&base, r))
                .collect();
            axum::Json(json!({"count": value.len(), "value": value})).into_response()
        }
        [project, "_apis", "git", "repositories", repo, tail @ ..] => {
            let found = coll.repos.iter().find(|r| {
                r.project.eq_ignore_ascii_case(project)
                    && (r.name.eq_ignore_ascii_case(repo) || r.id == *repo)
            });
            let Some(r) = found.filter(|r| can_see(&r.project)) else {
                return vss_error(
                    StatusCode::NOT_FOUND,
                    "GitRepositoryNotFoundException",
                    &format!(
                        "TF401019: The Git repository with name or identifier {repo} does not exist or you do not have permissions for the operation you are attempting."
                    ),
                );
            };
            repository_api(&base, coll, r, tail, &query).await
        }
        _ => vss_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            "The resource cannot be found.",
        ),
    }
}

fn connection_data() -> Response {
    axum::Json(json!({
        "authenticatedUser": {"id": uuid_for("alice"), "descriptor": "Microsoft.IdentityModel.Claims.ClaimsIdentity;alice",
                               "subjectDescriptor": "aad.YWxpY2U", "providerDisplayName": "Alice", "isActive": true},
        "authorizedUser": {"id": uuid_for("alice"), "providerDisplayName": "Alice", "isActive": true},
        "instanceId": uuid_for("instance"), "deploymentId": uuid_for("deployment"), "deploymentType": "onPremises",
        "locationServiceData": {"serviceOwner": uuid_for("owner"), "defaultAccessMappingMoniker": "PublicAccessMapping"}
    }))
    .into_response()
}

fn project_json(base: &str, name: &str) -> Value {
    json!({"id": uuid_for(name), "name": name, "url": format!("{base}/_apis/projects/{}", uuid_for(name)),
           "state": "wellFormed", "revision": 11, "visibility": "private", "lastUpdateTime": "2024-05-01T10:00:00Z"})
}

fn repo_json(base: &str, r: &Repo) -> Value {
    let enc = |s: &str| s.replace(' ', "%20");
    let mut v = json!({
        "id": r.id, "name": r.name, "url": format!("{base}/_apis/git/repositories/{}", r.id),
        "project": project_json(base, &r.project),
        "size": 1024, "isDisabled": false, "isInMaintenance": false,
        "remoteUrl": format!("{base}/{}/_git/{}", enc(&r.project), enc(&r.name)),
        "sshUrl": format!("ssh://127.0.0.1:22/{}/_git/{}", enc(&r.project), enc(&r.name)),
        "webUrl": format!("{base}/{}/_git/{}", enc(&r.project), enc(&r.name)),
    });
    if let Some(d) = &r.default_branch {
        v["defaultBranch"] = json!(d);
    }
    v
}

async fn repository_api(
    base: &str,
    coll: &Collection,
    r: &Repo,
    tail: &[&str],
    query: &HashMap<String, String>,
) -> Response {
    match tail {
        [] => {
            if r.name == "slow" {
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            axum::Json(repo_json(base, r)).into_response()
        }
        ["refs"] => {
            let filter = query.get("filter").cloned().unwrap_or_default();
            let peel = query.get("peelTags").map(|p| p == "true").unwrap_or(false);
            let top: usize = query
                .get("$top")
                .and_then(|t| t.parse().ok())
                .unwrap_or(1000);
            let start: usize = query
                .get("continuationToken")
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            let matching: Vec<&(String, String, Option<String>)> = r
                .refs
                .iter()
                .filter(|(n, _, _)| n.starts_with(&format!("refs/{filter}")))
                .collect();
            let page: Vec<Value> = matching
                .iter()
                .skip(start)
                .take(top)
                .map(|(n, o, peeled)| {
                    let mut v = json!({"name": n, "objectId": o, "creator": {"displayName": "Alice"},
                                       "url": format!("{base}/_apis/git/repositories/{}/refs?filter={}", r.id, &n[5..])});
                    if let (true, Some(p)) = (peel, peeled) {
                        v["peeledObjectId"] = json!(p);
                    }
                    v
                })
                .collect();
            let mut response =
                axum::Json(json!({"count": page.len(), "value": page})).into_response();
            if start + top < matching.len() {
                response.headers_mut().insert(
                    "x-ms-continuationtoken",
                    (start + top).to_string().parse().unwrap(),
                );
            }
            response
        }
        ["commits", id] => {
            let hits: Vec<&String> = r
                .commits
                .iter()
                .filter(|c| c.starts_with(&id.to_ascii_lowercase()))
                .collect();
            match hits.as_slice() {
                [c] if id.len() >= 4 => axum::Json(json!({
                    "commitId": c, "treeId": sha(c),
                    "author": {"name": "Alice", "email": "alice@example.com", "date": "2024-05-01T10:00:00Z"},
                    "comment": "Change things", "url": format!("{base}/_apis/git/repositories/{}/commits/{c}", r.id)
                }))
                .into_response(),
                _ => vss_error(
                    StatusCode::NOT_FOUND,
                    "GitObjectNotFoundException",
                    &format!("TF401175: The version descriptor <Commit: {id}> could not be resolved to a version in the repository {}", r.name),
                ),
            }
        }
        ["pullrequests", id] => pull_request(base, coll, r, id),
        _ => vss_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            "The resource cannot be found.",
        ),
    }
}

fn pull_request(base: &str, coll: &Collection, r: &Repo, id: &str) -> Response {
    let head = |repo: &Repo, branch: &str| {
        repo.refs
            .iter()
            .find(|(n, _, _)| *n == format!("refs/heads/{branch}"))
            .map(|(_, o, _)| o.clone())
            .unwrap()
    };
    let fork_repo = coll.repos.iter().find(|x| x.name == "web-fork");
    let (title, status, draft, source, author, fork) = match (r.name.as_str(), id) {
        ("web", "10") => (
            "WIP: login page",
            "active",
            true,
            "feature/login",
            "Alice Smith",
            None,
        ),
        ("web", "11") => (
            "Sign in with SSO",
            "completed",
            false,
            "feature/login/ui",
            "Alice Smith",
            None,
        ),
        ("web", "12") => (
            "Fix the CSS",
            "active",
            false,
            "fix/css",
            "Jane Doe",
            fork_repo,
        ),
        ("web", "13") => (
            "Spike",
            "abandoned",
            false,
            "users/jd/spike",
            "John Doe",
            None,
        ),
        _ => {
            return vss_error(
                StatusCode::NOT_FOUND,
                "GitPullRequestNotFoundException",
                &format!("TF401180: The requested pull request was not found: {id}"),
            );
        }
    };
    let head_sha = head(fork.unwrap_or(r), source);
    let mut v = json!({
        "repository": repo_json(base, r),
        "pullRequestId": id.parse::<u64>().unwrap(), "codeReviewId": 100,
        "status": status, "createdBy": {"displayName": author, "uniqueName": "someone@example.com", "id": uuid_for(author)},
        "creationDate": "2024-05-01T10:00:00Z", "title": title, "description": "",
        "sourceRefName": format!("refs/heads/{source}"), "targetRefName": "refs/heads/main",
        "mergeStatus": "succeeded", "isDraft": draft, "mergeId": uuid_for(id),
        "lastMergeSourceCommit": {"commitId": head_sha, "url": "…"},
        "lastMergeTargetCommit": {"commitId": head(r, "main"), "url": "…"},
        "reviewers": [], "url": format!("{base}/_apis/git/repositories/{}/pullRequests/{id}", r.id),
        "supportsIterations": true
    });
    if let Some(f) = fork {
        v["forkSource"] = json!({"name": format!("refs/heads/{source}"), "repository": repo_json(base, f),
                                 "url": format!("{base}/_apis/git/repositories/{}/forkSource", f.id)});
    }
    axum::Json(v).into_response()
}
