//! Side-by-side load generator: tern against one or two reference nats-server binaries.
//!
//! ```text
//! cargo build --release --bin tern
//! cargo bench --bench loadgen -- [--quick] [--rounds N] [--only SUBSTRING]...
//!     [--tern PATH] [--nats PATH] [--nats-old PATH|none] [--no-relay] [--timeout SECS] [--list]
//!     [--sweep] [--write 64k,256k] [--sockbuf default,4m] [--sndbuf ..] [--rcvbuf ..]
//!     [--pubs 1,2] [--cachegrind]
//! cargo bench --bench loadgen -- --only cluster   # the two-node cluster scenarios
//! cargo bench --bench loadgen -- --only leafnode  # a hub and its leafnode, both directions
//! cargo bench --bench loadgen -- --only js --nats-old none   # JetStream (jetstream.rs)
//! cargo bench --bench loadgen -- --self-test   # the checks catch loss, duplicates, reordering
//! cargo bench --bench loadgen -- --only tls     # over TLS (tls.rs: pinned suite, certs made here)
//! cargo bench --bench loadgen -- --only many --only cores --only "paced churn"   # scaling.rs
//! ```
//!
//! The generator's own settings (`wire::Tune`): bytes per publishing write, `SO_SNDBUF` and
//! `SO_RCVBUF` of every connection it opens, and how many connections share one publisher's
//! messages. Given more than one value (or `--sweep`), every combination runs on every server
//! and each server is shown at its best, the setting that gave it listed below the table. The
//! defaults are what got the most out of nats-server.
//!
//! Every run also reports the generator's own CPU time and its busiest thread's share of a
//! core (`usage.rs`); runs where a generator thread was saturated are listed as
//! generator-bound. The `relay` column (`relay.rs`, this binary re-run as a trivial byte
//! copier) is the ceiling of the 1:1 scenarios. `--cachegrind` runs the servers under
//! valgrind's cachegrind and reports instructions per message, a figure a busy machine does
//! not move.
//!
//! Every scenario runs against each server in turn (A/B/C, A/B/C, ... for `--rounds` rounds,
//! at least 3), each run on a freshly started server process on a free loopback port, killed
//! by its PID afterwards. The table shows per-metric medians over the rounds and, for each
//! reference server, the ratio oriented so that above 1 means tern is better. A run that loses,
//! duplicates or reorders a message, times out, or whose server dies marks the scenario FAILED
//! for that server, and no number is reported for it.
//!
//! The `tls:` scenarios run every server with the same certificate (made at run time) and
//! every client offering only TLS 1.3, TLS_AES_128_GCM_SHA256 and X25519 (`tls.rs`). The
//! `cores 1:` / `cores 2:` scenarios start the server under `taskset -c 1` / `taskset -c 0,1`
//! (tern's tokio and Go's runtime both size their thread pools from the affinity mask) and
//! the report adds each server's two-core over one-core ratio.
//!
//! The `cluster A -> B` scenarios run each server as a cluster of two processes of the same
//! binary (tern with tern, nats-server with nats-server, each with its default route settings):
//! node A, then node B routing to A (A's route port read from its log), used once a message
//! published on A reaches a subscription on B. Publishers and the requester connect to A,
//! subscribers and the responder to B, each waiting until its interest is known on the other
//! node. Both are killed by PID afterwards; CPU time and peak RSS are summed over the two.
//!
//! The 5000-idle-connections scenario needs about 10,000 file descriptors in this process and
//! 5,000 in the server; the generator raises its soft `RLIMIT_NOFILE` to the hard limit (up to
//! 65,536) itself, and the servers inherit it. Where the hard limit is lower, run the bench
//! under `bash -c 'ulimit -n 65536; cargo bench --bench loadgen -- --quick'` as root.

mod conn;
mod fan;
mod jetstream;
mod relay;
mod report;
mod scaling;
mod scenarios;
mod selftest;
mod server;
mod tls;
mod usage;
mod wire;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use report::{
    print_core_scaling, print_generator_bound, print_settings, print_table, Results,
    ScenarioResults,
};
use scenarios::{Better, Metric, Scale, Scenario};
use server::{Server, Target};
use wire::Tune;

