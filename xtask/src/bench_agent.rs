//! `cargo xtask bench agent`: seal-agent's localhost endpoint against the AWS Secrets Manager
//! Agent 2.1.0 (crates.io), both serving one moto secret from their cache on the running test
//! environment (`cargo xtask testenv up`).
//!
//! What is measured: cached `GET /secretsmanager/get?secretId=...` with the token header, at
//! concurrency 1, 16 and 64, for each agent: requests per second and the p50 and p99 latency;
//! and each agent's idle RSS (`VmRSS` in `/proc/PID/status` after start-up and one request that
//! fills its cache) and its RSS under load (`VmHWM`, the peak, after every level). Targets:
//! seal-agent at least 1.5 times the AWS agent's throughput and a lower p99 at each level, and
//! an idle RSS of at most 10 MiB. The figures are printed with met / not met; a missed target does
//! not make the command fail (the figures are for the issue notes).
//!
//! How: seal-agent is built as shipped, with the `small` profile (built for size, see the
//! workspace Cargo.toml); the AWS agent comes from
//! [`crate::bench_peers`]. One secret (a JSON string of about 100 bytes) is created in moto; both
//! agents are started side by side, each with a configuration of its own on a free loopback port,
//! the same moto variables (`AWS_ENDPOINT_URL`, region, static credentials; the AWS agent's SDK
//! honours `AWS_ENDPOINT_URL` too) and the same token (`AWS_TOKEN`, which both read). Both keep
//! their default cache TTL (300 s, longer than the whole run) and their default log level (info);
//! the AWS agent logs to its default file under its scratch directory, seal-agent's stderr goes to
//! a file. The load generator is in this process: a tokio runtime (`--threads`, default the number
//! of cores) running N workers, each with one keep-alive HTTP/1.1 connection (hyper), sending the
//! next request as soon as the previous answer is read. Each level runs a warm-up (2 s, not
//! counted) then `--duration` seconds (default 10) on the same connections; every answer must be
//! 200 with the secret in it, and each latency (from before the request is written to after the
//! body is read) goes into a sorted `Vec` for the percentiles. The levels alternate between the
//! agents (seal-agent then the AWS agent at 1, then at 16, then at 64) so that load from anything
//! else on the machine spreads over both. seal-agent's `/metrics` confirms afterwards that the
//! whole run made exactly one upstream call; the AWS agent has no such counter, its 300 s TTL is
//! what keeps it on its cache.
//!
//! `cargo xtask` runs a debug build of xtask, so the command first builds xtask with the release
//! profile and runs the benchmark in that build: the load generator is optimised like the agents.
//!
//! The load generator shares the machine with the agents, so on a small machine the figures are
//! those of the pair, client included; run it on an otherwise idle machine.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;

use crate::bench_peers::{BenchPeers, SECRETSMANAGER_AGENT_VERSION};
use crate::peers::workspace_root;
use crate::testenv::{Binaries, Environment};
use crate::{cargo, run};

/// The concurrency levels.
const LEVELS: [usize; 3] = [1, 16, 64];
/// The endpoint token both agents are given.
const TOKEN: &str = "bench-agent-token-0123456789";
/// The token header both agents accept.
const TOKEN_HEADER: &str = "X-Aws-Parameters-Secrets-Token";
/// The warm-up of each level, not counted.
const WARM_UP: Duration = Duration::from_secs(2);
/// Targets: throughput ratio and idle RSS.
const TARGET_SPEEDUP: f64 = 1.5;
const TARGET_IDLE_RSS_KIB: u64 = 10 * 1024;

