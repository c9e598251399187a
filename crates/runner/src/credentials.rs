//! The runner's state on disk: its access token and its X25519 key pair.
//!
//! Layout of the data dir (the directory itself is created with mode 0700, and
//! an existing one is narrowed to 0700 when the runner starts):
//! - `credentials.json` (0600): the management plane's URL, the runner id once
//!   known, and the access token.
//! - `runner.key` (0600): the 32 raw bytes of the X25519 secret key. Secrets for
//!   the runner (SCM OAuth client secrets) are sealed to its public half.
//!
//! Files are written to a temporary file (already 0600) and renamed into place,
//! so a crash never leaves a half-written credential.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crypto_box::SecretKey;
use serde::{Deserialize, Serialize};

use crate::Error;

const CREDENTIALS_FILE: &str = "credentials.json";
const KEY_FILE: &str = "runner.key";
const PROBE_FILE: &str = ".write-probe";

/// What the runner needs to talk to the management plane again after a restart.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Credentials {
    /// Base URL of the management plane, e.g. `http://127.0.0.1:8080`.
    pub server_url: String,
    /// Known after the first sign-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_id: Option<String>,
    /// The runner access token (`crl_rt_…`).
    pub access_token: String,
    /// Fingerprint (truncated SHA-512, hex) of the exchange token this access
    /// token came from, so that restarting with the same flag does not try to
    /// exchange a used token again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchanged_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("server_url", &self.server_url)
            .field("runner_id", &self.runner_id)
            .field("access_token", &"<redacted>")
            .field("exchanged_token", &self.exchanged_token)
            .finish()
    }
}

/// The runner's data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    path: PathBuf,
}

impl DataDir {
    /// Refers to `path` without touching the file system.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Creates the directory (mode 0700) if it does not exist yet, and
    /// narrows an existing one to 0700.
    pub fn create(path: impl Into<PathBuf>) -> Result<Self, Error> {
        let dir = Self::new(path);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir.path)
            .map_err(|e| Error::io(format!("creating data dir {}", dir.path.display()), e))?;
        dir.make_private()?;
        Ok(dir)
    }

    /// Narrows an existing directory to mode 0700; returns its old mode when
    /// that was wider. A missing directory is left for [`DataDir::create`].
    pub fn make_private(&self) -> Result<Option<u32>, Error> {
        let mode = match fs::metadata(&self.path) {
            Ok(metadata) => metadata.permissions().mode() & 0o777,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::io(
                    format!("reading data dir {}", self.path.display()),
                    e,
                ));
            }
        };
        if mode == 0o700 {
            return Ok(None);
        }
        fs::set_permissions(&self.path, fs::Permissions::from_mode(0o700)).map_err(|e| {
            Error::io(
                format!("making data dir {} private", self.path.display()),
                e,
            )
        })?;
        Ok(Some(mode))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn credentials_path(&self) -> PathBuf {
        self.path.join(CREDENTIALS_FILE)
    }

    pub fn key_path(&self) -> PathBuf {
        self.path.join(KEY_FILE)
    }

    /// The stored credentials, or `None` if the runner has none yet.
    pub fn load_credentials(&self) -> Result<Option<Credentials>, Error> {
        let path = self.credentials_path();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Corrupt {
                path,
                reason: e.to_string(),
            })
    }

    /// Writes the credentials (mode 0600), replacing earlier ones.
    pub fn save_credentials(&self, credentials: &Credentials) -> Result<(), Error> {
        let mut json =
            serde_json::to_vec_pretty(credentials).expect("credentials always serialize");
        json.push(b'\n');
        write_private(&self.credentials_path(), &json)
    }

    /// The stored secret key, or `None` if none was generated yet.
    pub fn load_secret_key(&self) -> Result<Option<SecretKey>, Error> {
        let path = self.key_path();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| Error::Corrupt {
            path,
            reason: format!(
                "an X25519 secret key is 32 bytes, this file has {}",
                b.len()
            ),
        })?;
        Ok(Some(SecretKey::from(bytes)))
    }

    /// The stored secret key; generates and stores one (mode 0600) on first use.
    pub fn load_or_create_secret_key(&self) -> Result<SecretKey, Error> {
        if let Some(key) = self.load_secret_key()? {
            return Ok(key);
        }
        let key = SecretKey::generate(&mut crypto_box::aead::OsRng);
        write_private(&self.key_path(), &key.to_bytes())?;
        Ok(key)
    }

    /// Removes the credentials and the key (the runner was deleted). Missing
    /// files are not an error.
    pub fn remove_credentials(&self) -> Result<(), Error> {
        for path in [self.credentials_path(), self.key_path()] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("removing {}", path.display()), e)),
            }
        }
        Ok(())
    }

    /// Checks that the runner can still write to its data dir by writing and
    /// removing a small probe file.
    pub fn probe_writable(&self) -> Result<(), Error> {
        let path = self.path.join(PROBE_FILE);
        let result = fs::write(&path, b"probe\n").and_then(|()| fs::remove_file(&path));
        result.map_err(|e| {
            Error::io(
                format!("data dir {} is not writable", self.path.display()),
                e,
            )
        })
    }
}

