//! Words for next-step lines a person pastes into a shell.

/// A word for the shell: quoted when it holds anything a shell would split
/// or expand, so a next-step line can be pasted as it is.
pub fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().all(|c| {
            c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':' | '@' | '+' | ',')
        });
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        for (word, quoted) in [
            ("bills-2026", "bills-2026"),
            ("bills nov", "'bills nov'"),
            ("it's", "'it'\\''s'"),
            ("hóa-đơn", "hóa-đơn"),
        ] {
            assert_eq!(shell_word(word), quoted, "{word:?}");
        }
    }
}
