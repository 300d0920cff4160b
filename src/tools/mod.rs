//! Client tools in the server's binary: `tern pub|sub|req|reply|bench|server|trace|kv|stream`, for
//! debugging where the Go `nats` CLI is not at hand. They are plain NATS clients and work
//! against any server (tern or nats-server).
//!
//! The server's own command line (nats-server's flags) is untouched: a tool is chosen only
//! when the first argument is exactly a tool's name, and every server flag starts with `-`.

pub mod args;
pub mod bench;
pub mod client;
pub mod commands;
pub mod jsapi;
pub mod kv;
pub mod stream;
pub mod trace;
pub mod wire;

use std::process::ExitCode;

use args::Args;

/// The tools, by the name that selects them.
pub const TOOLS: &[&str] = &[
    "pub", "sub", "req", "reply", "bench", "server", "trace", "kv", "stream",
];

/// Whether `first` (the first argument after the program name) names a tool.
pub fn is_tool(first: &str) -> bool {
    TOOLS.contains(&first)
}

/// The connection options' help, shared by every tool.
const CONNECTION_HELP: &str = "\
Connection options (as the `nats` CLI names them):
  -s, --server <urls>     server URLs, comma separated (default $NATS_URL, else nats://127.0.0.1:4222)
      --user <user>       user name
      --password <pass>   password
      --token <token>     authentication token
      --creds <file>      user JWT and nkey seed (.creds)
      --nkey <file>       user nkey seed
      --tlscert <file>    client certificate
      --tlskey <file>     client certificate's key
      --tlsca <file>      CA to verify the server with
      --timeout <dur>     connect and request timeout (default 5s)
      --json              machine-readable output
";

/// Runs tool `tool` with the arguments after its name; prints one line on error.
pub fn run(tool: &str, rest: &[String]) -> ExitCode {
    quiet_on_closed_stdout();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => return fail(tool, &format!("cannot start the runtime: {err}")),
    };
    let result = runtime.block_on(async {
        match tool {
            "pub" => commands::publish(rest).await,
            "sub" => commands::subscribe(rest).await,
            "req" => commands::request(rest).await,
            "reply" => commands::reply(rest).await,
            "server" => commands::server(rest).await,
            "bench" => bench::run(rest).await,
            "trace" => trace::run(rest).await,
            "kv" => kv::run(rest).await,
            "stream" => stream::run(rest).await,
            _ => Err(format!("unknown tool {tool:?}")),
        }
    });
    // Reader tasks may still be blocked on their sockets: do not wait for them.
    runtime.shutdown_background();
    match result {
        Ok(Done::Success) => ExitCode::SUCCESS,
        Ok(Done::Help(text)) => {
            print!("{text}{CONNECTION_HELP}");
            ExitCode::SUCCESS
        }
        Err(err) => fail(tool, &err),
    }
}

/// `tern sub x | head -1`: once the reader of stdout has gone, printing fails; end the tool
/// there quietly with the status a shell gives a process killed by SIGPIPE (as the Go `nats`
/// CLI ends), instead of a panic and its backtrace.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map_or("", String::as_str);
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

/// How a tool ended well.
pub enum Done {
    /// It did its work.
    Success,
    /// `--help`: print this usage, then the connection options.
    Help(&'static str),
}

/// What a tool returns: a one-line error on failure.
pub type Outcome = Result<Done, String>;

/// Parses a tool's arguments; `Err(Ok(help))` when `--help` was asked for.
pub(crate) fn parse_args(
    rest: &[String],
    own: &[(&str, bool)],
    usage: &'static str,
) -> Result<Args, Outcome> {
    let args = Args::parse(rest, own).map_err(|e| Err(format!("{e} ({})", usage_line(usage))))?;
    if args.flag("help") {
        return Err(Ok(Done::Help(usage)));
    }
    Ok(args)
}

fn usage_line(usage: &str) -> &str {
    usage.lines().next().unwrap_or_default()
}

fn fail(tool: &str, err: &str) -> ExitCode {
    eprintln!("tern {tool}: {err}");
    ExitCode::FAILURE
}
