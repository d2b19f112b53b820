//! The mirror against the real pypi.org: `pip install` and `uv pip install` directly from
//! pypi.org, through `tufa serve --upstream https://pypi.org/simple/`, and through that mirror
//! and `tufa proxy`, cold (a new data directory and proxy cache, nothing mirrored) and warm (the
//! same again); then `tufa mirror sync` of an allowlist of pinned releases against bandersnatch
//! syncing the same allowlist, both downloading and verifying the same files.
//!
//! `cargo bench -p tufa --bench mirror`. The first run installs bandersnatch into a venv at
//! `target/bench-bandersnatch-*`; later runs reuse it. Every installer runs with an empty cache
//! (`pip --no-cache-dir`, `uv --no-cache`) into a new directory. Everything goes over this
//! machine's network to pypi.org and files.pythonhosted.org, so the numbers move with it: each
//! cell is the median (and fastest) of several rounds, the sources taking turns.
//!
//! bandersnatch runs as `bandersnatch sync NAMES` with its `allowlist_project` and
//! `allowlist_release` plugins set to the same pins: `bandersnatch mirror` on a new mirror first
//! downloads the list of every project on PyPI, which this benchmark must not do. This
//! machine's pypi.org is a relay that sends no `X-PyPI-Last-Serial` header (bandersnatch refuses
//! pages without one) and gives some JSON API file URLs relative to itself; a small local relay
//! in front of it restores both as pypi.org sends them (serial 1, file URLs on
//! files.pythonhosted.org), for bandersnatch's 15 metadata requests only. Its file downloads go
//! straight to files.pythonhosted.org, as `tufa serve`'s do.
//!
//! Measured on the 2-core build machine with nothing else running, release build, median (ratio
//! to pypi.org; fastest) of 3 rounds:
//!
//! | installer | pypi.org | mirror, cold | mirror, warm | mirror + proxy, cold | mirror + proxy, warm |
//! |---|---|---|---|---|---|
//! | pip | 12082 ms (1.00x; min 10489) | 13651 ms (1.13x; min 11591) | 11381 ms (0.94x; min 10685) | 13873 ms (1.15x; min 12981) | 11092 ms (0.92x; min 10843) |
//! | uv | 2461 ms (1.00x; min 2005) | 3302 ms (1.34x; min 2731) | 1994 ms (0.81x; min 1981) | 3886 ms (1.58x; min 3615) | 2176 ms (0.88x; min 2111) |
//!
//! | mirror (348 files, 70.7 MB, 8 at once) | time | files/s | MB/s |
//! |---|---|---|---|
//! | tufa mirror sync | 2.6 s (min 2.4) | 134.2 | 27.3 |
//! | bandersnatch sync | 9.1 s (min 8.6) | 38.3 | 7.8 |
//!
//! With other builds running (load average about 3) the cold installs were slower and noisier
//! (uv cold 2.0-2.6x) and bandersnatch slower still (tufa 3.47x its throughput).
//!
//! `tufa mirror sync` has 3.50x bandersnatch's throughput (2.48x in another quiet run). Before the upstream clients kept their
//! connections and remembered name lookups, it had 0.33x (27.7 s): this machine's resolver drops
//! a query now and then, and each new connection's lookup then waited 5 s.

use std::collections::BTreeSet;
use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use tufa_testkit::{PythonEnv, TufaProxy, TufaServer, median, target_dir};

const PYPI: &str = "https://pypi.org/simple/";

/// What the installers are asked for.
const INSTALL: [&str; 4] = ["flask", "requests", "django", "numpy"];

/// The allowlist both mirrors sync: `flask requests django` and their dependencies, pinned to
/// the releases pip resolved on the day the numbers below were measured (every file of each:
/// sdists and wheels for every platform).
const ALLOWLIST: [&str; 15] = [
    "asgiref==3.13.0",
    "blinker==1.9.0",
    "certifi==2026.10.19.post1",
    "charset-normalizer==3.5.3",
    "click==8.5.1",
    "django==5.2.19",
    "flask==3.1.3",
    "idna==3.20",
    "itsdangerous==2.2.0",
    "jinja2==3.1.6",
    "markupsafe==3.0.4",
    "requests==2.34.2",
    "sqlparse==0.6.1",
    "urllib3==2.8.0",
    "werkzeug==3.1.9",
];

/// The newest bandersnatch that runs on Python 3.11.
const BANDERSNATCH: &str = "bandersnatch==6.8.0";

const INSTALL_ROUNDS: usize = 3;
const SYNC_ROUNDS: usize = 3;
/// Downloads in flight, for both mirrors (bandersnatch allows at most 10 workers).
const JOBS: &str = "8";

