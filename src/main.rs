//! The `pgsluice` binary: arguments, logging, runtime and signals.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use pgsluice::Config;
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
        println!("configuration ok");
        return ExitCode::SUCCESS;
    }
    init_logging(&config.general.log_format);
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

fn serve(config: Config, path: Option<PathBuf>) -> anyhow::Result<()> {
    // One worker runs on tokio's current-thread scheduler: no work stealing, no
    // cross-thread wake-ups, the same shape as PgBouncer's single event loop.
    let mut rt = match config.general.workers {
        1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            if n > 0 {
                b.worker_threads(n);
            }
            b
        }
    };
    let rt = rt.enable_all().build().context("starting the runtime")?;
    rt.block_on(async move {
        let addr = config.general.listen_addr.clone();
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        tracing::info!("pgsluice {} listening on {addr}", env!("CARGO_PKG_VERSION"));
        let shared = pgsluice::Shared::new(config, path);
        let mut hup = signal(SignalKind::hangup())?;
        let reloader = shared.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                if let Err(e) = reloader.reload() {
                    tracing::error!("reload failed, keeping the running configuration: {e}");
                }
            }
        });
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: draining"),
                _ = int.recv() => tracing::info!("SIGINT: draining"),
            }
        };
        pgsluice::run(listener, shared, shutdown).await;
        anyhow::Ok(())
    })?;
    Ok(())
}
