//! The fleet: many simulated runners connected to one SQLite server, each as
//! the real agent behaves once set up — its own access token, `SignUp`, a
//! first `ReportStatus`, one `WatchRequests` stream held open, and a
//! `ReportStatus` heartbeat every interval the server names. Each runner has
//! one HTTP/2 (h2c) connection of its own that carries its stream and its
//! heartbeats (the real agent, on HTTP/1.1, holds two; two per runner would
//! not fit 10,000 runners in the open-files limit of this machine).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use connectrpc::client::{ClientConfig, Http2Connection};
use corral_api::corral::v1::runner_request::Kind;
use corral_api::corral::v1::{
    ReportStatusRequest, RunnerInteractionServiceClient, SignUpRequest, WatchRequestsRequest,
};
use hdrhistogram::Histogram;
use rand::Rng;
use serde_json::json;
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::http::{self, Call, CallFactory, Http1, Sample};
use crate::server::{ServeOptions, Server, StoreKind};

/// What the fleet run is asked to do.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub runners: usize,
    /// `--runner-grace` of the server; it tells runners to heartbeat every third of it.
    pub grace: Duration,
    /// The steady window over which CPU, memory and heartbeats are measured.
    pub window: Duration,
    /// Runners whose spec is changed to time the delivery over their streams.
    pub changes: usize,
    /// Runners stopped at the start of the window, to see them turn INACTIVE.
    pub killed: usize,
    /// GetRunner requests per second sent beside the fleet during the window.
    pub probe_rate: u32,
}

/// What the fleet run measured.
#[derive(Debug, Clone)]
pub struct FleetReport {
    pub runners: usize,
    pub grace: Duration,
    pub heartbeat_interval: Duration,
    pub window: Duration,
    pub connect_time: Duration,
    pub connect_failures: usize,
    pub rss_max: u64,
    pub rss_end: u64,
    pub cores: f64,
    pub heartbeats: Sample,
    pub heartbeat_failures: u64,
    pub probe: Sample,
    pub changes: usize,
    pub changes_delivered: usize,
    /// Latency from sending UpdateRunner to the new spec arriving on the stream.
    pub change_delivery: Histogram<u64>,
    /// From each killed runner's last heartbeat until GetRunner showed it
    /// INACTIVE; `None` for one that never turned INACTIVE in time.
    pub killed_detection: Vec<Option<Duration>>,
    pub sweep_period: Duration,
}

/// Shared by every simulated runner: where they record what the bench measures.
struct Shared {
    base: Instant,
    /// Whether heartbeats are counted now (the window).
    recording: AtomicBool,
    heartbeats: Mutex<Histogram<u64>>,
    heartbeat_failures: AtomicU64,
    /// Per runner: µs since `base` of its last successful heartbeat.
    last_heartbeat: Vec<AtomicU64>,
    /// Per runner: µs since `base` when a spec after the first arrived (0: none).
    spec_received: Vec<AtomicU64>,
    interval: AtomicU64,
}

impl Shared {
    fn micros(&self) -> u64 {
        self.base.elapsed().as_micros() as u64
    }
}

