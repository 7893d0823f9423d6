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
