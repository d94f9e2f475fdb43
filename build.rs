//! Build script: records the git commit the binary is built from, for `pgsluice --version`.
//!
//! `PGSLUICE_GIT_COMMIT` in the build environment wins (a container build has no `.git`);
//! otherwise `git rev-parse HEAD` (uncommitted changes are not marked); outside a git
//! checkout, "unknown".
//!
//! Release builds of the `pgsluice` binary also hand the linker `link/hot-symbols.txt`
//! (`--symbol-ordering-file`): the functions a transaction runs, then those a new
//! connection adds, placed next to each other at the start of the code instead of
//! wherever link order puts them (made by `integration/hot_symbols.py`; why in its
//! header). `PGSLUICE_NO_SYMBOL_ORDER=1` turns
//! that off, for comparisons.

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
    symbol_order();
}

/// The linker's layout of the functions a transaction and a connection run (see the header).
fn symbol_order() {
    println!("cargo:rerun-if-env-changed=PGSLUICE_NO_SYMBOL_ORDER");
    println!("cargo:rerun-if-changed=link/hot-symbols.txt");
    let off = std::env::var_os("PGSLUICE_NO_SYMBOL_ORDER").is_some_and(|v| !v.is_empty());
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    // Rust links x86_64 Linux (glibc) binaries with its own LLD by default, which knows
    // `--symbol-ordering-file`; GNU ld, the default elsewhere, does not. A build that
    // picks another linker there sets PGSLUICE_NO_SYMBOL_ORDER.
    let target = |key: &str, want: &str| std::env::var(key).is_ok_and(|v| v == want);
    let lld = target("CARGO_CFG_TARGET_OS", "linux")
        && target("CARGO_CFG_TARGET_ARCH", "x86_64")
        && target("CARGO_CFG_TARGET_ENV", "gnu");
    let file = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default())
        .join("link/hot-symbols.txt");
    if off || !release || !lld || !file.exists() {
        return;
    }
    println!(
        "cargo:rustc-link-arg-bin=pgsluice=-Wl,--symbol-ordering-file={}",
        file.display()
    );
    println!("cargo:rustc-link-arg-bin=pgsluice=-Wl,--no-warn-symbol-ordering");
}
