//! `POST /legacy/`: the upload API twine and `uv publish` speak (Warehouse's `forklift/legacy.py`).
//!
//! The file is streamed to disk while its digests are computed, never held in memory. What the
//! index records comes from the file itself (name, version, core metadata), checked against the
//! file name and the form fields. The upload is acknowledged only after the file and its database
//! rows are durable; every refusal leaves the data directory as it was.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::multipart::{Field, Multipart};
use axum::extract::{FromRequest, Request};
use blake2::Digest;
use tokio::io::AsyncWriteExt;

use crate::blobs::Blobs;
use crate::coremeta::CoreMetadata;
use crate::db::{
    AddRefused, Added, Database, FileRecord, Identity, NewFile, NewProvenance, now_micros,
};
use crate::dist::{DistFilename, DistKind, MAX_PROJECT_NAME_LEN};
use crate::error::{Error, Invalid};
use crate::integrity::Reserved;
use crate::name::{ProjectName, Version};

type Blake2b256 = blake2::Blake2b<blake2::digest::consts::U32>;

/// The form fields the index reads; only these are kept in memory. Everything else the index
/// takes from the file itself, so other fields are read, bounded, and dropped.
const KEPT_FIELDS: [&str; 8] = [
    ":action",
    "attestations",
    "name",
    "version",
    "filetype",
    "md5_digest",
    "sha256_digest",
    "blake2_256_digest",
];
/// A kept field's limit: names, versions, digests and the like are far shorter.
const MAX_KEPT_FIELD_BYTES: u64 = 4 * 1024;
/// The long description is core metadata's body, which the index refuses beyond 16 MiB
/// (`coremeta`), so a longer one could not match the file's; PyPI sets no limit of its own on it.
const MAX_DESCRIPTION_BYTES: u64 = 16 * 1024 * 1024;
/// Any other field: PyPI limits only `summary` (512 characters); the longest real values are
/// whole license texts in `license`, tens of KiB.
const MAX_FIELD_BYTES: u64 = 1024 * 1024;
/// All fields but the file together: the description at its limit plus as much again.
const MAX_FORM_TEXT_BYTES: u64 = 2 * MAX_DESCRIPTION_BYTES;
/// Fields in one form: each classifier, dependency and project URL is a field of its own, and
/// large projects send a few hundred.
const MAX_FORM_FIELDS: usize = 10_000;
/// Multipart boundaries and part headers, per field: a generous bound of the form's overhead.
const MAX_PART_OVERHEAD_BYTES: u64 = 1024;

/// Core metadata's multiple-use fields, which twine and uv send once per value; every other
/// field must come once, as Warehouse requires, or a second value could say something else than
/// the one checked.
const REPEATABLE_FIELDS: [&str; 16] = [
    "classifiers",
    "platform",
    "supported_platform",
    "requires_dist",
    "provides_dist",
    "obsoletes_dist",
    "requires_external",
    "project_urls",
    "provides_extra",
    "provides_extras",
    "dynamic",
    "license_file",
    "license_files",
    "requires",
    "provides",
    "obsoletes",
];

/// The largest request body an upload may send: the file at `max_upload_size` and the rest of
/// the form at its limits. Bigger bodies are cut off as soon as they pass it.
pub fn max_form_bytes(max_upload_size: u64) -> u64 {
    max_upload_size
        .saturating_add(MAX_FORM_TEXT_BYTES)
        .saturating_add(MAX_FORM_FIELDS as u64 * MAX_PART_OVERHEAD_BYTES)
}

