//! The Bitbucket Data Center provider against a local server speaking its REST API 1.0.

mod support_bbs;

use std::time::Duration;

use corral_scm::host::ConfiguredHost;
use corral_scm::{
    ChangeState, ContextUrl, Credentials, HostRegistry, Provider, ScmError, ScmKind, SearchMode,
    provider_for,
};
use support_bbs::{BitbucketServer, GUEST, HOTFIXES, RETRY_AFTER, SERVICES, THROTTLED, TOKEN, sha};

fn provider_with(
    server: &BitbucketServer,
    dir: Option<&str>,
    timeout: Duration,
) -> Box<dyn Provider> {
    let registry = HostRegistry::new([ConfiguredHost {
        kind: ScmKind::BitbucketServer,
        host: server.base(),
        virtual_directory: dir.map(str::to_string),
    }])
    .unwrap();
    let host = registry
        .resolve(&format!("127.0.0.1:{}", server.port))
        .unwrap();
    provider_for(host, timeout)
}

fn provider(server: &BitbucketServer, dir: Option<&str>) -> Box<dyn Provider> {
    provider_with(server, dir, Duration::from_secs(10))
}

fn creds(token: &str) -> Credentials {
    Credentials {
        token: token.into(),
        username: None,
    }
}

/// What a context URL should resolve to.
#[derive(Debug)]
struct Want {
    owner: &'static str,
    repo: &'static str,
    branch: &'static str,
    tag: &'static str,
    commit: String,
    /// The fork (project key, repository) a PR comes from: what to clone,
    /// while `owner`/`repo` name the base it targets.
    fork: Option<(&'static str, &'static str)>,
    /// id, state, draft, author.
    change: Option<(&'static str, ChangeState, bool, &'static str)>,
}

fn want(
    owner: &'static str,
    repo: &'static str,
    branch: &'static str,
    tag: &'static str,
    commit: String,
) -> Result<Want, &'static str> {
    Ok(Want {
        owner,
        repo,
        branch,
        tag,
        commit,
        fork: None,
        change: None,
    })
}

fn pr(
    branch: &'static str,
    commit: String,
    change: (&'static str, ChangeState, bool, &'static str),
    fork: Option<(&'static str, &'static str)>,
) -> Result<Want, &'static str> {
    Ok(Want {
        owner: "PRJ",
        repo: "app",
        branch,
        tag: "",
        commit,
        fork,
        change: Some(change),
    })
}

