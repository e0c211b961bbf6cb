//! The console in a real browser: `satellite run api` serving the console (its pages
//! built into the binary), a loop and an accounting process, and ten storage nodes,
//! driven by web/console/e2e/console.e2e.mjs through Playwright in Debian's Chromium
//! (what it checks is written at its top). Screenshots of every page go to
//! `target/artifacts/console/`.

mod common;

use common::nodes::{uplink_cli, wait_nodes, StorageNodes};
use common::replicas::satellite;
use orbit_testkit::free_port;
use std::path::PathBuf;
use std::time::{Duration, Instant};

async fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the console never listened on {port}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_browser_from_sign_up_to_a_revoked_key() {
    let port = free_port();
    // Replica 1: api with the console; 2: loop (the tally); 3: accounting (the days).
    let sat = common::network::start(
        &format!(
            "[console]\naddr = \"127.0.0.1:{port}\"\n[loop]\ninterval_s = 3600\nleader_ttl_s = 2\n[accounting]\ninterval_s = 3600\n"
        ),
        &["loop", "accounting"],
    )
    .await;
    let mut sn = StorageNodes::new();
    for _ in 0..10 {
        sn.start(&sat.url, &sat.key);
    }
    wait_nodes(&sat.nodes, &sn.ids.iter().copied().collect(), 3600).await;
    wait_listening(port).await;

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let artifacts = satellite()
        .parent()
        .and_then(|d| d.parent())
        .expect("the binary is in target/<profile>/")
        .join("artifacts/console");
    let _ = std::fs::remove_dir_all(&artifacts);
    let tally = [(1, "segment-loop"), (2, "accounting")]
        .iter()
        .map(|(i, w)| format!("http://127.0.0.1:{}/workers/{w}/trigger", sat.r.status[*i]))
        .collect::<Vec<_>>()
        .join(",");
    let script = root.join("web/console/e2e/console.e2e.mjs");
    let out = tokio::process::Command::new("node")
        .arg(&script)
        .current_dir(root.join("web/console"))
        .env("CONSOLE_URL", format!("http://127.0.0.1:{port}"))
        .env("MAIL_DIR", sat.r.data_dir(0).join("console-mail"))
        .env("UPLINK", uplink_cli())
        .env("ARTIFACTS", &artifacts)
        .env("TALLY_URLS", tally)
        .env("TRIGGER_TOKEN", "replica-test")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("node {}: {e}", script.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the browser test failed:\n{text}\n--- api log ---\n{}",
        sat.r.log(0)
    );
    let shots = std::fs::read_dir(&artifacts)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "png"))
        })
        .count();
    assert!(
        shots >= 15,
        "{shots} screenshots in {}",
        artifacts.display()
    );
}
