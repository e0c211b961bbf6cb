//! The payments gRPC API: its configuration, the service a satellite replica serves,
//! and conversions between wire messages and ledger types.

use crate::crypto::{decode_hex, Address};
use crate::ledger::{ChannelState, Escrow, PayError};
use crate::model::{Account, Channel, Op, Payment, SignedOp};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// Generated protobuf types and gRPC stubs.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("orbit.payments.v1");
}

/// The `[payments]` section of a satellite's configuration.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentsConfig {
    /// The escrow's address: part of every signed payment, so a payment for one
    /// satellite is worthless on another.
    pub escrow: Address,
    /// Who is paid: the satellite operator's account.
    pub recipient: Address,
    /// The recipient's payment group (32 bytes, hex).
    #[serde(
        default = "default_group",
        deserialize_with = "group_hex",
        serialize_with = "hex_group"
    )]
    pub group_id: [u8; 32],
    /// A payment is refused when the channel expires within this many seconds.
    #[serde(default = "default_threshold")]
    pub expiry_threshold_s: u64,
    /// How far a signed channel-state request's time may be from now, seconds.
    #[serde(default = "default_skew")]
    pub request_skew_s: u64,
    /// Price of one request, by kind.
    #[serde(default)]
    pub prices: BTreeMap<String, u64>,
}

fn default_group() -> [u8; 32] {
    [0; 32]
}
fn default_threshold() -> u64 {
    300
}
fn default_skew() -> u64 {
    300
}
fn hex_group<S: serde::Serializer>(g: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&orbit_identity::hex_encode(g))
}
fn group_hex<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
    let s = String::deserialize(d)?;
    let b = decode_hex(s.trim_start_matches("0x")).map_err(serde::de::Error::custom)?;
    b.try_into()
        .map_err(|_| serde::de::Error::custom("group_id is 32 bytes (64 hex digits)"))
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Metadata key carrying the machine-readable reason of a refusal.
pub const REASON: &str = "x-orbit-reason";

impl PayError {
    /// A short stable name for the kind of refusal (sent as [`REASON`]).
    pub fn reason(&self) -> &'static str {
        match self {
            PayError::Malformed(_) => "malformed",
            PayError::BadSignature(_) => "bad-signature",
            PayError::WrongSigner { .. } => "wrong-signer",
            PayError::UnknownChannel(_) => "unknown-channel",
            PayError::IncorrectNonce { .. } => "incorrect-nonce",
            PayError::AlreadyAccepted { .. } => "already-accepted",
            PayError::WrongAmount { .. } => "wrong-amount",
            PayError::OverValue { .. } => "over-value",
            PayError::Expiring { .. } => "expiring",
            PayError::InsufficientFunds { .. } => "insufficient-funds",
            PayError::OpNonce { .. } => "op-nonce",
            PayError::NotAllowed(_) => "not-allowed",
            PayError::Stale { .. } => "stale",
            PayError::Conflict => "conflict",
            PayError::Corrupt(_) => "corrupt",
            PayError::Store(_) => "store",
        }
    }
}

impl From<PayError> for tonic::Status {
    fn from(e: PayError) -> tonic::Status {
        use tonic::Code;
        let code = match &e {
            PayError::Malformed(_) | PayError::WrongAmount { .. } => Code::InvalidArgument,
            PayError::BadSignature(_) => Code::Unauthenticated,
            PayError::WrongSigner { .. } | PayError::NotAllowed(_) => Code::PermissionDenied,
            PayError::UnknownChannel(_) => Code::NotFound,
            PayError::AlreadyAccepted { .. } => Code::AlreadyExists,
            PayError::IncorrectNonce { .. }
            | PayError::OverValue { .. }
            | PayError::Expiring { .. }
            | PayError::InsufficientFunds { .. }
            | PayError::OpNonce { .. }
            | PayError::Stale { .. } => Code::FailedPrecondition,
            PayError::Conflict => Code::Aborted,
            PayError::Corrupt(_) => Code::DataLoss,
            PayError::Store(_) => Code::Unavailable,
        };
        let mut status = tonic::Status::new(code, e.to_string());
        status.metadata_mut().insert(
            REASON,
            tonic::metadata::MetadataValue::from_static(e.reason()),
        );
        status
    }
}