/// Why an upload was refused. The text goes into the HTTP status line, where twine shows it.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(
        "Invalid or non-existent authentication information: upload with username __token__ and an API token as the password (create one with `tufa token create`)"
    )]
    Unauthenticated,
    #[error(
        "Invalid API token: this index does not know it (mistyped, or from another index); create one with `tufa token create`"
    )]
    BadToken,
    #[error("This API token is limited to project '{scope}' and cannot upload to '{project}'")]
    TokenScope { scope: String, project: String },
    #[error("{0}")]
    Refused(#[from] AddRefused),
    #[error("File too large: the limit is {limit} bytes")]
    TooLarge { limit: u64 },
    #[error(
        "Payload Too Large: the form field '{field}' is over its limit of {limit} bytes; the index reads the release's metadata from the file"
    )]
    FieldTooLarge { field: String, limit: u64 },
    #[error(
        "Payload Too Large: the form's fields other than the file are over {limit} bytes together"
    )]
    FormTooLarge { limit: u64 },
    #[error("Payload Too Large: the upload is over {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error(
        "The upload body holds more than {limit} bytes outside form fields (a preamble or part headers)"
    )]
    Unparsed { limit: u64 },
    #[error("The form has more than {limit} fields")]
    TooManyFields { limit: usize },
    #[error(
        "The form field '{0}' appears more than once; send it once (a second value could differ from the one checked)"
    )]
    DuplicateField(String),
    #[error("{0}")]
    Invalid(#[from] Invalid),
    #[error("{0}")]
    BadForm(String),
    #[error(
        "The digest supplied does not match a digest calculated from the uploaded file ({algorithm})"
    )]
    DigestMismatch { algorithm: &'static str },
    #[error("The {field} in the form ({form:?}) does not match the {field} in the file ({file:?})")]
    FormMismatch {
        field: &'static str,
        form: String,
        file: String,
    },
    #[error(
        "The {field} in the file name ({name:?}) does not match the {field} in the file's core metadata ({metadata:?})"
    )]
    MetadataMismatch {
        field: &'static str,
        name: String,
        metadata: String,
    },
    #[error(
        "The project name '{0}' has pages signed by this index's TUF repository that its database \
         does not know (the database was lost or restored from an older backup): it is reserved, \
         so that nobody publishes other files under a name clients already trust. The operator \
         releases it by restoring the database backup that matches the repository"
    )]
    SignedName(String),
    #[error("{0}")]
    Provenance(#[from] crate::provenance::ProvenanceError),
    #[error("{0}")]
    Internal(#[from] Error),
}

impl UploadError {
    pub fn status(&self) -> u16 {
        match self {
            UploadError::Unauthenticated => 401,
            UploadError::BadToken
            | UploadError::TokenScope { .. }
            | UploadError::Refused(AddRefused::NotOwner { .. })
            | UploadError::Refused(AddRefused::Mirrored { .. }) => 403,
            UploadError::SignedName(_) => 409,
            UploadError::FieldTooLarge { .. }
            | UploadError::FormTooLarge { .. }
            | UploadError::BodyTooLarge { .. } => 413,
            UploadError::Internal(error) if error.unavailable().is_some() => 503,
            UploadError::Internal(_) => 500,
            _ => 400,
        }
    }
}

fn bad_form(message: impl Into<String>) -> UploadError {
    UploadError::BadForm(message.into())
}

/// An uploaded file streamed to `tmp/`, removed again unless it is moved into place.
struct Staged {
    path: PathBuf,
    filename: String,
    size: u64,
    sha256: String,
    md5: String,
    blake2_256: String,
}

/// The three digests Warehouse records, computed in one pass as the bytes go to disk.
struct Digests {
    sha256: ring::digest::Context,
    md5: md5::Md5,
    blake2: Blake2b256,
}

impl Digests {
    fn new() -> Self {
        Digests {
            sha256: ring::digest::Context::new(&ring::digest::SHA256),
            md5: md5::Md5::new(),
            blake2: Blake2b256::new(),
        }
    }

    fn update(&mut self, chunk: &[u8]) {
        self.sha256.update(chunk);
        self.md5.update(chunk);
        self.blake2.update(chunk);
    }

    fn finish(self, staged: &mut Staged) {
        staged.sha256 = hex::encode(self.sha256.finish());
        staged.md5 = hex::encode(self.md5.finalize());
        staged.blake2_256 = hex::encode(self.blake2.finalize());
    }
}

impl Staged {
    fn new(path: PathBuf, filename: String) -> Self {
        Staged {
            path,
            filename,
            size: 0,
            sha256: String::new(),
            md5: String::new(),
            blake2_256: String::new(),
        }
    }

    /// Copies a local file into `tmp/`, as an upload would arrive.
    fn copy_from(source: &Path, blobs: &Blobs) -> Result<Self, Error> {
        use std::io::{Read, Write};
        let filename = source
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::Config(format!("{} has no UTF-8 file name", source.display())))?
            .to_string();
        let mut staged = Staged::new(blobs.staging_path(), filename);
        let mut input = std::fs::File::open(source).map_err(crate::error::io("reading", source))?;
        let mut output = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&staged.path)
            .map_err(crate::error::io("creating", &staged.path))?;
        let mut digests = Digests::new();
        let mut buffer = vec![0u8; 256 * 1024];
        loop {
            let read = input
                .read(&mut buffer)
                .map_err(crate::error::io("reading", source))?;
            if read == 0 {
                break;
            }
            digests.update(&buffer[..read]);
            output
                .write_all(&buffer[..read])
                .map_err(crate::error::io("writing", &staged.path))?;
            staged.size += read as u64;
        }
        digests.finish(&mut staged);
        Ok(staged)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        // Moved into place already, or a refused upload's leftovers: either way nothing to keep.
        let _ = std::fs::remove_file(&self.path);
    }
}

