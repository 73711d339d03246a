//! `seal [FILE...]`: Secrets in, SealedSecrets out.
//!
//! With `--env a,b,c` (or `--env all`) one run seals the same Secrets for several environments of
//! `.seal.yaml`, each with its own certificate, into one file per environment: `-w` is then a
//! pattern in which `{env}` stands for the environment's name (Bitnami's wish #839). Everything is
//! checked first (names, pattern), then every certificate is read, then everything is sealed in
//! memory, and only then are the files written, all or none (`io::write_all_atomic`): a failure
//! anywhere leaves every target as it was.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Secret;
use seal_api::manifest::{self, Format, Object};
use seal_api::sealing::{self, SealOptions};

use crate::certsource::{self, ENV_PLACEHOLDER, Loaded, Selection, expand};
use crate::failure::{Failure, Outcome};
use crate::io::{self, Input};
use crate::manifests::{Flavor, SealedFile, render, sealed_value};
use crate::{OutputFormat, SealArgs, kubeseal_flag};

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
    let source = args.cert.source();
    let selection = certsource::selection(&source)?;
    let envs = selection.as_ref().map(Selection::names);
    if let (Some(target), Some(names @ [_, _, ..])) = (&args.merge_into, envs) {
        return Err(Failure::input(format!(
            "--merge-into updates one file, and --env selects {} environments ({})",
            names.len(),
            names.join(", ")
        ))
        .hint(format!(
            "merge per environment, one run each: seal --env NAME --merge-into {}",
            target.display()
        )));
    }
    let destination = destination(args.write.as_deref(), envs)?;

    let mut files = args.files.clone();
    files.extend(args.secret_file.iter().cloned());
    let inputs = io::read_inputs(&files)?;
    let secrets = secrets_in(&inputs)?;
    let certs = match &selection {
        Some(selection) => selection.load_all(source.timeout)?,
        None => vec![certsource::load(&source)?],
    };

    if let Some(target) = &args.merge_into {
        let [loaded] = certs.as_slice() else {
            unreachable!("invariant: --merge-into was refused for several environments");
        };
        return merge_into(target, &secrets, loaded, args.allow_empty_data);
    }

    let flavor = if args.bitnami {
        Flavor::Bitnami
    } else {
        Flavor::Seal
    };
    // Everything is sealed before anything is written.
    let mut outputs = Vec::with_capacity(certs.len());
    for loaded in &certs {
        let options = SealOptions {
            certificate: &loaded.certificate,
            scope: args.target.scope.map(Into::into),
            namespace: args.target.namespace.as_deref(),
            name: args.target.name.as_deref(),
            allow_empty_data: args.allow_empty_data,
        };
        outputs.push(seal_all(&secrets, &options, flavor, args.format)?);
    }
    let paths = match destination {
        Destination::Stdout => return io::print(&outputs.concat()),
        Destination::Files(paths) => paths,
    };
    let writes: Vec<(PathBuf, Vec<u8>)> = paths
        .into_iter()
        .zip(outputs)
        .map(|(path, text)| (path, text.into_bytes()))
        .collect();
    io::write_all_atomic(&writes)?;
    if let Some(names) = envs {
        for (((path, _), name), loaded) in writes.iter().zip(names).zip(&certs) {
            eprintln!(
                "wrote {} for environment {name} (certificate {})",
                path.display(),
                loaded.certificate.fingerprint().short()
            );
        }
    }
    Ok(())
}

/// Where the sealed output goes.
#[derive(Debug, PartialEq, Eq)]
enum Destination {
    /// Standard output (one certificate only).
    Stdout,
    /// One file per certificate, in the order of the certificates.
    Files(Vec<PathBuf>),
}

