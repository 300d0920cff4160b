//! nats-server's command line, parsed the way Go's `flag` package parses it.
//!
//! Go flags differ from what clap (or any getopt-style parser) accepts: `-port 4222` and
//! `--port 4222` are the same flag, multi-letter single-dash names exist (`-DV`, `-sd`),
//! `-p=4222` works, a boolean takes its value only after `=` (`-T=false`), and parsing stops at
//! the first argument that is not a flag. Client test harnesses use all of these spellings, so
//! this small table-driven parser follows Go's rules exactly instead of bending clap to them.

use std::path::PathBuf;

use crate::config::Options;

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Run the server with these options; `warnings` are logged once logging is up.
    Run {
        opts: Box<Options>,
        warnings: Vec<String>,
    },
    /// Print the version and exit.
    Version,
    /// Print the usage text and exit.
    Help,
}

/// A command line tern cannot run with: the message to print, and whether to add the usage.
#[derive(Debug, PartialEq, Eq)]
pub struct CliError {
    /// What went wrong, in Go's `flag` wording where it has one.
    pub message: String,
    /// Print the usage text after the message.
    pub show_usage: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Value,
}

#[derive(Clone, Copy)]
enum Action {
    Addr,
    Port,
    Name,
    Pid,
    Log,
    LogTime,
    LogTimeUtc,
    Debug,
    Trace,
    DebugTrace,
    User,
    Pass,
    Auth,
    Version,
    Help,
    StoreDir,
    /// A nats-server flag for a feature tern does not have yet: refused, never ignored.
    NotYet(&'static str),
}

struct Flag {
    names: &'static [&'static str],
    kind: Kind,
    action: Action,
}

const FLAGS: &[Flag] = &[
    Flag {
        names: &["a", "addr", "net"],
        kind: Kind::Value,
        action: Action::Addr,
    },
    Flag {
        names: &["p", "port"],
        kind: Kind::Value,
        action: Action::Port,
    },
    Flag {
        names: &["n", "name", "server_name"],
        kind: Kind::Value,
        action: Action::Name,
    },
    Flag {
        names: &["P", "pid"],
        kind: Kind::Value,
        action: Action::Pid,
    },
    Flag {
        names: &["l", "log"],
        kind: Kind::Value,
        action: Action::Log,
    },
    Flag {
        names: &["T", "logtime"],
        kind: Kind::Bool,
        action: Action::LogTime,
    },
    Flag {
        names: &["logtime_utc"],
        kind: Kind::Bool,
        action: Action::LogTimeUtc,
    },
    Flag {
        names: &["D", "debug"],
        kind: Kind::Bool,
        action: Action::Debug,
    },
    Flag {
        names: &["V", "trace", "VV"],
        kind: Kind::Bool,
        action: Action::Trace,
    },
    Flag {
        names: &["DV", "DVV"],
        kind: Kind::Bool,
        action: Action::DebugTrace,
    },
    Flag {
        names: &["user"],
        kind: Kind::Value,
        action: Action::User,
    },
    Flag {
        names: &["pass"],
        kind: Kind::Value,
        action: Action::Pass,
    },
    Flag {
        names: &["auth"],
        kind: Kind::Value,
        action: Action::Auth,
    },
    Flag {
        names: &["v", "version"],
        kind: Kind::Bool,
        action: Action::Version,
    },
    Flag {
        names: &["h", "help"],
        kind: Kind::Bool,
        action: Action::Help,
    },
    Flag {
        names: &["sd", "store_dir"],
        kind: Kind::Value,
        action: Action::StoreDir,
    },
    Flag {
        names: &["m", "http_port"],
        kind: Kind::Value,
        action: Action::NotYet("monitoring"),
    },
    Flag {
        names: &["ms", "https_port"],
        kind: Kind::Value,
        action: Action::NotYet("monitoring"),
    },
    Flag {
        names: &["c", "config"],
        kind: Kind::Value,
        action: Action::NotYet("configuration files"),
    },
    Flag {
        names: &["t"],
        kind: Kind::Bool,
        action: Action::NotYet("configuration files"),
    },
    Flag {
        names: &["sl", "signal"],
        kind: Kind::Value,
        action: Action::NotYet("--signal"),
    },
    Flag {
        names: &["client_advertise"],
        kind: Kind::Value,
        action: Action::NotYet("clustering"),
    },
    Flag {
        names: &["ports_file_dir"],
        kind: Kind::Value,
        action: Action::NotYet("ports files"),
    },
    Flag {
        names: &["s", "syslog"],
        kind: Kind::Bool,
        action: Action::NotYet("syslog"),
    },
    Flag {
        names: &["r", "remote_syslog"],
        kind: Kind::Value,
        action: Action::NotYet("syslog"),
    },
    Flag {
        names: &["log_size_limit"],
        kind: Kind::Value,
        action: Action::NotYet("log rotation"),
    },
    Flag {
        names: &["max_traced_msg_len"],
        kind: Kind::Value,
        action: Action::NotYet("trace limits"),
    },
    Flag {
        names: &["js", "jetstream"],
        kind: Kind::Bool,
        action: Action::NotYet("JetStream"),
    },
    Flag {
        names: &["tls", "tlsverify"],
        kind: Kind::Bool,
        action: Action::NotYet("TLS"),
    },
    Flag {
        names: &["tlscert", "tlskey", "tlscacert"],
        kind: Kind::Value,
        action: Action::NotYet("TLS"),
    },
    Flag {
        names: &["help_tls"],
        kind: Kind::Bool,
        action: Action::NotYet("TLS"),
    },
    Flag {
        names: &[
            "routes",
            "cluster",
            "cluster_name",
            "cluster_advertise",
            "connect_retries",
            "cluster_listen",
        ],
        kind: Kind::Value,
        action: Action::NotYet("clustering"),
    },
    Flag {
        names: &["no_advertise"],
        kind: Kind::Bool,
        action: Action::NotYet("clustering"),
    },
    Flag {
        names: &["profile"],
        kind: Kind::Value,
        action: Action::NotYet("profiling"),
    },
];

