//! Durable file storage for published metadata and targets.
//!
//! Publishing must never expose a file that is partly written, and must never publish a file that
//! references another one not yet on disk. A file whose content may change under its name
//! (`timestamp.json`, offline roles) is written to a temporary name, synced, renamed into place,
//! and its directory synced. A file that never changes under its name (a consistent-snapshot
//! target or versioned metadata, [`Store::write_immutable`]) is written straight under its final
//! name: nothing refers to that name until the batch is durable, and a file a crash left
//! incomplete is found and replaced by the next write of the name. Large batches are made durable
//! with one `syncfs` rather than a sync per file and directory, which is what makes publishing
//! tens of thousands of files per second affordable.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::error::{Error, Result};

/// Where published files live. Paths are relative, `/`-separated, and come from [`crate::layout`],
/// never from user input.
pub trait Store: Send + Sync {
    /// Writes every file durably: when this returns, each is complete on disk under its final name.
    fn write_all(&self, files: &[(String, Vec<u8>)]) -> Result<()>;
    /// Writes files that never change under their name once written (consistent-snapshot
    /// targets `<sha256>.<name>`, and metadata `N.<role>.json`, whose versions are never signed
    /// again with other content), durably as [`Store::write_all`] does. Since nothing refers to
    /// such a name before this returns, a store may write it in place, without a temporary name;
    /// a crash can then leave a file incomplete under its final name, and the next write of that
    /// name must find and replace it.
    fn write_immutable(&self, files: &[(&str, &[u8])]) -> Result<()> {
        let owned: Vec<(String, Vec<u8>)> = files
            .iter()
            .map(|&(path, bytes)| (path.to_string(), bytes.to_vec()))
            .collect();
        self.write_all(&owned)
    }
    /// Writes files as [`Store::write_immutable`] does, except that they need be durable only
    /// once [`Store::flush`] returns, and says whether they wait for it: a bulk import writes its
    /// pages in parts and waits on the disk once, before anything that refers to them is signed,
    /// while the kernel writes each part out beside the making of the next.
    fn write_immutable_unflushed(&self, files: &[(&str, &[u8])]) -> Result<Flush> {
        self.write_immutable(files).map(|()| Flush::NotNeeded)
    }
    /// Makes durable every file that [`Store::write_immutable_unflushed`] left waiting.
    fn flush(&self) -> Result<()> {
        Ok(())
    }
    /// Writes `files`, then `last`, and never lets a reader see `last` before every one of
    /// `files`: the log's proof and checkpoint before the `timestamp.json` they prove. Only
    /// `last` is durable on return, as [`Store::write_all`] makes it: a crash may lose `files`
    /// or leave them incomplete, so they must be what the caller can rebuild from durable data
    /// (the log rebuilds them from its entry bundles). A store whose every write is durable
    /// writes them as `write_all` does.
    fn write_rebuildable_then(
        &self,
        files: &[(String, Vec<u8>)],
        last: (String, Vec<u8>),
    ) -> Result<()> {
        self.write_all(files)?;
        self.write_all(&[last])
    }
    /// Reads a file, or `None` when it does not exist.
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>>;
    /// Removes a file; a missing file is not an error.
    fn remove(&self, path: &str) -> Result<()>;
    /// Every file under `dir`, as paths relative to the store.
    fn list(&self, dir: &str) -> Result<Vec<String>>;
    /// Calls `visit` with every file [`Store::list`] names, and its length when the listing
    /// tells it (a bucket's does: asked one by one, each is a round trip), without holding them
    /// all where the store can: the pages of a large repository are millions of names. The
    /// listing ends early when `visit` says [`ControlFlow::Break`].
    fn list_each(&self, dir: &str, visit: &mut Visit<'_>) -> Result<()> {
        for file in self.list(dir)? {
            if visit(file, None).is_break() {
                break;
            }
        }
        Ok(())
    }
    /// When a file was last written, or `None` when it does not exist: evidence of the clock at
    /// the last signing that does not depend on any configured lifetime.
    fn modified(&self, path: &str) -> Result<Option<SystemTime>>;
    /// A file's length in bytes, or `None` when it does not exist: what removing it frees.
    fn size(&self, path: &str) -> Result<Option<u64>>;
    /// [`Store::size`] of each of `paths`, in their order. A store whose every question is a
    /// round trip (a bucket) asks them at once; one that answers from a local disk needs no
    /// threads for it.
    fn sizes(&self, paths: &[&str]) -> Vec<Result<Option<u64>>> {
        map_in_parallel(paths, REMOTE_QUESTIONS, |path| Ok(self.size(path))).unwrap_or_default()
    }
}

/// Lists `dirs` of `store` and hands their files to `take` `part` at a time (the last part may
/// be shorter), without holding more than a part; stops listing when `take` says
/// [`ControlFlow::Break`], and says whether it did.
pub fn list_in_parts(
    store: &dyn Store,
    dirs: &[&str],
    part: usize,
    mut take: impl FnMut(Vec<(String, Option<u64>)>) -> ControlFlow<()>,
) -> Result<ControlFlow<()>> {
    let mut listed = Vec::with_capacity(part);
    let mut flow = ControlFlow::Continue(());
    for dir in dirs {
        store.list_each(dir, &mut |file, length| {
            listed.push((file, length));
            if listed.len() >= part {
                flow = take(std::mem::replace(&mut listed, Vec::with_capacity(part)));
            }
            flow
        })?;
        if flow.is_break() {
            return Ok(flow);
        }
    }
    if listed.is_empty() {
        return Ok(flow);
    }
    Ok(take(listed))
}

