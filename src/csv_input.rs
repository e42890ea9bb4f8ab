//! Streaming CSV reader for recipient files.
//!
//! One header row, then one record per recipient. Every record comes out as
//! either a [`CsvRow`] or a [`RejectedRow`] with its line number and a reason
//! that says what to fix: a bad row never aborts the file and never
//! disappears. Only problems with the file as a whole (not found, binary,
//! unusable header, I/O error, a runaway record) are fatal [`CsvError`]s.
//!
//! Line numbers are physical lines (header = line 1 when the file starts with
//! it). The csv crate's `Position::line` counts only `\n` and is taken before
//! blank lines and the `\n` of a CRLF are skipped, so it is off for Excel's
//! CRLF files; [`Tap`] counts line breaks itself (`\r\n`, `\n` or a lone `\r`)
//! from the bytes the parser actually consumed.

use std::fs::File;
use std::io::{self, Read, Seek};
use std::path::{Path, PathBuf};

use csv::ByteRecord;
use sha2::{Digest, Sha256};

/// A value longer than this is rejected (no template parameter is this long).
pub const MAX_FIELD_BYTES: usize = 64 * 1024;
/// A record longer than this is fatal: it is almost always a quote that is
/// never closed, which would otherwise pull the rest of the file into memory.
pub const MAX_RECORD_BYTES: u64 = 32 * 1024 * 1024;
/// Longest header name accepted (template keys are short identifiers).
const MAX_HEADER_NAME_BYTES: usize = 1024;
/// How much of the file is sniffed for binary content.
const SNIFF_BYTES: usize = 8 * 1024;
/// `raw_phone` is cut to this many chars.
const RAW_PHONE_CHARS: usize = 64;
/// How many column names a reason lists before "and N more".
const LISTED_COLUMNS: usize = 5;
/// The reserved column holding a caller-chosen tracking id.
pub const TRACKING_COLUMN: &str = "tracking_id";

#[derive(Debug, Clone)]
pub struct CsvOptions {
    /// Name of the phone column; matched case-insensitively, trimmed.
    pub phone_column: String,
    pub delimiter: u8,
    /// Template columns allowed to be empty; all others must be non-empty.
    /// Matched like `phone_column`. A name the file lacks is an error (a typo).
    pub optional_columns: Vec<String>,
    /// Parameters the template lets be empty: optional like the above, but
    /// the template may name ones the file lacks (its own check says so).
    pub template_optional_columns: Vec<String>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            phone_column: "phone".to_string(),
            delimiter: b',',
            optional_columns: Vec::new(),
            template_optional_columns: Vec::new(),
        }
    }
}

/// The header, analysed once.
#[derive(Debug, Clone)]
pub struct CsvHeader {
    /// Every header name as in the file (trimmed, BOM stripped). Trailing
    /// unnamed columns (an Excel artefact: `phone,name,,`) are left out.
    pub columns: Vec<String>,
    pub phone_index: usize,
    /// The reserved `tracking_id` column (case-insensitive), if present.
    pub tracking_index: Option<usize>,
    /// Every other column, in file order: the template_data keys.
    pub template_keys: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvRow {
    /// 1-based physical line where the record starts (header is line 1).
    pub line: u64,
    /// Normalised `84…`.
    pub phone: String,
    /// From the reserved column if present and non-empty (trimmed).
    pub tracking_id: Option<String>,
    /// Template values in `template_keys` order. ASCII whitespace is trimmed
    /// at both ends; everything else (Vietnamese text) passes unchanged.
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRow {
    pub line: u64,
    /// The phone cell (lossy UTF-8, at most 64 chars), "" if there is none.
    pub raw_phone: String,
    /// What is wrong and how to fix it (without the line number).
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsvItem {
    Row(CsvRow),
    Rejected(RejectedRow),
}

impl CsvItem {
    pub fn line(&self) -> u64 {
        match self {
            CsvItem::Row(r) => r.line,
            CsvItem::Rejected(r) => r.line,
        }
    }
}

/// Fatal problems with the file as a whole (the CLI exits 2 on these).
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("{}: file not found", .0.display())]
    NotFound(PathBuf),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: looks like {what}, not a CSV", path.display())]
    Binary { path: PathBuf, what: &'static str },
    #[error("{}: file is empty (expected a header row naming the columns)", path.display())]
    Empty { path: PathBuf },
    #[error("{}", no_phone_column(path, wanted, found))]
    NoPhoneColumn {
        path: PathBuf,
        wanted: String,
        found: Vec<String>,
    },
    #[error("column `{name}` appears more than once in the header (column names must be unique)")]
    DuplicateColumn { name: String },
    #[error("column {position} has an empty name in the header (name it, or delete the column)")]
    EmptyColumnName { position: usize },
    #[error("bad header: {reason}")]
    BadHeader { reason: String },
    #[error(
        "no template columns besides phone: add a column for each parameter of the \
         journey template"
    )]
    ReservedColumnOnly,
    #[error(
        "{}: the record starting at line {line} is over {} MiB; a quote (\") opened \
         there is probably never closed: fix the quoting and run again",
        path.display(), MAX_RECORD_BYTES / (1024 * 1024)
    )]
    RecordTooLarge { path: PathBuf, line: u64 },
    #[error(
        "{}: --optional-columns names {} but the file has no such template column \
         (found: {}); fix the spelling or drop it from optional_columns",
        path.display(),
        list_names(unknown.iter().map(String::as_str), unknown.len()),
        list_names(found.iter().map(String::as_str), found.len())
    )]
    UnknownOptionalColumns {
        path: PathBuf,
        unknown: Vec<String>,
        found: Vec<String>,
    },
}

