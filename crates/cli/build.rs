//! Records the git commit the binary is built from, for `corral --version`:
//! the short hash, with `-dirty` when tracked files differ from it. Outside a
//! git checkout (a source tarball) or without `git`, the commit is
//! "unknown"; the build never fails for it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest.join("../..");
    println!("cargo:rustc-env=CORRAL_GIT_COMMIT={}", commit(&workspace));
    // Again when the checkout moves (HEAD, the branch's ref, the index) or
    // its sources change (which may make it dirty).
    for path in ["crates", "proto", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", workspace.join(path).display());
    }
    for path in git_files(&workspace) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

fn git(workspace: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(workspace)
        .args(args)
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn commit(workspace: &Path) -> String {
    let Some(hash) = git(workspace, &["rev-parse", "--short=12", "HEAD"]).filter(|h| !h.is_empty())
    else {
        return "unknown".into();
    };
    match git(
        workspace,
        &["status", "--porcelain", "--untracked-files=no"],
    ) {
        Some(changes) if changes.is_empty() => hash,
        Some(_) => format!("{hash}-dirty"),
        None => hash,
    }
}

/// The files whose change means another commit or another index.
fn git_files(workspace: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(dir) = git(workspace, &["rev-parse", "--absolute-git-dir"]) {
        let dir = PathBuf::from(dir);
        files.push(dir.join("HEAD"));
        files.push(dir.join("index"));
    }
    if let (Some(common), Some(branch)) = (
        git(
            workspace,
            &["rev-parse", "--path-format=absolute", "--git-common-dir"],
        ),
        git(workspace, &["symbolic-ref", "-q", "HEAD"]),
    ) {
        let common = PathBuf::from(common);
        files.push(common.join(&branch));
        files.push(common.join("packed-refs"));
    }
    files.into_iter().filter(|f| f.exists()).collect()
}
