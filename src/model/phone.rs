//! Vietnamese mobile number normalisation.
//!
//! Every provider gets the international form without `+`: `84` followed by
//! the 9 national digits (`84912345678`). Input comes from hand-typed and
//! Excel-exported CSVs, so we accept the usual separators, the Excel
//! artefacts (dropped leading 0, `="0912…"`, leading `'`), full-width digits
//! and the invisible marks phones add when a number is copied.
//!
//! Old 11-digit numbers (`01xx xxx xxxx`) were moved to 10 digits in 2018
//! (MIC decision 798/QĐ-BTTTT). They are converted automatically with the
//! official table in [`old_prefix`], because such numbers still sit in old
//! customer databases and the mapping is one-to-one.

/// How the number was written, so length errors can say what was expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoneForm {
    /// `+84…` or `0084…` / `84…`.
    CountryCode,
    /// `0…` (national form with the trunk 0).
    Trunk,
    /// Neither: typically Excel dropped the leading 0.
    Bare,
}

/// Why a phone cell could not be normalised. `Display` is the user-facing
/// reason and says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("empty phone")]
    Empty,
    #[error("phone `{raw}` has no digits")]
    NoDigits { raw: String },
    #[error("phone `{raw}` contains letters")]
    Letters { raw: String },
    #[error(
        "phone `{raw}` is in Excel scientific notation and has lost digits \
         (format the column as Text and export again)"
    )]
    ScientificNotation { raw: String },
    #[error("phone `{raw}` contains `{sep}`: put exactly one phone number in the cell")]
    SeveralNumbers { raw: String, sep: char },
    #[error("phone `{raw}` looks like two numbers run together: put one phone number per row")]
    RunTogether { raw: String },
    #[error("phone `{raw}`: `+` is only allowed at the start")]
    MisplacedPlus { raw: String },
    #[error("phone `{raw}` contains {ch:?} (only digits, spaces and + . - ( ) are allowed)")]
    BadChar { raw: String, ch: char },
    #[error("not a Vietnamese number (+{country_code})")]
    NotVietnamese { country_code: String },
    #[error("too short: {}", length_detail(.digits, .form))]
    TooShort { digits: usize, form: PhoneForm },
    #[error("too long: {}", length_detail(.digits, .form))]
    TooLong { digits: usize, form: PhoneForm },
    #[error("not a Vietnamese mobile number (+84 prefix {prefix} is a landline)")]
    Landline { prefix: String },
    #[error("not a Vietnamese mobile number ({prefix} is a service number, not a mobile)")]
    ServiceNumber { prefix: String },
    #[error(
        "not a Vietnamese mobile number (old 11-digit prefix 0{prefix} was never a mobile \
         prefix; mobiles start with 03, 05, 07, 08 or 09)"
    )]
    UnknownOldPrefix { prefix: String },
    #[error(
        "not a Vietnamese mobile number (+84 prefix {digit} is not a mobile prefix; \
         mobiles start with 3, 5, 7, 8 or 9 after +84)"
    )]
    NotMobile { digit: char },
}

