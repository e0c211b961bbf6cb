//! Reed-Solomon erasure coding of encrypted segments into pieces (reed-solomon-simd:
//! SIMD GF(2^16) coding, the fastest maintained Rust implementation).

/// Piece sizes are a multiple of this (what the coder's SIMD paths want).
pub const ALIGN: usize = 64;

/// Why pieces could not be made or put back together.
#[derive(Debug, thiserror::Error)]
#[error("erasure coding: {0}")]
pub struct ErasureError(pub String);

/// The size of each piece for `len` bytes in `k` pieces.
pub fn piece_size(len: usize, k: usize) -> usize {
    let per = len.div_ceil(k).max(1);
    per.div_ceil(ALIGN) * ALIGN
}

/// Splits `data` into `k` original pieces and `total - k` recovery pieces, all of
/// [`piece_size`] bytes (the last original zero-padded).
pub fn encode(data: &[u8], k: usize, total: usize) -> Result<Vec<Vec<u8>>, ErasureError> {
    let size = piece_size(data.len(), k);
    let mut pieces: Vec<Vec<u8>> = (0..k)
        .map(|i| {
            let start = (i * size).min(data.len());
            let end = ((i + 1) * size).min(data.len());
            let mut p = data[start..end].to_vec();
            p.resize(size, 0);
            p
        })
        .collect();
    if total > k {
        let recovery = reed_solomon_simd::encode(k, total - k, &pieces)
            .map_err(|e| ErasureError(e.to_string()))?;
        pieces.extend(recovery);
    }
    Ok(pieces)
}

/// Rebuilds the original `len` bytes from any `k` pieces of `total` (by number).
pub fn decode(
    pieces: &[(usize, Vec<u8>)],
    k: usize,
    total: usize,
    len: usize,
) -> Result<Vec<u8>, ErasureError> {
    let mut originals: Vec<Option<&[u8]>> = vec![None; k];
    for (n, p) in pieces {
        if *n < k {
            originals[*n] = Some(p);
        }
    }
    let restored = if originals.iter().all(|o| o.is_some()) {
        std::collections::BTreeMap::new()
    } else {
        let given = pieces.iter().filter(|(n, _)| *n < k).map(|(n, p)| (*n, p));
        let recovery = pieces
            .iter()
            .filter(|(n, _)| *n >= k && *n < total)
            .map(|(n, p)| (*n - k, p));
        reed_solomon_simd::decode(k, total - k, given, recovery)
            .map_err(|e| ErasureError(e.to_string()))?
    };
    let mut out = Vec::with_capacity(len);
    for (i, o) in originals.iter().enumerate() {
        match o {
            Some(p) => out.extend_from_slice(p),
            None => out.extend_from_slice(
                restored
                    .get(&i)
                    .ok_or_else(|| ErasureError(format!("piece {i} could not be restored")))?,
            ),
        }
        if out.len() >= len {
            break;
        }
    }
    out.truncate(len);
    if out.len() < len {
        return Err(ErasureError("not enough data in the pieces".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_k_pieces_rebuild_the_data() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + 3) as u8).collect();
        let (k, total) = (4, 10);
        let pieces = encode(&data, k, total).unwrap();
        assert_eq!(pieces.len(), total);
        for pick in [[0, 1, 2, 3], [6, 7, 8, 9], [0, 5, 7, 9], [3, 4, 1, 8]] {
            let chosen: Vec<(usize, Vec<u8>)> =
                pick.iter().map(|&n| (n, pieces[n].clone())).collect();
            assert_eq!(
                decode(&chosen, k, total, data.len()).unwrap(),
                data,
                "{pick:?}"
            );
        }
        let three: Vec<(usize, Vec<u8>)> =
            [0, 5, 9].iter().map(|&n| (n, pieces[n].clone())).collect();
        assert!(decode(&three, k, total, data.len()).is_err());
    }

    #[test]
    fn tiny_inputs_work() {
        let pieces = encode(b"x", 4, 6).unwrap();
        let chosen: Vec<(usize, Vec<u8>)> = (2..6).map(|n| (n, pieces[n].clone())).collect();
        assert_eq!(decode(&chosen, 4, 6, 1).unwrap(), b"x");
    }
}
