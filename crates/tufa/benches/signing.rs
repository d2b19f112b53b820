//! Upload-to-signed latency: uploads paced at a fixed rate against a real `tufa serve` (release
//! build, development repository with 256 bins), each timed from its acknowledgement to the moment
//! `/status` (asked every 10 ms) reports its serial in signed metadata (timestamp written).
//!
//! `cargo bench -p tufa --bench signing` (`TUFA_BENCH_RATE` uploads/s, default 200, for
//! `TUFA_BENCH_SECONDS`, default 10; `TUFA_BENCH_COOLDOWN=7d` also publishes the cooldown view,
//! a second page per change; `TUFA_BENCH_REPLICAS=2` spreads the uploads over that many
//! replicas on one data directory, one of which signs; `TUFA_TEST_BACKEND=postgres` runs them on
//! PostgreSQL; `TUFA_BENCH_LOGS=DIR` keeps the servers' logs there; `TUFA_BENCH_CLIENTS` uploads
//! at once, default 8). Client, servers and publisher share the machine's cores.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tufa_testkit::{TufaServer, http, minimal_wheel};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

/// CPU time (user + system) a process has used: what a run costs, which the wall-clock times of
/// a machine shared with other work do not show.
fn cpu_seconds(pid: u32) -> f64 {
    process_cpu_named(&format!("/proc/{pid}/stat"))
        .map(|(_, cpu)| cpu)
        .expect("the process's CPU time")
}

/// CPU time of the process whose `/proc/<pid>/stat` is `stat_path`, with its command name; `None`
/// once it has exited.
fn process_cpu_named(stat_path: &str) -> Option<(String, f64)> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces; utime and stime
    // are fields 14 and 15, in USER_HZ ticks (100 a second on Linux).
    let name = stat.get(stat.find('(')? + 1..stat.rfind(')')?)?.to_string();
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((name, ticks as f64 / 100.0))
}

/// CPU time of every running PostgreSQL process (the server and one backend per connection):
/// on PostgreSQL most of an upload's cost may be the database's.
fn postgres_cpu() -> f64 {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            process_cpu_named(&format!("{}/stat", entry.path().display()))
                .filter(|(name, _)| name == "postgres")
                .map(|(_, cpu)| cpu)
        })
        .sum()
}

