//! Serde forms that store bytes as lower-case hex strings: compact to parse (a 32-byte
//! id is one string, not 32 numbers) and still readable in `etcdctl get`.

use orbit_identity::{hex_decode, hex_encode};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// 32 bytes as 64 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hex32(pub [u8; 32]);

impl Serialize for Hex32 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex_encode(&self.0))
    }
}

/// Each byte's value as a hex digit, or 0xff: one lookup per digit.
const NIBBLES: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

impl<'de> Deserialize<'de> for Hex32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Hex32, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Hex32;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("64 hex digits")
            }
            // Decoded straight from the (usually borrowed) text: no string is built.
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Hex32, E> {
                let b = s.as_bytes();
                if b.len() != 64 {
                    return Err(E::invalid_length(b.len(), &self));
                }
                let mut out = [0u8; 32];
                let mut bad = 0;
                for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
                    let (h, l) = (NIBBLES[pair[0] as usize], NIBBLES[pair[1] as usize]);
                    bad |= h | l;
                    *o = h << 4 | l;
                }
                // Any non-digit sets the high bits of `bad`.
                if bad & 0xf0 != 0 {
                    return Err(E::invalid_value(de::Unexpected::Str(s), &self));
                }
                Ok(Hex32(out))
            }
        }
        d.deserialize_str(V)
    }
}

/// `Option<Vec<u8>>` as an optional hex string.
pub mod opt_bytes {
    use super::*;

    /// Writes the bytes as hex.
    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        v.as_deref().map(hex_encode).serialize(s)
    }

    /// Reads hex back into bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|h| hex_decode(&h).map_err(de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_bad_text_is_refused() {
        let id = Hex32(std::array::from_fn(|i| (i * 37) as u8));
        let text = serde_json::to_string(&id).unwrap();
        assert_eq!(text.len(), 66);
        assert_eq!(serde_json::from_str::<Hex32>(&text).unwrap(), id);
        assert_eq!(
            serde_json::from_str::<Hex32>(&text.to_uppercase()).unwrap(),
            id
        );
        for bad in [
            "\"00\"".to_string(),
            format!("\"{}\"", "g".repeat(64)),
            format!("\"{}\"", "0".repeat(65)),
            "[0,1]".into(),
            "7".into(),
        ] {
            assert!(serde_json::from_str::<Hex32>(&bad).is_err(), "{bad}");
        }
    }
}
