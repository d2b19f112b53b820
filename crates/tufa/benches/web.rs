//! The web pages' server time for a project with 2,000 files, against a real `tufa serve`
//! (release build): each page asked for repeatedly, the time read from the server's own access
//! log (request in to answer out, no network or client in it). The target is 50 ms. Beside it,
//! the server's CPU time per request (from `/proc`, all its threads), which load on the machine
//! changes less than the time.
//!
//! `cargo bench -p tufa --bench web`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tufa_testkit::http;
use tufa_testkit::{TufaServer, wheel_with_metadata};

const FILES: usize = 2_000;
const CLIENTS: usize = 4;
const ROUNDS: usize = 30;
const TARGET: Duration = Duration::from_millis(50);

/// A description of the size a real README has (about 6 kB of Markdown).
fn description() -> String {
    let mut text = String::from("# Bench project\n\nA project with many releases.\n\n");
    for i in 0..60 {
        text.push_str(&format!(
            "## Section {i}\n\nSome *text* with a [link](https://example.org/{i}) and `code`.\n\n"
        ));
    }
    text
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let tufa = env!("CARGO_BIN_EXE_tufa");
    let server = TufaServer::start(
        tufa.as_ref(),
        &dir.path().join("data"),
        &["--cooldown", "7d"],
    );
    let auth = http::basic_auth(&server.create_token("bench"));
    let description = description();
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..CLIENTS {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= FILES {
                        break;
                    }
                    let version = format!("1.0.{i}");
                    let metadata = format!(
                        "Metadata-Version: 2.1\nName: bench-web\nVersion: {version}\n\
                         Summary: A project with {FILES} files\n\
                         Description-Content-Type: text/markdown\n\n{description}"
                    );
                    let wheel = wheel_with_metadata("bench-web", &version, &metadata);
                    let (content_type, body) = http::wheel_upload("bench-web", &version, &wheel);
                    let response = http::request(
                        "POST",
                        &server.upload_url(),
                        &[("Content-Type", &content_type), ("Authorization", &auth)],
                        &body,
                    );
                    assert_eq!(response.status, 200, "{}", response.reason);
                }
            });
        }
    });
    server.wait_until_signed();
    println!("uploaded {FILES} files of bench-web, one per release");

    let mut worst = Duration::ZERO;
    for path in [
        "/",
        "/project/bench-web/",
        "/project/bench-web/1.0.7/",
        "/search/?q=bench",
        "/search/",
        "/trust/",
    ] {
        let mut times = Vec::with_capacity(ROUNDS);
        let cpu_before = cpu_time(server.pid());
        // The access log names the path without its query.
        let logged = format!("GET {} 200 ", path.split('?').next().unwrap_or(path));
        for _ in 0..ROUNDS {
            let before = server.log().matches(&logged).count();
            let response = http::get(&format!("{}{path}", server.url), &[]);
            assert_eq!(response.status, 200, "{path}: {}", response.reason);
            times.push(server_time(&server, &logged, before + 1));
        }
        let cpu = (cpu_time(server.pid()) - cpu_before) / ROUNDS as u32;
        times.sort();
        let median = times[times.len() / 2];
        let max = times[times.len() - 1];
        worst = worst.max(median);
        println!(
            "{path:<28} server time median {:>6.2} ms, max {:>6.2} ms, CPU {:>6.2} ms a request \
             ({ROUNDS} requests)",
            median.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3,
            cpu.as_secs_f64() * 1e3
        );
    }
    println!(
        "slowest median {:.2} ms: {} the {} ms target",
        worst.as_secs_f64() * 1e3,
        if worst <= TARGET { "within" } else { "OVER" },
        TARGET.as_millis()
    );
}

/// The server time of the `nth` access log line holding `needle` (`GET /x 200 1234us`), once
/// the server has written it.
fn server_time(server: &TufaServer, needle: &str, nth: usize) -> Duration {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let line = loop {
        let log = server.log();
        if let Some(line) = log
            .lines()
            .filter(|line| line.contains(needle))
            .nth(nth - 1)
        {
            break line.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no access log line {needle:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let micros: u64 = line
        .split(needle)
        .nth(1)
        .and_then(|rest| rest.split("us").next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no time in {line:?}"));
    Duration::from_micros(micros)
}

/// The CPU time (user and system) process `pid` has used so far, from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/<pid>/stat");
    // The fields after the command name, which is in parentheses and may hold spaces: utime
    // and stime are the 14th and 15th fields of the line, in clock ticks.
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = fields[11..13]
        .iter()
        .map(|f| f.parse::<u64>().unwrap())
        .sum();
    Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    let output = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .expect("getconf CLK_TCK");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("a number of clock ticks")
}
