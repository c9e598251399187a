//! `corral --version` names the version and the commit the binary was built
//! from, as git sees this checkout.

use std::process::Command;

mod support;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

#[test]
fn version_names_the_commit_built_from() {
    let output = Command::new(support::BIN)
        .arg("--version")
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let expected_start = format!("corral {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&expected_start), "{text}");
    let commit = text
        .trim_end()
        .strip_prefix(&expected_start)
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no commit in {text:?}"));
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        // Built in this checkout: the binary was rebuilt for its HEAD.
        Some(head) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|changes| !changes.is_empty());
            let expected = if dirty { format!("{head}-dirty") } else { head };
            assert_eq!(commit, expected);
        }
        None => assert_eq!(commit, "unknown"),
    }
}
