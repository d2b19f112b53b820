//! Rendered project pages, reused while the project's serial is unchanged.
//!
//! Rendering a page of 2,000 files costs milliseconds of database reads and formatting, and pip
//! and uv ask for the same few pages over and over. Every change to a project moves its serial
//! (uploads and yanks both write the journal), so a page cached under a serial is never stale.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::body::Bytes;

use crate::name::ProjectName;

/// At most this many bytes of pages are kept; past it, the cache starts over.
const CAPACITY_BYTES: usize = 256 * 1024 * 1024;

#[derive(Debug, Default)]
pub struct PageCache {
    inner: Mutex<Pages>,
}

#[derive(Debug, Default)]
struct Pages {
    by_project: HashMap<(ProjectName, bool), (i64, Bytes)>,
    bytes: usize,
}

impl PageCache {
    /// The page of `project` (JSON or HTML) rendered at `serial`, if cached.
    pub fn get(&self, project: &ProjectName, json: bool, serial: i64) -> Option<Bytes> {
        let pages = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match pages.by_project.get(&(project.clone(), json)) {
            Some((cached, body)) if *cached == serial => Some(body.clone()),
            _ => None,
        }
    }

    pub fn put(&self, project: &ProjectName, json: bool, serial: i64, body: Bytes) {
        let mut pages = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if pages.bytes + body.len() > CAPACITY_BYTES {
            pages.by_project.clear();
            pages.bytes = 0;
        }
        pages.bytes += body.len();
        if let Some((_, old)) = pages
            .by_project
            .insert((project.clone(), json), (serial, body))
        {
            pages.bytes -= old.len();
        }
    }
}
