//! A throwaway PostgreSQL server (the Amazon RDS stand-in): `initdb` into a temp folder, then
//! `postgres` on a free loopback port, trust authentication, fsync off. One server per test
//! binary; each test takes its own database from it.
//!
//! The binaries come from `RETAILMIND_PG_BIN` (set by `cargo xtask test`, which installs
//! PostgreSQL) or the newest `/usr/lib/postgresql/*/bin`. As root, the server runs as the
//! `postgres` user (initdb refuses root). A small shell watcher stops the server when the test
//! process ends, however it ends.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

pub struct PostgresServer {
    pub port: u16,
}

static SERVER: OnceLock<PostgresServer> = OnceLock::new();
static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// The URL of a new, empty database on this test binary's server (started on first use).
pub async fn fresh_database() -> String {
    let server = SERVER.get_or_init(PostgresServer::start);
    let name = format!(
        "test_{}_{}",
        std::process::id(),
        DATABASES.fetch_add(1, Ordering::SeqCst)
    );
    let out = psql(server.port, &format!("CREATE DATABASE {name}"));
    assert!(
        out.status.success(),
        "CREATE DATABASE failed: {}",
        text(&out)
    );
    format!("postgres://retailmind@127.0.0.1:{}/{name}", server.port)
}

fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RETAILMIND_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| {
            dirs.filter_map(|d| d.ok())
                .map(|d| d.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    found.retain(|d| d.join("initdb").exists());
    found.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb and no \
             RETAILMIND_PG_BIN): run `cargo xtask test`, which installs it, or \
             `apt-get install postgresql`"
        )
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A command run as the server's user.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `sql` on the database at `url` (one of [`fresh_database`]'s), as an operator would
/// with psql: to break a table under a running service and mend it again.
pub fn execute(url: &str, sql: &str) {
    let out = psql_on(url, sql);
    assert!(out.status.success(), "{sql}: {}", text(&out));
}

fn psql(port: u16, sql: &str) -> std::process::Output {
    psql_on(
        &format!("postgres://retailmind@127.0.0.1:{port}/postgres"),
        sql,
    )
}

fn psql_on(url: &str, sql: &str) -> std::process::Output {
    Command::new(bin_dir().join("psql"))
        .args(["-d", url, "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("psql runs")
}

impl PostgresServer {
    fn start() -> PostgresServer {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("retailmind-pg-")
            .tempdir()
            .expect("temp dir");
        let data = dir.path().join("data");
        if is_root() {
            // The folder must belong to the server's user.
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown runs");
            assert!(status.success(), "chown of {} failed", dir.path().display());
        }
        let out = as_server_user(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "retailmind", "--no-sync", "-E", "UTF8"])
            .output()
            .expect("initdb runs");
        assert!(out.status.success(), "initdb failed: {}", text(&out));
        let port = crate::free_port();
        let log = dir.path().join("server.log");
        // The watcher stops the server (immediate shutdown) once this process is gone; it looks
        // in /proc because `kill -0` on a root process fails for the postgres user.
        let script = format!(
            "{postgres} -D '{data}' -p {port} -k '{sock}' -c listen_addresses=127.0.0.1 \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c max_connections=200 >'{log}' 2>&1 & pg=$!; \
             while [ -d /proc/{parent} ] && kill -0 $pg 2>/dev/null; do sleep 0.5; done; \
             kill -QUIT $pg 2>/dev/null; wait $pg; rm -rf '{root}'",
            root = dir.path().display(),
            postgres = bin.join("postgres").display(),
            data = data.display(),
            sock = dir.path().display(),
            log = log.display(),
            parent = std::process::id(),
        );
        let mut sh = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "sh", "-c", &script]);
            c
        } else {
            let mut c = Command::new("sh");
            c.args(["-c", &script]);
            c
        };
        let mut watcher = sh
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the PostgreSQL watcher starts");
        // Reaped if it ends while the tests still run; otherwise it outlives them on purpose.
        std::thread::spawn(move || watcher.wait());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .output()
                .is_ok_and(|o| o.status.success());
            if ready {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "PostgreSQL did not start within 30 s: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // The watcher removes the folder after the server stopped.
        let _ = dir.keep();
        PostgresServer { port }
    }
}
