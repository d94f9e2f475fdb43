//! Secrets kept in files of their own (Kubernetes Secrets mounted as files): the
//! `password_file` and `server_password_file` of each user, and the warning for a config
//! file that other users can read. (TLS keys are read by `crate::tls` from `*_file` keys.)

use std::path::Path;

use super::{Config, ConfigError, invalid};

/// Replaces each user's `password_file` / `server_password_file` by the file's contents
/// (one trailing newline dropped, as `echo` and `kubectl create secret` leave one).
pub(super) fn read_secret_files(config: &mut Config) -> Result<(), ConfigError> {
    for (i, u) in config.users.iter_mut().enumerate() {
        for (field, file, value) in [
            ("password", &u.password_file, &mut u.password),
            (
                "server_password",
                &u.server_password_file,
                &mut u.server_password,
            ),
        ] {
            let Some(path) = file else { continue };
            let key = format!("users[{i}].{field}_file");
            if value.is_some() {
                return Err(invalid(key, format!("set either {field} or {field}_file")));
            }
            let text = std::fs::read_to_string(path)
                .map_err(|e| invalid(&key, format!("cannot read {path}: {e}")))?;
            let text = text.strip_suffix('\n').unwrap_or(&text);
            let text = text.strip_suffix('\r').unwrap_or(text);
            *value = Some(text.to_string());
        }
    }
    Ok(())
}

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
