//! The Azure DevOps provider against a local Azure DevOps Server. dev.azure.com
//! and *.visualstudio.com cannot be served here: how their URLs are read is
//! pinned by the unit tests in `providers::azure_devops`; the same reading with
//! the API behind it is exercised here on a configured host, whose collection
//! comes first in the path just as a dev.azure.com organization does.

mod support_ado;

use std::time::Duration;

use corral_scm::host::ConfiguredHost;
use corral_scm::{
    ChangeState, ContextUrl, Credentials, HostRegistry, Provider, ScmError, ScmKind, SearchMode,
    provider_for,
};
use support_ado::{AzureDevOpsServer, ENTRA, PAT, READER, RETRY_AFTER, TEAMS, THROTTLED, sha};

/// The Server's virtual directory; the collection follows it in URLs.
const VDIR: &str = "tfs";
/// The collection below it.
const COLLECTION: &str = "tfs/DefaultCollection";

fn provider_with(
    server: &AzureDevOpsServer,
    dir: Option<&str>,
    timeout: Duration,
) -> Box<dyn Provider> {
    let registry = HostRegistry::new([ConfiguredHost {
        kind: ScmKind::AzureDevOps,
        host: server.base(),
        virtual_directory: dir.map(str::to_string),
    }])
    .unwrap();
    provider_for(
        registry
            .resolve(&format!("127.0.0.1:{}", server.port))
            .unwrap(),
        timeout,
    )
}

fn provider(server: &AzureDevOpsServer, dir: Option<&str>) -> Box<dyn Provider> {
    provider_with(server, dir, Duration::from_secs(10))
}

fn pat(token: &str) -> Credentials {
    Credentials {
        token: token.into(),
        username: None,
    }
}

#[derive(Debug)]
struct Want {
    project: &'static str,
    repo: &'static str,
    branch: &'static str,
    tag: &'static str,
    commit: String,
    /// The fork (project, repository) a PR comes from: what to clone, while
    /// `project`/`repo` name the base it targets.
    fork: Option<(&'static str, &'static str)>,
    /// id, state, draft, author.
    change: Option<(&'static str, ChangeState, bool, &'static str)>,
}

fn want(
    project: &'static str,
    repo: &'static str,
    branch: &'static str,
    tag: &'static str,
    commit: String,
) -> Result<Want, &'static str> {
    Ok(Want {
        project,
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
        project: "Fabrikam",
        repo: "web",
        branch,
        tag: "",
        commit,
        fork,
        change: Some(change),
    })
}

/// Checks each (URL, expectation); `collection` is the collection URL the clone URLs start with.
async fn check_cases(
    p: &dyn Provider,
    collection: &str,
    cases: Vec<(String, Result<Want, &'static str>)>,
) {
    let enc = |s: &str| s.replace(' ', "%20");
    for (url, expected) in cases {
        let got = p
            .parse_context(&ContextUrl::parse(&url).unwrap(), &pat(PAT))
            .await;
        match (expected, got) {
            (Ok(want), Ok(ctx)) => {
                let g = &ctx.git;
                assert_eq!(ctx.scm_id, "azure-devops", "{url}");
                let clone_of = |project: &str, repo: &str| {
                    format!("{collection}/{}/_git/{}", enc(project), enc(repo))
                };
                let clone = clone_of(want.project, want.repo);
                // A PR from a fork opens the fork at its branch, with the base upstream.
                let (owner, name) = want.fork.unwrap_or((want.project, want.repo));
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
                let upstream = if want.fork.is_some() {
                    clone.clone()
                } else {
                    String::new()
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
                        assert_eq!(
                            (c.from_branch.as_str(), c.to_branch.as_str()),
                            (want.branch, "main"),
                            "{url}"
                        );
                        assert_eq!(c.head_sha, want.commit, "{url}");
                        assert_eq!(c.url, format!("{clone}/pullrequest/{id}"), "{url}");
                        if let Some((project, repo)) = want.fork {
                            assert_eq!(c.head_clone_url, g.clone_url, "{url}");
                            assert_eq!(
                                (c.head_owner.as_str(), c.head_repo.as_str()),
                                (project, repo),
                                "{url}"
                            );
                        } else {
                            assert_eq!(c.head_clone_url, clone, "{url}");
                        }
                    }
                    (w, c) => panic!("{url}: change {w:?} vs {c:?}"),
                }
            }
            (Err(code), Err(e)) => assert_eq!(e.code(), code, "{url}: {e}"),
            (w, g) => panic!("{url}: wanted {w:?}, got {g:?}"),
        }
    }
}

