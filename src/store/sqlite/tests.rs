use chrono::{DateTime, Utc};

use super::reads::explain_query;
use super::schema::open_writer;
use crate::model::RuntimeStatus;
use crate::store::{InstanceFilter, InstanceQuery};

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// Every list filter, alone and combined, is an index search: never a scan of the table or of
/// a whole index.
#[test]
fn list_filters_use_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let conn = open_writer(&dir.path().join("plan.db")).unwrap();
    let from = Some(t("2024-01-01T00:00:00Z"));
    let to = Some(t("2024-02-01T00:00:00Z"));
    let one_status = vec![RuntimeStatus::Running];
    let two_statuses = vec![RuntimeStatus::Running, RuntimeStatus::Pending];
    let name = Some("Hello".to_owned());
    let prefix = Some("order-".to_owned());
    let filters = [
        InstanceFilter::default(),
        InstanceFilter {
            created_from: from,
            ..Default::default()
        },
        InstanceFilter {
            created_from: from,
            created_to: to,
            ..Default::default()
        },
        InstanceFilter {
            statuses: one_status.clone(),
            ..Default::default()
        },
        InstanceFilter {
            statuses: two_statuses.clone(),
            ..Default::default()
        },
        InstanceFilter {
            statuses: one_status.clone(),
            created_from: from,
            created_to: to,
            ..Default::default()
        },
        InstanceFilter {
            name: name.clone(),
            ..Default::default()
        },
        InstanceFilter {
            name: name.clone(),
            created_from: from,
            ..Default::default()
        },
        InstanceFilter {
            name: name.clone(),
            statuses: two_statuses.clone(),
            ..Default::default()
        },
        InstanceFilter {
            instance_id_prefix: prefix.clone(),
            ..Default::default()
        },
        InstanceFilter {
            instance_id_prefix: prefix.clone(),
            statuses: one_status.clone(),
            created_from: from,
            ..Default::default()
        },
        InstanceFilter {
            created_from: from,
            created_to: to,
            statuses: two_statuses,
            instance_id_prefix: prefix,
            name,
        },
    ];
    let token = super::query::Cursor {
        created_micros: 1,
        instance_id: "x".into(),
    }
    .encode();
    for filter in filters {
        for continuation in [None, Some(token.clone())] {
            let query = InstanceQuery {
                filter: filter.clone(),
                page_size: 100,
                continuation,
                include_input: false,
                max_bytes: None,
            };
            let plan = explain_query(&conn, "hub", &query).unwrap();
            assert!(
                plan.iter().any(|l| l.starts_with("SEARCH instances")),
                "{filter:?}: {plan:?}"
            );
            // `SCAN (subquery-n)` of a merged multi-status page reads at most a page.
            assert!(
                !plan.iter().any(|l| l.starts_with("SCAN instances")),
                "{filter:?}: {plan:?}"
            );
        }
    }
}

/// A file written by the previous layout (version 1, no `instances.tags`) is upgraded when it
/// is opened, and its rows read back with no tags.
#[test]
fn a_version_1_file_gains_the_tags_column_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    {
        let conn = open_writer(&path).unwrap();
        conn.execute_batch(
            "INSERT INTO instances(hub, instance_id, execution_id, name, version, status, \
                 created_time, last_updated_time) \
             VALUES ('h', 'old', 'e', 'Hello', '', 6, 0, 0); \
             ALTER TABLE instances DROP COLUMN tags; \
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let conn = open_writer(&path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, super::schema::SCHEMA_VERSION);
    let (id, tags): (String, Option<String>) = conn
        .query_row("SELECT instance_id, tags FROM instances", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((id.as_str(), tags), ("old", None));
}

/// A connection setting pointed at another application's database once turned it into ours
/// (WAL, six tables, a lease row). Such a file, and one that is not SQLite at all, is refused
/// unchanged; an empty file is a new database.
#[test]
fn a_file_that_is_not_a_taskhub_database_is_refused_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("app.db");
    {
        let conn = rusqlite::Connection::open(&foreign).unwrap();
        conn.execute_batch("CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT);")
            .unwrap();
    }
    let before = std::fs::read(&foreign).unwrap();
    let e = open_writer(&foreign).unwrap_err().to_string();
    assert!(
        e.contains("is not a taskhub database (it holds other tables: users)"),
        "{e}"
    );
    assert_eq!(
        std::fs::read(&foreign).unwrap(),
        before,
        "the file was changed"
    );
    assert!(!dir.path().join("app.db-wal").exists());

    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x5a_u8; 8192]).unwrap();
    let e = open_writer(&garbage).unwrap_err().to_string();
    assert!(e.contains("cannot be read as a SQLite database"), "{e}");

    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    open_writer(&empty).unwrap();
    open_writer(&empty).expect("our own file opens again");
}
