//! The CLI's view of manifest files: which documents are SealedSecrets (either flavour), read into
//! seal's model while remembering their flavour so they are written back as they came, and which are
//! other objects that are passed through untouched.

use seal_api::SealedSecret;
use seal_api::bitnami::{from_bitnami, to_bitnami};
use seal_api::manifest::{self, Format, Object};
use serde_json::Value;

use crate::failure::{Failure, Outcome};
use crate::io::Input;

/// Which apiVersion a SealedSecret was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `seal.dev/v1alpha1`.
    Seal,
    /// `bitnami.com/v1alpha1`.
    Bitnami,
}

/// One document of a file of SealedSecrets.
pub enum Doc {
    /// A SealedSecret, in seal's model.
    Sealed {
        /// 1-based line where its document starts.
        line: usize,
        /// How it was written.
        flavor: Flavor,
        /// The object.
        sealed: Box<SealedSecret>,
    },
    /// Anything else, passed through.
    Other(Value),
}

/// A parsed file of SealedSecrets (and possibly other objects).
pub struct SealedFile {
    /// Its format, kept when writing it back.
    pub format: Format,
    /// Its documents in order.
    pub docs: Vec<Doc>,
}

impl SealedFile {
    /// Parses an input. Errors name the input and line.
    pub fn parse(input: &Input) -> Outcome<Self> {
        let format = Format::detect(&input.text);
        let objects =
            manifest::parse(&input.text).map_err(|e| Failure::input(e).at(&input.name))?;
        let mut docs = Vec::with_capacity(objects.len());
        for located in objects {
            let line = located.line;
            let doc = match located.object {
                Object::SealedSecret(sealed) => Doc::Sealed {
                    line,
                    flavor: Flavor::Seal,
                    sealed,
                },
                Object::Bitnami(bitnami) => Doc::Sealed {
                    line,
                    flavor: Flavor::Bitnami,
                    sealed: Box::new(from_bitnami(&bitnami).map_err(|e| {
                        Failure::input(e).at(format_args!("{}:{line}", input.name))
                    })?),
                },
                Object::Secret(secret) => Doc::Other(to_value(&secret)),
                Object::Other { value, .. } => Doc::Other(value),
                _ => unreachable!("every object kind is handled above"),
            };
            docs.push(doc);
        }
        Ok(Self { format, docs })
    }

    /// The SealedSecrets, mutable, with their lines.
    pub fn sealed_mut(&mut self) -> impl Iterator<Item = (usize, &mut SealedSecret)> {
        self.docs.iter_mut().filter_map(|doc| match doc {
            Doc::Sealed { line, sealed, .. } => Some((*line, sealed.as_mut())),
            Doc::Other(_) => None,
        })
    }

    /// The documents as JSON values, each SealedSecret in its own flavour.
    pub fn values(&self) -> Vec<Value> {
        self.docs
            .iter()
            .map(|doc| match doc {
                Doc::Sealed { flavor, sealed, .. } => sealed_value(sealed, *flavor),
                Doc::Other(value) => value.clone(),
            })
            .collect()
    }

    /// The file as text in its own format.
    pub fn render(&self) -> String {
        render(&self.values(), self.format)
    }
}

/// A SealedSecret as a JSON value in the chosen flavour, without status.
pub fn sealed_value(sealed: &SealedSecret, flavor: Flavor) -> Value {
    match flavor {
        Flavor::Seal => {
            let mut clean = sealed.clone();
            clean.status = None;
            to_value(&clean)
        }
        Flavor::Bitnami => to_value(&to_bitnami(sealed)),
    }
}

/// Objects as a stream in `format`.
pub fn render(values: &[Value], format: Format) -> String {
    manifest::write(values, format).expect("invariant: JSON values always serialize")
}

fn to_value<T: serde::Serialize>(object: &T) -> Value {
    serde_json::to_value(object).expect("invariant: Kubernetes objects always serialize to JSON")
}
