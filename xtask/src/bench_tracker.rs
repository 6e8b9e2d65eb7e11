//! `cargo xtask bench tracker`: the browser tracker's budgets, printed as figures (not a test).
//!
//! - Size of the release package (`demo-site/pkg`, built first): wasm, JS glue and the stub, raw,
//!   gzip -9 and brotli -q 11 (the `gzip` and `brotli` commands).
//! - In headless Chromium on `demo-site/static/bench.html`: the median main-thread cost of
//!   `track()` and the longest task during start-up (PerformanceObserver `longtask`).
//!
//! The page is served by a small HTTP server here, which also answers the tracker's batches with
//! 200, so the figures include real sends. Budgets: wasm + JS ≤ 30 KB gzip, stub ≤ 1 KB gzip,
//! `track()` median ≤ 50 µs, no task over 50 ms during start-up.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::util::workspace_root;

/// `args`: `--no-build` skips `cargo xtask build-wasm` (measures the package as it is).
pub fn run(args: &[&str]) -> Result<()> {
    crate::util::only_switches("bench tracker", args, &["--no-build"])?;
    let root = workspace_root();
    if !args.contains(&"--no-build") {
        crate::wasm::build_demo_package(&crate::setup::wasm_toolchain()?)?;
    }
    let pkg = root.join("demo-site/pkg");
    let static_dir = root.join("demo-site/static");
    print_sizes(&pkg, &static_dir)?;
    let figures = measure_in_chromium(&pkg, &static_dir)?;
    println!("\nheadless Chromium, demo-site/static/bench.html:");
    for (key, budget) in [
        ("load_and_compile_ms", ""),
        ("init_ms", ""),
        ("track_median_us", "  (budget 50 µs)"),
        ("track_max_round_us", ""),
        ("product_view_median_us", ""),
        (
            "longest_task_ms",
            "  (budget 50 ms; 0 = no task over 50 ms)",
        ),
        ("long_tasks", ""),
    ] {
        println!("  {key:<24} {}{budget}", field(&figures, key));
    }
    Ok(())
}

fn compressed(path: &Path, program: &str, args: &[&str]) -> Result<usize> {
    if !crate::util::cmd_ok(program, &["--version"]) {
        crate::setup::apt_install(&[program], None)?;
    }
    let out = Command::new(program)
        .args(args)
        .arg(path)
        .output()
        .with_context(|| format!("running {program} (apt-get install {program})"))?;
    if !out.status.success() {
        bail!("{program} failed on {}", path.display());
    }
    Ok(out.stdout.len())
}

fn print_sizes(pkg: &Path, static_dir: &Path) -> Result<()> {
    let mut files: Vec<(String, PathBuf)> = vec![
        ("wasm".into(), pkg.join("retailmind_sdk_bg.wasm")),
        ("JS glue".into(), pkg.join("retailmind_sdk.js")),
    ];
    // wasm-bindgen snippets (js/glue.js) are part of the glue.
    let mut stack = vec![pkg.join("snippets")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "js") {
                files.push(("JS snippet".into(), path));
            }
        }
    }
    println!("tracker package sizes (bytes):");
    println!(
        "  {:<44} {:>8} {:>8} {:>8}",
        "file", "raw", "gzip", "brotli"
    );
    let mut total = [0usize; 3];
    for (what, path) in &files {
        let sizes = sizes(path)?;
        for (t, s) in total.iter_mut().zip(sizes) {
            *t += s;
        }
        let name = format!(
            "{what} {}",
            path.file_name().unwrap_or_default().to_string_lossy()
        );
        println!(
            "  {name:<44} {:>8} {:>8} {:>8}",
            sizes[0], sizes[1], sizes[2]
        );
    }
    println!(
        "  {:<44} {:>8} {:>8} {:>8}   (budget 30720 gzip)",
        "total wasm + JS", total[0], total[1], total[2]
    );
    let stub = sizes(&static_dir.join("stub.js"))?;
    println!(
        "  {:<44} {:>8} {:>8} {:>8}   (budget 1024 gzip)",
        "script-tag stub stub.js", stub[0], stub[1], stub[2]
    );
    Ok(())
}

fn sizes(path: &Path) -> Result<[usize; 3]> {
    let raw = std::fs::metadata(path)
        .with_context(|| format!("{} (run cargo xtask build-wasm)", path.display()))?
        .len() as usize;
    Ok([
        raw,
        compressed(path, "gzip", &["-9", "-c"])?,
        compressed(path, "brotli", &["-q", "11", "-c"])?,
    ])
}

fn field(json: &str, key: &str) -> String {
    let pattern = format!("\"{key}\":");
    json.split_once(&pattern)
        .map(|(_, rest)| {
            let value: String = rest
                .chars()
                .take_while(|c| *c != ',' && *c != '}')
                .collect();
            match value.parse::<f64>() {
                Ok(v) => format!("{v:.1}"),
                Err(_) => value,
            }
        })
        .unwrap_or_else(|| "?".into())
}

/// Serves the bench page, runs Chromium on it and returns the JSON the page posted.
fn measure_in_chromium(pkg: &Path, static_dir: &Path) -> Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let (tx, rx) = mpsc::channel::<String>();
    let (pkg, static_dir) = (pkg.to_path_buf(), static_dir.to_path_buf());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (tx, pkg, static_dir) = (tx.clone(), pkg.clone(), static_dir.clone());
            std::thread::spawn(move || {
                let _ = serve(stream, &pkg, &static_dir, &tx);
            });
        }
    });
    let profile = std::env::temp_dir().join(format!("rm-bench-{}", std::process::id()));
    let chromium = std::env::var("RETAILMIND_CHROMIUM").unwrap_or("/usr/bin/chromium".into());
    let mut browser = Command::new(&chromium)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
            // Keeps headless Chromium running until the page has reported.
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("http://127.0.0.1:{port}/bench.html"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {chromium} (cargo xtask setup)"))?;
    let result = rx.recv_timeout(Duration::from_secs(60));
    let _ = browser.kill();
    let _ = browser.wait();
    let _ = std::fs::remove_dir_all(&profile);
    result.context("the bench page did not report within 60 s")
}

fn serve(
    stream: TcpStream,
    pkg: &Path,
    static_dir: &Path,
    tx: &mpsc::Sender<String>,
) -> Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("/").split('?').next().unwrap_or("/");
    let (status, kind, content) = match (method, path) {
        ("POST", "/bench-result") => {
            let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
            ("200 OK", "text/plain", Vec::new())
        }
        ("POST", "/v1/batch") => (
            "200 OK",
            "application/json",
            br#"{"accepted":0,"rejected":[]}"#.to_vec(),
        ),
        (_, p) => {
            let file = match p.strip_prefix("/pkg/") {
                Some(rest) => pkg.join(rest),
                None => static_dir.join(p.trim_start_matches('/')),
            };
            match std::fs::read(&file) {
                Ok(bytes) if !p.contains("..") => ("200 OK", content_type(&file), bytes),
                _ => ("404 Not Found", "text/plain", Vec::new()),
            }
        }
    };
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n",
        content.len()
    )?;
    out.write_all(&content)?;
    Ok(())
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css",
        _ => "application/octet-stream",
    }
}
