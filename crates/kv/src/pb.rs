//! Conversions between orbit's key-value types and the etcd v3 protobuf messages.
//!
//! The etcd gRPC server of `orbit-store` and [`crate::RemoteKv`] both go through these, so
//! one place decides how each field maps.

use crate::types::*;
use crate::KvError;
use etcd_client::proto::{
    PbCompare, PbCompareTarget, PbDeleteRequest, PbDeleteResponse, PbEvent, PbKeyValue, PbMember,
    PbPutRequest, PbPutResponse, PbRangeRequest, PbRangeResponse, PbResponseOp, PbTargetUnion,
    PbTxnOpRequest, PbTxnOpResponse, PbTxnRequest, PbTxnRequestOp, PbTxnResponse,
};

/// A key-value pair from its protobuf form.
pub fn kv_from_pb(kv: PbKeyValue) -> KeyValue {
    KeyValue {
        key: kv.key,
        value: kv.value,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        lease: kv.lease,
    }
}

/// A key-value pair to its protobuf form.
pub fn kv_to_pb(kv: KeyValue) -> PbKeyValue {
    PbKeyValue {
        key: kv.key,
        value: kv.value,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        lease: kv.lease,
    }
}

fn sort_order_from_i32(v: i32) -> SortOrder {
    match v {
        1 => SortOrder::Ascend,
        2 => SortOrder::Descend,
        _ => SortOrder::None,
    }
}

fn sort_target_from_i32(v: i32) -> SortTarget {
    match v {
        1 => SortTarget::Version,
        2 => SortTarget::Create,
        3 => SortTarget::Mod,
        4 => SortTarget::Value,
        _ => SortTarget::Key,
    }
}

/// A range request from its protobuf form.
pub fn range_req_from_pb(r: PbRangeRequest) -> RangeRequest {
    RangeRequest {
        key: r.key,
        range_end: r.range_end,
        limit: r.limit,
        revision: r.revision,
        sort_order: sort_order_from_i32(r.sort_order),
        sort_target: sort_target_from_i32(r.sort_target),
        serializable: r.serializable,
        keys_only: r.keys_only,
        count_only: r.count_only,
        min_mod_revision: r.min_mod_revision,
        max_mod_revision: r.max_mod_revision,
        min_create_revision: r.min_create_revision,
        max_create_revision: r.max_create_revision,
    }
}

/// A range request to its protobuf form.
pub fn range_req_to_pb(r: RangeRequest) -> PbRangeRequest {
    PbRangeRequest {
        key: r.key,
        range_end: r.range_end,
        limit: r.limit,
        revision: r.revision,
        sort_order: r.sort_order as i32,
        sort_target: r.sort_target as i32,
        serializable: r.serializable,
        keys_only: r.keys_only,
        count_only: r.count_only,
        min_mod_revision: r.min_mod_revision,
        max_mod_revision: r.max_mod_revision,
        min_create_revision: r.min_create_revision,
        max_create_revision: r.max_create_revision,
    }
}

/// A range response from its protobuf form.
pub fn range_resp_from_pb(r: PbRangeResponse) -> RangeResponse {
    RangeResponse {
        revision: r.header.map(|h| h.revision).unwrap_or_default(),
        kvs: r.kvs.into_iter().map(kv_from_pb).collect(),
        more: r.more,
        count: r.count,
    }
}

/// A range response to its protobuf form (without header).
pub fn range_resp_to_pb(r: RangeResponse) -> PbRangeResponse {
    PbRangeResponse {
        header: None,
        kvs: r.kvs.into_iter().map(kv_to_pb).collect(),
        more: r.more,
        count: r.count,
    }
}

/// A put request from its protobuf form.
pub fn put_req_from_pb(r: PbPutRequest) -> PutRequest {
    PutRequest {
        key: r.key,
        value: r.value,
        lease: r.lease,
        prev_kv: r.prev_kv,
        ignore_value: r.ignore_value,
        ignore_lease: r.ignore_lease,
    }
}

/// A put request to its protobuf form.
pub fn put_req_to_pb(r: PutRequest) -> PbPutRequest {
    PbPutRequest {
        key: r.key,
        value: r.value,
        lease: r.lease,
        prev_kv: r.prev_kv,
        ignore_value: r.ignore_value,
        ignore_lease: r.ignore_lease,
    }
}

/// A put response from its protobuf form.
pub fn put_resp_from_pb(r: PbPutResponse) -> PutResponse {
    PutResponse {
        revision: r.header.map(|h| h.revision).unwrap_or_default(),
        prev_kv: r.prev_kv.map(kv_from_pb),
    }
}

