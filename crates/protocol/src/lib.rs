//! What orbit's satellite, storage nodes and uplinks exchange: the crate clients
//! depend on (never on the satellite's server crates).
//!
//! - An [`OrderLimit`], signed by a satellite, allows one uplink one action on one
//!   piece at one node, up to a number of bytes, until it expires; its serial can be
//!   used once.
//! - An [`Order`], signed by the uplink with the key the limit names, says how many of
//!   those bytes it has used; nodes settle orders with the satellite.
//! - A [`PieceHash`] is the BLAKE3 hash and size of a piece, signed by the uplink that
//!   uploaded it (and by the node, as its receipt).
//!
//! Each is encoded as a format version byte and bincode; what is signed is a domain
//! tag and the encoding of every field but the signature.

use orbit_identity::{IdentityError, NodeId, PublicKey};
use serde::{Deserialize, Serialize};

pub mod apikey;
pub mod bloom;
pub mod client;
pub mod slices;

/// Generated protobuf types and gRPC stubs of the piecestore protocol.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("orbit.piecestore.v1");
}

/// Generated protobuf types and gRPC stubs of the satellite's API (Nodes, Metainfo).
#[allow(missing_docs, clippy::all)]
pub mod satellite_pb {
    tonic::include_proto!("orbit.satellite.v1");
}

/// Generated protobuf types and gRPC stubs of the version server.
#[allow(missing_docs, clippy::all)]
pub mod version_pb {
    tonic::include_proto!("orbit.version.v1");
}

/// Why a protocol message was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// Does not decode.
    #[error("malformed {what}: {why}")]
    Malformed {
        /// Which message.
        what: &'static str,
        /// Why.
        why: String,
    },
    /// A signature is wrong.
    #[error(transparent)]
    Signature(#[from] IdentityError),
    /// Signed by someone else than it must be.
    #[error("{what} signed by {got}, expected {want}")]
    WrongSigner {
        /// Which message.
        what: &'static str,
        /// Who it claims.
        got: NodeId,
        /// Who it must be.
        want: NodeId,
    },
}

/// Format version of every encoding here.
const FORMAT: u8 = 1;

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    encode_as(FORMAT, v)
}

/// `v` in bincode after the format byte `format`.
fn encode_as<T: Serialize>(format: u8, v: &T) -> Vec<u8> {
    let mut out = vec![format];
    out.extend(bincode::serialize(v).expect("protocol messages serialize"));
    out
}

fn decode<T: for<'de> Deserialize<'de>>(what: &'static str, b: &[u8]) -> Result<T, ProtocolError> {
    match b.split_first() {
        Some((&FORMAT, rest)) => bincode_body(what, rest),
        Some((v, _)) => Err(ProtocolError::Malformed {
            what,
            why: format!("format version {v}, this build reads {FORMAT}"),
        }),
        None => Err(empty(what)),
    }
}

fn bincode_body<T: for<'de> Deserialize<'de>>(
    what: &'static str,
    b: &[u8],
) -> Result<T, ProtocolError> {
    bincode::deserialize(b).map_err(|e| ProtocolError::Malformed {
        what,
        why: e.to_string(),
    })
}

fn empty(what: &'static str) -> ProtocolError {
    ProtocolError::Malformed {
        what,
        why: "empty".into(),
    }
}

/// Format version of order limits and what embeds them: 2 added the limit's
/// metadata; version 1 still decodes (with none), so orders a node kept from before
/// are still paid.
const LIMIT_FORMAT: u8 = 2;

