//! The warning for a config file that other users can read. (Secrets in files of their
//! own are read by `secret.rs`; TLS keys by the TLS code from `*_file` keys.)

use std::path::Path;

/// A warning when the config file can be read by its group or by others (it may hold
/// passwords).
pub(super) fn permission_warning(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "configuration file {} is readable by group or others (mode {:o}); it may hold \
             passwords: chmod 600 it, or keep secrets in password_file",
            path.display(),
            mode & 0o777
        )
    })
}
