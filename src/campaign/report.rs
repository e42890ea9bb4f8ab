//! The per-row report: one CSV line (or JSON object) per input row — the
//! `report` command's output and the web console's download. Its delivery
//! columns merge the webhook ledger with what `reconcile` stored (the
//! ledger's read decides: a status never goes backwards), for every provider.

use std::collections::HashMap;
use std::io::Write;

use serde::Serialize;

use crate::model::clock;
use crate::store::{Campaign, ReportRow, RowDelivery, Store};

/// A cell a spreadsheet shows as text: line breaks and other control
/// characters become spaces (one physical line per row, whatever the input
/// held), and a cell starting (after blanks) with `=`, `+`, `-` or `@` — which Excel,
/// LibreOffice and Sheets would run as a formula — gets a leading `'`.
fn spreadsheet_safe(s: &str) -> std::borrow::Cow<'_, str> {
    let s: std::borrow::Cow<'_, str> = if s.chars().any(char::is_control) {
        s.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>()
            .into()
    } else {
        s.into()
    };
    // Leading blanks too: some importers trim before they decide.
    match s.trim_start().chars().next() {
        Some('=' | '+' | '-' | '@') => format!("'{s}").into(),
        _ => s,
    }
}

pub const REPORT_HEADER: [&str; 16] = [
    "line",
    "phone",
    "tracking_id",
    "state",
    "msg_id",
    "error_code",
    "error",
    "attempts",
    "resent_after_doubt",
    "updated_at",
    "sent_at",
    "delivery_status",
    "delivery_time",
    "fee_main",
    "fee_token",
    "delivery_error",
];

/// A row's delivery as the report shows it: status, time and, for a
/// failed delivery, `code: message`.
#[derive(Debug, Default, Clone)]
struct Delivery {
    status: Option<String>,
    at_ms: Option<i64>,
    error: Option<String>,
}

/// Rows the ledger (or a reconcile) gave a delivery status, by tracking id.
/// Only rows with a status are kept, so memory follows the deliveries.
fn deliveries(store: &Store, campaign: &Campaign) -> anyhow::Result<HashMap<String, Delivery>> {
    let mut map = HashMap::new();
    store.for_each_row_delivery(campaign.id, |d: RowDelivery| {
        let Some(status) = d.status else { return };
        let error = d.note.joined();
        map.insert(
            d.tracking_id,
            Delivery {
                status: Some(status.as_str().to_string()),
                at_ms: d.at_ms,
                error,
            },
        );
    })?;
    Ok(map)
}

/// The ledger's answer for this row, else what a reconcile stored (such
/// as `unknown`).
fn delivery_of(map: &HashMap<String, Delivery>, r: &ReportRow) -> Delivery {
    map.get(&r.tracking_id)
        .cloned()
        .unwrap_or_else(|| Delivery {
            status: r.delivery_status.clone(),
            at_ms: r.delivery_ms,
            error: None,
        })
}

/// One report row as `report --json` writes it (one object per line): the
/// CSV's columns, unescaped, with times in RFC 3339 (the row's own
/// serialization: one list of its fields).
#[derive(Debug, Serialize)]
pub struct JsonReportRow<'a> {
    /// The row with the ledger's delivery applied (see [`delivery_of`]).
    #[serde(flatten)]
    pub row: &'a ReportRow,
    /// A failed delivery's `code: message`.
    pub delivery_error: Option<String>,
}

/// `report --json`: one JSON object per input row, in file order.
pub(crate) fn write_report_json(
    store: &Store,
    campaign: &Campaign,
    out: impl Write,
) -> anyhow::Result<u64> {
    let mut out = std::io::BufWriter::new(out);
    let mut n = 0u64;
    let delivered = deliveries(store, campaign)?;
    let written = store.for_each_report_row(campaign, |r: &mut ReportRow| {
        n += 1;
        let d = delivery_of(&delivered, r);
        r.delivery_status = d.status;
        r.delivery_ms = d.at_ms;
        let row = JsonReportRow {
            row: r,
            delivery_error: d.error,
        };
        serde_json::to_writer(&mut out, &row).map_err(std::io::Error::other)?;
        out.write_all(b"\n")
    })?;
    written?;
    out.flush()?;
    Ok(n)
}

