//! How `corral serve` protects itself from clients that hold connections or
//! send slowly, with the real binary: half-open connections (request heads
//! that never end) are closed after the header timeout while others are
//! served; at most `--max-connections` are open, idle ones are closed after
//! the idle timeout and then waiting clients are served; request bodies must
//! arrive within the body timeout; and many large requests leave the
//! server's memory bounded.
//!
//! Every test starts its own server on a free port with its own temporary
//! data dir and kills it when it ends. Conditions are polled with a generous
//! overall timeout; how long things took is printed, not asserted.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

mod support;

use support::{Patience, Served, eventually, http_get};

const TIMEOUT: Duration = Duration::from_secs(30);
const PATIENCE: Patience = Patience {
    timeout: TIMEOUT,
    poll: Duration::from_millis(50),
};

/// A request head that is never finished: the request line and one header.
const HALF_OPEN_HEAD: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n";

/// How a connection the server should close ended for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// End of stream (the server closed it), after this many bytes.
    Closed(usize),
    /// Reset by the server.
    Reset,
    /// Still open when the test stopped waiting.
    Open,
}

/// Reads until the server ends the connection (or `TIMEOUT` passes).
async fn ending(stream: &mut TcpStream) -> Ending {
    let mut received = Vec::new();
    match tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut received)).await {
        Ok(Ok(_)) => Ending::Closed(received.len()),
        Ok(Err(_)) => Ending::Reset,
        Err(_) => Ending::Open,
    }
}

/// Reads one response head (up to the blank line) and returns its status.
async fn status_of_next_response(stream: &mut TcpStream) -> u16 {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let read = tokio::time::timeout(TIMEOUT, stream.read(&mut byte))
            .await
            .expect("a response in time")
            .expect("reading a response");
        assert_eq!(read, 1, "the connection ended inside a response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    head.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"))
}

