//! The escrow ledger in the store: accounts, channels and claims, each change one
//! optimistic transaction that commits only if nothing it read has changed since —
//! no lock, so a replica that dies mid-request leaves nothing held.
//!
//! Keys under `/orbit/escrow/<escrow address>/`: `acct/<address>`, `chan/<id>`,
//! `claim/<id>/<nonce>`, `next_channel`. Values are JSON with a format version:
//! `{"v": 1, "r": record}`.

use crate::crypto::{recover_signer, Address, SignatureError};
use crate::model::{channel_state_digest, Account, Channel, Claim, Op, Payment, SignedOp};
use orbit_kv::{
    Compare, CompareOp, CompareTarget, DeleteRequest, Kv, KvError, PutRequest, RangeRequest, TxnOp,
    TxnOpResponse, TxnRequest,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;

/// Why a payment or ledger operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayError {
    /// The request is malformed.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The signature is not a valid signature.
    #[error("bad signature: {0}")]
    BadSignature(#[from] SignatureError),
    /// Signed by someone not allowed to.
    #[error("signed by {got}, who may not sign for channel {channel_id}")]
    WrongSigner {
        /// Channel id.
        channel_id: u64,
        /// Who signed.
        got: Address,
    },
    /// No such channel.
    #[error("channel {0} not found")]
    UnknownChannel(u64),
    /// The payment is for another nonce than the channel's.
    #[error("incorrect payment nonce {got}: channel {channel_id} is at nonce {want}; fetch the channel state and pay on its nonce")]
    IncorrectNonce {
        /// Channel id.
        channel_id: u64,
        /// The channel's nonce.
        want: u64,
        /// The payment's nonce.
        got: u64,
    },
    /// This very payment was accepted before.
    #[error(
        "payment already accepted: channel {channel_id} nonce {nonce} amount {amount} (a replay)"
    )]
    AlreadyAccepted {
        /// Channel id.
        channel_id: u64,
        /// Nonce.
        nonce: u64,
        /// Amount.
        amount: u64,
    },
    /// The increment over the last authorized amount is not the price.
    #[error("payment of {got} over the last authorized amount {authorized}; the price is {price}")]
    WrongAmount {
        /// Last authorized amount.
        authorized: u64,
        /// The increment paid (0 or less shows as 0).
        got: u64,
        /// The price.
        price: u64,
    },
    /// More than the channel holds.
    #[error("amount {amount} exceeds channel {channel_id}'s value {value}; add funds")]
    OverValue {
        /// Channel id.
        channel_id: u64,
        /// Amount.
        amount: u64,
        /// Channel value.
        value: u64,
    },
    /// The channel expires too soon (or has expired).
    #[error("channel {channel_id} expires at {expiration}, too soon to accept payments (now {now}, threshold {threshold_s} s); extend it")]
    Expiring {
        /// Channel id.
        channel_id: u64,
        /// Its expiration.
        expiration: u64,
        /// Now.
        now: u64,
        /// The threshold.
        threshold_s: u64,
    },
    /// The account's balance does not cover it.
    #[error("balance {balance} is less than {need}")]
    InsufficientFunds {
        /// Balance.
        balance: u64,
        /// Needed.
        need: u64,
    },
    /// The operation was signed at another op nonce than the account's.
    #[error("operation signed at op nonce {got}, the account is at {want}")]
    OpNonce {
        /// The account's.
        want: u64,
        /// The operation's.
        got: u64,
    },
    /// The operation is not allowed (not the sender, not expired yet, …).
    #[error("{0}")]
    NotAllowed(String),
    /// The request was signed too long ago or in the future.
    #[error("request time {got} is more than {skew_s} s away from now ({now})")]
    Stale {
        /// Its time.
        got: u64,
        /// Now.
        now: u64,
        /// Allowed skew.
        skew_s: u64,
    },
    /// Others kept changing the same records; try again.
    #[error("too many concurrent changes to the same channel or account; try again")]
    Conflict,
    /// A ledger record in the store does not parse.
    #[error("corrupt ledger record {0}")]
    Corrupt(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] KvError),
}

/// What a client learns of its channel (the MPE daemon's channel state).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelState {
    /// The channel, with its current nonce, last authorized amount and signature.
    pub channel: Channel,
    /// The previous nonce's claim not yet finished, if any: its amount and signature.
    pub old_nonce: Option<(u64, Vec<u8>)>,
}

