//! Wheels that every installer reads the same way, as PyPI requires since August 2025.
//!
//! A zip archive can be read two ways: from the central directory at its end (Python's `zipfile`,
//! hence pip) or by streaming the local file headers from its start (uv did, before 0.8.6). An
//! archive whose two views differ lets the index check one set of bytes while an installer
//! unpacks another. So a wheel must be nothing but its local entries, then a central directory
//! describing exactly those entries, then the end records, with no name twice and no bytes
//! outside them (Warehouse's `utils/zipfiles.py` enforces the same rules). And its `RECORD` must
//! list every file with the hash and size it has, so that an installer checking `RECORD` and one
//! that does not install the same files.
//!
//! The archive is walked by hand because the zip crate, like `zipfile`, reads only the central
//! directory and so cannot see what the other view sees.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use base64::Engine;

use crate::error::Invalid;

const LOCAL_HEADER: [u8; 4] = *b"PK\x03\x04";
const CENTRAL_HEADER: [u8; 4] = *b"PK\x01\x02";
const END_OF_CENTRAL_DIRECTORY: [u8; 4] = *b"PK\x05\x06";
const ZIP64_END_OF_CENTRAL_DIRECTORY: [u8; 4] = *b"PK\x06\x06";
const ZIP64_LOCATOR: [u8; 4] = *b"PK\x06\x07";
const ZIP64_EXTRA: u16 = 0x0001;
/// A 32-bit size or offset with this value is stored in the zip64 extra field instead.
const ZIP64_MARK: u32 = 0xFFFF_FFFF;
const FLAG_ENCRYPTED: u16 = 0x0001;
const FLAG_DATA_DESCRIPTOR: u16 = 0x0008;

/// `RECORD` larger than this is refused: a line per file of about 100 bytes fits 300,000 files.
const MAX_RECORD_BYTES: u64 = 32 * 1024 * 1024;
/// The sum of the sizes the entries unpack to, all of which are hashed to check `RECORD`. PyPI
/// caps a file at 1 GiB even for projects granted more than its 100 MiB default, and binaries
/// rarely compress better than 4:1; the limit bounds the time a crafted archive can cost.
const MAX_UNPACKED_BYTES: u64 = 8 * 1024 * 1024 * 1024;

/// One entry as a header describes it.
#[derive(Debug)]
struct Entry {
    name: String,
    method: u16,
    crc32: u32,
    compressed: u64,
    size: u64,
}

/// Reads the archive front to back, counting the position.
struct Cursor {
    reader: BufReader<File>,
    position: u64,
    length: u64,
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut le = [0u8; 8];
    le.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(le)
}

impl Cursor {
    fn read(&mut self, count: u64) -> Result<Vec<u8>, String> {
        if self.length - self.position < count {
            return Err(format!(
                "the archive ends inside a record at byte {}",
                self.position
            ));
        }
        let mut bytes = vec![0u8; count as usize];
        self.reader
            .read_exact(&mut bytes)
            .map_err(|e| format!("cannot read it: {e}"))?;
        self.position += count;
        Ok(bytes)
    }

    fn skip(&mut self, count: u64) -> Result<(), String> {
        if self.length - self.position < count {
            return Err(format!(
                "an entry's data runs past the end of the archive (at byte {})",
                self.position
            ));
        }
        let offset = i64::try_from(count).map_err(|_| "an entry is too large".to_string())?;
        self.reader
            .seek_relative(offset)
            .map_err(|e| format!("cannot read it: {e}"))?;
        self.position += count;
        Ok(())
    }
}

/// An entry name as installers will use it: UTF-8 without control characters.
fn entry_name(raw: Vec<u8>) -> Result<String, String> {
    let name = String::from_utf8(raw).map_err(|_| "an entry name is not UTF-8".to_string())?;
    if name.chars().any(char::is_control) {
        return Err(format!("the entry name {name:?} holds a control character"));
    }
    Ok(name)
}

/// The 64-bit values of the zip64 extra field for each of `fields` that holds the 32-bit mark, in
/// order; the others are returned as they are.
fn zip64_values(extra: &[u8], fields: &mut [u64], name: &str) -> Result<(), String> {
    let mut seen = false;
    let mut rest = extra;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(format!("the extra field of {name:?} is malformed"));
        }
        let (id, size) = (u16_at(rest, 0), usize::from(u16_at(rest, 2)));
        let data = rest
            .get(4..4 + size)
            .ok_or_else(|| format!("the extra field of {name:?} is malformed"))?;
        if id == ZIP64_EXTRA {
            if seen {
                return Err(format!("{name:?} has two zip64 extra fields"));
            }
            seen = true;
            let mut values = data.chunks_exact(8).map(|chunk| u64_at(chunk, 0));
            for field in fields.iter_mut().filter(|f| **f == u64::from(ZIP64_MARK)) {
                *field = values
                    .next()
                    .ok_or_else(|| format!("the zip64 extra field of {name:?} is too short"))?;
            }
        }
        rest = &rest[4 + size..];
    }
    Ok(())
}

