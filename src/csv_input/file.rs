//! The file itself: opening it with a clear error, telling a binary file
//! from a CSV, counting physical lines, and its hash.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::*;

pub(super) fn raw_phone_text(field: &[u8]) -> String {
    // 64 chars are at most 256 bytes: don't decode a 1 MB cell to show 64.
    let head = field.get(..RAW_PHONE_CHARS * 4).unwrap_or(field);
    String::from_utf8_lossy(head)
        .chars()
        .take(RAW_PHONE_CHARS)
        .collect()
}

pub(super) fn open_file(path: &Path) -> Result<File, CsvError> {
    File::open(path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            CsvError::NotFound(path.to_path_buf())
        } else {
            CsvError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

pub(super) fn read_sample(file: &mut File) -> io::Result<Vec<u8>> {
    let mut sample = Vec::with_capacity(SNIFF_BYTES);
    file.by_ref()
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut sample)?;
    Ok(sample)
}

/// What the start of the file looks like if it is not text.
pub(super) fn sniff_binary(sample: &[u8]) -> Option<&'static str> {
    // Zip and OLE files (workbooks) never get here: see `sheet::detect`.
    if sample.starts_with(b"\x1F\x8B") {
        return Some("a gzip-compressed file; decompress it first");
    }
    if sample.starts_with(b"\xFF\xFE") || sample.starts_with(b"\xFE\xFF") {
        return Some("UTF-16 text (Excel \"Unicode Text\"); save it as \"CSV UTF-8\"");
    }
    // Many NULs are a binary (or BOM-less UTF-16) file; a stray one is a
    // corrupt row, rejected on its own with its line like any other.
    let nul = sample.iter().filter(|&&b| b == 0).count();
    if nul >= 16 || nul * 100 > sample.len() {
        return Some("a binary file");
    }
    let control = sample
        .iter()
        .filter(|&&b| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0C)) || b == 0x7F)
        .count();
    // Text has next to no control bytes; allow a few stray ones.
    if control > sample.len() / 10 {
        return Some("a binary file");
    }
    None
}

/// Line breaks in `bytes`: `\r\n`, lone `\r` and lone `\n` count once each.
/// A CRLF is counted at its `\r`, so no look-ahead is needed; `prev` is the
/// byte before `bytes` (0 if none).
pub(super) fn count_breaks(prev: u8, bytes: &[u8]) -> u64 {
    let mut n = 0;
    let mut p = prev;
    for &b in bytes {
        if b == b'\r' || (b == b'\n' && p != b'\r') {
            n += 1;
        }
        p = b;
    }
    n
}

/// Sits under the csv parser and sees every byte it reads, to compute
/// physical line numbers and to cap the size of one record.
///
/// The parser's own buffer only refills when it is empty, so the bytes it
/// has read but not consumed are always inside the last chunk we handed it.
/// A cursor walks the stream (never backwards, so the cost is linear):
/// after each record it moves over the blank-line bytes that follow to find
/// where the next record starts.
pub(super) struct Tap<R> {
    inner: R,
    /// Copy of the last chunk read.
    chunk: Vec<u8>,
    /// Stream offset of `chunk[0]`.
    chunk_start: u64,
    /// Cursor: stream offset, breaks before it, byte before it.
    pos: u64,
    breaks: u64,
    prev: u8,
    /// Moving over CR/LF bytes looking for the next record's first byte.
    seeking: bool,
    /// Start line of the next (or current) record, once its first byte is seen.
    next_line: Option<u64>,
    /// Bytes read since the last record ended.
    read_since_mark: u64,
    /// Cap on bytes read for one record.
    limit: u64,
    /// The size cap fired (the parser then sees an I/O error).
    pub(super) tripped: bool,
}

impl<R> Tap<R> {
    pub(super) fn new(inner: R, limit: u64) -> Self {
        Tap {
            inner,
            chunk: Vec::new(),
            chunk_start: 0,
            pos: 0,
            breaks: 0,
            prev: 0,
            seeking: true,
            next_line: None,
            read_since_mark: 0,
            limit,
            tripped: false,
        }
    }

    pub(super) fn record_start_line(&self) -> Option<u64> {
        if self.seeking {
            None
        } else {
            self.next_line
        }
    }

    pub(super) fn chunk_end(&self) -> u64 {
        self.chunk_start + self.chunk.len() as u64
    }

