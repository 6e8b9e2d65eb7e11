//! `cargo xtask demo`: the whole platform on one machine, on the embedded default.

use std::process::{Child, Command};

use anyhow::{Context, Result};

use crate::util::{run, target_dir, workspace_root};
use crate::{setup, wasm};

const COLLECTOR_ADDR: &str = "127.0.0.1:8700";
const STOREFRONT_ADDR: &str = "127.0.0.1:8701";
/// The storefront's publishable key (demo-site passes the same one to the tracker).
const DEMO_KEY: &str = "demo-publishable-key";

/// `args`: `--bundled` serves the storefront with the tracker from its npm package, bundled by
/// webpack, instead of the script-tag stub.
pub fn run_demo(args: &[&str]) -> Result<()> {
    let toolchain = setup::wasm_toolchain()?;
    let pkg = wasm::build_demo_package(&toolchain)?;
    let bundle = if args.contains(&"--bundled") {
        Some(wasm::build_demo_bundle(&toolchain)?)
    } else {
        None
    };
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
    ]))?;

    let data_dir = root.join(".retailmind");
    std::fs::create_dir_all(&data_dir)?;
    let bin = target_dir().join("release");
    let backend = [
        ("RETAILMIND_BACKEND__KIND", "embedded".to_owned()),
        (
            "RETAILMIND_BACKEND__DATA_DIR",
            data_dir.display().to_string(),
        ),
    ];
    let collector_url = format!("http://{COLLECTOR_ADDR}");
    // A real write key tied to the storefront's origin, as a shop would configure it.
    let collector_config = data_dir.join("collector.toml");
    std::fs::write(
        &collector_config,
        format!(
            "[[keys]]\nkey = \"{DEMO_KEY}\"\nname = \"demo storefront\"\nkind = \"publishable\"\norigins = [\"http://{STOREFRONT_ADDR}\"]\n"
        ),
    )?;
    let mut children = Children(Vec::new());
    children.spawn(
        Command::new(bin.join("retailmind-collector"))
            .envs(backend.clone())
            .env("RETAILMIND_LISTEN", COLLECTOR_ADDR)
            .env("RETAILMIND_CONFIG", &collector_config),
    )?;
    children.spawn(Command::new(bin.join("retailmind-processor")).envs(backend))?;
    let mut storefront = Command::new(bin.join("retailmind-demo-site"));
    storefront
        .env("RETAILMIND_DEMO_LISTEN", STOREFRONT_ADDR)
        .env("RETAILMIND_DEMO_COLLECTOR_URL", &collector_url)
        .env("RETAILMIND_DEMO_PKG", &pkg);
    if let Some(bundle) = &bundle {
        storefront.env("RETAILMIND_DEMO_BUNDLE", bundle);
    }
    children.spawn(&mut storefront)?;

    println!();
    println!("RetailMind demo is running on the embedded default:");
    println!("  storefront  http://{STOREFRONT_ADDR}/");
    println!("  collector   {collector_url}  (POST /v1/batch, /metrics, /openapi.json)");
    println!("  sessions    {}", data_dir.join("retailmind.db").display());
    println!("  lake        {}", data_dir.join("lake/events").display());
    println!("Browse the storefront, then look at the sessions table and the lake files.");
    println!("Press Ctrl-C to stop.");
    children.wait_any()
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
