//! The server's cryptography in one place: bearer tokens and their hashes,
//! the data key that encrypts secrets at rest, sealed boxes to runners,
//! signed logs tokens, and the release key that signs runner releases.

use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use rand::RngCore;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::{Timestamp, TokenKind};

/// A new random bearer token of `kind`: its prefix and 32 random bytes.
pub fn new_token(kind: TokenKind) -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    format!("{}{}", kind.prefix(), URL_SAFE_NO_PAD.encode(bytes))
}

/// What the store keeps of a token. Tokens carry 256 random bits, so a plain
/// SHA-256 is enough: there is nothing to brute-force.
pub fn token_hash(token: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(token.as_bytes());
    // Every call hashes its bearer token: no formatting machinery per byte.
    let mut hex = String::with_capacity(digest.len() * 2);
    for b in digest.iter() {
        hex.push(HEX[usize::from(b >> 4)] as char);
        hex.push(HEX[usize::from(b & 0xf)] as char);
    }
    hex
}

/// The token kind named by a token's prefix.
pub fn token_kind(token: &str) -> Option<TokenKind> {
    [
        TokenKind::Personal,
        TokenKind::RunnerAccess,
        TokenKind::Exchange,
        TokenKind::Session,
    ]
    .into_iter()
    .find(|kind| token.starts_with(kind.prefix()))
}

/// Writes `contents` to `path` readable by the owner only (an existing file
/// is narrowed to 0600 before it is written).
pub fn write_private_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making {} private", path.display()))?;
    file.write_all(contents)?;
    Ok(())
}

/// Reads a 32-byte key (base64) from `path`, creating a random one if absent.
fn load_or_create_key(path: &Path) -> anyhow::Result<[u8; 32]> {
    if path.exists() {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        return decode_key(text.trim())
            .with_context(|| format!("invalid key in {}", path.display()));
    }
    let mut key = [0u8; 32];
    OsRng.fill_bytes(&mut key);
    write_private_file(path, STANDARD.encode(key).as_bytes())?;
    Ok(key)
}

fn decode_key(text: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = STANDARD.decode(text).context("not base64")?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("a key must be 32 bytes"))
}

/// Encrypts secrets at rest (host tokens, refresh tokens, runner settings).
#[derive(Clone)]
pub struct DataKey {
    cipher: XChaCha20Poly1305,
}

impl DataKey {
    /// From `CORRAL_DATA_KEY` (base64, 32 bytes) when given, else from
    /// `<data-dir>/data-key`, created on first use with mode 0600.
    pub fn load(data_dir: &Path, from_env: Option<&str>) -> anyhow::Result<Self> {
        let key = match from_env {
            Some(text) => decode_key(text).context("invalid CORRAL_DATA_KEY")?,
            None => load_or_create_key(&data_dir.join("data-key"))?,
        };
        Ok(Self::from_bytes(key))
    }

    pub fn from_bytes(key: [u8; 32]) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(&key.into()),
        }
    }

    /// Nonce (24 bytes) followed by the ciphertext.
    pub fn encrypt(&self, plaintext: &[u8]) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let mut out = nonce.to_vec();
        out.extend(
            self.cipher
                .encrypt(&nonce, plaintext)
                .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory data"),
        );
        out
    }

    pub fn decrypt(&self, sealed: &[u8]) -> anyhow::Result<Vec<u8>> {
        if sealed.len() < 24 {
            bail!("ciphertext too short");
        }
        let (nonce, ciphertext) = sealed.split_at(24);
        self.cipher
            .decrypt(XNonce::from_slice(nonce), ciphertext)
            .map_err(|_| anyhow::anyhow!("secret cannot be decrypted with this data key"))
    }
}