/// One agent under test.
struct Agent {
    name: &'static str,
    child: Child,
    address: SocketAddr,
    log: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The figures of one level for one agent.
struct Level {
    requests: usize,
    errors: usize,
    per_second: f64,
    p50_us: f64,
    p99_us: f64,
}

/// Options: `--duration SECS`, `--threads N`.
struct Options {
    duration: Duration,
    threads: usize,
}

fn parse(args: &[String]) -> Result<Options> {
    let value = |name: &str| -> Result<Option<u64>> {
        match args.iter().position(|a| a == name) {
            Some(i) => Ok(Some(
                args.get(i + 1)
                    .with_context(|| format!("{name} needs a number"))?
                    .parse()
                    .with_context(|| format!("{name} needs a number"))?,
            )),
            None => Ok(None),
        }
    };
    for arg in args {
        if arg.starts_with("--") && arg != "--duration" && arg != "--threads" {
            bail!(
                "unknown option {arg}; usage: cargo xtask bench agent [--duration SECS] [--threads N]"
            );
        }
    }
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    Ok(Options {
        duration: Duration::from_secs(value("--duration")?.unwrap_or(10).max(1)),
        threads: match value("--threads")? {
            Some(n) => usize::try_from(n)?.max(1),
            None => cores,
        },
    })
}

/// Runs the benchmark and prints the table.
pub fn agent(args: &[String]) -> Result<()> {
    let options = parse(args)?;
    if cfg!(debug_assertions) {
        // `cargo xtask` is a debug build; an unoptimised load generator would be the bottleneck.
        eprintln!("==> building xtask (release) for an optimised load generator");
        run(Command::new(cargo())
            .args(["build", "--release", "--locked", "-p", "xtask"])
            .current_dir(workspace_root()))?;
        return run(Command::new(workspace_root().join("target/release/xtask"))
            .args(["bench", "agent"])
            .args(args));
    }
    let env = Environment::current()
        .context("no test environment is running; start one with `cargo xtask testenv up`")?;
    let vars: BTreeMap<String, String> = env.vars()?.into_iter().collect();
    let seal_agent = crate::bench::build_shipped("seal-agent")?;
    let aws_agent = BenchPeers::ensure()?.secretsmanager_agent;

    let work = tempfile::Builder::new()
        .prefix("seal-bench-agent-")
        .tempdir()?;
    let secret_id = format!("{}/db", crate::bench::unique_name("bench-agent")?);
    eprintln!("==> creating {secret_id} in moto");
    seed(&vars, &secret_id)?;

    let seal = start_seal_agent(&seal_agent, work.path(), &vars)?;
    let aws = start_aws_agent(&aws_agent, work.path(), &vars)?;
    let agents = [&seal, &aws];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.threads)
        .enable_all()
        .build()?;
    let path = format!(
        "/secretsmanager/get?secretId={}",
        secret_id.replace('/', "%2F")
    );

    let mut idle = Vec::new();
    for agent in agents {
        runtime.block_on(wait_ready(agent)).with_context(|| {
            format!(
                "{} did not start; its log:\n{}",
                agent.name,
                agent.log_tail()
            )
        })?;
        let body = runtime
            .block_on(get_once(agent.address, &path))
            .with_context(|| {
                format!(
                    "{}: first request; its log:\n{}",
                    agent.name,
                    agent.log_tail()
                )
            })?;
        if !body.contains(&secret_id) || !body.contains("SecretString") {
            bail!("{}: unexpected answer {body}", agent.name);
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    for agent in agents {
        idle.push(status_kib(agent, "VmRSS")?);
    }

    let started = chrono_now();
    let results = runtime.block_on(levels(agents, &path, &secret_id, options.duration))?;
    let mut peak = Vec::new();
    let mut loaded = Vec::new();
    for agent in agents {
        peak.push(status_kib(agent, "VmHWM")?);
        loaded.push(status_kib(agent, "VmRSS")?);
    }
    let upstream = runtime.block_on(seal_upstream_calls(seal.address))?;
    drop(runtime);
    drop(seal);
    drop(aws);

    print!(
        "{}",
        report(
            &options,
            &started,
            &results,
            &idle,
            &peak,
            &loaded,
            upstream.as_deref()
        )
    );
    Ok(())
}

/// Every level, the agents taking turns at each.
async fn levels(
    agents: [&Agent; 2],
    path: &str,
    secret_id: &str,
    duration: Duration,
) -> Result<Vec<[Level; 2]>> {
    let mut results = Vec::new();
    for &concurrency in &LEVELS {
        let mut pair = Vec::new();
        for agent in agents {
            eprintln!(
                "==> {} at concurrency {concurrency}: {WARM_UP:?} warm-up, {duration:?} measured",
                agent.name
            );
            let level = load(agent.address, path, secret_id, concurrency, duration).await?;
            if level.errors > 0 {
                eprintln!(
                    "    {} errors (non-200, wrong body or connection failures)",
                    level.errors
                );
            }
            pair.push(level);
        }
        let pair: [Level; 2] = pair.try_into().map_err(|_| anyhow::anyhow!("two agents"))?;
        results.push(pair);
    }
    Ok(results)
}

/// The time now as `YYYY-MM-DD HH:MM:SS UTC`, from `date` (xtask has no date crate).
fn chrono_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M:%S UTC"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(|| "unknown time".into(), |s| s.trim().to_owned())
}

/// Creates the secret in moto, with boto3 from the test environment's virtualenv.
fn seed(vars: &BTreeMap<String, String>, secret_id: &str) -> Result<()> {
    let python = Binaries::ensure()?.python();
    let script = format!(
        r#"
import json, os, boto3
sm = boto3.client("secretsmanager", endpoint_url=os.environ["AWS_ENDPOINT_URL"],
                  region_name=os.environ["AWS_REGION"],
                  aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                  aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"])
sm.create_secret(Name="{secret_id}", SecretString=json.dumps(
    {{"user": "ml-api", "password": "correct-horse-battery-staple", "host": "db.internal:5432"}}))
"#
    );
    run(Command::new(&python)
        .args(["-c", &script])
        .envs(vars)
        .current_dir(Path::new("/")))
}

/// A loopback port nobody listens on right now.
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The environment both agents run with: PATH, a scratch HOME, moto's variables, the token.
fn agent_command(binary: &Path, dir: &Path, vars: &BTreeMap<String, String>) -> Command {
    let mut command = Command::new(binary);
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_TOKEN", TOKEN)
        .stdin(Stdio::null());
    for name in [
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ] {
        if let Some(value) = vars.get(name) {
            command.env(name, value);
        }
    }
    command
}

fn spawn_logged(mut command: Command, log: &Path) -> Result<Child> {
    let file = std::fs::File::create(log)?;
    command
        .stdout(Stdio::from(file.try_clone()?))
        .stderr(Stdio::from(file))
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))
}

