//! Streams opened to a method nobody serves are answered `unimplemented` at
//! once. The RPC layer reads a request to its end before it reports a route
//! miss (right for unary calls, whose body is short), so a streaming client
//! that keeps its request open would wait for an answer that never comes.
//!
//! This middleware looks only at the request head: a POST whose content type
//! names a streaming protocol (gRPC, gRPC-Web, Connect streaming) to a path
//! that is no served method gets the protocol's own "unimplemented" answer
//! without its body being read. Everything else passes through unchanged.

use std::collections::HashSet;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};

/// The served methods, as `package.Service/Method`.
#[derive(Debug, Clone, Default)]
pub struct KnownMethods(Arc<HashSet<String>>);

impl KnownMethods {
    /// The methods `router` serves.
    pub fn of(router: &connectrpc::Router) -> Self {
        Self(Arc::new(router.methods().map(str::to_string).collect()))
    }

    /// Whether a request path (`/pkg.Svc/M`, also under `/api/`) names one.
    pub fn contains_path(&self, path: &str) -> bool {
        let procedure = path.trim_start_matches('/');
        let procedure = procedure.strip_prefix("api/").unwrap_or(procedure);
        self.0.contains(procedure)
    }
}

/// The streaming protocols, told apart by content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamingProtocol {
    Grpc,
    GrpcWeb,
    ConnectStreaming,
}

impl StreamingProtocol {
    fn of(content_type: &str) -> Option<Self> {
        let content_type = content_type.to_ascii_lowercase();
        if content_type.starts_with("application/grpc-web") {
            Some(Self::GrpcWeb)
        } else if content_type.starts_with("application/grpc") {
            Some(Self::Grpc)
        } else if content_type.starts_with("application/connect+") {
            Some(Self::ConnectStreaming)
        } else {
            None
        }
    }
}

/// Answers streams to unknown methods without reading their body.
pub async fn answer_unknown_methods(
    State(known): State<KnownMethods>,
    request: Request,
    next: Next,
) -> Response {
    let protocol = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(StreamingProtocol::of);
    match protocol {
        Some(protocol)
            if request.method() == http::Method::POST
                && !known.contains_path(request.uri().path()) =>
        {
            let content_type = request.headers().get(header::CONTENT_TYPE).cloned();
            unimplemented(protocol, content_type, request.uri().path())
        }
        _ => next.run(request).await,
    }
}

/// The protocol's `unimplemented` answer; the request body is left unread
/// (an HTTP/1.1 connection is then closed after the answer).
fn unimplemented(
    protocol: StreamingProtocol,
    content_type: Option<HeaderValue>,
    path: &str,
) -> Response {
    let message = format!("method not found: {}", shorten(path));
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    match protocol {
        StreamingProtocol::Grpc | StreamingProtocol::GrpcWeb => {
            // Trailers-only: the status travels in the head, the body is empty.
            let fallback = if protocol == StreamingProtocol::Grpc {
                "application/grpc"
            } else {
                "application/grpc-web+proto"
            };
            headers.insert(
                header::CONTENT_TYPE,
                content_type.unwrap_or(HeaderValue::from_static(fallback)),
            );
            headers.insert("grpc-status", HeaderValue::from_static("12"));
            if let Ok(value) = HeaderValue::from_str(&grpc_message(&message)) {
                headers.insert("grpc-message", value);
            }
        }
        StreamingProtocol::ConnectStreaming => {
            headers.insert(
                header::CONTENT_TYPE,
                content_type.unwrap_or(HeaderValue::from_static("application/connect+proto")),
            );
            // One end-of-stream message (flag 0x02) carrying the error as JSON.
            let end = serde_json::json!({
                "error": { "code": "unimplemented", "message": message }
            })
            .to_string();
            let mut body = Vec::with_capacity(5 + end.len());
            body.push(0x02);
            body.extend_from_slice(&(end.len() as u32).to_be_bytes());
            body.extend_from_slice(end.as_bytes());
            *response.body_mut() = Body::from(body);
        }
    }
    response
}

/// A `grpc-message` value: percent-encoded outside printable ASCII, and `%`.
fn grpc_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A request path, cut short for an error message.
fn shorten(path: &str) -> &str {
    match path.char_indices().nth(200) {
        Some((at, _)) => &path[..at],
        None => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_protocols_are_told_by_content_type() {
        use StreamingProtocol::*;
        for (content_type, expected) in [
            ("application/grpc", Some(Grpc)),
            ("application/grpc+proto", Some(Grpc)),
            ("Application/GRPC+json", Some(Grpc)),
            ("application/grpc-web+proto", Some(GrpcWeb)),
            ("application/grpc-web-text", Some(GrpcWeb)),
            ("application/connect+proto", Some(ConnectStreaming)),
            ("application/connect+json", Some(ConnectStreaming)),
            // Unary Connect: read in full and answered by the RPC layer.
            ("application/proto", None),
            ("application/json", None),
            ("text/plain", None),
        ] {
            assert_eq!(
                StreamingProtocol::of(content_type),
                expected,
                "{content_type}"
            );
        }
    }

    #[test]
    fn known_methods_are_found_at_the_root_and_under_api() {
        let known = KnownMethods(Arc::new(HashSet::from(["a.B/C".to_string()])));
        assert!(known.contains_path("/a.B/C"));
        assert!(known.contains_path("/api/a.B/C"));
        assert!(!known.contains_path("/a.B/D"));
        assert!(!known.contains_path("/api/api/a.B/C"));
    }

    #[test]
    fn grpc_messages_are_percent_encoded() {
        assert_eq!(grpc_message("not found: /a.B/C"), "not found: /a.B/C");
        assert_eq!(grpc_message("100% é\n"), "100%25 %C3%A9%0A");
    }
}