fn no_phone_column(path: &Path, wanted: &str, found: &[String]) -> String {
    let mut msg = format!(
        "{}: no `{wanted}` column in the header (found: {}); use --phone-column to name \
         the column holding the phone numbers",
        path.display(),
        list_names(found.iter().map(String::as_str), found.len())
    );
    // A one-column header that contains another separator: wrong delimiter
    // (Excel in Vietnamese/European locales writes `;`).
    if let [only] = found {
        for (sep, shown) in [(';', ";"), ('\t', "\\t"), ('|', "|")] {
            if only.contains(sep) {
                msg.push_str(&format!(
                    "; the file seems to be separated by `{shown}`, not `,`: set the \
                     delimiter to `{shown}`"
                ));
                break;
            }
        }
    }
    if let Some(likely) = found.iter().find(|c| looks_like_phone_column(c)) {
        msg.push_str(&format!("; column `{likely}` looks like the phone column"));
    }
    msg
}

fn looks_like_phone_column(name: &str) -> bool {
    let n = name.to_lowercase();
    [
        "phone",
        "mobile",
        "sdt",
        "sđt",
        "điện thoại",
        "dien thoai",
        "dien_thoai",
        "tel",
    ]
    .iter()
    .any(|k| n.contains(k))
}

/// `a`, `b`, `c` and 4 more
fn list_names<'a>(names: impl Iterator<Item = &'a str>, total: usize) -> String {
    let mut out = String::new();
    for (i, n) in names.take(LISTED_COLUMNS).enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push('`');
        out.push_str(n);
        out.push('`');
    }
    if total > LISTED_COLUMNS {
        out.push_str(&format!(" and {} more", total - LISTED_COLUMNS));
    }
    out
}

