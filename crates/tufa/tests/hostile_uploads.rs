//! Uploads built to hurt the index: names no client can store, forms that would fill memory,
//! wheels that installers would read differently, duplicated fields, racing uploads, and the
//! failures they provoke, each against a real `tufa serve`.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Barrier};

use common::{TUFA, page_files, python_tuf, token};
use tufa_testkit::http::{self, RawResponse};
use tufa_testkit::{TufaServer, minimal_wheel, sha256_hex, wheel_entries, wheel_with};

/// Uploads `wheel` as `filename` with the form twine sends.
fn upload_as(
    server: &TufaServer,
    token: &str,
    name: &str,
    version: &str,
    filename: &str,
    wheel: &[u8],
) -> RawResponse {
    let sha256 = sha256_hex(wheel);
    upload_fields(
        server,
        token,
        &[
            (":action", "file_upload"),
            ("protocol_version", "1"),
            ("name", name),
            ("version", version),
            ("filetype", "bdist_wheel"),
            ("pyversion", "py3"),
            ("sha256_digest", &sha256),
        ],
        filename,
        wheel,
    )
}

fn upload_fields(
    server: &TufaServer,
    token: &str,
    fields: &[(&str, &str)],
    filename: &str,
    content: &[u8],
) -> RawResponse {
    let (content_type, body) = http::multipart(fields, filename, content);
    let auth = http::basic_auth(token);
    http::request(
        "POST",
        &server.upload_url(),
        &[
            ("Content-Type", content_type.as_str()),
            ("Authorization", auth.as_str()),
        ],
        &body,
    )
}

fn wheel_name(name: &str, version: &str) -> String {
    format!("{}-{version}-py3-none-any.whl", name.replace('-', "_"))
}

fn upload(
    server: &TufaServer,
    token: &str,
    name: &str,
    version: &str,
    wheel: &[u8],
) -> RawResponse {
    upload_as(
        server,
        token,
        name,
        version,
        &wheel_name(name, version),
        wheel,
    )
}

/// Asserts a refusal with `status` whose status line and body carry `reason`.
fn assert_refused(response: &RawResponse, status: u16, reason: &str, case: &str) {
    assert_eq!(
        response.status,
        status,
        "{case}: {} {}",
        response.reason,
        response.text()
    );
    assert!(
        response.reason.contains(reason),
        "{case}: the status line must name {reason:?}, got {:?}",
        response.reason
    );
    assert!(
        response.text().contains(reason),
        "{case}: {}",
        response.text()
    );
}

fn peak_rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn names_longer_than_clients_can_store_are_refused_and_the_longest_is_signed() {
    let dir = tempfile::tempdir().unwrap();
    let server = TufaServer::start(TUFA.as_ref(), &dir.path().join("data"), &[]);
    let alice = token(&server.data_dir, "alice", None);
    for length in [256, 234] {
        let name = "n".repeat(length);
        let response = upload(&server, &alice, &name, "1.0", &minimal_wheel(&name, "1.0"));
        assert_refused(
            &response,
            400,
            &format!("the project name is {length} bytes long, over the limit of 233 bytes"),
            &format!("a {length}-byte name"),
        );
    }
    // At the limit: accepted, signed, and python-tuf stores its target
    // `simple%2F<name>%2Findex.json`, a file name of exactly 255 bytes.
    let longest = "l".repeat(233);
    let wheel = minimal_wheel(&longest, "1.0");
    let response = upload(&server, &alice, &longest, "1.0", &wheel);
    assert_eq!(response.status, 200, "{}", response.reason);
    server.wait_until_signed();
    let view = python_tuf(&server, &dir.path().join("tuf-cache"), &[&longest]);
    let files = page_files(&view["pages"][&longest]);
    assert_eq!(
        files.get(&wheel_name(&longest, "1.0")),
        Some(&sha256_hex(&wheel)),
        "{view}"
    );
    assert!(
        dir.path()
            .join("tuf-cache/targets")
            .join(format!("simple%2F{longest}%2Findex.json"))
            .exists()
    );
}

