fn main() {
    println!("cargo:rerun-if-changed=proto/piecestore.proto");
    println!("cargo:rerun-if-changed=proto/satellite.proto");
    println!("cargo:rerun-if-changed=proto/version.proto");
    tonic_prost_build::configure()
        // Piece data travels as shared buffers: no copy to cut a piece into chunks.
        .bytes(".orbit.piecestore.v1.UploadRequest.chunk")
        .bytes(".orbit.piecestore.v1.DownloadResponse.chunk")
        .compile_protos(
            &[
                "proto/piecestore.proto",
                "proto/satellite.proto",
                "proto/version.proto",
            ],
            &["proto"],
        )
        .expect("compiling the protos (is protoc installed?)");
}
