//! Verified slices of a piece: BLAKE3 verified streaming (the `bao-tree` crate), so a
//! slice of a piece can be checked against the uplink-signed hash of the whole piece
//! without moving the rest of it.
//!
//! A piece's BLAKE3 hash is the root of a binary tree over its 1 KiB chunks. A node
//! keeps the upper part of that tree (the *outboard*: the hash pairs above groups of
//! [`GROUP`] bytes, pre-order, 64 bytes per group, about 0.4% of the piece) beside the
//! piece. For a byte range it sends the groups covering it and the hash pairs on their
//! paths to the root; the receiver recomputes the path from the bytes up to the root
//! and compares it with the signed hash. A wrong byte, a wrong proof or a missing group
//! fails the comparison; trailing bytes are refused.

use bao_tree::io::outboard::PreOrderOutboard;
use bao_tree::io::round_up_to_chunks;
/// Positioned reads, what [`encode`] reads a piece through.
pub use bao_tree::io::sync::ReadAt;
use bao_tree::io::sync::{encode_ranges_validated, CreateOutboard, DecodeResponseIter};
use bao_tree::io::BaoContentItem;
use bao_tree::{BaoTree, BlockSize, ByteRanges, ChunkRanges};
use std::io::Read;

/// Chunk groups of 16 KiB: the unit a slice is sent in.
pub const BLOCK: BlockSize = BlockSize::from_chunk_log(4);

/// Bytes in a chunk group.
pub const GROUP: u64 = 16 << 10;

/// Why a slice failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SliceError {
    /// The range asked for is empty or beyond the piece.
    #[error("range {offset}+{len} is not within a piece of {size} bytes")]
    Range {
        /// Start.
        offset: u64,
        /// Length.
        len: u64,
        /// The piece's size.
        size: u64,
    },
    /// The bytes or the proof do not lead to the piece's hash.
    #[error("slice does not verify: {0}")]
    Invalid(String),
    /// The piece or its outboard could not be read.
    #[error("reading the piece: {0}")]
    Io(String),
}

/// The most bytes the encoding of a range of `len` bytes can take: the groups
/// covering it (one more at each end) and a path of hash pairs per group (a tree over
/// at most 2^64 bytes is under 64 levels deep).
pub fn max_encoded(len: u64) -> u64 {
    let groups = len.div_ceil(GROUP) + 2;
    groups * GROUP + groups * 64 * 64
}

fn tree(size: u64) -> BaoTree {
    BaoTree::new(size, BLOCK)
}

fn ranges(offset: u64, len: u64, size: u64) -> Result<ChunkRanges, SliceError> {
    match offset.checked_add(len) {
        Some(end) if len > 0 && end <= size => {
            Ok(round_up_to_chunks(&ByteRanges::from(offset..end)))
        }
        _ => Err(SliceError::Range { offset, len, size }),
    }
}

/// The outboard of the `size` bytes `data` yields, with the hash it proves (BLAKE3 of
/// the bytes).
pub fn outboard(data: impl Read, size: u64) -> Result<([u8; 32], Vec<u8>), SliceError> {
    let ob = PreOrderOutboard::<Vec<u8>>::create_sized(data, size, BLOCK)
        .map_err(|e| SliceError::Io(e.to_string()))?;
    Ok((*ob.root.as_bytes(), ob.data))
}

