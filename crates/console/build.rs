//! Builds the console's front end (web/console, Vite) into OUT_DIR and lists its files
//! for `include_bytes!`, so the `satellite` binary carries the pages it serves and a
//! fresh machine needs no web server beside it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let web = manifest.join("../../web/console");
    for p in [
        "src",
        "index.html",
        "public",
        "vite.config.ts",
        "package-lock.json",
    ] {
        println!("cargo:rerun-if-changed={}", web.join(p).display());
    }
    let vite = web.join("node_modules/.bin/vite");
    if !vite.exists() {
        panic!(
            "the console's front end needs its npm packages: run scripts/setup.sh \
             (it runs npm ci --prefix web/console)"
        );
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("console");
    let status = Command::new(&vite)
        .arg("build")
        .arg("--outDir")
        .arg(&out)
        .args(["--emptyOutDir", "--logLevel", "warn"])
        .current_dir(&web)
        .status()
        .unwrap_or_else(|e| panic!("running {}: {e} (is Node.js installed?)", vite.display()));
    assert!(status.success(), "the console's front end did not build");
    let mut all = Vec::new();
    files(&out, &mut all);
    let mut list = String::from("&[\n");
    for f in &all {
        let rel = f.strip_prefix(&out).expect("under the output dir");
        let url = format!("/{}", rel.to_string_lossy().replace('\\', "/"));
        list.push_str(&format!(
            "    ({url:?}, include_bytes!({:?}) as &[u8]),\n",
            f.display().to_string()
        ));
    }
    list.push(']');
    std::fs::write(
        PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("assets.rs"),
        list,
    )
    .expect("writing assets.rs");
}