/// Decodes a message that embeds order limits: `V1` is its layout in format 1.
fn decode_limits<T, V1>(what: &'static str, b: &[u8]) -> Result<T, ProtocolError>
where
    T: for<'de> Deserialize<'de>,
    V1: for<'de> Deserialize<'de> + Into<T>,
{
    match b.split_first() {
        Some((&LIMIT_FORMAT, rest)) => bincode_body(what, rest),
        Some((1, rest)) => bincode_body::<V1>(what, rest).map(Into::into),
        Some((v, _)) => Err(ProtocolError::Malformed {
            what,
            why: format!("format version {v}, this build reads 1 and {LIMIT_FORMAT}"),
        }),
        None => Err(empty(what)),
    }
}

fn signing_bytes<T: Serialize>(tag: &[u8], fields: &T) -> Vec<u8> {
    let mut out = tag.to_vec();
    out.extend(bincode::serialize(fields).expect("protocol messages serialize"));
    out
}

/// A piece's id at one node.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
pub struct PieceId(pub [u8; 32]);

impl PieceId {
    /// A random root id (one per segment).
    pub fn random() -> PieceId {
        PieceId(rand::random())
    }

    /// The id of piece `number` of the segment with root `self` at `node`: different
    /// at every node, so nodes cannot tell which of their pieces belong together.
    pub fn derive(&self, node: &NodeId, number: u16) -> PieceId {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        h.update(&node.0);
        h.update(&number.to_be_bytes());
        PieceId(*h.finalize().as_bytes())
    }

    /// Lower-case hex.
    pub fn hex(&self) -> String {
        orbit_identity::hex_encode(&self.0)
    }
}

/// What an order limit allows. New actions are appended: the encoding numbers them
/// in order.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Action {
    /// Store a piece.
    Put,
    /// Read a piece.
    Get,
    /// Store a piece rebuilt by the satellite's repair.
    PutRepair,
    /// Read a piece for the satellite's repair.
    GetRepair,
    /// Read a slice of a piece for the satellite's audit.
    GetAudit,
}

impl Action {
    /// Whether it stores a piece.
    pub fn is_put(self) -> bool {
        matches!(self, Action::Put | Action::PutRepair)
    }

    /// Whether it reads a piece.
    pub fn is_get(self) -> bool {
        matches!(self, Action::Get | Action::GetRepair | Action::GetAudit)
    }
}

/// What a node signs to answer a ping: proof that whoever answers at its address
/// holds its key.
pub fn ping_signing_bytes(challenge: &[u8]) -> Vec<u8> {
    signing_bytes(b"orbit-ping-v1", &challenge)
}

/// A one-use serial number of an order limit.
pub type Serial = [u8; 16];

/// A satellite's permission for one transfer.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct OrderLimit {
    /// One-use serial.
    pub serial: Serial,
    /// The satellite that signs it.
    pub satellite: NodeId,
    /// The key that signs the uplink's orders and piece hashes.
    pub uplink: PublicKey,
    /// The node it is for.
    pub node: NodeId,
    /// The piece.
    pub piece: PieceId,
    /// Put or get.
    pub action: Action,
    /// Most bytes.
    pub limit: u64,
    /// Unix time (s) after which the node may delete the piece; 0: never.
    pub piece_expiration: u64,
    /// Unix time (s) after which the limit is void.
    pub order_expiration: u64,
    /// The satellite's sealed note of what the transfer is for (the project and
    /// bucket it is accounted to): opaque to nodes, read back by the satellite at
    /// settlement. Empty when there is none.
    pub metadata: Vec<u8>,
    /// The satellite's signature.
    pub signature: Vec<u8>,
}

/// An order limit in format 1, before the metadata.
#[derive(Serialize, Deserialize)]
struct OrderLimitV1 {
    serial: Serial,
    satellite: NodeId,
    uplink: PublicKey,
    node: NodeId,
    piece: PieceId,
    action: Action,
    limit: u64,
    piece_expiration: u64,
    order_expiration: u64,
    signature: Vec<u8>,
}

impl From<OrderLimitV1> for OrderLimit {
    fn from(l: OrderLimitV1) -> OrderLimit {
        OrderLimit {
            serial: l.serial,
            satellite: l.satellite,
            uplink: l.uplink,
            node: l.node,
            piece: l.piece,
            action: l.action,
            limit: l.limit,
            piece_expiration: l.piece_expiration,
            order_expiration: l.order_expiration,
            metadata: Vec::new(),
            signature: l.signature,
        }
    }
}