/// Parses the arguments after the program name.
pub fn parse<I, S>(args: I) -> Result<Command, CliError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut args = args.into_iter().map(Into::into);
    let mut opts = Options::default();
    let mut warnings = Vec::new();
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        let Some(spec) = arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-'))
            .filter(|s| !s.is_empty())
        else {
            return Err(CliError {
                message: format!("nats-server: unrecognized command: {arg:?}"),
                show_usage: false,
            });
        };
        let (name, inline) = match spec.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (spec, None),
        };
        let Some(flag) = FLAGS.iter().find(|f| f.names.contains(&name)) else {
            return Err(usage_error(format!(
                "flag provided but not defined: -{name}"
            )));
        };
        let value = match (flag.kind, inline) {
            (Kind::Bool, None) => "true".to_string(),
            (_, Some(value)) => value,
            (Kind::Value, None) => match args.next() {
                Some(value) => value,
                None => return Err(usage_error(format!("flag needs an argument: -{name}"))),
            },
        };
        let invalid = || {
            usage_error(format!(
                "invalid value {value:?} for flag -{name}: parse error"
            ))
        };
        let boolean = || parse_bool(&value).ok_or_else(invalid);
        match flag.action {
            Action::Addr => opts.host = value.clone(),
            Action::Port => opts.port = parse_port(&value).ok_or_else(invalid)?,
            Action::Name => opts.server_name = Some(value.clone()),
            Action::Pid => opts.pid_file = Some(PathBuf::from(&value)),
            Action::Log => opts.log_file = Some(PathBuf::from(&value)),
            Action::LogTime => opts.logtime = boolean()?,
            // Timestamps are always UTC in tern, so this only has to be understood.
            Action::LogTimeUtc => {
                boolean()?;
            }
            Action::Debug => opts.debug = boolean()?,
            Action::Trace => opts.trace = boolean()?,
            Action::DebugTrace => {
                let on = boolean()?;
                opts.debug = on;
                opts.trace = on;
            }
            Action::User => opts.username = Some(value.clone()),
            Action::Pass => opts.password = Some(value.clone()),
            Action::Auth => opts.token = Some(value.clone()),
            Action::Version => {
                if boolean()? {
                    return Ok(Command::Version);
                }
            }
            Action::Help => {
                if boolean()? {
                    return Ok(Command::Help);
                }
            }
            Action::StoreDir => warnings.push(format!(
                "Ignoring store directory {value:?}: tern has no JetStream, so nothing is stored"
            )),
            Action::NotYet(feature) => {
                return Err(CliError {
                    message: format!(
                        "tern: flag -{name} needs {feature}, which tern does not support yet"
                    ),
                    show_usage: false,
                })
            }
        }
    }
    if let Some(extra) = args.next() {
        return Err(CliError {
            message: format!("nats-server: unrecognized command: {extra:?}"),
            show_usage: false,
        });
    }
    if opts.password.is_some() && opts.username.is_none() {
        return Err(CliError {
            message: "tern: --pass needs --user".to_string(),
            show_usage: false,
        });
    }
    Ok(Command::Run {
        opts: Box::new(opts),
        warnings,
    })
}

