//! `cargo xtask bench agent`: seal-agent's localhost endpoint against the AWS Secrets Manager
//! Agent 2.1.0 (crates.io), both serving one moto secret from their cache on the running test
//! environment (`cargo xtask testenv up`).
//!
//! What is measured: cached `GET /secretsmanager/get?secretId=...` with the token header, at
//! concurrency 1, 16 and 64, for each agent: requests per second and the p50 and p99 latency;
//! and each agent's idle RSS (`VmRSS` in `/proc/PID/status` after start-up and one request that
//! fills its cache) and its RSS under load (`VmHWM`, the peak, after every level); and, for
//! each level, the CPU time per request of the agent (user space and kernel apart, from
//! `/proc/PID/stat`) and of the load generator, and how busy the machine's CPUs were (from
//! `/proc/stat`; both read with the `procfs` crate), over the measured seconds. Targets:
//! seal-agent at least 1.5 times the AWS agent's throughput and a lower p99 at each level, and
//! an idle RSS of at most 10 MiB. The figures are printed with met / not met; a missed target does
//! not make the command fail (the figures are for the issue notes). With each throughput target
//! comes a bound: the ratio seal-agent would reach if its user-space time were zero and every
//! other measured cost stayed, which says whether any change to its code could reach the target
//! on this machine ([`throughput_bound`]).
//!
//! How: seal-agent is built as shipped, with the `small` profile (built for size, see the
//! workspace Cargo.toml); the AWS agent, in its release build, comes from
//! [`super::peers`]. One secret (a JSON string of about 100 bytes) is created in moto; both
//! agents are started side by side, each with a configuration of its own on a free loopback port,
//! the same moto variables (`AWS_ENDPOINT_URL`, region, static credentials; the AWS agent's SDK
//! honours `AWS_ENDPOINT_URL` too) and the same token (`AWS_TOKEN`, which both read). Both keep
//! their default cache TTL (300 s, longer than the whole run) and their default log level (info);
//! the AWS agent logs to its default file under its scratch directory, seal-agent's stderr goes to
//! a file. The load generator is in this process: a tokio runtime (`--threads`, default the number
//! of cores) running N workers, each with one keep-alive HTTP/1.1 connection, sending the next
//! request as soon as the previous answer is read. Its HTTP client is a minimal one
//! ([`Connection`]): on a small machine the load generator's CPU time is taken from the agents'.
//! At each level the agents take turns, five each, who goes first alternating: `--duration`
//! seconds (default 10) are measured per agent and level, in five equal turns, so that a burst of
//! load from anything else on the machine falls on both agents rather than on one's whole level.
//! An agent's first turn at a level starts with a 2 s warm-up, its later ones with 0.25 s (new
//! connections, warm cache), none of it counted. Every answer must be 200 with the secret in it,
//! and each latency (from before the request is written to after the body is read) goes into a
//! sorted `Vec` for the percentiles. seal-agent's `/metrics` confirms afterwards that the whole run
//! made exactly one upstream call; the AWS agent has no such counter, its 300 s TTL is what keeps
//! it on its cache.
//!
//! `cargo xtask` runs a debug build of xtask, so the command first builds xtask with the release
//! profile and runs the benchmark in that build: the load generator is optimised like the agents.
//!
//! The load generator shares the machine with the agents, so on a small machine the figures are
//! those of the pair, client included; run it on an otherwise idle machine. `--pin` puts the load
//! generator on the first CPU this process may use (one thread unless `--threads`) and both agents
//! on the others, so that an agent's throughput is its own capacity on those CPUs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::peers::BenchPeers;
use crate::peers::aws_agent::SECRETSMANAGER_AGENT_VERSION;
use crate::peers::workspace_root;
use crate::testenv::{Binaries, Environment};
use crate::{cargo, run};

/// The concurrency levels.
const LEVELS: [usize; 3] = [1, 16, 64];
/// The endpoint token both agents are given.
const TOKEN: &str = "bench-agent-token-0123456789";
/// The token header both agents accept.
const TOKEN_HEADER: &str = "X-Aws-Parameters-Secrets-Token";
/// The warm-up of each agent's first turn at a level, not counted.
const WARM_UP: Duration = Duration::from_secs(2);
/// The turns each agent takes at a level, and the warm-up of each later turn (new connections to
/// an agent whose cache is warm already).
const ROUNDS: u32 = 5;
const TURN_WARM_UP: Duration = Duration::from_millis(250);
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

