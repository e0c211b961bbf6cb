//! Ethereum-style keys and signatures: secp256k1 over Keccak-256, addresses as the
//! last 20 bytes of the public key's hash, and the "Ethereum Signed Message" prefix
//! (EIP-191, `personal_sign`) so standard wallets and libraries can sign.

use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha3::{Digest, Keccak256};
use std::fmt;

/// Keccak-256 of the concatenation of `parts`.
pub fn keccak256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Keccak256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// The hash a `personal_sign` of the 32-byte `digest` signs:
/// keccak256("\x19Ethereum Signed Message:\n32" ‖ digest).
pub fn eth_signed_message_hash(digest: &[u8; 32]) -> [u8; 32] {
    keccak256(&[b"\x19Ethereum Signed Message:\n32", digest])
}

/// A number as a 32-byte big-endian integer (Solidity's uint256 encoding).
pub fn u256_be(v: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[24..].copy_from_slice(&v.to_be_bytes());
    out
}

/// A 20-byte Ethereum address; in JSON and TOML, `0x` and 40 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Address(pub [u8; 20]);

impl Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Address::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Address {
    /// The address of a public key: the last 20 bytes of keccak256 of its 64-byte form.
    pub fn of(key: &VerifyingKey) -> Address {
        let point = key.to_encoded_point(false);
        let hash = keccak256(&[&point.as_bytes()[1..]]);
        let mut a = [0u8; 20];
        a.copy_from_slice(&hash[12..]);
        Address(a)
    }

    /// Parses `0x` followed by 40 hex digits (any case).
    pub fn parse(s: &str) -> Result<Address, String> {
        let hex = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .unwrap_or(s);
        let bytes = decode_hex(hex)?;
        let a: [u8; 20] = bytes
            .try_into()
            .map_err(|_| format!("an address is 20 bytes (40 hex digits), not {s:?}"))?;
        Ok(Address(a))
    }

    /// From raw bytes, which must be 20.
    pub fn from_slice(b: &[u8]) -> Result<Address, String> {
        let a: [u8; 20] = b
            .try_into()
            .map_err(|_| format!("an address is 20 bytes, not {}", b.len()))?;
        Ok(Address(a))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", encode_hex(&self.0))
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for Address {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Address::parse(s)
    }
}

/// Hex encoding as the rest of orbit writes it (one implementation for all crates).
pub use orbit_identity::{hex_decode as decode_hex, hex_encode as encode_hex};

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Not 65 bytes of r ‖ s ‖ v.
    #[error("a signature is 65 bytes (r, s, v), not {0}")]
    Length(usize),
    /// v is not 0, 1, 27 or 28.
    #[error("signature recovery byte v must be 27 or 28, not {0}")]
    RecoveryByte(u8),
    /// r or s out of range, or s in the upper half of the order (malleable).
    #[error("malformed signature: {0}")]
    Malformed(String),
}

/// A secret key that signs as an Ethereum account.
#[derive(Clone)]
pub struct Wallet {
    key: SigningKey,
}

impl fmt::Debug for Wallet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        write!(f, "Wallet({})", self.address())
    }
}

impl Wallet {
    /// A fresh random key.
    pub fn random() -> Wallet {
        Wallet {
            key: SigningKey::random(&mut rand::rngs::OsRng),
        }
    }

    /// The key from its 32 secret bytes.
    pub fn from_bytes(secret: &[u8]) -> Result<Wallet, String> {
        SigningKey::from_slice(secret)
            .map(|key| Wallet { key })
            .map_err(|_| "not a valid secp256k1 secret key".to_string())
    }

    /// The key from hex (with or without `0x`), as wallets export it.
    pub fn from_hex(s: &str) -> Result<Wallet, String> {
        let s = s.trim();
        let hex = s.strip_prefix("0x").unwrap_or(s);
        Wallet::from_bytes(&decode_hex(hex)?)
    }

    /// The secret as hex (for writing the key file).
    pub fn secret_hex(&self) -> String {
        encode_hex(&self.key.to_bytes())
    }

