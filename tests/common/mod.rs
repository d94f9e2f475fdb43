//! Shared harness for pgsluice's integration tests (`mod common;` in each
//! file of tests/).
//!
//! * [`Cluster`]: a throwaway PostgreSQL primary + streaming replicas, made by
//!   `integration/cluster.sh` on free ports; stopped and removed on drop (and
//!   by a watchdog if the test process dies).
//! * [`Pooler`]: a running `pgsluice` on a free port with a given config;
//!   killed on drop.
//! * [`psql`], [`psql_ok`]: run `/usr/bin/psql` against a URL.
//! * [`pg`]: tokio-postgres clients with every step bounded ([`run_async`],
//!   [`pg_connect`], [`sq`], [`pg::Pg`], ...).
//! * [`wire`]: the raw-protocol client, for bytes no driver sends.
//! * [`console`]: the admin console's result sets, HTTP GET, `/metrics` parsing.
//! * [`pgbench`]: `pgbench -i` and a checked `pgbench` run.
//!
//! Tests run in parallel, in one process (cargo test) or many (nextest):
//! nothing here uses fixed ports or shared directories.
#![allow(dead_code)]

pub mod console;
pub mod pg;
pub mod pgbench;
pub mod wire;

// The tokio-postgres helpers most tests use, at the top as before (unused by some files).
#[allow(unused_imports)]
pub use pg::{pg_connect, pg_connect_config, run_async, sq, sq1};

use std::fs::{self, File};
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where cluster.sh and [`free_port`] reserve recently picked ports.
const PORT_RESERVATIONS: &str = "/tmp/pgsluice-ports";
const PSQL: &str = "/usr/bin/psql";

/// `<repo>/integration/cluster.sh`
pub fn cluster_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("integration/cluster.sh")
}

/// A fresh, not yet existing path under the temp dir, unique across threads
/// and processes.
pub fn unique_path(what: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!(
        "pgsluice-{what}-{}-{n}-{nanos:x}",
        std::process::id()
    ))
}

/// Where [`free_port`] starts looking when there is room below the ephemeral range.
const LOW_PORTS: u16 = 10_000;

/// A free TCP port on 127.0.0.1, reserved for two minutes (shared with cluster.sh) so
/// concurrent tests don't get it too.
///
/// Picked at random below the kernel's ephemeral range when there is room there, else
/// asked of the kernel. A port of the ephemeral range can become the source port of any
/// outgoing connection on the machine (psql, a driver, a server connection) between this
/// call and pgsluice binding it, and pgsluice then exits with "Address already in use";
/// no connection takes a port below that range unless it asks for it.
pub fn free_port() -> u16 {
    let resdir = Path::new(PORT_RESERVATIONS);
    if fs::create_dir(resdir).is_ok() {
        let _ = fs::set_permissions(resdir, fs::Permissions::from_mode(0o1777));
    }
    let below = ephemeral_start().filter(|&start| start >= LOW_PORTS + 1000);
    let mut held = Vec::new(); // keep them bound: never the same port twice
    for _ in 0..500 {
        let listener = match below {
            Some(end) => {
                let port = rand::Rng::gen_range(&mut rand::thread_rng(), LOW_PORTS..end);
                match TcpListener::bind(("127.0.0.1", port)) {
                    Ok(l) => l,
                    Err(_) => continue, // in use
                }
            }
            None => TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"),
        };
        let port = listener.local_addr().expect("local_addr").port();
        held.push(listener);
        let mark = resdir.join(port.to_string());
        match fs::create_dir(&mark) {
            Ok(()) => return port,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let stale = fs::metadata(&mark)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > Duration::from_secs(120));
                if stale && fs::remove_dir(&mark).is_ok() && fs::create_dir(&mark).is_ok() {
                    return port;
                }
            }
            Err(_) => return port, // can't reserve: trust the kernel alone
        }
    }
    panic!("no free port found");
}