fn same_name(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

/// Streaming reader; see the module docs.
pub struct CsvReader {
    path: PathBuf,
    rdr: csv::Reader<Tap<File>>,
    header: CsvHeader,
    /// Field index of each template key.
    template_fields: Vec<usize>,
    /// Whether each template key must be non-empty.
    required: Vec<bool>,
    /// Fields in the header line, including trailing unnamed ones.
    header_width: usize,
    delimiter: u8,
    /// Reused for every record.
    record: ByteRecord,
    /// Line of a record already read into `record` by `skip_through_line`.
    pending: Option<u64>,
    /// A fatal error was returned: the iterator is finished.
    done: bool,
}

impl std::fmt::Debug for CsvReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvReader")
            .field("path", &self.path)
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl CsvReader {
    pub fn open(path: &Path, opts: &CsvOptions) -> Result<CsvReader, CsvError> {
        Self::open_with_limit(path, opts, MAX_RECORD_BYTES)
    }

    /// `open` with a different record size cap (tests use a small one).
    fn open_with_limit(
        path: &Path,
        opts: &CsvOptions,
        record_limit: u64,
    ) -> Result<CsvReader, CsvError> {
        if matches!(opts.delimiter, b'"' | b'\r' | b'\n') {
            return Err(CsvError::BadHeader {
                reason: format!("the delimiter cannot be {:?}", char::from(opts.delimiter)),
            });
        }
        let mut file = open_file(path)?;
        let io_err = |source| CsvError::Io {
            path: path.to_path_buf(),
            source,
        };
        let sample = read_sample(&mut file).map_err(io_err)?;
        if let Some(what) = sniff_binary(&sample) {
            return Err(CsvError::Binary {
                path: path.to_path_buf(),
                what,
            });
        }
        file.rewind().map_err(io_err)?;

        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(opts.delimiter)
            .buffer_capacity(64 * 1024)
            .from_reader(Tap::new(file, record_limit));
        let mut record = ByteRecord::new();
        match read_record(&mut rdr, &mut record, path)? {
            Read1::Record(_) => {}
            Read1::End => {
                return Err(CsvError::Empty {
                    path: path.to_path_buf(),
                })
            }
            Read1::Unreadable { reason, .. } => {
                return Err(CsvError::BadHeader { reason });
            }
        }
        let analysed = analyse_header(path, &record, opts)?;

        Ok(CsvReader {
            path: path.to_path_buf(),
            rdr,
            header: analysed.header,
            template_fields: analysed.template_fields,
            required: analysed.required,
            header_width: record.len(),
            delimiter: opts.delimiter,
            record,
            pending: None,
            done: false,
        })
    }

    pub fn header(&self) -> &CsvHeader {
        &self.header
    }

    /// Next item; `Ok(None)` at end. An I/O error mid-file is fatal (`Err`);
    /// every per-record problem is `Ok(Some(CsvItem::Rejected))`.
    pub fn next_item(&mut self) -> Result<Option<CsvItem>, CsvError> {
        if self.done {
            return Ok(None);
        }
        let line = match self.pending.take() {
            Some(line) => line,
            None => match self.advance()? {
                Read1::Record(line) => line,
                Read1::End => return Ok(None),
                Read1::Unreadable { line, reason } => {
                    return Ok(Some(CsvItem::Rejected(RejectedRow {
                        line,
                        raw_phone: String::new(),
                        reason,
                    })))
                }
            },
        };
        Ok(Some(self.check_record(line)))
    }

    /// Skip records until the next one would start after `line` (to resume
    /// an interrupted import). Records are not validated or copied.
    pub fn skip_through_line(&mut self, line: u64) -> Result<(), CsvError> {
        if self.done {
            return Ok(());
        }
        if let Some(pending) = self.pending {
            if pending > line {
                return Ok(());
            }
            self.pending = None;
        }
        loop {
            match self.advance()? {
                Read1::Record(start) if start > line => {
                    self.pending = Some(start);
                    return Ok(());
                }
                Read1::Record(_) | Read1::Unreadable { .. } => {}
                Read1::End => return Ok(()),
            }
        }
    }

    /// Reads the next record into `self.record`; a fatal error ends the reader.
    fn advance(&mut self) -> Result<Read1, CsvError> {
        let result = read_record(&mut self.rdr, &mut self.record, &self.path);
        if result.is_err() {
            self.done = true;
        }
        result
    }

    /// Turns the record in `self.record` into a row or a rejection.
    fn check_record(&self, line: u64) -> CsvItem {
        let rec = &self.record;
        let raw_phone = rec
            .get(self.header.phone_index)
            .map(raw_phone_text)
            .unwrap_or_default();
        let reject = |reason: String| {
            CsvItem::Rejected(RejectedRow {
                line,
                raw_phone: raw_phone.clone(),
                reason,
            })
        };

        if rec.iter().all(|f| f.trim_ascii().is_empty()) {
            return reject("empty phone (the whole row is blank: delete it)".to_string());
        }

        let named = self.header.columns.len();
        let extra_data = rec
            .iter()
            .enumerate()
            .skip(named)
            .find(|(_, f)| !f.trim_ascii().is_empty());
        if let Some((i, _)) = extra_data.filter(|_| rec.len() <= self.header_width) {
            return reject(format!(
                "column {} has a value but no name in the header (name the column, or \
                 delete the value)",
                i + 1
            ));
        }
        if rec.len() < named || extra_data.is_some() {
            let delim = char::from(self.delimiter);
            let hint = if rec.len() < named {
                format!("check for a missing `{delim}` or a line break inside an unquoted value")
            } else {
                format!("check for an unquoted `{delim}` in a value")
            };
            let mut reason = format!(
                "has {} field{}, header has {named} ({hint})",
                rec.len(),
                if rec.len() == 1 { "" } else { "s" }
            );
            let inner_breaks: u64 = rec.iter().map(|f| count_breaks(0, f)).sum();
            if inner_breaks > 0 {
                reason.push_str(&format!(
                    "; the record spans lines {line}–{}: check for a quote (\") that is \
                     not closed",
                    line.saturating_add(inner_breaks)
                ));
            }
            return reject(reason);
        }

        // Structural problems first: the values cannot be trusted after them.
        for (i, field) in rec.iter().take(named).enumerate() {
            let column = || self.column_name(i);
            if field.len() > MAX_FIELD_BYTES {
                return reject(format!(
                    "value in column `{}` is {} bytes, limit {MAX_FIELD_BYTES}",
                    column(),
                    field.len()
                ));
            }
            if field.contains(&0) {
                return reject(format!(
                    "value in column `{}` contains a NUL byte (the file looks corrupt: \
                     export it again)",
                    column()
                ));
            }
            if std::str::from_utf8(field).is_err() {
                return reject(format!(
                    "value in column `{}` is not valid UTF-8 (save the file as \"CSV UTF-8\")",
                    column()
                ));
            }
        }

        let text = |i: usize| -> &str {
            // Every field in range was checked as UTF-8 above.
            rec.get(i)
                .and_then(|f| std::str::from_utf8(f.trim_ascii()).ok())
                .unwrap_or("")
        };

        let mut problems = Vec::new();
        let phone_cell = text(self.header.phone_index);
        let phone = match crate::phone::normalize(phone_cell) {
            Ok(p) => Some(p),
            Err(e) => {
                problems.push(e.to_string());
                None
            }
        };
        let empty_required: Vec<&str> = self
            .template_fields
            .iter()
            .zip(&self.required)
            .zip(&self.header.template_keys)
            .filter(|((&field, &required), _)| required && text(field).is_empty())
            .map(|(_, key)| key.as_str())
            .collect();
        match empty_required.as_slice() {
            [] => {}
            [one] => problems.push(format!(
                "empty value in required column `{one}` (fill it in or list the column \
                 in --optional-columns)"
            )),
            many => problems.push(format!(
                "empty values in required columns {} (fill them in or list the columns \
                 in --optional-columns)",
                list_names(many.iter().copied(), many.len())
            )),
        }

        match phone {
            Some(phone) if problems.is_empty() => {
                let tracking_id = self
                    .header
                    .tracking_index
                    .map(text)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string);
                let values = self
                    .template_fields
                    .iter()
                    .map(|&i| text(i).to_string())
                    .collect();
                CsvItem::Row(CsvRow {
                    line,
                    phone,
                    tracking_id,
                    values,
                })
            }
            _ => reject(problems.join("; ")),
        }
    }

    fn column_name(&self, i: usize) -> String {
        match self.header.columns.get(i) {
            Some(name) => name.clone(),
            None => format!("column {}", i + 1),
        }
    }
}

