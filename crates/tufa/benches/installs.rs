//! `pip install` and `uv pip install` of the same real wheels from `tufa serve`, pypiserver and
//! devpi-server, and through `tufa proxy` cold and warm: side by side in one run, on loopback.
//!
//! `cargo bench -p tufa --bench installs`. The first run downloads the wheels from PyPI into
//! `target/bench-wheels-*` and installs pypiserver, devpi-server and devpi-client into a venv at
//! `target/bench-peers-*`; later runs reuse both. Every server is started by the benchmark on a
//! free loopback port, given the wheels by `twine upload`, and stopped at the end. Each round
//! installs with an empty installer cache (`pip --no-cache-dir`, `uv --no-cache`) into a new
//! directory. Proxy, cold: a new `tufa proxy` with an empty cache in front of `tufa serve`, so
//! it refreshes the TUF metadata, verifies every page and downloads every file; warm: the same
//! proxy again. Installers and servers share the machine's cores.
//!
//! Measured on the shared 2-core build machine (9 wheels, median and fastest of 5 rounds), release
//! build:
//!
//! | installer | tufa serve | pypiserver | devpi-server | proxy, cold | proxy, warm |
//! |---|---|---|---|---|---|
//! | pip | 2428 ms (min 2189) | 2176 ms (min 1958) | 2313 ms (min 1927) | 2445 ms (min 2313) | 2479 ms (min 2177) |
//! | uv | 338 ms (min 298) | 417 ms (min 349) | 423 ms (min 404) | 395 ms (min 330) | 353 ms (min 275) |
//!
//! Another run, on a quieter machine: pip 2165, 2016, 2067, 2265, 2096 ms; uv 247, 295, 354,
//! 259, 234 ms. pip spends nearly all of its time in itself (starting, installing); of its
//! network phase, each request costs pip ~6 ms of its own while `tufa serve` answers in ~0.5 ms.
//! From Tufa pip makes 27 requests (9 pages, 9 PEP 658 `.metadata` files, 9 wheels), from
//! pypiserver and devpi 18 (they serve no `.metadata`), which is why pip is 4-10% slower from
//! Tufa here while uv, which fetches in parallel, is 20-40% faster.

use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tufa_testkit::{PythonEnv, TufaProxy, TufaServer, http, median, target_dir};

/// Pure-Python wheels from PyPI: what `REQUIREMENTS` resolves to. Versions whose metadata
/// twine accepts (it refuses `License-Expression` in metadata older than 2.4).
const WHEELS: [&str; 9] = [
    "requests==2.32.3",
    "urllib3==2.2.3",
    "idna==3.10",
    "certifi==2024.8.30",
    "charset-normalizer==3.4.0",
    "attrs==22.2.0",
    "packaging==24.1",
    "six==1.16.0",
    "typing-extensions==4.12.2",
];

/// What the installers are asked for; `requests` pulls in four of the wheels.
const REQUIREMENTS: [&str; 5] = ["requests", "attrs", "packaging", "six", "typing-extensions"];

/// The peers, pinned.
const PEERS: [&str; 3] = [
    "pypiserver==2.4.2",
    "devpi-server==6.20.3",
    "devpi-client==7.3.0",
];

const ROUNDS: usize = 5;

/// How long a peer may take to start answering (devpi-server takes tens of seconds on a busy
/// machine).
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// A directory under `target/` filled once by `fill`, named after what it holds.
fn cached(name: &str, key: &[&str], fill: impl FnOnce(&Path)) -> PathBuf {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    let dir = target_dir().join(format!("{name}-{:016x}", hasher.finish()));
    let ready = dir.join(".tufa-ready");
    if !ready.exists() {
        if dir.exists() {
            fs::remove_dir_all(&dir).unwrap();
        }
        fs::create_dir_all(&dir).unwrap();
        fill(&dir);
        fs::write(&ready, "").unwrap();
    }
    dir
}

