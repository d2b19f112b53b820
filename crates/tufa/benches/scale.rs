//! A PyPI-sized index on PostgreSQL + S3 (SeaweedFS): the first publish of every project, then the
//! replica's memory and its page requests/s.
//!
//! `cargo bench -p tufa --bench scale`. Starts the testkit's shared PostgreSQL and SeaweedFS.
//!
//! 1. `tufa serve --database postgres://... --storage s3://...` creates the schema and an empty
//!    development repository of `2^TUFA_BENCH_BIN_BITS` bins in the bucket, and stops.
//! 2. The database is filled through the index's own schema with one bulk SQL statement per table:
//!    `TUFA_BENCH_PROJECTS` projects, each with `TUFA_BENCH_FILES` wheels (one release each),
//!    and one journal entry per project, as uploads would have left them.
//! 3. `tufa serve` starts again on the same database and bucket: the first publish is the time
//!    from its start until `/status` reports every journal entry signed (the timestamp covering
//!    all of them is written).
//! 4. Checks: every bin role named by the snapshot is fetched and its targets counted (one page
//!    per project), and a sample of pages is fetched and verified with `tufa download`.
//! 5. RSS (VmRSS, VmHWM) of the publishing replica after the publish, then page requests/s for
//!    random projects (HTML and JSON) and RSS again; the same on a second replica that only
//!    serves.
//! 6. Takeover: the publishing replica is killed (SIGKILL) and a project added to the database;
//!    the time until the second replica holds the publisher lease, then until it has loaded the
//!    repository from the bucket and signed that change, and its RSS.
//!
//! Client, server, PostgreSQL and SeaweedFS share the machine's cores: the numbers are a floor.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tufa_testkit::{SeaweedFs, http, postgres};

const CLIENTS: usize = 4;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|value| {
            value
                .replace('_', "")
                .parse()
                .unwrap_or_else(|e| panic!("{name}={value:?}: {e}"))
        })
        .unwrap_or(default)
}

fn parallel(total: usize, work: impl Fn(usize) + Sync) -> Duration {
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..CLIENTS {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    work(i);
                }
            });
        }
    });
    started.elapsed()
}

