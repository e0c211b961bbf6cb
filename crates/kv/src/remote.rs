//! [`Kv`] over the etcd v3 protocol: works against orbit store nodes and real etcd.

use crate::pb;
use crate::types::*;
use crate::{Kv, KvError, KvResult, WatchStream};
use etcd_client as ec;
use futures::StreamExt;

/// A store user and its password, for a store with auth enabled.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user.
    pub user: String,
    /// Its password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({:?}, <password>)", self.user)
    }
}

impl Credentials {
    /// etcdctl's `--user name[:password]`; without the password part it is
    /// `password` (from the environment, say), and without either it is refused.
    pub fn parse(user: &str, password: Option<String>) -> Result<Credentials, KvError> {
        let (name, inline) = match user.split_once(':') {
            Some((n, p)) => (n, Some(p.to_string())),
            None => (user, None),
        };
        let password = inline.or(password).ok_or_else(|| {
            KvError::InvalidArgument(format!(
                "store user {name}: no password (give name:password, or set ORBIT_STORE_PASSWORD)"
            ))
        })?;
        if name.is_empty() {
            return Err(KvError::InvalidArgument(
                "the store user name is empty".into(),
            ));
        }
        Ok(Credentials {
            user: name.to_string(),
            password,
        })
    }
}

/// A client of an etcd-protocol cluster (orbit store nodes or etcd).
#[derive(Clone)]
pub struct RemoteKv {
    client: ec::Client,
    /// The endpoints the client balances over, as they were added.
    endpoints: std::sync::Arc<tokio::sync::Mutex<std::collections::BTreeSet<String>>>,
    /// The client's background work (following the member list); it stops when the
    /// last clone of the client goes.
    workers: std::sync::Arc<orbit_worker::Group>,
}

impl std::fmt::Debug for RemoteKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RemoteKv")
    }
}

fn err(e: ec::Error) -> KvError {
    match e {
        ec::Error::GRpcStatus(s) => pb::error_from_status(&s),
        // etcd-client reports a keep-alive answered with TTL 0 this way.
        ec::Error::LeaseKeepAliveError(m) if m.contains("not found") => KvError::LeaseNotFound,
        other => KvError::Unavailable(other.to_string()),
    }
}

fn get_options(r: &RangeRequest) -> ec::GetOptions {
    let mut o = ec::GetOptions::new();
    if !r.range_end.is_empty() {
        o = o.with_range(r.range_end.clone());
    }
    if r.limit > 0 {
        o = o.with_limit(r.limit);
    }
    if r.revision > 0 {
        o = o.with_revision(r.revision);
    }
    if r.sort_order != SortOrder::None || r.sort_target != SortTarget::Key {
        let target = match r.sort_target {
            SortTarget::Key => ec::SortTarget::Key,
            SortTarget::Version => ec::SortTarget::Version,
            SortTarget::Create => ec::SortTarget::Create,
            SortTarget::Mod => ec::SortTarget::Mod,
            SortTarget::Value => ec::SortTarget::Value,
        };
        let order = match r.sort_order {
            SortOrder::None => ec::SortOrder::None,
            SortOrder::Ascend => ec::SortOrder::Ascend,
            SortOrder::Descend => ec::SortOrder::Descend,
        };
        o = o.with_sort(target, order);
    }
    if r.serializable {
        o = o.with_serializable();
    }
    if r.has_revision_filters() {
        o = o
            .with_min_mod_revision(r.min_mod_revision)
            .with_max_mod_revision(r.max_mod_revision)
            .with_min_create_revision(r.min_create_revision)
            .with_max_create_revision(r.max_create_revision);
    }
    if r.keys_only {
        o = o.with_keys_only();
    }
    if r.count_only {
        o = o.with_count_only();
    }
    o
}