/// Checks a payment signed by `signer` against channel version `ch`; returns the
/// channel as it is once the payment is accepted.
fn validate(
    ch: &Channel,
    p: &Payment,
    signer: Address,
    price: u64,
    now: u64,
    threshold_s: u64,
) -> Result<Channel, PayError> {
    if signer != ch.signer && signer != ch.sender {
        return Err(PayError::WrongSigner {
            channel_id: ch.id,
            got: signer,
        });
    }
    if p.nonce != ch.nonce {
        return Err(PayError::IncorrectNonce {
            channel_id: ch.id,
            want: ch.nonce,
            got: p.nonce,
        });
    }
    if p.amount == ch.authorized && p.signature == ch.signature {
        return Err(PayError::AlreadyAccepted {
            channel_id: ch.id,
            nonce: ch.nonce,
            amount: p.amount,
        });
    }
    if p.amount.checked_sub(ch.authorized) != Some(price) {
        return Err(PayError::WrongAmount {
            authorized: ch.authorized,
            got: p.amount.saturating_sub(ch.authorized),
            price,
        });
    }
    if p.amount > ch.value {
        return Err(PayError::OverValue {
            channel_id: ch.id,
            amount: p.amount,
            value: ch.value,
        });
    }
    if now.saturating_add(threshold_s) >= ch.expiration {
        return Err(PayError::Expiring {
            channel_id: ch.id,
            expiration: ch.expiration,
            now,
            threshold_s,
        });
    }
    Ok(Channel {
        authorized: p.amount,
        signature: p.signature.clone(),
        ..ch.clone()
    })
}

/// Takes `amount` from an account's balance, or says it is not there.
fn debit(a: &mut Account, amount: u64) -> Result<(), PayError> {
    a.balance = a
        .balance
        .checked_sub(amount)
        .ok_or(PayError::InsufficientFunds {
            balance: a.balance,
            need: amount,
        })?;
    Ok(())
}

/// The channel, if `who` is its sender: only the sender may `action` it.
fn own_channel(ch: Channel, who: Address, action: &str) -> Result<Channel, PayError> {
    if ch.sender == who {
        Ok(ch)
    } else {
        Err(PayError::NotAllowed(format!(
            "only channel {}'s sender {} may {action}",
            ch.id, ch.sender
        )))
    }
}

/// The channel versions this replica last wrote: where a payment is first judged.
/// Never trusted for a refusal or a commit — the compare-and-swap checks the version.
#[derive(Clone, Default)]
struct ChannelCache(Arc<std::sync::Mutex<std::collections::HashMap<u64, (Channel, i64)>>>);

/// Most channels remembered; beyond it the cache starts over.
const CACHE_CHANNELS: usize = 100_000;

impl ChannelCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, (Channel, i64)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, id: u64) -> Option<(Channel, i64)> {
        self.lock().get(&id).cloned()
    }

    fn put(&self, ch: Channel, mod_revision: i64) {
        let mut map = self.lock();
        if map.len() >= CACHE_CHANNELS {
            map.clear();
        }
        map.insert(ch.id, (ch, mod_revision));
    }

    fn forget(&self, id: u64) {
        self.lock().remove(&id);
    }
}

/// How many times an optimistic update is retried before giving up.
const ATTEMPTS: usize = 32;

/// The escrow ledger of one escrow address.
#[derive(Clone)]
pub struct Escrow {
    kv: Arc<dyn Kv>,
    address: Address,
    prefix: String,
    cache: ChannelCache,
}

/// A key read for an update: its value and mod revision (0 when absent).
struct Read {
    value: Option<Vec<u8>>,
    mod_revision: i64,
}

/// Format version of the ledger's records.
const FORMAT: u32 = 1;

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, PayError> {
    orbit_kv::record::decode_version("ledger record", FORMAT, key.as_bytes(), bytes)
        .map_err(|e| PayError::Corrupt(e.to_string()))
}

fn encode<T: Serialize>(r: &T) -> Vec<u8> {
    orbit_kv::record::encode_version(FORMAT, r)
}

impl Escrow {
    /// The ledger of `address` in `kv`.
    pub fn new(kv: Arc<dyn Kv>, address: Address) -> Escrow {
        Escrow {
            kv,
            prefix: format!("/orbit/escrow/{address}/"),
            address,
            cache: ChannelCache::default(),
        }
    }

    /// The escrow's address (part of every signed payment).
    pub fn address(&self) -> Address {
        self.address
    }

    fn acct_key(&self, a: &Address) -> String {
        format!("{}acct/{a}", self.prefix)
    }

    fn chan_key(&self, id: u64) -> String {
        format!("{}chan/{id:020}", self.prefix)
    }

    /// The index of `sender`'s channels: one key per channel it opened.
    fn sender_prefix(&self, sender: &Address) -> String {
        format!("{}by-sender/{sender}/", self.prefix)
    }

    fn claim_prefix(&self) -> String {
        format!("{}claim/", self.prefix)
    }

    fn claim_key(&self, id: u64, nonce: u64) -> String {
        format!("{}{id:020}/{nonce:020}", self.claim_prefix())
    }

    fn counter_key(&self) -> String {
        format!("{}next_channel", self.prefix)
    }

    /// Reads `keys` at one revision.
    async fn read_all(&self, keys: &[String]) -> Result<Vec<Read>, PayError> {
        let txn = TxnRequest {
            compare: Vec::new(),
            success: keys
                .iter()
                .map(|k| TxnOp::Range(RangeRequest::key(k.clone())))
                .collect(),
            failure: Vec::new(),
        };
        let resp = self.kv.txn(txn).await?;
        Ok(resp
            .responses
            .into_iter()
            .map(|r| match r {
                TxnOpResponse::Range(r) => match r.kvs.into_iter().next() {
                    Some(kv) => Read {
                        value: Some(kv.value),
                        mod_revision: kv.mod_revision,
                    },
                    None => Read {
                        value: None,
                        mod_revision: 0,
                    },
                },
                _ => Read {
                    value: None,
                    mod_revision: 0,
                },
            })
            .collect())
    }

