//! The CA on disk: `ca.pem` (the certificate, public) and `ca-key.pem` (the key, mode 0600) in
//! one directory, by default `$XDG_DATA_HOME/tunnelkit/ca/` (`~/.local/share/tunnelkit/ca/`).
//!
//! Whoever reads the key can make certificates every device that trusts the CA accepts, for any
//! site. So the key file is created with mode 0600 from its first byte (never written and then
//! chmod-ed), in a 0700 directory, and moved into place by rename so a reader never sees half a
//! key.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::root::Ca;

/// The certificate's file name.
pub const CERT_FILE: &str = "ca.pem";
/// The private key's file name.
pub const KEY_FILE: &str = "ca-key.pem";

/// `$XDG_DATA_HOME/tunnelkit/ca`, or `$HOME/.local/share/tunnelkit/ca`.
pub fn default_dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| Path::new(d).is_absolute()) {
        return Ok(PathBuf::from(d).join("tunnelkit/ca"));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/share/tunnelkit/ca")),
        None => anyhow::bail!("neither XDG_DATA_HOME nor HOME is set; pass --dir DIR"),
    }
}

/// The certificate's path in `dir`.
pub fn cert_path(dir: &Path) -> PathBuf {
    dir.join(CERT_FILE)
}

/// Reads the CA in `dir`; `Ok(None)` if there is none (neither file exists).
pub fn load(dir: &Path) -> anyhow::Result<Option<Ca>> {
    let (cert, key) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
    if !cert.exists() && !key.exists() {
        return Ok(None);
    }
    let cert_pem = fs::read_to_string(&cert)
        .with_context(|| format!("cannot read the CA certificate {}", cert.display()))?;
    let key_pem = fs::read_to_string(&key).with_context(|| {
        format!("cannot read the CA key {} (re-create both with `tunnelkit ca init --force`)", key.display())
    })?;
    Ca::from_pem(&cert_pem, &key_pem)
        .map(Some)
        .with_context(|| format!("the CA in {} is unusable", dir.display()))
}

/// Writes `ca` into `dir` (created 0700 if missing). Refuses to replace an existing CA unless
/// `force`: devices trust a CA by its certificate, and a new one silently breaks all of them.
pub fn save(dir: &Path, ca: &Ca, force: bool) -> anyhow::Result<()> {
    let (cert, key) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
    if !force && (cert.exists() || key.exists()) {
        anyhow::bail!(
            "a CA already exists in {}; pass --force to replace it (every device that trusts the \
             current one will have to trust the new one)",
            dir.display()
        );
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    // `mode` above applies only to directories it creates; an existing one is tightened too.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} private (chmod 700)", dir.display()))?;
    write_atomic(&key, ca.key_pem().as_bytes(), 0o600)?;
    write_atomic(&cert, ca.cert_pem().as_bytes(), 0o644)
}

/// The CA in `dir`, made and saved first if there is none; `true` if it was just made.
pub fn load_or_create(dir: &Path) -> anyhow::Result<(Ca, bool)> {
    if let Some(ca) = load(dir)? {
        return Ok((ca, false));
    }
    let ca = Ca::generate()?;
    save(dir, &ca, false)?;
    Ok((ca, true))
}

/// Writes `bytes` to a new temporary file created with `mode`, syncs it, and renames it over
/// `path`, so `path` is always either the old file or the whole new one.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_load_keeps_the_ca_and_the_key_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("nested/ca");
        let (ca, created) = load_or_create(&dir).unwrap();
        assert!(created);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
        assert_eq!(mode(&dir), 0o700);
        let (again, created) = load_or_create(&dir).unwrap();
        assert!(!created);
        assert_eq!(again.fingerprint(), ca.fingerprint());
        let err = save(&dir, &Ca::generate().unwrap(), false).unwrap_err().to_string();
        assert!(err.contains("--force"), "{err}");
    }

    #[test]
    fn a_missing_key_is_an_error_not_a_new_ca() {
        let tmp = tempfile::tempdir().unwrap();
        save(tmp.path(), &Ca::generate().unwrap(), false).unwrap();
        fs::remove_file(tmp.path().join(KEY_FILE)).unwrap();
        let err = format!("{:#}", load_or_create(tmp.path()).err().unwrap());
        assert!(err.contains("--force"), "{err}");
    }
}
