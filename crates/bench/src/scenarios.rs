//! The request mixes measured (`/healthz`, GetRunner, ListRunners pages and
//! filters, UpdateRunner) and how they are run: interleaved, round after
//! round, so that every scenario sees the same machine noise as the baseline.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::http::{self, Call, CallFactory, Http1, Sample};
use crate::load::Dataset;

/// Page size of every list measured: the server default.
pub const PAGE_SIZE: u32 = 25;

/// How deep the deep page is.
pub const DEEP_PAGE: usize = 40;

pub struct Scenario {
    pub name: &'static str,
    pub calls: CallFactory,
}

pub fn healthz() -> Scenario {
    Scenario {
        name: "GET /healthz",
        calls: cycle(vec![Call::get("/healthz")]),
    }
}

/// The `n`-th request is `calls[n % len]`: requests prepared before the
/// clock starts.
fn cycle(calls: Vec<Call>) -> CallFactory {
    Arc::new(move |n| calls[n as usize % calls.len()].clone())
}

/// GetRunner over the loaded runners in turn.
pub fn get_runner(token: &Arc<str>, data: &Dataset) -> Scenario {
    Scenario {
        name: "GetRunner",
        calls: cycle(get_runner_calls(token, data)),
    }
}

/// A GetRunner of each loaded runner.
fn get_runner_calls(token: &Arc<str>, data: &Dataset) -> Vec<Call> {
    data.runner_ids
        .iter()
        .map(|id| {
            Call::connect(
                "/gitpod.v1.RunnerService/GetRunner",
                token,
                json!({"runnerId": id}),
            )
        })
        .collect()
}

/// GetRunner of every loaded runner once, before anything else read them:
/// each read is the server's first of that runner since it started, so
/// each goes to the database (later reads of it are served from memory).
pub async fn first_reads(
    port: u16,
    token: &Arc<str>,
    data: &Dataset,
    connections: usize,
) -> anyhow::Result<Sample> {
    http::once_each(port, connections, get_runner_calls(token, data))
        .await
        .context("GetRunner, first reads")
}

/// UpdateRunner renaming the loaded runners in turn, each to a name it
/// did not have just before (two names per runner, alternating).
pub fn update_runner(token: &Arc<str>, data: &Dataset) -> Scenario {
    Scenario {
        name: "UpdateRunner (rename)",
        calls: cycle(
            ["renamed-a", "renamed-b"]
                .iter()
                .flat_map(|name| {
                    data.runner_ids.iter().map(move |id| {
                        Call::connect(
                            "/gitpod.v1.RunnerService/UpdateRunner",
                            token,
                            json!({"runnerId": id, "name": name}),
                        )
                    })
                })
                .collect(),
        ),
    }
}

/// ListRunners with the same body every time.
pub fn list_runners(name: &'static str, token: &Arc<str>, body: Value) -> Scenario {
    Scenario {
        name,
        calls: cycle(vec![Call::connect(
            "/gitpod.v1.RunnerService/ListRunners",
            token,
            body,
        )]),
    }
}

pub fn first_page() -> Value {
    json!({"pagination": {"pageSize": PAGE_SIZE}})
}

/// The filters of the size benchmark; each selects a share of the runners
/// (see `load::runners`): half (remote), a sixth (GCP), a tenth (one creator).
pub fn filters(data: &Dataset) -> [(&'static str, Value); 3] {
    [
        (
            "ListRunners kind=remote",
            json!({"pagination": {"pageSize": PAGE_SIZE}, "filter": {"kinds": ["RUNNER_KIND_REMOTE"]}}),
        ),
        (
            "ListRunners provider=gcp",
            json!({"pagination": {"pageSize": PAGE_SIZE}, "filter": {"providers": ["RUNNER_PROVIDER_GCP"]}}),
        ),
        (
            "ListRunners creator=one",
            json!({"pagination": {"pageSize": PAGE_SIZE}, "filter": {"creatorIds": [data.filtered_creator().to_string()]}}),
        ),
    ]
}

/// The request for page `depth` (1 is the first) of the unfiltered list,
/// found by following next tokens as a client does.
pub async fn deep_page(port: u16, token: &Arc<str>, depth: usize) -> anyhow::Result<Value> {
    let mut client = Http1::connect(port).await?;
    let mut body = first_page();
    for page in 1..depth {
        let answer = client
            .call_json(&Call::connect(
                "/gitpod.v1.RunnerService/ListRunners",
                token,
                body.clone(),
            ))
            .await?;
        let next = answer["pagination"]["nextToken"]
            .as_str()
            .filter(|t| !t.is_empty())
            .with_context(|| format!("page {page} has no next page: too few runners"))?;
        body = json!({"pagination": {"pageSize": PAGE_SIZE, "token": next}});
    }
    Ok(body)
}

/// How each scenario runs: connections, warm-up, duration and rounds.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub rounds: usize,
}

/// A scenario's result over all rounds.
#[derive(Debug, Clone)]
pub struct Measured {
    pub name: &'static str,
    /// Requests per second of each round.
    pub rates: Vec<f64>,
    pub errors: u64,
    /// Every round's latencies together.
    pub latency: Histogram<u64>,
}

impl Measured {
    pub fn rate(&self) -> f64 {
        median(&self.rates)
    }

    pub fn p50_ms(&self) -> f64 {
        self.latency.value_at_quantile(0.50) as f64 / 1000.0
    }

    pub fn p99_ms(&self) -> f64 {
        self.latency.value_at_quantile(0.99) as f64 / 1000.0
    }
}

/// Runs every scenario once per round, in order, for `pace.rounds` rounds.
pub async fn interleaved(
    port: u16,
    scenarios: &[Scenario],
    pace: Pace,
) -> anyhow::Result<Vec<Measured>> {
    let mut measured: Vec<Measured> = scenarios
        .iter()
        .map(|s| Measured {
            name: s.name,
            rates: Vec::new(),
            errors: 0,
            latency: http::histogram(),
        })
        .collect();
    for _ in 0..pace.rounds {
        for (scenario, result) in scenarios.iter().zip(&mut measured) {
            let sample: Sample = http::closed_loop(
                port,
                pace.connections,
                pace.warmup,
                pace.duration,
                scenario.calls.clone(),
            )
            .await
            .with_context(|| scenario.name)?;
            result.rates.push(sample.rate());
            result.errors += sample.errors;
            result.latency.add(&sample.latency)?;
        }
    }
    Ok(measured)
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_middle_value() {
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[3.0]), 3.0);
        assert_eq!(median(&[5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    }
}
