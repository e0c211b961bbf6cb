//! A replica's shutdown stops what it started: the status endpoint stops answering
//! and its port is free again.

use orbit_replica::{Replica, ReplicaConfig};
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn shutdown_stops_the_status_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (client, peer, status) = (free_port(), free_port(), free_port());
    let config = ReplicaConfig::parse(&format!(
        r#"
replica_id = 1
mode = "fixed"
data_dir = "{}"
status_addr = "127.0.0.1:{status}"
heartbeat_ms = 50
election_ms = 500
[[replica]]
id = 1
store_name = "r1"
client_url = "http://127.0.0.1:{client}"
peer_url = "http://127.0.0.1:{peer}"
store_node = true
"#,
        dir.path().display()
    ))
    .unwrap();
    let replica = Replica::start(config).await.unwrap();
    let addr = replica.status_addr();
    assert!(tokio::net::TcpStream::connect(addr).await.is_ok());
    replica.shutdown().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the status endpoint still accepts connections after shutdown"
    );
    // Its ports can be bound again: nothing of it is left listening.
    std::net::TcpListener::bind(("127.0.0.1", status)).expect("status port free");
}
