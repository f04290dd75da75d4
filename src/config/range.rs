//! How durations, counts and sizes are written (`1m30s`, `8M`), and their accepted ranges, checked at
//! start so a value that would panic later (`--heartbeat 0s` → a zero timer period) or exhaust the
//! machine (`--workers 100000`) stops the program with the flag's name, its config key and the range.
//!
//! Two entry points with one wording: clap value parsers (`duration_in`, `count_in`, `size_in`) for
//! flags that have no config key, and `check_duration`/`check_count` for settings resolved from
//! flags over a file, which name both spellings.

use std::time::Duration;

use super::error::ConfigError;

/// Parses a duration flag such as `500ms`, `2s`, `1m30s` (clap `value_parser`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration ({e}); write it like 500ms, 2s or 1m30s"))
}

/// A clap value parser for a duration within `min..=max`.
pub fn duration_in(min: Duration, max: Duration) -> impl Fn(&str) -> Result<Duration, String> + Clone {
    move |s: &str| {
        let d = parse_duration(s)?;
        if d < min || d > max {
            return Err(format!(
                "{} is out of range: use {} to {}",
                humantime::format_duration(d),
                humantime::format_duration(min),
                humantime::format_duration(max)
            ));
        }
        Ok(d)
    }
}

/// A clap value parser for a count within `min..=max`.
pub fn count_in(min: usize, max: usize) -> impl Fn(&str) -> Result<usize, String> + Clone {
    move |s: &str| {
        let n: usize = s.trim().parse().map_err(|_| format!("`{s}` is not a whole number"))?;
        if n < min || n > max {
            return Err(format!("{n} is out of range: use {min} to {max}"));
        }
        Ok(n)
    }
}

/// A clap value parser for a size in bytes within `min..=max`: a number with an optional `K`, `M` or
/// `G` suffix (powers of 1024, `KiB`/`MiB`/`GiB` also accepted).
pub fn size_in(min: usize, max: usize) -> impl Fn(&str) -> Result<usize, String> + Clone {
    move |s: &str| {
        let n = parse_size(s)?;
        if n < min || n > max {
            return Err(format!(
                "{} is out of range: use {} to {}",
                show_size(n),
                show_size(min),
                show_size(max)
            ));
        }
        Ok(n)
    }
}

fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(format!("`{s}` is not a size; write it like 512K, 8M or 1G")),
    };
    let n: usize = num.parse().map_err(|_| format!("`{s}` is not a size; write it like 512K, 8M or 1G"))?;
    n.checked_mul(1 << shift).ok_or_else(|| format!("`{s}` is too large"))
}

/// A size in the largest unit it is a whole multiple of, as written on the command line.
pub fn show_size(n: usize) -> String {
    for (shift, unit) in [(30, "G"), (20, "M"), (10, "K")] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{}{unit}", n >> shift);
        }
    }
    n.to_string()
}

/// Checks that a duration setting lies in `min..=max`; the error names the flag, the file key and
/// the accepted range (a zero heartbeat or check interval would spin or panic deep inside).
pub fn check_duration(
    key: &str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<Duration, ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::invalid(
            flag_and_key(key),
            format!(
                "{} is out of range; give a duration from {} to {}",
                humantime::format_duration(value),
                humantime::format_duration(min),
                humantime::format_duration(max)
            ),
        ));
    }
    Ok(value)
}

/// Checks that a count setting lies in `min..=max`, naming the flag, the file key and the range.
pub fn check_count(key: &str, value: usize, min: usize, max: usize) -> Result<usize, ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::invalid(
            flag_and_key(key),
            format!("{value} is out of range; give a number from {min} to {max}"),
        ));
    }
    Ok(value)
}

/// `--dial-timeout` / `dial_timeout`: how a setting is spelt on the command line and in the file.
pub fn flag_and_key(key: &str) -> String {
    format!("--{} (config key {key})", key.replace('_', "-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_outside_the_range_are_refused_with_the_range() {
        let p = duration_in(Duration::from_millis(100), Duration::from_secs(600));
        assert_eq!(p("10s"), Ok(Duration::from_secs(10)));
        let e = p("0s").unwrap_err();
        assert!(e.contains("100ms") && e.contains("10m"), "{e}");
        assert!(p("1h").is_err());
        assert!(p("soon").unwrap_err().contains("not a duration"));
    }

    #[test]
    fn counts_and_sizes() {
        let c = count_in(1, 10);
        assert_eq!(c("3"), Ok(3));
        assert!(c("0").unwrap_err().contains("1 to 10"));
        assert!(c("-1").is_err() && c("99999999999999999999999").is_err());
        let s = size_in(1 << 20, 1 << 30);
        assert_eq!(s("8M"), Ok(8 << 20));
        assert_eq!(s("2048KiB"), Ok(2 << 20));
        assert!(s("4K").unwrap_err().contains("1M to 1G"));
        assert!(s("99999999999999G").is_err());
        assert!(s("8 parsecs").is_err());
        assert_eq!(show_size(3 << 20), "3M");
    }

    #[test]
    fn ranges_name_flag_key_and_range() {
        let err = check_duration(
            "heartbeat",
            Duration::ZERO,
            Duration::from_millis(100),
            Duration::from_secs(3600),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("--heartbeat") && err.contains("100ms") && err.contains("1h"), "{err}");
        let err = check_count("workers", 100_000, 0, 1024).unwrap_err().to_string();
        assert!(err.contains("--workers") && err.contains("1024"), "{err}");
    }
}
