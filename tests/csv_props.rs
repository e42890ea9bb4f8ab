//! Property tests: the CSV reader and the phone normaliser never panic, and
//! every record the csv crate sees comes out as exactly one item.

use std::io::Write;

use proptest::prelude::*;
use zns_batch::csv_input::{CsvItem, CsvOptions, CsvReader};
use zns_batch::model::phone;

fn is_normalised(p: &str) -> bool {
    let b = p.as_bytes();
    b.len() == 11
        && b.starts_with(b"84")
        && matches!(b.get(2), Some(b'3' | b'5' | b'7' | b'8' | b'9'))
        && b.iter().all(u8::is_ascii_digit)
}

/// Independent line numbers: where each record after the header starts,
/// counted over the whole file in memory (`\r\n`, `\r`, `\n` = one break).
fn reference(bytes: &[u8], delimiter: u8) -> Vec<u64> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(bytes);
    let mut rec = csv::ByteRecord::new();
    let mut ends = Vec::new();
    while rdr.read_byte_record(&mut rec).unwrap_or(false) {
        ends.push(rdr.position().byte() as usize);
    }
    // Line on which each byte sits.
    let mut line_of = Vec::with_capacity(bytes.len());
    let (mut line, mut p) = (1u64, 0u8);
    for &b in bytes {
        line_of.push(line);
        if b == b'\r' || (b == b'\n' && p != b'\r') {
            line += 1;
        }
        p = b;
    }
    // Each record starts at the first non-CR/LF byte after the previous one.
    ends.windows(2)
        .map(|w| {
            let start = (w[0]..w[1])
                .find(|&i| bytes[i] != b'\r' && bytes[i] != b'\n')
                .unwrap_or(w[1]);
            line_of[start]
        })
        .collect()
}

fn check_file(bytes: &[u8], opts: &CsvOptions) -> Result<(), TestCaseError> {
    let mut f = tempfile::NamedTempFile::new().map_err(|e| TestCaseError::fail(e.to_string()))?;
    f.write_all(bytes)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let rdr = match CsvReader::open(f.path(), opts) {
        Ok(r) => r,
        // Fatal file-level verdicts are fine; panics are not.
        Err(e) => {
            prop_assert!(!e.to_string().is_empty());
            return Ok(());
        }
    };
    let keys = rdr.header().template_keys.len();
    let mut lines = Vec::new();
    for item in rdr {
        let item = item.map_err(|e| TestCaseError::fail(format!("fatal mid-file: {e}")))?;
        match &item {
            CsvItem::Row(r) => {
                prop_assert!(is_normalised(&r.phone), "{:?}", r.phone);
                prop_assert_eq!(r.values.len(), keys);
            }
            CsvItem::Rejected(r) => {
                prop_assert!(!r.reason.is_empty());
                prop_assert!(r.raw_phone.chars().count() <= 64);
            }
        }
        lines.push(item.line());
    }
    prop_assert!(lines.windows(2).all(|w| w[0] < w[1]), "{lines:?}");
    prop_assert_eq!(lines, reference(bytes, opts.delimiter));
    Ok(())
}

