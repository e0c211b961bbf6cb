//! The bloom filters garbage collection sends to storage nodes: "the pieces you should
//! hold". A node keeps a piece the filter contains and may trash one it does not; a
//! false positive only keeps a piece longer (a fresh seed each pass catches it later),
//! a false negative cannot happen, so a live piece is never trashed for a filter's
//! sake.
//!
//! The format is part of the protocol, versioned: `FORMAT`, the hash count, the seed
//! and the bits. A piece's `hashes` positions come from BLAKE3 keyed by the seed over
//! the piece id, two 64-bit halves combined by double hashing (Kirsch–Mitzenmacher):
//! position i = h1 + i·h2 mod bits.

use crate::PieceId;

/// The encoding's version.
const FORMAT: u8 = 1;

/// Fewest bits a filter has (an empty node still gets a well-formed filter).
const MIN_BITS: u64 = 64;

/// Why a filter could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BloomError {
    /// Not a filter of this format.
    #[error("bloom filter: {0}")]
    Malformed(String),
}

/// A bloom filter over piece ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    seed: [u8; 32],
    hashes: u8,
    bits: Vec<u8>,
}

impl Filter {
    /// An empty filter sized for `n` pieces at false-positive rate `fp` (no cap: a
    /// node with many pieces gets a large filter), with a fresh random seed.
    pub fn new(n: u64, fp: f64) -> Filter {
        Self::with_seed(n, fp, rand::random())
    }

    /// Like [`Filter::new`] with a given seed.
    pub fn with_seed(n: u64, fp: f64, seed: [u8; 32]) -> Filter {
        let fp = fp.clamp(1e-9, 0.5);
        let ln2 = std::f64::consts::LN_2;
        let n = n.max(1) as f64;
        // m = −n ln p / (ln 2)², k = (m / n) ln 2.
        let m = ((-n * fp.ln()) / (ln2 * ln2)).ceil().max(MIN_BITS as f64) as u64;
        let k = ((m as f64 / n) * ln2).round().clamp(1.0, 32.0) as u8;
        Filter {
            seed,
            hashes: k,
            bits: vec![0; m.div_ceil(8) as usize],
        }
    }

