//! nats-server's command line, parsed the way Go's `flag` package parses it.
//!
//! Go flags differ from what clap (or any getopt-style parser) accepts: `-port 4222` and
//! `--port 4222` are the same flag, multi-letter single-dash names exist (`-DV`, `-sd`),
//! `-p=4222` works, a boolean takes its value only after `=` (`-T=false`), and parsing stops at
//! the first argument that is not a flag. Client test harnesses use all of these spellings, so
//! this small table-driven parser follows Go's rules exactly instead of bending clap to them.

use std::path::{Path, PathBuf};

use crate::config::cluster::{self, ClusterOptions};
use crate::config::{self, Options};

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Run the server.
    Run(Box<Run>),
    /// `-t`: check the configuration file and exit.
    TestConfig(Box<Run>),
    /// `--signal <signal>[=<pid|pidfile>]`: signal a running server and exit.
    Signal {
        /// The signal to send (SIGHUP for `reload`, ...).
        signal: &'static str,
        /// A pid, a pid file, or nothing (the only running server).
        target: Option<String>,
    },
    /// Print the version and exit.
    Version,
    /// Print the usage text and exit.
    Help,
}

/// How to run: the configuration file and the flags that override it.
#[derive(Debug, Default)]
pub struct Run {
    /// `-c`: the configuration file.
    pub config: Option<PathBuf>,
    /// Every option flag, in order.
    pub settings: Vec<Setting>,
    /// Flags accepted but ignored, to log once logging is up.
    pub warnings: Vec<String>,
}

/// One option set on the command line.
#[derive(Debug, Clone)]
pub enum Setting {
    /// `-a`
    Host(String),
    /// `-p`
    Port(u16),
    /// `-n`
    Name(String),
    /// `-P`
    PidFile(PathBuf),
    /// `-l`
    LogFile(PathBuf),
    /// `-T`
    LogTime(bool),
    /// `-D`
    Debug(bool),
    /// `-V`
    Trace(bool),
    /// `--user`
    User(String),
    /// `--pass`
    Pass(String),
    /// `--auth`
    Token(String),
    /// `--ports_file_dir`
    PortsFileDir(PathBuf),
    /// `-m`: the HTTP monitor port (-1 random, 0 off).
    HttpPort(i32),
    /// `-ms`: the HTTPS monitor port (-1 random, 0 off).
    HttpsPort(i32),
    /// `--tls`
    Tls(bool),
    /// `--tlsverify`
    TlsVerify(bool),
    /// `--tlscert`
    TlsCert(PathBuf),
    /// `--tlskey`
    TlsKey(PathBuf),
    /// `--tlscacert`
    TlsCaCert(PathBuf),
    /// `-js`: JetStream on (or off with `-js=false`).
    JetStream(bool),
    /// `-sd`: JetStream's store directory (it does not turn JetStream on by itself).
    StoreDir(PathBuf),
    /// `--cluster`, `--cluster_listen`: the cluster URL, read once the file is (its errors are
    /// nats-server's start-up errors).
    ClusterListen(String),
    /// `--cluster_name`
    ClusterName(String),
    /// `--routes`: comma-separated route URLs.
    Routes(String),
    /// `--cluster_advertise`
    ClusterAdvertise(String),
    /// `--no_advertise` (only `true` changes anything, as in nats-server).
    NoAdvertise(bool),
    /// `--connect_retries` (0 leaves the file's, as in nats-server).
    ConnectRetries(i64),
}

impl Run {
    /// The options to run with, in nats-server's precedence: defaults, then the configuration
    /// file, then the flags. Warnings about the file are added to `warnings`.
    pub fn options(&self, warnings: &mut Vec<String>) -> Result<Options, String> {
        let mut opts = Options::default();
        if let Some(path) = &self.config {
            // nats-server ends an error about what the file means (not about its syntax) with
            // a newline of its own, so its message is followed by an empty line.
            let file = config::conf::parse_file(path).map_err(|e| e.to_string())?;
            opts.apply_file(&file, warnings)
                .map_err(|e| format!("{e}\n"))?;
        }
        for setting in &self.settings {
            setting.apply(&mut opts)?;
        }
        // As nats-server, `-sd` replaces the file's `store_dir` whatever the order of the flags,
        // and turns nothing on by itself.
        let store_dir = self.settings.iter().rev().find_map(|s| match s {
            Setting::StoreDir(dir) => Some(dir.clone()),
            _ => None,
        });
        if let (Some(js), Some(dir)) = (opts.jetstream.as_mut(), store_dir) {
            js.store_dir = Some(dir);
        }
        finish_cluster(&mut opts, &self.settings, warnings)?;
        if opts.password.is_some() && opts.username.is_none() {
            return Err("a password needs a user (--user or authorization { user })".into());
        }
        Ok(opts)
    }

