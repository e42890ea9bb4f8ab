//! Campaign names as parts of file names (reports, downloads).

/// `name` with letters, digits, `-` and `_` kept and every other character
/// (separators, quotes, blanks) as `other`: safe in a path and in a
/// `Content-Disposition` header.
pub fn file_stem(name: &str, other: char) -> String {
    name.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                other
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_letters_digits_dash_and_underscore_stay() {
        assert_eq!(file_stem("hóa-đơn_12", '_'), "hóa-đơn_12");
        assert_eq!(file_stem("a/b \"c\".csv", '-'), "a-b--c--csv");
    }
}
