//! Runner releases: what the management plane signs when an operator
//! publishes a runner executable, and what a runner verifies before it
//! replaces itself with one (docs/releases.md).

use std::cmp::Ordering;

/// Bytes per stored chunk and per message of the download stream (well
/// under the 4 MiB message cap).
pub const CHUNK_BYTES: usize = 1024 * 1024;

/// Largest release artifact accepted.
pub const MAX_ARTIFACT_BYTES: u64 = 512 * 1024 * 1024;

/// Releases kept per channel at most; older ones must be withdrawn first.
pub const MAX_RELEASES_PER_CHANNEL: usize = 100;

/// Longest version string accepted.
pub const MAX_VERSION_BYTES: usize = 128;

/// The bytes the release key signs (Ed25519): a domain-separation line, then
/// the channel name (`stable` or `latest`), the version and the artifact's
/// SHA-256 in lowercase hex, each on a line of its own. Binding the channel
/// keeps a release signed for `latest` from being served on `stable`.
pub fn signed_message(channel: &str, version: &str, sha256: &[u8; 32]) -> Vec<u8> {
    let mut message = format!("corral-runner-release-v1\n{channel}\n{version}\n").into_bytes();
    message.extend(hex(sha256).into_bytes());
    message
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a semantic version (MAJOR.MINOR.PATCH, e.g. 1.4.0 or 1.5.0-rc.1)")]
pub struct NotSemver(pub String);

/// A semantic version (semver 2.0.0), ordered by precedence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version(semver::Version);

impl Version {
    pub fn parse(text: &str) -> Result<Self, NotSemver> {
        if text.len() > MAX_VERSION_BYTES {
            return Err(NotSemver(text.chars().take(32).collect()));
        }
        semver::Version::parse(text)
            .map(Self)
            .map_err(|_| NotSemver(text.to_string()))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    /// Precedence; build metadata breaks ties only so that the order is total.
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .cmp_precedence(&other.0)
            .then_with(|| self.0.build.cmp(&other.0.build))
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_by_semver_precedence() {
        let v = |s| Version::parse(s).unwrap();
        assert!(v("0.10.0") > v("0.9.9"));
        assert!(v("1.0.0") > v("1.0.0-rc.2"));
        assert!(v("1.0.0-rc.10") > v("1.0.0-rc.2"));
        assert_eq!(v("1.2.3").cmp(&v("1.2.3")), Ordering::Equal);
        assert!(Version::parse("1.2").is_err());
        assert!(Version::parse("v1.2.3").is_err());
        assert!(Version::parse(&"1".repeat(200)).is_err());
    }

    #[test]
    fn signed_message_binds_channel_version_and_digest() {
        let digest = [0xabu8; 32];
        let message = signed_message("stable", "1.2.3", &digest);
        assert_eq!(
            String::from_utf8(message).unwrap(),
            format!(
                "corral-runner-release-v1\nstable\n1.2.3\n{}",
                "ab".repeat(32)
            )
        );
        assert_ne!(
            signed_message("latest", "1.2.3", &digest),
            signed_message("stable", "1.2.3", &digest)
        );
    }
}