    /// The configuration file, if any.
    pub fn config_file(&self) -> Option<&Path> {
        self.config.as_deref()
    }
}

impl Setting {
    fn apply(&self, opts: &mut Options) -> Result<(), String> {
        match self.clone() {
            Setting::Host(host) => opts.host = host,
            Setting::Port(port) => opts.port = port,
            Setting::Name(name) => opts.server_name = Some(name),
            Setting::PidFile(path) => opts.pid_file = Some(path),
            Setting::LogFile(path) => opts.log_file = Some(path),
            Setting::LogTime(on) => opts.logtime = on,
            Setting::Debug(on) => opts.debug = on,
            Setting::Trace(on) => opts.trace = on,
            Setting::User(user) => opts.username = Some(user),
            Setting::Pass(pass) => opts.password = Some(pass),
            Setting::Token(token) => opts.token = Some(token),
            Setting::PortsFileDir(dir) => opts.ports_file_dir = Some(dir),
            Setting::HttpPort(port) => opts.http_port = port,
            Setting::HttpsPort(port) => opts.https_port = port,
            // As nats-server: any TLS flag turns TLS on; `--tls=false` alone turns it off.
            Setting::Tls(false) => opts.tls = None,
            Setting::Tls(true) => {
                opts.tls.get_or_insert_with(Default::default);
            }
            Setting::TlsVerify(on) => flag_tls(opts).verify = on,
            Setting::TlsCert(path) => flag_tls(opts).cert_file = Some(path),
            Setting::TlsKey(path) => flag_tls(opts).key_file = Some(path),
            Setting::TlsCaCert(path) => flag_tls(opts).ca_file = Some(path),
            Setting::JetStream(false) => opts.jetstream = None,
            Setting::JetStream(true) => {
                opts.jetstream
                    .get_or_insert_with(config::jetstream::JetStreamOptions::enabled);
            }
            // Applied by `Run::options` once `-js` and the file have said whether JetStream is on.
            Setting::StoreDir(_) => {}
            // nats-server's `MergeOptions` and `overrideCluster`: flags override the file.
            Setting::ClusterListen(url) => flag_cluster(opts).apply_listen_url(&url)?,
            Setting::ClusterName(name) => flag_cluster(opts).name = Some(name),
            Setting::Routes(list) => flag_cluster(opts).routes = cluster::routes_from_str(&list)?,
            Setting::ClusterAdvertise(advertise) => flag_cluster(opts).advertise = Some(advertise),
            Setting::NoAdvertise(true) => flag_cluster(opts).no_advertise = true,
            Setting::NoAdvertise(false) | Setting::ConnectRetries(0) => {}
            Setting::ConnectRetries(n) => {
                flag_cluster(opts).connect_retries = u32::try_from(n.max(0)).unwrap_or(u32::MAX)
            }
        }
        Ok(())
    }
}

/// The cluster options a flag changes, made (with no port yet) if the file has none.
fn flag_cluster(opts: &mut Options) -> &mut ClusterOptions {
    opts.cluster.get_or_insert_with(|| ClusterOptions {
        listens: false,
        ..ClusterOptions::default()
    })
}

