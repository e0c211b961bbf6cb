//! Accounting over a real 3-member store: every settled order and payment is counted
//! exactly once however many accounting processes fold them, while settlements keep
//! arriving; daily rollups fold hours and tallies without changing a period's
//! figures; project limits refuse with a clear error and accept again.

use orbit_identity::Identity;
use orbit_kv::{Kv, RangeRequest};
use orbit_protocol::{encode_served, Action, Order, PieceId, Served};
use orbit_satellite_model::accounting::{
    month_of, payment_op, Accounting, Bandwidth, Limits, PaymentRecord, Usage,
};
use orbit_satellite_model::keys::{self, Bucket, Project};
use orbit_satellite_model::metainfo::{Metainfo, Redundancy, Segment};
use orbit_satellite_model::nodes::NodeRecord;
use orbit_satellite_model::orders::{LimitFor, Orders};
use orbit_satellite_model::tally::{BucketTally, LastTally, NodeTally, Tallies};
use orbit_satellite_model::Error;
use orbit_testkit::{OrbitCluster, Timings};
use std::collections::BTreeMap;
use std::sync::Arc;

fn node_record(id: &Identity) -> NodeRecord {
    NodeRecord {
        id: id.id(),
        key: id.public(),
        address: "https://127.0.0.1:1".into(),
        free: 1 << 30,
        version: "t".into(),
        last_seen: 0,
        disqualified: false,
        last_contact: 0,
        last_contact_failure: 0,
        contact_failures: 0,
        reputation: Default::default(),
    }
}

async fn count(kv: &dyn Kv, prefix: &str) -> i64 {
    kv.range(RangeRequest::prefix(prefix)).await.unwrap().count
}

/// 2026-12-01T00:00:00Z.
const DEC_1: u64 = 1_796_083_200;