/// How long one run may take before it is FAILED (the server is then killed).
const QUICK_RUN_TIMEOUT: Duration = Duration::from_secs(30);
const FULL_RUN_TIMEOUT: Duration = Duration::from_secs(600);

struct Args {
    quick: bool,
    rounds: usize,
    only: Vec<String>,
    tern: PathBuf,
    nats: Option<PathBuf>,
    nats_old: Option<PathBuf>,
    relay: bool,
    timeout: Option<Duration>,
    list: bool,
    self_test: bool,
    sweep: bool,
    write: Vec<usize>,
    sockbuf: Vec<usize>,
    sndbuf: Vec<usize>,
    rcvbuf: Vec<usize>,
    pubs: Vec<usize>,
    cachegrind: bool,
}

const USAGE: &str = "usage: cargo bench --bench loadgen -- [--quick] [--rounds N (>= 3)] \
[--only SUBSTRING]... [--tern PATH] [--nats PATH] [--nats-old PATH|none] [--no-relay] \
[--timeout SECS] [--list] [--self-test] [--sweep] [--write SIZES] [--sockbuf SIZES] \
[--sndbuf SIZES] [--rcvbuf SIZES] [--pubs COUNTS] [--cachegrind]
SIZES: comma-separated, e.g. 64k,256k,1m (0 or default: the kernel's own buffer size).
More than one value anywhere, or --sweep, runs every combination on every server and reports \
each server's best (--sweep fills the lists not given with write 64k,256k,1m, sockbuf \
default,4m, pubs 1,2).
--cachegrind runs every server under `valgrind --tool=cachegrind` and reports the instructions \
it executed per message (less an idle start and stop), robust to a busy machine; use --quick.";

/// `64k` -> 65536; `default` -> 0.
fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim().to_lowercase();
    if t == "default" {
        return Ok(0);
    }
    let (digits, unit) = match t.strip_suffix('k') {
        Some(d) => (d, 1024),
        None => match t.strip_suffix('m') {
            Some(d) => (d, 1 << 20),
            None => (t.as_str(), 1),
        },
    };
    digits
        .parse::<usize>()
        .map(|n| n * unit)
        .map_err(|_| format!("not a size: {text:?}"))
}

fn parse_list(text: &str) -> Result<Vec<usize>, String> {
    text.split(',').map(parse_size).collect()
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        quick: false,
        rounds: 3,
        only: Vec::new(),
        tern: PathBuf::from("target/release/tern"),
        nats: None,
        nats_old: Some(PathBuf::from("/usr/sbin/nats-server")),
        relay: true,
        timeout: None,
        list: false,
        self_test: false,
        sweep: false,
        write: Vec::new(),
        sockbuf: Vec::new(),
        sndbuf: Vec::new(),
        rcvbuf: Vec::new(),
        pubs: Vec::new(),
        cachegrind: false,
    };
    let mut explicit_old = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--quick" => args.quick = true,
            "--list" => args.list = true,
            "--self-test" => args.self_test = true,
            "--sweep" => args.sweep = true,
            "--no-relay" => args.relay = false,
            "--cachegrind" => args.cachegrind = true,
            "--write" => args.write = parse_list(&value("--write")?)?,
            "--sockbuf" => args.sockbuf = parse_list(&value("--sockbuf")?)?,
            "--sndbuf" => args.sndbuf = parse_list(&value("--sndbuf")?)?,
            "--rcvbuf" => args.rcvbuf = parse_list(&value("--rcvbuf")?)?,
            "--pubs" => args.pubs = parse_list(&value("--pubs")?)?,
            "--rounds" => {
                args.rounds = value("--rounds")?
                    .parse()
                    .map_err(|_| "--rounds takes a number".to_string())?;
                if args.rounds < 3 {
                    return Err("--rounds must be at least 3".into());
                }
            }
            "--only" => args.only.push(value("--only")?.to_lowercase()),
            "--tern" => args.tern = value("--tern")?.into(),
            "--nats" => args.nats = Some(value("--nats")?.into()),
            "--nats-old" => {
                let v = value("--nats-old")?;
                explicit_old = true;
                args.nats_old = (v != "none").then(|| v.into());
            }
            "--timeout" => {
                let secs: u64 = value("--timeout")?
                    .parse()
                    .map_err(|_| "--timeout takes seconds".to_string())?;
                args.timeout = Some(Duration::from_secs(secs));
            }
            // `cargo bench` passes --bench to harness-less benches.
            "--bench" => {}
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if !explicit_old && !args.nats_old.as_deref().is_some_and(Path::exists) {
        args.nats_old = None;
    }
    if args.pubs.contains(&0) || args.write.contains(&0) {
        return Err("--pubs and --write take values above 0".into());
    }
    Ok(args)
}

