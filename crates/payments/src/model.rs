//! The escrow's records and the signed messages that change them.

use crate::crypto::{keccak256, recover_signer, u256_be, Address, SignatureError, Wallet};
use serde::{Deserialize, Serialize};

/// An account of the escrow ledger.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Funds not locked in any channel.
    pub balance: u64,
    /// Number of signed operations this account has made; the next must carry it.
    pub op_nonce: u64,
}

/// A payment channel: `value` locked by `sender` for `recipient` until `expiration`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    /// Channel id.
    pub id: u64,
    /// Who locked the funds, and gets back what is left after expiration.
    pub sender: Address,
    /// Who may sign payments besides the sender.
    pub signer: Address,
    /// Who is paid.
    pub recipient: Address,
    /// The recipient's payment group.
    pub group_id: [u8; 32],
    /// Funds in the channel (claimed amounts leave it).
    pub value: u64,
    /// Advances on every claim; payments are for the current nonce.
    pub nonce: u64,
    /// Unix time (s) after which the sender may take back what is left.
    pub expiration: u64,
    /// The largest amount authorized for the current nonce.
    pub authorized: u64,
    /// The signature of that authorization (empty when none).
    pub signature: Vec<u8>,
}

/// A claim in progress: the recipient takes the amount authorized for one nonce.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// Channel id.
    pub channel_id: u64,
    /// The nonce claimed.
    pub nonce: u64,
    /// The amount claimed.
    pub amount: u64,
    /// Who is credited.
    pub recipient: Address,
    /// The payment's signature, the recipient's proof.
    pub signature: Vec<u8>,
}

/// The MPE claim message: "__MPE_claim_message" ‖ escrow address ‖ channel id ‖ nonce
/// ‖ amount, each number a 32-byte big-endian integer.
pub fn claim_message(escrow: &Address, channel_id: u64, nonce: u64, amount: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(19 + 20 + 96);
    m.extend_from_slice(b"__MPE_claim_message");
    m.extend_from_slice(&escrow.0);
    m.extend_from_slice(&u256_be(channel_id));
    m.extend_from_slice(&u256_be(nonce));
    m.extend_from_slice(&u256_be(amount));
    m
}

/// A payment: the cumulative amount authorized on (channel, nonce), signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// Channel id.
    pub channel_id: u64,
    /// The channel's nonce it is for.
    pub nonce: u64,
    /// Total authorized on this nonce so far, this payment included.
    pub amount: u64,
    /// `personal_sign` of keccak256 of the claim message, by the signer or sender.
    pub signature: Vec<u8>,
}

impl Payment {
    /// The digest that is signed.
    pub fn digest(escrow: &Address, channel_id: u64, nonce: u64, amount: u64) -> [u8; 32] {
        keccak256(&[&claim_message(escrow, channel_id, nonce, amount)])
    }

    /// Signs a payment.
    pub fn sign(
        wallet: &Wallet,
        escrow: &Address,
        channel_id: u64,
        nonce: u64,
        amount: u64,
    ) -> Payment {
        Payment {
            channel_id,
            nonce,
            amount,
            signature: wallet.sign_digest(&Self::digest(escrow, channel_id, nonce, amount)),
        }
    }

    /// Its encoding for carrying inside other requests (format version byte, JSON).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![1u8];
        out.extend(serde_json::to_vec(self).expect("payments serialize"));
        out
    }

    /// Decodes [`Payment::encode`]'s output.
    pub fn decode(b: &[u8]) -> Result<Payment, String> {
        match b.split_first() {
            Some((1, rest)) => {
                serde_json::from_slice(rest).map_err(|e| format!("malformed payment: {e}"))
            }
            Some((v, _)) => Err(format!("payment format version {v}, this build reads 1")),
            None => Err("empty payment".into()),
        }
    }

    /// Who signed it.
    pub fn signer(&self, escrow: &Address) -> Result<Address, SignatureError> {
        recover_signer(
            &Self::digest(escrow, self.channel_id, self.nonce, self.amount),
            &self.signature,
        )
    }
}