/// What nats-server makes of the cluster once the file and the flags are read: `--routes`
/// without any cluster address is refused, and a cluster without a port runs nothing (it is
/// dropped, with a warning; nats-server would still show its name in client INFO and /varz).
fn finish_cluster(
    opts: &mut Options,
    settings: &[Setting],
    warnings: &mut Vec<String>,
) -> Result<(), String> {
    let routes_flag = settings.iter().any(|s| matches!(s, Setting::Routes(_)));
    let listen_flag = settings
        .iter()
        .any(|s| matches!(s, Setting::ClusterListen(_)));
    let name_flag = settings
        .iter()
        .any(|s| matches!(s, Setting::ClusterName(_)));
    let Some(cluster) = &opts.cluster else {
        return Ok(());
    };
    if routes_flag && !listen_flag && !cluster.listens && cluster.host == "0.0.0.0" {
        return Err("solicited routes require cluster capabilities, e.g. --cluster".into());
    }
    if name_flag && cluster.name.as_deref().is_some_and(|n| n.contains(' ')) {
        return Err("cluster name cannot contain spaces".into());
    }
    if !cluster.listens {
        warnings.push(
            "cluster: no cluster port is configured, so there is no clustering (as in \
             nats-server)"
                .into(),
        );
        opts.cluster = None;
    }
    Ok(())
}

