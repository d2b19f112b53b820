//! TAP 16 snapshot proofs, served at `/tuf/metadata/<V>.<role>-snapshot.json`: the proof of
//! `<role>.json`'s entry in the Merkle tree of snapshot version V, whose root the timestamp that
//! names V signs.
//!
//! Proofs are computed here from `V.snapshot.json` rather than written by the publisher: every
//! publish changes a node on every leaf's path, so writing them would mean one file per role
//! (16,386 at PEP 458's 16,384 bins) on every upload. The tree is a pure function of the classic
//! snapshot, and a proof needs no key (the client checks it against the signed root), so serving
//! it from the snapshot keeps TAP 16's promise that previous versions stay available for exactly
//! as long as the snapshot they come from.

use std::sync::{Arc, Mutex, PoisonError};

use axum::http::HeaderMap;
use tufa_metadata::{Metadata, Snapshot, SnapshotTree};
use tufa_repo::layout::METADATA_DIR;

use super::{ApiError, ApiResult, tuf_body};
use crate::Index;
use crate::encoding::{self, Answer, Freshness};
use crate::page_cache::Resource;

const SUFFIX: &str = "-snapshot.json";

/// Trees of the snapshots proofs were asked for lately, by snapshot digest: clients refreshing
/// after one publish ask for the same few versions.
static TREES: Mutex<Vec<(String, Arc<SnapshotTree>)>> = Mutex::new(Vec::new());
const TREES_KEPT: usize = 2;

/// A proof request: snapshot version and the role file (`bin-0a3.json`) whose entry it proves.
pub(crate) struct ProofRequest {
    version: u64,
    role_file: String,
}

impl ProofRequest {
    /// `<V>.<role>-snapshot.json`, or `None` for every other metadata file name.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        let (version, role) = name.strip_suffix(SUFFIX)?.split_once('.')?;
        let version = version.parse().ok().filter(|&v| v > 0)?;
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if role.is_empty() || role.starts_with('.') || !role.chars().all(plain) {
            return None;
        }
        Some(ProofRequest {
            version,
            role_file: format!("{role}.json"),
        })
    }
}

fn tree(digest: &str) -> Option<Arc<SnapshotTree>> {
    let trees = TREES.lock().unwrap_or_else(PoisonError::into_inner);
    trees
        .iter()
        .find(|(kept, _)| kept == digest)
        .map(|(_, tree)| tree.clone())
}

fn keep(digest: String, tree: Arc<SnapshotTree>) {
    let mut trees = TREES.lock().unwrap_or_else(PoisonError::into_inner);
    trees.retain(|(kept, _)| *kept != digest);
    trees.insert(0, (digest, tree));
    trees.truncate(TREES_KEPT);
}

pub(crate) async fn serve(index: &Index, wanted: ProofRequest, headers: &HeaderMap) -> ApiResult {
    let name = format!(
        "{METADATA_DIR}/{}.{}{SUFFIX}",
        wanted.version,
        wanted.role_file.trim_end_matches(".json")
    );
    let key = Resource::TufFile {
        path: name.clone(),
        length: 0,
        modified: None,
    };
    let body = match index.answers.identity(&key) {
        Some(body) => body,
        None => {
            let snapshot_file = format!("{METADATA_DIR}/{}.snapshot.json", wanted.version);
            let (_, snapshot, _) = tuf_body(index, &snapshot_file).await?;
            let digest = snapshot.digest().to_string();
            let tree = match tree(&digest) {
                Some(tree) => tree,
                None => {
                    let bytes = snapshot.bytes().clone();
                    let built = tokio::task::spawn_blocking(move || {
                        Metadata::<Snapshot>::from_bytes(&bytes)
                            .map(|snapshot| Arc::new(SnapshotTree::new(&snapshot.signed.meta)))
                    })
                    .await
                    .map_err(|e| ApiError::new(500, format!("building the snapshot tree: {e}")))?
                    .map_err(|e| {
                        ApiError::new(500, format!("{snapshot_file} does not parse: {e}"))
                    })?;
                    keep(digest, built.clone());
                    built
                }
            };
            let proof = tree.proof(&wanted.role_file).ok_or_else(|| {
                ApiError::not_found(format!(
                    "snapshot version {} lists no {}",
                    wanted.version, wanted.role_file
                ))
            })?;
            index.answers.keep(key.clone(), proof.to_bytes())
        }
    };
    let answer = Answer {
        content_type: "application/json",
        freshness: Freshness::Immutable,
        negotiated: false,
    };
    Ok(encoding::respond(&index.answers, &key, &body, headers, answer).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_proof_names_are_proof_requests() {
        let wanted = ProofRequest::parse("7.bin-0a3-snapshot.json").unwrap();
        assert_eq!(
            (wanted.version, wanted.role_file.as_str()),
            (7, "bin-0a3.json")
        );
        let wanted = ProofRequest::parse("12.targets-snapshot.json").unwrap();
        assert_eq!(wanted.role_file, "targets.json");
        for name in [
            "7.snapshot.json",
            "timestamp.json",
            "0.bins-snapshot.json",
            "x.bins-snapshot.json",
            "7.-snapshot.json",
            "7..bins-snapshot.json",
            "7.a/b-snapshot.json",
        ] {
            assert!(ProofRequest::parse(name).is_none(), "{name}");
        }
    }
}