#[tokio::test]
async fn every_settled_order_and_payment_is_counted_once_by_racing_accounting_processes() {
    let c = OrbitCluster::start(3, Timings::FAST).await;
    let kv: Arc<dyn Kv> = Arc::new(c.embedded(0));
    let sat = Identity::generate();
    let orders = Orders::new(kv.clone(), sat.clone(), 7 * 86_400);
    let nodes: Vec<Identity> = (0..4).map(|_| Identity::generate()).collect();
    let uplink = Identity::generate();
    let buckets = [("acme", "photos"), ("acme", "logs"), ("zeta", "bkt")];
    let (p_b, b_b): (Vec<Project>, Vec<Bucket>) = buckets
        .iter()
        .map(|(p, b)| (Project::new(p).unwrap(), Bucket::new(b).unwrap()))
        .unzip();
    let actions = [
        Action::Put,
        Action::Get,
        Action::GetRepair,
        Action::GetAudit,
        Action::PutRepair,
    ];

    // What the rollups must come to, computed here from the orders themselves.
    let mut want_nodes: BTreeMap<_, Bandwidth> = BTreeMap::new();
    let mut want_buckets: BTreeMap<(String, String), Bandwidth> = BTreeMap::new();
    let mut batches = Vec::new();
    for i in 0..240u64 {
        let n = &nodes[i as usize % nodes.len()];
        let action = actions[i as usize % actions.len()];
        let amount = 1000 + i * 7;
        // Uplink transfers carry their bucket; repair and audit are the satellite's.
        let bucket = matches!(action, Action::Put | Action::Get).then(|| i as usize % 3);
        let limit = orders.limit_for(
            &node_record(n),
            PieceId::random(),
            action,
            1 << 20,
            uplink.public(),
            DEC_1,
            LimitFor {
                piece_expiration: 0,
                bucket: bucket.map(|b| (&p_b[b], &b_b[b])),
            },
        );
        want_nodes.entry(n.id()).or_default().add(action, amount);
        if let Some(b) = bucket {
            let id = (buckets[b].0.to_string(), buckets[b].1.to_string());
            want_buckets.entry(id).or_default().add(action, amount);
        }
        let served = Served {
            order: Order::sign(&limit, amount, &uplink),
            limit,
        };
        // Settled over two days, each node's orders in batches of 10.
        let at = DEC_1 + (i % 2) * 86_400 + i * 60;
        batches.push((n.clone(), at, served));
    }
    let mut payments = 0u64;
    for (i, (p, _)) in buckets.iter().enumerate() {
        for nonce in 0..3u64 {
            let rec = PaymentRecord {
                project: p.to_string(),
                channel: i as u64,
                nonce,
                authorized: 5,
                amount: 5,
                at: DEC_1 + 100,
            };
            payments += 5;
            kv.txn(orbit_kv::TxnRequest {
                compare: Vec::new(),
                success: vec![payment_op(&rec)],
                failure: Vec::new(),
            })
            .await
            .unwrap();
        }
    }

    // Settlements keep arriving while two accounting processes (on other members)
    // fold them.
    let a = Accounting::new(Arc::new(c.embedded(1)));
    let b = Accounting::new(Arc::new(c.embedded(2)));
    let settler = async {
        for chunk in batches.chunks(10) {
            let (n, at) = (&chunk[0].0, chunk[0].1);
            let mine: Vec<Served> = chunk
                .iter()
                .filter(|(m, _, _)| m.id() == n.id())
                .map(|(_, _, s)| s.clone())
                .collect();
            let others: Vec<&(Identity, u64, Served)> =
                chunk.iter().filter(|(m, _, _)| m.id() != n.id()).collect();
            let body = encode_served(&mine);
            let (ok, no) = orders
                .settle(n.public(), &body, &n.sign(&body), at)
                .await
                .unwrap();
            assert_eq!((ok.len(), no.len()), (mine.len(), 0));
            for (m, at, s) in others {
                let body = encode_served(std::slice::from_ref(s));
                let (ok, _) = orders
                    .settle(m.public(), &body, &m.sign(&body), *at)
                    .await
                    .unwrap();
                assert_eq!(ok.len(), 1);
            }
        }
    };
    let folding = async {
        let mut rolled = 0;
        for _ in 0..20 {
            let (x, y) = tokio::join!(a.roll_orders(), b.roll_orders());
            rolled += x.unwrap().folded + y.unwrap().folded;
        }
        rolled
    };
    let ((), mut rolled) = tokio::join!(settler, folding);
    let (x, y) = tokio::join!(a.roll_orders(), b.roll_orders());
    rolled += x.unwrap().folded + y.unwrap().folded;
    assert_eq!(rolled, 240 + 9, "every order and payment folded once");
    assert_eq!(count(&*kv, keys::ACCOUNTING_ORDERS).await, 0);
    assert_eq!(count(&*kv, keys::ACCOUNTING_PAYMENTS).await, 0);

    // A replayed settlement adds nothing.
    let (n, at, s) = &batches[0];
    let body = encode_served(std::slice::from_ref(s));
    let (ok, no) = orders
        .settle(n.public(), &body, &n.sign(&body), *at)
        .await
        .unwrap();
    assert_eq!((ok.len(), no.len()), (0, 1));
    assert_eq!(a.roll_orders().await.unwrap().folded, 0);

    let check = |u: &orbit_satellite_model::accounting::PeriodUsage| {
        let got: BTreeMap<_, Bandwidth> = u.nodes.iter().map(|(n, d)| (*n, d.bandwidth)).collect();
        assert_eq!(got, want_nodes);
        let got: BTreeMap<_, Bandwidth> = u
            .buckets
            .iter()
            .map(|(k, d)| (k.clone(), d.bandwidth))
            .collect();
        assert_eq!(got, want_buckets);
        let paid: u64 = u.projects.values().map(|m| m.paid).sum();
        assert_eq!(paid, payments);
        let acme = &u.projects["acme"].bandwidth;
        let photos = &want_buckets[&("acme".into(), "photos".into())];
        let logs = &want_buckets[&("acme".into(), "logs".into())];
        assert_eq!(acme.get, photos.get + logs.get);
    };
    let month = month_of(DEC_1);
    let before = a.period(&month).await.unwrap();
    check(&before);

    // Tallies of both days, then the days fold (raced again): the period is the same,
    // the hours and all but the newest tally are gone.
    let tallies = Tallies::new(kv.clone());
    for (k, at) in [(0u64, DEC_1 + 3600), (1, DEC_1 + 86_400 + 3600)] {
        let nodes_t: Vec<NodeTally> = nodes
            .iter()
            .map(|n| NodeTally {
                node: n.id(),
                at,
                interval_s: 3600,
                bytes: 1000 * (k + 1),
                pieces: 1,
                byte_hours: 1000.0 * (k + 1) as f64,
            })
            .collect();
        let buckets_t: Vec<BucketTally> = buckets
            .iter()
            .map(|(p, b)| BucketTally {
                project: p.to_string(),
                bucket: b.to_string(),
                at,
                interval_s: 3600,
                bytes: 500,
                inline_bytes: 0,
                segments: 2,
                objects: 1,
            })
            .collect();
        tallies
            .write(&LastTally { at, pass: 1 }, &nodes_t, &buckets_t)
            .await
            .unwrap();
    }
    let before = a.period(&month).await.unwrap();
    check(&before);
    let later = DEC_1 + 5 * 86_400;
    let (x, y) = tokio::join!(a.roll_days(later), b.roll_days(later));
    assert!(x.unwrap().folded + y.unwrap().folded > 0);
    assert_eq!(count(&*kv, keys::HOURLY_NODES).await, 0);
    assert_eq!(count(&*kv, keys::HOURLY_BUCKETS).await, 0);
    assert_eq!(
        count(&*kv, keys::TALLY_NODES).await,
        nodes.len() as i64,
        "the newest tally stays"
    );
    let after = b.period(&month).await.unwrap();
    check(&after);
    for (n, d) in &after.nodes {
        assert_eq!(d.byte_hours, before.nodes[n].byte_hours);
        assert_eq!(d.byte_hours, 3000.0);
    }
    for (k, d) in &after.buckets {
        assert_eq!(d.byte_hours, 1000.0, "{k:?}");
        assert_eq!(d.segment_hours, 4.0);
        assert_eq!((d.bytes, d.objects), (500, 1));
    }
    // Another month holds none of it.
    assert!(a.period("2026-11").await.unwrap().nodes.is_empty());
}

