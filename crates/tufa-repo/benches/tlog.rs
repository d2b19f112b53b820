//! What the transparency log adds to one publish: two development repositories on the same
//! disk (under `target/`), one whose root declares a log, publish one page at a time,
//! alternately, so that both see the same load; prints the latency of `Repository::publish`
//! for each and the difference. `TUFA_BENCH_PUBLISHES` sets the count (default 500; past 256 the
//! first full tile is written).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tufa_metadata::Signer;
use tufa_repo::{
    Expiries, FsStore, LogKey, LogSettings, PageChange, Repository, Unreachable, View, dev,
    key_paths, load_signer,
};

fn open(dir: &std::path::Path, log: bool) -> Repository<FsStore> {
    let store = FsStore::open(dir.join("tuf")).unwrap();
    let keys = dir.join("keys");
    let now = SystemTime::now();
    if log {
        dev::create_development_repository_with_log(&store, &keys, 8, Expiries::default(), now)
    } else {
        dev::create_development_repository(&store, &keys, 8, Expiries::default(), now)
    }
    .unwrap();
    let online: Arc<dyn Signer> =
        Arc::new(load_signer(&key_paths(&keys.join(dev::ONLINE_KEY)).0, None).unwrap());
    let settings = log.then(|| LogSettings::new(LogKey::load(&keys.join(dev::LOG_KEY)).unwrap()));
    Repository::open_with_log(
        store,
        online,
        Expiries::default(),
        settings.as_ref(),
        now,
        Unreachable::FindAtOpen,
    )
    .unwrap()
}

fn summary(name: &str, mut times: Vec<Duration>) -> f64 {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mean = times.iter().map(|d| ms(*d)).sum::<f64>() / times.len() as f64;
    println!(
        "{name:>12}: mean {mean:.2} ms, median {:.2} ms, p90 {:.2} ms, p99 {:.2} ms",
        ms(times[times.len() / 2]),
        ms(times[times.len() * 9 / 10]),
        ms(times[times.len() * 99 / 100]),
    );
    ms(times[times.len() / 2])
}

fn main() {
    let count: usize = std::env::var("TUFA_BENCH_PUBLISHES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(500);
    // `TUFA_BENCH_DIR` puts the repositories elsewhere, e.g. on a RAM disk to tell the CPU's
    // share from the disk's.
    let base = std::env::var_os("TUFA_BENCH_DIR").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-tlog"),
        std::path::PathBuf::from,
    );
    let _ = std::fs::remove_dir_all(&base);
    let mut plain = open(&base.join("plain"), false);
    let mut logged = open(&base.join("logged"), true);
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for n in 0..count {
        let change = [PageChange {
            project: format!("project-{}", n % 50),
            view: View::Simple,
            page: Some(format!("{{\"name\":\"project\",\"n\":{n}}}").into_bytes()),
        }];
        for (repository, times) in [(&mut plain, &mut without), (&mut logged, &mut with)] {
            let started = Instant::now();
            repository.publish(&change, SystemTime::now()).unwrap();
            times.push(started.elapsed());
        }
    }
    println!(
        "{count} publishes of one page each (256 bin roles, file store on {}):",
        base.display()
    );
    let a = summary("without log", without);
    let b = summary("with log", with);
    println!(
        "added by the log: {:.2} ms per publish (median); log size {}",
        b - a,
        logged.log_status().map_or(0, |s| s.size)
    );
    let _ = std::fs::remove_dir_all(&base);
}