const BOUNDARY: &str = "tufa-huge-field";

/// Sends an upload whose `description` is `size` bytes, made as it is sent, and returns the
/// answer and how much of the body went out before it came.
fn send_huge_description(server: &TufaServer, token: &str, size: usize) -> (String, usize) {
    let head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\":action\"\r\n\r\nfile_upload\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"description\"\r\n\r\n"
    );
    send_streamed(
        server,
        token,
        &head,
        size,
        &format!("\r\n--{BOUNDARY}--\r\n"),
    )
}

/// Sends a form body of `size` bytes before any boundary, then a form.
fn send_raw_body(server: &TufaServer, token: &str, size: usize) -> (String, usize) {
    let form = format!(
        "\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\":action\"\r\n\r\nfile_upload\r\n\
         --{BOUNDARY}--\r\n"
    );
    send_streamed(server, token, "", size, &form)
}

/// Sends `head`, then `size` bytes made as they are sent, then `tail`, stopping early once an
/// answer comes; returns the answer and how many of the `size` bytes went out.
fn send_streamed(
    server: &TufaServer,
    token: &str,
    head: &str,
    size: usize,
    tail: &str,
) -> (String, usize) {
    let host = server.url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).unwrap();
    write!(
        stream,
        "POST /legacy/ HTTP/1.1\r\nHost: {host}\r\nAuthorization: {}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {}\r\n\r\n{head}",
        http::basic_auth(token),
        head.len() + size + tail.len()
    )
    .unwrap();
    let answer = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut reader = stream.try_clone().unwrap();
    let received = Arc::clone(&answer);
    let reading = std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(read) = reader.read(&mut buffer) {
            if read == 0 {
                break;
            }
            received.lock().unwrap().extend_from_slice(&buffer[..read]);
        }
    });
    let chunk = vec![b'x'; 1024 * 1024];
    let mut sent = 0;
    while sent < size && answer.lock().unwrap().is_empty() {
        if stream.write_all(&chunk).is_err() {
            break;
        }
        sent += chunk.len();
    }
    let _ = stream.write_all(tail.as_bytes());
    let _ = stream.shutdown(std::net::Shutdown::Write);
    reading.join().unwrap();
    let answer = String::from_utf8_lossy(&answer.lock().unwrap()).into_owned();
    (answer, sent)
}

