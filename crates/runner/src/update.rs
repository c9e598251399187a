//! Self-update (docs/releases.md): the runner asks the management plane for
//! the release on its channel; when that is newer than itself, auto-update is
//! on and the hour (UTC) is inside its update window, it downloads the
//! executable, verifies its SHA-256 and the release key's signature, puts it
//! in place of its own executable and re-executes itself with the same
//! arguments (so the same data dir). Anything that fails leaves the running
//! version in place; the agent reports why in its status.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use corral_api::corral::v1::{DownloadReleaseRequest, GetLatestReleaseRequest, Release};
use corral_api::gitpod::v1::{RunnerReleaseChannel, RunnerSpec};
use corral_contract::release::{self, Version};
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::connection::Connection;

/// For tests only: the version this process reports and compares releases
/// against, instead of its own. A restart after an update drops it, so the
/// new executable reports its real version.
pub const TEST_VERSION_OVERRIDE_ENV: &str = "CORRAL_TEST_VERSION_OVERRIDE";

/// For tests only: the hour (UTC, 0-23) the update window is checked against,
/// instead of the clock's.
pub const TEST_UTC_HOUR_ENV: &str = "CORRAL_TEST_UTC_HOUR";

/// How often the runner looks for a new release unless configured otherwise.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(3600);

/// A download must finish within this time.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// The version this process runs (and reports).
pub fn running_version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        std::env::var(TEST_VERSION_OVERRIDE_ENV)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string())
    })
}

/// The hour (UTC) now, or the test override.
fn utc_hour() -> u32 {
    if let Some(hour) = std::env::var(TEST_UTC_HOUR_ENV)
        .ok()
        .and_then(|h| h.parse::<u32>().ok())
        .filter(|h| *h < 24)
    {
        return hour;
    }
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    ((seconds / 3600) % 24) as u32
}

/// An update window in whole hours (UTC): from `start` up to, not including,
/// `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: u32,
    /// `None` means `start` + 2 hours.
    pub end: Option<u32>,
}

impl Window {
    fn end(self) -> u32 {
        self.end.unwrap_or((self.start + 2) % 24)
    }

    /// Whether `hour` (0-23) lies inside; the window may wrap past midnight
    /// (22 to 2 holds 22, 23, 0 and 1). One with start = end is empty (the
    /// management plane refuses it).
    pub fn contains(self, hour: u32) -> bool {
        let (start, end) = (self.start % 24, self.end() % 24);
        if start <= end {
            (start..end).contains(&hour)
        } else {
            hour >= start || hour < end
        }
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02}:00-{:02}:00 UTC", self.start, self.end())
    }
}

/// What the spec says about updating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub auto_update: bool,
    /// `stable` or `latest` (an unspecified channel follows stable).
    pub channel: &'static str,
    /// `None`: any time.
    pub window: Option<Window>,
}

impl Policy {
    pub fn from_spec(spec: &RunnerSpec) -> Self {
        let config = spec.configuration.as_option();
        let channel = match config.and_then(|c| c.release_channel.as_known()) {
            Some(RunnerReleaseChannel::RUNNER_RELEASE_CHANNEL_LATEST) => "latest",
            _ => "stable",
        };
        let window = config
            .and_then(|c| c.update_window.as_option())
            .and_then(|w| {
                Some(Window {
                    start: w.start_hour?,
                    end: w.end_hour,
                })
            });
        Self {
            auto_update: config.is_some_and(|c| c.auto_update),
            channel,
            window,
        }
    }
}

/// What to do about an offered release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing newer is offered.
    UpToDate,
    /// A newer version waits; the string says why it is not installed now.
    Pending(String),
    Install,
}

/// Whether to install `offered` while running `running`, at `hour` (UTC).
pub fn decide(policy: &Policy, running: &str, offered: &str, hour: u32) -> Decision {
    let Ok(offered_version) = Version::parse(offered) else {
        return Decision::UpToDate;
    };
    // A running version that is not semver (a developer build) is older than
    // any release.
    if Version::parse(running).is_ok_and(|running| offered_version <= running) {
        return Decision::UpToDate;
    }
    if !policy.auto_update {
        return Decision::Pending(format!("update to {offered} pending: auto-update is off"));
    }
    match policy.window {
        Some(window) if !window.contains(hour) => Decision::Pending(format!(
            "update to {offered} pending: outside the update window {window}"
        )),
        _ => Decision::Install,
    }
}