type OrderLimitFields<'a> = (
    &'a Serial,
    &'a NodeId,
    &'a PublicKey,
    &'a NodeId,
    &'a PieceId,
    Action,
    u64,
    u64,
    u64,
);

impl OrderLimit {
    fn fields(&self) -> OrderLimitFields<'_> {
        (
            &self.serial,
            &self.satellite,
            &self.uplink,
            &self.node,
            &self.piece,
            self.action,
            self.limit,
            self.piece_expiration,
            self.order_expiration,
        )
    }

    /// What is signed: without metadata, exactly what format 1 signed (so limits
    /// from before it still verify); with it, the metadata too, under another tag.
    fn signed(&self) -> Vec<u8> {
        if self.metadata.is_empty() {
            signing_bytes(b"orbit-order-limit-v1", &self.fields())
        } else {
            signing_bytes(b"orbit-order-limit-v2", &(self.fields(), &self.metadata))
        }
    }

    /// Signs it as `satellite` (whose id it must name).
    pub fn sign(mut self, satellite: &orbit_identity::Identity) -> OrderLimit {
        self.satellite = satellite.id();
        self.signature = satellite.sign(&self.signed());
        self
    }

    /// Checks that `key` signed it and is the satellite it names.
    pub fn verify(&self, key: &PublicKey) -> Result<(), ProtocolError> {
        if key.id() != self.satellite {
            return Err(ProtocolError::WrongSigner {
                what: "order limit",
                got: self.satellite,
                want: key.id(),
            });
        }
        key.verify(&self.signed(), &self.signature)?;
        Ok(())
    }

    /// Its encoding.
    pub fn encode(&self) -> Vec<u8> {
        encode_as(LIMIT_FORMAT, self)
    }

    /// Decodes one.
    pub fn decode(b: &[u8]) -> Result<OrderLimit, ProtocolError> {
        decode_limits::<_, OrderLimitV1>("order limit", b)
    }
}

/// The uplink's statement of how many bytes of a limit it has used.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Order {
    /// The limit's serial.
    pub serial: Serial,
    /// Bytes used so far.
    pub amount: u64,
    /// The uplink's signature, by the key the limit names.
    pub signature: Vec<u8>,
}

impl Order {
    /// Signs an order for `amount` bytes of `limit`.
    pub fn sign(limit: &OrderLimit, amount: u64, uplink: &orbit_identity::Identity) -> Order {
        Order {
            serial: limit.serial,
            amount,
            signature: uplink.sign(&signing_bytes(b"orbit-order-v1", &(&limit.serial, amount))),
        }
    }

    /// Checks it was signed by the limit's uplink key for the limit's serial.
    pub fn verify(&self, limit: &OrderLimit) -> Result<(), ProtocolError> {
        if self.serial != limit.serial {
            return Err(ProtocolError::Malformed {
                what: "order",
                why: "its serial is not the order limit's".into(),
            });
        }
        limit.uplink.verify(
            &signing_bytes(b"orbit-order-v1", &(&self.serial, self.amount)),
            &self.signature,
        )?;
        Ok(())
    }

    /// Its encoding.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes one.
    pub fn decode(b: &[u8]) -> Result<Order, ProtocolError> {
        decode("order", b)
    }
}

/// A piece's hash and size, signed.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct PieceHash {
    /// The piece.
    pub piece: PieceId,
    /// BLAKE3 of its bytes.
    pub hash: [u8; 32],
    /// Its size.
    pub size: u64,
    /// Unix time (s) of signing.
    pub timestamp: u64,
    /// Signature by the uplink (or, on a receipt, by the node).
    pub signature: Vec<u8>,
}

impl PieceHash {
    fn fields(&self) -> (&PieceId, &[u8; 32], u64, u64) {
        (&self.piece, &self.hash, self.size, self.timestamp)
    }

    /// A signed hash.
    pub fn sign(
        piece: PieceId,
        hash: [u8; 32],
        size: u64,
        timestamp: u64,
        by: &orbit_identity::Identity,
    ) -> PieceHash {
        let mut h = PieceHash {
            piece,
            hash,
            size,
            timestamp,
            signature: Vec::new(),
        };
        h.signature = by.sign(&signing_bytes(b"orbit-piece-hash-v1", &h.fields()));
        h
    }

