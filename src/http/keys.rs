//! Who may do what, once a server has an access key.
//!
//! - **Full keys** (`access_key`, and `access_keys` beside it so a key can be rotated without a
//!   gap) may do everything, over HTTP and gRPC.
//! - **Read-only keys** (`read_only_keys`) may only read: `GET` and `HEAD` requests.
//! - **Instance links.** The management URLs the server hands out (a 202's `Location`,
//!   `statusQueryGetUri`, `terminatePostUri`, …) are what an application passes on to its own
//!   users, so they must not carry a key that opens every instance (Durable Functions' extension
//!   issue 838). They carry `code=` a token that grants only that instance's routes, in that task
//!   hub on that connection: `l1.{expiry}.{mac}`, where the MAC is HMAC-SHA256 under the primary
//!   `access_key` of the hub, connection, instance id and expiry (unix seconds; `0`: none, the
//!   default, as Durable Functions' URLs never expire; `link_ttl_seconds` sets one). Existing
//!   clients follow the links unchanged. Rotating the primary key ends the links it signed.
//!
//! Every comparison is constant-time with no early exit on length.

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Config;

type HmacSha256 = Hmac<Sha256>;

const LINK_PREFIX: &str = "l1.";

/// The keys of a server that has an access key.
#[derive(Debug)]
pub struct Keys {
    /// The primary key first: it signs links.
    full: Vec<String>,
    read_only: Vec<String>,
    link_ttl_seconds: Option<u64>,
}

/// What a presented key allows (a link is checked against its route: [`Keys::link_allows`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    Everything,
    ReadOnly,
}

impl Keys {
    /// `None` when the server has no access key (every request is let through).
    pub fn from_config(config: &Config) -> Option<Self> {
        let primary = config.access_key.clone().filter(|k| !k.is_empty())?;
        let full = std::iter::once(primary)
            .chain(config.access_keys.iter().filter(|k| !k.is_empty()).cloned())
            .collect();
        Some(Self {
            full,
            read_only: config.read_only_keys.clone(),
            link_ttl_seconds: config.link_ttl_seconds,
        })
    }

    /// Whether `presented` is one of the full keys (what the gRPC endpoint needs).
    pub fn is_full_key(&self, presented: &str) -> bool {
        any_equal(&self.full, presented)
    }

    /// What `presented` allows as a key, if anything.
    pub fn grant(&self, presented: &str) -> Option<Grant> {
        if self.is_full_key(presented) {
            return Some(Grant::Everything);
        }
        if any_equal(&self.read_only, presented) {
            return Some(Grant::ReadOnly);
        }
        None
    }

    /// Whether `token` is a link for this instance, unexpired.
    pub fn link_allows(&self, token: &str, hub: &str, connection: &str, instance_id: &str) -> bool {
        let Some((expiry, mac)) = token
            .strip_prefix(LINK_PREFIX)
            .and_then(|rest| rest.split_once('.'))
        else {
            return false;
        };
        let Ok(expiry) = expiry.parse::<u64>() else {
            return false;
        };
        if expiry != 0 && expiry < unix_now() {
            return false;
        }
        let expected = self.mac(hub, connection, instance_id, expiry);
        constant_time_eq(expected.as_bytes(), mac.as_bytes())
    }

    /// The `code=` of the management URLs of one instance.
    pub fn link_code(&self, hub: &str, connection: &str, instance_id: &str) -> String {
        let expiry = self
            .link_ttl_seconds
            .map_or(0, |ttl| unix_now().saturating_add(ttl));
        format!(
            "{LINK_PREFIX}{expiry}.{}",
            self.mac(hub, connection, instance_id, expiry)
        )
    }

    fn mac(&self, hub: &str, connection: &str, instance_id: &str, expiry: u64) -> String {
        let mut mac = HmacSha256::new_from_slice(self.full[0].as_bytes())
            .expect("HMAC takes a key of any length");
        // Lengths first, so that no two different tuples sign the same bytes.
        for part in [hub, connection, instance_id] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac.update(&expiry.to_be_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

fn any_equal(keys: &[String], presented: &str) -> bool {
    // Every key is compared, so the time does not tell which (or whether one) matched.
    keys.iter().fold(false, |found, k| {
        found | constant_time_eq(k.as_bytes(), presented.as_bytes())
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Compares without an early exit, so the time taken reveals neither how much of a guess was
/// right nor how long the key is: the shorter input is compared against the longer one's
/// length, and a length difference only flips the result.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..len {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(ttl: Option<u64>) -> Keys {
        Keys {
            full: vec![
                "primary-key-0123456789".into(),
                "next-key-0123456789ab".into(),
            ],
            read_only: vec!["reader-key-0123456789".into()],
            link_ttl_seconds: ttl,
        }
    }

    #[test]
    fn compares_bytes_without_telling_the_length() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secrets"));
        assert!(!constant_time_eq(b"secret\0", b"secret"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn each_kind_of_key_grants_its_own_scope() {
        let k = keys(None);
        assert_eq!(k.grant("primary-key-0123456789"), Some(Grant::Everything));
        assert_eq!(k.grant("next-key-0123456789ab"), Some(Grant::Everything));
        assert_eq!(k.grant("reader-key-0123456789"), Some(Grant::ReadOnly));
        assert_eq!(k.grant("primary-key-012345678"), None);
        assert!(!k.is_full_key("reader-key-0123456789"));
    }

    #[test]
    fn a_link_opens_its_own_instance_only() {
        let k = keys(None);
        let code = k.link_code("Hub", "Storage", "order-1");
        assert!(code.starts_with("l1.0."), "{code}");
        assert!(k.link_allows(&code, "Hub", "Storage", "order-1"));
        assert!(!k.link_allows(&code, "Hub", "Storage", "order-2"));
        assert!(!k.link_allows(&code, "OtherHub", "Storage", "order-1"));
        assert!(!k.link_allows(&code, "Hub", "Other", "order-1"));
        // A link is not a key, and a tampered one is nothing.
        assert_eq!(k.grant(&code), None);
        let tampered = code.replace("l1.0.", "l1.9999999999.");
        assert!(!k.link_allows(&tampered, "Hub", "Storage", "order-1"));
        // Signed with the primary key: another server's links do not open this one's instances.
        let other = Keys {
            full: vec!["another-primary-key-0123".into()],
            ..keys(None)
        };
        assert!(!other.link_allows(&code, "Hub", "Storage", "order-1"));
    }

    #[test]
    fn a_link_with_an_expiry_stops_working_then() {
        let k = keys(Some(3600));
        let code = k.link_code("Hub", "Storage", "x");
        assert!(!code.starts_with("l1.0."));
        assert!(k.link_allows(&code, "Hub", "Storage", "x"));
        let mac = k.mac("Hub", "Storage", "x", 1);
        assert!(
            !k.link_allows(&format!("l1.1.{mac}"), "Hub", "Storage", "x"),
            "expired in 1970"
        );
    }
}