fn web(branch: &str) -> String {
    sha(&format!("Fabrikam/web@{branch}"))
}

#[tokio::test]
async fn context_urls_with_the_collection_in_the_path_resolve() {
    let server = support_ado::start().await;
    let p = provider(&server, None);
    let b = format!("{}/contoso", server.base());
    let repo = |rest: &str| format!("{b}/Fabrikam/_git/web{rest}");
    let initial = sha("Fabrikam/web initial commit");
    let cases: Vec<(String, Result<Want, &'static str>)> = vec![
        (repo(""), want("Fabrikam", "web", "main", "", web("main"))),
        (
            repo("?version=GBfeature/login"),
            want("Fabrikam", "web", "feature/login", "", web("feature/login")),
        ),
        (
            repo("?path=%2Fsrc%2Fapp.ts&version=GBfeature%2Flogin%2Fui&_a=contents"),
            want(
                "Fabrikam",
                "web",
                "feature/login/ui",
                "",
                web("feature/login/ui"),
            ),
        ),
        (
            repo("?version=GBusers/jd/spike&path=/"),
            want(
                "Fabrikam",
                "web",
                "users/jd/spike",
                "",
                web("users/jd/spike"),
            ),
        ),
        // v1.0 is annotated: the context names the commit it points at, not the tag object.
        (
            repo("?version=GTv1.0"),
            want(
                "Fabrikam",
                "web",
                "",
                "v1.0",
                sha("Fabrikam/web tag v1.0 commit"),
            ),
        ),
        (
            repo("?version=GTv2.0&path=/README.md"),
            want(
                "Fabrikam",
                "web",
                "",
                "v2.0",
                sha("Fabrikam/web tag v2.0 commit"),
            ),
        ),
        (
            repo(&format!("?version=GC{initial}")),
            want("Fabrikam", "web", "", "", initial.clone()),
        ),
        (
            repo(&format!("/commit/{}", &initial[..10])),
            want("Fabrikam", "web", "", "", initial.clone()),
        ),
        (
            repo("/pullrequest/10"),
            pr(
                "feature/login",
                web("feature/login"),
                ("10", ChangeState::Open, true, "Alice Smith"),
                None,
            ),
        ),
        (
            repo("/pullrequest/11?_a=files"),
            pr(
                "feature/login/ui",
                web("feature/login/ui"),
                ("11", ChangeState::Merged, false, "Alice Smith"),
                None,
            ),
        ),
        (
            repo("/pullrequest/12"),
            pr(
                "fix/css",
                sha("Tailspin/web-fork@fix/css"),
                ("12", ChangeState::Open, false, "Jane Doe"),
                Some(("Tailspin", "web-fork")),
            ),
        ),
        (
            repo("/pullrequest/13"),
            pr(
                "users/jd/spike",
                web("users/jd/spike"),
                ("13", ChangeState::Closed, false, "John Doe"),
                None,
            ),
        ),
        (
            format!("{b}/_git/Fabrikam"),
            want(
                "Fabrikam",
                "Fabrikam",
                "main",
                "",
                sha("Fabrikam/Fabrikam@main"),
            ),
        ),
        (
            format!("{b}/Fabrikam/_git/Fabrikam/"),
            want(
                "Fabrikam",
                "Fabrikam",
                "main",
                "",
                sha("Fabrikam/Fabrikam@main"),
            ),
        ),
        (
            format!("{b}/Fabrikam%20Fiber/_git/fiber%20app?version=GBdevelop"),
            want(
                "Fabrikam Fiber",
                "fiber app",
                "develop",
                "",
                sha("Fabrikam Fiber/fiber app@develop"),
            ),
        ),
        // A clone URL as Azure DevOps shows it, user name and all.
        (
            format!(
                "http://alice@127.0.0.1:{}/contoso/Fabrikam/_git/web",
                server.port
            ),
            want("Fabrikam", "web", "main", "", web("main")),
        ),
        // Names are case-insensitive; the context carries the repository's own spelling.
        (
            format!("{b}/fabrikam/_git/WEB"),
            want("Fabrikam", "web", "main", "", web("main")),
        ),
        (
            format!("{b}/Fabrikam/_git/empty"),
            want("Fabrikam", "empty", "", "", String::new()),
        ),
        // Failures.
        (repo("?version=GBnope"), Err("not_found")),
        (repo("?version=GTv9"), Err("not_found")),
        (
            repo(&format!("/commit/{}", sha("nowhere"))),
            Err("not_found"),
        ),
        (repo("/pullrequest/99"), Err("not_found")),
        (format!("{b}/Fabrikam/_git/missing"), Err("not_found")),
        (
            format!("{}/nocollection/Fabrikam/_git/web", server.base()),
            Err("not_found"),
        ),
        (format!("{b}/Fabrikam"), Err("invalid_argument")),
        (
            format!("{b}/Fabrikam/_boards/board"),
            Err("invalid_argument"),
        ),
        (repo("?version=main"), Err("invalid_argument")),
        (repo("/pullrequest/new"), Err("invalid_argument")),
    ];
    assert!(cases.len() >= 14);
    check_cases(p.as_ref(), &b, cases).await;
    // Server hosts are asked in an api-version Azure DevOps Server 2020 and later speak.
    assert!(
        server
            .requests()
            .iter()
            .filter(|r| r.path.contains("/_apis/"))
            .all(|r| r.query.contains("api-version=6.0"))
    );
}

