//! `satellite storage status` against a cluster of real processes.

mod common;

use std::process::Command;

fn status(endpoints: &[String]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_satellite"))
        .args(["storage", "status", "--endpoints", &endpoints.join(",")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storage_status_shows_members_roles_leader_revision_and_health() {
    let mut c = common::start(3).await;
    let eps = c.endpoints();
    let out = tokio::task::spawn_blocking(move || status(&eps))
        .await
        .unwrap();
    for name in ["m0", "m1", "m2"] {
        assert!(out.contains(&format!(" {name} ")), "{out}");
    }
    assert_eq!(out.matches(" leader ").count(), 1, "{out}");
    assert_eq!(out.matches(" follower ").count(), 2, "{out}");
    assert_eq!(out.matches("  healthy").count(), 3, "{out}");
    assert!(out.contains("cluster revision: "), "{out}");
    assert!(!out.contains("leader: none"), "{out}");

    // A dead member shows as unhealthy; the others still report a leader.
    let victim = (c.leader().await.unwrap() + 1) % 3;
    c.kill(victim);
    let eps = c.endpoints();
    let out = tokio::task::spawn_blocking(move || status(&eps))
        .await
        .unwrap();
    assert_eq!(out.matches("unhealthy").count(), 1, "{out}");
    assert!(out.contains(&format!(" m{victim} ")), "{out}");
    assert_eq!(out.matches(" leader ").count(), 1, "{out}");
}