fn usage_error(message: String) -> CliError {
    CliError {
        message,
        show_usage: true,
    }
}

/// Go's `strconv.ParseBool`.
fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A port number; `-1` asks for a random free port (bound as 0).
fn parse_port(value: &str) -> Option<u16> {
    match value.parse::<i64>().ok()? {
        -1 => Some(0),
        port => u16::try_from(port).ok(),
    }
}

/// The usage text, in nats-server's layout, listing what tern supports.
pub const USAGE: &str = "
Usage: nats-server [options]

Server Options:
    -a, --addr, --net <host>         Bind to host address (default: 0.0.0.0)
    -p, --port <port>                Use port for clients (default: 4222, -1 for random)
    -n, --name
        --server_name <server_name>  Server name (default: auto)
    -P, --pid <file>                 File to store PID

Logging Options:
    -l, --log <file>                 File to redirect log output
    -T, --logtime                    Timestamp log entries (default: true)
        --logtime_utc                Timestamps in UTC (tern always logs in UTC)
    -D, --debug                      Enable debugging output
    -V, --trace                      Trace the raw protocol
    -DV                              Debug and trace

JetStream Options:
    -sd, --store_dir <dir>           Accepted and ignored with a warning (no JetStream in tern)

Authorization Options:
        --user <user>                User required for connections
        --pass <password>            Password required for connections
        --auth <token>               Authorization token required for connections

Common Options:
    -h, --help                       Show this message
    -v, --version                    Show version

Not supported yet (refused with a message): -m, -ms, -c, -t, -sl, --ports_file_dir,
--client_advertise, -s, -r, --log_size_limit, --max_traced_msg_len, -js, --tls*, cluster
flags, --profile.
";

