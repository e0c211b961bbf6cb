fn main() {
    for p in [
        "proto/peer.proto",
        "proto/lock.proto",
        "proto/election.proto",
        "proto/auth.proto",
        "proto/etcd",
    ] {
        println!("cargo:rerun-if-changed={p}");
    }
    tonic_prost_build::configure()
        .compile_protos(&["proto/peer.proto"], &["proto"])
        .expect("compiling proto/peer.proto (is protoc installed?)");
    // etcd's Lock, Election and Auth services: servers only; the header and key-value
    // messages are etcd-client's own types.
    tonic_prost_build::configure()
        .build_client(false)
        .extern_path(
            ".etcdserverpb.ResponseHeader",
            "::etcd_client::proto::PbResponseHeader",
        )
        .extern_path(".mvccpb.KeyValue", "::etcd_client::proto::PbKeyValue")
        .compile_protos(
            &[
                "proto/lock.proto",
                "proto/election.proto",
                "proto/auth.proto",
            ],
            &["proto"],
        )
        .expect("compiling the lock, election and auth protos (is protoc installed?)");
    // The JSON gateway's descriptors (no code from them is used).
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it"));
    std::fs::create_dir_all(out.join("gateway-unused")).expect("making OUT_DIR/gateway-unused");
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .out_dir(out.join("gateway-unused"))
        .file_descriptor_set_path(out.join("gateway.bin"))
        .compile_protos(
            &[
                "proto/gateway.proto",
                "proto/lock.proto",
                "proto/election.proto",
                "proto/auth.proto",
            ],
            &["proto"],
        )
        .expect("compiling the gateway's descriptors");
}
