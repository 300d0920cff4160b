//! How the servers scale: many publishing connections (`--only many`), the same workloads
//! with the server pinned to one core and to two (`--only cores`), and a steady stream beside
//! subscription churn at fixed paced rates (`--only churn`).

use crate::fan::{churn, fan, Churn, Fan};
use crate::scenarios::{scenario, Scenario};

/// The CPUs a `cores N:` scenario pins the server to (`taskset -c`). The generator is not
/// pinned: with one core it may use the other freely, with two it shares them with the server.
const PINNINGS: [(usize, &str); 2] = [(1, "1"), (2, "0,1")];

/// Publishing connections in the `cores` scenarios' many-publisher rows.
const CORES_PUBS: usize = 16;

/// The scaling scenarios, in table order.
pub fn all() -> Vec<Scenario> {
    let mut list = Vec::new();
    for n in [16, 64] {
        for (name, fan_of) in many_publishers(n) {
            list.push(scenario(
                format!("many publishers: {name}"),
                move |s, scale| fan(s, scale, fan_of).map(|f| f.metrics),
            ));
        }
    }
    let fan_out = Fan {
        subs: 16,
        ..Fan::default()
    };
    let workloads = std::iter::once(("fan-out 1 -> 16, 16 B".to_string(), fan_out))
        .chain(many_publishers(CORES_PUBS));
    for (name, fan_of) in workloads {
        for (cores, cpus) in PINNINGS {
            list.push(Scenario {
                cpus: Some(cpus),
                ..scenario(format!("cores {cores}: {name}"), move |s, scale| {
                    fan(s, scale, fan_of).map(|f| f.metrics)
                })
            });
        }
    }
    for rate in [100_000, 500_000] {
        list.push(scenario(
            format!("paced churn {}k pairs/s beside 1:1 16 B", rate / 1000),
            move |s, scale| churn(s, scale, Churn::Paced(rate)),
        ));
    }
    list
}

/// `n` publishers of 16 B, each to a subject of its own with one subscriber each (`n`
/// independent streams), and all to one subject with one subscriber (fan-in).
fn many_publishers(n: usize) -> [(String, Fan); 2] {
    [
        (
            format!("{n} -> {n} disjoint subjects, 16 B"),
            Fan {
                pubs: n,
                subs: n,
                disjoint: true,
                ..Fan::default()
            },
        ),
        (
            format!("{n} -> 1 shared subject, 16 B"),
            Fan {
                pubs: n,
                ..Fan::default()
            },
        ),
    ]
}

/// The `cores 1:` / `cores 2:` scenario pairs that ran, by the workload after the prefix: the
/// indices of the one-core and the two-core scenario.
pub fn core_pairs(scenarios: &[Scenario]) -> Vec<(String, usize, usize)> {
    let find = |cores: usize, workload: &str| {
        scenarios
            .iter()
            .position(|s| s.name == format!("cores {cores}: {workload}"))
    };
    scenarios
        .iter()
        .filter_map(|s| s.name.strip_prefix("cores 1: "))
        .filter_map(|workload| Some((workload.to_string(), find(1, workload)?, find(2, workload)?)))
        .collect()
}
