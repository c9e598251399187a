//! The systemd units in deploy/systemd: `systemd-analyze verify` accepts
//! them, `systemd-analyze security` rates them OK, and the environment
//! variables they set are ones `corral` reads.
//!
//! verify checks that the executable exists, so each unit is checked as a
//! copy whose program path names the binary under test; every other line is
//! checked as shipped. Needs systemd-analyze (Debian's `systemd` package): a
//! plain `cargo test` lists these as ignored; scripts/test runs them.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_corral");

/// (unit file, its program path as shipped, the `corral` subcommand it runs)
const UNITS: &[(&str, &str, &str)] = &[
    ("corral.service", "/usr/local/bin/corral", "serve"),
    (
        "corral-runner.service",
        "/var/lib/corral-runner/bin/corral",
        "runner",
    ),
];

fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/systemd")
}

/// The unit with its program path replaced by the binary under test, in `dir`.
fn checkable_copy(dir: &Path, unit: &str, program: &str) -> PathBuf {
    let text = std::fs::read_to_string(units_dir().join(unit)).unwrap();
    assert!(
        text.contains(&format!("ExecStart={program} ")),
        "{unit} runs {program}"
    );
    let copy = dir.join(unit);
    std::fs::write(&copy, text.replace(program, BIN)).unwrap();
    copy
}

fn systemd_analyze(args: &[&str]) -> (bool, String) {
    let output = Command::new("systemd-analyze")
        .args(args)
        .output()
        .expect("systemd-analyze is needed (Debian: apt-get install systemd)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
#[ignore = "needs systemd-analyze: run through scripts/test (cargo test -- --include-ignored)"]
fn units_pass_verify_and_are_rated_ok() {
    let dir = tempfile::tempdir().unwrap();
    for &(unit, program, _) in UNITS {
        let copy = checkable_copy(dir.path(), unit, program);
        let copy = copy.to_str().unwrap();
        let (ok, text) = systemd_analyze(&["verify", "--man=no", copy]);
        assert!(ok && text.trim().is_empty(), "verify {unit}:\n{text}");
        let (_, text) = systemd_analyze(&["security", "--offline=true", copy]);
        let verdict = text
            .lines()
            .find(|l| l.contains("Overall exposure level"))
            .unwrap_or_else(|| panic!("no exposure level for {unit}:\n{text}"));
        assert!(verdict.contains(" OK"), "{unit}: {verdict}");
    }
}

/// Every `Environment=CORRAL_…` a unit sets is named in the help of the
/// subcommand it runs (clap lists each flag's variable).
#[test]
fn unit_environment_names_variables_corral_reads() {
    for &(unit, _, subcommand) in UNITS {
        let text = std::fs::read_to_string(units_dir().join(unit)).unwrap();
        let help = Command::new(BIN)
            .args([subcommand, "--help"])
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&help.stdout);
        let set: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("Environment="))
            .filter_map(|assignment| assignment.split_once('=').map(|(name, _)| name))
            .collect();
        assert!(!set.is_empty(), "{unit} sets its data dir");
        for name in set {
            assert!(
                help.contains(&format!("env: {name}=")),
                "{unit} sets {name}, which `corral {subcommand}` does not read"
            );
        }
    }
}
