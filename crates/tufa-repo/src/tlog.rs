//! The repository's transparency log: one leaf ([`TimestampEntry`]) per timestamp it signs,
//! kept as C2SP tiles and entry bundles with a checkpoint signed by the log key (never the
//! online TUF key), and a proof file per timestamp version, all in the store under `log/`.
//!
//! Order, in the two batches a publish writes anyway: the new tiles and bundles, durably with
//! the snapshot; then `log/proof/<V>` and `log/checkpoint`, placed before `timestamp.json`. So
//! every timestamp a client can fetch has its proof, and every checkpoint its tiles. A crash
//! before the timestamp leaves a logged timestamp nobody was served, which the next one's higher
//! version follows.
//!
//! Only the entry bundles and tiles must be durable before the timestamp: they are the log.
//! The proof and the checkpoint are made from them and the log key, so the timestamp's batch
//! waits on the disk for `timestamp.json` alone ([`Store::write_rebuildable_then`]). A crash
//! that loses them, or leaves them incomplete, is repaired at the next start: the log resumes
//! from the bundles, and a served timestamp without a whole proof ([`Log::proves`]) is followed
//! at once by a new one with its proof.
//!
//! Witnesses ([`crate::witness`]) get each new checkpoint once its tiles are durable; an append
//! waits for their cosignatures only briefly, and late ones are added to the files when they
//! arrive.
//!
//! After a restart, or when another replica takes over publishing, the log resumes from the
//! newest durable state: the stored checkpoint (verified with the log key) and the partial tiles
//! of its size ([`Tree::resume`] checks them against the checkpoint's root), then any entries
//! the bundles hold past that size (an append whose checkpoint was never written, perhaps
//! already cosigned by a witness), which the next checkpoint includes. A checkpoint that is
//! missing or does not verify (a crash left it incomplete) is rebuilt from the bundles alone.
//!

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tufa_metadata::{Metadata, Root, Timestamp, TransparencyLog};
use tufa_tlog::{
    Checkpoint, Ed25519Key, Ed25519Signer, Hash, KeyType, Note, NoteSigner, SignedCheckpoint, Tile,
    TileHashReader, TileReader, TimestampEntry, Tree, VerifierKey, consistency_proof,
    inclusion_proof,
};

use crate::error::{Error, Result};
use crate::store::Store;
use crate::witness::{Reply, Submission, WitnessSettings, WitnessStatus, Witnesses};

/// The log's directory in the store (served at `/tuf/log/`).
pub const LOG_DIR: &str = "log";
/// The latest checkpoint, with the cosignatures gathered for it.
pub const CHECKPOINT_FILE: &str = "log/checkpoint";

/// `log/proof/<version>`: the proof that the timestamp of `version` is in the log.
pub fn proof_file(version: u64) -> String {
    format!("{LOG_DIR}/proof/{version}")
}

/// How many recent proofs are kept in memory to add late cosignatures to.
const RECENT_PROOFS: usize = 64;

fn log_error(what: impl std::fmt::Display) -> Error {
    Error::Config(format!("transparency log: {what}"))
}

/// The log's signing key, kept in a file as a C2SP signer key
/// (`PRIVATE+KEY+<origin>+<key ID>+<base64(0x01 || seed)>`, the `golang.org/x/mod/sumdb/note`
/// encoding) whose name is the log's origin.
pub struct LogKey {
    signer: NoteSigner<Ed25519Key>,
}

impl std::fmt::Debug for LogKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogKey")
            .field("verifier", &self.signer.verifier().to_string())
            .finish()
    }
}

