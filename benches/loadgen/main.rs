//! Side-by-side load generator: tern against one or two reference nats-server binaries.
//!
//! ```text
//! cargo build --release --bin tern
//! cargo bench --bench loadgen -- [--quick] [--rounds N] [--only SUBSTRING]...
//!     [--tern PATH] [--nats PATH] [--nats-old PATH|none] [--timeout SECS] [--list]
//! cargo bench --bench loadgen -- --only cluster   # the two-node cluster scenarios
//! cargo bench --bench loadgen -- --only js --nats-old none   # JetStream (jetstream.rs)
//! cargo bench --bench loadgen -- --self-test   # the checks catch loss, duplicates, reordering
//! ```
//!
//! Every scenario runs against each server in turn (A/B/C, A/B/C, ... for `--rounds` rounds,
//! at least 3), each run on a freshly started server process on a free loopback port, killed
//! by its PID afterwards. The table shows per-metric medians over the rounds and, for each
//! reference server, the ratio oriented so that above 1 means tern is better. A run that loses,
//! duplicates or reorders a message, times out, or whose server dies marks the scenario FAILED
//! for that server, and no number is reported for it.
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

mod jetstream;
mod scenarios;
mod selftest;
mod server;
mod wire;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use scenarios::{Better, Metric, Scale, Scenario};
use server::{Server, Target};

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
    timeout: Option<Duration>,
    list: bool,
    self_test: bool,
}

const USAGE: &str = "usage: cargo bench --bench loadgen -- [--quick] [--rounds N (>= 3)] \
[--only SUBSTRING]... [--tern PATH] [--nats PATH] [--nats-old PATH|none] [--timeout SECS] \
[--list] [--self-test]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        quick: false,
        rounds: 3,
        only: Vec::new(),
        tern: PathBuf::from("target/release/tern"),
        nats: None,
        nats_old: Some(PathBuf::from("/usr/sbin/nats-server")),
        timeout: None,
        list: false,
        self_test: false,
    };
    let mut explicit_old = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--quick" => args.quick = true,
            "--list" => args.list = true,
            "--self-test" => args.self_test = true,
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
    Ok(args)
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
        Target {
            name: "tern".into(),
            binary: args.tern.clone(),
        },
        Target {
            name: nats_name(&nats),
            binary: nats.clone(),
        },
    ];
    if let Some(old) = &args.nats_old {
        let same = std::fs::canonicalize(old).ok() == std::fs::canonicalize(&nats).ok();
        if !same {
            let mut name = nats_name(old);
            if name == list[1].name {
                name.push_str(" (old)");
            }
            list.push(Target {
                name,
                binary: old.clone(),
            });
        }
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
    let started = if scenario.cluster {
        Server::start_cluster(target, log, scenario.config)
    } else {
        Server::start(target, log, scenario.config, store.as_deref())
    };
    let server = match started {
        Ok(server) => Arc::new(server),
        Err(e) => {
            return Run { outcome: Err(e) };
        }
    };
    let (tx, rx) = mpsc::channel();
    let run = scenario.run.clone();
    let on_thread = server.clone();
    let worker = std::thread::spawn(move || {
        let outcome = run(&on_thread, scale);
        let _ = tx.send(outcome);
    });
    let outcome = match rx.recv_timeout(timeout) {
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
    if let Some(store) = &store {
        let _ = std::fs::remove_dir_all(store);
    }
    Run { outcome }
}

fn scenarios_metric(name: &str, value: f64, unit: &'static str) -> Metric {
    Metric {
        name: name.into(),
        value,
        unit,
        better: Better::Lower,
    }
}

/// Per server: the metrics' values over the rounds, or why the scenario FAILED.
#[derive(Default)]
struct Results {
    /// Metric name -> values, in the order metrics were first seen.
    values: Vec<(String, &'static str, Better, Vec<f64>)>,
    failed: Option<String>,
}

impl Results {
    fn add(&mut self, metrics: Vec<Metric>) {
        for m in metrics {
            match self.values.iter_mut().find(|(name, ..)| *name == m.name) {
                Some((.., values)) => values.push(m.value),
                None => self.values.push((m.name, m.unit, m.better, vec![m.value])),
            }
        }
    }

    fn median(&self, name: &str) -> Option<f64> {
        let (.., values) = self.values.iter().find(|(n, ..)| n == name)?;
        let mut v = values.clone();
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        Some(if v.len() % 2 == 0 {
            (v[mid - 1] + v[mid]) / 2.0
        } else {
            v[mid]
        })
    }
}

fn format_value(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        let digits = format!("{:.0}", a);
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if v < 0.0 {
            format!("-{out}")
        } else {
            out
        }
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
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
    let targets = match targets(&args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
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
    // Scenario index -> server index -> results.
    let mut table: Vec<Vec<Results>> = Vec::new();
    let mut failures: BTreeMap<(usize, usize), Vec<String>> = BTreeMap::new();
    for (si, scenario) in scenarios.iter().enumerate() {
        let mut per_server: Vec<Results> = targets.iter().map(|_| Results::default()).collect();
        for round in 0..args.rounds {
            for (ti, target) in targets.iter().enumerate() {
                if per_server[ti].failed.is_some() {
                    continue;
                }
                let log = log_dir.join(format!(
                    "{}-{}-r{}.log",
                    slug(&target.name),
                    slug(&scenario.name),
                    round + 1
                ));
                let logs = if scenario.cluster {
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
                            "[{:>5.1}s] {} | {} | round {}: ok in {:.2}s",
                            wall.elapsed().as_secs_f64(),
                            scenario.name,
                            target.name,
                            round + 1,
                            took.as_secs_f64()
                        );
                        for log in &logs {
                            let _ = std::fs::remove_file(log);
                        }
                        per_server[ti].add(metrics);
                    }
                    Err(e) => {
                        eprintln!(
                            "[{:>5.1}s] {} | {} | round {}: FAILED: {e} (server log {shown})",
                            wall.elapsed().as_secs_f64(),
                            scenario.name,
                            target.name,
                            round + 1,
                        );
                        failures
                            .entry((si, ti))
                            .or_default()
                            .push(format!("round {}: {e} (server log: {shown})", round + 1,));
                        per_server[ti].failed = Some(e);
                    }
                }
            }
        }
        table.push(per_server);
    }
    let wall_time = wall.elapsed();

    print_table(&args, &targets, &scenarios, &table);
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
        "Total wall time: {:.1} s ({} scenarios x {} servers x {} rounds)",
        wall_time.as_secs_f64(),
        scenarios.len(),
        targets.len(),
        args.rounds
    );
}

