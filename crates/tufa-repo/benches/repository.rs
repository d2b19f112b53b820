//! PEP 458 at PyPI's scale: creating a repository with 16,384 bin roles, then importing synthetic
//! project pages into it (1,000,000 by default; `TUFA_BENCH_PROJECTS` sets another count).
//! Runs once and prints its measurements; the README records them. The repository is written under
//! `target/` so that the disk, not a RAM-backed /tmp, is measured.
//!
//! The pages go in as a bulk import does: one [`tufa_repo::Import`] staged 50,000 pages at a
//! time, every bin role signed once at the end. `TUFA_BENCH_PUBLISH=1` publishes each part on
//! its own instead (every part re-signs most bin roles), as a stream of uploads would.
//!
//! First it measures the floor the file system sets: what creating a page's directory and file
//! costs there without Tufa, and so the least time that many pages can take, one file each. It
//! writes as many as the import (`TUFA_BENCH_FLOOR` sets fewer, for a RAM disk's limit on files).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tufa_metadata::{FileSigner, KeyAlgorithm, Signer, Threshold, generate_private_key};
use tufa_repo::{
    CeremonyPlan, Expiries, FsStore, PageChange, Repository, RoleSpec, Store, Unreachable, View,
};

const BATCH: usize = 50_000;

/// The CPU time this process has used so far, in user space and in the kernel: on a machine
/// shared with other work the wall clock says little, these say what publishing costs.
fn cpu() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) and its closing parenthesis; utime
    // and stime are the 14th and 15th, in ticks of 1/100 s on Linux.
    let fields: Vec<f64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .map(|f| f.parse().unwrap_or(0.0))
                .collect()
        })
        .unwrap_or_default();
    let tick = |n: usize| fields.get(n - 3).map_or(0.0, |t| t / 100.0);
    (tick(14), tick(15))
}

/// CPU time since `since`, as `user + system`.
fn cpu_since(since: (f64, f64)) -> String {
    let (user, system) = cpu();
    format!(
        "CPU {:.1} s user + {:.1} s system",
        user - since.0,
        system - since.1
    )
}

/// Part `done..` of the synthetic pages.
fn pages(done: usize, projects: usize) -> Vec<PageChange> {
    (done..projects.min(done + BATCH))
        .map(|n| PageChange {
            project: format!("project-{n}"),
            view: View::Simple,
            page: Some(
                format!(
                    "{{\"meta\":{{\"api-version\":\"1.1\"}},\"name\":\"project-{n}\",\"files\":[{{\"filename\":\"project_{n}-1.0-py3-none-any.whl\",\"hashes\":{{\"sha256\":\"{:064x}\"}},\"size\":1234,\"url\":\"../../files/project-{n}/project_{n}-1.0-py3-none-any.whl\"}}],\"versions\":[\"1.0\"]}}",
                    n
                )
                .into_bytes(),
            ),
        })
        .collect()
}

/// What the file system under `parent` costs for the least `projects` pages need, without Tufa,
/// measured on `pages` of them: a new directory and a new file of a page's size in it for
/// each, then one `syncfs`. As the
/// store does it: one thread makes the directories in order, the others write the files behind
/// it (threads that each made both would wait on the shared parent's lock). Prints the time per
/// page, the floor for publishing them one file each. Returns the files, to be removed after
/// the bench: on ext4 without a journal, new inodes skip those deleted in the last minutes, and
/// every such skip costs a lookup.
fn file_system_floor(parent: &std::path::Path, projects: usize, pages: usize) -> tempfile::TempDir {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = tempfile::tempdir_in(parent).expect("creating the floor's directory");
    let writers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .saturating_sub(1)
        .max(1);
    let page = vec![b'x'; 420];
    let made = AtomicUsize::new(0);
    let started = Instant::now();
    let cpu_started = cpu();
    std::thread::scope(|scope| {
        let (dir, page, made) = (dir.path(), &page, &made);
        scope.spawn(move || {
            for n in 0..pages {
                std::fs::create_dir(dir.join(format!("project-{n}")))
                    .expect("creating a directory");
                made.store(n + 1, Ordering::Release);
            }
        });
        for writer in 0..writers {
            scope.spawn(move || {
                for n in (writer..pages).step_by(writers) {
                    while made.load(Ordering::Acquire) <= n {
                        std::thread::yield_now();
                    }
                    let file = format!("project-{n}/{n:064x}.index.json");
                    std::fs::write(dir.join(file), page).expect("writing a file");
                }
            });
        }
    });
    let root = std::fs::File::open(dir.path()).expect("opening the floor's directory");
    rustix::fs::syncfs(&root).expect("syncing the file system");
    let per_page = started.elapsed().as_secs_f64() / pages as f64;
    println!(
        "file system floor, a directory and a file per page, one thread making directories and \
         {writers} the files, then syncfs: {:.0} us a page over {pages}, {}; {projects} pages \
         take at least {:.1} s here",
        per_page * 1e6,
        cpu_since(cpu_started),
        per_page * projects as f64
    );
    dir
}

/// Set to a repository's directory, the bench only opens that repository and reports.
const OPEN_VARIABLE: &str = "TUFA_BENCH_OPEN";
const OPEN_KEY_FILE: &str = "online.der";

