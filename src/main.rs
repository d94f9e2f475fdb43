//! The `pgsluice` binary: arguments, logging, runtime and signals.

#![forbid(unsafe_code)]
#![deny(clippy::string_slice, clippy::unwrap_used, clippy::expect_used)]

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use pgsluice::registry::control::ShutdownRequest;
use pgsluice::{Config, Shared};
use tokio::signal::unix::{SignalKind, signal};

/// The version, with the git commit the binary was built from (build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("PGSLUICE_GIT_COMMIT"),
    ")"
);

/// PostgreSQL connection pooler and read/write query router.
#[derive(Parser, Debug)]
#[command(name = "pgsluice", version = VERSION, about)]
struct Args {
    /// Configuration file (TOML). Every key can also be set as PGSLUICE_SECTION__KEY.
    #[arg(short, long, env = "PGSLUICE_CONFIG")]
    config: Option<PathBuf>,
    /// Check the configuration, print the problem if any, and exit.
    #[arg(long)]
    check_config: bool,
    /// Print the effective configuration (defaults, file and environment), secrets
    /// masked, and exit.
    #[arg(long)]
    print_config: bool,
    /// Start even when no database is configured (as general.allow_empty = true).
    #[arg(long)]
    allow_empty: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print a pooler.toml translated from a PgBouncer configuration, with a comment
    /// for each setting that cannot be carried over.
    ImportPgbouncer {
        /// PgBouncer's configuration file.
        ini: PathBuf,
        /// Its auth_file ("user" "password" lines); default: the auth_file the ini names.
        userlist: Option<PathBuf>,
    },
    /// Print a completion script for a shell.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `pgsluice man > pgsluice.1`.
    Man,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(command) = &args.command {
        return run_command(command);
    }
    let config = match Config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pgsluice: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    if args.print_config {
        return match config.to_masked_toml() {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("pgsluice: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Err(e) = config.check_servable(args.config.as_deref(), args.allow_empty) {
        eprintln!("pgsluice: {e}");
        return ExitCode::from(2);
    }
    // Certificates and keys are read now, so a bad file is reported like any bad key.
    if let Err(e) = pgsluice::shared::load_tls(&config) {
        eprintln!("pgsluice: invalid configuration: {e}");
        return ExitCode::from(2);
    }
    if args.check_config {
        for w in &config.warnings {
            println!("warning: {w}");
        }
        println!("configuration ok");
        return ExitCode::SUCCESS;
    }
    init_logging(&config.general.log_format);
    for var in &config.ignored_env {
        tracing::debug!("ignoring {var}: not a PGSLUICE_<SECTION>__<KEY> setting");
    }
    for warning in config.startup_warnings() {
        tracing::warn!("{warning}");
    }
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    match serve(config, args.config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The subcommands: each prints to stdout and exits.
fn run_command(command: &Command) -> ExitCode {
    let mut out = std::io::stdout();
    match command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Args::command(), "pgsluice", &mut out);
        }
        Command::Man => {
            if let Err(e) = clap_mangen::Man::new(Args::command()).render(&mut out) {
                eprintln!("pgsluice: {e}");
                return ExitCode::FAILURE;
            }
        }
        Command::ImportPgbouncer { ini, userlist } => {
            match pgsluice::import::pgbouncer::import_files(ini, userlist.as_deref()) {
                Ok(toml) => print!("{toml}"),
                Err(e) => {
                    eprintln!("pgsluice: {e}");
                    return ExitCode::from(2);
                }
            }
        }
    }
    ExitCode::SUCCESS
}

/// `log_format`: "json", "text", or "auto" (JSON unless stderr is a terminal).
fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PGSLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let json = match format {
        "json" => true,
        "text" => false,
        _ => !std::io::stderr().is_terminal(),
    };
    if json {
        builder
            .json()
            .event_format(pgsluice::logfmt::Json::default())
            .init();
    } else {
        builder.init();
    }
}

