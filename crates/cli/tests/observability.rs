//! What an operator sees, with real processes: `corral serve`'s `/metrics`
//! after API traffic and a connected `corral runner` (parsed strictly as the
//! Prometheus text format, and checked with `promtool` when it is
//! installed), the runner's own `/metrics`, and the JSON log lines of both
//! (`--log-format json`): connects, disconnects, refused callers, request
//! ids that follow a forwarded call into the runner — and no token anywhere.
//!
//! The metrics test runs once per store (`on_postgres::…` ignored unless
//! asked for, as elsewhere). Nothing waits for a fixed time: conditions are
//! polled with a generous overall limit.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use connectrpc::client::{ClientConfig, HttpClient};
use connectrpc::{ConnectError, ErrorCode};
use corral_api::gitpod::v1 as api;
use corral_testkit::PostgresDatabase;

mod support;

use support::{
    Patience, Proc, Served, create_linux_host_runner, describe, eventually, http_get, phase,
};

const PATIENCE: Patience = Patience {
    timeout: Duration::from_secs(30),
    poll: Duration::from_millis(50),
};
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

type Runners = api::RunnerServiceClient<HttpClient>;

// ---------------------------------------------------------------------------
// A strict reader of the Prometheus text format (0.0.4)
// ---------------------------------------------------------------------------

/// One sample line: the series name, its labels, its value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A metric family: HELP, TYPE and its samples.
#[derive(Debug, Default)]
struct Family {
    help: Option<String>,
    kind: Option<String>,
    samples: Vec<Sample>,
}

/// Parses a metrics page; every sample must belong to a family announced
/// with `# TYPE` before it (histograms and summaries as `<family>_bucket`,
/// `_sum`, `_count`; counters and gauges by the family's own name), and
/// every line must be well-formed.
fn parse_metrics(text: &str) -> Result<BTreeMap<String, Family>, String> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let (keyword, rest) = rest.split_once(' ').ok_or(format!("bad line {line:?}"))?;
            let (name, value) = rest.split_once(' ').ok_or(format!("bad line {line:?}"))?;
            let family = families.entry(name.to_string()).or_default();
            match keyword {
                "HELP" => family.help = Some(value.to_string()),
                "TYPE" => family.kind = Some(value.to_string()),
                _ => return Err(format!("unknown comment {line:?}")),
            }
            continue;
        }
        let sample = parse_sample(line)?;
        let family_name = [
            ("histogram", "_bucket"),
            ("histogram", "_sum"),
            ("histogram", "_count"),
            ("summary", "_sum"),
            ("summary", "_count"),
        ]
        .iter()
        .find_map(|(kind, suffix)| {
            let base = sample.name.strip_suffix(suffix)?;
            let family = families.get(base)?;
            (family.kind.as_deref() == Some(*kind)).then(|| base.to_string())
        })
        .or_else(|| {
            families
                .get(&sample.name)
                .filter(|f| matches!(f.kind.as_deref(), Some("gauge" | "counter")))
                .map(|_| sample.name.clone())
        })
        .ok_or(format!("sample {line:?} belongs to no announced family"))?;
        families
            .get_mut(&family_name)
            .expect("found above")
            .samples
            .push(sample);
    }
    for (name, family) in &families {
        if family.help.is_none() || family.kind.is_none() {
            return Err(format!("{name} lacks HELP or TYPE"));
        }
    }
    Ok(families)
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let bad = || format!("bad sample line {line:?}");
    let name_end = line.find(['{', ' ']).ok_or_else(bad)?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return Err(bad());
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        let mut key = String::new();
        let end = loop {
            let (i, c) = chars.next().ok_or_else(bad)?;
            match c {
                '}' if key.is_empty() => break i,
                ',' if key.is_empty() => {}
                '=' => {
                    if chars.next().map(|(_, c)| c) != Some('"') {
                        return Err(bad());
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next().ok_or_else(bad)?.1 {
                            '"' => break,
                            '\\' => match chars.next().ok_or_else(bad)?.1 {
                                'n' => value.push('\n'),
                                escaped @ ('\\' | '"') => value.push(escaped),
                                _ => return Err(bad()),
                            },
                            c => value.push(c),
                        }
                    }
                    if labels.insert(std::mem::take(&mut key), value).is_some() {
                        return Err(format!("repeated label in {line:?}"));
                    }
                }
                c if c.is_ascii_alphanumeric() || c == '_' => key.push(c),
                _ => return Err(bad()),
            }
        };
        rest = &inner[end + 1..];
    }
    let value = rest.strip_prefix(' ').ok_or_else(bad)?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().map_err(|_| bad())?,
    };
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// The value of the sample `name` whose labels include all of `labels`;
/// 0 when there is none (a counter not yet incremented).
fn value(families: &BTreeMap<String, Family>, name: &str, labels: &[(&str, &str)]) -> f64 {
    families
        .values()
        .flat_map(|f| &f.samples)
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

async fn scrape(url: &str) -> Result<(String, BTreeMap<String, Family>), String> {
    let (code, body) = http_get(&format!("{url}/metrics"), None, CALL_TIMEOUT).await?;
    if code != 200 {
        return Err(format!("GET {url}/metrics: HTTP {code}"));
    }
    let text = String::from_utf8(body).map_err(|e| e.to_string())?;
    let families = parse_metrics(&text)?;
    Ok((text, families))
}

/// `promtool check metrics` on the page, when promtool is installed.
fn promtool_accepts(dir: &Path, text: &str) {
    let Some(promtool) = ["/usr/bin/promtool", "/usr/local/bin/promtool"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        eprintln!("[skipped] promtool is not installed: the page was checked by the parser only");
        return;
    };
    let page = dir.join("metrics.txt");
    std::fs::write(&page, text).unwrap();
    let output = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&page).unwrap())
        .output()
        .expect("running promtool");
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("[checked] promtool check metrics accepts the page");
}

