//! `seal raw`: one value in, one base64 sealed value out (no trailing newline), for editing
//! `encryptedData` by hand or for templating tools.

use std::io::Read;
use std::path::PathBuf;

use seal_core::{Scope, envelope};
use zeroize::Zeroizing;

use crate::failure::{Failure, Outcome};
use crate::io;
use crate::{CertArgs, TargetArgs, certsource};

/// `seal raw` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub cert: CertArgs,

    #[command(flatten)]
    pub target: TargetArgs,

    /// File holding the value (taken byte for byte); stdin if absent or `-`.
    #[arg(long, value_name = "FILE")]
    pub from_file: Option<PathBuf>,
}

/// Runs `seal raw`.
pub fn run(args: &Args) -> Outcome {
    let scope: Scope = args.target.scope.map_or(Scope::Strict, Into::into);
    let label = scope
        .label(
            args.target.namespace.as_deref(),
            args.target.name.as_deref(),
        )
        .map_err(|e| {
            Failure::input(e).hint("pass -n/--namespace and --name, or a wider --scope")
        })?;
    let value = read_value(args.from_file.as_deref())?;
    let loaded = certsource::load(&args.cert.source())?;
    let sealed = envelope::seal_base64(loaded.certificate.public_key(), &label, &value)
        .map_err(|_| Failure::input("sealing failed in the cryptographic library"))?;
    io::print(&sealed)
}

fn read_value(path: Option<&std::path::Path>) -> Outcome<Zeroizing<Vec<u8>>> {
    match path {
        Some(path) if path != std::path::Path::new("-") => {
            Ok(Zeroizing::new(io::read_bytes(path)?))
        }
        _ => {
            let mut value = Zeroizing::new(Vec::new());
            std::io::stdin()
                .read_to_end(&mut value)
                .map_err(|e| Failure::io(format!("<stdin>: cannot read: {e}")))?;
            Ok(value)
        }
    }
}