    /// Reads `keys`, lets `decide` choose the writes (`None` deletes), and commits them
    /// only if none of the keys changed meanwhile; on a change, starts over.
    async fn update<R>(
        &self,
        keys: &[String],
        mut decide: impl FnMut(
            &[Option<Vec<u8>>],
        ) -> Result<(Vec<(String, Option<Vec<u8>>)>, R), PayError>,
    ) -> Result<R, PayError> {
        for _ in 0..ATTEMPTS {
            let reads = self.read_all(keys).await?;
            let values: Vec<Option<Vec<u8>>> = reads.iter().map(|r| r.value.clone()).collect();
            let (writes, result) = decide(&values)?;
            if writes.is_empty() {
                return Ok(result);
            }
            let txn = TxnRequest {
                compare: keys
                    .iter()
                    .zip(&reads)
                    .map(|(k, r)| {
                        Compare::new(
                            k.clone(),
                            CompareOp::Equal,
                            CompareTarget::Mod(r.mod_revision),
                        )
                    })
                    .collect(),
                success: writes
                    .into_iter()
                    .map(|(k, v)| match v {
                        Some(v) => TxnOp::Put(PutRequest::new(k, v)),
                        None => TxnOp::Delete(DeleteRequest::key(k)),
                    })
                    .collect(),
                failure: Vec::new(),
            };
            if self.kv.txn(txn).await?.succeeded {
                return Ok(result);
            }
        }
        Err(PayError::Conflict)
    }

    async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<(T, i64)>, PayError> {
        let r = self.kv.range(RangeRequest::key(key.to_string())).await?;
        match r.kvs.first() {
            Some(kv) => Ok(Some((decode(key, &kv.value)?, kv.mod_revision))),
            None => Ok(None),
        }
    }

    /// An account (empty if it never held anything).
    pub async fn account(&self, a: &Address) -> Result<Account, PayError> {
        Ok(self
            .get(&self.acct_key(a))
            .await?
            .map(|(a, _)| a)
            .unwrap_or_default())
    }

    /// A channel.
    pub async fn channel(&self, id: u64) -> Result<Channel, PayError> {
        self.get(&self.chan_key(id))
            .await?
            .map(|(c, _)| c)
            .ok_or(PayError::UnknownChannel(id))
    }

    /// Credits `amount` to an account: the operator's entry of money received off the
    /// ledger.
    pub async fn deposit(&self, to: &Address, amount: u64) -> Result<Account, PayError> {
        let key = self.acct_key(to);
        self.update(std::slice::from_ref(&key), |v| {
            let mut a: Account = v[0]
                .as_deref()
                .map(|b| decode(&key, b))
                .transpose()?
                .unwrap_or_default();
            a.balance = a
                .balance
                .checked_add(amount)
                .ok_or_else(|| PayError::Malformed("balance would overflow".into()))?;
            Ok((vec![(key.clone(), Some(encode(&a)))], a))
        })
        .await
    }