struct Form {
    fields: HashMap<String, String>,
    content: Option<Staged>,
}

impl Form {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn required(&self, name: &str) -> Result<&str, UploadError> {
        self.field(name)
            .ok_or_else(|| bad_form(format!("The form field '{name}' is missing")))
    }
}

/// Bytes of the body the multipart parser may hold that have not come out as field content:
/// boundaries and part headers (a few hundred bytes each) and what it read ahead (one read of
/// the connection, well under 1 MiB). The parser keeps a preamble or a part header in memory
/// until it ends, so a body that sends more than this without a field to show for it is cut off.
const MAX_UNPARSED_BYTES: u64 = 2 * 1024 * 1024;

/// Counts the bytes of the body the multipart parser holds that have not come out as content.
#[derive(Default)]
struct Meter {
    unparsed: AtomicU64,
    cut_off: AtomicBool,
}

impl Meter {
    /// Counts bytes given to the parser; false once it holds too many.
    fn received(&self, bytes: usize) -> bool {
        let unparsed = self.unparsed.fetch_add(bytes as u64, Ordering::Relaxed) + bytes as u64;
        if unparsed > MAX_UNPARSED_BYTES {
            self.cut_off.store(true, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Content came out of the parser.
    fn parsed(&self, bytes: usize) {
        let _ = self
            .unparsed
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                Some(held.saturating_sub(bytes as u64))
            });
    }

    /// A new field started: the boundary and part headers before it are parsed.
    fn field_started(&self) {
        self.unparsed.store(0, Ordering::Relaxed);
    }
}

/// The request body, cut off once the multipart parser holds too much of it.
struct MeteredBody {
    inner: Body,
    meter: Arc<Meter>,
}

impl http_body::Body for MeteredBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
            && !self.meter.received(data.len())
        {
            return Poll::Ready(Some(Err(axum::Error::new(
                "too much of the body outside form fields",
            ))));
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Reads an upload form, each field within its limits, the file streamed to `tmp/`.
struct FormReader<'a> {
    blobs: &'a Blobs,
    /// The largest file accepted.
    limit: u64,
    meter: Arc<Meter>,
    /// Bytes of text fields so far.
    text: u64,
}

impl FormReader<'_> {
    /// What a broken or cut-off request body means to the uploader.
    fn body_error(&self, error: axum::extract::multipart::MultipartError) -> UploadError {
        if self.meter.cut_off.load(Ordering::Relaxed) {
            UploadError::Unparsed {
                limit: MAX_UNPARSED_BYTES,
            }
        } else if error.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            UploadError::BodyTooLarge {
                limit: max_form_bytes(self.limit),
            }
        } else {
            bad_form(format!(
                "The upload body is malformed: {}",
                error.body_text()
            ))
        }
    }

    async fn stage(&self, mut field: Field<'_>) -> Result<Staged, UploadError> {
        let filename = field
            .file_name()
            .ok_or_else(|| bad_form("The 'content' part has no file name"))?
            .to_string();
        let path = self.blobs.staging_path();
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| UploadError::Internal(crate::error::io("creating", &path)(e)))?;
        let mut staged = Staged::new(path, filename);
        let mut digests = Digests::new();
        while let Some(chunk) = field.chunk().await.map_err(|e| self.body_error(e))? {
            self.meter.parsed(chunk.len());
            staged.size += chunk.len() as u64;
            if staged.size > self.limit {
                return Err(UploadError::TooLarge { limit: self.limit });
            }
            digests.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| UploadError::Internal(crate::error::io("writing", &staged.path)(e)))?;
        }
        file.flush()
            .await
            .map_err(|e| UploadError::Internal(crate::error::io("writing", &staged.path)(e)))?;
        digests.finish(&mut staged);
        Ok(staged)
    }

    /// Reads a text field chunk by chunk, refusing it as soon as it passes its limit or the
    /// form's; returns its text when the field is one the index keeps.
    async fn read_text(
        &mut self,
        mut field: Field<'_>,
        name: &str,
    ) -> Result<Option<String>, UploadError> {
        let keep = KEPT_FIELDS.contains(&name);
        let field_limit = match name {
            "attestations" => tufa_provenance::MAX_ATTESTATIONS_BYTES as u64,
            _ if keep => MAX_KEPT_FIELD_BYTES,
            "description" => MAX_DESCRIPTION_BYTES,
            _ => MAX_FIELD_BYTES,
        };
        let mut value = Vec::new();
        let mut size: u64 = 0;
        while let Some(chunk) = field.chunk().await.map_err(|e| self.body_error(e))? {
            self.meter.parsed(chunk.len());
            size += chunk.len() as u64;
            self.text += chunk.len() as u64;
            if size > field_limit {
                return Err(UploadError::FieldTooLarge {
                    field: name.to_string(),
                    limit: field_limit,
                });
            }
            if self.text > MAX_FORM_TEXT_BYTES {
                return Err(UploadError::FormTooLarge {
                    limit: MAX_FORM_TEXT_BYTES,
                });
            }
            if keep {
                value.extend_from_slice(&chunk);
            }
        }
        if !keep {
            return Ok(None);
        }
        String::from_utf8(value)
            .map(Some)
            .map_err(|_| bad_form(format!("The form field '{name}' is not UTF-8 text")))
    }

    async fn read(mut self, request: Request) -> Result<Form, UploadError> {
        let meter = Arc::clone(&self.meter);
        let request = request.map(|inner| Body::new(MeteredBody { inner, meter }));
        let mut multipart = Multipart::from_request(request, &())
            .await
            .map_err(|e| bad_form(format!("The upload is not a form: {}", e.body_text())))?;
        let mut form = Form {
            fields: HashMap::new(),
            content: None,
        };
        let mut seen: HashSet<String> = HashSet::new();
        let mut count = 0;
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|e| self.body_error(e))?
        {
            self.meter.field_started();
            count += 1;
            if count > MAX_FORM_FIELDS {
                return Err(UploadError::TooManyFields {
                    limit: MAX_FORM_FIELDS,
                });
            }
            let name = field.name().unwrap_or_default().to_string();
            if !REPEATABLE_FIELDS.contains(&name.as_str()) && !seen.insert(name.clone()) {
                return Err(if name == "content" {
                    bad_form("Upload one file per request")
                } else {
                    UploadError::DuplicateField(name)
                });
            }
            if name == "content" {
                form.content = Some(self.stage(field).await?);
            } else if let Some(value) = self.read_text(field, &name).await? {
                form.fields.insert(name, value);
            }
        }
        Ok(form)
    }
}

