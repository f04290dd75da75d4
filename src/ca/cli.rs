//! `tunnelkit ca init` and `tunnelkit ca show`: make the root CA, print it, and say how to trust it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::root::Ca;
use super::store;

/// `tunnelkit ca`: the root certificate authority used for HTTPS interception.
#[derive(Debug, Clone, clap::Args)]
pub struct CaArgs {
    #[command(subcommand)]
    pub command: CaCommand,
}

/// What `tunnelkit ca` does.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum CaCommand {
    /// Create a new root CA (ECDSA P-256, 10 years) and print how to trust it.
    Init {
        /// Directory for ca.pem and ca-key.pem [default: $XDG_DATA_HOME/tunnelkit/ca].
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Replace an existing CA (devices that trust the old one must trust the new one).
        #[arg(long)]
        force: bool,
    },
    /// Print the CA certificate (PEM) and its SHA-256 fingerprint.
    Show {
        /// Directory holding ca.pem [default: $XDG_DATA_HOME/tunnelkit/ca].
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// Runs `tunnelkit ca …`, printing to stdout.
pub fn run(args: CaArgs) -> anyhow::Result<()> {
    let out = match args.command {
        CaCommand::Init { dir, force } => {
            let dir = resolve(dir)?;
            let ca = Ca::generate()?;
            store::save(&dir, &ca, force)?;
            init_report(&store::cert_path(&dir), &ca)
        }
        CaCommand::Show { dir } => {
            let dir = resolve(dir)?;
            let ca = store::load(&dir)?.ok_or_else(|| {
                anyhow::anyhow!("no CA in {}; create one with `tunnelkit ca init`", dir.display())
            })?;
            format!("{}SHA-256 fingerprint: {}\n", ca.cert_pem(), ca.fingerprint())
        }
    };
    print!("{out}");
    Ok(())
}

fn resolve(dir: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match dir {
        Some(d) => Ok(d),
        None => store::default_dir(),
    }
}

/// What `init` prints: where the certificate is, its fingerprint, and the command that makes each
/// common client trust it.
pub fn init_report(cert: &Path, ca: &Ca) -> String {
    let p = cert.display();
    let mut s = String::new();
    let _ = writeln!(s, "created CA \"{}\"", ca.common_name());
    let _ = writeln!(s, "certificate: {p}");
    let _ = writeln!(s, "SHA-256 fingerprint: {}", ca.fingerprint());
    let _ = writeln!(s, "the private key next to it (ca-key.pem, mode 0600) must stay private.");
    let _ = writeln!(s, "\ntrust it:");
    let _ = writeln!(s, "  curl:            curl --cacert {p} ...   (through the proxy: --proxy-cacert {p})");
    let _ = writeln!(
        s,
        "  Debian/Ubuntu:   sudo cp {p} /usr/local/share/ca-certificates/tunnelkit.crt && sudo update-ca-certificates"
    );
    let _ = writeln!(
        s,
        "  Chromium/Firefox (NSS): certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n tunnelkit -i {p}"
    );
    let _ = writeln!(
        s,
        "  macOS:           sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain {p}"
    );
    let _ = writeln!(s, "  Windows:         certutil -addstore -f ROOT {p}");
    s
}
