//! The header row: which column is the phone, which are template
//! parameters, which may be empty — and errors that name the columns found.

use std::path::Path;

use super::*;

pub(super) fn no_phone_column(path: &Path, wanted: &str, found: &[String]) -> String {
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

pub(super) fn looks_like_phone_column(name: &str) -> bool {
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
pub(super) fn list_names<'a>(names: impl Iterator<Item = &'a str>, total: usize) -> String {
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

/// `a, b, c, …`: names for a reason's words, in any language.
pub(super) fn plain_names<'a>(names: impl Iterator<Item = &'a str>, total: usize) -> String {
    let mut out: Vec<&str> = names.take(LISTED_COLUMNS).collect();
    if total > LISTED_COLUMNS {
        out.push("…");
    }
    out.join(", ")
}

pub(super) fn same_name(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

pub(super) struct AnalysedHeader {
    pub(super) header: CsvHeader,
    pub(super) template_fields: Vec<usize>,
    pub(super) required: Vec<bool>,
}

pub(super) fn analyse_header(
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

impl CsvError {
    /// The problem as a code and parameters (no server path among them),
    /// for a face that words it in its reader's language; None for a
    /// failure that is not the file's (I/O, not found).
    pub fn reason(&self) -> Option<Reason> {
        let text = self.to_string();
        let names = |v: &[String]| plain_names(v.iter().map(String::as_str), v.len());
        let r = match self {
            CsvError::NotFound(_) | CsvError::Io { .. } => return None,
            CsvError::Workbook { reason, .. } => {
                Reason::new("file.workbook", [("detail", reason)], text)
            }
            CsvError::UnknownSheet { wanted, found, .. } => Reason::new(
                "file.unknown_sheet",
                [("sheet", wanted.clone()), ("sheets", names(found))],
                text,
            ),
            CsvError::SheetOnCsv { sheet, .. } => {
                Reason::new("file.sheet_on_csv", [("sheet", sheet)], text)
            }
            CsvError::Binary { what, .. } => Reason::new("file.binary", [("what", what)], text),
            CsvError::Empty { .. } => Reason::new("file.empty", NO_PARAMS, text),
            CsvError::NoPhoneColumn { wanted, found, .. } => {
                let mut parts = vec![Reason::new(
                    "file.no_phone_column",
                    [("wanted", wanted.clone()), ("found", names(found))],
                    text,
                )];
                if let [only] = found.as_slice() {
                    if let Some((_, shown)) = [(';', ";"), ('\t', "Tab"), ('|', "|")]
                        .into_iter()
                        .find(|(sep, _)| only.contains(*sep))
                    {
                        parts.push(Reason::new(
                            "file.delimiter_hint",
                            [("delimiter", shown)],
                            "",
                        ));
                    }
                }
                if let Some(likely) = found.iter().find(|c| looks_like_phone_column(c)) {
                    parts.push(Reason::new(
                        "file.phone_column_hint",
                        [("column", likely)],
                        "",
                    ));
                }
                Reason::join(parts)
            }
            CsvError::DuplicateColumn { name } => {
                Reason::new("file.duplicate_column", [("name", name)], text)
            }
            CsvError::EmptyColumnName { position } => {
                Reason::new("file.empty_column_name", [("position", position)], text)
            }
            CsvError::BadHeader { reason } => {
                Reason::new("file.bad_header", [("detail", reason)], text)
            }
            CsvError::ReservedColumnOnly => {
                Reason::new("file.no_template_columns", NO_PARAMS, text)
            }
            CsvError::RecordTooLarge { line, .. } => Reason::new(
                "file.record_too_large",
                [
                    ("line", line.to_string()),
                    ("mib", (MAX_RECORD_BYTES / (1024 * 1024)).to_string()),
                ],
                text,
            ),
            CsvError::UnknownOptionalColumns { unknown, found, .. } => Reason::new(
                "file.unknown_optional",
                [("names", names(unknown)), ("found", names(found))],
                text,
            ),
        };
        Some(r)
    }
}
