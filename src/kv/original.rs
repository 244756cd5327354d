//! The original's key-value entries (`docs/switch-over.md`): on its Redis every entry is a
//! string key `_kvModel:<id>` holding a MessagePack map — `{token}` under a lead's verification
//! key, `{secret, context}` under a tenant's id. tms honours entries the original wrote, and with
//! `REDIS_ENTRY_FORMAT=original` writes its own lead keys and webhook secrets that way, so the
//! original's other services and the ARC facade keep reading them on a shared Redis.

use serde::{Deserialize, Serialize};

/// How tms writes lead keys and webhook secrets (`REDIS_ENTRY_FORMAT`). Both are always read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EntryFormat {
    /// tms's own keys (`<REDIS_KEY_PREFIX>lead-key:<key>`, …) with text values.
    #[default]
    Tms,
    /// The original's: `_kvModel:<id>` with a MessagePack map.
    Original,
}

impl EntryFormat {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tms" => Some(Self::Tms),
            "original" => Some(Self::Original),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tms => "tms",
            Self::Original => "original",
        }
    }
}

/// What the original keeps under a lead's verification key: the lead's token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadEntry {
    pub token: String,
}

/// A MessagePack map with named fields, as the original's KV connector writes it.
pub fn encode<T: Serialize>(entry: &T) -> Vec<u8> {
    // Serialising a struct of strings into a Vec cannot fail.
    rmp_serde::to_vec_named(entry).unwrap_or_default()
}

/// An entry of the original, `None` when it is not the map expected.
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Option<T> {
    rmp_serde::from_slice(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_messagepack_maps_with_named_fields() {
        let bytes = encode(&LeadEntry { token: "t".into() });
        // fixmap of 1, fixstr "token", fixstr "t"
        assert_eq!(
            bytes,
            [0x81, 0xa5, b't', b'o', b'k', b'e', b'n', 0xa1, b't']
        );
        assert_eq!(
            decode::<LeadEntry>(&bytes),
            Some(LeadEntry { token: "t".into() })
        );
        assert_eq!(decode::<LeadEntry>(b"not msgpack"), None);
        assert_eq!(decode::<LeadEntry>(&encode(&("a", 1))), None);
        assert_eq!(EntryFormat::parse("Original"), Some(EntryFormat::Original));
        assert_eq!(EntryFormat::parse("json"), None);
    }
}