fn vm_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_are_closed_after_the_header_timeout() {
    const HALF_OPEN: usize = 300;
    let tmp = tempfile::tempdir().unwrap();
    let server = Served::start(tmp.path(), "server", &["--header-timeout", "1s"], PATIENCE).await;

    let opened = Instant::now();
    let mut held = Vec::new();
    for _ in 0..HALF_OPEN {
        let mut stream = TcpStream::connect(server.address()).await.unwrap();
        stream.write_all(HALF_OPEN_HEAD).await.unwrap();
        held.push(stream);
    }
    eprintln!(
        "[measured] {HALF_OPEN} half-open connections opened in {:?}",
        opened.elapsed()
    );

    // Meanwhile others are served.
    let asked = Instant::now();
    let (code, body) = http_get(&format!("{}/healthz", server.url()), None, TIMEOUT)
        .await
        .unwrap();
    assert_eq!((code, body.as_slice()), (200, b"ok".as_slice()));
    eprintln!("[measured] /healthz answered in {:?}", asked.elapsed());

    // And every half-open connection is closed by the server.
    let mut endings = tokio::task::JoinSet::new();
    for mut stream in held {
        endings.spawn(async move {
            let ending = ending(&mut stream).await;
            (ending, opened.elapsed())
        });
    }
    let mut closed_after = Vec::new();
    while let Some(joined) = endings.join_next().await {
        let (ending, after) = joined.unwrap();
        assert_ne!(ending, Ending::Open, "a half-open connection stayed open");
        closed_after.push(after);
    }
    closed_after.sort();
    eprintln!(
        "[measured] all {HALF_OPEN} closed by the server, {:?} to {:?} after the first was opened \
         (header timeout 1s)",
        closed_after[0],
        closed_after[HALF_OPEN - 1]
    );
    let (code, _) = http_get(&format!("{}/healthz", server.url()), None, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(code, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_until_idle_ones_are_closed() {
    const LIMIT: usize = 20;
    let tmp = tempfile::tempdir().unwrap();
    let server = Served::start(
        tmp.path(),
        "server",
        &[
            "--max-connections",
            "20",
            "--idle-timeout",
            "1s",
            // Long enough that only the idle timeout closes connections here.
            "--header-timeout",
            "60s",
            "--body-timeout",
            "60s",
        ],
        PATIENCE,
    )
    .await;

    // Take every slot with a request in flight: the head is complete, the
    // body (two bytes) is not.
    let head = format!(
        "POST /gitpod.v1.IdentityService/GetAuthenticatedIdentity HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{",
        server.admin_token
    );
    let mut held = Vec::new();
    for _ in 0..LIMIT {
        let mut stream = TcpStream::connect(server.address()).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        held.push(stream);
    }
    eventually(PATIENCE, "the server says all slots are taken", || async {
        let output = server.proc.output();
        if output.contains("all connection slots are taken") {
            Ok(())
        } else {
            Err("no such line in its log yet".to_string())
        }
    })
    .await;

    // One more client: the kernel queues its connection, the server does not
    // take it while every slot is held (nothing frees one for a minute).
    let url = format!("{}/healthz", server.url());
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        let result = http_get(&url, None, TIMEOUT).await;
        (result, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "a client beyond the limit was served while every slot was taken"
    );

    // The held requests finish and are answered; their connections are then
    // idle, and closed after the idle timeout.
    let finished = Instant::now();
    for stream in &mut held {
        stream.write_all(b"}").await.unwrap();
        assert_eq!(status_of_next_response(stream).await, 200);
    }
    for stream in &mut held {
        let ending = ending(stream).await;
        assert!(
            matches!(ending, Ending::Closed(_) | Ending::Reset),
            "an idle connection stayed open"
        );
    }
    eprintln!(
        "[measured] the {LIMIT} idle connections were closed {:?} after their requests ended \
         (idle timeout 1s)",
        finished.elapsed()
    );

    let (result, waited) = waiting.await.unwrap();
    let (code, body) = result.expect("the waiting client is served");
    assert_eq!((code, body.as_slice()), (200, b"ok".as_slice()));
    eprintln!("[measured] the client beyond the limit was served after {waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_that_does_not_arrive_in_time_is_given_up() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Served::start(tmp.path(), "server", &["--body-timeout", "1s"], PATIENCE).await;

    let mut stream = TcpStream::connect(server.address()).await.unwrap();
    let head = format!(
        "POST /gitpod.v1.IdentityService/GetAuthenticatedIdentity HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
        server.admin_token
    );
    let sent = Instant::now();
    stream.write_all(head.as_bytes()).await.unwrap();
    let status = status_of_next_response(&mut stream).await;
    eprintln!(
        "[measured] answered {status} {:?} after the head (body timeout 1s)",
        sent.elapsed()
    );
    assert_ne!(status, 200, "a request whose body never came succeeded");
    let ending = ending(&mut stream).await;
    assert!(
        matches!(ending, Ending::Closed(_) | Ending::Reset),
        "the connection stayed open: {ending:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_large_requests_leave_memory_bounded() {
    const REQUESTS: usize = 200;
    const PARALLEL: usize = 8;
    /// Entries of the repeated field: about 3 MB of JSON.
    const STATUSES: usize = 150_000;
    const RSS_BOUND_MIB: f64 = 300.0;

    let tmp = tempfile::tempdir().unwrap();
    let server = Served::start(tmp.path(), "server", &[], PATIENCE).await;
    let pid = server.proc.pid();

    let identity = format!(
        "{}/gitpod.v1.IdentityService/GetAuthenticatedIdentity?connect=v1&encoding=json&message=%7B%7D",
        server.url()
    );
    let (_, body) = http_get(&identity, Some(&server.admin_token), TIMEOUT)
        .await
        .unwrap();
    let identity: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let org = identity["organizationId"].as_str().unwrap().to_string();

    let statuses = vec!["\"USER_STATUS_ACTIVE\""; STATUSES].join(",");
    let body = format!("{{\"organizationId\":\"{org}\",\"filter\":{{\"statuses\":[{statuses}]}}}}");
    let request = std::sync::Arc::new(
        [
            format!(
                "POST /gitpod.v1.OrganizationService/ListMembers HTTP/1.1\r\nHost: x\r\n\
                 Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                server.admin_token,
                body.len()
            )
            .into_bytes(),
            body.into_bytes(),
        ]
        .concat(),
    );

    let rss_before = vm_status(pid, "VmRSS");
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..PARALLEL {
        let (request, address) = (request.clone(), server.address());
        workers.spawn(async move {
            let mut statuses = Vec::new();
            for _ in (worker..REQUESTS).step_by(PARALLEL) {
                let mut stream = TcpStream::connect(&address).await.unwrap();
                stream.write_all(&request).await.unwrap();
                let status = status_of_next_response(&mut stream).await;
                let mut rest = Vec::new();
                let _ = tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut rest)).await;
                statuses.push((status, String::from_utf8_lossy(&rest).into_owned()));
            }
            statuses
        });
    }
    let mut answers = std::collections::BTreeMap::<u16, (usize, String)>::new();
    while let Some(joined) = workers.join_next().await {
        for (status, body) in joined.unwrap() {
            let entry = answers.entry(status).or_insert((0, body));
            entry.0 += 1;
        }
    }
    let took = started.elapsed();
    let rss_after = vm_status(pid, "VmRSS");
    let rss_peak = vm_status(pid, "VmHWM");
    eprintln!(
        "[measured] {REQUESTS} requests of {:.1} MB ({PARALLEL} at a time) in {took:?}",
        request.len() as f64 / 1e6
    );
    for (status, (count, sample)) in &answers {
        let sample: String = sample.chars().take(200).collect();
        eprintln!("[measured]   {count} answered {status}, e.g. {sample:?}");
    }
    eprintln!(
        "[measured] server RSS before {:.1} MiB, after {:.1} MiB, peak {:.1} MiB",
        mib(rss_before),
        mib(rss_after),
        mib(rss_peak)
    );
    assert_eq!(answers.values().map(|(n, _)| n).sum::<usize>(), REQUESTS);
    assert!(
        mib(rss_after) < RSS_BOUND_MIB,
        "RSS after the requests: {:.1} MiB",
        mib(rss_after)
    );
    let (code, _) = http_get(&format!("{}/healthz", server.url()), None, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(code, 200);
}