async fn check_cases(
    server: &BitbucketServer,
    dir: Option<&str>,
    cases: Vec<(String, Result<Want, &'static str>)>,
) {
    let p = provider(server, dir);
    let web = match dir {
        Some(d) => format!("{}/{d}", server.base()),
        None => server.base(),
    };
    for (url, expected) in cases {
        let got = p
            .parse_context(&ContextUrl::parse(&url).unwrap(), &creds(TOKEN))
            .await;
        match (expected, got) {
            (Ok(want), Ok(ctx)) => {
                let g = &ctx.git;
                assert_eq!(ctx.scm_id, "bitbucket-server", "{url}");
                assert_eq!(g.host, format!("127.0.0.1:{}", server.port), "{url}");
                let clone_of = |owner: &str, repo: &str| {
                    format!("{web}/scm/{}/{repo}.git", owner.to_ascii_lowercase())
                };
                // A PR from a fork opens the fork at its branch, with the base upstream.
                let (owner, name) = want.fork.unwrap_or((want.owner, want.repo));
                assert_eq!((g.owner.as_str(), g.repo.as_str()), (owner, name), "{url}");
                assert_eq!(g.clone_url, clone_of(owner, name), "{url}");
                assert_eq!(
                    (g.branch.as_str(), g.tag.as_str()),
                    (want.branch, want.tag),
                    "{url}"
                );
                // A change is checked out at its branch tip; its head SHA is in the change.
                let want_commit = if want.change.is_some() {
                    ""
                } else {
                    want.commit.as_str()
                };
                assert_eq!(g.commit, want_commit, "{url}");
                let upstream = match want.fork {
                    Some(_) => clone_of(want.owner, want.repo),
                    None => String::new(),
                };
                assert_eq!(g.upstream_remote_url, upstream, "{url}");
                match (want.change, ctx.change) {
                    (None, None) => {}
                    (Some((id, state, draft, author)), Some(c)) => {
                        assert_eq!(
                            (c.id.as_str(), c.state, c.draft, c.author.as_str()),
                            (id, state, draft, author),
                            "{url}"
                        );
                        assert_eq!(c.from_branch, want.branch, "{url}");
                        assert_eq!(c.to_branch, "main", "{url}");
                        assert_eq!(c.head_sha, want.commit, "{url}");
                        assert_eq!(
                            c.url,
                            format!("{web}/projects/PRJ/repos/app/pull-requests/{id}"),
                            "{url}"
                        );
                        if let Some(fork) = want.fork {
                            assert_eq!(c.head_clone_url, g.clone_url, "{url}");
                            assert_eq!(
                                (c.head_owner.as_str(), c.head_repo.as_str()),
                                fork,
                                "{url}"
                            );
                        } else {
                            assert_eq!(c.head_clone_url, g.clone_url, "{url}");
                        }
                    }
                    (w, c) => panic!("{url}: change {w:?} vs {c:?}"),
                }
                assert!(ctx.issue.is_none(), "{url}");
            }
            (Err(code), Err(e)) => assert_eq!(e.code(), code, "{url}: {e}"),
            (w, g) => panic!("{url}: wanted {w:?}, got {g:?}"),
        }
    }
}

fn app(name: &str) -> String {
    sha(&format!("PRJ/app@{name}"))
}

#[tokio::test]
async fn context_urls_resolve_against_the_server() {
    let server = support_bbs::start().await;
    let b = server.base();
    let port = server.port;
    let prj = |p: &str| format!("{b}/projects/PRJ/repos/app{p}");
    let v1 = sha("PRJ/app tag v1.0");
    let initial = sha("PRJ/app initial commit");
    let cases: Vec<(String, Result<Want, &'static str>)> = vec![
        (prj(""), want("PRJ", "app", "main", "", app("main"))),
        (prj("/browse"), want("PRJ", "app", "main", "", app("main"))),
        (
            prj("/browse?at=refs%2Fheads%2Ffeature%2Flogin"),
            want("PRJ", "app", "feature/login", "", app("feature/login")),
        ),
        (
            prj("/browse/src/main.rs?at=refs/heads/feature/login/ui"),
            want(
                "PRJ",
                "app",
                "feature/login/ui",
                "",
                app("feature/login/ui"),
            ),
        ),
        (
            prj("/browse?at=feature/login"),
            want("PRJ", "app", "feature/login", "", app("feature/login")),
        ),
        // 130 newer branches contain "hotfix": the lookup reads a second page.
        (
            prj("/browse?at=refs/heads/hotfix"),
            want("PRJ", "app", "hotfix", "", sha("PRJ/app@hotfix")),
        ),
        (
            prj("/browse?at=refs/tags/v1.0"),
            want("PRJ", "app", "", "v1.0", v1.clone()),
        ),
        (
            prj("/browse?at=release/2024.1"),
            want(
                "PRJ",
                "app",
                "",
                "release/2024.1",
                sha("PRJ/app tag release/2024.1"),
            ),
        ),
        (
            prj(&format!("/browse/README.md?at={initial}")),
            want("PRJ", "app", "", "", initial.clone()),
        ),
        (
            prj(&format!("/commits/{}", &initial[..12])),
            want("PRJ", "app", "", "", initial.clone()),
        ),
        (
            prj("/commits?until=refs/heads/develop"),
            want("PRJ", "app", "develop", "", app("develop")),
        ),
        (
            prj("/pull-requests/3/overview"),
            pr(
                "feature/login",
                app("feature/login"),
                ("3", ChangeState::Merged, false, "alice"),
                None,
            ),
        ),
        (
            prj("/pull-requests/5"),
            pr(
                "develop",
                app("develop"),
                ("5", ChangeState::Closed, false, "bob"),
                None,
            ),
        ),
        (
            prj("/pull-requests/8/diff"),
            pr(
                "feature/login/ui",
                app("feature/login/ui"),
                ("8", ChangeState::Open, true, "alice"),
                None,
            ),
        ),
        (
            prj("/pull-requests/7"),
            pr(
                "fix/typo",
                sha("~JDOE/app@fix/typo"),
                ("7", ChangeState::Open, false, "jdoe"),
                Some(("~JDOE", "app")),
            ),
        ),
        (
            format!("{b}/projects/prj/repos/app"),
            want("PRJ", "app", "main", "", app("main")),
        ),
        (
            format!("{b}/scm/prj/app.git"),
            want("PRJ", "app", "main", "", app("main")),
        ),
        (
            "ssh://git@127.0.0.1:7999/prj/app.git".to_string(),
            want("PRJ", "app", "main", "", app("main")),
        ),
        (
            format!("{b}/users/jdoe/repos/dotfiles/browse"),
            want(
                "~JDOE",
                "dotfiles",
                "master",
                "",
                sha("~JDOE/dotfiles@master"),
            ),
        ),
        (
            format!("{b}/scm/~jdoe/dotfiles.git"),
            want(
                "~JDOE",
                "dotfiles",
                "master",
                "",
                sha("~JDOE/dotfiles@master"),
            ),
        ),
        (
            format!("{b}/projects/OPS/repos/deploy?at=refs/heads/trunk"),
            want("OPS", "deploy", "trunk", "", sha("OPS/deploy@trunk")),
        ),
        (
            format!("{b}/projects/PRJ/repos/empty"),
            want("PRJ", "empty", "", "", String::new()),
        ),
        // Failures.
        (prj("/browse?at=refs/heads/nope"), Err("not_found")),
        (prj("/browse?at=refs/tags/v9"), Err("not_found")),
        (prj("/browse?at=no-such-ref"), Err("not_found")),
        (
            prj(&format!("/commits/{}", sha("nowhere"))),
            Err("not_found"),
        ),
        (prj("/pull-requests/99"), Err("not_found")),
        (format!("{b}/projects/PRJ/repos/nope"), Err("not_found")),
        (format!("{b}/projects/PRJ"), Err("invalid_argument")),
        (format!("{b}/dashboard"), Err("invalid_argument")),
        (prj("/pull-requests/latest"), Err("invalid_argument")),
        (
            format!("http://elsewhere.example:{port}/projects/PRJ/repos/app"),
            Err("invalid_argument"),
        ),
    ];
    assert!(cases.len() >= 12);
    check_cases(&server, None, cases).await;
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.contains("/branches?filterText=hotfix&start=100&limit=100")),
        "the hotfix lookup pages: {:?}",
        server
            .requests()
            .iter()
            .filter(|r| r.contains("hotfix"))
            .collect::<Vec<_>>()
    );
}

