//! The runner's own metrics, pushed to a collector with the Prometheus
//! remote-write protocol (`metrics.enabled` / `metrics.url` in its spec),
//! and served as a Prometheus text page on `GET /metrics` of the runner's
//! HTTP server ([`router`]; the same series, without host and call labels).
//!
//! [`Metrics`] counts as the agent works (SCM requests by provider and
//! outcome and their latency, request-stream reconnects, heartbeat lag);
//! [`push_loop`] runs in a task of its own, takes a fresh snapshot for every
//! push (latest wins: nothing queues up while the collector is down), pushes
//! at once when the configuration changes and then every interval, and backs
//! off after failures. It never blocks the agent: the agent only records into
//! [`Metrics`] (a short lock) and publishes configurations on a watch channel.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::connection::Backoff;

/// The push interval's bounds: a collector gets fresh data at least every
/// minute, and no more often than every 15 s.
pub const MIN_INTERVAL: Duration = Duration::from_secs(15);
pub const MAX_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

/// How long one push may take.
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// SCM series kept at most; further label combinations (many hosts, say)
/// are counted under `host="other"` so a runner's series stay bounded.
const MAX_SCM_SERIES: usize = 200;

/// Upper bounds (seconds) of the latency histogram's buckets (verbose only).
const LATENCY_BUCKETS: [f64; 8] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Clamps a configured interval into [`MIN_INTERVAL`, `MAX_INTERVAL`].
pub fn clamp_interval(interval: Duration) -> Duration {
    interval.clamp(MIN_INTERVAL, MAX_INTERVAL)
}

/// Where and how to push, from the runner's spec. The password was sealed to
/// this runner's key; it stays out of `Debug` and logs.
#[derive(Clone, PartialEq)]
pub struct Target {
    pub url: String,
    pub username: String,
    pub password: String,
    /// `include_verbose_metrics`: per-host and per-call series and latency
    /// histogram buckets.
    pub verbose: bool,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.url)
            .field("username", &self.username)
            .field(
                "password",
                &if self.password.is_empty() { "" } else { "***" },
            )
            .field("verbose", &self.verbose)
            .finish()
    }
}

/// One SCM request as metrics see it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ScmLabels {
    /// The provider (`github`, `gitlab`, …) or `unknown`.
    pub provider: String,
    /// The SCM host (verbose series only).
    pub host: String,
    /// Which call (`parse_context_url`, …; verbose series only).
    pub call: String,
    /// `ok` or the failure's code name.
    pub outcome: String,
}

#[derive(Debug, Default, Clone)]
struct Latency {
    count: u64,
    sum: f64,
    /// Cumulative counts per bucket of [`LATENCY_BUCKETS`].
    buckets: [u64; LATENCY_BUCKETS.len()],
}

impl Latency {
    fn observe(&mut self, seconds: f64) {
        self.count += 1;
        self.sum += seconds;
        for (bucket, le) in self.buckets.iter_mut().zip(LATENCY_BUCKETS) {
            if seconds <= le {
                *bucket += 1;
            }
        }
    }
}

#[derive(Default)]
struct Counts {
    scm: BTreeMap<ScmLabels, Latency>,
    stream_reconnects: u64,
    /// Whether the request stream is open now.
    connected: bool,
    /// Requests from the management plane handled, by kind (a fixed set).
    requests: BTreeMap<&'static str, u64>,
    heartbeat_lag: Option<Duration>,
    push_failures: u64,
}

/// The runner's metrics; cheap to record into from any task.
pub struct Metrics {
    started: Instant,
    version: String,
    counts: Mutex<Counts>,
}

