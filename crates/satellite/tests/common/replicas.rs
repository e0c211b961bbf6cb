//! Replica processes of this build's `satellite` (see `orbit_testkit::replicas`).

#[allow(unused_imports)]
pub use orbit_testkit::replicas::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// This build's satellite binary.
pub fn satellite() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_satellite"))
}

/// Runs `satellite storage status` until its replica table satisfies `ok`.
pub async fn wait_table(endpoints: &[String], ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Command::new(env!("CARGO_BIN_EXE_satellite"))
            .args([
                "storage",
                "status",
                "--token",
                "replica-test",
                "--endpoints",
                &endpoints.join(","),
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let table = text.split("REPLICA").nth(1).unwrap_or("").to_string();
        if ok(&table) {
            return table;
        }
        assert!(
            Instant::now() < deadline,
            "replica table never got there: {text}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