fn check_digests(form: &Form, staged: &Staged) -> Result<(), UploadError> {
    let given = [
        ("md5", form.field("md5_digest"), &staged.md5),
        ("sha256", form.field("sha256_digest"), &staged.sha256),
        (
            "blake2_256",
            form.field("blake2_256_digest"),
            &staged.blake2_256,
        ),
    ];
    if given.iter().all(|(_, value, _)| value.is_none()) {
        return Err(bad_form(
            "Include at least one message digest (sha256_digest, blake2_256_digest or md5_digest)",
        ));
    }
    for (algorithm, value, actual) in given {
        if let Some(value) = value
            && !value.eq_ignore_ascii_case(actual)
        {
            return Err(UploadError::DigestMismatch { algorithm });
        }
    }
    Ok(())
}

/// What an accepted upload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Uploaded {
    New { serial: i64 },
    Unchanged,
}

/// Receives, checks and records one upload.
pub async fn upload(
    database: &Database,
    blobs: &Blobs,
    identity: &Identity,
    request: Request,
    limit: u64,
    reserved: &Reserved,
    root: &tufa_provenance::TrustRoot,
) -> Result<Uploaded, UploadError> {
    let reader = FormReader {
        blobs,
        limit,
        meter: Arc::default(),
        text: 0,
    };
    let form = reader.read(request).await?;
    match form.field(":action") {
        Some("file_upload") => {}
        Some(other) => {
            return Err(bad_form(format!(
                "Unsupported ':action' {other:?}: only file_upload is"
            )));
        }
        None => return Err(bad_form("The form field ':action' is missing")),
    }
    let staged = form
        .content
        .as_ref()
        .ok_or_else(|| bad_form("Upload a file in the form part 'content'"))?;
    let dist = DistFilename::parse(&staged.filename)?;
    if let Some(scope) = &identity.project
        && scope != &dist.project
    {
        return Err(UploadError::TokenScope {
            scope: scope.to_string(),
            project: dist.project.to_string(),
        });
    }
    database.may_upload(identity, &dist.project).await??;
    if reserved.contains(&dist.project) {
        return Err(UploadError::SignedName(dist.project.to_string()));
    }
    let filetype = form.required("filetype")?;
    if DistKind::from_packagetype(filetype) != Some(dist.kind) {
        return Err(bad_form(format!(
            "The filetype {filetype:?} does not match the file name {:?}, which is a {}",
            dist.filename,
            dist.kind.packagetype()
        )));
    }
    let form_name = form.required("name")?;
    if ProjectName::new(form_name).ok().as_ref() != Some(&dist.project) {
        return Err(UploadError::FormMismatch {
            field: "project name",
            form: form_name.into(),
            file: dist.project.to_string(),
        });
    }
    let form_version = form.required("version")?;
    if Version::new(form_version).ok().as_ref() != Some(&dist.version) {
        return Err(UploadError::FormMismatch {
            field: "version",
            form: form_version.into(),
            file: dist.version.to_string(),
        });
    }
    check_digests(&form, staged)?;
    let provenance = match form.field("attestations") {
        Some(field) => verify_attestations(root, field, staged).await?,
        None => None,
    };
    record(database, blobs, identity, staged, dist, provenance).await
}