/// seal-agent `run` with only the endpoint configured (default TTL and limits).
fn start_seal_agent(binary: &Path, work: &Path, vars: &BTreeMap<String, String>) -> Result<Agent> {
    let dir = work.join("seal-agent");
    std::fs::create_dir_all(&dir)?;
    let port = free_port()?;
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!("server: {{listen: \"127.0.0.1:{port}\"}}\n"),
    )?;
    let log = dir.join("agent.log");
    let mut command = agent_command(binary, &dir, vars);
    command.arg("run").arg("-c").arg(&config);
    Ok(Agent {
        name: "seal-agent",
        child: spawn_logged(command, &log)?,
        address: SocketAddr::from(([127, 0, 0, 1], port)),
        log,
    })
}

/// The AWS agent with its defaults but the port (its log goes to `./logs/` in its directory).
fn start_aws_agent(binary: &Path, work: &Path, vars: &BTreeMap<String, String>) -> Result<Agent> {
    let dir = work.join("aws-agent");
    std::fs::create_dir_all(&dir)?;
    let port = free_port()?;
    let config = dir.join("config.toml");
    std::fs::write(&config, format!("http_port = \"{port}\"\n"))?;
    let log = dir.join("stdout.log");
    let mut command = agent_command(binary, &dir, vars);
    command.arg("--config").arg(&config);
    Ok(Agent {
        name: "aws_secretsmanager_agent",
        child: spawn_logged(command, &log)?,
        address: SocketAddr::from(([127, 0, 0, 1], port)),
        log,
    })
}

impl Agent {
    /// The end of its log (and of the AWS agent's own log file), for an error message.
    fn log_tail(&self) -> String {
        let mut text = std::fs::read_to_string(&self.log).unwrap_or_default();
        if let Some(dir) = self.log.parent()
            && let Ok(more) = std::fs::read_to_string(dir.join("logs/secrets_manager_agent.log"))
        {
            text.push_str(&more);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// A `KiB` figure from `/proc/PID/status` (`VmRSS`, `VmHWM`).
fn status_kib(agent: &Agent, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.child.id()))
        .with_context(|| format!("{} is not running", agent.name))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{}/status", agent.child.id()))
}

/// One keep-alive HTTP/1.1 connection.
struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
}

impl Connection {
    async fn open(address: SocketAddr) -> Result<Self> {
        let stream = tokio::net::TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Self { sender })
    }

    /// GET `path` with the token; the status and body.
    async fn get(&mut self, path: &str, token: bool) -> Result<(u16, Bytes)> {
        let mut request = Request::get(path).header(hyper::header::HOST, "localhost");
        if token {
            request = request.header(TOKEN_HEADER, TOKEN);
        }
        self.sender.ready().await?;
        let response = self
            .sender
            .send_request(request.body(Empty::new())?)
            .await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// Polls `/ping` until the agent answers (30 s at most).
async fn wait_ready(agent: &Agent) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut connection) = Connection::open(agent.address).await
            && let Ok((200, _)) = connection.get("/ping", false).await
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("no answer on {} after 30 s", agent.address);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One GET on a fresh connection; the body of a 200.
async fn get_once(address: SocketAddr, path: &str) -> Result<String> {
    let (status, body) = Connection::open(address).await?.get(path, true).await?;
    let body = String::from_utf8_lossy(&body).into_owned();
    if status != 200 {
        bail!("{status}: {body}");
    }
    Ok(body)
}

/// seal-agent's upstream GetSecretValue calls so far, from `/metrics` (the lines, as printed).
async fn seal_upstream_calls(address: SocketAddr) -> Result<Option<String>> {
    let (_, body) = Connection::open(address)
        .await?
        .get("/metrics", false)
        .await?;
    let text = String::from_utf8_lossy(&body);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("seal_agent_provider_api_calls_total{"))
        .collect();
    Ok((!lines.is_empty()).then(|| lines.join("; ")))
}

