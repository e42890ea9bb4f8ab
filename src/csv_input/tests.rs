//! The reader's behaviour on good, odd and hostile files.

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
        rej.reason.text().contains(want),
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
        // Workbooks go to the sheet reader, which says when one is unreadable.
        (
            b"PK\x03\x04rest",
            "not an Excel (.xlsx) or OpenDocument (.ods) workbook",
        ),
        (
            b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1",
            "not a readable .xls workbook",
        ),
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
        last.reason
            .text()
            .contains("column `name` contains a NUL byte"),
        "{last:?}"
    );

    let mut huge = b"phone,name\n0912345678,".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 1 << 20));
    huge.extend_from_slice(b"\n0912345678,ok\n");
    let got = items(&huge);
    assert_eq!(got.len(), 2);
    assert!(rejected(&got[0])
        .reason
        .text()
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
    let data =
        b"phone,a\n0912345678,r2\n0912345678,\"r3\nstill r3\"\n\n0912345678,r6\n0912345678,r7\n";
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

#[test]
fn the_delimiter_is_read_from_the_header_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8], Option<u8>); 6] = [
        ("comma.csv", b"phone,name\n0912345678,An\n", Some(b',')),
        (
            "semi.csv",
            b"\xEF\xBB\xBFphone;name;amount\n0912345678;An;1,5\n",
            Some(b';'),
        ),
        ("tab.csv", b"phone\tname\n0912345678\tAn\n", Some(b'\t')),
        // A quoted header cell's commas are not separators.
        ("quoted.csv", b"\"a,b,c\";phone\n1;0912345678\n", Some(b';')),
        ("one.csv", b"phone\n0912345678\n", Some(b',')),
        ("book.xlsx", b"PK\x03\x04rest", None),
    ];
    for (name, body, want) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        assert_eq!(detect_delimiter(&p), want, "{name}");
    }
    assert_eq!(detect_delimiter(&dir.path().join("missing.csv")), None);
}
