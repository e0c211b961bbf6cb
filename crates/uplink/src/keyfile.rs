//! The uplink's secret key on disk: hex, readable by its owner only (0600).

use anyhow::Context;
use orbit_payments::Wallet;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Writes a new random key to `path`, refusing to overwrite one.
pub fn create(path: &Path) -> anyhow::Result<Wallet> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let wallet = Wallet::random();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
    writeln!(f, "{}", wallet.secret_hex())?;
    f.sync_all()?;
    Ok(wallet)
}

/// Reads the key at `path`, refusing one others can read.
pub fn load(path: &Path) -> anyhow::Result<Wallet> {
    let meta = std::fs::metadata(path).with_context(|| {
        format!(
            "reading {} (create one with `uplink key new`)",
            path.display()
        )
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "{} is readable by others (mode {mode:o}); run chmod 600 on it",
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)?;
    Wallet::from_hex(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_written_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k/uplink.key");
        let w = create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load(&path).unwrap().address(), w.address());
        assert!(
            create(&path).is_err(),
            "an existing key is never overwritten"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("chmod 600"));
    }
}
