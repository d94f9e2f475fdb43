//! The `pgsluice` binary: arguments, logging, runtime and signals.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use pgsluice::admin::control::ShutdownRequest;
use pgsluice::{Config, Shared};
use tokio::signal::unix::{SignalKind, signal};

/// PostgreSQL connection pooler and read/write query router.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Configuration file (TOML). Every key can also be set as PGSLUICE_SECTION__KEY.
    #[arg(short, long, env = "PGSLUICE_CONFIG")]
    config: Option<PathBuf>,
    /// Check the configuration, print the problem if any, and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match Config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pgsluice: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check_config {
        for w in &config.warnings {
            println!("warning: {w}");
        }
        println!("configuration ok");
        return ExitCode::SUCCESS;
    }
    init_logging(&config.general.log_format);
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

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PGSLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Binds, starts one single-threaded runtime per worker, and handles signals on the main
/// thread until the drain after SIGTERM/SIGINT is done.
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
    let shared = Shared::new(config, path);
    tracing::info!(
        workers,
        "pgsluice {} listening on {addr}",
        env!("CARGO_PKG_VERSION")
    );
    let mut threads = Vec::with_capacity(workers);
    for id in 0..workers {
        let listener = listener.try_clone()?;
        let shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("pgsluice-w{id}"))
            .spawn(move || -> anyhow::Result<()> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(pgsluice::worker(id, listener, shared))?;
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

/// SIGHUP reloads; SIGTERM, SIGINT or the console's SHUTDOWN drains and returns. Also
/// runs the HTTP endpoints and the statistics ticker, off the workers' threads.
async fn control_loop(
    shared: Arc<Shared>,
    http: Option<std::net::TcpListener>,
) -> anyhow::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    if let Some(l) = http {
        let l = tokio::net::TcpListener::from_std(l)?;
        tokio::spawn(pgsluice::metrics::http::serve(l, shared.clone()));
    }
    tokio::spawn(pgsluice::metrics::ticker(shared.clone()));
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
