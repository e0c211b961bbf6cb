//! The satellite's gRPC services: `Nodes` (check-in, settlement) and `Metainfo`.

use crate::pb;
use crate::ApiError;
use orbit_identity::{NodeId, PublicKey};
use orbit_protocol::{Action, PieceHash, PieceId};
use orbit_satellite_model::accounting::{payment_op, PaymentRecord, Usage};
use orbit_satellite_model::apikeys::{ApiKeys, Op};
use orbit_satellite_model::keys::{Bucket, Project};
use orbit_satellite_model::metainfo::{Metainfo, Redundancy, Segment, Stream};
use orbit_satellite_model::nodes::Nodes;
use orbit_satellite_model::orders::{LimitFor, Orders};
use orbit_satellite_model::unix_now;
use std::collections::HashSet;
use tonic::{Request, Response, Status};

/// Limits of the storage API.
#[derive(Clone, Debug)]
pub struct StorageConfig {
    /// Largest encrypted segment kept in the metainfo itself.
    pub max_inline: usize,
    /// Largest piece.
    pub max_piece: u64,
    /// How often nodes check in, seconds.
    pub check_in_interval_s: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            // 4 KiB of content plus the encryption's tag and nonce.
            max_inline: 4096 + 64,
            max_piece: 64 << 20,
            check_in_interval_s: 60,
        }
    }
}

/// What the satellite charges for, through payment channels.
#[derive(Clone)]
pub struct Charges {
    /// The escrow ledger.
    pub escrow: orbit_payments::Escrow,
    /// Price by request kind (`upload_segment`, `download_segment`); kinds not listed
    /// are free.
    pub prices: std::collections::BTreeMap<String, u64>,
    /// Channels expiring within this many seconds take no payments.
    pub expiry_threshold_s: u64,
}

/// The storage API of one satellite replica.
#[derive(Clone)]
pub struct SatelliteApi {
    /// Payments for paid requests, if the satellite charges.
    pub charges: Option<Charges>,
    /// API keys.
    pub keys: ApiKeys,
    /// Node table.
    pub nodes: Nodes,
    /// Contained nodes (for their stats).
    pub reverify: orbit_satellite_model::audit::ReverifyQueue,
    /// Order limits and settlement.
    pub orders: Orders,
    /// Buckets, objects, segments.
    pub meta: Metainfo,
    /// Project limits and usage.
    pub usage: Usage,
    /// Limits.
    pub config: StorageConfig,
}

fn public_key(b: &[u8], what: &str) -> Result<PublicKey, ApiError> {
    let a: [u8; 32] = b
        .try_into()
        .map_err(|_| ApiError::Invalid(format!("{what}: an ed25519 key is 32 bytes")))?;
    Ok(PublicKey(a))
}

fn stream_id(b: &[u8]) -> Result<[u8; 16], ApiError> {
    b.try_into()
        .map_err(|_| ApiError::Invalid("a stream id is 16 bytes".into()))
}

fn redundancy(r: Option<&pb::RedundancyMsg>) -> Result<Redundancy, ApiError> {
    let r = r.ok_or_else(|| ApiError::Invalid("no redundancy".into()))?;
    let rs = Redundancy {
        k: r.k,
        repair: r.repair,
        success: r.success,
        total: r.total,
    };
    rs.check()?;
    Ok(rs)
}

fn rs_msg(r: &Redundancy) -> pb::RedundancyMsg {
    pb::RedundancyMsg {
        k: r.k,
        repair: r.repair,
        success: r.success,
        total: r.total,
    }
}

impl SatelliteApi {
    /// The API of the satellite `identity` over the store `kv`.
    pub fn new(
        kv: std::sync::Arc<dyn orbit_kv::Kv>,
        identity: orbit_identity::Identity,
        section: &crate::StorageSection,
    ) -> SatelliteApi {
        SatelliteApi {
            charges: None,
            keys: ApiKeys::new(kv.clone()),
            nodes: Nodes::new(kv.clone(), section.selection()),
            reverify: orbit_satellite_model::audit::ReverifyQueue::new(kv.clone()),
            orders: Orders::new(kv.clone(), identity, section.order_expiration_s),
            usage: Usage::new(kv.clone()),
            meta: Metainfo::new(kv),
            config: section.limits(),
        }
    }