/// Every combination of the tuning lists (with `--sweep`, the lists not given take the sweep's
/// small default set; otherwise `Tune::DEFAULT`'s value).
fn settings(args: &Args) -> Vec<Tune> {
    let d = Tune::DEFAULT;
    let or = |list: &[usize], sweep: &[usize], default: usize| -> Vec<usize> {
        match (list.is_empty(), args.sweep) {
            (false, _) => list.to_vec(),
            (true, true) => sweep.to_vec(),
            (true, false) => vec![default],
        }
    };
    let write = or(&args.write, &[64 << 10, 256 << 10, 1 << 20], d.write);
    let pubs = or(&args.pubs, &[1, 2], d.pubs);
    // Socket buffers: `--sockbuf` values set both; `--sndbuf` x `--rcvbuf` otherwise.
    let buffers: Vec<(usize, usize)> = if !args.sndbuf.is_empty() || !args.rcvbuf.is_empty() {
        let snd = or(&args.sndbuf, &[], d.sndbuf);
        let rcv = or(&args.rcvbuf, &[], d.rcvbuf);
        let snd = if snd.is_empty() { vec![d.sndbuf] } else { snd };
        let rcv = if rcv.is_empty() { vec![d.rcvbuf] } else { rcv };
        snd.iter()
            .flat_map(|&s| rcv.iter().map(move |&r| (s, r)))
            .collect()
    } else {
        or(&args.sockbuf, &[0, 4 << 20], d.sndbuf)
            .into_iter()
            .map(|b| {
                (
                    b,
                    if args.sockbuf.is_empty() && !args.sweep {
                        d.rcvbuf
                    } else {
                        b
                    },
                )
            })
            .collect()
    };
    let mut all = Vec::new();
    for &w in &write {
        for &(sndbuf, rcvbuf) in &buffers {
            for &p in &pubs {
                all.push(Tune {
                    write: w,
                    sndbuf,
                    rcvbuf,
                    pubs: p,
                });
            }
        }
    }
    all
}

/// The nats-server binary to use: `--nats`, else `NATS_SERVER_BIN`, else `nats-server` on
/// PATH (seeing through a pyenv shim to the real binary, so that the PID we measure is the
/// server's from the start).
fn find_nats(flag: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(path) = flag {
        return Ok(path);
    }
    if let Some(path) = std::env::var_os("NATS_SERVER_BIN").filter(|p| !p.is_empty()) {
        return Ok(path.into());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
        .ok_or("no nats-server: pass --nats PATH or set NATS_SERVER_BIN")?;
    let is_script = std::fs::read(&found).is_ok_and(|b| b.starts_with(b"#!"));
    if is_script {
        if let Ok(out) = Command::new("pyenv")
            .args(["which", "nats-server"])
            .output()
        {
            let real = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if out.status.success() && Path::new(&real).is_file() {
                return Ok(real.into());
            }
        }
    }
    Ok(found)
}

/// `nats-server 2.15.1` from `--version`'s `nats-server: v2.15.1`.
fn nats_name(binary: &Path) -> String {
    Command::new(binary)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if !text.contains("nats-server") {
                // Another tern build, say: named after its file.
                return Some(binary.file_name()?.to_string_lossy().into_owned());
            }
            let version = text.split_whitespace().last()?.trim_start_matches('v');
            Some(format!("nats-server {version}"))
        })
        .unwrap_or_else(|| format!("nats-server ({})", binary.display()))
}

