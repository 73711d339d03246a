//! The `vault`, `aws` and `timeout` sections: the provider settings for references that do not
//! carry their own. They start from the environment as `seal_providers::environment` reads it
//! (`VAULT_ADDR`, `VAULT_TOKEN`, `AWS_REGION`, ...: the same variables and precedence as the CLI)
//! and the YAML overlays them, so a field set in the file wins over its variable, which wins over
//! the built-in default. The agent turns off the CLI's fallbacks (`~/.vault-token`,
//! `SEAL_VAULT_JWT`): a pod names its credentials in its configuration.

use std::time::Duration;

use seal_providers::RetryPolicy;
use seal_providers::TokenSource;
use seal_providers::environment::Environment;
use seal_providers::reference::resolve::{AwsDefaults, Defaults, VaultAuthMethod, VaultDefaults};
use secrecy::SecretString;
use zeroize::Zeroizing;

use super::raw::{RawAws, RawVault};
use super::{ConfigError, error};

/// The resolver's defaults: `vault` and `aws` over `environment`, every call bounded by
/// `timeout`.
pub(super) fn defaults(
    vault: &RawVault,
    aws: &RawAws,
    timeout: Duration,
    environment: &Environment,
) -> Result<Defaults, ConfigError> {
    Ok(Defaults {
        vault: vault_defaults(vault, environment)?,
        aws: aws_defaults(aws, environment),
        retry: RetryPolicy {
            timeout,
            ..RetryPolicy::default()
        },
    })
}

/// The `vault` section over the environment's Vault settings. `vault.auth` chooses the login
/// its `tokenFile` is for (the Kubernetes JWT, the OIDC JWT, else the Vault token).
fn vault_defaults(raw: &RawVault, environment: &Environment) -> Result<VaultDefaults, ConfigError> {
    let from_env = &environment.vault;
    let ca_bundle = raw
        .ca_file
        .as_ref()
        .or(environment.vault_cacert.as_ref())
        .map(|p| {
            std::fs::read_to_string(p)
                .map_err(|e| error("vault.caFile", format!("cannot read {}: {e}", p.display())))
        })
        .transpose()?;
    let mut defaults = VaultDefaults {
        address: raw.address.clone().or_else(|| from_env.address.clone()),
        namespace: raw.namespace.clone().or_else(|| from_env.namespace.clone()),
        ca_bundle,
        allow_http: raw.allow_http,
        ..from_env.clone()
    };
    let Some(auth) = &raw.auth else {
        return Ok(defaults);
    };
    let method: VaultAuthMethod = auth
        .method
        .parse()
        .map_err(|e: String| error("vault.auth.method", e))?;
    defaults.auth_method = Some(method);
    defaults.auth_mount.clone_from(&auth.mount);
    defaults.role.clone_from(&auth.role);
    if let Some(role_id) = &auth.role_id {
        defaults.role_id = Some(role_id.clone());
    }
    if let Some(file) = &auth.token_file {
        let source = TokenSource::File(file.clone());
        match method {
            VaultAuthMethod::Kubernetes => defaults.kubernetes_token = Some(source),
            VaultAuthMethod::Jwt => defaults.jwt = Some(source),
            _ => defaults.token = Some(source),
        }
    }
    if let Some(file) = &auth.secret_id_file {
        let text = Zeroizing::new(std::fs::read_to_string(file).map_err(|e| {
            error(
                "vault.auth.secretIdFile",
                format!("cannot read {}: {e}", file.display()),
            )
        })?);
        defaults.secret_id = Some(SecretString::from(text.trim()));
    }
    match method {
        VaultAuthMethod::Kubernetes if auth.role.is_none() => {
            Err(error("vault.auth.role", "Kubernetes auth needs a role"))
        }
        VaultAuthMethod::AppRole if defaults.role_id.is_none() => Err(error(
            "vault.auth.roleId",
            "AppRole auth needs a role id (roleId or VAULT_ROLE_ID)",
        )),
        _ => Ok(defaults),
    }
}

/// The `aws` section over the environment's AWS settings; also the settings of the endpoint's
/// `/secretsmanager/get`.
pub(super) fn aws_defaults(raw: &RawAws, environment: &Environment) -> AwsDefaults {
    let from_env = &environment.aws;
    AwsDefaults {
        region: raw.region.clone().or_else(|| from_env.region.clone()),
        endpoint: raw.endpoint.clone().or_else(|| from_env.endpoint.clone()),
        role_arn: raw.role_arn.clone(),
    }
}

