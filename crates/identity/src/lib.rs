//! Identities of orbit's peers (satellites, storage nodes, uplinks): an ed25519 key
//! pair, and a node id derived from the public key so that anyone can check that a
//! peer owns the id it claims.
//!
//! Key files are text, `orbit-identity v1` then the secret in hex, created with mode
//! 0600 and refused when others can read them.

use ed25519_dalek::Signer;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Why an identity could not be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A key file could not be read or written.
    #[error("{path}: {err}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        err: std::io::Error,
    },
    /// A key file is not one.
    #[error("{0}")]
    Format(String),
    /// A signature does not verify.
    #[error("signature does not verify for {0}")]
    BadSignature(NodeId),
    /// A public key is not a valid ed25519 key.
    #[error("not a valid ed25519 public key")]
    BadKey,
}

/// A peer's id: BLAKE3 of a domain tag and its ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct NodeId(pub [u8; 32]);

impl NodeId {
    /// The id of a public key.
    pub fn of(public: &PublicKey) -> NodeId {
        let mut h = blake3::Hasher::new();
        h.update(b"orbit-node-id-v1");
        h.update(&public.0);
        NodeId(*h.finalize().as_bytes())
    }

    /// Parses 64 hex digits.
    pub fn parse(s: &str) -> Result<NodeId, IdentityError> {
        let b = hex_decode(s).map_err(IdentityError::Format)?;
        Ok(NodeId(b.try_into().map_err(|_| {
            IdentityError::Format(format!("a node id is 32 bytes (64 hex digits): {s:?}"))
        })?))
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex_encode(&self.0))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Short, as logs want it.
        write!(f, "{}…", &hex_encode(&self.0[..6]))
    }
}

impl std::str::FromStr for NodeId {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, IdentityError> {
        NodeId::parse(s)
    }
}

/// An ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PublicKey(pub [u8; 32]);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex_encode(&self.0))
    }
}

impl PublicKey {
    /// Parses 64 hex digits.
    pub fn parse(s: &str) -> Result<PublicKey, IdentityError> {
        let b = hex_decode(s).map_err(IdentityError::Format)?;
        Ok(PublicKey(b.try_into().map_err(|_| {
            IdentityError::Format(format!("a public key is 32 bytes (64 hex digits): {s:?}"))
        })?))
    }

    /// The id of this key.
    pub fn id(&self) -> NodeId {
        NodeId::of(self)
    }

    /// Checks `signature` over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), IdentityError> {
        let key =
            ed25519_dalek::VerifyingKey::from_bytes(&self.0).map_err(|_| IdentityError::BadKey)?;
        let sig = ed25519_dalek::Signature::from_slice(signature)
            .map_err(|_| IdentityError::BadSignature(self.id()))?;
        // Strict: no small-order keys, no malleable signatures.
        key.verify_strict(message, &sig)
            .map_err(|_| IdentityError::BadSignature(self.id()))
    }
}

/// A peer's key pair.
#[derive(Clone)]
pub struct Identity {
    key: ed25519_dalek::SigningKey,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        write!(f, "Identity({:?})", self.id())
    }
}

const HEADER: &str = "orbit-identity v1";

impl Identity {
    /// A new random identity.
    pub fn generate() -> Identity {
        Identity {
            key: ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }

    /// The public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.key.verifying_key().to_bytes())
    }

    /// The node id.
    pub fn id(&self) -> NodeId {
        self.public().id()
    }

    /// A 32-byte secret key for `context`, derived from the identity's secret (BLAKE3
    /// key derivation): for what the peer seals for itself; the secret never leaves.
    pub fn derive_key(&self, context: &str) -> [u8; 32] {
        blake3::derive_key(context, &self.key.to_bytes())
    }