pub async fn run(binary: &std::path::Path, config: &FleetConfig) -> anyhow::Result<FleetReport> {
    let options = ServeOptions {
        runner_grace: Some(config.grace),
        max_connections: Some((config.runners + 1000) as u32),
    };
    let server = Server::start(binary, StoreKind::Sqlite, &options).await?;
    let dataset = crate::load::runners(&server, config.runners).await?;
    let store = server.open_store().await?;
    let tokens = crate::load::runner_tokens(&store, &dataset.runner_ids).await?;
    store.close().await;

    let shared = Arc::new(Shared {
        base: Instant::now(),
        recording: AtomicBool::new(false),
        heartbeats: Mutex::new(http::histogram()),
        heartbeat_failures: AtomicU64::new(0),
        last_heartbeat: (0..config.runners).map(|_| AtomicU64::new(0)).collect(),
        spec_received: (0..config.runners).map(|_| AtomicU64::new(0)).collect(),
        interval: AtomicU64::new(0),
    });

    // Connect the fleet, at most 64 runners setting up at a time (as after
    // a restart of the management plane, when every runner reconnects).
    eprintln!("  connecting {} runners …", config.runners);
    let started = Instant::now();
    let setting_up = Arc::new(Semaphore::new(64));
    let uri: ::http::Uri = server.base_url().parse()?;
    let mut runners = Vec::with_capacity(config.runners);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
    for (index, token) in tokens.into_iter().enumerate() {
        let permit = setting_up.clone().acquire_owned().await?;
        let shared = shared.clone();
        let uri = uri.clone();
        let ready = ready_tx.clone();
        runners.push(tokio::spawn(async move {
            simulated_runner(index, uri, token, shared, permit, ready).await
        }));
    }
    drop(ready_tx);
    let mut connect_failures = 0;
    for _ in 0..config.runners {
        match ready_rx.recv().await {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                connect_failures += 1;
                if connect_failures <= 3 {
                    eprintln!("  a runner could not connect: {e:#}");
                }
            }
            None => break,
        }
    }
    let connect_time = started.elapsed();
    eprintln!(
        "  {} runners connected in {:.1} s",
        config.runners - connect_failures,
        connect_time.as_secs_f64()
    );
    let heartbeat_interval = Duration::from_secs(shared.interval.load(Ordering::Relaxed));

    // The steady window. The killed runners stop now: their streams close,
    // their heartbeats stop.
    let killed: Vec<usize> = (0..config.killed.min(config.runners - 1)).collect();
    for &index in &killed {
        runners[index].abort();
    }
    let sweep_period =
        (config.grace / 10).clamp(Duration::from_millis(200), Duration::from_secs(10));
    let detection = tokio::spawn(watch_killed(
        server.port,
        server.admin_token.as_str().into(),
        dataset.runner_ids.clone(),
        killed.clone(),
        shared.clone(),
        config.grace + 2 * sweep_period + Duration::from_secs(10),
    ));
    let token: Arc<str> = server.admin_token.as_str().into();
    let ids = Arc::new(dataset.runner_ids.clone());
    let probe_calls: CallFactory = {
        let (token, ids, skip) = (token.clone(), ids.clone(), killed.len());
        Arc::new(move |n| {
            // Spread over the fleet, skipping the killed runners (the first ones).
            let id = ids[skip + (n as usize) % (ids.len() - skip).max(1)];
            Call::connect(
                "/gitpod.v1.RunnerService/GetRunner",
                &token,
                json!({"runnerId": id}),
            )
        })
    };
    let (stop_probe, stop_rx) = tokio::sync::watch::channel(false);
    let probe = tokio::spawn(http::paced(
        server.port,
        config.probe_rate,
        probe_calls,
        stop_rx,
    ));
    shared.recording.store(true, Ordering::SeqCst);
    let cpu_before = server.cpu_time()?;
    let window_start = Instant::now();
    let mut rss_max = 0;
    while window_start.elapsed() < config.window {
        rss_max = rss_max.max(server.rss_bytes()?);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let window = window_start.elapsed();
    let cores = (server.cpu_time()? - cpu_before).as_secs_f64() / window.as_secs_f64();
    let rss_end = server.rss_bytes()?;
    rss_max = rss_max.max(rss_end);
    shared.recording.store(false, Ordering::SeqCst);
    stop_probe.send_replace(true);
    let probe = probe.await??;
    let latency = shared.heartbeats.lock().unwrap().clone();
    let heartbeats = Sample {
        requests: latency.len(),
        errors: shared.heartbeat_failures.load(Ordering::Relaxed),
        elapsed: window,
        latency,
    };
    eprintln!("  window done; changing {} specs …", config.changes);

    // A configuration change per runner: its spec over its stream.
    let changed: Vec<usize> = (killed.len()..config.runners)
        .take(config.changes)
        .collect();
    let sent = Arc::new(
        (0..config.runners)
            .map(|_| AtomicU64::new(0))
            .collect::<Vec<_>>(),
    );
    {
        let queue = Arc::new(Mutex::new(changed.clone()));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let mut client = Http1::connect(server.port).await?;
            let (queue, sent, shared, ids, token) = (
                queue.clone(),
                sent.clone(),
                shared.clone(),
                ids.clone(),
                token.clone(),
            );
            tasks.push(tokio::spawn(async move {
                loop {
                    let Some(index) = queue.lock().unwrap().pop() else {
                        return Ok::<_, anyhow::Error>(());
                    };
                    sent[index].store(shared.micros(), Ordering::SeqCst);
                    client
                        .call_json(&Call::connect(
                            "/gitpod.v1.RunnerService/UpdateRunner",
                            &token,
                            json!({
                                "runnerId": ids[index],
                                "spec": {"configuration": {"logLevel": "LOG_LEVEL_DEBUG"}},
                            }),
                        ))
                        .await?;
                }
            }));
        }
        for task in tasks {
            task.await??;
        }
    }
    // Deliveries take milliseconds; five seconds is the target, so waiting
    // that long catches every delivery that meets it.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut change_delivery = http::histogram();
    let mut changes_delivered = 0;
    for &index in &changed {
        let received = shared.spec_received[index].load(Ordering::SeqCst);
        let at = sent[index].load(Ordering::SeqCst);
        if received > 0 && received >= at {
            changes_delivered += 1;
            change_delivery.saturating_record((received - at).max(1));
        }
    }

    let killed_detection = detection.await??;
    for runner in &runners {
        runner.abort();
    }
    server.stop().await;
    Ok(FleetReport {
        runners: config.runners,
        grace: config.grace,
        heartbeat_interval,
        window,
        connect_time,
        connect_failures,
        rss_max,
        rss_end,
        cores,
        heartbeat_failures: heartbeats.errors,
        heartbeats,
        probe,
        changes: changed.len(),
        changes_delivered,
        change_delivery,
        killed_detection,
        sweep_period,
    })
}

