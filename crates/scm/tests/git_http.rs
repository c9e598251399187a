//! `git_http::check_access` against the installed `git http-backend` behind
//! HTTP Basic authentication, and against servers that are not git.

mod support_git_http;

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use corral_scm::git_http::check_access;
use corral_scm::http::Http;
use corral_scm::{Credentials, ScmError};
use support_git_http::{GitServer, TempDir, bare_repo_with_commit, git};

const ALICE: (&str, &str) = ("alice", "alice-token");
/// Tokens without a user name go as `oauth2`.
const OAUTH: (&str, &str) = ("oauth2", "oauth-token");
const BOB: (&str, &str) = ("bob", "bob-token");

struct Fixture {
    server: GitServer,
    commit: String,
}

async fn fixture() -> Fixture {
    let root = TempDir::new("git-http");
    let commit = bare_repo_with_commit(&root.0, "team/app.git");
    bare_repo_with_commit(&root.0, "secret/vault.git");
    let server = support_git_http::start(root, &[ALICE, OAUTH, BOB], &[("bob", "secret")]).await;
    Fixture { server, commit }
}

fn creds(user: Option<&str>, token: &str) -> Credentials {
    Credentials {
        token: token.into(),
        username: user.map(str::to_string),
    }
}

fn http() -> Http {
    Http::new("127.0.0.1", Duration::from_secs(10))
}

#[tokio::test]
async fn the_bridge_is_a_real_git_server() {
    let f = fixture().await;
    let with = |user: &str, pass: &str| {
        format!(
            "http://{user}:{pass}@127.0.0.1:{}/team/app.git",
            f.server.port
        )
    };
    let out = tokio::task::spawn_blocking({
        let url = with(ALICE.0, ALICE.1);
        move || git().args(["ls-remote", &url]).output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let refs = String::from_utf8(out.stdout).unwrap();
    assert!(
        refs.contains(&format!("{}\trefs/heads/main", f.commit)),
        "{refs}"
    );

    let out = tokio::task::spawn_blocking({
        let url = with(ALICE.0, "wrong");
        move || git().args(["ls-remote", &url]).output().unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success());
}

/// (what, repository URL, credentials, `Ok` or the error's code).
type Case = (
    &'static str,
    String,
    Option<Credentials>,
    Result<(), &'static str>,
);

#[tokio::test]
async fn access_follows_the_git_servers_answer() {
    let f = fixture().await;
    let http = http();
    let url = |p: &str| f.server.url(p);
    let alice = creds(Some(ALICE.0), ALICE.1);
    let cases: Vec<Case> = vec![
        (
            "right credentials",
            url("team/app.git"),
            Some(alice.clone()),
            Ok(()),
        ),
        (
            "no .git suffix",
            url("team/app"),
            Some(alice.clone()),
            Ok(()),
        ),
        (
            "trailing slash",
            url("team/app.git/"),
            Some(alice.clone()),
            Ok(()),
        ),
        (
            "a token alone goes as oauth2",
            url("team/app.git"),
            Some(creds(None, OAUTH.1)),
            Ok(()),
        ),
        (
            "an empty user name goes as oauth2",
            url("team/app.git"),
            Some(creds(Some(""), OAUTH.1)),
            Ok(()),
        ),
        (
            "wrong token",
            url("team/app.git"),
            Some(creds(Some(ALICE.0), "wrong")),
            Err("failed_precondition"),
        ),
        (
            "right token, wrong user",
            url("team/app.git"),
            Some(creds(None, ALICE.1)),
            Err("failed_precondition"),
        ),
        (
            "no credentials",
            url("team/app.git"),
            None,
            Err("failed_precondition"),
        ),
        (
            "an empty token is none",
            url("team/app.git"),
            Some(creds(Some(ALICE.0), "")),
            Err("failed_precondition"),
        ),
        (
            "missing repository",
            url("team/missing.git"),
            Some(alice.clone()),
            Err("not_found"),
        ),
        (
            "forbidden repository",
            url("secret/vault.git"),
            Some(creds(Some(BOB.0), BOB.1)),
            Err("permission_denied"),
        ),
        (
            "allowed there for others",
            url("secret/vault.git"),
            Some(alice.clone()),
            Ok(()),
        ),
        (
            "not http",
            "git@127.0.0.1:team/app.git".to_string(),
            Some(alice.clone()),
            Err("invalid_argument"),
        ),
        (
            "not a URL",
            "team/app".to_string(),
            Some(alice.clone()),
            Err("invalid_argument"),
        ),
    ];
    for (name, repo_url, creds, want) in cases {
        let got = check_access(&http, &repo_url, creds.as_ref()).await;
        match (want, got) {
            (Ok(()), Ok(())) => {}
            (Err(code), Err(e)) => assert_eq!(e.code(), code, "{name}: {e}"),
            (w, g) => panic!("{name}: wanted {w:?}, got {g:?}"),
        }
    }
    // Credentials in the pasted URL are not sent in place of the given ones.
    let with_userinfo = format!(
        "http://alice:wrong@127.0.0.1:{}/team/app.git",
        f.server.port
    );
    assert_eq!(
        check_access(&http, &with_userinfo, Some(&alice)).await,
        Ok(())
    );
}

/// An HTTP server that is not git: pages, sign-in redirects, limits and stalls.
async fn not_git() -> u16 {
    let app = Router::new()
        .route(
            "/page/info/refs",
            get(|| async { ([("content-type", "text/html")], "<html>hello</html>") }),
        )
        .route("/sso/info/refs", get(|| async { Redirect::to("/login") }))
        .route(
            "/login",
            get(|| async {
                (
                    [("content-type", "text/html; charset=utf-8")],
                    "<form>sign in</form>",
                )
            }),
        )
        .route(
            "/limited/info/refs",
            get(|| async {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", "42")],
                    "slow down",
                )
                    .into_response()
            }),
        )
        .route(
            "/broken/info/refs",
            get(|| async { (StatusCode::BAD_GATEWAY, "upstream down").into_response() }),
        )
        .route(
            "/slow/info/refs",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "too late"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

#[tokio::test]
async fn servers_that_are_not_git_say_so() {
    let port = not_git().await;
    let url = |p: &str| format!("http://127.0.0.1:{port}/{p}");
    let c = creds(None, "token");
    let http = http();
    assert!(matches!(
        check_access(&http, &url("page"), Some(&c)).await,
        Err(ScmError::NotFound(_))
    ));
    assert!(matches!(
        check_access(&http, &url("sso"), Some(&c)).await,
        Err(ScmError::AuthenticationRequired { .. })
    ));
    assert_eq!(
        check_access(&http, &url("limited"), Some(&c)).await,
        Err(ScmError::RateLimited {
            host: "127.0.0.1".into(),
            retry_after_secs: Some(42)
        })
    );
    assert!(matches!(
        check_access(&http, &url("broken"), Some(&c)).await,
        Err(ScmError::Unavailable(_))
    ));
    assert!(matches!(
        check_access(&http, &url("nothing-here"), Some(&c)).await,
        Err(ScmError::NotFound(_))
    ));

    let hurried = Http::new("127.0.0.1", Duration::from_millis(300));
    assert!(matches!(
        check_access(&hurried, &url("slow"), Some(&c)).await,
        Err(ScmError::Unavailable(_))
    ));
    // Nothing listening.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    assert!(matches!(
        check_access(
            &hurried,
            &format!("http://127.0.0.1:{closed}/team/app.git"),
            Some(&c)
        )
        .await,
        Err(ScmError::Unavailable(_))
    ));
}