    /// The secret key as PKCS#8 DER, for the TLS certificate made from it; handle
    /// it as the key file itself.
    pub fn to_pkcs8_der(&self) -> Vec<u8> {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        self.key
            .to_pkcs8_der()
            .expect("an ed25519 key always encodes")
            .as_bytes()
            .to_vec()
    }

    /// Signs `message` (64 bytes).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.key.sign(message).to_bytes().to_vec()
    }

    /// Writes the identity to a new file readable by its owner only.
    pub fn save(&self, path: &Path) -> Result<(), IdentityError> {
        let io = |err| IdentityError::Io {
            path: path.display().to_string(),
            err,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        writeln!(f, "{HEADER}\n{}", hex_encode(&self.key.to_bytes())).map_err(io)?;
        f.sync_all().map_err(io)
    }

    /// Reads an identity, refusing a file others can read.
    pub fn load(path: &Path) -> Result<Identity, IdentityError> {
        let io = |err| IdentityError::Io {
            path: path.display().to_string(),
            err,
        };
        let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(IdentityError::Format(format!(
                "{} is readable by others (mode {mode:o}); run chmod 600 on it",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return Err(IdentityError::Format(format!(
                "{} is not an orbit identity (no {HEADER:?} line)",
                path.display()
            )));
        }
        let secret =
            hex_decode(lines.next().unwrap_or("").trim()).map_err(IdentityError::Format)?;
        let secret: [u8; 32] = secret.try_into().map_err(|_| {
            IdentityError::Format(format!("{}: the secret is 32 bytes", path.display()))
        })?;
        Ok(Identity {
            key: ed25519_dalek::SigningKey::from_bytes(&secret),
        })
    }

    /// Loads the identity at `path`, creating it first if there is none.
    pub fn load_or_create(path: &Path) -> Result<Identity, IdentityError> {
        if path.exists() {
            return Identity::load(path);
        }
        let id = Identity::generate();
        match id.save(path) {
            Ok(()) => Ok(id),
            // Another process sharing the file created it first: theirs is the one.
            Err(IdentityError::Io { err, .. })
                if err.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                Identity::load(path)
            }
            Err(e) => Err(e),
        }
    }
}

/// Lower-case hex.
pub fn hex_encode(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(DIGITS[(x >> 4) as usize] as char);
        s.push(DIGITS[(x & 15) as usize] as char);
    }
    s
}

/// Bytes of a hex string.
pub fn hex_decode(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        // The text is never echoed: it is often a secret (a key, an access grant).
        return Err(format!(
            "{} hex digits: a whole number of bytes is an even count",
            s.len()
        ));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|d| u8::from_str_radix(d, 16).ok())
                .ok_or_else(|| format!("character {} is not a hex digit", i + 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_their_key_and_message() {
        let a = Identity::generate();
        let b = Identity::generate();
        let sig = a.sign(b"order limit");
        a.public().verify(b"order limit", &sig).unwrap();
        assert!(a.public().verify(b"order limit!", &sig).is_err());
        assert!(b.public().verify(b"order limit", &sig).is_err());
        let mut bad = sig.clone();
        bad[3] ^= 1;
        assert!(a.public().verify(b"order limit", &bad).is_err());
        assert!(a.public().verify(b"order limit", &sig[..63]).is_err());
        assert_ne!(a.id(), b.id());
        assert_eq!(a.id(), NodeId::of(&a.public()));
    }

    #[test]
    fn key_files_are_private_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id/identity.key");
        let id = Identity::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(Identity::load_or_create(&path).unwrap().id(), id.id());
        assert!(id.save(&path).is_err(), "never overwritten");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(Identity::load(&path)
            .unwrap_err()
            .to_string()
            .contains("chmod 600"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "hello\n").unwrap();
        assert!(Identity::load(&path).is_err());
    }

    #[test]
    fn node_ids_print_and_parse() {
        let id = Identity::generate().id();
        assert_eq!(NodeId::parse(&id.to_string()).unwrap(), id);
        assert!(NodeId::parse("abcd").is_err());
    }
}