impl LogKey {
    /// Generates a key for the log `origin` into `path` (readable by its owner only, never
    /// overwriting a file), its verifier key into `<path>.pub`, and returns the declaration for
    /// root.
    pub fn generate(path: &Path, origin: &str) -> Result<TransparencyLog> {
        let mut seed = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
            .map_err(|_| log_error("the system's random generator failed"))?;
        let key = Ed25519Key::from_seed(&seed).map_err(log_error)?;
        let verifier =
            VerifierKey::new(origin, KeyType::Ed25519, key.public_key()).map_err(log_error)?;
        let mut raw = vec![KeyType::Ed25519.byte()];
        raw.extend_from_slice(&seed);
        let text = format!(
            "PRIVATE+KEY+{origin}+{:08x}+{}\n",
            verifier.key_id(),
            STANDARD.encode(raw)
        );
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let io = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io {
                action,
                path,
                source,
            }
        };
        let mut file = options
            .open(path)
            .map_err(io("creating (an existing key is never overwritten)", path))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io("writing", path))?;
        let public = public_key_path(path);
        std::fs::write(&public, format!("{verifier}\n")).map_err(io("writing", &public))?;
        TransparencyLog::new(verifier).map_err(log_error)
    }

    /// Loads a key file written by [`LogKey::generate`] (or any C2SP Ed25519 signer key).
    pub fn load(path: &Path) -> Result<LogKey> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            action: "reading the log key",
            path: path.to_path_buf(),
            source,
        })?;
        let (name, key) = Ed25519Key::parse_signer_key(text.trim_end())
            .map_err(|e| log_error(format!("{}: {e}", path.display())))?;
        let signer = NoteSigner::new(&name, KeyType::Ed25519, key).map_err(log_error)?;
        Ok(LogKey { signer })
    }

    /// The declaration of this key's log, for root.
    pub fn declaration(&self) -> Result<TransparencyLog> {
        TransparencyLog::new(self.signer.verifier().clone()).map_err(log_error)
    }

    pub fn verifier(&self) -> &VerifierKey {
        self.signer.verifier()
    }

    /// Refuses a log key that is also one of root's keys (the online key among them): the log
    /// key signs what the online key's holder must not be able to forge alone.
    pub fn check_distinct_from(&self, root: &Root) -> Result<()> {
        check_distinct(self.signer.verifier(), root)
    }
}

/// Refuses a log key that is also one of root's keys (see [`LogKey::check_distinct_from`]).
pub fn check_distinct(key: &VerifierKey, root: &Root) -> Result<()> {
    let public = hex::encode(key.public_key());
    let reused = root
        .keys
        .iter()
        .find(|(_, key)| key.keyval.public.eq_ignore_ascii_case(&public));
    if let Some((id, _)) = reused {
        return Err(log_error(format!(
            "the log key is also root's key {id}: a log key must be a key of its own, \
             separate from the online and offline TUF keys"
        )));
    }
    Ok(())
}

/// `<path>.pub`: where [`LogKey::generate`] writes the verifier key.
pub fn public_key_path(path: &Path) -> PathBuf {
    let mut public = path.as_os_str().to_owned();
    public.push(".pub");
    public.into()
}

/// What the publisher needs to keep the log: its key and the witnesses to ask for
/// cosignatures.
#[derive(Clone, Debug)]
pub struct LogSettings {
    pub key: Arc<LogKey>,
    pub witnesses: WitnessSettings,
}

impl LogSettings {
    pub fn new(key: LogKey) -> Self {
        LogSettings {
            key: Arc::new(key),
            witnesses: WitnessSettings::default(),
        }
    }
}

/// The log as its publisher sees it, for `/status` and `/metrics`.
#[derive(Clone, Debug)]
pub struct LogStatus {
    pub origin: String,
    pub size: u64,
    pub witnesses: Vec<WitnessStatus>,
}

/// `log/proof/<V>`: the timestamp's entry, its inclusion in the checkpoint of size
/// `index + 1`, and that checkpoint's consistency with the one published before it.
#[derive(Clone, Debug)]
pub(crate) struct ProofDocument {
    pub version: u64,
    pub index: u64,
    pub entry: Vec<u8>,
    pub inclusion: Vec<Hash>,
    pub previous_size: u64,
    pub consistency: Vec<Hash>,
    pub checkpoint: Note,
}