/// The TLS options a flag changes (made if need be); no longer just the file's `tls` block.
fn flag_tls(opts: &mut Options) -> &mut config::TlsOptions {
    let tls = opts.tls.get_or_insert_with(Default::default);
    tls.defined_at = None;
    tls
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
    Config,
    TestConfig,
    Signal,
    PortsFileDir,
    HttpPort,
    HttpsPort,
    Tls,
    TlsVerify,
    TlsCert,
    TlsKey,
    TlsCaCert,
    JetStream,
    ClusterListen,
    ClusterName,
    Routes,
    ClusterAdvertise,
    NoAdvertise,
    ConnectRetries,
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
        names: &["c", "config"],
        kind: Kind::Value,
        action: Action::Config,
    },
    Flag {
        names: &["t"],
        kind: Kind::Bool,
        action: Action::TestConfig,
    },
    Flag {
        names: &["sl", "signal"],
        kind: Kind::Value,
        action: Action::Signal,
    },
    Flag {
        names: &["ports_file_dir"],
        kind: Kind::Value,
        action: Action::PortsFileDir,
    },
    Flag {
        names: &["m", "http_port"],
        kind: Kind::Value,
        action: Action::HttpPort,
    },
    Flag {
        names: &["ms", "https_port"],
        kind: Kind::Value,
        action: Action::HttpsPort,
    },
    Flag {
        names: &["client_advertise"],
        kind: Kind::Value,
        action: Action::NotYet("clustering"),
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
        action: Action::JetStream,
    },
    Flag {
        names: &["tls"],
        kind: Kind::Bool,
        action: Action::Tls,
    },
    Flag {
        names: &["tlsverify"],
        kind: Kind::Bool,
        action: Action::TlsVerify,
    },
    Flag {
        names: &["tlscert"],
        kind: Kind::Value,
        action: Action::TlsCert,
    },
    Flag {
        names: &["tlskey"],
        kind: Kind::Value,
        action: Action::TlsKey,
    },
    Flag {
        names: &["tlscacert"],
        kind: Kind::Value,
        action: Action::TlsCaCert,
    },
    Flag {
        names: &["help_tls"],
        kind: Kind::Bool,
        action: Action::NotYet("TLS"),
    },
    Flag {
        names: &["cluster", "cluster_listen"],
        kind: Kind::Value,
        action: Action::ClusterListen,
    },
    Flag {
        names: &["cluster_name"],
        kind: Kind::Value,
        action: Action::ClusterName,
    },
    Flag {
        names: &["routes"],
        kind: Kind::Value,
        action: Action::Routes,
    },
    Flag {
        names: &["cluster_advertise"],
        kind: Kind::Value,
        action: Action::ClusterAdvertise,
    },
    Flag {
        names: &["no_advertise"],
        kind: Kind::Bool,
        action: Action::NoAdvertise,
    },
    Flag {
        names: &["connect_retries"],
        kind: Kind::Value,
        action: Action::ConnectRetries,
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
    let mut run = Run::default();
    let mut test_config = false;
    let mut signal = None;
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        let Some(spec) = arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-'))
            .filter(|s| !s.is_empty())
        else {
            return Err(unrecognized(&arg));
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
        let mut set = |setting| run.settings.push(setting);
        match flag.action {
            Action::Addr => set(Setting::Host(value.clone())),
            Action::Port => set(Setting::Port(parse_port(&value).ok_or_else(invalid)?)),
            Action::Name => set(Setting::Name(value.clone())),
            Action::Pid => set(Setting::PidFile(PathBuf::from(&value))),
            Action::Log => set(Setting::LogFile(PathBuf::from(&value))),
            Action::LogTime => set(Setting::LogTime(boolean()?)),
            // Timestamps are always UTC in tern, so this only has to be understood.
            Action::LogTimeUtc => {
                boolean()?;
            }
            Action::Debug => set(Setting::Debug(boolean()?)),
            Action::Trace => set(Setting::Trace(boolean()?)),
            Action::DebugTrace => {
                let on = boolean()?;
                set(Setting::Debug(on));
                set(Setting::Trace(on));
            }
            Action::User => set(Setting::User(value.clone())),
            Action::Pass => set(Setting::Pass(value.clone())),
            Action::Auth => set(Setting::Token(value.clone())),
            Action::PortsFileDir => set(Setting::PortsFileDir(PathBuf::from(&value))),
            Action::HttpPort => set(Setting::HttpPort(
                parse_monitor_port(&value).ok_or_else(invalid)?,
            )),
            Action::HttpsPort => set(Setting::HttpsPort(
                parse_monitor_port(&value).ok_or_else(invalid)?,
            )),
            Action::Tls => set(Setting::Tls(boolean()?)),
            Action::TlsVerify => set(Setting::TlsVerify(boolean()?)),
            Action::TlsCert => set(Setting::TlsCert(PathBuf::from(&value))),
            Action::TlsKey => set(Setting::TlsKey(PathBuf::from(&value))),
            Action::TlsCaCert => set(Setting::TlsCaCert(PathBuf::from(&value))),
            Action::ClusterListen => set(Setting::ClusterListen(value.clone())),
            Action::ClusterName => set(Setting::ClusterName(value.clone())),
            Action::Routes => set(Setting::Routes(value.clone())),
            Action::ClusterAdvertise => set(Setting::ClusterAdvertise(value.clone())),
            Action::NoAdvertise => set(Setting::NoAdvertise(boolean()?)),
            Action::ConnectRetries => set(Setting::ConnectRetries(
                parse_go_int(&value).ok_or_else(invalid)?,
            )),
            Action::Config => run.config = Some(PathBuf::from(&value)),
            Action::TestConfig => test_config = boolean()?,
            Action::Signal => signal = Some(parse_signal(&value)?),
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
            Action::StoreDir => set(Setting::StoreDir(PathBuf::from(&value))),
            Action::JetStream => set(Setting::JetStream(boolean()?)),
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
        return Err(unrecognized(&extra));
    }
    if let Some((signal, target)) = signal {
        return Ok(Command::Signal { signal, target });
    }
    if test_config {
        return Ok(Command::TestConfig(Box::new(run)));
    }
    Ok(Command::Run(Box::new(run)))
}

fn unrecognized(arg: &str) -> CliError {
    CliError {
        message: format!("nats-server: unrecognized command: {arg:?}"),
        show_usage: false,
    }
}

/// `<signal>[=<pid|pidfile>]`, with nats-server's signal names.
fn parse_signal(value: &str) -> Result<(&'static str, Option<String>), CliError> {
    let (name, target) = match value.split_once('=') {
        Some((name, target)) => (name, Some(target.to_string())),
        None => (value, None),
    };
    let signal = match name {
        "ldm" => "USR2",
        "stop" => "KILL",
        "quit" => "INT",
        "term" => "TERM",
        "reopen" => "USR1",
        "reload" => "HUP",
        _ => {
            return Err(CliError {
                message: format!("unknown signal {name:?}"),
                show_usage: false,
            })
        }
    };
    Ok((signal, target))
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

/// Go's `flag.Int`: `strconv.ParseInt(value, 0, 64)`, so `0x10`, `0o7` and `0b1` too.
fn parse_go_int(value: &str) -> Option<i64> {
    let (negative, digits) = match value.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, value.strip_prefix('+').unwrap_or(value)),
    };
    let digits = digits.replace('_', "");
    let lower = digits.to_ascii_lowercase();
    let (radix, body) = if let Some(hex) = lower.strip_prefix("0x") {
        (16, hex)
    } else if let Some(octal) = lower.strip_prefix("0o") {
        (8, octal)
    } else if let Some(binary) = lower.strip_prefix("0b") {
        (2, binary)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    let n = i64::from_str_radix(body, radix).ok()?;
    Some(if negative { -n } else { n })
}

/// A monitor port as nats-server keeps it: -1 is random, 0 is off.
fn parse_monitor_port(value: &str) -> Option<i32> {
    match value.parse::<i64>().ok()? {
        port @ -1..=65535 => Some(port as i32),
        _ => None,
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
    -c, --config <file>              Configuration file
    -t                               Test configuration and exit
    -sl,--signal <signal>[=<pid>]    Send signal to nats-server process (ldm, stop, quit, term, reopen, reload)
                                     <pid> can be either a PID (e.g. 1) or the path to a PID file (e.g. /var/run/nats-server.pid)
    -m, --http_port <port>           Use port for http monitoring (-1 for random)
    -ms,--https_port <port>          Use port for https monitoring (-1 for random)
        --ports_file_dir <dir>       Creates a ports file in the specified directory (<executable_name>_<pid>.ports).

Logging Options:
    -l, --log <file>                 File to redirect log output
    -T, --logtime                    Timestamp log entries (default: true)
        --logtime_utc                Timestamps in UTC (tern always logs in UTC)
    -D, --debug                      Enable debugging output
    -V, --trace                      Trace the raw protocol
    -DV                              Debug and trace

JetStream Options:
    -js, --jetstream                 Enable JetStream functionality
    -sd, --store_dir <dir>           Set the storage directory

Authorization Options:
        --user <user>                User required for connections
        --pass <password>            Password required for connections
        --auth <token>               Authorization token required for connections

TLS Options:
        --tls                        Enable TLS, do not verify clients (default: false)
        --tlscert <file>             Server certificate file
        --tlskey <file>              Private key for server certificate
        --tlsverify                  Enable TLS, verify client certificates
        --tlscacert <file>           Client certificate CA for verification

Cluster Options:
        --routes <rurl-1, rurl-2>    Routes to solicit and connect
        --cluster <cluster-url>      Cluster URL for solicited routes
        --cluster_name <string>      Cluster Name, if not set one will be dynamically generated
        --no_advertise <bool>        Do not advertise known cluster information to clients
        --cluster_advertise <string> Cluster URL to advertise to other servers
        --connect_retries <number>   For implicit routes, number of connect retries
        --cluster_listen <url>       Cluster url from which members can solicit routes

Common Options:
    -h, --help                       Show this message
    -v, --version                    Show version

Not supported yet (refused with a message): --client_advertise, -s, -r, --log_size_limit, --max_traced_msg_len, -js, --help_tls,
--profile.
";

/// The `-v` line: the nats-server level tern matches first, so that harnesses matching
/// `v<major>.<minor>.<patch>` read it.
pub fn version_line(program: &str) -> String {
    format!(
        "{program}: v{} (tern {})",
        crate::proto::protocol::NATS_SERVER_VERSION,
        env!("CARGO_PKG_VERSION")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Options {
        match parse(args.iter().copied()) {
            Ok(Command::Run(run)) => run.options(&mut Vec::new()).unwrap(),
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
    fn tls_flags() {
        let tls = |args: &[&str]| match parse(args.iter().copied()) {
            Ok(Command::Run(run)) => run.options(&mut Vec::new()).unwrap().tls,
            other => panic!("{other:?}"),
        };
        assert!(tls(&["--tls"]).is_some());
        let t = tls(&["-tlscert", "x.pem", "--tlsverify"]).unwrap();
        assert_eq!(t.cert_file.as_deref(), Some(Path::new("x.pem")));
        assert!(t.verify && t.defined_at.is_none());
        assert!(tls(&["--tls=false"]).is_none());
    }

    #[test]
    fn jetstream_and_store_dir_flags() {
        let js = |args: &[&str]| match parse(args.iter().copied()) {
            Ok(Command::Run(run)) => run.options(&mut Vec::new()).unwrap().jetstream,
            other => panic!("{other:?}"),
        };
        for args in [
            &["-js", "--store_dir", "/tmp/x"][..],
            &["-sd", "/tmp/x", "--jetstream"],
            &["-sd=/tmp/x", "-js=true"],
        ] {
            let js = js(args).expect("on");
            assert_eq!(
                js.store_dir.as_deref(),
                Some(Path::new("/tmp/x")),
                "{args:?}"
            );
            assert!(js.strict);
        }
        // The directory alone turns nothing on, and `-js=false` turns it off.
        assert!(js(&["-sd", "/tmp/x"]).is_none());
        assert!(js(&["-js", "-js=false"]).is_none());
        assert!(js(&["-js"]).unwrap().store_dir.is_none());
    }

    #[test]
    fn config_test_and_signal_flags() {
        match parse(["-c", "/etc/nats.conf", "-p", "5000"]) {
            Ok(Command::Run(run)) => {
                assert_eq!(run.config_file(), Some(Path::new("/etc/nats.conf")));
                assert!(matches!(run.settings[..], [Setting::Port(5000)]));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(["-t", "-c", "x.conf"]),
            Ok(Command::TestConfig(_))
        ));
        match parse(["--signal", "reload=/var/run/x.pid"]) {
            Ok(Command::Signal { signal, target }) => {
                assert_eq!(signal, "HUP");
                assert_eq!(target.as_deref(), Some("/var/run/x.pid"));
            }
            other => panic!("{other:?}"),
        }
        for (name, signal) in [
            ("ldm", "USR2"),
            ("stop", "KILL"),
            ("quit", "INT"),
            ("term", "TERM"),
            ("reopen", "USR1"),
        ] {
            match parse(["-sl", name]) {
                Ok(Command::Signal {
                    signal: got,
                    target: None,
                }) => assert_eq!(got, signal),
                other => panic!("{other:?}"),
            }
        }
        assert!(fails(&["--signal", "bogus"])
            .message
            .contains("unknown signal"));
        let o = run(&["--ports_file_dir", "/tmp/ports"]);
        assert_eq!(o.ports_file_dir, Some(PathBuf::from("/tmp/ports")));
        assert_eq!(run(&["-m", "-1"]).http_port, -1);
        assert_eq!(run(&["--http_port=8222"]).http_port, 8222);
        assert_eq!(run(&["-http_port", "0"]).http_port, 0);
        assert!(fails(&["-m", "70000"]).message.contains("invalid value"));
        assert_eq!(run(&["-ms", "-1"]).https_port, -1);
        assert_eq!(run(&["--https_port=8443"]).https_port, 8443);
    }

    #[test]
    fn a_password_needs_a_user() {
        match parse(["--pass", "p"]) {
            Ok(Command::Run(run)) => assert!(run.options(&mut Vec::new()).is_err()),
            other => panic!("{other:?}"),
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

    fn options_with(file: Option<&str>, args: &[&str]) -> Result<(Options, Vec<String>), String> {
        let mut run = match parse(args.iter().copied()) {
            Ok(Command::Run(run)) => run,
            other => panic!("{args:?}: {other:?}"),
        };
        let dir = std::env::temp_dir().join(format!("tern-cli-{}", std::process::id()));
        if let Some(text) = file {
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(format!("{}.conf", args.join("_").len()));
            std::fs::write(&path, text).unwrap();
            run.config = Some(path);
        }
        let mut warnings = Vec::new();
        run.options(&mut warnings).map(|o| (o, warnings))
    }

    #[test]
    fn cluster_flags() {
        let cluster = |args: &[&str]| run(args).cluster.expect("a cluster");
        let c = cluster(&["--cluster", "nats://127.0.0.1:6222"]);
        assert_eq!(
            (c.host.as_str(), c.port, c.listens),
            ("127.0.0.1", 6222, true)
        );
        assert_eq!(
            c,
            ClusterOptions {
                host: "127.0.0.1".into(),
                port: 6222,
                ..ClusterOptions::default()
            }
        );
        assert_eq!(cluster(&["-cluster_listen=nats://:-1"]).port, 0);
        let c = cluster(&[
            "--cluster",
            "nats://u:p@127.0.0.1:-1",
            "--cluster_name",
            "c1",
            "--routes",
            "nats://127.0.0.1:4, nats-route://ru:rp@h:5",
            "--cluster_advertise",
            "ad:1",
            "--no_advertise",
            "--connect_retries",
            "3",
        ]);
        assert_eq!(c.name.as_deref(), Some("c1"));
        assert_eq!(
            (c.username.as_deref(), c.password.as_deref()),
            (Some("u"), Some("p"))
        );
        assert_eq!(c.routes.len(), 2);
        assert_eq!((c.routes[1].host.as_str(), c.routes[1].port), ("h", 5));
        assert_eq!(c.routes[1].username.as_deref(), Some("ru"));
        assert_eq!(c.advertise.as_deref(), Some("ad:1"));
        assert!(c.no_advertise);
        assert_eq!(c.connect_retries, 3);
        assert_eq!(
            cluster(&["--cluster", "nats://h:1", "--connect_retries=0x10"]).connect_retries,
            16
        );
        assert!(fails(&["--connect_retries", "x"])
            .message
            .contains("invalid value \"x\" for flag -connect_retries"));
        // A name or routes without a cluster port: no clustering, as in nats-server.
        let (o, warnings) = options_with(None, &["--cluster_name", "c1"]).unwrap();
        assert!(o.cluster.is_none());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }

    #[test]
    fn cluster_flag_errors_as_nats_server_words_them() {
        let error = |args: &[&str]| options_with(None, args).map(|_| ()).unwrap_err();
        assert_eq!(
            error(&["--routes", "nats://127.0.0.1:4"]),
            "solicited routes require cluster capabilities, e.g. --cluster"
        );
        assert_eq!(
            error(&["--cluster", "nats://127.0.0.1:-1", "--cluster_name", "a b"]),
            "cluster name cannot contain spaces"
        );
        assert_eq!(
            error(&["--cluster", "nats://127.0.0.1"]),
            "address 127.0.0.1: missing port in address"
        );
        assert_eq!(
            error(&["--cluster", "nats://u@127.0.0.1:6222"]),
            "expected cluster password to be set"
        );
        // nats-server crashes on this one; tern says what the file would.
        assert_eq!(
            error(&["--cluster", "nats://127.0.0.1:-1", "--routes", "://bad"]),
            "error parsing route url [\"://bad\"]"
        );
    }

    #[test]
    fn cluster_flags_override_the_file() {
        let file = "cluster {\n  name: file\n  listen: 127.0.0.1:7000\n  authorization { user: fu, password: fp }\n  routes: [nats://f:1]\n  connect_retries: 2\n}\n";
        let (o, _) = options_with(Some(file), &[]).unwrap();
        let c = o.cluster.unwrap();
        assert_eq!(
            (c.name.as_deref(), c.port, c.connect_retries),
            (Some("file"), 7000, 2)
        );
        let (o, _) = options_with(
            Some(file),
            &[
                "--cluster",
                "nats://0.0.0.0:7001",
                "--cluster_name",
                "flag",
                "--routes",
                "nats://r:2",
            ],
        )
        .unwrap();
        let c = o.cluster.unwrap();
        assert_eq!((c.host.as_str(), c.port), ("0.0.0.0", 7001));
        assert_eq!(c.name.as_deref(), Some("flag"));
        assert_eq!(c.routes[0].host, "r");
        // The URL has no user: the file's route credentials are cleared, as nats-server does.
        assert_eq!((c.username, c.password), (None, None));
        // --connect_retries 0 and --no_advertise=false leave the file's values.
        let (o, _) = options_with(Some(file), &["--connect_retries", "0"]).unwrap();
        assert_eq!(o.cluster.unwrap().connect_retries, 2);
        // A file cluster without a port gets one from --cluster.
        let (o, _) = options_with(
            Some("cluster { name: c1 }\n"),
            &["--cluster", "nats://127.0.0.1:-1"],
        )
        .unwrap();
        assert_eq!(o.cluster.unwrap().name.as_deref(), Some("c1"));
        // --routes with a file cluster that names a host is accepted (and dials nothing).
        let (o, _) = options_with(
            Some("cluster { host: 127.0.0.1 }\n"),
            &["--routes", "nats://h:1"],
        )
        .unwrap();
        assert!(o.cluster.is_none());
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
        for not_yet in [&["--help_tls"][..], &["--client_advertise", "x"]] {
            let e = fails(not_yet);
            assert!(
                e.message.contains("does not support yet"),
                "{not_yet:?}: {e:?}"
            );
            assert!(!e.show_usage);
        }
    }
}
