//! `seal [FILE...]`: Secrets in, SealedSecrets out.

use k8s_openapi::api::core::v1::Secret;
use seal_api::manifest::{self, Format, Object};
use seal_api::sealing::{self, SealOptions};

use crate::failure::{Failure, Outcome};
use crate::io::{self, Input};
use crate::manifests::{Flavor, SealedFile, render, sealed_value};
use crate::{OutputFormat, SealArgs, certsource, kubeseal_flag};

/// Runs the default command.
pub fn run(args: SealArgs) -> Outcome {
    refuse_kubeseal_only_flags(&args)?;
    if args.raw {
        return super::raw::run(&super::raw::Args {
            cert: args.cert,
            target: args.target,
            from_file: args.from_file,
        });
    }
    let mut files = args.files.clone();
    files.extend(args.secret_file.iter().cloned());
    let inputs = io::read_inputs(&files)?;
    let secrets = secrets_in(&inputs)?;
    let loaded = certsource::load(&args.cert.source())?;

    if let Some(target) = &args.merge_into {
        let [(place, secret)] = secrets.as_slice() else {
            return Err(Failure::input(format!(
                "--merge-into takes exactly one Secret, got {}",
                secrets.len()
            )));
        };
        let items = sealing::secret_items(secret);
        if items.is_empty() && !args.allow_empty_data {
            return Err(Failure::input(format!(
                "{place}: the Secret has no data or stringData"
            )));
        }
        let input = io::read_input(target)?;
        let mut file = SealedFile::parse(&input)?;
        let mut targets: Vec<_> = file.sealed_mut().collect();
        let [(line, sealed)] = targets.as_mut_slice() else {
            return Err(Failure::input(format!(
                "{}: --merge-into needs a file with exactly one SealedSecret",
                input.name
            )));
        };
        sealing::seal_items_into(sealed, &items, &loaded.certificate)
            .map_err(|e| Failure::input(e).at(format_args!("{}:{line}", input.name)))?;
        return io::write_atomic(target, file.render().as_bytes());
    }

    let flavor = if args.bitnami {
        Flavor::Bitnami
    } else {
        Flavor::Seal
    };
    let options = SealOptions {
        certificate: &loaded.certificate,
        scope: args.target.scope.map(Into::into),
        namespace: args.target.namespace.as_deref(),
        name: args.target.name.as_deref(),
        allow_empty_data: args.allow_empty_data,
    };
    // YAML is rendered document by document, so a large stream never holds every SealedSecret as a
    // tree at once; JSON needs them all for its List.
    let mut yaml = String::new();
    let mut values = Vec::new();
    for (place, secret) in &secrets {
        let sealed =
            sealing::seal_secret(secret, &options).map_err(|e| Failure::input(e).at(place))?;
        let value = sealed_value(&sealed, flavor);
        match args.format {
            OutputFormat::Yaml => manifest::append_yaml(&mut yaml, &value)
                .expect("invariant: JSON values always serialize"),
            OutputFormat::Json => values.push(value),
        }
    }
    let text = match args.format {
        OutputFormat::Yaml => yaml,
        OutputFormat::Json => render(&values, Format::Json),
    };
    match &args.write {
        Some(path) => io::write_atomic(path, text.as_bytes()),
        None => io::print(&text),
    }
}

/// Every Secret of every input, with `file:line` for messages. Anything else is an error.
fn secrets_in(inputs: &[Input]) -> Outcome<Vec<(String, Secret)>> {
    let mut secrets = Vec::new();
    for input in inputs {
        let objects =
            manifest::parse(&input.text).map_err(|e| Failure::input(e).at(&input.name))?;
        for located in objects {
            let place = format!("{}:{}", input.name, located.line);
            match located.object {
                Object::Secret(secret) => {
                    let label = match &secret.metadata.name {
                        Some(name) => format!("{place}: Secret {name}"),
                        None => place,
                    };
                    secrets.push((label, *secret));
                }
                other => {
                    return Err(Failure::input(format!(
                        "{place}: expected a Secret, found {}",
                        other.describe()
                    ))
                    .hint("seal reads v1 Secrets; to convert SealedSecrets use `seal convert`"));
                }
            }
        }
    }
    if secrets.is_empty() {
        let names: Vec<_> = inputs.iter().map(|i| i.name.as_str()).collect();
        return Err(Failure::input(format!(
            "{}: no Secret found",
            names.join(", ")
        )));
    }
    Ok(secrets)
}

fn refuse_kubeseal_only_flags(args: &SealArgs) -> Outcome {
    if args.recovery_unseal || !args.recovery_private_key.is_empty() {
        return Err(kubeseal_flag(
            "--recovery-unseal",
            "seal unseal --key KEYFILE [FILE...]",
        ));
    }
    if args.re_encrypt {
        return Err(kubeseal_flag(
            "--re-encrypt",
            "seal re-encrypt --key OLD.key --cert NEW.crt FILE... (offline), or let the controller rotate",
        ));
    }
    if args.validate {
        return Err(kubeseal_flag(
            "--validate",
            "seal verify --cert CERT [--key KEY] FILE...",
        ));
    }
    if args.fetch_cert {
        return Err(kubeseal_flag(
            "--fetch-cert",
            "seal cert fetch [--controller-namespace NS] [-w FILE]",
        ));
    }
    Ok(())
}