    /// Checks `key` signed it.
    pub fn verify(&self, key: &PublicKey) -> Result<(), ProtocolError> {
        key.verify(
            &signing_bytes(b"orbit-piece-hash-v1", &self.fields()),
            &self.signature,
        )?;
        Ok(())
    }

    /// Its encoding.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes one.
    pub fn decode(b: &[u8]) -> Result<PieceHash, ProtocolError> {
        decode("piece hash", b)
    }
}

/// One transfer a node served: what allowed it and what the uplink signed for. Nodes
/// keep these and hand them to the satellite to settle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Served {
    /// The limit.
    pub limit: OrderLimit,
    /// The uplink's order for the bytes it used.
    pub order: Order,
}

/// A served transfer in format 1.
#[derive(Serialize, Deserialize)]
struct ServedV1 {
    limit: OrderLimitV1,
    order: Order,
}

impl From<ServedV1> for Served {
    fn from(s: ServedV1) -> Served {
        Served {
            limit: s.limit.into(),
            order: s.order,
        }
    }
}

/// Served transfers in format 1.
#[derive(Deserialize)]
struct ServedListV1(Vec<ServedV1>);

impl From<ServedListV1> for Vec<Served> {
    fn from(l: ServedListV1) -> Vec<Served> {
        l.0.into_iter().map(Served::from).collect()
    }
}

/// Encodes a versioned list of served transfers (a settlement's body).
pub fn encode_served(s: &[Served]) -> Vec<u8> {
    encode_as(LIMIT_FORMAT, &s)
}

/// Decodes a settlement's body.
pub fn decode_served(b: &[u8]) -> Result<Vec<Served>, ProtocolError> {
    decode_limits::<_, ServedListV1>("served orders", b)
}

impl Served {
    /// Decodes one transfer as nodes recorded them before records carried a format
    /// version (format 1's layout, bare).
    pub fn decode_unversioned_v1(b: &[u8]) -> Result<Served, ProtocolError> {
        bincode_body::<ServedV1>("served order", b).map(Served::from)
    }
}

/// A node's check-in: where it listens and what it can store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckIn {
    /// Its piecestore URL (`https://host:port`).
    pub address: String,
    /// Bytes free for pieces.
    pub free: u64,
    /// Its software version.
    pub version: String,
    /// Unix time (s) it was signed, bounding replays.
    pub timestamp: u64,
}

impl CheckIn {
    /// Its encoding.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes one.
    pub fn decode(b: &[u8]) -> Result<CheckIn, ProtocolError> {
        decode("check-in", b)
    }
}

/// What a garbage-collection filter is, signed by the satellite that built it: the
/// node trashes that satellite's pieces stored before `created` (less its skew) that
/// the filter does not contain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetainHeader {
    /// The satellite.
    pub satellite: NodeId,
    /// The node it is for.
    pub node: NodeId,
    /// Unix time (s) of the newest segment the filter's pass saw.
    pub created: u64,
    /// The pass that built it (store revision): of two filters with one creation
    /// time, the later pass's is newer (a fresh seed catches other false positives).
    pub pass: i64,
    /// Pieces in the filter.
    pub pieces: u64,
    /// Bytes of the encoded filter that follow.
    pub bytes: u64,
    /// BLAKE3 of them.
    pub hash: [u8; 32],
    /// The satellite's signature.
    pub signature: Vec<u8>,
}

type RetainFields<'a> = (&'a NodeId, &'a NodeId, u64, i64, u64, u64, &'a [u8; 32]);

