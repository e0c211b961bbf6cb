//! Order limits the satellite signs, and settlement of the orders nodes hand in —
//! each serial settled once across all replicas by a create-if-absent transaction.

use crate::accounting::{settled_order_op, SettledOrder};
use crate::keys::{self, Bucket, Project};
use crate::nodes::NodeRecord;
use crate::{decode, Error};
use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use orbit_identity::{Identity, PublicKey};
use orbit_kv::record::encode;
use orbit_kv::{Compare, CompareOp, CompareTarget, Kv, PutRequest, Scan, TxnOp, TxnRequest};
use orbit_protocol::{decode_served, Action, OrderLimit, PieceId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A settled order, as recorded.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Settled {
    /// The node paid for it.
    pub node: orbit_identity::NodeId,
    /// Upload or download.
    pub action: Action,
    /// Bytes.
    pub amount: u64,
    /// Unix time (s) of settlement.
    pub at: u64,
    /// Unix time (s) the order limit expired: after it the serial cannot be replayed
    /// (settlement refuses expired limits), so the record can go. 0 in records written
    /// before it was kept: then `at` plus the longest validity is used.
    #[serde(default)]
    pub expires: u64,
}

crate::versioned_v1!(Settled, "settled order record");

/// What a limit carries beyond the transfer itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct LimitFor<'a> {
    /// Unix time (s) the node may delete the piece at (0: never).
    pub piece_expiration: u64,
    /// The project and bucket the transfer is accounted to (none: the satellite's
    /// own, repair or audit).
    pub bucket: Option<(&'a Project, &'a Bucket)>,
}

/// Seals and opens limits' metadata: the project and bucket, AES-256-GCM under a key
/// derived from the satellite's identity (every replica shares it), so nodes learn
/// nothing of whose data they move and cannot change it (the limit's signature
/// covers it too).
#[derive(Clone)]
struct MetadataKey(Aes256Gcm);

/// Format of sealed metadata.
const METADATA_FORMAT: u8 = 1;

impl MetadataKey {
    fn new(identity: &Identity) -> MetadataKey {
        let key = identity.derive_key("orbit satellite order limit metadata v1");
        MetadataKey(Aes256Gcm::new(&key.into()))
    }

    fn seal(&self, p: &Project, b: &Bucket) -> Vec<u8> {
        let nonce: [u8; 12] = rand::random();
        let plain = format!("{}/{}", p.as_str(), b.as_str());
        let sealed = self
            .0
            .encrypt(&Nonce::from(nonce), plain.as_bytes())
            .expect("AES-GCM seals any length we use");
        let mut out = vec![METADATA_FORMAT];
        out.extend(nonce);
        out.extend(sealed);
        out
    }

    fn open(&self, m: &[u8]) -> Result<(Project, Bucket), Error> {
        let bad = |why: &str| Error::Invalid(format!("order limit metadata: {why}"));
        let Some((&METADATA_FORMAT, rest)) = m.split_first() else {
            return Err(bad("unknown format"));
        };
        if rest.len() < 12 {
            return Err(bad("truncated"));
        }
        let (nonce, sealed) = rest.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().expect("12 bytes");
        let plain = self
            .0
            .decrypt(&Nonce::from(nonce), sealed)
            .map_err(|_| bad("does not open with this satellite's key"))?;
        let text = String::from_utf8(plain).map_err(|_| bad("not text"))?;
        let (p, b) = text.split_once('/').ok_or_else(|| bad("no bucket"))?;
        Ok((Project::new(p)?, Bucket::new(b)?))
    }
}

/// Signs order limits and settles orders.
#[derive(Clone)]
pub struct Orders {
    kv: Arc<dyn Kv>,
    identity: Identity,
    metadata: MetadataKey,
    /// How long a limit stays valid, seconds.
    pub expiration_s: u64,
}

impl Orders {
    /// Orders signed by `identity`, recorded in `kv`.
    pub fn new(kv: Arc<dyn Kv>, identity: Identity, expiration_s: u64) -> Orders {
        Orders {
            kv,
            metadata: MetadataKey::new(&identity),
            identity,
            expiration_s,
        }
    }

    /// The satellite's key.
    pub fn public(&self) -> PublicKey {
        self.identity.public()
    }

    /// A limit for `uplink` to do `action` on `piece` at `node`, up to `bytes`.
    pub fn limit(
        &self,
        node: &NodeRecord,
        piece: PieceId,
        action: Action,
        bytes: u64,
        uplink: PublicKey,
        now: u64,
    ) -> OrderLimit {
        self.limit_for(node, piece, action, bytes, uplink, now, LimitFor::default())
    }

    /// Like [`Orders::limit`], with a piece expiration and the bucket it is for.
    #[allow(clippy::too_many_arguments)]
    pub fn limit_for(
        &self,
        node: &NodeRecord,
        piece: PieceId,
        action: Action,
        bytes: u64,
        uplink: PublicKey,
        now: u64,
        extra: LimitFor<'_>,
    ) -> OrderLimit {
        OrderLimit {
            serial: rand::random(),
            satellite: self.identity.id(),
            uplink,
            node: node.id,
            piece,
            action,
            limit: bytes,
            piece_expiration: extra.piece_expiration,
            order_expiration: now + self.expiration_s,
            metadata: extra
                .bucket
                .map(|(p, b)| self.metadata.seal(p, b))
                .unwrap_or_default(),
            signature: Vec::new(),
        }
        .sign(&self.identity)
    }