    /// The Nodes service.
    pub fn nodes_server(&self) -> pb::nodes_server::NodesServer<SatelliteApi> {
        pb::nodes_server::NodesServer::new(self.clone())
    }

    /// The Metainfo service.
    pub fn metainfo_server(&self) -> pb::metainfo_server::MetainfoServer<SatelliteApi> {
        pb::metainfo_server::MetainfoServer::new(self.clone())
    }

    /// Takes the payment for one request of `kind` by `project`, if the satellite
    /// charges for it, and records it for the project's accounting.
    async fn charge(&self, kind: &str, payment: &[u8], project: &str) -> Result<(), Status> {
        let Some(c) = &self.charges else {
            return Ok(());
        };
        let Some(&price) = c.prices.get(kind) else {
            return Ok(());
        };
        if payment.is_empty() {
            return Err(ApiError::Precondition(format!(
                "payment required: {kind} costs {price}; pay through a payment channel"
            ))
            .into());
        }
        let p = orbit_payments::Payment::decode(payment).map_err(ApiError::Invalid)?;
        let now = unix_now();
        let record = |amount, authorized| {
            vec![payment_op(&PaymentRecord {
                project: project.to_string(),
                channel: p.channel_id,
                nonce: p.nonce,
                authorized,
                amount,
                at: now,
            })]
        };
        c.escrow
            .pay_recorded(&p, price, now, c.expiry_threshold_s, &record)
            .await
            .map_err(Status::from)?;
        Ok(())
    }

    async fn auth(
        &self,
        key: &str,
        op: Op,
        bucket: Option<&str>,
        path: Option<&str>,
    ) -> Result<String, ApiError> {
        Ok(self.keys.check(key, op, bucket, path, unix_now()).await?)
    }

    /// A pending upload of the key's project that the key may write.
    async fn writable_stream(
        &self,
        key: &str,
        stream: &[u8; 16],
    ) -> Result<(String, Stream), ApiError> {
        let project = self.keys.project_of(key).await?;
        let s = self.meta.stream(&project, stream).await?;
        self.auth(key, Op::Write, Some(&s.bucket), Some(&s.key))
            .await?;
        Ok((project, s))
    }