    /// Moves the cursor to stream offset `to` (clamped to the chunk). In
    /// seeking mode with `stop`, halts on the first byte that is not CR/LF.
    pub(super) fn walk(&mut self, to: u64, stop: bool) {
        let from = usize::try_from(self.pos.saturating_sub(self.chunk_start)).unwrap_or(0);
        let to = to.min(self.chunk_end()).max(self.pos);
        let to = usize::try_from(to.saturating_sub(self.chunk_start)).unwrap_or(0);
        let Some(bytes) = self.chunk.get(from..to) else {
            return;
        };
        for &b in bytes {
            if self.seeking && b != b'\r' && b != b'\n' {
                self.seeking = false;
                self.next_line = Some(self.breaks + 1);
                if stop {
                    return;
                }
            }
            if b == b'\r' || (b == b'\n' && self.prev != b'\r') {
                self.breaks += 1;
            }
            self.prev = b;
            self.pos += 1;
        }
    }

    /// A record ended at stream offset `end` (all bytes before it consumed).
    pub(super) fn mark(&mut self, end: u64) {
        self.walk(end, false);
        self.seeking = true;
        self.next_line = None;
        self.walk(self.chunk_end(), true);
        self.read_since_mark = self.chunk_end().saturating_sub(end);
    }
}

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read_since_mark >= self.limit {
            self.tripped = true;
            return Err(io::Error::other("record too large"));
        }
        let n = self.inner.read(buf)?;
        let got = buf.get(..n).unwrap_or_default();
        // Finish the old chunk before it is replaced.
        self.walk(self.chunk_end(), false);
        self.chunk_start = self.chunk_end();
        self.chunk.clear();
        self.chunk.extend_from_slice(got);
        if self.seeking {
            self.walk(self.chunk_end(), true);
        }
        self.read_since_mark = self.read_since_mark.saturating_add(n as u64);
        Ok(n)
    }
}

/// SHA-256 (lowercase hex) of the file's bytes, streamed with a 64 KiB buffer.
/// What a campaign remembers of its input: the file's SHA-256 and, when a
/// workbook's sheet was named, that sheet (`<sha256>:<sheet>`). The same
/// workbook read through another sheet is another input: a rerun or a
/// resume that would read other rows is refused, never imported silently.
pub fn input_identity(path: &Path, sheet: Option<&str>) -> Result<String, CsvError> {
    let hash = file_sha256(path)?;
    Ok(match sheet {
        Some(name) => format!("{hash}:{name}"),
        None => hash,
    })
}

/// An identity as a person reads it: the hash's first 12 digits and the
/// sheet, if one was named.
pub fn short_identity(identity: &str) -> String {
    let (hash, sheet) = identity.split_once(':').unwrap_or((identity, ""));
    let head: String = hash.chars().take(12).collect();
    if sheet.is_empty() {
        format!("sha256 {head}…")
    } else {
        format!("sha256 {head}…, sheet `{sheet}`")
    }
}

pub fn file_sha256(path: &Path) -> Result<String, CsvError> {
    let mut file = open_file(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(CsvError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        hasher.update(buf.get(..n).unwrap_or_default());
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The delimiter the header line uses: whichever of `,` `;` tab appears
/// most often outside quotes in the first line (`,` on a tie or when none
/// does). None for a file that cannot be read or is not text (a workbook
/// has no delimiter). Only the first line is read, up to 64 KiB.
pub fn detect_delimiter(path: &Path) -> Option<u8> {
    let mut file = File::open(path).ok()?;
    let mut head = Vec::with_capacity(4096);
    file.by_ref().take(64 * 1024).read_to_end(&mut head).ok()?;
    if head.starts_with(b"PK\x03\x04")
        || head.starts_with(b"\xD0\xCF\x11\xE0")
        || sniff_binary(&head).is_some()
    {
        return None;
    }
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&head);
    let mut counts = [0usize; 3];
    let mut quoted = false;
    for &b in head {
        match b {
            b'"' => quoted = !quoted,
            b'\n' | b'\r' if !quoted => break,
            b',' if !quoted => counts[0] += 1,
            b';' if !quoted => counts[1] += 1,
            b'\t' if !quoted => counts[2] += 1,
            _ => {}
        }
    }
    let best = (0..3).max_by_key(|&i| (counts[i], std::cmp::Reverse(i)))?;
    Some([b',', b';', b'\t'][best])
}
