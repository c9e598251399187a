//! On the SQLite store a call's writes and its audit event reach the disk
//! with one flush of the write-ahead log, and the answer leaves only after
//! it (`store::group_commit::deferring`). Read from the store's own counts,
//! as `/metrics` shows them; no timing.

mod support;

use corral_server::store::LogFlushes;
use serde_json::json;
use support::Server;

async fn counts(server: &Server) -> LogFlushes {
    server
        .state
        .unrestricted_store()
        .log_flushes()
        .await
        .unwrap()
        .expect("SQLite commits in full by default, through the group commit")
}

#[tokio::test]
async fn a_change_and_its_audit_event_share_one_flush() {
    let server = Server::start().await;
    let created = server.create_runner("flushed").await;
    let runner_id = created["runner"]["runnerId"].as_str().unwrap().to_string();

    for round in 0..5 {
        let before = counts(&server).await;
        server
            .admin
            .ok(
                "RunnerService/UpdateRunner",
                json!({"runnerId": runner_id, "name": format!("renamed {round}")}),
            )
            .await;
        let after = counts(&server).await;
        let commits = after.commits - before.commits;
        let flushes = after.flushes - before.flushes;
        // The change and its audit event; a background write (token uses)
        // may add one of each.
        assert!(commits >= 2, "round {round}: {commits} commits");
        assert!(
            flushes < commits,
            "round {round}: {flushes} flushes for {commits} commits"
        );
        // The answer came once the call's commits were on disk.
        assert!(
            after.durable >= before.commits + 2,
            "round {round}: answered before its commits were flushed ({after:?} after {before:?})"
        );
    }

    // The last rename is there.
    let runner = server
        .admin
        .ok("RunnerService/GetRunner", json!({"runnerId": runner_id}))
        .await;
    assert_eq!(runner["runner"]["name"], "renamed 4");
}