fn put_options(r: &PutRequest) -> ec::PutOptions {
    let mut o = ec::PutOptions::new();
    if r.lease != 0 {
        o = o.with_lease(r.lease);
    }
    if r.prev_kv {
        o = o.with_prev_key();
    }
    if r.ignore_value {
        o = o.with_ignore_value();
    }
    if r.ignore_lease {
        o = o.with_ignore_lease();
    }
    o
}

fn delete_options(r: &DeleteRequest) -> ec::DeleteOptions {
    let mut o = ec::DeleteOptions::new();
    if !r.range_end.is_empty() {
        o = o.with_range(r.range_end.clone());
    }
    if r.prev_kv {
        o = o.with_prev_key();
    }
    o
}

fn txn_to_client(t: TxnRequest) -> ec::Txn {
    fn op(op: TxnOp) -> ec::TxnOp {
        match op {
            TxnOp::Range(r) => ec::TxnOp::get(r.key.clone(), Some(get_options(&r))),
            TxnOp::Put(r) => ec::TxnOp::put(r.key.clone(), r.value.clone(), Some(put_options(&r))),
            TxnOp::Delete(r) => ec::TxnOp::delete(r.key.clone(), Some(delete_options(&r))),
            TxnOp::Txn(t) => ec::TxnOp::txn(txn_to_client(t)),
        }
    }
    let compares: Vec<ec::Compare> = t
        .compare
        .into_iter()
        .map(|c| {
            let op = match c.op {
                CompareOp::Equal => ec::CompareOp::Equal,
                CompareOp::Greater => ec::CompareOp::Greater,
                CompareOp::Less => ec::CompareOp::Less,
                CompareOp::NotEqual => ec::CompareOp::NotEqual,
            };
            let cmp = match c.target {
                CompareTarget::Value(v) => ec::Compare::value(c.key, op, v),
                CompareTarget::Version(v) => ec::Compare::version(c.key, op, v),
                CompareTarget::Create(v) => ec::Compare::create_revision(c.key, op, v),
                CompareTarget::Mod(v) => ec::Compare::mod_revision(c.key, op, v),
                CompareTarget::Lease(v) => ec::Compare::lease(c.key, op, v),
            };
            if c.range_end.is_empty() {
                cmp
            } else {
                cmp.with_range(c.range_end)
            }
        })
        .collect();
    ec::Txn::new()
        .when(compares)
        .and_then(t.success.into_iter().map(op).collect::<Vec<_>>())
        .or_else(t.failure.into_iter().map(op).collect::<Vec<_>>())
}

/// Whether a request failed before reaching any server (its endpoint refused the
/// connection): safe to send again, and the balancer may pick a live endpoint.
fn never_sent(e: &KvError) -> bool {
    matches!(e, KvError::Unavailable(m) if m.contains("tcp connect error") || m.contains("Connection refused"))
}

/// Attempts for a request that keeps meeting dead endpoints. A refused connection
/// fails at once, and the balancer picks endpoints at random, so with most endpoints
/// dead (a replica table names every replica, few run members) it takes many.
const CONNECT_ATTEMPTS: usize = 64;

/// Runs `call` on `client`, again while it fails before reaching a server.
async fn retrying<T, F, Fut>(client: &ec::Client, call: F) -> KvResult<T>
where
    F: Fn(ec::Client) -> Fut,
    Fut: std::future::Future<Output = Result<T, ec::Error>>,
{
    let mut last = None;
    for _ in 0..CONNECT_ATTEMPTS {
        match call(client.clone()).await.map_err(err) {
            Err(e) if never_sent(&e) => last = Some(e),
            other => return other,
        }
    }
    Err(last.expect("at least one attempt"))
}