#[tokio::test]
async fn a_project_over_a_limit_is_refused_clearly_and_accepted_when_under_again() {
    let c = OrbitCluster::start(1, Timings::FAST).await;
    let kv: Arc<dyn Kv> = Arc::new(c.embedded(0));
    let usage = Usage::new(kv.clone());
    let meta = Metainfo::new(kv.clone());
    meta.create_bucket("acme", "bkt", 1).await.unwrap();
    usage.check_upload("acme").await.unwrap();
    usage
        .set_limits(
            "acme",
            Limits {
                storage: Some(1000),
                segments: Some(3),
                egress: Some(2000),
            },
            1,
        )
        .await
        .unwrap();
    let segment = |index| Segment {
        index,
        encrypted_size: 600,
        inline: Some(vec![0; 600]),
        redundancy: Redundancy {
            k: 1,
            repair: 1,
            success: 1,
            total: 1,
        },
        root: Default::default(),
        piece_size: 0,
        pieces: Vec::new(),
        created: 1,
        expires: 0,
    };
    let stream = meta.begin_object("acme", "bkt", "a", 1).await.unwrap();
    meta.commit_segment("acme", &stream, &segment(0))
        .await
        .unwrap();
    usage.check_upload("acme").await.unwrap();
    meta.commit_segment("acme", &stream, &segment(1))
        .await
        .unwrap();
    let e = usage.check_upload("acme").await.unwrap_err();
    assert!(matches!(e, Error::LimitExceeded(_)), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("storage limit") && msg.contains("1200 of 1000"),
        "{msg}"
    );
    assert_eq!(
        tonic::Status::from(e).code(),
        tonic::Code::ResourceExhausted
    );
    // Another project is not limited by it.
    usage.check_upload("other").await.unwrap();

    // A tally after deletions brings the project under: accepted again, and the
    // records the tally counted are gone.
    let rev = kv.range(RangeRequest::key("x")).await.unwrap().revision;
    Tallies::new(kv.clone())
        .write(
            &LastTally { at: 10, pass: rev },
            &[],
            &[BucketTally {
                project: "acme".into(),
                bucket: "bkt".into(),
                at: 10,
                interval_s: 0,
                bytes: 300,
                inline_bytes: 300,
                segments: 1,
                objects: 1,
            }],
        )
        .await
        .unwrap();
    assert_eq!(count(&*kv, keys::USAGE_ADDED).await, 0);
    assert_eq!(usage.stored("acme").await.unwrap().bytes, 300);
    usage.check_upload("acme").await.unwrap();
    // A segment committed after the tally's pass counts on top of it.
    meta.commit_segment("acme", &stream, &segment(2))
        .await
        .unwrap();
    let s = usage.stored("acme").await.unwrap();
    assert_eq!((s.bytes, s.segments), (900, 2));
    meta.commit_segment("acme", &stream, &segment(3))
        .await
        .unwrap();
    let msg = usage.check_upload("acme").await.unwrap_err().to_string();
    assert!(msg.contains("storage limit"), "{msg}");

    // Egress: this month's settled downloads against the limit.
    let now = orbit_satellite_model::unix_now();
    usage.check_download("acme", now).await.unwrap();
    let sat = Identity::generate();
    let orders = Orders::new(kv.clone(), sat, 3600);
    let (node, uplink) = (Identity::generate(), Identity::generate());
    let (p, b) = (Project::new("acme").unwrap(), Bucket::new("bkt").unwrap());
    let limit = orders.limit_for(
        &node_record(&node),
        PieceId::random(),
        Action::Get,
        1 << 20,
        uplink.public(),
        now,
        LimitFor {
            piece_expiration: 0,
            bucket: Some((&p, &b)),
        },
    );
    let body = encode_served(&[Served {
        order: Order::sign(&limit, 2500, &uplink),
        limit,
    }]);
    orders
        .settle(node.public(), &body, &node.sign(&body), now)
        .await
        .unwrap();
    usage.check_download("acme", now).await.unwrap();
    Accounting::new(kv.clone()).roll_orders().await.unwrap();
    let msg = usage
        .check_download("acme", now)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("egress limit") && msg.contains("2500 of 2000"),
        "{msg}"
    );
    usage
        .set_limits(
            "acme",
            Limits {
                egress: Some(10_000),
                ..Default::default()
            },
            2,
        )
        .await
        .unwrap();
    usage.check_download("acme", now).await.unwrap();
    usage.check_upload("acme").await.unwrap();
}