/// The digest a client signs to read a channel's state: "__get_channel_state" ‖
/// escrow ‖ channel id ‖ unix time (s), the time bounding replays.
pub fn channel_state_digest(escrow: &Address, channel_id: u64, unix_s: u64) -> [u8; 32] {
    keccak256(&[
        b"__get_channel_state",
        &escrow.0,
        &u256_be(channel_id),
        &u256_be(unix_s),
    ])
}

/// An operation an account signs on the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Take `amount` out of the balance (paid out off the ledger).
    Withdraw {
        /// Amount.
        amount: u64,
    },
    /// Open a channel from the balance.
    Open {
        /// Who may sign payments.
        signer: Address,
        /// Who is paid.
        recipient: Address,
        /// The recipient's payment group.
        group_id: [u8; 32],
        /// Funds to lock.
        value: u64,
        /// Unix time (s) it expires.
        expiration: u64,
    },
    /// Move `amount` from the balance into a channel.
    AddFunds {
        /// Channel id.
        channel_id: u64,
        /// Amount.
        amount: u64,
    },
    /// Move a channel's expiration later.
    Extend {
        /// Channel id.
        channel_id: u64,
        /// New unix time (s).
        expiration: u64,
    },
    /// After expiration: the recipient is paid what was authorized, the sender gets
    /// the rest back.
    ClaimTimeout {
        /// Channel id.
        channel_id: u64,
    },
}

impl Op {
    /// The bytes signed for this operation by an account at `op_nonce`.
    pub fn digest(&self, escrow: &Address, op_nonce: u64) -> [u8; 32] {
        let mut m: Vec<u8> = Vec::with_capacity(160);
        m.extend_from_slice(b"__orbit_escrow_op");
        m.extend_from_slice(&escrow.0);
        m.extend_from_slice(&u256_be(op_nonce));
        match self {
            Op::Withdraw { amount } => {
                m.extend_from_slice(b"withdraw");
                m.extend_from_slice(&u256_be(*amount));
            }
            Op::Open {
                signer,
                recipient,
                group_id,
                value,
                expiration,
            } => {
                m.extend_from_slice(b"open");
                m.extend_from_slice(&signer.0);
                m.extend_from_slice(&recipient.0);
                m.extend_from_slice(group_id);
                m.extend_from_slice(&u256_be(*value));
                m.extend_from_slice(&u256_be(*expiration));
            }
            Op::AddFunds { channel_id, amount } => {
                m.extend_from_slice(b"add_funds");
                m.extend_from_slice(&u256_be(*channel_id));
                m.extend_from_slice(&u256_be(*amount));
            }
            Op::Extend {
                channel_id,
                expiration,
            } => {
                m.extend_from_slice(b"extend");
                m.extend_from_slice(&u256_be(*channel_id));
                m.extend_from_slice(&u256_be(*expiration));
            }
            Op::ClaimTimeout { channel_id } => {
                m.extend_from_slice(b"claim_timeout");
                m.extend_from_slice(&u256_be(*channel_id));
            }
        }
        keccak256(&[&m])
    }
}

/// An operation with the account's signature over it and its op nonce.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedOp {
    /// The operation.
    pub op: Op,
    /// The account's op nonce it was signed at.
    pub op_nonce: u64,
    /// `personal_sign` of [`Op::digest`].
    pub signature: Vec<u8>,
}

impl SignedOp {
    /// Signs `op` as the next operation of `wallet`'s account.
    pub fn sign(wallet: &Wallet, escrow: &Address, op: Op, op_nonce: u64) -> SignedOp {
        let signature = wallet.sign_digest(&op.digest(escrow, op_nonce));
        SignedOp {
            op,
            op_nonce,
            signature,
        }
    }

    /// The account that signed it.
    pub fn account(&self, escrow: &Address) -> Result<Address, SignatureError> {
        recover_signer(&self.op.digest(escrow, self.op_nonce), &self.signature)
    }
}
