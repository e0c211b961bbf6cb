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

/// Bytes of each piece coded together: the coder works on every piece at once, so
/// coding whole 16 MiB pieces in one call would stream hundreds of MiB of working
/// space through the cache per pass; stripes of this size stay in it. Each stripe is
/// coded independently, the same way on both sides.
pub const STRIPE: usize = 64 * 1024;

/// Splits `data` into `k` original pieces and `total - k` recovery pieces, all of
/// [`piece_size`] bytes (the last original zero-padded). The originals share `data`'s
/// buffer: no copy.
pub fn encode(
    mut data: Vec<u8>,
    k: usize,
    total: usize,
) -> Result<Vec<bytes::Bytes>, ErasureError> {
    let size = piece_size(data.len(), k);
    let err = |e: reed_solomon_simd::Error| ErasureError(e.to_string());
    data.resize(size * k, 0);
    let data = bytes::Bytes::from(data);
    let mut pieces: Vec<bytes::Bytes> = (0..k)
        .map(|i| data.slice(i * size..(i + 1) * size))
        .collect();
    let m = total - k;
    if m == 0 {
        return Ok(pieces);
    }
    let mut recovery: Vec<Vec<u8>> = (0..m).map(|_| Vec::with_capacity(size)).collect();
    let mut enc =
        reed_solomon_simd::ReedSolomonEncoder::new(k, m, STRIPE.min(size)).map_err(err)?;
    let mut at = 0;
    while at < size {
        let len = STRIPE.min(size - at);
        enc.reset(k, m, len).map_err(err)?;
        for p in &pieces {
            enc.add_original_shard(&p[at..at + len]).map_err(err)?;
        }
        let out = enc.encode().map_err(err)?;
        for (r, shard) in recovery.iter_mut().zip(out.recovery_iter()) {
            r.extend_from_slice(shard);
        }
        at += len;
    }
    pieces.extend(recovery.into_iter().map(bytes::Bytes::from));
    Ok(pieces)
}

/// Rebuilds the original `len` bytes from any `k` pieces of `total` (by number).
pub fn decode(
    pieces: &[(usize, Vec<u8>)],
    k: usize,
    total: usize,
    len: usize,
) -> Result<Vec<u8>, ErasureError> {
    let err = |e: reed_solomon_simd::Error| ErasureError(e.to_string());
    let size = pieces.first().map_or(0, |(_, p)| p.len());
    if pieces.iter().any(|(n, p)| p.len() != size || *n >= total) {
        return Err(ErasureError("pieces of different sizes or numbers".into()));
    }
    let mut originals: Vec<Option<&[u8]>> = vec![None; k];
    for (n, p) in pieces {
        if *n < k {
            originals[*n] = Some(p);
        }
    }
    let missing: Vec<usize> = (0..k).filter(|i| originals[*i].is_none()).collect();
    let mut restored: Vec<Vec<u8>> = missing.iter().map(|_| Vec::with_capacity(size)).collect();
    if !missing.is_empty() {
        let m = total - k;
        let mut dec = reed_solomon_simd::ReedSolomonDecoder::new(k, m, STRIPE.min(size).max(2))
            .map_err(err)?;
        let mut at = 0;
        while at < size {
            let l = STRIPE.min(size - at);
            dec.reset(k, m, l).map_err(err)?;
            for (n, p) in pieces {
                if *n < k {
                    dec.add_original_shard(*n, &p[at..at + l]).map_err(err)?;
                } else {
                    dec.add_recovery_shard(*n - k, &p[at..at + l])
                        .map_err(err)?;
                }
            }
            let out = dec.decode().map_err(err)?;
            let got: std::collections::BTreeMap<usize, &[u8]> =
                out.restored_original_iter().collect();
            for (slot, i) in restored.iter_mut().zip(&missing) {
                slot.extend_from_slice(
                    got.get(i)
                        .ok_or_else(|| ErasureError(format!("piece {i} could not be restored")))?,
                );
            }
            at += l;
        }
    }
    let mut out = Vec::with_capacity(len);
    for (i, o) in originals.iter().enumerate() {
        match o {
            Some(p) => out.extend_from_slice(p),
            None => {
                let at = missing
                    .iter()
                    .position(|m| *m == i)
                    .expect("missing is listed");
                out.extend_from_slice(&restored[at]);
            }
        }
        if out.len() >= len {
            break;
        }
    }
    if out.len() < len {
        return Err(ErasureError("not enough data in the pieces".into()));
    }
    out.truncate(len);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_k_pieces_rebuild_the_data() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + 3) as u8).collect();
        let (k, total) = (4, 10);
        let pieces = encode(data.clone(), k, total).unwrap();
        assert_eq!(pieces.len(), total);
        for pick in [[0, 1, 2, 3], [6, 7, 8, 9], [0, 5, 7, 9], [3, 4, 1, 8]] {
            let chosen: Vec<(usize, Vec<u8>)> =
                pick.iter().map(|&n| (n, pieces[n].to_vec())).collect();
            assert_eq!(
                decode(&chosen, k, total, data.len()).unwrap(),
                data,
                "{pick:?}"
            );
        }
        let three: Vec<(usize, Vec<u8>)> =
            [0, 5, 9].iter().map(|&n| (n, pieces[n].to_vec())).collect();
        assert!(decode(&three, k, total, data.len()).is_err());
    }

    #[test]
    fn pieces_larger_than_a_stripe_code_stripe_by_stripe() {
        let data: Vec<u8> = (0..(3 * STRIPE * 4 + 1000))
            .map(|i| (i % 251) as u8)
            .collect();
        let pieces = encode(data.clone(), 4, 10).unwrap();
        let chosen: Vec<(usize, Vec<u8>)> = [1, 6, 8, 9]
            .iter()
            .map(|&n| (n, pieces[n].to_vec()))
            .collect();
        assert!(decode(&chosen, 4, 10, data.len()).unwrap() == data);
        let mut bad = chosen.clone();
        bad[0].1.pop();
        assert!(decode(&bad, 4, 10, data.len()).is_err());
    }

    #[test]
    fn tiny_inputs_work() {
        let pieces = encode(b"x".to_vec(), 4, 6).unwrap();
        let chosen: Vec<(usize, Vec<u8>)> = (2..6).map(|n| (n, pieces[n].to_vec())).collect();
        assert_eq!(decode(&chosen, 4, 6, 1).unwrap(), b"x");
    }
}
