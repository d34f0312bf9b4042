//! The memory limit of the large allocations (the exact Gram path above all): `--max-memory SIZE`
//! and its default, a safe fraction of the memory the operating system reports as available.
//!
//! Every command that may build the `nC × nC` Gram matrix estimates its peak memory first and
//! refuses above this limit with a message naming the estimate, the limit and the alternatives
//! (`--max-memory`, `--gram-limit`, subsampling).

use crate::error::Error;

/// Fraction of the available memory (`MemAvailable`) a run may use by default.
pub const SAFE_MEMORY_FRACTION: f64 = 0.5;

/// The default limit when the available memory is unknown (no `/proc/meminfo`): 4 GiB.
pub const FALLBACK_MEMORY_LIMIT: usize = 4 << 30;

/// Available memory in bytes (`MemAvailable` of /proc/meminfo), if known.
pub fn available_memory() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// The default memory limit: [`SAFE_MEMORY_FRACTION`] of the available memory, else
/// [`FALLBACK_MEMORY_LIMIT`]. Never 0.
pub fn default_memory_limit() -> usize {
    available_memory()
        .map(|m| (m as f64 * SAFE_MEMORY_FRACTION) as usize)
        .filter(|&b| b > 0)
        .unwrap_or(FALLBACK_MEMORY_LIMIT)
}

/// Parse a size for `--max-memory`: a number of bytes, optionally with a suffix (case
/// insensitive) `K`, `M`, `G`, `T` or `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024), `KB`, `MB`,
/// `GB`, `TB` (powers of 1000), or `B`; a fractional number is allowed (`1.5G`). The result must be
/// at least 1 byte. Errors are [`Error::InvalidArgument`] naming `--max-memory` (exit code 2).
pub fn parse_size(text: &str) -> crate::error::Result<usize> {
    let bad = |why: String| Error::invalid_argument("--max-memory", why);
    let s = text.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let multiplier: f64 = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024f64.powi(2),
        "g" | "gib" => 1024f64.powi(3),
        "t" | "tib" => 1024f64.powi(4),
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        _ => {
            return Err(bad(format!(
                "'{text}' is not a size: expected bytes or a number with a suffix K, M, G, T \
                 (powers of 1024; also KiB, MiB, GiB, TiB) or KB, MB, GB, TB (powers of 1000), \
                 e.g. 512M or 4G"
            )));
        }
    };
    let value: f64 = number.parse().map_err(|_| {
        bad(format!(
            "'{text}' is not a size: expected a positive number of bytes, optionally with a \
             suffix such as 512M or 4G"
        ))
    })?;
    let bytes = value * multiplier;
    if !bytes.is_finite() || bytes >= usize::MAX as f64 {
        return Err(bad(format!("'{text}' is too large")));
    }
    let bytes = bytes.floor() as usize;
    if bytes == 0 {
        return Err(bad(format!("must be more than 0 bytes, got '{text}'")));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_and_without_suffixes() {
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("4G").unwrap(), 4 << 30);
        assert_eq!(parse_size("4GiB").unwrap(), 4 << 30);
        assert_eq!(parse_size("4gib").unwrap(), 4 << 30);
        assert_eq!(parse_size("2k").unwrap(), 2048);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("4GB").unwrap(), 4_000_000_000);
        assert_eq!(parse_size("100B").unwrap(), 100);
        assert_eq!(parse_size(" 8 M ").unwrap(), 8 << 20);
    }

    #[test]
    fn bad_sizes_name_the_flag() {
        for s in [
            "", "0", "0G", "-1", "-4G", "4X", "G", "1e3", "nan", "inf", "1..2M", "0.1",
        ] {
            let e = parse_size(s).unwrap_err();
            assert!(e.to_string().contains("--max-memory"), "{s}: {e}");
            assert_eq!(e.exit_code(), 2, "{s}");
        }
        assert!(parse_size("99999999999999999999999T").is_err());
    }

    #[test]
    fn default_is_positive() {
        assert!(default_memory_limit() > 0);
    }
}