#[tokio::test]
async fn context_urls_below_a_virtual_directory_resolve() {
    let server = support_ado::start().await;
    let p = provider(&server, Some(VDIR));
    let coll = format!("{}/{COLLECTION}", server.base());
    let cases: Vec<(String, Result<Want, &'static str>)> = vec![
        (
            format!("{coll}/Fabrikam/_git/web?version=GBmain"),
            want("Fabrikam", "web", "main", "", web("main")),
        ),
        (
            format!("{coll}/Fabrikam/_git/web.git"),
            want("Fabrikam", "web", "main", "", web("main")),
        ),
        (
            format!("{coll}/_git/Fabrikam"),
            want(
                "Fabrikam",
                "Fabrikam",
                "main",
                "",
                sha("Fabrikam/Fabrikam@main"),
            ),
        ),
        (
            format!("{coll}/Fabrikam/_git/web/pullrequest/12"),
            pr(
                "fix/css",
                sha("Tailspin/web-fork@fix/css"),
                ("12", ChangeState::Open, false, "Jane Doe"),
                Some(("Tailspin", "web-fork")),
            ),
        ),
        (
            format!("ssh://127.0.0.1:22/{COLLECTION}/Fabrikam/_git/web"),
            want("Fabrikam", "web", "main", "", web("main")),
        ),
        (format!("{coll}/Fabrikam/_git/missing"), Err("not_found")),
    ];
    check_cases(p.as_ref(), &coll, cases).await;
}

#[tokio::test]
async fn credentials_go_as_basic_pats_or_bearer_entra_tokens() {
    let server = support_ado::start().await;
    let p = provider(&server, Some(VDIR));
    let url =
        ContextUrl::parse(&format!("{}/{COLLECTION}/Fabrikam/_git/web", server.base())).unwrap();

    assert_eq!(p.check_repository_access(&pat(PAT), &url).await, Ok(()));
    let seen = server.requests().pop().unwrap();
    assert_eq!(
        (seen.basic_user.as_deref(), seen.bearer),
        (Some(""), false),
        "a PAT with an empty user name"
    );

    let named = Credentials {
        token: PAT.into(),
        username: Some("alice@example.com".into()),
    };
    assert_eq!(p.check_repository_access(&named, &url).await, Ok(()));
    assert_eq!(
        server.requests().pop().unwrap().basic_user.as_deref(),
        Some("alice@example.com")
    );

    assert_eq!(p.check_repository_access(&pat(ENTRA), &url).await, Ok(()));
    assert!(
        server.requests().pop().unwrap().bearer,
        "an Entra token as Bearer"
    );

    // The server would answer a bad credential with 203 and a sign-in page unless asked not to.
    assert!(matches!(
        p.check_token(&pat("not-a-pat")).await,
        Err(ScmError::AuthenticationRequired { .. })
    ));
    assert!(matches!(
        p.parse_context(&url, &pat("not-a-pat")).await,
        Err(ScmError::AuthenticationRequired { .. })
    ));
    let before = server.requests().len();
    assert!(matches!(
        p.check_token(&pat("")).await,
        Err(ScmError::AuthenticationRequired { .. })
    ));
    assert_eq!(
        server.requests().len(),
        before,
        "no request without a token"
    );
}

