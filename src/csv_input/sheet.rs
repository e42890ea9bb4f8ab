//! Excel and OpenDocument workbooks (`.xlsx`, `.xlsm`, `.xls`, `.ods`).
//!
//! A worker thread owns the workbook (calamine's xlsx cell reader borrows
//! it, so the two cannot live in one struct) and sends rows — each cell
//! already the text a person sees — through a small bounded channel. The
//! CSV reader takes them from there, so every check and reject reason after
//! the reader is the CSV's own.
//!
//! Memory: `.xlsx` is streamed cell by cell (`worksheet_cells_reader`); only
//! the workbook's shared-string table and styles are held whole. `.xls`
//! (at most 65,536 rows) and `.ods` are loaded whole by calamine.

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use calamine::{Data, Ods, Reader, Xls, Xlsx};

use super::CsvError;

/// Rows in flight between the worker and the reader.
const CHANNEL_ROWS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Xlsx,
    Xls,
    Ods,
    /// A zip without a telling extension (an upload): xlsx, else ods.
    Zip,
}

/// The workbook kind from the extension, else from the first bytes (uploads
/// are stored under a `.csv` name). `None`: not a workbook.
pub(super) fn detect(path: &Path, sample: &[u8]) -> Option<Kind> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("xlsx" | "xlsm") => Some(Kind::Xlsx),
        Some("xls") => Some(Kind::Xls),
        Some("ods") => Some(Kind::Ods),
        _ if sample.starts_with(b"PK\x03\x04") => Some(Kind::Zip),
        _ if sample.starts_with(b"\xD0\xCF\x11\xE0") => Some(Kind::Xls),
        _ => None,
    }
}

/// An error cell (`#N/A`, …): its column index and its text.
pub(super) type CellError = (usize, String);

/// One non-blank sheet row.
pub(super) struct SheetRow {
    /// 1-based sheet row number.
    pub line: u64,
    /// Cell texts from column A on.
    pub cells: Vec<String>,
    /// The row's first error cell.
    pub error: Option<CellError>,
}

type Msg = Result<SheetRow, CsvError>;

/// Rows of one sheet, read by a worker thread.
pub(super) struct SheetRows {
    rx: Receiver<Msg>,
}