/// Every file a [`Store::list_each`] names, for a store whose [`Store::list`] is built on it.
pub(crate) fn every_file(
    list_each: impl FnOnce(&mut Visit<'_>) -> Result<()>,
) -> Result<Vec<String>> {
    let mut files = Vec::new();
    list_each(&mut |file, _| {
        files.push(file);
        ControlFlow::Continue(())
    })?;
    Ok(files)
}

/// What [`Store::list_each`] calls with each file and its length, and whether to go on.
pub type Visit<'a> = dyn FnMut(String, Option<u64>) -> ControlFlow<()> + 'a;

/// Whether files [`Store::write_immutable_unflushed`] wrote wait for [`Store::flush`].
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush {
    Needed,
    NotNeeded,
}

/// How many questions (sizes) are sent to a remote store at once.
const REMOTE_QUESTIONS: usize = 16;

/// A shared store: what lets the index choose its store at start (`Arc<dyn Store>`, the data
/// directory or a bucket).
impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    fn write_all(&self, files: &[(String, Vec<u8>)]) -> Result<()> {
        (**self).write_all(files)
    }
    fn write_immutable(&self, files: &[(&str, &[u8])]) -> Result<()> {
        (**self).write_immutable(files)
    }
    fn write_immutable_unflushed(&self, files: &[(&str, &[u8])]) -> Result<Flush> {
        (**self).write_immutable_unflushed(files)
    }
    fn flush(&self) -> Result<()> {
        (**self).flush()
    }
    fn write_rebuildable_then(
        &self,
        files: &[(String, Vec<u8>)],
        last: (String, Vec<u8>),
    ) -> Result<()> {
        (**self).write_rebuildable_then(files, last)
    }
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        (**self).read(path)
    }
    fn remove(&self, path: &str) -> Result<()> {
        (**self).remove(path)
    }
    fn list(&self, dir: &str) -> Result<Vec<String>> {
        (**self).list(dir)
    }
    fn list_each(&self, dir: &str, visit: &mut Visit<'_>) -> Result<()> {
        (**self).list_each(dir, visit)
    }
    fn modified(&self, path: &str) -> Result<Option<SystemTime>> {
        (**self).modified(path)
    }
    fn size(&self, path: &str) -> Result<Option<u64>> {
        (**self).size(path)
    }
    fn sizes(&self, paths: &[&str]) -> Vec<Result<Option<u64>>> {
        (**self).sizes(paths)
    }
}

/// A [`Store`] on the local file system.
#[derive(Clone, Debug)]
pub struct FsStore {
    root: PathBuf,
    /// `syncfs` calls started after large batches written unflushed, so that the disk writes
    /// each batch while the caller makes the next (signs the next bin roles, renders the next
    /// pages); [`Store::flush`] waits for them.
    writeback: Arc<Mutex<Vec<std::thread::JoinHandle<Result<()>>>>>,
}

const TEMP_SUFFIX: &str = ".tufa-tmp";

/// How far before a store's opening a temporary file must have been written to be taken for
/// what a crash left: a file's time comes from a clock that may lag the one read at opening by
/// a tick.
const TEMPORARY_CLOCK_SLACK: std::time::Duration = std::time::Duration::from_secs(1);

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error + use<> {
    let path = path.to_path_buf();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}

/// A lock whose holder panicking leaves nothing inconsistent: lists only pushed to.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn sync_filesystem(root: &Path) -> Result<()> {
    File::open(root)
        .and_then(|root| rustix::fs::syncfs(&root).map_err(std::io::Error::from))
        .map_err(io("syncing the file system of", root))
}

impl FsStore {
    fn new(root: PathBuf) -> Self {
        FsStore {
            root,
            writeback: Arc::default(),
        }
    }

    fn sync_filesystem(&self) -> Result<()> {
        sync_filesystem(&self.root)
    }

    /// Starts a `syncfs` that [`Store::flush`] waits for, unless one is still running: a
    /// first publish writes a batch every few milliseconds, and what a running one misses, the
    /// flush syncs.
    fn start_writeback(&self) -> Result<()> {
        let mut started = lock(&self.writeback);
        if started.iter().any(|writeback| !writeback.is_finished()) {
            return Ok(());
        }
        let root = self.root.clone();
        let writeback = std::thread::Builder::new()
            .name("tufa-writeback".into())
            .spawn(move || sync_filesystem(&root))
            .map_err(io("starting a thread to sync", &self.root))?;
        started.push(writeback);
        Ok(())
    }

    /// A store at `root` for a process that is not the publisher (a command run beside a
    /// running server): unlike [`FsStore::open`] it leaves temporary files alone, since they may
    /// be the server's writes in progress.
    pub fn beside_publisher(root: impl Into<PathBuf>) -> Self {
        FsStore::new(root.into())
    }