#[test]
fn form_fields_are_bounded_and_duplicates_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = TufaServer::start(
        TUFA.as_ref(),
        &dir.path().join("data"),
        &["--max-upload-size", "1000000000"],
    );
    let alice = token(&server.data_dir, "alice", None);

    // A 768 MiB description is refused once it passes its limit, long before it is all sent, and
    // the server never holds it.
    let (answer, sent) = send_huge_description(&server, &alice, 768 * 1024 * 1024);
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(
        answer.contains("the form field 'description' is over its limit of 16777216 bytes"),
        "{answer}"
    );
    assert!(sent < 128 * 1024 * 1024, "refused only after {sent} bytes");
    let peak = peak_rss_kib(server.pid());
    assert!(peak < 64 * 1024, "peak memory {peak} KiB");

    // Bytes that are no field (here a preamble before the first boundary) are cut off early
    // too, not kept by the multipart parser until a boundary comes.
    let (answer, sent) = send_raw_body(&server, &alice, 512 * 1024 * 1024);
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(
        answer.contains("The upload body holds more than 2097152 bytes outside form fields"),
        "{answer}"
    );
    assert!(sent < 128 * 1024 * 1024, "refused only after {sent} bytes");
    let peak = peak_rss_kib(server.pid());
    assert!(peak < 64 * 1024, "peak memory {peak} KiB");

    // The whole form is bounded, and so is the number of fields.
    let mib = "y".repeat(1024 * 1024 - 16);
    let names: Vec<String> = (0..40).map(|i| format!("field_{i}")).collect();
    let mut fields: Vec<(&str, &str)> = vec![(":action", "file_upload")];
    fields.extend(names.iter().map(|name| (name.as_str(), mib.as_str())));
    assert_refused(
        &upload_fields(&server, &alice, &fields, "x-1.0-py3-none-any.whl", b"x"),
        413,
        "the form's fields other than the file are over 33554432 bytes together",
        "40 fields of 1 MiB",
    );
    let mut fields: Vec<(&str, &str)> = vec![(":action", "file_upload")];
    fields.extend(std::iter::repeat_n(("classifiers", "A :: B"), 10_000));
    assert_refused(
        &upload_fields(&server, &alice, &fields, "x-1.0-py3-none-any.whl", b"x"),
        400,
        "The form has more than 10000 fields",
        "10,001 fields",
    );

    // A field that must come once, sent twice: the second value must not be silently dropped.
    let wheel = minimal_wheel("tufa-dup", "1.0");
    let sha256 = sha256_hex(&wheel);
    let base = [
        (":action", "file_upload"),
        ("name", "tufa-dup"),
        ("version", "1.0"),
        ("filetype", "bdist_wheel"),
        ("sha256_digest", sha256.as_str()),
    ];
    for (field, second) in [
        ("sha256_digest", "0".repeat(64)),
        ("name", "tufa-other".to_string()),
        ("version", "2.0".to_string()),
        ("filetype", "sdist".to_string()),
        (":action", "file_upload".to_string()),
        ("summary", "twice".to_string()),
    ] {
        let mut fields = base.to_vec();
        if field == "summary" {
            fields.push(("summary", "once"));
        }
        fields.push((field, &second));
        assert_refused(
            &upload_fields(
                &server,
                &alice,
                &fields,
                &wheel_name("tufa-dup", "1.0"),
                &wheel,
            ),
            400,
            &format!("The form field '{field}' appears more than once"),
            field,
        );
    }

    // The server kept serving all along, and a good upload with repeated list fields works.
    let mut fields = base.to_vec();
    fields.extend([("classifiers", "A :: B"), ("classifiers", "C :: D")]);
    let good = upload_fields(
        &server,
        &alice,
        &fields,
        &wheel_name("tufa-dup", "1.0"),
        &wheel,
    );
    assert_eq!(good.status, 200, "{}", good.reason);
    server.wait_until_signed();
}

