//! `seal cert info`: what a certificate is (fingerprint, key size, validity) without sealing
//! anything; `seal cert fetch`: the controller's newest certificate, to commit or pin.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use seal_core::Certificate;
use seal_core::cert::format_date;
use time::OffsetDateTime;

use crate::cluster::ControllerArgs;
use crate::failure::{Failure, Outcome};
use crate::{OutputFormat, certsource, io};

/// `seal cert` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Show a certificate's fingerprint, key size and validity.
    #[command(after_help = "\
Examples:
  seal cert info keys.example/tls.crt
  seal cert info https://seal.example.com/v1/cert.pem -o json")]
    Info {
        /// Certificate file or http(s) URL.
        #[arg(value_name = "FILE|URL")]
        location: String,

        /// Output format (text when absent).
        #[arg(short = 'o', long = "format", alias = "output", value_enum)]
        format: Option<OutputFormat>,

        /// Timeout for fetching a URL.
        #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = seal_core::parse_duration)]
        request_timeout: Duration,
    },

    /// Fetch the controller's newest certificate through the API server (kubeconfig) or a URL.
    #[command(after_help = "\
Examples:
  seal cert fetch > deploy/certs/dev.pem
  seal cert fetch --context prod --controller-namespace seal-system -w deploy/certs/prod.pem
  seal cert fetch --controller-url https://seal.example.com")]
    Fetch {
        #[command(flatten)]
        controller: ControllerArgs,

        /// Write the certificate to FILE atomically instead of stdout.
        #[arg(short = 'w', long = "write", value_name = "FILE")]
        write: Option<PathBuf>,

        /// Timeout for each request.
        #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = seal_core::parse_duration)]
        request_timeout: Duration,
    },
}

/// Runs `seal cert ...`.
pub fn run(command: &Command) -> Outcome {
    match command {
        Command::Info {
            location,
            format,
            request_timeout,
        } => info(location, *format, *request_timeout),
        Command::Fetch {
            controller,
            write,
            request_timeout,
        } => fetch(controller, write.as_deref(), *request_timeout),
    }
}

fn fetch(controller: &ControllerArgs, write: Option<&Path>, timeout: Duration) -> Outcome {
    let pem = certsource::fetch_from_controller(controller, timeout)?;
    let cert = Certificate::from_pem(&pem)
        .map_err(|e| Failure::input(format!("{}: {e}", controller.describe())))?;
    match write {
        Some(path) => io::write_atomic(path, &pem)?,
        None => io::print(&String::from_utf8_lossy(&pem))?,
    }
    eprintln!(
        "certificate {} from {}, valid until {}",
        cert.fingerprint(),
        controller.describe(),
        format_date(cert.not_after())
    );
    Ok(())
}

fn info(location: &str, format: Option<OutputFormat>, request_timeout: Duration) -> Outcome {
    let bytes = certsource::read_location(location, request_timeout)?;
    let cert = Certificate::from_pem(&bytes).map_err(|e| Failure::input(e).at(location))?;
    let now = OffsetDateTime::from(SystemTime::now());
    let expired = cert.not_after() < now;
    let days_left = (cert.not_after() - now).whole_days();
    let info = serde_json::json!({
        "fingerprint": cert.fingerprint().to_string(),
        "keyAlgorithm": "RSA",
        "keyBits": cert.public_key().bits(),
        "notBefore": format_date(cert.not_before()),
        "notAfter": format_date(cert.not_after()),
        "serial": cert.serial(),
        "expired": expired,
    });
    let text = match format {
        None => format!(
            "fingerprint: {}\nkey:         RSA-{}\nnot before:  {}\nnot after:   {}\nserial:      {}\nstatus:      {}\n",
            cert.fingerprint(),
            cert.public_key().bits(),
            format_date(cert.not_before()),
            format_date(cert.not_after()),
            cert.serial(),
            if expired {
                "EXPIRED: seal refuses to seal with it".to_owned()
            } else {
                format!("valid, {days_left} days left")
            },
        ),
        Some(format) => crate::manifests::render(&[info], format.into()),
    };
    io::print(&text)
}
