//! Calls to methods that do not exist, on streams whose request body stays
//! open, against the real binary: the server answers `unimplemented` without
//! waiting for a body that never ends. gRPC, gRPC-Web and Connect streaming,
//! over HTTP/2 without TLS (h2c) and over HTTP/1.1.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use http_body_util::channel::{Channel, Sender};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};

mod support;

use support::{Patience, Served};

const TIMEOUT: Duration = Duration::from_secs(30);
const PATIENCE: Patience = Patience {
    timeout: TIMEOUT,
    poll: Duration::from_millis(50),
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Http {
    H1,
    H2,
}

/// Sends a POST whose body is one message envelope and then stays open; the
/// returned sender keeps it open. Panics unless the response head arrives
/// within `TIMEOUT` (which, with the body open, means the server did not
/// wait for it).
async fn open_stream(
    served: &Served,
    http: Http,
    path: &str,
    content_type: &str,
) -> (http::Response<Incoming>, Sender<Bytes>) {
    let tcp = tokio::net::TcpStream::connect(served.address())
        .await
        .expect("connecting");
    let (mut sender, body) = Channel::<Bytes>::new(4);
    let request = http::Request::post(format!("http://{}{path}", served.address()))
        .header(http::header::CONTENT_TYPE, content_type)
        .header("te", "trailers")
        .body(body)
        .unwrap();
    // One message frame (flags 0, five bytes of payload), then nothing.
    sender
        .send_data(Bytes::from_static(&[
            0, 0, 0, 0, 5, 0x0a, 0x03, b'a', b'b', b'c',
        ]))
        .await
        .expect("sending the first message");
    let respond = async {
        match http {
            Http::H2 => {
                let (mut client, connection) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                        .await
                        .expect("HTTP/2 handshake");
                tokio::spawn(connection);
                client.send_request(request).await
            }
            Http::H1 => {
                let (mut client, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                        .await
                        .expect("HTTP/1.1 handshake");
                tokio::spawn(connection);
                client.send_request(request).await
            }
        }
    };
    let response = tokio::time::timeout(TIMEOUT, respond)
        .await
        .unwrap_or_else(|_| {
            panic!("no answer to {path} ({http:?}, {content_type}) while its body stays open")
        })
        .expect("a response");
    (response, sender)
}

/// The gRPC status of a trailers-only answer (status in the head).
fn grpc_status(response: &http::Response<Incoming>) -> Option<&str> {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
}

/// The first frame of a streaming answer's body (Connect end-of-stream, or
/// gRPC-Web trailers), read while the request body stays open.
async fn first_frame(response: http::Response<Incoming>) -> Vec<u8> {
    let mut body = response.into_body();
    let frame = tokio::time::timeout(TIMEOUT, body.frame())
        .await
        .expect("the answer's body in time")
        .expect("a body frame")
        .expect("reading the body");
    frame.into_data().expect("a data frame").to_vec()
}

const UNKNOWN: [&str; 4] = [
    "/gitpod.v1.RunnerService/NoSuchMethod",
    "/no.such.Service/X",
    "/api/no.such.Service/X",
    "/api/gitpod.v1.RunnerService/NoSuchMethod",
];

#[tokio::test]
async fn grpc_streams_to_unknown_methods_get_unimplemented_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path(), "server", &[], PATIENCE).await;
    for path in UNKNOWN {
        for content_type in ["application/grpc", "application/grpc+proto"] {
            let (response, _open) = open_stream(&served, Http::H2, path, content_type).await;
            assert_eq!(response.status(), 200, "{path}");
            assert_eq!(grpc_status(&response), Some("12"), "{path}: {response:?}");
        }
    }
}

#[tokio::test]
async fn grpc_web_and_connect_streams_to_unknown_methods_get_unimplemented_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path(), "server", &[], PATIENCE).await;
    for http in [Http::H1, Http::H2] {
        for path in UNKNOWN {
            let (response, _open) =
                open_stream(&served, http, path, "application/grpc-web+proto").await;
            assert_eq!(response.status(), 200, "{path}");
            let status = match grpc_status(&response) {
                Some(status) => status.to_string(),
                None => {
                    // Trailers in the body: a frame flagged 0x80.
                    let frame = first_frame(response).await;
                    assert_eq!(frame[0] & 0x80, 0x80, "{path}: {frame:?}");
                    let trailers = String::from_utf8_lossy(&frame[5..]).to_lowercase();
                    assert!(trailers.contains("grpc-status:12"), "{trailers}");
                    "12".into()
                }
            };
            assert_eq!(status, "12", "{path} ({http:?})");

            let (response, _open) =
                open_stream(&served, http, path, "application/connect+proto").await;
            assert_eq!(response.status(), 200, "{path}");
            let frame = first_frame(response).await;
            // The end-of-stream message: flag 0x02, then JSON.
            assert_eq!(frame[0] & 0x02, 0x02, "{path}: {frame:?}");
            let end: serde_json::Value = serde_json::from_slice(&frame[5..]).unwrap();
            assert_eq!(
                end["error"]["code"], "unimplemented",
                "{path} ({http:?}): {end}"
            );
        }
    }
}

#[tokio::test]
async fn a_served_stream_answers_while_its_body_stays_open() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path(), "server", &[], PATIENCE).await;
    // Reflection is bidirectional: the message sent (a request that asks
    // nothing) is answered while the request stays open.
    for path in [
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ] {
        let (response, _open) = open_stream(&served, Http::H2, path, "application/grpc").await;
        assert_eq!(response.status(), 200);
        assert_eq!(grpc_status(&response), None, "{path}: {response:?}");
        let frame = first_frame(response).await;
        assert_eq!(frame[0], 0, "a message, not trailers: {frame:?}");
    }
}
