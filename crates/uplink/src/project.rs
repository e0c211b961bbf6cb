//! The uplink library: an access grant, and a project handle that stores and fetches
//! objects — encrypted here, erasure coded into pieces, pieces uploaded to storage
//! nodes in parallel with the slowest cancelled once enough have landed, downloaded
//! from the fastest nodes that hold them.

use crate::crypt::{self, ObjectMeta};
use crate::erasure;
use futures::StreamExt;
use orbit_identity::{Identity, NodeId, PublicKey};
use orbit_protocol::client as piece;
use orbit_protocol::satellite_pb as pb;
use orbit_protocol::satellite_pb::metainfo_client::MetainfoClient;
use orbit_protocol::{OrderLimit, PieceHash};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Why an uplink operation failed.
#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    /// The satellite refused or failed.
    #[error("satellite: {0}")]
    Satellite(#[from] tonic::Status),
    /// Decryption failed.
    #[error(transparent)]
    Decrypt(#[from] crypt::DecryptError),
    /// Not enough pieces could be stored or fetched.
    #[error("{0}")]
    Pieces(String),
    /// Something else.
    #[error("{0}")]
    Other(String),
    /// Local I/O.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Everything needed to use a project: where the satellite is (and its key), the API
/// key, and the root encryption key derived from the passphrase.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// Satellite API URL.
    pub satellite: String,
    /// Satellite's public key: it signs the order limits.
    pub satellite_key: PublicKey,
    /// API key (text form).
    pub api_key: String,
    /// Root encryption key.
    pub root: [u8; 32],
}

const ACCESS_PREFIX: &str = "orbit-access1";

impl Access {
    /// A grant from a passphrase.
    pub fn new(
        satellite: &str,
        satellite_key: PublicKey,
        api_key: &str,
        passphrase: &str,
    ) -> Result<Access, UplinkError> {
        let key = orbit_protocol::apikey::ApiKey::parse(api_key)
            .map_err(|e| UplinkError::Other(e.to_string()))?;
        Ok(Access {
            satellite: satellite.to_string(),
            satellite_key,
            api_key: api_key.to_string(),
            root: crypt::root_key(passphrase, &key.head),
        })
    }

    /// The same grant with its API key narrowed by `caveats`; a prefix caveat's
    /// prefix is given plain and encrypted here, as the satellite compares it.
    pub fn restrict(
        &self,
        caveats: Vec<orbit_protocol::apikey::Caveat>,
    ) -> Result<Access, UplinkError> {
        use orbit_protocol::apikey::{ApiKey, Caveat};
        let mut key =
            ApiKey::parse(&self.api_key).map_err(|e| UplinkError::Other(e.to_string()))?;
        for c in caveats {
            key = key.restrict(match c {
                Caveat::Prefix { bucket, prefix } => Caveat::Prefix {
                    prefix: crypt::encrypt_path(&self.root, &bucket, &prefix),
                    bucket,
                },
                c => c,
            });
        }
        Ok(Access {
            api_key: key.serialize(),
            ..self.clone()
        })
    }

    /// Its text form (a secret: it decrypts everything).
    pub fn serialize(&self) -> String {
        format!(
            "{ACCESS_PREFIX}{}",
            orbit_identity::hex_encode(&bincode::serialize(self).expect("grants serialize"))
        )
    }

    /// Parses the text form.
    pub fn parse(s: &str) -> Result<Access, UplinkError> {
        let hex = s.trim().strip_prefix(ACCESS_PREFIX).ok_or_else(|| {
            UplinkError::Other(format!("an access grant starts with {ACCESS_PREFIX}"))
        })?;
        let b = orbit_identity::hex_decode(hex).map_err(|e| {
            UplinkError::Other(format!(
                "malformed access grant ({e}): copy it whole from `uplink access`"
            ))
        })?;
        bincode::deserialize(&b).map_err(|_| {
            UplinkError::Other(
                "malformed access grant: it does not decode (cut short or altered?)".into(),
            )
        })
    }
}

/// Erasure coding and segmenting choices.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Pieces needed to rebuild a segment.
    pub k: u32,
    /// Repair threshold.
    pub repair: u32,
    /// Pieces an upload waits for; the rest are cancelled.
    pub success: u32,
    /// Pieces an upload starts.
    pub total: u32,
    /// Plain bytes per segment.
    pub segment_size: usize,
    /// Segments at most this big are kept in the metainfo.
    pub inline_max: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            k: 4,
            repair: 6,
            success: 8,
            total: 10,
            segment_size: 64 << 20,
            inline_max: 4096,
        }
    }
}

