//! Server reflection with a real client: `buf curl` lists the methods of a
//! running `corral serve` and calls them with no local copy of the schema
//! (no `--schema`), over gRPC and Connect. Reflection itself needs no token;
//! the calls still do.
//!
//! `buf` comes from the npm registry (`@bufbuild/buf`), installed once into
//! the target dir and reused. Without npm or the registry the test fails and
//! says so: a skipped check must not look like a passing one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

mod support;

use support::{Patience, Served};

const TIMEOUT: Duration = Duration::from_secs(30);
const PATIENCE: Patience = Patience {
    timeout: TIMEOUT,
    poll: Duration::from_millis(50),
};

/// The buf release the test runs.
const BUF_VERSION: &str = "1.75.0";

/// The `buf` executable, installed with npm under the target dir on first use.
fn buf() -> PathBuf {
    let tools = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tools");
    let home = tools.join(format!("buf-{BUF_VERSION}"));
    let executable = home.join("node_modules/.bin/buf");
    if executable.exists() {
        return executable;
    }
    std::fs::create_dir_all(&tools).unwrap();
    // Installed beside, then moved in place: tests running at once do not
    // see a half-installed copy.
    let staging = tools.join(format!("buf-{BUF_VERSION}.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).unwrap();
    let installed = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&staging)
        .arg(format!("@bufbuild/buf@{BUF_VERSION}"))
        .output();
    match installed {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "this test needs buf: `npm install @bufbuild/buf@{BUF_VERSION}` failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(e) => panic!("this test needs buf, installed with npm; npm could not run: {e}"),
    }
    if std::fs::rename(&staging, &home).is_err() {
        // Another test installed it first.
        let _ = std::fs::remove_dir_all(&staging);
    }
    assert!(
        executable.exists(),
        "npm installed @bufbuild/buf but {} is missing",
        executable.display()
    );
    executable
}

/// Runs `buf curl ARGS…` and returns its exit success, stdout and stderr.
fn buf_curl(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(buf())
        .arg("curl")
        .args(["--connect-timeout", "20"])
        .args(args)
        .output()
        .expect("running buf curl");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn buf_curl_lists_and_calls_methods_without_a_schema() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path(), "server", &[], PATIENCE).await;
    let url = served.url();

    // Plain HTTP/1.1 and HTTP/2 without TLS; no token.
    for transport in [&[][..], &["--http2-prior-knowledge"][..]] {
        let mut args = transport.to_vec();
        args.extend(["--list-methods", &url]);
        let (ok, out, err) = buf_curl(&args);
        assert!(ok, "buf curl --list-methods {transport:?} failed: {err}");
        let methods: Vec<&str> = out.lines().collect();
        for expected in [
            "gitpod.v1.RunnerService/ListRunners",
            "gitpod.v1.RunnerService/CreateRunner",
            "gitpod.v1.IdentityService/GetAuthenticatedIdentity",
            "gitpod.v1.EventService/WatchEvents",
            "corral.v1.RunnerInteractionService/WatchRequests",
        ] {
            assert!(methods.contains(&expected), "{expected} not listed: {out}");
        }
    }

    // Calls described by reflection alone: create a runner over gRPC, list
    // it over Connect.
    let auth = format!("Authorization: Bearer {}", served.admin_token);
    let create = format!("{url}/gitpod.v1.RunnerService/CreateRunner");
    let (ok, out, err) = buf_curl(&[
        "--http2-prior-knowledge",
        "--protocol",
        "grpc",
        "-H",
        &auth,
        "-d",
        r#"{"name":"made-by-buf"}"#,
        &create,
    ]);
    assert!(ok, "CreateRunner failed: {err}");
    let created: serde_json::Value = serde_json::from_str(&out).unwrap();
    let runner_id = created["runner"]["runnerId"].as_str().unwrap().to_string();

    let list = format!("{url}/gitpod.v1.RunnerService/ListRunners");
    let (ok, out, err) = buf_curl(&["-H", &auth, "-d", "{}", &list]);
    assert!(ok, "ListRunners failed: {err}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let runners = listed["runners"].as_array().expect("a list of runners");
    assert!(
        runners
            .iter()
            .any(|r| r["runnerId"] == runner_id.as_str() && r["name"] == "made-by-buf"),
        "{listed}"
    );

    // The schema is public; the data is not.
    let (ok, _, err) = buf_curl(&["-d", "{}", &list]);
    assert!(!ok, "ListRunners without a token succeeded");
    assert!(err.contains("unauthenticated"), "{err}");

    // A method the schema does not have is refused by buf before any call.
    let (ok, _, err) = buf_curl(&[
        "-d",
        "{}",
        &format!("{url}/gitpod.v1.RunnerService/NoSuchMethod"),
    ]);
    assert!(!ok);
    assert!(err.contains("NoSuchMethod"), "{err}");
}