// The hotfix lookup above needs more than one page of 100.
const _: () = assert!(HOTFIXES > 100);

#[tokio::test]
async fn context_urls_below_a_context_path_resolve() {
    let server = support_bbs::start().await;
    let b = format!("{}/bitbucket", server.base());
    let cases: Vec<(String, Result<Want, &'static str>)> = vec![
        (
            format!("{b}/projects/PRJ/repos/app/browse?at=refs/heads/develop"),
            want("PRJ", "app", "develop", "", app("develop")),
        ),
        (
            format!("{b}/scm/prj/app.git"),
            want("PRJ", "app", "main", "", app("main")),
        ),
        (
            format!("{b}/projects/PRJ/repos/app/pull-requests/7/overview"),
            pr(
                "fix/typo",
                sha("~JDOE/app@fix/typo"),
                ("7", ChangeState::Open, false, "jdoe"),
                Some(("~JDOE", "app")),
            ),
        ),
        (
            format!("{b}/users/jdoe/repos/dotfiles"),
            want(
                "~JDOE",
                "dotfiles",
                "master",
                "",
                sha("~JDOE/dotfiles@master"),
            ),
        ),
    ];
    check_cases(&server, Some("bitbucket"), cases).await;
}

#[tokio::test]
async fn tokens_are_checked_and_failures_keep_their_meaning() {
    let server = support_bbs::start().await;
    let p = provider(&server, None);
    let app = ContextUrl::parse(&format!("{}/projects/PRJ/repos/app", server.base())).unwrap();
    let vault = ContextUrl::parse(&format!("{}/projects/SEC/repos/vault", server.base())).unwrap();

    assert_eq!(p.check_token(&creds(TOKEN)).await, Ok(()));
    assert!(
        server
            .requests()
            .contains(&"/rest/api/1.0/projects?limit=1".to_string())
    );
    assert!(matches!(
        p.check_token(&creds("wrong")).await,
        Err(ScmError::AuthenticationRequired { .. })
    ));
    assert_eq!(
        p.check_token(&creds(THROTTLED)).await,
        Err(ScmError::RateLimited {
            host: format!("127.0.0.1:{}", server.port),
            retry_after_secs: Some(RETRY_AFTER)
        })
    );
    let before = server.requests().len();
    assert!(matches!(
        p.check_token(&creds("  ")).await,
        Err(ScmError::AuthenticationRequired { .. })
    ));
    assert!(matches!(
        p.parse_context(&app, &creds("")).await,
        Err(ScmError::AuthenticationRequired { .. })
    ));
    assert_eq!(
        server.requests().len(),
        before,
        "no request without a token"
    );

    assert_eq!(p.check_repository_access(&creds(TOKEN), &app).await, Ok(()));
    assert_eq!(p.check_repository_access(&creds(GUEST), &app).await, Ok(()));
    // Bitbucket says 401 with an AuthorisationException to a valid token without permission.
    assert!(matches!(
        p.check_repository_access(&creds(GUEST), &vault).await,
        Err(ScmError::PermissionDenied(_))
    ));
    assert!(matches!(
        p.parse_context(&vault, &creds(GUEST)).await,
        Err(ScmError::PermissionDenied(_))
    ));
    assert!(matches!(
        p.check_repository_access(&creds("wrong"), &vault).await,
        Err(ScmError::AuthenticationRequired { .. })
    ));
    let missing = ContextUrl::parse(&format!("{}/scm/prj/missing.git", server.base())).unwrap();
    assert!(matches!(
        p.check_repository_access(&creds(TOKEN), &missing).await,
        Err(ScmError::NotFound(_))
    ));
    assert!(matches!(
        p.parse_context(&app, &creds(THROTTLED)).await,
        Err(ScmError::RateLimited { .. })
    ));
}