/// Walks the archive record by record and checks that the local entries and the central
/// directory describe the same files, and that nothing lies outside them.
fn check_structure(file: File) -> Result<u64, String> {
    let length = file
        .metadata()
        .map_err(|e| format!("cannot read it: {e}"))?
        .len();
    let mut cursor = Cursor {
        reader: BufReader::new(file),
        position: 0,
        length,
    };
    let mut locals: HashMap<u64, Entry> = HashMap::new();
    let mut local_names: HashSet<String> = HashSet::new();
    let mut central_names: HashSet<String> = HashSet::new();
    let mut central_start: Option<u64> = None;
    let mut central_count: u64 = 0;
    let mut unpacked: u64 = 0;
    // (where the zip64 end record starts, its entry count, central directory size and offset)
    let mut zip64_end: Option<(u64, u64, u64, u64)> = None;
    let mut zip64_located = false;
    loop {
        let at = cursor.position;
        if length - at < 4 {
            return Err("the archive has no end of central directory record".into());
        }
        let signature: [u8; 4] = cursor.read(4)?.try_into().unwrap_or_default();
        match signature {
            LOCAL_HEADER if central_start.is_none() => {
                let header = cursor.read(26)?;
                let flags = u16_at(&header, 2);
                let name = entry_name(cursor.read(u64::from(u16_at(&header, 22)))?)?;
                let extra = cursor.read(u64::from(u16_at(&header, 24)))?;
                let mut sizes = [
                    u64::from(u32_at(&header, 18)),
                    u64::from(u32_at(&header, 14)),
                ];
                zip64_values(&extra, &mut sizes, &name)?;
                if flags & FLAG_ENCRYPTED != 0 {
                    return Err(format!("the entry {name:?} is encrypted"));
                }
                if flags & FLAG_DATA_DESCRIPTOR != 0 {
                    return Err(format!(
                        "the entry {name:?} gives its sizes after its data (a data descriptor), \
                         which PyPI refuses too: build the wheel with a current build backend"
                    ));
                }
                if !local_names.insert(name.clone()) {
                    return Err(format!(
                        "two entries are named {name:?} (zip confusion: installers would \
                         disagree on which one to use)"
                    ));
                }
                let entry = Entry {
                    name,
                    method: u16_at(&header, 4),
                    crc32: u32_at(&header, 10),
                    size: sizes[0],
                    compressed: sizes[1],
                };
                cursor.skip(entry.compressed)?;
                locals.insert(at, entry);
            }
            CENTRAL_HEADER if zip64_end.is_none() => {
                central_start.get_or_insert(at);
                central_count += 1;
                let header = cursor.read(42)?;
                let name = entry_name(cursor.read(u64::from(u16_at(&header, 24)))?)?;
                let extra = cursor.read(u64::from(u16_at(&header, 26)))?;
                let comment_length = u16_at(&header, 28);
                if comment_length != 0 {
                    return Err(format!(
                        "the central directory entry {name:?} has a comment, which PyPI refuses"
                    ));
                }
                let mut values = [
                    u64::from(u32_at(&header, 20)),
                    u64::from(u32_at(&header, 16)),
                    u64::from(u32_at(&header, 38)),
                ];
                zip64_values(&extra, &mut values, &name)?;
                let [size, compressed, offset] = values;
                if !central_names.insert(name.clone()) {
                    return Err(format!(
                        "the central directory lists {name:?} twice (zip confusion: installers \
                         would disagree on which one to use)"
                    ));
                }
                let local = locals.get(&offset).ok_or_else(|| {
                    format!(
                        "the central directory entry {name:?} points at byte {offset}, where no \
                         local entry starts (zip confusion)"
                    )
                })?;
                let disagree = |what: &str| {
                    format!(
                        "the local header and the central directory disagree on the {what} of \
                         {name:?} (zip confusion: installers reading either would unpack \
                         different bytes)"
                    )
                };
                if local.name != name {
                    return Err(format!(
                        "the central directory names the entry at byte {offset} {name:?} but its \
                         local header names it {:?} (zip confusion)",
                        local.name
                    ));
                }
                if local.method != u16_at(&header, 6) {
                    return Err(disagree("compression method"));
                }
                if local.crc32 != u32_at(&header, 12) {
                    return Err(disagree("CRC-32"));
                }
                if local.compressed != compressed || local.size != size {
                    return Err(disagree("size"));
                }
                unpacked = unpacked.saturating_add(size);
            }
            ZIP64_END_OF_CENTRAL_DIRECTORY if zip64_end.is_none() => {
                let record = cursor.read(52)?;
                if u64_at(&record, 0) != 44 {
                    return Err(
                        "the zip64 end of central directory record carries extensible \
                                data, which PyPI refuses"
                            .into(),
                    );
                }
                if u32_at(&record, 12) != 0
                    || u32_at(&record, 16) != 0
                    || u64_at(&record, 20) != u64_at(&record, 28)
                {
                    return Err("the archive claims to span several disks".into());
                }
                zip64_end = Some((
                    at,
                    u64_at(&record, 28),
                    u64_at(&record, 36),
                    u64_at(&record, 44),
                ));
            }
            ZIP64_LOCATOR if !zip64_located => {
                let record = cursor.read(16)?;
                match zip64_end {
                    Some((start, ..)) if start == u64_at(&record, 4) => zip64_located = true,
                    _ => {
                        return Err("the zip64 end of central directory locator does not point \
                                    at a zip64 end of central directory record"
                            .into());
                    }
                }
            }
            END_OF_CENTRAL_DIRECTORY => {
                let record = cursor.read(18)?;
                if zip64_end.is_some() && !zip64_located {
                    return Err("the zip64 end of central directory record has no locator".into());
                }
                if u16_at(&record, 0) != 0
                    || u16_at(&record, 2) != 0
                    || u16_at(&record, 4) != u16_at(&record, 6)
                {
                    return Err("the archive claims to span several disks".into());
                }
                let (count, size, offset) = match zip64_end {
                    Some((_, count, size, offset)) => (count, size, offset),
                    None => (
                        u64::from(u16_at(&record, 6)),
                        u64::from(u32_at(&record, 8)),
                        u64::from(u32_at(&record, 12)),
                    ),
                };
                let start = central_start.unwrap_or(at);
                let actual_end = zip64_end.map_or(at, |(zip64_at, ..)| zip64_at);
                if count != central_count || offset != start || size != actual_end - start {
                    return Err("the end of central directory record does not match the \
                                central directory (zip confusion)"
                        .into());
                }
                let comment = cursor.read(u64::from(u16_at(&record, 16)))?;
                if comment
                    .windows(4)
                    .any(|window| window == END_OF_CENTRAL_DIRECTORY)
                {
                    return Err("the archive has several end of central directory records \
                                (zip confusion: readers that search from the end would find \
                                another archive)"
                        .into());
                }
                break;
            }
            _ if at == 0 => {
                return Err(
                    "not a valid zip archive: it does not start with a zip record (an \
                            archive with other data before it is refused too)"
                        .into(),
                );
            }
            _ => {
                return Err(format!(
                    "byte {at} is outside any zip record (zip confusion: data between entries, \
                     or an archive with another prepended)"
                ));
            }
        }
    }
    if cursor.position != length {
        return Err(format!(
            "{} bytes follow the end of central directory record (zip confusion: trailing data \
             or concatenated archives)",
            length - cursor.position
        ));
    }
    if let Some(hidden) = local_names.difference(&central_names).next() {
        return Err(format!(
            "the entry {hidden:?} is missing from the central directory (zip confusion: only \
             installers that stream the archive would unpack it)"
        ));
    }
    Ok(unpacked)
}