/// Why an update did not happen.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("update to {version} failed: {reason}")]
    Failed { version: String, reason: String },
    #[error("could not look for updates: {0}")]
    Lookup(String),
}

/// The outcome of one check.
#[derive(Debug)]
pub enum Checked {
    UpToDate,
    Pending(String),
    /// The new executable is in place of the old one: restart into it.
    Installed {
        version: String,
    },
}

/// Looks for a release on the runner's channel and, when it should, installs
/// it over `exe`. Never restarts: the caller does, with [`restart`].
pub async fn check(
    conn: &Connection,
    key: &VerifyingKey,
    policy: &Policy,
    exe: &Path,
) -> Result<Checked, UpdateError> {
    let offered = conn
        .client()
        .get_latest_release(GetLatestReleaseRequest::default())
        .await
        .map_err(|e| UpdateError::Lookup(e.to_string()))?
        .into_owned();
    let Some(release) = offered.release.into_option() else {
        return Ok(Checked::UpToDate);
    };
    match decide(policy, running_version(), &release.version, utc_hour()) {
        Decision::UpToDate => Ok(Checked::UpToDate),
        Decision::Pending(why) => Ok(Checked::Pending(why)),
        Decision::Install => {
            let failed = |reason: String| UpdateError::Failed {
                version: release.version.clone(),
                reason,
            };
            if release.channel != policy.channel {
                return Err(failed(format!(
                    "the release is for the {} channel, the runner follows {}",
                    release.channel, policy.channel
                )));
            }
            let staged = staging_path(exe);
            let result = tokio::time::timeout(
                DOWNLOAD_TIMEOUT,
                download_verified(conn, key, &release, &staged),
            )
            .await
            .unwrap_or_else(|_| Err("the download timed out".into()))
            .and_then(|()| {
                // Same directory, so the rename is atomic: the executable is
                // always either the old one or the whole new one.
                std::fs::rename(&staged, exe)
                    .map_err(|e| format!("replacing {}: {e}", exe.display()))?;
                sync_dir(exe);
                Ok(())
            });
            if let Err(reason) = result {
                let _ = std::fs::remove_file(&staged);
                return Err(failed(reason));
            }
            Ok(Checked::Installed {
                version: release.version,
            })
        }
    }
}

/// Where the new executable is written before it replaces `exe`: next to it.
fn staging_path(exe: &Path) -> PathBuf {
    let name = exe
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "corral".into());
    exe.with_file_name(format!(".{name}.update-{}", std::process::id()))
}

fn sync_dir(exe: &Path) {
    if let Some(dir) = exe.parent()
        && let Ok(dir) = std::fs::File::open(dir)
    {
        let _ = dir.sync_all();
    }
}

