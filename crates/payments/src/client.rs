//! The client side of payments: manage channels and pay for requests (what the
//! uplink uses on every paid request).

use crate::api::{pb, REASON};
use crate::crypto::{Address, Wallet};
use crate::ledger::PayError;
use crate::model::{channel_state_digest, Account, Channel, Op, Payment, SignedOp};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use tonic::transport::Channel as Transport;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The satellite refused it; `reason` is the stable name of why (see
    /// [`PayError::reason`]).
    #[error("{message}")]
    Refused {
        /// Stable name of the refusal.
        reason: String,
        /// Human-readable message.
        message: String,
    },
    /// The satellite could not be reached or answered badly.
    #[error("payments API: {0}")]
    Transport(String),
}

impl ClientError {
    /// The refusal's reason, if it was one.
    pub fn reason(&self) -> Option<&str> {
        match self {
            ClientError::Refused { reason, .. } => Some(reason),
            ClientError::Transport(_) => None,
        }
    }
}

impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> Self {
        match s.metadata().get(REASON).and_then(|v| v.to_str().ok()) {
            Some(reason) => ClientError::Refused {
                reason: reason.to_string(),
                message: s.message().to_string(),
            },
            None => ClientError::Transport(format!("{:?}: {}", s.code(), s.message())),
        }
    }
}

impl From<PayError> for ClientError {
    fn from(e: PayError) -> Self {
        ClientError::Refused {
            reason: e.reason().to_string(),
            message: e.to_string(),
        }
    }
}

/// What a satellite tells about its payments.
#[derive(Clone, Debug)]
pub struct Info {
    /// Escrow address.
    pub escrow: Address,
    /// Recipient of payments.
    pub recipient: Address,
    /// Payment group.
    pub group_id: [u8; 32],
    /// Prices by request kind.
    pub prices: BTreeMap<String, u64>,
    /// Channels expiring within this many seconds take no payments.
    pub expiry_threshold_s: u64,
}

/// A channel's state as a client learns it.
#[derive(Clone, Debug)]
pub struct KnownState {
    /// The channel.
    pub channel: Channel,
    /// Unfinished claim of the previous nonce: amount and signature.
    pub old_nonce: Option<(u64, Vec<u8>)>,
}

/// A wallet talking to one satellite's payments API.
pub struct Payer {
    client: pb::payments_client::PaymentsClient<Transport>,
    wallet: Wallet,
    info: Info,
    /// Nonce and authorized amount of each channel, as last known.
    known: Mutex<HashMap<u64, (u64, u64)>>,
}

fn bad(what: &str) -> ClientError {
    ClientError::Transport(format!("malformed answer: {what}"))
}

impl Payer {
    /// Connects to the payments API at `url` (`https://host:port`) of the satellite
    /// holding `satellite` (checked in the TLS handshake).
    pub async fn connect(
        url: &str,
        satellite: &orbit_identity::PublicKey,
        wallet: Wallet,
    ) -> Result<Payer, ClientError> {
        let endpoint = orbit_tls::pinned_endpoint(url)
            .map_err(|e| ClientError::Transport(format!("bad URL {url}: {e}")))?
            .connect_timeout(std::time::Duration::from_secs(10));
        let transport = orbit_tls::pinned_channel(endpoint, orbit_tls::Expect::Key(*satellite))
            .await
            .map_err(|e| ClientError::Transport(format!("{url}: {e}")))?;
        let mut client = pb::payments_client::PaymentsClient::new(transport);
        let i = client.info(pb::InfoRequest {}).await?.into_inner();
        let info = Info {
            escrow: Address::from_slice(&i.escrow).map_err(|_| bad("escrow"))?,
            recipient: Address::from_slice(&i.recipient).map_err(|_| bad("recipient"))?,
            group_id: i.group_id.try_into().map_err(|_| bad("group id"))?,
            prices: i.prices.into_iter().collect(),
            expiry_threshold_s: i.expiry_threshold_s,
        };
        Ok(Payer {
            client,
            wallet,
            info,
            known: Mutex::new(HashMap::new()),
        })
    }

    /// The satellite's payment parameters.
    pub fn info(&self) -> &Info {
        &self.info
    }

    /// This payer's address.
    pub fn address(&self) -> Address {
        self.wallet.address()
    }

    /// An account's balance and op nonce.
    pub async fn account(&self, a: &Address) -> Result<Account, ClientError> {
        let r = self
            .client
            .clone()
            .account(pb::AccountRequest {
                address: a.0.to_vec(),
            })
            .await?
            .into_inner();
        Ok(Account {
            balance: r.balance,
            op_nonce: r.op_nonce,
        })
    }