/// One row of `RECORD`: a path, and its hash and size unless it is `RECORD` itself.
struct RecordRow {
    hash: String,
    size: String,
}

/// Splits a CSV line as Python's `csv` module writes it: fields with a comma or quote are
/// quoted, and a quote inside one is doubled.
fn csv_fields(line: &str) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    '"' => break,
                    c => field.push(c),
                }
            }
        }
        while let Some(&c) = chars.peek() {
            if c == ',' {
                break;
            }
            field.push(c);
            chars.next();
        }
        fields.push(field);
        if chars.next().is_none() {
            return Some(fields);
        }
    }
}

fn parse_record(text: &str) -> Result<HashMap<String, RecordRow>, String> {
    let mut rows = HashMap::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let fields =
            csv_fields(line).ok_or_else(|| format!("RECORD has a malformed line {line:?}"))?;
        let [path, hash, size] = <[String; 3]>::try_from(fields)
            .map_err(|_| format!("RECORD has a line without three fields: {line:?}"))?;
        if rows
            .insert(path.clone(), RecordRow { hash, size })
            .is_some()
        {
            return Err(format!("RECORD lists {path:?} twice"));
        }
    }
    Ok(rows)
}

/// Whether `entry` is the wheel's `RECORD` or one of its signatures, which `RECORD` cannot hash.
fn is_record_file(entry: &str, record: &str) -> bool {
    entry == record
        || entry
            .strip_prefix(record)
            .is_some_and(|suffix| suffix == ".jws" || suffix == ".p7s")
}