fn main() {
    let rate = env_number("TUFA_BENCH_RATE", 200);
    let seconds = env_number("TUFA_BENCH_SECONDS", 10);
    let total = rate * seconds;
    let dir = tempfile::tempdir().unwrap();
    let tufa = env!("CARGO_BIN_EXE_tufa");
    let cooldown = std::env::var("TUFA_BENCH_COOLDOWN").ok();
    let args: Vec<&str> = match &cooldown {
        Some(period) => vec!["--cooldown", period],
        None => Vec::new(),
    };
    let replicas = env_number("TUFA_BENCH_REPLICAS", 1).max(1);
    let server = TufaServer::start(tufa.as_ref(), &dir.path().join("data"), &args);
    let others: Vec<TufaServer> = (1..replicas)
        .map(|_| TufaServer::start(tufa.as_ref(), &dir.path().join("data"), &args))
        .collect();
    let upload_urls: Vec<String> = std::iter::once(&server)
        .chain(&others)
        .map(TufaServer::upload_url)
        .collect();
    let auth = http::basic_auth(&server.create_token("bench"));
    let bodies: Vec<(String, String, Vec<u8>)> = (0..total)
        .map(|i| {
            let project = format!("latency-{}", i % 500);
            let version = format!("1.0.{i}");
            let (content_type, body) =
                http::wheel_upload(&project, &version, &minimal_wheel(&project, &version));
            (project, content_type, body)
        })
        .collect();

    // Each upload's serial, when it was answered and when it was sent.
    let acknowledged: Mutex<Vec<(i64, Instant, Instant)>> = Mutex::new(Vec::new());
    let signed: Mutex<Vec<(i64, Instant)>> = Mutex::new(Vec::new());
    let done = std::sync::atomic::AtomicBool::new(false);
    let servers_cpu = |servers: &[&TufaServer]| -> Vec<f64> {
        servers
            .iter()
            .map(|server| cpu_seconds(server.pid()))
            .collect()
    };
    let all: Vec<&TufaServer> = std::iter::once(&server).chain(&others).collect();
    let cpu_before = servers_cpu(&all);
    let client_cpu_before = cpu_seconds(std::process::id());
    let postgres_cpu_before = postgres_cpu();
    let start = Instant::now() + Duration::from_millis(200);
    // Each client waits for its upload's answer before the next: with too few, slow uploads
    // lower the rate actually offered, and the latency measured is that of a lighter load.
    let clients = env_number("TUFA_BENCH_CLIENTS", 8).max(1);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let status = http::get(&format!("{}/status", server.url), &[]).json();
                let now = Instant::now();
                signed
                    .lock()
                    .unwrap()
                    .push((status["signed_serial"].as_i64().unwrap(), now));
                // Every 10 ms, so a signed serial is seen at most 10 ms late: `/status` reads
                // the database five times, and asked every 2 ms (as before) on PostgreSQL it
                // was 2,500 queries a second of the bench's own beside 200 uploads.
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        let uploaders: Vec<_> = (0..clients)
            .map(|client| {
                let (bodies, acknowledged, auth) = (&bodies, &acknowledged, &auth);
                let url = upload_urls[client as usize % upload_urls.len()].clone();
                scope.spawn(move || {
                    for i in (client..total).step_by(clients as usize) {
                        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        let (_, content_type, body) = &bodies[i as usize];
                        let sent = Instant::now();
                        let response = http::request(
                            "POST",
                            &url,
                            &[("Content-Type", content_type), ("Authorization", auth)],
                            body,
                        );
                        assert_eq!(response.status, 200, "{}", response.reason);
                        let serial = response
                            .header("x-pypi-last-serial")
                            .and_then(|s| s.parse().ok())
                            .expect("the upload's serial");
                        acknowledged
                            .lock()
                            .unwrap()
                            .push((serial, Instant::now(), sent));
                    }
                })
            })
            .collect();
        for uploader in uploaders {
            uploader.join().unwrap();
        }
        let last = server.wait_until_signed();
        while signed.lock().unwrap().last().map(|(s, _)| *s) < Some(last) {
            std::thread::sleep(Duration::from_millis(5));
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let elapsed = start.elapsed();
    let cpu: Vec<String> = servers_cpu(&all)
        .iter()
        .zip(&cpu_before)
        .map(|(after, before)| format!("{:.1} s", after - before))
        .collect();
    let client_cpu = cpu_seconds(std::process::id()) - client_cpu_before;
    let database_cpu = postgres_cpu() - postgres_cpu_before;
    // The servers' logs, for where the time went (each batch's `signed` line names its size).
    if let Ok(logs) = std::env::var("TUFA_BENCH_LOGS") {
        for (i, replica) in std::iter::once(&server).chain(&others).enumerate() {
            std::fs::write(format!("{logs}/replica-{i}.log"), replica.log()).unwrap();
        }
    }
    let signed = signed.into_inner().unwrap();
    let acknowledged = acknowledged.into_inner().unwrap();
    let mut uploads: Vec<Duration> = acknowledged
        .iter()
        .map(|(_, acked, sent)| acked.saturating_duration_since(*sent))
        .collect();
    uploads.sort();
    let mut latencies: Vec<Duration> = acknowledged
        .into_iter()
        .map(|(serial, acked, _)| {
            let (_, at) = signed
                .iter()
                .find(|(s, _)| *s >= serial)
                .expect("every serial is signed");
            at.saturating_duration_since(acked)
        })
        .collect();
    latencies.sort();
    let ms = |sorted: &[Duration], p: f64| percentile(sorted, p).as_secs_f64() * 1000.0;
    println!(
        "upload-to-signed at {rate} uploads/s offered over {replicas} replica(s) by {clients} \
         clients ({total} uploads over 500 projects, {:.0} achieved): p50 {:.0} ms, p99 {:.0} ms, \
         max {:.0} ms; the upload itself p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        total as f64 / elapsed.as_secs_f64(),
        ms(&latencies, 0.5),
        ms(&latencies, 0.99),
        ms(&latencies, 1.0),
        ms(&uploads, 0.5),
        ms(&uploads, 0.99),
        ms(&uploads, 1.0),
    );
    println!(
        "CPU time over {:.1} s: replicas {} (the first publishes), client {client_cpu:.1} s, \
         PostgreSQL {database_cpu:.1} s",
        elapsed.as_secs_f64(),
        cpu.join(", "),
    );
}