impl RemoteKv {
    /// Runs `call`, again while it fails before reaching a server.
    async fn retrying<T, F, Fut>(&self, call: F) -> KvResult<T>
    where
        F: Fn(ec::Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, ec::Error>>,
    {
        retrying(&self.client, call).await
    }

    /// Connects to a cluster through any of `endpoints` (`host:port` or `http://host:port`).
    pub async fn connect(endpoints: &[String]) -> KvResult<Self> {
        Self::connect_tls(endpoints, None).await
    }

    /// Connects as [`RemoteKv::connect`], to `https://` endpoints with `tls` (the CA that
    /// signed the members' certificates and, where they check clients, this client's
    /// certificate).
    pub async fn connect_tls(
        endpoints: &[String],
        tls: Option<tonic::transport::ClientTlsConfig>,
    ) -> KvResult<Self> {
        Self::connect_as(endpoints, tls, None).await
    }

    /// Connects as [`RemoteKv::connect_tls`], authenticated as `user` where the store
    /// has auth enabled: its token is fetched at once (a wrong password fails here) and
    /// fetched again whenever the store says it expired.
    pub async fn connect_as(
        endpoints: &[String],
        tls: Option<tonic::transport::ClientTlsConfig>,
        user: Option<Credentials>,
    ) -> KvResult<Self> {
        let mut options = ec::ConnectOptions::new()
            .with_connect_timeout(std::time::Duration::from_secs(5))
            .with_keep_alive(
                std::time::Duration::from_secs(10),
                std::time::Duration::from_secs(5),
            );
        if let Some(tls) = tls {
            if let Some(plain) = endpoints.iter().find(|e| e.starts_with("http://")) {
                return Err(KvError::InvalidArgument(format!(
                    "{plain}: TLS is configured, so store endpoints must be https://"
                )));
            }
            options = options.with_tls(tls);
        } else if let Some(tls) = endpoints.iter().find(|e| e.starts_with("https://")) {
            return Err(KvError::InvalidArgument(format!(
                "{tls} is https://, but no CA file is given to verify it (trusted_ca_file, or --cacert)"
            )));
        }
        if let Some(c) = user {
            options = options
                .with_user(c.user, c.password)
                .with_auto_token_refresh(true);
        }
        let client = ec::Client::connect(endpoints, Some(options))
            .await
            .map_err(err)?;
        Ok(Self {
            client,
            endpoints: std::sync::Arc::new(tokio::sync::Mutex::new(
                endpoints.iter().cloned().collect(),
            )),
            workers: std::sync::Arc::default(),
        })
    }

    /// Makes the client follow the cluster's membership: every `interval` it reads the
    /// member list and balances over the members' client URLs, so members added later
    /// are used and removed ones dropped. The `member-list-refresh` worker does it; it
    /// stops when every clone of the client is gone.
    pub fn follow_members(&self, interval: std::time::Duration) {
        let weak = std::sync::Arc::downgrade(&self.endpoints);
        let client = self.client.clone();
        self.workers.spawn(
            "member-list-refresh",
            orbit_worker::Interval::every(interval),
            move || {
                let (weak, client) = (weak.clone(), client.clone());
                orbit_worker::job(async move {
                    let Some(endpoints) = weak.upgrade() else {
                        return Ok(());
                    };
                    let list = retrying(&client, |mut c| async move { c.member_list().await })
                        .await
                        .map_err(|e| format!("member list: {e}"))?;
                    let wanted: std::collections::BTreeSet<String> = list
                        .0
                        .members
                        .iter()
                        .flat_map(|m| m.client_ur_ls.iter().cloned())
                        .collect();
                    if wanted.is_empty() {
                        return Ok(());
                    }
                    let mut have = endpoints.lock().await;
                    for url in wanted.difference(&have.clone()) {
                        if client.add_endpoint(url).await.is_ok() {
                            have.insert(url.clone());
                        }
                    }
                    for url in have.clone().difference(&wanted) {
                        if client.remove_endpoint(url).await.is_ok() {
                            have.remove(url);
                        }
                    }
                    Ok(())
                })
            },
        );
    }

    /// The endpoints the client currently balances over.
    pub async fn endpoints(&self) -> Vec<String> {
        self.endpoints.lock().await.iter().cloned().collect()
    }

    /// A backup of the store as of now, streamed by the member this client reaches
    /// (the Maintenance Snapshot RPC, as `etcdctl snapshot save`).
    pub async fn snapshot(&self) -> KvResult<Vec<u8>> {
        let mut stream = self
            .client
            .maintenance_client()
            .snapshot()
            .await
            .map_err(err)?;
        let mut out = Vec::new();
        while let Some(chunk) = stream.message().await.map_err(err)? {
            out.extend_from_slice(chunk.blob());
        }
        Ok(out)
    }

    /// The underlying etcd client, for what the [`Kv`] trait does not cover.
    pub fn client(&self) -> ec::Client {
        self.client.clone()
    }
}

#[async_trait::async_trait]
impl Kv for RemoteKv {
    async fn range(&self, req: RangeRequest) -> KvResult<RangeResponse> {
        let opts = get_options(&req);
        let resp = self
            .retrying(|c| {
                let (key, opts) = (req.key.clone(), opts.clone());
                async move { c.kv_client().get(key, Some(opts)).await }
            })
            .await?;
        Ok(pb::range_resp_from_pb(resp.0))
    }

