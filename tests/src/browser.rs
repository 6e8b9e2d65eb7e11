//! Headless Chromium driven through chromedriver (WebDriver), the same browser users run.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};

use fantoccini::Locator;

use crate::{env_or, free_port, wait_for, wait_for_port};

/// chromedriver plus one browser session; both end on drop (call `close` for a clean end).
pub struct Browser {
    driver: Child,
    pub client: Client,
    profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver (`RETAILMIND_CHROMEDRIVER`, default /usr/bin/chromedriver) and a
    /// headless Chromium (`RETAILMIND_CHROMIUM`, default /usr/bin/chromium) with a fresh profile.
    pub async fn start() -> Browser {
        let driver_path = env_or("RETAILMIND_CHROMEDRIVER", "/usr/bin/chromedriver");
        let chromium = env_or("RETAILMIND_CHROMIUM", "/usr/bin/chromium");
        assert!(
            std::path::Path::new(&chromium).exists(),
            "Chromium not found at {chromium}; run `cargo xtask setup`"
        );
        let port = free_port();
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            // Its own process group, so that the browser it starts can be ended with it.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start chromedriver at {driver_path}: {e}; run `cargo xtask setup`")
            });
        wait_for_port("chromedriver to listen", port, Duration::from_secs(30)).await;

        let profile = tempfile::tempdir().expect("a Chromium profile directory");
        // Without the networking switches Chromium keeps calling Google's services, which this
        // closed network refuses.
        let args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            "--disable-quic".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": chromium, "args": args }),
        );
        let client = ClientBuilder::rustls()
            .expect("TLS set-up for the WebDriver client")
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session from chromedriver");
        Browser {
            driver,
            client,
            profile,
        }
    }

    /// Ends the browser session, then chromedriver and every browser process.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
        // Drop ends the processes.
    }

    /// Waits until the storefront's tracker has loaded on the current page (`page` names it in
    /// the failure).
    pub async fn wait_for_tracker(&self, page: &str) {
        self.wait_for_value(
            &format!("the tracker to load on {page}"),
            Duration::from_secs(20),
            "return window.retailmindReady === true || null;",
        )
        .await;
    }

    /// Runs `script` in the page until it returns something other than `null` (within
    /// `timeout`, failing with `what`), and gives that.
    pub async fn wait_for_value(
        &self,
        what: &str,
        timeout: Duration,
        script: &str,
    ) -> serde_json::Value {
        wait_for(what, timeout, || async {
            let value = self.client.execute(script, vec![]).await.ok()?;
            (!value.is_null()).then_some(value)
        })
        .await
    }

    /// Clicks the first element `css` selects.
    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css:?} on the page: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {css:?}: {e}"));
    }

    /// Has the tracker send what it holds now; fails with the tracker's error.
    pub async fn flush_tracker(&self) {
        let flushed = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 window.retailmind.flush().then(() => done('ok'), (e) => done('failed: ' + e));",
                vec![],
            )
            .await
            .expect("the flush script runs");
        assert_eq!(flushed, "ok", "the tracker's flush");
    }

    /// Kills chromedriver's process group and any browser process of this profile. A test that
    /// failed (or a browser that hung) must not leave Chromium running: killing chromedriver
    /// alone leaves the browser it started behind.
    fn end_processes(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // Chromium's helpers may leave the group (zygote); they all carry the profile path.
        let profile = self.profile.path().display().to_string();
        let _ = Command::new("pkill")
            .args(["-KILL", "-f", "--", &format!("--user-data-dir={profile}")])
            .status();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.end_processes();
    }
}