/// A well-spread project number in `1..=projects` for request `i` (no randomness crate needed
/// for a load pattern).
fn pick(i: usize, projects: usize) -> usize {
    let mixed = (i as u64 ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let mixed = (mixed ^ (mixed >> 31)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (mixed % projects as u64) as usize + 1
}

fn project_name(i: usize) -> String {
    format!("bench-project-{i}")
}

/// `(VmRSS, VmHWM)` of a process, in MiB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse::<u64>().ok())
            .map_or(0, |kib| kib / 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU time (user + system) a process has used so far, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    // USER_HZ, which Linux fixes at 100 for /proc.
    let clock_ticks_per_second = 100.0;
    ticks(11).zip(ticks(12)).map_or(0.0, |(user, system)| {
        (user + system) / clock_ticks_per_second
    })
}

/// The process ID of the shared SeaweedFS server, as the testkit records it.
fn seaweedfs_pid() -> Option<u32> {
    let state = tufa_testkit::target_dir().join("seaweedfs/server");
    std::fs::read_to_string(state)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Seconds since the bench started, to place a server's log lines among the bench's own.
fn clock() -> f64 {
    static STARTED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    STARTED.get_or_init(Instant::now).elapsed().as_secs_f64()
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn psql(database: &str, sql: &str) {
    let output = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            database,
            "-c",
            sql,
        ])
        .output()
        .expect("running psql");
    assert!(
        output.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Fills the database as `projects * files` uploads would have: every project with its
/// releases, files and one journal entry, the serials continuing from there.
fn fill(database: &str, projects: usize, files: usize) {
    let sql = format!(
        "BEGIN;
        INSERT INTO users (name, created) VALUES ('bench', 0);
        INSERT INTO projects (id, name, display_name, owner_id, last_serial)
            SELECT i, 'bench-project-' || i, 'Bench-Project-' || i,
                (SELECT id FROM users WHERE name = 'bench'), i
            FROM generate_series(1, {projects}) AS i;
        INSERT INTO releases (id, project_id, version, metadata, created)
            SELECT (i - 1) * {files} + f, i, '1.0.' || f,
                convert_to('Metadata-Version: 2.1' || chr(10) || 'Name: bench-project-' || i
                    || chr(10) || 'Version: 1.0.' || f || chr(10), 'UTF8'),
                1700000000000000 + i
            FROM generate_series(1, {projects}) AS i, generate_series(1, {files}) AS f;
        INSERT INTO files (id, release_id, filename, packagetype, python_version, size, sha256,
                md5, blake2_256, requires_python, metadata_sha256, upload_time)
            SELECT r.id, r.id, n.filename, 'bdist_wheel', 'py3', 1000 + r.id,
                encode(sha256(convert_to(n.filename, 'UTF8')), 'hex'), md5(n.filename),
                encode(sha256(convert_to('blake2 ' || n.filename, 'UTF8')), 'hex'),
                '>=3.9', encode(sha256(convert_to('metadata ' || n.filename, 'UTF8')), 'hex'),
                r.created
            FROM releases AS r,
                LATERAL (SELECT 'bench_project_' || r.project_id || '-' || r.version
                    || '-py3-none-any.whl' AS filename) AS n;
        INSERT INTO journal (serial, project, action, time)
            SELECT i, 'bench-project-' || i,
                'add file bench_project_' || i || '-1.0.1-py3-none-any.whl', 1700000000000000 + i
            FROM generate_series(1, {projects}) AS i;
        SELECT setval(pg_get_serial_sequence('projects', 'id'), {projects});
        SELECT setval(pg_get_serial_sequence('releases', 'id'), {projects} * {files});
        SELECT setval(pg_get_serial_sequence('files', 'id'), {projects} * {files});
        SELECT setval(pg_get_serial_sequence('journal', 'serial'), {projects});
        COMMIT;
        ANALYZE;"
    );
    psql(database, &sql);
}

/// Adds project `n` with one file and its journal entry, as an upload would: a change for the
/// publisher to sign.
fn add_project(database: &str, n: usize) {
    psql(
        database,
        &format!(
            "BEGIN;
            INSERT INTO projects (name, display_name, owner_id, last_serial)
                VALUES ('bench-project-{n}', 'Bench-Project-{n}',
                    (SELECT id FROM users WHERE name = 'bench'), 0);
            INSERT INTO releases (project_id, version, metadata, created)
                SELECT id, '1.0.1', convert_to('Metadata-Version: 2.1', 'UTF8'), 1700000000000000
                FROM projects WHERE name = 'bench-project-{n}';
            INSERT INTO files (release_id, filename, packagetype, python_version, size, sha256,
                    md5, blake2_256, requires_python, metadata_sha256, upload_time)
                SELECT r.id, 'bench_project_{n}-1.0.1-py3-none-any.whl', 'bdist_wheel', 'py3',
                    1000, repeat('a', 64), repeat('b', 32), repeat('c', 64), '>=3.9',
                    repeat('d', 64), 1700000000000000
                FROM releases AS r JOIN projects AS p ON p.id = r.project_id
                WHERE p.name = 'bench-project-{n}';
            INSERT INTO journal (project, action, time)
                VALUES ('bench-project-{n}', 'add file', 1700000000000000);
            UPDATE projects SET last_serial = currval(pg_get_serial_sequence('journal', 'serial'))
                WHERE name = 'bench-project-{n}';
            COMMIT;"
        ),
    );
}

/// A `tufa serve` the bench started. Not the testkit's `TufaServer`: creating or loading a
/// repository of 16,384 bins in a bucket on a loaded machine can take longer than the two
/// minutes it waits for a server to listen.
struct Server {
    child: Child,
    url: String,
    data_dir: std::path::PathBuf,
}

impl Server {
    fn start(data_dir: &std::path::Path, args: &[&str], env: &[(&str, String)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tufa"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data_dir)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting tufa serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let (lines, log) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let url = loop {
            let line = log.recv().expect("tufa serve ended before listening");
            if line.starts_with("tufa: serving")
                && let Some(rest) = line.split(" at http://").nth(1)
            {
                break format!("http://{}", rest.split('/').next().unwrap_or_default());
            }
            if line.contains("ERROR") || line.starts_with("error") {
                println!("  tufa serve: {line}");
            }
        };
        // Errors (a failing batch) and the steps of a takeover are shown as they come, with
        // the bench's clock; the rest is left unread.
        std::thread::spawn(move || {
            for line in log {
                let shown = [
                    "ERROR",
                    "WARN",
                    "lease",
                    "taking over",
                    "opened the repository",
                    "loaded the repository",
                ];
                if shown.iter().any(|part| line.contains(part)) {
                    println!("  tufa serve (at {:.1} s): {line}", clock());
                }
            }
        });
        Server {
            child,
            url,
            data_dir: data_dir.to_path_buf(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn simple_url(&self) -> String {
        format!("{}/simple/", self.url)
    }

    /// Stops the server so that it releases the publisher lease (SIGTERM, then waits for it).
    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success());
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status(server: &Server) -> serde_json::Value {
    http::get(&format!("{}/status", server.url), &[]).json()
}

/// Every bin role the published snapshot names, with how many targets each lists.
fn count_targets(server: &Server) -> (usize, usize) {
    let metadata = format!("{}/tuf/metadata/", server.url);
    let timestamp = http::get(&format!("{metadata}timestamp.json"), &[]).json();
    let snapshot_version = timestamp["signed"]["meta"]["snapshot.json"]["version"]
        .as_u64()
        .expect("timestamp names a snapshot");
    let snapshot = http::get(&format!("{metadata}{snapshot_version}.snapshot.json"), &[]).json();
    let bins: Vec<(String, u64)> = snapshot["signed"]["meta"]
        .as_object()
        .expect("snapshot meta")
        .iter()
        .filter_map(|(file, meta)| {
            let role = file.strip_suffix(".json")?;
            (role != "targets").then(|| (role.to_string(), meta["version"].as_u64().unwrap()))
        })
        .collect();
    let targets = AtomicUsize::new(0);
    parallel(bins.len(), |i| {
        let (role, version) = &bins[i];
        let response = http::get(&format!("{metadata}{version}.{role}.json"), &[]);
        assert_eq!(
            response.status, 200,
            "{role} v{version}: {}",
            response.reason
        );
        let listed = response.json()["signed"]["targets"]
            .as_object()
            .map_or(0, |t| t.len());
        targets.fetch_add(listed, Ordering::Relaxed);
    });
    (bins.len(), targets.into_inner())
}

fn verify_sample(server: &Server, projects: usize, samples: usize) {
    let tufa = env!("CARGO_BIN_EXE_tufa");
    let cache = tempfile::tempdir().unwrap();
    let root = server.data_dir.join("trusted-root.json");
    for i in 0..samples {
        let name = project_name(pick(i + 1_000_003, projects));
        let output = Command::new(tufa)
            .args(["download", "--index", &server.url, "--root"])
            .arg(&root)
            .arg("--cache")
            .arg(cache.path())
            .arg(&name)
            .output()
            .expect("running tufa download");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains(&name.replace('-', "_")),
            "tufa download {name}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn serve_pages(label: &str, server: &Server, projects: usize, requests: usize) {
    for (format, accept) in [
        ("HTML", "text/html"),
        ("JSON", "application/vnd.pypi.simple.v1+json"),
    ] {
        let elapsed = parallel(requests, |i| {
            let name = project_name(pick(i, projects));
            let response = http::get(
                &format!("{}{name}/", server.simple_url()),
                &[("Accept", accept)],
            );
            assert_eq!(response.status, 200, "{name}: {}", response.reason);
        });
        let (rss, hwm) = memory(server.pid());
        println!(
            "{label}: /simple/<random of {projects}>/ {format}: {requests} in {:.1} s = {:.0} \
             requests/s ({CLIENTS} clients); then VmRSS {rss} MiB, VmHWM {hwm} MiB (load {})",
            elapsed.as_secs_f64(),
            requests as f64 / elapsed.as_secs_f64(),
            load()
        );
    }
}

/// What the bucket costs for the least a repository of `bins` bin roles needs, without Tufa: one
/// PUT of an empty bin role's size for each, on as many threads as the store uses, into a prefix
/// of its own that is removed again.
fn bucket_floor(bucket: &str, env: &[(&'static str, String)], bins: usize) {
    let settings = tufa_repo::S3Settings::from_lookup(|name| {
        env.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.clone())
    })
    .expect("reading the bucket's settings");
    let client = tufa_repo::S3Client::new(bucket, &settings).expect("a client for the bucket");
    let keys: Vec<String> = (0..bins)
        .map(|n| format!("floor/1.bin-{n:04x}.json"))
        .collect();
    let body = vec![b'x'; 360];
    let started = Instant::now();
    tufa_repo::map_in_parallel(&keys, tufa_repo::s3::UPLOAD_THREADS, |key| {
        client.put(key, &body)
    })
    .expect("a PUT of the floor");
    println!(
        "bucket floor: {bins} PUTs of {} bytes on {} threads, no signing: {:.1} s",
        body.len(),
        tufa_repo::s3::UPLOAD_THREADS,
        started.elapsed().as_secs_f64()
    );
    tufa_repo::map_in_parallel(&keys, tufa_repo::s3::UPLOAD_THREADS, |key| {
        client.delete(key)
    })
    .expect("removing the floor's objects");
}

fn main() {
    let projects = setting("TUFA_BENCH_PROJECTS", 700_000);
    let files = setting("TUFA_BENCH_FILES", 1);
    let bits = setting("TUFA_BENCH_BIN_BITS", 14);
    let requests = setting("TUFA_BENCH_REQUESTS", 20_000);
    clock();
    println!(
        "scale: {projects} projects x {files} files, {} bins, load {}",
        1 << bits,
        load()
    );

    let database = postgres::fresh_database();
    let (bucket, s3_env) = SeaweedFs::shared().fresh_bucket();
    let storage = format!("s3://{bucket}/tufa");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bits = bits.to_string();
    let args = [
        "--database",
        &database,
        "--storage",
        &storage,
        "--bin-bits",
        &bits,
    ];

    let bins = 1 << bits.parse::<u32>().unwrap();
    bucket_floor(&bucket, &s3_env, bins);
    let started = Instant::now();
    let server = Server::start(&data, &args, &s3_env);
    println!(
        "empty repository of {bins} bins created in the bucket in {:.1} s (the server's start \
         included)",
        started.elapsed().as_secs_f64()
    );
    server.stop();

    let started = Instant::now();
    fill(&database, projects, files);
    println!(
        "database filled by bulk SQL in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let weed = seaweedfs_pid();
    let weed_cpu = weed.map_or(0.0, cpu_seconds);
    let started = Instant::now();
    let server = Server::start(&data, &args, &s3_env);
    let listening = started.elapsed();
    let mut progress = BTreeMap::new();
    let mut peak_rss = 0;
    loop {
        let status = status(&server);
        let signed = status["signed_serial"].as_i64().unwrap_or(0);
        let (rss, _) = memory(server.pid());
        peak_rss = peak_rss.max(rss);
        let second = started.elapsed().as_secs();
        if progress.insert(second / 30, signed).is_none() {
            println!(
                "  {second:>5} s: signed serial {signed}, VmRSS {rss} MiB, load {}",
                load()
            );
        }
        if signed >= projects as i64 {
            break;
        }
        if let Some(failure) = status["signing_failure"].as_str() {
            println!("  signing failure: {failure}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let published = started.elapsed();
    let (rss, hwm) = memory(server.pid());
    println!(
        "first publish of {projects} projects on PostgreSQL + S3: {:.1} s ({:.0} pages/s; \
         listening after {:.1} s); VmRSS {rss} MiB, VmHWM {hwm} MiB; CPU: tufa serve {:.1} s, \
         SeaweedFS {:.1} s; load {}",
        published.as_secs_f64(),
        projects as f64 / published.as_secs_f64(),
        listening.as_secs_f64(),
        cpu_seconds(server.pid()),
        weed.map_or(0.0, cpu_seconds) - weed_cpu,
        load()
    );

    let started = Instant::now();
    let (bins, targets) = count_targets(&server);
    println!(
        "published: {bins} bin roles listing {targets} targets (checked in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(targets, projects, "one signed page per project");
    verify_sample(&server, projects, 10);
    println!("10 random pages verified with tufa download");

    serve_pages("publishing replica", &server, projects, requests);

    // On the same data directory, where the development repository's keys are (another
    // machine would take the online key with --online-key).
    let replica = Server::start(&data, &args, &s3_env);
    let (rss, hwm) = memory(replica.pid());
    println!("second replica started: VmRSS {rss} MiB, VmHWM {hwm} MiB");
    serve_pages("second replica", &replica, projects, requests);

    // The publisher dies (SIGKILL, so it releases nothing): the second replica takes the
    // lease over, loads the repository from the bucket and signs a change made after the death.
    let killed = Instant::now();
    println!("publisher killed at {:.1} s", clock());
    drop(server);
    add_project(&database, projects + 1);
    let mut leased = None;
    let mut peak_rss = 0;
    let mut progress = BTreeMap::new();
    loop {
        let status = status(&replica);
        let (rss, _) = memory(replica.pid());
        peak_rss = peak_rss.max(rss);
        let second = killed.elapsed().as_secs();
        if progress.insert(second / 10, ()).is_none() {
            println!(
                "  {second:>5} s after the kill: VmRSS {rss} MiB, load {}",
                load()
            );
        }
        if leased.is_none() && status["publisher"]["role"] == "publisher" {
            leased = Some(killed.elapsed());
        }
        if status["signed_serial"].as_i64().unwrap_or(0) > projects as i64 {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(600),
            "no takeover in 10 minutes: {status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (rss, hwm) = memory(replica.pid());
    println!(
        "publisher killed: the second replica held the lease after {:.1} s and signed a change \
         made after the kill {:.1} s after it; then VmRSS {rss} MiB, VmHWM {hwm} MiB (peak \
         polled {peak_rss} MiB); load {}",
        leased.unwrap_or_default().as_secs_f64(),
        killed.elapsed().as_secs_f64(),
        load()
    );
}
