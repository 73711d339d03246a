//! The standard environment variables, read into [`VaultDefaults`] and [`AwsDefaults`]: the one
//! place seal reads them, for the CLI (`seal get/env/render/exec`) and seal-agent alike, so the
//! two cannot drift apart.
//!
//! Each surface starts from [`read`] and overlays its own explicit settings (the CLI's flags, the
//! agent's YAML) on top. The precedence is therefore the same everywhere:
//!
//! **explicit setting > environment > built-in default**
//!
//! | Variable | Goes to | Notes |
//! |---|---|---|
//! | `VAULT_ADDR` | `vault.address` | |
//! | `VAULT_NAMESPACE` | `vault.namespace` | |
//! | `VAULT_CACERT` | [`Environment::vault_cacert`] | a PEM file's path, not read here (below) |
//! | `VAULT_TOKEN` | `vault.token` | the token itself |
//! | `$HOME/.vault-token` | `vault.token` | only with [`Fallbacks::home_vault_token`], when `VAULT_TOKEN` is unset and the file exists |
//! | `VAULT_ROLE_ID` | `vault.role_id` | AppRole |
//! | `VAULT_SECRET_ID` | `vault.secret_id` | AppRole |
//! | `SEAL_VAULT_JWT` | `vault.jwt` | only with [`Fallbacks::seal_vault_jwt`] |
//! | `AWS_REGION`, else `AWS_DEFAULT_REGION` | `aws.region` | |
//! | `AWS_ENDPOINT_URL` | `aws.endpoint` | |
//!
//! The one built-in default: `vault.kubernetes_token` is the pod's ServiceAccount token file
//! ([`SERVICE_ACCOUNT_TOKEN`]). Every other field starts unset (`None`, `false`).
//!
//! **Empty is unset.** A variable set to the empty string counts as unset, as the Vault CLI and
//! the AWS SDK read them: `AWS_REGION=` falls through to `AWS_DEFAULT_REGION`, `VAULT_TOKEN=` to
//! `~/.vault-token`. A value that is not UTF-8 counts as unset too.
//!
//! **No I/O but one check.** Nothing is read from disk here: `VAULT_CACERT` is handed over as a
//! path, because a surface's explicit CA file replaces it and it must then not be read at all,
//! and because each surface reports an unreadable file in its own terms (a field of the agent's
//! YAML, an exit code of the CLI); token files are [`TokenSource::File`]s, read at each login.
//! The one access is whether `~/.vault-token` exists, when that fallback is on.
//!
//! Not read here: AWS credentials (`AWS_ACCESS_KEY_ID`, `AWS_PROFILE`, web identity with
//! `AWS_ROLE_ARN` and `AWS_WEB_IDENTITY_TOKEN_FILE`), which the AWS SDK's default chain reads
//! itself when a provider is built; and each surface's own `SEAL_*` settings (the CLI's flag
//! variables, the agent's endpoint token), which belong to that surface.
//!
//! The lookup is injected (`&dyn Fn(&str) -> Option<String>`, [`process`] for the real
//! environment), so every case is a unit test without touching the process's environment.

use std::path::PathBuf;

use secrecy::SecretString;

use crate::TokenSource;
use crate::reference::resolve::{AwsDefaults, VaultDefaults};

/// The pod's ServiceAccount token: the built-in default JWT for Vault Kubernetes logins.
pub const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// The sources beyond the standard variables that a surface opts into. They are where the CLI
/// and the agent legitimately differ; [`Fallbacks::default`] turns both off (seal-agent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fallbacks {
    /// Use `$HOME/.vault-token`, the file `vault login` writes, when `VAULT_TOKEN` is unset and
    /// the file exists. On for the CLI, which a person runs after `vault login`; off for the
    /// agent: a pod has no login session, and a token file nobody configured must not become
    /// its credential.
    pub home_vault_token: bool,
    /// Use `SEAL_VAULT_JWT`, a CI job's OIDC token, for jwt logins. On for the CLI, whose CI jobs
    /// get their token in a variable; off for the agent, which names its JWT file in its
    /// configuration (`vault.auth.tokenFile`).
    pub seal_vault_jwt: bool,
}

/// What the environment says, before a surface's explicit settings.
#[derive(Clone, Debug)]
pub struct Environment {
    /// Vault: address, namespace, token, AppRole ids, the CI's JWT, and the built-in
    /// ServiceAccount token file. `ca_bundle` is left unset: see [`Environment::vault_cacert`].
    pub vault: VaultDefaults,
    /// AWS: region and endpoint.
    pub aws: AwsDefaults,
    /// The PEM file `VAULT_CACERT` names. The surface reads it into `vault.ca_bundle` when it
    /// has no CA file of its own, reporting an unreadable file its own way.
    pub vault_cacert: Option<PathBuf>,
}

