//! The `tern` binary: nats-server's command line, logging and signals around `tern::Server`.

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

use tern::config::cli::{self, Command, Run};
use tern::logging::{self, LogControl, Logger, FATAL};
use tern::security::tls::ServerTls;
use tern::server::{self, Shared};
use tern::{Options, Server};

fn main() -> ExitCode {
    // `tern pub ...`, `tern sub ...`: a client tool. Only an exact tool name as the first
    // argument selects one; the server's flags all start with `-`, and anything else is the
    // server's command line as before.
    let all: Vec<String> = std::env::args().collect();
    if let Some(tool) = all.get(1).filter(|a| tern::tools::is_tool(a)) {
        return tern::tools::run(tool, &all[2..]);
    }
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
    let run = match cli::parse(args) {
        Ok(Command::Run(run)) => run,
        Ok(Command::TestConfig(run)) => return test_config(&program, &run),
        Ok(Command::Signal { signal, target }) => return send_signal(&program, signal, target),
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
    let mut warnings = run.warnings.clone();
    let built = run.options(&mut warnings).and_then(|opts| {
        tern::state::accounts::check(&opts)?;
        ServerTls::build(&opts).map(|tls| (opts, tls))
    });
    let (opts, tls) = match built {
        Ok(built) => built,
        Err(err) => {
            eprintln!("{program}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let log = match install_logger(&opts) {
        Ok(log) => log,
        Err(err) => {
            eprintln!("{program}: cannot open log file: {err}");
            return ExitCode::FAILURE;
        }
    };
    for warning in warnings {
        warn!("{warning}");
    }
    raise_open_file_limit();
    tern::conn::idle::start(tern::conn::idle::budget_from_env());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(tern::conn::idle::before_park)
        .on_thread_unpark(tern::conn::idle::after_unpark)
        .build()
    {
        Ok(rt) => {
            tern::conn::idle::set_workers(rt.metrics().num_workers());
            rt
        }
        Err(err) => {
            error!(target: FATAL, "Error starting runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(program, run, opts, tls, log))
}

/// `-t`: parse the configuration and report, as nats-server does.
fn test_config(program: &str, run: &Run) -> ExitCode {
    let Some(path) = run.config_file() else {
        eprintln!(
            "{program}: must specify [-c, --config] option to check configuration file syntax"
        );
        return ExitCode::FAILURE;
    };
    match run
        .options(&mut Vec::new())
        .and_then(|opts| ServerTls::build(&opts))
    {
        Ok(_) => {
            eprintln!(
                "{program}: configuration file {} is valid{}",
                path.display(),
                digest_of(path)
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("{program}: {err}");
            ExitCode::FAILURE
        }
    }
}

/// `--signal <signal>[=<pid|pidfile>]`: signal a running server.
fn send_signal(program: &str, signal: &str, target: Option<String>) -> ExitCode {
    let pid = match target {
        Some(t) if t.chars().all(|c| c.is_ascii_digit()) => t,
        Some(path) => match std::fs::read_to_string(&path) {
            Ok(pid) => pid.trim().to_string(),
            Err(err) => {
                eprintln!("{program}: cannot read pid file {path}: {err}");
                return ExitCode::FAILURE;
            }
        },
        None => match only_running(program) {
            Ok(pid) => pid,
            Err(err) => {
                eprintln!("{program}: {err}");
                return ExitCode::FAILURE;
            }
        },
    };
    // `kill(1)` does the sending: no unsafe libc call is needed for something this rare.
    match std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(&pid)
        .status()
    {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("{program}: cannot run kill: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The pid of the only other running process named `program`.
fn only_running(program: &str) -> Result<String, String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc")
        .map_err(|e| e.to_string())?
        .flatten()
    {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if pid == me || !pid.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim() == program {
            found.push(pid);
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(format!("no {program} process running")),
        _ => Err(format!(
            "multiple {program} processes running ({}); give a pid",
            found.join(", ")
        )),
    }
}

fn install_logger(opts: &Options) -> io::Result<LogControl> {
    let logger = match &opts.log_file {
        Some(path) => Logger::to_file(path, opts.debug, opts.trace, opts.logtime)?,
        None => Logger::new(Box::new(io::stderr()), opts.debug, opts.trace, opts.logtime),
    };
    let control = logger.control();
    logging::install(logger)?;
    Ok(control)
}

/// Raises the soft limit on open files to the hard limit, as the Go runtime (1.19+) does for
/// nats-server at start: otherwise a shell's usual soft limit of 1024 caps the server at about
/// a thousand clients while nats-server on the same machine takes as many as the hard limit
/// allows (`tests/stress.rs` `ten_thousand_clients`, `tests/binary.rs`
/// `raises_its_open_file_limit_like_nats_server`).
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed by reference.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            // Failure leaves the soft limit as it was, which is all there is to fall back to.
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

async fn serve(
    program: String,
    run: Box<Run>,
    opts: Options,
    tls: ServerTls,
    log: LogControl,
) -> ExitCode {
    // Signals are caught from before the server says it is ready, so a harness that signals
    // as soon as it reads "Server is ready" never kills it by the default action.
    let signals = Signals::install();
    info!("Starting nats-server");
    info!("  Version:  {}", tern::proto::protocol::NATS_SERVER_VERSION);
    info!("  Git:      [tern-{}]", env!("CARGO_PKG_VERSION"));
    if let Some(name) = opts.cluster.as_ref().and_then(|c| c.name.as_ref()) {
        info!("  Cluster:  {name}");
    }
    let (host, port) = (opts.host.clone(), opts.port);
    if let Some(path) = &opts.pid_file {
        if let Err(err) = std::fs::write(path, std::process::id().to_string()) {
            error!(target: FATAL, "Could not write pidfile: {err}");
            return ExitCode::FAILURE;
        }
    }
    let ports_dir = opts.ports_file_dir.clone();
    let server = match Server::bind_with(opts, tls).await {
        Ok(server) => server,
        Err(err) if server::StartError::text(&err).is_some() => {
            error!(target: FATAL, "{err}");
            return ExitCode::FAILURE;
        }
        // The URL resolver's account server did not answer: nats-server refuses to start
        // before it logs anything.
        Err(err) if err.to_string().starts_with("could not fetch") => {
            eprintln!("{program}: {err}");
            return ExitCode::FAILURE;
        }
        Err(err) => {
            error!(target: FATAL, "Error listening on port: {host}:{port}, \"{err}\"");
            return ExitCode::FAILURE;
        }
    };
    let shared = server.shared();
    info!("  Name:     {}", shared.server_name);
    info!("  ID:       {}", shared.server_id);
    if shared.opts().has_plaintext_passwords() {
        warn!("Plaintext passwords detected, use nkeys or bcrypt");
    }
    if let Some(path) = run.config_file() {
        info!(
            "Using configuration file: {}{}",
            path.display(),
            digest_of(path)
        );
    }
    log_operators(&shared.opts());
    if let Some(addr) = server.monitor_addr() {
        let opts = shared.opts();
        let http_host = opts.http_host.as_deref().unwrap_or(&opts.host);
        info!(
            "Starting {} monitor on {}:{}",
            if shared.monitor_https {
                "https"
            } else {
                "http"
            },
            host_for_log(http_host),
            addr.port()
        );
    }
    if let Some(js) = server.jetstream() {
        for line in js.banner() {
            info!("{line}");
        }
        info!("Took {:?} to start JetStream", js.start_took);
    }
    if let (Some(ws), Some(addr)) = (&shared.opts().websocket, server.websocket_addr()) {
        let scheme = if ws.tls.is_some() { "wss" } else { "ws" };
        info!(
            "Listening for websocket clients on {scheme}://{}:{}",
            ws.host,
            addr.port()
        );
        if ws.tls.is_none() {
            warn!("Websocket not configured with TLS. DO NOT USE IN PRODUCTION!");
        }
    }
    if let (Some(leaf), Some(addr)) = (&shared.opts().leafnodes, shared.leaf_addr()) {
        info!(
            "Listening for leafnode connections on {}:{}",
            host_for_log(&leaf.host),
            addr.port()
        );
    }
    let addr = server.local_addr();
    info!(
        "Listening for client connections on {}:{}",
        host_for_log(&host),
        addr.port()
    );
    if let Some(tls) = &shared.opts().tls {
        // handshake_first without a fallback leaves no room for plaintext, allow_non_tls or not.
        let tls_only = tls.handshake_first && tls.handshake_first_fallback.is_none();
        if shared.opts().allow_non_tls && !tls_only {
            info!("TLS available for client connections");
        } else {
            info!("TLS required for client connections");
        }
        if tls_only {
            warn!("Clients that are not using \"TLS Handshake First\" option will fail to connect");
        }
    }
    let ports_file =
        ports_dir.and_then(
            |dir| match server::write_ports_file(&dir, &program, &shared) {
                Ok(path) => Some(path),
                Err(err) => {
                    error!("Error writing ports file to {}: {err}", dir.display());
                    None
                }
            },
        );
    info!("Server is ready");
    let signals = handle_signals(signals, shared.clone(), run, log);
    server.run(signals).await;
    remove(ports_file);
    ExitCode::SUCCESS
}

fn remove(path: Option<PathBuf>) {
    if let Some(path) = path {
        let _ = std::fs::remove_file(path);
    }
}

/// The signals the server acts on.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
}

impl Signals {
    /// Starts catching the signals (must run inside the runtime).
    fn install() -> Option<Signals> {
        let listen = |kind| {
            signal(kind)
                .map_err(|e| error!("Cannot listen for signals: {e}"))
                .ok()
        };
        Some(Signals {
            interrupt: listen(SignalKind::interrupt())?,
            terminate: listen(SignalKind::terminate())?,
            hangup: listen(SignalKind::hangup())?,
            usr1: listen(SignalKind::user_defined1())?,
            usr2: listen(SignalKind::user_defined2())?,
        })
    }
}

/// Serves the signals until one asks to stop: SIGHUP reloads the configuration, SIGUSR1
/// reopens the log file, SIGUSR2 enters lame duck mode, SIGINT and SIGTERM return (shut down).
async fn handle_signals(
    signals: Option<Signals>,
    shared: Arc<Shared>,
    run: Box<Run>,
    log: LogControl,
) {
    let Some(Signals {
        mut interrupt,
        mut terminate,
        mut hangup,
        mut usr1,
        mut usr2,
    }) = signals
    else {
        return std::future::pending().await;
    };
    loop {
        tokio::select! {
            _ = interrupt.recv() => {
                info!("Trapped \"interrupt\" signal");
                break;
            }
            _ = terminate.recv() => {
                info!("Trapped \"terminated\" signal");
                break;
            }
            _ = hangup.recv() => {
                info!("Trapped \"hangup\" signal");
                reload(&shared, &run, &log);
            }
            _ = usr1.recv() => {
                info!("Trapped \"user defined signal 1\" signal");
                if let Err(err) = log.reopen() {
                    error!("Error reopening log file: {err}");
                }
            }
            _ = usr2.recv() => {
                info!("Trapped \"user defined signal 2\" signal");
                shared.enter_lame_duck_mode();
            }
        }
    }
    info!("Initiating Shutdown...");
}

/// Rereads the configuration file and puts it in force; a bad file changes nothing.
fn reload(shared: &Shared, run: &Run, log: &LogControl) {
    let mut warnings = Vec::new();
    let result = run.options(&mut warnings).and_then(|opts| {
        let levels = (opts.debug, opts.trace, opts.logtime);
        let log_file = opts.log_file.clone();
        shared.update_accounts(|old| {
            let mut opts = opts;
            tern::config::operator::keep_fetched(old, &mut opts);
            Ok((opts, ()))
        })?;
        log.set(levels.0, levels.1, levels.2);
        log.set_file(log_file.as_deref())
            .map_err(|e| format!("cannot open log file: {e}"))
    });
    for warning in warnings {
        warn!("{warning}");
    }
    match result {
        Ok(()) => info!(
            "Reloaded server configuration{}",
            run.config_file().map(digest_of).unwrap_or_default()
        ),
        Err(err) => error!("Failed to reload server configuration: {}", err.trim_end()),
    }
}

/// ` (sha256:<hex>)` of the configuration file, as nats-server prints it after the file's
/// name: a digest of what the file says, not of its bytes (empty if it cannot be read).
fn digest_of(path: &Path) -> String {
    match tern::config::conf::parse_file(path) {
        Ok(map) => format!(" (sha256:{})", tern::config::conf::digest(&map)),
        Err(_) => String::new(),
    }
}

/// The host as nats-server prints it: the configured one, IPv6 in brackets (Go's
/// `net.JoinHostPort`).
fn host_for_log(host: &str) -> String {
    match host.contains(':') && !host.starts_with('[') {
        true => format!("[{host}]"),
        false => host.to_string(),
    }
}

/// nats-server's start-up lines for operator mode: each trusted operator, and a warning when
/// there is no system account.
fn log_operators(opts: &tern::config::Options) {
    let operators = &opts.operator.operators;
    if operators.is_empty() {
        return;
    }
    info!("Trusted Operators");
    // Go prints `time.Unix(..)` with `%v`: `2026-12-01 15:43:26 +0000 UTC` (tern logs in UTC).
    let time = |secs: i64| {
        let text = tern::monitor::rfc3339(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64),
        );
        format!(
            "{} +0000 UTC",
            text.replacen('T', " ", 1).trim_end_matches('Z')
        )
    };
    for op in operators {
        info!("  System  : {:?}", op.claims.aud);
        info!("  Operator: {:?}", op.claims.name);
        info!("  Issued  : {}", time(op.claims.iat));
        match op.claims.exp {
            0 => info!("  Expires : Never"),
            exp => info!("  Expires : {}", time(exp)),
        }
    }
    if opts.system_account.is_none() {
        warn!("Trusted Operators should utilize a System Account");
    }
    for (key, account) in &opts.operator.accounts {
        if !account.issues.is_empty() {
            warn!("Account [{key}] has validation issues:");
            for issue in &account.issues {
                warn!("  - {issue}");
            }
        }
    }
}
