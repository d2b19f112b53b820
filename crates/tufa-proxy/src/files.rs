//! Files and PEP 658 metadata files, checked against the verified page while they stream.
//!
//! Bytes go to the installer as they arrive, except the last chunk, which is held back until the
//! whole file has matched its size and sha256. A file that fails ends its response with an error
//! instead, so the installer sees a broken download and never a complete wrong file. Only files
//! that matched enter the cache, which is content-addressed (`<sha[0:2]>/<sha>`) and written
//! atomically (a temporary file renamed into place); cached files are checked again as they are
//! served, so a damaged cache costs a download, never trust.
//!
//! A download from the index is bounded in time as well as in size ([`Pace`]): an index that
//! sends nothing for a while, sends too slowly, or takes too long in all is cut off (a slow
//! retrieval attack, in TUF's words), and the file is neither served whole nor cached.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ring::digest;
use tokio::sync::{mpsc, oneshot};

use crate::page::Sha256;

const CHUNK: usize = 64 * 1024;

/// What the bytes must be.
#[derive(Clone, Debug)]
pub struct Expected {
    /// For messages: the file name and the project whose page lists it.
    pub what: String,
    pub sha256: Sha256,
    /// Exact size when the page gives one (files); PEP 658 metadata files have only a hash.
    pub size: Option<u64>,
    /// Bytes read at most (endless data).
    pub limit: u64,
}

/// Time bounds on a download from the index (slow retrieval). Time counts only while the proxy
/// waits for the index, not while it waits for the installer to take what it already has, so a
/// slow installer does not make the index look slow.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// Longest wait for the response and for each next bytes; also the window the rate is
    /// measured over.
    pub stall: Duration,
    /// Longest wait for a whole download, response and body.
    pub deadline: Duration,
    /// Bytes per second a download must average over each `stall` window.
    pub min_rate: u64,
}

/// A download's progress against its [`Pace`].
struct Pacer {
    pace: Pace,
    waited: Duration,
    window_waited: Duration,
    window_bytes: u64,
}

impl Pacer {
    /// `waited`: how long the response took to come.
    fn new(pace: Pace, waited: Duration) -> Self {
        Pacer {
            pace,
            waited,
            window_waited: Duration::ZERO,
            window_bytes: 0,
        }
    }

    /// Accounts for `bytes` that came after `waited`.
    fn arrived(&mut self, bytes: usize, waited: Duration, what: &str) -> Result<(), String> {
        self.waited += waited;
        self.window_waited += waited;
        self.window_bytes += bytes as u64;
        if self.waited > self.pace.deadline {
            return Err(self.past_deadline(what));
        }
        if self.window_waited >= self.pace.stall {
            let rate = self.window_bytes as f64 / self.window_waited.as_secs_f64();
            if rate < self.pace.min_rate as f64 {
                return Err(format!(
                    "slow retrieval attack: {what} came at {rate:.0} bytes/s, below the minimum \
                     of {} bytes/s; the download was stopped",
                    self.pace.min_rate
                ));
            }
            self.window_waited = Duration::ZERO;
            self.window_bytes = 0;
        }
        Ok(())
    }

    fn past_deadline(&self, what: &str) -> String {
        format!(
            "slow retrieval attack: {what} was not complete after {:?}, the download deadline; \
             the download was stopped",
            self.pace.deadline
        )
    }

    /// The reason for a read that timed out.
    fn timed_out(&mut self, waited: Duration, what: &str) -> String {
        self.waited += waited;
        if self.waited > self.pace.deadline {
            return self.past_deadline(what);
        }
        format!(
            "slow retrieval attack: nothing of {what} arrived for {:?}; the download was stopped",
            self.pace.stall
        )
    }
}

fn is_timeout(error: &std::io::Error) -> bool {
    error.kind() == ErrorKind::TimedOut
        || error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<ureq::Error>())
            .is_some_and(|inner| matches!(inner, ureq::Error::Timeout(_)))
}