    async fn put(&self, req: PutRequest) -> KvResult<PutResponse> {
        let opts = put_options(&req);
        let resp = self
            .retrying(|c| {
                let (key, value, opts) = (req.key.clone(), req.value.clone(), opts.clone());
                async move { c.kv_client().put(key, value, Some(opts)).await }
            })
            .await?;
        Ok(pb::put_resp_from_pb(resp.0))
    }

    async fn delete(&self, req: DeleteRequest) -> KvResult<DeleteResponse> {
        let opts = delete_options(&req);
        let resp = self
            .retrying(|c| {
                let (key, opts) = (req.key.clone(), opts.clone());
                async move { c.kv_client().delete(key, Some(opts)).await }
            })
            .await?;
        Ok(pb::delete_resp_from_pb(resp.0))
    }

    async fn txn(&self, req: TxnRequest) -> KvResult<TxnResponse> {
        let resp = self
            .retrying(|c| {
                let txn = txn_to_client(req.clone());
                async move { c.kv_client().txn(txn).await }
            })
            .await?;
        Ok(pb::txn_resp_from_pb(resp.0))
    }

    async fn compact(&self, revision: i64) -> KvResult<()> {
        self.retrying(|c| async move { c.kv_client().compact(revision, None).await })
            .await?;
        Ok(())
    }

    async fn lease_grant(&self, ttl: i64, id: i64) -> KvResult<LeaseGrantResponse> {
        let resp = self
            .retrying(|c| async move {
                let opts = (id != 0).then(|| ec::LeaseGrantOptions::new().with_id(id));
                c.lease_client().grant(ttl, opts).await
            })
            .await?;
        Ok(LeaseGrantResponse {
            revision: resp.header().map(|h| h.revision()).unwrap_or_default(),
            id: resp.id(),
            ttl: resp.ttl(),
        })
    }

    async fn lease_revoke(&self, id: i64) -> KvResult<()> {
        self.retrying(|c| async move { c.lease_client().revoke(id).await })
            .await?;
        Ok(())
    }

    async fn lease_keep_alive(&self, id: i64) -> KvResult<i64> {
        let answer = self
            .retrying(|c| async move {
                let (mut keeper, mut stream) = c.lease_client().keep_alive(id).await?;
                keeper.keep_alive().await?;
                stream.message().await
            })
            .await?;
        match answer {
            Some(resp) if resp.ttl() > 0 => Ok(resp.ttl()),
            _ => Err(KvError::LeaseNotFound),
        }
    }

    async fn lease_time_to_live(&self, id: i64, keys: bool) -> KvResult<LeaseTimeToLiveResponse> {
        let resp = self
            .retrying(|c| async move {
                let opts = keys.then(|| ec::LeaseTimeToLiveOptions::new().with_keys());
                c.lease_client().time_to_live(id, opts).await
            })
            .await?;
        Ok(LeaseTimeToLiveResponse {
            revision: resp.header().map(|h| h.revision()).unwrap_or_default(),
            id: resp.id(),
            ttl: resp.ttl(),
            granted_ttl: resp.granted_ttl(),
            keys: resp.keys().to_vec(),
        })
    }