#[tokio::test]
async fn a_slow_server_runs_into_the_deadline() {
    let server = support_bbs::start().await;
    let p = provider_with(&server, None, Duration::from_millis(300));
    let slow = ContextUrl::parse(&format!("{}/projects/PRJ/repos/slow", server.base())).unwrap();
    assert!(matches!(
        p.parse_context(&slow, &creds(TOKEN)).await,
        Err(ScmError::Unavailable(_))
    ));
    assert!(matches!(
        p.check_repository_access(&creds(TOKEN), &slow).await,
        Err(ScmError::Unavailable(_))
    ));
    // The same provider still answers quickly elsewhere.
    let app = ContextUrl::parse(&format!("{}/projects/PRJ/repos/app", server.base())).unwrap();
    assert_eq!(p.check_repository_access(&creds(TOKEN), &app).await, Ok(()));
}

#[tokio::test]
async fn repository_search_pages_through_the_server() {
    let server = support_bbs::start().await;
    let p = provider(&server, None);
    let c = creds(TOKEN);

    let first = p
        .search_repositories(&c, "service", SearchMode::Keyword, 1, 12)
        .await
        .unwrap();
    assert_eq!(first.items.len(), 12);
    assert_eq!(first.items[0].name, "PRJ/service-01");
    assert_eq!(
        first.items[0].url,
        format!("{}/projects/PRJ/repos/service-01", server.base())
    );
    assert!(first.has_next);
    assert_eq!(
        (first.page, first.total_pages, first.total_count),
        (1, None, None)
    );
    let last = p
        .search_repositories(&c, "service", SearchMode::Keyword, 3, 12)
        .await
        .unwrap();
    assert_eq!(last.items.len(), SERVICES - 24);
    assert!(!last.has_next);
    assert!(
        server
            .requests()
            .contains(&"/rest/api/1.0/repos?name=service&start=24&limit=12".to_string())
    );

    let names = |r: corral_scm::Paged<corral_scm::Repository>| {
        r.items.into_iter().map(|r| r.name).collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            p.search_repositories(&c, "deploy", SearchMode::Keyword, 1, 10)
                .await
                .unwrap()
        ),
        ["OPS/deploy"]
    );
    // Native mode hands Bitbucket's own filters over as they are.
    assert_eq!(
        names(
            p.search_repositories(&c, "projectname=Operations", SearchMode::Native, 1, 10)
                .await
                .unwrap()
        ),
        ["OPS/deploy"]
    );
    assert_eq!(
        names(
            p.search_repositories(
                &c,
                "name=app projectname=Platform",
                SearchMode::Native,
                1,
                10
            )
            .await
            .unwrap()
        ),
        ["PRJ/app"]
    );
    assert_eq!(
        names(
            p.search_repositories(&c, "vault", SearchMode::Native, 1, 10)
                .await
                .unwrap()
        ),
        ["SEC/vault"]
    );
    // Who may not see a project does not find its repositories.
    assert!(
        names(
            p.search_repositories(&creds(GUEST), "vault", SearchMode::Keyword, 1, 10)
                .await
                .unwrap()
        )
        .is_empty()
    );
    assert!(matches!(
        p.search_repositories(&creds("wrong"), "", SearchMode::Keyword, 1, 10)
            .await,
        Err(ScmError::AuthenticationRequired { .. })
    ));
}

