//! `cargo xtask demo`: the whole platform on one machine, on the embedded default.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use anyhow::{Context, Result};

use crate::util::{only_switches, run, target_dir, workspace_root};
use crate::{setup, wasm};

const COLLECTOR_ADDR: &str = "127.0.0.1:8700";
const STOREFRONT_ADDR: &str = "127.0.0.1:8701";
/// The storefront's publishable key (demo-site passes the same one to the tracker).
const DEMO_KEY: &str = "demo-publishable-key";
/// The shop backend's secret key, for orders and customer profiles.
const DEMO_SECRET: &str = "demo-secret-key";
const POSTGRES_PORT: u16 = 8703;
const DASHBOARD_ADDR: &str = "127.0.0.1:8704";

/// `args`: `--bundled` serves the storefront with the tracker from its npm package, bundled by
/// webpack, instead of the script-tag stub; `--postgres` keeps orders and customer profiles in
/// a local PostgreSQL server (the Amazon RDS stand-in) instead of SQLite.
pub fn run_demo(args: &[&str]) -> Result<()> {
    only_switches("demo", args, &["--bundled", "--postgres"])?;
    let toolchain = setup::wasm_toolchain()?;
    let pkg = wasm::build_demo_package(&toolchain)?;
    let bundle = if args.contains(&"--bundled") {
        Some(wasm::build_demo_bundle(&toolchain)?)
    } else {
        None
    };
    let dashboard_assets = setup::dashboard_assets()?;
    let root = workspace_root();
    run(Command::new("cargo").current_dir(&root).args([
        "build",
        "--release",
        "-p",
        "retailmind-collector",
        "-p",
        "retailmind-processor",
        "-p",
        "retailmind-demo-site",
        "-p",
        "retailmind-analytics",
    ]))?;

    let data_dir = root.join(".retailmind");
    std::fs::create_dir_all(&data_dir)?;
    let bin = target_dir().join("release");
    let mut backend = vec![
        ("RETAILMIND_BACKEND__KIND", "embedded".to_owned()),
        (
            "RETAILMIND_BACKEND__DATA_DIR",
            data_dir.display().to_string(),
        ),
    ];
    let postgres = if args.contains(&"--postgres") {
        let server = DemoPostgres::start(&data_dir.join("postgres"))?;
        backend.push(("RETAILMIND_COMMERCE__DATABASE_URL", server.url.clone()));
        Some(server)
    } else {
        None
    };
    let orders_db = match &postgres {
        Some(server) => server.url.clone(),
        None => data_dir.join("commerce.db").display().to_string(),
    };
    let collector_url = format!("http://{COLLECTOR_ADDR}");
    // A real write key tied to the storefront's origin, as a shop would configure it.
    let collector_config = data_dir.join("collector.toml");
    std::fs::write(
        &collector_config,
        format!(
            "[[keys]]\nkey = \"{DEMO_KEY}\"\nname = \"demo storefront\"\nkind = \"publishable\"\norigins = [\"http://{STOREFRONT_ADDR}\"]\n\n\
             [[keys]]\nkey = \"{DEMO_SECRET}\"\nname = \"demo shop backend\"\nkind = \"secret\"\n"
        ),
    )?;
    let mut children = Children(Vec::new());
    children.spawn(
        Command::new(bin.join("retailmind-collector"))
            .envs(backend.clone())
            .env("RETAILMIND_LISTEN", COLLECTOR_ADDR)
            .env("RETAILMIND_CONFIG", &collector_config),
    )?;
    children.spawn(Command::new(bin.join("retailmind-processor")).envs(backend.clone()))?;
    let mut storefront = Command::new(bin.join("retailmind-demo-site"));
    storefront
        .env("RETAILMIND_DEMO_LISTEN", STOREFRONT_ADDR)
        .env("RETAILMIND_DEMO_COLLECTOR_URL", &collector_url)
        .env("RETAILMIND_DEMO_PKG", &pkg);
    if let Some(bundle) = &bundle {
        storefront.env("RETAILMIND_DEMO_BUNDLE", bundle);
    }
    children.spawn(&mut storefront)?;
    children.spawn(
        Command::new(bin.join("retailmind-dashboard"))
            .envs(backend.clone())
            .env("RETAILMIND_DASHBOARD__LISTEN", DASHBOARD_ADDR)
            .env("RETAILMIND_DASHBOARD__ASSETS_DIR", &dashboard_assets),
    )?;

    println!();
    println!("RetailMind demo is running on the embedded default:");
    println!("  storefront  http://{STOREFRONT_ADDR}/");
    println!("  collector   {collector_url}  (POST /v1/batch, /metrics, /openapi.json)");
    println!("  dashboard   http://{DASHBOARD_ADDR}/  (your browsing, in the lake within seconds)");
    println!("  sessions    {}", data_dir.join("retailmind.db").display());
    println!("  lake        {}", data_dir.join("lake/events").display());
    println!("  orders      {orders_db}");
    println!("Browse the storefront, then open the dashboard, or look at the sessions table and");
    println!("the lake files (raw events under lake/events, Parquet tables under lake/tables).");
    println!("Orders and profiles take the secret key, e.g.:");
    println!(
        "  curl -H 'Authorization: Bearer {DEMO_SECRET}' {collector_url}/v1/customers/<user id>"
    );
    println!("Press Ctrl-C to stop.");
    let outcome = children.wait_any();
    // The services first, then their database.
    drop(children);
    drop(postgres);
    outcome
}

