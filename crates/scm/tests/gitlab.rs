//! The GitLab provider against a fake GitLab (`support_gitlab`): context URLs
//! of every form, search, groups, token and access checks, and how failures
//! (401, 429, 5xx, a slow server) reach callers.

mod support_gitlab;

mod common;

use std::time::Duration;

use corral_scm::{
    ChangeRequest, ChangeState, Context, ContextUrl, HostRegistry, Organization, Repository,
    ScmError, SearchMode, provider_for,
};
use support_gitlab::{
    ALICE, API_HEAD, BOB, FORK_HEAD, FakeGitLab, INITIAL, LIMITED, LOGIN_HEAD, creds,
};

use common::{Expect, With};

const TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn context_urls_resolve_against_the_api() {
    let fake = FakeGitLab::start().await;
    let gitlab = fake.provider(TIMEOUT);
    let e = Expect::new(&fake.base, fake.port, "gitlab");
    let base = &fake.base;
    let widgets = || e.repo("acme/widgets");
    let api = || e.repo("acme/platform/backend/api");
    let same_repo_mr = ChangeRequest {
        id: "7".into(),
        title: "Draft: Add OAuth login".into(),
        from_branch: "feature/login".into(),
        to_branch: "main".into(),
        url: format!("{base}/acme/widgets/-/merge_requests/7"),
        author: "alice".into(),
        draft: true,
        state: ChangeState::Open,
        head_sha: LOGIN_HEAD.into(),
        head_clone_url: format!("{base}/acme/widgets.git"),
        head_owner: "acme".into(),
        head_repo: "widgets".into(),
    };
    let fork_mr = ChangeRequest {
        id: "8".into(),
        title: "Fix typo in README".into(),
        from_branch: "patch-1".into(),
        to_branch: "main".into(),
        url: format!("{base}/acme/widgets/-/merge_requests/8"),
        author: "jdoe".into(),
        draft: false,
        state: ChangeState::Merged,
        head_sha: FORK_HEAD.into(),
        head_clone_url: format!("{base}/jdoe/widgets.git"),
        head_owner: "jdoe".into(),
        head_repo: "widgets".into(),
    };
    let closed_mr = ChangeRequest {
        id: "9".into(),
        title: "Rewrite in COBOL".into(),
        from_branch: "develop".into(),
        to_branch: "main".into(),
        url: format!("{base}/acme/widgets/-/merge_requests/9"),
        author: "alice".into(),
        draft: false,
        state: ChangeState::Closed,
        head_sha: INITIAL.into(),
        head_clone_url: format!("{base}/acme/widgets.git"),
        head_owner: "acme".into(),
        head_repo: "widgets".into(),
    };

    let cases: Vec<(String, Context)> = vec![
        // The project page and clone URLs: the default branch.
        (format!("{base}/acme/widgets"), widgets().branch("main")),
        (format!("{base}/acme/widgets/"), widgets().branch("main")),
        (format!("{base}/ACME/Widgets"), widgets().branch("main")),
        (format!("{base}/acme/widgets.git"), widgets().branch("main")),
        (
            "git@127.0.0.1:acme/widgets.git".into(),
            widgets().branch("main"),
        ),
        (
            "ssh://git@127.0.0.1:2222/acme/platform/backend/api.git".into(),
            api().branch("trunk"),
        ),
        // Nested subgroups.
        (
            format!("{base}/acme/platform/backend/api"),
            api().branch("trunk"),
        ),
        (
            format!("{base}/acme/platform/backend/api/-/tree/fix/deep/nested/path/src/main.rs"),
            api().branch("fix/deep/nested/path"),
        ),
        (
            format!("{base}/acme/platform/backend/api/-/issues/3"),
            api().branch("trunk").issue("3", "Rate limit the API"),
        ),
        // Branches and tags, names with slashes: the longest real ref wins.
        (
            format!("{base}/acme/widgets/-/tree/feature/login"),
            widgets().branch("feature/login"),
        ),
        (
            format!("{base}/acme/widgets/-/tree/feature/login/src/app"),
            widgets().branch("feature/login"),
        ),
        (
            format!("{base}/acme/widgets/-/blob/feature/login-v2/README.md"),
            widgets().branch("feature/login-v2"),
        ),
        (
            format!("{base}/acme/widgets/-/blob/release/2024/q1/README.md"),
            widgets().branch("release/2024/q1"),
        ),
        (
            format!("{base}/acme/widgets/-/tree/release/2024/notes"),
            widgets().tag("release/2024"),
        ),
        (
            format!("{base}/acme/widgets/-/tree/v1.0.0"),
            widgets().tag("v1.0.0"),
        ),
        (
            format!("{base}/acme/widgets/-/tags/v1.0.0"),
            widgets().tag("v1.0.0"),
        ),
        (
            format!("{base}/acme/widgets/-/commits/feature/login"),
            widgets().branch("feature/login"),
        ),
        // `develop` is a branch and a tag: the branch wins unless `ref_type` says otherwise.
        (
            format!("{base}/acme/widgets/-/tree/develop"),
            widgets().branch("develop"),
        ),
        (
            format!("{base}/acme/widgets/-/tree/develop?ref_type=tags"),
            widgets().tag("develop"),
        ),
        (
            format!("{base}/acme/widgets/-/tree/develop?ref_type=heads"),
            widgets().branch("develop"),
        ),
        // Older URLs without `/-/`: GitLab says which prefix is the project,
        // also in a subgroup and when a subgroup's name is a route word.
        (
            format!("{base}/acme/widgets/tree/feature/login/src/app"),
            widgets().branch("feature/login"),
        ),
        (
            format!("{base}/acme/widgets/blob/release/2024/q1/README.md"),
            widgets().branch("release/2024/q1"),
        ),
        (
            format!(
                "{base}/acme/platform/backend/api/blob/{}/README.md",
                &API_HEAD[..10]
            ),
            api().commit(API_HEAD),
        ),
        (
            format!("{base}/acme/widgets/merge_requests/7"),
            widgets()
                .branch("feature/login")
                .change(same_repo_mr.clone()),
        ),
        (
            format!("{base}/acme/widgets/issues/12"),
            widgets().branch("main").issue("12", "Crash on startup"),
        ),
        // Commits, short SHAs resolved.
        (
            format!("{base}/acme/widgets/-/commit/{LOGIN_HEAD}"),
            widgets().commit(LOGIN_HEAD),
        ),
        (
            format!("{base}/acme/widgets/-/commit/{}", &LOGIN_HEAD[..8]),
            widgets().commit(LOGIN_HEAD),
        ),
        (
            format!("{base}/acme/widgets/-/tree/{}/src", &INITIAL[..7]),
            widgets().commit(INITIAL),
        ),
        (
            format!(
                "{base}/acme/platform/backend/api/-/commit/{}",
                &API_HEAD[..10]
            ),
            api().commit(API_HEAD),
        ),
        // Merge requests: same project, from a fork, closed.
        (
            format!("{base}/acme/widgets/-/merge_requests/7"),
            widgets().branch("feature/login").change(same_repo_mr),
        ),
        (
            format!("{base}/acme/widgets/-/merge_requests/8/diffs"),
            // The fork at its branch, with the base repository upstream.
            e.repo("jdoe/widgets")
                .branch("patch-1")
                .upstream(&format!("{base}/acme/widgets.git"))
                .change(fork_mr),
        ),
        (
            format!("{base}/acme/widgets/-/merge_requests/9"),
            widgets().branch("develop").change(closed_mr),
        ),
        // Issues, also as work items.
        (
            format!("{base}/acme/widgets/-/issues/12"),
            widgets().branch("main").issue("12", "Crash on startup"),
        ),
        (
            format!("{base}/acme/widgets/-/work_items/12"),
            widgets().branch("main").issue("12", "Crash on startup"),
        ),
        // Other project pages open the project; an empty project has no branch.
        (
            format!("{base}/acme/widgets/-/pipelines/1234"),
            widgets().branch("main"),
        ),
        (format!("{base}/acme/empty"), e.repo("acme/empty")),
    ];
    assert!(cases.len() >= 18);

    let mut failures = Vec::new();
    for (url, want) in &cases {
        let parsed = ContextUrl::parse(url).unwrap();
        match gitlab.parse_context(&parsed, &creds(ALICE)).await {
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
async fn projects_are_looked_up_by_encoded_full_path_with_a_bearer_token() {
    let fake = FakeGitLab::start().await;
    let gitlab = fake.provider(TIMEOUT);
    let url = ContextUrl::parse(&format!(
        "{}/acme/platform/backend/api/-/tree/trunk",
        fake.base
    ))
    .unwrap();
    gitlab.parse_context(&url, &creds(ALICE)).await.unwrap();
    let requests = fake.requests();
    assert_eq!(
        requests[0], "GET /api/v4/projects/acme%2Fplatform%2Fbackend%2Fapi",
        "{requests:?}"
    );
    // Refs are listed by prefix, and by project id from then on.
    assert!(
        requests.iter().any(|r| r
            == "GET /api/v4/projects/2/repository/branches?search=%5Etrunk&per_page=100&page=1"),
        "{requests:?}"
    );
    assert!(
        fake.auth_schemes().iter().all(|s| *s == "Bearer"),
        "{:?}",
        fake.auth_schemes()
    );
}

#[tokio::test]
async fn failures_map_to_errors_callers_can_act_on() {
    let fake = FakeGitLab::start().await;
    let gitlab = fake.provider(TIMEOUT);
    let base = &fake.base;
    // (url, token, Connect code, text the message must contain)
    let cases: Vec<(String, &str, &str, &str)> = vec![
        (
            format!("{base}/acme/widgets"),
            "glpat-not-a-real-token",
            "failed_precondition",
            "rejected",
        ),
        (
            format!("{base}/acme/widgets"),
            "   ",
            "failed_precondition",
            "no GitLab token",
        ),
        (format!("{base}/acme/flaky"), ALICE, "unavailable", "502"),
        (format!("{base}/acme/nope"), ALICE, "not_found", "acme/nope"),
        (
            format!("{base}/private/vault"),
            BOB,
            "not_found",
            "private/vault",
        ),
        (
            format!("{base}/acme/widgets/-/tree/no-such-branch/src"),
            ALICE,
            "not_found",
            "no-such-branch/src",
        ),
        (
            format!("{base}/acme/widgets/-/tree/deadbeef00/src"),
            ALICE,
            "not_found",
            "deadbeef00",
        ),
        (
            format!("{base}/acme/widgets/-/tags/feature"),
            ALICE,
            "not_found",
            "feature",
        ),
        (
            format!("{base}/acme/widgets/-/commit/0000000"),
            ALICE,
            "not_found",
            "0000000",
        ),
        (
            format!("{base}/acme/widgets/-/merge_requests/404"),
            ALICE,
            "not_found",
            "!404",
        ),
        (
            format!("{base}/acme/widgets/-/issues/77"),
            ALICE,
            "not_found",
            "#77",
        ),
        (
            format!("{base}/acme/widgets/-/merge_requests/abc"),
            ALICE,
            "invalid_argument",
            "abc",
        ),
        (
            format!("{base}/acme"),
            ALICE,
            "invalid_argument",
            "not point to a GitLab project",
        ),
        (
            format!("{base}/explore/projects"),
            ALICE,
            "invalid_argument",
            "not point to a GitLab project",
        ),
        (
            format!("{base}/-/user_settings/personal_access_tokens"),
            ALICE,
            "invalid_argument",
            "not point",
        ),
    ];
    let mut failures = Vec::new();
    for (url, token, code, text) in &cases {
        let parsed = ContextUrl::parse(url).unwrap();
        match gitlab.parse_context(&parsed, &creds(token)).await {
            Err(e) if e.code() == *code && e.to_string().contains(text) => {}
            other => failures.push(format!(
                "{url} ({token}): want {code} with {text:?}, got {other:?}"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn an_empty_token_never_reaches_gitlab() {
    let fake = FakeGitLab::start().await;
    let gitlab = fake.provider(TIMEOUT);
    let url = ContextUrl::parse(&format!("{}/acme/widgets", fake.base)).unwrap();
    let err = gitlab.parse_context(&url, &creds("")).await.unwrap_err();
    assert!(
        matches!(err, ScmError::AuthenticationRequired { ref host, .. } if *host == format!("127.0.0.1:{}", fake.port)),
        "{err:?}"
    );
    assert!(matches!(
        gitlab.check_token(&creds("")).await,
        Err(ScmError::AuthenticationRequired { .. })
    ));
    assert!(matches!(
        gitlab
            .search_repositories(&creds(""), "x", SearchMode::Keyword, 1, 10)
            .await,
        Err(ScmError::AuthenticationRequired { .. })
    ));
    assert!(matches!(
        gitlab.list_organizations(&creds(""), "", 1, 10).await,
        Err(ScmError::AuthenticationRequired { .. })
    ));
    assert!(matches!(
        gitlab.check_repository_access(&creds(""), &url).await,
        Err(ScmError::AuthenticationRequired { .. })
    ));
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());
}

#[tokio::test]
async fn a_used_up_rate_limit_says_when_to_retry() {
    let fake = FakeGitLab::start().await;
    let gitlab = fake.provider(TIMEOUT);
    let host = format!("127.0.0.1:{}", fake.port);
    let want = ScmError::RateLimited {
        host: host.clone(),
        retry_after_secs: Some(42),
    };
    let url = ContextUrl::parse(&format!("{}/acme/widgets", fake.base)).unwrap();
    assert_eq!(
        gitlab
            .parse_context(&url, &creds(LIMITED))
            .await
            .unwrap_err(),
        want
    );
    assert_eq!(gitlab.check_token(&creds(LIMITED)).await.unwrap_err(), want);
    assert_eq!(
        gitlab
            .search_repositories(&creds(LIMITED), "widgets", SearchMode::Keyword, 1, 10)
            .await
            .unwrap_err(),
        want
    );
    assert_eq!(
        gitlab
            .list_organizations(&creds(LIMITED), "", 1, 10)
            .await
            .unwrap_err(),
        want
    );
}

#[tokio::test]
async fn a_slow_gitlab_runs_into_the_deadline() {
    let fake = FakeGitLab::start().await;
    let gitlab = fake.provider(Duration::from_millis(300));
    let url = ContextUrl::parse(&format!("{}/acme/slow", fake.base)).unwrap();
    let err = gitlab.parse_context(&url, &creds(ALICE)).await.unwrap_err();
    assert!(matches!(err, ScmError::Unavailable(_)), "{err:?}");
    let err = gitlab
        .check_repository_access(&creds(ALICE), &url)
        .await
        .unwrap_err();
    assert!(matches!(err, ScmError::Unavailable(_)), "{err:?}");
}

fn names<T>(items: &[T], name: impl Fn(&T) -> &str) -> Vec<&str> {
    items.iter().map(name).collect()
}

#[tokio::test]
async fn keyword_search_pages_through_the_users_projects() {
    let fake = FakeGitLab::start().await;
    let gitlab = fake.provider(TIMEOUT);
    let base = &fake.base;

    let first = gitlab
        .search_repositories(&creds(ALICE), "widget", SearchMode::Keyword, 1, 1)
        .await
        .unwrap();
    assert_eq!(
        first.items,
        [Repository {
            name: "acme/widget-docs".into(),
            url: format!("{base}/acme/widget-docs"),
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
    let second = gitlab
        .search_repositories(&creds(ALICE), "widget", SearchMode::Keyword, 2, 1)
        .await
        .unwrap();
    assert_eq!(names(&second.items, |r| &r.name), ["acme/widgets"]);
    assert_eq!(
        (second.page, second.total_pages, second.has_next),
        (2, Some(2), false)
    );

    // Only projects the user is a member of: not the public fork.
    let widgets = gitlab
        .search_repositories(&creds(ALICE), "widgets", SearchMode::Keyword, 1, 20)
        .await
        .unwrap();
    assert_eq!(names(&widgets.items, |r| &r.name), ["acme/widgets"]);
    // A path with a slash matches namespaces too.
    let nested = gitlab
        .search_repositories(&creds(ALICE), "backend/api", SearchMode::Keyword, 1, 20)
        .await
        .unwrap();
    assert_eq!(
        names(&nested.items, |r| &r.name),
        ["acme/platform/backend/api"]
    );
    // No words: every project of the user.
    let all = gitlab
        .search_repositories(&creds(ALICE), "  ", SearchMode::Keyword, 1, 5)
        .await
        .unwrap();
    assert_eq!(
        (
            all.items.len(),
            all.total_count,
            all.total_pages,
            all.has_next
        ),
        (5, Some(7), Some(2), true)
    );
    let none = gitlab
        .search_repositories(&creds(BOB), "", SearchMode::Keyword, 1, 5)
        .await
        .unwrap();
    assert_eq!(
        (none.items.len(), none.total_count, none.has_next),
        (0, Some(0), false)
    );

    let requests = fake.requests();
    assert!(
        requests.contains(
            &"GET /api/v4/projects?membership=true&simple=true&search=widget&page=1&per_page=1"
                .to_string()
        ),
        "{requests:?}"
    );
}

#[tokio::test]
async fn native_search_passes_the_query_to_gitlab_search() {
    let fake = FakeGitLab::start().await;
    let gitlab = fake.provider(TIMEOUT);
    let found = gitlab
        .search_repositories(&creds(ALICE), "widgets", SearchMode::Native, 1, 20)
        .await
        .unwrap();
    // Global search: the public fork alice is no member of is found too.
    assert_eq!(
        names(&found.items, |r| &r.name),
        ["jdoe/widgets", "acme/widgets"]
    );
    assert_eq!((found.total_count, found.has_next), (Some(2), false));
    assert!(fake.requests().contains(
        &"GET /api/v4/search?scope=projects&search=widgets&page=1&per_page=20".to_string()
    ));
    let empty = gitlab
        .search_repositories(&creds(ALICE), " ", SearchMode::Native, 1, 20)
        .await
        .unwrap_err();
    assert!(matches!(empty, ScmError::InvalidInput(_)), "{empty:?}");
}

#[tokio::test]
async fn organizations_are_the_groups_the_user_belongs_to() {
    let fake = FakeGitLab::start().await;
    let gitlab = fake.provider(TIMEOUT);
    let base = &fake.base;
    let first = gitlab
        .list_organizations(&creds(ALICE), "", 1, 2)
        .await
        .unwrap();
    assert_eq!(
        first.items,
        [
            Organization {
                name: "acme".into(),
                url: format!("{base}/groups/acme"),
                is_admin: None,
            },
            Organization {
                name: "acme/platform".into(),
                url: format!("{base}/groups/acme/platform"),
                is_admin: None,
            },
        ]
    );
    assert_eq!(
        (first.total_count, first.total_pages, first.has_next),
        (Some(4), Some(2), true)
    );
    let second = gitlab
        .list_organizations(&creds(ALICE), "", 2, 2)
        .await
        .unwrap();
    assert_eq!(
        names(&second.items, |o| &o.name),
        ["acme/platform/backend", "tooling"]
    );
    assert!(!second.has_next);
    let back = gitlab
        .list_organizations(&creds(ALICE), "back", 1, 10)
        .await
        .unwrap();
    assert_eq!(names(&back.items, |o| &o.name), ["acme/platform/backend"]);
    assert!(
        gitlab
            .list_organizations(&creds(BOB), "", 1, 10)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(fake.requests().contains(
        &"GET /api/v4/groups?min_access_level=10&search=back&page=1&per_page=10".to_string()
    ));
}

#[tokio::test]
async fn tokens_and_repository_access_are_checked() {
    let fake = FakeGitLab::start().await;
    let gitlab = fake.provider(TIMEOUT);
    let base = &fake.base;
    gitlab.check_token(&creds(ALICE)).await.unwrap();
    assert!(matches!(
        gitlab.check_token(&creds("glpat-revoked")).await,
        Err(ScmError::AuthenticationRequired { .. })
    ));

    let url = |path: &str| ContextUrl::parse(&format!("{base}/{path}")).unwrap();
    gitlab
        .check_repository_access(
            &creds(ALICE),
            &url("acme/platform/backend/api/-/tree/trunk"),
        )
        .await
        .unwrap();
    gitlab
        .check_repository_access(
            &creds(ALICE),
            &ContextUrl::parse("git@127.0.0.1:private/vault.git").unwrap(),
        )
        .await
        .unwrap();
    // Internal projects are open to every signed-in user; private ones are hidden.
    gitlab
        .check_repository_access(&creds(BOB), &url("acme/platform/backend/api"))
        .await
        .unwrap();
    let hidden = gitlab
        .check_repository_access(&creds(BOB), &url("private/vault"))
        .await
        .unwrap_err();
    assert!(matches!(hidden, ScmError::NotFound(_)), "{hidden:?}");
    let group = gitlab
        .check_repository_access(&creds(ALICE), &url("acme"))
        .await
        .unwrap_err();
    assert!(matches!(group, ScmError::InvalidInput(_)), "{group:?}");
    let rejected = gitlab
        .check_repository_access(&creds("glpat-revoked"), &url("acme/widgets"))
        .await
        .unwrap_err();
    assert!(
        matches!(rejected, ScmError::AuthenticationRequired { .. }),
        "{rejected:?}"
    );
}

#[tokio::test]
async fn sign_in_help_points_at_the_host() {
    let fake = FakeGitLab::start().await;
    let gitlab = fake.provider(TIMEOUT);
    let base = &fake.base;
    let help = gitlab.pat_help();
    assert_eq!(
        help.create_url,
        format!("{base}/-/user_settings/personal_access_tokens?scopes=api,read_repository")
    );
    assert_eq!(help.required_scopes, ["api", "read_repository"]);
    assert!(help.example.starts_with("glpat-"));
    assert_eq!(
        gitlab.oauth_authorize_url(),
        format!("{base}/oauth/authorize")
    );
    assert_eq!(gitlab.oauth_token_url(), format!("{base}/oauth/token"));
    assert_eq!(
        gitlab.oauth_scopes(),
        ["api", "read_repository", "read_user"]
    );

    let dotcom = provider_for(
        HostRegistry::default().resolve("gitlab.com").unwrap(),
        TIMEOUT,
    );
    assert_eq!(
        dotcom.oauth_authorize_url(),
        "https://gitlab.com/oauth/authorize"
    );
    assert_eq!(dotcom.oauth_token_url(), "https://gitlab.com/oauth/token");
    assert_eq!(
        dotcom.pat_help().create_url,
        "https://gitlab.com/-/user_settings/personal_access_tokens?scopes=api,read_repository"
    );
}