    /// Opens (creating if needed) a store rooted at `root`, removing temporary files that a crash
    /// left behind: none of them was ever visible under its final name.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(io("creating", &root))?;
        let store = FsStore::new(root);
        store.remove_temporaries_older_than(None)?;
        Ok(store)
    }

    /// [`FsStore::open`] for a publisher that starts at once: the temporary files a crash left
    /// are removed by a thread beside it. They take only room: a file is visible under its
    /// final name only once complete, and a listing skips them. Walking a million pages' store
    /// took 14 s on this machine's disk, which a publisher's start waited for.
    ///
    /// The thread removes only files written before the store was opened (by more than
    /// [`TEMPORARY_CLOCK_SLACK`]), so never one of this store's writes in progress. Returns the
    /// thread, which says how many it removed.
    pub fn open_removing_temporaries_beside(
        root: impl Into<PathBuf>,
    ) -> Result<(Self, std::thread::JoinHandle<Result<usize>>)> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(io("creating", &root))?;
        let store = FsStore::new(root);
        let before = SystemTime::now() - TEMPORARY_CLOCK_SLACK;
        let sweeper = store.clone();
        let thread = std::thread::Builder::new()
            .name("tufa-temporaries".into())
            .spawn(move || {
                let removed = sweeper.remove_temporaries_older_than(Some(before));
                match &removed {
                    Ok(0) => {}
                    Ok(count) => tracing::info!(
                        count,
                        "removed the temporary files an earlier run left unfinished"
                    ),
                    Err(error) => tracing::warn!(
                        "removing the temporary files an earlier run left unfinished failed; \
                         they take room until the next start: {error}"
                    ),
                }
                removed
            })
            .map_err(io("starting a thread to look through", &store.root))?;
        Ok((store, thread))
    }

    /// Removes the temporary files under the root, only those last written before `before` when
    /// it is set. Removed as the walk finds them, not collected first: a repository of a million
    /// pages holds over a million files, whose paths alone would take a hundred MiB.
    fn remove_temporaries_older_than(&self, before: Option<SystemTime>) -> Result<usize> {
        let mut removed = 0;
        self.walk(&self.root, |path| {
            if !path.to_string_lossy().ends_with(TEMP_SUFFIX) {
                return Ok(ControlFlow::Continue(()));
            }
            if let Some(before) = before {
                match fs::metadata(&path).and_then(|meta| meta.modified()) {
                    Ok(modified) if modified < before => {}
                    Ok(_) => return Ok(ControlFlow::Continue(())),
                    Err(e) if e.kind() == ErrorKind::NotFound => {
                        return Ok(ControlFlow::Continue(()));
                    }
                    Err(e) => return Err(io("reading the metadata of", &path)(e)),
                }
            }
            match fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io("removing", &path)(e)),
            }
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(removed)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Calls `visit` with every file under `dir`, until it says [`ControlFlow::Break`].
    fn walk(
        &self,
        dir: &Path,
        mut visit: impl FnMut(PathBuf) -> Result<ControlFlow<()>>,
    ) -> Result<()> {
        // Depth first, one open listing per level: the directories still to list, kept as a
        // list instead, were every project's directory under `targets/simple/` at once, 100 MiB
        // of paths at a million projects.
        fn descend(dir: PathBuf, open: &mut Vec<(PathBuf, fs::ReadDir)>) -> Result<()> {
            match fs::read_dir(&dir) {
                Ok(entries) => open.push((dir, entries)),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io("listing", &dir)(e)),
            }
            Ok(())
        }
        let mut open = Vec::new();
        descend(dir.to_path_buf(), &mut open)?;
        while let Some((dir, entries)) = open.last_mut() {
            let Some(entry) = entries.next() else {
                open.pop();
                continue;
            };
            let entry = entry.map_err(io("listing", dir))?;
            let kind = entry.file_type().map_err(io("listing", dir))?;
            if kind.is_dir() {
                descend(entry.path(), &mut open)?;
            } else if visit(entry.path())?.is_break() {
                break;
            }
        }
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing", dir))
}

/// Runs `work` over every item of `items` on a few threads, stopping at the first error: a file
/// system commits concurrent syncs together, and creating and renaming files is mostly work in
/// the kernel, which runs on every core at once.
fn in_parallel<T: Sync>(
    items: &[T],
    threads: usize,
    work: impl Fn(&T) -> Result<()> + Sync,
) -> Result<()> {
    map_in_parallel(items, threads, work).map(drop)
}

/// `work` applied to every item on up to `threads` threads, the results in the items' order.
pub fn map_in_parallel<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    work: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    if items.len() <= 1 || threads <= 1 {
        return items.iter().map(&work).collect();
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(|| part.iter().map(&work).collect::<Result<Vec<R>>>()))
            .collect();
        let mut results = Vec::with_capacity(items.len());
        for worker in workers {
            results.extend(
                worker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?,
            );
        }
        Ok(results)
    })
}

/// Threads that wait on a disk flush each: a file system commits concurrent syncs together.
const SYNC_THREADS: usize = 8;