impl Iterator for CsvReader {
    type Item = Result<CsvItem, CsvError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_item().transpose()
    }
}

/// What one read from the parser produced.
enum Read1 {
    /// A record is in the buffer; it starts at this line.
    Record(u64),
    End,
    /// The parser refused a record but consumed it (not expected with
    /// flexible byte records; kept so it becomes a rejection, not a crash).
    Unreadable {
        line: u64,
        reason: String,
    },
}

/// Reads one record and computes its start line from the tap.
fn read_record(
    rdr: &mut csv::Reader<Tap<File>>,
    record: &mut ByteRecord,
    path: &Path,
) -> Result<Read1, CsvError> {
    let result = rdr.read_byte_record(record);
    let consumed = rdr.position().byte();
    let fallback_line = record.position().map_or(1, |p| p.line());
    let tap = rdr.get_mut();
    let line = tap.record_start_line().unwrap_or(fallback_line);
    match result {
        Ok(true) => {
            tap.mark(consumed);
            Ok(Read1::Record(line))
        }
        Ok(false) => Ok(Read1::End),
        Err(_) if tap.tripped => Err(CsvError::RecordTooLarge {
            path: path.to_path_buf(),
            line,
        }),
        Err(e) => match e.into_kind() {
            csv::ErrorKind::Io(source) => Err(CsvError::Io {
                path: path.to_path_buf(),
                source,
            }),
            other => {
                tap.mark(consumed);
                Ok(Read1::Unreadable {
                    line,
                    reason: format!("could not be parsed ({other:?})"),
                })
            }
        },
    }
}

struct AnalysedHeader {
    header: CsvHeader,
    template_fields: Vec<usize>,
    required: Vec<bool>,
}

fn analyse_header(
    path: &Path,
    record: &ByteRecord,
    opts: &CsvOptions,
) -> Result<AnalysedHeader, CsvError> {
    let mut columns = Vec::with_capacity(record.len());
    for (i, field) in record.iter().enumerate() {
        if field.len() > MAX_HEADER_NAME_BYTES {
            return Err(CsvError::BadHeader {
                reason: format!(
                    "column {} name is {} bytes long; is the first line really a header?",
                    i + 1,
                    field.len()
                ),
            });
        }
        let name = std::str::from_utf8(field).map_err(|_| CsvError::BadHeader {
            reason: format!(
                "column {} name is not valid UTF-8 (save the file as \"CSV UTF-8\")",
                i + 1
            ),
        })?;
        // The csv crate strips a BOM at the very start; a second one (file
        // concatenated or saved twice) would still stick to the name.
        columns.push(
            name.trim()
                .trim_start_matches('\u{feff}')
                .trim()
                .to_string(),
        );
    }
    // Trailing unnamed columns are an Excel artefact (formatted empty cells).
    while columns.last().is_some_and(|c| c.is_empty()) {
        columns.pop();
    }
    if columns.is_empty() {
        return Err(CsvError::BadHeader {
            reason: "the first line has no column names".to_string(),
        });
    }
    if let Some(pos) = columns.iter().position(|c| c.is_empty()) {
        return Err(CsvError::EmptyColumnName { position: pos + 1 });
    }
    let mut seen = std::collections::HashSet::with_capacity(columns.len());
    if let Some(dup) = columns.iter().find(|c| !seen.insert(c.as_str())) {
        return Err(CsvError::DuplicateColumn { name: dup.clone() });
    }

    let wanted = opts.phone_column.trim();
    let find_unique = |wanted: &str| -> Result<Option<usize>, CsvError> {
        let mut hits = columns
            .iter()
            .enumerate()
            .filter(|(_, c)| same_name(c, wanted));
        let first = hits.next();
        match (first, hits.next()) {
            (Some(_), Some((_, second))) => Err(CsvError::DuplicateColumn {
                name: second.clone(),
            }),
            (first, _) => Ok(first.map(|(i, _)| i)),
        }
    };
    let phone_index = find_unique(wanted)?.ok_or_else(|| CsvError::NoPhoneColumn {
        path: path.to_path_buf(),
        wanted: wanted.to_string(),
        found: columns.clone(),
    })?;
    let tracking_index = find_unique(TRACKING_COLUMN)?.filter(|&i| i != phone_index);

    let mut template_keys = Vec::new();
    let mut template_fields = Vec::new();
    let mut required = Vec::new();
    for (i, name) in columns.iter().enumerate() {
        if i == phone_index || Some(i) == tracking_index {
            continue;
        }
        template_keys.push(name.clone());
        template_fields.push(i);
        required.push(
            !opts
                .optional_columns
                .iter()
                .chain(&opts.template_optional_columns)
                .any(|o| same_name(o.trim(), name)),
        );
    }
    if template_keys.is_empty() {
        return Err(CsvError::ReservedColumnOnly);
    }
    // A typo here would silently make the column required: refuse it.
    let unknown_optional_columns: Vec<String> = opts
        .optional_columns
        .iter()
        .filter(|o| !template_keys.iter().any(|k| same_name(o.trim(), k)))
        .cloned()
        .collect();
    if !unknown_optional_columns.is_empty() {
        return Err(CsvError::UnknownOptionalColumns {
            path: path.to_path_buf(),
            unknown: unknown_optional_columns,
            found: template_keys,
        });
    }

    Ok(AnalysedHeader {
        header: CsvHeader {
            columns,
            phone_index,
            tracking_index,
            template_keys,
        },
        template_fields,
        required,
    })
}