#[cfg(test)]
mod tests {
    //! Precedence: a YAML field > its environment variable > the built-in default, one case per
    //! setting, through the whole `parse`.

    use secrecy::ExposeSecret as _;

    use crate::config::parse;

    use super::*;

    /// The defaults `yaml` gives with exactly `vars` set.
    fn defaults_with(yaml: &str, vars: &[(&str, &str)]) -> Defaults {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let lookup = |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        match parse(yaml, &lookup) {
            Ok(config) => config.defaults,
            Err(e) => panic!("{yaml}: {e}"),
        }
    }

    fn value(source: Option<&TokenSource>) -> Option<String> {
        match source? {
            TokenSource::Value(v) => Some(v.expose_secret().to_owned()),
            TokenSource::File(p) => Some(format!("file:{}", p.display())),
            TokenSource::Fetched(_) => Some("fetched".into()),
        }
    }

    #[test]
    fn the_vault_address_and_namespace() {
        let env = [
            ("VAULT_ADDR", "https://env:8200"),
            ("VAULT_NAMESPACE", "env-ns"),
        ];
        let yaml = "vault: {address: 'https://yaml:8200', namespace: yaml-ns}";
        let d = defaults_with(yaml, &env);
        assert_eq!(d.vault.address.as_deref(), Some("https://yaml:8200"));
        assert_eq!(d.vault.namespace.as_deref(), Some("yaml-ns"));
        let d = defaults_with("", &env);
        assert_eq!(d.vault.address.as_deref(), Some("https://env:8200"));
        assert_eq!(d.vault.namespace.as_deref(), Some("env-ns"));
        let d = defaults_with("", &[]);
        assert_eq!(d.vault.address, None);
        assert_eq!(d.vault.namespace, None);
    }

    #[test]
    fn the_vault_ca() {
        let dir = tempfile::tempdir().unwrap();
        let (yaml_ca, env_ca) = (dir.path().join("yaml.pem"), dir.path().join("env.pem"));
        std::fs::write(&yaml_ca, "YAML CA").unwrap();
        std::fs::write(&env_ca, "ENV CA").unwrap();
        let yaml = format!("vault: {{caFile: '{}'}}", yaml_ca.display());
        let env_var = env_ca.to_str().unwrap();

        let d = defaults_with(&yaml, &[("VAULT_CACERT", env_var)]);
        assert_eq!(d.vault.ca_bundle.as_deref(), Some("YAML CA"));
        // The caFile replaces VAULT_CACERT, which is then not read at all.
        let d = defaults_with(&yaml, &[("VAULT_CACERT", "/nonexistent/ca.pem")]);
        assert_eq!(d.vault.ca_bundle.as_deref(), Some("YAML CA"));
        let d = defaults_with("", &[("VAULT_CACERT", env_var)]);
        assert_eq!(d.vault.ca_bundle.as_deref(), Some("ENV CA"));
        assert_eq!(defaults_with("", &[]).vault.ca_bundle, None);

        let e = parse("", &|n| {
            (n == "VAULT_CACERT").then(|| "/nonexistent".into())
        })
        .err()
        .unwrap()
        .to_string();
        assert!(e.starts_with("vault.caFile"), "{e}");
    }