/// One field's raw bytes: plain, random, or quoted with escaped quotes and
/// line breaks inside; with the odd BOM or NUL.
fn field() -> impl Strategy<Value = Vec<u8>> {
    let text = prop_oneof![
        Just("0912345678".to_string()),
        Just("+84 912 345 678".to_string()),
        Just("Nguyễn Văn Ánh".to_string()),
        Just(String::new()),
        "[0-9 +().-]{0,14}",
        ".{0,12}",
    ]
    .prop_map(String::into_bytes);
    let noise = prop_oneof![
        Just(b"\xEF\xBB\xBF".to_vec()),
        Just(b"\0".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\xFF".to_vec()),
        prop::collection::vec(any::<u8>(), 0..6),
    ];
    (text, prop::option::weighted(0.2, noise), 0..4u8).prop_map(|(mut t, noise, quoting)| {
        if let Some(n) = noise {
            let at = t.len() / 2;
            let mut out = t[..at].to_vec();
            out.extend_from_slice(&n);
            out.extend_from_slice(&t[at..]);
            t = out;
        }
        if quoting == 0 {
            let mut q = vec![b'"'];
            for &b in &t {
                if b == b'"' {
                    q.push(b'"');
                }
                q.push(b);
            }
            q.push(b'"');
            q
        } else {
            t
        }
    })
}

fn records(max_fields: usize, max_rows: usize) -> impl Strategy<Value = Vec<(Vec<Vec<u8>>, u8)>> {
    prop::collection::vec(
        (prop::collection::vec(field(), 1..max_fields), 0..5u8),
        0..max_rows,
    )
}

fn assemble(header: &[u8], rows: &[(Vec<Vec<u8>>, u8)]) -> Vec<u8> {
    let mut out = header.to_vec();
    for (fields, ending) in rows {
        out.extend_from_slice(match ending {
            0 => b"\r\n",
            1 => b"\r",
            2 => b"\n\n",
            _ => b"\n",
        });
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(f);
        }
    }
    out
}

fn header() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"phone,name,amount".to_vec()),
        Just(b"\xEF\xBB\xBFphone,name".to_vec()),
        Just(b"Phone,tracking_id,name,,".to_vec()),
        Just(b"name,phone,a,b,c".to_vec()),
        prop::collection::vec(any::<u8>(), 0..20),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        check_file(&bytes, &CsvOptions::default())?;
    }

    #[test]
    fn random_bytes_after_a_good_header(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let mut data = b"phone,name\r\n".to_vec();
        data.extend_from_slice(&bytes);
        check_file(&data, &CsvOptions::default())?;
    }

    #[test]
    fn csv_like_files(header in header(), rows in records(6, 40)) {
        check_file(&assemble(&header, &rows), &CsvOptions::default())?;
    }

    #[test]
    fn semicolon_files(rows in records(4, 20)) {
        let mut data = assemble(b"phone,name", &rows);
        for b in data.iter_mut() {
            if *b == b',' {
                *b = b';';
            }
        }
        let opts = CsvOptions { delimiter: b';', ..CsvOptions::default() };
        check_file(&data, &opts)?;
    }

    #[test]
    fn phone_normalize_and_mask_never_panic(s in ".{0,40}") {
        if let Ok(p) = phone::normalize(&s) {
            prop_assert!(is_normalised(&p), "{s:?} -> {p:?}");
        }
        let _ = phone::mask(&s);
    }

    #[test]
    fn phone_like_strings(s in "[+(]{0,2}[0-9０-９ .()+-]{0,20}") {
        match phone::normalize(&s) {
            Ok(p) => {
                prop_assert!(is_normalised(&p), "{s:?} -> {p:?}");
                prop_assert_eq!(phone::mask(&p).chars().count(), 11);
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Files bigger than the reader's 64 KiB buffer, so records straddle
    /// refills (the line counting must carry across them).
    #[test]
    fn big_files_straddle_buffers(rows in records(5, 30), copies in 60..120usize) {
        let mut all = Vec::new();
        for _ in 0..copies {
            all.extend(rows.iter().cloned());
        }
        check_file(&assemble(b"phone,name,note", &all), &CsvOptions::default())?;
    }

    #[test]
    fn ten_thousand_columns(extra in 0..3usize, blank in any::<bool>()) {
        let mut header = b"phone".to_vec();
        let mut row = b"0912345678".to_vec();
        for i in 0..10_000 {
            header.extend_from_slice(format!(",c{i}").as_bytes());
            row.extend_from_slice(if blank && i == 9_999 { b"," } else { b",v" });
        }
        for _ in 0..extra {
            row.extend_from_slice(b",x");
        }
        let mut data = header;
        data.extend_from_slice(b"\r\n");
        data.extend_from_slice(&row);
        data.extend_from_slice(b"\r\n");
        data.extend_from_slice(&row);
        check_file(&data, &CsvOptions::default())?;
    }
}
