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
use std::io::{self, Seek};
use std::path::{Path, PathBuf};

use csv::ByteRecord;

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
    /// A workbook's sheet to read (`None`: the first). Only for workbooks.
    pub sheet: Option<String>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            phone_column: "phone".to_string(),
            delimiter: b',',
            optional_columns: Vec::new(),
            template_optional_columns: Vec::new(),
            sheet: None,
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
    /// What is wrong and how to fix it (without the line number): a code
    /// and its parameters, and the English text.
    pub reason: Reason,
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
    #[error("{}: {reason}", path.display())]
    Workbook { path: PathBuf, reason: String },
    #[error(
        "{}: no sheet named `{wanted}` (sheets: {})",
        path.display(),
        list_names(found.iter().map(String::as_str), found.len())
    )]
    UnknownSheet {
        path: PathBuf,
        wanted: String,
        found: Vec<String>,
    },
    #[error(
        "{}: --sheet `{sheet}` given but the file is a CSV, not an Excel or OpenDocument workbook",
        path.display()
    )]
    SheetOnCsv { path: PathBuf, sheet: String },
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

mod file;
mod header;
mod sheet;
#[cfg(test)]
mod tests;

pub use crate::model::reason::Reason;
use file::{count_breaks, open_file, raw_phone_text, read_sample, sniff_binary, Tap};
pub use file::{detect_delimiter, file_sha256, input_identity, short_identity};
use header::{analyse_header, list_names, no_phone_column, plain_names};

/// A reason without parameters.
const NO_PARAMS: [(&str, &str); 0] = [];

/// Streaming reader; see the module docs.
pub struct CsvReader {
    path: PathBuf,
    source: Source,
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
    /// The error cell (`#N/A`) of the workbook row in `record`, if any:
    /// column index and the error's text.
    cell_error: Option<sheet::CellError>,
}

/// Where records come from: a CSV parser, or a workbook's sheet whose cells
/// arrive as text (then every check below is the CSV's).
enum Source {
    Csv(csv::Reader<Tap<File>>),
    Sheet(sheet::SheetRows),
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
        file.rewind().map_err(io_err)?;
        if let Some(kind) = sheet::detect(path, &sample) {
            let rows = sheet::SheetRows::open(path, file, kind, opts.sheet.as_deref())?;
            return Self::from_source(path, opts, Source::Sheet(rows));
        }
        if let Some(sheet) = &opts.sheet {
            return Err(CsvError::SheetOnCsv {
                path: path.to_path_buf(),
                sheet: sheet.clone(),
            });
        }
        if let Some(what) = sniff_binary(&sample) {
            return Err(CsvError::Binary {
                path: path.to_path_buf(),
                what,
            });
        }

