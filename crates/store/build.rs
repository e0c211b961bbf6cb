fn main() {
    for p in [
        "proto/peer.proto",
        "proto/lock.proto",
        "proto/election.proto",
        "proto/etcd",
    ] {
        println!("cargo:rerun-if-changed={p}");
    }
    tonic_prost_build::configure()
        .compile_protos(&["proto/peer.proto"], &["proto"])
        .expect("compiling proto/peer.proto (is protoc installed?)");
    // etcd's Lock and Election services: servers only, on etcd-client's message types.
    tonic_prost_build::configure()
        .build_client(false)
        .extern_path(
            ".etcdserverpb.ResponseHeader",
            "::etcd_client::proto::PbResponseHeader",
        )
        .extern_path(".mvccpb.KeyValue", "::etcd_client::proto::PbKeyValue")
        .compile_protos(&["proto/lock.proto", "proto/election.proto"], &["proto"])
        .expect("compiling the lock and election protos (is protoc installed?)");
}