    async fn commit_segment(&self, r: pb::CommitSegmentRequest) -> Result<(), ApiError> {
        let stream = stream_id(&r.stream_id)?;
        let (project, s) = self.writable_stream(&r.api_key, &stream).await?;
        let rs = redundancy(r.redundancy.as_ref())?;
        let seg = if r.inline {
            if r.inline_data.len() > self.config.max_inline {
                return Err(ApiError::Invalid(format!(
                    "inline segment of {} bytes; at most {} are kept inline",
                    r.inline_data.len(),
                    self.config.max_inline
                )));
            }
            Segment {
                index: r.index,
                encrypted_size: r.inline_data.len() as u64,
                inline: Some(r.inline_data),
                redundancy: rs,
                root: PieceId::default(),
                piece_size: 0,
                pieces: Vec::new(),
                created: unix_now(),
                expires: s.expires,
            }
        } else {
            let root = PieceId(
                r.root_piece_id
                    .as_slice()
                    .try_into()
                    .map_err(|_| ApiError::Invalid("a root piece id is 32 bytes".into()))?,
            );
            if (r.pieces.len() as u32) < rs.success {
                return Err(ApiError::Precondition(format!(
                    "{} pieces stored, the segment needs {}",
                    r.pieces.len(),
                    rs.success
                )));
            }
            let (mut numbers, mut nodes) = (HashSet::new(), HashSet::new());
            let mut ids = Vec::with_capacity(r.pieces.len());
            for p in &r.pieces {
                let node = NodeId(
                    p.node_id
                        .as_slice()
                        .try_into()
                        .map_err(|_| ApiError::Invalid("a node id is 32 bytes".into()))?,
                );
                if p.piece_number >= rs.total
                    || !numbers.insert(p.piece_number)
                    || !nodes.insert(node)
                {
                    return Err(ApiError::Invalid(
                        "piece numbers and nodes must be distinct and below total".into(),
                    ));
                }
                ids.push(node);
            }
            // Every node's record in one read.
            let records = self.nodes.get_many(&ids).await?;
            let mut pieces = Vec::new();
            for (p, node) in r.pieces.iter().zip(ids) {
                let rec = records
                    .get(&node)
                    .ok_or_else(|| ApiError::Invalid(format!("unknown node {node}")))?;
                let receipt =
                    PieceHash::decode(&p.receipt).map_err(|e| ApiError::Invalid(e.to_string()))?;
                receipt.verify(&rec.key).map_err(|e| {
                    ApiError::Unauthenticated(format!("receipt of node {node}: {e}"))
                })?;
                let number = p.piece_number as u16;
                if receipt.piece != root.derive(&node, number) || receipt.size != r.piece_size {
                    return Err(ApiError::Invalid(format!(
                        "receipt of node {node} is for another piece or size"
                    )));
                }
                pieces.push((number, node));
            }
            Segment {
                index: r.index,
                encrypted_size: r.encrypted_size,
                inline: None,
                redundancy: rs,
                root,
                piece_size: r.piece_size,
                pieces,
                created: unix_now(),
                expires: s.expires,
            }
        };
        self.meta.commit_segment(&project, &stream, &seg).await
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl pb::nodes_server::Nodes for SatelliteApi {
    async fn check_in(&self, r: Request<pb::SignedMsg>) -> Reply<pb::CheckInResponse> {
        let r = r.into_inner();
        let key = public_key(&r.node_key, "node key")?;
        self.nodes
            .check_in(key, &r.body, &r.signature, unix_now())
            .await?;
        Ok(Response::new(pb::CheckInResponse {
            next_in_s: self.config.check_in_interval_s,
        }))
    }

    async fn node_stats(&self, r: Request<pb::SignedMsg>) -> Reply<pb::NodeStatsResponse> {
        let r = r.into_inner();
        let key = public_key(&r.node_key, "node key")?;
        let n = self
            .nodes
            .own_record(
                key,
                &r.body,
                &r.signature,
                &self.orders.public().id(),
                unix_now(),
            )
            .await?;
        let contained = self.reverify.get(&n.id).await?.is_some();
        let rep = &n.reputation;
        Ok(Response::new(pb::NodeStatsResponse {
            audit_score: rep.audit.score(),
            unknown_score: rep.unknown.score(),
            online_score: rep.online.score(),
            audit_success: rep.audits.success,
            audit_failure: rep.audits.failure,
            audit_offline: rep.audits.offline,
            audit_contained: rep.audits.contained,
            audit_unknown: rep.audits.unknown,
            vetted_at: rep.vetted_at,
            suspended_at: rep.suspended_at,
            disqualified_at: rep.disqualified_at,
            disqualified_reason: rep.disqualified_reason.clone(),
            contained,
            last_seen: n.last_seen,
        }))
    }

    async fn settle(&self, r: Request<pb::SignedMsg>) -> Reply<pb::SettleResponse> {
        let r = r.into_inner();
        let key = public_key(&r.node_key, "node key")?;
        let (settled, rejected) = self
            .orders
            .settle(key, &r.body, &r.signature, unix_now())
            .await?;
        Ok(Response::new(pb::SettleResponse {
            settled: settled.iter().map(|s| s.to_vec()).collect(),
            rejected: rejected.iter().map(|s| s.to_vec()).collect(),
        }))
    }
}

#[tonic::async_trait]
impl pb::metainfo_server::Metainfo for SatelliteApi {
    async fn create_bucket(&self, r: Request<pb::BucketRequest>) -> Reply<pb::Empty> {
        let r = r.into_inner();
        let project = self
            .auth(&r.api_key, Op::Write, Some(&r.bucket), None)
            .await?;
        self.meta
            .create_bucket(&project, &r.bucket, unix_now())
            .await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn delete_bucket(&self, r: Request<pb::BucketRequest>) -> Reply<pb::Empty> {
        let r = r.into_inner();
        let project = self
            .auth(&r.api_key, Op::Delete, Some(&r.bucket), None)
            .await?;
        self.meta.delete_bucket(&project, &r.bucket).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn list_buckets(
        &self,
        r: Request<pb::ListBucketsRequest>,
    ) -> Reply<pb::ListBucketsResponse> {
        let r = r.into_inner();
        let project = self.auth(&r.api_key, Op::List, None, None).await?;
        let page = self
            .meta
            .list_buckets(&project, &r.cursor, r.limit as usize)
            .await?;
        Ok(Response::new(pb::ListBucketsResponse {
            buckets: page.items,
            more: page.more,
        }))
    }

    async fn begin_object(
        &self,
        r: Request<pb::BeginObjectRequest>,
    ) -> Reply<pb::BeginObjectResponse> {
        let r = r.into_inner();
        let project = self
            .auth(&r.api_key, Op::Write, Some(&r.bucket), Some(&r.key))
            .await?;
        self.usage.check_upload(&project).await?;
        let stream = self
            .meta
            .begin_object_expiring(&project, &r.bucket, &r.key, unix_now(), r.expires)
            .await?;
        Ok(Response::new(pb::BeginObjectResponse {
            stream_id: stream.to_vec(),
        }))
    }

    async fn begin_segment(
        &self,
        r: Request<pb::BeginSegmentRequest>,
    ) -> Reply<pb::BeginSegmentResponse> {
        let r = r.into_inner();
        let stream = stream_id(&r.stream_id)?;
        let (project, s) = self.writable_stream(&r.api_key, &stream).await?;
        // Every segment, so one large object cannot run far past the limit.
        self.usage.check_upload(&project).await?;
        let rs = redundancy(r.redundancy.as_ref())?;
        if r.piece_size == 0 || r.piece_size > self.config.max_piece {
            return Err(ApiError::Invalid(format!(
                "piece size {} must be 1 to {}",
                r.piece_size, self.config.max_piece
            ))
            .into());
        }
        let uplink = public_key(&r.uplink_key, "uplink key")?;
        let now = unix_now();
        let nodes = self
            .nodes
            .select(rs.total as usize, r.piece_size, now)
            .await?;
        // Charged once the request is known to be servable.
        self.charge("upload_segment", &r.payment, &project).await?;
        let (p, b) = (Project::new(&project)?, Bucket::new(&s.bucket)?);
        let root = PieceId::random();
        let limits = nodes
            .iter()
            .enumerate()
            .map(|(n, node)| {
                let piece = root.derive(&node.id, n as u16);
                pb::AddressedLimit {
                    // Nodes delete an expiring object's pieces by themselves.
                    limit: self
                        .orders
                        .limit_for(
                            node,
                            piece,
                            Action::Put,
                            r.piece_size,
                            uplink,
                            now,
                            LimitFor {
                                piece_expiration: s.expires,
                                bucket: Some((&p, &b)),
                            },
                        )
                        .encode(),
                    address: node.address.clone(),
                    node_key: node.key.0.to_vec(),
                    piece_number: n as u32,
                }
            })
            .collect();
        Ok(Response::new(pb::BeginSegmentResponse {
            root_piece_id: root.0.to_vec(),
            limits,
        }))
    }

    async fn commit_segment(&self, r: Request<pb::CommitSegmentRequest>) -> Reply<pb::Empty> {
        SatelliteApi::commit_segment(self, r.into_inner()).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn commit_object(&self, r: Request<pb::CommitObjectRequest>) -> Reply<pb::Empty> {
        let r = r.into_inner();
        let stream = stream_id(&r.stream_id)?;
        let (project, _) = self.writable_stream(&r.api_key, &stream).await?;
        self.meta
            .commit_object(&project, &stream, r.metadata, unix_now())
            .await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn get_object(&self, r: Request<pb::ObjectRequest>) -> Reply<pb::GetObjectResponse> {
        let r = r.into_inner();
        let project = self
            .auth(&r.api_key, Op::Read, Some(&r.bucket), Some(&r.key))
            .await?;
        let (obj, segments) = self.meta.get_object(&project, &r.bucket, &r.key).await?;
        Ok(Response::new(pb::GetObjectResponse {
            stream_id: obj.stream.to_vec(),
            metadata: obj.metadata,
            segments: segments
                .iter()
                .map(|s| pb::SegmentInfo {
                    index: s.index,
                    encrypted_size: s.encrypted_size,
                    inline: s.inline.is_some(),
                })
                .collect(),
            created: obj.created,
        }))
    }

    async fn download_segment(
        &self,
        r: Request<pb::DownloadSegmentRequest>,
    ) -> Reply<pb::DownloadSegmentResponse> {
        let r = r.into_inner();
        let project = self
            .auth(&r.api_key, Op::Read, Some(&r.bucket), Some(&r.key))
            .await?;
        let (obj, _) = self.meta.object(&project, &r.bucket, &r.key).await?;
        let seg = self
            .meta
            .segment(&obj.stream, r.index)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no segment {}", r.index)))?;
        let mut resp = pb::DownloadSegmentResponse {
            redundancy: Some(rs_msg(&seg.redundancy)),
            piece_size: seg.piece_size,
            encrypted_size: seg.encrypted_size,
            inline_data: Vec::new(),
            inline: seg.inline.is_some(),
            limits: Vec::new(),
        };
        if let Some(data) = seg.inline {
            resp.inline_data = data;
            return Ok(Response::new(resp));
        }
        let uplink = public_key(&r.uplink_key, "uplink key")?;
        let now = unix_now();
        self.usage.check_download(&project, now).await?;
        self.charge("download_segment", &r.payment, &project)
            .await?;
        let (p, b) = (Project::new(&project)?, Bucket::new(&r.bucket)?);
        let ids: Vec<NodeId> = seg.pieces.iter().map(|(_, n)| *n).collect();
        let records = self.nodes.get_many(&ids).await?;
        for (number, node) in &seg.pieces {
            let Some(rec) = records.get(node) else {
                continue;
            };
            if rec.disqualified {
                continue;
            }
            let piece = seg.root.derive(node, *number);
            resp.limits.push(pb::AddressedLimit {
                limit: self
                    .orders
                    .limit_for(
                        rec,
                        piece,
                        Action::Get,
                        seg.piece_size,
                        uplink,
                        now,
                        LimitFor {
                            piece_expiration: 0,
                            bucket: Some((&p, &b)),
                        },
                    )
                    .encode(),
                address: rec.address.clone(),
                node_key: rec.key.0.to_vec(),
                piece_number: *number as u32,
            });
        }
        Ok(Response::new(resp))
    }

    async fn list_objects(
        &self,
        r: Request<pb::ListObjectsRequest>,
    ) -> Reply<pb::ListObjectsResponse> {
        let r = r.into_inner();
        let project = self
            .auth(&r.api_key, Op::List, Some(&r.bucket), Some(&r.prefix))
            .await?;
        let page = self
            .meta
            .list_objects(&project, &r.bucket, &r.prefix, &r.cursor, r.limit as usize)
            .await?;
        let items = page
            .items
            .into_iter()
            .map(|(key, o)| pb::ObjectListItem {
                key,
                created: o.created,
                metadata: o.metadata,
            })
            .collect();
        Ok(Response::new(pb::ListObjectsResponse {
            items,
            more: page.more,
        }))
    }

    async fn delete_object(&self, r: Request<pb::ObjectRequest>) -> Reply<pb::Empty> {
        let r = r.into_inner();
        let project = self
            .auth(&r.api_key, Op::Delete, Some(&r.bucket), Some(&r.key))
            .await?;
        self.meta.delete_object(&project, &r.bucket, &r.key).await?;
        Ok(Response::new(pb::Empty {}))
    }
}