/// The process's environment as a lookup for [`read`]: the variable's value, `None` when it is
/// unset or not UTF-8.
pub fn process(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Reads the standard variables (the table in the module documentation) through `lookup`, plus
/// the sources `fallbacks` turns on. Empty values count as unset.
pub fn read(lookup: &dyn Fn(&str) -> Option<String>, fallbacks: Fallbacks) -> Environment {
    let var = |name: &str| lookup(name).filter(|v| !v.is_empty());
    let secret = |name: &str| var(name).map(SecretString::from);
    let token = secret("VAULT_TOKEN").map(TokenSource::Value).or_else(|| {
        if !fallbacks.home_vault_token {
            return None;
        }
        let file = PathBuf::from(var("HOME")?).join(".vault-token");
        file.is_file().then_some(TokenSource::File(file))
    });
    let jwt = if fallbacks.seal_vault_jwt {
        secret("SEAL_VAULT_JWT").map(TokenSource::Value)
    } else {
        None
    };
    Environment {
        vault: VaultDefaults {
            address: var("VAULT_ADDR"),
            namespace: var("VAULT_NAMESPACE"),
            token,
            role_id: var("VAULT_ROLE_ID"),
            secret_id: secret("VAULT_SECRET_ID"),
            jwt,
            kubernetes_token: Some(TokenSource::File(SERVICE_ACCOUNT_TOKEN.into())),
            ..VaultDefaults::default()
        },
        aws: AwsDefaults {
            region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")),
            endpoint: var("AWS_ENDPOINT_URL"),
            role_arn: None,
        },
        vault_cacert: var("VAULT_CACERT").map(PathBuf::from),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use secrecy::ExposeSecret;

    use super::*;

    const CLI: Fallbacks = Fallbacks {
        home_vault_token: true,
        seal_vault_jwt: true,
    };

    /// `read` over exactly `vars`.
    fn read_with(vars: &[(&str, &str)], fallbacks: Fallbacks) -> Environment {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        read(&|name| vars.get(name).cloned(), fallbacks)
    }

    #[test]
    fn what_the_environment_holds_never_shows_in_debug_output() {
        let marker = "env-marker-7f3a";
        let read = read_with(
            &[
                ("VAULT_TOKEN", marker),
                ("VAULT_SECRET_ID", marker),
                ("SEAL_VAULT_JWT", marker),
            ],
            CLI,
        );
        assert_eq!(value(read.vault.token.as_ref()).as_deref(), Some(marker));
        assert!(!format!("{read:?}").contains(marker), "{read:?}");
    }

    fn value(source: Option<&TokenSource>) -> Option<String> {
        match source? {
            TokenSource::Value(v) => Some(v.expose_secret().to_owned()),
            other => panic!("expected a value, got {other:?}"),
        }
    }

    fn file(source: Option<&TokenSource>) -> Option<PathBuf> {
        match source? {
            TokenSource::File(path) => Some(path.clone()),
            other => panic!("expected a file, got {other:?}"),
        }
    }

    /// A directory holding `.vault-token`, removed on drop (this crate has no tempfile).
    struct Home(PathBuf);

    impl Home {
        fn new(with_token: bool) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "seal-environment-test-{}-{}",
                std::process::id(),
                fastrand::u64(..)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            if with_token {
                std::fs::write(dir.join(".vault-token"), "from-home\n").unwrap();
            }
            Home(dir)
        }

        fn path(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for Home {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn nothing_set_gives_only_the_built_in_default() {
        let env = read_with(&[], CLI);
        assert_eq!(env.vault.address, None);
        assert_eq!(env.vault.namespace, None);
        assert_eq!(env.vault.ca_bundle, None);
        assert!(env.vault.token.is_none());
        assert_eq!(env.vault.role_id, None);
        assert!(env.vault.secret_id.is_none());
        assert!(env.vault.jwt.is_none());
        assert_eq!(
            file(env.vault.kubernetes_token.as_ref()),
            Some(PathBuf::from(SERVICE_ACCOUNT_TOKEN))
        );
        assert_eq!(env.vault.auth_method, None);
        assert!(!env.vault.allow_http && !env.vault.allow_reference_address);
        assert_eq!(env.aws.region, None);
        assert_eq!(env.aws.endpoint, None);
        assert_eq!(env.aws.role_arn, None);
        assert_eq!(env.vault_cacert, None);
    }

    #[test]
    fn every_standard_variable_lands_in_its_field() {
        let env = read_with(
            &[
                ("VAULT_ADDR", "https://vault:8200"),
                ("VAULT_NAMESPACE", "ml"),
                ("VAULT_CACERT", "/nonexistent/ca.pem"),
                ("VAULT_TOKEN", "hvs.t"),
                ("VAULT_ROLE_ID", "rid"),
                ("VAULT_SECRET_ID", "sid"),
                ("AWS_REGION", "eu-west-1"),
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
            ],
            Fallbacks::default(),
        );
        assert_eq!(env.vault.address.as_deref(), Some("https://vault:8200"));
        assert_eq!(env.vault.namespace.as_deref(), Some("ml"));
        // A path only: the file is not read (it does not even exist).
        assert_eq!(env.vault_cacert, Some(PathBuf::from("/nonexistent/ca.pem")));
        assert_eq!(env.vault.ca_bundle, None);
        assert_eq!(value(env.vault.token.as_ref()).as_deref(), Some("hvs.t"));
        assert_eq!(env.vault.role_id.as_deref(), Some("rid"));
        assert_eq!(
            env.vault
                .secret_id
                .as_ref()
                .map(ExposeSecret::expose_secret),
            Some("sid")
        );
        assert_eq!(env.aws.region.as_deref(), Some("eu-west-1"));
        assert_eq!(env.aws.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
    }

    #[test]
    fn empty_variables_count_as_unset() {
        let names = [
            "VAULT_ADDR",
            "VAULT_NAMESPACE",
            "VAULT_CACERT",
            "VAULT_TOKEN",
            "VAULT_ROLE_ID",
            "VAULT_SECRET_ID",
            "SEAL_VAULT_JWT",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_ENDPOINT_URL",
            "HOME",
        ];
        let vars: Vec<(&str, &str)> = names.iter().map(|n| (*n, "")).collect();
        let env = read_with(&vars, CLI);
        assert_eq!(env.vault.address, None);
        assert_eq!(env.vault.namespace, None);
        assert_eq!(env.vault_cacert, None);
        assert!(env.vault.token.is_none());
        assert_eq!(env.vault.role_id, None);
        assert!(env.vault.secret_id.is_none());
        assert!(env.vault.jwt.is_none());
        assert_eq!(env.aws.region, None);
        assert_eq!(env.aws.endpoint, None);
    }

    #[test]
    fn aws_region_wins_over_aws_default_region() {
        type Vars<'a> = &'a [(&'a str, &'a str)];
        let cases: [(Vars, Option<&str>); 5] = [
            (
                &[("AWS_REGION", "r1"), ("AWS_DEFAULT_REGION", "r2")],
                Some("r1"),
            ),
            (&[("AWS_REGION", "r1")], Some("r1")),
            (&[("AWS_DEFAULT_REGION", "r2")], Some("r2")),
            (
                &[("AWS_REGION", ""), ("AWS_DEFAULT_REGION", "r2")],
                Some("r2"),
            ),
            (&[], None),
        ];
        for (vars, region) in cases {
            let env = read_with(vars, Fallbacks::default());
            assert_eq!(env.aws.region.as_deref(), region, "{vars:?}");
        }
    }

    #[test]
    fn vault_token_wins_over_the_home_token_file() {
        let home = Home::new(true);
        let token_file = Path::new(home.path()).join(".vault-token");

        // VAULT_TOKEN set: it is the token, whatever the fallback.
        for fallbacks in [CLI, Fallbacks::default()] {
            let env = read_with(
                &[("VAULT_TOKEN", "hvs.env"), ("HOME", home.path())],
                fallbacks,
            );
            assert_eq!(value(env.vault.token.as_ref()).as_deref(), Some("hvs.env"));
        }
        // Unset or empty: ~/.vault-token, as a file read at login, with the fallback on.
        for vars in [
            &[("HOME", home.path())][..],
            &[("VAULT_TOKEN", ""), ("HOME", home.path())][..],
        ] {
            let env = read_with(vars, CLI);
            assert_eq!(file(env.vault.token.as_ref()), Some(token_file.clone()));
        }
        // The fallback off (the agent): no token.
        let env = read_with(&[("HOME", home.path())], Fallbacks::default());
        assert!(env.vault.token.is_none());
        // No HOME, or no file in it: no token.
        assert!(read_with(&[], CLI).vault.token.is_none());
        let empty = Home::new(false);
        assert!(
            read_with(&[("HOME", empty.path())], CLI)
                .vault
                .token
                .is_none()
        );
    }

    #[test]
    fn seal_vault_jwt_only_with_its_fallback() {
        let vars = [("SEAL_VAULT_JWT", "eyJ.jwt")];
        let on = read_with(&vars, CLI);
        assert_eq!(value(on.vault.jwt.as_ref()).as_deref(), Some("eyJ.jwt"));
        let only_jwt = Fallbacks {
            home_vault_token: false,
            seal_vault_jwt: true,
        };
        assert!(read_with(&vars, only_jwt).vault.jwt.is_some());
        assert!(read_with(&vars, Fallbacks::default()).vault.jwt.is_none());
    }

    #[test]
    fn each_fallback_is_independent() {
        let home = Home::new(true);
        let only_home = Fallbacks {
            home_vault_token: true,
            seal_vault_jwt: false,
        };
        let env = read_with(
            &[("HOME", home.path()), ("SEAL_VAULT_JWT", "eyJ.jwt")],
            only_home,
        );
        assert!(env.vault.token.is_some());
        assert!(env.vault.jwt.is_none());
    }
}