fn check_record(archive: &mut zip::ZipArchive<BufReader<File>>) -> Result<(), String> {
    let records: Vec<String> = archive
        .file_names()
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .strip_suffix(".dist-info/RECORD")
                .is_some_and(|dir| !dir.is_empty() && !dir.contains('/'))
        })
        .map(|entry| entry.into_owned())
        .collect();
    let record_name = match records.as_slice() {
        [one] => one.clone(),
        [] => return Err("a wheel must contain {name}-{version}.dist-info/RECORD".into()),
        _ => return Err("a wheel must contain exactly one .dist-info/RECORD".into()),
    };
    let mut text = String::new();
    archive
        .by_name(&record_name)
        .map_err(|e| format!("cannot open {record_name}: {e}"))?
        .take(MAX_RECORD_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {record_name} as UTF-8 text: {e}"))?;
    if text.len() as u64 > MAX_RECORD_BYTES {
        return Err(format!(
            "{record_name} is larger than {MAX_RECORD_BYTES} bytes"
        ));
    }
    let mut rows = parse_record(&text)?;
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|e| format!("cannot open entry {index}: {e}"))?;
        let name = entry
            .name()
            .map_err(|e| format!("entry {index} has an invalid name: {e}"))?
            .to_string();
        if entry.is_dir() || is_record_file(&name, &record_name) {
            continue;
        }
        let row = rows.remove(&name).ok_or_else(|| {
            format!(
                "{name:?} is in the wheel but not in its RECORD (installers that check RECORD \
                 and those that do not would install different files)"
            )
        })?;
        let (algorithm, expected) = row
            .hash
            .split_once('=')
            .ok_or_else(|| format!("RECORD has no hash for {name:?}"))?;
        let algorithm = match algorithm {
            "sha256" => &ring::digest::SHA256,
            "sha384" => &ring::digest::SHA384,
            "sha512" => &ring::digest::SHA512,
            other => {
                return Err(format!(
                    "RECORD hashes {name:?} with {other:?}: use sha256 (or sha384, sha512)"
                ));
            }
        };
        let declared = entry.size();
        let mut context = ring::digest::Context::new(algorithm);
        let mut size: u64 = 0;
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = entry
                .read(&mut buffer)
                .map_err(|e| format!("cannot unpack {name:?}: {e}"))?;
            if read == 0 {
                break;
            }
            context.update(&buffer[..read]);
            size += read as u64;
            if size > declared {
                return Err(format!(
                    "{name:?} unpacks to more than the {declared} bytes its headers declare"
                ));
            }
        }
        let actual =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(context.finish().as_ref());
        if actual != expected.trim_end_matches('=') {
            return Err(format!(
                "the content of {name:?} does not match its hash in RECORD"
            ));
        }
        if row.size.parse::<u64>().ok() != Some(size) {
            return Err(format!(
                "{name:?} is {size} bytes but RECORD says {:?}",
                row.size
            ));
        }
    }
    if let Some(missing) = rows.keys().find(|path| !is_record_file(path, &record_name)) {
        return Err(format!(
            "RECORD lists {missing:?}, which the wheel does not contain"
        ));
    }
    Ok(())
}

/// Refuses a wheel that installers could read in different ways, or whose `RECORD` does not
/// describe its files.
pub fn check(path: &Path, filename: &str) -> Result<(), Invalid> {
    let invalid = |reason: String| Invalid::Archive {
        filename: filename.to_string(),
        reason,
    };
    let open = || File::open(path).map_err(|e| invalid(format!("cannot read it: {e}")));
    let unpacked = check_structure(open()?).map_err(invalid)?;
    if unpacked > MAX_UNPACKED_BYTES {
        return Err(invalid(format!(
            "it unpacks to {unpacked} bytes, more than the limit of {MAX_UNPACKED_BYTES}"
        )));
    }
    let mut archive = zip::ZipArchive::new(BufReader::new(open()?))
        .map_err(|e| invalid(format!("not a valid zip archive: {e}")))?;
    check_record(&mut archive).map_err(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_lines_split_like_python_csv() {
        assert_eq!(
            csv_fields("a/b.py,sha256=x,12").unwrap(),
            ["a/b.py", "sha256=x", "12"]
        );
        assert_eq!(
            csv_fields("\"a,\"\"b\"\".py\",sha256=x,1").unwrap(),
            ["a,\"b\".py", "sha256=x", "1"]
        );
        assert_eq!(csv_fields("x/RECORD,,").unwrap(), ["x/RECORD", "", ""]);
        assert!(csv_fields("\"unterminated,x,1").is_none());
    }
}
