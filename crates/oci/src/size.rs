//! Byte counts as people write and read them: `10MB`, `9.5MiB`, `1.9 MB`. Decimal units
//! when printing, as registries and `docker images` report sizes.

/// Parses `10MB`, `9.5MiB`, `500KB`, `1234` (bytes); `None` for anything else.
pub fn parse(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let multiplier = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    (number >= 0.0 && number.is_finite()).then(|| (number * multiplier).round() as u64)
}

/// `1.9 MB`, `220.3 KB`, `17 B`.
pub fn format(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.1} KB", b / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", b / 1e6),
        1_000_000_000..1_000_000_000_000 => format!("{:.2} GB", b / 1e9),
        _ => format!("{:.2} TB", b / 1e12),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_and_binary_units() {
        assert_eq!(parse("10MB"), Some(10_000_000));
        assert_eq!(parse("9.5MiB"), Some(9_961_472));
        assert_eq!(parse("500kb"), Some(500_000));
        assert_eq!(parse("2 GiB"), Some(2 * 1024 * 1024 * 1024));
        assert_eq!(parse("1234"), Some(1234));
        for bad in ["", "MB", "10XB", "-1MB", "1.2.3MB", "ten"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_decimal() {
        assert_eq!(format(17), "17 B");
        assert_eq!(format(220_300), "220.3 KB");
        assert_eq!(format(1_907_900), "1.9 MB");
        assert_eq!(format(3_500_000_000), "3.50 GB");
    }
}