/// A stored-only zip written byte by byte, with where each record starts, for the cases to edit.
struct Zip {
    bytes: Vec<u8>,
    locals: Vec<usize>,
    centrals: Vec<usize>,
    end: usize,
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn write_zip(entries: &[(String, Vec<u8>)], gap_after_first: &[u8]) -> Zip {
    let mut out = Vec::new();
    let mut locals = Vec::new();
    for (index, (name, data)) in entries.iter().enumerate() {
        locals.push(out.len());
        out.extend_from_slice(b"PK\x03\x04");
        out.extend_from_slice(&20u16.to_le_bytes());
        out.extend_from_slice(&0x0800u16.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&[0, 0, 0x21, 0]);
        out.extend_from_slice(&crc32(data).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        if index == 0 {
            out.extend_from_slice(gap_after_first);
        }
    }
    let central_start = out.len();
    let mut centrals = Vec::new();
    for ((name, data), offset) in entries.iter().zip(&locals) {
        centrals.push(out.len());
        out.extend_from_slice(b"PK\x01\x02");
        out.extend_from_slice(&20u16.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes());
        out.extend_from_slice(&0x0800u16.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&[0, 0, 0x21, 0]);
        out.extend_from_slice(&crc32(data).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0; 12]);
        out.extend_from_slice(&(*offset as u32).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
    }
    let end = out.len();
    out.extend_from_slice(b"PK\x05\x06");
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&((end - central_start) as u32).to_le_bytes());
    out.extend_from_slice(&(central_start as u32).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    Zip {
        bytes: out,
        locals,
        centrals,
        end,
    }
}

fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

/// Replaces `RECORD`'s content in `entries` with what `edit` makes of it.
fn edit_record(entries: &mut [(String, Vec<u8>)], edit: impl Fn(&str) -> String) {
    let record = entries
        .iter_mut()
        .find(|(name, _)| name.ends_with(".dist-info/RECORD"))
        .unwrap();
    record.1 = edit(std::str::from_utf8(&record.1).unwrap()).into_bytes();
}

#[test]
fn zip_confusion_wheels_bad_records_and_respelled_versions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = TufaServer::start(TUFA.as_ref(), &dir.path().join("data"), &[]);
    let alice = token(&server.data_dir, "alice", None);
    let name = "tufa-zip";
    let module = "tufa_zip/__init__.py".to_string();
    let entries = wheel_entries(name, "1.0", &[(module.clone(), b"VALUE = 1\n".to_vec())]);
    let valid = || write_zip(&entries, b"");

    let mut cases: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    let mut twice = entries.clone();
    let metadata = twice[1].clone();
    twice.push((
        metadata.0,
        b"Metadata-Version: 2.1\nName: evil\nVersion: 6.6.6\n".to_vec(),
    ));
    cases.push((
        "two METADATA files",
        write_zip(&twice, b"").bytes,
        "two entries are named \"tufa_zip-1.0.dist-info/METADATA\"",
    ));
    let mut zip = valid();
    let name_end = zip.locals[0] + 30 + module.len() - 1;
    zip.bytes[name_end] = b'x';
    cases.push((
        "a local name that differs from the central directory's",
        zip.bytes,
        "its local header names it \"tufa_zip/__init__.px\"",
    ));
    let mut zip = valid();
    put_u32(&mut zip.bytes, zip.centrals[0] + 20, 11);
    put_u32(&mut zip.bytes, zip.centrals[0] + 24, 11);
    cases.push((
        "central directory sizes that differ from the local header's",
        zip.bytes,
        "the local header and the central directory disagree on the size of \"tufa_zip/__init__.py\"",
    ));
    let mut zip = valid();
    zip.bytes[zip.locals[0] + 8] = 8;
    cases.push((
        "a local compression method that differs from the central directory's",
        zip.bytes,
        "disagree on the compression method of \"tufa_zip/__init__.py\"",
    ));
    // Bytes between two entries, every offset written to step over them.
    cases.push((
        "data between entries",
        write_zip(&entries, b"hidden bytes").bytes,
        "is outside any zip record",
    ));
    let mut concatenated = valid().bytes;
    concatenated.extend_from_slice(&write_zip(&twice, b"").bytes);
    cases.push((
        "two archives concatenated",
        concatenated,
        "bytes follow the end of central directory record",
    ));
    let mut zip = valid();
    let end_record = zip.bytes[zip.end..].to_vec();
    zip.bytes[zip.end + 20..zip.end + 22].copy_from_slice(&22u16.to_le_bytes());
    zip.bytes.extend_from_slice(&end_record);
    cases.push((
        "a second end of central directory record in the first one's comment",
        zip.bytes,
        "several end of central directory records",
    ));
    let mut zip = valid();
    let offset = u32::from_le_bytes(zip.bytes[zip.end + 16..zip.end + 20].try_into().unwrap());
    put_u32(&mut zip.bytes, zip.end + 16, offset + 1);
    cases.push((
        "an end of central directory record pointing past the central directory",
        zip.bytes,
        "the end of central directory record does not match the central directory",
    ));
    let mut zip = valid();
    let mut locator = b"PK\x06\x07".to_vec();
    locator.extend_from_slice(&[0; 16]);
    zip.bytes.splice(zip.end..zip.end, locator);
    cases.push((
        "a zip64 locator with no zip64 end record",
        zip.bytes,
        "the zip64 end of central directory locator does not point at a zip64 end of central directory record",
    ));
    let mut unlisted = entries.clone();
    edit_record(&mut unlisted, |record| {
        record
            .lines()
            .filter(|line| !line.starts_with("tufa_zip/"))
            .map(|line| format!("{line}\n"))
            .collect()
    });
    cases.push((
        "a file missing from RECORD",
        write_zip(&unlisted, b"").bytes,
        "\"tufa_zip/__init__.py\" is in the wheel but not in its RECORD",
    ));
    let mut changed = entries.clone();
    changed[0].1 = b"VALUE = 2\n".to_vec();
    cases.push((
        "a file whose hash differs from RECORD's",
        write_zip(&changed, b"").bytes,
        "the content of \"tufa_zip/__init__.py\" does not match its hash in RECORD",
    ));
    let mut resized = entries.clone();
    edit_record(&mut resized, |record| {
        record
            .lines()
            .map(|line| match line.strip_suffix(",10") {
                Some(start) if line.starts_with("tufa_zip/") => format!("{start},11\n"),
                _ => format!("{line}\n"),
            })
            .collect()
    });
    cases.push((
        "a file whose size differs from RECORD's",
        write_zip(&resized, b"").bytes,
        "\"tufa_zip/__init__.py\" is 10 bytes but RECORD says \"11\"",
    ));
    let mut extra = entries.clone();
    edit_record(&mut extra, |record| {
        format!("tufa_zip/gone.py,sha256=x,1\n{record}")
    });
    cases.push((
        "RECORD listing a file the wheel lacks",
        write_zip(&extra, b"").bytes,
        "RECORD lists \"tufa_zip/gone.py\", which the wheel does not contain",
    ));

    for (case, wheel, reason) in &cases {
        assert_refused(
            &upload(&server, &alice, name, "1.0", wheel),
            400,
            reason,
            case,
        );
    }
    assert_eq!(
        http::get(&format!("{}/simple/{name}/", server.url), &[]).status,
        404
    );

    // The same archive written right is accepted: the refusals were for the defects alone.
    let good = upload(&server, &alice, name, "1.0", &valid().bytes);
    assert_eq!(good.status, 200, "{}", good.reason);

    // `1.0.0` is `1.0` to installers; the release's first spelling stays the only one.
    let respelled = minimal_wheel(name, "1.0.0");
    assert_refused(
        &upload(&server, &alice, name, "1.0.0", &respelled),
        400,
        "Version 1.0.0 of 'tufa-zip' is the same PEP 440 version as the existing release 1.0: upload it as 1.0",
        "1.0.0 after 1.0",
    );
    server.wait_until_signed();
    let view = python_tuf(&server, &dir.path().join("tuf-cache"), &[name]);
    let files = page_files(&view["pages"][name]);
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        [&wheel_name(name, "1.0")],
        "{view}"
    );
}

