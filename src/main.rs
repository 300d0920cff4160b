//! The `tern` binary: nats-server's command line, logging and signals around `tern::Server`.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

use tern::cli::{self, Command};
use tern::logging::{self, Logger, FATAL};
use tern::{Options, Server};

fn main() -> ExitCode {
    let mut args = std::env::args();
    let program = args
        .next()
        .as_deref()
        .map(|p| {
            Path::new(p)
                .file_name()
                .map_or(p.to_string(), |n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "tern".to_string());
    let (opts, warnings) = match cli::parse(args) {
        Ok(Command::Run { opts, warnings }) => (*opts, warnings),
        Ok(Command::Version) => {
            println!("{}", cli::version_line(&program));
            return ExitCode::SUCCESS;
        }
        Ok(Command::Help) => {
            print!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("{}", err.message);
            if err.show_usage {
                print!("{}", cli::USAGE);
            }
            return ExitCode::FAILURE;
        }
    };
    if let Err(err) = install_logger(&opts) {
        eprintln!("tern: cannot open log file: {err}");
        return ExitCode::FAILURE;
    }
    for warning in warnings {
        warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            error!(target: FATAL, "Error starting runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(opts))
}

fn install_logger(opts: &Options) -> io::Result<()> {
    let out: Box<dyn Write + Send> = match &opts.log_file {
        Some(path) => Box::new(OpenOptions::new().create(true).append(true).open(path)?),
        None => Box::new(io::stderr()),
    };
    logging::install(Logger::new(out, opts.debug, opts.trace, opts.logtime))
}

async fn run(opts: Options) -> ExitCode {
    info!("Starting nats-server");
    info!("  Version:  {}", tern::protocol::NATS_SERVER_VERSION);
    info!("  Git:      [tern-{}]", env!("CARGO_PKG_VERSION"));
    let (host, port) = (opts.host.clone(), opts.port);
    if let Some(path) = &opts.pid_file {
        if let Err(err) = std::fs::write(path, std::process::id().to_string()) {
            error!(target: FATAL, "Could not write pidfile: {err}");
            return ExitCode::FAILURE;
        }
    }
    let server = match Server::bind(opts).await {
        Ok(server) => server,
        Err(err) => {
            error!(target: FATAL, "Error listening on port: {host}:{port}, \"{err}\"");
            return ExitCode::FAILURE;
        }
    };
    let shared = server.shared();
    info!("  Name:     {}", shared.server_name);
    info!("  ID:       {}", shared.server_id);
    let addr = server.local_addr();
    info!(
        "Listening for client connections on {}:{}",
        host_for_log(&host, addr),
        addr.port()
    );
    info!("Server is ready");
    let shutdown = async {
        match wait_for_signal().await {
            Ok(name) => info!("Trapped {name:?} signal"),
            Err(err) => error!("Cannot listen for signals: {err}"),
        }
        info!("Initiating Shutdown...");
    };
    server.run(shutdown).await;
    ExitCode::SUCCESS
}

/// The host as nats-server prints it: the configured one (IPv6 in brackets).
fn host_for_log(host: &str, addr: std::net::SocketAddr) -> String {
    match addr {
        std::net::SocketAddr::V6(_) if !host.starts_with('[') => format!("[{host}]"),
        _ => host.to_string(),
    }
}

/// Waits for SIGINT or SIGTERM and returns Go's name for it.
async fn wait_for_signal() -> io::Result<&'static str> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = interrupt.recv() => Ok("interrupt"),
        _ = terminate.recv() => Ok("terminated"),
    }
}