/// The memory a process holds after opening the repository in `dir` as a publisher starts: the
/// store's temporary files removed beside it, the files nothing reaches looked for later.
fn open_and_report(dir: &std::path::Path) {
    let der = std::fs::read(dir.join(OPEN_KEY_FILE)).expect("reading the online key");
    let online = Arc::new(FileSigner::from_pkcs8_der(&der).expect("loading the online key"));
    let started = Instant::now();
    let (store, removing) =
        FsStore::open_removing_temporaries_beside(dir).expect("opening the store");
    let repo = Repository::open_with_log(
        store,
        online,
        Expiries::default(),
        None,
        SystemTime::now(),
        Unreachable::LeftToCaller,
    )
    .expect("opening the repository");
    let opened = started.elapsed();
    removing
        .join()
        .expect("the thread removing temporary files")
        .expect("removing temporary files");
    println!(
        "opened again in a new process (a publisher's start): {:.1} s, then VmRSS {} MiB, VmHWM \
         {} MiB; the walk for temporary files beside it ended after {:.1} s",
        opened.as_secs_f64(),
        memory("VmRSS:"),
        memory("VmHWM:"),
        started.elapsed().as_secs_f64()
    );
    drop(repo);
}

/// A field of /proc/self/status, in MiB.
fn memory(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024)
}

fn main() {
    if let Some(dir) = std::env::var_os(OPEN_VARIABLE) {
        open_and_report(std::path::Path::new(&dir));
        return;
    }
    let projects: usize = std::env::var("TUFA_BENCH_PROJECTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    // `TUFA_BENCH_DIR` puts the repository elsewhere, e.g. on a RAM disk to tell the CPU's share
    // from the disk's.
    let target = std::env::var_os("TUFA_BENCH_DIR").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        std::path::PathBuf::from,
    );
    std::fs::create_dir_all(&target).expect("creating the bench's parent directory");
    // As many as the import writes, unless `TUFA_BENCH_FLOOR` says fewer (a RAM disk holds a
    // limited number of files): the kernel's cost per directory grows as their parent fills.
    let floor_pages = std::env::var("TUFA_BENCH_FLOOR")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(projects);
    let floor = file_system_floor(&target, projects, floor_pages);
    let dir = tempfile::tempdir_in(&target).expect("creating the bench directory");

    let signer = || {
        let der = generate_private_key(KeyAlgorithm::Ed25519).expect("generating a key");
        let signer = FileSigner::from_pkcs8_der(der.as_bytes()).expect("loading the key");
        (Arc::new(signer), der.as_bytes().to_vec())
    };
    let ((offline, _), (online, online_der)) = (signer(), signer());
    let role = RoleSpec {
        keys: vec![offline.public_key().clone()],
        threshold: Threshold::ONE,
    };
    let plan = CeremonyPlan {
        root: role.clone(),
        targets: role.clone(),
        bins: role,
        online: online.public_key().clone(),
        bit_length: 14,
        expiries: Expiries::default(),
    };
    let now = SystemTime::now();
    let mut roles = plan.offline_roles(now).expect("building offline roles");
    roles.sign(offline.as_ref()).expect("signing offline roles");
    let store = FsStore::open(dir.path()).expect("opening the store");
    store
        .write_all(&roles.files().expect("encoding offline roles"))
        .expect("writing offline roles");

    let started = Instant::now();
    let cpu_started = cpu();
    let mut repo = Repository::open(store, online.clone(), Expiries::default(), now)
        .expect("creating the bins");
    let created = started.elapsed();
    println!(
        "create a repository with 16,384 bin roles (sign and write every bin, snapshot, timestamp): {:.2} s, {}",
        created.as_secs_f64(),
        cpu_since(cpu_started)
    );

    let separately = std::env::var_os("TUFA_BENCH_PUBLISH").is_some_and(|v| v == "1");
    let started = Instant::now();
    let cpu_started = cpu();
    let mut done = 0;
    let mut staging = std::time::Duration::ZERO;
    if separately {
        while done < projects {
            let batch = pages(done, projects);
            repo.publish(&batch, now).expect("publishing a batch");
            done += batch.len();
        }
    } else {
        let mut import = repo.import(now).expect("starting the import");
        while done < projects {
            let batch = pages(done, projects);
            let staged = Instant::now();
            import.stage(&batch).expect("staging a part");
            staging += staged.elapsed();
            done += batch.len();
        }
        let committed = Instant::now();
        let published = import.commit(now).expect("committing the import");
        println!(
            "  writing the page files: {:.1} s; signing {} bin roles, snapshot and timestamp: {:.1} s",
            staging.as_secs_f64(),
            published.bins_signed,
            committed.elapsed().as_secs_f64()
        );
    }
    let imported = started.elapsed();
    let how = if separately {
        "published in parts"
    } else {
        "one import staged in parts"
    };
    println!(
        "import {projects} project pages into 16,384 bins ({how} of {BATCH}): {:.1} s, {:.0} projects/s, {}",
        imported.as_secs_f64(),
        projects as f64 / imported.as_secs_f64(),
        cpu_since(cpu_started)
    );
    println!(
        "the repository holding {projects} pages: VmRSS {} MiB, VmHWM {} MiB",
        memory("VmRSS:"),
        memory("VmHWM:")
    );
    drop(repo);
    // What a publisher restarting on this repository, or taking it over, holds once it opened
    // it: in a process of its own, so that what the import left in this one is not counted.
    let key = dir.path().join(OPEN_KEY_FILE);
    std::fs::write(&key, &online_der).expect("writing the online key for the reopening");
    let reopened = std::process::Command::new(std::env::current_exe().expect("this bench"))
        .env(OPEN_VARIABLE, dir.path())
        .status()
        .expect("running the bench again to open the repository");
    assert!(reopened.success(), "opening the repository failed");
    // Removing a million directories takes a while; the measurements are printed before.
    println!("removing the bench's repository");
    drop(floor);
}