    /// Applies an operation signed by an account; returns the account and the channel
    /// it touched.
    pub async fn apply(
        &self,
        signed: &SignedOp,
        now: u64,
    ) -> Result<(Account, Option<Channel>), PayError> {
        let who = signed.account(&self.address)?;
        let acct_key = self.acct_key(&who);
        let check_nonce = |a: &Account| {
            if a.op_nonce != signed.op_nonce {
                Err(PayError::OpNonce {
                    want: a.op_nonce,
                    got: signed.op_nonce,
                })
            } else {
                Ok(())
            }
        };
        let load_acct = |v: &Option<Vec<u8>>| -> Result<Account, PayError> {
            Ok(v.as_deref()
                .map(|b| decode(&acct_key, b))
                .transpose()?
                .unwrap_or_default())
        };
        match &signed.op {
            Op::Withdraw { amount } => {
                self.update(std::slice::from_ref(&acct_key), |v| {
                    let mut a = load_acct(&v[0])?;
                    check_nonce(&a)?;
                    debit(&mut a, *amount)?;
                    a.op_nonce += 1;
                    Ok((vec![(acct_key.clone(), Some(encode(&a)))], (a, None)))
                })
                .await
            }
            Op::Open {
                signer,
                recipient,
                group_id,
                value,
                expiration,
            } => {
                if *expiration <= now {
                    return Err(PayError::Malformed(format!(
                        "expiration {expiration} is not in the future (now {now})"
                    )));
                }
                let counter = self.counter_key();
                self.update(&[acct_key.clone(), counter.clone()], |v| {
                    let mut a = load_acct(&v[0])?;
                    check_nonce(&a)?;
                    let last: u64 = v[1]
                        .as_deref()
                        .map(|b| decode(&counter, b))
                        .transpose()?
                        .unwrap_or(0);
                    let id = last + 1;
                    debit(&mut a, *value)?;
                    a.op_nonce += 1;
                    let ch = Channel {
                        id,
                        sender: who,
                        signer: *signer,
                        recipient: *recipient,
                        group_id: *group_id,
                        value: *value,
                        nonce: 0,
                        expiration: *expiration,
                        authorized: 0,
                        signature: Vec::new(),
                    };
                    Ok((
                        vec![
                            (acct_key.clone(), Some(encode(&a))),
                            (counter.clone(), Some(encode(&id))),
                            (self.chan_key(id), Some(encode(&ch))),
                            // In the same write: the index never misses a channel.
                            (
                                format!("{}{id:020}", self.sender_prefix(&who)),
                                Some(encode(&id)),
                            ),
                        ],
                        (a, Some(ch)),
                    ))
                })
                .await
            }
            Op::AddFunds { channel_id, amount } => {
                let chan_key = self.chan_key(*channel_id);
                self.update(&[acct_key.clone(), chan_key.clone()], |v| {
                    let mut a = load_acct(&v[0])?;
                    check_nonce(&a)?;
                    let mut ch =
                        own_channel(self.load_channel(*channel_id, &v[1])?, who, "add funds")?;
                    debit(&mut a, *amount)?;
                    a.op_nonce += 1;
                    ch.value = ch.value.checked_add(*amount).ok_or_else(|| {
                        PayError::Malformed("channel value would overflow".into())
                    })?;
                    Ok((
                        vec![
                            (acct_key.clone(), Some(encode(&a))),
                            (chan_key.clone(), Some(encode(&ch))),
                        ],
                        (a, Some(ch)),
                    ))
                })
                .await
            }
            Op::Extend {
                channel_id,
                expiration,
            } => {
                let chan_key = self.chan_key(*channel_id);
                self.update(&[acct_key.clone(), chan_key.clone()], |v| {
                    let mut a = load_acct(&v[0])?;
                    check_nonce(&a)?;
                    let mut ch =
                        own_channel(self.load_channel(*channel_id, &v[1])?, who, "extend it")?;
                    if *expiration < ch.expiration {
                        return Err(PayError::NotAllowed(format!(
                            "expiration can only move later than {}",
                            ch.expiration
                        )));
                    }
                    a.op_nonce += 1;
                    ch.expiration = *expiration;
                    Ok((
                        vec![
                            (acct_key.clone(), Some(encode(&a))),
                            (chan_key.clone(), Some(encode(&ch))),
                        ],
                        (a, Some(ch)),
                    ))
                })
                .await
            }
            Op::ClaimTimeout { channel_id } => {
                let chan_key = self.chan_key(*channel_id);
                let ch = self.channel(*channel_id).await?;
                let rcpt_key = self.acct_key(&ch.recipient);
                let mut keys = vec![acct_key.clone(), chan_key.clone()];
                if rcpt_key != acct_key {
                    keys.push(rcpt_key.clone());
                }
                self.update(&keys, |v| {
                    let mut a = load_acct(&v[0])?;
                    check_nonce(&a)?;
                    let mut ch = own_channel(self.load_channel(*channel_id, &v[1])?, who, "take its funds back")?;
                    if now < ch.expiration {
                        return Err(PayError::NotAllowed(format!(
                            "channel {channel_id} expires at {}; funds come back only after (now {now})",
                            ch.expiration
                        )));
                    }
                    // What was authorized is the recipient's; the rest goes back.
                    let paid = ch.authorized;
                    let back = ch.value - paid;
                    a.op_nonce += 1;
                    a.balance += back;
                    let mut writes = Vec::new();
                    if v.len() == 3 {
                        let mut r: Account =
                            v[2].as_deref().map(|b| decode(&rcpt_key, b)).transpose()?.unwrap_or_default();
                        r.balance += paid;
                        writes.push((rcpt_key.clone(), Some(encode(&r))));
                    } else {
                        a.balance += paid;
                    }
                    ch.value = 0;
                    ch.authorized = 0;
                    ch.signature = Vec::new();
                    ch.nonce += 1;
                    writes.push((acct_key.clone(), Some(encode(&a))));
                    writes.push((chan_key.clone(), Some(encode(&ch))));
                    Ok((writes, (a, Some(ch))))
                })
                .await
            }
        }
    }

    fn load_channel(&self, id: u64, v: &Option<Vec<u8>>) -> Result<Channel, PayError> {
        match v {
            Some(b) => decode(&self.chan_key(id), b),
            None => Err(PayError::UnknownChannel(id)),
        }
    }

    /// Validates a payment of `price` and commits it: the channel's authorized amount
    /// becomes the payment's, by one compare-and-swap on the channel's mod revision.
    /// `now` and `threshold_s` bound how close to expiration a payment is taken.
    ///
    /// The channel version to validate against comes from this replica's cache when it
    /// has one; the compare-and-swap is what makes that safe — it commits only if the
    /// channel is still exactly that version, and when it is not, the transaction
    /// returns the current version and the payment is judged again. So a payment is
    /// refused only on the channel's current state, and a sequence of payments through
    /// one replica costs one store round trip each.
    pub async fn pay(
        &self,
        p: &Payment,
        price: u64,
        now: u64,
        threshold_s: u64,
    ) -> Result<Channel, PayError> {
        self.pay_recorded(p, price, now, threshold_s, &|_, _| Vec::new())
            .await
    }

