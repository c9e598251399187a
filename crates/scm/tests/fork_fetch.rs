//! A pull request from a fork, resolved against a GitHub Enterprise or Gitea
//! API whose host also serves real repositories (`git http-backend`): the
//! clone URL and branch the context names are fetched with `git` as they
//! stand, and the upstream remote is the base repository.

mod support_git_http;

use std::path::Path;
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use corral_scm::host::ConfiguredHost;
use corral_scm::{ContextUrl, Credentials, HostRegistry, ScmKind, provider_for};
use serde_json::json;
use support_git_http::{TempDir, bare_repo_with_commit, git, run};

const ALICE: (&str, &str) = ("alice", "alice-token");

/// Clones the bare repository `from` to `to` and commits on `branch` there;
/// returns the new commit.
fn fork_with_commit(root: &Path, from: &str, to: &str, branch: &str) -> String {
    let (from, to) = (root.join(from), root.join(to));
    let ok = |cmd: &mut std::process::Command| run(cmd, None);
    ok(git()
        .args(["clone", "--quiet", "--bare"])
        .arg(&from)
        .arg(&to));
    let in_fork = || {
        let mut cmd = git();
        cmd.arg("--git-dir").arg(&to);
        cmd
    };
    let tree = ok(in_fork().args(["rev-parse", "main^{tree}"]));
    let parent = ok(in_fork().args(["rev-parse", "main"]));
    let commit = ok(in_fork().args(["commit-tree", &tree, "-p", &parent, "-m", "Fix typo"]));
    ok(in_fork().args(["update-ref", &format!("refs/heads/{branch}"), &commit]));
    commit
}

fn repo_json(owner: &str, name: &str) -> serde_json::Value {
    json!({"name": name, "full_name": format!("{owner}/{name}"), "owner": {"login": owner}, "default_branch": "main"})
}

/// `git fetch`es `branch` of `url` (as alice) into a fresh repository and
/// returns the commit fetched.
fn fetch(url: &str, branch: &str) -> String {
    let work = TempDir::new("fork-fetch");
    let authed = url.replacen("http://", &format!("http://{}:{}@", ALICE.0, ALICE.1), 1);
    let git_in = |args: &[&str]| run(git().arg("-C").arg(&work.0).args(args), None);
    git_in(&["init", "--quiet"]);
    git_in(&["fetch", "--quiet", &authed, branch]);
    git_in(&["rev-parse", "FETCH_HEAD"])
}

#[tokio::test]
async fn a_github_fork_pull_request_names_what_git_can_fetch() {
    fork_pull_request_is_fetchable(ScmKind::GitHub, "/api/v3", "pull").await;
}

#[tokio::test]
async fn a_gitea_fork_pull_request_names_what_git_can_fetch() {
    fork_pull_request_is_fetchable(ScmKind::Gitea, "/api/v1", "pulls").await;
}

/// Both APIs answer these two calls in the same shape; `api` is the API's
/// root below the host, `pulls` the web path word for pull requests.
async fn fork_pull_request_is_fetchable(kind: ScmKind, api: &str, pulls: &str) {
    let root = TempDir::new("fork-repos");
    let base_commit = bare_repo_with_commit(&root.0, "octo/hello.git");
    let fork_commit = fork_with_commit(&root.0, "octo/hello.git", "forker/hello.git", "patch-1");
    let head_sha = fork_commit.clone();
    let routes = Router::new()
        .route(
            &format!("{api}/repos/octo/hello"),
            get(|| async { Json(repo_json("octo", "hello")) }),
        )
        .route(
            &format!("{api}/repos/octo/hello/pulls/8"),
            get(move || {
                let head_sha = head_sha.clone();
                async move {
                    Json(json!({
                        "number": 8, "title": "Fix typo", "state": "open", "draft": false,
                        "user": {"login": "forker"},
                        "head": {"ref": "patch-1", "sha": head_sha, "repo": repo_json("forker", "hello")},
                        "base": {"ref": "main", "sha": "", "repo": repo_json("octo", "hello")},
                    }))
                }
            }),
        );
    let server = support_git_http::start_with(root, &[ALICE], &[], routes).await;
    let host = HostRegistry::new([ConfiguredHost {
        kind,
        host: format!("http://127.0.0.1:{}", server.port),
        virtual_directory: None,
    }])
    .unwrap()
    .resolve(&format!("127.0.0.1:{}", server.port))
    .unwrap();
    let provider = provider_for(host, Duration::from_secs(10));
    let url = ContextUrl::parse(&server.url(&format!("octo/hello/{pulls}/8"))).unwrap();
    let creds = Credentials {
        token: "alice-token".into(),
        username: None,
    };
    let context = provider.parse_context(&url, &creds).await.unwrap();
    let git_context = context.git;
    assert_eq!(git_context.clone_url, server.url("forker/hello.git"));
    assert_eq!(git_context.branch, "patch-1");
    assert_eq!(
        git_context.upstream_remote_url,
        server.url("octo/hello.git")
    );

    let (clone_url, branch, upstream) = (
        git_context.clone_url.clone(),
        git_context.branch.clone(),
        git_context.upstream_remote_url.clone(),
    );
    let (fetched_head, fetched_base) =
        tokio::task::spawn_blocking(move || (fetch(&clone_url, &branch), fetch(&upstream, "main")))
            .await
            .unwrap();
    assert_eq!(fetched_head, fork_commit);
    assert_eq!(fetched_head, context.change.unwrap().head_sha);
    assert_eq!(fetched_base, base_commit);
}
