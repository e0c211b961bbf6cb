fn main() {
    println!("cargo:rerun-if-changed=proto/satellite.proto");
    tonic_prost_build::configure()
        .compile_protos(&["proto/satellite.proto"], &["proto"])
        .expect("compiling proto/satellite.proto (is protoc installed?)");
}
