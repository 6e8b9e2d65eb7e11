//! `cargo xtask bench collector [--quick] [options]`: load on loopback against the release build
//! of `collector/examples/bench_server.rs`, figures printed (never a pass/fail test).
//!
//! Three servers, one after the other, each on a free port of 127.0.0.1:
//! - `bare`: an axum handler that only reads the body (the baseline the ratios refer to);
//! - `null`: the real collector with a sink that acknowledges at once;
//! - `embedded`: the real collector writing to the embedded SQLite log (fsync on every commit).
//!
//! Each gets a closed-loop throughput run with wrk (requests/s, p50/p99, peak RSS). The embedded
//! server also gets a constant-rate run at 70% of its measured maximum with oha (wrk cannot hold a
//! rate, and a closed loop hides queueing delay), and an overload run with many more connections
//! while its RSS is sampled every second, to show memory stays flat under back-pressure.
//!
//! Every run is checked, not trusted: a sample batch must come back `accepted: 20` before and
//! after the load, wrk must see no non-2xx answer, and the server's count of records the sink
//! acknowledged must be 20 per request it answered.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::util::{cmd_ok, run, target_dir, workspace_root};

const EVENTS_PER_BATCH: u64 = 20;

/// Durations and load shape; the defaults are the full run (about 2.5 minutes of load).
#[derive(Clone, Debug)]
struct Plan {
    throughput_secs: u64,
    latency_secs: u64,
    overload_secs: u64,
    threads: u32,
    connections: u32,
    overload_connections: u32,
    /// Share of the measured maximum the latency run holds.
    latency_load: f64,
}

impl Plan {
    const FULL: Plan = Plan {
        throughput_secs: 15,
        latency_secs: 20,
        overload_secs: 60,
        threads: 2,
        connections: 64,
        overload_connections: 512,
        latency_load: 0.7,
    };
    const QUICK: Plan = Plan {
        throughput_secs: 4,
        latency_secs: 5,
        overload_secs: 8,
        ..Plan::FULL
    };

    fn parse(args: &[&str]) -> Result<Plan> {
        let mut plan = if args.contains(&"--quick") {
            Plan::QUICK
        } else {
            Plan::FULL
        };
        let mut it = args.iter().copied().filter(|a| *a != "--quick");
        while let Some(flag) = it.next() {
            let mut value = |name: &str| -> Result<u64> {
                it.next()
                    .with_context(|| format!("{name} needs a number"))?
                    .parse()
                    .with_context(|| format!("{name} needs a number"))
            };
            match flag {
                "--throughput-secs" => plan.throughput_secs = value(flag)?,
                "--latency-secs" => plan.latency_secs = value(flag)?,
                "--overload-secs" => plan.overload_secs = value(flag)?,
                "--threads" => plan.threads = u32::try_from(value(flag)?)?,
                "--connections" => plan.connections = u32::try_from(value(flag)?)?,
                "--overload-connections" => {
                    plan.overload_connections = u32::try_from(value(flag)?)?
                }
                other => bail!("unknown option {other:?}\n{USAGE}"),
            }
        }
        ensure!(
            plan.throughput_secs > 0 && plan.latency_secs > 0 && plan.overload_secs > 0,
            "durations must be at least 1 s"
        );
        Ok(plan)
    }
}

const USAGE: &str = "usage: cargo xtask bench collector [--quick] [--throughput-secs N] \
[--latency-secs N] [--overload-secs N] [--threads N] [--connections N] [--overload-connections N]";

pub fn run_bench(args: &[&str]) -> Result<()> {
    match args.split_first() {
        Some((&"collector", rest)) => bench_collector(&Plan::parse(rest)?),
        _ => bail!("{USAGE}"),
    }
}