fn ok(output: Output, what: &str) -> Output {
    assert!(
        output.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The venv holding bandersnatch, made once; returns its `bin` directory.
fn bandersnatch() -> PathBuf {
    let mut hasher = DefaultHasher::new();
    BANDERSNATCH.hash(&mut hasher);
    let dir = target_dir().join(format!("bench-bandersnatch-{:016x}", hasher.finish()));
    if !dir.join(".tufa-ready").exists() {
        if dir.exists() {
            fs::remove_dir_all(&dir).unwrap();
        }
        let python = std::env::var("TUFA_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        ok(
            Command::new(python)
                .args(["-m", "venv"])
                .arg(&dir)
                .output()
                .unwrap(),
            "python3 -m venv",
        );
        ok(
            Command::new(dir.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .arg(BANDERSNATCH)
                .output()
                .unwrap(),
            "pip install bandersnatch (from PyPI)",
        );
        fs::write(dir.join(".tufa-ready"), "").unwrap();
    }
    dir.join("bin")
}

/// The local relay to pypi.org's JSON API for bandersnatch (see the module comment); returns
/// its `http://` root.
fn relay() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tufa_index::upstream::tls_config())
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let agent = agent.clone();
            std::thread::spawn(move || relay_one(stream, &agent));
        }
    });
    url
}

fn relay_one(mut stream: TcpStream, agent: &ureq::Agent) {
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split(' ').nth(1).unwrap_or("/").to_string();
    let mut accept = String::from("*/*");
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) <= 2 {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("accept")
        {
            accept = value.trim().to_string();
        }
    }
    let Ok(mut response) = agent
        .get(format!("https://pypi.org{path}"))
        .header("Accept", &accept)
        .call()
    else {
        let _ = stream.write_all(b"HTTP/1.1 502 Relay failed\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let body = response
        .body_mut()
        .with_config()
        .limit(256 << 20)
        .read_to_vec()
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&body).replace(
        "\"../../packages/packages/",
        "\"https://files.pythonhosted.org/packages/",
    );
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         X-PyPI-Last-Serial: 1\r\nConnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Relayed"),
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
}

/// Every file under `dir`, as (name, size).
fn files_under(dir: &Path, found: &mut Vec<(String, u64)>) {
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, found);
        } else {
            let name = entry.file_name().to_string_lossy().into_owned();
            found.push((name, entry.metadata().unwrap().len()));
        }
    }
}

/// One bandersnatch sync of the allowlist into a new directory: its time and the files.
fn bandersnatch_sync(bin: &Path, relay: &str, dir: &Path) -> (Duration, Vec<(String, u64)>) {
    let mirror = dir.join("bandersnatch");
    let config = dir.join("bandersnatch.conf");
    fs::write(
        &config,
        format!(
            "[mirror]\ndirectory = {}\nmaster = {relay}\nallow-non-https = true\njson = false\n\
             release-files = true\ncleanup = false\ntimeout = 60\nglobal-timeout = 1800\n\
             workers = {JOBS}\nhash-index = false\nsimple-format = ALL\nstop-on-error = true\n\
             storage-backend = filesystem\nverifiers = 3\ncompare-method = hash\n\n\
             [plugins]\nenabled =\n    allowlist_project\n    allowlist_release\n\n\
             [allowlist]\npackages =\n    {}\n",
            mirror.display(),
            ALLOWLIST.join("\n    ")
        ),
    )
    .unwrap();
    let names: Vec<&str> = ALLOWLIST
        .iter()
        .map(|pin| pin.split("==").next().unwrap())
        .collect();
    let started = Instant::now();
    let output = ok(
        Command::new(bin.join("bandersnatch"))
            .arg("-c")
            .arg(&config)
            .arg("sync")
            .args(&names)
            .output()
            .unwrap(),
        "bandersnatch sync",
    );
    let took = started.elapsed();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        !log.contains("ERROR"),
        "bandersnatch reported errors:\n{log}"
    );
    let mut files = Vec::new();
    files_under(&mirror.join("web/packages"), &mut files);
    (took, files)
}

/// One `tufa mirror sync` of the allowlist through a new mirror: its time and the file names.
fn tufa_sync(tufa: &Path, dir: &Path) -> (Duration, BTreeSet<String>) {
    let server = TufaServer::start(tufa, &dir.join("tufa-data"), &["--upstream", PYPI]);
    let requirements = dir.join("allowlist.txt");
    fs::write(&requirements, ALLOWLIST.join("\n")).unwrap();
    let cache = dir.join("sync-cache");
    let started = Instant::now();
    let output = ok(
        Command::new(tufa)
            .args([
                "mirror",
                "sync",
                "--index",
                &server.url,
                "--jobs",
                JOBS,
                "-r",
            ])
            .arg(&requirements)
            .arg("--cache")
            .arg(&cache)
            .output()
            .unwrap(),
        "tufa mirror sync",
    );
    let took = started.elapsed();
    eprintln!("{}", String::from_utf8_lossy(&output.stdout).trim());
    let names = fs::read_to_string(cache.join("mirror-sync-state"))
        .unwrap()
        .lines()
        .filter_map(|line| line.split_once("  ").map(|(_, name)| name.to_string()))
        .filter(|name| !name.ends_with(".metadata"))
        .collect();
    (took, names)
}

fn install(tool: &str, index: &str, dir: &Path, run: &str) -> Duration {
    let target = dir.join(format!("installed-{tool}-{run}"));
    PythonEnv::shared().timed_install(tool, index, &target, &INSTALL)
}

