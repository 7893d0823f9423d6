//! The shipped config/taskhub.toml parses and states the built-in defaults.

#[test]
fn shipped_config_file_matches_the_defaults() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/taskhub.toml");
    let parsed = taskhub::config::Config::from_file(&path).unwrap();
    assert_eq!(parsed, taskhub::config::Config::default());
}

/// `access_key = ""` once passed the "no key on a public address" guard and then counted as no
/// key at all: the real binary now refuses to start with it, and says why.
#[test]
fn serve_refuses_an_empty_access_key_from_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("taskhub.toml");
    std::fs::write(&config, "listen = \"0.0.0.0:0\"\naccess_key = \"\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_taskhub"))
        .args(["serve", "--grpc-listen", "off", "--config"])
        .arg(&config)
        .env(
            "AzureWebJobsStorage",
            format!("sqlite:{}", dir.path().join("t.db").display()),
        )
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the server started with an empty key"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("at least 16"), "{stderr}");
}

/// A damaged database file once let the server start, and then failed writes with 500s. Now the
/// real binary checks the file first, refuses to start, and says which file and what to do.
#[tokio::test]
async fn serve_refuses_a_damaged_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    {
        // A taskhub file of many pages: every instance has a large input.
        let file = taskhub::store::sqlite::SqliteDb::open(&db).unwrap();
        let client = taskhub::client::Client::new(file.hub("DurableFunctionsHub"), None);
        for _ in 0..400 {
            client
                .start("HelloSequence", None, serde_json::json!("y".repeat(3000)))
                .await
                .unwrap();
        }
    }
    // Let the last handle's threads finish and fold the WAL into the file.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    drop(conn);
    // Overwrite pages in the middle of the file (the header, page 1, stays good).
    let mut bytes = std::fs::read(&db).unwrap();
    assert!(bytes.len() > 100 * 4096, "{} bytes", bytes.len());
    for b in &mut bytes[40 * 4096..60 * 4096] {
        *b = 0x5a;
    }
    std::fs::write(&db, &bytes).unwrap();

    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_taskhub"))
        .args(["serve", "--listen", "127.0.0.1:0", "--grpc-listen", "off"])
        .env("AzureWebJobsStorage", format!("sqlite:{}", db.display()))
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            server.kill().unwrap();
            panic!("the server started on a damaged file (still running after 30 s)");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let out = server.wait_with_output().unwrap();
    assert!(!status.success(), "the server started on a damaged file");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is damaged"), "{stderr}");
    assert!(stderr.contains("t.db"), "{stderr}");
}