/// A put response to its protobuf form (without header).
pub fn put_resp_to_pb(r: PutResponse) -> PbPutResponse {
    PbPutResponse {
        header: None,
        prev_kv: r.prev_kv.map(kv_to_pb),
    }
}

/// A delete request from its protobuf form.
pub fn delete_req_from_pb(r: PbDeleteRequest) -> DeleteRequest {
    DeleteRequest {
        key: r.key,
        range_end: r.range_end,
        prev_kv: r.prev_kv,
    }
}

/// A delete request to its protobuf form.
pub fn delete_req_to_pb(r: DeleteRequest) -> PbDeleteRequest {
    PbDeleteRequest {
        key: r.key,
        range_end: r.range_end,
        prev_kv: r.prev_kv,
    }
}

/// A delete response from its protobuf form.
pub fn delete_resp_from_pb(r: PbDeleteResponse) -> DeleteResponse {
    DeleteResponse {
        revision: r.header.map(|h| h.revision).unwrap_or_default(),
        deleted: r.deleted,
        prev_kvs: r.prev_kvs.into_iter().map(kv_from_pb).collect(),
    }
}

/// A delete response to its protobuf form (without header).
pub fn delete_resp_to_pb(r: DeleteResponse) -> PbDeleteResponse {
    PbDeleteResponse {
        header: None,
        deleted: r.deleted,
        prev_kvs: r.prev_kvs.into_iter().map(kv_to_pb).collect(),
    }
}

/// A compare from its protobuf form; refuses a compare without its operand.
pub fn compare_from_pb(c: PbCompare) -> Result<Compare, KvError> {
    let op = match c.result {
        0 => CompareOp::Equal,
        1 => CompareOp::Greater,
        2 => CompareOp::Less,
        3 => CompareOp::NotEqual,
        other => {
            return Err(KvError::InvalidArgument(format!(
                "unknown compare result {other}"
            )))
        }
    };
    let target = match (c.target, c.target_union) {
        (t, Some(PbTargetUnion::Version(v))) if t == PbCompareTarget::Version as i32 => {
            CompareTarget::Version(v)
        }
        (t, Some(PbTargetUnion::CreateRevision(v))) if t == PbCompareTarget::Create as i32 => {
            CompareTarget::Create(v)
        }
        (t, Some(PbTargetUnion::ModRevision(v))) if t == PbCompareTarget::Mod as i32 => {
            CompareTarget::Mod(v)
        }
        (t, Some(PbTargetUnion::Value(v))) if t == PbCompareTarget::Value as i32 => {
            CompareTarget::Value(v)
        }
        (t, Some(PbTargetUnion::Lease(v))) if t == PbCompareTarget::Lease as i32 => {
            CompareTarget::Lease(v)
        }
        // etcd treats a missing operand as its zero value.
        (t, None) if t == PbCompareTarget::Version as i32 => CompareTarget::Version(0),
        (t, None) if t == PbCompareTarget::Create as i32 => CompareTarget::Create(0),
        (t, None) if t == PbCompareTarget::Mod as i32 => CompareTarget::Mod(0),
        (t, None) if t == PbCompareTarget::Value as i32 => CompareTarget::Value(Vec::new()),
        (t, None) if t == PbCompareTarget::Lease as i32 => CompareTarget::Lease(0),
        _ => {
            return Err(KvError::InvalidArgument(
                "compare target does not match its operand".into(),
            ))
        }
    };
    Ok(Compare {
        key: c.key,
        range_end: c.range_end,
        op,
        target,
    })
}

/// A compare to its protobuf form.
pub fn compare_to_pb(c: Compare) -> PbCompare {
    let (target, union) = match c.target {
        CompareTarget::Version(v) => (PbCompareTarget::Version, PbTargetUnion::Version(v)),
        CompareTarget::Create(v) => (PbCompareTarget::Create, PbTargetUnion::CreateRevision(v)),
        CompareTarget::Mod(v) => (PbCompareTarget::Mod, PbTargetUnion::ModRevision(v)),
        CompareTarget::Value(v) => (PbCompareTarget::Value, PbTargetUnion::Value(v)),
        CompareTarget::Lease(v) => (PbCompareTarget::Lease, PbTargetUnion::Lease(v)),
    };
    PbCompare {
        result: match c.op {
            CompareOp::Equal => 0,
            CompareOp::Greater => 1,
            CompareOp::Less => 2,
            CompareOp::NotEqual => 3,
        },
        target: target as i32,
        key: c.key,
        range_end: c.range_end,
        target_union: Some(union),
    }
}