#[tokio::test]
async fn projects_are_the_organizations() {
    let server = support_bbs::start().await;
    let p = provider(&server, Some("bitbucket"));
    let c = creds(TOKEN);
    let first = p.list_organizations(&c, "", 1, 3).await.unwrap();
    let keys: Vec<_> = first.items.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(keys, ["PRJ", "OPS", "SEC"]);
    assert_eq!(
        first.items[0].url,
        format!("{}/bitbucket/projects/PRJ", server.base())
    );
    assert!(first.has_next);
    let second = p.list_organizations(&c, "", 2, 3).await.unwrap();
    assert_eq!(
        second
            .items
            .iter()
            .map(|o| o.name.as_str())
            .collect::<Vec<_>>(),
        ["PLAY"]
    );
    assert!(!second.has_next);
    let platform = p.list_organizations(&c, "platform", 1, 10).await.unwrap();
    assert_eq!(
        platform
            .items
            .iter()
            .map(|o| o.name.as_str())
            .collect::<Vec<_>>(),
        ["PRJ", "PLAY"]
    );
    let guest = p
        .list_organizations(&creds(GUEST), "", 1, 10)
        .await
        .unwrap();
    assert!(!guest.items.iter().any(|o| o.name == "SEC"));
}

#[tokio::test]
async fn sign_in_help_points_at_the_server() {
    let server = support_bbs::start().await;
    let p = provider(&server, Some("bitbucket"));
    let web = format!("{}/bitbucket", server.base());
    let help = p.pat_help();
    assert_eq!(
        help.create_url,
        format!("{web}/plugins/servlet/access-tokens/manage")
    );
    assert_eq!(help.required_scopes, ["REPO_READ", "PROJECT_READ"]);
    assert!(
        help.docs_url
            .starts_with("https://confluence.atlassian.com/")
    );
    assert_eq!(
        p.oauth_authorize_url(),
        format!("{web}/rest/oauth2/latest/authorize")
    );
    assert_eq!(
        p.oauth_token_url(),
        format!("{web}/rest/oauth2/latest/token")
    );
    assert!(!p.oauth_scopes().is_empty());
    assert_eq!(p.host().api_base(), format!("{web}/rest/api/1.0"));
}