impl Metrics {
    pub fn new(version: &str) -> Self {
        Self {
            started: Instant::now(),
            version: version.to_string(),
            counts: Mutex::new(Counts::default()),
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One SCM request finished after `took`.
    pub fn record_scm(&self, mut labels: ScmLabels, took: Duration) {
        let mut counts = self.counts();
        if !counts.scm.contains_key(&labels) && counts.scm.len() >= MAX_SCM_SERIES {
            labels.host = "other".into();
        }
        counts
            .scm
            .entry(labels)
            .or_default()
            .observe(took.as_secs_f64());
    }

    /// The request stream was opened again after it broke or ended.
    pub fn record_stream_reconnect(&self) {
        self.counts().stream_reconnects += 1;
    }

    /// The request stream opened (`true`) or ended (`false`).
    pub fn record_connected(&self, connected: bool) {
        self.counts().connected = connected;
    }

    /// A request of `kind` (`spec`, `scm`, … from a fixed set) came in.
    pub fn record_request(&self, kind: &'static str) {
        *self.counts().requests.entry(kind).or_default() += 1;
    }

    /// A push to the collector failed (it shows in the next push that works).
    pub fn record_push_failure(&self) {
        self.counts().push_failures += 1;
    }

    /// A heartbeat was acknowledged `lag` after it was due.
    pub fn record_heartbeat_lag(&self, lag: Duration) {
        self.counts().heartbeat_lag = Some(lag);
    }

    /// Every series now, labelled with `runner_id`; verbose adds per-host and
    /// per-call series and the latency histogram's buckets.
    pub fn snapshot(&self, runner_id: &str, verbose: bool) -> Vec<Series> {
        let counts = self.counts();
        let base = |name: &str| vec![("__name__".to_string(), name.to_string())];
        let mut out = vec![
            Series::new(
                base("corral_runner_uptime_seconds"),
                self.started.elapsed().as_secs_f64(),
            ),
            Series::new(
                {
                    let mut l = base("corral_runner_info");
                    l.push(("version".into(), self.version.clone()));
                    l
                },
                1.0,
            ),
            Series::new(
                base("corral_runner_stream_reconnects_total"),
                counts.stream_reconnects as f64,
            ),
            Series::new(
                base("corral_runner_metrics_push_failures_total"),
                counts.push_failures as f64,
            ),
            Series::new(
                base("corral_runner_connected"),
                f64::from(u8::from(counts.connected)),
            ),
        ];
        for (kind, handled) in &counts.requests {
            let mut labels = base("corral_runner_requests_total");
            labels.push(("kind".into(), (*kind).into()));
            out.push(Series::new(labels, *handled as f64));
        }
        if let Some(lag) = counts.heartbeat_lag {
            out.push(Series::new(
                base("corral_runner_heartbeat_lag_seconds"),
                lag.as_secs_f64(),
            ));
        }
        // Without verbose, host and call are summed away.
        let mut grouped: BTreeMap<ScmLabels, Latency> = BTreeMap::new();
        for (labels, latency) in &counts.scm {
            let key = if verbose {
                labels.clone()
            } else {
                ScmLabels {
                    host: String::new(),
                    call: String::new(),
                    ..labels.clone()
                }
            };
            let sum = grouped.entry(key).or_default();
            sum.count += latency.count;
            sum.sum += latency.sum;
            for (a, b) in sum.buckets.iter_mut().zip(latency.buckets) {
                *a += b;
            }
        }
        for (labels, latency) in grouped {
            let with = |name: &str| {
                let mut l = base(name);
                l.push(("provider".into(), labels.provider.clone()));
                l.push(("outcome".into(), labels.outcome.clone()));
                if verbose {
                    l.push(("host".into(), labels.host.clone()));
                    l.push(("call".into(), labels.call.clone()));
                }
                l
            };
            out.push(Series::new(
                with("corral_runner_scm_requests_total"),
                latency.count as f64,
            ));
            out.push(Series::new(
                with("corral_runner_scm_request_duration_seconds_sum"),
                latency.sum,
            ));
            out.push(Series::new(
                with("corral_runner_scm_request_duration_seconds_count"),
                latency.count as f64,
            ));
            if verbose {
                let bucket = "corral_runner_scm_request_duration_seconds_bucket";
                for (le, count) in LATENCY_BUCKETS.iter().zip(latency.buckets) {
                    let mut l = with(bucket);
                    l.push(("le".into(), le.to_string()));
                    out.push(Series::new(l, count as f64));
                }
                let mut l = with(bucket);
                l.push(("le".into(), "+Inf".into()));
                out.push(Series::new(l, latency.count as f64));
            }
        }
        for series in &mut out {
            series.labels.push(("runner_id".into(), runner_id.into()));
            // Remote write wants each series' labels sorted by name.
            series.labels.sort();
        }
        out
    }
}

/// The families of the `/metrics` page: name, type, help.
const FAMILIES: [(&str, &str, &str); 9] = [
    (
        "corral_runner_info",
        "gauge",
        "The runner's version (the value is always 1)",
    ),
    (
        "corral_runner_uptime_seconds",
        "gauge",
        "Seconds since the runner started",
    ),
    (
        "corral_runner_connected",
        "gauge",
        "1 while the request stream to the management plane is open",
    ),
    (
        "corral_runner_stream_reconnects_total",
        "counter",
        "Times the request stream was opened again after it broke or ended",
    ),
    (
        "corral_runner_requests_total",
        "counter",
        "Requests from the management plane handled, by kind",
    ),
    (
        "corral_runner_scm_requests_total",
        "counter",
        "SCM requests worked on, by provider and outcome",
    ),
    (
        "corral_runner_scm_request_duration_seconds",
        "summary",
        "How long SCM requests took, by provider and outcome",
    ),
    (
        "corral_runner_heartbeat_lag_seconds",
        "gauge",
        "How late the latest heartbeat was acknowledged",
    ),
    (
        "corral_runner_metrics_push_failures_total",
        "counter",
        "Failed pushes to the metrics collector",
    ),
];

/// The family a series belongs to: its name, or for a summary its name
/// less `_sum` or `_count`.
fn family_of(series_name: &str) -> Option<usize> {
    FAMILIES.iter().position(|(name, kind, _)| {
        let suffixes: &[&str] = match *kind {
            "summary" => &["_sum", "_count"],
            _ => &[""],
        };
        suffixes
            .iter()
            .any(|suffix| series_name.strip_suffix(suffix) == Some(name))
    })
}

impl Metrics {
    /// The `/metrics` page: every family with HELP and TYPE, its series
    /// without the runner id (the page is this runner's) nor per-host and
    /// per-call labels.
    pub fn render_text(&self) -> String {
        let mut by_family: Vec<Vec<Series>> = vec![Vec::new(); FAMILIES.len()];
        for series in self.snapshot("", false) {
            let name = series
                .labels
                .iter()
                .find(|(k, _)| k == "__name__")
                .map(|(_, v)| v.as_str())
                .unwrap_or_default();
            if let Some(family) = family_of(name) {
                by_family[family].push(series);
            }
        }
        let mut out = String::new();
        for ((name, kind, help), series) in FAMILIES.iter().zip(by_family) {
            out.push_str(&format!("# HELP {name} {help}.\n# TYPE {name} {kind}\n"));
            for s in series {
                let mut sample_name = "";
                let mut labels = Vec::new();
                for (key, value) in &s.labels {
                    match key.as_str() {
                        "__name__" => sample_name = value,
                        "runner_id" => {}
                        _ => labels.push(format!("{key}=\"{}\"", escape_label(value))),
                    }
                }
                out.push_str(sample_name);
                if !labels.is_empty() {
                    out.push_str(&format!("{{{}}}", labels.join(",")));
                }
                out.push_str(&format!(" {}\n", s.value));
            }
        }
        out
    }
}

/// A label value as the text format writes it.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `GET /metrics` on the runner's HTTP server; no token (like the
/// management plane's): the page holds counts, no secrets.
pub fn router(metrics: std::sync::Arc<Metrics>) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let page = metrics.render_text();
            async move {
                (
                    [(
                        http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    page,
                )
            }
        }),
    )
}