/// Where the output goes: stdout, or one file per selected environment (one file without `--env`),
/// `-w` with `{env}` replaced by the environment's name.
///
/// Several environments need `{env}` in `-w`: their SealedSecrets share a name and namespace, so in
/// one file or one stdout stream they would overwrite each other when applied, and a reader could
/// not tell which document is for which cluster. `{env}` without `--env` is refused likewise.
fn destination(write: Option<&Path>, envs: Option<&[String]>) -> Outcome<Destination> {
    let pattern = write.filter(|w| certsource::has_placeholder(w));
    match (envs, write, pattern) {
        (None, _, Some(pattern)) => Err(Failure::input(format!(
            "-w {}: {ENV_PLACEHOLDER} needs --env",
            pattern.display()
        ))
        .hint("name environments of .seal.yaml: --env dev,prod or --env all")),
        (None | Some([_]), None, None) => Ok(Destination::Stdout),
        (None | Some([_]), Some(write), None) => Ok(Destination::Files(vec![write.to_owned()])),
        (Some(names), None, _) => Err(Failure::input(format!(
            "--env selects {} environments ({}) and they cannot share stdout",
            names.len(),
            names.join(", ")
        ))
        .hint(format!(
            "write one file each: -w 'deploy/{ENV_PLACEHOLDER}/NAME.sealed.yaml'"
        ))),
        (Some(names), Some(write), None) => Err(Failure::input(format!(
            "-w {}: --env selects {} environments ({}), so the path needs {ENV_PLACEHOLDER}",
            write.display(),
            names.len(),
            names.join(", ")
        ))
        .hint(format!(
            "for example -w 'deploy/{ENV_PLACEHOLDER}/NAME.sealed.yaml'"
        ))),
        (Some(names), _, Some(pattern)) => names
            .iter()
            .map(|name| expand(pattern, name))
            .collect::<Outcome<_>>()
            .map(Destination::Files),
    }
}

/// Every Secret sealed with one certificate, rendered in `format`. YAML is rendered document by
/// document, so a large stream never holds every SealedSecret as a tree at once; JSON needs them
/// all for its List.
fn seal_all(
    secrets: &[(String, Secret)],
    options: &SealOptions<'_>,
    flavor: Flavor,
    format: OutputFormat,
) -> Outcome<String> {
    let mut yaml = String::new();
    let mut values = Vec::new();
    for (place, secret) in secrets {
        let sealed =
            sealing::seal_secret(secret, options).map_err(|e| Failure::input(e).at(place))?;
        let value = sealed_value(&sealed, flavor);
        match format {
            OutputFormat::Yaml => manifest::append_yaml(&mut yaml, &value)
                .expect("invariant: JSON values always serialize"),
            OutputFormat::Json => values.push(value),
        }
    }
    Ok(match format {
        OutputFormat::Yaml => yaml,
        OutputFormat::Json => render(&values, Format::Json),
    })
}

/// `--merge-into`: the one Secret's items sealed into an existing SealedSecret file, in place.
fn merge_into(
    target: &Path,
    secrets: &[(String, Secret)],
    loaded: &Loaded,
    allow_empty_data: bool,
) -> Outcome {
    let [(place, secret)] = secrets else {
        return Err(Failure::input(format!(
            "--merge-into takes exactly one Secret, got {}",
            secrets.len()
        )));
    };
    let items = sealing::secret_items(secret);
    if items.is_empty() && !allow_empty_data {
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
    io::write_atomic(target, file.render().as_bytes())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn envs(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    fn files(list: &[&str]) -> Destination {
        Destination::Files(list.iter().map(PathBuf::from).collect())
    }

    #[test]
    fn env_pattern_gives_one_file_per_environment_in_order() {
        let names = envs(&["prod", "dev"]);
        let got = destination(Some(Path::new("deploy/{env}/db-{env}.yaml")), Some(&names));
        assert_eq!(
            got.unwrap(),
            files(&["deploy/prod/db-prod.yaml", "deploy/dev/db-dev.yaml"])
        );
    }

    #[test]
    fn one_environment_or_none_keeps_stdout_and_plain_paths() {
        let one = envs(&["dev"]);
        assert_eq!(destination(None, None).unwrap(), Destination::Stdout);
        assert_eq!(destination(None, Some(&one)).unwrap(), Destination::Stdout);
        assert_eq!(
            destination(Some(Path::new("out.yaml")), Some(&one)).unwrap(),
            files(&["out.yaml"])
        );
        assert_eq!(
            destination(Some(Path::new("{env}.yaml")), Some(&one)).unwrap(),
            files(&["dev.yaml"])
        );
        assert_eq!(
            destination(Some(Path::new("out.yaml")), None).unwrap(),
            files(&["out.yaml"])
        );
    }

    #[test]
    fn several_environments_need_the_placeholder_and_a_file() {
        let two = envs(&["dev", "prod"]);
        let stdout = destination(None, Some(&two)).unwrap_err().to_string();
        assert_eq!(
            stdout,
            "--env selects 2 environments (dev, prod) and they cannot share stdout"
        );
        let plain = destination(Some(Path::new("out.yaml")), Some(&two))
            .unwrap_err()
            .to_string();
        assert_eq!(
            plain,
            "-w out.yaml: --env selects 2 environments (dev, prod), so the path needs {env}"
        );
        let no_env = destination(Some(Path::new("deploy/{env}.yaml")), None)
            .unwrap_err()
            .to_string();
        assert_eq!(no_env, "-w deploy/{env}.yaml: {env} needs --env");
    }
}
