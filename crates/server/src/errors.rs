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
                parts.push(format!(
                    "{path}: {}",
                    v.message.clone().unwrap_or_else(|| "is invalid".into())
                ));
            }
        }
    }
    if !parts.is_empty() {
        err.message = Some(format!("invalid request: {}", parts.join("; ")));
    }
    err
}