/// PEP 740: verifies the attestations against the uploaded file's name and sha256, off the async
/// threads (certificate chains and signatures).
async fn verify_attestations(
    root: &tufa_provenance::TrustRoot,
    field: &str,
    staged: &Staged,
) -> Result<Option<NewProvenance>, UploadError> {
    let mut sha256 = [0u8; 32];
    hex::decode_to_slice(&staged.sha256, &mut sha256)
        .map_err(|e| UploadError::Internal(Error::Config(format!("the file's sha256: {e}"))))?;
    let (root, field, filename) = (root.clone(), field.to_string(), staged.filename.clone());
    tokio::task::spawn_blocking(move || {
        crate::provenance::verify_upload(&root, &field, &filename, &sha256)
    })
    .await
    .map_err(|e| UploadError::Internal(Error::Config(format!("attestation checker failed: {e}"))))?
    .map_err(UploadError::Provenance)
}

/// Adds an existing distribution file (a pypiserver or devpi directory being imported) as if
/// `identity` had uploaded it, with the same checks as an upload.
pub async fn import_file(
    database: &Database,
    blobs: &Blobs,
    identity: &Identity,
    source: &Path,
) -> Result<Uploaded, UploadError> {
    let source_path = source.to_path_buf();
    let blobs_for_copy = blobs.clone();
    let staged =
        tokio::task::spawn_blocking(move || Staged::copy_from(&source_path, &blobs_for_copy))
            .await
            .map_err(|e| {
                UploadError::Internal(Error::Config(format!("file reader failed: {e}")))
            })??;
    let dist = DistFilename::parse_importable(&staged.filename)?;
    database.may_upload(identity, &dist.project).await??;
    record(database, blobs, identity, &staged, dist, None).await
}

