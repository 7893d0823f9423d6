//! `--help` reads like Core Tools' and lists every command and flag; usage errors exit 2.

mod cli_support;

use cli_support::Cli;

const COMMANDS: [(&str, &str, &[&str]); 9] = [
    (
        "start-new",
        "Start a new instance of the specified orchestrator function",
        &["--function-name", "--input", "--id"],
    ),
    (
        "get-runtime-status",
        "Retrieve the status of the specified orchestration instance",
        &["--id", "--show-input", "--show-output"],
    ),
    (
        "get-history",
        "Retrieve the history of the specified orchestration instance",
        &["--id"],
    ),
    (
        "get-instances",
        "Retrieve the status of all orchestration instances",
        &[
            "--top",
            "--continuation-token",
            "--created-after",
            "--created-before",
            "--runtime-status",
        ],
    ),
    (
        "terminate",
        "Terminate the specified orchestration instance",
        &["--id", "--reason"],
    ),
    (
        "raise-event",
        "Raise an event to the specified orchestration instance",
        &["--id", "--event-name", "--event-data"],
    ),
    (
        "rewind",
        "Rewind the specified failed orchestration instance",
        &["--id", "--reason"],
    ),
    (
        "purge-history",
        "Purge orchestration instance state and history",
        &["--created-after", "--created-before", "--runtime-status"],
    ),
    (
        "delete-task-hub",
        "Delete all storage artifacts of the durable task hub",
        &["--yes"],
    ),
];

#[test]
fn top_level_help_lists_serve_durable_and_every_command() {
    let cli = Cli::new();
    let help = cli.ok(&["--help"]);
    for name in ["serve", "durable"] {
        assert!(help.contains(&format!("\n  {name} ")), "{name}: {help}");
    }
    for (name, about, _) in COMMANDS {
        assert!(
            help.contains(name) && help.contains(about),
            "{name}: {help}"
        );
    }
    assert!(help.contains("Exit status"));
    let durable = cli.ok(&["durable", "--help"]);
    for (name, _, _) in COMMANDS {
        assert!(durable.contains(name), "{name}: {durable}");
    }
}

#[test]
fn every_command_has_help_in_both_spellings_with_its_flags() {
    let cli = Cli::new();
    for (name, about, flags) in COMMANDS {
        for prefix in [&[][..], &["durable"][..]] {
            let mut args = prefix.to_vec();
            args.extend([name, "--help"]);
            let help = cli.ok(&args);
            assert!(help.starts_with(about), "{name}: {help}");
            let common = [
                "--connection-string-setting",
                "--task-hub-name",
                "--output",
                "--config",
            ];
            for flag in flags.iter().chain(&common) {
                assert!(help.contains(flag), "{name} lacks {flag}: {help}");
            }
        }
    }
    let serve = cli.ok(&["serve", "--help"]);
    assert!(serve.contains("--listen") && serve.contains("--config"));
}

#[test]
fn usage_errors_exit_2() {
    let cli = Cli::new();
    for args in [
        &["start-new"][..],
        &["get-runtime-status"],
        &["get-instances", "--top", "0"],
        &["get-instances", "--runtime-status", "sleeping"],
        &["purge-history", "--created-before", "last tuesday"],
        &["get-instances", "--output", "yaml"],
        &[
            "start-new",
            "--function-name",
            "HelloSequence",
            "--id",
            "a/b",
        ],
        &["no-such-command"],
    ] {
        let r = cli.run(args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.starts_with("error: "), "{args:?}: {}", r.stderr);
    }
}

#[test]
fn version() {
    let out = Cli::new().ok(&["--version"]);
    assert!(out.starts_with("taskhub "), "{out}");
}
