//! Secrets kept in files: a `*_file` key names a file (a mounted Kubernetes Secret, a
//! Docker secret) whose contents are the value, so the secret itself never sits in the
//! configuration file or the environment.

use std::path::Path;

use super::{ConfigError, User, invalid};

/// The contents of the secret file `path`, less trailing line breaks (`echo pw > file`
/// adds one). `key` names the setting in errors, e.g. `users[0].password_file`.
pub fn read_secret_file(key: &str, path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(key, format!("cannot read {}: {e}", path.display())))?;
    let value = text.trim_end_matches(['\n', '\r']);
    if value.is_empty() {
        return Err(invalid(key, format!("{} is empty", path.display())));
    }
    Ok(value.to_string())
}

/// Fills `password` and `server_password` of each user from their `*_file` keys. Giving
/// both a key and its file is refused: which one wins would be a guess.
pub(super) fn resolve_user_files(users: &mut [User]) -> Result<(), ConfigError> {
    for (i, u) in users.iter_mut().enumerate() {
        for (name, value, file) in [
            ("password", &mut u.password, &u.password_file),
            (
                "server_password",
                &mut u.server_password,
                &u.server_password_file,
            ),
        ] {
            let Some(path) = file else { continue };
            let key = format!("users[{i}].{name}_file");
            if value.is_some() {
                return Err(invalid(
                    key,
                    format!("set either {name} or {name}_file, not both"),
                ));
            }
            *value = Some(read_secret_file(&key, path)?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_newlines_go_and_errors_name_the_key() {
        let dir = std::env::temp_dir().join(format!("pgsluice-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "s3cret\r\n\n").unwrap();
        assert_eq!(read_secret_file("k", &file).unwrap(), "s3cret");
        std::fs::write(&file, "\n").unwrap();
        let err = read_secret_file("users[0].password_file", &file).unwrap_err();
        assert!(err.to_string().contains("is empty"), "{err}");
        let err = read_secret_file("users[1].password_file", &dir.join("none")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("users[1].password_file: cannot read"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