/// Polls each killed runner (GetRunner, every 500 ms) until it shows
/// INACTIVE: how long after its last heartbeat it did, `None` when it had
/// not long after the grace. The server's sweep runs every tenth of the
/// grace (200 ms to 10 s), so INACTIVE is due between the grace and the
/// grace plus that period.
async fn watch_killed(
    port: u16,
    token: Arc<str>,
    ids: Vec<Uuid>,
    killed: Vec<usize>,
    shared: Arc<Shared>,
    give_up: Duration,
) -> anyhow::Result<Vec<Option<Duration>>> {
    let mut detected = vec![None; killed.len()];
    let mut client = Http1::connect(port).await?;
    loop {
        let mut waiting = false;
        for (slot, &index) in detected.iter_mut().zip(&killed) {
            if slot.is_some() {
                continue;
            }
            let runner = client
                .call_json(&Call::connect(
                    "/gitpod.v1.RunnerService/GetRunner",
                    &token,
                    json!({"runnerId": ids[index]}),
                ))
                .await?;
            let last = shared.last_heartbeat[index].load(Ordering::SeqCst);
            let silent = Duration::from_micros(shared.micros().saturating_sub(last));
            if runner["runner"]["status"]["phase"] == "RUNNER_PHASE_INACTIVE" {
                *slot = Some(silent);
            } else if silent < give_up {
                waiting = true;
            }
        }
        if !waiting {
            return Ok(detected);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One runner: set up (sign up, first report, open the stream), tell the
/// bench it is ready, then heartbeat and read its stream until aborted.
async fn simulated_runner(
    index: usize,
    uri: ::http::Uri,
    token: String,
    shared: Arc<Shared>,
    permit: tokio::sync::OwnedSemaphorePermit,
    ready: tokio::sync::mpsc::UnboundedSender<anyhow::Result<()>>,
) {
    let setup = async {
        let connection = Http2Connection::connect_plaintext(uri.clone())
            .await
            .context("connecting")?
            .shared(64);
        let config =
            ClientConfig::new(uri).with_default_header("authorization", format!("Bearer {token}"));
        let client = RunnerInteractionServiceClient::new(connection, config);
        let mut key = [0u8; 32];
        rand::thread_rng().fill(&mut key);
        let signed_up = client
            .sign_up(SignUpRequest {
                public_key: key.to_vec(),
                ..Default::default()
            })
            .await
            .context("SignUp")?
            .into_owned();
        let interval = Duration::from_secs(signed_up.heartbeat_interval_seconds.max(1).into());
        shared.interval.store(interval.as_secs(), Ordering::Relaxed);
        client
            .report_status(report())
            .await
            .context("ReportStatus")?;
        shared.last_heartbeat[index].store(shared.micros(), Ordering::SeqCst);
        let mut stream = client
            .watch_requests(WatchRequestsRequest::default())
            .await
            .context("WatchRequests")?;
        stream
            .message()
            .await
            .context("the first spec")?
            .context("the stream ended before the first spec")?;
        Ok::<_, anyhow::Error>((client, stream, interval))
    };
    let (client, mut stream, interval) = match setup.await {
        Ok(set_up) => set_up,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    drop(permit);
    let _ = ready.send(Ok(()));
    // Heartbeats at a random phase, so that the fleet's reports spread evenly.
    let phase = rand::thread_rng().gen_range(Duration::ZERO..interval);
    let mut next = tokio::time::Instant::now() + phase;
    loop {
        tokio::select! {
            message = stream.message() => match message {
                Ok(Some(message)) => {
                    if matches!(message.to_owned_message().kind, Some(Kind::Spec(_))) {
                        shared.spec_received[index].store(shared.micros(), Ordering::SeqCst);
                    }
                }
                // The stream ended: this runner is gone (the server stopped).
                _ => return,
            },
            () = tokio::time::sleep_until(next) => {
                next += interval;
                let sent = Instant::now();
                let outcome = client.report_status(report()).await;
                let micros = (sent.elapsed().as_micros() as u64).max(1);
                match outcome {
                    Ok(_) => {
                        shared.last_heartbeat[index].store(shared.micros(), Ordering::SeqCst);
                        if shared.recording.load(Ordering::Relaxed) {
                            shared.heartbeats.lock().unwrap().saturating_record(micros);
                        }
                    }
                    Err(_) => {
                        if shared.recording.load(Ordering::Relaxed) {
                            shared.heartbeat_failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
    }
}

/// A status report the size of a real runner's (version, region, system details).
fn report() -> ReportStatusRequest {
    ReportStatusRequest {
        version: "0.1.0-bench".into(),
        region: "local".into(),
        system_details: "Linux 6.1 x86_64, 2 CPUs, 8 GiB".into(),
        healthy: true,
        message: "ready".into(),
        latency_micros: 800,
        ..Default::default()
    }
}
