fn main() {
    println!("cargo:rerun-if-changed=proto/peer.proto");
    tonic_prost_build::configure()
        .compile_protos(&["proto/peer.proto"], &["proto"])
        .expect("compiling proto/peer.proto (is protoc installed?)");
}
