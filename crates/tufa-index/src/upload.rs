//! `POST /legacy/`: the upload API twine and `uv publish` speak (Warehouse's `forklift/legacy.py`).
//!
//! The file is streamed to disk while its digests are computed, never held in memory. What the
//! index records comes from the file itself (name, version, core metadata), checked against the
//! file name and the form fields. The upload is acknowledged only after the file and its database
//! rows are durable; every refusal leaves the data directory as it was.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use axum::extract::multipart::{Field, Multipart};
use blake2::Digest;
use tokio::io::AsyncWriteExt;

use crate::blobs::Blobs;
use crate::coremeta::CoreMetadata;
use crate::db::{AddRefused, Added, Database, FileRecord, Identity, NewFile, now_micros};
use crate::dist::{DistFilename, DistKind};
use crate::error::{Error, Invalid};
use crate::integrity::Reserved;
use crate::name::{ProjectName, Version};

type Blake2b256 = blake2::Blake2b<blake2::digest::consts::U32>;

/// Why an upload was refused. The text goes into the HTTP status line, where twine shows it.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(
        "Invalid or non-existent authentication information: upload with username __token__ and an API token as the password (create one with `tufa token create`)"
    )]
    Unauthenticated,
    #[error("Invalid API token: it is unknown or was revoked; create one with `tufa token create`")]
    BadToken,
    #[error("This API token is limited to project '{scope}' and cannot upload to '{project}'")]
    TokenScope { scope: String, project: String },
    #[error("{0}")]
    Refused(#[from] AddRefused),
    #[error("File too large: the limit is {limit} bytes")]
    TooLarge { limit: u64 },
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
    Internal(#[from] Error),
}

impl UploadError {
    pub fn status(&self) -> u16 {
        match self {
            UploadError::Unauthenticated => 401,
            UploadError::BadToken
            | UploadError::TokenScope { .. }
            | UploadError::Refused(AddRefused::NotOwner { .. }) => 403,
            UploadError::SignedName(_) => 409,
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

async fn stage(mut field: Field<'_>, blobs: &Blobs, limit: u64) -> Result<Staged, UploadError> {
    let filename = field
        .file_name()
        .ok_or_else(|| bad_form("The 'content' part has no file name"))?
        .to_string();
    let path = blobs.staging_path();
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .await
        .map_err(|e| UploadError::Internal(crate::error::io("creating", &path)(e)))?;
    let mut staged = Staged::new(path, filename);
    let mut digests = Digests::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| bad_form(format!("The upload body is malformed: {e}")))?
    {
        staged.size += chunk.len() as u64;
        if staged.size > limit {
            return Err(UploadError::TooLarge { limit });
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

async fn read_form(
    mut multipart: Multipart,
    blobs: &Blobs,
    limit: u64,
) -> Result<Form, UploadError> {
    let mut form = Form {
        fields: HashMap::new(),
        content: None,
    };
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| bad_form(format!("The upload body is malformed: {e}")))?
    {
        let name = field.name().unwrap_or_default().to_string();
        if name == "content" {
            if form.content.is_some() {
                return Err(bad_form("Upload one file per request"));
            }
            form.content = Some(stage(field, blobs, limit).await?);
        } else {
            let value = field
                .text()
                .await
                .map_err(|e| bad_form(format!("The form field '{name}' is malformed: {e}")))?;
            form.fields.entry(name).or_insert(value);
        }
    }
    Ok(form)
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
    multipart: Multipart,
    limit: u64,
    reserved: &Reserved,
) -> Result<Uploaded, UploadError> {
    let form = read_form(multipart, blobs, limit).await?;
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
    record(database, blobs, identity, staged, dist).await
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
    let dist = DistFilename::parse(&staged.filename)?;
    database.may_upload(identity, &dist.project).await??;
    record(database, blobs, identity, &staged, dist).await
}

/// Reads the core metadata from a staged file, checks it against the file name, records the
/// file and moves it into place: the common end of an upload and an import.
async fn record(
    database: &Database,
    blobs: &Blobs,
    identity: &Identity,
    staged: &Staged,
    dist: DistFilename,
) -> Result<Uploaded, UploadError> {
    let path = staged.path.clone();
    let for_metadata = dist.clone();
    let metadata =
        tokio::task::spawn_blocking(move || CoreMetadata::from_archive(&path, &for_metadata))
            .await
            .map_err(|e| {
                UploadError::Internal(Error::Config(format!("metadata reader failed: {e}")))
            })??;
    if metadata.name != dist.project {
        return Err(UploadError::MetadataMismatch {
            field: "project name",
            name: dist.project.to_string(),
            metadata: metadata.name.to_string(),
        });
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
        },
    };
    if database.check_file(identity, &new).await?? == Added::Unchanged {
        return Ok(Uploaded::Unchanged);
    }
    // Durable before the row that makes it visible; a row is never without its file. Should a
    // racing upload win between the check and the transaction, this file stays unreferenced:
    // invisible, and reused if the same content is uploaded again.
    let blobs_for_move = blobs.clone();
    let staged_path = staged.path.clone();
    let sha256 = staged.sha256.clone();
    let metadata_bytes = metadata.bytes;
    tokio::task::spawn_blocking(move || -> Result<(), Error> {
        if metadata_sha256.is_some() {
            blobs_for_move.write(&blobs_for_move.metadata_path(&sha256), &metadata_bytes)?;
        }
        blobs_for_move.commit(&staged_path, &blobs_for_move.path(&sha256))
    })
    .await
    .map_err(|e| UploadError::Internal(Error::Config(format!("file writer failed: {e}"))))??;
    let serial = match database.add_file(identity, &new).await?? {
        Added::Unchanged => return Ok(Uploaded::Unchanged),
        Added::New { serial } => serial,
    };
    Ok(Uploaded::New { serial })
}
