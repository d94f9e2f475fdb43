//! WAL positions (LSNs) as PostgreSQL prints them (`16/B374D848`) and as 64-bit numbers.

/// `16/B374D848` as a 64-bit position.
pub fn parse_lsn(s: &str) -> Option<u64> {
    parse_lsn_bytes(s.as_bytes())
}

/// [`parse_lsn`] of bytes (a probe's or a write-LSN read's answer, as it came): ASCII
/// whitespace around it is ignored. Bytes only, with no UTF-8 check and no pattern
/// search: every read after a write parses one or two of these, mostly with cold caches.
pub fn parse_lsn_bytes(b: &[u8]) -> Option<u64> {
    let b = b.trim_ascii();
    let slash = b.iter().position(|&c| c == b'/')?;
    let hi = b.get(..slash)?;
    let lo = b.get(slash + 1..)?;
    Some((hex32(hi)? << 32) | hex32(lo)?)
}

/// Hex digits (at least one) of a value that fits 32 bits.
fn hex32(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return None,
        };
        v = (v << 4) | u64::from(d);
        if v > u64::from(u32::MAX) {
            return None;
        }
    }
    Some(v)
}

/// A 64-bit position as PostgreSQL prints it.
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_round_trip() {
        assert_eq!(parse_lsn("0/16B3748"), Some(0x16B3748));
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
        assert_eq!(parse_lsn("nope"), None);
        assert_eq!(parse_lsn("1/"), None);
        assert_eq!(parse_lsn("/1"), None);
        assert_eq!(parse_lsn(" 0/ff "), Some(0xff));
        assert_eq!(parse_lsn("0/1FFFFFFFF"), None, "over 32 bits");
        assert_eq!(parse_lsn("000000001/0"), Some(1 << 32), "leading zeros");
        assert_eq!(parse_lsn("1/-2"), None);
        assert_eq!(parse_lsn("1/2/3"), None, "one slash");
        assert_eq!(parse_lsn_bytes(b"\t0/A\n"), Some(0xA));
        assert_eq!(parse_lsn_bytes(b"0/\xff"), None, "not UTF-8");
    }
}
