//! moto in server mode: Kinesis, DynamoDB, Firehose and S3 on a loopback port.
//!
//! moto runs as `$RETAILMIND_PYTHON -m moto.server` (`python3` by default; `cargo xtask test`
//! sets it). If it cannot be started, exits early or does not listen in time, the test fails
//! with moto's own output and how to install it: it never skips.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::NamedTempFile;

use crate::{env_or, free_port};

/// How long moto may take to accept connections (its first start imports a lot of Python).
const LISTEN_TIMEOUT: Duration = Duration::from_secs(60);

/// What to do when moto is missing.
const INSTALL_HINT: &str = "install moto with `cargo xtask setup` (pip-installs `moto[server]`), \
     or point RETAILMIND_PYTHON at a Python that has `moto[server]`";

/// A running `moto.server`, killed on drop. Its stdout and stderr go to a temp file, shown
/// when it fails to come up.
pub struct MotoServer {
    child: Child,
    log: NamedTempFile,
    pub endpoint: String,
}

impl MotoServer {
    /// Starts moto on a free port of 127.0.0.1 with the Python named by `RETAILMIND_PYTHON`
    /// (default `python3`) and returns once it answers its own API there. The port is free when
    /// picked, but moto binds it a second or two later, after Python's imports: when something
    /// else took it meanwhile, moto exits, and is started again on another port.
    pub async fn start() -> MotoServer {
        let python = env_or("RETAILMIND_PYTHON", "python3");
        let mut attempt = 1;
        loop {
            let port = free_port();
            let mut server = MotoServer::spawn(&python, port);
            match server.wait_until_answering(&python, port).await {
                Ok(()) => return server,
                Err(output) if attempt < 3 && output.contains("Address already in use") => {
                    attempt += 1;
                }
                Err(output) => panic!(
                    "`{python} -m moto.server` exited before listening on port {port}; if moto \
                     is missing, {INSTALL_HINT}. Its output:\n{output}"
                ),
            }
        }
    }

    fn spawn(python: &str, port: u16) -> MotoServer {
        let log = NamedTempFile::new().expect("a temp file for moto's output");
        let output = || Stdio::from(log.reopen().expect("moto's log file opens again"));
        let child = Command::new(python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(output())
            .stderr(output())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run `{python} -m moto.server`: {e}; {INSTALL_HINT}")
            });
        MotoServer {
            child,
            log,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Polls the port and the child until moto answers; its output if it exits first; panics if
    /// it takes longer than [`LISTEN_TIMEOUT`]. Whatever else may listen on the port does not
    /// answer moto's API, so it is not taken for moto.
    async fn wait_until_answering(&mut self, python: &str, port: u16) -> Result<(), String> {
        let deadline = Instant::now() + LISTEN_TIMEOUT;
        loop {
            if self
                .child
                .try_wait()
                .expect("moto's status can be read")
                .is_some()
            {
                return Err(self.output());
            }
            if answers_as_moto(port).await {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "`{python} -m moto.server` did not listen on port {port} within {LISTEN_TIMEOUT:?}. \
                 Its output:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What moto printed so far.
    fn output(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// SDK configuration pointed at this server with throw-away credentials, in `us-east-1`.
    pub fn sdk_config(&self) -> aws_config::SdkConfig {
        crate::local_sdk_config(&self.endpoint)
    }

    /// An S3 client for this server (path-style addressing, as moto needs).
    pub fn s3(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::from(&self.sdk_config())
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// The key and body of every object under `prefix` in `bucket`, in key order.
    pub async fn objects(&self, bucket: &str, prefix: &str) -> Vec<(String, Vec<u8>)> {
        let s3 = self.s3();
        let mut objects = Vec::new();
        let mut token = None;
        loop {
            let page = s3
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .unwrap_or_else(|e| panic!("cannot list s3://{bucket}/{prefix}: {e:?}"));
            for key in page.contents().iter().filter_map(|o| o.key()) {
                let body = s3
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("cannot read s3://{bucket}/{key}: {e:?}"))
                    .body
                    .collect()
                    .await
                    .unwrap_or_else(|e| panic!("cannot read the body of s3://{bucket}/{key}: {e}"))
                    .to_vec();
                objects.push((key.to_owned(), body));
            }
            token = page.next_continuation_token().map(str::to_owned);
            if token.is_none() {
                return objects;
            }
        }
    }

    /// The lines of every object under `prefix` in `bucket`, once there are at least `count`,
    /// or whatever is there after `timeout` (Firehose may buffer; moto writes at once, so this
    /// normally returns on the first look). Asserts that every object ends in a newline.
    pub async fn lines_under(
        &self,
        bucket: &str,
        prefix: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut lines = Vec::new();
            for (key, body) in self.objects(bucket, prefix).await {
                assert!(
                    body.ends_with(b"\n"),
                    "s3://{bucket}/{key} does not end in a newline"
                );
                lines.extend(String::from_utf8_lossy(&body).lines().map(str::to_owned));
            }
            if lines.len() >= count || Instant::now() > deadline {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether what listens on `port` of 127.0.0.1 answers moto's own API.
async fn answers_as_moto(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ask = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream
            .write_all(
                b"GET /moto-api/data.json HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            )
            .await?;
        let mut status = [0u8; 12];
        stream.read_exact(&mut status).await?;
        std::io::Result::Ok(status.starts_with(b"HTTP/1.") && status.ends_with(b"200"))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(5), ask).await,
        Ok(Ok(true))
    )
}