fn bench_collector(plan: &Plan) -> Result<()> {
    ensure_wrk()?;
    let server = build_bench_server()?;
    let work = target_dir().join("bench").join("collector");
    std::fs::create_dir_all(&work)?;

    // Generated now: the collector refuses events more than 30 days old.
    let body = work.join("body.json");
    let body_info = write_body(&server, &body)?;
    eprintln!(
        "bench: body {body_info}; raw tool output in {}",
        work.display()
    );

    let mut rows = Vec::new();
    for mode in ["bare", "null", "embedded"] {
        let srv = BenchServer::start(&server, mode, &[])?;
        check_sample(&server, &work, &srv, mode)?;
        let cpu_before = proc_cpu_secs(srv.pid())?;
        let result = wrk(
            plan,
            plan.connections,
            plan.throughput_secs,
            srv.addr,
            &body,
        )?
        .all_ok(mode)?;
        let cpu_secs = proc_cpu_secs(srv.pid())? - cpu_before;
        std::fs::write(work.join(format!("{mode}-throughput.txt")), &result.raw)?;
        let mut row = Row {
            mode,
            server_cpu_us_per_request: cpu_secs * 1e6 / result.requests.max(1) as f64,
            requests_per_sec: result.requests_per_sec(),
            p50_us: result.p50_us,
            p99_us: result.p99_us,
            peak_rss_kib: proc_status_kib(srv.pid(), "VmHWM")?,
            latency: None,
            overload: None,
        };
        let mut answered = result.requests;
        if mode == "embedded" {
            let over = overload(plan, &srv, &body)?;
            std::fs::write(work.join("embedded-overload.txt"), &over.wrk.raw)?;
            answered += over.wrk.ok_requests();
            row.overload = Some(over);
        }
        check_sample(&server, &work, &srv, mode)?;
        verify_counts(mode, answered, &srv.stop()?)?;
        if mode == "embedded" {
            let rate = (row.requests_per_sec * plan.latency_load).max(1.0) as u64;
            row.latency = latency_run(plan, &server, &work, &body, rate)?;
        }
        rows.push(row);
    }
    print_report(plan, &body_info, &rows);
    Ok(())
}

/// The embedded collector at a constant share of its maximum, on a fresh server. oha repeats one
/// body, so this server forgets batch ids (`--no-dedup`): otherwise every repeat would be answered
/// from memory and nothing written.
fn latency_run(
    plan: &Plan,
    server: &Path,
    work: &Path,
    body: &Path,
    rate: u64,
) -> Result<Option<LatencyRun>> {
    let oha = match ensure_oha() {
        Ok(oha) => oha,
        Err(e) => {
            eprintln!("bench: oha is not available ({e:#}); no constant-rate run");
            return Ok(None);
        }
    };
    let srv = BenchServer::start(server, "embedded", &["--no-dedup"])?;
    check_sample(server, work, &srv, "embedded")?;
    let run = oha_constant_rate(&oha, plan, rate, srv.addr, body)?;
    std::fs::write(work.join("embedded-latency.txt"), &run.raw)?;
    check_sample(server, work, &srv, "embedded")?;
    verify_counts("embedded (constant rate)", run.ok_responses, &srv.stop()?)?;
    Ok(Some(run))
}

/// wrk from Debian; nothing to build.
fn ensure_wrk() -> Result<()> {
    if !Path::new("/usr/bin/wrk").exists() && !cmd_ok("wrk", &["-v"]) {
        apt_install("wrk")?;
    }
    Ok(())
}

/// oha holds a constant request rate (`-q`) with latency measured from the scheduled send time;
/// it comes only from crates.io (a few minutes to build, once).
fn ensure_oha() -> Result<PathBuf> {
    if cmd_ok("oha", &["--version"]) {
        return Ok(PathBuf::from("oha"));
    }
    eprintln!("xtask: cargo install oha (several minutes, once)");
    let mut cmd = Command::new("cargo");
    // Installing must not share (and lock) the workspace's target directory.
    cmd.args(["install", "--locked", "oha", "--version", "^1.4"])
        .env_remove("CARGO_TARGET_DIR");
    run(&mut cmd)?;
    Ok(PathBuf::from("oha"))
}

