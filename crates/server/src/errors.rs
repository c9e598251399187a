//! Mapping failures to Connect errors, in one place.

use connectrpc::interceptor::{UnaryRequest, UnaryResponse};
use connectrpc::{ConnectError, ErrorCode, Interceptor, Next};

use crate::store::StoreError;

/// How a store failure reaches the client. Internal details are logged, not sent.
pub fn store_error(err: StoreError) -> ConnectError {
    match err {
        StoreError::NotFound(what) => ConnectError::not_found(format!("{what} not found")),
        StoreError::AlreadyExists(message) => ConnectError::already_exists(message),
        StoreError::Conflict(message) => ConnectError::failed_precondition(message),
        StoreError::Invalid { field, message } => invalid_field(&field, message),
        StoreError::Internal(err) => {
            tracing::error!(error = %format!("{err:#}"), "store failure");
            ConnectError::internal("internal error; see the server log")
        }
    }
}

/// `invalid_argument` naming the offending field.
pub fn invalid_field(field: &str, why: impl std::fmt::Display) -> ConnectError {
    ConnectError::invalid_argument(format!("{field}: {why}"))
}

/// Rewrites the generic message of request-validation failures so that it
/// names each offending field and rule ("runner_id: value must be a valid
/// UUID"); the structured `buf.validate.Violations` detail stays attached.
pub struct ValidationMessages;

#[connectrpc::async_trait]
impl Interceptor for ValidationMessages {
    async fn intercept_unary(
        &self,
        req: UnaryRequest,
        next: Next<'_>,
    ) -> Result<UnaryResponse, ConnectError> {
        next.run(req).await.map_err(describe_violations)
    }
}

/// Plain words for the rules our schema uses (the wire detail names the rule).
fn rule_text(rule_id: &str) -> &'static str {
    match rule_id {
        "string.min_len" => "is too short",
        "string.max_len" | "string.max_bytes" | "bytes.max_len" => "is too long",
        "bytes.len" => "has the wrong length",
        "string.uuid" | "string.uuid_empty" => "must be a valid UUID",
        "string.uri" | "string.uri_empty" => "must be an absolute URI",
        "enum.defined_only" => "must be one of the defined enum values",
        "repeated.min_items" => "has too few items",
        "repeated.max_items" => "has too many items",
        "required" => "is required",
        r if r.starts_with("int32.") || r.starts_with("duration.") => "is out of range",
        _ => "is invalid",
    }
}

fn describe_violations(mut err: ConnectError) -> ConnectError {
    if err.code != ErrorCode::InvalidArgument {
        return err;
    }
    let mut parts = Vec::new();
    for detail in &err.details {
        if let Ok(Some(violations)) = protovalidate_buffa::decode_violations(detail) {
            for v in &violations.violations {
                let path = v
                    .field
                    .as_option()
                    .map(|f| {
                        f.elements
                            .iter()
                            .filter_map(|e| e.field_name.clone())
                            .collect::<Vec<_>>()
                            .join(".")
                    })
                    .unwrap_or_default();
                let rule = v.rule_id.clone().unwrap_or_default();
                let why = v
                    .message
                    .clone()
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| rule_text(&rule).to_string());
                parts.push(format!("{path}: {why} ({rule})"));
            }
        }
    }
    if !parts.is_empty() {
        err.message = Some(format!("invalid request: {}", parts.join("; ")));
    }
    err
}