#[test]
fn the_parser_refuses_what_is_not_the_format() {
    let good = "# HELP a_total Counts.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\"} 2\n# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n";
    let families = parse_metrics(good).unwrap();
    assert_eq!(value(&families, "a_total", &[("y", "q\"")]), 2.0);
    assert_eq!(value(&families, "h_count", &[]), 1.0);
    for bad in [
        "a_total 1\n",
        "# TYPE a counter\n# HELP a A.\na_total 1\n",
        "# TYPE a counter\n# HELP a A.\na{x=1} 1\n",
        "# TYPE a counter\n# HELP a A.\na{x=\"1\" 1\n",
        "# TYPE a counter\n# HELP a A.\na one\n",
        "# TYPE a counter\na 1\n",
        "# TYPE h histogram\n# HELP h H.\nh 1\n",
    ] {
        assert!(parse_metrics(bad).is_err(), "accepted {bad:?}");
    }
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

fn client_config(server: &Served, token: &str) -> ClientConfig {
    ClientConfig::new(server.url().parse().unwrap())
        .with_default_timeout(CALL_TIMEOUT)
        .with_default_header("authorization", format!("Bearer {token}"))
}

fn runners(server: &Served, token: &str) -> Runners {
    Runners::new(HttpClient::plaintext(), client_config(server, token))
}

/// Creates a runner and starts `corral runner` for it with `extra` flags;
/// returns the process, the runner's id and its exchange token.
async fn start_runner(
    dir: &Path,
    server: &Served,
    name: &str,
    extra: &[&str],
) -> (Proc, String, String) {
    let created = create_linux_host_runner(&runners(server, &server.admin_token), name).await;
    let runner_id = created.runner.into_option().unwrap().runner_id;
    let data_dir = dir.join(format!("{name}-data"));
    let url = server.url();
    let mut args = vec![
        "runner",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--server",
        &url,
        "--exchange-token",
        &created.exchange_token,
    ];
    args.extend_from_slice(extra);
    let proc = Proc::spawn(dir, name, &args);
    (proc, runner_id, created.exchange_token)
}

async fn wait_active(server: &Served, runner: &mut Proc, runner_id: &str) -> api::Runner {
    eventually(PATIENCE, "the runner is ACTIVE", || {
        let exited = runner.try_status();
        let client = runners(server, &server.admin_token);
        async move {
            if let Some(status) = exited {
                panic!("the runner exited: {status:?}");
            }
            let got = client
                .get_runner(api::GetRunnerRequest {
                    runner_id: runner_id.into(),
                    ..Default::default()
                })
                .await
                .map_err(|e| describe(&e))?
                .into_owned()
                .runner
                .into_option()
                .unwrap_or_default();
            if phase(&got) == Some(api::RunnerPhase::RUNNER_PHASE_ACTIVE) {
                Ok(got)
            } else {
                Err(format!("phase {:?}", phase(&got)))
            }
        }
    })
    .await
    .0
}

fn assert_refused<T>(result: Result<T, ConnectError>, code: ErrorCode) {
    match result {
        Ok(_) => panic!("expected {}, got a success", code.as_str()),
        Err(e) => assert_eq!(e.code, code, "{}", describe(&e)),
    }
}

// ---------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------

mod on_sqlite {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn metrics_count_traffic_and_runners_and_stay_bounded() {
        super::metrics_count_traffic_and_runners_and_stay_bounded(None).await;
    }
}

mod on_postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL: run through scripts/test (cargo test -- --include-ignored)"]
    async fn metrics_count_traffic_and_runners_and_stay_bounded() {
        let database = corral_testkit::PostgresDatabase::create().await;
        super::metrics_count_traffic_and_runners_and_stay_bounded(Some(&database)).await;
    }
}