    #[test]
    fn the_vault_token() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".vault-token"), "from-home").unwrap();
        let home = dir.path().to_str().unwrap();
        let yaml = "vault: {auth: {method: token, tokenFile: /run/token}}";

        let d = defaults_with(yaml, &[("VAULT_TOKEN", "hvs.env")]);
        assert_eq!(
            value(d.vault.token.as_ref()).as_deref(),
            Some("file:/run/token")
        );
        let d = defaults_with("", &[("VAULT_TOKEN", "hvs.env"), ("HOME", home)]);
        assert_eq!(value(d.vault.token.as_ref()).as_deref(), Some("hvs.env"));
        // The agent does not fall back to ~/.vault-token.
        let d = defaults_with("", &[("HOME", home)]);
        assert!(d.vault.token.is_none());
    }

    #[test]
    fn the_vault_jwts() {
        let d = defaults_with("", &[("SEAL_VAULT_JWT", "eyJ")]);
        // The agent does not read the CLI's SEAL_VAULT_JWT.
        assert!(d.vault.jwt.is_none());
        let yaml = "vault: {auth: {method: jwt, role: r, tokenFile: /run/oidc}}";
        let d = defaults_with(yaml, &[("SEAL_VAULT_JWT", "eyJ")]);
        assert_eq!(
            value(d.vault.jwt.as_ref()).as_deref(),
            Some("file:/run/oidc")
        );

        let sa = format!(
            "file:{}",
            seal_providers::environment::SERVICE_ACCOUNT_TOKEN
        );
        let d = defaults_with("", &[]);
        assert_eq!(value(d.vault.kubernetes_token.as_ref()), Some(sa));
        let yaml = "vault: {auth: {method: kubernetes, role: r, tokenFile: /run/sa}}";
        let d = defaults_with(yaml, &[]);
        assert_eq!(
            value(d.vault.kubernetes_token.as_ref()).as_deref(),
            Some("file:/run/sa")
        );
    }

    #[test]
    fn the_approle_ids() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret-id");
        std::fs::write(&file, "sid.file\n").unwrap();
        let env = [("VAULT_ROLE_ID", "rid.env"), ("VAULT_SECRET_ID", "sid.env")];
        let yaml = format!(
            "vault: {{auth: {{method: approle, roleId: rid.yaml, secretIdFile: '{}'}}}}",
            file.display()
        );

        let d = defaults_with(&yaml, &env);
        assert_eq!(d.vault.role_id.as_deref(), Some("rid.yaml"));
        let secret_id = d
            .vault
            .secret_id
            .as_ref()
            .map(|s| s.expose_secret().to_owned());
        assert_eq!(secret_id.as_deref(), Some("sid.file"));

        // With or without a vault.auth section, the environment fills what the file leaves out.
        for yaml in ["vault: {auth: {method: approle}}", ""] {
            let d = defaults_with(yaml, &env);
            assert_eq!(d.vault.role_id.as_deref(), Some("rid.env"), "{yaml}");
            let secret_id = d
                .vault
                .secret_id
                .as_ref()
                .map(|s| s.expose_secret().to_owned());
            assert_eq!(secret_id.as_deref(), Some("sid.env"), "{yaml}");
        }

        let d = defaults_with("", &[]);
        assert!(d.vault.role_id.is_none() && d.vault.secret_id.is_none());
        let e = parse("vault: {auth: {method: approle}}", &|_| None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("vault.auth.roleId"), "{e}");
    }

    #[test]
    fn the_aws_region_and_endpoint() {
        let env = [
            ("AWS_REGION", "env-1"),
            ("AWS_DEFAULT_REGION", "env-2"),
            ("AWS_ENDPOINT_URL", "http://env:5000"),
        ];
        let yaml =
            "aws: {region: yaml-1, endpoint: 'http://yaml:5000', roleArn: 'arn:aws:iam::1:role/r'}";
        let d = defaults_with(yaml, &env);
        assert_eq!(d.aws.region.as_deref(), Some("yaml-1"));
        assert_eq!(d.aws.endpoint.as_deref(), Some("http://yaml:5000"));
        assert_eq!(d.aws.role_arn.as_deref(), Some("arn:aws:iam::1:role/r"));
        let d = defaults_with("", &env);
        assert_eq!(d.aws.region.as_deref(), Some("env-1"));
        assert_eq!(d.aws.endpoint.as_deref(), Some("http://env:5000"));
        assert_eq!(d.aws.role_arn, None);
        let d = defaults_with("", &[("AWS_DEFAULT_REGION", "env-2")]);
        assert_eq!(d.aws.region.as_deref(), Some("env-2"));
        let d = defaults_with("", &[("AWS_REGION", ""), ("AWS_DEFAULT_REGION", "env-2")]);
        assert_eq!(d.aws.region.as_deref(), Some("env-2"));
        let d = defaults_with("", &[]);
        assert_eq!((d.aws.region, d.aws.endpoint), (None, None));
    }

    #[test]
    fn the_endpoint_uses_the_same_aws_settings() {
        let env = |n: &str| match n {
            "SEAL_AGENT_TOKEN" => Some("t".to_owned()),
            "AWS_REGION" => Some("env-1".to_owned()),
            _ => None,
        };
        let server = parse("server: {}", &env).unwrap().server.unwrap();
        assert_eq!(server.aws.region.as_deref(), Some("env-1"));
        let server = parse("aws: {region: yaml-1}\nserver: {}", &env)
            .unwrap()
            .server
            .unwrap();
        assert_eq!(server.aws.region.as_deref(), Some("yaml-1"));
    }

    #[test]
    fn the_timeout() {
        let d = defaults_with("timeout: 3s", &[]);
        assert_eq!(d.retry.timeout, Duration::from_secs(3));
        let d = defaults_with("", &[]);
        assert_eq!(d.retry.timeout, Duration::from_secs(10));
    }
}