fn addr(b: &[u8], what: &str) -> Result<Address, PayError> {
    Address::from_slice(b).map_err(|e| PayError::Malformed(format!("{what}: {e}")))
}

impl From<&Channel> for pb::ChannelMsg {
    fn from(c: &Channel) -> Self {
        pb::ChannelMsg {
            id: c.id,
            sender: c.sender.0.to_vec(),
            signer: c.signer.0.to_vec(),
            recipient: c.recipient.0.to_vec(),
            group_id: c.group_id.to_vec(),
            value: c.value,
            nonce: c.nonce,
            expiration: c.expiration,
            authorized: c.authorized,
            signature: c.signature.clone(),
        }
    }
}

impl TryFrom<&pb::ChannelMsg> for Channel {
    type Error = PayError;
    fn try_from(c: &pb::ChannelMsg) -> Result<Self, PayError> {
        Ok(Channel {
            id: c.id,
            sender: addr(&c.sender, "sender")?,
            signer: addr(&c.signer, "signer")?,
            recipient: addr(&c.recipient, "recipient")?,
            group_id: c
                .group_id
                .clone()
                .try_into()
                .map_err(|_| PayError::Malformed("group id is 32 bytes".into()))?,
            value: c.value,
            nonce: c.nonce,
            expiration: c.expiration,
            authorized: c.authorized,
            signature: c.signature.clone(),
        })
    }
}

impl From<&Account> for pb::AccountMsg {
    fn from(a: &Account) -> Self {
        pb::AccountMsg {
            balance: a.balance,
            op_nonce: a.op_nonce,
        }
    }
}

impl From<&Payment> for pb::PaymentMsg {
    fn from(p: &Payment) -> Self {
        pb::PaymentMsg {
            channel_id: p.channel_id,
            nonce: p.nonce,
            amount: p.amount,
            signature: p.signature.clone(),
        }
    }
}

impl From<&pb::PaymentMsg> for Payment {
    fn from(p: &pb::PaymentMsg) -> Self {
        Payment {
            channel_id: p.channel_id,
            nonce: p.nonce,
            amount: p.amount,
            signature: p.signature.clone(),
        }
    }
}

impl From<&SignedOp> for pb::OpRequest {
    fn from(s: &SignedOp) -> Self {
        use pb::op_request::Op as W;
        let op = match &s.op {
            Op::Withdraw { amount } => W::Withdraw(pb::Withdraw { amount: *amount }),
            Op::Open {
                signer,
                recipient,
                group_id,
                value,
                expiration,
            } => W::Open(pb::Open {
                signer: signer.0.to_vec(),
                recipient: recipient.0.to_vec(),
                group_id: group_id.to_vec(),
                value: *value,
                expiration: *expiration,
            }),
            Op::AddFunds { channel_id, amount } => W::AddFunds(pb::AddFunds {
                channel_id: *channel_id,
                amount: *amount,
            }),
            Op::Extend {
                channel_id,
                expiration,
            } => W::Extend(pb::Extend {
                channel_id: *channel_id,
                expiration: *expiration,
            }),
            Op::ClaimTimeout { channel_id } => W::ClaimTimeout(pb::ClaimTimeout {
                channel_id: *channel_id,
            }),
        };
        pb::OpRequest {
            op_nonce: s.op_nonce,
            signature: s.signature.clone(),
            op: Some(op),
        }
    }
}

impl TryFrom<&pb::OpRequest> for SignedOp {
    type Error = PayError;
    fn try_from(r: &pb::OpRequest) -> Result<Self, PayError> {
        use pb::op_request::Op as W;
        let op = match r
            .op
            .as_ref()
            .ok_or_else(|| PayError::Malformed("no operation".into()))?
        {
            W::Withdraw(w) => Op::Withdraw { amount: w.amount },
            W::Open(o) => Op::Open {
                signer: addr(&o.signer, "signer")?,
                recipient: addr(&o.recipient, "recipient")?,
                group_id: o
                    .group_id
                    .clone()
                    .try_into()
                    .map_err(|_| PayError::Malformed("group id is 32 bytes".into()))?,
                value: o.value,
                expiration: o.expiration,
            },
            W::AddFunds(a) => Op::AddFunds {
                channel_id: a.channel_id,
                amount: a.amount,
            },
            W::Extend(e) => Op::Extend {
                channel_id: e.channel_id,
                expiration: e.expiration,
            },
            W::ClaimTimeout(c) => Op::ClaimTimeout {
                channel_id: c.channel_id,
            },
        };
        Ok(SignedOp {
            op,
            op_nonce: r.op_nonce,
            signature: r.signature.clone(),
        })
    }
}

