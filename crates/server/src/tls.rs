//! TLS on the listener: the certificate chain and private key come from PEM
//! files (`--tls-cert`, `--tls-key`) and are read again on SIGHUP, so that a
//! renewed certificate is used without a restart. New connections get the
//! certificate loaded last; connections already open keep theirs. A reload
//! that fails (a missing, half-written or mismatched file) keeps the
//! previous certificate and logs why.
//!
//! ALPN offers HTTP/2 and HTTP/1.1; the serving loop speaks whichever the
//! client picks. rustls with the `ring` provider, which the store's
//! PostgreSQL client already uses.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// A PEM file larger than this is refused unread (a chain is a few KiB).
pub const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// Where the certificate chain and its private key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the server's certificate first, then its intermediates.
    pub cert: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why the certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is larger than {MAX_PEM_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no usable PEM private key: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("the certificate and key in {cert} and {key} are not usable together: {source}")]
    Rejected {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
}

/// The certificate new connections are served with, replaceable while the
/// server runs.
pub struct Certificates {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
}

impl Certificates {
    /// Loads the files; an error here stops the server from starting.
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let config = server_config(&files)?;
        Ok(Arc::new(Self {
            files,
            current: RwLock::new(Arc::new(config)),
        }))
    }

    /// Reads the files again; on success new connections use them, on
    /// failure the previous certificate stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.files)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        Ok(())
    }

    /// What accepts the next connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }

    /// Reloads on every SIGHUP for as long as the process runs; logs the
    /// outcome. Fails only if the signal handler cannot be installed.
    pub fn reload_on_sighup(self: &Arc<Self>) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = signal(SignalKind::hangup())?;
        let certificates = self.clone();
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                match certificates.reload() {
                    Ok(()) => tracing::info!(
                        cert = %certificates.files.cert.display(),
                        "reloaded the TLS certificate; new connections use it"
                    ),
                    Err(e) => tracing::error!(
                        "could not reload the TLS certificate, keeping the previous one: {e}"
                    ),
                }
            }
        });
        Ok(())
    }
}

fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    let read = |source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let length = std::fs::metadata(path).map_err(read)?.len();
    if length > MAX_PEM_BYTES {
        return Err(TlsError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    std::fs::read(path).map_err(read)
}

fn server_config(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&read_pem(&files.cert)?)
            .filter_map(Result::ok)
            .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: files.cert.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&read_pem(&files.key)?).map_err(|e| TlsError::Key {
        path: files.key.clone(),
        reason: e.to_string(),
    })?;
    let rejected = |source| TlsError::Rejected {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    };
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(rejected)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(rejected)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path, cert: &[u8], key: &[u8]) -> TlsFiles {
        let files = TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.cert, cert).unwrap();
        std::fs::write(&files.key, key).unwrap();
        files
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = TlsFiles {
            cert: dir.path().join("nope.pem"),
            key: dir.path().join("nope.key"),
        };
        let error = Certificates::load(missing).err().unwrap().to_string();
        assert!(error.contains("nope.pem"), "{error}");

        let garbage = files(dir.path(), b"not a certificate", b"not a key");
        let error = Certificates::load(garbage).err().unwrap();
        assert!(matches!(error, TlsError::NoCertificate { .. }), "{error}");

        let huge = files(
            dir.path(),
            &vec![b'a'; MAX_PEM_BYTES as usize + 1],
            b"not a key",
        );
        let error = Certificates::load(huge).err().unwrap();
        assert!(matches!(error, TlsError::TooLarge { .. }), "{error}");
    }
}