impl ProofDocument {
    pub fn to_bytes(&self) -> Vec<u8> {
        let hashes = |hashes: &[Hash]| -> Vec<String> {
            hashes.iter().map(|h| STANDARD.encode(h)).collect()
        };
        let checkpoint = String::from_utf8_lossy(&self.checkpoint.to_bytes()).into_owned();
        let document = serde_json::json!({
            "index": self.index,
            "entry": STANDARD.encode(&self.entry),
            "inclusion": hashes(&self.inclusion),
            "previous_size": self.previous_size,
            "consistency": hashes(&self.consistency),
            "checkpoint": checkpoint,
        });
        let mut bytes = serde_json::to_vec(&document).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}

/// The log's state between appends.
struct State {
    tree: Tree,
    /// The tiles at the right edge of the tree: the partial tiles of its size and the tiles
    /// the last append completed. Everything the proofs of the next append read.
    edge: BTreeMap<Tile, Vec<u8>>,
    /// The latest checkpoint published, with its cosignatures.
    checkpoint: Option<SignedCheckpoint>,
    /// The version of the last timestamp logged.
    last_version: Option<u64>,
    /// Recent proofs, to add late cosignatures to.
    recent: VecDeque<ProofDocument>,
    /// Files no reader needs once the latest checkpoint is out, for the repository to remove
    /// after its grace period: the proof of the timestamp before, and the partial tiles and
    /// bundles a wider or full one replaced (c2sp.org/tlog-tiles lets a log delete those; a
    /// client falls back to the full tile).
    superseded: Vec<String>,
    /// The tiles and bundles of entries logged past the stored checkpoint, as rebuilt from
    /// their bundles at open: written again with the next append, which replaces a tile that a
    /// crash left incomplete and costs a read for one that is whole.
    unwritten: Vec<(String, Vec<u8>)>,
}

/// The log kept by a [`crate::Repository`].
pub(crate) struct Log {
    key: Arc<LogKey>,
    origin: String,
    state: Mutex<State>,
    witnesses: Witnesses,
}

/// Reads tiles from those in memory first, then from the store.
pub(crate) struct StoreTiles<'a> {
    pub store: &'a dyn Store,
    pub memory: &'a BTreeMap<Tile, Vec<u8>>,
}

impl TileReader for StoreTiles<'_> {
    fn read_tile(&self, tile: &Tile) -> std::result::Result<Vec<u8>, String> {
        if let Some(bytes) = self.memory.get(tile) {
            return Ok(bytes.clone());
        }
        let path = format!("{LOG_DIR}/{}", tile.path());
        match self.store.read(&path) {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err(format!("{path} is missing")),
            Err(error) => Err(error.to_string()),
        }
    }
}

/// The log this repository must keep, from root's declaration and the configured key: a root
/// that declares a log needs its key, and a key needs a root that declares it.
pub(crate) fn open_declared(
    store: &dyn Store,
    root: &Root,
    settings: Option<&LogSettings>,
) -> Result<Option<Log>> {
    let declared = root.transparency_log().map_err(log_error)?;
    match (declared, settings) {
        (None, None) => Ok(None),
        (Some(declared), None) => Err(log_error(format!(
            "root declares the log {:?}: start with its key (--log-key FILE); without it no \
             timestamp could be logged, and clients that check the log would refuse them all",
            declared.origin
        ))),
        (None, Some(settings)) => Err(log_error(format!(
            "a log key ({}) was given but root declares no transparency log: declare it with \
             `tufa roles prepare root --log-key` and have root signed",
            settings.key.verifier()
        ))),
        (Some(declared), Some(settings)) => {
            if &declared.key != settings.key.verifier() {
                return Err(log_error(format!(
                    "the log key given ({}) is not the one root declares ({})",
                    settings.key.verifier(),
                    declared.key
                )));
            }
            settings.key.check_distinct_from(root)?;
            Log::open(store, settings).map(Some)
        }
    }
}