/// The cores this process may use, read once: the standard library reads the cgroup's files
/// anew on every call, three file reads for each batch a publish writes.
pub(crate) fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// Threads that create and rename files: one per core, since that work is the kernel's CPU time.
fn file_threads(files: usize) -> usize {
    // Below this many files a thread costs more than it saves.
    const PER_THREAD: usize = 256;
    cores().min(files / PER_THREAD).max(1)
}

/// Above this many files a batch is made durable with two `syncfs` calls instead of one `fsync`
/// per file and directory: importing a million project pages is then bound by writing, not by
/// waiting on the disk a million times.
const SYNCFS_BATCH: usize = 64;

/// A file on its way into place.
struct Staged {
    temp: PathBuf,
    target: PathBuf,
}

impl Staged {
    fn new(root: &Path, path: &str) -> Self {
        let target = root.join(path);
        let mut temp = target.clone().into_os_string();
        temp.push(TEMP_SUFFIX);
        Staged {
            temp: temp.into(),
            target,
        }
    }

    fn dir(&self) -> &Path {
        self.target.parent().unwrap_or(&self.target)
    }
}

impl FsStore {
    /// Creates the temporary file of `staged` with `bytes` in it, and its directory first when
    /// that is missing (tried only then: most files go into a directory that exists). Returns
    /// whether the directory was created.
    fn create_temp(&self, staged: &Staged, bytes: &[u8]) -> Result<bool> {
        let (mut file, created) = match File::create(&staged.temp) {
            Ok(file) => (file, false),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let dir = staged.dir();
                fs::create_dir_all(dir).map_err(io("creating", dir))?;
                let file = File::create(&staged.temp).map_err(io("creating", &staged.temp))?;
                (file, true)
            }
            Err(e) => return Err(io("creating", &staged.temp)(e)),
        };
        file.write_all(bytes).map_err(io("writing", &staged.temp))?;
        Ok(created)
    }

    /// Writes `files` through temporary names, renaming them into place one at a time in their
    /// order when `ordered`; `temps` ends up with every temporary file that may exist, for the
    /// caller to remove when this fails.
    fn write_staged(
        &self,
        files: &[(String, Vec<u8>)],
        ordered: bool,
        temps: &mut Vec<PathBuf>,
    ) -> Result<()> {
        let whole_filesystem = files.len() > SYNCFS_BATCH;
        let threads = file_threads(files.len());
        let staged: Vec<(Staged, &[u8])> = files
            .iter()
            .map(|(path, bytes)| (Staged::new(&self.root, path), bytes.as_slice()))
            .collect();
        // New directories' own entries must be durable too; `syncfs` covers them.
        let new_dirs = Mutex::new(BTreeSet::new());
        let created = in_parallel(&staged, threads, |(staged, bytes)| {
            if self.create_temp(staged, bytes)? && !whole_filesystem {
                let mut new_dirs = lock(&new_dirs);
                let mut ancestor = staged.dir().parent();
                while let Some(parent) = ancestor {
                    new_dirs.insert(parent.to_path_buf());
                    if parent == self.root {
                        break;
                    }
                    ancestor = parent.parent();
                }
            }
            Ok(())
        });
        temps.extend(staged.iter().map(|(staged, _)| staged.temp.clone()));
        created?;
        if whole_filesystem {
            self.sync_filesystem()?;
        } else {
            in_parallel(&staged, SYNC_THREADS, |(staged, _)| {
                File::open(&staged.temp)
                    .and_then(|f| f.sync_all())
                    .map_err(io("syncing", &staged.temp))
            })?;
        }
        // A rename that fails leaves the files before it in place and every later one under its
        // temporary name: those stay in `temps`.
        let rename_threads = if ordered { 1 } else { threads };
        let renamed = in_parallel(&staged, rename_threads, |(staged, _)| {
            fs::rename(&staged.temp, &staged.target).map_err(io("renaming", &staged.temp))
        });
        if renamed.is_err() {
            temps.retain(|temp| temp.exists());
            return renamed;
        }
        temps.clear();
        if whole_filesystem {
            self.sync_filesystem()
        } else {
            let mut dirs = new_dirs.into_inner().unwrap_or_else(|e| e.into_inner());
            dirs.extend(staged.iter().map(|(staged, _)| staged.dir().to_path_buf()));
            let dirs: Vec<PathBuf> = dirs.into_iter().collect();
            in_parallel(&dirs, SYNC_THREADS, |dir| sync_dir(dir))
        }
    }
}

/// Files whose directories one thread makes before the others write them.
const DIRECTORY_PART: usize = 256;

/// How far [`FsStore::with_directories_ahead`] has come.
#[derive(Default)]
struct Progress {
    /// Parts whose directories exist.
    made: usize,
    /// A thread failed: the others stop.
    stopped: bool,
}

