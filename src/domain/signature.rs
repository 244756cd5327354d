//! HMAC-SHA256 signatures (`docs/provisioning.md`): the provisioning webhook, the IdP callback and the HTTP
//! event sink sign `hex(HMAC-SHA256(secret, part₁ ‖ part₂ ‖ …))` — for the webhook the raw body,
//! the context and the timestamp. Verification is constant-time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Length of a signature in hex characters.
pub const SIGNATURE_HEX_LEN: usize = 64;

fn mac(secret: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    for part in parts {
        mac.update(part);
    }
    mac
}

/// The signature of `parts` (concatenated) with `secret`, in lower-case hex.
pub fn sign(secret: &[u8], parts: &[&[u8]]) -> String {
    hex::encode(mac(secret, parts).finalize().into_bytes())
}

/// Whether `signature` (hex, either case) is the signature of `parts` with `secret`, compared in
/// constant time. A signature that is not 64 hex characters is simply wrong.
pub fn verify(secret: &[u8], parts: &[&[u8]], signature: &str) -> bool {
    if signature.len() != SIGNATURE_HEX_LEN {
        return false;
    }
    let Ok(bytes) = hex::decode(signature) else {
        return false;
    };
    mac(secret, parts).verify_slice(&bytes).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_known_hmac_and_verify() {
        // RFC 4231, test case 2.
        assert_eq!(
            sign(b"Jefe", &[b"what do ya want ", b"for nothing?"]),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let good = sign(b"secret", &[b"{\"a\":1}", b"ctx", b"1700000000000"]);
        assert!(verify(
            b"secret",
            &[b"{\"a\":1}", b"ctx", b"1700000000000"],
            &good
        ));
        assert!(verify(
            b"secret",
            &[b"{\"a\":1}", b"ctx", b"1700000000000"],
            &good.to_uppercase()
        ));
        assert!(!verify(
            b"other",
            &[b"{\"a\":1}", b"ctx", b"1700000000000"],
            &good
        ));
        assert!(!verify(
            b"secret",
            &[b"{\"a\": 1}", b"ctx", b"1700000000000"],
            &good
        ));
        assert!(!verify(
            b"secret",
            &[b"{\"a\":1}", b"ctx", b"1700000000000"],
            &good[..63]
        ));
        assert!(!verify(b"secret", &[b"{\"a\":1}"], &"zz".repeat(32)));
    }
}