/// Writes `bytes` to `path` with mode 0600 through a temporary file and a rename.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    let write = || -> io::Result<()> {
        let _ = fs::remove_file(&tmp);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(format!("writing {}", path.display()), e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn credentials_round_trip_with_private_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::create(tmp.path().join("runner")).unwrap();
        assert_eq!(mode(dir.path()), 0o700);
        assert_eq!(dir.load_credentials().unwrap(), None);

        let credentials = Credentials {
            server_url: "http://127.0.0.1:8080".into(),
            runner_id: None,
            access_token: "crl_rt_secret".into(),
            exchanged_token: None,
        };
        dir.save_credentials(&credentials).unwrap();
        assert_eq!(mode(&dir.credentials_path()), 0o600);
        assert_eq!(dir.load_credentials().unwrap(), Some(credentials.clone()));

        let updated = Credentials {
            runner_id: Some("0190a000-0000-7000-8000-000000000001".into()),
            ..credentials
        };
        dir.save_credentials(&updated).unwrap();
        assert_eq!(dir.load_credentials().unwrap(), Some(updated.clone()));
        assert!(!format!("{updated:?}").contains("crl_rt_secret"));
    }

    #[test]
    fn an_existing_open_data_dir_is_narrowed() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("runner");
        fs::create_dir(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        let dir = DataDir::new(&path);
        assert_eq!(dir.make_private().unwrap(), Some(0o755));
        assert_eq!(mode(&path), 0o700);
        assert_eq!(dir.make_private().unwrap(), None, "already private");

        fs::set_permissions(&path, fs::Permissions::from_mode(0o750)).unwrap();
        DataDir::create(&path).unwrap();
        assert_eq!(mode(&path), 0o700, "create narrows an existing dir too");
        assert_eq!(
            DataDir::new(tmp.path().join("missing"))
                .make_private()
                .unwrap(),
            None
        );
    }

    #[test]
    fn secret_key_is_created_once_and_kept_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::create(tmp.path()).unwrap();
        assert!(dir.load_secret_key().unwrap().is_none());
        let key = dir.load_or_create_secret_key().unwrap();
        assert_eq!(mode(&dir.key_path()), 0o600);
        assert_eq!(fs::read(dir.key_path()).unwrap().len(), 32);
        let again = dir.load_or_create_secret_key().unwrap();
        assert_eq!(key.public_key(), again.public_key());
    }

    #[test]
    fn removing_credentials_removes_token_and_key() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::create(tmp.path()).unwrap();
        dir.save_credentials(&Credentials {
            server_url: "http://x".into(),
            runner_id: None,
            access_token: "t".into(),
            exchanged_token: Some("ab".into()),
        })
        .unwrap();
        dir.load_or_create_secret_key().unwrap();
        dir.remove_credentials().unwrap();
        assert!(!dir.credentials_path().exists());
        assert!(!dir.key_path().exists());
        dir.remove_credentials().unwrap();
    }

    #[test]
    fn corrupt_files_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::create(tmp.path()).unwrap();
        fs::write(dir.key_path(), b"short").unwrap();
        assert!(matches!(dir.load_secret_key(), Err(Error::Corrupt { .. })));
        fs::write(dir.credentials_path(), b"{").unwrap();
        assert!(matches!(dir.load_credentials(), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn write_probe_detects_read_only_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::create(tmp.path()).unwrap();
        dir.probe_writable().unwrap();
        assert!(!tmp.path().join(PROBE_FILE).exists());
        if is_root() {
            return; // root writes anywhere
        }
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o500)).unwrap();
        assert!(dir.probe_writable().is_err());
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o700)).unwrap();
    }

    fn is_root() -> bool {
        fs::read_to_string("/proc/self/status")
            .map(|s| {
                s.lines()
                    .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
            })
            .unwrap_or(false)
    }
}