fn targets(args: &Args) -> Result<Vec<Target>, String> {
    if !args.tern.is_file() {
        return Err(format!(
            "no tern binary at {}: run `cargo build --release --bin tern` or pass --tern PATH",
            args.tern.display()
        ));
    }
    let nats = find_nats(args.nats.clone())?;
    let mut list = vec![
        Target::server("tern", &args.tern),
        Target::server(&nats_name(&nats), &nats),
    ];
    if let Some(old) = &args.nats_old {
        let same = std::fs::canonicalize(old).ok() == std::fs::canonicalize(&nats).ok();
        if !same {
            let mut name = nats_name(old);
            if name == list[1].name {
                name.push_str(" (old)");
            }
            list.push(Target::server(&name, old));
        }
    }
    if args.cachegrind {
        for t in &mut list {
            t.cachegrind = true;
        }
    }
    if args.relay && !args.cachegrind {
        let me = std::env::current_exe().map_err(|e| format!("the relay: {e}"))?;
        list.push(Target {
            name: "relay".into(),
            binary: me,
            args: vec!["--relay-serve".into()],
            relay: true,
            cachegrind: false,
            cpus: None,
        });
    }
    Ok(list)
}

/// What one run of one scenario on one server gave.
struct Run {
    outcome: Result<Vec<Metric>, String>,
}

/// Starts a fresh server (a fresh two-node cluster for a cluster scenario), runs the scenario
/// on it within `timeout`, adds the server's CPU seconds and peak RSS (summed over a cluster's
/// nodes) to the metrics, and kills the server.
fn run_once(
    target: &Target,
    scenario: &Scenario,
    scale: Scale,
    timeout: Duration,
    log: &Path,
) -> Run {
    // A JetStream scenario's store directory, beside the log, empty at start and removed after.
    let store = scenario.jetstream.then(|| log.with_extension("store"));
    if let Some(store) = &store {
        let _ = std::fs::remove_dir_all(store);
    }
    let config = match (scenario.tls, scenario.config) {
        (false, config) => Ok(config.map(String::from)),
        (true, config) => tls::server_block()
            .map(|block| Some(format!("{}\n{block}", config.unwrap_or_default()))),
    };
    let target = &Target {
        cpus: scenario.cpus,
        ..target.clone()
    };
    let started = config.and_then(|config| {
        if scenario.cluster {
            Server::start_cluster(target, log, config.as_deref())
        } else if let Some(a_is_leaf) = scenario.leaf {
            Server::start_leaf(target, log, config.as_deref(), a_is_leaf)
        } else {
            Server::start(target, log, config.as_deref(), store.as_deref())
        }
    });
    let server = match started {
        Ok(server) => Arc::new(server),
        Err(e) => {
            return Run { outcome: Err(e) };
        }
    };
    let sampler = usage::Sampler::start();
    let (tx, rx) = mpsc::channel();
    let run = scenario.run.clone();
    let on_thread = server.clone();
    let worker = std::thread::spawn(move || {
        let outcome = run(&on_thread, scale);
        let _ = tx.send(outcome);
    });
    let mut return_err = None;
    let received = rx.recv_timeout(timeout);
    let used = sampler.finish();
    let outcome = match received {
        Ok(Ok(mut metrics)) => {
            if server.is_running() {
                let both = if server.node_count() > 1 {
                    " (both nodes)"
                } else {
                    ""
                };
                metrics.push(scenarios_metric(
                    &format!("server CPU time{both}"),
                    server.cpu_seconds(),
                    "s",
                ));
                metrics.push(scenarios_metric(
                    &format!("server peak RSS{both}"),
                    server.peak_rss_kib() as f64 / 1024.0,
                    "MiB",
                ));
                if target.cachegrind {
                    let published = metrics
                        .iter()
                        .find(|m| m.name == scenarios::PUBLISHED)
                        .map(|m| m.value);
                    match (server.instructions(), published) {
                        (Some(total), Some(n)) if n > 0.0 => {
                            let idle = idle_instructions(target, log);
                            metrics.push(scenarios_metric(
                                "server instructions per message published",
                                (total - idle).max(0.0) / n,
                                "instr",
                            ));
                        }
                        (None, _) => return_err = Some("no cachegrind count".to_string()),
                        _ => {}
                    }
                }
                metrics.push(Metric {
                    better: Better::Info,
                    ..scenarios_metric(GENERATOR_CPU, used.cpu_seconds, "s")
                });
                metrics.push(Metric {
                    better: Better::Info,
                    ..scenarios_metric(GENERATOR_BUSIEST, used.busiest * 100.0, "% of a core")
                });
                Ok(metrics)
            } else {
                Err("the server exited during the run".to_string())
            }
        }
        Ok(Err(e)) => Err(if server.is_running() {
            e
        } else {
            format!("{e} (the server had exited)")
        }),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err("the scenario panicked".to_string()),
        Err(mpsc::RecvTimeoutError::Timeout) => {
            Err(format!("no result within {timeout:?}: timed out"))
        }
    };
    // Killing the server ends every connection, so a scenario thread still blocked on one
    // returns at once.
    server.kill();
    let _ = worker.join();
    let outcome = match return_err {
        Some(e) => Err(e),
        None => outcome,
    };
    if let Some(store) = &store {
        let _ = std::fs::remove_dir_all(store);
    }
    Run { outcome }
}