#[tokio::test]
async fn a_projects_period_sums_its_buckets_day_by_day_and_no_other_project() {
    use orbit_kv::record::encode;
    use orbit_satellite_model::accounting::{BucketDay, Invoice, Prices, ProjectMonth};
    let c = OrbitCluster::start(1, Timings::FAST).await;
    let kv: Arc<dyn Kv> = Arc::new(c.embedded(0));
    let (a, b) = (
        Project::new("alpha").unwrap(),
        Project::new("beta").unwrap(),
    );
    let day = |bytes, egress, hours: f64| {
        let mut bw = Bandwidth::default();
        bw.add(Action::Get, egress);
        BucketDay {
            bandwidth: bw,
            byte_hours: bytes as f64 * hours,
            tallies: 1,
            last_at: 1,
            bytes,
            segments: 1,
            objects: 1,
            ..Default::default()
        }
    };
    let rows = [
        ("2026-03-01", &a, "one", day(100, 5, 24.0)),
        ("2026-03-01", &a, "two", day(50, 0, 24.0)),
        ("2026-03-02", &a, "one", day(300, 7, 24.0)),
        ("2026-03-01", &b, "one", day(9_999, 9_999, 24.0)),
        ("2026-04-01", &a, "one", day(1, 1, 1.0)),
    ];
    for (d, p, bucket, rec) in &rows {
        let key = keys::daily_bucket(d, p, &Bucket::new(bucket).unwrap());
        kv.put(orbit_kv::PutRequest::new(key, encode(rec)))
            .await
            .unwrap();
    }
    let paid = ProjectMonth {
        paid: 3,
        payments: 1,
        ..Default::default()
    };
    kv.put(orbit_kv::PutRequest::new(
        keys::project_month(&a, "2026-03"),
        encode(&paid),
    ))
    .await
    .unwrap();
    // Asked in April: March is over, no day of it is partial.
    let april = 1_775_779_200;
    let period = Accounting::new(kv.clone())
        .project_period("alpha", "2026-03", april)
        .await
        .unwrap();
    assert_eq!(period.partial, None);
    let days: Vec<(&str, u64, u64)> = period
        .days
        .iter()
        .map(|(d, r)| (d.as_str(), r.bytes, r.bandwidth.get))
        .collect();
    assert_eq!(days, vec![("2026-03-01", 150, 5), ("2026-03-02", 300, 7)]);
    assert_eq!(period.totals.bandwidth.get, 12);
    assert_eq!(
        period.totals.bytes, 300,
        "the month ends with the last day's size"
    );
    assert_eq!(period.totals.byte_hours, (150.0 + 300.0) * 24.0);
    assert_eq!(period.settled, paid);
    let prices = Prices {
        egress_tb: 1_000_000_000_000,
        ..Prices::default()
    };
    let invoice = Invoice::new("alpha", &period.totals, &period.settled, &prices);
    assert_eq!((invoice.egress, invoice.paid), (12, 3));
    assert!(Accounting::new(kv.clone())
        .project_period("alpha", "2026-13", april)
        .await
        .is_err());

    // Asked on 2026-03-03 at 10:30: today so far is its hourly rollups and the last
    // tally's sizes (this project's only), on top of the folded days.
    use orbit_satellite_model::accounting::HourRollup;
    use orbit_satellite_model::tally::{BucketTally, LastTally};
    let today = 1_772_496_000;
    let now = today + 10 * 3600 + 1800;
    let hour = |get| {
        let mut bandwidth = Bandwidth::default();
        bandwidth.add(Action::Get, get);
        HourRollup {
            bandwidth,
            orders: 1,
        }
    };
    let one = Bucket::new("one").unwrap();
    for (h, p, get) in [(9, &a, 4), (10, &a, 2), (9, &b, 1_000), (-1, &a, 50)] {
        let key = keys::hourly_bucket((today as i64 + h * 3600) as u64, p, &one);
        kv.put(orbit_kv::PutRequest::new(key, encode(&hour(get))))
            .await
            .unwrap();
    }
    let at = today + 10 * 3600;
    for (p, bytes) in [(&a, 400), (&b, 7_777)] {
        let t = BucketTally {
            project: p.as_str().to_string(),
            bucket: "one".into(),
            at,
            interval_s: 3600,
            bytes,
            inline_bytes: 0,
            segments: 2,
            objects: 2,
        };
        kv.put(orbit_kv::PutRequest::new(
            keys::tally_bucket(at, p, &one),
            encode(&t),
        ))
        .await
        .unwrap();
    }
    kv.put(orbit_kv::PutRequest::new(
        keys::TALLY_LAST,
        encode(&LastTally { at, pass: 1 }),
    ))
    .await
    .unwrap();
    let period = Accounting::new(kv)
        .project_period("alpha", "2026-03", now)
        .await
        .unwrap();
    assert_eq!(period.partial.as_deref(), Some("2026-03-03"));
    let (day, so_far) = period.days.last().unwrap();
    assert_eq!(day, "2026-03-03");
    assert_eq!(
        (so_far.bytes, so_far.segments, so_far.bandwidth.get),
        (400, 2, 6),
        "this hour and the last, not yesterday's unfolded hour, not beta's"
    );
    assert_eq!(
        so_far.byte_hours, 0.0,
        "storage counts when the day is folded"
    );
    assert_eq!(period.totals.bandwidth.get, 12 + 6);
    assert_eq!(period.totals.bytes, 400);
    assert_eq!(period.totals.byte_hours, (150.0 + 300.0) * 24.0);
}