        let rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(opts.delimiter)
            .buffer_capacity(64 * 1024)
            .from_reader(Tap::new(file, record_limit));
        Self::from_source(path, opts, Source::Csv(rdr))
    }

    /// Reads and analyses the header row.
    fn from_source(path: &Path, opts: &CsvOptions, source: Source) -> Result<CsvReader, CsvError> {
        let mut reader = CsvReader {
            path: path.to_path_buf(),
            source,
            header: CsvHeader {
                columns: Vec::new(),
                phone_index: 0,
                tracking_index: None,
                template_keys: Vec::new(),
            },
            template_fields: Vec::new(),
            required: Vec::new(),
            header_width: 0,
            delimiter: opts.delimiter,
            record: ByteRecord::new(),
            pending: None,
            done: false,
            cell_error: None,
        };
        match reader.advance()? {
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
        let analysed = analyse_header(path, &reader.record, opts)?;
        reader.header = analysed.header;
        reader.template_fields = analysed.template_fields;
        reader.required = analysed.required;
        reader.header_width = match reader.source {
            Source::Csv(_) => reader.record.len(),
            // A sheet has no delimiters to miscount: a value past the named
            // columns is always a value without a header.
            Source::Sheet(_) => usize::MAX,
        };
        Ok(reader)
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
                        reason: Reason::new("row.unreadable", [("detail", &reason)], &reason),
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
        let result = match &mut self.source {
            Source::Csv(rdr) => read_record(rdr, &mut self.record, &self.path),
            Source::Sheet(rows) => {
                read_sheet_row(rows, &mut self.record, self.header.columns.len()).map(|read| {
                    match read {
                        Some((line, error)) => {
                            self.cell_error = error;
                            Read1::Record(line)
                        }
                        None => Read1::End,
                    }
                })
            }
        };
        if result.is_err() {
            self.done = true;
        }
        result
    }

    /// The next record's start line and its cells as written (lossy UTF-8,
    /// no check): for handing rows back in their original columns.
    pub fn next_raw(&mut self) -> Result<Option<(u64, Vec<String>)>, CsvError> {
        if self.done {
            return Ok(None);
        }
        match self.advance()? {
            Read1::Record(line) => Ok(Some((
                line,
                self.record
                    .iter()
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect(),
            ))),
            Read1::Unreadable { line, .. } => Ok(Some((line, Vec::new()))),
            Read1::End => {
                self.done = true;
                Ok(None)
            }
        }
    }

    /// Turns the record in `self.record` into a row or a rejection.
    fn check_record(&self, line: u64) -> CsvItem {
        let rec = &self.record;
        let raw_phone = rec
            .get(self.header.phone_index)
            .map(raw_phone_text)
            .unwrap_or_default();
        let reject = |reason: Reason| {
            CsvItem::Rejected(RejectedRow {
                line,
                raw_phone: raw_phone.clone(),
                reason,
            })
        };

        if let Some((col, err)) = &self.cell_error {
            let column = self.column_name(*col);
            return reject(Reason::new(
                "cell.spreadsheet_error",
                [("column", column.clone()), ("error", err.to_string())],
                format!(
                    "column `{column}` holds the spreadsheet error {err} (fix the formula or \
                     the value, then save the file again)"
                ),
            ));
        }
        if rec.iter().all(|f| f.trim_ascii().is_empty()) {
            return reject(Reason::new(
                "row.blank",
                NO_PARAMS,
                "empty phone (the whole row is blank: delete it)",
            ));
        }

        let named = self.header.columns.len();
        let extra_data = rec
            .iter()
            .enumerate()
            .skip(named)
            .find(|(_, f)| !f.trim_ascii().is_empty());
        if let Some((i, _)) = extra_data.filter(|_| rec.len() <= self.header_width) {
            return reject(Reason::new(
                "column.unnamed_value",
                [("position", i + 1)],
                format!(
                    "column {} has a value but no name in the header (name the column, or \
                     delete the value)",
                    i + 1
                ),
            ));
        }
        if rec.len() < named || extra_data.is_some() {
            let delim = char::from(self.delimiter);
            let (code, hint) = if rec.len() < named {
                (
                    "row.too_few_fields",
                    format!(
                        "check for a missing `{delim}` or a line break inside an unquoted value"
                    ),
                )
            } else {
                (
                    "row.too_many_fields",
                    format!("check for an unquoted `{delim}` in a value"),
                )
            };
            let shown = if delim == '\t' {
                "Tab".to_string()
            } else {
                delim.to_string()
            };
            let mut reason = Reason::new(
                code,
                [
                    ("fields", rec.len().to_string()),
                    ("expected", named.to_string()),
                    ("delimiter", shown),
                ],
                format!(
                    "has {} field{}, header has {named} ({hint})",
                    rec.len(),
                    if rec.len() == 1 { "" } else { "s" }
                ),
            );
            let inner_breaks: u64 = rec.iter().map(|f| count_breaks(0, f)).sum();
            if inner_breaks > 0 {
                let to = line.saturating_add(inner_breaks);
                reason = Reason::join([
                    reason,
                    Reason::new(
                        "row.open_quote",
                        [("from", line), ("to", to)],
                        format!(
                            "the record spans lines {line}–{to}: check for a quote (\") that \
                             is not closed"
                        ),
                    ),
                ]);
            }
            return reject(reason);
        }

        // Structural problems first: the values cannot be trusted after them.
        // Each field is checked as UTF-8 once, and read as that text after.
        let mut texts: Vec<&str> = Vec::with_capacity(named);
        for (i, field) in rec.iter().take(named).enumerate() {
            let column = || self.column_name(i);
            if field.len() > MAX_FIELD_BYTES {
                return reject(Reason::new(
                    "value.too_long",
                    [
                        ("column", column()),
                        ("bytes", field.len().to_string()),
                        ("max", MAX_FIELD_BYTES.to_string()),
                    ],
                    format!(
                        "value in column `{}` is {} bytes, limit {MAX_FIELD_BYTES}",
                        column(),
                        field.len()
                    ),
                ));
            }
            if field.contains(&0) {
                return reject(Reason::new(
                    "value.nul",
                    [("column", column())],
                    format!(
                        "value in column `{}` contains a NUL byte (the file looks corrupt: \
                         export it again)",
                        column()
                    ),
                ));
            }
            match std::str::from_utf8(field) {
                Ok(text) => texts.push(text.trim_ascii()),
                Err(_) => {
                    return reject(Reason::new(
                        "value.not_utf8",
                        [("column", column())],
                        format!(
                            "value in column `{}` is not valid UTF-8 (save the file as \
                             \"CSV UTF-8\")",
                            column()
                        ),
                    ))
                }
            }
        }

        let text = |i: usize| -> &str { texts.get(i).copied().unwrap_or("") };

        let mut problems = Vec::new();
        let phone_cell = text(self.header.phone_index);
        let phone = match crate::model::phone::normalize(phone_cell) {
            Ok(p) => Some(p),
            Err(e) => {
                problems.push(e.reason());
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
            [one] => problems.push(Reason::new(
                "column.empty",
                [("name", one)],
                format!(
                    "empty value in required column `{one}` (fill it in or list the column \
                     in --optional-columns)"
                ),
            )),
            many => problems.push(Reason::new(
                "column.empty_many",
                [
                    ("names", plain_names(many.iter().copied(), many.len())),
                    ("count", many.len().to_string()),
                ],
                format!(
                    "empty values in required columns {} (fill them in or list the columns \
                     in --optional-columns)",
                    list_names(many.iter().copied(), many.len())
                ),
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
            _ => reject(Reason::join(problems)),
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

/// Reads one sheet row into `record`, padded with empty cells to `width`
/// (a sheet leaves trailing empty cells out). Its line and error cell.
fn read_sheet_row(
    rows: &mut sheet::SheetRows,
    record: &mut ByteRecord,
    width: usize,
) -> Result<Option<(u64, Option<sheet::CellError>)>, CsvError> {
    let Some(row) = rows.next_row()? else {
        return Ok(None);
    };
    record.clear();
    for cell in &row.cells {
        record.push_field(cell.as_bytes());
    }
    for _ in row.cells.len()..width {
        record.push_field(b"");
    }
    Ok(Some((row.line, row.error)))
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