impl SheetRows {
    /// Opens the workbook and its sheet (`None`: the first). Errors opening
    /// it or an unknown sheet come back here, before any row.
    pub(super) fn open(
        path: &Path,
        file: File,
        kind: Kind,
        sheet: Option<&str>,
    ) -> Result<SheetRows, CsvError> {
        let (tx, rx) = sync_channel::<Msg>(CHANNEL_ROWS);
        // The worker reports whether the sheet opened before streaming rows.
        let (ready_tx, ready_rx) = sync_channel::<Result<(), CsvError>>(1);
        let path_owned = path.to_path_buf();
        let sheet = sheet.map(str::to_string);
        std::thread::Builder::new()
            .name("sheet-reader".into())
            .spawn(move || {
                work(
                    &path_owned,
                    BufReader::new(file),
                    kind,
                    sheet.as_deref(),
                    &ready_tx,
                    &tx,
                )
            })
            .map_err(|source| CsvError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(SheetRows { rx }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(bad(path, "the workbook reader stopped unexpectedly")),
        }
    }

    /// The next non-blank row; `Ok(None)` at the end of the sheet.
    pub(super) fn next_row(&mut self) -> Result<Option<SheetRow>, CsvError> {
        match self.rx.recv() {
            Ok(Ok(row)) => Ok(Some(row)),
            Ok(Err(e)) => Err(e),
            // The worker is done (its sender dropped).
            Err(_) => Ok(None),
        }
    }
}

fn bad(path: &Path, reason: impl std::fmt::Display) -> CsvError {
    CsvError::Workbook {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Picks the sheet: the named one (exact, else case-insensitive) or the first.
fn pick_sheet(path: &Path, names: Vec<String>, wanted: Option<&str>) -> Result<String, CsvError> {
    let found = match wanted {
        None => names.first().cloned(),
        Some(w) => names
            .iter()
            .find(|n| n.as_str() == w)
            .or_else(|| {
                names
                    .iter()
                    .find(|n| n.trim().eq_ignore_ascii_case(w.trim()))
            })
            .cloned(),
    };
    found.ok_or_else(|| match wanted {
        Some(w) => CsvError::UnknownSheet {
            path: path.to_path_buf(),
            wanted: w.to_string(),
            found: names,
        },
        None => bad(path, "the workbook has no sheet"),
    })
}

/// The worker: opens, reports readiness, then streams rows until the end or
/// until the reader hangs up.
fn work<R: Read + Seek>(
    path: &Path,
    rs: R,
    kind: Kind,
    sheet: Option<&str>,
    ready: &SyncSender<Result<(), CsvError>>,
    tx: &SyncSender<Msg>,
) {
    let mut rows = RowBuilder::new(tx);
    let result = match kind {
        Kind::Xlsx => stream_xlsx(path, rs, sheet, ready, &mut rows),
        Kind::Xls => match Xls::new(rs) {
            Ok(wb) => whole_sheet(path, wb, sheet, ready, &mut rows),
            Err(e) => Err(bad(path, format!("not a readable .xls workbook ({e})"))),
        },
        Kind::Ods => match Ods::new(rs) {
            Ok(wb) => whole_sheet(path, wb, sheet, ready, &mut rows),
            Err(e) => Err(bad(path, format!("not a readable .ods workbook ({e})"))),
        },
        Kind::Zip => zip_workbook(path, rs, sheet, ready, &mut rows),
    };
    match result {
        Ok(()) => rows.flush(),
        // Only opening fails this way (a mid-sheet error goes to the rows),
        // so the opener, still waiting on `ready`, gets it.
        Err(e) => {
            let _ = ready.send(Err(e));
        }
    }
}

/// An upload stored under a `.csv` name: xlsx if it opens as one, else ods.
fn zip_workbook<R: Read + Seek>(
    path: &Path,
    mut rs: R,
    sheet: Option<&str>,
    ready: &SyncSender<Result<(), CsvError>>,
    rows: &mut RowBuilder<'_>,
) -> Result<(), CsvError> {
    let is_xlsx = Xlsx::new(&mut rs).is_ok();
    rs.rewind().map_err(|source| CsvError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if is_xlsx {
        return stream_xlsx(path, rs, sheet, ready, rows);
    }
    match Ods::new(rs) {
        Ok(wb) => whole_sheet(path, wb, sheet, ready, rows),
        Err(_) => Err(bad(
            path,
            "a zip file but not an Excel (.xlsx) or OpenDocument (.ods) workbook",
        )),
    }
}

fn stream_xlsx<R: Read + Seek>(
    path: &Path,
    rs: R,
    sheet: Option<&str>,
    ready: &SyncSender<Result<(), CsvError>>,
    rows: &mut RowBuilder<'_>,
) -> Result<(), CsvError> {
    let mut wb =
        Xlsx::new(rs).map_err(|e| bad(path, format!("not a readable .xlsx workbook ({e})")))?;
    let name = pick_sheet(path, wb.sheet_names(), sheet)?;
    let mut cells = wb
        .worksheet_cells_reader(&name)
        .map_err(|e| bad(path, format!("sheet `{name}`: {e}")))?;
    if ready.send(Ok(())).is_err() {
        return Ok(());
    }
    loop {
        match cells.next_cell() {
            Ok(Some(cell)) => {
                let (row, col) = cell.get_position();
                if !rows.put(row, col, Data::from(cell.get_value().clone())) {
                    return Ok(());
                }
            }
            Ok(None) => return Ok(()),
            Err(e) => {
                rows.flush();
                rows.fail(bad(path, format!("sheet `{name}`: {e}")));
                return Ok(());
            }
        }
    }
}

fn whole_sheet<R: Read + Seek, W: Reader<R>>(
    path: &Path,
    mut wb: W,
    sheet: Option<&str>,
    ready: &SyncSender<Result<(), CsvError>>,
    rows: &mut RowBuilder<'_>,
) -> Result<(), CsvError>
where
    W::Error: std::fmt::Display,
{
    let name = pick_sheet(path, wb.sheet_names(), sheet)?;
    let range = wb
        .worksheet_range(&name)
        .map_err(|e| bad(path, format!("sheet `{name}`: {e}")))?;
    if ready.send(Ok(())).is_err() {
        return Ok(());
    }
    for (row, col, value) in range.used_cells() {
        let (r0, c0) = range.start().unwrap_or((0, 0));
        let (Ok(row), Ok(col)) = (u32::try_from(row), u32::try_from(col)) else {
            break;
        };
        if !rows.put(r0 + row, c0 + col, value.clone()) {
            return Ok(());
        }
    }
    Ok(())
}

/// Gathers cells (in row order) into rows and sends the non-blank ones.
struct RowBuilder<'a> {
    tx: &'a SyncSender<Msg>,
    row: Option<u32>,
    cells: Vec<String>,
    error: Option<CellError>,
    /// The reader hung up: stop.
    gone: bool,
}

/// Cells past this column are not kept (a row this wide is not a list of
/// recipients; the CSV checks reject it by its header anyway).
const MAX_COLUMNS: u32 = 16 * 1024;

impl<'a> RowBuilder<'a> {
    fn new(tx: &'a SyncSender<Msg>) -> Self {
        RowBuilder {
            tx,
            row: None,
            cells: Vec::new(),
            error: None,
            gone: false,
        }
    }

    /// Adds a cell; false when the reader is gone.
    fn put(&mut self, row: u32, col: u32, value: Data) -> bool {
        if self.row != Some(row) {
            self.flush();
            self.row = Some(row);
        }
        if col >= MAX_COLUMNS {
            return !self.gone;
        }
        let col = col as usize;
        let text = match cell_text(&value) {
            Ok(t) => t,
            Err(err) => {
                if self.error.is_none() {
                    self.error = Some((col, err));
                }
                String::new()
            }
        };
        if text.is_empty() {
            return !self.gone;
        }
        if self.cells.len() <= col {
            self.cells.resize(col + 1, String::new());
        }
        if let Some(slot) = self.cells.get_mut(col) {
            *slot = text;
        }
        !self.gone
    }

    /// Sends the row gathered so far unless it is blank.
    fn flush(&mut self) {
        let Some(row) = self.row.take() else {
            return;
        };
        let cells = std::mem::take(&mut self.cells);
        let error = self.error.take();
        if cells.is_empty() && error.is_none() {
            return;
        }
        let msg = SheetRow {
            line: u64::from(row) + 1,
            cells,
            error,
        };
        if self.tx.send(Ok(msg)).is_err() {
            self.gone = true;
        }
    }

    fn fail(&mut self, e: CsvError) {
        let _ = self.tx.send(Err(e));
        self.gone = true;
    }
}

/// The cell as a person sees it in the spreadsheet; `Err` holds the text of
/// an error cell (`#N/A`).
pub(super) fn cell_text(value: &Data) -> Result<String, String> {
    Ok(match value {
        Data::Empty => String::new(),
        Data::String(s) => s.clone(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) => number_text(*f),
        Data::Bool(b) => if *b { "TRUE" } else { "FALSE" }.to_string(),
        Data::DateTime(dt) if dt.is_duration() => duration_text(dt.as_f64()),
        Data::DateTime(dt) => {
            let (y, mo, d, h, mi, s, _) = dt.to_ymd_hms_milli();
            date_text(y, mo, d, (h, mi, s))
        }
        Data::DateTimeIso(s) => iso_date_text(s),
        Data::DurationIso(s) => s.clone(),
        Data::Error(e) => return Err(e.to_string()),
    })
}

/// Whole numbers without `.0` (Excel stores every number as a float: a
/// phone typed as a number is `912345678.0`); others in their shortest form.
fn number_text(f: f64) -> String {
    // Below 2^53 every whole float is exact as an integer.
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

fn date_text(y: u16, mo: u8, d: u8, (h, mi, s): (u8, u8, u8)) -> String {
    if (h, mi, s) == (0, 0, 0) {
        format!("{d:02}/{mo:02}/{y:04}")
    } else {
        format!("{d:02}/{mo:02}/{y:04} {h:02}:{mi:02}")
    }
}

/// A time span (days as a float) as `H:MM:SS`, Excel's `[h]:mm:ss`.
fn duration_text(days: f64) -> String {
    let secs = (days * 86_400.0).round() as i64;
    let sign = if secs < 0 { "-" } else { "" };
    let secs = secs.abs();
    format!(
        "{sign}{}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// OpenDocument dates (`2026-12-01`, `2026-12-01T08:30:00`) as
/// `dd/mm/yyyy [HH:MM]`; anything else as written.
fn iso_date_text(s: &str) -> String {
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|t| t.parse::<u16>().ok());
    let date = (num(0..4), s.get(4..5), num(5..7), s.get(7..8), num(8..10));
    let (Some(y), Some("-"), Some(mo), Some("-"), Some(d)) = date else {
        return s.to_string();
    };
    let (Ok(mo), Ok(d)) = (u8::try_from(mo), u8::try_from(d)) else {
        return s.to_string();
    };
    let time = match (s.get(10..11), num(11..13), num(14..16), num(17..19)) {
        (None, ..) => (0, 0, 0),
        (Some("T"), Some(h), Some(mi), sec) => (
            u8::try_from(h).unwrap_or(0),
            u8::try_from(mi).unwrap_or(0),
            sec.and_then(|v| u8::try_from(v).ok()).unwrap_or(0),
        ),
        _ => return s.to_string(),
    };
    date_text(y, mo, d, time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_typed() {
        assert_eq!(number_text(912345678.0), "912345678");
        assert_eq!(number_text(84912345678.0), "84912345678");
        assert_eq!(number_text(-3.0), "-3");
        assert_eq!(number_text(0.1), "0.1");
        assert_eq!(number_text(1250000.5), "1250000.5");
    }

    #[test]
    fn dates_read_as_dd_mm_yyyy() {
        assert_eq!(iso_date_text("2026-12-01"), "01/12/2026");
        assert_eq!(iso_date_text("2026-12-01T08:30:00"), "01/12/2026 08:30");
        assert_eq!(iso_date_text("2026-12-01T00:00:00"), "01/12/2026");
        assert_eq!(iso_date_text("next week"), "next week");
        assert_eq!(duration_text(1.5), "36:00:00");
    }

    #[test]
    fn cells_read_as_seen() {
        assert_eq!(cell_text(&Data::Bool(true)).as_deref(), Ok("TRUE"));
        assert_eq!(cell_text(&Data::Int(7)).as_deref(), Ok("7"));
        assert_eq!(
            cell_text(&Data::Error(calamine::CellErrorType::NA)),
            Err("#N/A".to_string())
        );
    }

    #[test]
    fn detects_by_extension_then_magic() {
        assert_eq!(detect(Path::new("a.XLSX"), b""), Some(Kind::Xlsx));
        assert_eq!(detect(Path::new("a.Ods"), b""), Some(Kind::Ods));
        assert_eq!(detect(Path::new("u.csv"), b"PK\x03\x04.."), Some(Kind::Zip));
        assert_eq!(
            detect(Path::new("u.csv"), b"\xD0\xCF\x11\xE0\xA1\xB1"),
            Some(Kind::Xls)
        );
        assert_eq!(detect(Path::new("u.csv"), b"phone,name\n"), None);
    }
}
