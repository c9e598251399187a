//! `corral-runner`: the agent behind `corral runner`.
//!
//! The runner dials out to the management plane (`corral serve`) over the
//! `corral.v1.RunnerInteractionService` protocol: it exchanges a one-time token
//! for an access token, signs up with its X25519 public key, uploads its
//! configuration schema, reports status as its heartbeat, and keeps a stream
//! open on which it receives its spec, pings and its deletion. It serves its own
//! logs and a support bundle to holders of a logs token signed by the
//! management plane.
//!
//! Module map:
//! - [`agent`]: the main loop (sign-up, schema, heartbeats, watch, shutdown).
//! - [`connection`]: Connect clients, the token exchange, retry rules, backoff.
//! - [`credentials`]: the data dir (access token and key pair, 0600 files).
//! - [`logs`]: log capture (ring buffer layer, live log level), logs token
//!   verification, the HTTP server for `/logs` and `/support-bundle`.
//! - [`bundle`]: the support bundle (tar.gz, secrets removed).
//! - [`metrics`]: the runner's metrics and their push to a Prometheus
//!   remote-write collector.
//! - [`system`]: the host summary reported as system details.
//! - [`update`]: self-update from the release on the runner's channel (window
//!   maths, download, SHA-256 and signature checks, re-exec).
//!
//! The configuration schema the runner uploads and the size caps its reports
//! must fit come from `corral-contract`, which the management plane shares.
//!
//! Library entry points: [`agent::run`] (what the CLI calls),
//! [`agent::run_until`] (with a caller-chosen shutdown), and
//! [`open_sealed_secret`] / [`open_sealed_secret_in`] to open secrets the
//! management plane sealed to a runner.

use std::path::{Path, PathBuf};

pub mod agent;
pub mod bundle;
pub mod connection;
pub mod credentials;
pub mod logs;
pub mod metrics;
pub mod scm_work;
pub mod system;
pub mod update;

pub use agent::{Config, DEFAULT_MAX_SCM_REQUESTS, Outcome, run, run_until};
pub use credentials::{Credentials, DataDir};
pub use crypto_box::{PublicKey, SecretKey};
pub use logs::{LogFormat, Logging};

/// Everything that can stop the runner.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the management plane refused the exchange token ({0}). Exchange tokens work once and expire after 24 hours: \
         create a new one (RunnerService.CreateRunnerToken) and start again with --exchange-token"
    )]
    ExchangeRejected(String),
    #[error(
        "the management plane no longer accepts this runner's access token ({0}). The runner may have been deleted \
         or given a new token: start again with a new --exchange-token"
    )]
    AccessRejected(String),
    #[error("no credentials in {}: start once with --server URL --exchange-token TOKEN", .0.display())]
    NotRegistered(PathBuf),
    #[error("invalid server URL {url:?}: {reason}")]
    ServerUrl { url: String, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is corrupt: {reason}", .path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("the sealed secret does not open with this runner's key")]
    Unseal,
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot set up logging: {0}")]
    Logging(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// The process exit code for this error: 3 when the runner needs new
    /// credentials (retrying cannot help), 2 for bad flags, else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::ExchangeRejected(_) | Error::AccessRejected(_) | Error::NotRegistered(_) => 3,
            Error::ServerUrl { .. } | Error::Config(_) => 2,
            _ => 1,
        }
    }
}

/// Opens a secret the management plane sealed (libsodium sealed box) to the
/// public half of `secret_key`.
pub fn open_sealed_secret(secret_key: &SecretKey, ciphertext: &[u8]) -> Result<Vec<u8>, Error> {
    secret_key.unseal(ciphertext).map_err(|_| Error::Unseal)
}

/// Opens a sealed secret with the key stored in the runner's data dir.
pub fn open_sealed_secret_in(data_dir: &Path, ciphertext: &[u8]) -> Result<Vec<u8>, Error> {
    let dir = DataDir::new(data_dir);
    let key = dir.load_secret_key()?.ok_or_else(|| Error::Corrupt {
        path: dir.key_path(),
        reason: "no key stored".into(),
    })?;
    open_sealed_secret(&key, ciphertext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_the_right_key() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::create(tmp.path()).unwrap();
        let key = dir.load_or_create_secret_key().unwrap();
        let sealed = key
            .public_key()
            .seal(&mut crypto_box::aead::OsRng, b"oauth-client-secret")
            .unwrap();
        assert_eq!(
            open_sealed_secret(&key, &sealed).unwrap(),
            b"oauth-client-secret"
        );
        assert_eq!(
            open_sealed_secret_in(tmp.path(), &sealed).unwrap(),
            b"oauth-client-secret"
        );
        let other = SecretKey::generate(&mut crypto_box::aead::OsRng);
        assert!(matches!(
            open_sealed_secret(&other, &sealed),
            Err(Error::Unseal)
        ));
        assert!(open_sealed_secret(&key, b"short").is_err());
    }
}
