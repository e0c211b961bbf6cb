//! Audits through a whole network in one process: the loop's sampler queues
//! segments, auditors (built as `satellite run audit` builds them) challenge the real
//! piecestores for verified slices, nodes that lost or altered their pieces are
//! disqualified, and repair rebuilds their pieces elsewhere.

use orbit_audit::AuditSection;
use orbit_identity::NodeId;
use orbit_repair::RepairSection;
use orbit_satellite_model::reputation::{AuditOutcome, ReputationConfig};
use orbit_segment_loop::Active;
use orbit_testplanet::{random_bytes, Planet};
use std::collections::HashMap;
use std::sync::Arc;
use uplink::project::Options;

async fn pass(planet: &Planet) {
    let (lp, _workers) = planet.loop_process("test-loop");
    let active: Active = Arc::new(|| true);
    let report = lp.segment_loop.run_pass(active).await;
    assert!(report.problems().is_none(), "{:?}", report.problems());
    let sample = lp.sampler.stats().expect("the sampler finished");
    assert!(sample.written && sample.queued > 0, "{sample:?}");
}

/// α₀ = 50: a node fails about three audits in a row before its score drops to 0.96.
const REPUTATION: ReputationConfig = ReputationConfig {
    audit_lambda: 0.999,
    audit_weight: 1.0,
    initial_alpha: 50.0,
    disqualify_threshold: 0.96,
    unknown_lambda: 0.95,
    suspend_threshold: 0.6,
    online_lambda: 0.999,
    vetting_audits: 5,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_that_lose_or_alter_pieces_are_disqualified_and_repaired_around() {
    let planet = Planet::start(10).await;
    let p = planet
        .project(Options {
            k: 2,
            repair: 4,
            success: 6,
            total: 6,
            segment_size: 128 << 10,
            inline_max: 4096,
        })
        .await;
    p.create_bucket("bkt").await.unwrap();
    let mut objects = Vec::new();
    for i in 0..6u64 {
        let data = random_bytes(300 << 10, i);
        p.upload("bkt", &format!("o{i}"), &data[..], &|_| {})
            .await
            .unwrap();
        objects.push(data);
    }
    // Pieces per node: the two busiest go bad.
    let mut held: HashMap<NodeId, usize> = HashMap::new();
    for n in planet.api.nodes.all().await.unwrap() {
        held.insert(n.id, 0);
    }
    for i in 0..planet.nodes.len() {
        let id = planet.nodes[i].as_ref().unwrap().identity.id();
        held.insert(
            id,
            orbit_testplanet::files(&planet.node_dir(i).join("storage/pieces")).len(),
        );
    }
    let mut by_load: Vec<(NodeId, usize)> = held.into_iter().collect();
    by_load.sort_by_key(|(id, n)| (std::cmp::Reverse(*n), *id));
    let (deleter, flipper) = (by_load[0].0, by_load[1].0);
    assert!(by_load[1].1 >= 3, "{by_load:?}");
    // One deletes every piece; the other flips a byte in every 16 KiB group of every
    // piece and recomputes nothing.
    for f in orbit_testplanet::files(
        &planet
            .node_dir(planet.node_index(&deleter))
            .join("storage/pieces"),
    ) {
        std::fs::remove_file(f).unwrap();
    }
    for f in orbit_testplanet::files(
        &planet
            .node_dir(planet.node_index(&flipper))
            .join("storage/pieces"),
    ) {
        let mut b = std::fs::read(&f).unwrap();
        let mut at = 1024 + 100;
        while at < b.len() {
            b[at] ^= 0x01;
            at += 16 << 10;
        }
        std::fs::write(&f, b).unwrap();
    }

    let (a, _wa) = planet.audit_process("auditor-a", AuditSection::default(), REPUTATION);
    let (b, _wb) = planet.audit_process("auditor-b", AuditSection::default(), REPUTATION);
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds <= 6, "not disqualified within 6 passes");
        pass(&planet).await;
        // Two auditors on one queue: every piece audit is one of theirs, none twice.
        let (ra, rb) = tokio::join!(a.auditor.run_once(), b.auditor.run_once());
        let audits: Vec<_> = ra.unwrap().into_iter().chain(rb.unwrap()).collect();
        assert!(!audits.is_empty());
        for x in &audits {
            let bad = x.node == deleter || x.node == flipper;
            let want = if bad {
                AuditOutcome::Failure
            } else {
                AuditOutcome::Success
            };
            assert_eq!(x.outcome, want, "{x:?}");
        }
        let dq = |id: NodeId| {
            let nodes = planet.api.nodes.clone();
            async move { nodes.get(&id).await.unwrap().unwrap() }
        };
        let (d, f) = (dq(deleter).await, dq(flipper).await);
        if d.disqualified && f.disqualified {
            for r in [&d, &f] {
                // With α₀ = 50 the third failure takes the score to 0.943.
                let why = &r.reputation.disqualified_reason;
                assert!(why.contains("after 3 failed audits"), "{why}");
                assert!(r.reputation.disqualified_at > 0);
            }
            break;
        }
    }
    // Honest nodes: never a failure, never disqualified.
    for n in planet.api.nodes.all().await.unwrap() {
        if n.id != deleter && n.id != flipper {
            assert!(!n.disqualified, "{n:?}");
            assert_eq!(n.reputation.audits.failure, 0, "{n:?}");
        }
    }
    let stats = [a.auditor.stats(), b.auditor.stats()];
    assert!(stats.iter().map(|s| s.pieces_removed).sum::<u64>() >= 2);
    // Slices, not pieces: each successful audit moved about one 16 KiB group.
    let (moved, ok): (u64, u64) = stats
        .iter()
        .fold((0, 0), |(m, o), s| (m + s.bytes_moved, o + s.success));
    assert!(
        moved / ok.max(1) <= 17 << 10,
        "{moved} bytes over {ok} audits"
    );

    // Repair brings every segment back without the bad nodes; with both stopped every
    // object still downloads identical.
    let (lp, _w) = planet.loop_process("test-loop");
    let report = lp.segment_loop.run_pass(Arc::new(|| true)).await;
    assert!(report.problems().is_none(), "{:?}", report.problems());
    let (rp, _wr) = planet.repair_process("repairer", RepairSection::default());
    rp.repairer.run_once().await.unwrap();
    assert!(
        rp.repairer.stats().repaired > 0,
        "{:?}",
        rp.repairer.stats()
    );
    let mut planet = planet;
    for id in [deleter, flipper] {
        let i = planet.node_index(&id);
        planet.stop_node(i);
    }
    for (i, data) in objects.iter().enumerate() {
        let mut back = Vec::new();
        p.download("bkt", &format!("o{i}"), &mut back, &|_| {})
            .await
            .unwrap();
        assert!(back == *data, "object {i} differs");
    }
    // The disqualified nodes get no new uploads (once the API's selection cache has
    // read the table again, as it does every `selection_refresh_s`).
    planet.api.nodes.refresh().await.unwrap();
    let fresh = random_bytes(300 << 10, 99);
    p.upload("bkt", "after", &fresh[..], &|_| {}).await.unwrap();
    let enc = uplink::crypt::encrypt_path(&planet.access.root, "bkt", "after");
    let (_, segs) = planet
        .api
        .meta
        .get_object("test", "bkt", &enc)
        .await
        .unwrap();
    for s in segs {
        assert!(s.pieces.iter().all(|p| p.1 != deleter && p.1 != flipper));
    }
}