/// Every file under `dir`, by path relative to it.
fn files_under(dir: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.insert(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    found
}

#[test]
fn racing_uploads_of_one_file_name_leave_only_the_winners_file() {
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(TufaServer::start(
        TUFA.as_ref(),
        &dir.path().join("data"),
        &[],
    ));
    let alice = token(&server.data_dir, "alice", None);
    let racers = 20;
    let barrier = Arc::new(Barrier::new(racers));
    let uploads: Vec<_> = (0..racers)
        .map(|i| {
            // Large enough that each upload spends a while being received and synced, so that
            // they overlap.
            let payload: Vec<u8> = (0..2 * 1024 * 1024u32)
                .map(|n| (n.wrapping_mul(2_654_435_761).wrapping_add(i as u32) >> 13) as u8)
                .collect();
            let wheel = wheel_with(
                "tufa-race",
                "1.0",
                &[("tufa_race/data.bin".into(), payload)],
            );
            let (server, barrier, alice) =
                (Arc::clone(&server), Arc::clone(&barrier), alice.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let response = upload(&server, &alice, "tufa-race", "1.0", &wheel);
                (response, sha256_hex(&wheel))
            })
        })
        .collect();
    let results: Vec<(RawResponse, String)> =
        uploads.into_iter().map(|u| u.join().unwrap()).collect();
    let winners: Vec<&String> = results
        .iter()
        .filter(|(response, _)| response.status == 200)
        .map(|(_, sha256)| sha256)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one upload wins");
    for (response, _) in results.iter().filter(|(r, _)| r.status != 200) {
        assert_refused(response, 400, "File already exists", "a losing upload");
    }
    let data = &server.data_dir;
    let stored: BTreeSet<String> = common::published(data)
        .list("files")
        .iter()
        .map(|path| path.rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(
        stored,
        BTreeSet::from([winners[0].clone(), format!("{}.metadata", winners[0])]),
        "files/ holds the winner's file and its metadata, nothing of the losers"
    );
    assert!(files_under(&data.join("tmp")).is_empty());
}

#[test]
fn internal_errors_show_no_server_paths_and_missing_files_name_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The data directory's storage even on the S3 test backend: the test makes its files/ a
    // regular file, which only a file system has.
    let mut server = TufaServer::start(TUFA.as_ref(), &data, &["--storage", ""]);
    let alice = token(&data, "alice", None);
    let first = upload(
        &server,
        &alice,
        "tufa-fail",
        "1.0",
        &minimal_wheel("tufa-fail", "1.0"),
    );
    assert_eq!(first.status, 200, "{}", first.reason);

    // files/ replaced by a regular file: the server cannot store uploads (we run as root, so
    // permissions would not stop it).
    fs::rename(data.join("files"), data.join("files.moved")).unwrap();
    fs::write(data.join("files"), b"not a directory").unwrap();
    let failed = upload(
        &server,
        &alice,
        "tufa-fail",
        "2.0",
        &minimal_wheel("tufa-fail", "2.0"),
    );
    assert_eq!(failed.status, 500, "{}", failed.reason);
    let data_text = data.to_string_lossy().into_owned();
    for shown in [&failed.reason, &failed.text()] {
        assert!(!shown.contains(&data_text), "a server path in {shown:?}");
        assert!(!shown.contains("files/"), "a server path in {shown:?}");
        assert!(shown.contains("storage error"), "{shown:?}");
    }
    let id = failed
        .reason
        .split("error id ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("no error id in {:?}", failed.reason))
        .to_string();
    let log = server.log_containing(&id);
    let logged = log
        .lines()
        .find(|line| line.contains(&id))
        .unwrap_or_else(|| panic!("error id {id} not in the log:\n{log}"));
    assert!(
        logged.contains(&data_text),
        "the log keeps the detail: {logged}"
    );
    assert_eq!(
        http::get(&format!("{}/status", server.url), &[]).status,
        200
    );
    fs::remove_file(data.join("files")).unwrap();
    fs::rename(data.join("files.moved"), data.join("files")).unwrap();
    server.wait_until_signed();
    server.kill();

    // A snapshot file lost from the repository: the server refuses to start, naming the file
    // and how to get it back rather than a new key ceremony.
    let metadata = data.join("tuf/metadata");
    let snapshot = fs::read_dir(&metadata)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".snapshot.json"))
        .max_by_key(|n| n.split('.').next().unwrap().parse::<u64>().unwrap())
        .unwrap();
    fs::remove_file(metadata.join(&snapshot)).unwrap();
    let stderr = common::serve_refused(&data);
    assert!(
        stderr.contains(&format!("{snapshot} is missing"))
            && stderr.contains("restore it from a backup of the data directory"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("metadata found: run `tufa ceremony`"),
        "{stderr}"
    );
}
