//! Build script: records the git commit the binary is built from, for `pgsluice --version`.
//!
//! `PGSLUICE_GIT_COMMIT` in the build environment wins (a container build has no `.git`);
//! otherwise `git rev-parse HEAD` (uncommitted changes are not marked); outside a git
//! checkout, "unknown".

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=PGSLUICE_GIT_COMMIT");
    let commit = std::env::var("PGSLUICE_GIT_COMMIT")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| {
            let head = git(&["rev-parse", "--short=12", "HEAD"])?;
            // Rebuild when HEAD moves: a checkout, or a commit on the current branch.
            if let Some(p) = git(&["rev-parse", "--git-path", "HEAD"]) {
                println!("cargo:rerun-if-changed={p}");
            }
            if let Some(refname) = git(&["symbolic-ref", "-q", "HEAD"])
                && let Some(p) = git(&["rev-parse", "--git-path", &refname])
            {
                println!("cargo:rerun-if-changed={p}");
            }
            Some(head)
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PGSLUICE_GIT_COMMIT={commit}");
}