/// One time series with its current value.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Series {
    fn new(labels: Vec<(String, String)>, value: f64) -> Self {
        Self { labels, value }
    }
}

/// A remote-write `WriteRequest` (protobuf), every sample at `timestamp_ms`,
/// before compression.
///
/// Encoded by hand: the protocol needs four tiny messages (WriteRequest →
/// TimeSeries → Label, Sample) whose field numbers are fixed by the remote-write
/// spec, and generating them would bring a foreign package into the API crate
/// that exists for corral's own contract.
pub fn encode_write_request(series: &[Series], timestamp_ms: i64) -> Vec<u8> {
    let mut out = Vec::new();
    for s in series {
        let mut ts = Vec::new();
        for (name, value) in &s.labels {
            let mut label = Vec::new();
            put_bytes(&mut label, 1, name.as_bytes());
            put_bytes(&mut label, 2, value.as_bytes());
            put_bytes(&mut ts, 1, &label);
        }
        let mut sample = Vec::new();
        put_key(&mut sample, 1, 1); // double value: 64-bit
        sample.extend_from_slice(&s.value.to_le_bytes());
        put_key(&mut sample, 2, 0); // int64 timestamp: varint
        put_varint(&mut sample, timestamp_ms as u64);
        put_bytes(&mut ts, 2, &sample);
        put_bytes(&mut out, 1, &ts);
    }
    out
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire_type));
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("{0}")]
    Http(String),
    #[error("the collector answered {status}: {body}")]
    Refused { status: u16, body: String },
}

