//! C2SP tlog-checkpoint: the note text of a log's signed tree head.
//!
//! From c2sp.org/tlog-checkpoint: "a sequence of at least three non-empty lines": the origin
//! ("MUST be non-empty"), the tree size ("ASCII decimal ... with no leading zeroes (unless the
//! tree is empty ...)"), the root hash ("the base64 encoding of the root of the RFC 6962 Merkle
//! hash tree"), then optional extension lines, which "MUST be non-empty".

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::merkle::Hash;
use crate::note::{MAX_TEXT_LINES, Note, NoteError, NoteSignature, VerifierKey};

/// A log's tree head: origin, size and root hash, with any extension lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    pub extensions: Vec<String>,
}

impl Checkpoint {
    pub fn new(origin: &str, size: u64, root: Hash) -> Self {
        Checkpoint {
            origin: origin.into(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// The note text: one line each for origin, size, base64 root and every extension.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        );
        for line in &self.extensions {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// Parses checkpoint note text, accepting only the one canonical spelling of each field.
    pub fn parse(text: &str) -> Result<Checkpoint, NoteError> {
        let bad = |reason: &str| NoteError::BadCheckpoint(reason.into());
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("the text does not end in a newline"))?;
        let lines: Vec<&str> = body.split('\n').collect();
        if lines.len() > MAX_TEXT_LINES {
            return Err(NoteError::TooManyLines {
                count: lines.len(),
                max: MAX_TEXT_LINES,
            });
        }
        let [origin, size, root, extensions @ ..] = lines.as_slice() else {
            return Err(bad("fewer than three lines (origin, size, root hash)"));
        };
        if origin.is_empty() {
            return Err(bad("the origin line is empty"));
        }
        if size.is_empty()
            || size.len() > 20
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(bad("the tree size is not a decimal without leading zeroes"));
        }
        let size: u64 = size
            .parse()
            .map_err(|_| bad("the tree size does not fit 64 bits"))?;
        let root: Hash = STANDARD
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| bad("the root hash is not the base64 of 32 bytes"))?;
        if extensions.iter().any(|l| l.is_empty()) {
            return Err(bad("an extension line is empty"));
        }
        let checkpoint = Checkpoint {
            origin: (*origin).into(),
            size,
            root,
            extensions: extensions.iter().map(|l| (*l).into()).collect(),
        };
        // Base64 with other padding bits, for one, decodes to the same root: only the canonical
        // text is the text that was signed and that others will compare.
        if checkpoint.to_text() != text {
            return Err(bad("the root hash is not canonical base64"));
        }
        Ok(checkpoint)
    }
}

/// A checkpoint with the signed note it came in, its log signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub note: Note,
}

impl SignedCheckpoint {
    /// Parses a checkpoint note and verifies it against the log's key(s) (unknown signatures,
    /// such as cosignatures, are kept but not checked here).
    pub fn open(bytes: &[u8], log_keys: &[VerifierKey]) -> Result<Self, NoteError> {
        let note = Note::parse(bytes)?;
        note.verify(log_keys)?;
        Ok(SignedCheckpoint {
            checkpoint: Checkpoint::parse(&note.text)?,
            note,
        })
    }

    /// Adds signatures (cosignatures a witness returned) to the note, once each.
    pub fn add_signatures(&mut self, signatures: impl IntoIterator<Item = NoteSignature>) {
        for sig in signatures {
            if !self.note.signatures.contains(&sig) {
                self.note.signatures.push(sig);
            }
        }
    }
}
