//! Port allowlists: `443,8443`, ranges `1024-65535`, or a mix.

use std::fmt;
use std::str::FromStr;

/// A set of ports as inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSet {
    ranges: Vec<(u16, u16)>,
}

impl PortSet {
    /// Parses `443,8443,1024-65535`.
    pub fn parse(s: &str) -> Result<PortSet, String> {
        let bad = |part: &str| {
            format!("`{part}` in `{s}` is not a port or range; write it like 443,8443 or 1024-65535")
        };
        let mut ranges = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (part, part),
            };
            let lo: u16 = lo.parse().map_err(|_| bad(part))?;
            let hi: u16 = hi.parse().map_err(|_| bad(part))?;
            if lo == 0 || lo > hi {
                return Err(bad(part));
            }
            ranges.push((lo, hi));
        }
        if ranges.is_empty() {
            return Err(format!("empty port list `{s}`; write it like 443,8443 or 1024-65535"));
        }
        Ok(PortSet { ranges })
    }

    /// True if `port` is in the set.
    pub fn contains(&self, port: u16) -> bool {
        self.ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&port))
    }
}

impl FromStr for PortSet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PortSet::parse(s)
    }
}

impl fmt::Display for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (lo, hi)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_contains() {
        let p = PortSet::parse("443, 8443,1000-2000").unwrap();
        assert!(p.contains(443) && p.contains(8443) && p.contains(1500));
        assert!(!p.contains(80) && !p.contains(2001));
        assert_eq!(p.to_string(), "443,8443,1000-2000");
        assert!(PortSet::parse("1-65535").unwrap().contains(65535));
        for bad in ["", "0", "70000", "5-1", "abc", "1-"] {
            assert!(PortSet::parse(bad).is_err(), "{bad}");
        }
    }
}