/// One object in a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Its key, decrypted.
    pub key: String,
    /// Its size.
    pub size: u64,
    /// Unix time (s) it was committed.
    pub created: u64,
}

/// A project on a satellite, as an access grant opens it.
pub struct Project {
    access: Access,
    meta: MetainfoClient<InterceptedService<Channel, orbit_telemetry::Propagate>>,
    options: Options,
    /// This session's key for orders and piece hashes.
    session: Identity,
    /// Pays for paid requests: a payer and its channel.
    payer: Option<(std::sync::Arc<orbit_payments::Payer>, u64)>,
    /// One payment at a time: each is the channel's next (nonce, amount).
    pay_turn: tokio::sync::Mutex<()>,
}

impl Project {
    /// Connects to the grant's satellite.
    pub async fn open(access: Access, options: Options) -> Result<Project, UplinkError> {
        // The satellite must prove it holds the grant's satellite key: whoever else
        // answers on its address is refused before the API key is sent.
        let endpoint = orbit_tls::pinned_endpoint(&access.satellite)
            .map_err(|e| UplinkError::Other(format!("satellite URL: {e}")))?
            .connect_timeout(std::time::Duration::from_secs(10));
        let ch = orbit_tls::pinned_channel(endpoint, orbit_tls::Expect::Key(access.satellite_key))
            .await
            .map_err(|e| UplinkError::Other(format!("connecting to {}: {e}", access.satellite)))?;
        Ok(Project {
            access,
            meta: MetainfoClient::with_interceptor(
                ch,
                orbit_telemetry::propagate as orbit_telemetry::Propagate,
            )
            .max_decoding_message_size(16 << 20)
            .max_encoding_message_size(16 << 20),
            options,
            session: Identity::generate(),
            payer: None,
            pay_turn: tokio::sync::Mutex::new(()),
        })
    }

    /// Pays for the satellite's paid requests (segment uploads and downloads) on
    /// `channel` through `payer`.
    pub fn with_payments(
        mut self,
        payer: std::sync::Arc<orbit_payments::Payer>,
        channel: u64,
    ) -> Project {
        self.payer = Some((payer, channel));
        self
    }