/// One CSV line per input row (rejects included), in file order.
pub(crate) fn write_report(
    store: &Store,
    campaign: &Campaign,
    out: impl Write,
    excel_bom: bool,
) -> anyhow::Result<u64> {
    let mut out = std::io::BufWriter::new(out);
    if excel_bom {
        out.write_all("\u{feff}".as_bytes())?;
    }
    let mut w = csv::Writer::from_writer(out);
    w.write_record(REPORT_HEADER)?;
    let mut n = 0u64;
    let fmt_ms = |ms: Option<i64>| {
        ms.map(|m| clock::fmt_rfc3339(clock::from_ms(m)))
            .unwrap_or_default()
    };
    let delivered = deliveries(store, campaign)?;
    let written = store.for_each_report_row(campaign, |r: &mut ReportRow| {
        let r = &*r;
        n += 1;
        let d = delivery_of(&delivered, r);
        w.write_record([
            r.line.to_string().as_str(),
            &spreadsheet_safe(&r.phone),
            &spreadsheet_safe(&r.tracking_id),
            &r.state,
            &spreadsheet_safe(r.msg_id.as_deref().unwrap_or("")),
            &spreadsheet_safe(r.note.error_code.as_deref().unwrap_or("")),
            &spreadsheet_safe(r.note.error.as_deref().unwrap_or("")),
            &r.attempts.to_string(),
            if r.resent_after_doubt { "yes" } else { "" },
            &fmt_ms(r.updated_ms),
            &fmt_ms(r.sent_ms),
            d.status.as_deref().unwrap_or(""),
            &fmt_ms(d.at_ms),
            &r.fees.fee_main.map(|f| f.to_string()).unwrap_or_default(),
            &r.fees.fee_token.map(|f| f.to_string()).unwrap_or_default(),
            &spreadsheet_safe(d.error.as_deref().unwrap_or("")),
        ])
        .map_err(std::io::Error::other)
    })?;
    written?;
    w.flush()?;
    Ok(n)
}

/// See [`super::Workspace::write_rejects`]. Streams: the file is read once
/// and the rejects are fetched a page at a time, both in line order.
pub(super) fn write_rejects(
    store: &Store,
    campaign: &Campaign,
    delimiter: Option<u8>,
    sheet: Option<String>,
    out: impl Write,
    words: &dyn Fn(&crate::model::reason::Reason) -> String,
) -> Result<u64, super::CoreError> {
    use crate::csv_input::{CsvOptions, CsvReader};
    let delimiter = delimiter.unwrap_or(b',');
    let path = std::path::Path::new(&campaign.csv_path);
    let opts = CsvOptions {
        delimiter,
        sheet,
        ..CsvOptions::default()
    };
    // The file is the campaign's own: gone or changed is said, not guessed.
    let mut reader = CsvReader::open(path, &opts)
        .map_err(|e| super::usage(format!("the campaign's file cannot be read again: {e}")))?;
    let mut out = std::io::BufWriter::new(out);
    out.write_all(b"\xEF\xBB\xBF")
        .map_err(anyhow::Error::from)?;
    let mut w = csv::WriterBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_writer(out);
    let mut header: Vec<String> = reader.header().columns.clone();
    header.extend(["line".to_string(), "reason".to_string()]);
    w.write_record(&header).map_err(anyhow::Error::from)?;
    const PAGE: u64 = 1000;
    let (mut page, mut after, mut written) = (Vec::new().into_iter(), 0u64, 0u64);
    let mut next: Option<(u64, String, Option<String>, Option<String>)> = None;
    loop {
        if next.is_none() {
            next = page.next();
            if next.is_none() {
                let rows = store.rejects_after(campaign.id, after, PAGE)?;
                if rows.is_empty() {
                    break;
                }
                page = rows.into_iter();
                next = page.next();
            }
        }
        let Some((line, text, code, params)) = next.take() else {
            break;
        };
        after = line;
        // Records before this line are accepted rows: read past them.
        let cells = loop {
            match reader.next_raw().map_err(|e| super::usage(e.to_string()))? {
                Some((l, cells)) if l == line => break Some(cells),
                Some((l, _)) if l < line => continue,
                // The line is not the start of a record (cannot happen for
                // a file unchanged since its import): the reason alone.
                Some(_) | None => break None,
            }
        };
        let mut record = cells.unwrap_or_else(|| vec![String::new(); header.len() - 2]);
        let reason =
            crate::model::reason::Reason::from_stored(&text, code.as_deref(), params.as_deref());
        record.extend([line.to_string(), words(&reason)]);
        w.write_record(&record).map_err(anyhow::Error::from)?;
        written += 1;
    }
    w.flush().map_err(anyhow::Error::from)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_like_cells_are_escaped() {
        for (cell, safe) in [
            ("=HYPERLINK(\"x\")", "'=HYPERLINK(\"x\")"),
            ("-118", "'-118"),
            ("84912345678", "84912345678"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("+84 912", "'+84 912"),
            ("a\r\nb", "a  b"),
            ("\t=1+1", "' =1+1"),
        ] {
            assert_eq!(spreadsheet_safe(cell), safe, "{cell:?}");
        }
    }
}