/// Instructions a server executes to start, take one connection's CONNECT and PING, and stop
/// (under cachegrind), measured once per binary: subtracted from a run's count.
fn idle_instructions(target: &Target, log: &Path) -> f64 {
    static IDLE: std::sync::Mutex<Vec<(PathBuf, f64)>> = std::sync::Mutex::new(Vec::new());
    let mut known = IDLE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, n)) = known.iter().find(|(b, _)| *b == target.binary) {
        return *n;
    }
    let idle_log = log.with_file_name(format!("{}-idle.log", slug(&target.name)));
    let n = Server::start(target, &idle_log, None, None)
        .ok()
        .and_then(|server| {
            let mut conn = wire::connect(server.port).ok()?;
            wire::barrier(&mut conn).ok()?;
            drop(conn);
            server.instructions()
        })
        .unwrap_or(0.0);
    let _ = std::fs::remove_file(&idle_log);
    known.push((target.binary.clone(), n));
    n
}

const GENERATOR_CPU: &str = "generator CPU time";
const GENERATOR_BUSIEST: &str = "generator's busiest thread";

fn scenarios_metric(name: &str, value: f64, unit: &'static str) -> Metric {
    Metric {
        name: name.into(),
        value,
        unit,
        better: Better::Lower,
    }
}

