fn main() {
    println!("cargo:rerun-if-changed=proto/payments.proto");
    tonic_prost_build::configure()
        .compile_protos(&["proto/payments.proto"], &["proto"])
        .expect("compiling proto/payments.proto (is protoc installed?)");
}