    /// [`Escrow::pay`], writing `record(amount added, amount authorized)` in the same
    /// transaction as the payment: what the caller keeps of a payment exists exactly
    /// when it does.
    pub async fn pay_recorded(
        &self,
        p: &Payment,
        price: u64,
        now: u64,
        threshold_s: u64,
        record: &(dyn Fn(u64, u64) -> Vec<TxnOp> + Send + Sync),
    ) -> Result<Channel, PayError> {
        let key = self.chan_key(p.channel_id);
        // The signature first: nothing about the channel is told to a forger.
        let signer = p.signer(&self.address)?;
        let (mut current, mut fresh) = match self.cache.get(p.channel_id) {
            Some(c) => (Some(c), false),
            None => (self.get::<Channel>(&key).await?, true),
        };
        for _ in 0..ATTEMPTS {
            let Some((ch, rev)) = current.take() else {
                self.cache.forget(p.channel_id);
                return Err(PayError::UnknownChannel(p.channel_id));
            };
            let next = match validate(&ch, p, signer, price, now, threshold_s) {
                Ok(next) => next,
                Err(e) if fresh => return Err(e),
                // Judged on a cached version: judge again on the current one.
                Err(_) => {
                    current = self.get::<Channel>(&key).await?;
                    fresh = true;
                    continue;
                }
            };
            let added = if next.nonce == ch.nonce {
                next.authorized.saturating_sub(ch.authorized)
            } else {
                next.authorized
            };
            let mut success = vec![TxnOp::Put(PutRequest::new(key.clone(), encode(&next)))];
            success.extend(record(added, next.authorized));
            let txn = TxnRequest {
                compare: vec![Compare::new(
                    key.clone(),
                    CompareOp::Equal,
                    CompareTarget::Mod(rev),
                )],
                success,
                failure: vec![TxnOp::Range(RangeRequest::key(key.clone()))],
            };
            let resp = self.kv.txn(txn).await?;
            if resp.succeeded {
                self.cache.put(next.clone(), resp.revision);
                return Ok(next);
            }
            // The channel changed since that version: judge the payment again against
            // the current one (a concurrent copy of it makes this one a replay).
            current = match resp.responses.into_iter().next() {
                Some(TxnOpResponse::Range(r)) => match r.kvs.into_iter().next() {
                    Some(kv) => Some((decode(&key, &kv.value)?, kv.mod_revision)),
                    None => None,
                },
                _ => self.get::<Channel>(&key).await?,
            };
            fresh = true;
        }
        Err(PayError::Conflict)
    }

    /// The channel's state for a client that proves it is the channel's signer or
    /// sender by signing [`channel_state_digest`] at `unix_s`, within `skew_s` of `now`.
    pub async fn channel_state(
        &self,
        channel_id: u64,
        unix_s: u64,
        signature: &[u8],
        now: u64,
        skew_s: u64,
    ) -> Result<ChannelState, PayError> {
        let who = recover_signer(
            &channel_state_digest(&self.address, channel_id, unix_s),
            signature,
        )?;
        if unix_s.abs_diff(now) > skew_s {
            return Err(PayError::Stale {
                got: unix_s,
                now,
                skew_s,
            });
        }
        let channel = self.channel(channel_id).await?;
        if who != channel.signer && who != channel.sender {
            return Err(PayError::WrongSigner {
                channel_id,
                got: who,
            });
        }
        let old_nonce = match channel.nonce.checked_sub(1) {
            Some(n) => self
                .get::<Claim>(&self.claim_key(channel_id, n))
                .await?
                .map(|(c, _)| (c.amount, c.signature)),
            None => None,
        };
        Ok(ChannelState { channel, old_nonce })
    }

    /// Starts a claim on a channel: in one transaction the authorized amount becomes
    /// a pending claim, leaves the channel's value, and the nonce advances (so no
    /// payment on the old nonce is accepted again). `None` when nothing is authorized.
    pub async fn start_claim(&self, channel_id: u64) -> Result<Option<Claim>, PayError> {
        let chan_key = self.chan_key(channel_id);
        self.update(std::slice::from_ref(&chan_key), |v| {
            let mut ch = self.load_channel(channel_id, &v[0])?;
            if ch.authorized == 0 {
                return Ok((Vec::new(), None));
            }
            let claim = Claim {
                channel_id,
                nonce: ch.nonce,
                amount: ch.authorized,
                recipient: ch.recipient,
                signature: std::mem::take(&mut ch.signature),
            };
            ch.value -= ch.authorized;
            ch.authorized = 0;
            ch.nonce += 1;
            Ok((
                vec![
                    (chan_key.clone(), Some(encode(&ch))),
                    (
                        self.claim_key(channel_id, claim.nonce),
                        Some(encode(&claim)),
                    ),
                ],
                Some(claim),
            ))
        })
        .await
    }

    /// Claims started and not finished.
    pub async fn pending_claims(&self) -> Result<Vec<Claim>, PayError> {
        let r = self
            .kv
            .range(RangeRequest::prefix(self.claim_prefix()))
            .await?;
        r.kvs
            .iter()
            .map(|kv| decode(&String::from_utf8_lossy(&kv.key), &kv.value))
            .collect()
    }