impl From<&ChannelState> for pb::ChannelStateResponse {
    fn from(s: &ChannelState) -> Self {
        let (has_old_nonce, old_nonce_amount, old_nonce_signature) = match &s.old_nonce {
            Some((a, sig)) => (true, *a, sig.clone()),
            None => (false, 0, Vec::new()),
        };
        pb::ChannelStateResponse {
            channel: Some((&s.channel).into()),
            has_old_nonce,
            old_nonce_amount,
            old_nonce_signature,
        }
    }
}

/// The payments service a satellite replica serves.
pub struct PaymentsService {
    escrow: Escrow,
    config: PaymentsConfig,
}

impl PaymentsService {
    /// The service over `escrow`, as configured.
    pub fn new(escrow: Escrow, config: PaymentsConfig) -> PaymentsService {
        PaymentsService { escrow, config }
    }

    /// As a tonic server.
    pub fn server(self) -> pb::payments_server::PaymentsServer<PaymentsService> {
        pb::payments_server::PaymentsServer::new(self)
    }

    /// The price of one request of `kind`.
    pub fn price(&self, kind: &str) -> Result<u64, PayError> {
        self.config
            .prices
            .get(kind)
            .copied()
            .ok_or_else(|| PayError::Malformed(format!("no price for request kind {kind:?}")))
    }
}

type Reply<T> = Result<tonic::Response<T>, tonic::Status>;

#[tonic::async_trait]
impl pb::payments_server::Payments for PaymentsService {
    async fn info(&self, _: tonic::Request<pb::InfoRequest>) -> Reply<pb::InfoResponse> {
        Ok(tonic::Response::new(pb::InfoResponse {
            escrow: self.config.escrow.0.to_vec(),
            recipient: self.config.recipient.0.to_vec(),
            group_id: self.config.group_id.to_vec(),
            prices: self.config.prices.clone().into_iter().collect(),
            expiry_threshold_s: self.config.expiry_threshold_s,
        }))
    }

    async fn pay(&self, r: tonic::Request<pb::PayRequest>) -> Reply<pb::PayResponse> {
        let r = r.into_inner();
        let price = self.price(&r.kind)?;
        let p: Payment = r
            .payment
            .as_ref()
            .ok_or_else(|| PayError::Malformed("no payment".into()))?
            .into();
        let ch = self
            .escrow
            .pay(&p, price, unix_now(), self.config.expiry_threshold_s)
            .await?;
        Ok(tonic::Response::new(pb::PayResponse {
            channel: Some((&ch).into()),
        }))
    }

    async fn channel_state(
        &self,
        r: tonic::Request<pb::ChannelStateRequest>,
    ) -> Reply<pb::ChannelStateResponse> {
        let r = r.into_inner();
        let s = self
            .escrow
            .channel_state(
                r.channel_id,
                r.unix_s,
                &r.signature,
                unix_now(),
                self.config.request_skew_s,
            )
            .await?;
        Ok(tonic::Response::new((&s).into()))
    }

    async fn apply(&self, r: tonic::Request<pb::OpRequest>) -> Reply<pb::OpResponse> {
        let op = SignedOp::try_from(r.get_ref())?;
        let (account, channel) = self.escrow.apply(&op, unix_now()).await?;
        Ok(tonic::Response::new(pb::OpResponse {
            account: Some((&account).into()),
            channel: channel.as_ref().map(Into::into),
        }))
    }

    async fn account(&self, r: tonic::Request<pb::AccountRequest>) -> Reply<pb::AccountMsg> {
        let a = addr(&r.get_ref().address, "address")?;
        Ok(tonic::Response::new(
            (&self.escrow.account(&a).await?).into(),
        ))
    }
}