/// The `-v` line: the nats-server level tern matches first, so that harnesses matching
/// `v<major>.<minor>.<patch>` read it.
pub fn version_line(program: &str) -> String {
    format!(
        "{program}: v{} (tern {})",
        crate::protocol::NATS_SERVER_VERSION,
        env!("CARGO_PKG_VERSION")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Options {
        match parse(args.iter().copied()) {
            Ok(Command::Run { opts, .. }) => *opts,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    fn fails(args: &[&str]) -> CliError {
        match parse(args.iter().copied()) {
            Err(e) => e,
            other => panic!("{args:?} should fail: {other:?}"),
        }
    }

    #[test]
    fn go_flag_spellings() {
        for args in [
            &["-p", "4333"][..],
            &["--port", "4333"],
            &["-port", "4333"],
            &["--port=4333"],
            &["-p=4333"],
            &["-port=4333"],
        ] {
            assert_eq!(run(args).port, 4333, "{args:?}");
        }
        assert_eq!(run(&["-p", "-1"]).port, 0);
        assert_eq!(run(&["--port=-1"]).port, 0);
        assert_eq!(run(&["-a", "127.0.0.1"]).host, "127.0.0.1");
        assert_eq!(run(&["-net", "::1"]).host, "::1");
        assert_eq!(run(&["-n", "x"]).server_name.as_deref(), Some("x"));
        assert_eq!(
            run(&["--server_name", "y"]).server_name.as_deref(),
            Some("y")
        );
    }

    #[test]
    fn logging_flags() {
        let o = run(&["-DV"]);
        assert!(o.debug && o.trace);
        let o = run(&["-D"]);
        assert!(o.debug && !o.trace);
        let o = run(&["--trace"]);
        assert!(!o.debug && o.trace);
        assert!(!run(&["-T=false"]).logtime);
        assert!(run(&[]).logtime);
        let o = run(&["-l", "/tmp/x.log", "-P", "/tmp/x.pid"]);
        assert_eq!(o.log_file, Some(PathBuf::from("/tmp/x.log")));
        assert_eq!(o.pid_file, Some(PathBuf::from("/tmp/x.pid")));
    }

    #[test]
    fn auth_flags() {
        let o = run(&["--user", "u", "--pass", "p"]);
        assert_eq!(
            (o.username.as_deref(), o.password.as_deref()),
            (Some("u"), Some("p"))
        );
        let o = run(&["-user", "ivan", "-pass", "secret"]);
        assert_eq!(o.username.as_deref(), Some("ivan"));
        assert_eq!(run(&["-auth", "s3cr3t"]).token.as_deref(), Some("s3cr3t"));
        assert!(run(&["--auth", "t"]).auth_required());
    }

    #[test]
    fn store_dir_is_accepted_with_a_warning() {
        for args in [
            &["--store_dir", "/tmp/x"][..],
            &["-sd", "/tmp/x"],
            &["-sd=/tmp/x"],
        ] {
            match parse(args.iter().copied()) {
                Ok(Command::Run { warnings, .. }) => assert_eq!(warnings.len(), 1),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn version_and_help() {
        assert!(matches!(parse(["-v"]), Ok(Command::Version)));
        assert!(matches!(parse(["--version"]), Ok(Command::Version)));
        assert!(matches!(parse(["-h"]), Ok(Command::Help)));
        assert!(matches!(parse(["-help"]), Ok(Command::Help)));
        assert!(version_line("nats-server").starts_with("nats-server: v2.15.1 "));
    }

    #[test]
    fn errors() {
        let e = fails(&["--bogus"]);
        assert_eq!(e.message, "flag provided but not defined: -bogus");
        assert!(e.show_usage);
        assert_eq!(
            fails(&["-bogus"]).message,
            "flag provided but not defined: -bogus"
        );
        assert_eq!(
            fails(&["-p", "abc"]).message,
            "invalid value \"abc\" for flag -p: parse error"
        );
        assert_eq!(fails(&["-p"]).message, "flag needs an argument: -p");
        assert_eq!(
            fails(&["-p", "70000"]).message,
            "invalid value \"70000\" for flag -p: parse error"
        );
        assert_eq!(
            fails(&["-D=maybe"]).message,
            "invalid value \"maybe\" for flag -D: parse error"
        );
        assert!(fails(&["extra"]).message.contains("unrecognized command"));
        for not_yet in [
            &["-m", "8222"][..],
            &["-c", "a.conf"],
            &["--tls"],
            &["-js"],
            &["--routes", "x"],
        ] {
            let e = fails(not_yet);
            assert!(
                e.message.contains("does not support yet"),
                "{not_yet:?}: {e:?}"
            );
            assert!(!e.show_usage);
        }
    }
}
