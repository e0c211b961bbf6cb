//! API keys with caveats, macaroon style: a key is a head (its id), caveats, and a
//! tag chained over them from a secret only the satellite knows. Anyone holding a key
//! can restrict it further (add a caveat, re-chain the tag) without the satellite;
//! nobody can lift a caveat. Revoking a tag revokes that key and every key restricted
//! from it. The satellite keeps the secrets and the revocation list.

use serde::{Deserialize, Serialize};

/// A restriction on what a key allows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Caveat {
    /// Reads and lists only: no uploads, no deletes.
    ReadOnly,
    /// Only this bucket, and only keys starting with `prefix` (as the uplink encodes
    /// keys).
    Prefix {
        /// Bucket.
        bucket: String,
        /// Key prefix.
        prefix: String,
    },
    /// Void after this Unix time (s).
    NotAfter(u64),
}

impl Caveat {
    /// The caveats of these restrictions, in the one order the console, `uplink access
    /// restrict` and the browser add them: read-only, bucket and prefix, expiry.
    /// A prefix without its bucket is refused.
    pub fn restrictions(
        read_only: bool,
        bucket: Option<String>,
        prefix: Option<String>,
        not_after: Option<u64>,
    ) -> Result<Vec<Caveat>, String> {
        let mut caveats = Vec::new();
        if read_only {
            caveats.push(Caveat::ReadOnly);
        }
        match (bucket, prefix) {
            (Some(bucket), prefix) => caveats.push(Caveat::Prefix {
                bucket,
                prefix: prefix.unwrap_or_default(),
            }),
            (None, Some(_)) => return Err("a key prefix needs its bucket".into()),
            (None, None) => {}
        }
        if let Some(t) = not_after {
            caveats.push(Caveat::NotAfter(t));
        }
        Ok(caveats)
    }
}

/// An API key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// Its id: where the satellite finds the secret.
    pub head: [u8; 16],
    /// Restrictions, in the order they were added.
    pub caveats: Vec<Caveat>,
    /// The chained tag.
    pub tag: [u8; 32],
}

const PREFIX: &str = "orbit1";

fn chain(tag: &[u8; 32], caveat: &Caveat) -> [u8; 32] {
    let body = bincode::serialize(caveat).expect("caveats serialize");
    *blake3::keyed_hash(tag, &body).as_bytes()
}

impl ApiKey {
    /// A new key with no caveats, from the project's secret.
    pub fn new(secret: &[u8; 32]) -> ApiKey {
        ApiKey::unrestricted(rand::random(), secret)
    }

    /// The key `head` with no caveats: what revoking it and all its restrictions
    /// takes.
    pub fn unrestricted(head: [u8; 16], secret: &[u8; 32]) -> ApiKey {
        ApiKey {
            head,
            caveats: Vec::new(),
            tag: *blake3::keyed_hash(secret, &head).as_bytes(),
        }
    }

    /// The same key with one more restriction.
    pub fn restrict(&self, caveat: Caveat) -> ApiKey {
        let mut k = self.clone();
        k.tag = chain(&self.tag, &caveat);
        k.caveats.push(caveat);
        k
    }

    /// Every tag along the chain, the key's own last, computed from the secret.
    pub fn tags(&self, secret: &[u8; 32]) -> Vec<[u8; 32]> {
        let mut t = *blake3::keyed_hash(secret, &self.head).as_bytes();
        let mut out = vec![t];
        for c in &self.caveats {
            t = chain(&t, c);
            out.push(t);
        }
        out
    }

    /// Its text form: `orbit1` and hex.
    pub fn serialize(&self) -> String {
        let body = bincode::serialize(self).expect("keys serialize");
        format!("{PREFIX}{}", orbit_identity::hex_encode(&body))
    }

    /// Parses the text form.
    pub fn parse(s: &str) -> Result<ApiKey, MalformedKey> {
        let hex = s
            .strip_prefix(PREFIX)
            .ok_or_else(|| MalformedKey("an API key starts with orbit1".into()))?;
        let body = orbit_identity::hex_decode(hex).map_err(MalformedKey)?;
        bincode::deserialize(&body)
            .map_err(|_| MalformedKey("it does not decode (cut short or altered?)".into()))
    }
}

/// Text that is not an API key; says what is wrong without echoing the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed API key: {0}")]
pub struct MalformedKey(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restricted_keys_verify_and_caveats_cannot_be_dropped() {
        let secret = [9u8; 32];
        let k = ApiKey::new(&secret);
        assert_eq!(k.tags(&secret).last(), Some(&k.tag));
        let r = k.restrict(Caveat::ReadOnly);
        assert_eq!(r.tags(&secret).last(), Some(&r.tag));
        // Dropping the caveat but keeping the tag: no longer verifies.
        let mut lifted = r.clone();
        lifted.caveats.clear();
        assert_ne!(lifted.tags(&secret).last(), Some(&lifted.tag));
        // Another secret: nothing verifies.
        assert_ne!(r.tags(&[1; 32]).last(), Some(&r.tag));
        assert_eq!(ApiKey::parse(&r.serialize()).unwrap(), r);
        assert!(ApiKey::parse("orbit1zz").is_err());
    }
}