/// The first port of the kernel's ephemeral range (`net.ipv4.ip_local_port_range`).
fn ephemeral_start() -> Option<u16> {
    fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Polls `cond` every 50 ms until it is true (→ true) or `timeout` passes (→ false).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ------------------------------------------------------------------ psql

/// Runs `psql -X -A -t -v ON_ERROR_STOP=1 -c SQL URL` (60 s timeout, so a
/// hung pooler fails the test instead of hanging it: exit 124).
pub fn psql(url: &str, sql: &str) -> Output {
    Command::new("timeout")
        .args([
            "-k",
            "5",
            "60",
            PSQL,
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
            url,
        ])
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGPASSWORD")
        .env_remove("PGSERVICE")
        .env_remove("PGOPTIONS")
        .stdin(Stdio::null())
        .output()
        .expect("run psql")
}

/// [`psql`] that must succeed; returns its stdout, trimmed.
pub fn psql_ok(url: &str, sql: &str) -> String {
    let out = psql(url, sql);
    assert!(
        out.status.success(),
        "psql {url} -c {sql:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `postgres://user:password@127.0.0.1:port/db` (no `:password` when empty).
pub fn url(port: u16, user: &str, password: &str, db: &str) -> String {
    if password.is_empty() {
        format!("postgres://{user}@127.0.0.1:{port}/{db}")
    } else {
        format!("postgres://{user}:{password}@127.0.0.1:{port}/{db}")
    }
}

// ------------------------------------------------------------------ Cluster

/// A throwaway PostgreSQL cluster: a primary and streaming replicas on
/// 127.0.0.1. Roles: postgres (superuser, no password), app/app_pw (SCRAM,
/// owns database app), md5user/md5_pw (md5), plainuser/plain_pw (cleartext
/// `password` auth). Stopped and removed on drop.
pub struct Cluster {
    pub dir: PathBuf,
    pub primary_port: u16,
    pub replica_ports: Vec<u16>,
}

impl Cluster {
    /// Primary + `replicas` streaming replicas, all streaming when this returns.
    pub fn start(replicas: usize) -> Cluster {
        Cluster::start_inner(replicas, None)
    }

    /// Like [`Cluster::start`], with `recovery_min_apply_delay` of
    /// `delay_secs` on the LAST replica.
    pub fn start_with_delay(replicas: usize, delay_secs: u32) -> Cluster {
        assert!(replicas > 0, "a delay needs a replica");
        Cluster::start_inner(replicas, Some(delay_secs))
    }

    fn start_inner(replicas: usize, delay: Option<u32>) -> Cluster {
        let dir = unique_path("cluster");
        let mut cmd = Command::new("bash");
        cmd.arg(cluster_script())
            .arg("start")
            .arg(&dir)
            .args(["--replicas", &replicas.to_string()])
            .args(["--watch-pid", &std::process::id().to_string()]);
        if let Some(d) = delay {
            cmd.args(["--delay", &d.to_string()]);
        }
        let out = cmd.stdin(Stdio::null()).output().expect("run cluster.sh");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "cluster.sh start failed ({}):\n{stderr}",
            out.status
        );
        eprint!("{stderr}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mut primary_port = None;
        let mut replica_ports = Vec::new();
        for line in stdout.lines() {
            if let Some(v) = line.strip_prefix("PRIMARY_PORT=") {
                primary_port = Some(v.trim().parse().expect("PRIMARY_PORT"));
            } else if let Some(v) = line.strip_prefix("REPLICA_PORTS=") {
                replica_ports = v
                    .trim_matches('"')
                    .split_whitespace()
                    .map(|p| p.parse().expect("REPLICA_PORTS"))
                    .collect();
            }
        }
        let cluster = Cluster {
            dir,
            primary_port: primary_port.unwrap_or_else(|| panic!("no PRIMARY_PORT in {stdout:?}")),
            replica_ports,
        };
        assert_eq!(
            cluster.replica_ports.len(),
            replicas,
            "cluster.sh output: {stdout:?}"
        );
        cluster
    }

    fn run(&self, args: &[&str]) {
        let out = Command::new("bash")
            .arg(cluster_script())
            .arg(args[0])
            .arg(&self.dir)
            .args(&args[1..])
            .stdin(Stdio::null())
            .output()
            .expect("run cluster.sh");
        assert!(
            out.status.success(),
            "cluster.sh {args:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops node `name` (primary, replica1, ...) with `pg_ctl stop -m immediate`.
    pub fn stop_node(&self, name: &str) {
        self.run(&["stop-node", name]);
    }

    /// Stops node `name` with `pg_ctl stop -m fast` (clean shutdown).
    pub fn stop_node_fast(&self, name: &str) {
        self.run(&["stop-node", name, "fast"]);
    }

    /// Starts a stopped node again (same port); returns once it accepts connections.
    pub fn start_node(&self, name: &str) {
        self.run(&["start-node", name]);
    }

    /// Promotes replica `name` to primary; returns once it accepts writes.
    pub fn promote(&self, name: &str) {
        self.run(&["promote", name]);
    }

    /// Port of node `name` (primary, replica1, ...).
    pub fn port(&self, name: &str) -> u16 {
        if name == "primary" {
            return self.primary_port;
        }
        let i: usize = name
            .strip_prefix("replica")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("bad node name {name}"));
        self.replica_ports[i - 1]
    }

    /// URL of node `name` directly (no pooler).
    pub fn node_url(&self, name: &str, user: &str, password: &str, db: &str) -> String {
        url(self.port(name), user, password, db)
    }

    /// Superuser URL of the primary, database `db`.
    pub fn primary_url(&self, db: &str) -> String {
        url(self.primary_port, "postgres", "", db)
    }

    /// Waits (≤30 s) until every replica has replayed the primary's current
    /// WAL position. Don't use with a delayed replica unless you mean to wait.
    pub fn wait_replicas_caught_up(&self) {
        let lsn = psql_ok(&self.primary_url("postgres"), "SELECT pg_current_wal_lsn()");
        for (i, port) in self.replica_ports.iter().enumerate() {
            let replica = url(*port, "postgres", "", "postgres");
            let sql = format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn");
            assert!(
                wait_until(Duration::from_secs(30), || psql_ok(&replica, &sql) == "t"),
                "replica{} did not reach {lsn}",
                i + 1
            );
        }
    }

    /// A pgsluice config: listen `{LISTEN}`, databases `app` and `postgres`
    /// on this cluster (primary + replicas), users app, md5user, plainuser
    /// (with their passwords) and postgres (no password).
    pub fn pooler_config(&self, pool_mode: &str, auth_type: &str, pool_size: u32) -> String {
        let replicas = self
            .replica_ports
            .iter()
            .map(|p| format!("\"127.0.0.1:{p}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let primary = self.primary_port;
        format!(
            r#"[general]
listen_addr = "{{LISTEN}}"
pool_mode = "{pool_mode}"
default_pool_size = {pool_size}

[auth]
type = "{auth_type}"

[[users]]
name = "app"
password = "app_pw"

[[users]]
name = "md5user"
password = "md5_pw"

[[users]]
name = "plainuser"
password = "plain_pw"

[[users]]
name = "postgres"

[databases.app]
dbname = "app"
primary = "127.0.0.1:{primary}"
replicas = [{replicas}]

[databases.postgres]
dbname = "postgres"
primary = "127.0.0.1:{primary}"
replicas = [{replicas}]
"#
        )
    }

    /// Tails of the nodes' server logs.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        let mut names: Vec<PathBuf> = fs::read_dir(&self.dir)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        names.sort();
        for p in names
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
        {
            let text = String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
            out.push_str(&format!("---- {}\n{}\n", p.display(), tail(&text, 30)));
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("cluster {} logs:\n{}", self.dir.display(), self.logs());
        }
        let _ = Command::new("bash")
            .arg(cluster_script())
            .arg("stop")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status();
    }
}

// ------------------------------------------------------------------ Pooler

/// A running pgsluice (the binary cargo built for these tests), listening on
/// 127.0.0.1:`port`. Killed on drop; its directory (config, log) is removed
/// unless the test is panicking, when the log's tail is printed instead.
pub struct Pooler {
    pub port: u16,
    pub config_path: PathBuf,
    pub dir: PathBuf,
    pub log_path: PathBuf,
    child: Child,
}

impl Pooler {
    /// Writes `config_toml` (with `{LISTEN}` replaced by 127.0.0.1:<free
    /// port>) to a temp file, starts `pgsluice --config FILE` with stdout and
    /// stderr to a log file, and waits (≤10 s) until the port accepts TCP.
    pub fn start(config_toml: &str) -> Pooler {
        Pooler::start_with_args(config_toml, &[])
    }

    /// [`Pooler::start`] with extra command-line arguments.
    pub fn start_with_args(config_toml: &str, extra_args: &[&str]) -> Pooler {
        Pooler::start_with_env(config_toml, extra_args, &[])
    }

    /// [`Pooler::start_with_args`] with extra environment variables for pgsluice
    /// (e.g. `PGSLUICE_GENERAL__DEFAULT_POOL_SIZE`).
    pub fn start_with_env(config_toml: &str, extra_args: &[&str], envs: &[(&str, &str)]) -> Pooler {
        // The port free_port reserved can still be taken by something outside the
        // reservations before pgsluice binds it (seen once in a full run: "Address
        // already in use" for a port below the ephemeral range); such a start is retried
        // on another port, twice at most. Any other failure to start fails the test.
        let mut attempt = 1;
        loop {
            let mut pooler = Pooler::spawn(config_toml, extra_args, envs);
            match pooler.wait_listening() {
                Ok(()) => return pooler,
                Err(_) if attempt < 3 && pooler.log().contains("Address already in use") => {
                    eprintln!(
                        "pgsluice (port {}) found an address in use; starting it on another port",
                        pooler.port
                    );
                    attempt += 1;
                }
                Err(why) => panic!("{why}"),
            }
        }
    }

    /// Writes the config (on a fresh free port) and starts pgsluice, without waiting.
    fn spawn(config_toml: &str, extra_args: &[&str], envs: &[(&str, &str)]) -> Pooler {
        let dir = unique_path("pooler");
        fs::create_dir_all(&dir).expect("create pooler dir");
        let port = free_port();
        let config_path = dir.join("pgsluice.toml");
        let log_path = dir.join("pgsluice.log");
        fs::write(
            &config_path,
            config_toml.replace("{LISTEN}", &format!("127.0.0.1:{port}")),
        )
        .expect("write config");
        let log = File::create(&log_path).expect("create log");
        let child = Command::new(env!("CARGO_BIN_EXE_pgsluice"))
            .arg("--config")
            .arg(&config_path)
            .args(extra_args)
            .env("NO_COLOR", "1") // plain log lines
            // Text logs (tests match their lines); "auto" would pick JSON for a file.
            .env("PGSLUICE_GENERAL__LOG_FORMAT", "text")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn pgsluice");
        let pooler = Pooler {
            port,
            config_path,
            dir,
            log_path,
            child,
        };
        pooler.start_watchdog();
        pooler
    }

    /// Waits (≤10 s) until pgsluice accepts TCP on its port; the reason when it exits
    /// first or does not.
    fn wait_listening(&mut self) -> Result<(), String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "pgsluice exited ({status}) before listening; log:\n{}",
                    tail(&self.log(), 40)
                ));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "pgsluice not listening on {addr} after 10 s; log:\n{}",
                    tail(&self.log(), 40)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A detached process that SIGKILLs pgsluice if this test process dies
    /// without dropping us (killed, aborted); it exits once pgsluice does.
    fn start_watchdog(&self) {
        let (Some(me), Some(child)) = (
            proc_starttime(std::process::id()),
            proc_starttime(self.child.id()),
        ) else {
            return;
        };
        const WATCH: &str = r#"
st() { local s; s=$(cat "/proc/$1/stat" 2>/dev/null) || return 0; s=${s##*) }; local -a f; read -r -a f <<<"$s"; [[ ${f[0]} == Z ]] || echo "${f[19]}"; }
while sleep 1; do
  [[ $(st "$3") == "$4" ]] || exit 0
  if [[ $(st "$1") != "$2" ]]; then kill -KILL "$3"; exit 0; fi
done"#;
        let _ = Command::new("bash")
            .args(["-c", r#"s=$1; shift; (setsid nohup bash -c "$s" watchdog "$@" </dev/null >/dev/null 2>&1 &)"#, "_", WATCH])
            .args([std::process::id().to_string(), me, self.child.id().to_string(), child])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// `postgres://user:password@127.0.0.1:port/db`
    pub fn url(&self, user: &str, password: &str, db: &str) -> String {
        url(self.port, user, password, db)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -s SIG <pid>`: "HUP", "TERM", "INT", ...
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args(["-s", sig, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {sig} failed");
    }

    /// The whole log (stdout + stderr) so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// Waits until the log contains `needle`; false after `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.log().contains(needle))
    }

    /// Replaces the config file (atomically; `{LISTEN}` → the same address).
    /// Send "HUP" afterwards to reload.
    pub fn rewrite_config(&self, config_toml: &str) {
        let tmp = self.dir.join("pgsluice.toml.tmp");
        fs::write(&tmp, config_toml.replace("{LISTEN}", &self.addr())).expect("write config");
        fs::rename(&tmp, &self.config_path).expect("replace config");
    }

    /// Waits for pgsluice to exit; None if it still runs after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Pooler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "pgsluice log ({}):\n{}",
                self.log_path.display(),
                tail(&self.log(), 60)
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Field 22 of /proc/PID/stat (start time), None for a missing or zombie process.
fn proc_starttime(pid: u32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19).map(|s| s.to_string())
}

// ------------------------------------------------------------------ setups

/// `cfg` with `extra` lines added to its `[general]` section.
pub fn with_general(cfg: &str, extra: &str) -> String {
    cfg.replacen("[general]\n", &format!("[general]\n{extra}\n"), 1)
}

/// A fresh cluster (no replicas) and a pgsluice in front of it
/// ([`Cluster::pooler_config`]).
pub fn setup(mode: &str, auth: &str, pool_size: u32) -> (Cluster, Pooler) {
    setup_with(mode, auth, pool_size, "")
}

/// [`setup`] with `general` lines added to the config's `[general]` section.
pub fn setup_with(mode: &str, auth: &str, pool_size: u32, general: &str) -> (Cluster, Pooler) {
    let cluster = Cluster::start(0);
    let cfg = with_general(&cluster.pooler_config(mode, auth, pool_size), general);
    let pooler = Pooler::start(&cfg);
    (cluster, pooler)
}

/// URL of database app on `p` as app/app_pw.
pub fn app_url(p: &Pooler) -> String {
    p.url("app", "app_pw", "app")
}

// ------------------------------------------------------------------ other tools

/// psql like [`psql`] but with `-c` replaced by arbitrary arguments and
/// `stdin` fed to it (60 s timeout).
pub fn psql_args_stdin(url: &str, args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new("timeout")
        .args([
            "-k",
            "5",
            "60",
            PSQL,
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
        ])
        .args(args)
        .arg(url)
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGPASSWORD")
        .env_remove("PGSERVICE")
        .env_remove("PGOPTIONS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run psql");
    let mut input = child.stdin.take().expect("psql stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait psql");
    let _ = writer.join();
    out
}

/// Resident set size of process `pid` in KiB (VmRSS in /proc/PID/status).
pub fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

// ------------------------------------------------------------------ server-side checks

/// Client backends of `user` on the server at `superuser_url` (pg_stat_activity):
/// (all of them, those `idle in transaction`).
pub fn server_conns(superuser_url: &str, user: &str) -> (u32, u32) {
    let out = psql_ok(
        superuser_url,
        &format!(
            "SELECT count(*), count(*) FILTER (WHERE state LIKE 'idle in transaction%') \
             FROM pg_stat_activity WHERE backend_type = 'client backend' AND usename = '{user}'"
        ),
    );
    let (a, b) = out
        .split_once('|')
        .unwrap_or_else(|| panic!("pg_stat_activity: {out:?}"));
    (a.parse().expect("count"), b.parse().expect("count"))
}

/// pg_stat_activity rows of `user` (pid|state|query), for failure messages.
pub fn server_activity(superuser_url: &str, user: &str) -> String {
    psql_ok(
        superuser_url,
        &format!(
            "SELECT pid, state, query FROM pg_stat_activity \
             WHERE backend_type = 'client backend' AND usename = '{user}' ORDER BY pid"
        ),
    )
}
pub mod tls;