impl RetainHeader {
    fn fields(&self) -> RetainFields<'_> {
        (
            &self.satellite,
            &self.node,
            self.created,
            self.pass,
            self.pieces,
            self.bytes,
            &self.hash,
        )
    }

    /// The header of `filter` for `node`, signed as `satellite`.
    pub fn sign(
        satellite: &orbit_identity::Identity,
        node: NodeId,
        created: u64,
        pass: i64,
        pieces: u64,
        filter: &[u8],
    ) -> RetainHeader {
        let mut h = RetainHeader {
            satellite: satellite.id(),
            node,
            created,
            pass,
            pieces,
            bytes: filter.len() as u64,
            hash: *blake3::hash(filter).as_bytes(),
            signature: Vec::new(),
        };
        h.signature = satellite.sign(&signing_bytes(b"orbit-retain-v1", &h.fields()));
        h
    }

    /// Checks that `key` signed it and is the satellite it names.
    pub fn verify(&self, key: &PublicKey) -> Result<(), ProtocolError> {
        if key.id() != self.satellite {
            return Err(ProtocolError::WrongSigner {
                what: "retain header",
                got: self.satellite,
                want: key.id(),
            });
        }
        key.verify(
            &signing_bytes(b"orbit-retain-v1", &self.fields()),
            &self.signature,
        )?;
        Ok(())
    }

    /// Its encoding.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes one.
    pub fn decode(b: &[u8]) -> Result<RetainHeader, ProtocolError> {
        decode("retain header", b)
    }
}

/// A satellite's order to bring its pieces back from a node's trash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreTrash {
    /// The satellite.
    pub satellite: NodeId,
    /// The node.
    pub node: NodeId,
    /// Unix time (s) of signing, bounding replays.
    pub timestamp: u64,
    /// The satellite's signature.
    pub signature: Vec<u8>,
}

impl RestoreTrash {
    /// An order for `node`, signed as `satellite` at `timestamp`.
    pub fn sign(
        satellite: &orbit_identity::Identity,
        node: NodeId,
        timestamp: u64,
    ) -> RestoreTrash {
        let mut r = RestoreTrash {
            satellite: satellite.id(),
            node,
            timestamp,
            signature: Vec::new(),
        };
        r.signature = satellite.sign(&signing_bytes(
            b"orbit-restore-trash-v1",
            &(&r.satellite, &r.node, r.timestamp),
        ));
        r
    }

    /// Checks that `key` signed it and is the satellite it names.
    pub fn verify(&self, key: &PublicKey) -> Result<(), ProtocolError> {
        if key.id() != self.satellite {
            return Err(ProtocolError::WrongSigner {
                what: "restore-trash order",
                got: self.satellite,
                want: key.id(),
            });
        }
        key.verify(
            &signing_bytes(
                b"orbit-restore-trash-v1",
                &(&self.satellite, &self.node, self.timestamp),
            ),
            &self.signature,
        )?;
        Ok(())
    }

    /// Its encoding.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes one.
    pub fn decode(b: &[u8]) -> Result<RestoreTrash, ProtocolError> {
        decode("restore-trash order", b)
    }
}

/// A node's request for its own standing at a satellite.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatsRequest {
    /// What this is (so no other signed body reads as one).
    pub what: String,
    /// The satellite asked (a request for one satellite is no good at another).
    pub satellite: NodeId,
    /// Unix time (s) it was signed, bounding replays.
    pub timestamp: u64,
}

impl NodeStatsRequest {
    /// The `what` of every stats request.
    pub const WHAT: &'static str = "orbit node stats request";

    /// A request to `satellite` at `timestamp`.
    pub fn new(satellite: NodeId, timestamp: u64) -> NodeStatsRequest {
        NodeStatsRequest {
            what: Self::WHAT.into(),
            satellite,
            timestamp,
        }
    }