fn slug(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("--relay-serve") {
        if let Err(e) = relay::serve(&argv[2..]) {
            eprintln!("relay: {e}");
            std::process::exit(1);
        }
        return;
    }
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if args.self_test {
        if let Err(e) = selftest::run() {
            eprintln!("{e}");
            std::process::exit(1);
        }
        return;
    }
    let scale = Scale { quick: args.quick };
    let scenarios: Vec<Scenario> = scenarios::all(scale)
        .into_iter()
        .filter(|s| {
            args.only.is_empty() || args.only.iter().any(|o| s.name.to_lowercase().contains(o))
        })
        .collect();
    if args.list {
        for s in &scenarios {
            println!("{}", s.name);
        }
        return;
    }
    if scenarios.is_empty() {
        eprintln!("no scenario matches --only {:?}", args.only);
        std::process::exit(2);
    }
    let mut targets = match targets(&args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if !scenarios.iter().any(|s| s.relay) {
        targets.retain(|t| !t.relay);
    }
    let settings = settings(&args);
    let open_files = server::raise_open_files(65_536);
    if open_files < 12_000 {
        eprintln!(
            "warning: only {open_files} open files allowed; the 5000-idle-connections scenario \
             may fail (run under `ulimit -n 65536`)"
        );
    }
    let timeout = args.timeout.unwrap_or(if args.quick {
        QUICK_RUN_TIMEOUT
    } else {
        FULL_RUN_TIMEOUT
    });
    let log_dir = PathBuf::from("target/loadgen-logs");
    let _ = std::fs::create_dir_all(&log_dir);

    let wall = Instant::now();
    let mut table: Vec<ScenarioResults> = Vec::new();
    // (scenario, server) -> what failed, per setting.
    let mut failures: BTreeMap<(usize, usize), Vec<String>> = BTreeMap::new();
    for (si, scenario) in scenarios.iter().enumerate() {
        let mut results = ScenarioResults {
            per: targets
                .iter()
                .map(|_| settings.iter().map(|_| Results::default()).collect())
                .collect(),
        };
        for round in 0..args.rounds {
            for (ti, target) in targets.iter().enumerate() {
                if target.relay && !scenario.relay {
                    continue;
                }
                for (k, tune) in settings.iter().enumerate() {
                    // The relay has one publisher whatever the setting says.
                    if results.per[ti][k].failed.is_some() || (target.relay && tune.pubs > 1) {
                        continue;
                    }
                    wire::set_tune(*tune);
                    let setting = if settings.len() > 1 {
                        format!(" | {}", tune.describe())
                    } else {
                        String::new()
                    };
                    let log = log_dir.join(format!(
                        "{}-{}-r{}{}.log",
                        slug(&target.name),
                        slug(&scenario.name),
                        round + 1,
                        if settings.len() > 1 {
                            format!("-s{k}")
                        } else {
                            String::new()
                        }
                    ));
                    let logs = if scenario.cluster || scenario.leaf.is_some() {
                        server::cluster_logs(&log).to_vec()
                    } else {
                        vec![log.clone()]
                    };
                    let shown = logs
                        .iter()
                        .map(|l| l.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ");
                    let started = Instant::now();
                    let run = run_once(target, scenario, scale, timeout, &log);
                    let took = started.elapsed();
                    match run.outcome {
                        Ok(metrics) => {
                            eprintln!(
                                "[{:>5.1}s] {} | {}{setting} | round {}: ok in {:.2}s",
                                wall.elapsed().as_secs_f64(),
                                scenario.name,
                                target.name,
                                round + 1,
                                took.as_secs_f64()
                            );
                            for log in &logs {
                                let _ = std::fs::remove_file(log);
                            }
                            results.per[ti][k].add(metrics);
                        }
                        Err(e) => {
                            eprintln!(
                                "[{:>5.1}s] {} | {}{setting} | round {}: FAILED: {e} (server \
                                 log {shown})",
                                wall.elapsed().as_secs_f64(),
                                scenario.name,
                                target.name,
                                round + 1,
                            );
                            failures.entry((si, ti)).or_default().push(format!(
                                "round {}{setting}: {e} (server log: {shown})",
                                round + 1,
                            ));
                            results.per[ti][k].failed = Some(e);
                        }
                    }
                }
            }
        }
        for line in report::scenario_rows(&targets, scenario, &results) {
            eprintln!("{line}");
        }
        table.push(results);
    }
    let wall_time = wall.elapsed();

    print_table(&args, &targets, &scenarios, &table);
    print_core_scaling(&targets, &scenarios, &table);
    print_generator_bound(&targets, &scenarios, &table);
    if settings.len() > 1 {
        print_settings(&targets, &scenarios, &table, &settings);
    } else {
        println!();
        println!("Generator setting: {}.", settings[0].describe());
    }
    if !failures.is_empty() {
        println!();
        println!("Failures:");
        for ((si, ti), reasons) in &failures {
            for reason in reasons {
                println!(
                    "- {} on {}: {reason}",
                    scenarios[*si].name, targets[*ti].name
                );
            }
        }
    }
    println!();
    println!(
        "Total wall time: {:.1} s ({} scenarios x {} servers x {} settings x {} rounds)",
        wall_time.as_secs_f64(),
        scenarios.len(),
        targets.len(),
        settings.len(),
        args.rounds
    );
}