fn main() {
    let tufa: &Path = env!("CARGO_BIN_EXE_tufa").as_ref();
    let bandersnatch = bandersnatch();
    let relay = relay();
    let dir = tempfile::tempdir().unwrap();

    let columns = [
        "pypi.org",
        "mirror, cold",
        "mirror, warm",
        "mirror + proxy, cold",
        "mirror + proxy, warm",
    ];
    let tools = ["pip", "uv"];
    let mut times = vec![vec![Vec::new(); columns.len()]; tools.len()];
    for round in 0..INSTALL_ROUNDS {
        for (t, tool) in tools.into_iter().enumerate() {
            let run = |column: usize, index: &str| {
                let took = install(tool, index, dir.path(), &format!("{column}-{round}"));
                eprintln!("round {round}: {tool} from {}: {took:.2?}", columns[column]);
                took
            };
            for source in (0..3).map(|i| (i + round) % 3) {
                let data = dir.path().join(format!("data-{tool}-{round}-{source}"));
                match source {
                    0 => times[t][0].push(run(0, PYPI)),
                    1 => {
                        let server = TufaServer::start(tufa, &data, &["--upstream", PYPI]);
                        times[t][1].push(run(1, &server.simple_url()));
                        times[t][2].push(run(2, &server.simple_url()));
                    }
                    _ => {
                        let server = TufaServer::start(tufa, &data, &["--upstream", PYPI]);
                        let proxy = TufaProxy::start(
                            tufa,
                            &server.url,
                            &data.join("trusted-root.json"),
                            &data.with_extension("proxy-cache"),
                            &[],
                        );
                        times[t][3].push(run(3, &proxy.simple_url()));
                        times[t][4].push(run(4, &proxy.simple_url()));
                    }
                }
            }
        }
    }

    let mut syncs = (Vec::new(), Vec::new());
    let mut totals = (0usize, 0u64);
    for round in 0..SYNC_ROUNDS {
        let round_dir = dir.path().join(format!("sync-{round}"));
        let (tufa_dir, bandersnatch_dir) = (round_dir.join("tufa"), round_dir.join("bs"));
        fs::create_dir_all(&tufa_dir).unwrap();
        fs::create_dir_all(&bandersnatch_dir).unwrap();
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            if which == 0 {
                let (took, names) = tufa_sync(tufa, &tufa_dir);
                eprintln!(
                    "round {round}: tufa mirror sync: {took:.2?}, {} files",
                    names.len()
                );
                syncs.0.push((took, names));
            } else {
                let (took, files) = bandersnatch_sync(&bandersnatch, &relay, &bandersnatch_dir);
                eprintln!(
                    "round {round}: bandersnatch sync: {took:.2?}, {} files",
                    files.len()
                );
                totals = (files.len(), files.iter().map(|(_, size)| size).sum());
                let names: BTreeSet<String> = files.into_iter().map(|(name, _)| name).collect();
                syncs.1.push((took, names));
            }
        }
        let (tufa_names, bandersnatch_names) = (&syncs.0[round].1, &syncs.1[round].1);
        assert_eq!(
            tufa_names, bandersnatch_names,
            "the two mirrors must download the same files"
        );
    }

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "installs of {} from empty installer caches, median (and fastest) of {INSTALL_ROUNDS} \
         rounds",
        INSTALL.join(" ")
    );
    println!("| installer | {} |", columns.join(" | "));
    println!("|---|{}", "---|".repeat(columns.len()));
    for (tool, times) in tools.iter().zip(&times) {
        let cells: Vec<String> = times
            .iter()
            .map(|t| {
                let fastest = t.iter().min().copied().unwrap_or_default();
                let direct = ms(median(times[0].clone()));
                format!(
                    "{:.0} ms ({:.2}x; min {:.0})",
                    ms(median(t.clone())),
                    ms(median(t.clone())) / direct,
                    ms(fastest)
                )
            })
            .collect();
        println!("| {tool} | {} |", cells.join(" | "));
    }
    println!();
    let (files, bytes) = totals;
    println!(
        "sync of {} pinned releases ({files} files, {:.1} MB, every file verified), median (and \
         fastest) of {SYNC_ROUNDS} rounds, {JOBS} downloads at once",
        ALLOWLIST.len(),
        bytes as f64 / 1e6
    );
    println!("| mirror | time | files/s | MB/s |");
    println!("|---|---|---|---|");
    let mut medians = Vec::new();
    for (name, runs) in [
        ("tufa mirror sync", &syncs.0),
        ("bandersnatch sync", &syncs.1),
    ] {
        let took: Vec<Duration> = runs.iter().map(|(took, _)| *took).collect();
        let fastest = took.iter().min().copied().unwrap_or_default();
        let took = median(took);
        medians.push(took);
        let seconds = took.as_secs_f64();
        println!(
            "| {name} | {:.1} s (min {:.1}) | {:.1} | {:.1} |",
            seconds,
            fastest.as_secs_f64(),
            files as f64 / seconds,
            bytes as f64 / 1e6 / seconds
        );
    }
    println!(
        "\ntufa mirror sync / bandersnatch throughput: {:.2}x",
        medians[1].as_secs_f64() / medians[0].as_secs_f64()
    );
}
