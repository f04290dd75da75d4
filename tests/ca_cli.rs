//! `tunnelkit ca init` and `tunnelkit ca show` as a person runs them: files and modes on disk, the
//! fingerprint openssl would print, refusing to overwrite, and the default directory (always under
//! a tempdir: these tests never touch the real home).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

/// Runs `tunnelkit ARGS` with `HOME` and `XDG_DATA_HOME` pointing into `home` (or removed, for
/// `xdg: None`), so nothing can reach the real home directory.
fn tunnelkit(args: &[&str], home: &Path, xdg: Option<&Path>) -> Output {
    let mut cmd = Command::new(support::bin());
    cmd.args(args).env("HOME", home).env("RUST_LOG", "warn");
    match xdg {
        Some(x) => cmd.env("XDG_DATA_HOME", x),
        None => cmd.env_remove("XDG_DATA_HOME"),
    };
    cmd.output().expect("run tunnelkit")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The `AB:CD:…` fingerprint on the line starting with `SHA-256 fingerprint: `.
fn printed_fingerprint(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("SHA-256 fingerprint: "))
        .unwrap_or_else(|| panic!("no fingerprint line in:\n{out}"))
        .trim()
        .to_owned()
}

/// What `openssl x509 -noout -fingerprint -sha256` says, or our own SHA-256 if openssl is absent.
fn reference_fingerprint(cert: &Path) -> String {
    match Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(cert)
        .output()
    {
        Ok(o) if o.status.success() => {
            let s = stdout(&o);
            s.trim().split_once('=').expect("openssl prints NAME=FINGERPRINT").1.to_owned()
        }
        _ => {
            let pem = std::fs::read(cert).unwrap();
            let der: rustls_pki_types::CertificateDer =
                rustls_pki_types::pem::PemObject::from_pem_slice(&pem).unwrap();
            tunnelkit::ca::fingerprint(&der)
        }
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_creates_a_private_key_and_prints_the_fingerprint_openssl_prints() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("ca");
    let out = tunnelkit(&["ca", "init", "--dir", dir.to_str().unwrap()], home.path(), None);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let cert = dir.join("ca.pem");
    assert!(text.contains(cert.to_str().unwrap()), "{text}");
    assert_eq!(printed_fingerprint(&text), reference_fingerprint(&cert));
    assert_eq!(mode(&dir.join("ca-key.pem")), 0o600);
    assert_eq!(mode(&dir), 0o700);
    for how in ["--cacert", "update-ca-certificates", "certutil -d sql:", "add-trusted-cert"] {
        assert!(text.contains(how), "init explains `{how}`:\n{text}");
    }
}

#[test]
fn init_refuses_to_replace_a_ca_unless_forced() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("ca");
    let d = dir.to_str().unwrap();
    let first = tunnelkit(&["ca", "init", "--dir", d], home.path(), None);
    assert!(first.status.success(), "{}", stderr(&first));
    let before = std::fs::read(dir.join("ca.pem")).unwrap();

    let again = tunnelkit(&["ca", "init", "--dir", d], home.path(), None);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));
    assert_eq!(std::fs::read(dir.join("ca.pem")).unwrap(), before, "the CA is untouched");

    let forced = tunnelkit(&["ca", "init", "--dir", d, "--force"], home.path(), None);
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert_ne!(std::fs::read(dir.join("ca.pem")).unwrap(), before, "--force made a new CA");
    assert_ne!(printed_fingerprint(&stdout(&forced)), printed_fingerprint(&stdout(&first)));
    assert_eq!(mode(&dir.join("ca-key.pem")), 0o600);
}

#[test]
fn show_prints_the_pem_and_the_same_fingerprint_as_init() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("ca");
    let d = dir.to_str().unwrap();
    let missing = tunnelkit(&["ca", "show", "--dir", d], home.path(), None);
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("tunnelkit ca init"), "{}", stderr(&missing));

    let init = tunnelkit(&["ca", "init", "--dir", d], home.path(), None);
    let show = tunnelkit(&["ca", "show", "--dir", d], home.path(), None);
    assert!(show.status.success(), "{}", stderr(&show));
    let text = stdout(&show);
    assert!(text.starts_with("-----BEGIN CERTIFICATE-----"), "{text}");
    assert!(text.contains(&std::fs::read_to_string(dir.join("ca.pem")).unwrap()));
    assert_eq!(printed_fingerprint(&text), printed_fingerprint(&stdout(&init)));
}

#[test]
fn the_default_directory_follows_xdg_data_home_then_home() {
    let home = tempfile::tempdir().unwrap();
    let xdg = home.path().join("xdg");
    let out = tunnelkit(&["ca", "init"], home.path(), Some(&xdg));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(xdg.join("tunnelkit/ca/ca.pem").exists());
    assert!(xdg.join("tunnelkit/ca/ca-key.pem").exists());

    let out = tunnelkit(&["ca", "init"], home.path(), None);
    assert!(out.status.success(), "{}", stderr(&out));
    let fallback = home.path().join(".local/share/tunnelkit/ca");
    assert!(fallback.join("ca.pem").exists());
    let show = tunnelkit(&["ca", "show"], home.path(), None);
    assert_eq!(printed_fingerprint(&stdout(&show)), printed_fingerprint(&stdout(&out)));
}