impl Log {
    /// Resumes the log from the store: the checkpoint, verified with the log key, and the
    /// partial tiles of its size, checked against its root; then the entries bundled past it
    /// (all of them when the checkpoint is missing or damaged). An empty store starts an empty
    /// log.
    fn open(store: &dyn Store, settings: &LogSettings) -> Result<Log> {
        let verifier = settings.key.verifier().clone();
        let origin = verifier.name().to_string();
        let mut state = State {
            tree: Tree::new(),
            edge: BTreeMap::new(),
            checkpoint: None,
            last_version: None,
            recent: VecDeque::new(),
            superseded: Vec::new(),
            unwritten: Vec::new(),
        };
        let stored = match store.read(CHECKPOINT_FILE)? {
            Some(bytes) => match SignedCheckpoint::open(&bytes, std::slice::from_ref(&verifier)) {
                Ok(signed) => Some(signed),
                Err(reason) => {
                    // What a crash can leave of a checkpoint written unsynced: the entry
                    // bundles, which were durable before it, rebuild the log it named.
                    tracing::warn!(
                        %reason,
                        "{CHECKPOINT_FILE} does not verify with the log key {verifier}: \
                         rebuilding the log from its entry bundles"
                    );
                    None
                }
            },
            None => None,
        };
        if let Some(signed) = stored {
            if signed.checkpoint.origin != origin {
                return Err(log_error(format!(
                    "{CHECKPOINT_FILE} is of the log {:?}, the key is of {origin:?}",
                    signed.checkpoint.origin
                )));
            }
            let size = signed.checkpoint.size;
            let mut tiles = Vec::new();
            for tile in Tile::partial_tiles(size) {
                let path = format!("{LOG_DIR}/{}", tile.path());
                let bytes = store.read(&path)?.ok_or(Error::MissingFile(path))?;
                tiles.push((tile, bytes));
            }
            let bundle = match Tile::in_tree(0, size >> 8, size) {
                Some(tile) => {
                    let path = format!("{LOG_DIR}/{}", tile.entries_path());
                    store.read(&path)?.ok_or(Error::MissingFile(path))?
                }
                None => Vec::new(),
            };
            state.tree =
                Tree::resume(size, &signed.checkpoint.root, &tiles, &bundle).map_err(log_error)?;
            state.edge = tiles.into_iter().collect();
            state.checkpoint = Some(signed);
        }
        // Without a checkpoint, from the first bundle: entries logged before a crash took the
        // first checkpoint (or a damaged one) are kept, never logged over.
        state.unwritten = logged_past(store, &mut state.tree, &mut state.edge)?;
        state.last_version = last_entry(store, &state.tree)?.map(|e| e.version);
        state.superseded = left_over(store)?;
        Ok(Log {
            key: Arc::clone(&settings.key),
            origin,
            state: Mutex::new(state),
            witnesses: Witnesses::new(&settings.witnesses),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The version of the last timestamp logged: the next one must be above it, even when
    /// that timestamp was never served (a crash between the log and `timestamp.json`).
    pub fn last_version(&self) -> Option<u64> {
        self.state().last_version
    }

    pub fn status(&self) -> LogStatus {
        let size = self.state().tree.size();
        LogStatus {
            origin: self.origin.clone(),
            size,
            witnesses: self.witnesses.status(),
        }
    }

    /// Logs the signed timestamp in `timestamp_file` and writes it, in two batches. First the
    /// new tiles and bundles, durably with `alongside` (the snapshot the timestamp names and the
    /// bin roles it lists): from then on the entry is logged, a witness may cosign its size,
    /// and nothing else is ever appended at that size (a restart resumes from those tiles, see
    /// [`Log::open`]). Then a checkpoint is signed and offered to the witnesses (waiting at
    /// most [`WitnessSettings::wait`]), and the proof and the checkpoint are placed before
    /// `timestamp_file` ([`Store::write_rebuildable_then`]). Two batches are what publishing
    /// costs without a log (the snapshot, then the timestamp).
    pub fn append(
        &self,
        store: &dyn Store,
        timestamp: &Metadata<Timestamp>,
        alongside: &[(&str, &[u8])],
        timestamp_file: (String, Vec<u8>),
    ) -> Result<()> {
        let mut state = self.state();
        let earlier = self.witnesses.drain();
        let (mut files, _) = self.apply_replies(&mut state, earlier);
        // The checkpoint written below replaces the current one, cosignatures and all.
        files.retain(|(path, _)| path != CHECKPOINT_FILE);
        let entry = entry_for(timestamp, &timestamp_file.1);
        let mut tree = state.tree.clone();
        let appended = tree
            .append(std::slice::from_ref(&entry))
            .map_err(log_error)?;
        let new_files: Vec<(String, &[u8])> = appended
            .tiles
            .iter()
            .map(|(tile, bytes)| (format!("{LOG_DIR}/{}", tile.path()), bytes.as_slice()))
            .chain(appended.bundles.iter().map(|(tile, bytes)| {
                (
                    format!("{LOG_DIR}/{}", tile.entries_path()),
                    bytes.as_slice(),
                )
            }))
            .collect();
        let batch: Vec<(&str, &[u8])> = alongside
            .iter()
            .copied()
            .chain(new_files.iter().map(|(p, b)| (p.as_str(), *b)))
            .chain(
                state
                    .unwritten
                    .iter()
                    .map(|(p, b)| (p.as_str(), b.as_slice())),
            )
            .collect();
        store.write_immutable(&batch)?;
        drop(batch);

        // Logged: the tree moves on even if what follows fails, so that no other entry ever
        // takes this one's place.
        let size = appended.size;
        let previous_tree = std::mem::replace(&mut state.tree, tree);
        state.unwritten.clear();
        state.edge.extend(appended.tiles.iter().cloned());
        let logged_before = state.last_version.replace(timestamp.signed.version);
        // A wider partial tile holds every hash of a narrower one, and proofs are made against
        // the newest checkpoint: the narrower ones only serve clients for the grace period.
        // Kept, the 255 partial bundles of each tile would hold about 6 MB.
        for old in Tile::partial_tiles(previous_tree.size()) {
            let widened = appended.tiles.iter().any(|(new, _)| {
                new.level == old.level && new.index == old.index && new.width != old.width
            });
            if widened {
                state.superseded.push(format!("{LOG_DIR}/{}", old.path()));
                if old.level == 0 {
                    state
                        .superseded
                        .push(format!("{LOG_DIR}/{}", old.entries_path()));
                }
            }
        }
        for (tile, _) in appended.tiles.iter().filter(|(t, _)| !t.is_partial()) {
            state
                .superseded
                .extend(partial_versions(store, &tile.path())?);
            if tile.level == 0 {
                state
                    .superseded
                    .extend(partial_versions(store, &tile.entries_path())?);
            }
        }

        let reader = TileHashReader::new(
            size,
            StoreTiles {
                store,
                memory: &state.edge,
            },
        );
        let previous_size = state.checkpoint.as_ref().map_or(0, |c| c.checkpoint.size);
        let inclusion = inclusion_proof(&reader, appended.first_index, size).map_err(log_error)?;
        let consistency = consistency_proof(&reader, previous_size, size).map_err(log_error)?;
        let text = Checkpoint::new(&self.origin, size, appended.root).to_text();
        let signature = self.key.signer.sign(&text, 0).map_err(log_error)?;
        let mut note = Note {
            text,
            signatures: vec![signature],
        };
        let mut later = Vec::new();
        if !self.witnesses.is_empty() {
            let proof = |old: u64| {
                if old == previous_size {
                    Ok(consistency.clone())
                } else {
                    consistency_proof(&reader, old, size).map_err(|e| e.to_string())
                }
            };
            let submission = Submission {
                size,
                note: &note,
                previous_size,
                proof: &proof,
            };
            let sent = self.witnesses.submit(&submission, Instant::now());
            let deadline = Instant::now() + self.witnesses.wait_limit();
            let mut cosignatures = Vec::new();
            for reply in self.witnesses.wait(&submission, sent, deadline) {
                if reply.size == size {
                    let signatures = self.witnesses.record(&reply);
                    cosignatures.extend(self.witnesses.keep(&note.text, &self.origin, signatures));
                } else {
                    later.push(reply);
                }
            }
            add_cosignatures(&mut note, cosignatures);
        }
        drop(reader);
        let document = ProofDocument {
            version: timestamp.signed.version,
            index: appended.first_index,
            entry,
            inclusion,
            previous_size,
            consistency,
            checkpoint: note.clone(),
        };
        files.push((proof_file(document.version), document.to_bytes()));
        files.push((CHECKPOINT_FILE.to_string(), note.to_bytes()));
        store.write_rebuildable_then(&files, timestamp_file)?;

        state.edge.retain(|tile, _| {
            appended.tiles.iter().any(|(t, _)| t == tile)
                || Tile::partial_tiles(size).contains(tile)
        });
        if let Some(previous) = logged_before {
            state.superseded.push(proof_file(previous));
        }
        state.checkpoint = Some(SignedCheckpoint {
            checkpoint: Checkpoint::new(&self.origin, size, appended.root),
            note,
        });
        state.recent.push_back(document);
        while state.recent.len() > RECENT_PROOFS {
            state.recent.pop_front();
        }
        self.apply(store, &mut state, later)?;
        Ok(())
    }

    /// Whether `log/proof/<V>` of the timestamp `bytes` is whole: its entry is this timestamp's,
    /// included in a checkpoint the log key signed. A crash can lose the proof or leave it
    /// incomplete (it is written unsynced, see [`Log::append`]), and clients refuse a timestamp
    /// without one.
    pub fn proves(
        &self,
        store: &dyn Store,
        timestamp: &Metadata<Timestamp>,
        bytes: &[u8],
    ) -> Result<bool> {
        let Some(proof) = store.read(&proof_file(timestamp.signed.version))? else {
            return Ok(false);
        };
        let Ok(proof) = tufa_tlog::proof::LogProof::parse(&proof) else {
            return Ok(false);
        };
        let Ok(signed) =
            SignedCheckpoint::open(&proof.checkpoint, std::slice::from_ref(self.key.verifier()))
        else {
            return Ok(false);
        };
        Ok(proof.entry == entry_for(timestamp, bytes)
            && tufa_tlog::Policy::verify_entry(
                &signed.checkpoint,
                &proof.entry,
                proof.index,
                &proof.inclusion,
            )
            .is_ok())
    }

    /// The files superseded since the last call (see `State::superseded`).
    pub fn take_superseded(&self) -> Vec<String> {
        std::mem::take(&mut self.state().superseded)
    }

    /// Adds the cosignatures witnesses sent since the last append to the files they belong to,
    /// and submits the latest checkpoint again to witnesses that have not cosigned it (after a
    /// failure, once its back-off passed). Returns how many cosignatures were added.
    pub fn gather(&self, store: &dyn Store) -> Result<usize> {
        let mut state = self.state();
        let replies = self.witnesses.drain();
        let added = self.apply(store, &mut state, replies)?;
        let Some(current) = &state.checkpoint else {
            return Ok(added);
        };
        if self.witnesses.is_empty() {
            return Ok(added);
        }
        let size = current.checkpoint.size;
        let previous_size = state
            .recent
            .iter()
            .find(|d| d.index + 1 == size)
            .map_or(0, |d| d.previous_size);
        let reader = TileHashReader::new(
            size,
            StoreTiles {
                store,
                memory: &state.edge,
            },
        );
        let proof = |old: u64| consistency_proof(&reader, old, size).map_err(|e| e.to_string());
        self.witnesses.submit(
            &Submission {
                size,
                note: &Note {
                    text: current.note.text.clone(),
                    signatures: current.note.signatures.iter().take(1).cloned().collect(),
                },
                previous_size,
                proof: &proof,
            },
            Instant::now(),
        );
        Ok(added)
    }

    /// Adds the cosignatures in `replies` to the recent proofs and the latest checkpoint they
    /// belong to, and rewrites those files. Returns how many were added.
    fn apply(&self, store: &dyn Store, state: &mut State, replies: Vec<Reply>) -> Result<usize> {
        let (files, added) = self.apply_replies(state, replies);
        if !files.is_empty() {
            store.write_all(&files)?;
        }
        Ok(added)
    }

    /// [`Log::apply`] without the writing: the files to rewrite, and how many cosignatures
    /// were added.
    fn apply_replies(
        &self,
        state: &mut State,
        replies: Vec<Reply>,
    ) -> (Vec<(String, Vec<u8>)>, usize) {
        let mut proofs = BTreeSet::new();
        let mut checkpoint = false;
        let mut added = 0;
        for reply in replies {
            let signatures = self.witnesses.record(&reply);
            if signatures.is_empty() {
                continue;
            }
            let text = state
                .recent
                .iter()
                .find(|d| d.index + 1 == reply.size)
                .map(|d| d.checkpoint.text.clone());
            let Some(text) = text else {
                continue;
            };
            let kept = self.witnesses.keep(&text, &self.origin, signatures);
            for document in state
                .recent
                .iter_mut()
                .filter(|d| d.index + 1 == reply.size)
            {
                let count = add_cosignatures(&mut document.checkpoint, kept.clone());
                if count > 0 {
                    proofs.insert(document.version);
                    added += count;
                }
            }
            if let Some(current) = state
                .checkpoint
                .as_mut()
                .filter(|c| c.checkpoint.size == reply.size)
            {
                checkpoint |= add_cosignatures(&mut current.note, kept) > 0;
            }
        }
        let mut files: Vec<(String, Vec<u8>)> = state
            .recent
            .iter()
            .filter(|d| proofs.contains(&d.version))
            .map(|d| (proof_file(d.version), d.to_bytes()))
            .collect();
        if let (true, Some(current)) = (checkpoint, &state.checkpoint) {
            files.push((CHECKPOINT_FILE.to_string(), current.note.to_bytes()));
        }
        (files, added)
    }
}

/// The log entry of the signed timestamp `bytes`.
fn entry_for(timestamp: &Metadata<Timestamp>, bytes: &[u8]) -> Vec<u8> {
    let meta = &timestamp.signed.snapshot_meta;
    let snapshot_sha256 = meta
        .hashes
        .as_ref()
        .and_then(|h| h.get("sha256"))
        .and_then(|h| hex::decode(h.as_str()).ok())
        .and_then(|h| Hash::try_from(h).ok());
    TimestampEntry::of(
        bytes,
        timestamp.signed.version,
        meta.version,
        snapshot_sha256,
    )
    .to_bytes()
}

/// Adds each cosignature whose key (name and key ID) has not signed `note` yet, within the
/// note's signature limit. Returns how many were added.
fn add_cosignatures(note: &mut Note, signatures: Vec<tufa_tlog::NoteSignature>) -> usize {
    let mut added = 0;
    for signature in signatures {
        let signed = note
            .signatures
            .iter()
            .any(|s| s.name == signature.name && s.key_id == signature.key_id);
        if !signed && note.signatures.len() < tufa_tlog::note::MAX_SIGNATURES {
            note.signatures.push(signature);
            added += 1;
        }
    }
    added
}

/// Appends to `tree` the entries logged past its size: those of an append whose tiles were
/// written but whose checkpoint was not (a crash or a failed write in between, when a witness
/// may already have cosigned that size). The entry bundles are the record; a bundle a crash
/// left incomplete does not decode or does not extend the tree, and was never offered to a
/// witness. Returns the tiles and bundles rebuilt, adding the tiles to `edge`.
fn logged_past(
    store: &dyn Store,
    tree: &mut Tree,
    edge: &mut BTreeMap<Tile, Vec<u8>>,
) -> Result<Vec<(String, Vec<u8>)>> {
    let mut rebuilt = Vec::new();
    loop {
        let index = tree.size() >> 8;
        let have = tree.partial_entries().len();
        let full = Tile {
            level: 0,
            index,
            width: tufa_tlog::tiles::TILE_WIDTH,
        };
        let mut candidates = vec![full];
        let mut widths: Vec<u16> = partial_versions(store, &full.entries_path())?
            .iter()
            .filter_map(|path| path.rsplit('/').next()?.parse().ok())
            .filter(|&width| usize::from(width) > have && width < full.width)
            .collect();
        widths.sort_unstable_by(|a, b| b.cmp(a));
        candidates.extend(widths.into_iter().map(|width| Tile { width, ..full }));
        let mut extended = None;
        for tile in candidates {
            let path = format!("{LOG_DIR}/{}", tile.entries_path());
            let Some(bytes) = store.read(&path)? else {
                continue;
            };
            let Ok(entries) = tufa_tlog::tiles::decode_bundle(&tile, &bytes) else {
                continue;
            };
            if entries.len() > have && entries[..have] == *tree.partial_entries() {
                extended = Some((tile, entries));
                break;
            }
        }
        let Some((tile, entries)) = extended else {
            return Ok(rebuilt);
        };
        tracing::warn!(
            from = tree.size(),
            to = tree.size() + (entries.len() - have) as u64,
            "the transparency log resumes past its checkpoint: entries were logged whose \
             checkpoint was never written; the next publish signs one that includes them"
        );
        let appended = tree.append(&entries[have..]).map_err(log_error)?;
        for (tile, bytes) in &appended.tiles {
            rebuilt.push((format!("{LOG_DIR}/{}", tile.path()), bytes.clone()));
        }
        for (tile, bytes) in &appended.bundles {
            rebuilt.push((format!("{LOG_DIR}/{}", tile.entries_path()), bytes.clone()));
        }
        edge.extend(appended.tiles);
        if tile.is_partial() {
            return Ok(rebuilt);
        }
    }
}

/// What an earlier publisher superseded and may not have removed before it stopped.
fn left_over(store: &dyn Store) -> Result<Vec<String>> {
    Ok(superseded_files(&store.list(LOG_DIR)?)
        .into_iter()
        .collect())
}

/// Which of the log's files in `files` (relative to the store, as listed) no reader needs any
/// more and wait for removal: every proof but the newest timestamp's, and each partial tile or
/// bundle that a wider or full one replaced. What `tufa status` counts as awaiting removal.
pub fn superseded_files(files: &[String]) -> BTreeSet<String> {
    let proof_prefix = format!("{LOG_DIR}/proof/");
    let newest_proof = files
        .iter()
        .filter_map(|file| file.strip_prefix(&proof_prefix)?.parse::<u64>().ok())
        .max();
    let mut widest: BTreeMap<&str, u64> = BTreeMap::new();
    for file in files {
        let (tile, width) = match file.split_once(".p/") {
            Some((tile, width)) => (tile, width.parse().unwrap_or(0)),
            None => (file.as_str(), u64::MAX),
        };
        let entry = widest.entry(tile).or_insert(width);
        *entry = (*entry).max(width);
    }
    files
        .iter()
        .filter(|file| match file.strip_prefix(&proof_prefix) {
            Some(version) => version.parse::<u64>().ok() != newest_proof,
            None => file
                .split_once(".p/")
                .is_some_and(|(tile, width)| widest.get(tile).copied() > width.parse::<u64>().ok()),
        })
        .cloned()
        .collect()
}

/// The log's files in `store` that the log of `checkpoint` (the bytes of [`CHECKPOINT_FILE`])
/// had not written yet: tiles and bundles past its size or wider than its edge, and proofs of
/// later entries. A copy of a growing log (`tufa backup`) reads the checkpoint first and drops
/// these, so that the copy is that checkpoint's log: a wider edge tile left in it would make the
/// one the checkpoint needs look superseded, and a restart would retire it.
pub fn written_after(store: &dyn Store, checkpoint: &[u8]) -> Result<Vec<String>> {
    let note = Note::parse(checkpoint).map_err(log_error)?;
    let size = Checkpoint::parse(&note.text).map_err(log_error)?.size;
    let proof_prefix = format!("{LOG_DIR}/proof/");
    let mut after = Vec::new();
    for file in store.list(LOG_DIR)? {
        let Some(path) = file.strip_prefix(&format!("{LOG_DIR}/")) else {
            continue;
        };
        let later = if file.starts_with(&proof_prefix) {
            let index = store
                .read(&file)?
                .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
                .and_then(|proof| proof["index"].as_u64());
            index.is_none_or(|index| index >= size)
        } else {
            match Tile::parse_path(path) {
                Ok(tufa_tlog::TilePath::Hashes(tile) | tufa_tlog::TilePath::Entries(tile)) => {
                    Tile::in_tree(tile.level, tile.index, size)
                        .is_none_or(|reached| reached.width < tile.width)
                }
                Err(_) => false,
            }
        };
        if later {
            after.push(file);
        }
    }
    Ok(after)
}

/// Every partial width of the tile or bundle at `path` (relative to the log) in the store.
fn partial_versions(store: &dyn Store, path: &str) -> Result<Vec<String>> {
    store.list(&format!("{LOG_DIR}/{path}.p"))
}

/// The last entry of the log, parsed: the partial bundle's last, or the last full bundle's.
fn last_entry(store: &dyn Store, tree: &Tree) -> Result<Option<TimestampEntry>> {
    let size = tree.size();
    if size == 0 {
        return Ok(None);
    }
    let bytes = match tree.partial_entries().last() {
        Some(entry) => entry.clone(),
        None => {
            let tile = Tile::in_tree(0, (size >> 8) - 1, size)
                .ok_or_else(|| log_error("no last entry bundle"))?;
            let path = format!("{LOG_DIR}/{}", tile.entries_path());
            let bundle = store.read(&path)?.ok_or(Error::MissingFile(path))?;
            tufa_tlog::tiles::decode_bundle(&tile, &bundle)
                .map_err(log_error)?
                .pop()
                .ok_or_else(|| log_error("the last entry bundle is empty"))?
        }
    };
    TimestampEntry::parse(&bytes).map(Some).map_err(log_error)
}

/// A file of the log as served under `log/`: what it is decides its content type and caching.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFile {
    /// `checkpoint`: replaced by every append and when cosignatures arrive.
    Checkpoint,
    /// `proof/<V>`: rewritten when cosignatures arrive.
    Proof,
    /// `tile/...` or `tile/entries/...`: a full tile never changes.
    Tile { full: bool },
}

impl LogFile {
    /// Classifies a path relative to `log/`, accepting only the names the log writes (the
    /// canonical tile paths, decimal versions without leading zeroes): anything else, a path
    /// that climbs out (`..`) included, is `None`.
    pub fn parse(path: &str) -> Option<LogFile> {
        if path == "checkpoint" {
            return Some(LogFile::Checkpoint);
        }
        if let Some(version) = path.strip_prefix("proof/") {
            let canonical = !version.is_empty()
                && version.len() <= 20
                && version.bytes().all(|b| b.is_ascii_digit())
                && (version == "0" || !version.starts_with('0'));
            return (canonical && version.parse::<u64>().is_ok()).then_some(LogFile::Proof);
        }
        let tile = match Tile::parse_path(path).ok()? {
            tufa_tlog::TilePath::Hashes(tile) | tufa_tlog::TilePath::Entries(tile) => tile,
        };
        Some(LogFile::Tile {
            full: !tile.is_partial(),
        })
    }

    pub fn content_type(self) -> &'static str {
        match self {
            LogFile::Checkpoint => "text/plain; charset=utf-8",
            LogFile::Proof => "application/json",
            LogFile::Tile { .. } => "application/octet-stream",
        }
    }
}