/// Why a download could not even start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Unreachable(String),
    #[error("{0}")]
    Refused(String),
}

/// A verified download under way: the size to announce and the body's chunks, of which the
/// last is an error if verification fails.
pub struct Download {
    pub size: Option<u64>,
    pub body: mpsc::Receiver<Result<Bytes, std::io::Error>>,
}

/// The content-addressed cache of verified files.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
    agent: ureq::Agent,
    pace: Pace,
}

impl FileStore {
    pub fn new(dir: PathBuf, pace: Pace) -> Self {
        // The deadline is kept by `Pacer`, not by ureq's global timeout, which would also count
        // the time the installer takes to read.
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(pace.stall))
            .timeout_recv_response(Some(pace.stall))
            .timeout_per_read(Some(pace.stall))
            .http_status_as_error(false)
            .user_agent(concat!("tufa-proxy/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        FileStore { dir, agent, pace }
    }

    fn path(&self, sha256: &Sha256) -> PathBuf {
        let sha = sha256.as_str();
        self.dir.join(&sha[..2]).join(sha)
    }

    /// Starts serving `expected` from the cache, or else from `url`. Returns once the source
    /// answered, so that an unreachable index or a wrong announced length still becomes an
    /// error status rather than a broken body.
    pub async fn fetch(&self, expected: Expected, url: String) -> Result<Download, StartError> {
        let store = self.clone();
        let (started, start) = oneshot::channel();
        let (sink, body) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || store.run(expected, &url, started, sink));
        let size = start
            .await
            .map_err(|_| StartError::Unreachable("the download task stopped".into()))??;
        Ok(Download { size, body })
    }

    fn run(
        &self,
        expected: Expected,
        url: &str,
        started: oneshot::Sender<Result<Option<u64>, StartError>>,
        sink: mpsc::Sender<Result<Bytes, std::io::Error>>,
    ) {
        let cached = self.path(&expected.sha256);
        match File::open(&cached) {
            Ok(file) => {
                let _ = started.send(Ok(expected.size));
                if let Err(reason) = pump(file, &expected, None, None, &sink) {
                    tracing::error!("cached copy refused and removed: {reason}");
                    let _ = std::fs::remove_file(&cached);
                    let _ = sink.blocking_send(Err(std::io::Error::other(reason)));
                }
                return;
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cache file {} not read: {e}", cached.display()),
        }
        let asked = Instant::now();
        let response = match self.agent.get(url).call() {
            Ok(response) => response,
            Err(e) => {
                let _ = started.send(Err(StartError::Unreachable(format!("fetching {url}: {e}"))));
                return;
            }
        };
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let error = format!("fetching {url}: HTTP status {status}");
            let _ = started.send(Err(if status >= 500 {
                StartError::Unreachable(error)
            } else {
                StartError::Refused(error)
            }));
            return;
        }
        let announced = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let (Some(announced), Some(size)) = (announced, expected.size)
            && announced != size
        {
            let reason = format!(
                "{} is {announced} bytes at {url}, but its verified page lists {size}: \
                 tampered or substituted",
                expected.what
            );
            tracing::error!("refused: {reason}");
            let _ = started.send(Err(StartError::Refused(reason)));
            return;
        }
        let _ = started.send(Ok(expected.size));
        let temp = cached.parent().and_then(|dir| {
            std::fs::create_dir_all(dir).ok()?;
            tempfile::Builder::new()
                .prefix(".tufa-proxy-")
                .tempfile_in(dir)
                .ok()
        });
        let reader = response.into_body().into_reader();
        let pacer = Pacer::new(self.pace, asked.elapsed());
        match pump(
            reader,
            &expected,
            temp.map(|t| (t, cached.as_path())),
            Some(pacer),
            &sink,
        ) {
            Ok(()) => {}
            Err(reason) => {
                tracing::error!("refused: {reason}");
                let _ = sink.blocking_send(Err(std::io::Error::other(reason)));
            }
        }
    }
}