fn apt_install(package: &str) -> Result<()> {
    eprintln!("xtask: apt-get install {package}");
    // A stale package list only costs a failed install below, which reports itself.
    let _ = Command::new("apt-get")
        .args(["update", "-q"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-q", package]))
}

fn build_bench_server() -> Result<PathBuf> {
    run(Command::new("cargo").current_dir(workspace_root()).args([
        "build",
        "--release",
        "-p",
        "retailmind-collector",
        "--example",
        "bench_server",
    ]))?;
    Ok(target_dir().join("release/examples/bench_server"))
}

/// Asks the server binary for a fresh batch (new batch and event ids, timestamps of now).
fn write_body(server: &Path, file: &Path) -> Result<String> {
    let out = Command::new(server)
        .arg("body")
        .arg(file)
        .output()
        .context("running bench_server body")?;
    ensure!(
        out.status.success(),
        "bench_server body failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// POST with `text/plain`, as the tracker sends it, each request with ids of its own: the
/// collector answers a repeated batch id from memory and drops an event id it already wrote, so
/// one fixed body would measure no write at all. The last 12 hex digits of the batch id and of
/// every event id are replaced per request: the run (`run`, distinct for every wrk run of this
/// process, since runs share a server), wrk's thread, a per-thread count and the id's place in the
/// body (0 the batch, 1.. the events). The `done` hook prints the figures in one machine-readable
/// line, so nothing depends on wrk's human-readable layout.
fn wrk_script(body: &Path, run: u32) -> String {
    format!(
        r#"local f = assert(io.open("{body}", "rb"))
local body = f:read("*a")
f:close()
-- Where each id's last 12 hex digits start, in body order.
local holes = {{}}
for _, key in ipairs({{ '"batch_id":"', '"event_id":"' }}) do
  local from = 1
  while true do
    local _, at = body:find(key, from, true)
    if not at then break end
    holes[#holes + 1] = at + 25
    from = at + 1
  end
end
assert(#holes > 1, "the body has no batch_id or no event_id")
table.sort(holes)
-- The text between the holes.
local parts = {{ body:sub(1, holes[1] - 1) }}
for i = 1, #holes do
  parts[i + 1] = body:sub(holes[i] + 12, (holes[i + 1] or #body + 1) - 1)
end
-- An id's place as its last two hex digits, formatted once: wrk shares the cores it measures.
local places = {{}}
for i = 1, #holes do places[i] = string.format("%02x", i - 1) end
local headers = {{ ["Content-Type"] = "text/plain;charset=UTF-8" }}

local threads = 0
function setup(thread)
  thread:set("thread_no", threads)
  threads = threads + 1
end

local sent = 0
function request()
  sent = sent + 1
  local id = string.format("%02x%02x%06x", {run}, thread_no or 0, sent % 0x1000000)
  local out = {{ parts[1] }}
  for i = 1, #holes do
    out[3 * i - 1] = id
    out[3 * i] = places[i]
    out[3 * i + 1] = parts[i + 1]
  end
  return wrk.format("POST", nil, headers, table.concat(out))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect, e.read, e.write, e.timeout))
end
"#,
        body = body.display(),
        run = run % 256,
    )
}

/// A running `bench_server serve MODE 0`.
struct BenchServer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    addr: SocketAddr,
}

impl BenchServer {
    fn start(binary: &Path, mode: &str, options: &[&str]) -> Result<BenchServer> {
        let mut child = Command::new(binary)
            .args(["serve", mode, "0"])
            .args(options)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting bench_server")?;
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().context("no stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|a| a.parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("bench_server {mode} did not start: {line:?}");
        };
        Ok(BenchServer {
            child,
            stdin,
            stdout,
            addr,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes the server's stdin (its stop signal) and reads the counts it prints on the way out.
    fn stop(mut self) -> Result<ServerCounts> {
        drop(self.stdin.take());
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest)?;
        let status = self.child.wait()?;
        ensure!(status.success(), "bench_server exited with {status}");
        let field = |name: &str| -> Result<u64> {
            rest.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .with_context(|| format!("bench_server printed no {name}: {rest:?}"))?
                .parse()
                .with_context(|| format!("bad {name} in {rest:?}"))
        };
        Ok(ServerCounts {
            requests: field("requests")?,
            records: field("records")?,
        })
    }
}

impl Drop for BenchServer {
    fn drop(&mut self) {
        // Only reached with the child still running when a step failed: do not leave it behind.
        if self.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

struct ServerCounts {
    requests: u64,
    records: u64,
}

/// A fresh batch must be answered 200 with all 20 events accepted (for the real collector).
fn check_sample(server: &Path, work: &Path, srv: &BenchServer, mode: &str) -> Result<()> {
    let file = work.join("sample.json");
    write_body(server, &file)?;
    let body = std::fs::read(&file)?;
    let (status, answer) = post_once(srv.addr, &body)?;
    ensure!(
        status == 200,
        "{mode}: sample batch answered {status}: {answer}"
    );
    if mode != "bare" {
        ensure!(
            answer.contains(&format!("\"accepted\":{EVENTS_PER_BATCH},"))
                && !answer.contains("\"duplicate\":true"),
            "{mode}: sample batch not fully accepted and written: {answer}"
        );
    }
    Ok(())
}

/// One HTTP/1.1 request on its own connection; enough for a check, no client library needed.
fn post_once(addr: SocketAddr, body: &[u8]) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "POST /v1/batch HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain;charset=UTF-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP answer: {response:?}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// The sink must hold 20 records per answered request; more requests than the load tools saw is
/// expected (the sample checks, and requests still in flight when a tool stopped counting).
fn verify_counts(mode: &str, answered: u64, counts: &ServerCounts) -> Result<()> {
    ensure!(
        counts.requests >= answered,
        "{mode}: the load tools saw {answered} answers but the server handled only {} requests \
         (does the collector skip repeated ids now? then vary them in post.lua)",
        counts.requests
    );
    if mode != "bare" {
        ensure!(
            counts.records == counts.requests * EVENTS_PER_BATCH,
            "{mode}: {} requests reached the sink but {} records were written",
            counts.requests,
            counts.records
        );
    }
    Ok(())
}

struct WrkResult {
    requests: u64,
    duration_us: u64,
    p50_us: u64,
    p99_us: u64,
    non_2xx: u64,
    socket_errors: u64,
    raw: String,
}

impl WrkResult {
    fn requests_per_sec(&self) -> f64 {
        self.requests as f64 / (self.duration_us.max(1) as f64 / 1e6)
    }
}

/// One wrk run posting `body` with fresh batch ids (see [`wrk_script`]).
fn wrk(
    plan: &Plan,
    connections: u32,
    secs: u64,
    addr: SocketAddr,
    body: &Path,
) -> Result<WrkResult> {
    static RUNS: AtomicU32 = AtomicU32::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let script = body.with_file_name(format!("post-{run}.lua"));
    std::fs::write(&script, wrk_script(body, run))?;
    let out = Command::new("wrk")
        .arg(format!("-t{}", plan.threads))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{secs}s"))
        .arg("--latency")
        .arg("--timeout")
        .arg("30s")
        .arg("-s")
        .arg(&script)
        .arg(format!("http://{addr}/v1/batch"))
        .output()
        .context("running wrk")?;
    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "wrk failed: {raw}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = raw
        .lines()
        .find_map(|l| l.strip_prefix("BENCH "))
        .with_context(|| format!("wrk printed no figures: {raw}"))?;
    let field = |name: &str| -> Result<u64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .with_context(|| format!("no {name} in {line:?}"))?
            .parse()
            .with_context(|| format!("bad {name} in {line:?}"))
    };
    let socket_errors: u64 = ["connect", "read", "write", "timeout"]
        .iter()
        .map(|f| field(f))
        .sum::<Result<u64>>()?;
    let result = WrkResult {
        requests: field("requests")?,
        duration_us: field("duration_us")?,
        p50_us: field("p50_us")?,
        p99_us: field("p99_us")?,
        non_2xx: field("non2xx")?,
        socket_errors,
        raw,
    };
    Ok(result)
}

impl WrkResult {
    /// Answers with 2xx: wrk counts every completed request, whatever its status.
    fn ok_requests(&self) -> u64 {
        self.requests.saturating_sub(self.non_2xx)
    }

    /// Below capacity every batch must be accepted.
    fn all_ok(self, what: &str) -> Result<WrkResult> {
        ensure!(
            self.non_2xx == 0 && self.socket_errors == 0,
            "{what}: {} answers were not 2xx and {} requests failed at the socket; every batch \
             must be accepted (raw output: {})",
            self.non_2xx,
            self.socket_errors,
            self.raw
        );
        Ok(self)
    }
}

struct LatencyRun {
    target_rate: u64,
    achieved_rate: f64,
    p50_us: u64,
    p99_us: u64,
    ok_responses: u64,
    raw: String,
}

/// `oha -q RATE --latency-correction`: requests are scheduled at a fixed rate and each latency
/// counts from its scheduled time, so a stall shows up in p99 instead of slowing the sender.
fn oha_constant_rate(
    oha: &Path,
    plan: &Plan,
    rate: u64,
    addr: SocketAddr,
    body: &Path,
) -> Result<LatencyRun> {
    let out = Command::new(oha)
        // -w: requests open at the deadline are waited for instead of cut off.
        .args(["--no-tui", "--latency-correction", "-w", "-m", "POST"])
        .args(["-T", "text/plain;charset=UTF-8", "-D"])
        .arg(body)
        .arg("-c")
        .arg(plan.connections.to_string())
        .arg("-q")
        .arg(rate.to_string())
        .arg("-z")
        .arg(format!("{}s", plan.latency_secs))
        .arg(format!("http://{addr}/v1/batch"))
        .output()
        .context("running oha")?;
    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "oha failed: {raw}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_oha(&raw, rate)
}

/// Reads oha's text summary: `Requests/sec:`, the response-time percentiles
/// (`99.00% in 2.4012 ms`), the status codes (`[200] 12345 responses`) and the errors
/// (`[4] aborted due to deadline`), each from its own section.
fn parse_oha(raw: &str, target_rate: u64) -> Result<LatencyRun> {
    let mut achieved_rate = None;
    let mut percentiles = Vec::new();
    let mut ok_responses = 0;
    let mut section = "";
    for line in raw.lines() {
        if !line.starts_with(char::is_whitespace) && line.trim_end().ends_with(':') {
            section = line.trim_end();
            continue;
        }
        let line = line.trim();
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            achieved_rate = v.trim().parse::<f64>().ok();
        }
        match section {
            "Response time distribution:" => {
                if let Some((p, value)) = line.split_once("% in ") {
                    percentiles.push((p.trim().to_owned(), duration_us(value)?));
                }
            }
            "Status code distribution:" | "Error distribution:" => {
                let Some((tag, text)) = line.strip_prefix('[').and_then(|l| l.split_once(']'))
                else {
                    continue;
                };
                let count: u64 = text
                    .split_whitespace()
                    .next()
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                if section.starts_with("Status") {
                    ensure!(
                        tag == "200",
                        "oha saw {text} with status {tag}; every batch must be accepted"
                    );
                    ok_responses += count;
                } else {
                    // Requests still open when the run's time is up are cut off; any other
                    // error is a failure of the server or the connection.
                    ensure!(
                        text.contains("aborted due to deadline"),
                        "oha saw {tag} errors: {text}"
                    );
                }
            }
            _ => {}
        }
    }
    let percentile = |p: &str| -> Result<u64> {
        percentiles
            .iter()
            .find(|(q, _)| q == p)
            .map(|(_, us)| *us)
            .with_context(|| format!("oha printed no {p}% percentile: {raw}"))
    };
    Ok(LatencyRun {
        target_rate,
        achieved_rate: achieved_rate
            .with_context(|| format!("oha printed no Requests/sec: {raw}"))?,
        p50_us: percentile("50.00")?,
        p99_us: percentile("99.00")?,
        ok_responses,
        raw: raw.to_owned(),
    })
}

/// `0.6796 ms`, `1.2 secs`, `850 µs` as microseconds.
fn duration_us(text: &str) -> Result<u64> {
    let mut parts = text.split_whitespace();
    let value: f64 = parts
        .next()
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("not a duration: {text:?}"))?;
    let scale = match parts.next().unwrap_or("secs") {
        "ns" => 1e-3,
        "µs" | "us" => 1.0,
        "ms" => 1e3,
        "s" | "sec" | "secs" => 1e6,
        unit => bail!("unknown unit {unit:?} in {text:?}"),
    };
    Ok((value * scale) as u64)
}

struct OverloadRun {
    wrk: WrkResult,
    connections: u32,
    /// VmRSS once a second, from the second second on.
    rss_kib: Vec<u64>,
}

impl OverloadRun {
    /// Least and most RSS over the samples from `from` on.
    fn rss_range(&self, from: usize) -> (u64, u64) {
        let tail = &self.rss_kib[from.min(self.rss_kib.len().saturating_sub(1))..];
        let min = tail.iter().copied().min().unwrap_or(0);
        let max = tail.iter().copied().max().unwrap_or(0);
        (min, max)
    }
}

/// Far more connections than the throughput run, while the server's RSS is read every second.
///
/// Memory first grows while the collector's memory of recent batch ids fills up to its capacity
/// (100,000 ids by default, some 45 MiB); only after that should RSS be flat, so the report gives
/// the range over the second half of the run as well as over all of it.
///
/// Past its in-flight limit the collector sheds load with 503 by design: those answers are
/// counted and reported, not treated as a failure; a socket error still is.
fn overload(plan: &Plan, srv: &BenchServer, body: &Path) -> Result<OverloadRun> {
    let pid = srv.pid();
    let addr = srv.addr;
    let connections = plan.overload_connections;
    let (result, samples) = std::thread::scope(|scope| {
        let load = scope.spawn(|| wrk(plan, connections, plan.overload_secs, addr, body));
        let mut samples = Vec::new();
        let start = Instant::now();
        // Skip the first second: that is the ramp-up, not the steady state we judge.
        let mut next = start + Duration::from_secs(1);
        while !load.is_finished() {
            let now = Instant::now();
            if now >= next {
                if let Ok(kib) = proc_status_kib(pid, "VmRSS") {
                    samples.push(kib);
                }
                next += Duration::from_secs(1);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let result = load.join().expect("the wrk thread does not panic");
        (result, samples)
    });
    let wrk = result?;
    ensure!(
        wrk.socket_errors == 0,
        "overload: {} requests failed at the socket: {}",
        wrk.socket_errors,
        wrk.raw
    );
    ensure!(
        !samples.is_empty(),
        "no RSS samples during the overload run"
    );
    Ok(OverloadRun {
        wrk,
        connections,
        rss_kib: samples,
    })
}

/// CPU time the process used so far (user + system, all threads), from `/proc/PID/stat`.
fn proc_cpu_secs(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces, hence the last ')'): state is
    // field 3, utime and stime are fields 14 and 15.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed /proc/PID/stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64> {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .with_context(|| format!("no field {} in /proc/{pid}/stat", i + 3))
    };
    let per_sec: f64 = crate::util::cmd_output("getconf", &["CLK_TCK"])
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(100.0);
    Ok((ticks(11)? + ticks(12)?) / per_sec)
}

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`).
fn proc_status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

struct Row {
    mode: &'static str,
    /// Server CPU time (user + system, all threads) per request of the throughput run: unlike
    /// requests/s it hardly depends on what else the machine runs at the time.
    server_cpu_us_per_request: f64,
    requests_per_sec: f64,
    p50_us: u64,
    p99_us: u64,
    peak_rss_kib: u64,
    latency: Option<LatencyRun>,
    overload: Option<OverloadRun>,
}

fn print_report(plan: &Plan, body_info: &str, rows: &[Row]) {
    let ms = |us: u64| format!("{:.2} ms", us as f64 / 1000.0);
    let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
    let bare = rows
        .iter()
        .find(|r| r.mode == "bare")
        .map(|r| r.requests_per_sec);
    println!();
    println!(
        "collector benchmark: loopback, wrk -t{} -c{} -d{}s, batches of {EVENTS_PER_BATCH} events ({body_info}), text/plain",
        plan.threads, plan.connections, plan.throughput_secs
    );
    println!(
        "{:<10} {:>12} {:>12} {:>10} {:>10} {:>12} {:>9} {:>14}",
        "mode", "requests/s", "events/s", "p50", "p99", "peak RSS", "vs bare", "CPU µs/event"
    );
    for r in rows {
        let ratio = bare
            .map(|b| format!("{:.2}", r.requests_per_sec / b))
            .unwrap_or_default();
        println!(
            "{:<10} {:>12.0} {:>12.0} {:>10} {:>10} {:>12} {:>9} {:>14.2}",
            r.mode,
            r.requests_per_sec,
            r.requests_per_sec * EVENTS_PER_BATCH as f64,
            ms(r.p50_us),
            ms(r.p99_us),
            mib(r.peak_rss_kib),
            ratio,
            r.server_cpu_us_per_request / EVENTS_PER_BATCH as f64
        );
    }
    for r in rows {
        if let Some(l) = &r.latency {
            println!(
                "{} at {:.0}% of its maximum (oha, constant {} requests/s = {} events/s, {} connections, {} s): \
                 achieved {:.0} requests/s, p50 {}, p99 {}",
                r.mode,
                plan.latency_load * 100.0,
                l.target_rate,
                l.target_rate * EVENTS_PER_BATCH,
                plan.connections,
                plan.latency_secs,
                l.achieved_rate,
                ms(l.p50_us),
                ms(l.p99_us)
            );
        }
        if let Some(o) = &r.overload {
            let (min, max) = o.rss_range(0);
            let half = o.rss_kib.len() / 2;
            let (late_min, late_max) = o.rss_range(half);
            let every_5s: Vec<String> = o
                .rss_kib
                .iter()
                .step_by(5)
                .map(|kib| format!("{}", kib / 1024))
                .collect();
            println!(
                "{} overload ({} connections, {} s): {:.0} requests/s, p99 {}, {} shed with 503; \
                 RSS over {} samples: min {}, max {}; over the second half: min {}, max {}",
                r.mode,
                o.connections,
                plan.overload_secs,
                o.wrk.requests_per_sec(),
                ms(o.wrk.p99_us),
                o.wrk.non_2xx,
                o.rss_kib.len(),
                mib(min),
                mib(max),
                mib(late_min),
                mib(late_max)
            );
            println!("  RSS MiB every 5 s: {}", every_5s.join(" "));
        }
    }
    println!(
        "targets (issue 4): >= 300000 events/s embedded; p99 < 20 ms at 70% of that; flat RSS under overload"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from a real `oha --no-tui` run (oha 1.16).
    const OHA: &str = "Summary:
  Success rate:\t100.00%
  Total:\t3002.4929 ms
  Requests/sec:\t500.9171

Response time distribution:
  10.00% in 0.5474 ms
  50.00% in 0.6796 ms
  99.00% in 6.3721 ms
  99.90% in 1.2 secs

Status code distribution:
  [200] 1500 responses

Error distribution:
  [4] aborted due to deadline
";

    #[test]
    fn reads_oha_summary() {
        let run = parse_oha(OHA, 500).expect("parses");
        assert_eq!(run.p50_us, 679);
        assert_eq!(run.p99_us, 6372);
        assert_eq!(run.ok_responses, 1500);
        assert!((run.achieved_rate - 500.9171).abs() < 1e-6);
    }

    #[test]
    fn refuses_oha_runs_with_failed_answers() {
        let shed = OHA.replace(
            "[200] 1500 responses",
            "[200] 1400 responses\n  [503] 100 responses",
        );
        assert!(parse_oha(&shed, 500).is_err());
        let reset = OHA.replace("aborted due to deadline", "connection reset by peer");
        assert!(parse_oha(&reset, 500).is_err());
    }

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(duration_us("850 µs").expect("µs"), 850);
        assert_eq!(duration_us("2.5 ms").expect("ms"), 2500);
        assert_eq!(duration_us("1.5 secs").expect("secs"), 1_500_000);
        assert!(duration_us("3 fortnights").is_err());
    }
}