    /// Makes a request of `kind`, paying for it if the satellite charges for that kind:
    /// `call` gets the encoded payment (empty when free). If the satellite's channel
    /// state moved on (a claim advanced the nonce), reads it and pays once more.
    async fn paid<T, F, Fut>(&self, kind: &str, call: F) -> Result<T, UplinkError>
    where
        F: Fn(Vec<u8>) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let Some((payer, channel)) = &self.payer else {
            return Ok(call(Vec::new()).await?);
        };
        if !payer.info().prices.contains_key(kind) {
            return Ok(call(Vec::new()).await?);
        }
        let _turn = self.pay_turn.lock().await;
        for attempt in 0..2 {
            let p = payer
                .next_payment(*channel, kind)
                .await
                .map_err(|e| UplinkError::Other(format!("payment: {e}")))?;
            match call(p.encode()).await {
                Ok(v) => {
                    payer.accepted(&p);
                    return Ok(v);
                }
                Err(s) if attempt == 0 && stale_channel(&s) => payer.forget(*channel),
                Err(s) => return Err(s.into()),
            }
        }
        unreachable!("the second attempt returns")
    }

    fn key(&self) -> String {
        self.access.api_key.clone()
    }

    /// Creates a bucket.
    pub async fn create_bucket(&self, bucket: &str) -> Result<(), UplinkError> {
        self.meta
            .clone()
            .create_bucket(pb::BucketRequest {
                api_key: self.key(),
                bucket: bucket.into(),
            })
            .await?;
        Ok(())
    }

    /// Deletes an empty bucket.
    pub async fn delete_bucket(&self, bucket: &str) -> Result<(), UplinkError> {
        self.meta
            .clone()
            .delete_bucket(pb::BucketRequest {
                api_key: self.key(),
                bucket: bucket.into(),
            })
            .await?;
        Ok(())
    }

    /// The project's buckets.
    pub async fn list_buckets(&self) -> Result<Vec<String>, UplinkError> {
        let mut all: Vec<String> = Vec::new();
        loop {
            let page = self
                .meta
                .clone()
                .list_buckets(pb::ListBucketsRequest {
                    api_key: self.key(),
                    cursor: all.last().cloned().unwrap_or_default(),
                    limit: 0,
                })
                .await?
                .into_inner();
            all.extend(page.buckets);
            if !page.more {
                return Ok(all);
            }
        }
    }

    fn rs(&self) -> pb::RedundancyMsg {
        pb::RedundancyMsg {
            k: self.options.k,
            repair: self.options.repair,
            success: self.options.success,
            total: self.options.total,
        }
    }

    /// Uploads everything `reader` yields as `key` in `bucket`; `progress` hears the
    /// plain bytes done so far. Returns the size.
    pub async fn upload(
        &self,
        bucket: &str,
        key: &str,
        reader: impl AsyncRead + Unpin,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<u64, UplinkError> {
        self.upload_expiring(bucket, key, reader, progress, 0).await
    }

    /// Like [`Project::upload`], for an object that expires at `expires` (unix s; 0:
    /// never): gone for every reader from then on, its pieces deleted by the nodes.
    pub async fn upload_expiring(
        &self,
        bucket: &str,
        key: &str,
        reader: impl AsyncRead + Unpin,
        progress: &(dyn Fn(u64) + Sync),
        expires: u64,
    ) -> Result<u64, UplinkError> {
        let body = self.upload_expiring_untraced(bucket, key, reader, progress, expires);
        operation("upload", body).await
    }

    /// [`Project::upload_expiring`] without its span and metrics.
    async fn upload_expiring_untraced(
        &self,
        bucket: &str,
        key: &str,
        mut reader: impl AsyncRead + Unpin,
        progress: &(dyn Fn(u64) + Sync),
        expires: u64,
    ) -> Result<u64, UplinkError> {
        let enc_key = crypt::encrypt_path(&self.access.root, bucket, key);
        let stream = self
            .meta
            .clone()
            .begin_object(pb::BeginObjectRequest {
                api_key: self.key(),
                bucket: bucket.into(),
                key: enc_key.clone(),
                expires,
            })
            .await?
            .into_inner()
            .stream_id;
        let content_key: [u8; 32] = rand::random();
        let o = self.options;
        // Segments are read in order; up to SEGMENTS_IN_FLIGHT are encrypted, coded
        // (on blocking threads) and uploaded at once, so one's CPU work overlaps
        // another's transfers and long tail.
        let mut inflight = futures::stream::FuturesUnordered::new();
        let (mut index, mut more, mut total) = (0u32, true, 0u64);
        loop {
            while more && inflight.len() < SEGMENTS_IN_FLIGHT {
                let plain = read_segment(&mut reader, o.segment_size).await?;
                // An empty object is one empty (inline) segment.
                if plain.is_empty() && index > 0 {
                    more = false;
                    break;
                }
                more = plain.len() == o.segment_size;
                inflight.push(self.store_segment(&stream, &content_key, index, plain));
                index += 1;
            }
            match inflight.next().await {
                Some(stored) => {
                    total += stored?;
                    progress(total);
                }
                None => break,
            }
        }
        drop(inflight);
        let meta = ObjectMeta {
            v: 1,
            content_key,
            size: total,
            segment_size: self.options.segment_size as u64,
        };
        self.meta
            .clone()
            .commit_object(pb::CommitObjectRequest {
                api_key: self.key(),
                stream_id: stream,
                metadata: crypt::seal_meta(&self.access.root, bucket, &enc_key, &meta),
            })
            .await?;
        Ok(total)
    }

    /// Encrypts, codes and stores segment `index`; returns its plain size.
    async fn store_segment(
        &self,
        stream: &[u8],
        content_key: &[u8; 32],
        index: u32,
        plain: Vec<u8>,
    ) -> Result<u64, UplinkError> {
        let (o, key) = (self.options, *content_key);
        let p = tokio::task::spawn_blocking(move || prepare(&key, index, plain, o))
            .await
            .map_err(|e| UplinkError::Other(format!("preparing a segment: {e}")))??;
        match p.body {
            Body::Inline(enc) => {
                self.meta
                    .clone()
                    .commit_segment(pb::CommitSegmentRequest {
                        api_key: self.key(),
                        stream_id: stream.to_vec(),
                        index,
                        redundancy: Some(self.rs()),
                        inline: true,
                        encrypted_size: enc.len() as u64,
                        inline_data: enc,
                        ..Default::default()
                    })
                    .await?;
            }
            Body::Pieces { enc_len, pieces } => {
                self.upload_segment(stream, index, enc_len, pieces).await?;
            }
        }
        Ok(p.plain_len)
    }

    async fn upload_segment(
        &self,
        stream: &[u8],
        index: u32,
        enc_len: usize,
        pieces: Vec<bytes::Bytes>,
    ) -> Result<(), UplinkError> {
        let o = self.options;
        let piece_size = pieces[0].len() as u64;
        let begun = self
            .paid("upload_segment", |payment| {
                let mut meta = self.meta.clone();
                let req = pb::BeginSegmentRequest {
                    api_key: self.key(),
                    stream_id: stream.to_vec(),
                    index,
                    redundancy: Some(self.rs()),
                    piece_size,
                    uplink_key: self.session.public().0.to_vec(),
                    payment,
                };
                async move { meta.begin_segment(req).await }
            })
            .await?
            .into_inner();
        let mut pieces: Vec<Option<bytes::Bytes>> = pieces.into_iter().map(Some).collect();
        let mut uploads = futures::stream::FuturesUnordered::new();
        for l in &begun.limits {
            let data = pieces
                .get_mut(l.piece_number as usize)
                .and_then(Option::take)
                .ok_or_else(|| {
                    UplinkError::Other("the satellite gave a piece number twice".into())
                })?;
            let session = self.session.clone();
            let l = l.clone();
            uploads.push(async move {
                let limit = OrderLimit::decode(&l.limit).map_err(|e| e.to_string())?;
                let key = node_key(&l.node_key)?;
                let mut c = piece::connect(&l.address, &limit.node)
                    .await
                    .map_err(|e| e.to_string())?;
                let receipt = piece::upload(&mut c, &limit, data, &session, &key)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>((l.piece_number, limit.node, receipt))
            });
        }
        let mut done: Vec<pb::PieceReceipt> = Vec::new();
        let mut failures = Vec::new();
        while let Some(r) = uploads.next().await {
            match r {
                Ok((n, node, receipt)) => done.push(piece_receipt(n, node, &receipt)),
                Err(e) => failures.push(e),
            }
            if done.len() as u32 >= o.success {
                // Long tail: the slowest uploads are dropped, which cancels them.
                break;
            }
        }
        drop(uploads);
        if (done.len() as u32) < o.success {
            return Err(UplinkError::Pieces(format!(
                "segment {index}: {} of {} pieces stored, {} needed ({})",
                done.len(),
                o.total,
                o.success,
                failures.join("; ")
            )));
        }
        self.meta
            .clone()
            .commit_segment(pb::CommitSegmentRequest {
                api_key: self.key(),
                stream_id: stream.to_vec(),
                index,
                redundancy: Some(self.rs()),
                root_piece_id: begun.root_piece_id,
                pieces: done,
                piece_size,
                encrypted_size: enc_len as u64,
                inline_data: Vec::new(),
                inline: false,
            })
            .await?;
        Ok(())
    }

    /// Downloads `key` from `bucket` into `writer`; `progress` hears the plain bytes
    /// written so far. Returns the size.
    pub async fn download(
        &self,
        bucket: &str,
        key: &str,
        writer: impl AsyncWrite + Unpin,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<u64, UplinkError> {
        operation(
            "download",
            self.download_untraced(bucket, key, writer, progress),
        )
        .await
    }

    /// [`Project::download`] without its span and metrics.
    async fn download_untraced(
        &self,
        bucket: &str,
        key: &str,
        mut writer: impl AsyncWrite + Unpin,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<u64, UplinkError> {
        let enc_key = crypt::encrypt_path(&self.access.root, bucket, key);
        let obj = self
            .meta
            .clone()
            .get_object(pb::ObjectRequest {
                api_key: self.key(),
                bucket: bucket.into(),
                key: enc_key.clone(),
            })
            .await?
            .into_inner();
        let meta = crypt::open_meta(&self.access.root, bucket, &enc_key, &obj.metadata)?;
        let mut segments = obj.segments;
        segments.sort_by_key(|s| s.index);
        // Segment i + 1 is fetched and decoded while segment i is written.
        let mut fetched = futures::stream::iter(
            segments
                .iter()
                .map(|s| self.fetch_segment(bucket, &enc_key, &meta.content_key, s.index)),
        )
        .buffered(SEGMENTS_IN_FLIGHT);
        let mut written = 0u64;
        while let Some(plain) = fetched.next().await {
            let plain = plain?;
            writer.write_all(&plain).await?;
            written += plain.len() as u64;
            progress(written);
        }
        writer.flush().await?;
        if written != meta.size {
            return Err(UplinkError::Other(format!(
                "object should have {} bytes, its segments gave {written}",
                meta.size
            )));
        }
        Ok(written)
    }

    /// Fetches segment `index` and decrypts it.
    async fn fetch_segment(
        &self,
        bucket: &str,
        enc_key: &str,
        content_key: &[u8; 32],
        index: u32,
    ) -> Result<Vec<u8>, UplinkError> {
        let seg = self
            .paid("download_segment", |payment| {
                let mut meta = self.meta.clone();
                let req = pb::DownloadSegmentRequest {
                    api_key: self.key(),
                    bucket: bucket.into(),
                    key: enc_key.to_string(),
                    index,
                    uplink_key: self.session.public().0.to_vec(),
                    payment,
                };
                async move { meta.download_segment(req).await }
            })
            .await?
            .into_inner();
        let key = *content_key;
        if seg.inline {
            return Ok(crypt::decrypt_segment(&key, index, seg.inline_data)?);
        }
        let rs = seg
            .redundancy
            .ok_or_else(|| UplinkError::Other("segment without redundancy".into()))?;
        let pieces = self.fetch_pieces(&seg, rs.k as usize).await?;
        let enc_len = seg.encrypted_size as usize;
        tokio::task::spawn_blocking(move || {
            let enc = erasure::decode(&pieces, rs.k as usize, rs.total as usize, enc_len)
                .map_err(|e| UplinkError::Other(e.to_string()))?;
            Ok(crypt::decrypt_segment(&key, index, enc)?)
        })
        .await
        .map_err(|e| UplinkError::Other(format!("decoding a segment: {e}")))?
    }

    /// Fetches the fastest `k` good pieces of a segment.
    async fn fetch_pieces(
        &self,
        seg: &pb::DownloadSegmentResponse,
        k: usize,
    ) -> Result<Vec<(usize, Vec<u8>)>, UplinkError> {
        // Originals first (no decoding needed when they all arrive), and only k plus
        // a margin at once; a failure starts the next piece.
        let mut queue: Vec<pb::AddressedLimit> = seg.limits.clone();
        queue.sort_by_key(|l| std::cmp::Reverse(l.piece_number));
        let fetch = |l: pb::AddressedLimit| {
            let session = self.session.clone();
            let sat = self.access.satellite_key;
            let size = seg.piece_size;
            async move {
                let limit = OrderLimit::decode(&l.limit).map_err(|e| e.to_string())?;
                let mut c = piece::connect(&l.address, &limit.node)
                    .await
                    .map_err(|e| e.to_string())?;
                let (data, _) = piece::download(&mut c, &limit, size, &session, &sat)
                    .await
                    .map_err(|e| format!("node {}: {e}", limit.node))?;
                Ok::<_, String>((l.piece_number as usize, data))
            }
        };
        let mut fetches = futures::stream::FuturesUnordered::new();
        while fetches.len() < k + DOWNLOAD_MARGIN {
            let Some(l) = queue.pop() else { break };
            fetches.push(fetch(l));
        }
        let mut got = Vec::new();
        let mut failures = Vec::new();
        while let Some(r) = fetches.next().await {
            match r {
                Ok(p) => got.push(p),
                // A node that is down or sent bad bytes: the next piece serves.
                Err(e) => {
                    failures.push(e);
                    if let Some(l) = queue.pop() {
                        fetches.push(fetch(l));
                    }
                }
            }
            if got.len() >= k {
                break;
            }
        }
        drop(fetches);
        if got.len() < k {
            return Err(UplinkError::Pieces(format!(
                "{} good pieces of {} needed ({})",
                got.len(),
                k,
                failures.join("; ")
            )));
        }
        Ok(got)
    }

    /// Objects in `bucket` under `prefix` (whole path components).
    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<Listed>, UplinkError> {
        operation("list", self.list_untraced(bucket, prefix)).await
    }

    /// [`Project::list`] without its span and metrics.
    async fn list_untraced(&self, bucket: &str, prefix: &str) -> Result<Vec<Listed>, UplinkError> {
        let enc_prefix = crypt::encrypt_path(&self.access.root, bucket, prefix);
        let mut items: Vec<pb::ObjectListItem> = Vec::new();
        loop {
            let page = self
                .meta
                .clone()
                .list_objects(pb::ListObjectsRequest {
                    api_key: self.key(),
                    bucket: bucket.into(),
                    prefix: enc_prefix.clone(),
                    cursor: items.last().map(|i| i.key.clone()).unwrap_or_default(),
                    limit: 0,
                })
                .await?
                .into_inner();
            items.extend(page.items);
            if !page.more {
                break;
            }
        }
        items
            .into_iter()
            .map(|i| {
                let key = crypt::decrypt_path(&self.access.root, bucket, &i.key)?;
                let meta = crypt::open_meta(&self.access.root, bucket, &i.key, &i.metadata)?;
                Ok(Listed {
                    key,
                    size: meta.size,
                    created: i.created,
                })
            })
            .collect()
    }

    /// Deletes an object.
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<(), UplinkError> {
        operation("delete", self.delete_untraced(bucket, key)).await
    }

    /// [`Project::delete`] without its span and metrics.
    async fn delete_untraced(&self, bucket: &str, key: &str) -> Result<(), UplinkError> {
        self.meta
            .clone()
            .delete_object(pb::ObjectRequest {
                api_key: self.key(),
                bucket: bucket.into(),
                key: crypt::encrypt_path(&self.access.root, bucket, key),
            })
            .await?;
        Ok(())
    }
}

/// Runs one of the library's operations as one traced piece of work (every satellite
/// and node request it makes carries its request id) and counts it.
async fn operation<T>(
    name: &'static str,
    body: impl std::future::Future<Output = Result<T, UplinkError>>,
) -> Result<T, UplinkError> {
    let started = std::time::Instant::now();
    let r = orbit_telemetry::traced(name, body).await;
    crate::metrics::observe(name, r.is_ok(), started.elapsed());
    r
}

/// Pieces fetched beyond the k a download needs, so the slowest of them does not
/// hold it up (the rest start only when one fails).
const DOWNLOAD_MARGIN: usize = 2;

/// Segments uploaded or downloaded at once (each up to a segment's pieces in memory).
const SEGMENTS_IN_FLIGHT: usize = 2;

/// A segment ready to store.
struct Prepared {
    plain_len: u64,
    body: Body,
}

enum Body {
    /// Small enough for the metainfo: the encrypted bytes.
    Inline(Vec<u8>),
    /// Erasure coded.
    Pieces {
        enc_len: usize,
        pieces: Vec<bytes::Bytes>,
    },
}

/// An empty buffer for a segment of up to `size` plain bytes, reserved whole
/// (untouched pages cost nothing; growing by doubling would copy) with room for the
/// GCM tag and the erasure coder's padding, which are added in place.
pub fn segment_buffer(size: usize) -> Vec<u8> {
    Vec::with_capacity(size + (64 << 10))
}

/// Reads up to one segment.
async fn read_segment(
    reader: &mut (impl AsyncRead + Unpin),
    size: usize,
) -> Result<Vec<u8>, UplinkError> {
    let mut plain = segment_buffer(size);
    reader.take(size as u64).read_to_end(&mut plain).await?;
    Ok(plain)
}

/// Encrypts a segment and, unless it is small, erasure codes it (CPU work).
fn prepare(
    content_key: &[u8; 32],
    index: u32,
    plain: Vec<u8>,
    o: Options,
) -> Result<Prepared, UplinkError> {
    let plain_len = plain.len() as u64;
    let enc = crypt::encrypt_segment(content_key, index, plain);
    let body = if plain_len as usize <= o.inline_max {
        Body::Inline(enc)
    } else {
        let enc_len = enc.len();
        let pieces = erasure::encode(enc, o.k as usize, o.total as usize)
            .map_err(|e| UplinkError::Other(e.to_string()))?;
        Body::Pieces { enc_len, pieces }
    };
    Ok(Prepared { plain_len, body })
}

/// Whether a refusal says the client's idea of its channel is out of date.
fn stale_channel(s: &tonic::Status) -> bool {
    matches!(
        s.metadata()
            .get(orbit_payments::api::REASON)
            .and_then(|v| v.to_str().ok()),
        Some("incorrect-nonce" | "wrong-amount")
    )
}

fn node_key(b: &[u8]) -> Result<PublicKey, String> {
    Ok(PublicKey(
        b.try_into()
            .map_err(|_| "node key is not 32 bytes".to_string())?,
    ))
}

fn piece_receipt(n: u32, node: NodeId, receipt: &PieceHash) -> pb::PieceReceipt {
    pb::PieceReceipt {
        piece_number: n,
        node_id: node.0.to_vec(),
        receipt: receipt.encode(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mistyped_access_grant_says_what_is_wrong_and_echoes_no_secret() {
        let grant = Access {
            satellite: "https://127.0.0.1:1".into(),
            satellite_key: PublicKey([7; 32]),
            api_key: "orbit1secretsecret".into(),
            root: [9; 32],
        }
        .serialize();
        let body = grant.strip_prefix(ACCESS_PREFIX).unwrap();
        for bad in [
            format!("{ACCESS_PREFIX}{}x{}", &body[..10], &body[11..]),
            format!("{ACCESS_PREFIX}{}", &body[..body.len() - 1]),
            format!("{ACCESS_PREFIX}{}", &body[..body.len() - 20]),
        ] {
            let e = Access::parse(&bad).unwrap_err().to_string();
            assert!(e.contains("malformed access grant"), "{e}");
            assert!(!e.contains(&body[4..24]), "the error echoes the grant: {e}");
        }
        assert!(Access::parse(&grant).is_ok());
    }
}