fn ok(output: Output, what: &str) -> Output {
    assert!(
        output.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn wheels() -> Vec<PathBuf> {
    let dir = cached("bench-wheels", &WHEELS, |dir| {
        let output = PythonEnv::shared()
            .command("pip")
            .args(["download", "--quiet", "--no-deps", "--only-binary=:all:"])
            .args(["--platform", "any", "--dest"])
            .arg(dir)
            .args(WHEELS)
            .output()
            .unwrap();
        ok(output, "pip download (from PyPI)");
    });
    let mut wheels: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "whl"))
        .collect();
    wheels.sort();
    assert_eq!(wheels.len(), WHEELS.len(), "{wheels:?}");
    wheels
}

/// The venv holding the peers; returns its `bin` directory.
fn peers() -> PathBuf {
    let venv = cached("bench-peers", &PEERS, |dir| {
        let python = std::env::var("TUFA_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let output = Command::new(python)
            .args(["-m", "venv"])
            .arg(dir)
            .output()
            .unwrap();
        ok(output, "python3 -m venv");
        let output = Command::new(dir.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(PEERS)
            .output()
            .unwrap();
        ok(
            output,
            "pip install pypiserver devpi-server devpi-client (from PyPI)",
        );
    });
    venv.join("bin")
}

/// A process the benchmark started, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `command` with its output in `log`, and waits until `url` answers 200.
fn start(mut command: Command, log: &Path, url: &str) -> Running {
    let file = fs::File::create(log).unwrap();
    let mut child = Running(
        command
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {command:?}: {e}")),
    );
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if http::try_request("GET", url, &[], b"").is_ok_and(|r| r.status == 200) {
            return child;
        }
        let exited = child.0.try_wait().unwrap();
        assert!(
            exited.is_none() && Instant::now() < deadline,
            "{command:?} did not answer {url} ({exited:?}):\n{}",
            fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn twine_upload(url: &str, user: &str, password: &str, wheels: &[PathBuf]) {
    let output = PythonEnv::shared()
        .command("twine")
        .args(["upload", "--non-interactive", "--disable-progress-bar"])
        .args(["--repository-url", url, "-u", user, "-p", password])
        .args(wheels)
        .output()
        .unwrap();
    ok(output, &format!("twine upload to {url}"));
}

fn pypiserver(bin: &Path, dir: &Path, wheels: &[PathBuf]) -> (Running, String) {
    let packages = dir.join("pypiserver-packages");
    fs::create_dir_all(&packages).unwrap();
    let url = format!("http://127.0.0.1:{}", free_port());
    let mut command = Command::new(bin.join("pypi-server"));
    // No authentication (`-a . -P .`), and no redirect to pypi.org for what it does not hold.
    command
        .args(["run", "--host", "127.0.0.1", "--port"])
        .arg(url.rsplit(':').next().unwrap())
        .args(["-a", ".", "-P", ".", "--disable-fallback"])
        .arg(&packages);
    let running = start(
        command,
        &dir.join("pypiserver.log"),
        &format!("{url}/simple/"),
    );
    twine_upload(&format!("{url}/"), "bench", "bench", wheels);
    (running, format!("{url}/simple/"))
}

fn devpi(bin: &Path, dir: &Path, wheels: &[PathBuf]) -> (Running, String) {
    let server_dir = dir.join("devpi-server");
    let client_dir = dir.join("devpi-client");
    let port = free_port().to_string();
    let url = format!("http://127.0.0.1:{port}");
    // No root/pypi: the index holds only what is uploaded and never asks PyPI.
    let output = Command::new(bin.join("devpi-init"))
        .arg("--serverdir")
        .arg(&server_dir)
        .args(["--no-root-pypi", "--root-passwd", "bench"])
        .output()
        .unwrap();
    ok(output, "devpi-init");
    let mut command = Command::new(bin.join("devpi-server"));
    command
        .arg("--serverdir")
        .arg(&server_dir)
        .args(["--host", "127.0.0.1", "--port", &port]);
    let running = start(command, &dir.join("devpi.log"), &format!("{url}/+api"));
    for args in [
        vec!["use", url.as_str()],
        vec!["login", "root", "--password", "bench"],
        vec!["index", "-c", "bench", "bases=", "volatile=False"],
    ] {
        let output = Command::new(bin.join("devpi"))
            .arg("--clientdir")
            .arg(&client_dir)
            .args(&args)
            .output()
            .unwrap();
        ok(output, &format!("devpi {}", args.join(" ")));
    }
    twine_upload(&format!("{url}/root/bench/"), "root", "bench", wheels);
    (running, format!("{url}/root/bench/+simple/"))
}

/// Installs `REQUIREMENTS` with `tool` from `index` into a new directory and returns how long
/// it took, after checking that every wheel arrived.
fn install(tool: &str, index: &str, dir: &Path, run: &str) -> Duration {
    let target = dir.join(format!("installed-{tool}-{run}"));
    let elapsed = PythonEnv::shared().timed_install(tool, index, &target, &REQUIREMENTS);
    let installed = fs::read_dir(&target)
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".dist-info"))
        })
        .count();
    assert_eq!(installed, WHEELS.len(), "{tool} from {index}");
    elapsed
}