fn print_table(args: &Args, targets: &[Target], scenarios: &[Scenario], table: &[Vec<Results>]) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "Load generator, {} mode, {} rounds interleaved per scenario, medians, {cores} cores.",
        if args.quick { "--quick" } else { "full" },
        args.rounds
    );
    for t in targets {
        println!("- {}: {}", t.name, t.binary.display());
    }
    println!(
        "\"tern vs X\" is tern/X for higher-is-better metrics and X/tern for lower-is-better \
         ones: above 1 means tern is better."
    );
    println!();
    let mut header = "| scenario | metric | unit |".to_string();
    let mut rule = "|---|---|---|".to_string();
    for (i, t) in targets.iter().enumerate() {
        header.push_str(&format!(" {} |", t.name));
        rule.push_str("---:|");
        if i > 0 {
            header.push_str(&format!(
                " tern vs {} |",
                t.name.trim_start_matches("nats-server ")
            ));
            rule.push_str("---:|");
        }
    }
    println!("{header}");
    println!("{rule}");
    for (scenario, per_server) in scenarios.iter().zip(table) {
        // Metric names in first-seen order over all servers.
        let mut names: Vec<(String, &'static str, Better)> = Vec::new();
        for r in per_server {
            for (name, unit, better, _) in &r.values {
                if !names.iter().any(|(n, ..)| n == name) {
                    names.push((name.clone(), unit, *better));
                }
            }
        }
        if names.is_empty() {
            names.push(("(all runs)".into(), "", Better::Higher));
        }
        for (row, (name, unit, better)) in names.iter().enumerate() {
            let label = if row == 0 { scenario.name.as_str() } else { "" };
            let mut line = format!("| {label} | {name} | {unit} |");
            let value = |r: &Results| -> Option<f64> {
                if r.failed.is_some() {
                    None
                } else {
                    r.median(name)
                }
            };
            let tern = value(&per_server[0]);
            for (i, r) in per_server.iter().enumerate() {
                let cell = match (&r.failed, value(r)) {
                    (Some(_), _) => "FAILED".to_string(),
                    (None, Some(v)) => format_value(v),
                    (None, None) => "-".to_string(),
                };
                line.push_str(&format!(" {cell} |"));
                if i > 0 {
                    let ratio = match (tern, value(r)) {
                        (Some(t), Some(o)) if t > 0.0 && o > 0.0 => {
                            let x = match better {
                                Better::Higher => t / o,
                                Better::Lower => o / t,
                            };
                            format!("{x:.2}x")
                        }
                        _ => "-".to_string(),
                    };
                    line.push_str(&format!(" {ratio} |"));
                }
            }
            println!("{line}");
        }
    }
}
