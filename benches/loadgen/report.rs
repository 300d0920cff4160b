//! The report: per-metric medians over the rounds, each server at its best setting, the
//! ratios against tern, the generator-bound runs and the settings each server did best with.

use crate::scenarios::{Better, Metric, Scenario};
use crate::server::Target;
use crate::wire::Tune;
use crate::{usage, Args, GENERATOR_BUSIEST};

/// Per server: the metrics' values over the rounds, or why the scenario FAILED.
#[derive(Default)]
pub struct Results {
    /// Metric name -> values, in the order metrics were first seen.
    pub values: Vec<(String, &'static str, Better, Vec<f64>)>,
    pub failed: Option<String>,
}

impl Results {
    pub fn add(&mut self, metrics: Vec<Metric>) {
        for m in metrics {
            match self.values.iter_mut().find(|(name, ..)| *name == m.name) {
                Some((.., values)) => values.push(m.value),
                None => self.values.push((m.name, m.unit, m.better, vec![m.value])),
            }
        }
    }

    pub fn median(&self, name: &str) -> Option<f64> {
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

pub fn format_value(v: f64) -> String {
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

/// One scenario's results: per server, per setting.
pub struct ScenarioResults {
    pub per: Vec<Vec<Results>>,
}

impl ScenarioResults {
    /// The setting that gave server `ti` its best value of the scenario's first metric, if
    /// any run of it succeeded.
    pub fn best(&self, ti: usize) -> Option<usize> {
        let runs = &self.per[ti];
        let primary = runs
            .iter()
            .find(|r| r.failed.is_none() && !r.values.is_empty())
            .map(|r| (r.values[0].0.clone(), r.values[0].2))?;
        let (name, better) = primary;
        let score = |r: &Results| {
            let v = r.median(&name)?;
            Some(if better == Better::Lower { -v } else { v })
        };
        runs.iter()
            .enumerate()
            .filter(|(_, r)| r.failed.is_none())
            .filter_map(|(k, r)| score(r).map(|v| (k, v)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(k, _)| k)
    }

    /// What the table shows for server `ti`: its best setting's results, or (all failed) the
    /// first setting's failure.
    pub fn shown(&self, ti: usize) -> &Results {
        &self.per[ti][self.best(ti).unwrap_or(0)]
    }
}

/// The runs whose generator had a thread at `usage::BOUND` or more of a core (median over
/// the rounds): there the generator, not the server, may have been the limit.
pub fn print_generator_bound(
    targets: &[Target],
    scenarios: &[Scenario],
    table: &[ScenarioResults],
) {
    let mut bound = Vec::new();
    for (scenario, results) in scenarios.iter().zip(table) {
        for (ti, t) in targets.iter().enumerate() {
            let r = results.shown(ti);
            if r.failed.is_some() {
                continue;
            }
            if let Some(busy) = r.median(GENERATOR_BUSIEST) {
                if busy >= usage::BOUND * 100.0 {
                    bound.push(format!(
                        "- {} on {}: {busy:.0}% of a core",
                        scenario.name, t.name
                    ));
                }
            }
        }
    }
    println!();
    if bound.is_empty() {
        println!(
            "Generator-bound runs: none (no generator thread at {:.0}% of a core or more).",
            usage::BOUND * 100.0
        );
    } else {
        println!(
            "Generator-bound runs (a generator thread at {:.0}% of a core or more: the \
             generator, not the server, was the limit):",
            usage::BOUND * 100.0
        );
        for line in bound {
            println!("{line}");
        }
    }
}

/// Per scenario and server: the setting that gave the best first metric, and what each
/// setting gave.
pub fn print_settings(
    targets: &[Target],
    scenarios: &[Scenario],
    table: &[ScenarioResults],
    settings: &[Tune],
) {
    println!();
    println!("Each server's best setting (by the scenario's first metric, median):");
    println!();
    println!("| scenario | server | best setting | every setting tried |");
    println!("|---|---|---|---|");
    for (scenario, results) in scenarios.iter().zip(table) {
        for (ti, t) in targets.iter().enumerate() {
            let runs = &results.per[ti];
            let Some(best) = results.best(ti) else {
                continue;
            };
            let Some((name, ..)) = runs[best].values.first() else {
                continue;
            };
            let tried = runs
                .iter()
                .zip(settings)
                .map(|(r, tune)| {
                    let v = match (&r.failed, r.median(name)) {
                        (Some(_), _) => "FAILED".to_string(),
                        (None, Some(v)) => format_value(v),
                        (None, None) => "-".to_string(),
                    };
                    format!("{}: {v}", tune.describe())
                })
                .collect::<Vec<_>>()
                .join("; ");
            println!(
                "| {} | {} | {} | {tried} |",
                scenario.name,
                t.name,
                settings[best].describe()
            );
        }
    }
}

pub fn print_table(
    args: &Args,
    targets: &[Target],
    scenarios: &[Scenario],
    table: &[ScenarioResults],
) {
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
         ones: above 1 means tern is better. \"tern vs relay\" is tern's share of the relay \
         (bytes copied from the publisher's socket to the subscriber's, unparsed): the \
         ceiling on this machine."
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
    for (scenario, results) in scenarios.iter().zip(table) {
        for line in scenario_rows(targets, scenario, results) {
            println!("{line}");
        }
    }
}

/// The table rows of one scenario, one line each (also printed to stderr as each scenario
/// finishes, so a run cut off by a timeout keeps what it measured).
pub fn scenario_rows(
    targets: &[Target],
    scenario: &Scenario,
    results: &ScenarioResults,
) -> Vec<String> {
    let mut lines = Vec::new();
    {
        let per_server: Vec<&Results> = (0..targets.len()).map(|ti| results.shown(ti)).collect();
        // Metric names in first-seen order over all servers.
        let mut names: Vec<(String, &'static str, Better)> = Vec::new();
        for r in &per_server {
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
            let tern = value(per_server[0]);
            for (i, r) in per_server.iter().enumerate() {
                let cell = match (&r.failed, value(r)) {
                    (Some(_), _) => "FAILED".to_string(),
                    (None, Some(v)) => format_value(v),
                    (None, None) => "-".to_string(),
                };
                line.push_str(&format!(" {cell} |"));
                if i > 0 {
                    let ratio = match (tern, value(r)) {
                        (Some(t), Some(o)) if t > 0.0 && o > 0.0 => match better {
                            Better::Higher => format!("{:.2}x", t / o),
                            Better::Lower => format!("{:.2}x", o / t),
                            Better::Info => "-".to_string(),
                        },
                        _ => "-".to_string(),
                    };
                    line.push_str(&format!(" {ratio} |"));
                }
            }
            lines.push(line);
        }
    }
    lines
}

/// For each workload run both on one core and on two (`cores 1:` / `cores 2:`): per server,
/// its first metric on two cores over one (the median of each).
pub fn print_core_scaling(targets: &[Target], scenarios: &[Scenario], table: &[ScenarioResults]) {
    let pairs = crate::scaling::core_pairs(scenarios);
    if pairs.is_empty() {
        return;
    }
    println!();
    println!("Scaling from one core to two (the server pinned with taskset; first metric, 2 cores / 1 core):");
    println!();
    let mut header = "| workload | metric |".to_string();
    let mut rule = "|---|---|".to_string();
    for t in targets.iter().filter(|t| !t.relay) {
        header.push_str(&format!(" {} |", t.name));
        rule.push_str("---:|");
    }
    println!("{header}");
    println!("{rule}");
    for (workload, one, two) in pairs {
        let mut metric_name = String::new();
        let mut line = String::new();
        for (ti, _) in targets.iter().enumerate().filter(|(_, t)| !t.relay) {
            let (r1, r2) = (table[one].shown(ti), table[two].shown(ti));
            let first = r1.values.first().map(|(name, ..)| name.clone());
            let cell = match (&r1.failed, &r2.failed, first) {
                (None, None, Some(name)) => {
                    metric_name = name.clone();
                    match (r1.median(&name), r2.median(&name)) {
                        (Some(a), Some(b)) if a > 0.0 => {
                            format!("{} -> {} ({:.2}x)", format_value(a), format_value(b), b / a)
                        }
                        _ => "-".to_string(),
                    }
                }
                _ => "FAILED".to_string(),
            };
            line.push_str(&format!(" {cell} |"));
        }
        println!("| {workload} | {metric_name} |{line}");
    }
}
