//! Flag values with units: sizes (`512MiB`, `1GiB`, `10MB`, `4096`). Durations
//! are [`observer_proto::time::parse_duration`]'s. No small well-kept crate
//! reads exactly these units without also taking decimals and lower case, so
//! this stays a few lines of our own.

/// A size in bytes: a number, optionally with `KB`/`MB`/`GB`/`TB` (powers of
/// 1000) or `KiB`/`MiB`/`GiB`/`TiB` (powers of 1024).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 512MiB or 1GiB"))?;
    let mul: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1000,
        "MB" => 1000_u64.pow(2),
        "GB" => 1000_u64.pow(3),
        "TB" => 1000_u64.pow(4),
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => {
            return Err(format!(
                "{s:?}: the unit is one of B, KB, MB, GB, KiB, MiB, GiB"
            ));
        }
    };
    n.checked_mul(mul)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("10MB"), Ok(10_000_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(
            parse_bytes("1XB"),
            Err(r#""1XB": the unit is one of B, KB, MB, GB, KiB, MiB, GiB"#.to_string())
        );
        assert_eq!(
            parse_bytes("GiB"),
            Err(r#""GiB" is not a size such as 512MiB or 1GiB"#.to_string())
        );
        assert_eq!(
            parse_bytes("99999999TiB"),
            Err(r#""99999999TiB" is too large"#.to_string())
        );
    }
}
