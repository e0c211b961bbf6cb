//! The deployment files: every Kubernetes manifest validates against the Kubernetes
//! schemas (PyPI's `kubernetes-validate`, strict: no unknown fields), the shared
//! configuration in the ConfigMap is one the satellite accepts, and — where a
//! container runtime answers — the Dockerfile builds an image whose `satellite
//! --version` runs.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("deploy/k8s"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_manifest_validates_against_the_kubernetes_schemas() {
    let files = manifests();
    assert!(files.len() >= 5, "{files:?}");
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "--quiet"])
        .args(&files)
        .output()
        .expect("kubernetes-validate (scripts/setup.sh installs it from PyPI)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The check can fail: a manifest with a field Kubernetes does not have is refused.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    let text = std::fs::read_to_string(repo().join("deploy/k8s/40-version.yaml")).unwrap();
    std::fs::write(
        &bad,
        text.replace("replicas: 2", "replicas: 2\n  replicaz: 2"),
    )
    .unwrap();
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "--quiet"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success(), "an unknown field passed");
}

#[test]
fn the_configmap_holds_a_configuration_the_satellite_accepts() {
    let extract = "import sys, yaml\n\
        for d in yaml.safe_load_all(open(sys.argv[1])):\n\
        \x20   if d and d['kind'] == 'ConfigMap' and d['metadata']['name'] == 'satellite-config':\n\
        \x20       sys.stdout.write(d['data']['satellite.toml'])\n";
    let out = Command::new("python3")
        .args(["-c", extract])
        .arg(repo().join("deploy/k8s/10-config.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("satellite.toml");
    std::fs::write(&config, &out.stdout).unwrap();
    let show = Command::new(env!("CARGO_BIN_EXE_satellite"))
        .args(["config", "show", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        show.status.success(),
        "{}",
        String::from_utf8_lossy(&show.stderr)
    );
    let shown = String::from_utf8_lossy(&show.stdout);
    assert!(shown.contains("mode = \"incremental\""), "{shown}");
    assert_eq!(shown.matches("[[replica]]").count(), 5, "{shown}");
}

#[test]
fn the_image_builds_and_runs_where_a_container_runtime_answers() {
    let runtime = Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success());
    if !runtime {
        // The CI machine has the docker client but no daemon: nothing to build on.
        eprintln!("no container runtime answers `docker info`: the image is not built here");
        return;
    }
    let build = Command::new("docker")
        .args(["build", "-t", "orbit-test:latest", "."])
        .current_dir(repo())
        .status()
        .unwrap();
    assert!(build.success());
    let out = Command::new("docker")
        .args(["run", "--rm", "orbit-test:latest", "--version"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("satellite "));
}
