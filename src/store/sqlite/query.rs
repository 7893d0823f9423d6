//! Instance list filters as SQL, and the keyset continuation token.
//!
//! Every filter is a range or equality on a leading index column, and rows are ordered by
//! `(created_time, instance_id)`, so a page is an index range read whatever the table size.

use rusqlite::types::Value;

use super::codec::to_micros;
use crate::model::RuntimeStatus;
use crate::store::{InstanceFilter, StoreError};

/// The position after which the next page starts: the last row of the previous page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Cursor {
    pub created_micros: i64,
    pub instance_id: String,
}

impl Cursor {
    /// Hex keeps the token URL- and header-safe whatever characters the id holds.
    pub fn encode(&self) -> String {
        let raw = format!("{}:{}", self.created_micros, self.instance_id);
        raw.bytes().map(|b| format!("{b:02x}")).collect()
    }

    pub fn decode(token: &str) -> Result<Self, StoreError> {
        let bad = || StoreError::InvalidContinuationToken;
        if !token.len().is_multiple_of(2) || !token.is_ascii() {
            return Err(bad());
        }
        let bytes = (0..token.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&token[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| bad())?;
        let raw = String::from_utf8(bytes).map_err(|_| bad())?;
        let (micros, id) = raw.split_once(':').ok_or_else(bad)?;
        let created_micros = micros.parse().map_err(|_| bad())?;
        if id.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            created_micros,
            instance_id: id.to_owned(),
        })
    }
}

/// The smallest string greater than every string that starts with `prefix`, or `None` when no
/// such string exists. Valid because SQLite's BINARY collation compares UTF-8 bytes, whose order
/// is code point order.
pub(super) fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = last as u32 + 1;
        if (0xD800..=0xDFFF).contains(&next) {
            next = 0xE000;
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// A `WHERE` clause (starting with `hub = ?`) and its parameters.
struct Where {
    sql: String,
    params: Vec<Value>,
}

impl Where {
    fn push(&mut self, clause: &str, values: impl IntoIterator<Item = Value>) {
        self.sql.push_str(" AND ");
        self.sql.push_str(clause);
        self.params.extend(values);
    }
}

fn where_clause(
    hub: &str,
    filter: &InstanceFilter,
    status: Option<RuntimeStatus>,
    after: Option<&Cursor>,
) -> Where {
    let mut w = Where {
        sql: "hub = ?".to_owned(),
        params: vec![Value::Text(hub.to_owned())],
    };
    if let Some(from) = filter.created_from {
        w.push("created_time >= ?", [Value::Integer(to_micros(from))]);
    }
    if let Some(to) = filter.created_to {
        w.push("created_time <= ?", [Value::Integer(to_micros(to))]);
    }
    if let Some(status) = status {
        w.push("status = ?", [Value::Integer(status.as_i32().into())]);
    }
    if let Some(name) = &filter.name {
        w.push("name = ?", [Value::Text(name.clone())]);
    }
    if let Some(prefix) = id_prefix(filter) {
        w.push("instance_id >= ?", [Value::Text(prefix.to_owned())]);
        if let Some(end) = prefix_successor(prefix) {
            w.push("instance_id < ?", [Value::Text(end)]);
        }
    }
    if let Some(c) = after {
        w.push(
            "(created_time, instance_id) > (?, ?)",
            [
                Value::Integer(c.created_micros),
                Value::Text(c.instance_id.clone()),
            ],
        );
    }
    w
}

fn id_prefix(filter: &InstanceFilter) -> Option<&str> {
    filter
        .instance_id_prefix
        .as_deref()
        .filter(|p| !p.is_empty())
}

/// A statement selecting `columns` of up to `limit` matching instances in keyset order, and its
/// parameters.
///
/// Several statuses become one ordered index range per status, each limited, merged: an
/// `IN` list would instead either sort every match or walk the hub's whole time index.
pub(super) fn select_page(
    hub: &str,
    filter: &InstanceFilter,
    after: Option<&Cursor>,
    columns: &str,
    limit: usize,
) -> (String, Vec<Value>) {
    let limit = Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX));
    let mut statuses = filter.statuses.clone();
    statuses.sort_by_key(|s| s.as_i32());
    statuses.dedup();
    // An id prefix is a primary key range. Without an equality to search on, the planner would
    // rather walk the hub's time index in order than sort, reading the whole hub for a rare
    // prefix.
    let table = if id_prefix(filter).is_some() && filter.name.is_none() && statuses.is_empty() {
        "instances INDEXED BY sqlite_autoindex_instances_1"
    } else {
        "instances"
    };
    let arm = |status: Option<RuntimeStatus>| {
        let w = where_clause(hub, filter, status, after);
        (
            format!(
                "SELECT {columns} FROM {table} WHERE {} \
                 ORDER BY created_time, instance_id LIMIT ?",
                w.sql
            ),
            w.params,
        )
    };
    match statuses.as_slice() {
        [] | [_] => {
            let (sql, mut params) = arm(statuses.first().copied());
            params.push(limit);
            (sql, params)
        }
        many => {
            let mut arms = Vec::new();
            let mut params = Vec::new();
            for status in many {
                let (sql, p) = arm(Some(*status));
                arms.push(format!("SELECT * FROM ({sql})"));
                params.extend(p);
                params.push(limit.clone());
            }
            params.push(limit);
            (
                format!(
                    "{} ORDER BY created_time, instance_id LIMIT ?",
                    arms.join(" UNION ALL ")
                ),
                params,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_any_id() {
        for id in ["a", "x:y:z", "späß 😀", "A B"] {
            let c = Cursor {
                created_micros: -42,
                instance_id: id.into(),
            };
            let token = c.encode();
            assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
            assert_eq!(Cursor::decode(&token).unwrap(), c);
        }
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        for bad in ["", "abc", "zz", "3132", "3a61", "78783a61", "ff00"] {
            assert!(
                matches!(
                    Cursor::decode(bad),
                    Err(StoreError::InvalidContinuationToken)
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn prefix_successor_bounds_the_prefix_range() {
        assert_eq!(prefix_successor("abc").as_deref(), Some("abd"));
        assert_eq!(prefix_successor("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_successor("\u{10FFFF}"), None);
        let succ = prefix_successor("ab").unwrap();
        for inside in ["ab", "ab\u{10FFFF}", "abzzz"] {
            assert!(inside >= "ab" && inside < succ.as_str());
        }
        assert!("ac" >= succ.as_str());
    }
}