/// Seals `plaintext` to a runner's X25519 public key (libsodium sealed box):
/// only the holder of the matching private key can open it.
pub fn seal_to_runner(public_key: &[u8], plaintext: &[u8]) -> anyhow::Result<Vec<u8>> {
    let key: [u8; 32] = public_key
        .try_into()
        .map_err(|_| anyhow::anyhow!("a runner public key must be 32 bytes"))?;
    crypto_box::PublicKey::from(key)
        .seal(&mut OsRng, plaintext)
        .map_err(|_| anyhow::anyhow!("sealing failed"))
}

/// What a logs token grants: reading one runner's logs until `expires_at`.
/// A 32-byte secret every replica shares, named `name`: kept in the store
/// encrypted with the data key. The first server to ask creates it (from
/// `initial`, or at random).
pub async fn shared_secret(
    store: &dyn crate::store::Store,
    data_key: &DataKey,
    name: &str,
    initial: Option<[u8; 32]>,
) -> anyhow::Result<[u8; 32]> {
    let seed = initial.unwrap_or_else(|| {
        let mut seed = [0u8; 32];
        OsRng.fill_bytes(&mut seed);
        seed
    });
    let stored = store
        .server_secret(name, &STANDARD.encode(data_key.encrypt(&seed)))
        .await
        .with_context(|| format!("reading the shared secret {name}"))?;
    let sealed = STANDARD
        .decode(stored)
        .with_context(|| format!("the stored secret {name} is not base64"))?;
    data_key
        .decrypt(&sealed)
        .with_context(|| format!("the shared secret {name} cannot be decrypted: every replica needs the same data key (CORRAL_DATA_KEY)"))?
        .try_into()
        .map_err(|_| anyhow::anyhow!("the stored secret {name} is not 32 bytes"))
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogsGrant {
    pub runner_id: Uuid,
    pub subject_id: Uuid,
    pub expires_at: Timestamp,
}

/// Signs logs tokens; runners verify them with the public half.
pub struct LogsTokenSigner {
    key: SigningKey,
}

impl LogsTokenSigner {
    /// The fleet's signing key, kept in the store encrypted with the data key
    /// so that every replica signs alike. The first server to start creates it
    /// (from `<data-dir>/logs-signing-key` when an older installation left one).
    pub async fn shared(
        store: &dyn crate::store::Store,
        data_key: &DataKey,
        data_dir: &Path,
    ) -> anyhow::Result<Self> {
        let legacy = data_dir.join("logs-signing-key");
        let initial = if legacy.exists() {
            Some(load_or_create_key(&legacy)?)
        } else {
            None
        };
        let seed = shared_secret(store, data_key, "logs-signing-key", initial).await?;
        Ok(Self::from_seed(seed))
    }

    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(&seed),
        }
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// `crl_lt_<payload>.<signature>`, both base64url.
    pub fn sign(&self, grant: &LogsGrant) -> String {
        let payload = serde_json::to_vec(grant).expect("a grant always serializes");
        let signature = self.key.sign(&payload);
        format!(
            "crl_lt_{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }
}

/// Signs runner releases (docs/releases.md); runners learn the public half
/// at sign-up and install only artifacts whose signature it verifies.
pub struct ReleaseSigner {
    key: SigningKey,
}

impl ReleaseSigner {
    /// The fleet's release key: an Ed25519 seed kept in the store encrypted
    /// with the data key, shared by every replica and by `corral admin`.
    pub async fn shared(
        store: &dyn crate::store::Store,
        data_key: &DataKey,
    ) -> anyhow::Result<Self> {
        let seed = shared_secret(store, data_key, "release-signing-key", None).await?;
        Ok(Self {
            key: SigningKey::from_bytes(&seed),
        })
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The signature over `corral_contract::release::signed_message`.
    pub fn sign(&self, channel: &str, version: &str, sha256: &[u8; 32]) -> [u8; 64] {
        let message = corral_contract::release::signed_message(channel, version, sha256);
        self.key.sign(&message).to_bytes()
    }
}

/// Checks a logs token's signature and expiry; returns what it grants.
pub fn verify_logs_token(
    public_key: &[u8; 32],
    token: &str,
    now: Timestamp,
) -> anyhow::Result<LogsGrant> {
    let body = token.strip_prefix("crl_lt_").context("not a logs token")?;
    let (payload, signature) = body.split_once('.').context("malformed logs token")?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .context("malformed logs token")?;
    let signature: [u8; 64] = URL_SAFE_NO_PAD
        .decode(signature)
        .context("malformed logs token")?
        .try_into()
        .map_err(|_| anyhow::anyhow!("malformed logs token signature"))?;
    VerifyingKey::from_bytes(public_key)?
        .verify(&payload, &ed25519_dalek::Signature::from_bytes(&signature))
        .context("logs token signature is not valid")?;
    let grant: LogsGrant = serde_json::from_slice(&payload)?;
    if grant.expires_at <= now {
        bail!("logs token has expired");
    }
    Ok(grant)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_hashed() {
        let a = new_token(TokenKind::Personal);
        let b = new_token(TokenKind::Personal);
        assert!(a.starts_with("crl_pat_"));
        assert_ne!(a, b);
        assert_eq!(token_kind(&a), Some(TokenKind::Personal));
        assert_eq!(token_kind("nope"), None);
        assert_eq!(token_hash(&a), token_hash(&a));
        assert_ne!(token_hash(&a), token_hash(&b));
        assert_eq!(token_hash(&a).len(), 64);
        // SHA-256 in lowercase hex, as stored hashes were always written.
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(!token_hash(&a).contains(&a[8..]));
    }

    #[test]
    fn data_key_round_trips_and_detects_tampering() {
        let key = DataKey::from_bytes([7; 32]);
        let sealed = key.encrypt(b"ghp_secret");
        assert!(!sealed.windows(10).any(|w| w == b"ghp_secret"));
        assert_eq!(key.decrypt(&sealed).unwrap(), b"ghp_secret");
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(key.decrypt(&tampered).is_err());
        assert!(DataKey::from_bytes([8; 32]).decrypt(&sealed).is_err());
    }

    #[test]
    fn data_key_file_is_private_and_stable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = DataKey::load(dir.path(), None).unwrap();
        let sealed = first.encrypt(b"x");
        let mode = std::fs::metadata(dir.path().join("data-key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = DataKey::load(dir.path(), None).unwrap();
        assert_eq!(again.decrypt(&sealed).unwrap(), b"x");
    }

    #[test]
    fn sealed_boxes_open_with_the_runner_secret_key() {
        let secret = crypto_box::SecretKey::generate(&mut OsRng);
        let sealed = seal_to_runner(secret.public_key().as_bytes(), b"client-secret").unwrap();
        assert_eq!(sealed.len(), b"client-secret".len() + 48);
        assert_eq!(secret.unseal(&sealed).unwrap(), b"client-secret");
        assert!(seal_to_runner(&[1, 2, 3], b"x").is_err());
    }

    #[test]
    fn logs_tokens_verify_only_when_signed_and_fresh() {
        let signer = LogsTokenSigner::from_seed([5; 32]);
        let now = chrono::Utc::now();
        let grant = LogsGrant {
            runner_id: Uuid::now_v7(),
            subject_id: Uuid::now_v7(),
            expires_at: now + chrono::Duration::minutes(5),
        };
        let token = signer.sign(&grant);
        assert_eq!(
            verify_logs_token(&signer.public_key(), &token, now).unwrap(),
            grant
        );
        let later = now + chrono::Duration::minutes(6);
        assert!(verify_logs_token(&signer.public_key(), &token, later).is_err());
        let other = SigningKey::from_bytes(&[9; 32]).verifying_key().to_bytes();
        assert!(verify_logs_token(&other, &token, now).is_err());
        let forged = token.replacen("crl_lt_", "crl_lt_x", 1);
        assert!(verify_logs_token(&signer.public_key(), &forged, now).is_err());
    }
}