#[tokio::test]
async fn tokens_access_and_limits() {
    let server = support_ado::start().await;
    let root = provider(&server, None);
    let coll = provider(&server, Some(VDIR));

    assert_eq!(root.check_token(&pat(PAT)).await, Ok(()));
    assert_eq!(
        server.requests().pop().unwrap().path,
        "/_apis/connectionData"
    );
    assert_eq!(coll.check_token(&pat(PAT)).await, Ok(()));
    assert_eq!(
        server.requests().pop().unwrap().path,
        format!("/{VDIR}/_apis/connectionData")
    );
    assert_eq!(
        coll.check_token(&pat(THROTTLED)).await,
        Err(ScmError::RateLimited {
            host: format!("127.0.0.1:{}", server.port),
            retry_after_secs: Some(RETRY_AFTER)
        })
    );

    let b = server.base();
    let fabrikam = ContextUrl::parse(&format!("{b}/contoso/Fabrikam/_git/web")).unwrap();
    let tailspin = ContextUrl::parse(&format!("{b}/contoso/Tailspin/_git/toys")).unwrap();
    assert_eq!(
        root.check_repository_access(&pat(READER), &fabrikam).await,
        Ok(())
    );
    // Azure DevOps does not tell a hidden repository from a missing one.
    assert!(matches!(
        root.check_repository_access(&pat(READER), &tailspin).await,
        Err(ScmError::NotFound(_))
    ));
    assert_eq!(
        root.check_repository_access(&pat(PAT), &tailspin).await,
        Ok(())
    );
    assert!(matches!(
        root.check_repository_access(&pat(THROTTLED), &tailspin)
            .await,
        Err(ScmError::RateLimited {
            retry_after_secs: Some(RETRY_AFTER),
            ..
        })
    ));
    let elsewhere = ContextUrl::parse("https://dev.azure.com/contoso/Fabrikam/_git/web").unwrap();
    assert!(matches!(
        root.check_repository_access(&pat(PAT), &elsewhere).await,
        Err(ScmError::InvalidInput(_))
    ));
}

#[tokio::test]
async fn a_slow_server_runs_into_the_deadline() {
    let server = support_ado::start().await;
    let p = provider_with(&server, Some(VDIR), Duration::from_millis(300));
    let slow = ContextUrl::parse(&format!(
        "{}/{COLLECTION}/Fabrikam/_git/slow",
        server.base()
    ))
    .unwrap();
    assert!(matches!(
        p.parse_context(&slow, &pat(PAT)).await,
        Err(ScmError::Unavailable(_))
    ));
    let web =
        ContextUrl::parse(&format!("{}/{COLLECTION}/Fabrikam/_git/web", server.base())).unwrap();
    assert_eq!(p.check_repository_access(&pat(PAT), &web).await, Ok(()));
}

#[tokio::test]
async fn repositories_are_listed_and_filtered() {
    let server = support_ado::start().await;
    let coll = provider(&server, Some(VDIR));
    let names = |r: &corral_scm::Paged<corral_scm::Repository>| {
        r.items.iter().map(|r| r.name.clone()).collect::<Vec<_>>()
    };

    let all = coll
        .search_repositories(&pat(PAT), "", SearchMode::Keyword, 1, 4)
        .await
        .unwrap();
    assert_eq!(
        names(&all),
        [
            "Fabrikam Fiber/fiber app",
            "Fabrikam/empty",
            "Fabrikam/Fabrikam",
            "Fabrikam/slow"
        ]
    );
    assert_eq!(
        (all.total_count, all.total_pages, all.has_next),
        (Some(7), Some(2), true)
    );
    assert_eq!(
        all.items[0].url,
        format!(
            "{}/{COLLECTION}/Fabrikam%20Fiber/_git/fiber%20app",
            server.base()
        )
    );
    let rest = coll
        .search_repositories(&pat(PAT), "", SearchMode::Keyword, 2, 4)
        .await
        .unwrap();
    assert_eq!(
        names(&rest),
        ["Fabrikam/web", "Tailspin/toys", "Tailspin/web-fork"]
    );
    assert!(!rest.has_next);

    let web = coll
        .search_repositories(&pat(PAT), "WEB", SearchMode::Keyword, 1, 10)
        .await
        .unwrap();
    assert_eq!(names(&web), ["Fabrikam/web", "Tailspin/web-fork"]);
    let words = coll
        .search_repositories(&pat(PAT), "fork tail", SearchMode::Keyword, 1, 10)
        .await
        .unwrap();
    assert_eq!(names(&words), ["Tailspin/web-fork"]);
    // Native mode wants the query as one piece.
    assert!(
        names(
            &coll
                .search_repositories(&pat(PAT), "fork tail", SearchMode::Native, 1, 10)
                .await
                .unwrap()
        )
        .is_empty()
    );
    assert_eq!(
        names(
            &coll
                .search_repositories(&pat(PAT), "fiber/fiber", SearchMode::Native, 1, 10)
                .await
                .unwrap()
        ),
        ["Fabrikam Fiber/fiber app"]
    );
    let reader = coll
        .search_repositories(&pat(READER), "", SearchMode::Keyword, 1, 10)
        .await
        .unwrap();
    assert!(names(&reader).iter().all(|n| n.starts_with("Fabrikam/")));

    // Without a collection in the host, every collection on the server is searched.
    let root = provider(&server, None);
    let web = root
        .search_repositories(&pat(PAT), "web", SearchMode::Keyword, 1, 10)
        .await
        .unwrap();
    assert_eq!(
        names(&web),
        ["Fabrikam/web", "Legacy/old-web", "Tailspin/web-fork"]
    );
    assert_eq!(
        web.items[1].url,
        format!("{}/archive/Legacy/_git/old-web", server.base())
    );
    assert!(matches!(
        root.search_repositories(&pat("bad"), "web", SearchMode::Keyword, 1, 10)
            .await,
        Err(ScmError::AuthenticationRequired { .. })
    ));
}