/// Streams `source` into `sink` while checking it, holding the last chunk back until the check
/// passed; on success, persists the copy in `cache` (a temporary file and its final path).
/// With a `pacer`, a source too slow for it is cut off. `Err` carries the reason to log; the
/// caller ends the body with it. A sink whose receiver is gone (the installer hung up) ends the
/// copy quietly.
fn pump(
    mut source: impl Read,
    expected: &Expected,
    mut cache: Option<(tempfile::NamedTempFile, &Path)>,
    mut pacer: Option<Pacer>,
    sink: &mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> Result<(), String> {
    let what = &expected.what;
    let mut context = digest::Context::new(&digest::SHA256);
    let mut total: u64 = 0;
    let mut held: Option<Bytes> = None;
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let asked = Instant::now();
        let read = match source.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(match pacer.as_mut() {
                    Some(pacer) if is_timeout(&e) => pacer.timed_out(asked.elapsed(), what),
                    _ => format!("reading {what}: {e}"),
                });
            }
        };
        if let Some(pacer) = pacer.as_mut() {
            pacer.arrived(read, asked.elapsed(), what)?;
        }
        let chunk = &buffer[..read];
        total += read as u64;
        if total > expected.limit {
            return Err(match expected.size {
                Some(size) => format!(
                    "{what} is more than the {size} bytes its verified page lists: tampered \
                     or substituted"
                ),
                None => format!(
                    "endless data attack: {what} sent more than {} bytes",
                    expected.limit
                ),
            });
        }
        context.update(chunk);
        if let Some((file, _)) = cache.as_mut()
            && let Err(e) = file.write_all(chunk)
        {
            tracing::warn!("not caching {what}: {e}");
            cache = None;
        }
        if let Some(previous) = held.replace(Bytes::copy_from_slice(chunk))
            && sink.blocking_send(Ok(previous)).is_err()
        {
            return Ok(());
        }
    }
    if let Some(size) = expected.size
        && size != total
    {
        return Err(format!(
            "{what} is {total} bytes, but its verified page lists {size}: tampered or substituted"
        ));
    }
    if hex::encode(context.finish()) != expected.sha256.as_str() {
        return Err(format!(
            "{what} does not match its sha256 in the verified page: tampered or substituted"
        ));
    }
    if let Some((file, path)) = cache
        && let Err(e) = file.persist(path)
    {
        tracing::warn!("not caching {what}: {}", e.error);
    }
    if let Some(last) = held {
        let _ = sink.blocking_send(Ok(last));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected(content: &[u8], size: Option<u64>) -> Expected {
        Expected {
            what: "demo.whl of demo".into(),
            sha256: Sha256::new(&hex::encode(digest::digest(&digest::SHA256, content))).unwrap(),
            size,
            limit: size.unwrap_or(1 << 20),
        }
    }

    /// Runs `pump` and returns what reached the installer: the chunks, and whether the body
    /// ended in an error.
    fn run(source: &[u8], expected: &Expected, cache: Option<&Path>) -> (Vec<u8>, bool) {
        run_paced(source, expected, cache, None).0
    }

    /// Like `run`, with a pacer, and the reason the body ended in an error.
    fn run_paced(
        source: impl Read,
        expected: &Expected,
        cache: Option<&Path>,
        pacer: Option<Pacer>,
    ) -> ((Vec<u8>, bool), Option<String>) {
        let (sink, mut body) = mpsc::channel(1024);
        let temp = cache.map(|path| {
            (
                tempfile::NamedTempFile::new_in(path.parent().unwrap()).unwrap(),
                path,
            )
        });
        let result = pump(source, expected, temp, pacer, &sink);
        if let Err(reason) = &result {
            sink.blocking_send(Err(std::io::Error::other(reason.clone())))
                .unwrap();
        }
        drop(sink);
        let mut received = Vec::new();
        let mut failed = false;
        while let Some(item) = body.blocking_recv() {
            match item {
                Ok(chunk) => received.extend_from_slice(&chunk),
                Err(_) => failed = true,
            }
        }
        ((received, failed), result.err())
    }

    /// Gives `step` bytes of `content` per read, each after `delay`.
    struct Slow<'a> {
        content: &'a [u8],
        step: usize,
        delay: Duration,
    }

    impl Read for Slow<'_> {
        fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
            std::thread::sleep(self.delay);
            let n = self.step.min(self.content.len()).min(buffer.len());
            buffer[..n].copy_from_slice(&self.content[..n]);
            self.content = &self.content[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_source_below_the_minimum_rate_or_past_the_deadline_is_cut_off_and_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cached");
        let content = vec![7u8; 10_000];
        let pace = Pace {
            stall: Duration::from_millis(100),
            deadline: Duration::from_secs(60),
            min_rate: 1000,
        };
        let drip = Slow {
            content: &content,
            step: 1,
            delay: Duration::from_millis(20),
        };
        let pacer = Pacer::new(pace, Duration::ZERO);
        let ((received, failed), reason) = run_paced(
            drip,
            &expected(&content, Some(10_000)),
            Some(&path),
            Some(pacer),
        );
        assert!(failed && received.len() < 100, "{}", received.len());
        let reason = reason.unwrap();
        assert!(
            reason.starts_with("slow retrieval attack: demo.whl of demo came at ")
                && reason.contains("below the minimum of 1000 bytes/s"),
            "{reason}"
        );
        assert!(!path.exists());

        // Fast enough for the rate, too slow for the deadline.
        let pace = Pace {
            deadline: Duration::from_millis(300),
            ..pace
        };
        let steady = Slow {
            content: &content,
            step: 500,
            delay: Duration::from_millis(20),
        };
        let ((received, failed), reason) = run_paced(
            steady,
            &expected(&content, Some(10_000)),
            Some(&path),
            Some(Pacer::new(pace, Duration::ZERO)),
        );
        assert!(failed && received.len() < content.len());
        assert!(
            reason
                .unwrap()
                .contains("was not complete after 300ms, the download deadline")
        );
        assert!(!path.exists());

        // The same source within both bounds arrives whole and is cached.
        let pace = Pace {
            deadline: Duration::from_secs(60),
            ..pace
        };
        let steady = Slow {
            content: &content,
            step: 500,
            delay: Duration::from_millis(1),
        };
        let ((received, failed), reason) = run_paced(
            steady,
            &expected(&content, Some(10_000)),
            Some(&path),
            Some(Pacer::new(pace, Duration::ZERO)),
        );
        assert!(!failed, "{reason:?}");
        assert_eq!(received, content);
        assert_eq!(std::fs::read(&path).unwrap(), content);
    }

    #[test]
    fn a_matching_file_streams_whole_and_is_cached() {
        let dir = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let path = dir.path().join("cached");
        let (received, failed) = run(
            &content,
            &expected(&content, Some(content.len() as u64)),
            Some(&path),
        );
        assert!(!failed);
        assert_eq!(received, content);
        assert_eq!(std::fs::read(&path).unwrap(), content);
    }

    #[test]
    fn a_tampered_file_never_arrives_whole_and_is_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut tampered = content.clone();
        tampered[150_000] ^= 1;
        let path = dir.path().join("cached");
        for (source, size) in [
            (&tampered[..], Some(content.len() as u64)),
            (&content[..10], Some(content.len() as u64)),
            (&content[..], Some(100)),
            (&tampered[..], None),
        ] {
            let (received, failed) = run(source, &expected(&content, size), Some(&path));
            assert!(failed);
            assert!(received.len() < source.len(), "the last chunk is held back");
            assert!(!path.exists());
        }
        // Small files: nothing at all before the check.
        let (received, failed) = run(b"evil", &expected(b"good", Some(4)), None);
        assert!(failed && received.is_empty());
    }
}