    /// Finishes a claim: in one transaction the recipient is credited and the claim
    /// deleted, so it is credited exactly once. False if it was already finished.
    pub async fn finish_claim(&self, channel_id: u64, nonce: u64) -> Result<bool, PayError> {
        let claim_key = self.claim_key(channel_id, nonce);
        let Some((claim, _)) = self.get::<Claim>(&claim_key).await? else {
            return Ok(false);
        };
        let rcpt_key = self.acct_key(&claim.recipient);
        self.update(&[claim_key.clone(), rcpt_key.clone()], |v| {
            let Some(b) = &v[0] else {
                return Ok((Vec::new(), false));
            };
            let claim: Claim = decode(&claim_key, b)?;
            let mut r: Account = v[1]
                .as_deref()
                .map(|b| decode(&rcpt_key, b))
                .transpose()?
                .unwrap_or_default();
            r.balance += claim.amount;
            Ok((
                vec![
                    (rcpt_key.clone(), Some(encode(&r))),
                    (claim_key.clone(), None),
                ],
                true,
            ))
        })
        .await
    }

    /// The channels `sender` opened, oldest first (those opened since the index was
    /// kept: channels of older builds are not in it).
    pub async fn channels_of(&self, sender: &Address) -> Result<Vec<Channel>, PayError> {
        let index = self
            .kv
            .range(RangeRequest::prefix(self.sender_prefix(sender)))
            .await?;
        let mut out = Vec::with_capacity(index.kvs.len());
        for kv in &index.kvs {
            let id: u64 = decode(&String::from_utf8_lossy(&kv.key), &kv.value)?;
            out.push(self.channel(id).await?);
        }
        Ok(out)
    }

    /// Every channel.
    pub async fn channels(&self) -> Result<Vec<Channel>, PayError> {
        let prefix = format!("{}chan/", self.prefix);
        let r = self.kv.range(RangeRequest::prefix(prefix)).await?;
        r.kvs
            .iter()
            .map(|kv| decode(&String::from_utf8_lossy(&kv.key), &kv.value))
            .collect()
    }