#[tokio::test]
async fn projects_are_the_organizations() {
    let server = support_ado::start().await;
    let coll = provider(&server, Some(VDIR));
    let all = coll
        .list_organizations(&pat(PAT), "", 1, 100)
        .await
        .unwrap();
    assert_eq!(
        all.total_count,
        Some(3 + TEAMS as u64),
        "every page of projects was read"
    );
    // The collection comes from the server (below its virtual directory), so
    // names carry it.
    assert_eq!(all.items[0].name, "DefaultCollection/Fabrikam");
    assert_eq!(
        all.items[1].url,
        format!("{}/{COLLECTION}/Fabrikam%20Fiber", server.base())
    );
    assert!(all.has_next);
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.path.ends_with("/_apis/projects") && r.query.contains("%24skip=100"))
    );

    let fab = coll
        .list_organizations(&pat(PAT), "fabrikam", 1, 10)
        .await
        .unwrap();
    assert_eq!(
        fab.items
            .iter()
            .map(|o| o.name.as_str())
            .collect::<Vec<_>>(),
        [
            "DefaultCollection/Fabrikam",
            "DefaultCollection/Fabrikam Fiber"
        ]
    );
    let reader = coll
        .list_organizations(&pat(READER), "", 1, 10)
        .await
        .unwrap();
    assert_eq!(
        reader
            .items
            .iter()
            .map(|o| o.name.as_str())
            .collect::<Vec<_>>(),
        ["DefaultCollection/Fabrikam"]
    );

    let root = provider(&server, None);
    let legacy = root
        .list_organizations(&pat(PAT), "legacy", 1, 10)
        .await
        .unwrap();
    assert_eq!(
        legacy
            .items
            .iter()
            .map(|o| (o.name.as_str(), o.url.clone()))
            .collect::<Vec<_>>(),
        [(
            "archive/Legacy",
            format!("{}/archive/Legacy", server.base())
        )]
    );
    let teams = root
        .list_organizations(&pat(PAT), "team", 2, 50)
        .await
        .unwrap();
    assert_eq!(
        (teams.total_count, teams.items.len(), teams.has_next),
        (Some(TEAMS as u64), 50, true)
    );
}

#[tokio::test]
async fn sign_in_help() {
    let server = support_ado::start().await;
    let p = provider(&server, Some(VDIR));
    let help = p.pat_help();
    assert_eq!(
        help.create_url,
        format!("{}/{VDIR}/_usersSettings/tokens", server.base())
    );
    assert_eq!(help.required_scopes, ["vso.code"]);
    assert_eq!(
        p.oauth_authorize_url(),
        "https://login.microsoftonline.com/common/oauth2/v2.0/authorize"
    );
    assert_eq!(
        p.oauth_token_url(),
        "https://login.microsoftonline.com/common/oauth2/v2.0/token"
    );
    assert!(
        p.oauth_scopes()
            .iter()
            .any(|s| s.starts_with("499b84ac-1321-427f-aa17-267ca6975798/"))
    );

    let registry = HostRegistry::default();
    let dev = provider_for(
        registry.resolve("dev.azure.com").unwrap(),
        Duration::from_secs(1),
    );
    assert_eq!(
        dev.pat_help().create_url,
        "https://dev.azure.com/_usersSettings/tokens"
    );
    assert_eq!(dev.oauth_authorize_url(), p.oauth_authorize_url());
    let legacy = provider_for(
        registry.resolve("contoso.visualstudio.com").unwrap(),
        Duration::from_secs(1),
    );
    assert_eq!(
        legacy.pat_help().create_url,
        "https://contoso.visualstudio.com/_usersSettings/tokens"
    );
}