impl PhoneError {
    /// The reject reason: a stable code, its parameters and this English.
    pub fn reason(&self) -> super::reason::Reason {
        use super::reason::Reason;
        let text = self.to_string();
        let form = |f: &PhoneForm| match f {
            PhoneForm::CountryCode => "84",
            PhoneForm::Trunk => "0",
            PhoneForm::Bare => "bare",
        };
        let no: [(&str, String); 0] = [];
        match self {
            PhoneError::Empty => Reason::new("phone.empty", no, text),
            PhoneError::NoDigits { raw } => Reason::new("phone.no_digits", [("value", raw)], text),
            PhoneError::Letters { raw } => Reason::new("phone.letters", [("value", raw)], text),
            PhoneError::ScientificNotation { raw } => {
                Reason::new("phone.scientific", [("value", raw)], text)
            }
            PhoneError::SeveralNumbers { raw, sep } => Reason::new(
                "phone.several",
                [("value", raw.clone()), ("sep", sep.to_string())],
                text,
            ),
            PhoneError::RunTogether { raw } => {
                Reason::new("phone.run_together", [("value", raw)], text)
            }
            PhoneError::MisplacedPlus { raw } => {
                Reason::new("phone.misplaced_plus", [("value", raw)], text)
            }
            PhoneError::BadChar { raw, ch } => Reason::new(
                "phone.bad_char",
                [("value", raw.clone()), ("char", format!("{ch:?}"))],
                text,
            ),
            PhoneError::NotVietnamese { country_code } => Reason::new(
                "phone.not_vietnamese",
                [("country_code", country_code)],
                text,
            ),
            PhoneError::TooShort { digits, form: f } => Reason::new(
                &format!("phone.too_short_{}", form(f)),
                [("digits", digits)],
                text,
            ),
            PhoneError::TooLong { digits, form: f } => Reason::new(
                &format!("phone.too_long_{}", form(f)),
                [("digits", digits)],
                text,
            ),
            PhoneError::Landline { prefix } => {
                Reason::new("phone.landline", [("prefix", prefix)], text)
            }
            PhoneError::ServiceNumber { prefix } => {
                Reason::new("phone.service", [("prefix", prefix)], text)
            }
            PhoneError::UnknownOldPrefix { prefix } => {
                Reason::new("phone.old_prefix", [("prefix", prefix)], text)
            }
            PhoneError::NotMobile { digit } => {
                Reason::new("phone.not_mobile", [("digit", digit)], text)
            }
        }
    }
}

fn length_detail(digits: &usize, form: &PhoneForm) -> String {
    match form {
        PhoneForm::CountryCode => {
            format!("{digits} digits after the country code 84, expected 9")
        }
        PhoneForm::Trunk => format!("{digits} digits after the leading 0, expected 9"),
        PhoneForm::Bare => format!(
            "{digits} digits, expected 10 (0 + 9 digits, like 0912345678) \
             or 11 (84 + 9 digits)"
        ),
    }
}

/// Longest raw value quoted back in an error message.
const SHOWN_CHARS: usize = 32;

/// Normalise a Vietnamese mobile number to `84XXXXXXXXX` (11 digits: 84 + 9).
pub fn normalize(raw: &str) -> Result<String, PhoneError> {
    let trimmed = strip_excel_wrapping(raw.trim_matches(is_ignorable));
    if trimmed.is_empty() {
        return Err(PhoneError::Empty);
    }
    let shown = || shorten(trimmed);
    if is_scientific(trimmed) {
        return Err(PhoneError::ScientificNotation { raw: shown() });
    }

    let mut digits = String::with_capacity(16);
    let mut plus = false;
    for c in trimmed.chars() {
        match fold_width(c) {
            d @ '0'..='9' => digits.push(d),
            '+' if !plus && digits.is_empty() => plus = true,
            '+' => return Err(PhoneError::MisplacedPlus { raw: shown() }),
            c if is_separator(c) || is_ignorable(c) => {}
            sep @ (',' | ';' | '/' | '|' | '&') => {
                return Err(PhoneError::SeveralNumbers { raw: shown(), sep })
            }
            c if c.is_alphabetic() => return Err(PhoneError::Letters { raw: shown() }),
            ch => return Err(PhoneError::BadChar { raw: shown(), ch }),
        }
    }
    if digits.is_empty() {
        return Err(PhoneError::NoDigits { raw: shown() });
    }
    // Two 9-10 digit numbers pasted together; no single number is this long.
    if digits.len() >= 18 {
        return Err(PhoneError::RunTogether { raw: shown() });
    }

    let (national, form) = if plus {
        (strip_country_code(&digits)?, PhoneForm::CountryCode)
    } else if let Some(intl) = digits.strip_prefix("00") {
        (strip_country_code(intl)?, PhoneForm::CountryCode)
    } else if digits.starts_with("84") && digits.len() >= 11 {
        // 11+ digits starting 84 cannot be national (that is 0 + 9 or 9).
        (strip_country_code(&digits)?, PhoneForm::CountryCode)
    } else if let Some(rest) = digits.strip_prefix('0') {
        (rest, PhoneForm::Trunk)
    } else {
        (digits.as_str(), PhoneForm::Bare)
    };

    let national = check_national(national, form)?;
    Ok(format!("84{national}"))
}

