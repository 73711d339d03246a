//! `seal keygen`: a new key pair and self-signed certificate, as Bitnami's controller makes them
//! (RSA, empty subject, ten years by default). The key is written PKCS#1 PEM, mode 0600; nothing is
//! ever overwritten.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use seal_core::{Certificate, KeySize, PrivateKey};

use crate::failure::{Failure, Outcome};
use crate::io;

/// `seal keygen` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory to write tls.key and tls.crt into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// RSA modulus size.
    #[arg(long, default_value_t = 4096, value_parser = parse_bits)]
    pub bits: u32,

    /// Certificate validity in days.
    #[arg(long, default_value_t = 3650, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub validity_days: u32,
}

fn parse_bits(text: &str) -> Result<u32, String> {
    text.parse::<u32>()
        .ok()
        .filter(|bits| KeySize::from_bits(*bits).is_some())
        .ok_or_else(|| format!("{text} is not a supported size (2048, 3072 or 4096)"))
}

/// Runs `seal keygen`.
pub fn run(args: &Args) -> Outcome {
    let key_path = args.out.join("tls.key");
    let cert_path = args.out.join("tls.crt");
    for path in [&key_path, &cert_path] {
        if path.exists() {
            return Err(Failure::input(format!(
                "{}: already exists; refusing to overwrite",
                path.display()
            )));
        }
    }
    let size = KeySize::from_bits(args.bits).expect("invariant: clap only accepts generated sizes");
    let key = PrivateKey::generate(size).map_err(Failure::input)?;
    let validity = Duration::from_secs(u64::from(args.validity_days) * 86_400);
    let certificate =
        Certificate::self_signed(&key, SystemTime::now(), validity).map_err(Failure::input)?;

    std::fs::create_dir_all(&args.out).map_err(|e| {
        Failure::io(format!(
            "{}: cannot create: {}",
            args.out.display(),
            io::io_reason(&e)
        ))
    })?;
    io::create_new(&key_path, key.to_pkcs1_pem().as_bytes(), 0o600)?;
    if let Err(failure) = io::create_new(&cert_path, certificate.to_pem().as_bytes(), 0o644) {
        // Leave no half pair behind: a key without its certificate is a trap.
        let _ = std::fs::remove_file(&key_path);
        return Err(failure);
    }
    eprintln!(
        "wrote {} (RSA-{}, mode 0600) and {} (valid until {})",
        key_path.display(),
        args.bits,
        cert_path.display(),
        seal_core::cert::format_date(certificate.not_after())
    );
    io::print(&format!("{}\n", certificate.fingerprint()))
}
