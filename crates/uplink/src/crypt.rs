//! Client-side encryption: nothing the satellite or a node stores can be read, or
//! changed unnoticed, without the access's root key.
//!
//! - The root key comes from the passphrase by Argon2id, salted per API key.
//! - Object keys: each `/`-separated component is encrypted deterministically
//!   (AES-256-GCM, nonce = a keyed hash of the component), so the same path always
//!   encrypts the same way and listings by prefix work component by component.
//! - Content: a random key per object; segment `i` is AES-256-GCM with nonce `i`.
//! - Object metadata (content key, sizes): AES-256-GCM under a key derived from the
//!   root key and the encrypted path, so it cannot be moved to another object.

use aes_gcm::aead::{Aead, AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use serde::{Deserialize, Serialize};

/// Why decryption failed: a wrong passphrase or altered data, never garbage.
#[derive(Debug, thiserror::Error)]
#[error("cannot decrypt {0}: wrong passphrase, or the data was altered")]
pub struct DecryptError(pub &'static str);

/// Overhead AES-GCM adds to each message.
pub const TAG_BYTES: usize = 16;

/// The root key of a passphrase, for the API key whose head is `salt_source`.
pub fn root_key(passphrase: &str, salt_source: &[u8]) -> [u8; 32] {
    let salt = blake3::derive_key("orbit access salt v1", salt_source);
    let mut out = [0u8; 32];
    argon2::Argon2::default()
        .hash_password_into(passphrase.as_bytes(), &salt, &mut out)
        .expect("argon2 with a 32-byte salt and output");
    out
}

fn gcm_nonce(b: &[u8]) -> Nonce<aes_gcm::aead::consts::U12> {
    let a: [u8; 12] = b.try_into().expect("12-byte nonce");
    a.into()
}

fn cipher(key: &[u8; 32]) -> Aes256Gcm {
    Aes256Gcm::new_from_slice(key).expect("32-byte key")
}

fn path_key(root: &[u8; 32], bucket: &str) -> [u8; 32] {
    let mut m = root.to_vec();
    m.extend_from_slice(bucket.as_bytes());
    blake3::derive_key("orbit path key v1", &m)
}

/// Encrypts an object key component by component; components are hex.
pub fn encrypt_path(root: &[u8; 32], bucket: &str, path: &str) -> String {
    let key = path_key(root, bucket);
    let c = cipher(&key);
    path.split('/')
        .map(|comp| {
            if comp.is_empty() {
                return String::new();
            }
            let mac = blake3::keyed_hash(&key, comp.as_bytes());
            let nonce = &mac.as_bytes()[..12];
            let mut out = nonce.to_vec();
            out.extend(
                c.encrypt(&gcm_nonce(nonce), comp.as_bytes())
                    .expect("encryption of a path component"),
            );
            orbit_identity::hex_encode(&out)
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Decrypts an encrypted object key.
pub fn decrypt_path(root: &[u8; 32], bucket: &str, enc: &str) -> Result<String, DecryptError> {
    let key = path_key(root, bucket);
    let c = cipher(&key);
    enc.split('/')
        .map(|comp| {
            if comp.is_empty() {
                return Ok(String::new());
            }
            let b = orbit_identity::hex_decode(comp).map_err(|_| DecryptError("an object key"))?;
            if b.len() < 12 + TAG_BYTES {
                return Err(DecryptError("an object key"));
            }
            let plain = c
                .decrypt(&gcm_nonce(&b[..12]), &b[12..])
                .map_err(|_| DecryptError("an object key"))?;
            String::from_utf8(plain).map_err(|_| DecryptError("an object key"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|v| v.join("/"))
}

fn segment_nonce(index: u32) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[8..].copy_from_slice(&index.to_be_bytes());
    n
}

/// Encrypts segment `index` of an object under its content key.
/// In place: the buffer gains the [`TAG`] (spare capacity for it avoids a copy).
pub fn encrypt_segment(content_key: &[u8; 32], index: u32, mut plain: Vec<u8>) -> Vec<u8> {
    cipher(content_key)
        .encrypt_in_place(&gcm_nonce(&segment_nonce(index)), b"", &mut plain)
        .expect("segment encryption");
    plain
}

/// Bytes an encrypted segment has beyond its plain text (the GCM tag).
pub const TAG: usize = 16;

/// Decrypts segment `index`.
pub fn decrypt_segment(
    content_key: &[u8; 32],
    index: u32,
    mut enc: Vec<u8>,
) -> Result<Vec<u8>, DecryptError> {
    cipher(content_key)
        .decrypt_in_place(&gcm_nonce(&segment_nonce(index)), b"", &mut enc)
        .map_err(|_| DecryptError("object content"))?;
    Ok(enc)
}

/// What an object's encrypted metadata holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// Format version.
    pub v: u32,
    /// The content key.
    pub content_key: [u8; 32],
    /// Plain size.
    pub size: u64,
    /// Plain bytes per segment (the last may be shorter).
    pub segment_size: u64,
}

fn meta_key(root: &[u8; 32], bucket: &str, enc_path: &str) -> [u8; 32] {
    let mut m = root.to_vec();
    m.extend_from_slice(bucket.as_bytes());
    m.push(0);
    m.extend_from_slice(enc_path.as_bytes());
    blake3::derive_key("orbit object metadata key v1", &m)
}

/// Encrypts an object's metadata, bound to its bucket and encrypted path.
pub fn seal_meta(root: &[u8; 32], bucket: &str, enc_path: &str, meta: &ObjectMeta) -> Vec<u8> {
    let nonce: [u8; 12] = rand::random();
    let body = bincode::serialize(meta).expect("metadata serializes");
    let mut out = nonce.to_vec();
    out.extend(
        cipher(&meta_key(root, bucket, enc_path))
            .encrypt(&gcm_nonce(&nonce), body.as_slice())
            .expect("metadata encryption"),
    );
    out
}

/// Decrypts an object's metadata.
pub fn open_meta(
    root: &[u8; 32],
    bucket: &str,
    enc_path: &str,
    sealed: &[u8],
) -> Result<ObjectMeta, DecryptError> {
    if sealed.len() < 12 + TAG_BYTES {
        return Err(DecryptError("object metadata"));
    }
    let body = cipher(&meta_key(root, bucket, enc_path))
        .decrypt(&gcm_nonce(&sealed[..12]), &sealed[12..])
        .map_err(|_| DecryptError("object metadata"))?;
    bincode::deserialize(&body).map_err(|_| DecryptError("object metadata"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip_deterministically_and_keep_prefixes() {
        let root = [5u8; 32];
        let a = encrypt_path(&root, "b", "photos/2026/cat.jpg");
        assert_eq!(a, encrypt_path(&root, "b", "photos/2026/cat.jpg"));
        assert!(a.starts_with(&encrypt_path(&root, "b", "photos/2026/")));
        assert_eq!(decrypt_path(&root, "b", &a).unwrap(), "photos/2026/cat.jpg");
        assert_ne!(a, encrypt_path(&root, "c", "photos/2026/cat.jpg"));
        assert!(
            decrypt_path(&[6u8; 32], "b", &a).is_err(),
            "another key: an error"
        );
    }

    #[test]
    fn content_and_metadata_refuse_wrong_keys_and_tampering() {
        let key = [1u8; 32];
        let enc = encrypt_segment(&key, 3, b"hello".to_vec());
        assert_eq!(enc.len(), 5 + TAG);
        assert_eq!(decrypt_segment(&key, 3, enc.clone()).unwrap(), b"hello");
        assert!(
            decrypt_segment(&key, 4, enc.clone()).is_err(),
            "segments cannot be reordered"
        );
        assert!(decrypt_segment(&[2u8; 32], 3, enc.clone()).is_err());
        let mut bad = enc.clone();
        bad[0] ^= 1;
        assert!(decrypt_segment(&key, 3, bad).is_err());
        let root = [9u8; 32];
        let meta = ObjectMeta {
            v: 1,
            content_key: key,
            size: 5,
            segment_size: 64,
        };
        let sealed = seal_meta(&root, "b", "p", &meta);
        assert_eq!(open_meta(&root, "b", "p", &sealed).unwrap(), meta);
        assert!(
            open_meta(&root, "b", "q", &sealed).is_err(),
            "bound to its path"
        );
        assert!(open_meta(&[8u8; 32], "b", "p", &sealed).is_err());
    }

    #[test]
    fn passphrases_give_distinct_root_keys() {
        assert_eq!(root_key("a", b"k"), root_key("a", b"k"));
        assert_ne!(root_key("a", b"k"), root_key("b", b"k"));
        assert_ne!(root_key("a", b"k"), root_key("a", b"j"));
    }
}