async fn metrics_count_traffic_and_runners_and_stay_bounded(database: Option<&PostgresDatabase>) {
    let tmp = tempfile::tempdir().unwrap();
    // A short grace makes the runner report every second: heartbeat gaps
    // show without a long wait.
    let mut extra = vec!["--runner-grace", "3s"];
    if let Some(database) = database {
        extra.extend(["--database-url", database.url()]);
    }
    let server = Served::start(tmp.path(), "server", &extra, PATIENCE).await;
    let (mut runner, runner_id, _) = start_runner(tmp.path(), &server, "runner", &[]).await;
    let active = wait_active(&server, &mut runner, &runner_id).await;
    let status = active.status.into_option().unwrap_or_default();
    let version = status.version.clone();
    assert!(!version.is_empty(), "the runner reports its version");

    let admin = runners(&server, &server.admin_token);
    const LISTS: usize = 5;
    for _ in 0..LISTS {
        admin
            .list_runners(api::ListRunnersRequest::default())
            .await
            .unwrap_or_else(|e| panic!("ListRunners: {}", describe(&e)));
    }
    const REFUSED: usize = 3;
    for _ in 0..REFUSED {
        assert_refused(
            runners(&server, "crl_pat_not-a-real-token")
                .list_runners(api::ListRunnersRequest::default())
                .await,
            ErrorCode::Unauthenticated,
        );
    }
    // A call the server forwards to the runner (answered by it). The runner
    // reports itself ACTIVE before it opens its request stream, so the
    // server may answer "unavailable: not connected" for a moment: a client
    // is told to try again, and so does this one.
    let (forwarded, _) = eventually(PATIENCE, "a call is forwarded to the runner", || {
        let admin = admin.clone();
        let runner_id = runner_id.clone();
        async move {
            let forwarded = admin
                .check_authentication_for_host(api::CheckAuthenticationForHostRequest {
                    host: "github.com".into(),
                    runner_id,
                    ..Default::default()
                })
                .await;
            match forwarded {
                Err(e) if e.code == ErrorCode::Unavailable => Err(describe(&e)),
                answered => Ok(answered.map(|_| ()).map_err(|e| describe(&e))),
            }
        }
    })
    .await;
    eprintln!("[seen] CheckAuthenticationForHost: {forwarded:?}");

    let (_, families) = eventually(PATIENCE, "a heartbeat gap is recorded", || {
        let url = server.url();
        async move {
            let (text, families) = scrape(&url).await?;
            if value(
                &families,
                "corral_runner_heartbeat_interval_seconds_count",
                &[],
            ) >= 1.0
            {
                Ok((text, families))
            } else {
                Err("no heartbeat gap yet".into())
            }
        }
    })
    .await
    .0;

    for (family, kind) in [
        ("corral_rpc_requests_total", "counter"),
        ("corral_rpc_duration_seconds", "histogram"),
        ("corral_forwarded_call_duration_seconds", "histogram"),
        ("corral_store_operation_duration_seconds", "histogram"),
        ("corral_runner_heartbeat_interval_seconds", "histogram"),
        ("corral_runners", "gauge"),
        ("corral_runner_streams", "gauge"),
        ("corral_event_watch_streams", "gauge"),
        ("corral_leader", "gauge"),
        ("corral_background_duty_runs_total", "counter"),
    ] {
        let found = families
            .get(family)
            .unwrap_or_else(|| panic!("no family {family}"));
        assert_eq!(found.kind.as_deref(), Some(kind), "{family}");
    }
    let list_runners = [
        ("service", "gitpod.v1.RunnerService"),
        ("method", "ListRunners"),
    ];
    let with_code = |code| {
        let mut labels = list_runners.to_vec();
        labels.push(("code", code));
        labels
    };
    assert_eq!(
        value(&families, "corral_rpc_requests_total", &with_code("ok")),
        LISTS as f64
    );
    assert_eq!(
        value(
            &families,
            "corral_rpc_requests_total",
            &with_code("unauthenticated")
        ),
        REFUSED as f64
    );
    assert_eq!(
        value(
            &families,
            "corral_rpc_duration_seconds_count",
            &with_code("ok")
        ),
        LISTS as f64
    );
    assert_eq!(
        value(
            &families,
            "corral_runners",
            &[
                ("phase", "active"),
                ("provider", "linux_host"),
                ("version", &version)
            ]
        ),
        1.0
    );
    assert_eq!(value(&families, "corral_runner_streams", &[]), 1.0);
    assert_eq!(
        value(
            &families,
            "corral_forwarded_call_duration_seconds_count",
            &[
                ("call", "check_authentication_for_host"),
                ("provider", "github")
            ]
        ),
        1.0
    );
    assert!(
        value(
            &families,
            "corral_store_operation_duration_seconds_count",
            &[("operation", "update_runner_status")]
        ) >= 1.0
    );
    let runner_streams = value(
        &families,
        "corral_rpc_requests_total",
        &[("method", "WatchRequests"), ("code", "ok")],
    );
    assert!(runner_streams >= 1.0, "the runner's stream is counted");

    // Unknown paths do not grow the page (the router answers them 404
    // before any RPC handling; were they counted, it would be as `unknown`).
    let series = |families: &BTreeMap<String, Family>| -> BTreeSet<BTreeMap<String, String>> {
        families["corral_rpc_requests_total"]
            .samples
            .iter()
            .map(|s| s.labels.clone())
            .collect()
    };
    let before = series(&families);
    let http = reqwest::Client::new();
    for i in 0..50 {
        let response = http
            .post(format!(
                "{}/gitpod.v1.NoSuchService{i}/Method{i}",
                server.url()
            ))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", server.admin_token))
            .body("{}")
            .send()
            .await
            .expect("the server answers unknown paths");
        assert!(response.status().is_client_error(), "{}", response.status());
    }
    let (text, families) = scrape(&server.url()).await.unwrap();
    let after = series(&families);
    let added: Vec<_> = after.difference(&before).collect();
    assert!(
        added
            .iter()
            .all(|labels| labels.values().any(|v| v == "unknown" || v == "ok")),
        "unknown paths added label values: {added:?}"
    );
    assert!(added.len() <= 2, "unknown paths added series: {added:?}");
    assert!(!text.contains("NoSuchService"));
    promtool_accepts(tmp.path(), &text);

    // The runner serves its own metrics on its HTTP server.
    let runner_url = status.log_url;
    let base = runner_url
        .strip_suffix("/logs")
        .unwrap_or_else(|| panic!("the log URL {runner_url:?} ends in /logs"));
    let (runner_text, runner_families) = scrape(base).await.unwrap();
    promtool_accepts(tmp.path(), &runner_text);
    for family in [
        "corral_runner_connected",
        "corral_runner_stream_reconnects_total",
        "corral_runner_requests_total",
        "corral_runner_scm_request_duration_seconds",
    ] {
        assert!(
            runner_families.contains_key(family),
            "the runner's page lacks {family}"
        );
    }
    assert_eq!(value(&runner_families, "corral_runner_connected", &[]), 1.0);
    assert!(
        value(
            &runner_families,
            "corral_runner_requests_total",
            &[("kind", "spec")]
        ) >= 1.0
    );
}

