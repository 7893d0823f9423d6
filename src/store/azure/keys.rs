//! Names and keys: `^` escaping of instance ids in table keys, FNV-1a partition choice, row keys
//! and OData literals (spec §2.3, §3.1, §6).

/// Escapes an instance id for use as a PartitionKey (DTFx `KeySanitation.EscapePartitionKey`).
/// Works on UTF-16 units like .NET, so only BMP control characters are affected.
pub fn escape_partition_key(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for c in id.chars() {
        match c {
            '^' => out.push_str("^^"),
            '/' => out.push_str("^0"),
            '\\' => out.push_str("^1"),
            '#' => out.push_str("^2"),
            '?' => out.push_str("^3"),
            c if (c as u32) <= 0x1F || (0x7F..=0x9F).contains(&(c as u32)) => {
                out.push('^');
                out.push(char::from_u32(0xC0 + c as u32).expect("0xC0..0x15F are chars"));
            }
            c => out.push(c),
        }
    }
    out
}

/// Reverses [`escape_partition_key`].
pub fn unescape_partition_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut chars = key.chars();
    while let Some(c) = chars.next() {
        if c != '^' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('^') => out.push('^'),
            Some('0') => out.push('/'),
            Some('1') => out.push('\\'),
            Some('2') => out.push('#'),
            Some('3') => out.push('?'),
            Some(e) if (e as u32) >= 0xC0 => {
                out.push(char::from_u32(e as u32 - 0xC0).unwrap_or(e));
            }
            Some(e) => out.push(e),
            None => out.push('^'),
        }
    }
    out
}

/// FNV-1a, 32 bits, over the UTF-8 bytes of the raw instance id.
pub fn fnv1a32(s: &str) -> u32 {
    s.bytes().fold(2_166_136_261u32, |h, b| {
        (h ^ b as u32).wrapping_mul(16_777_619)
    })
}

pub fn partition_index(instance_id: &str, partition_count: u32) -> u32 {
    fnv1a32(instance_id) % partition_count.max(1)
}

/// `{hub}-control-NN`, hub lower-cased.
pub fn control_queue_name(hub: &str, partition: u32) -> String {
    format!("{}-control-{partition:02}", hub.to_ascii_lowercase())
}

pub fn workitem_queue_name(hub: &str) -> String {
    format!("{}-workitems", hub.to_ascii_lowercase())
}

pub fn large_messages_container(hub: &str) -> String {
    format!("{}-largemessages", hub.to_ascii_lowercase())
}

/// History RowKey of the event at `seq` (16 upper-case hex digits).
pub fn history_row_key(seq: u64) -> String {
    format!("{seq:016X}")
}

pub const SENTINEL_ROW_KEY: &str = "sentinel";

/// An OData string literal: single-quoted, quotes doubled.
pub fn odata_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A key as the crates put it inside `(PartitionKey='…',RowKey='…')`: they do not double quotes.
pub fn key_in_url(s: &str) -> String {
    s.replace('\'', "''")
}

/// The smallest string greater than every string starting with `prefix` (for range scans).
pub fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = char::from_u32(last as u32 + 1) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_spec_vectors() {
        let vectors = [
            ("", 0x811c9dc5u32, 1, 5),
            ("a", 0xe40c292c, 0, 12),
            ("abc", 0x1a47e90b, 3, 11),
            ("myinstance", 0xc06a6290, 0, 0),
            ("b3c3e29336fd4c4bbe86bf61320cbd2d", 0x5c2b291d, 1, 13),
            ("@counter@c1", 0x0e604803, 3, 3),
            ("héllo", 0x4aa48540, 0, 0),
        ];
        for (id, hash, p4, p16) in vectors {
            assert_eq!(fnv1a32(id), hash, "{id:?}");
            assert_eq!(partition_index(id, 4), p4, "{id:?} % 4");
            assert_eq!(partition_index(id, 16), p16, "{id:?} % 16");
        }
        assert_eq!(control_queue_name("MyHub", 3), "myhub-control-03");
        assert_eq!(control_queue_name("h", 15), "h-control-15");
    }

    #[test]
    fn escaping_follows_key_sanitation() {
        assert_eq!(escape_partition_key("a^b/c\\d#e?f"), "a^^b^0c^1d^2e^3f");
        assert_eq!(escape_partition_key("x\u{1}y\u{7f}"), "x^\u{c1}y^\u{13f}");
        assert_eq!(escape_partition_key("plain id"), "plain id");
        for id in [
            "a^b/c\\d#e?f",
            "x\u{1}y\u{7f}\u{9f}",
            "^^",
            "héllo",
            "o'neil",
        ] {
            assert_eq!(unescape_partition_key(&escape_partition_key(id)), id);
        }
        // Not idempotent: escaping twice is a different key.
        assert_ne!(
            escape_partition_key(&escape_partition_key("a/b")),
            escape_partition_key("a/b")
        );
    }

    #[test]
    fn row_keys_and_literals() {
        assert_eq!(history_row_key(0), "0000000000000000");
        assert_eq!(history_row_key(26), "000000000000001A");
        assert!(history_row_key(u32::MAX as u64).as_str() < SENTINEL_ROW_KEY);
        assert_eq!(odata_str("o'neil"), "'o''neil'");
        assert_eq!(prefix_upper_bound("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_upper_bound(""), None);
    }
}
