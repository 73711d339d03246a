//! `seal convert`: SealedSecret manifests between `seal.dev/v1alpha1` and `bitnami.com/v1alpha1`.
//! Ciphertext is never touched; other documents in the files pass through unchanged.

use std::path::PathBuf;

use crate::OutputFormat;
use crate::failure::{Failure, Outcome};
use crate::io;
use crate::manifests::{Doc, Flavor, SealedFile, render};

/// Target apiVersion.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Target {
    /// seal.dev/v1alpha1.
    #[default]
    Seal,
    /// bitnami.com/v1alpha1.
    Bitnami,
}

/// `seal convert` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Which apiVersion to convert to.
    #[arg(long, value_enum, default_value_t)]
    pub to: Target,

    /// SealedSecret manifests; stdin if none or `-`.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Rewrite each file in place (atomically) instead of printing.
    #[arg(long)]
    pub in_place: bool,

    /// Output format (default: the input's).
    #[arg(
        short = 'o',
        long = "format",
        alias = "output",
        value_enum,
        conflicts_with = "in_place"
    )]
    pub format: Option<OutputFormat>,
}

/// Runs `seal convert`.
pub fn run(args: &Args) -> Outcome {
    let flavor = match args.to {
        Target::Seal => Flavor::Seal,
        Target::Bitnami => Flavor::Bitnami,
    };
    if args.in_place && (args.files.is_empty() || args.files.iter().any(|f| f.as_os_str() == "-")) {
        return Err(Failure::input("--in-place needs file arguments, not stdin"));
    }
    let inputs = io::read_inputs(&args.files)?;
    let mut outputs = Vec::new();
    for input in &inputs {
        let mut file = SealedFile::parse(input)?;
        for doc in &mut file.docs {
            if let Doc::Sealed {
                flavor: current, ..
            } = doc
            {
                *current = flavor;
            }
        }
        outputs.push((input.path.clone(), file));
    }
    if args.in_place {
        for (path, file) in &outputs {
            let path = path
                .as_ref()
                .expect("invariant: --in-place inputs are files");
            io::write_atomic(path, file.render().as_bytes())?;
        }
        return Ok(());
    }
    let format = args.format.map_or(outputs[0].1.format, Into::into);
    let values: Vec<_> = outputs.iter().flat_map(|(_, file)| file.values()).collect();
    io::print(&render(&values, format))
}
