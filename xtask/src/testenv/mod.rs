//! `cargo xtask testenv build | up | down | status | env`: the real servers the tests talk to.
//!
//! - [`binaries`]: building and installing them once into the cache.
//! - [`pki`]: the test cluster's certificates and ServiceAccount signing key.
//! - [`servers`]: starting them on loopback, waiting until ready, stopping them.

mod binaries;
mod pki;
mod servers;

use anyhow::{Result, bail};

pub use binaries::Binaries;
pub use servers::Environment;

/// Runs one `testenv` subcommand.
pub fn command(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("build") => Binaries::ensure()?.report(),
        Some("up") => {
            let env = Environment::up(&Binaries::ensure()?)?;
            print!("{}", env.status()?);
            Ok(())
        }
        Some("down") => {
            if let Some(env) = Environment::current() {
                env.down()
            } else {
                eprintln!("no test environment is running");
                Ok(())
            }
        }
        Some("status") => match Environment::current() {
            Some(env) => {
                print!("{}", env.status()?);
                Ok(())
            }
            None => bail!("no test environment is running"),
        },
        Some("env") => match Environment::current() {
            Some(env) => {
                for (key, value) in env.vars()? {
                    println!("export {key}={value}");
                }
                Ok(())
            }
            None => bail!("no test environment is running; `cargo xtask testenv up` first"),
        },
        _ => bail!("usage: cargo xtask testenv build | up | down | status | env"),
    }
}
