//! `pip install` and `uv pip install` of a set of packages through `tufa proxy` against
//! directly from the index: release builds of both on loopback, median of several runs.
//!
//! `cargo bench -p tufa --bench proxy`. The installer's cache is always empty, so every page and
//! file is requested. Cold: a new proxy process with an empty cache, so it refreshes the TUF
//! metadata, verifies every page and downloads every file. Warm: the same proxy again, with the
//! files verified and cached (pages are re-checked against metadata at most 2 s old). The
//! index's own page cache is warm throughout. Installers, proxy and index share the cores.
//!
//! Measured on the 2-core build machine (5 requirements, 15 packages, median of 3 runs):
//!
//! | installer | from the index | proxy, cold | ratio | proxy, warm | ratio |
//! |---|---|---|---|---|---|
//! | pip | 1853 ms | 2004 ms | 1.08x | 1211 ms | 0.65x |
//! | uv | 289 ms | 322 ms | 1.11x | 218 ms | 0.76x |

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tufa_testkit::{Project, PythonEnv, TufaProxy, TufaServer, median};

const PACKAGES: usize = 15;
const RUNS: usize = 3;

fn install(tool: &str, index: &str, dir: &Path, run: &str, packages: &[String]) -> Duration {
    let packages: Vec<&str> = packages.iter().map(String::as_str).collect();
    PythonEnv::shared().timed_install(tool, index, &dir.join(format!("{tool}-{run}")), &packages)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let tufa = env!("CARGO_BIN_EXE_tufa");
    let server = TufaServer::start(tufa.as_ref(), &dir.path().join("data"), &[]);
    let output = Command::new(tufa)
        .args(["token", "create", "--user", "bench", "--data"])
        .arg(&server.data_dir)
        .output()
        .unwrap();
    let token = String::from_utf8(output.stdout).unwrap().trim().to_string();
    // Chains of three: each head pulls in two dependencies, so installers resolve as they go.
    let names: Vec<String> = (0..PACKAGES).map(|i| format!("bench-proxy-{i}")).collect();
    let mut files = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let next = [format!(
            "{}>=1.0",
            names.get(i + 1).map_or("", String::as_str)
        )];
        let dependencies: Vec<&str> = if i % 3 == 2 {
            Vec::new()
        } else {
            vec![next[0].as_str()]
        };
        let built = Project {
            name,
            version: "1.0",
            dependencies: &dependencies,
            payload: "bench",
        }
        .build(PythonEnv::shared(), dir.path());
        files.push(built.wheel);
    }
    let output = PythonEnv::shared()
        .command("twine")
        .args([
            "upload",
            "--non-interactive",
            "--disable-progress-bar",
            "--repository-url",
        ])
        .arg(server.upload_url())
        .args(["-u", "__token__", "-p", &token])
        .args(&files)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let packages: Vec<String> = names.iter().step_by(3).cloned().collect();
    server.wait_until_signed();
    let root = server.data_dir.join("trusted-root.json");

    println!(
        "{} requirements, {PACKAGES} packages with dependencies, median of {RUNS} runs",
        packages.len()
    );
    println!("| installer | from the index | proxy, cold | ratio | proxy, warm | ratio |");
    println!("|---|---|---|---|---|---|");
    for tool in ["pip", "uv"] {
        let mut direct = Vec::new();
        let mut cold = Vec::new();
        let mut warm = Vec::new();
        for run in 0..RUNS {
            direct.push(install(
                tool,
                &server.simple_url(),
                dir.path(),
                &format!("direct-{run}"),
                &packages,
            ));
            let proxy = TufaProxy::start(
                tufa.as_ref(),
                &server.url,
                &root,
                &dir.path().join(format!("proxy-{tool}-{run}")),
                &[],
            );
            cold.push(install(
                tool,
                &proxy.simple_url(),
                dir.path(),
                &format!("cold-{run}"),
                &packages,
            ));
            warm.push(install(
                tool,
                &proxy.simple_url(),
                dir.path(),
                &format!("warm-{run}"),
                &packages,
            ));
        }
        let (direct, cold, warm) = (median(direct), median(cold), median(warm));
        let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
        println!(
            "| {tool} | {} | {} | {:.2}x | {} | {:.2}x |",
            ms(direct),
            ms(cold),
            cold.as_secs_f64() / direct.as_secs_f64(),
            ms(warm),
            warm.as_secs_f64() / direct.as_secs_f64(),
        );
    }
}
