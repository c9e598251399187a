//! A server told to stop while clients keep writing: it stops taking new
//! requests, finishes the ones in flight, and exits cleanly; every request it
//! acknowledged is in the store when the server comes back.
//!
//! Sixteen clients, each on a keep-alive connection of its own, create
//! runners as fast as the server answers. After the first acknowledged
//! creations the server gets SIGTERM. Clients stop at their first failure (a
//! refused or closed connection: the server is gone). A request that failed
//! may or may not have been carried out; one that was answered with success
//! must have been.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use corral_testkit::PostgresDatabase;
use support::{Patience, Served};

const PATIENCE: Patience = Patience {
    timeout: Duration::from_secs(60),
    poll: Duration::from_millis(50),
};

/// Clients writing at once.
const CLIENTS: usize = 16;
/// Acknowledged creations before the server is told to stop.
const BEFORE_STOP: usize = 100;

corral_testkit::on_both_stores!(no_acknowledged_write_is_lost_when_the_server_stops_under_load);

async fn on_sqlite<Fut: Future<Output = ()>>(test: impl FnOnce(Vec<String>) -> Fut) {
    test(Vec::new()).await;
}

async fn on_postgres<Fut: Future<Output = ()>>(test: impl FnOnce(Vec<String>) -> Fut) {
    let database = PostgresDatabase::create().await;
    test(vec!["--database-url".into(), database.url().to_string()]).await;
    drop(database);
}

async fn no_acknowledged_write_is_lost_when_the_server_stops_under_load(flags: Vec<String>) {
    let tmp = tempfile::tempdir().unwrap();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut server = Served::start(tmp.path(), "server", &flags, PATIENCE).await;
    let url = server.url();
    let token = server.admin_token.clone();

    let acknowledged = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (url, token, acknowledged) = (url.clone(), token.clone(), acknowledged.clone());
            tokio::spawn(
                async move { create_until_refused(client, &url, &token, &acknowledged).await },
            )
        })
        .collect();
    while acknowledged.load(Ordering::SeqCst) < BEFORE_STOP {
        assert!(
            server.proc.try_status().is_none(),
            "the server exited before it was told to"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.proc.sigterm();
    let exit = server.proc.wait_exit(PATIENCE).await;
    assert!(
        exit.success(),
        "the server exits cleanly on SIGTERM: {exit:?}"
    );

    let mut created = BTreeSet::new();
    let mut failures = Vec::new();
    for client in clients {
        let outcome = client.await.unwrap();
        created.extend(outcome.created);
        failures.push(outcome.stopped_by);
    }
    assert!(created.len() >= BEFORE_STOP);
    for failure in &failures {
        // Only ways of finding the server gone; never an error answer.
        assert!(
            failure.starts_with("transport"),
            "a client stopped on an answer, not on the server being gone: {failure}"
        );
    }

    // The same store again: every acknowledged runner is there.
    let server = restart(tmp.path(), &server.data_dir, &flags).await;
    let stored = runner_ids(&server.url(), &server.admin_token).await;
    let lost: Vec<_> = created.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged runners are missing after the restart: {lost:?}",
        lost.len(),
        created.len()
    );
}

/// What one client saw.
struct Outcome {
    /// Ids of the runners whose creation the server acknowledged.
    created: Vec<String>,
    /// Why the client stopped.
    stopped_by: String,
}

async fn create_until_refused(
    client: usize,
    url: &str,
    token: &str,
    acknowledged: &AtomicUsize,
) -> Outcome {
    // One connection per client, kept alive between requests.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(PATIENCE.timeout)
        .build()
        .unwrap();
    let mut created = Vec::new();
    for n in 0.. {
        let response = http
            .post(format!("{url}/gitpod.v1.RunnerService/CreateRunner"))
            .bearer_auth(token)
            .json(&serde_json::json!({ "name": format!("drain {client}-{n}") }))
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(e) => {
                return Outcome {
                    created,
                    stopped_by: format!("transport: {e}"),
                };
            }
        };
        let status = response.status();
        let body: serde_json::Value = match response.json().await {
            Ok(body) => body,
            Err(e) => {
                return Outcome {
                    created,
                    stopped_by: format!("transport (reading the answer): {e}"),
                };
            }
        };
        if !status.is_success() {
            return Outcome {
                created,
                stopped_by: format!("answer {status}: {body}"),
            };
        }
        let id = body["runner"]["runnerId"]
            .as_str()
            .unwrap_or_else(|| panic!("CreateRunner answered without a runner id: {body}"))
            .to_string();
        created.push(id);
        acknowledged.fetch_add(1, Ordering::SeqCst);
    }
    unreachable!("the loop ends when the server is gone")
}

async fn restart(tmp: &Path, data_dir: &Path, flags: &[&str]) -> Served {
    // `Served::start` names the data dir after the server: reuse the first one's.
    let name = data_dir
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix("-data"))
        .unwrap();
    Served::start(tmp, name, flags, PATIENCE).await
}

/// Every runner id the admin sees, through every page.
async fn runner_ids(url: &str, token: &str) -> BTreeSet<String> {
    let http = reqwest::Client::new();
    let mut ids = BTreeSet::new();
    let mut page_token = String::new();
    loop {
        let body: serde_json::Value = http
            .post(format!("{url}/gitpod.v1.RunnerService/ListRunners"))
            .bearer_auth(token)
            .json(&serde_json::json!({ "pagination": { "token": page_token, "pageSize": 100 } }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for runner in body["runners"].as_array().into_iter().flatten() {
            ids.insert(runner["runnerId"].as_str().unwrap().to_string());
        }
        match body["pagination"]["nextToken"].as_str() {
            Some(next) if !next.is_empty() => page_token = next.to_string(),
            _ => return ids,
        }
    }
}
