//! Accounting on a planet that charges through payment channels: two accounting
//! processes (the `satellite run accounting` builder) fold what the nodes settle
//! and what the uplink paid; the month's report equals the settled orders, and each
//! project's invoice holds exactly what its channels were paid; a project at its
//! segment limit is refused by the API and accepted once the limit is raised.

use orbit_kv::Scan;
use orbit_payments::{Payer, Wallet};
use orbit_satellite_model::accounting::{month_of, Bandwidth, Limits, Usage};
use orbit_satellite_model::keys;
use orbit_satellite_model::orders::Settled;
use orbit_satellite_model::unix_now;
use orbit_testplanet::Planet;
use std::collections::BTreeMap;
use uplink::project::Options;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reports_equal_settled_orders_and_invoices_reconcile_with_channel_payments() {
    let planet = Planet::start_paid(6, &[("upload_segment", 7), ("download_segment", 3)]).await;
    let charges = planet.api.charges.clone().unwrap();
    let user = Wallet::random();
    charges
        .escrow
        .deposit(&user.address(), 10_000)
        .await
        .unwrap();
    let payer = std::sync::Arc::new(
        Payer::connect(&planet.replica.url, &planet.satellite.public(), user)
            .await
            .unwrap(),
    );
    let ch = payer.open(1_000, unix_now() + 3600, None).await.unwrap();
    let options = Options {
        k: 2,
        repair: 3,
        success: 4,
        total: 5,
        segment_size: 256 << 10,
        inline_max: 1024,
    };
    let p = planet
        .project(options)
        .await
        .with_payments(payer.clone(), ch.id);
    p.create_bucket("paid").await.unwrap();
    // 3 segments up (7 each), twice 3 down (3 each).
    let data = orbit_testkit::random_bytes(700 << 10, 1);
    p.upload("paid", "x", &data[..], &|_| {}).await.unwrap();
    for _ in 0..2 {
        let mut back = Vec::new();
        p.download("paid", "x", &mut back, &|_| {}).await.unwrap();
        assert!(back == data);
    }
    let channel = charges.escrow.channel(ch.id).await.unwrap();
    assert_eq!(channel.authorized, 3 * 7 + 6 * 3);

    // Every node settles; two accounting processes fold at once.
    let trusted = planet.trusted();
    for n in planet.nodes.iter().flatten() {
        n.reporter.settle(&trusted).await.unwrap();
    }
    let (a, _wa) = planet.accounting_process();
    let (b, _wb) = planet.accounting_process();
    let (x, y) = tokio::join!(a.worker.trigger_wait(), b.worker.trigger_wait());
    x.unwrap();
    y.unwrap();
    let kv = planet.store.embedded(0);
    let settled_count = Scan::prefix(&kv, keys::SETTLED, 1000)
        .collect()
        .await
        .unwrap();
    assert!(!settled_count.is_empty());
    for waiting in [keys::ACCOUNTING_ORDERS, keys::ACCOUNTING_PAYMENTS] {
        let left = Scan::prefix(&kv, waiting, 100).collect().await.unwrap();
        assert!(left.is_empty(), "{} left under {waiting}", left.len());
    }

    let month = month_of(unix_now());
    let report = a.service.report(&month).await.unwrap();
    let mut want: BTreeMap<_, Bandwidth> = BTreeMap::new();
    for kv in &settled_count {
        let s: Settled = orbit_kv::record::decode(&kv.key, &kv.value).unwrap();
        want.entry(s.node).or_default().add(s.action, s.amount);
    }
    let got: BTreeMap<_, Bandwidth> = report
        .payouts
        .iter()
        .map(|p| (p.node, p.bandwidth))
        .collect();
    assert_eq!(got, want);
    let inv = report
        .invoices
        .iter()
        .find(|i| i.project == "test")
        .expect("the project's invoice");
    assert_eq!((inv.paid, inv.payments), (channel.authorized, 9));
    assert_eq!(inv.bandwidth.get, want.values().map(|b| b.get).sum::<u64>());
    assert_eq!(inv.due, inv.total as i128 - channel.authorized as i128);
    // Again: nothing new, nothing counted twice.
    b.worker.trigger_wait().await.unwrap();
    assert_eq!(b.service.last_round().unwrap().orders, 0);
    assert_eq!(a.service.report(&month).await.unwrap(), report);

    // Segment limit: the project holds 3; at 3 the next upload is refused.
    let usage = Usage::new(std::sync::Arc::new(planet.store.embedded(0)));
    let limits = Limits {
        segments: Some(3),
        ..Default::default()
    };
    usage.set_limits("test", limits, unix_now()).await.unwrap();
    let e = p
        .upload("paid", "y", &data[..1000], &|_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("segment limit") && e.contains("3 of 3"), "{e}");
    let limits = Limits {
        segments: Some(4),
        ..Default::default()
    };
    usage.set_limits("test", limits, unix_now()).await.unwrap();
    p.upload("paid", "y", &data[..1000], &|_| {}).await.unwrap();
}
