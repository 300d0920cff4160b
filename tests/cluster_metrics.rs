//! Routes in `/metrics`: the route count and per-route traffic under prometheus-nats-exporter's
//! `routez` names, each sample equal to what `/routez` (and `/varz`) say of the same route.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use common::cluster::{client, monitor_json, node_with, until_routed, TERN};
use common::process::{http_get, Scratch};

/// The samples of `/metrics` whose name starts with `prefix`, by name with labels.
fn samples(text: &str, prefix: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap();
            (name.to_string(), value.parse().unwrap())
        })
        .collect()
}

#[tokio::test]
async fn routes_in_metrics_match_routez() {
    let scratch = Scratch::new("cluster-metrics");
    let tern = PathBuf::from(TERN);
    let monitored = "http: \"127.0.0.1:-1\"";
    let t1 = node_with(&scratch, &tern, "T1", &[], monitored);
    let t2 = node_with(&scratch, &tern, "T2", &[&t1], monitored);
    let publisher = client(&t1).await;
    let receiver = client(&t2).await;
    let mut sub = receiver.subscribe("metrics.x").await.unwrap();
    receiver.flush().await.unwrap();
    until_routed(&publisher, &mut sub, "metrics.x").await;
    for _ in 0..10 {
        publisher
            .publish("metrics.x", "12345".into())
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();
    for _ in 0..10 {
        futures::StreamExt::next(&mut sub).await.unwrap();
    }

    for (node, sent) in [(&t1, true), (&t2, false)] {
        let (status, text) = http_get(node.monitor.as_deref().unwrap(), "/metrics").unwrap();
        assert_eq!(status, 200);
        let routez = monitor_json(node, "/routez");
        let varz = monitor_json(node, "/varz");
        let id = routez["server_id"].as_str().unwrap();
        let route = &routez["routes"][0];
        let rid = route["rid"].as_u64().unwrap();
        let server = format!("server_id=\"{id}\"");
        assert_eq!(routez["num_routes"], 1, "{routez}");
        assert_eq!(varz["routes"], 1, "{varz}");
        assert_eq!(varz["remotes"], 1, "{varz}");
        let all = samples(&text, "gnatsd_");
        assert_eq!(all[&format!("gnatsd_varz_routes{{{server}}}")], 1.0);
        assert_eq!(all[&format!("gnatsd_varz_remotes{{{server}}}")], 1.0);
        assert_eq!(all[&format!("gnatsd_routez_num_routes{{{server}}}")], 1.0);
        let info = format!(
            "gnatsd_routez_route_info{{{server},rid=\"{rid}\",remote_id=\"{}\",remote_name=\"{}\",\
             account=\"\",ip=\"{}\",compression=\"off\"}}",
            route["remote_id"].as_str().unwrap(),
            route["remote_name"].as_str().unwrap(),
            route["ip"].as_str().unwrap(),
        );
        assert_eq!(all.get(&info), Some(&1.0), "{info}\n{text}");
        for field in [
            "in_msgs",
            "out_msgs",
            "in_bytes",
            "out_bytes",
            "subscriptions",
        ] {
            let name = format!("gnatsd_routez_route_{field}{{{server},rid=\"{rid}\"}}");
            let want = route[field].as_f64().unwrap();
            assert_eq!(all.get(&name), Some(&want), "{name}\n{text}\n{routez}");
            assert!(
                text.contains(&format!("# TYPE gnatsd_routez_route_{field} gauge\n")),
                "{text}"
            );
        }
        // At least the ten messages (and the probes) crossed, from T1 to T2.
        let (out, inbound) = match sent {
            true => ("out_msgs", "in_msgs"),
            false => ("in_msgs", "out_msgs"),
        };
        assert!(route[out].as_u64().unwrap() >= 10, "{routez}");
        // The other way only the system account's events cross (each node's per-account
        // connection counts, which the other node counts against account limits).
        assert!(route[inbound].as_u64().unwrap() < 10, "{routez}");
        assert!(route["out_bytes"].as_u64().unwrap() + route["in_bytes"].as_u64().unwrap() >= 50);
        let uptime = format!("gnatsd_routez_route_uptime_seconds{{{server},rid=\"{rid}\"}}");
        assert!(all.contains_key(&uptime), "{text}");
    }
}