/// Streams `release` into `path` (mode 0755), then checks its size, SHA-256
/// and signature; `path` is fsynced and complete when this succeeds.
async fn download_verified(
    conn: &Connection,
    key: &VerifyingKey,
    release: &Release,
    path: &Path,
) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o755)
        .open(path)
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    let mut stream = conn
        .stream_client()
        .download_release(DownloadReleaseRequest {
            release_id: release.id.clone(),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("download: {e}"))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(message) = stream
        .message()
        .await
        .map_err(|e| format!("download: {e}"))?
    {
        let chunk = message.to_owned_message().data;
        size += chunk.len() as u64;
        if size > release.size {
            return Err(format!(
                "the download is larger than the release's {} bytes",
                release.size
            ));
        }
        hasher.update(&chunk);
        file.write_all(&chunk)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    if size != release.size {
        return Err(format!(
            "the download has {size} bytes, the release {}",
            release.size
        ));
    }
    let digest: [u8; 32] = hasher.finalize().into();
    verify(key, release, &digest)?;
    file.sync_all()
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(())
}

/// Checks the downloaded bytes' SHA-256 against the release's, and the
/// release key's signature over (channel, version, SHA-256).
pub fn verify(key: &VerifyingKey, release: &Release, digest: &[u8; 32]) -> Result<(), String> {
    if release::hex(digest) != release.sha256 {
        return Err(format!(
            "checksum mismatch: the download's SHA-256 is {}, the release's {}",
            release::hex(digest),
            release.sha256
        ));
    }
    let signature = <[u8; 64]>::try_from(release.signature.as_slice())
        .map_err(|_| "the release's signature is not 64 bytes".to_string())?;
    let message = release::signed_message(&release.channel, &release.version, digest);
    key.verify_strict(&message, &Signature::from_bytes(&signature))
        .map_err(|_| "the release's signature does not verify with the release key".to_string())
}

/// Replaces this process with `exe`, with the same arguments (so the same
/// data dir) and environment, less the test version override. Returns only
/// when that fails.
pub fn restart(exe: &Path) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    std::process::Command::new(exe)
        .args(args)
        .env_remove(TEST_VERSION_OVERRIDE_ENV)
        .exec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn window(start: u32, end: Option<u32>) -> Window {
        Window { start, end }
    }

    #[test]
    fn windows_hold_their_hours_and_wrap_past_midnight() {
        let day = window(3, Some(5));
        assert!(!day.contains(2));
        assert!(day.contains(3) && day.contains(4));
        assert!(!day.contains(5));

        let night = window(22, Some(2));
        for hour in [22, 23, 0, 1] {
            assert!(night.contains(hour), "{hour}");
        }
        for hour in [2, 12, 21] {
            assert!(!night.contains(hour), "{hour}");
        }
    }

    #[test]
    fn an_unset_end_means_two_hours_after_the_start() {
        let w = window(10, None);
        assert!(w.contains(10) && w.contains(11) && !w.contains(12) && !w.contains(9));
        let late = window(23, None);
        assert!(late.contains(23) && late.contains(0) && !late.contains(1));
        assert_eq!(late.to_string(), "23:00-01:00 UTC");
    }

    #[test]
    fn an_empty_window_is_never_open() {
        let w = window(4, Some(4));
        assert!((0..24).all(|hour| !w.contains(hour)));
    }

    #[test]
    fn decisions_follow_version_switch_and_window() {
        let policy = |auto_update, window| Policy {
            auto_update,
            channel: "stable",
            window,
        };
        let anytime = policy(true, None);
        assert_eq!(decide(&anytime, "1.0.0", "1.0.0", 0), Decision::UpToDate);
        assert_eq!(decide(&anytime, "1.1.0", "1.0.0", 0), Decision::UpToDate);
        assert_eq!(decide(&anytime, "1.0.0", "1.0.1", 0), Decision::Install);
        assert_eq!(decide(&anytime, "1.0.0", "bogus", 0), Decision::UpToDate);
        assert_eq!(decide(&anytime, "dev", "1.0.0", 0), Decision::Install);
        match decide(&policy(false, None), "1.0.0", "2.0.0", 0) {
            Decision::Pending(why) => assert!(why.contains("auto-update is off"), "{why}"),
            other => panic!("{other:?}"),
        }
        let windowed = policy(true, Some(window(22, Some(2))));
        assert_eq!(decide(&windowed, "1.0.0", "2.0.0", 23), Decision::Install);
        match decide(&windowed, "1.0.0", "2.0.0", 12) {
            Decision::Pending(why) => {
                assert!(
                    why.contains("outside the update window 22:00-02:00 UTC"),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn verification_needs_the_digest_and_the_release_key() {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let digest: [u8; 32] = Sha256::digest(b"executable").into();
        let signed = release::signed_message("stable", "1.2.3", &digest);
        let good = Release {
            id: "r".into(),
            channel: "stable".into(),
            version: "1.2.3".into(),
            size: 10,
            sha256: release::hex(&digest),
            signature: key.sign(&signed).to_bytes().to_vec(),
            ..Default::default()
        };
        verify(&key.verifying_key(), &good, &digest).unwrap();

        let other: [u8; 32] = Sha256::digest(b"something else").into();
        let err = verify(&key.verifying_key(), &good, &other).unwrap_err();
        assert!(err.contains("checksum mismatch"), "{err}");

        let stranger = SigningKey::generate(&mut rand::rngs::OsRng);
        let err = verify(&stranger.verifying_key(), &good, &digest).unwrap_err();
        assert!(err.contains("does not verify"), "{err}");

        // A release signed for another channel or version does not pass.
        for (channel, version) in [("latest", "1.2.3"), ("stable", "1.2.4")] {
            let moved = Release {
                channel: channel.into(),
                version: version.into(),
                ..good.clone()
            };
            assert!(verify(&key.verifying_key(), &moved, &digest).is_err());
        }
    }
}