/// What one turn of one agent measured.
struct Slice {
    /// The latency of each answered request, in microseconds.
    latencies: Vec<u32>,
    errors: usize,
    /// CPU ticks over the turn: the agent's user and system, the load generator's, the
    /// machine's busy and all ([`cpu_sample`]).
    cpu: [u64; 5],
    measured: Duration,
}

/// The figures of one level for one agent.
struct Level {
    requests: usize,
    errors: usize,
    per_second: f64,
    p50_us: f64,
    p99_us: f64,
    /// CPU time per counted request, in microseconds: the agent's in user space and in the
    /// kernel (its side of the loopback TCP), and the load generator's (both).
    agent_user_us: f64,
    agent_system_us: f64,
    client_cpu_us: f64,
    /// The share of the machine's CPU time that was busy during the level, 0 to 1.
    machine_busy: f64,
}

/// Options: `--duration SECS`, `--threads N`, `--pin`.
struct Options {
    duration: Duration,
    threads: usize,
    /// With `--pin`: the CPUs of the load generator (the first) and of the agents (the others).
    pin: Option<(CpuSet, CpuSet)>,
}

/// The usage line.
const USAGE: &str = "usage: cargo xtask bench agent [--duration SECS] [--threads N] [--pin]";

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
        if arg.starts_with("--") && !["--duration", "--threads", "--pin"].contains(&arg.as_str()) {
            bail!("unknown option {arg}; {USAGE}");
        }
    }
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    // Split now, so that a machine with one CPU fails before anything is built.
    let pin = if args.iter().any(|a| a == "--pin") {
        Some(split_cpus()?)
    } else {
        None
    };
    Ok(Options {
        duration: Duration::from_secs(value("--duration")?.unwrap_or(10).max(1)),
        threads: match value("--threads")? {
            Some(n) => usize::try_from(n)?.max(1),
            None if pin.is_some() => 1,
            None => cores,
        },
        pin,
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
    let seal_agent = super::build_shipped("seal-agent")?;
    let aws_agent = BenchPeers::ensure()?.secretsmanager_agent;

    let work = tempfile::Builder::new()
        .prefix("seal-bench-agent-")
        .tempdir()?;
    let secret_id = format!("{}/db", super::unique_name("bench-agent")?);
    eprintln!("==> creating {secret_id} in moto");
    seed(&vars, &secret_id)?;

    // With `--pin`, this thread takes the agents' CPUs while it starts them (a child inherits
    // the mask of the thread that spawns it), then the load generator's CPU, which the
    // runtime's threads made below inherit.
    if let Some((_, agent_cpus)) = &options.pin {
        sched_setaffinity(Pid::from_raw(0), agent_cpus).context("cannot pin the agents")?;
    }
    let seal = start_seal_agent(&seal_agent, work.path(), &vars)?;
    let aws = start_aws_agent(&aws_agent, work.path(), &vars)?;
    let agents = [&seal, &aws];
    if let Some((client_cpus, _)) = &options.pin {
        sched_setaffinity(Pid::from_raw(0), client_cpus)
            .context("cannot pin the load generator")?;
    }
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
        idle.push(memory_kib(agent)?[0]);
    }

    let started = chrono_now();
    let results = runtime.block_on(levels(agents, &path, &secret_id, options.duration))?;
    let mut peak = Vec::new();
    let mut loaded = Vec::new();
    for agent in agents {
        let [rss, hwm] = memory_kib(agent)?;
        peak.push(hwm);
        loaded.push(rss);
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

/// Every level, the agents taking turns in [`ROUNDS`] slices each, so that a burst of load from
/// anything else on the machine falls on both rather than on one agent's whole level.
async fn levels(
    agents: [&Agent; 2],
    path: &str,
    secret_id: &str,
    duration: Duration,
) -> Result<Vec<[Level; 2]>> {
    let slice = duration / ROUNDS;
    let mut results = Vec::new();
    for &concurrency in &LEVELS {
        eprintln!(
            "==> concurrency {concurrency}: {ROUNDS} turns of {slice:?} per agent, \
             after a {WARM_UP:?} warm-up on each"
        );
        let mut slices: [Vec<Slice>; 2] = [Vec::new(), Vec::new()];
        for round in 0..ROUNDS {
            // Who goes first alternates too.
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                let warm_up = if round == 0 { WARM_UP } else { TURN_WARM_UP };
                let taken = load(agents[i], path, secret_id, concurrency, warm_up, slice).await?;
                slices[i].push(taken);
            }
        }
        let [seal, aws] = slices.map(Level::from_slices);
        for (agent, level) in agents.iter().zip([&seal, &aws]) {
            if level.errors > 0 {
                eprintln!(
                    "    {}: {} errors (non-200, wrong body or connection failures)",
                    agent.name, level.errors
                );
            }
        }
        results.push([seal, aws]);
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

/// For `--pin`: the first CPU this process may use, for the load generator, and the others,
/// for the agents.
fn split_cpus() -> Result<(CpuSet, CpuSet)> {
    let allowed = sched_getaffinity(Pid::from_raw(0))?;
    let cpus: Vec<usize> = (0..CpuSet::count())
        .filter(|&i| allowed.is_set(i).unwrap_or(false))
        .collect();
    let [first, rest @ ..] = cpus.as_slice() else {
        bail!("no CPU in this process's affinity mask");
    };
    if rest.is_empty() {
        bail!("--pin needs at least two CPUs, this process may use one");
    }
    let (mut client, mut agents) = (CpuSet::new(), CpuSet::new());
    client.set(*first)?;
    for &cpu in rest {
        agents.set(cpu)?;
    }
    Ok((client, agents))
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

/// An agent's resident set now (`VmRSS`) and its peak so far (`VmHWM`), in KiB.
fn memory_kib(agent: &Agent) -> Result<[u64; 2]> {
    let status = procfs::process::Process::new(i32::try_from(agent.child.id())?)
        .and_then(|process| process.status())
        .with_context(|| format!("{} is not running", agent.name))?;
    match (status.vmrss, status.vmhwm) {
        (Some(rss), Some(hwm)) => Ok([rss, hwm]),
        _ => bail!("no VmRSS or VmHWM in /proc/{}/status", agent.child.id()),
    }
}

/// One keep-alive HTTP/1.1 connection with only what the benchmark needs: a GET written from
/// prepared bytes, and the answer's status and body, read by its `Content-Length` (both agents
/// send one). Lean on purpose: the load generator's CPU time per request competes with the
/// agents' (and with `--pin` it must outrun them from one CPU), so a general client such as
/// hyper's, about 5 us a request more here, would flatten the difference between them.
struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

/// The longest answer head the client reads.
const MAX_HEAD: usize = 16 * 1024;

impl Connection {
    async fn open(address: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buffer: Vec::with_capacity(4096),
        })
    }

    /// The bytes of `GET path`, with the token header when `token`.
    fn request(path: &str, token: bool) -> Vec<u8> {
        let token = if token {
            format!("{TOKEN_HEADER}: {TOKEN}\r\n")
        } else {
            String::new()
        };
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{token}\r\n").into_bytes()
    }

    /// Sends `request` (from [`Connection::request`]); the answer's status and body.
    async fn send(&mut self, request: &[u8]) -> Result<(u16, &[u8])> {
        self.stream.write_all(request).await?;
        self.buffer.clear();
        let (head, status, length) = loop {
            if let Some(end) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let (status, length) = parse_head(&self.buffer[..end])?;
                break (end + 4, status, length);
            }
            if self.buffer.len() > MAX_HEAD {
                bail!("an answer head longer than {MAX_HEAD} bytes");
            }
            self.read_more().await?;
        };
        while self.buffer.len() < head + length {
            self.read_more().await?;
        }
        if self.buffer.len() > head + length {
            bail!("bytes after the answer's body");
        }
        Ok((status, &self.buffer[head..]))
    }

    async fn read_more(&mut self) -> Result<()> {
        if self.stream.read_buf(&mut self.buffer).await? == 0 {
            bail!("the agent closed the connection");
        }
        Ok(())
    }

    /// GET `path` (with the token when `token`) on this connection; the status and body.
    async fn get(&mut self, path: &str, token: bool) -> Result<(u16, Vec<u8>)> {
        let (status, body) = self.send(&Self::request(path, token)).await?;
        Ok((status, body.to_vec()))
    }
}

/// The status code and `Content-Length` of an answer head (without its final blank line).
fn parse_head(head: &[u8]) -> Result<(u16, usize)> {
    let head = std::str::from_utf8(head).context("an answer head that is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.strip_prefix("HTTP/1.1 "))
        .and_then(|rest| rest.get(..3)?.parse().ok())
        .with_context(|| format!("not an HTTP/1.1 status line: {head:?}"))?;
    let length = lines
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .with_context(|| format!("an answer without Content-Length: {head:?}"))?;
    Ok((status, length))
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

/// CPU time (every thread) process `pid` has used so far in user space and in the kernel, in
/// clock ticks ([`procfs::ticks_per_second`]).
fn cpu_ticks(pid: u32) -> Result<[u64; 2]> {
    let stat = procfs::process::Process::new(i32::try_from(pid)?)?.stat()?;
    Ok([stat.utime, stat.stime])
}

/// The machine's CPU ticks so far from `/proc/stat`: busy, and in all (busy, idle and
/// waiting for I/O), summed over every CPU.
fn machine_ticks() -> Result<[u64; 2]> {
    use procfs::CurrentSI as _;
    let t = procfs::KernelStats::current()?.total;
    // Guest time is counted in user time already.
    let busy = t.user
        + t.nice
        + t.system
        + t.irq.unwrap_or(0)
        + t.softirq.unwrap_or(0)
        + t.steal.unwrap_or(0);
    Ok([busy, busy + t.idle + t.iowait.unwrap_or(0)])
}

/// The CPU ticks of the agent (user, system), of this process, the load generator (both),
/// and of the machine (busy, all).
fn cpu_sample(agent: u32) -> Result<[u64; 5]> {
    let [user, system] = cpu_ticks(agent)?;
    let [client_user, client_system] = cpu_ticks(std::process::id())?;
    let [busy, all] = machine_ticks()?;
    Ok([user, system, client_user + client_system, busy, all])
}

/// One turn: `concurrency` workers, each on its own connection, for `warm_up` then `duration`.
async fn load(
    agent: &Agent,
    path: &str,
    secret_id: &str,
    concurrency: usize,
    warm_up: Duration,
    duration: Duration,
) -> Result<Slice> {
    let address = agent.address;
    let start = Instant::now() + warm_up;
    let end = start + duration;
    let pid = agent.child.id();
    let cpu = tokio::spawn(async move {
        tokio::time::sleep_until(start.into()).await;
        let before = cpu_sample(pid)?;
        tokio::time::sleep_until(end.into()).await;
        let after = cpu_sample(pid)?;
        anyhow::Ok([0, 1, 2, 3, 4].map(|i| after[i] - before[i]))
    });
    let request: Arc<[u8]> = Connection::request(path, true).into();
    let needle: Arc<[u8]> = secret_id.as_bytes().into();
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (request, needle) = (request.clone(), needle.clone());
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
                let ok = if let Ok((status, body)) = c.send(&request).await {
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
    Ok(Slice {
        latencies,
        errors,
        cpu: cpu.await??,
        measured: duration,
    })
}

impl Level {
    /// The figures of one agent at one level, from its turns.
    fn from_slices(slices: Vec<Slice>) -> Level {
        let mut latencies = Vec::new();
        let (mut errors, mut cpu, mut measured) = (0, [0u64; 5], Duration::ZERO);
        for slice in slices {
            latencies.extend(slice.latencies);
            errors += slice.errors;
            for (sum, ticks) in cpu.iter_mut().zip(slice.cpu) {
                *sum += ticks;
            }
            measured += slice.measured;
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
        let per_second = latencies.len() as f64 / measured.as_secs_f64();
        #[allow(clippy::cast_precision_loss)]
        let tick_us = 1e6 / procfs::ticks_per_second() as f64;
        #[allow(clippy::cast_precision_loss)]
        let per_request = |ticks: u64| ticks as f64 * tick_us / latencies.len().max(1) as f64;
        Level {
            requests: latencies.len(),
            errors,
            per_second,
            p50_us: percentile(0.50),
            p99_us: percentile(0.99),
            agent_user_us: per_request(cpu[0]),
            agent_system_us: per_request(cpu[1]),
            client_cpu_us: per_request(cpu[2]),
            #[allow(clippy::cast_precision_loss)]
            machine_busy: cpu[3] as f64 / cpu[4].max(1) as f64,
        }
    }
}

/// The targets, met or not, with the bound on the throughput ratio at each level.
fn write_targets(out: &mut String, options: &Options, results: &[[Level; 2]], idle_kib: u64) {
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
        let _ = writeln!(
            out,
            "                  bound: {:.2}x if seal-agent spent no user-space time at all (machine CPU busy {:.0} % / {:.0} %)",
            throughput_bound(options.pin.is_some(), seal, aws),
            seal.machine_busy * 100.0,
            aws.machine_busy * 100.0
        );
    }
    let _ = writeln!(
        out,
        "\n  bound: where the CPU is the bottleneck, throughput is inverse to the CPU time a request costs\n\
         \x20 there: the agent's, plus the load generator's when they share the CPUs. The bound keeps every\n\
         \x20 measured cost but seal-agent's user-space time, which it sets to zero; seal-agent's kernel time\n\
         \x20 (its side of the loopback TCP) and the load generator's stay. A bound below the target means no\n\
         \x20 change to seal-agent's code reaches it on this machine. It holds only where the CPU is saturated\n\
         \x20 (busy near 100 %, or the agents' CPU with --pin); at concurrency 1 the round trip limits instead."
    );
    let _ = writeln!(
        out,
        "  idle RSS {:.1} MiB (target <= {} MiB): {}",
        mib(idle_kib),
        TARGET_IDLE_RSS_KIB / 1024,
        verdict(idle_kib <= TARGET_IDLE_RSS_KIB)
    );
}

/// The throughput ratio seal-agent would reach at a level with no user-space time: the AWS
/// agent's CPU per request over seal-agent's kernel time alone, both with the load generator's
/// CPU per request added when it shares the CPUs (not with `--pin`).
fn throughput_bound(pin: bool, seal: &Level, aws: &Level) -> f64 {
    let client = |level: &Level| if pin { 0.0 } else { level.client_cpu_us };
    (aws.agent_user_us + aws.agent_system_us + client(aws)) / (seal.agent_system_us + client(seal))
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
        "\ncached GET /secretsmanager/get against moto, started {started}; {:?} per agent and level in \
         {ROUNDS} turns taken in alternation, after a {:?} warm-up; load generator on {} thread(s){}\n",
        options.duration,
        WARM_UP,
        options.threads,
        if options.pin.is_some() {
            " pinned to the first CPU, the agents on the others"
        } else {
            ", sharing every CPU with the agents"
        }
    );
    let _ = writeln!(
        out,
        "{:<32} {:>5} {:>11} {:>10} {:>10} {:>10} {:>7} {:>19} {:>10} {:>7}",
        "agent",
        "conc",
        "requests/s",
        "p50 ms",
        "p99 ms",
        "requests",
        "errors",
        "agent CPU us/req",
        "client",
        "busy"
    );
    let _ = writeln!(
        out,
        "{:<32} {:>5} {:>11} {:>10} {:>10} {:>10} {:>7} {:>19} {:>10} {:>7}",
        "", "", "", "", "", "", "", "user + kernel", "us/req", "CPU %"
    );
    for (level, pair) in LEVELS.iter().zip(results) {
        for (name, figures) in names.iter().zip(pair) {
            let _ = writeln!(
                out,
                "{name:<32} {level:>5} {:>11.0} {:>10.3} {:>10.3} {:>10} {:>7} {:>9.1} + {:>7.1} {:>10.1} {:>7.0}",
                figures.per_second,
                figures.p50_us / 1e3,
                figures.p99_us / 1e3,
                figures.requests,
                figures.errors,
                figures.agent_user_us,
                figures.agent_system_us,
                figures.client_cpu_us,
                figures.machine_busy * 100.0
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
    write_targets(&mut out, options, results, idle[0]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_heads_give_status_and_length() {
        let head =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 42\r\ndate: x";
        assert_eq!(parse_head(head).unwrap(), (200, 42));
        assert_eq!(
            parse_head(b"HTTP/1.1 429 Too Many Requests\r\ncontent-length:0").unwrap(),
            (429, 0)
        );
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked").is_err());
        assert!(parse_head(b"HTTP/1.0 200 OK\r\ncontent-length: 1").is_err());
    }

    #[test]
    fn the_bound_drops_only_seal_agents_user_time() {
        let level = |user, system, client| Level {
            requests: 1,
            errors: 0,
            per_second: 1.0,
            p50_us: 1.0,
            p99_us: 1.0,
            agent_user_us: user,
            agent_system_us: system,
            client_cpu_us: client,
            machine_busy: 1.0,
        };
        let (seal, aws) = (level(5.0, 10.0, 20.0), level(10.0, 10.0, 20.0));
        // Shared CPUs: (10 + 10 + 20) / (10 + 20); pinned: (10 + 10) / 10.
        assert!((throughput_bound(false, &seal, &aws) - 40.0 / 30.0).abs() < 1e-9);
        assert!((throughput_bound(true, &seal, &aws) - 2.0).abs() < 1e-9);
    }
}