// ---------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------

/// The JSON objects a process wrote, one per line; every line must be one.
fn json_lines(output: &str) -> Vec<serde_json::Value> {
    output
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"))
        })
        .collect()
}

/// The first line whose message is `message` and whose fields include `fields`.
fn find_line<'a>(
    lines: &'a [serde_json::Value],
    message: &str,
    fields: &[(&str, &str)],
) -> Option<&'a serde_json::Value> {
    lines.iter().find(|line| {
        let f = &line["fields"];
        f["message"] == message && fields.iter().all(|(k, v)| f[*k].as_str() == Some(*v))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_tell_connects_disconnects_refusals_and_follow_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Served::start(tmp.path(), "server", &["--log-format", "json"], PATIENCE).await;
    let (mut runner, runner_id, exchange_token) =
        start_runner(tmp.path(), &server, "runner", &["--log-format", "json"]).await;
    wait_active(&server, &mut runner, &runner_id).await;
    eventually(PATIENCE, "the server logs the connect", || {
        let output = server.proc.output();
        let runner_id = runner_id.clone();
        async move {
            find_line(
                &json_lines(&output),
                "runner connected",
                &[("runner_id", &runner_id)],
            )
            .map(|_| ())
            .ok_or_else(|| "no connect line yet".to_string())
        }
    })
    .await;

    // A refused caller: a token of the right shape that names nobody.
    let bogus = "crl_pat_0123456789abcdefghijklmnopqrstuv";
    assert_refused(
        runners(&server, bogus)
            .list_runners(api::ListRunnersRequest::default())
            .await,
        ErrorCode::Unauthenticated,
    );
    // A forwarded call with a request id of ours: the runner's lines for the
    // work carry it.
    let request_id = "trace-me-7f3a";
    let traced = Runners::new(
        HttpClient::plaintext(),
        client_config(&server, &server.admin_token).with_default_header("x-request-id", request_id),
    );
    let _ = traced
        .check_authentication_for_host(api::CheckAuthenticationForHostRequest {
            host: "github.com".into(),
            runner_id: runner_id.clone(),
            ..Default::default()
        })
        .await;
    eventually(
        PATIENCE,
        "the runner logs the forwarded request's id",
        || {
            let output = runner.output();
            async move {
                json_lines(&output)
                    .iter()
                    .find(|line| {
                        line["fields"]["message"] == "answered an SCM request"
                            && line["span"]["origin_request_id"] == request_id
                    })
                    .map(|_| ())
                    .ok_or_else(|| "no line with the request id yet".to_string())
            }
        },
    )
    .await;

    runner.sigkill();
    let lines = eventually(PATIENCE, "the server logs the disconnect", || {
        let output = server.proc.output();
        let runner_id = runner_id.clone();
        async move {
            let lines = json_lines(&output);
            match find_line(&lines, "runner disconnected", &[("runner_id", &runner_id)]) {
                Some(line) if line["fields"]["connected_seconds"].is_u64() => Ok(lines),
                Some(line) => Err(format!("no connected_seconds in {line}")),
                None => Err("no disconnect line yet".into()),
            }
        }
    })
    .await
    .0;
    let connect = find_line(&lines, "runner connected", &[("runner_id", &runner_id)]).unwrap();
    assert_eq!(connect["fields"]["runner_name"], "runner");
    assert!(
        connect["fields"]["version"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    );
    assert_eq!(connect["level"], "INFO");
    let refused = find_line(
        &lines,
        "refused a caller",
        &[
            ("rpc", "gitpod.v1.RunnerService/ListRunners"),
            ("code", "unauthenticated"),
            ("token_kind", "personal"),
        ],
    )
    .unwrap_or_else(|| panic!("no refusal line in\n{}", server.proc.output()));
    assert!(
        refused["fields"]["client_address"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1")),
        "{refused}"
    );
    assert!(
        !refused["fields"]["reason"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
    );

    let server_output = server.proc.output();
    let runner_output = runner.output();
    let credentials: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("runner-data/credentials.json")).unwrap(),
    )
    .unwrap();
    let access_token = credentials["access_token"].as_str().unwrap().to_string();
    assert!(access_token.starts_with("crl_rt_"));
    for secret in [
        bogus,
        server.admin_token.as_str(),
        exchange_token.as_str(),
        access_token.as_str(),
    ] {
        assert!(!server_output.contains(secret), "the server logged a token");
        assert!(!runner_output.contains(secret), "the runner logged a token");
    }
    server.proc.sigkill();
}