/// Binds, starts one single-threaded runtime per worker (or, for one worker, runs it on
/// the main thread), and handles signals on the main thread until the drain after
/// SIGTERM/SIGINT is done.
fn serve(config: Config, path: Option<PathBuf>) -> anyhow::Result<()> {
    let addr = config.general.listen_addr.clone();
    let listener =
        std::net::TcpListener::bind(&addr).with_context(|| format!("listening on {addr}"))?;
    listener.set_nonblocking(true)?;
    let http = match config.admin.http_addr() {
        Some(a) => {
            let l = std::net::TcpListener::bind(a)
                .with_context(|| format!("listening on {a} (admin.http_listen_addr)"))?;
            l.set_nonblocking(true)?;
            tracing::info!("HTTP endpoints /metrics, /healthz, /readyz on {a}");
            Some(l)
        }
        None => None,
    };
    let workers = match config.general.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut unix = pgsluice::listener::bind_unix(&config).with_context(|| {
        format!(
            "listening in {} (general.unix_socket_dir)",
            config.general.unix_socket_dir
        )
    })?;
    let shared = Shared::try_new(config, path)?;
    tracing::info!(workers, "pgsluice {VERSION} listening on {addr}");
    if workers == 1 {
        return serve_on_one_thread(listener, unix, shared, http);
    }
    let mut threads = Vec::with_capacity(workers);
    for id in 0..workers {
        let listener = listener.try_clone()?;
        // The first worker serves the Unix socket too.
        let unix = unix.take();
        let shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("pgsluice-w{id}"))
            .spawn(move || -> anyhow::Result<()> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(pgsluice::worker(id, listener, unix, shared))?;
                Ok(())
            })?;
        threads.push(thread);
    }
    drop(listener);
    let control = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    control.block_on(control_loop(shared, http))?;
    for t in threads {
        match t.join() {
            Ok(r) => r?,
            Err(_) => anyhow::bail!("a worker thread panicked"),
        }
    }
    Ok(())
}

/// One worker: it and the control loop share the main thread's runtime, so the process
/// has one thread, as PgBouncer. The kernel then looks up a socket's file for each system
/// call without taking a reference to it (a file table shared by threads makes every
/// `recv` and `send` take one and drop it: ~0.1 µs per transaction in stop 43's kernel
/// profile), and glibc's allocator skips its locks. The control loop's periodic work (the
/// statistics ticker, the sweeper, HTTP scrapes) runs between the worker's sessions, as
/// PgBouncer's does between its clients.
fn serve_on_one_thread(
    listener: std::net::TcpListener,
    unix: Option<std::os::unix::net::UnixListener>,
    shared: Arc<Shared>,
    http: Option<std::net::TcpListener>,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let worker = tokio::spawn(pgsluice::worker(0, listener, unix, shared.clone()));
        control_loop(shared, http).await?;
        match worker.await {
            Ok(r) => Ok(r?),
            Err(_) => anyhow::bail!("the worker panicked"),
        }
    })
}

/// SIGHUP reloads; SIGTERM, SIGINT or the console's SHUTDOWN drains and returns. Also
/// runs the HTTP endpoints and the statistics ticker, off the workers' threads when there
/// are several.
async fn control_loop(
    shared: Arc<Shared>,
    http: Option<std::net::TcpListener>,
) -> anyhow::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    if let Some(l) = http {
        let l = tokio::net::TcpListener::from_std(l)?;
        tokio::spawn(pgsluice::http::serve(l, shared.clone()));
    }
    tokio::spawn(pgsluice::shared::stats_ticker(shared.clone()));
    tokio::spawn(pgsluice::client::lot::sweep(shared.clone()));
    tokio::spawn(pgsluice::http::log_primaries_at_start(shared.clone()));
    let mut now = false;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                if let Err(e) = shared.reload() {
                    tracing::error!("reload failed, keeping the running configuration: {e}");
                }
            }
            _ = term.recv() => { tracing::info!("SIGTERM: draining"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: draining"); break; }
            how = shared.admin.shutdown_requested() => {
                now = how == ShutdownRequest::Now;
                tracing::info!("SHUTDOWN from the admin console: {}", if now { "closing every connection" } else { "draining" });
                break;
            }
        }
    }
    if now {
        pgsluice::listener::drain_within(&shared, Some(std::time::Duration::ZERO)).await;
    } else {
        pgsluice::listener::drain(&shared).await;
    }
    Ok(())
}