/// Removes the stored file of an upload that failed after storing it (a racing upload took its
/// file name), and its metadata file, unless a row records that content. Under the database's
/// write lock, which every upload holds (on PostgreSQL shared with other uploads, excluding
/// this) while it records a file: an upload of the same content on any replica either committed
/// its row before (the file stays), or looks for its file after this and stores it again (see
/// [`Database::add_file`]).
async fn abandon(database: &Database, blobs: &Blobs, sha256: &str) {
    let mut lock = match database.write_lock().await {
        Ok(lock) => lock,
        Err(e) => {
            tracing::warn!("keeping unrecorded file {sha256}: cannot take the write lock: {e}");
            return;
        }
    };
    match lock.references(sha256).await {
        Ok(true) => {}
        Ok(false) => {
            for path in [blobs.path(sha256), blobs.metadata_path(sha256)] {
                let blobs = blobs.clone();
                match tokio::task::spawn_blocking(move || blobs.remove(&path)).await {
                    Ok(Err(e)) => tracing::warn!("{e}"),
                    Err(e) => tracing::warn!("removing an unrecorded file: {e}"),
                    Ok(Ok(())) => {}
                }
            }
        }
        Err(e) => {
            tracing::warn!("keeping unrecorded file {sha256}: cannot check whether it is used: {e}")
        }
    }
    if let Err(e) = lock.release().await {
        tracing::warn!("releasing the write lock: {e}");
    }
}

/// Stores an upload's file, and a wheel's metadata file, where the index serves them from; the
/// staged file stays, so that this can run again.
fn store(blobs: &Blobs, staged: &Path, sha256: &str, metadata: Option<&[u8]>) -> Result<(), Error> {
    if let Some(metadata) = metadata {
        blobs.write(&blobs.metadata_path(sha256), metadata)?;
    }
    blobs.store(staged, &blobs.path(sha256))
}

/// Stores the upload's files again where they are missing: run under the write lock, just
/// before the upload's row is recorded.
fn restore(
    blobs: &Blobs,
    staged: &Path,
    sha256: &str,
    metadata: Option<&[u8]>,
) -> Result<(), Error> {
    if let Some(metadata) = metadata {
        let path = blobs.metadata_path(sha256);
        if !blobs.exists(&path)? {
            tracing::info!(
                "storing the metadata file of {sha256} again: a racing upload removed it"
            );
            blobs.write(&path, metadata)?;
        }
    }
    let path = blobs.path(sha256);
    if !blobs.exists(&path)? {
        tracing::info!("storing {sha256} again: a racing upload removed it");
        blobs.store(staged, &path)?;
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Config(format!("file writer failed: {e}")))?
}