    fn positions(&self, piece: &PieceId) -> impl Iterator<Item = u64> {
        let h = blake3::keyed_hash(&self.seed, &piece.0);
        let b = h.as_bytes();
        let h1 = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
        // Odd, so the positions cycle through every residue when bits is a power of 2.
        let h2 = u64::from_le_bytes(b[8..16].try_into().expect("8 bytes")) | 1;
        let m = self.bit_len();
        (0..u64::from(self.hashes)).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % m)
    }

    /// Bits in the filter.
    pub fn bit_len(&self) -> u64 {
        self.bits.len() as u64 * 8
    }

    /// Hash functions per piece.
    pub fn hashes(&self) -> u8 {
        self.hashes
    }

    /// Adds a piece.
    pub fn add(&mut self, piece: &PieceId) {
        let positions: Vec<u64> = self.positions(piece).collect();
        for p in positions {
            self.bits[(p / 8) as usize] |= 1 << (p % 8);
        }
    }

    /// Whether the piece may be in the set (certainly, if it was added).
    pub fn contains(&self, piece: &PieceId) -> bool {
        self.positions(piece)
            .all(|p| self.bits[(p / 8) as usize] & (1 << (p % 8)) != 0)
    }

    /// Adds every piece of `other`, a filter of the same size, hashes and seed (a
    /// filter built in parts).
    pub fn union(&mut self, other: &Filter) -> Result<(), BloomError> {
        if other.seed != self.seed
            || other.hashes != self.hashes
            || other.bits.len() != self.bits.len()
        {
            return Err(BloomError::Malformed("a union of unlike filters".into()));
        }
        for (a, b) in self.bits.iter_mut().zip(&other.bits) {
            *a |= b;
        }
        Ok(())
    }

    /// Its encoding: format, hash count, seed, bits.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(34 + self.bits.len());
        out.push(FORMAT);
        out.push(self.hashes);
        out.extend_from_slice(&self.seed);
        out.extend_from_slice(&self.bits);
        out
    }

    /// Reads an encoding.
    pub fn decode(b: &[u8]) -> Result<Filter, BloomError> {
        let bad = |why: &str| BloomError::Malformed(why.to_string());
        match b.first() {
            Some(&FORMAT) => {}
            Some(v) => {
                return Err(BloomError::Malformed(format!(
                    "format version {v}, this build reads {FORMAT}"
                )))
            }
            None => return Err(bad("empty")),
        }
        if b.len() < 34 + (MIN_BITS / 8) as usize {
            return Err(bad("too short"));
        }
        let hashes = b[1];
        if !(1..=32).contains(&hashes) {
            return Err(bad("hash count out of range"));
        }
        Ok(Filter {
            hashes,
            seed: b[2..34].try_into().expect("32 bytes"),
            bits: b[34..].to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u64, salt: u8) -> PieceId {
        let mut b = *blake3::hash(&i.to_le_bytes()).as_bytes();
        b[31] ^= salt;
        PieceId(b)
    }

    /// The measured false-positive rate of a filter over `n` pieces at target `fp`.
    fn measured(n: u64, fp: f64) -> f64 {
        let mut f = Filter::new(n, fp);
        for i in 0..n {
            f.add(&id(i, 0));
        }
        for i in (0..n).step_by((n / 1000).max(1) as usize) {
            assert!(f.contains(&id(i, 0)), "a member missing");
        }
        let probes = 200_000u64;
        let hits = (0..probes).filter(|&i| f.contains(&id(i, 0xff))).count();
        hits as f64 / probes as f64
    }

    #[test]
    fn false_positives_stay_within_the_target_at_every_size() {
        for n in [10_000u64, 1_000_000, 10_000_000] {
            let rate = measured(n, 0.1);
            assert!(rate <= 0.11, "{n} pieces: {rate}");
            assert!(rate >= 0.07, "{n} pieces: {rate} (oversized?)");
        }
        assert!(measured(100_000, 0.01) <= 0.012);
    }

    #[test]
    fn sizes_follow_the_count_and_encodings_round_trip_or_are_refused() {
        let f = Filter::new(1_000_000, 0.1);
        // 4.79 bits per piece at 10%, 3 hashes.
        assert!(
            (4_700_000..4_900_000).contains(&f.bit_len()),
            "{}",
            f.bit_len()
        );
        assert_eq!(f.hashes(), 3);
        let mut f = Filter::new(100, 0.1);
        f.add(&id(1, 0));
        let g = Filter::decode(&f.encode()).unwrap();
        assert_eq!(g, f);
        assert!(g.contains(&id(1, 0)));
        // Another seed puts the same pieces elsewhere.
        let mut h = Filter::new(100, 0.1);
        h.add(&id(1, 0));
        assert_ne!(h.encode(), f.encode());
        let e = f.encode();
        let mut wrong = e.clone();
        wrong[0] = 2;
        assert!(Filter::decode(&wrong)
            .unwrap_err()
            .to_string()
            .contains("version 2"));
        assert!(Filter::decode(&e[..20]).is_err());
        let mut zero = e.clone();
        zero[1] = 0;
        assert!(Filter::decode(&zero).is_err());
        assert!(Filter::decode(&[]).is_err());
        // Built in parts and merged: the same as built at once; unlike filters refuse.
        let seed = [9u8; 32];
        let (mut a, mut b, mut all) = (
            Filter::with_seed(1000, 0.1, seed),
            Filter::with_seed(1000, 0.1, seed),
            Filter::with_seed(1000, 0.1, seed),
        );
        for i in 0..1000 {
            [&mut a, &mut b][(i % 2) as usize].add(&id(i, 0));
            all.add(&id(i, 0));
        }
        a.union(&b).unwrap();
        assert_eq!(a, all);
        assert!(a.union(&Filter::new(1000, 0.1)).is_err());
        // An empty node's filter is well formed and contains nothing it was not given.

        let empty = Filter::new(0, 0.1);
        assert!(Filter::decode(&empty.encode()).is_ok());
    }
}