    /// Signs and applies a ledger operation at the account's current op nonce.
    pub async fn apply(&self, op: Op) -> Result<(Account, Option<Channel>), ClientError> {
        let nonce = self.account(&self.address()).await?.op_nonce;
        let signed = SignedOp::sign(&self.wallet, &self.info.escrow, op, nonce);
        let r = self
            .client
            .clone()
            .apply(pb::OpRequest::from(&signed))
            .await?
            .into_inner();
        let account = r.account.as_ref().ok_or_else(|| bad("no account"))?;
        let channel = r.channel.as_ref().map(Channel::try_from).transpose()?;
        Ok((
            Account {
                balance: account.balance,
                op_nonce: account.op_nonce,
            },
            channel,
        ))
    }

    /// Opens a channel to the satellite's recipient, payments signed by `signer`
    /// (this wallet if `None`).
    pub async fn open(
        &self,
        value: u64,
        expiration: u64,
        signer: Option<Address>,
    ) -> Result<Channel, ClientError> {
        let (_, ch) = self
            .apply(Op::Open {
                signer: signer.unwrap_or_else(|| self.address()),
                recipient: self.info.recipient,
                group_id: self.info.group_id,
                value,
                expiration,
            })
            .await?;
        ch.ok_or_else(|| bad("no channel"))
    }

    /// Adds funds to a channel.
    pub async fn add_funds(&self, channel_id: u64, amount: u64) -> Result<Channel, ClientError> {
        let (_, ch) = self.apply(Op::AddFunds { channel_id, amount }).await?;
        ch.ok_or_else(|| bad("no channel"))
    }

    /// Moves a channel's expiration later.
    pub async fn extend(&self, channel_id: u64, expiration: u64) -> Result<Channel, ClientError> {
        let (_, ch) = self
            .apply(Op::Extend {
                channel_id,
                expiration,
            })
            .await?;
        ch.ok_or_else(|| bad("no channel"))
    }

    /// A channel's state, asked with a signed request.
    pub async fn channel_state(&self, channel_id: u64) -> Result<KnownState, ClientError> {
        let now = crate::api::unix_now();
        let sig =
            self.wallet
                .sign_digest(&channel_state_digest(&self.info.escrow, channel_id, now));
        let r = self
            .client
            .clone()
            .channel_state(pb::ChannelStateRequest {
                channel_id,
                unix_s: now,
                signature: sig,
            })
            .await?
            .into_inner();
        let channel = Channel::try_from(r.channel.as_ref().ok_or_else(|| bad("no channel"))?)?;
        self.remember(&channel);
        Ok(KnownState {
            channel,
            old_nonce: r
                .has_old_nonce
                .then_some((r.old_nonce_amount, r.old_nonce_signature)),
        })
    }

    fn remember(&self, ch: &Channel) {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(ch.id, (ch.nonce, ch.authorized));
    }

    /// The next payment for one request of `kind` on a channel, from the last known
    /// state (read from the satellite if unknown). Not sent.
    pub async fn next_payment(&self, channel_id: u64, kind: &str) -> Result<Payment, ClientError> {
        let price = *self
            .info
            .prices
            .get(kind)
            .ok_or_else(|| ClientError::Refused {
                reason: "malformed".into(),
                message: format!("the satellite has no price for {kind:?}"),
            })?;
        let known = self
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&channel_id)
            .copied();
        let (nonce, authorized) = match known {
            Some(k) => k,
            None => {
                let s = self.channel_state(channel_id).await?;
                (s.channel.nonce, s.channel.authorized)
            }
        };
        Ok(Payment::sign(
            &self.wallet,
            &self.info.escrow,
            channel_id,
            nonce,
            authorized + price,
        ))
    }

    /// Records that the satellite accepted `p` (sent inside some other request).
    pub fn accepted(&self, p: &Payment) {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(p.channel_id, (p.nonce, p.amount));
    }

    /// Forgets what it knows of a channel: the next payment reads its state first.
    pub fn forget(&self, channel_id: u64) {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&channel_id);
    }

    /// Sends a payment for one request of `kind`.
    pub async fn send(&self, kind: &str, p: &Payment) -> Result<Channel, ClientError> {
        let r = self
            .client
            .clone()
            .pay(pb::PayRequest {
                kind: kind.to_string(),
                payment: Some(p.into()),
            })
            .await?
            .into_inner();
        let ch = Channel::try_from(r.channel.as_ref().ok_or_else(|| bad("no channel"))?)?;
        self.remember(&ch);
        Ok(ch)
    }

    /// Pays for one request of `kind` on a channel. If the satellite's state moved on
    /// (a claim advanced the nonce, another client paid), reads it and pays once more.
    pub async fn pay(&self, channel_id: u64, kind: &str) -> Result<Channel, ClientError> {
        let p = self.next_payment(channel_id, kind).await?;
        match self.send(kind, &p).await {
            Err(e) if matches!(e.reason(), Some("incorrect-nonce" | "wrong-amount")) => {
                self.channel_state(channel_id).await?;
                let p = self.next_payment(channel_id, kind).await?;
                self.send(kind, &p).await
            }
            other => other,
        }
    }
}