    /// The account's address.
    pub fn address(&self) -> Address {
        Address::of(self.key.verifying_key())
    }

    /// `personal_sign` of a 32-byte digest: 65 bytes r ‖ s ‖ v with v = 27 or 28.
    pub fn sign_digest(&self, digest: &[u8; 32]) -> Vec<u8> {
        let hash = eth_signed_message_hash(digest);
        let (sig, recid) = self
            .key
            .sign_prehash_recoverable(&hash)
            .expect("signing a 32-byte hash cannot fail");
        let mut out = sig.to_bytes().to_vec();
        out.push(27 + recid.to_byte());
        out
    }
}

/// The address whose key made `signature` (a `personal_sign` of `digest`).
pub fn recover_signer(digest: &[u8; 32], signature: &[u8]) -> Result<Address, SignatureError> {
    if signature.len() != 65 {
        return Err(SignatureError::Length(signature.len()));
    }
    let v = match signature[64] {
        27 | 28 => signature[64] - 27,
        0 | 1 => signature[64],
        other => return Err(SignatureError::RecoveryByte(other)),
    };
    let sig = Signature::from_slice(&signature[..64])
        .map_err(|e| SignatureError::Malformed(e.to_string()))?;
    if sig.normalize_s().is_some() {
        return Err(SignatureError::Malformed(
            "s is in the upper half of the curve order".into(),
        ));
    }
    let recid = RecoveryId::from_byte(v).expect("0 or 1");
    let hash = eth_signed_message_hash(digest);
    let key = VerifyingKey::recover_from_prehash(&hash, &sig, recid)
        .map_err(|e| SignatureError::Malformed(e.to_string()))?;
    Ok(Address::of(&key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_key_has_known_address() {
        // The secret 1 is a well-known test vector: its address is fixed.
        let mut secret = [0u8; 32];
        secret[31] = 1;
        let w = Wallet::from_bytes(&secret).unwrap();
        assert_eq!(
            w.address().to_string(),
            "0x7e5f4552091a69125d5dfcb7b8c2659029395bdf"
        );
    }

    #[test]
    fn signatures_recover_to_the_signer_and_nothing_else() {
        let w = Wallet::random();
        let digest = keccak256(&[b"hello"]);
        let sig = w.sign_digest(&digest);
        assert_eq!(recover_signer(&digest, &sig).unwrap(), w.address());
        let other = keccak256(&[b"hellp"]);
        assert_ne!(recover_signer(&other, &sig).unwrap(), w.address());
        let mut flipped = sig.clone();
        flipped[10] ^= 1;
        assert!(recover_signer(&digest, &flipped).map_or(true, |a| a != w.address()));
        assert_eq!(
            recover_signer(&digest, &sig[..64]),
            Err(SignatureError::Length(64))
        );
        let mut bad_v = sig.clone();
        bad_v[64] = 29;
        assert_eq!(
            recover_signer(&digest, &bad_v),
            Err(SignatureError::RecoveryByte(29))
        );
    }

    #[test]
    fn high_s_signatures_are_refused() {
        let w = Wallet::random();
        let digest = keccak256(&[b"x"]);
        let sig = w.sign_digest(&digest);
        let s = Signature::from_slice(&sig[..64]).unwrap();
        // The same signature with s' = n - s: valid ECDSA, but malleable.
        let (r, s_) = s.split_scalars();
        let high = Signature::from_scalars(r, -*s_).unwrap();
        let mut bytes = high.to_bytes().to_vec();
        // Negating s flips the recovery id: 27 ↔ 28.
        bytes.push(55 - sig[64]);
        assert!(matches!(
            recover_signer(&digest, &bytes),
            Err(SignatureError::Malformed(_))
        ));
    }

    #[test]
    fn addresses_parse_and_print() {
        let a = Address::parse("0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf").unwrap();
        assert_eq!(a.to_string(), "0x7e5f4552091a69125d5dfcb7b8c2659029395bdf");
        assert!(Address::parse("0x1234").is_err());
        assert!(Address::parse("0xzz5F4552091A69125d5DfCb7b8C2659029395Bdf").is_err());
    }
}