    /// Runs every claim to its end: finishes pending ones (a previous run may have
    /// stopped between the two steps), then starts and finishes one per channel with
    /// an authorized amount. Returns the total credited.
    pub async fn claim_all(&self) -> Result<u64, PayError> {
        let mut credited = 0;
        for c in self.pending_claims().await? {
            if self.finish_claim(c.channel_id, c.nonce).await? {
                credited += c.amount;
            }
        }
        for ch in self.channels().await? {
            if ch.authorized == 0 {
                continue;
            }
            if let Some(c) = self.start_claim(ch.id).await? {
                if self.finish_claim(c.channel_id, c.nonce).await? {
                    credited += c.amount;
                }
            }
        }
        Ok(credited)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Wallet;
    use orbit_testkit::{OrbitCluster, Timings};

    const NOW: u64 = 1_000_000;
    const PRICE: u64 = 10;
    const THRESHOLD: u64 = 60;

    struct Fixture {
        cluster: OrbitCluster,
        escrow: Escrow,
        sender: Wallet,
        recipient: Wallet,
    }

    async fn fixture() -> Fixture {
        let cluster = OrbitCluster::start(1, Timings::FAST).await;
        let escrow = Escrow::new(Arc::new(cluster.embedded(0)), Wallet::random().address());
        let sender = Wallet::random();
        escrow.deposit(&sender.address(), 1000).await.unwrap();
        Fixture {
            cluster,
            escrow,
            sender,
            recipient: Wallet::random(),
        }
    }

    impl Fixture {
        async fn op(&self, w: &Wallet, op: Op) -> Result<(Account, Option<Channel>), PayError> {
            let n = self.escrow.account(&w.address()).await?.op_nonce;
            self.escrow
                .apply(&SignedOp::sign(w, &self.escrow.address(), op, n), NOW)
                .await
        }

        async fn open(&self, value: u64) -> Channel {
            self.op(
                &self.sender,
                Op::Open {
                    signer: self.sender.address(),
                    recipient: self.recipient.address(),
                    group_id: [7; 32],
                    value,
                    expiration: NOW + 3600,
                },
            )
            .await
            .unwrap()
            .1
            .unwrap()
        }

        fn payment(&self, w: &Wallet, ch: &Channel, amount: u64) -> Payment {
            Payment::sign(w, &self.escrow.address(), ch.id, ch.nonce, amount)
        }

        async fn pay(&self, p: &Payment) -> Result<Channel, PayError> {
            self.escrow.pay(p, PRICE, NOW, THRESHOLD).await
        }
    }

    #[tokio::test]
    async fn channels_open_fund_extend_and_pay() {
        let f = fixture().await;
        let ch = f.open(100).await;
        assert_eq!((ch.id, ch.value, ch.nonce), (1, 100, 0));
        assert_eq!(
            f.escrow.channels_of(&f.sender.address()).await.unwrap(),
            vec![ch.clone()]
        );
        assert!(f
            .escrow
            .channels_of(&f.recipient.address())
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            f.escrow.account(&f.sender.address()).await.unwrap().balance,
            900
        );
        let ch = f.pay(&f.payment(&f.sender, &ch, 10)).await.unwrap();
        let ch = f.pay(&f.payment(&f.sender, &ch, 20)).await.unwrap();
        assert_eq!(ch.authorized, 20);
        let (_, ch) = f
            .op(
                &f.sender,
                Op::AddFunds {
                    channel_id: 1,
                    amount: 50,
                },
            )
            .await
            .unwrap();
        assert_eq!(ch.unwrap().value, 150);
        let (a, ch) = f
            .op(
                &f.sender,
                Op::Extend {
                    channel_id: 1,
                    expiration: NOW + 7200,
                },
            )
            .await
            .unwrap();
        assert_eq!(ch.unwrap().expiration, NOW + 7200);
        assert_eq!((a.balance, a.op_nonce), (850, 3));
        // A signed operation cannot be replayed: its op nonce is spent.
        let replay = SignedOp::sign(
            &f.sender,
            &f.escrow.address(),
            Op::Withdraw { amount: 1 },
            3,
        );
        f.escrow.apply(&replay, NOW).await.unwrap();
        assert!(matches!(
            f.escrow.apply(&replay, NOW).await,
            Err(PayError::OpNonce { want: 4, got: 3 })
        ));
        assert_eq!(
            f.escrow.account(&f.sender.address()).await.unwrap().balance,
            849
        );
    }

    #[tokio::test]
    async fn bad_payments_are_refused_and_change_nothing() {
        let f = fixture().await;
        let ch = f.open(100).await;
        let ch = f.pay(&f.payment(&f.sender, &ch, 10)).await.unwrap();
        let stranger = Wallet::random();
        let mut flipped = f.payment(&f.sender, &ch, 20);
        flipped.signature[5] ^= 1;
        let mut short = f.payment(&f.sender, &ch, 20);
        short.signature.truncate(64);
        let other_nonce = Payment::sign(&f.sender, &f.escrow.address(), ch.id, 1, 20);
        let unknown = Payment::sign(&f.sender, &f.escrow.address(), 99, 0, 10);
        let cases: Vec<(Payment, &str)> = vec![
            (f.payment(&stranger, &ch, 20), "wrong-signer"),
            (flipped, "wrong-signer"),
            (short, "bad-signature"),
            (other_nonce, "incorrect-nonce"),
            (f.payment(&f.sender, &ch, 25), "wrong-amount"),
            (f.payment(&f.sender, &ch, 10), "already-accepted"),
            (f.payment(&f.sender, &ch, 5), "wrong-amount"),
            (unknown, "unknown-channel"),
        ];
        for (p, want) in cases {
            let err = f.pay(&p).await.unwrap_err();
            // A flipped bit makes the signature invalid or recovers some other key:
            // never a pass.
            let flipped_ok = want == "wrong-signer" && err.reason() == "bad-signature";
            assert!(err.reason() == want || flipped_ok, "{err}, wanted {want}");
        }
        // Over the channel's value, and too close to expiration.
        let mut near = ch.clone();
        near.authorized = 100;
        let over = Payment::sign(&f.sender, &f.escrow.address(), ch.id, 0, 110);
        f.escrow
            .pay(&f.payment(&f.sender, &ch, 20), PRICE, NOW, THRESHOLD)
            .await
            .unwrap();
        let err = f.escrow.pay(&over, 90, NOW, THRESHOLD).await.unwrap_err();
        assert_eq!(err.reason(), "over-value", "{err}");
        let late = Payment::sign(&f.sender, &f.escrow.address(), ch.id, 0, 30);
        let err = f
            .escrow
            .pay(&late, PRICE, NOW + 3600 - THRESHOLD, THRESHOLD)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "expiring", "{err}");
        let after = f.escrow.channel(ch.id).await.unwrap();
        assert_eq!((after.authorized, after.nonce, after.value), (20, 0, 100));
    }

    #[tokio::test]
    async fn the_same_payment_on_many_replicas_is_accepted_once() {
        let f = fixture().await;
        let ch = f.open(500).await;
        // Three escrows on one store, each with its own cache: as three replicas.
        let replicas: Vec<Escrow> = (0..3)
            .map(|_| Escrow::new(Arc::new(f.cluster.embedded(0)), f.escrow.address()))
            .collect();
        let mut state = ch;
        for round in 1..=50 {
            let p = f.payment(&f.sender, &state, round * PRICE);
            let results = futures_join(&replicas, &p).await;
            let ok: Vec<&Channel> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
            assert_eq!(ok.len(), 1, "round {round}: {results:?}");
            for r in &results {
                if let Err(e) = r {
                    assert_eq!(e.reason(), "already-accepted", "{e}");
                }
            }
            state = ok[0].clone();
        }
    }

