//! A real PostgreSQL server for the tests of the PostgreSQL backend, from Debian's `postgresql`
//! package (installed with apt-get on first use).
//!
//! PostgreSQL refuses to run as root, so its data directory belongs to the `postgres` user and
//! its tools run through `runuser`. One cluster under `target/test-postgres` serves every test:
//! the first test binary to need it initializes and starts it (under a file lock), records its
//! port, and later binaries reuse it, starting it again when it is no longer running. Each test
//! takes a database of its own ([`fresh_database`]); databases of test processes that have ended
//! are dropped the next time a process attaches. A test that stops the server takes a private
//! cluster instead ([`Cluster::private`]).

use std::fs::{self, File};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// Set `TUFA_TEST_BACKEND` to a list containing this to run the end-to-end tests on PostgreSQL.
pub const BACKEND: &str = "postgres";

/// Whether `TUFA_TEST_BACKEND` asks for PostgreSQL.
pub fn requested() -> bool {
    crate::server::backend_includes(BACKEND)
}

/// The directory of PostgreSQL's programs (`initdb`, `pg_ctl`, `psql`), newest version first.
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn installed_bin_dir() -> PathBuf {
    crate::ensure_package(
        "postgresql",
        || bin_dir().is_some(),
        "the tests of the PostgreSQL backend",
    );
    bin_dir().expect("postgresql is installed")
}

/// A free loopback port (free when asked: the server binds it a moment later).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("finding a free port")
        .port()
}

/// A PostgreSQL cluster: a data directory and the port its server listens on at 127.0.0.1,
/// trusting every local connection (it listens on nothing else).
#[derive(Debug)]
pub struct Cluster {
    bin: PathBuf,
    /// Holds `data/` (owned by `postgres`), `port` and `server.log`.
    dir: PathBuf,
    pub port: u16,
    /// Removed with its directory when dropped.
    private: bool,
}

impl Cluster {
    /// A cluster of its own for one test, which may stop and start it; stopped and removed
    /// when dropped.
    pub fn private() -> Cluster {
        let bin = installed_bin_dir();
        let root = crate::target_dir().join("test-postgres-private");
        fs::create_dir_all(&root).expect("creating target/test-postgres-private");
        let dir = tempfile::Builder::new()
            .prefix("cluster-")
            .tempdir_in(&root)
            .expect("creating a cluster directory")
            .keep();
        let cluster = Cluster {
            bin,
            dir,
            port: free_port(),
            private: true,
        };
        cluster.init().unwrap_or_else(|e| panic!("{e}"));
        cluster.start().unwrap_or_else(|e| panic!("{e}"));
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn as_postgres(&self, program: &str) -> Command {
        let mut command = Command::new("runuser");
        command
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(program));
        command
    }

    fn init(&self) -> Result<(), String> {
        let data = self.data();
        if data.join("PG_VERSION").exists() {
            return Ok(());
        }
        if data.exists() {
            fs::remove_dir_all(&data)
                .map_err(|e| format!("removing a half-made {}: {e}", data.display()))?;
        }
        fs::create_dir_all(&data).map_err(|e| format!("creating {}: {e}", data.display()))?;
        crate::run(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&self.dir),
        )?;
        crate::run(
            self.as_postgres("initdb")
                .args(["--auth=trust", "--username=postgres", "--encoding=UTF8"])
                .args(["--locale=C", "--no-sync", "-D"])
                .arg(&data),
        )?;
        Ok(())
    }

    /// Whether the server runs (`pg_ctl status`).
    pub fn running(&self) -> bool {
        self.as_postgres("pg_ctl")
            .arg("status")
            .arg("-D")
            .arg(self.data())
            .output()
            .is_ok_and(|output| output.status.success())
    }

    /// Starts the server on its port and waits until it accepts connections.
    pub fn start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='{}' \
             -c max_connections=400 -c fsync=off",
            self.port,
            self.dir.display()
        );
        crate::run(
            self.as_postgres("pg_ctl")
                .args(["start", "-w", "-t", "60", "-D"])
                .arg(self.data())
                .arg("-l")
                .arg(self.dir.join("server.log"))
                .args(["-o", &options]),
        )?;
        fs::write(self.dir.join("port"), self.port.to_string())
            .map_err(|e| format!("recording the port: {e}"))?;
        Ok(())
    }

    /// Stops the server (fast shutdown: open connections are ended, as in an outage).
    pub fn stop(&self) {
        crate::run(
            self.as_postgres("pg_ctl")
                .args(["stop", "-w", "-m", "fast", "-D"])
                .arg(self.data()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs one SQL command in database `postgres` with `psql` and returns what it printed.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        let output = crate::run(
            Command::new(self.bin.join("psql"))
                .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
                .arg(self.url("postgres"))
                .args(["-c", sql]),
        )?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// A new, empty database, named after this process so that it can be dropped once the
    /// process has ended; returns its URL.
    pub fn fresh_database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "t_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.psql(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("creating a test database: {e}"));
        self.url(&name)
    }

    /// Drops the databases of test processes that are no longer running.
    fn drop_stale_databases(&self) -> Result<(), String> {
        let names = self.psql("SELECT datname FROM pg_database WHERE datname LIKE 't\\_%'")?;
        for name in names.lines().map(str::trim) {
            let pid = name.split('_').nth(1).unwrap_or_default();
            if !pid.is_empty() && !Path::new("/proc").join(pid).exists() {
                self.psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
            }
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.private {
            if self.running() {
                let _ = self
                    .as_postgres("pg_ctl")
                    .args(["stop", "-w", "-m", "immediate", "-D"])
                    .arg(self.data())
                    .output();
            }
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// The cluster every test shares, started if it is not running.
pub fn shared() -> &'static Cluster {
    static SHARED: OnceLock<Cluster> = OnceLock::new();
    SHARED.get_or_init(|| attach_shared().unwrap_or_else(|e| panic!("{e}")))
}

fn attach_shared() -> Result<Cluster, String> {
    let bin = installed_bin_dir();
    let target = crate::target_dir();
    let dir = target.join("test-postgres");
    fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let lock_path = target.join("test-postgres.lock");
    let lock =
        File::create(&lock_path).map_err(|e| format!("creating {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("locking {}: {e}", lock_path.display()))?;
    let recorded = fs::read_to_string(dir.join("port"))
        .ok()
        .and_then(|port| port.trim().parse().ok());
    let mut cluster = Cluster {
        bin,
        dir,
        port: recorded.unwrap_or_else(free_port),
        private: false,
    };
    cluster.init()?;
    if !(recorded.is_some() && cluster.running()) {
        if cluster.running() {
            // Running on a port nobody recorded: stop it, to start where we know.
            cluster.stop();
        }
        cluster.port = free_port();
        cluster.start()?;
    }
    cluster.drop_stale_databases()?;
    Ok(cluster)
}

/// A new, empty database on the shared server: its URL.
pub fn fresh_database() -> String {
    shared().fresh_database()
}