impl FsStore {
    /// Makes `dir` unless it exists, and its parents when they are missing (tried only then).
    fn make_dir(&self, dir: &Path) -> Result<()> {
        match fs::create_dir(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                fs::create_dir_all(dir).map_err(io("creating", dir))
            }
            Err(e) => Err(io("creating", dir)(e)),
        }
    }

    /// Runs `place` over `files` on every core but one, each file once its directory exists,
    /// while the remaining thread makes the directories, a part ahead, and then joins them.
    ///
    /// Creating a name locks the directory it goes into. Every new page's directory goes into
    /// `targets/simple/`, and its file into that new directory: threads that each made both
    /// spent their time waiting on the shared directory's lock (at a million pages on this
    /// machine's ext4, 18% of the kernel's time spinning on it, and a million pages took 45 s
    /// bare). One thread making every directory and the others only files never wait on each
    /// other: 39 s bare, and a quarter less CPU.
    fn with_directories_ahead(
        &self,
        files: &[(&str, &[u8])],
        place: impl Fn(&str, &[u8]) -> Result<()> + Sync,
    ) -> Result<()> {
        let parts: Vec<&[(&str, &[u8])]> = files.chunks(DIRECTORY_PART).collect();
        let progress = Mutex::new(Progress::default());
        let changed = std::sync::Condvar::new();
        let stop = || {
            lock(&progress).stopped = true;
            changed.notify_all();
        };
        let make_dirs = || -> Result<()> {
            let mut last = None;
            for (index, part) in parts.iter().enumerate() {
                for (path, _) in *part {
                    let dir = Path::new(path).parent().unwrap_or(Path::new(""));
                    if last != Some(dir) {
                        self.make_dir(&self.root.join(dir))?;
                        last = Some(dir);
                    }
                }
                let mut progress = lock(&progress);
                if progress.stopped {
                    break;
                }
                progress.made = index + 1;
                changed.notify_all();
            }
            Ok(())
        };
        let next = std::sync::atomic::AtomicUsize::new(0);
        let write_files = || -> Result<()> {
            loop {
                let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(part) = parts.get(index) else {
                    return Ok(());
                };
                let mut waiting = lock(&progress);
                while waiting.made <= index && !waiting.stopped {
                    waiting = changed.wait(waiting).unwrap_or_else(|e| e.into_inner());
                }
                if waiting.stopped {
                    return Ok(());
                }
                drop(waiting);
                for (path, bytes) in *part {
                    place(path, bytes)?;
                }
            }
        };
        let stopping_on_error = |work: &(dyn Fn() -> Result<()> + Sync)| {
            let done = work();
            if done.is_err() {
                stop();
            }
            done
        };
        std::thread::scope(|scope| {
            // Once every directory exists the maker writes files too: a batch whose directories
            // were all there (bin roles, pages of known projects) is written on every core.
            let maker =
                scope.spawn(|| stopping_on_error(&|| make_dirs().and_then(|()| write_files())));
            let writers: Vec<_> = (0..cores().saturating_sub(1).max(1))
                .map(|_| scope.spawn(|| stopping_on_error(&write_files)))
                .collect();
            let mut done = Ok(());
            for thread in std::iter::once(maker).chain(writers) {
                let result = thread
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                if done.is_ok() {
                    done = result;
                }
            }
            done
        })
    }
}

/// What writing an immutable file found under its name.
enum Placed {
    /// Nothing: the file was created, and `new_dir` tells whether its directory was too.
    Created { new_dir: bool },
    /// The same bytes: a write repeated (a retry, or a page published again).
    Present,
    /// Other bytes: what a crash in the middle of writing the file left.
    Damaged,
}

