fn main() {
    println!("cargo:rerun-if-changed=proto/piecestore.proto");
    tonic_prost_build::configure()
        .compile_protos(&["proto/piecestore.proto"], &["proto"])
        .expect("compiling proto/piecestore.proto (is protoc installed?)");
}