    /// Its encoding.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes one.
    pub fn decode(b: &[u8]) -> Result<NodeStatsRequest, ProtocolError> {
        let r: NodeStatsRequest = decode("node stats request", b)?;
        if r.what != Self::WHAT {
            return Err(ProtocolError::Malformed {
                what: "node stats request",
                why: "not a stats request".into(),
            });
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orbit_identity::Identity;

    fn limit(sat: &Identity, uplink: &Identity, node: &Identity) -> OrderLimit {
        OrderLimit {
            serial: rand::random(),
            satellite: NodeId::default(),
            uplink: uplink.public(),
            node: node.id(),
            piece: PieceId::random(),
            action: Action::Put,
            limit: 1 << 20,
            piece_expiration: 0,
            order_expiration: 2_000_000_000,
            metadata: Vec::new(),
            signature: Vec::new(),
        }
        .sign(sat)
    }

    #[test]
    fn limits_orders_and_hashes_verify_and_detect_tampering() {
        let (sat, up, node) = (
            Identity::generate(),
            Identity::generate(),
            Identity::generate(),
        );
        let l = limit(&sat, &up, &node);
        l.verify(&sat.public()).unwrap();
        let decoded = OrderLimit::decode(&l.encode()).unwrap();
        assert_eq!(decoded, l);
        // Another satellite's key, or a changed field: refused.
        assert!(l.verify(&Identity::generate().public()).is_err());
        let mut bigger = l.clone();
        bigger.limit += 1;
        assert!(bigger.verify(&sat.public()).is_err());
        let forged = OrderLimit { ..l.clone() }.sign(&Identity::generate());
        assert!(forged.verify(&sat.public()).is_err());

        let o = Order::sign(&l, 100, &up);
        o.verify(&l).unwrap();
        let mut more = o.clone();
        more.amount = 1000;
        assert!(more.verify(&l).is_err());
        assert!(Order::sign(&l, 100, &node).verify(&l).is_err());

        // Metadata is signed: changing or dropping it voids the limit.
        let mut with = l.clone();
        with.metadata = b"sealed".to_vec();
        let with = with.sign(&sat);
        with.verify(&sat.public()).unwrap();
        assert_eq!(OrderLimit::decode(&with.encode()).unwrap(), with);
        let mut other = with.clone();
        other.metadata[0] ^= 1;
        assert!(other.verify(&sat.public()).is_err());
        let mut dropped = with.clone();
        dropped.metadata.clear();
        assert!(dropped.verify(&sat.public()).is_err());

        // A limit and a settlement body in format 1 (before metadata) still decode and
        // verify: orders a node kept across the upgrade are still paid.
        let v1 = OrderLimitV1 {
            serial: l.serial,
            satellite: l.satellite,
            uplink: l.uplink,
            node: l.node,
            piece: l.piece,
            action: l.action,
            limit: l.limit,
            piece_expiration: l.piece_expiration,
            order_expiration: l.order_expiration,
            signature: l.signature.clone(),
        };
        let mut old = vec![1u8];
        old.extend(bincode::serialize(&v1).unwrap());
        let back = OrderLimit::decode(&old).unwrap();
        assert_eq!(back, l);
        back.verify(&sat.public()).unwrap();
        let served = ServedV1 {
            limit: v1,
            order: Order::sign(&l, 9, &up),
        };
        let bare = bincode::serialize(&served).unwrap();
        assert_eq!(Served::decode_unversioned_v1(&bare).unwrap().limit, l);
        let mut body = vec![1u8];
        body.extend(bincode::serialize(&vec![served]).unwrap());
        assert_eq!(decode_served(&body).unwrap()[0].limit, l);
        let mut v9 = l.encode();
        v9[0] = 9;
        assert!(OrderLimit::decode(&v9).is_err());

        let h = PieceHash::sign(l.piece, [1; 32], 5, 7, &up);
        h.verify(&up.public()).unwrap();
        assert!(h.verify(&node.public()).is_err());
        assert_eq!(PieceHash::decode(&h.encode()).unwrap(), h);
        let mut v2 = h.encode();
        v2[0] = 2;
        assert!(PieceHash::decode(&v2)
            .unwrap_err()
            .to_string()
            .contains("format version 2"));
    }

    #[test]
    fn piece_ids_differ_per_node_and_number() {
        let root = PieceId::random();
        let (a, b) = (Identity::generate().id(), Identity::generate().id());
        assert_ne!(root.derive(&a, 0), root.derive(&b, 0));
        assert_ne!(root.derive(&a, 0), root.derive(&a, 1));
        assert_eq!(root.derive(&a, 3), root.derive(&a, 3));
    }
}
