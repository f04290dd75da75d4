//! The accepted range of each `ws-server`/`ws-client` number, checked when the flags are parsed so a
//! value that would panic later (`--heartbeat 0s` → a zero timer period) or exhaust the machine
//! (`--workers 100000`) stops the program at start, with the flag's name (clap adds it) and the range.

use std::time::Duration;

use crate::config::parse_duration;

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
}