/// `concurrency` workers, each on its own connection, for the warm-up then `duration`.
async fn load(
    address: SocketAddr,
    path: &str,
    secret_id: &str,
    concurrency: usize,
    duration: Duration,
) -> Result<Level> {
    let start = Instant::now() + WARM_UP;
    let end = start + duration;
    let path: Arc<str> = path.into();
    let needle: Arc<[u8]> = secret_id.as_bytes().into();
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (path, needle) = (path.clone(), needle.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies: Vec<u32> = Vec::with_capacity(1 << 16);
            let mut errors = 0usize;
            let mut connection = None;
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                if connection.is_none() {
                    if let Ok(c) = Connection::open(address).await {
                        connection = Some(c);
                    } else {
                        errors += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                }
                let Some(c) = connection.as_mut() else {
                    continue;
                };
                let ok = if let Ok((status, body)) = c.get(&path, true).await {
                    status == 200 && body.windows(needle.len()).any(|w| *w == *needle)
                } else {
                    connection = None;
                    false
                };
                let done = Instant::now();
                if sent >= start && done <= end {
                    if ok {
                        latencies.push(
                            u32::try_from(done.duration_since(sent).as_micros())
                                .unwrap_or(u32::MAX),
                        );
                    } else {
                        errors += 1;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for worker in workers {
        let (l, e) = worker.await?;
        latencies.extend(l);
        errors += e;
    }
    latencies.sort_unstable();
    let percentile = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        f64::from(latencies[i])
    };
    #[allow(clippy::cast_precision_loss)]
    let per_second = latencies.len() as f64 / duration.as_secs_f64();
    Ok(Level {
        requests: latencies.len(),
        errors,
        per_second,
        p50_us: percentile(0.50),
        p99_us: percentile(0.99),
    })
}

#[allow(clippy::cast_precision_loss)]
fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

/// The table and the targets.
fn report(
    options: &Options,
    started: &str,
    results: &[[Level; 2]],
    idle: &[u64],
    peak: &[u64],
    loaded: &[u64],
    upstream: Option<&str>,
) -> String {
    let aws_name = format!("aws_secretsmanager_agent {SECRETSMANAGER_AGENT_VERSION}");
    let names = ["seal-agent", aws_name.as_str()];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\ncached GET /secretsmanager/get against moto, started {started}; {:?} per level after a {:?} warm-up, \
         load generator on {} thread(s) of this machine\n",
        options.duration, WARM_UP, options.threads
    );
    let _ = writeln!(
        out,
        "{:<32} {:>5} {:>11} {:>10} {:>10} {:>10} {:>7}",
        "agent", "conc", "requests/s", "p50 ms", "p99 ms", "requests", "errors"
    );
    for (level, pair) in LEVELS.iter().zip(results) {
        for (name, figures) in names.iter().zip(pair) {
            let _ = writeln!(
                out,
                "{name:<32} {level:>5} {:>11.0} {:>10.3} {:>10.3} {:>10} {:>7}",
                figures.per_second,
                figures.p50_us / 1e3,
                figures.p99_us / 1e3,
                figures.requests,
                figures.errors
            );
        }
    }
    let _ = writeln!(
        out,
        "\n{:<32} {:>12} {:>16} {:>14}",
        "agent", "idle RSS MiB", "peak RSS MiB", "RSS after MiB"
    );
    for (i, name) in names.iter().enumerate() {
        let _ = writeln!(
            out,
            "{name:<32} {:>12.1} {:>16.1} {:>14.1}",
            mib(idle[i]),
            mib(peak[i]),
            mib(loaded[i])
        );
    }
    let _ = writeln!(
        out,
        "\nseal-agent upstream calls over the whole run: {}",
        upstream.unwrap_or("none reported")
    );
    let _ = writeln!(out, "\ntargets:");
    for (level, [seal, aws]) in LEVELS.iter().zip(results) {
        let ratio = seal.per_second / aws.per_second;
        let _ = writeln!(
            out,
            "  concurrency {level:>2}: throughput {ratio:.2}x the AWS agent's (target >= {TARGET_SPEEDUP}x): {}; \
             p99 {:.3} ms vs {:.3} ms (target lower): {}",
            verdict(ratio >= TARGET_SPEEDUP),
            seal.p99_us / 1e3,
            aws.p99_us / 1e3,
            verdict(seal.p99_us < aws.p99_us)
        );
    }
    let _ = writeln!(
        out,
        "  idle RSS {:.1} MiB (target <= {} MiB): {}",
        mib(idle[0]),
        TARGET_IDLE_RSS_KIB / 1024,
        verdict(idle[0] <= TARGET_IDLE_RSS_KIB)
    );
    out
}