fn main() {
    let wheels = wheels();
    let peers = peers();
    let dir = tempfile::tempdir().unwrap();
    let tufa = env!("CARGO_BIN_EXE_tufa");

    let server = TufaServer::start(tufa.as_ref(), &dir.path().join("tufa-data"), &[]);
    twine_upload(
        &server.upload_url(),
        "__token__",
        &server.create_token("bench"),
        &wheels,
    );
    server.wait_until_signed();
    let root = server.data_dir.join("trusted-root.json");
    let (_pypiserver, pypiserver_url) = pypiserver(&peers, dir.path(), &wheels);
    let (_devpi, devpi_url) = devpi(&peers, dir.path(), &wheels);

    let columns = [
        "tufa serve",
        "pypiserver",
        "devpi-server",
        "proxy, cold",
        "proxy, warm",
    ];
    let tools = ["pip", "uv"];
    // times[tool][column]: one per round.
    let mut times = vec![vec![Vec::new(); columns.len()]; tools.len()];
    for round in 0..ROUNDS {
        for (t, tool) in tools.into_iter().enumerate() {
            let run = |column: usize, index: &str| {
                let took = install(tool, index, dir.path(), &format!("{column}-{round}"));
                eprintln!("round {round}: {tool} from {}: {took:.2?}", columns[column]);
                took
            };
            // Each round starts with another source, so none always follows the same one.
            for source in (0..4).map(|i| (i + round) % 4) {
                match source {
                    0 => times[t][0].push(run(0, &server.simple_url())),
                    1 => times[t][1].push(run(1, &pypiserver_url)),
                    2 => times[t][2].push(run(2, &devpi_url)),
                    _ => {
                        let proxy = TufaProxy::start(
                            tufa.as_ref(),
                            &server.url,
                            &root,
                            &dir.path().join(format!("proxy-{tool}-{round}")),
                            &[],
                        );
                        times[t][3].push(run(3, &proxy.simple_url()));
                        times[t][4].push(run(4, &proxy.simple_url()));
                    }
                }
            }
        }
    }

    println!(
        "{} wheels ({}), median (and fastest) of {ROUNDS} rounds, installer caches empty",
        WHEELS.len(),
        REQUIREMENTS.join(" ")
    );
    println!("| installer | {} |", columns.join(" | "));
    println!("|---|{}", "---|".repeat(columns.len()));
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut ratios = Vec::new();
    for (tool, times) in tools.iter().zip(&times) {
        let medians: Vec<Duration> = times.iter().map(|t| median(t.clone())).collect();
        // The fastest round too: on a shared machine, the median moves with the neighbours.
        let cells: Vec<String> = times
            .iter()
            .zip(&medians)
            .map(|(t, m)| {
                let fastest = t.iter().min().copied().unwrap_or_default();
                format!("{:.0} ms (min {:.0})", ms(*m), ms(fastest))
            })
            .collect();
        println!("| {tool} | {} |", cells.join(" | "));
        let tufa = ms(medians[0]);
        ratios.push(format!(
            "| {tool} | {:.2}x | {:.2}x | {:.2}x | {:.2}x |",
            ms(medians[1]) / tufa,
            ms(medians[2]) / tufa,
            ms(medians[3]) / tufa,
            ms(medians[4]) / tufa,
        ));
    }
    println!();
    println!(
        "| installer | pypiserver / tufa serve | devpi-server / tufa serve | proxy cold / tufa \
         serve | proxy warm / tufa serve |"
    );
    println!("|---|---|---|---|---|");
    for line in ratios {
        println!("{line}");
    }
}
