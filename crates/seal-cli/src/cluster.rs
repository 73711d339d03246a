//! Talking to a cluster with the user's kubeconfig: the controller's HTTP API reached through the
//! API server's service proxy (as kubeseal does, so no port-forward or Ingress is needed), or at a
//! URL; and the key Secrets for `seal keys`.
//!
//! The rest of the CLI is synchronous; the kube client is async, so each call runs on a small
//! current-thread runtime that lives as long as the [`Cluster`].

use std::path::PathBuf;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::failure::{Failure, Outcome};

/// The help heading of the controller flags.
const HEADING: &str = "Reaching the controller";

/// Where the controller is, and how to reach the cluster.
#[derive(clap::Args, Debug, Clone)]
pub struct ControllerArgs {
    /// Namespace of the controller's Service (kubeseal: --controller-namespace).
    #[arg(
        long,
        value_name = "NAMESPACE",
        env = "SEAL_CONTROLLER_NAMESPACE",
        default_value = "seal-system",
        help_heading = HEADING,
        hide_env_values = true
    )]
    pub controller_namespace: String,

    /// Name of the controller's Service (kubeseal: --controller-name).
    #[arg(
        long,
        value_name = "NAME",
        env = "SEAL_CONTROLLER_NAME",
        default_value = "seal-controller",
        help_heading = HEADING,
        hide_env_values = true
    )]
    pub controller_name: String,

    /// Name of the Service port of the certificate API.
    #[arg(
        long,
        value_name = "PORT",
        default_value = "http",
        help_heading = HEADING,
        hide_env_values = true
    )]
    pub controller_port: String,

    /// Reach the controller at this URL instead of through the API server (e.g. behind an Ingress).
    #[arg(
        long,
        value_name = "URL",
        env = "SEAL_CONTROLLER_URL",
        help_heading = HEADING,
        hide_env_values = true
    )]
    pub controller_url: Option<String>,

    /// kubeconfig file [default: KUBECONFIG, else ~/.kube/config].
    #[arg(long, value_name = "FILE", help_heading = HEADING)]
    pub kubeconfig: Option<PathBuf>,

    /// kubeconfig context [default: the current context].
    #[arg(long, value_name = "NAME", help_heading = HEADING)]
    pub context: Option<String>,
}

impl ControllerArgs {
    /// `seal-system/seal-controller` or the URL, for messages.
    pub fn describe(&self) -> String {
        match &self.controller_url {
            Some(url) => url.clone(),
            None => format!(
                "controller {}/{}",
                self.controller_namespace, self.controller_name
            ),
        }
    }
}

/// A connection to the cluster of a kubeconfig context.
pub struct Cluster {
    runtime: tokio::runtime::Runtime,
    client: kube::Client,
    timeout: Duration,
}

/// A status code and body from the controller.
pub struct Answer {
    /// The HTTP status code.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as text, for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).trim().to_owned()
    }
}

impl Cluster {
    /// Connects with the kubeconfig and context of `args`; every request times out after
    /// `timeout`.
    pub fn connect(args: &ControllerArgs, timeout: Duration) -> Outcome<Self> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure::io(format!("cannot start the async runtime: {e}")))?;
        let options = KubeConfigOptions {
            context: args.context.clone(),
            ..KubeConfigOptions::default()
        };
        let config = runtime
            .block_on(async {
                match &args.kubeconfig {
                    Some(path) => {
                        let kubeconfig = Kubeconfig::read_from(path)
                            .map_err(|e| format!("{}: {e}", path.display()))?;
                        kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                            .await
                            .map_err(|e| e.to_string())
                    }
                    None => kube::Config::from_kubeconfig(&options)
                        .await
                        .map_err(|e| e.to_string()),
                }
            })
            .map_err(|e| {
                Failure::input(format!("cannot use the kubeconfig: {e}"))
                    .hint("set KUBECONFIG or pass --kubeconfig and --context")
            })?;
        let mut config = config;
        config.connect_timeout = Some(timeout);
        config.read_timeout = Some(timeout);
        // The client's buffer task is spawned on the runtime it is made in.
        let client = {
            let _context = runtime.enter();
            kube::Client::try_from(config)
        }
        .map_err(|e| Failure::io(format!("cannot make a Kubernetes client: {e}")))?;
        Ok(Self {
            runtime,
            client,
            timeout,
        })
    }

    /// The client, for typed API calls through [`Cluster::block_on`].
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// Runs `future` to completion, failing after the timeout.
    pub fn block_on<T>(&self, future: impl Future<Output = T>) -> Outcome<T> {
        self.runtime
            .block_on(async { tokio::time::timeout(self.timeout, future).await })
            .map_err(|_| Failure::io(format!("no answer within {:?}", self.timeout)))
    }

    /// Sends `method path` with `body` to the controller's Service through the API server.
    fn proxy(
        &self,
        args: &ControllerArgs,
        method: http::Method,
        path: &str,
        body: Vec<u8>,
    ) -> Outcome<Answer> {
        let uri = format!(
            "/api/v1/namespaces/{}/services/http:{}:{}/proxy{path}",
            args.controller_namespace, args.controller_name, args.controller_port
        );
        let request = http::Request::builder()
            .method(method)
            .uri(&uri)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(kube::client::Body::from(body))
            .map_err(|e| Failure::input(format!("bad controller address: {e}")))?;
        let client = self.client.clone();
        self.block_on(async move {
            let response = client.send(request).await?;
            let status = response.status().as_u16();
            let body = response.into_body().collect_bytes().await?;
            Ok::<_, kube::Error>(Answer {
                status,
                body: body.to_vec(),
            })
        })?
        .map_err(|e| {
            Failure::io(format!("{}: {e}", args.describe()))
                .hint("check the kubeconfig context, and --controller-namespace/--controller-name")
        })
    }
}

/// The controller's HTTP API, through the API server or at a URL.
pub struct Controller {
    args: ControllerArgs,
    cluster: Option<Cluster>,
    timeout: Duration,
}

impl Controller {
    /// Prepares to reach the controller of `args`; connects to the cluster unless a URL is given.
    pub fn new(args: &ControllerArgs, timeout: Duration) -> Outcome<Self> {
        let cluster = match args.controller_url {
            Some(_) => None,
            None => Some(Cluster::connect(args, timeout)?),
        };
        Ok(Self {
            args: args.clone(),
            cluster,
            timeout,
        })
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Outcome<Answer> {
        self.call(http::Method::GET, path, Vec::new())
    }

    /// `POST path` with `body`.
    pub fn post(&self, path: &str, body: Vec<u8>) -> Outcome<Answer> {
        self.call(http::Method::POST, path, body)
    }

    fn call(&self, method: http::Method, path: &str, body: Vec<u8>) -> Outcome<Answer> {
        if let Some(cluster) = &self.cluster {
            return cluster.proxy(&self.args, method, path, body);
        }
        let base = self.args.controller_url.as_deref().unwrap_or_default();
        let url = format!("{}{path}", base.trim_end_matches('/'));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(self.timeout))
            .tls_config(crate::certsource::tls_config())
            .build()
            .into();
        let fail = |e: ureq::Error| Failure::io(format!("{url}: {e}"));
        let mut response = if method == http::Method::GET {
            agent.get(&url).call().map_err(fail)?
        } else {
            agent
                .post(&url)
                .header("content-type", "application/json")
                .send(&body[..])
                .map_err(fail)?
        };
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(16 * 1024 * 1024)
            .read_to_vec()
            .map_err(fail)?;
        Ok(Answer { status, body })
    }

    /// What this controller is, for messages.
    pub fn describe(&self) -> String {
        self.args.describe()
    }
}