    #[tokio::test]
    async fn a_stale_cache_never_refuses_a_good_payment_nor_takes_a_bad_one() {
        let f = fixture().await;
        let ch = f.open(500).await;
        let a = Escrow::new(Arc::new(f.cluster.embedded(0)), f.escrow.address());
        let b = Escrow::new(Arc::new(f.cluster.embedded(0)), f.escrow.address());
        let pay = |e: &Escrow, nonce: u64, amount: u64| {
            let p = Payment::sign(&f.sender, &f.escrow.address(), ch.id, nonce, amount);
            let e = e.clone();
            async move { e.pay(&p, PRICE, NOW, THRESHOLD).await }
        };
        pay(&a, 0, 10).await.unwrap(); // a caches authorized 10
        pay(&b, 0, 20).await.unwrap(); // a's cache is now stale
        pay(&a, 0, 30).await.unwrap(); // judged again on the current version
        assert_eq!(pay(&a, 0, 20).await.unwrap_err().reason(), "wrong-amount");
        b.start_claim(ch.id).await.unwrap().unwrap(); // nonce 1 behind a's back
        assert_eq!(
            pay(&a, 0, 40).await.unwrap_err().reason(),
            "incorrect-nonce"
        );
        pay(&a, 1, 10).await.unwrap();
        let now = f.escrow.channel(ch.id).await.unwrap();
        assert_eq!((now.nonce, now.authorized, now.value), (1, 10, 470));
    }

    async fn futures_join(replicas: &[Escrow], p: &Payment) -> Vec<Result<Channel, PayError>> {
        let tasks: Vec<_> = replicas
            .iter()
            .map(|e| {
                let (e, p) = (e.clone(), p.clone());
                tokio::spawn(async move { e.pay(&p, PRICE, NOW, THRESHOLD).await })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn claims_move_the_nonce_and_credit_the_recipient_once() {
        let f = fixture().await;
        let ch = f.open(100).await;
        let ch = f.pay(&f.payment(&f.sender, &ch, 10)).await.unwrap();
        let ch = f.pay(&f.payment(&f.sender, &ch, 20)).await.unwrap();
        let claim = f.escrow.start_claim(ch.id).await.unwrap().unwrap();
        assert_eq!((claim.nonce, claim.amount), (0, 20));
        // The old nonce is spent: its payments are refused, the next nonce starts at 0.
        let old = f.payment(&f.sender, &ch, 30);
        assert_eq!(f.pay(&old).await.unwrap_err().reason(), "incorrect-nonce");
        let now = f.escrow.channel(ch.id).await.unwrap();
        assert_eq!((now.nonce, now.authorized, now.value), (1, 0, 80));
        // The channel state tells the client the unfinished claim.
        let sig = f
            .sender
            .sign_digest(&channel_state_digest(&f.escrow.address(), ch.id, NOW));
        let st = f
            .escrow
            .channel_state(ch.id, NOW, &sig, NOW, 60)
            .await
            .unwrap();
        assert_eq!(st.old_nonce.as_ref().map(|o| o.0), Some(20));
        assert_eq!(
            f.escrow.pending_claims().await.unwrap(),
            vec![claim.clone()]
        );
        // Finishing twice credits once.
        assert!(f.escrow.finish_claim(ch.id, 0).await.unwrap());
        assert!(!f.escrow.finish_claim(ch.id, 0).await.unwrap());
        assert_eq!(
            f.escrow
                .account(&f.recipient.address())
                .await
                .unwrap()
                .balance,
            20
        );
        assert!(f.escrow.pending_claims().await.unwrap().is_empty());
        // A run of every claim after a crash between start and finish completes it.
        let now = f.pay(&f.payment(&f.sender, &now, 10)).await.unwrap();
        f.escrow.start_claim(now.id).await.unwrap().unwrap();
        assert_eq!(f.escrow.claim_all().await.unwrap(), 10);
        assert_eq!(f.escrow.claim_all().await.unwrap(), 0);
        assert_eq!(
            f.escrow
                .account(&f.recipient.address())
                .await
                .unwrap()
                .balance,
            30
        );
        // Stale or foreign state requests are refused.
        assert_eq!(
            f.escrow
                .channel_state(ch.id, NOW - 120, &sig, NOW, 60)
                .await
                .unwrap_err()
                .reason(),
            "stale"
        );
    }

    #[tokio::test]
    async fn after_expiration_the_sender_takes_back_the_rest() {
        let f = fixture().await;
        let ch = f.open(100).await;
        f.pay(&f.payment(&f.sender, &ch, 10)).await.unwrap();
        let n = f
            .escrow
            .account(&f.sender.address())
            .await
            .unwrap()
            .op_nonce;
        let early = SignedOp::sign(
            &f.sender,
            &f.escrow.address(),
            Op::ClaimTimeout { channel_id: ch.id },
            n,
        );
        assert_eq!(
            f.escrow.apply(&early, NOW).await.unwrap_err().reason(),
            "not-allowed"
        );
        let (a, ch) = f.escrow.apply(&early, NOW + 3600).await.unwrap();
        let ch = ch.unwrap();
        assert_eq!((a.balance, ch.value, ch.nonce), (990, 0, 1));
        assert_eq!(
            f.escrow
                .account(&f.recipient.address())
                .await
                .unwrap()
                .balance,
            10
        );
        // Conservation: 1000 deposited, 990 + 10 accounted for.
    }
}