impl FsStore {
    /// Creates `full` with `bytes` under its final name, and its directory first when that is
    /// missing (tried only then). A file it cannot finish is removed again: it created it, so
    /// nothing refers to it.
    fn place(&self, full: &Path, bytes: &[u8]) -> Result<Placed> {
        let create = || {
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(full)
        };
        let (mut file, new_dir) = match create() {
            Ok(file) => (file, false),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let dir = full.parent().unwrap_or(full);
                fs::create_dir_all(dir).map_err(io("creating", dir))?;
                (create().map_err(io("creating", full))?, true)
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let existing = fs::read(full).map_err(io("reading", full))?;
                return Ok(if existing == bytes {
                    Placed::Present
                } else {
                    Placed::Damaged
                });
            }
            Err(e) => return Err(io("creating", full)(e)),
        };
        if let Err(e) = file.write_all(bytes) {
            drop(file);
            let _ = fs::remove_file(full);
            return Err(io("writing", full)(e));
        }
        Ok(Placed::Created { new_dir })
    }

    /// [`Store::write_immutable`]: every file in place on a few threads, the damaged ones
    /// replaced through temporary names, then the whole batch made durable at once, or, when
    /// `may_defer` and the batch is large enough for `syncfs`, at [`Store::flush`].
    fn place_all(&self, files: &[(&str, &[u8])], may_defer: bool) -> Result<Flush> {
        let whole_filesystem = files.len() > SYNCFS_BATCH;
        // Files and directories to sync one by one when the batch is too small for `syncfs`.
        let to_sync = Mutex::new((Vec::new(), BTreeSet::new()));
        let damaged = Mutex::new(Vec::new());
        let place = |path: &str, bytes: &[u8]| -> Result<Option<(PathBuf, Placed)>> {
            let full = self.root.join(path);
            let placed = self.place(&full, bytes)?;
            if let Placed::Damaged = placed {
                tracing::warn!(
                    file = %full.display(),
                    "replacing a file that a crash left incomplete under its final name"
                );
                lock(&damaged).push((path.to_string(), bytes.to_vec()));
                return Ok(None);
            }
            Ok(Some((full, placed)))
        };
        if whole_filesystem {
            self.with_directories_ahead(files, |path, bytes| place(path, bytes).map(drop))?;
        } else {
            in_parallel(files, file_threads(files.len()), |&(path, bytes)| {
                let Some((full, placed)) = place(path, bytes)? else {
                    return Ok(());
                };
                let mut to_sync = lock(&to_sync);
                let (synced_files, dirs) = &mut *to_sync;
                let dir = full.parent().unwrap_or(&full).to_path_buf();
                if let Placed::Created { new_dir: true } = placed {
                    // A new directory's own entry must be durable too, up to the first one that
                    // existed.
                    let mut ancestor = dir.parent();
                    while let Some(parent) = ancestor {
                        dirs.insert(parent.to_path_buf());
                        if parent == self.root {
                            break;
                        }
                        ancestor = parent.parent();
                    }
                }
                dirs.insert(dir);
                synced_files.push(full);
                Ok(())
            })?;
        }
        let damaged = damaged.into_inner().unwrap_or_else(|e| e.into_inner());
        if !damaged.is_empty() {
            self.write_all(&damaged)?;
        }
        if whole_filesystem {
            if may_defer {
                return Ok(Flush::Needed);
            }
            return self.sync_filesystem().map(|()| Flush::NotNeeded);
        }
        // The files and their directories in one wave: nothing refers to these files until
        // the caller's next write, so the order in which their bytes and their names reach the
        // disk does not matter, only that all have when this returns. A publish waits on the
        // disk once here instead of twice.
        let (mut synced, dirs) = to_sync.into_inner().unwrap_or_else(|e| e.into_inner());
        synced.extend(dirs);
        in_parallel(&synced, SYNC_THREADS, |path| {
            File::open(path)
                .and_then(|f| f.sync_all())
                .map_err(io("syncing", path))
        })?;
        Ok(Flush::NotNeeded)
    }
}

impl FsStore {
    /// [`Store::write_all`], in order when `ordered` (see [`FsStore::write_staged`]).
    fn write_batch(&self, files: &[(String, Vec<u8>)], ordered: bool) -> Result<()> {
        let mut temps = Vec::new();
        let written = self.write_staged(files, ordered, &mut temps);
        if written.is_err() {
            for temp in temps {
                let _ = fs::remove_file(temp);
            }
        }
        written
    }
}

impl Store for FsStore {
    /// Writes in place (see [`Store::write_immutable`]): a page or bin role costs the creation of
    /// one file instead of a temporary file, its rename and a second `syncfs`.
    fn write_immutable(&self, files: &[(&str, &[u8])]) -> Result<()> {
        self.place_all(files, false).map(drop)
    }

    /// A batch small enough to be synced file by file is, at once: a `syncfs` at the flush
    /// would wait on everything else the file system has to write.
    fn write_immutable_unflushed(&self, files: &[(&str, &[u8])]) -> Result<Flush> {
        let flush = self.place_all(files, true)?;
        if flush == Flush::Needed {
            self.start_writeback()?;
        }
        Ok(flush)
    }

    /// Waits for the writebacks started so far, then syncs what was written since the last
    /// one started.
    fn flush(&self) -> Result<()> {
        let started = std::mem::take(&mut *lock(&self.writeback));
        for writeback in started {
            writeback
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        }
        self.sync_filesystem()
    }

    /// A batch that fails removes the temporary files it made, so that a disk that keeps failing
    /// does not fill up with them until the next start.
    fn write_all(&self, files: &[(String, Vec<u8>)]) -> Result<()> {
        self.write_batch(files, false)
    }

    /// `files` renamed into place unsynced, one after another, then `last` written as
    /// [`Store::write_all`] writes it: publishing a timestamp waits on the disk for one file, as
    /// it does without a log, instead of for three files in three directories.
    fn write_rebuildable_then(
        &self,
        files: &[(String, Vec<u8>)],
        last: (String, Vec<u8>),
    ) -> Result<()> {
        for (path, bytes) in files {
            let staged = Staged::new(&self.root, path);
            let written = self.create_temp(&staged, bytes).and_then(|_| {
                fs::rename(&staged.temp, &staged.target).map_err(io("renaming", &staged.temp))
            });
            if written.is_err() {
                let _ = fs::remove_file(&staged.temp);
                return written;
            }
        }
        self.write_all(&[last])
    }

    fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let full = self.root.join(path);
        match fs::read(&full) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("reading", &full)(e)),
        }
    }

    fn remove(&self, path: &str) -> Result<()> {
        let full = self.root.join(path);
        match fs::remove_file(&full) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(io("removing", &full)(e)),
            _ => Ok(()),
        }
    }

    fn modified(&self, path: &str) -> Result<Option<SystemTime>> {
        let full = self.root.join(path);
        match fs::metadata(&full).and_then(|m| m.modified()) {
            Ok(time) => Ok(Some(time)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("reading the time of", &full)(e)),
        }
    }

    fn size(&self, path: &str) -> Result<Option<u64>> {
        let full = self.root.join(path);
        match fs::metadata(&full) {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("reading the size of", &full)(e)),
        }
    }

    /// One `stat` after another: each takes microseconds, less than starting a thread.
    fn sizes(&self, paths: &[&str]) -> Vec<Result<Option<u64>>> {
        paths.iter().map(|path| self.size(path)).collect()
    }

    fn list(&self, dir: &str) -> Result<Vec<String>> {
        every_file(|visit| self.list_each(dir, visit))
    }

    /// Without lengths: a directory listing does not hold them, and asking costs a `stat` per
    /// file where most are never retired.
    fn list_each(&self, dir: &str, visit: &mut Visit<'_>) -> Result<()> {
        self.walk(&self.root.join(dir), |path| {
            if let Ok(relative) = path.strip_prefix(&self.root) {
                let relative = relative.to_string_lossy().replace('\\', "/");
                if !relative.ends_with(TEMP_SUFFIX) {
                    return Ok(visit(relative, None));
                }
            }
            Ok(ControlFlow::Continue(()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn borrowed(files: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
        files
            .iter()
            .map(|(path, bytes)| (path.as_str(), bytes.as_slice()))
            .collect()
    }

    #[test]
    fn listing_finds_every_file_at_every_depth_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let files = [
            "targets/simple/a/1.index.json",
            "targets/simple/a/2.index.json",
            "targets/simple/b/3.index.json",
            "targets/top.json",
            "targets/deep/er/and/deeper/file",
        ];
        for file in files {
            let path = dir.path().join(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, file).unwrap();
        }
        fs::create_dir_all(dir.path().join("targets/simple/empty")).unwrap();
        fs::create_dir_all(dir.path().join("metadata")).unwrap();
        fs::write(dir.path().join("metadata/1.root.json"), "{}").unwrap();
        let mut listed = store.list("targets").unwrap();
        listed.sort();
        let mut expected = files.to_vec();
        expected.sort();
        assert_eq!(listed, expected);
        assert_eq!(store.list("missing").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_listing_in_parts_hands_over_every_file_and_stops_when_told() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let files: Vec<(String, Vec<u8>)> = (0..25)
            .map(|n| (format!("{}/{n}", ["a", "b", "c"][n % 3]), vec![]))
            .collect();
        store.write_all(&files).unwrap();
        let mut sizes = Vec::new();
        let mut handed = BTreeSet::new();
        let flow = list_in_parts(&store, &["a", "b", "c", "missing"], 10, |part| {
            sizes.push(part.len());
            handed.extend(part.into_iter().map(|(file, _)| file));
            ControlFlow::Continue(())
        })
        .unwrap();
        assert!(flow.is_continue());
        assert_eq!(sizes, [10, 10, 5]);
        assert_eq!(handed.len(), 25);

        let mut parts = 0;
        let flow = list_in_parts(&store, &["a", "b", "c"], 4, |_| {
            parts += 1;
            ControlFlow::Break(())
        })
        .unwrap();
        assert!(flow.is_break());
        assert_eq!(
            parts, 1,
            "nothing is listed after the first part is refused"
        );
    }

    #[test]
    fn writes_are_complete_and_leftover_temporaries_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        store
            .write_all(&[
                ("a/b/c.json".into(), b"one".to_vec()),
                ("d.json".into(), b"two".to_vec()),
            ])
            .unwrap();
        assert_eq!(store.read("a/b/c.json").unwrap().unwrap(), b"one");
        assert_eq!(store.read("missing").unwrap(), None);
        fs::write(dir.path().join("a/b/x.json.tufa-tmp"), b"partial").unwrap();
        let mut listed = store.list("").unwrap();
        listed.sort();
        assert_eq!(listed, ["a/b/c.json", "d.json"]);
        FsStore::open(dir.path()).unwrap();
        assert!(!dir.path().join("a/b/x.json.tufa-tmp").exists());
        store.remove("d.json").unwrap();
        store.remove("d.json").unwrap();
        assert_eq!(store.read("d.json").unwrap(), None);
    }

    #[test]
    fn a_publishers_store_removes_what_a_crash_left_beside_it_and_never_its_own_writes() {
        let dir = tempfile::tempdir().unwrap();
        let left = dir.path().join("targets/simple/a/0a.index.json.tufa-tmp");
        fs::create_dir_all(left.parent().unwrap()).unwrap();
        fs::write(&left, b"partial").unwrap();
        let an_hour_ago = SystemTime::now() - std::time::Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(&left)
            .unwrap()
            .set_modified(an_hour_ago)
            .unwrap();
        // A write in progress as the store opens (another process's, or one the clock puts
        // there): written within the slack.
        let own = dir.path().join("metadata/timestamp.json.tufa-tmp");
        fs::create_dir_all(own.parent().unwrap()).unwrap();
        fs::write(&own, b"in progress").unwrap();
        let (store, sweeper) = FsStore::open_removing_temporaries_beside(dir.path()).unwrap();
        assert_eq!(sweeper.join().unwrap().unwrap(), 1);
        assert!(!left.exists(), "what the crash left is removed");
        assert!(own.exists(), "a write in progress is left alone");
        store
            .write_all(&[("metadata/timestamp.json".into(), b"{}".to_vec())])
            .unwrap();
        assert_eq!(
            store.read("metadata/timestamp.json").unwrap().unwrap(),
            b"{}"
        );
    }

    #[test]
    fn immutable_files_are_written_in_place_and_one_a_crash_left_incomplete_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let damaged = "targets/simple/a/0a.index.json";
        // One file is synced file by file, a large batch by `syncfs`.
        for batch in [1, SYNCFS_BATCH + 1] {
            // What a crash in the middle of writing leaves: the final name, part of the bytes.
            fs::create_dir_all(dir.path().join("targets/simple/a")).unwrap();
            fs::write(dir.path().join(damaged), b"{\"fi").unwrap();
            let mut files: Vec<(String, Vec<u8>)> = (0..batch)
                .map(|n| {
                    let path = format!("targets/simple/p{batch}-{n}/0b.index.json");
                    (path, format!("page {n}").into_bytes())
                })
                .collect();
            files.push((damaged.into(), b"{\"files\":[]}".to_vec()));
            let borrowed = borrowed(&files);
            store.write_immutable(&borrowed).unwrap();
            // The same files again, as a retry writes them: found complete and kept.
            store.write_immutable(&borrowed).unwrap();
            for (path, bytes) in &files {
                assert_eq!(&store.read(path).unwrap().unwrap(), bytes, "{path}");
            }
        }
        let mut files = Vec::new();
        store
            .walk(dir.path(), |path| {
                files.push(path);
                Ok(ControlFlow::Continue(()))
            })
            .unwrap();
        assert!(!files.is_empty());
        assert!(
            files
                .iter()
                .all(|path| !path.to_string_lossy().ends_with(TEMP_SUFFIX))
        );
    }

    #[test]
    fn a_large_batch_makes_its_directories_ahead_of_its_files_and_stops_at_the_first_failure() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let batch = |name: &str| -> Vec<(String, Vec<u8>)> {
            (0..DIRECTORY_PART * 3 + 7)
                .map(|n| {
                    // New directories two levels deep, and runs of files sharing one.
                    let path = format!("targets/{name}/{}/{n}.index.json", n / 3);
                    (path, format!("{name} {n}").into_bytes())
                })
                .collect()
        };
        let write = |files: &[(String, Vec<u8>)]| store.write_immutable(&borrowed(files));
        let written = batch("fine");
        write(&written).unwrap();
        for (path, bytes) in &written {
            assert_eq!(&store.read(path).unwrap().unwrap(), bytes, "{path}");
        }

        // A directory that cannot be made (a file holds its parent's name), late in the batch.
        fs::write(dir.path().join("targets/blocked"), b"a file").unwrap();
        let mut unmakeable = batch("before-the-directory");
        unmakeable.insert(
            DIRECTORY_PART * 2,
            ("targets/blocked/sub/1.index.json".into(), b"x".to_vec()),
        );
        let error = write(&unmakeable).unwrap_err().to_string();
        assert!(error.contains("targets/blocked/sub"), "{error}");

        // A file that cannot be created in a directory that exists: a directory holds its name.
        let mut uncreatable = batch("before-the-file");
        let taken = "targets/taken/1.index.json";
        fs::create_dir_all(dir.path().join(taken)).unwrap();
        uncreatable.insert(DIRECTORY_PART + 1, (taken.into(), b"x".to_vec()));
        let error = write(&uncreatable).unwrap_err().to_string();
        assert!(error.contains(taken), "{error}");
    }

    #[test]
    fn a_large_batch_written_unflushed_waits_for_the_flush_and_a_small_one_is_durable_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let batch = |name: &str, count: usize| -> Vec<(String, Vec<u8>)> {
            (0..count)
                .map(|n| {
                    (
                        format!("targets/simple/{name}-{n}/0c.index.json"),
                        vec![b'p'; n],
                    )
                })
                .collect()
        };
        let write = |files: &[(String, Vec<u8>)]| {
            store.write_immutable_unflushed(&borrowed(files)).unwrap()
        };
        let small = batch("small", SYNCFS_BATCH);
        assert_eq!(write(&small), Flush::NotNeeded);
        assert!(lock(&store.writeback).is_empty(), "nothing to wait for");

        let large: Vec<_> = (0..3)
            .map(|part| batch(&format!("large{part}"), SYNCFS_BATCH + 1))
            .collect();
        for part in &large {
            assert_eq!(write(part), Flush::Needed);
            let started = lock(&store.writeback);
            assert!(!started.is_empty(), "a writeback runs or ran");
            assert!(started.iter().filter(|w| !w.is_finished()).count() <= 1);
        }
        store.flush().unwrap();
        assert!(
            lock(&store.writeback).is_empty(),
            "the flush waited for them"
        );
        for (path, bytes) in small.iter().chain(large.iter().flatten()) {
            assert_eq!(&store.read(path).unwrap().unwrap(), bytes, "{path}");
        }
    }
}
