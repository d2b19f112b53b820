//! docs/operations.md as a drill: its `sh runbook` blocks (keys, ceremony, signing, serving,
//! backup, root rotation, online-key replacement) run in order in one bash process, exactly as
//! printed except for the data directory and the listen address, while python-tuf, bootstrapped
//! from the ceremony's root, follows the index through every step. The page cannot drift from
//! the tools: a changed flag or message fails here.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{TUFA, page_files, python_tuf_at, token};
use tufa_testkit::{http, minimal_wheel};

const DOC: &str = include_str!("../../../docs/operations.md");
const MARK: &str = "```sh runbook";

/// The marked blocks of the document, in order.
fn runbook_blocks() -> Vec<String> {
    let mut blocks = Vec::new();
    let mut rest = DOC;
    while let Some(start) = rest.find(MARK) {
        let body = &rest[start + MARK.len()..];
        let body = body.strip_prefix('\n').expect("a newline after the mark");
        let end = body.find("\n```").expect("a closed block");
        blocks.push(body[..=end].to_string());
        rest = &body[end + 4..];
    }
    blocks
}

/// The whole drill as one script: each block followed by a pause until the test lets it go on.
fn script(blocks: &[String], data: &Path, listen: &str) -> String {
    let mut script = String::from("set -euo pipefail\n");
    for (i, block) in blocks.iter().enumerate() {
        let block = block
            .replace("/srv/tufa", data.to_str().unwrap())
            .replace("127.0.0.1:8080", listen);
        script.push_str(&block);
        script.push_str(&format!(
            "echo {i} > .step\nwhile [ ! -e .go-{i} ]; do sleep 0.05; done\n"
        ));
    }
    script
}

fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

struct Drill {
    work: PathBuf,
    data: PathBuf,
    url: String,
    shell: Child,
    client: PathBuf,
}

impl Drill {
    fn output(&self) -> String {
        let read = |name| std::fs::read_to_string(self.work.join(name)).unwrap_or_default();
        format!(
            "--- stdout\n{}\n--- stderr\n{}",
            read("drill.out"),
            read("drill.err")
        )
    }

    /// Waits until block `i` has run.
    fn reached(&mut self, i: usize, block: &str) {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let step = std::fs::read_to_string(self.work.join(".step")).unwrap_or_default();
            if step.trim() == i.to_string() {
                return;
            }
            if let Some(status) = self.shell.try_wait().unwrap() {
                panic!(
                    "the drill stopped ({status}) in block {i}:\n{block}\n{}",
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "block {i} did not finish:\n{block}\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn go_on(&self, i: usize) {
        std::fs::write(self.work.join(format!(".go-{i}")), "").unwrap();
    }

    fn upload(&self, version: &str) {
        let token = token(&self.data, "alice", None);
        let (content_type, body) =
            http::wheel_upload("drill", version, &minimal_wheel("drill", version));
        let response = http::request(
            "POST",
            &format!("{}/legacy/", self.url),
            &[
                ("Content-Type", &content_type),
                ("Authorization", &http::basic_auth(&token)),
            ],
            &body,
        );
        assert_eq!(response.status, 200, "{}", response.text());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = http::get(&format!("{}/status", self.url), &[]).json();
            if status["signed_serial"] == status["last_serial"] {
                return;
            }
            assert!(Instant::now() < deadline, "not signed: {status}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// python-tuf, trusting the ceremony's root on first use of its cache, refreshes and reads
    /// the `drill` page: every version uploaded so far.
    fn python_tuf_sees(&self, versions: &[&str]) {
        let root = self.work.join("ceremony/metadata/1.root.json");
        let view = python_tuf_at(&self.url, &root, &self.client, &["drill"])
            .unwrap_or_else(|e| panic!("python-tuf refused the index:\n{e}\n{}", self.output()));
        let files: Vec<String> = page_files(&view["pages"]["drill"]).into_keys().collect();
        for version in versions {
            let wheel = format!("drill-{version}-py3-none-any.whl");
            assert!(files.contains(&wheel), "{wheel} not in {files:?}");
        }
    }
}

impl Drop for Drill {
    fn drop(&mut self) {
        let _ = self.shell.kill();
        // The server the document started, by the process ID it recorded.
        if let Ok(pid) = std::fs::read_to_string(self.work.join("tufa.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

#[test]
fn the_runbook_of_docs_operations_md_runs_as_printed() {
    let blocks = runbook_blocks();
    assert!(blocks.len() >= 7, "{} runbook blocks", blocks.len());
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let data = dir.path().join("srv-tufa");
    let listen = free_address();
    let tufa_dir = Path::new(TUFA).parent().unwrap();
    let path = format!(
        "{}:{}",
        tufa_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut shell = Command::new("bash")
        .current_dir(&work)
        .env("PATH", path)
        .env_remove("TUFA_DATA")
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(work.join("drill.out")).unwrap())
        .stderr(std::fs::File::create(work.join("drill.err")).unwrap())
        .spawn()
        .unwrap();
    shell
        .stdin
        .take()
        .unwrap()
        .write_all(script(&blocks, &data, &listen).as_bytes())
        .unwrap();
    let mut drill = Drill {
        url: format!("http://{listen}"),
        client: dir.path().join("python-tuf"),
        work,
        data,
        shell,
    };

    let mut uploaded: Vec<&str> = Vec::new();
    let mut served = false;
    for (i, block) in blocks.iter().enumerate() {
        drill.reached(i, block);
        if block.contains("tufa serve") {
            if !served {
                drill.upload("1.0");
                uploaded.push("1.0");
                served = true;
            }
            drill.python_tuf_sees(&uploaded);
        }
        if block.contains("tufa backup") {
            assert!(drill.work.join("backups/first/tufa-backup.json").exists());
        }
        if block.contains("tufa roles submit") && !block.contains("tufa serve") {
            // The running server installs the new root within a second.
            std::thread::sleep(Duration::from_secs(2));
            drill.upload("1.1");
            uploaded.push("1.1");
            drill.python_tuf_sees(&uploaded);
        }
        drill.go_on(i);
    }
    let status = drill.shell.wait().unwrap();
    assert!(status.success(), "{status}: {}", drill.output());
    // What the document says the operator sees.
    let output = drill.output();
    for said in [
        "every threshold is met, and it changes the online key",
        "Restart it with the new key",
        "re-signing every online role with the new key",
    ] {
        assert!(
            output.contains(said),
            "the drill did not say {said:?}:\n{output}"
        );
    }
    drill.upload("2.0");
    uploaded.push("2.0");
    drill.python_tuf_sees(&uploaded);
}