/// Past the country code: returns the national part, after a stray trunk 0
/// (`+84 (0) 912…`, a common way of writing numbers).
fn strip_country_code(intl: &str) -> Result<&str, PhoneError> {
    match intl.strip_prefix("84") {
        Some(rest) => Ok(match rest.strip_prefix('0') {
            Some(r) if r.len() >= 9 => r,
            _ => rest,
        }),
        None => Err(PhoneError::NotVietnamese {
            country_code: country_code(intl).to_string(),
        }),
    }
}

/// Checks the digits after `0`/`84` and returns the 9-digit mobile number.
fn check_national(nat: &str, form: PhoneForm) -> Result<String, PhoneError> {
    let first = nat.chars().next().unwrap_or('0');
    if first == '2' && nat.len() >= 9 {
        return Err(PhoneError::Landline {
            prefix: "2x".to_string(),
        });
    }
    for service in ["1800", "1900"] {
        if nat.starts_with(service) {
            return Err(PhoneError::ServiceNumber {
                prefix: service.to_string(),
            });
        }
    }
    if first == '1' && nat.len() == 10 {
        // Old 11-digit mobile (0 + 10): map its 3-digit prefix to the new 2.
        let (old, rest) = nat.split_at(3);
        return match old_prefix(old) {
            Some(new) => Ok(format!("{new}{rest}")),
            None => Err(PhoneError::UnknownOldPrefix {
                prefix: old.to_string(),
            }),
        };
    }
    match nat.len() {
        n if n < 9 => Err(PhoneError::TooShort { digits: n, form }),
        n if n > 9 => Err(PhoneError::TooLong { digits: n, form }),
        _ if matches!(first, '3' | '5' | '7' | '8' | '9') => Ok(nat.to_string()),
        _ => Err(PhoneError::NotMobile { digit: first }),
    }
}

/// The 2018 conversion of 11-digit mobile numbers (MIC decision
/// 798/QĐ-BTTTT): old prefix after the 0 → new prefix after the 0.
fn old_prefix(old: &str) -> Option<&'static str> {
    Some(match old {
        // Viettel
        "162" => "32",
        "163" => "33",
        "164" => "34",
        "165" => "35",
        "166" => "36",
        "167" => "37",
        "168" => "38",
        "169" => "39",
        // MobiFone
        "120" => "70",
        "121" => "79",
        "122" => "77",
        "126" => "76",
        "128" => "78",
        // VinaPhone
        "123" => "83",
        "124" => "84",
        "125" => "85",
        "127" => "81",
        "129" => "82",
        // Vietnamobile
        "186" => "56",
        "188" => "58",
        // Gmobile
        "199" => "59",
        _ => return None,
    })
}

/// The E.164 country code at the start of `intl` (codes are prefix-free:
/// 1 and 7 are one digit, the listed ones two, everything else three).
fn country_code(intl: &str) -> &str {
    const TWO: [&str; 44] = [
        "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46",
        "47", "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63",
        "64", "65", "66", "81", "82", "84", "86", "90", "91", "92", "93", "94", "95", "98",
    ];
    let len = if intl.starts_with('1') || intl.starts_with('7') {
        1
    } else if TWO.iter().any(|p| intl.starts_with(p)) {
        2
    } else {
        3
    };
    // `intl` is ASCII digits here, so any byte index is a char boundary.
    intl.get(..len).unwrap_or(intl)
}

/// Spreadsheet ways of keeping a leading zero: `="0912…"` and `'0912…`.
fn strip_excel_wrapping(s: &str) -> &str {
    if let Some(inner) = s.strip_prefix("=\"").and_then(|r| r.strip_suffix('"')) {
        return inner.trim_matches(is_ignorable);
    }
    s.strip_prefix('\'').unwrap_or(s)
}

