//! The shipped config/taskhub.toml parses and states the built-in defaults.

#[test]
fn shipped_config_file_matches_the_defaults() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/taskhub.toml");
    let parsed = taskhub::config::Config::from_file(&path).unwrap();
    assert_eq!(parsed, taskhub::config::Config::default());
}
