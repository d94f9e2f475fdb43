//! The command line: --version with the commit, completions, the man page, the refusal
//! to start with nothing to serve, --print-config, and configuration from a
//! Kubernetes-like environment only.

use super::common::{Cluster, Pooler};
use super::{pgsluice, stderr, stdout, temp_file};

#[test]
fn version_names_the_commit() {
    let out = pgsluice(&["--version"], &[]);
    assert!(out.status.success());
    let v = stdout(&out);
    assert!(v.starts_with("pgsluice 0."), "{v}");
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match commit {
        // The binary may predate the newest commit (cargo rebuilds when HEAD moves);
        // it must name a commit of this repository.
        Some(_) => {
            let named = v
                .split("(commit ")
                .nth(1)
                .and_then(|r| r.split(')').next())
                .unwrap_or_default()
                .to_string();
            let known = std::process::Command::new("git")
                .args(["cat-file", "-e", &format!("{named}^{{commit}}")])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .is_ok_and(|s| s.success());
            assert!(known, "--version names {named:?}, not a commit here: {v}");
        }
        None => assert!(v.contains("(commit unknown)"), "{v}"),
    }
}

#[test]
fn completions_and_man_page_come_from_the_cli() {
    for shell in ["bash", "zsh", "fish"] {
        let out = pgsluice(&["completions", shell], &[]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let text = stdout(&out);
        for word in ["check-config", "print-config", "import-pgbouncer"] {
            assert!(text.contains(word), "{shell} completions lack {word}");
        }
    }
    let out = pgsluice(&["man"], &[]);
    assert!(out.status.success());
    let man = stdout(&out);
    assert!(man.contains(".TH pgsluice"), "{man}");
    assert!(
        man.contains("print\\-config") || man.contains("print-config"),
        "{man}"
    );
}

#[test]
fn nothing_to_serve_is_refused_unless_allowed() {
    let out = pgsluice(&[], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let msg = stderr(&out);
    for what in [
        "no configuration file",
        "no [[users]]",
        "--allow-empty",
        "PGSLUICE_DATABASES__NAME__PRIMARY",
    ] {
        assert!(msg.contains(what), "no {what:?} in: {msg}");
    }
    let file = temp_file("pooler.toml", "[general]\npool_mode = \"session\"\n");
    let out = pgsluice(
        &["--check-config", "--config", &file.display().to_string()],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("has no [databases.NAME] section"),
        "{}",
        stderr(&out)
    );
    // Allowed: it starts, says at once what is missing, and answers logins with 3D000.
    let p = Pooler::start_with_args(
        "[general]\nlisten_addr = \"{LISTEN}\"\n",
        &["--allow-empty"],
    );
    assert!(p.log().contains("no database is configured"), "{}", p.log());
    assert!(p.log().contains("no [[users]] configured"), "{}", p.log());
}

#[test]
fn print_config_masks_secrets() {
    let file = temp_file(
        "pooler.toml",
        "[[users]]\nname = \"app\"\npassword = \"file_secret\"\n[databases.app]\nprimary = \"127.0.0.1:5432\"\n",
    );
    let pw = temp_file("pw", "from_a_file\n");
    let out = pgsluice(
        &["--print-config", "--config", &file.display().to_string()],
        &[
            (
                "PGSLUICE_USERS__REPORTS__PASSWORD_FILE",
                &pw.display().to_string(),
            ),
            ("PGSLUICE_GENERAL__POOL_MODE", "session"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        !text.contains("file_secret") && !text.contains("from_a_file"),
        "{text}"
    );
    assert!(text.contains("pool_mode = \"session\""), "{text}");
    assert!(
        text.contains(&format!("password_file = \"{}\"", pw.display())),
        "{text}"
    );
    assert!(text.contains("log_format = \"auto\""), "{text}");
    // What it prints reads back.
    let back = temp_file("printed.toml", &text);
    super::assert_config_ok(&back, &[]);
}

/// The variables Kubernetes injects into every pod of a namespace with a Service named
/// `pgsluice` (ports named postgres and metrics), plus the sidecar manifest's own.
fn kubernetes_env(primary: u16, listen: u16, pw_file: &str) -> Vec<(String, String)> {
    let svc = "10.96.0.17";
    let mut env: Vec<(String, String)> = [
        ("PGSLUICE_SERVICE_HOST", svc.to_string()),
        ("PGSLUICE_SERVICE_PORT", "6432".into()),
        ("PGSLUICE_SERVICE_PORT_POSTGRES", "6432".into()),
        ("PGSLUICE_SERVICE_PORT_METRICS", "9930".into()),
        ("PGSLUICE_PORT", format!("tcp://{svc}:6432")),
        ("PGSLUICE_PORT_6432_TCP", format!("tcp://{svc}:6432")),
        ("PGSLUICE_PORT_6432_TCP_PROTO", "tcp".into()),
        ("PGSLUICE_PORT_6432_TCP_PORT", "6432".into()),
        ("PGSLUICE_PORT_6432_TCP_ADDR", svc.into()),
        ("PGSLUICE_PORT_9930_TCP", format!("tcp://{svc}:9930")),
        ("PGSLUICE_PORT_9930_TCP_PROTO", "tcp".into()),
        ("PGSLUICE_PORT_9930_TCP_PORT", "9930".into()),
        ("PGSLUICE_PORT_9930_TCP_ADDR", svc.into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    env.extend(
        [
            (
                "PGSLUICE_GENERAL__LISTEN_ADDR",
                format!("127.0.0.1:{listen}"),
            ),
            ("PGSLUICE_GENERAL__POOL_MODE", "transaction".into()),
            (
                "PGSLUICE_DATABASES__APP__PRIMARY",
                format!("127.0.0.1:{primary}"),
            ),
            ("PGSLUICE_USERS__APP__PASSWORD_FILE", pw_file.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v)),
    );
    env
}

#[test]
fn starts_from_the_environment_beside_a_service_named_pgsluice() {
    let c = Cluster::start(0);
    let pw = temp_file("password", "app_pw\n");
    let port = super::common::free_port();
    let env = kubernetes_env(c.primary_port, port, &pw.display().to_string());
    let envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = pgsluice(&["--check-config"], &envs);
    assert!(out.status.success(), "{}", stderr(&out));
    // Served with no file at all, and PGSLUICE_CONFIG unset.
    let log = temp_file("pgsluice.log", "");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pgsluice"))
        .envs(envs.iter().copied())
        .env("PGSLUICE_LOG", "debug")
        .env_remove("PGSLUICE_CONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn pgsluice");
    let listening = super::common::wait_until(std::time::Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let url = format!("postgres://app:app_pw@127.0.0.1:{port}/app");
    let result = listening.then(|| super::common::psql(&url, "SELECT current_user"));
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    let out = result.unwrap_or_else(|| panic!("pgsluice did not listen:\n{log}"));
    assert_eq!(super::stdout(&out).trim(), "app", "{}\n{log}", stderr(&out));
    // Not a terminal: JSON lines, with the debug line for each injected variable.
    let ignored = log
        .lines()
        .find(|l| l.contains("ignoring PGSLUICE_PORT_6432_TCP_ADDR"))
        .unwrap_or_else(|| panic!("no debug line for an injected variable:\n{log}"));
    assert!(
        ignored.starts_with('{') && ignored.contains("\"level\":\"DEBUG\""),
        "{ignored}"
    );
}
