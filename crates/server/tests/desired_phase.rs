//! `spec.desired_phase = INACTIVE` cordons a runner: its status turns
//! INACTIVE with a message at once and stays so while it reports, SCM work
//! naming it is refused, automatic choice skips it; ACTIVE again resumes it
//! at once. The runner's side is played over the runner protocol with its
//! own access token.

mod support;

use serde_json::{Value, json};
use support::{Client, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CORDONED: &str = "set inactive: the runner takes no work until it is set active again";

async fn runner_with_token(server: &Server) -> (String, Client) {
    let created = server.create_runner("cordoned").await;
    let runner_id = created["runner"]["runnerId"].as_str().unwrap().to_string();
    let exchange = created["exchangeToken"].as_str().unwrap();
    let anonymous = server.client("");
    let access = anonymous
        .call_procedure(
            "gitpod.v1.IdentityService/ExchangeToken",
            json!({"exchangeToken": exchange}),
        )
        .await
        .unwrap();
    let token = access["accessToken"].as_str().unwrap();
    (runner_id, server.client(token))
}

/// Opens the runner's request stream (Connect streaming, JSON) and waits for
/// its first message, the spec: from then on the runner counts as connected.
/// The stream stays open while the returned connection lives.
async fn open_stream(runner: &Client) -> TcpStream {
    let body = b"{}";
    let mut envelope = vec![0u8];
    envelope.extend_from_slice(&(body.len() as u32).to_be_bytes());
    envelope.extend_from_slice(body);
    let head = format!(
        "POST /corral.v1.RunnerInteractionService/WatchRequests HTTP/1.1\r\nHost: {}\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/connect+json\r\n\
         Connect-Protocol-Version: 1\r\nContent-Length: {}\r\n\r\n",
        runner.addr,
        runner.token,
        envelope.len()
    );
    let mut stream = TcpStream::connect(runner.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&envelope).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("desiredPhase") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "the stream ended: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    stream
}

async fn report(runner: &Client) {
    runner
        .call_procedure(
            "corral.v1.RunnerInteractionService/ReportStatus",
            json!({"version": "test", "healthy": true, "message": "all well"}),
        )
        .await
        .unwrap();
}

async fn status(server: &Server, runner_id: &str) -> Value {
    server
        .admin
        .ok("RunnerService/GetRunner", json!({"runnerId": runner_id}))
        .await["runner"]["status"]
        .clone()
}

async fn set_desired(server: &Server, runner_id: &str, phase: &str) {
    server
        .admin
        .ok(
            "RunnerService/UpdateRunner",
            json!({"runnerId": runner_id, "spec": {"desiredPhase": phase}}),
        )
        .await;
}

#[tokio::test]
async fn an_inactive_runner_takes_no_work_until_set_active_again() {
    let server = Server::start().await;
    let (runner_id, runner) = runner_with_token(&server).await;
    let _stream = open_stream(&runner).await;
    report(&runner).await;
    assert_eq!(
        status(&server, &runner_id).await["phase"],
        "RUNNER_PHASE_ACTIVE"
    );

    set_desired(&server, &runner_id, "RUNNER_PHASE_INACTIVE").await;
    let cordoned = status(&server, &runner_id).await;
    assert_eq!(cordoned["phase"], "RUNNER_PHASE_INACTIVE");
    assert_eq!(cordoned["message"], CORDONED);
    // Its reports keep it so.
    report(&runner).await;
    let still = status(&server, &runner_id).await;
    assert_eq!(still["phase"], "RUNNER_PHASE_INACTIVE");
    assert_eq!(still["message"], CORDONED);
    // Work naming it is refused, saying why.
    let refused = server
        .admin
        .fails(
            "failed_precondition",
            "RunnerService/ParseContextURL",
            json!({"runnerId": runner_id, "contextUrl": "https://github.com/o/r"}),
        )
        .await;
    assert!(refused.contains("set inactive"), "{refused}");
    // Automatic choice skips it.
    let skipped = server
        .admin
        .fails(
            "unavailable",
            "RunnerService/ParseContextURL",
            json!({"contextUrl": "https://github.com/o/r"}),
        )
        .await;
    assert!(skipped.contains("active"), "{skipped}");

    // Active again: at once, without waiting for a report.
    set_desired(&server, &runner_id, "RUNNER_PHASE_ACTIVE").await;
    let resumed = status(&server, &runner_id).await;
    assert_eq!(resumed["phase"], "RUNNER_PHASE_ACTIVE");
    assert_eq!(resumed.get("message"), None, "{resumed}");
}

#[tokio::test]
async fn a_runner_set_active_again_without_a_stream_waits_for_its_report() {
    let server = Server::start().await;
    let (runner_id, runner) = runner_with_token(&server).await;
    report(&runner).await;
    set_desired(&server, &runner_id, "RUNNER_PHASE_INACTIVE").await;
    set_desired(&server, &runner_id, "RUNNER_PHASE_ACTIVE").await;
    let waiting = status(&server, &runner_id).await;
    assert_eq!(waiting["phase"], "RUNNER_PHASE_INACTIVE");
    assert_eq!(waiting.get("message"), None, "{waiting}");
    // Its next report says how it is; work naming it is no longer refused for
    // being set inactive (it has no stream open here: unavailable).
    report(&runner).await;
    assert_eq!(
        status(&server, &runner_id).await["phase"],
        "RUNNER_PHASE_ACTIVE"
    );
    server
        .admin
        .fails(
            "unavailable",
            "RunnerService/ParseContextURL",
            json!({"runnerId": runner_id, "contextUrl": "https://github.com/o/r"}),
        )
        .await;
}

#[tokio::test]
async fn a_runner_set_inactive_before_it_reported_stays_so_when_it_does() {
    let server = Server::start().await;
    let (runner_id, runner) = runner_with_token(&server).await;
    set_desired(&server, &runner_id, "RUNNER_PHASE_INACTIVE").await;
    assert_eq!(
        status(&server, &runner_id).await["phase"],
        "RUNNER_PHASE_CREATED"
    );
    report(&runner).await;
    let reported = status(&server, &runner_id).await;
    assert_eq!(reported["phase"], "RUNNER_PHASE_INACTIVE");
    assert_eq!(reported["message"], CORDONED);
}
