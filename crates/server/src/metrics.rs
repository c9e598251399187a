//! The replica's Prometheus metrics, served on `GET /metrics` (text format
//! 0.0.4), built on the `prometheus-client` crate.
//!
//! One [`Metrics`] per replica, in `AppState`. Recorders are cheap (atomics
//! behind a read lock) and called from the authorization gate (every RPC),
//! the store decorator (`store::timed`), the runner services and the duties.
//! Every label takes its values from a fixed set — the policy table's
//! services and methods, the Connect codes, the provider and phase enums,
//! store method names — and the one open-ended value, the version runners
//! report, is capped at [`MAX_RUNNER_VERSIONS`] (the rest count as `other`),
//! so no caller can grow the page. docs/observability.md lists the families.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::domain::{RunnerCount, RunnerPhase, RunnerProvider};
use crate::store::Store;

/// How long the runner counts read from the store are reused at least:
/// scrapes, how many there may be, cost the store one grouped query per
/// this period.
pub const RUNNER_COUNTS_TTL: Duration = Duration::from_secs(5);

/// The counts are also reused for this many times as long as reading them
/// took, so that a large or slow store spends at most a tenth of its time
/// on them.
const RUNNER_COUNTS_COST_FACTOR: u32 = 10;

/// Distinct runner versions shown at most (the most common ones); runners
/// of further versions are counted under `version="other"`.
pub const MAX_RUNNER_VERSIONS: usize = 20;

/// The label value of whatever lies outside a label's fixed set.
pub const UNKNOWN: &str = "unknown";