/// Reads the core metadata from a staged file, checks it against the file name, records the
/// file and moves it into place: the common end of an upload and an import.
async fn record(
    database: &Database,
    blobs: &Blobs,
    identity: &Identity,
    staged: &Staged,
    dist: DistFilename,
    provenance: Option<NewProvenance>,
) -> Result<Uploaded, UploadError> {
    let path = staged.path.clone();
    let for_metadata = dist.clone();
    let metadata = tokio::task::spawn_blocking(move || {
        if for_metadata.kind == DistKind::Wheel {
            crate::wheel::check(&path, &for_metadata.filename)?;
        }
        CoreMetadata::from_archive(&path, &for_metadata)
    })
    .await
    .map_err(|e| UploadError::Internal(Error::Config(format!("metadata reader failed: {e}"))))??;
    if metadata.name != dist.project {
        return Err(UploadError::MetadataMismatch {
            field: "project name",
            name: dist.project.to_string(),
            metadata: metadata.name.to_string(),
        });
    }
    if metadata.display_name.len() > MAX_PROJECT_NAME_LEN {
        return Err(UploadError::Invalid(Invalid::Metadata {
            filename: dist.filename.clone(),
            reason: format!(
                "the Name field is {} bytes long, over the limit of {MAX_PROJECT_NAME_LEN} bytes",
                metadata.display_name.len()
            ),
        }));
    }
    if metadata.version != dist.version {
        return Err(UploadError::MetadataMismatch {
            field: "version",
            name: dist.version.to_string(),
            metadata: metadata.version.to_string(),
        });
    }
    let metadata_sha256 = (dist.kind == DistKind::Wheel)
        .then(|| hex::encode(ring::digest::digest(&ring::digest::SHA256, &metadata.bytes)));
    let new = NewFile {
        project: dist.project.clone(),
        display_name: metadata.display_name.clone(),
        version: dist.version.clone(),
        release_metadata: metadata.bytes.clone(),
        file: FileRecord {
            filename: dist.filename.clone(),
            version: dist.version.to_string(),
            packagetype: dist.kind.packagetype().into(),
            python_version: dist.python_version.clone(),
            size: staged.size,
            sha256: staged.sha256.clone(),
            md5: staged.md5.clone(),
            blake2_256: staged.blake2_256.clone(),
            requires_python: metadata.get("Requires-Python").map(str::to_string),
            metadata_sha256: metadata_sha256.clone(),
            upload_time_micros: now_micros(),
            yanked: None,
            provenance_sha256: provenance.as_ref().map(|p| p.sha256.clone()),
        },
        provenance,
    };
    if database.check_file(identity, &new).await?? == Added::Unchanged {
        return Ok(Uploaded::Unchanged);
    }
    // Durable before the row that makes it visible; a row is never without its file. Should a
    // racing upload win between the check and the transaction, this file is removed again.
    let metadata_bytes: Option<Arc<[u8]>> = metadata_sha256.map(|_| metadata.bytes.into());
    let (for_store, staged_path, sha256, metadata_for_store) = (
        blobs.clone(),
        staged.path.clone(),
        staged.sha256.clone(),
        metadata_bytes.clone(),
    );
    let stored = blocking(move || {
        store(
            &for_store,
            &staged_path,
            &sha256,
            metadata_for_store.as_deref(),
        )
    })
    .await;
    match stored {
        Ok(()) => {}
        // With the bucket unavailable, removing what may have been stored would only wait on it
        // again: an object no row records is invisible, and the next upload of the same content
        // overwrites it.
        Err(error) if error.storage_unavailable().is_some() => {
            return Err(UploadError::Internal(error));
        }
        Err(error) => {
            abandon(database, blobs, &staged.sha256).await;
            return Err(UploadError::Internal(error));
        }
    }
    let (for_restore, staged_path, sha256) =
        (blobs.clone(), staged.path.clone(), staged.sha256.clone());
    let stored_again = async move || {
        blocking(move || {
            restore(
                &for_restore,
                &staged_path,
                &sha256,
                metadata_bytes.as_deref(),
            )
        })
        .await
    };
    match database.add_file(identity, &new, stored_again).await {
        Ok(Ok(added)) => Ok(match added {
            Added::Unchanged => Uploaded::Unchanged,
            Added::New { serial } => Uploaded::New { serial },
        }),
        Ok(Err(refused)) => {
            abandon(database, blobs, &staged.sha256).await;
            Err(refused.into())
        }
        // Storing it again met the bucket unavailable: as above.
        Err(error) if error.storage_unavailable().is_some() => Err(error.into()),
        Err(error) => {
            abandon(database, blobs, &staged.sha256).await;
            Err(error.into())
        }
    }
}
