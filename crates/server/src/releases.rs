//! Runner releases (docs/releases.md): publishing an executable on a channel
//! (`corral admin release publish`), and which release a runner on a channel
//! is offered. The artifact goes into the store in chunks of
//! `corral_contract::release::CHUNK_BYTES`, signed with the release key.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use corral_contract::release::{self, CHUNK_BYTES, MAX_ARTIFACT_BYTES, Version};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::crypto::ReleaseSigner;
use crate::domain::{Release, ReleaseChannel, new_id};
use crate::store::{Store, StoreError};

/// Why a release was not published (or withdrawn); nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// ELF's magic number: a runner release is a Linux executable.
const ELF_MAGIC: &[u8; 4] = b"\x7fELF";

/// Checks that `path` is a regular, executable ELF file of an acceptable size;
/// returns its size.
fn check_executable(path: &Path) -> Result<u64, ReleaseError> {
    use std::os::unix::fs::PermissionsExt;
    let invalid = |why: String| ReleaseError::Invalid(format!("{}: {why}", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| invalid(e.to_string()))?;
    if !meta.is_file() {
        return Err(invalid("not a regular file".into()));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(invalid("not executable (no exec permission bits)".into()));
    }
    if meta.len() > MAX_ARTIFACT_BYTES {
        return Err(invalid(format!("larger than {MAX_ARTIFACT_BYTES} bytes")));
    }
    let mut magic = [0u8; 4];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map_err(|_| invalid("not an ELF executable (too short)".into()))?;
    if &magic != ELF_MAGIC {
        return Err(invalid("not an ELF executable".into()));
    }
    Ok(meta.len())
}

/// Reads a file one chunk at a time.
fn read_chunk(file: &mut File) -> std::io::Result<Vec<u8>> {
    let mut chunk = Vec::with_capacity(CHUNK_BYTES);
    file.by_ref()
        .take(CHUNK_BYTES as u64)
        .read_to_end(&mut chunk)?;
    Ok(chunk)
}

/// The file's SHA-256, read a chunk at a time.
fn sha256_of(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    loop {
        let chunk = read_chunk(&mut file)?;
        if chunk.is_empty() {
            return Ok(hasher.finalize().into());
        }
        hasher.update(&chunk);
    }
}

/// The file's chunks for the store; the last item is an error when the file
/// changed since it was hashed (so the store keeps nothing).
struct Chunks {
    file: File,
    hasher: Option<Sha256>,
    expected: [u8; 32],
}

impl Iterator for Chunks {
    type Item = std::io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        let hasher = self.hasher.as_mut()?;
        match read_chunk(&mut self.file) {
            Ok(chunk) if chunk.is_empty() => {
                let digest: [u8; 32] = self.hasher.take()?.finalize().into();
                (digest != self.expected).then(|| {
                    Err(std::io::Error::other(
                        "the file changed while it was being published",
                    ))
                })
            }
            Ok(chunk) => {
                hasher.update(&chunk);
                Some(Ok(chunk))
            }
            Err(e) => {
                self.hasher = None;
                Some(Err(e))
            }
        }
    }
}

/// Publishes the executable at `path` as `version` on `channel`: checks it,
/// hashes it, signs (channel, version, SHA-256) with the release key and
/// stores it. Nothing is stored when any step fails.
pub async fn publish(
    store: &dyn Store,
    signer: &ReleaseSigner,
    channel: ReleaseChannel,
    version: &str,
    path: &Path,
) -> Result<Release, ReleaseError> {
    if channel == ReleaseChannel::Unspecified {
        return Err(ReleaseError::Invalid(
            "the channel must be stable or latest".into(),
        ));
    }
    Version::parse(version).map_err(|e| ReleaseError::Invalid(e.to_string()))?;
    let size = check_executable(path)?;
    let read_error = |e: std::io::Error| ReleaseError::Invalid(format!("{}: {e}", path.display()));
    let digest = sha256_of(path).map_err(read_error)?;
    let release = Release {
        id: new_id(),
        channel,
        version: version.to_string(),
        size,
        sha256: release::hex(&digest),
        signature: signer.sign(channel.name(), version, &digest).to_vec(),
        published_at: chrono::Utc::now(),
    };
    let mut chunks = Chunks {
        file: File::open(path).map_err(read_error)?,
        hasher: Some(Sha256::new()),
        expected: digest,
    };
    store.create_release(&release, &mut chunks).await?;
    Ok(release)
}

/// Withdraws (deletes) a release; runners are no longer offered it.
pub async fn withdraw(store: &dyn Store, id: Uuid) -> Result<Release, ReleaseError> {
    let release = store.get_release(id).await?;
    store.delete_release(id).await?;
    Ok(release)
}

/// The release a runner following `channel` is offered: the highest version
/// published on it.
pub async fn latest(
    store: &dyn Store,
    channel: ReleaseChannel,
) -> Result<Option<Release>, StoreError> {
    let releases = store.list_releases(Some(channel.followed())).await?;
    Ok(highest(releases))
}

/// The release with the highest version (semver precedence).
fn highest(releases: Vec<Release>) -> Option<Release> {
    releases
        .into_iter()
        .filter_map(|r| Version::parse(&r.version).ok().map(|v| (v, r)))
        .max_by(|(a, _), (b, _)| a.cmp(b))
        .map(|(_, r)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(version: &str) -> Release {
        Release {
            id: new_id(),
            channel: ReleaseChannel::Stable,
            version: version.into(),
            size: 1,
            sha256: String::new(),
            signature: vec![],
            published_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn the_highest_version_wins_not_the_newest() {
        let offered = highest(vec![
            release("0.10.0"),
            release("0.9.0"),
            release("0.10.0-rc.1"),
        ]);
        assert_eq!(offered.unwrap().version, "0.10.0");
        assert!(highest(vec![]).is_none());
    }

    #[test]
    fn only_executable_elf_files_are_releases() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("script");
        std::fs::write(&script, b"#!/bin/sh\necho hi\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = check_executable(&script).unwrap_err().to_string();
        assert!(err.contains("not an ELF executable"), "{err}");

        let elf = dir.path().join("elf");
        std::fs::write(&elf, b"\x7fELF\x02\x01\x01rest").unwrap();
        std::fs::set_permissions(&elf, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = check_executable(&elf).unwrap_err().to_string();
        assert!(err.contains("not executable"), "{err}");

        std::fs::set_permissions(&elf, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(check_executable(&elf).unwrap(), 11);
        let err = check_executable(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }
}
