//! The one home of the small helpers every layer uses: time stamps, digests and tokens.
//!
//! Time stamps are RFC 3339 in UTC everywhere they are stored or sent (records, locks, pages, reports), so
//! that they sort as text and every reader parses them the same way.

use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Formats an instant as RFC 3339 (falls back to the Unix timestamp, which cannot fail).
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Parses an RFC 3339 time stamp; `None` when it is not one.
pub fn parse_rfc3339(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// Whole milliseconds from `a` to `b`; 0 when `b` is earlier (a clock that stepped back is no duration).
pub fn ms_between(a: OffsetDateTime, b: OffsetDateTime) -> u64 {
    u64::try_from((b - a).whole_milliseconds()).unwrap_or(0)
}

/// Lowercase hex of the SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh random token (32 hex digits): execution ids without a client token, attempt ids, probe keys.
pub fn new_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn sha256_is_hex() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn rfc3339_round_trips() {
        let t = datetime!(2026-11-25 12:00:01.5 UTC);
        assert_eq!(rfc3339(t), "2026-11-25T12:00:01.5Z");
        assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn durations_never_go_negative() {
        let a = datetime!(2026-11-25 12:00 UTC);
        assert_eq!(ms_between(a, a + time::Duration::milliseconds(1500)), 1500);
        assert_eq!(ms_between(a + time::Duration::seconds(1), a), 0);
        assert_eq!(new_token().len(), 32);
    }
}