/// Pushes one snapshot to `target`.
pub async fn push(
    client: &reqwest::Client,
    target: &Target,
    series: &[Series],
) -> Result<(), PushError> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let body = snap::raw::Encoder::new()
        .compress_vec(&encode_write_request(series, now_ms))
        .map_err(|e| PushError::Http(format!("compressing: {e}")))?;
    let mut request = client
        .post(&target.url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .timeout(PUSH_TIMEOUT)
        .body(body);
    if !target.username.is_empty() || !target.password.is_empty() {
        request = request.basic_auth(&target.username, Some(&target.password));
    }
    // reqwest's errors name the URL, never the credentials.
    let response = request
        .send()
        .await
        .map_err(|e| PushError::Http(e.without_url().to_string()))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let mut body = response.text().await.unwrap_or_default();
    body.truncate(body.floor_char_boundary(256));
    Err(PushError::Refused {
        status: status.as_u16(),
        body: body.trim().to_string(),
    })
}

/// What the push loop needs besides its configuration.
pub struct Pusher {
    pub metrics: std::sync::Arc<Metrics>,
    /// The runner's id, for the `runner_id` label (empty until signed up).
    pub runner_id: watch::Receiver<String>,
    pub interval: Duration,
}

impl Pusher {
    /// Pushes while a target is configured: at once after every change, then
    /// every interval; after a failure again with backoff (capped at the
    /// interval). Runs until the configuration channel closes.
    pub async fn run(self, mut targets: watch::Receiver<Option<Target>>) {
        let client = reqwest::Client::builder()
            .user_agent(concat!("corral-runner/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("building an HTTP client with static settings");
        let mut backoff = Backoff::capped(self.interval);
        let mut failing = false;
        loop {
            let target = targets.borrow_and_update().clone();
            let wait = match &target {
                None => None,
                Some(target) => {
                    let runner_id = self.runner_id.borrow().clone();
                    let series = self.metrics.snapshot(&runner_id, target.verbose);
                    match push(&client, target, &series).await {
                        Ok(()) => {
                            if failing {
                                info!("metrics reach {} again", target.url);
                            } else {
                                debug!("pushed {} series to {}", series.len(), target.url);
                            }
                            failing = false;
                            backoff.reset();
                            Some(self.interval)
                        }
                        Err(e) => {
                            self.metrics.record_push_failure();
                            let delay = backoff.next_delay();
                            if failing {
                                debug!("metrics push to {} failed again: {e}", target.url);
                            } else {
                                warn!(
                                    "could not push metrics to {} ({e}); retrying with backoff",
                                    target.url
                                );
                            }
                            failing = true;
                            Some(delay)
                        }
                    }
                }
            };
            let changed = match wait {
                Some(wait) => tokio::select! {
                    changed = targets.changed() => changed,
                    () = tokio::time::sleep(wait) => continue,
                },
                None => targets.changed().await,
            };
            if changed.is_err() {
                return;
            }
            // A new configuration: push at once, with a fresh backoff.
            backoff.reset();
            failing = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(series: &Series) -> BTreeMap<&str, &str> {
        series
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    fn scm(provider: &str, host: &str, outcome: &str) -> ScmLabels {
        ScmLabels {
            provider: provider.into(),
            host: host.into(),
            call: "parse_context_url".into(),
            outcome: outcome.into(),
        }
    }

    #[test]
    fn the_page_announces_every_family_and_leaves_hosts_out() {
        let metrics = Metrics::new("1.2.3\"x");
        metrics.record_connected(true);
        metrics.record_request("spec");
        metrics.record_request("spec");
        metrics.record_scm(scm("github", "github.com", "ok"), Duration::from_millis(20));
        let page = metrics.render_text();
        for (name, kind, _) in FAMILIES {
            assert!(page.contains(&format!("# TYPE {name} {kind}\n")), "{name}");
        }
        assert!(page.contains("corral_runner_connected 1\n"), "{page}");
        assert!(page.contains("corral_runner_requests_total{kind=\"spec\"} 2\n"));
        assert!(page.contains("corral_runner_info{version=\"1.2.3\\\"x\"} 1\n"));
        assert!(page.contains(
            "corral_runner_scm_request_duration_seconds_count{outcome=\"ok\",provider=\"github\"} 1\n"
        ));
        assert!(!page.contains("github.com") && !page.contains("runner_id"));
        metrics.record_connected(false);
        assert!(
            metrics
                .render_text()
                .contains("corral_runner_connected 0\n")
        );
    }

    #[test]
    fn intervals_are_clamped_to_15_to_60_seconds() {
        assert_eq!(clamp_interval(Duration::from_secs(1)), MIN_INTERVAL);
        assert_eq!(
            clamp_interval(Duration::from_secs(20)),
            Duration::from_secs(20)
        );
        assert_eq!(clamp_interval(Duration::from_secs(600)), MAX_INTERVAL);
    }

    #[test]
    fn snapshots_sum_hosts_away_unless_verbose() {
        let metrics = Metrics::new("1.2.3");
        metrics.record_scm(scm("github", "github.com", "ok"), Duration::from_millis(30));
        metrics.record_scm(scm("github", "ghe.example", "ok"), Duration::from_secs(3));
        metrics.record_scm(
            scm("github", "github.com", "unavailable"),
            Duration::from_secs(1),
        );
        metrics.record_stream_reconnect();

        let plain = metrics.snapshot("r-1", false);
        let ok: Vec<_> = plain
            .iter()
            .filter(|s| {
                let l = labels(s);
                l["__name__"] == "corral_runner_scm_requests_total" && l["outcome"] == "ok"
            })
            .collect();
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].value, 2.0);
        assert!(!labels(ok[0]).contains_key("host"));
        assert!(
            plain
                .iter()
                .all(|s| !labels(s)["__name__"].ends_with("_bucket"))
        );
        assert!(plain.iter().all(|s| labels(s)["runner_id"] == "r-1"));
        let info = plain
            .iter()
            .find(|s| labels(s)["__name__"] == "corral_runner_info")
            .unwrap();
        assert_eq!(labels(info)["version"], "1.2.3");
        let reconnects = plain
            .iter()
            .find(|s| labels(s)["__name__"] == "corral_runner_stream_reconnects_total")
            .unwrap();
        assert_eq!(reconnects.value, 1.0);

        let verbose = metrics.snapshot("r-1", true);
        let per_host: Vec<_> = verbose
            .iter()
            .filter(|s| {
                let l = labels(s);
                l["__name__"] == "corral_runner_scm_requests_total" && l["outcome"] == "ok"
            })
            .map(|s| (labels(s)["host"].to_string(), s.value))
            .collect();
        assert_eq!(
            per_host,
            [("ghe.example".to_string(), 1.0), ("github.com".into(), 1.0)]
        );
        let buckets: Vec<_> = verbose
            .iter()
            .filter(|s| {
                let l = labels(s);
                l["__name__"] == "corral_runner_scm_request_duration_seconds_bucket"
                    && l["host"] == "ghe.example"
            })
            .map(|s| (labels(s)["le"].to_string(), s.value))
            .collect();
        assert_eq!(buckets.len(), LATENCY_BUCKETS.len() + 1);
        assert_eq!(buckets[0], ("0.05".to_string(), 0.0));
        assert_eq!(buckets[6], ("5".to_string(), 1.0));
        assert_eq!(buckets[8], ("+Inf".to_string(), 1.0));
        for series in &verbose {
            let names: Vec<_> = series.labels.iter().map(|(k, _)| k).collect();
            assert!(names.is_sorted(), "{names:?}");
        }
    }

    #[test]
    fn scm_series_are_bounded() {
        let metrics = Metrics::new("1");
        for i in 0..MAX_SCM_SERIES + 50 {
            metrics.record_scm(scm("gitea", &format!("h{i}"), "ok"), Duration::ZERO);
        }
        let counts = metrics.counts();
        assert_eq!(counts.scm.len(), MAX_SCM_SERIES + 1);
        let other = &counts.scm[&scm("gitea", "other", "ok")];
        assert_eq!(other.count, 50);
    }

    #[test]
    fn write_requests_encode_as_the_remote_write_protobuf() {
        let series = [Series::new(
            vec![("__name__".into(), "up".into()), ("a".into(), "b".into())],
            1.5,
        )];
        let bytes = encode_write_request(&series, 300);
        #[rustfmt::skip]
        let expected: Vec<u8> = [
            &[0x0a, 38][..],                           // timeseries, 38 bytes
            &[0x0a, 14, 0x0a, 8], b"__name__", &[0x12, 2], b"up", // label
            &[0x0a, 6, 0x0a, 1], b"a", &[0x12, 1], b"b",           // label
            &[0x12, 12, 0x09], &1.5f64.to_le_bytes(), &[0x10, 0xac, 0x02], // sample
        ]
        .concat();
        assert_eq!(bytes, expected);
    }

    /// A collector that is down when the runner first pushes gets the push
    /// once it is up, without a new configuration: failures are retried.
    #[tokio::test]
    async fn a_collector_that_is_down_is_retried_until_it_answers() {
        // A free port, closed again: nothing listens there yet.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let metrics = std::sync::Arc::new(Metrics::new("9.9.9"));
        let (_runner_id_tx, runner_id) = watch::channel("r-7".to_string());
        let (targets_tx, targets) = watch::channel(None);
        let pusher = tokio::spawn(
            Pusher {
                metrics: metrics.clone(),
                runner_id,
                interval: MIN_INTERVAL,
            }
            .run(targets),
        );
        targets_tx.send_replace(Some(Target {
            url: format!("http://{addr}/api/v1/write"),
            username: "u".into(),
            password: "p".into(),
            verbose: false,
        }));
        // A few attempts fail against the closed port.
        tokio::time::timeout(Duration::from_secs(30), async {
            while metrics.counts().push_failures < 3 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("pushes to a closed port fail");

        let (got_tx, mut got) = tokio::sync::mpsc::unbounded_channel();
        let app = axum::Router::new().route(
            "/api/v1/write",
            axum::routing::post(move |headers: http::HeaderMap, body: axum::body::Bytes| {
                let got_tx = got_tx.clone();
                async move {
                    let _ = got_tx.send((headers, body));
                    http::StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let (headers, body) = tokio::time::timeout(Duration::from_secs(30), got.recv())
            .await
            .expect("a retry reaches the collector once it is up")
            .unwrap();
        assert_eq!(headers["content-encoding"], "snappy");
        assert_eq!(headers["content-type"], "application/x-protobuf");
        assert_eq!(headers["x-prometheus-remote-write-version"], "0.1.0");
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode("u:p");
        assert_eq!(headers["authorization"], format!("Basic {basic}"));
        let decoded = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let text = String::from_utf8_lossy(&decoded);
        assert!(text.contains("corral_runner_info") && text.contains("9.9.9"));
        assert!(text.contains("r-7"));
        assert!(text.contains("corral_runner_metrics_push_failures_total"));
        pusher.abort();
        server.abort();
    }

    #[test]
    fn targets_hide_the_password() {
        let target = Target {
            url: "http://c/api/v1/write".into(),
            username: "u".into(),
            password: "hunter2".into(),
            verbose: false,
        };
        assert!(!format!("{target:?}").contains("hunter2"));
    }
}