/// A transaction from its protobuf form.
pub fn txn_req_from_pb(t: PbTxnRequest) -> Result<TxnRequest, KvError> {
    fn ops(ops: Vec<PbTxnRequestOp>) -> Result<Vec<TxnOp>, KvError> {
        ops.into_iter()
            .map(|op| match op.request {
                Some(PbTxnOpRequest::RequestRange(r)) => Ok(TxnOp::Range(range_req_from_pb(r))),
                Some(PbTxnOpRequest::RequestPut(r)) => Ok(TxnOp::Put(put_req_from_pb(r))),
                Some(PbTxnOpRequest::RequestDeleteRange(r)) => {
                    Ok(TxnOp::Delete(delete_req_from_pb(r)))
                }
                Some(PbTxnOpRequest::RequestTxn(r)) => Ok(TxnOp::Txn(txn_req_from_pb(r)?)),
                None => Err(KvError::InvalidArgument("empty txn operation".into())),
            })
            .collect()
    }
    Ok(TxnRequest {
        compare: t
            .compare
            .into_iter()
            .map(compare_from_pb)
            .collect::<Result<_, _>>()?,
        success: ops(t.success)?,
        failure: ops(t.failure)?,
    })
}

/// A transaction to its protobuf form.
pub fn txn_req_to_pb(t: TxnRequest) -> PbTxnRequest {
    fn ops(ops: Vec<TxnOp>) -> Vec<PbTxnRequestOp> {
        ops.into_iter()
            .map(|op| PbTxnRequestOp {
                request: Some(match op {
                    TxnOp::Range(r) => PbTxnOpRequest::RequestRange(range_req_to_pb(r)),
                    TxnOp::Put(r) => PbTxnOpRequest::RequestPut(put_req_to_pb(r)),
                    TxnOp::Delete(r) => PbTxnOpRequest::RequestDeleteRange(delete_req_to_pb(r)),
                    TxnOp::Txn(r) => PbTxnOpRequest::RequestTxn(txn_req_to_pb(r)),
                }),
            })
            .collect()
    }
    PbTxnRequest {
        compare: t.compare.into_iter().map(compare_to_pb).collect(),
        success: ops(t.success),
        failure: ops(t.failure),
    }
}

/// A transaction response from its protobuf form.
pub fn txn_resp_from_pb(t: PbTxnResponse) -> TxnResponse {
    let revision = t.header.map(|h| h.revision).unwrap_or_default();
    TxnResponse {
        revision,
        succeeded: t.succeeded,
        responses: t
            .responses
            .into_iter()
            .filter_map(|r| r.response)
            .map(|r| match r {
                PbTxnOpResponse::ResponseRange(r) => TxnOpResponse::Range(range_resp_from_pb(r)),
                PbTxnOpResponse::ResponsePut(r) => TxnOpResponse::Put(put_resp_from_pb(r)),
                PbTxnOpResponse::ResponseDeleteRange(r) => {
                    TxnOpResponse::Delete(delete_resp_from_pb(r))
                }
                PbTxnOpResponse::ResponseTxn(r) => TxnOpResponse::Txn(txn_resp_from_pb(r)),
            })
            .map(|mut r| {
                // Nested responses carry no header; they share the outer revision.
                set_revision(&mut r, revision);
                r
            })
            .collect(),
    }
}

fn set_revision(r: &mut TxnOpResponse, revision: i64) {
    match r {
        TxnOpResponse::Range(r) => r.revision = revision,
        TxnOpResponse::Put(r) => r.revision = revision,
        TxnOpResponse::Delete(r) => r.revision = revision,
        TxnOpResponse::Txn(r) => {
            r.revision = revision;
            for inner in &mut r.responses {
                set_revision(inner, revision);
            }
        }
    }
}

/// A transaction response to its protobuf form (without headers).
pub fn txn_resp_to_pb(t: TxnResponse) -> PbTxnResponse {
    PbTxnResponse {
        header: None,
        succeeded: t.succeeded,
        responses: t
            .responses
            .into_iter()
            .map(|r| PbResponseOp {
                response: Some(match r {
                    TxnOpResponse::Range(r) => PbTxnOpResponse::ResponseRange(range_resp_to_pb(r)),
                    TxnOpResponse::Put(r) => PbTxnOpResponse::ResponsePut(put_resp_to_pb(r)),
                    TxnOpResponse::Delete(r) => {
                        PbTxnOpResponse::ResponseDeleteRange(delete_resp_to_pb(r))
                    }
                    TxnOpResponse::Txn(r) => PbTxnOpResponse::ResponseTxn(txn_resp_to_pb(r)),
                }),
            })
            .collect(),
    }
}