/// Encodes `[offset, offset + len)` of a piece of `size` bytes with hash `root`: the
/// chunk groups covering it and their proof. Each group is checked against the
/// outboard first, so a node never sends bytes its own tree disowns.
pub fn encode(
    data: impl ReadAt,
    size: u64,
    root: [u8; 32],
    outboard: Vec<u8>,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, SliceError> {
    let ranges = ranges(offset, len, size)?;
    let ob = PreOrderOutboard {
        root: blake3::Hash::from_bytes(root),
        tree: tree(size),
        data: outboard,
    };
    let mut out = Vec::new();
    encode_ranges_validated(data, &ob, &ranges, &mut out)
        .map_err(|e| SliceError::Invalid(e.to_string()))?;
    Ok(out)
}

/// Checks an encoded slice of `[offset, offset + len)` of a piece of `size` bytes
/// against its hash `root`, and returns exactly those bytes.
pub fn verify(
    root: &[u8; 32],
    size: u64,
    offset: u64,
    len: u64,
    encoded: &[u8],
) -> Result<Vec<u8>, SliceError> {
    let ranges = ranges(offset, len, size)?;
    let mut reader = encoded;
    let mut out = Vec::with_capacity(len as usize);
    let end = offset + len;
    let items = DecodeResponseIter::new(
        blake3::Hash::from_bytes(*root),
        tree(size),
        &mut reader,
        &ranges,
    );
    for item in items {
        let item = item.map_err(|e| SliceError::Invalid(e.to_string()))?;
        if let BaoContentItem::Leaf(leaf) = item {
            let (start, stop) = (leaf.offset, leaf.offset + leaf.data.len() as u64);
            let (a, b) = (start.max(offset), stop.min(end));
            if a < b {
                out.extend_from_slice(&leaf.data[(a - start) as usize..(b - start) as usize]);
            }
        }
    }
    if !reader.is_empty() {
        return Err(SliceError::Invalid(format!(
            "{} bytes after the slice",
            reader.len()
        )));
    }
    if out.len() as u64 != len {
        return Err(SliceError::Invalid(format!(
            "{} bytes of {len} proven",
            out.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(size: usize) -> Vec<u8> {
        (0..size).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn slices_verify_against_the_pieces_blake3_hash_and_anything_altered_fails() {
        for size in [
            1usize,
            1000,
            1024,
            16 << 10,
            (16 << 10) + 1,
            300_000,
            1 << 20,
        ] {
            let data = piece(size);
            let (root, ob) = outboard(&data[..], size as u64).unwrap();
            // The root is the plain BLAKE3 hash the uplink signs.
            assert_eq!(root, *blake3::hash(&data).as_bytes(), "size {size}");
            let size = size as u64;
            for (offset, len) in [
                (0, 1),
                (0, size),
                (size - 1, 1),
                (size / 2, size.min(5000) / 2),
            ] {
                if len == 0 {
                    continue;
                }
                let enc = encode(&data[..], size, root, ob.clone(), offset, len).unwrap();
                let got = verify(&root, size, offset, len, &enc).unwrap();
                assert_eq!(got, &data[offset as usize..(offset + len) as usize]);
                assert!(
                    enc.len() as u64 <= max_encoded(len),
                    "{size}: {}",
                    enc.len()
                );
                // A small slice is kilobytes, not the piece: a group and its path.
                if len <= 1024 {
                    assert!(enc.len() as u64 <= GROUP + 64 * 10, "{size}: {}", enc.len());
                }
                // Any flipped byte of the encoding fails.
                for at in [0, enc.len() / 2, enc.len() - 1] {
                    let mut bad = enc.clone();
                    bad[at] ^= 1;
                    assert!(
                        verify(&root, size, offset, len, &bad).is_err(),
                        "{size} {at}"
                    );
                }
                // Truncated, extended, or against another hash or size: fails.
                assert!(verify(&root, size, offset, len, &enc[..enc.len() - 1]).is_err());
                let mut longer = enc.clone();
                longer.push(0);
                assert!(verify(&root, size, offset, len, &longer).is_err());
                let other = *blake3::hash(b"other").as_bytes();
                assert!(verify(&other, size, offset, len, &enc).is_err());
            }
        }
    }

    #[test]
    fn a_forged_proof_over_altered_bytes_fails() {
        let data = piece(200_000);
        let size = data.len() as u64;
        let root = *blake3::hash(&data).as_bytes();
        // A lying node alters its bytes and builds a consistent tree over them.
        let mut altered = data.clone();
        altered[100_000] ^= 0xff;
        let (fake_root, fake_ob) = outboard(&altered[..], size).unwrap();
        let forged = encode(&altered[..], size, fake_root, fake_ob, 99_000, 2_000).unwrap();
        assert!(verify(&fake_root, size, 99_000, 2_000, &forged).is_ok());
        let e = verify(&root, size, 99_000, 2_000, &forged).unwrap_err();
        assert!(matches!(e, SliceError::Invalid(_)), "{e}");
        // A node whose bytes rotted cannot encode them against its true tree.
        let (_, ob) = outboard(&data[..], size).unwrap();
        assert!(encode(&altered[..], size, root, ob, 99_000, 2_000).is_err());
    }

    #[test]
    fn empty_and_out_of_piece_ranges_are_refused() {
        let data = piece(5000);
        let (root, ob) = outboard(&data[..], 5000).unwrap();
        for (offset, len) in [(0, 0), (4999, 2), (5000, 1), (u64::MAX, 2)] {
            assert!(matches!(
                encode(&data[..], 5000, root, ob.clone(), offset, len),
                Err(SliceError::Range { .. })
            ));
            assert!(matches!(
                verify(&root, 5000, offset, len, &[]),
                Err(SliceError::Range { .. })
            ));
        }
    }
}
