//! What can go wrong talking to an SCM, in terms the API can report.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScmError {
    /// The input is not something this SCM understands (`invalid_argument`).
    #[error("{0}")]
    InvalidInput(String),
    /// No token, or the SCM rejected it (`failed_precondition` with sign-in details).
    #[error("authentication required for {host}: {reason}")]
    AuthenticationRequired { host: String, reason: String },
    /// The token works but may not see this (`permission_denied`).
    #[error("{0}")]
    PermissionDenied(String),
    /// The repository, ref, change or issue does not exist (`not_found`).
    #[error("{0}")]
    NotFound(String),
    /// The SCM's rate limit is used up (`resource_exhausted`).
    #[error("rate limited by {host}{}", retry_after_secs.map(|s| format!("; retry in {s}s")).unwrap_or_default())]
    RateLimited {
        host: String,
        retry_after_secs: Option<u64>,
    },
    /// The SCM failed, timed out or could not be reached (`unavailable`).
    #[error("{0}")]
    Unavailable(String),
}

impl ScmError {
    /// A not-found or permission failure about `what` (e.g. "repository a/b")
    /// on `host`, in words a user can act on; other failures pass unchanged.
    pub fn about(self, what: &str, host: &str) -> Self {
        match self {
            ScmError::NotFound(_) => ScmError::NotFound(format!(
                "{what} was not found on {host}, or the token cannot see it"
            )),
            ScmError::PermissionDenied(detail) => {
                ScmError::PermissionDenied(format!("the token may not read {what} ({detail})"))
            }
            e => e,
        }
    }

    /// A not-found failure told the way `not_found` says; others pass unchanged.
    pub fn if_not_found(self, not_found: impl FnOnce() -> ScmError) -> Self {
        match self {
            ScmError::NotFound(_) => not_found(),
            e => e,
        }
    }

    /// The Connect code name this error maps to.
    pub fn code(&self) -> &'static str {
        match self {
            ScmError::InvalidInput(_) => "invalid_argument",
            ScmError::AuthenticationRequired { .. } => "failed_precondition",
            ScmError::PermissionDenied(_) => "permission_denied",
            ScmError::NotFound(_) => "not_found",
            ScmError::RateLimited { .. } => "resource_exhausted",
            ScmError::Unavailable(_) => "unavailable",
        }
    }
}
