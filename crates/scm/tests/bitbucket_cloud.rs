//! The Bitbucket Cloud provider against a fake Bitbucket (`support_bitbucket_cloud`):
//! context URLs of every form, search across workspaces, workspaces, token and
//! access checks, Bearer and Basic credentials, and how failures (401, 403,
//! 429, 5xx, a slow server) reach callers.

mod support_bitbucket_cloud;

mod common;

use std::time::Duration;

use corral_scm::{
    ChangeRequest, ChangeState, Context, ContextUrl, HostRegistry, Organization, Repository,
    ScmError, SearchMode, provider_for,
};
use support_bitbucket_cloud::{
    ALICE, ALICE_API_TOKEN, ALICE_EMAIL, BOB, FORK_HEAD, FakeBitbucket, GONE_HEAD, INITIAL,
    LIMITED, LOGIN_HEAD, basic, creds,
};

use common::{Expect, With};

const TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn context_urls_resolve_against_the_api() {
    let fake = FakeBitbucket::start().await;
    let bitbucket = fake.provider(TIMEOUT);
    let e = Expect::new(&fake.base, fake.port, "bitbucket");
    let base = &fake.base;
    let port = fake.port;
    let widgets = || e.repo("acme/widgets");
    let change = |id: &str,
                  title: &str,
                  from: &str,
                  state: ChangeState,
                  head_sha: &str,
                  head: &str,
                  author: &str| ChangeRequest {
        id: id.into(),
        title: title.into(),
        from_branch: from.into(),
        to_branch: "main".into(),
        url: format!("{base}/acme/widgets/pull-requests/{id}"),
        author: author.into(),
        draft: false,
        state,
        head_sha: head_sha.into(),
        head_clone_url: if head.is_empty() {
            String::new()
        } else {
            format!("{base}/{head}.git")
        },
        head_owner: head
            .split_once('/')
            .map(|(o, _)| o.to_string())
            .unwrap_or_default(),
        head_repo: head
            .split_once('/')
            .map(|(_, r)| r.to_string())
            .unwrap_or_default(),
    };
    let same_repo = ChangeRequest {
        draft: true,
        ..change(
            "3",
            "Add OAuth login",
            "feature/login",
            ChangeState::Open,
            LOGIN_HEAD,
            "acme/widgets",
            "alice",
        )
    };
    let from_fork = change(
        "4",
        "Fix typo in README",
        "patch-1",
        ChangeState::Merged,
        FORK_HEAD,
        "jdoe/widgets",
        "jdoe",
    );
    let declined = change(
        "5",
        "Rewrite in COBOL",
        "develop",
        ChangeState::Closed,
        INITIAL,
        "acme/widgets",
        "alice",
    );
    let fork_deleted = change(
        "6",
        "From a fork since deleted",
        "gone",
        ChangeState::Open,
        GONE_HEAD,
        "",
        "jdoe",
    );

    let cases: Vec<(String, Context)> = vec![
        // The repository page and clone URLs: the main branch.
        (format!("{base}/acme/widgets"), widgets().branch("main")),
        (format!("{base}/acme/widgets/"), widgets().branch("main")),
        (format!("{base}/ACME/Widgets"), widgets().branch("main")),
        (format!("{base}/acme/widgets.git"), widgets().branch("main")),
        (
            format!("http://alice@127.0.0.1:{port}/acme/widgets.git"),
            widgets().branch("main"),
        ),
        (
            "git@127.0.0.1:acme/widgets.git".into(),
            widgets().branch("main"),
        ),
        (format!("{base}/acme/widgets/src"), widgets().branch("main")),
        // Source views: branches and tags with slashes, the longest real ref wins.
        (
            format!("{base}/acme/widgets/src/main/README.md"),
            widgets().branch("main"),
        ),
        (
            format!("{base}/acme/widgets/src/feature/login/src/app.rs"),
            widgets().branch("feature/login"),
        ),
        (
            format!("{base}/acme/widgets/src/feature/login-v2/"),
            widgets().branch("feature/login-v2"),
        ),
        (
            format!("{base}/acme/widgets/src/release/2024/q1/README.md"),
            widgets().branch("release/2024/q1"),
        ),
        (
            format!("{base}/acme/widgets/src/release/2024/notes.md"),
            widgets().tag("release/2024"),
        ),
        (
            format!("{base}/acme/widgets/src/v1.0/"),
            widgets().tag("v1.0"),
        ),
        // The web UI pins a commit and names the branch in `at`.
        (
            format!(
                "{base}/acme/widgets/src/{}/README.md?at=feature%2Flogin",
                &LOGIN_HEAD[..12]
            ),
            widgets().branch("feature/login"),
        ),
        (
            format!("{base}/acme/widgets/src/{}/README.md", &INITIAL[..12]),
            widgets().commit(INITIAL),
        ),
        (
            format!("{base}/acme/widgets/branch/feature/login"),
            widgets().branch("feature/login"),
        ),
        // Commits, short hashes resolved.
        (
            format!("{base}/acme/widgets/commits/{LOGIN_HEAD}"),
            widgets().commit(LOGIN_HEAD),
        ),
        (
            format!("{base}/acme/widgets/commits/{}", &LOGIN_HEAD[..7]),
            widgets().commit(LOGIN_HEAD),
        ),
        (
            format!("{base}/acme/widgets/commits/branch/feature/login"),
            widgets().branch("feature/login"),
        ),
        // Pull requests: same repository, from a fork, declined, from a deleted fork.
        (
            format!("{base}/acme/widgets/pull-requests/3"),
            widgets().branch("feature/login").change(same_repo),
        ),
        (
            format!("{base}/acme/widgets/pull-requests/4/diff"),
            // The fork at its branch, with the base repository upstream.
            e.repo("jdoe/widgets")
                .branch("patch-1")
                .upstream(&format!("{base}/acme/widgets.git"))
                .change(from_fork),
        ),
        (
            format!("{base}/acme/widgets/pull-requests/5"),
            widgets().branch("develop").change(declined),
        ),
        (
            format!("{base}/acme/widgets/pull-requests/6"),
            widgets().branch("gone").change(fork_deleted),
        ),
        // Issues carry a slug of their title.
        (
            format!("{base}/acme/widgets/issues/2/crash-on-start"),
            widgets().branch("main").issue("2", "Crash on start"),
        ),
        // Other pages open the repository; an empty one has no branch; public repositories of others.
        (
            format!("{base}/acme/widgets/pipelines/results/1"),
            widgets().branch("main"),
        ),
        (format!("{base}/acme/empty"), e.repo("acme/empty")),
        (
            format!("{base}/jdoe/widgets/src/patch-1/README.md"),
            e.repo("jdoe/widgets").branch("patch-1"),
        ),
    ];
    assert!(cases.len() >= 12);

    let mut failures = Vec::new();
    for (url, want) in &cases {
        let parsed = ContextUrl::parse(url).unwrap();
        match bitbucket.parse_context(&parsed, &creds(ALICE)).await {
            Ok(got) if &got == want => {}
            Ok(got) => failures.push(format!("{url}\n  got:  {got:?}\n  want: {want:?}")),
            Err(e) => failures.push(format!("{url}\n  failed: {e:?}")),
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
async fn refs_are_listed_by_bbql_filter_and_bearer_tokens_used() {
    let fake = FakeBitbucket::start().await;
    let bitbucket = fake.provider(TIMEOUT);
    let url =
        ContextUrl::parse(&format!("{}/acme/widgets/src/feature/login/src", fake.base)).unwrap();
    bitbucket.parse_context(&url, &creds(ALICE)).await.unwrap();
    let requests = fake.requests();
    assert_eq!(
        requests[0], "GET /2.0/repositories/acme/widgets",
        "{requests:?}"
    );
    assert!(
        requests.contains(&"GET /2.0/repositories/acme/widgets/refs/branches?q=name+%7E+%22feature%22&pagelen=100".to_string()),
        "{requests:?}"
    );
    assert!(
        fake.auth_schemes().iter().all(|s| *s == "Bearer"),
        "{:?}",
        fake.auth_schemes()
    );
}

#[tokio::test]
async fn a_user_name_with_the_token_means_basic_authentication() {
    let fake = FakeBitbucket::start().await;
    let bitbucket = fake.provider(TIMEOUT);
    let e = Expect::new(&fake.base, fake.port, "bitbucket");
    let api_token = basic(ALICE_EMAIL, ALICE_API_TOKEN);
    let url =
        ContextUrl::parse(&format!("{}/acme/widgets/branch/feature/login", fake.base)).unwrap();
    assert_eq!(
        bitbucket.parse_context(&url, &api_token).await.unwrap(),
        e.repo("acme/widgets").branch("feature/login")
    );
    bitbucket.check_token(&api_token).await.unwrap();
    assert!(
        fake.auth_schemes().iter().all(|s| *s == "Basic"),
        "{:?}",
        fake.auth_schemes()
    );
    let wrong = bitbucket
        .check_token(&basic(ALICE_EMAIL, "ATATT3x-wrong"))
        .await
        .unwrap_err();
    assert!(
        matches!(wrong, ScmError::AuthenticationRequired { .. }),
        "{wrong:?}"
    );
}

#[tokio::test]
async fn failures_map_to_errors_callers_can_act_on() {
    let fake = FakeBitbucket::start().await;
    let bitbucket = fake.provider(TIMEOUT);
    let base = &fake.base;
    // (url, token, Connect code, text the message must contain)
    let cases: Vec<(String, &str, &str, &str)> = vec![
        (
            format!("{base}/acme/widgets"),
            "bb-oauth-expired",
            "failed_precondition",
            "rejected",
        ),
        (
            format!("{base}/acme/widgets"),
            " ",
            "failed_precondition",
            "no Bitbucket token",
        ),
        (format!("{base}/acme/flaky"), ALICE, "unavailable", "500"),
        (format!("{base}/acme/nope"), ALICE, "not_found", "acme/nope"),
        (
            format!("{base}/acme/widgets"),
            BOB,
            "not_found",
            "acme/widgets",
        ),
        (
            format!("{base}/acme/secret"),
            BOB,
            "permission_denied",
            "acme/secret",
        ),
        (
            format!("{base}/acme/widgets/src/no-such-branch/x"),
            ALICE,
            "not_found",
            "no-such-branch/x",
        ),
        (
            format!("{base}/acme/widgets/src/deadbeef00/x"),
            ALICE,
            "not_found",
            "deadbeef00/x",
        ),
        (
            format!("{base}/acme/widgets/branch/v1.0"),
            ALICE,
            "not_found",
            "no branch matching \"v1.0\"",
        ),
        (
            format!("{base}/acme/widgets/commits/0000000"),
            ALICE,
            "not_found",
            "0000000",
        ),
        (
            format!("{base}/acme/widgets/pull-requests/404"),
            ALICE,
            "not_found",
            "#404",
        ),
        (
            format!("{base}/acme/widgets/issues/77"),
            ALICE,
            "not_found",
            "#77",
        ),
        (
            format!("{base}/acme/widget-docs/issues/1"),
            ALICE,
            "not_found",
            "#1",
        ),
        (
            format!("{base}/acme/empty/issues/1"),
            ALICE,
            "not_found",
            "retired",
        ),
        (
            format!("{base}/acme/widgets/pull-requests/abc"),
            ALICE,
            "invalid_argument",
            "abc",
        ),
        (
            format!("{base}/acme"),
            ALICE,
            "invalid_argument",
            "not point to a Bitbucket repository",
        ),
        (
            format!("{base}/account/settings"),
            ALICE,
            "invalid_argument",
            "not point to a Bitbucket repository",
        ),
    ];
    let mut failures = Vec::new();
    for (url, token, code, text) in &cases {
        let parsed = ContextUrl::parse(url).unwrap();
        match bitbucket.parse_context(&parsed, &creds(token)).await {
            Err(e) if e.code() == *code && e.to_string().contains(text) => {}
            other => failures.push(format!(
                "{url} ({token}): want {code} with {text:?}, got {other:?}"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn an_empty_token_never_reaches_bitbucket() {
    let fake = FakeBitbucket::start().await;
    let bitbucket = fake.provider(TIMEOUT);
    let url = ContextUrl::parse(&format!("{}/acme/widgets", fake.base)).unwrap();
    let err = bitbucket.parse_context(&url, &creds("")).await.unwrap_err();
    assert!(
        matches!(err, ScmError::AuthenticationRequired { ref host, .. } if *host == format!("127.0.0.1:{}", fake.port)),
        "{err:?}"
    );
    // A user name without a token is no credential either.
    assert!(matches!(
        bitbucket.check_token(&basic(ALICE_EMAIL, "")).await,
        Err(ScmError::AuthenticationRequired { .. })
    ));
    assert!(matches!(
        bitbucket
            .search_repositories(&creds(""), "x", SearchMode::Keyword, 1, 10)
            .await,
        Err(ScmError::AuthenticationRequired { .. })
    ));
    assert!(matches!(
        bitbucket.list_organizations(&creds(""), "", 1, 10).await,
        Err(ScmError::AuthenticationRequired { .. })
    ));
    assert!(matches!(
        bitbucket.check_repository_access(&creds(""), &url).await,
        Err(ScmError::AuthenticationRequired { .. })
    ));
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());
}

#[tokio::test]
async fn a_used_up_rate_limit_says_when_to_retry() {
    let fake = FakeBitbucket::start().await;
    let bitbucket = fake.provider(TIMEOUT);
    let want = ScmError::RateLimited {
        host: format!("127.0.0.1:{}", fake.port),
        retry_after_secs: Some(42),
    };
    let url = ContextUrl::parse(&format!("{}/acme/widgets", fake.base)).unwrap();
    assert_eq!(
        bitbucket
            .parse_context(&url, &creds(LIMITED))
            .await
            .unwrap_err(),
        want
    );
    assert_eq!(
        bitbucket.check_token(&creds(LIMITED)).await.unwrap_err(),
        want
    );
    assert_eq!(
        bitbucket
            .search_repositories(&creds(LIMITED), "widgets", SearchMode::Keyword, 1, 10)
            .await
            .unwrap_err(),
        want
    );
    assert_eq!(
        bitbucket
            .list_organizations(&creds(LIMITED), "", 1, 10)
            .await
            .unwrap_err(),
        want
    );
}

#[tokio::test]
async fn a_slow_bitbucket_runs_into_the_deadline() {
    let fake = FakeBitbucket::start().await;
    let bitbucket = fake.provider(Duration::from_millis(300));
    let url = ContextUrl::parse(&format!("{}/acme/slow", fake.base)).unwrap();
    let err = bitbucket
        .parse_context(&url, &creds(ALICE))
        .await
        .unwrap_err();
    assert!(matches!(err, ScmError::Unavailable(_)), "{err:?}");
    let err = bitbucket
        .check_repository_access(&creds(ALICE), &url)
        .await
        .unwrap_err();
    assert!(matches!(err, ScmError::Unavailable(_)), "{err:?}");
}

fn names<T>(items: &[T], name: impl Fn(&T) -> &str) -> Vec<&str> {
    items.iter().map(name).collect()
}

#[tokio::test]
async fn keyword_search_pages_across_the_users_workspaces() {
    let fake = FakeBitbucket::start().await;
    let bitbucket = fake.provider(TIMEOUT);
    let base = &fake.base;

    let first = bitbucket
        .search_repositories(&creds(ALICE), "widget", SearchMode::Keyword, 1, 1)
        .await
        .unwrap();
    assert_eq!(
        first.items,
        [Repository {
            name: "acme/widgets".into(),
            url: format!("{base}/acme/widgets"),
        }]
    );
    assert_eq!(
        (
            first.page,
            first.total_pages,
            first.total_count,
            first.has_next
        ),
        (1, Some(2), Some(2), true)
    );
    let second = bitbucket
        .search_repositories(&creds(ALICE), "widget", SearchMode::Keyword, 2, 1)
        .await
        .unwrap();
    assert_eq!(names(&second.items, |r| &r.name), ["acme/widget-docs"]);
    assert!(!second.has_next);

    // No words: every repository of the user, acme's six then tooling's five.
    let middle = bitbucket
        .search_repositories(&creds(ALICE), "", SearchMode::Keyword, 2, 4)
        .await
        .unwrap();
    assert_eq!(
        names(&middle.items, |r| &r.name),
        [
            "acme/slow",
            "acme/flaky",
            "tooling/repo-01",
            "tooling/repo-02"
        ]
    );
    assert_eq!(
        (middle.total_count, middle.total_pages, middle.has_next),
        (Some(11), Some(3), true)
    );
    let last = bitbucket
        .search_repositories(&creds(ALICE), "", SearchMode::Keyword, 3, 4)
        .await
        .unwrap();
    assert_eq!(
        names(&last.items, |r| &r.name),
        ["tooling/repo-03", "tooling/repo-04", "tooling/repo-05"]
    );
    assert!(!last.has_next);
    let beyond = bitbucket
        .search_repositories(&creds(ALICE), "", SearchMode::Keyword, 9, 4)
        .await
        .unwrap();
    assert!(beyond.items.is_empty() && !beyond.has_next);

    // Only the workspaces of the user, and only repositories with explicit access.
    let bobs = bitbucket
        .search_repositories(&creds(BOB), "", SearchMode::Keyword, 1, 10)
        .await
        .unwrap();
    assert_eq!(names(&bobs.items, |r| &r.name), ["bobspace/sandbox"]);

    let requests = fake.requests();
    assert!(
        requests.contains(
            &"GET /2.0/repositories/acme?role=member&q=name+%7E+%22widget%22&page=1&pagelen=1"
                .to_string()
        ),
        "{requests:?}"
    );
    // Never the cross-workspace listing Atlassian removed.
    assert!(
        !requests
            .iter()
            .any(|r| r.starts_with("GET /2.0/repositories?")),
        "{requests:?}"
    );
}

#[tokio::test]
async fn native_search_passes_bbql_through() {
    let fake = FakeBitbucket::start().await;
    let bitbucket = fake.provider(TIMEOUT);
    let query = r#"name ~ "repo-0" AND name != "repo-02""#;
    let found = bitbucket
        .search_repositories(&creds(ALICE), query, SearchMode::Native, 1, 10)
        .await
        .unwrap();
    assert_eq!(
        names(&found.items, |r| &r.name),
        [
            "tooling/repo-01",
            "tooling/repo-03",
            "tooling/repo-04",
            "tooling/repo-05"
        ]
    );
    assert_eq!((found.total_count, found.has_next), (Some(4), false));
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.contains("q=name+%7E+%22repo-0%22+AND+name+%21%3D+%22repo-02%22"))
    );

    let bad = bitbucket
        .search_repositories(&creds(ALICE), "name ~~ x", SearchMode::Native, 1, 10)
        .await
        .unwrap_err();
    assert!(matches!(bad, ScmError::InvalidInput(_)), "{bad:?}");
    let empty = bitbucket
        .search_repositories(&creds(ALICE), "", SearchMode::Native, 1, 10)
        .await
        .unwrap_err();
    assert!(matches!(empty, ScmError::InvalidInput(_)), "{empty:?}");
}

#[tokio::test]
async fn organizations_are_the_users_workspaces() {
    let fake = FakeBitbucket::start().await;
    let bitbucket = fake.provider(TIMEOUT);
    let base = &fake.base;
    let all = bitbucket
        .list_organizations(&creds(ALICE), "", 1, 10)
        .await
        .unwrap();
    assert_eq!(
        all.items,
        [
            Organization {
                name: "acme".into(),
                url: format!("{base}/acme"),
                is_admin: Some(true),
            },
            Organization {
                name: "tooling".into(),
                url: format!("{base}/tooling"),
                is_admin: Some(false),
            },
        ]
    );
    assert_eq!(
        (all.total_count, all.total_pages, all.has_next),
        (Some(2), Some(1), false)
    );
    let paged = bitbucket
        .list_organizations(&creds(ALICE), "", 1, 1)
        .await
        .unwrap();
    assert_eq!(
        (
            names(&paged.items, |o| &o.name),
            paged.total_pages,
            paged.has_next
        ),
        (vec!["acme"], Some(2), true)
    );
    let tool = bitbucket
        .list_organizations(&creds(ALICE), "TOOL", 1, 10)
        .await
        .unwrap();
    assert_eq!(names(&tool.items, |o| &o.name), ["tooling"]);
    let bobs = bitbucket
        .list_organizations(&creds(BOB), "", 1, 10)
        .await
        .unwrap();
    assert_eq!(names(&bobs.items, |o| &o.name), ["bobspace"]);
    let requests = fake.requests();
    assert!(
        requests.contains(
            &"GET /2.0/user/workspaces?q=workspace.slug+%7E+%22TOOL%22&page=1&pagelen=10"
                .to_string()
        ),
        "{requests:?}"
    );
    assert!(
        !requests
            .iter()
            .any(|r| r.starts_with("GET /2.0/workspaces")),
        "{requests:?}"
    );
}

#[tokio::test]
async fn tokens_and_repository_access_are_checked() {
    let fake = FakeBitbucket::start().await;
    let bitbucket = fake.provider(TIMEOUT);
    let base = &fake.base;
    bitbucket.check_token(&creds(ALICE)).await.unwrap();
    assert!(matches!(
        bitbucket.check_token(&creds("bb-oauth-revoked")).await,
        Err(ScmError::AuthenticationRequired { .. })
    ));

    let url = |path: &str| ContextUrl::parse(&format!("{base}/{path}")).unwrap();
    bitbucket
        .check_repository_access(&creds(ALICE), &url("acme/widgets/src/main/README.md"))
        .await
        .unwrap();
    bitbucket
        .check_repository_access(
            &creds(ALICE),
            &ContextUrl::parse("git@127.0.0.1:acme/secret.git").unwrap(),
        )
        .await
        .unwrap();
    // Public repositories are open to everyone; private ones are hidden or refused.
    bitbucket
        .check_repository_access(&creds(BOB), &url("jdoe/widgets"))
        .await
        .unwrap();
    let hidden = bitbucket
        .check_repository_access(&creds(BOB), &url("acme/widgets"))
        .await
        .unwrap_err();
    assert!(matches!(hidden, ScmError::NotFound(_)), "{hidden:?}");
    let refused = bitbucket
        .check_repository_access(&creds(BOB), &url("acme/secret"))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, ScmError::PermissionDenied(_)),
        "{refused:?}"
    );
    let workspace = bitbucket
        .check_repository_access(&creds(ALICE), &url("acme"))
        .await
        .unwrap_err();
    assert!(
        matches!(workspace, ScmError::InvalidInput(_)),
        "{workspace:?}"
    );
}

#[tokio::test]
async fn sign_in_help_points_at_bitbucket() {
    let fake = FakeBitbucket::start().await;
    let bitbucket = fake.provider(TIMEOUT);
    let base = &fake.base;
    assert_eq!(
        bitbucket.oauth_authorize_url(),
        format!("{base}/site/oauth2/authorize")
    );
    assert_eq!(
        bitbucket.oauth_token_url(),
        format!("{base}/site/oauth2/access_token")
    );
    assert_eq!(
        bitbucket.oauth_scopes(),
        ["repository", "pullrequest", "account"]
    );

    let dotorg = provider_for(
        HostRegistry::default().resolve("bitbucket.org").unwrap(),
        TIMEOUT,
    );
    assert_eq!(
        dotorg.oauth_authorize_url(),
        "https://bitbucket.org/site/oauth2/authorize"
    );
    assert_eq!(
        dotorg.oauth_token_url(),
        "https://bitbucket.org/site/oauth2/access_token"
    );
    let help = dotorg.pat_help();
    assert_eq!(
        help.create_url,
        "https://id.atlassian.com/manage-profile/security/api-tokens"
    );
    assert!(
        help.required_scopes
            .contains(&"read:repository:bitbucket".to_string())
    );
    assert!(help.example.starts_with("ATATT"));
}
