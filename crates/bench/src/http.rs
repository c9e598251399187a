//! The load generator: HTTP/1.1 keep-alive connections (hyper), each sending
//! one request at a time in a closed loop, as an SDK's client does; latency
//! goes into an HDR histogram (microseconds).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One HTTP/1.1 keep-alive connection to the server under test.
pub struct Http1 {
    sender: SendRequest<Full<Bytes>>,
}

/// A request to send: what the scenarios are made of. Built once, its
/// parts already encoded, so that a clone (one per request sent) costs the
/// load generator next to nothing, whatever the call: like h2load, which
/// sends a prepared request, the client should not weigh on one scenario
/// more than on the `/healthz` baseline beside it.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub uri: Uri,
    pub authorization: Option<HeaderValue>,
    /// A Connect JSON body (POST), as the SDKs send.
    pub body: Bytes,
}

impl Call {
    pub fn get(path: &str) -> Call {
        Call {
            method: Method::GET,
            uri: uri(path),
            authorization: None,
            body: Bytes::new(),
        }
    }

    /// A unary Connect call with a JSON body.
    pub fn connect(path: &str, token: &str, body: serde_json::Value) -> Call {
        Call {
            method: Method::POST,
            uri: uri(path),
            authorization: Some(
                HeaderValue::from_str(&format!("Bearer {token}"))
                    .expect("a token is a valid header value"),
            ),
            body: Bytes::from(body.to_string()),
        }
    }
}

fn uri(path: &str) -> Uri {
    path.parse().expect("a scenario's path is a valid URI")
}

impl Http1 {
    pub async fn connect(port: u16) -> anyhow::Result<Http1> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP/1.1 handshake")?;
        tokio::spawn(connection);
        Ok(Http1 { sender })
    }

    pub async fn get(&mut self, path: &str) -> anyhow::Result<StatusCode> {
        Ok(self.send(&Call::get(path)).await?.0)
    }

    /// Sends `call` and reads the whole answer.
    pub async fn send(&mut self, call: &Call) -> anyhow::Result<(StatusCode, Bytes)> {
        let mut request = Request::builder()
            .method(call.method.clone())
            .uri(call.uri.clone())
            .header(http::header::HOST, HeaderValue::from_static("127.0.0.1"));
        if call.method == Method::POST {
            request = request.header(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        if let Some(authorization) = &call.authorization {
            request = request.header(http::header::AUTHORIZATION, authorization.clone());
        }
        let request = request.body(Full::new(call.body.clone()))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// Sends a Connect call and parses the JSON answer; fails on any status
    /// but 200.
    pub async fn call_json(&mut self, call: &Call) -> anyhow::Result<serde_json::Value> {
        let (status, body) = self.send(call).await?;
        if status != StatusCode::OK {
            bail!(
                "{} answered {status}: {}",
                call.uri,
                String::from_utf8_lossy(&body)
            );
        }
        Ok(serde_json::from_slice(&body)?)
    }
}

/// A latency histogram in microseconds, from 1 µs to 10 minutes.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// What one scenario measured.
#[derive(Debug, Clone)]
pub struct Sample {
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latency: Histogram<u64>,
}

impl Sample {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn percentile_ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }
}

/// Builds the `n`-th request of a scenario.
pub type CallFactory = Arc<dyn Fn(u64) -> Call + Send + Sync>;

/// Sends every one of `calls` once, over `connections` keep-alive
/// connections each sending the next call not yet sent as soon as the
/// previous answer is in; the rate is all of them over the time all took.
pub async fn once_each(port: u16, connections: usize, calls: Vec<Call>) -> anyhow::Result<Sample> {
    let calls = Arc::new(calls);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..connections {
        clients.push(Http1::connect(port).await?);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut client in clients {
        let (calls, next) = (calls.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut latency = histogram();
            let (mut requests, mut errors) = (0u64, 0u64);
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(call) = calls.get(n) else {
                    break;
                };
                let sent = Instant::now();
                match client.send(call).await? {
                    (StatusCode::OK, _) => {
                        requests += 1;
                        latency.saturating_record((sent.elapsed().as_micros() as u64).max(1));
                    }
                    _ => errors += 1,
                }
            }
            Ok::<_, anyhow::Error>((requests, errors, latency))
        }));
    }
    let mut sample = gather(tasks, Duration::ZERO).await?;
    sample.elapsed = start.elapsed();
    Ok(sample)
}

/// `connections` keep-alive connections, each sending the next request as
/// soon as the previous answer is in, for `warmup` (not counted) and then
/// `duration`. A non-200 answer counts as an error, not as a request.
pub async fn closed_loop(
    port: u16,
    connections: usize,
    warmup: Duration,
    duration: Duration,
    calls: CallFactory,
) -> anyhow::Result<Sample> {
    let start = Instant::now() + warmup;
    let end = start + duration;
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let mut client = Http1::connect(port).await?;
        let calls = calls.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut latency = histogram();
            let (mut requests, mut errors) = (0u64, 0u64);
            loop {
                let call = calls(counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let outcome = client.send(&call).await;
                let counted = sent >= start;
                match outcome {
                    Ok((StatusCode::OK, _)) if counted => {
                        requests += 1;
                        let micros = sent.elapsed().as_micros() as u64;
                        latency.saturating_record(micros.max(1));
                    }
                    Ok(_) if counted => errors += 1,
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok::<_, anyhow::Error>((requests, errors, latency))
        }));
    }
    gather(tasks, duration).await
}

/// What one connection's task counted: requests, errors, latencies.
type Counted = anyhow::Result<(u64, u64, Histogram<u64>)>;

/// The connections' counts added up, over `elapsed`.
async fn gather(
    tasks: Vec<tokio::task::JoinHandle<Counted>>,
    elapsed: Duration,
) -> anyhow::Result<Sample> {
    let mut sample = Sample {
        requests: 0,
        errors: 0,
        elapsed,
        latency: histogram(),
    };
    for task in tasks {
        let (requests, errors, latency) = task.await??;
        sample.requests += requests;
        sample.errors += errors;
        sample.latency.add(&latency)?;
    }
    Ok(sample)
}

/// One connection sending `per_second` requests at a steady pace (not
/// faster when answers are slow: a late request goes out at once) until
/// `stop` resolves: a light probe beside other load.
pub async fn paced(
    port: u16,
    per_second: u32,
    calls: CallFactory,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Sample> {
    let mut client = Http1::connect(port).await?;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second.max(1) as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let begun = Instant::now();
    let mut sample = Sample {
        requests: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latency: histogram(),
    };
    let mut n = 0;
    while !*stop.borrow() {
        tick.tick().await;
        let call = calls(n);
        n += 1;
        let sent = Instant::now();
        match client.send(&call).await? {
            (StatusCode::OK, _) => {
                sample.requests += 1;
                sample
                    .latency
                    .saturating_record((sent.elapsed().as_micros() as u64).max(1));
            }
            _ => sample.errors += 1,
        }
    }
    sample.elapsed = begun.elapsed();
    Ok(sample)
}