/// A watch event from its protobuf form.
pub fn event_from_pb(e: PbEvent) -> Event {
    Event {
        kind: if e.r#type == 1 {
            EventKind::Delete
        } else {
            EventKind::Put
        },
        kv: e.kv.map(kv_from_pb).unwrap_or_default(),
        prev_kv: e.prev_kv.map(kv_from_pb),
    }
}

/// A watch event to its protobuf form.
pub fn event_to_pb(e: Event) -> PbEvent {
    PbEvent {
        r#type: match e.kind {
            EventKind::Put => 0,
            EventKind::Delete => 1,
        },
        kv: Some(kv_to_pb(e.kv)),
        prev_kv: e.prev_kv.map(kv_to_pb),
    }
}

/// A member from its protobuf form.
pub fn member_from_pb(m: PbMember) -> Member {
    Member {
        id: m.id,
        name: m.name,
        peer_urls: m.peer_ur_ls,
        client_urls: m.client_ur_ls,
        is_learner: m.is_learner,
    }
}

/// A member to its protobuf form.
pub fn member_to_pb(m: Member) -> PbMember {
    PbMember {
        id: m.id,
        name: m.name,
        peer_ur_ls: m.peer_urls,
        client_ur_ls: m.client_urls,
        is_learner: m.is_learner,
    }
}

/// The error a gRPC status stands for, recognised by etcd's messages.
pub fn error_from_status(status: &tonic::Status) -> KvError {
    let msg = status.message();
    let known = [
        KvError::Compacted {
            compact_revision: 0,
        },
        KvError::FutureRevision,
        KvError::LeaseNotFound,
        KvError::LeaseExists,
        KvError::LeaseTtlTooLarge,
        KvError::TooManyOps,
        KvError::RequestTooLarge,
        KvError::KeyNotProvided,
        KvError::DuplicateKey,
        KvError::KeyNotFound,
        KvError::NoSpace,
        KvError::NoLeader,
        KvError::MemberNotFound,
        KvError::PeerUrlExists,
        KvError::IdRemoved,
        KvError::NotLearner,
        KvError::LearnerNotReady,
        KvError::NotEnoughStartedMembers,
        KvError::Timeout,
        KvError::NotLeader,
        KvError::BadLeaderTransferee,
        KvError::LeaderTransferTimeout,
    ];
    if let Some(e) = known.into_iter().find(|e| e.to_string() == msg) {
        return e;
    }
    if let Some(e) = crate::AuthError::ALL
        .into_iter()
        .find(|e| e.to_string() == msg)
    {
        return KvError::Auth(e);
    }
    match status.code() {
        tonic::Code::InvalidArgument => {
            KvError::InvalidArgument(msg.strip_prefix("etcdserver: ").unwrap_or(msg).to_string())
        }
        _ => KvError::Unavailable(format!("{}: {}", status.code(), msg)),
    }
}

/// The gRPC status etcd answers an error with.
pub fn error_to_status(e: &KvError) -> tonic::Status {
    use tonic::Code;
    let code = match e {
        KvError::Compacted { .. } | KvError::FutureRevision => Code::OutOfRange,
        KvError::LeaseNotFound | KvError::MemberNotFound | KvError::KeyNotFound => Code::NotFound,
        KvError::LeaseExists
        | KvError::PeerUrlExists
        | KvError::NotLearner
        | KvError::LearnerNotReady
        | KvError::NotEnoughStartedMembers
        | KvError::IdRemoved => Code::FailedPrecondition,
        KvError::LeaseTtlTooLarge
        | KvError::TooManyOps
        | KvError::RequestTooLarge
        | KvError::KeyNotProvided
        | KvError::DuplicateKey
        | KvError::InvalidArgument(_) => Code::InvalidArgument,
        KvError::NoSpace => Code::ResourceExhausted,
        KvError::NoLeader | KvError::Timeout | KvError::Unavailable(_) => Code::Unavailable,
        KvError::Auth(a) => a.code(),
        KvError::BadLeaderTransferee => Code::FailedPrecondition,
        KvError::NotLeader | KvError::LeaderTransferTimeout => Code::Unavailable,
    };
    tonic::Status::new(code, e.to_string())
}