/// Latency buckets (seconds) of RPCs and forwarded calls.
const REQUEST_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// Store operations are mostly sub-millisecond.
const STORE_BUCKETS: [f64; 11] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1.0,
];
/// Gaps between a runner's status reports (the interval is a third of the grace).
const HEARTBEAT_BUCKETS: [f64; 12] = [
    1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 180.0, 600.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    pub service: &'static str,
    pub method: &'static str,
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ForwardedLabels {
    /// Which request (`parse_context_url`, `oauth_code_exchange`, …).
    pub call: &'static str,
    /// The SCM provider (see [`scm_provider`]).
    pub provider: &'static str,
    /// `ok` or the Connect code of the failure.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DutyLabels {
    pub duty: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunnerLabels {
    phase: &'static str,
    provider: &'static str,
    version: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_BUCKETS)
}

fn store_histogram() -> Histogram {
    Histogram::new(STORE_BUCKETS)
}

/// Counts of background duty runs; the duties record into it, the metrics
/// page shows it (`corral_background_duty_runs_total`).
pub type DutyRuns = Family<DutyLabels, Counter>;

pub struct Metrics {
    registry: Registry,
    rpc_requests: Family<RpcLabels, Counter>,
    rpc_duration: HistogramFamily<RpcLabels>,
    forwarded_duration: HistogramFamily<ForwardedLabels>,
    store_duration: HistogramFamily<StoreLabels>,
    heartbeat_interval: Histogram,
    event_watch_streams: Gauge,
    runner_streams: Gauge,
    leader: Gauge,
    runners: Family<RunnerLabels, Gauge>,
    store_commits: Counter,
    store_log_flushes: Counter,
    /// When the runner counts are to be read again (none yet: at once);
    /// held across a scrape so that concurrent scrapes neither query
    /// together nor see a half-filled family.
    runners_due: tokio::sync::Mutex<Option<Instant>>,
}

impl Metrics {
    /// Every family registered; `duty_runs` is the duties' own counter.
    pub fn new(duty_runs: &DutyRuns) -> Self {
        let mut registry = Registry::default();
        let rpc_requests = Family::<RpcLabels, Counter>::default();
        registry.register(
            "corral_rpc_requests",
            "RPCs served by this replica, by service, method and Connect code (streams counted when opened)",
            rpc_requests.clone(),
        );
        let rpc_duration: HistogramFamily<RpcLabels> =
            Family::new_with_constructor(request_histogram);
        registry.register(
            "corral_rpc_duration_seconds",
            "How long RPCs took until their answer (for streams: until the stream opened)",
            rpc_duration.clone(),
        );
        let forwarded_duration: HistogramFamily<ForwardedLabels> =
            Family::new_with_constructor(request_histogram);
        registry.register(
            "corral_forwarded_call_duration_seconds",
            "Calls forwarded to runners (SCM work, OAuth code exchanges) until their answer, by call, SCM provider and outcome",
            forwarded_duration.clone(),
        );
        let store_duration: HistogramFamily<StoreLabels> =
            Family::new_with_constructor(store_histogram);
        registry.register(
            "corral_store_operation_duration_seconds",
            "Store operations by method, as the server calls them",
            store_duration.clone(),
        );
        let heartbeat_interval = Histogram::new(HEARTBEAT_BUCKETS);
        registry.register(
            "corral_runner_heartbeat_interval_seconds",
            "Time between a runner's consecutive status reports taken by this replica",
            heartbeat_interval.clone(),
        );
        let event_watch_streams = Gauge::default();
        registry.register(
            "corral_event_watch_streams",
            "EventService.WatchEvents streams open on this replica",
            event_watch_streams.clone(),
        );
        let runner_streams = Gauge::default();
        registry.register(
            "corral_runner_streams",
            "Runner streams open on this replica",
            runner_streams.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "corral_leader",
            "Whether this replica runs the background duties",
            leader.clone(),
        );
        registry.register(
            "corral_background_duty_runs",
            "Background duties this replica ran (only the leader runs them)",
            duty_runs.clone(),
        );
        let runners = Family::<RunnerLabels, Gauge>::default();
        registry.register(
            "corral_runners",
            "Runners of the installation by phase, provider and reported version (read from the store, reused for at least 5s)",
            runners.clone(),
        );
        let store_commits = Counter::default();
        registry.register(
            "corral_store_commits",
            "Commits on the SQLite store that waited for the write-ahead log to reach the disk",
            store_commits.clone(),
        );
        let store_log_flushes = Counter::default();
        registry.register(
            "corral_store_log_flushes",
            "Flushes of the SQLite write-ahead log; concurrent commits, and a call's writes with its audit event, share one",
            store_log_flushes.clone(),
        );
        Self {
            registry,
            store_commits,
            store_log_flushes,
            rpc_requests,
            rpc_duration,
            forwarded_duration,
            store_duration,
            heartbeat_interval,
            event_watch_streams,
            runner_streams,
            leader,
            runners,
            runners_due: tokio::sync::Mutex::new(None),
        }
    }

    /// One RPC answered (or stream opened) with `code` after `took`.
    pub fn record_rpc(&self, labels: RpcLabels, took: Duration) {
        self.rpc_requests.get_or_create(&labels).inc();
        self.rpc_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// One call forwarded to a runner came back (or failed) after `took`.
    pub fn record_forwarded_call(&self, labels: ForwardedLabels, took: Duration) {
        self.forwarded_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// One store operation (a `Store` method's name) took `took`.
    pub fn record_store_operation(&self, operation: &'static str, took: Duration) {
        self.store_duration
            .get_or_create(&StoreLabels { operation })
            .observe(took.as_secs_f64());
    }

    /// A runner reported `gap` after its previous report.
    pub fn record_heartbeat_interval(&self, gap: Duration) {
        self.heartbeat_interval.observe(gap.as_secs_f64());
    }

    /// Counts an event watch stream while the returned guard lives.
    pub fn event_watch_stream(self: &Arc<Self>) -> StreamGuard {
        self.event_watch_streams.inc();
        StreamGuard {
            gauge: self.event_watch_streams.clone(),
        }
    }

    /// The page, with the values read at scrape time: this replica's runner
    /// streams and leadership, and the runner counts from `store` (read at
    /// most every [`RUNNER_COUNTS_TTL`], or ten times as long as the read
    /// took; a failed read keeps the last counts).
    pub async fn render(&self, store: &dyn Store, runner_streams: usize, leader: bool) -> String {
        self.runner_streams
            .set(i64::try_from(runner_streams).unwrap_or(i64::MAX));
        self.leader.set(i64::from(leader));
        let mut due = self.runners_due.lock().await;
        if due.is_none_or(|at| Instant::now() >= at) {
            let started = Instant::now();
            match store.count_runners().await {
                Ok(counts) => {
                    self.runners.clear();
                    for (labels, count) in runner_series(counts) {
                        self.runners
                            .get_or_create(&labels)
                            .set(i64::try_from(count).unwrap_or(i64::MAX));
                    }
                }
                Err(err) => tracing::warn!(error = %err, "could not count runners for /metrics"),
            }
            let reuse = RUNNER_COUNTS_TTL.max(started.elapsed() * RUNNER_COUNTS_COST_FACTOR);
            *due = Some(Instant::now() + reuse);
        }
        if let Ok(Some(flushes)) = store.log_flushes().await {
            let catch_up = |counter: &Counter, now: u64| {
                counter.inc_by(now.saturating_sub(counter.get()));
            };
            catch_up(&self.store_commits, flushes.commits);
            catch_up(&self.store_log_flushes, flushes.flushes);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// Decrements its gauge when the stream it counts ends.
pub struct StreamGuard {
    gauge: Gauge,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// The counts as series: versions beyond the [`MAX_RUNNER_VERSIONS`] most
/// common become `other`; runners that never reported show `version="none"`.
fn runner_series(counts: Vec<RunnerCount>) -> Vec<(RunnerLabels, u64)> {
    let mut per_version: std::collections::HashMap<&str, u64> = Default::default();
    for c in &counts {
        *per_version.entry(c.version.as_str()).or_default() += c.count;
    }
    let mut by_size: Vec<(&str, u64)> = per_version.into_iter().collect();
    // Most runners first; ties by name so the pick is stable between scrapes.
    by_size.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let kept: std::collections::HashSet<String> = by_size
        .into_iter()
        .take(MAX_RUNNER_VERSIONS)
        .map(|(v, _)| v.to_string())
        .collect();
    let mut series: std::collections::HashMap<RunnerLabels, u64> = Default::default();
    for c in counts {
        let version = if c.version.is_empty() {
            "none".to_string()
        } else if kept.contains(&c.version) {
            c.version
        } else {
            "other".to_string()
        };
        let labels = RunnerLabels {
            phase: phase_label(c.phase),
            provider: c.provider.map_or("none", provider_label),
            version,
        };
        *series.entry(labels).or_default() += c.count;
    }
    series.into_iter().collect()
}

fn phase_label(phase: RunnerPhase) -> &'static str {
    match phase {
        RunnerPhase::Unspecified => "unspecified",
        RunnerPhase::Created => "created",
        RunnerPhase::Inactive => "inactive",
        RunnerPhase::Active => "active",
        RunnerPhase::Deleting => "deleting",
        RunnerPhase::Deleted => "deleted",
        RunnerPhase::Degraded => "degraded",
    }
}

fn provider_label(provider: RunnerProvider) -> &'static str {
    match provider {
        RunnerProvider::AwsEc2 => "aws_ec2",
        RunnerProvider::LinuxHost => "linux_host",
        RunnerProvider::DesktopMac => "desktop_mac",
        RunnerProvider::Managed => "managed",
        RunnerProvider::Gcp => "gcp",
        RunnerProvider::DevAgent => "dev_agent",
    }
}

/// The provider label of an SCM host: the product behind a well-known public
/// host, `other` for any other host (self-hosted ones among them: the
/// server does not know their product without asking the runner), `unknown`
/// without one.
pub fn scm_provider(host: Option<&str>) -> &'static str {
    match host.map(corral_contract::scm_host::lookup_key).as_deref() {
        None | Some("") => UNKNOWN,
        Some("github.com") => "github",
        Some("gitlab.com") => "gitlab",
        Some("bitbucket.org") => "bitbucket",
        Some("dev.azure.com") => "azure-devops",
        Some(_) => "other",
    }
}

/// A call's outcome label: `ok` or its Connect code (a fixed set).
pub fn outcome<T>(result: &Result<T, connectrpc::ConnectError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(err) => err.code.as_str(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(phase: RunnerPhase, version: &str, count: u64) -> RunnerCount {
        RunnerCount {
            phase,
            provider: Some(RunnerProvider::LinuxHost),
            version: version.into(),
            count,
        }
    }

    #[test]
    fn rare_versions_fold_into_other() {
        let mut counts = vec![count(RunnerPhase::Active, "", 3)];
        // One common version and many rare ones: the common one stays.
        counts.push(count(RunnerPhase::Active, "1.0.0", 100));
        for i in 0..MAX_RUNNER_VERSIONS * 3 {
            counts.push(count(RunnerPhase::Inactive, &format!("0.0.{i}"), 1));
        }
        let series = runner_series(counts);
        let versions: std::collections::HashSet<&str> =
            series.iter().map(|(l, _)| l.version.as_str()).collect();
        assert!(versions.len() <= MAX_RUNNER_VERSIONS + 1, "{versions:?}");
        assert!(versions.contains("1.0.0") && versions.contains("none"));
        assert!(versions.contains("other"));
        let total: u64 = series.iter().map(|(_, n)| n).sum();
        assert_eq!(total, 3 + 100 + MAX_RUNNER_VERSIONS as u64 * 3);
    }

    #[test]
    fn scm_providers_come_from_a_fixed_set() {
        assert_eq!(scm_provider(Some("GitHub.com")), "github");
        assert_eq!(scm_provider(Some("git.example.com")), "other");
        assert_eq!(scm_provider(None), UNKNOWN);
    }

    #[tokio::test]
    async fn the_page_shows_duties_leadership_and_streams() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::sql::SqlStore::open_sqlite(&dir.path().join("corral.db"))
            .await
            .unwrap();
        let duties = DutyRuns::default();
        duties.get_or_create(&DutyLabels { duty: "liveness" }).inc();
        let metrics = Arc::new(Metrics::new(&duties));
        let _watch = metrics.event_watch_stream();
        let text = metrics.render(&store, 3, true).await;
        assert!(text.contains("corral_background_duty_runs_total{duty=\"liveness\"} 1\n"));
        assert!(text.contains("# TYPE corral_background_duty_runs_total counter\n"));
        assert!(text.contains("corral_leader 1\n"));
        assert!(text.contains("corral_runner_streams 3\n"));
        assert!(text.contains("corral_event_watch_streams 1\n"));
        drop(_watch);
        let text = metrics.render(&store, 0, false).await;
        assert!(text.contains("corral_event_watch_streams 0\n"));
        assert!(text.contains("corral_leader 0\n"));
    }
}
