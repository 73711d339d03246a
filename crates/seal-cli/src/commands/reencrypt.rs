//! `seal re-encrypt`: offline bulk re-encryption for key renewal and cluster migration. Each item is
//! opened with the old keys and sealed again for the new certificate under the same scope, name and
//! namespace. Every file is processed in memory first; files are rewritten (atomically, one by one)
//! only when all of them succeeded. Files already sealed with the new certificate are left alone, so
//! git shows only what changed.

use std::path::PathBuf;

use seal_api::sealing;

use crate::failure::{Failure, Outcome};
use crate::io;
use crate::manifests::SealedFile;
use crate::{CertArgs, certsource};

/// `seal re-encrypt` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Old private key(s) (PEM or TLS Secrets); repeat or separate with commas.
    #[arg(
        long = "key",
        value_name = "FILE",
        required = true,
        value_delimiter = ','
    )]
    pub keys: Vec<PathBuf>,

    #[command(flatten)]
    pub cert: CertArgs,

    /// SealedSecret manifests to rewrite in place.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

/// Runs `seal re-encrypt`.
pub fn run(args: &Args) -> Outcome {
    let ring = super::unseal::load_key_ring(&args.keys)?;
    let loaded = certsource::load(&args.cert.source())?;
    let new_fingerprint = loaded.certificate.fingerprint().to_string();
    let mut rewrites = Vec::new();
    let (mut changed, mut unchanged) = (0usize, 0usize);
    for path in &args.files {
        let input = io::read_input(path)?;
        let mut file = SealedFile::parse(&input)?;
        let mut file_changed = false;
        let mut any = false;
        for (line, sealed) in file.sealed_mut() {
            any = true;
            if sealed.spec.certificate_fingerprint.as_deref() == Some(new_fingerprint.as_str()) {
                unchanged += 1;
                continue;
            }
            let place = format!("{}:{line}", input.name);
            *sealed = sealing::reseal(sealed, &ring, &loaded.certificate).map_err(|e| match e {
                sealing::ResealError::Open(e) => Failure::input(e)
                    .at(&place)
                    .hint("pass the key(s) the file was sealed with via --key"),
                other => Failure::input(other).at(&place),
            })?;
            changed += 1;
            file_changed = true;
        }
        if !any {
            return Err(Failure::input(format!(
                "{}: no SealedSecret in this file",
                input.name
            )));
        }
        if file_changed {
            rewrites.push((path.clone(), file.render()));
        }
    }
    for (path, text) in &rewrites {
        io::write_atomic(path, text.as_bytes())?;
    }
    eprintln!(
        "re-encrypted {changed} SealedSecret(s) in {} file(s) for {} ({}); {unchanged} already sealed with it",
        rewrites.len(),
        loaded.origin,
        loaded.certificate.fingerprint().short()
    );
    Ok(())
}