/// A PostgreSQL cluster kept in the demo's data folder across runs, started on
/// [`POSTGRES_PORT`] and stopped when the demo ends.
struct DemoPostgres {
    bin: PathBuf,
    data: PathBuf,
    url: String,
}

impl DemoPostgres {
    fn start(dir: &Path) -> Result<DemoPostgres> {
        let bin = setup::postgres()?;
        let data = dir.join("data");
        let as_server = |program: &str| {
            let mut cmd = server_command(&bin, program);
            cmd.arg("-D").arg(&data);
            cmd
        };
        if !data.join("PG_VERSION").exists() {
            std::fs::create_dir_all(dir)?;
            if is_root() {
                run(Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(dir))?;
            }
            run(as_server("initdb").args(["-A", "trust", "-U", "retailmind", "-E", "UTF8"]))?;
        }
        let log = dir.join("server.log");
        run(as_server("pg_ctl").args(["-w", "-l"]).arg(&log).args([
            "-o",
            &format!(
                "-p {POSTGRES_PORT} -c listen_addresses=127.0.0.1 -k {}",
                dir.display()
            ),
            "start",
        ]))?;
        let server = DemoPostgres {
            url: format!("postgres://retailmind@127.0.0.1:{POSTGRES_PORT}/retailmind"),
            bin,
            data,
        };
        // The database, once (an error saying it exists is expected on later runs).
        let _ = Command::new(server.bin.join("createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &POSTGRES_PORT.to_string(),
                "-U",
                "retailmind",
            ])
            .arg("retailmind")
            .output();
        Ok(server)
    }
}

impl Drop for DemoPostgres {
    fn drop(&mut self) {
        let _ = server_command(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["stop", "-m", "fast"])
            .status();
    }
}

/// A PostgreSQL program run as its own user: as root, `postgres` (initdb refuses root).
fn server_command(bin: &Path, program: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(program));
        c
    } else {
        Command::new(bin.join(program))
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Child processes that are all stopped when one exits or when the demo is interrupted.
struct Children(Vec<Child>);

impl Children {
    fn spawn(&mut self, cmd: &mut Command) -> Result<()> {
        let child = cmd
            .spawn()
            .with_context(|| format!("could not start {:?}", cmd.get_program()))?;
        self.0.push(child);
        Ok(())
    }

    fn wait_any(&mut self) -> Result<()> {
        loop {
            for child in &mut self.0 {
                if let Some(status) = child.try_wait()? {
                    anyhow::bail!("a demo process exited with {status}");
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
