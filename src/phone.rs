//! Phone normalisation (stub, being written).

/// Temporary until the real module lands.
pub fn mask(phone: &str) -> String {
    let c: Vec<char> = phone.chars().collect();
    if c.len() < 8 {
        return "****".into();
    }
    format!(
        "{}****{}",
        c[..4].iter().collect::<String>(),
        c[c.len() - 3..].iter().collect::<String>()
    )
}