    /// Settles what `node_key` signed in `body`: returns the serials settled now and
    /// those refused (already settled, or not valid for this node). Each settled
    /// order is recorded for accounting in the transaction that settles it.
    pub async fn settle(
        &self,
        node_key: PublicKey,
        body: &[u8],
        signature: &[u8],
        now: u64,
    ) -> Result<(Vec<[u8; 16]>, Vec<[u8; 16]>), Error> {
        node_key
            .verify(body, signature)
            .map_err(|e| Error::Unauthenticated(format!("settlement: {e}")))?;
        let served = decode_served(body).map_err(|e| Error::Invalid(e.to_string()))?;
        let (mut settled, mut rejected) = (Vec::new(), Vec::new());
        for s in served {
            // An expired limit is refused whatever its record says: its serial's
            // record may already have been swept.
            let valid = s.limit.order_expiration >= now
                && s.limit.verify(&self.identity.public()).is_ok()
                && s.limit.node == node_key.id()
                && s.order.verify(&s.limit).is_ok();
            if !valid {
                rejected.push(s.limit.serial);
                continue;
            }
            let rec = Settled {
                node: s.limit.node,
                action: s.limit.action,
                amount: s.order.amount.min(s.limit.limit),
                at: now,
                expires: s.limit.order_expiration,
            };
            // Our own signature covers the metadata, so one that does not open is a
            // bug or a changed identity: the node is still paid, nobody is billed.
            let (project, bucket) = match s.limit.metadata.as_slice() {
                [] => (String::new(), String::new()),
                m => match self.metadata.open(m) {
                    Ok((p, b)) => (p.as_str().to_string(), b.as_str().to_string()),
                    Err(e) => {
                        tracing::warn!(serial = %orbit_identity::hex_encode(&s.limit.serial), "{e}");
                        (String::new(), String::new())
                    }
                },
            };
            let order = SettledOrder {
                node: rec.node,
                action: rec.action,
                amount: rec.amount,
                at: now,
                project,
                bucket,
            };
            let key = keys::settled(&s.limit.serial);
            let txn = TxnRequest {
                compare: vec![Compare::new(
                    key.clone(),
                    CompareOp::Equal,
                    CompareTarget::Create(0),
                )],
                success: vec![
                    TxnOp::Put(PutRequest::new(key, encode(&rec))),
                    settled_order_op(&s.limit.serial, &order),
                ],
                failure: Vec::new(),
            };
            if self.kv.txn(txn).await?.succeeded {
                settled.push(s.limit.serial);
            } else {
                rejected.push(s.limit.serial);
            }
        }
        Ok((settled, rejected))
    }
}

impl Orders {
    /// Deletes the records of serials whose limits expired before `now` (they can no
    /// longer be settled); returns how many went.
    pub async fn remove_expired(&self, now: u64) -> Result<usize, Error> {
        let mut removed = 0;
        let mut scan = Scan::prefix(&*self.kv, keys::SETTLED, 1000);
        while let Some(page) = scan.next_page().await? {
            for kv in page {
                let rec: Settled = decode(&kv.key, &kv.value)?;
                let expires = if rec.expires > 0 {
                    rec.expires
                } else {
                    rec.at + self.expiration_s
                };
                if expires < now {
                    self.kv
                        .delete(orbit_kv::DeleteRequest::key(kv.key.clone()))
                        .await?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orbit_protocol::{encode_served, Order, Served};
    use orbit_testkit::{OrbitCluster, Timings};

    #[tokio::test]
    async fn an_order_settles_once_even_through_two_replicas() {
        let cluster = OrbitCluster::start(1, Timings::FAST).await;
        let sat = Identity::generate();
        let a = Orders::new(Arc::new(cluster.embedded(0)), sat.clone(), 60);
        let b = Orders::new(Arc::new(cluster.embedded(0)), sat.clone(), 60);
        let (node, uplink) = (Identity::generate(), Identity::generate());
        let rec = NodeRecord {
            id: node.id(),
            key: node.public(),
            address: "https://127.0.0.1:1".into(),
            free: 1 << 30,
            version: "t".into(),
            last_seen: 0,
            disqualified: false,
            last_contact: 0,
            last_contact_failure: 0,
            contact_failures: 0,
            reputation: Default::default(),
        };
        let limit = a.limit(
            &rec,
            PieceId::random(),
            Action::Get,
            1000,
            uplink.public(),
            100,
        );
        let served = vec![Served {
            order: Order::sign(&limit, 700, &uplink),
            limit: limit.clone(),
        }];
        let body = encode_served(&served);
        let sig = node.sign(&body);
        let (ok, no) = a.settle(node.public(), &body, &sig, 100).await.unwrap();
        assert_eq!((ok.len(), no.len()), (1, 0));
        let (ok, no) = b.settle(node.public(), &body, &sig, 101).await.unwrap();
        assert_eq!(
            (ok.len(), no.len()),
            (0, 1),
            "the second replica refuses it"
        );
        // Another node cannot settle this node's orders; a bad signature is refused.
        let other = Identity::generate();
        let (ok, no) = a
            .settle(other.public(), &body, &other.sign(&body), 102)
            .await
            .unwrap();
        assert_eq!((ok.len(), no.len()), (0, 1));
        assert!(a
            .settle(node.public(), &body, &other.sign(&body), 102)
            .await
            .is_err());
    }
}