fn raw_phone_text(field: &[u8]) -> String {
    // 64 chars are at most 256 bytes: don't decode a 1 MB cell to show 64.
    let head = field.get(..RAW_PHONE_CHARS * 4).unwrap_or(field);
    String::from_utf8_lossy(head)
        .chars()
        .take(RAW_PHONE_CHARS)
        .collect()
}

fn open_file(path: &Path) -> Result<File, CsvError> {
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

fn read_sample(file: &mut File) -> io::Result<Vec<u8>> {
    let mut sample = Vec::with_capacity(SNIFF_BYTES);
    file.by_ref()
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut sample)?;
    Ok(sample)
}

/// What the start of the file looks like if it is not text.
fn sniff_binary(sample: &[u8]) -> Option<&'static str> {
    const XLSX: &str = "an Excel workbook (.xlsx); save it as \"CSV UTF-8\"";
    if sample.starts_with(b"PK\x03\x04") {
        return Some(XLSX);
    }
    if sample.starts_with(b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1") {
        return Some("an old Excel workbook (.xls); save it as \"CSV UTF-8\"");
    }
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
fn count_breaks(prev: u8, bytes: &[u8]) -> u64 {
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
struct Tap<R> {
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
    tripped: bool,
}

impl<R> Tap<R> {
    fn new(inner: R, limit: u64) -> Self {
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

    fn record_start_line(&self) -> Option<u64> {
        if self.seeking {
            None
        } else {
            self.next_line
        }
    }

    fn chunk_end(&self) -> u64 {
        self.chunk_start + self.chunk.len() as u64
    }

    /// Moves the cursor to stream offset `to` (clamped to the chunk). In
    /// seeking mode with `stop`, halts on the first byte that is not CR/LF.
    fn walk(&mut self, to: u64, stop: bool) {
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
    fn mark(&mut self, end: u64) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::{Duration, Instant};

    fn file_with(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(bytes).expect("write");
        f.flush().expect("flush");
        f
    }

    fn open_with(bytes: &[u8], opts: &CsvOptions) -> Result<CsvReader, CsvError> {
        let f = file_with(bytes);
        let r = CsvReader::open(f.path(), opts);
        // The reader holds the open file; the path may go.
        drop(f);
        r
    }

    fn items_with(bytes: &[u8], opts: &CsvOptions) -> Vec<CsvItem> {
        let rdr = open_with(bytes, opts).expect("open");
        rdr.collect::<Result<Vec<_>, _>>().expect("read")
    }

    fn items(bytes: &[u8]) -> Vec<CsvItem> {
        items_with(bytes, &CsvOptions::default())
    }

    fn open_err(bytes: &[u8]) -> CsvError {
        open_with(bytes, &CsvOptions::default()).expect_err("open should fail")
    }

    fn row(item: &CsvItem) -> &CsvRow {
        match item {
            CsvItem::Row(r) => r,
            CsvItem::Rejected(r) => panic!("rejected: {r:?}"),
        }
    }

    fn rejected(item: &CsvItem) -> &RejectedRow {
        match item {
            CsvItem::Rejected(r) => r,
            CsvItem::Row(r) => panic!("accepted: {r:?}"),
        }
    }

    /// The single rejection of a one-row file, with its reason checked.
    fn reject_reason(bytes: &[u8], opts: &CsvOptions, want: &str) -> RejectedRow {
        let got = items_with(bytes, opts);
        assert_eq!(got.len(), 1, "{got:?}");
        let rej = rejected(&got[0]).clone();
        assert!(
            rej.reason.contains(want),
            "reason {:?} lacks {want:?}",
            rej.reason
        );
        rej
    }

    #[test]
    fn bom_crlf_and_vietnamese_pass_through_unchanged() {
        let data = "\u{feff}phone,name,note\r\n\
                    0912345678,Nguyễn Văn Ánh,Hóa đơn tháng 11\r\n\
                    +84 987 654 321,Trần Thị Bích,\"Đơn hàng, số 5\"\r\n\
                    84351234567,Lê Đức Thọ,Hóa đơn tháng 11\r\n";
        let got = items(data.as_bytes());
        let rows: Vec<&CsvRow> = got.iter().map(row).collect();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].line, 2);
        assert_eq!(rows[0].phone, "84912345678");
        assert_eq!(rows[0].values, ["Nguyễn Văn Ánh", "Hóa đơn tháng 11"]);
        assert_eq!(
            rows[0].values[0].as_bytes(),
            "Nguyễn Văn Ánh".as_bytes(),
            "byte-for-byte"
        );
        assert_eq!(rows[1].line, 3);
        assert_eq!(rows[1].phone, "84987654321");
        assert_eq!(rows[1].values, ["Trần Thị Bích", "Đơn hàng, số 5"]);
        assert_eq!(rows[2].line, 4);
        assert_eq!(rows[2].values[1].as_bytes(), "Hóa đơn tháng 11".as_bytes());
        assert_eq!(rows[2].tracking_id, None);

        let rdr = open_with(data.as_bytes(), &CsvOptions::default()).expect("open");
        assert_eq!(rdr.header().columns, ["phone", "name", "note"]);
        assert_eq!(rdr.header().template_keys, ["name", "note"]);
        assert_eq!(rdr.header().phone_index, 0);
    }

    #[test]
    fn line_numbers_follow_physical_lines() {
        let lines = |data: &[u8]| -> Vec<u64> { items(data).iter().map(CsvItem::line).collect() };
        // LF with blank lines and a quoted value spanning lines.
        assert_eq!(
            lines(b"phone,a\n0912345678,x\n\n\n0912345678,y\n0912345678,\"p\nq\nr\"\n0912345678,z"),
            [2, 5, 6, 9]
        );
        // CRLF (Excel) with a blank line and a CRLF inside a quoted value.
        assert_eq!(
            lines(b"phone,a\r\n0912345678,x\r\n\r\n0912345678,\"p\r\nq\"\r\n0912345678,z\r\n"),
            [2, 4, 6]
        );
        // Old Mac: CR only.
        assert_eq!(lines(b"phone,a\r0912345678,x\r\r0912345678,y\r"), [2, 4]);
        // Mixed endings, blank lines before the header.
        assert_eq!(
            lines(b"\n\r\nphone,a\r\n0912345678,x\n0912345678,y\r0912345678,z"),
            [4, 5, 6]
        );
        // A quote never closed runs to the end of the file.
        let got = items(b"phone,a\n0912345678,x\n0912345678,\"oops\n0912345678,y\n");
        assert_eq!(got.iter().map(CsvItem::line).collect::<Vec<_>>(), [2, 3]);
    }

    #[test]
    fn long_records_across_buffer_refills_keep_line_numbers() {
        let mut data = b"phone,a\n".to_vec();
        let big = "x".repeat(50_000);
        for i in 0..20 {
            data.extend_from_slice(format!("0912345678,\"{big}\n{i}\"\r\n\r\n").as_bytes());
        }
        let got: Vec<u64> = items(&data).iter().map(CsvItem::line).collect();
        let want: Vec<u64> = (0..20).map(|i| 2 + 3 * i).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn header_handling() {
        let opts = CsvOptions {
            phone_column: " SĐT ".to_string(),
            delimiter: b';',
            optional_columns: vec!["Ghi chú".to_string()],
            ..CsvOptions::default()
        };
        let data = "sđt;Tracking_ID;Tên;Ghi chú;;\n0912345678;t-1;An;;;\n0912345678;;Bình;x\n";
        let typo = CsvOptions {
            optional_columns: vec!["Ghi chú".to_string(), "nope".to_string()],
            ..opts.clone()
        };
        let Err(err) = open_with(data.as_bytes(), &typo) else {
            panic!("a typo in optional_columns is refused");
        };
        assert!(
            err.to_string().contains("`nope`") && err.to_string().contains("`Tên`, `Ghi chú`"),
            "{err}"
        );
        let rdr = open_with(data.as_bytes(), &opts).expect("open");
        let h = rdr.header().clone();
        assert_eq!(h.columns, ["sđt", "Tracking_ID", "Tên", "Ghi chú"]);
        assert_eq!(h.phone_index, 0);
        assert_eq!(h.tracking_index, Some(1));
        assert_eq!(h.template_keys, ["Tên", "Ghi chú"]);
        let got = rdr.collect::<Result<Vec<_>, _>>().expect("read");
        assert_eq!(row(&got[0]).tracking_id.as_deref(), Some("t-1"));
        assert_eq!(row(&got[0]).values, ["An", ""]);
        assert_eq!(row(&got[1]).tracking_id, None);
        assert_eq!(row(&got[1]).values, ["Bình", "x"]);
    }

    #[test]
    fn fatal_file_errors() {
        let missing = CsvReader::open(Path::new("/nonexistent/x.csv"), &CsvOptions::default());
        assert!(matches!(missing, Err(CsvError::NotFound(_))));

        for empty in [&b""[..], b"\xEF\xBB\xBF", b"\n\r\n\n"] {
            assert!(
                matches!(open_err(empty), CsvError::Empty { .. }),
                "{empty:?}"
            );
        }
        let cases: [(&[u8], &str); 6] = [
            (b"phone,a\n\0\0\0", "looks like a binary file, not a CSV"),
            (b"PK\x03\x04rest", "Excel workbook (.xlsx)"),
            (b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1", "old Excel workbook"),
            (b"\xFF\xFEp\0h\0", "UTF-16"),
            (b"\x1F\x8B\x08", "gzip"),
            (b"\x01\x02\x03\x04\x05phone", "binary file"),
        ];
        for (data, want) in cases {
            let e = open_err(data).to_string();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn header_errors() {
        let e = open_err(b"name,amount\n1,2\n");
        assert!(matches!(e, CsvError::NoPhoneColumn { .. }));
        let msg = e.to_string();
        assert!(msg.contains("no `phone` column"), "{msg}");
        assert!(msg.contains("found: `name`, `amount`"), "{msg}");
        assert!(msg.contains("--phone-column"), "{msg}");

        let msg = open_err(b"phone;name\n").to_string();
        assert!(msg.contains("separated by `;`"), "{msg}");
        let msg = open_err(b"so_dien_thoai,name\n").to_string();
        assert!(
            msg.contains("`so_dien_thoai` looks like the phone column"),
            "{msg}"
        );

        let e = open_err(b"phone,name,name\n");
        assert!(matches!(e, CsvError::DuplicateColumn { ref name } if name == "name"));
        let e = open_err(b"Phone,name,PHONE\n");
        assert!(matches!(e, CsvError::DuplicateColumn { ref name } if name == "PHONE"));
        let e = open_err(b"phone,,name\n");
        assert!(matches!(e, CsvError::EmptyColumnName { position: 2 }));
        assert!(e.to_string().contains("column 2 has an empty name"));
        let e = open_err(b",,,\n");
        assert!(matches!(e, CsvError::BadHeader { .. }), "{e}");
        let e = open_err(b"phone,n\xE9m\n");
        assert!(e.to_string().contains("not valid UTF-8"), "{e}");
        let e = open_err(b"phone,tracking_id\n0912345678,a\n");
        assert!(matches!(e, CsvError::ReservedColumnOnly));
        assert!(e.to_string().contains("no template columns besides phone"));
        let e = open_err(b"phone\n0912345678\n");
        assert!(matches!(e, CsvError::ReservedColumnOnly));
    }

    #[test]
    fn rejection_reasons() {
        let d = CsvOptions::default();
        let r = reject_reason(
            b"phone,a,b,c\n0912345678,1,2,3,4\n",
            &d,
            "has 5 fields, header has 4 (check for an unquoted `,` in a value)",
        );
        assert_eq!(r.line, 2);
        assert_eq!(r.raw_phone, "0912345678");
        reject_reason(
            b"phone,a,b,c\n0912345678,1,2\n",
            &d,
            "has 3 fields, header has 4 (check for a missing `,`",
        );
        reject_reason(
            b"phone,a,b\n0912345678,\"1,2\n3\n4\n",
            &d,
            "the record spans lines 2\u{2013}5: check for a quote (\") that is not closed",
        );
        reject_reason(
            b"phone,a,,\n0912345678,1,,x\n",
            &d,
            "column 4 has a value but no name in the header",
        );
        // Trailing empty fields carry no data and are fine.
        let ok = items(b"phone,a\n0912345678,1,,\n");
        assert_eq!(row(&ok[0]).values, ["1"]);

        let r = reject_reason(
            b"phone,a,b\n,,\n",
            &d,
            "empty phone (the whole row is blank",
        );
        assert_eq!(r.raw_phone, "");
        reject_reason(b"phone,a,b\n   \n", &d, "empty phone");
        reject_reason(b"phone,a\n,x\n", &d, "empty phone");
        let r = reject_reason(
            b"phone,a\n0912abc,x\n",
            &d,
            "phone `0912abc` contains letters",
        );
        assert_eq!(r.raw_phone, "0912abc");
        reject_reason(
            b"phone,a\n+1 415 555 0100,x\n",
            &d,
            "not a Vietnamese number (+1)",
        );
        reject_reason(
            b"phone,amount\n0912345678,\n",
            &d,
            "empty value in required column `amount` (fill it in or list the column in \
             --optional-columns)",
        );
        reject_reason(
            b"phone,a,b,c,d,e,f,g\n0912345678, ,,,,,,\n",
            &d,
            "empty values in required columns `a`, `b`, `c`, `d`, `e` and 2 more",
        );
        reject_reason(
            b"phone,amount\nabc,\n",
            &d,
            "phone `abc` contains letters; empty value in required column `amount`",
        );
        let opt = CsvOptions {
            optional_columns: vec!["AMOUNT".to_string()],
            ..CsvOptions::default()
        };
        assert_eq!(
            row(&items_with(b"phone,amount\n0912345678,\n", &opt)[0]).values,
            [""]
        );

        reject_reason(
            b"phone,name\n0912345678,Nguy\xE1n\n",
            &d,
            "value in column `name` is not valid UTF-8 (save the file as \"CSV UTF-8\")",
        );
        let r = reject_reason(
            b"phone,name\n09\xFF12,x\n",
            &d,
            "column `phone` is not valid UTF-8",
        );
        assert_eq!(r.raw_phone, "09\u{fffd}12");

        // NUL past the sniffed start of the file.
        let mut data = b"phone,name\n".to_vec();
        for _ in 0..400 {
            data.extend_from_slice(b"0912345678,abcdefghijklmnopqrstu\n");
        }
        data.extend_from_slice(b"0912345678,a\0b\n");
        let got = items(&data);
        assert_eq!(got.len(), 401);
        let last = rejected(&got[400]);
        assert_eq!(last.line, 402);
        assert!(
            last.reason.contains("column `name` contains a NUL byte"),
            "{last:?}"
        );

        let mut huge = b"phone,name\n0912345678,".to_vec();
        huge.extend(std::iter::repeat_n(b'x', 1 << 20));
        huge.extend_from_slice(b"\n0912345678,ok\n");
        let got = items(&huge);
        assert_eq!(got.len(), 2);
        assert!(rejected(&got[0])
            .reason
            .contains("value in column `name` is 1048576 bytes, limit 65536"));
        assert_eq!(row(&got[1]).line, 3);

        let mut huge_phone = b"phone,name\n".to_vec();
        huge_phone.extend(std::iter::repeat_n(b'9', 100_000));
        huge_phone.extend_from_slice(b",x\n");
        let got = items(&huge_phone);
        assert_eq!(rejected(&got[0]).raw_phone.chars().count(), 64);
    }

    #[test]
    fn values_are_trimmed_of_ascii_space_only() {
        let got = items("phone,a,b\n 0912345678 , \u{a0}Ánh\u{a0} ,\" x \"\n".as_bytes());
        assert_eq!(row(&got[0]).values, ["\u{a0}Ánh\u{a0}", "x"]);
    }

    #[test]
    fn bom_in_the_middle_is_data_but_not_in_the_phone() {
        let got = items("phone,a\n\u{feff}0912345678,\u{feff}x\n".as_bytes());
        assert_eq!(row(&got[0]).phone, "84912345678");
        assert_eq!(row(&got[0]).values, ["\u{feff}x"]);
    }

    #[test]
    fn skip_through_line_resumes_after_a_line() {
        let data = b"phone,a\n0912345678,r2\n0912345678,\"r3\nstill r3\"\n\n0912345678,r6\n0912345678,r7\n";
        let values = |mut rdr: CsvReader, skip: &[u64]| -> Vec<(u64, String)> {
            for &s in skip {
                rdr.skip_through_line(s).expect("skip");
            }
            rdr.map(|i| {
                let r = row(&i.expect("item")).clone();
                (r.line, r.values[0].clone())
            })
            .collect()
        };
        let open = || open_with(data, &CsvOptions::default()).expect("open");
        let all = values(open(), &[]);
        assert_eq!(
            all.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
            [2, 3, 6, 7]
        );
        assert_eq!(values(open(), &[1]).len(), 4);
        assert_eq!(values(open(), &[2])[0].1, "r3\nstill r3");
        // Line 4 is inside record 3 and line 5 is blank: both resume at 6.
        assert_eq!(values(open(), &[4])[0].0, 6);
        assert_eq!(values(open(), &[5])[0].0, 6);
        assert_eq!(values(open(), &[6]), [(7, "r7".to_string())]);
        assert!(values(open(), &[7]).is_empty());
        assert!(values(open(), &[1000]).is_empty());
        // A second, smaller skip does not lose the record held back.
        assert_eq!(values(open(), &[3, 2])[0].0, 6);
        // Skipping over rejected rows works the same.
        let bad = b"phone,a\nbad,1\nbad,2\n0912345678,3\n";
        let rdr = open_with(bad, &CsvOptions::default()).expect("open");
        assert_eq!(values(rdr, &[3]), [(4, "3".to_string())]);
    }

    #[test]
    fn runaway_quote_is_fatal_not_a_memory_blowup() {
        let mut data = b"phone,a\n0912345678,ok\n0912345678,\"never closed\n".to_vec();
        for _ in 0..40_000 {
            data.extend_from_slice(b"0912345678,more\n");
        }
        let f = file_with(&data);
        let mut rdr =
            CsvReader::open_with_limit(f.path(), &CsvOptions::default(), 256 * 1024).expect("open");
        assert!(matches!(rdr.next(), Some(Ok(CsvItem::Row(_)))));
        match rdr.next() {
            Some(Err(e @ CsvError::RecordTooLarge { line: 3, .. })) => {
                assert!(e.to_string().contains("is probably never closed"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        assert!(rdr.next().is_none(), "fused after a fatal error");
        assert!(rdr.skip_through_line(10).is_ok());
    }

    #[test]
    fn two_hundred_thousand_rows_stream() {
        let mut f = tempfile::NamedTempFile::new().expect("temp");
        {
            let mut w = io::BufWriter::new(f.as_file_mut());
            writeln!(w, "phone,name,amount").expect("write");
            for i in 0..200_000u32 {
                writeln!(w, "09{:08},Khách {i},{}", i, i % 1000).expect("write");
            }
            w.flush().expect("flush");
        }
        let started = Instant::now();
        let mut rdr = CsvReader::open(f.path(), &CsvOptions::default()).expect("open");
        let (mut rows, mut last_line) = (0u64, 0u64);
        while let Some(item) = rdr.next_item().expect("read") {
            rows += u64::from(matches!(item, CsvItem::Row(_)));
            last_line = item.line();
        }
        assert_eq!(rows, 200_000);
        assert_eq!(last_line, 200_001);
        assert!(started.elapsed() < Duration::from_secs(60));
    }

    #[test]
    fn sha256_of_file() {
        let f = file_with(b"abc");
        assert_eq!(
            file_sha256(f.path()).expect("hash"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(matches!(
            file_sha256(Path::new("/nonexistent/x.csv")),
            Err(CsvError::NotFound(_))
        ));
    }
}
