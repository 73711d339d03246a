//! The peers the benchmarks run: Bitnami's sealed-secrets controller v0.40.0 and the AWS Secrets
//! Manager Agent, both interop peers of the tests too, built by [`crate::peers::bitnami`] and
//! [`crate::peers::aws_agent`].

use std::path::PathBuf;

use anyhow::Result;

use crate::peers::aws_agent::{
    AgentProfile, SECRETSMANAGER_AGENT_CRATE, ensure_secretsmanager_agent, install_root,
    installed_crate_version,
};
use crate::peers::bitnami::{controller_version, ensure_sealed_secrets_controller};
use crate::peers::cache_dir;

/// Where the benchmarks' peers are.
pub struct BenchPeers {
    /// The sealed-secrets controller binary (`controller`, v0.40.0), as a benchmark would run it in
    /// place of the in-cluster controller.
    pub sealed_secrets_controller: PathBuf,
    /// The AWS Secrets Manager Agent binary (`aws_secretsmanager_agent`), a local HTTP service that
    /// reads secrets from Secrets Manager and caches them in memory; takes `--config <file>`. The
    /// release build, not the tests' unoptimised one: the benchmark compares speed and memory.
    pub secretsmanager_agent: PathBuf,
}

impl BenchPeers {
    /// Builds what is missing and returns the paths.
    pub fn ensure() -> Result<Self> {
        let cache = cache_dir()?;
        Ok(Self {
            sealed_secrets_controller: ensure_sealed_secrets_controller(&cache)?,
            secretsmanager_agent: ensure_secretsmanager_agent(&cache, AgentProfile::Release)?,
        })
    }

    /// Prints each peer's version and path, the versions as the installed peers report them.
    pub fn report(&self) -> Result<()> {
        println!(
            "sealed-secrets controller {}: {}",
            controller_version(&self.sealed_secrets_controller)?,
            self.sealed_secrets_controller.display()
        );
        println!(
            "{SECRETSMANAGER_AGENT_CRATE} {}: {}",
            installed_crate_version(&install_root(&self.secretsmanager_agent)?)?,
            self.secretsmanager_agent.display()
        );
        Ok(())
    }
}