    async fn leases(&self) -> KvResult<Vec<i64>> {
        let resp = self
            .retrying(|c| async move { c.lease_client().leases().await })
            .await?;
        Ok(resp.leases().iter().map(|l| l.id()).collect())
    }

    async fn watch(&self, key: Vec<u8>, opts: WatchOptions) -> KvResult<WatchStream> {
        let mut o = ec::WatchOptions::new();
        if !opts.range_end.is_empty() {
            o = o.with_range(opts.range_end.clone());
        }
        if opts.start_revision > 0 {
            o = o.with_start_revision(opts.start_revision);
        }
        if opts.prev_kv {
            o = o.with_prev_key();
        }
        if opts.progress_notify {
            o = o.with_progress_notify();
        }
        let stream = self
            .client
            .watch_client()
            .watch(key, Some(o))
            .await
            .map_err(err)?;
        // The request half must live as long as the stream, or the server ends the watch.
        let (sender, responses) = stream.split();
        let out = futures::stream::unfold(
            (sender, responses, false),
            |(sender, mut responses, done)| async move {
                if done {
                    return None;
                }
                loop {
                    match responses.message().await {
                        Ok(Some(resp)) => {
                            let resp = resp.0;
                            if resp.created && resp.events.is_empty() && !resp.canceled {
                                continue;
                            }
                            let revision = resp.header.map(|h| h.revision).unwrap_or_default();
                            if resp.canceled {
                                if resp.compact_revision > 0 {
                                    let item = Ok(WatchResponse {
                                        revision,
                                        events: Vec::new(),
                                        compact_revision: resp.compact_revision,
                                    });
                                    return Some((item, (sender, responses, true)));
                                }
                                return None;
                            }
                            let item = Ok(WatchResponse {
                                revision,
                                events: resp.events.into_iter().map(pb::event_from_pb).collect(),
                                compact_revision: 0,
                            });
                            return Some((item, (sender, responses, false)));
                        }
                        Ok(None) => return None,
                        Err(e) => return Some((Err(err(e)), (sender, responses, true))),
                    }
                }
            },
        );
        Ok(out.boxed())
    }

    async fn members(&self) -> KvResult<Vec<Member>> {
        let resp = self
            .retrying(|c| async move { c.cluster_client().member_list().await })
            .await?;
        Ok(resp.0.members.into_iter().map(pb::member_from_pb).collect())
    }

    async fn alarm(
        &self,
        action: AlarmAction,
        member_id: u64,
        alarm: AlarmType,
    ) -> KvResult<Vec<AlarmMember>> {
        let action = match action {
            AlarmAction::Get => ec::AlarmAction::Get,
            AlarmAction::Activate => ec::AlarmAction::Activate,
            AlarmAction::Deactivate => ec::AlarmAction::Deactivate,
        };
        let kind = match alarm {
            AlarmType::None => ec::AlarmType::None,
            AlarmType::NoSpace => ec::AlarmType::Nospace,
            AlarmType::Corrupt => ec::AlarmType::Corrupt,
        };
        let resp = self
            .retrying(|mut c| async move {
                let mut opts = ec::AlarmOptions::new();
                opts.with_member(member_id);
                c.alarm(action, kind, Some(opts)).await
            })
            .await?;
        resp.alarms()
            .iter()
            .map(|a| {
                let alarm = AlarmType::from_pb(a.alarm() as i32).ok_or_else(|| {
                    KvError::Unavailable(format!("unknown alarm type {}", a.alarm() as i32))
                })?;
                Ok(AlarmMember {
                    member_id: a.member_id(),
                    alarm,
                })
            })
            .collect()
    }
}