/// `8.49123E+10`, `8,49E+10`: Excel printed a long number in scientific form.
fn is_scientific(s: &str) -> bool {
    let Some((mantissa, exp)) = s.split_once(['e', 'E']) else {
        return false;
    };
    let exp = exp.strip_prefix('+').unwrap_or(exp);
    !mantissa.is_empty()
        && mantissa.chars().any(|c| c.is_ascii_digit())
        && mantissa
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == ',')
        && !exp.is_empty()
        && exp.chars().all(|c| c.is_ascii_digit())
}

/// Characters people put between digit groups.
fn is_separator(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '.' | '-' | '(' | ')' | '\u{2010}'
                ..='\u{2015}' | '\u{2212}' | '\u{FF0D}' | '\u{FF08}' | '\u{FF09}' | '\u{FF0E}'
        )
}

/// Whitespace plus the invisible marks (BOM, zero-width, bidi controls)
/// that copying a number from a phone or a web page drags along.
fn is_ignorable(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{FEFF}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'
        )
}

/// Full-width digits and plus (Asian IMEs) to ASCII.
fn fold_width(c: char) -> char {
    match c {
        '\u{FF10}'..='\u{FF19}' => char::from_u32(c as u32 - 0xFF10 + '0' as u32).unwrap_or(c),
        '\u{FF0B}' => '+',
        c => c,
    }
}

fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(SHOWN_CHARS).collect();
    if s.chars().nth(SHOWN_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// For logs: `84912345678` → `8491****678` (first 4 and last 3 kept);
/// anything shorter than 8 chars → `****`.
pub fn mask(phone: &str) -> String {
    let count = phone.chars().count();
    if count < 8 {
        return "****".to_string();
    }
    let head: String = phone.chars().take(4).collect();
    let tail: String = phone.chars().skip(count - 3).collect();
    format!("{head}****{tail}")
}

/// For the console's people: a stored `84912345678` as they wrote it,
/// `0912****678`; anything else as [`mask`].
pub fn mask_local(phone: &str) -> String {
    match phone.strip_prefix("84") {
        Some(national) if national.len() == 9 && national.bytes().all(|b| b.is_ascii_digit()) => {
            mask(&format!("0{national}"))
        }
        _ => mask(phone),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_the_way_people_write_it() {
        assert_eq!(mask_local("84912345678"), "0912****678");
        assert_eq!(mask_local("12345"), "****");
        assert_eq!(mask_local("8491234567x"), "8491****67x");
    }

    fn ok(raw: &str) -> String {
        match normalize(raw) {
            Ok(p) => p,
            Err(e) => panic!("{raw:?} rejected: {e}"),
        }
    }

    fn reason(raw: &str) -> String {
        match normalize(raw) {
            Ok(p) => panic!("{raw:?} accepted as {p}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn accepted_forms() {
        for raw in [
            "0912345678",
            "+84 912 345 678",
            "84912345678",
            "(+84) 912-345-678",
            "0912.345.678",
            "912345678",
            "0084912345678",
            "  0912345678\t",
            "0912\u{a0}345\u{a0}678",
            "\u{feff}0912345678",
            "０９１２３４５６７８",
            "＋８４ ９１２ ３４５ ６７８",
            "+84 (0) 912 345 678",
            "840912345678",
            "=\"0912345678\"",
            "'0912345678",
            "\u{202a}0912 345 678\u{202c}",
            "091 234 5678",
            "0912–345–678",
        ] {
            assert_eq!(ok(raw), "84912345678", "{raw:?}");
        }
    }

    #[test]
    fn every_mobile_prefix_digit() {
        for (raw, want) in [
            ("0321234567", "84321234567"),
            ("0561234567", "84561234567"),
            ("0701234567", "84701234567"),
            ("0861234567", "84861234567"),
            ("0981234567", "84981234567"),
            ("321234567", "84321234567"),
            ("84321234567", "84321234567"),
        ] {
            assert_eq!(ok(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn old_eleven_digit_numbers_are_converted() {
        for (raw, want) in [
            ("01621234567", "84321234567"),
            ("01691234567", "84391234567"),
            ("01201234567", "84701234567"),
            ("01211234567", "84791234567"),
            ("01221234567", "84771234567"),
            ("01261234567", "84761234567"),
            ("01281234567", "84781234567"),
            ("01231234567", "84831234567"),
            ("01241234567", "84841234567"),
            ("01251234567", "84851234567"),
            ("01271234567", "84811234567"),
            ("01291234567", "84821234567"),
            ("01861234567", "84561234567"),
            ("01881234567", "84581234567"),
            ("01991234567", "84591234567"),
            ("+84 162 123 4567", "84321234567"),
            ("841621234567", "84321234567"),
            ("1621234567", "84321234567"),
            ("00841621234567", "84321234567"),
        ] {
            assert_eq!(ok(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn rejection_reasons() {
        let cases = [
            ("", "empty phone"),
            ("   ", "empty phone"),
            ("\u{feff}", "empty phone"),
            ("abc", "phone `abc` contains letters"),
            ("0912abc678", "phone `0912abc678` contains letters"),
            ("--", "phone `--` has no digits"),
            (
                "8.49123E+10",
                "phone `8.49123E+10` is in Excel scientific notation and has lost digits \
                 (format the column as Text and export again)",
            ),
            ("8,49E+10", "Excel scientific notation"),
            (
                "0912345678 / 0987654321",
                "contains `/`: put exactly one phone number in the cell",
            ),
            ("0912345678;0987654321", "contains `;`"),
            (
                "09123456780987654321",
                "looks like two numbers run together",
            ),
            ("0912+345678", "`+` is only allowed at the start"),
            ("0912#345678", "contains '#'"),
            ("+1 415 555 0100", "not a Vietnamese number (+1)"),
            ("+65 6123 4567", "not a Vietnamese number (+65)"),
            ("0065 6123 4567", "not a Vietnamese number (+65)"),
            ("+855 12 345 678", "not a Vietnamese number (+855)"),
            ("+7 912 345 6789", "not a Vietnamese number (+7)"),
            (
                "+84 91234567",
                "too short: 8 digits after the country code 84, expected 9",
            ),
            (
                "+84 9123456789",
                "too long: 10 digits after the country code 84, expected 9",
            ),
            (
                "091234567",
                "too short: 8 digits after the leading 0, expected 9",
            ),
            (
                "09123456789",
                "too long: 10 digits after the leading 0, expected 9",
            ),
            ("91234567", "too short: 8 digits, expected 10"),
            ("9123456789", "too long: 10 digits, expected 10"),
            (
                "024 3812 3456",
                "not a Vietnamese mobile number (+84 prefix 2x is a landline)",
            ),
            ("+84 28 3812 3456", "(+84 prefix 2x is a landline)"),
            ("1900 1234", "1900 is a service number"),
            ("1800 123 456", "1800 is a service number"),
            (
                "01301234567",
                "old 11-digit prefix 0130 was never a mobile prefix",
            ),
            ("0412345678", "+84 prefix 4 is not a mobile prefix"),
            ("0612345678", "+84 prefix 6 is not a mobile prefix"),
            ("0112345678", "+84 prefix 1 is not a mobile prefix"),
            ("00912345678", "not a Vietnamese number (+91)"),
        ];
        for (raw, want) in cases {
            let got = reason(raw);
            assert!(got.contains(want), "{raw:?}: got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn long_raw_values_are_shortened_in_reasons() {
        let raw = "x".repeat(10_000);
        let got = reason(&raw);
        assert!(got.len() < 100, "{got}");
        assert!(got.contains('…'));
    }

    #[test]
    fn mask_keeps_four_and_three() {
        for (phone, masked) in [
            ("84912345678", "8491****678"),
            ("12345678", "1234****678"),
            ("1234567", "****"),
            ("", "****"),
            ("Nguyễn Văn Ánh", "Nguy****Ánh"),
            ("ễễễễễễễễ", "ễễễễ****ễễễ"),
        ] {
            assert_eq!(mask(phone), masked, "{phone:?}");
        }
    }
}
