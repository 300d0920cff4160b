//! The route protocol byte for byte, side by side with nats-server 2.15.1: a fake route peer (a
//! raw socket speaking as a server without pooling) and raw clients drive tern and nats-server
//! the same way, as nats-server's own route tests do (`test/new_routes_test.go`,
//! `test/routes_test.go`), and what each writes is compared after normalising ids and nonces,
//! `RS+` lines as sets, and leaving out the `$SYS` interest tern does not have.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::cluster::{node_with, Node, TERN};
use common::process::{reference_server, Scratch};

/// How long a read may wait for a line the server owes.
const READ: Duration = Duration::from_secs(10);

/// Two accounts, each with a user of the same name.
const ACCOUNTS: &str = "accounts { A: { users: [{user: a, password: a}] }, \
     B: { users: [{user: b, password: b}] } }";

/// One connection (route or client) to a server, read line by line.
struct Conn {
    what: String,
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn open(what: &str, addr: &str) -> Conn {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(READ)).unwrap();
        Conn {
            what: what.to_string(),
            reader: BufReader::new(stream),
        }
    }

    fn send(&mut self, text: &str) {
        self.reader.get_mut().write_all(text.as_bytes()).unwrap();
    }

    /// The next line, `None` when the server closed the connection.
    fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => Some(line),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => None,
            Err(e) => panic!("{}: {e}", self.what),
        }
    }

    /// Sends PING and returns what the server wrote before its PONG (answering its PINGs,
    /// each message's payload on its header's line, `$SYS` interest left out), sorted runs of
    /// `RS+`/`RS-` kept as they came: compare with [`normalise`].
    fn sync(&mut self) -> Vec<String> {
        self.send("PING\r\n");
        let mut lines = Vec::new();
        loop {
            let line = self
                .line()
                .unwrap_or_else(|| panic!("{}: closed before PONG", self.what));
            let line = line.trim_end_matches(['\r', '\n']).to_string();
            match line.as_str() {
                "PONG" => return lines,
                "PING" => self.send("PONG\r\n"),
                l if l.starts_with("RS+ $SYS ") || l.starts_with("RS- $SYS ") => {}
                l if l.starts_with("RMSG ") || l.starts_with("MSG ") => {
                    let payload = self.line().unwrap();
                    lines.push(format!("{l} | {}", payload.trim_end()));
                }
                _ => lines.push(line),
            }
        }
    }

    /// Everything the server writes until it closes the connection (or `READ` passes).
    fn until_closed(&mut self) -> Vec<String> {
        let mut text = String::new();
        let _ = self.reader.read_to_string(&mut text);
        text.lines()
            .filter(|l| !l.starts_with("RS+ $SYS ") && !l.starts_with("INFO ") && *l != "PING")
            .map(str::to_string)
            .collect()
    }
}

/// The server's id, from the INFO a connection opens with.
fn server_id(info_line: &str) -> String {
    let json: serde_json::Value =
        serde_json::from_str(info_line.strip_prefix("INFO ").unwrap().trim()).unwrap();
    json["server_id"].as_str().unwrap().to_string()
}

/// A fake route peer named `name` with server id `id`: dials the node's route port, sends
/// CONNECT then INFO (no pool, no compression), and returns with the node's INFO read.
fn route(node: &Node, name: &str, id: &str) -> (Conn, String) {
    route_with(node, name, id, "")
}

/// As [`route`], with `extra` fields (`,"key":value...`) in the INFO.
fn route_with(node: &Node, name: &str, id: &str, extra: &str) -> (Conn, String) {
    let mut conn = Conn::open(&format!("route {name}"), &node.route);
    conn.send(&format!(
        "CONNECT {{\"echo\":true,\"verbose\":false,\"pedantic\":false,\"tls_required\":false,\
         \"headers\":true,\"name\":\"{id}\",\"cluster\":\"C1\",\"lnoc\":true,\"lnocu\":true}}\r\n\
         INFO {{\"server_id\":\"{id}\",\"server_name\":\"{name}\",\"version\":\"2.15.1\",\
         \"proto\":2,\"go\":\"fake\",\"host\":\"127.0.0.1\",\"port\":1,\"headers\":true,\
         \"max_payload\":1048576,\"cluster\":\"C1\",\"compression\":\"off\",\"lnoc\":true,\
         \"lnocu\":true{extra}}}\r\n"
    ));
    let info = conn.line().expect("the route INFO");
    (conn, info)
}

/// A raw client of the node, connected (as `user`, when given) and synchronised.
fn raw_client(node: &Node, user: Option<&str>) -> Conn {
    let mut conn = Conn::open("client", &node.client);
    conn.line().expect("the client INFO");
    let auth = user
        .map(|u| format!(",\"user\":\"{u}\",\"pass\":\"{u}\""))
        .unwrap_or_default();
    conn.send(&format!(
        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"headers\":true{auth}}}\r\n"
    ));
    assert!(conn.sync().is_empty());
    conn
}

/// `RS+`/`RS-` runs sorted (they are sets), ids replaced by names.
fn normalise(lines: Vec<String>, ids: &[(&str, &str)]) -> Vec<String> {
    let mut out = Vec::new();
    let mut run: Vec<String> = Vec::new();
    for line in lines {
        let line = ids.iter().fold(line, |l, (id, name)| l.replace(id, name));
        if line.starts_with("RS+ ") || line.starts_with("RS- ") {
            run.push(line);
            continue;
        }
        run.sort();
        out.append(&mut run);
        out.push(line);
    }
    run.sort();
    out.append(&mut run);
    out
}

/// Runs `scenario` against a tern node and a nats-server 2.15.1 node started with the same
/// `extra` configuration and compares what it recorded; returns tern's record.
fn differential(name: &str, extra: &str, scenario: fn(&Node) -> Vec<String>) -> Vec<String> {
    let run = |binary: &Path| {
        let scratch = Scratch::new(&format!(
            "routes-{name}-{}",
            binary.file_name().unwrap().to_string_lossy()
        ));
        let node = node_with(&scratch, binary, "S", &[], extra);
        scenario(&node)
    };
    let tern = run(&PathBuf::from(TERN));
    eprintln!("{name}: {tern:#?}");
    if let Some(reference) = reference_server() {
        assert_eq!(
            tern,
            run(&reference),
            "{name}: tern (left) and nats-server differ"
        );
    }
    tern
}

/// `TestNewRouteRSubs`: interest per account, counted (plain: `RS+` on the first, `RS-` on the
/// last), queue groups with their weight on every change.
#[test]
fn new_route_rsubs() {
    let record = differential("rsubs", ACCOUNTS, |node| {
        let (mut r, _) = route(node, "R", "NROUTE");
        let mut log = normalise(r.sync(), &[]);
        let mut a = raw_client(node, Some("a"));
        let mut b = raw_client(node, Some("b"));
        a.send("SUB foo 1\r\nSUB foo 2\r\nSUB bar qq 3\r\n");
        a.sync();
        b.send("SUB foo 1\r\nSUB bar qq 2\r\nSUB bar qq 3\r\n");
        b.sync();
        log.push("-- subscribed".into());
        log.extend(normalise(r.sync(), &[]));
        a.send("UNSUB 1\r\nUNSUB 3\r\n");
        a.sync();
        b.send("UNSUB 2\r\n");
        b.sync();
        log.push("-- some unsubscribed".into());
        log.extend(normalise(r.sync(), &[]));
        drop(b);
        a.send("UNSUB 2\r\n");
        a.sync();
        log.push("-- all gone".into());
        // B's client closing is seen by the server in its own time: a later sync may be
        // needed.
        let mut rest = normalise(r.sync(), &[]);
        if !rest.iter().any(|l| l.starts_with("RS- B foo")) {
            std::thread::sleep(Duration::from_millis(200));
            rest.extend(normalise(r.sync(), &[]));
            rest = normalise(rest, &[]);
        }
        log.extend(rest);
        log
    });
    assert!(record.contains(&"RS+ A bar qq 1".to_string()), "{record:?}");
}

/// `TestNewRouteProcessRoutedMsgs` with `TestNewRouteNoQueueSubscribersBounce`: a routed
/// message reaches local plain subscribers; queue members only when the frame names their
/// group; a group with no member here drops it (nothing goes back to the route).
#[test]
fn new_route_process_routed_msgs() {
    differential("routed", "", |node| {
        let (mut r, _) = route(node, "R", "NROUTE");
        r.sync();
        let mut c = raw_client(node, None);
        c.send("SUB foo 1\r\nSUB foo qq 2\r\n");
        c.sync();
        r.sync();
        r.send("RMSG $G foo 2\r\nok\r\n");
        r.send("RMSG $G foo reply 3\r\nyes\r\n");
        r.send("RMSG $G foo + reply qq 4\r\nboth\r\n");
        r.send("RMSG $G foo | qq 5\r\nqueue\r\n");
        r.send("RMSG $G foo | other 4\r\nnone\r\n");
        r.send("HMSG $G foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n");
        r.send("RMSG $X foo 7\r\nunknown\r\n");
        let mut log = normalise(r.sync(), &[]);
        log.push("-- client".into());
        log.extend(c.sync());
        log
    });
}

/// `TestRouteQueueSemantics`: a publish reaches remote interest in one frame per route,
/// naming the queue groups whose chosen member is remote.
#[test]
fn route_queue_semantics() {
    differential("queue", "", |node| {
        let (mut r, _) = route(node, "R", "NROUTE");
        r.sync();
        r.send("RS+ $G foo bar 1\r\n");
        r.sync();
        let mut c = raw_client(node, None);
        c.send("PUB foo 2\r\nq1\r\nPUB foo reply 2\r\nq2\r\n");
        c.sync();
        let mut log = normalise(r.sync(), &[]);
        r.send("RS+ $G foo\r\n");
        r.sync();
        c.send("PUB foo reply 4\r\nboth\r\nPUB foo 5\r\nplain\r\n");
        c.sync();
        log.extend(normalise(r.sync(), &[]));
        r.send("RS- $G foo bar\r\nRS- $G foo\r\n");
        r.sync();
        c.send("PUB foo 4\r\nnone\r\n");
        c.sync();
        log.push("-- all removed".into());
        log.extend(normalise(r.sync(), &[]));
        log
    });
}

/// `TestRouteOneHopSemantics`: a message from one route is never sent on to another.
#[test]
fn route_one_hop_semantics() {
    differential("onehop", "", |node| {
        let (mut r1, _) = route(node, "R1", "NROUTEONE");
        let (mut r2, _) = route(node, "R2", "NROUTETWO");
        r1.sync();
        r2.sync();
        r2.send("RS+ $G foo\r\n");
        r2.sync();
        r1.send("RMSG $G foo 2\r\nok\r\n");
        r1.sync();
        let mut log = normalise(r2.sync(), &[]);
        log.push("-- r1".into());
        log.extend(normalise(r1.sync(), &[]));
        log
    });
}

/// `TestRouteToSelf`: a route whose INFO carries the server's own id is closed.
#[test]
fn route_to_self() {
    differential("self", "", |node| {
        let probe = Conn::open("probe", &node.route).line().unwrap();
        let id = server_id(&probe);
        let (mut r, _) = route(node, "SELF", &id);
        let mut log = r.until_closed();
        log.push("-- closed".into());
        // A client sees no route: its publish goes nowhere and the server carries on.
        let mut c = raw_client(node, None);
        c.send("PUB foo 2\r\nok\r\n");
        log.extend(c.sync());
        log
    });
}

/// `TestMultipleRoutesSameId`: a second connection from a server already routed is closed as
/// a duplicate; the first keeps working.
#[test]
fn multiple_routes_same_id() {
    differential("sameid", "", |node| {
        let (mut first, _) = route(node, "R", "NROUTE");
        first.sync();
        let (mut second, _) = route(node, "R", "NROUTE");
        let mut log = second.until_closed();
        log.push("-- second closed".into());
        let mut c = raw_client(node, None);
        c.send("SUB foo 1\r\n");
        c.sync();
        log.extend(normalise(first.sync(), &[]));
        first.send("RS+ $G bar\r\n");
        first.sync();
        c.send("PUB bar 2\r\nok\r\n");
        c.sync();
        log.extend(normalise(first.sync(), &[]));
        log
    });
}

/// The log of a second connection from a server already routed, as nats-server writes it:
/// the duplicate detected (debug) and the connection closed as `Duplicate Route`, naming the
/// peer; the route's own connection created and closed at INF.
#[test]
fn duplicate_route_is_logged_as_nats_server() {
    let run = |binary: &Path| {
        let scratch = Scratch::new(&format!(
            "routes-duplog-{}",
            binary.file_name().unwrap().to_string_lossy()
        ));
        let node = node_with(&scratch, binary, "S", &[], "debug: true");
        let (mut first, _) = route(&node, "R", "NROUTE");
        first.sync();
        let (mut second, _) = route(&node, "R", "NROUTE");
        second.until_closed();
        let log = scratch.0.join("S.log");
        let text = common::process::wait_for_log(&log, "the duplicate closed", |t| {
            t.contains(" - Router connection closed: Duplicate Route - Remote: R\n")
        });
        let detected = text.lines().any(|l| {
            l.contains("[DBG] 127.0.0.1:")
                && l.ends_with(" - Detected duplicate remote route \"NROUTE\"")
        });
        assert!(detected, "{}:\n{text}", binary.display());
        let created = text
            .lines()
            .filter(|l| l.contains("[INF] ") && l.ends_with(" - Route connection created"))
            .count();
        assert_eq!(created, 2, "{}:\n{text}", binary.display());
        // After registration the prefix is still `addr - rid:N`: the peer's name is only in
        // the close line's `Remote:`.
        for line in text.lines().filter(|l| l.contains(" - rid:")) {
            let rest = line.split(" - rid:").nth(1).unwrap_or_default();
            let after_id = rest.trim_start_matches(|c: char| c.is_ascii_digit());
            assert!(
                after_id.starts_with(" - ") && !after_id[3..].starts_with('"'),
                "{}: {line}",
                binary.display()
            );
        }
        assert!(!text.contains("Protocol Violation"), "{text}");
    };
    run(&PathBuf::from(TERN));
    if let Some(reference) = reference_server() {
        run(&reference);
    }
}

/// `TestRouteResendsLocalSubsOnReconnect`: the whole interest again on every new connection
/// of a route.
#[test]
fn route_resends_local_subs_on_reconnect() {
    differential("resend", "", |node| {
        let mut c = raw_client(node, None);
        c.send("SUB foo 1\r\nSUB bar qq 2\r\nSUB bar qq 3\r\nSUB baz.> 4\r\n");
        c.sync();
        let mut log = Vec::new();
        for round in 0..3 {
            let (mut r, _) = route(node, "R", "NROUTE");
            log.push(format!("-- connection {round}"));
            log.extend(normalise(r.sync(), &[]));
            drop(r);
            // The server has noticed the close once a new connection is not a duplicate:
            // wait for the route to be gone before the next round.
            std::thread::sleep(Duration::from_millis(300));
        }
        log
    });
}

/// `TestNewRouteNoQueueSubscribersBounce`: a routed message for a queue group with no member
/// here is not dropped: nats-server sends it on to a member behind a route, even the route it
/// came from (its interest may be newer than the sender's view); with a member here, only that
/// member gets it. Plain interest behind routes still gets nothing (one hop).
#[test]
fn routed_queue_message_without_local_member_goes_on_to_a_route() {
    differential("bounce", "", |node| {
        let (mut r1, _) = route(node, "R1", "NROUTEONE");
        let (mut r2, _) = route(node, "R2", "NROUTETWO");
        r1.sync();
        r2.sync();
        r1.send("RS+ $G foo qq 1\r\nRS+ $G foo\r\n");
        r1.sync();
        r1.send("RMSG $G foo | qq 2\r\nab\r\n");
        let mut log = vec!["-- back to r1".to_string()];
        log.extend(r1.sync());
        r1.send("RS- $G foo qq\r\n");
        r2.send("RS+ $G foo qq 1\r\nRS+ $G foo\r\n");
        r2.sync();
        r1.send("RMSG $G foo + reply qq 2\r\ncd\r\n");
        r1.sync();
        log.push("-- on to r2".into());
        log.extend(r2.sync());
        let mut c = raw_client(node, None);
        c.send("SUB foo qq 1\r\n");
        c.sync();
        r1.send("RMSG $G foo | qq 2\r\nef\r\n");
        r1.sync();
        log.push("-- local member".into());
        log.extend(normalise(r2.sync(), &[]));
        log.extend(c.sync());
        log
    });
}

/// `TestNewRouteQueueSubsDistribution`: a queue group with one member here and members behind
/// a route (its weight) gets each message once, chosen member by member: with weight 1 about
/// half go to the route, with weight 4 about four fifths, with weight 0 none (shares rounded to
/// tens of percent).
#[test]
fn new_route_queue_subs_distribution() {
    let record = differential("distribution", "", |node| {
        let (mut r, _) = route(node, "R", "NROUTE");
        r.sync();
        let mut member = raw_client(node, None);
        member.send("SUB foo bar 1\r\n");
        member.sync();
        let mut publisher = raw_client(node, None);
        let mut log = Vec::new();
        for weight in [1, 4, 0] {
            r.send(&format!("RS+ $G foo bar {weight}\r\n"));
            r.sync();
            let total = 2000;
            publisher.send(&"PUB foo 2\r\nok\r\n".repeat(total));
            publisher.sync();
            let routed = r.sync().iter().filter(|l| l.starts_with("RMSG ")).count();
            let local = member
                .sync()
                .iter()
                .filter(|l| l.starts_with("MSG "))
                .count();
            let share = (routed * 10 + total / 2) / total * 10;
            log.push(format!(
                "weight {weight}: {}, {share}% to the route",
                if routed + local == total {
                    "each once"
                } else {
                    "lost or duplicated"
                }
            ));
        }
        log
    });
    assert_eq!(
        record,
        [
            "weight 1: each once, 50% to the route",
            "weight 4: each once, 80% to the route",
            "weight 0: each once, 0% to the route"
        ]
    );
}

/// Lame duck mode as routes see it: an INFO with `ldm` for the server's own id, its client
/// URLs, without a nonce; compared by those fields (the rest of the route INFO differs by
/// design: `proto`, `compression`, pooling).
#[test]
fn lame_duck_info_to_routes() {
    differential(
        "ldm",
        "lame_duck_grace_period: \"1s\"\nlame_duck_duration: \"30s\"",
        |node| {
            let (mut r, info) = route(node, "R", "NROUTE");
            r.sync();
            // A client keeps the server in lame duck mode for its duration.
            let c = raw_client(node, None);
            node.process.signal("USR2");
            let line = loop {
                let line = r.line().expect("the lame duck INFO");
                if line.starts_with("INFO ") {
                    break line;
                }
            };
            let json: serde_json::Value =
                serde_json::from_str(line.strip_prefix("INFO ").unwrap().trim()).unwrap();
            let log = vec![
                format!("ldm={}", json["ldm"]),
                format!("own id={}", json["server_id"] == server_id(&info)),
                format!("cluster={}", json["cluster"]),
                format!("nonce={}", json["nonce"]),
                format!(
                    "connect_urls={}",
                    json["connect_urls"]
                        .to_string()
                        .replace(&node.client, "CLIENT")
                ),
            ];
            drop(c);
            log
        },
    );
}

/// `TestNewRouteRUnsubAccountSpecific` and `TestNewRouteDuplicateSubscription`: interest is per
/// account; a repeated `RS+` is one subscription, removed by one `RS-`.
#[test]
fn new_route_runsub_account_specific() {
    differential("accounts", ACCOUNTS, |node| {
        let (mut r, _) = route(node, "R", "NROUTE");
        r.sync();
        r.send("RS+ A foo\r\nRS+ B foo\r\nRS+ B foo\r\nRS- A foo\r\n");
        r.sync();
        let mut a = raw_client(node, Some("a"));
        let mut b = raw_client(node, Some("b"));
        a.send("PUB foo 1\r\na\r\n");
        a.sync();
        b.send("PUB foo 1\r\nb\r\n");
        b.sync();
        let mut log = r.sync();
        r.send("RS- B foo\r\n");
        r.sync();
        b.send("PUB foo 1\r\nc\r\n");
        b.sync();
        log.push("-- B removed once".into());
        log.extend(r.sync());
        log
    });
}

/// `TestNewRouteSendSubsAndMsgs` / `TestRouteForwardsMsgFromClients`: client publishes reach
/// the route in each form (reply, headers, headers with reply), and wildcards match.
#[test]
fn route_forwards_msgs_from_clients() {
    differential("forward", "", |node| {
        let (mut r, _) = route(node, "R", "NROUTE");
        r.sync();
        r.send("RS+ $G foo.*\r\nRS+ $G foo.>\r\nRS+ $G bar\r\n");
        r.sync();
        let mut c = raw_client(node, None);
        c.send("PUB foo.a 2\r\nok\r\nPUB foo.b reply.x 2\r\nok\r\n");
        c.send("HPUB bar 12 14\r\nNATS/1.0\r\n\r\nhi\r\n");
        c.send("HPUB bar reply.y 12 14\r\nNATS/1.0\r\n\r\nhi\r\n");
        c.send("PUB foo.a.b 0\r\n\r\nPUB nothing 2\r\nno\r\n");
        c.sync();
        r.sync()
    });
}

/// `TestNewRouteRSubCleanupOnDisconnect`: a route's interest goes with its connection.
#[test]
fn new_route_rsub_cleanup_on_disconnect() {
    differential("cleanup", "", |node| {
        let (mut r, _) = route(node, "R", "NROUTE");
        r.sync();
        r.send("RS+ $G foo\r\nRS+ $G foo qq 3\r\n");
        r.sync();
        drop(r);
        // Once the server has noticed, a new connection of the same server is no duplicate
        // and gets no message for the old interest.
        std::thread::sleep(Duration::from_millis(300));
        let (mut r, _) = route(node, "R", "NROUTE");
        r.sync();
        let mut c = raw_client(node, None);
        c.send("PUB foo 2\r\nok\r\n");
        c.sync();
        r.sync()
    });
}

/// A verbose route (CONNECT `verbose`) gets `+OK` after each operation.
#[test]
fn verbose_route() {
    differential("verbose", "", |node| {
        let mut r = Conn::open("verbose route", &node.route);
        r.line().unwrap();
        r.send(
            "CONNECT {\"verbose\":true,\"pedantic\":false,\"headers\":true,\"name\":\"NVERB\",\
             \"cluster\":\"C1\"}\r\nINFO {\"server_id\":\"NVERB\",\"server_name\":\"V\",\
             \"host\":\"127.0.0.1\",\"port\":1,\"headers\":true,\"cluster\":\"C1\"}\r\n",
        );
        let mut log = r.sync();
        r.send("RS+ $G foo\r\nRS- $G foo\r\nRMSG $G foo 2\r\nok\r\n");
        log.extend(r.sync());
        log
    });
}

/// Malformed route operations after registration: nats-server's `-ERR` (or none) and whether
/// the route survives.
#[test]
fn malformed_route_operations() {
    differential("malformed", "", |node| {
        let cases = [
            "RS+\r\n",
            "RS+ $G\r\n",
            "RS+ $G foo bar\r\n",
            "RS+ $G foo bar x\r\n",
            "RS+ $G foo bar 1 extra\r\n",
            "RS- $G\r\n",
            "RMSG $G foo\r\n",
            "RMSG $G foo x\r\nok\r\n",
            "RMSG $G foo 1\r\nok\r\n",
            "HMSG $G foo 20 10\r\n0123456789\r\n",
            "BOGUS\r\n",
            "RS+ $G foo..bar\r\n",
            "SUB foo 1\r\n",
            "UNSUB 1\r\n",
            "PUB foo 2\r\nok\r\n",
            "SUB\r\n",
        ];
        let mut log = Vec::new();
        for (i, case) in cases.iter().enumerate() {
            let (mut r, _) = route(node, "R", &format!("NMALFORMED{i}"));
            r.sync();
            r.send(case);
            r.send("PING\r\n");
            let mut answer = Vec::new();
            loop {
                match r.line() {
                    None => {
                        answer.push("closed".to_string());
                        break;
                    }
                    Some(l) if l == "PONG\r\n" => {
                        answer.push("PONG".into());
                        break;
                    }
                    Some(l) if l == "PING\r\n" || l.starts_with("RS+ $SYS") => {}
                    Some(l) => answer.push(l.trim_end().to_string()),
                }
            }
            log.push(format!("{}: {}", case.trim_end(), answer.join(" / ")));
            drop(r);
            std::thread::sleep(Duration::from_millis(100));
        }
        log
    });
}

/// What clients are told of route peers' client URLs (`TestRouteSendAsyncINFOToClients`):
/// each peer's `connect_urls` joins ours in an INFO pushed to protocol-1 clients, counted per
/// peer (a URL two peers announce stays until both are gone), and a peer's lame duck INFO
/// takes its URLs away. The peers' part of the list is compared as a set.
#[test]
fn route_send_async_info_to_clients() {
    differential("asyncinfo", "", |node| {
        let mut c = Conn::open("client", &node.client);
        c.line().unwrap();
        c.send("CONNECT {\"verbose\":false,\"protocol\":1}\r\n");
        let mut log = c.sync();
        let infos = |c: &mut Conn, log: &mut Vec<String>, what: &str| {
            log.push(format!("-- {what}"));
            for line in c.sync() {
                let json: serde_json::Value =
                    serde_json::from_str(line.strip_prefix("INFO ").unwrap().trim()).unwrap();
                let mut urls: Vec<String> = json["connect_urls"]
                    .as_array()
                    .map(|a| a.iter().map(|u| u.as_str().unwrap().to_string()).collect())
                    .unwrap_or_default();
                if let Some(own) = urls.first_mut() {
                    *own = own.replace(&node.client, "OWN");
                }
                if urls.len() > 1 {
                    urls[1..].sort();
                }
                log.push(format!("INFO connect_urls={urls:?} ldm={}", json["ldm"]));
            }
        };
        infos(&mut c, &mut log, "connect_info");
        let one = ",\"connect_urls\":[\"192.0.2.1:4222\"]";
        let (mut r1, _) = route_with(node, "R1", "NROUTEONE", one);
        r1.sync();
        infos(&mut c, &mut log, "r1");
        let two = ",\"connect_urls\":[\"192.0.2.1:4222\",\"192.0.2.2:4222\"]";
        let (mut r2, _) = route_with(node, "R2", "NROUTETWO", two);
        r2.sync();
        infos(&mut c, &mut log, "r2");
        drop(r1);
        // Once R1 is gone (a new connection of its server is no duplicate), nothing changed
        // for the client: R2 still announces both URLs.
        std::thread::sleep(Duration::from_millis(300));
        let (mut r1, _) = route(node, "R1", "NROUTEONE");
        r1.sync();
        infos(&mut c, &mut log, "r1 gone, back without URLs");
        r2.send(&format!(
            "INFO {{\"server_id\":\"NROUTETWO\",\"server_name\":\"R2\",\"host\":\"127.0.0.1\",\
             \"port\":1,\"cluster\":\"C1\"{two},\"ldm\":true}}\r\n"
        ));
        r2.sync();
        infos(&mut c, &mut log, "r2 in lame duck mode");
        log
    });
}

/// `TestRouteToSelf` through configuration: a route URL that leads back to the server itself is
/// given up once found out, with nats-server's debug line naming it.
#[test]
fn configured_route_to_self_is_given_up() {
    let run = |binary: &Path| {
        let scratch = Scratch::new(&format!(
            "routes-selfconf-{}",
            binary.file_name().unwrap().to_string_lossy()
        ));
        // The cluster port is only known once bound: a fixed free port for this test.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = scratch.0.join("self.conf");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:-1\ndebug: true\ncluster {{ name: C1, listen: 127.0.0.1:{port}, \
                 routes: [\"nats-route://127.0.0.1:{port}\"] }}\n"
            ),
        )
        .unwrap();
        let log = scratch.0.join("self.log");
        let (_process, _) = common::process::Process::start(
            std::process::Command::new(binary)
                .arg("-c")
                .arg(&config)
                .arg("-l")
                .arg(&log),
            &log,
        );
        let want = format!("Detected route to self, ignoring \"nats-route://127.0.0.1:{port}\"");
        let text = common::process::wait_for_log(&log, &want, |t| t.contains(&want));
        // The connection is closed as a duplicate, without naming the peer.
        assert!(
            text.contains(" - Router connection closed: Duplicate Route\n"),
            "{}:\n{text}",
            binary.display()
        );
        assert!(!text.contains("Protocol Violation"), "{text}");
    };
    run(&PathBuf::from(TERN));
    if let Some(reference) = reference_server() {
        run(&reference);
    }
}

/// `TestNewRouteHeaderSupport`: a route whose INFO says `headers: false` gets messages with
/// their headers stripped (RMSG with the payload alone).
#[test]
fn new_route_without_header_support() {
    differential("noheaders", "", |node| {
        let mut r = Conn::open("route without headers", &node.route);
        r.send(
            "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":false,\"name\":\"NNOHDR\",\
             \"cluster\":\"C1\"}\r\nINFO {\"server_id\":\"NNOHDR\",\"server_name\":\"N\",\
             \"host\":\"127.0.0.1\",\"port\":1,\"headers\":false,\"cluster\":\"C1\"}\r\n",
        );
        r.line().unwrap();
        r.sync();
        r.send("RS+ $G foo\r\n");
        r.sync();
        let mut c = raw_client(node, None);
        c.send(
            "HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\nHPUB foo reply 12 12\r\nNATS/1.0\r\n\r\n\r\n",
        );
        c.sync();
        r.sync()
    });
}

/// `TestNewRouteClientClosedWithQueueSubscriptions` and `TestNewRouteProgressiveNormalSubs`: a
/// closing client's queue members lower the group's weight, its last plain subscriber of a
/// subject removes it; many subscribers of one subject are one `RS+`.
#[test]
fn new_route_client_closed_with_queue_subscriptions() {
    differential("closed", "", |node| {
        let (mut r, _) = route(node, "R", "NROUTE");
        r.sync();
        let mut c1 = raw_client(node, None);
        let mut c2 = raw_client(node, None);
        let subs: String = (1..=20).map(|i| format!("SUB foo {i}\r\n")).collect();
        c1.send(&format!(
            "{subs}SUB bar qq 21\r\nSUB bar qq 22\r\nSUB bar qq 23\r\n"
        ));
        c1.sync();
        c2.send("SUB bar qq 1\r\nSUB baz 2\r\n");
        c2.sync();
        let mut log = r.sync();
        drop(c1);
        // The close is seen in the server's own time: sync until its effects arrived.
        let mut after = Vec::new();
        for _ in 0..100 {
            after.extend(r.sync());
            let has = |want: &str| after.iter().any(|l| l == want);
            if has("RS- $G foo") && has("RS+ $G bar qq 1") {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        log.push("-- closed".into());
        log.extend(after);
        normalise(log, &[])
    });
}

/// `TestNewRouteLeafNodeOriginSupport`: interest a route holds for a leaf cluster (`LS+` with
/// origin) gets client messages as RMSG; `LS-` (with or without origin) removes it.
#[test]
fn new_route_leaf_origin_interest() {
    differential("leaforigin", "", |node| {
        let (mut r, _) = route(node, "R", "NROUTE");
        r.sync();
        r.send("LS+ LC $G foo\r\nLS+ LC $G bar qq 2\r\n");
        r.sync();
        leaf_interest_until_withdrawn(node, r, "PUB bar reply 2")
    });
}

/// Interest from a leaf cluster behind the peer is its own: the peer's `RS-` for the same
/// subject leaves it, and messages still go to the route until its `LS-`.
#[test]
fn leaf_origin_interest_is_kept_apart() {
    differential("leafapart", "", |node| {
        let (mut r, _) = route(node, "R", "NROUTE");
        r.sync();
        r.send("RS+ $G foo\r\nLS+ LC $G foo\r\nRS+ $G bar qq 1\r\nLS+ LC $G bar qq 1\r\n");
        r.send("RS- $G foo\r\nRS- $G bar qq\r\n");
        r.sync();
        leaf_interest_until_withdrawn(node, r, "PUB bar 2")
    });
}

/// With leaf cluster LC's interest in `foo` and queue `bar qq` on route `r`: a client publishes
/// to both (`bar` with `bar_pub`), the route withdraws the interest (`LS-`), the client
/// publishes again; what the route received before and after.
fn leaf_interest_until_withdrawn(node: &Node, mut r: Conn, bar_pub: &str) -> Vec<String> {
    let mut c = raw_client(node, None);
    c.send(&format!("PUB foo 2\r\nok\r\n{bar_pub}\r\nok\r\n"));
    c.sync();
    let mut log = r.sync();
    r.send("LS- LC $G foo\r\nLS- LC $G bar qq\r\n");
    r.sync();
    c.send("PUB foo 2\r\nno\r\nPUB bar 2\r\nno\r\n");
    c.sync();
    log.push("-- removed".into());
    log.extend(r.sync());
    log
}

/// `/routez` as a fake route's interest makes it: the count and list of its subscriptions
/// (interest for an account the server does not have is not kept), `did_solicit`, the remote's
/// id and name.
#[test]
fn routez_shows_a_routes_interest() {
    differential("routez", "http: \"127.0.0.1:-1\"", |node| {
        let (mut r, _) = route(node, "R", "NROUTE");
        r.sync();
        r.send("RS+ $G foo\r\nRS+ $G bar qq 3\r\nRS+ NOPE baz\r\nRS+ $G foo.>\r\nRS- $G foo.>\r\n");
        r.sync();
        let routez = common::cluster::monitor_json(node, "/routez?subs=1");
        let route = &routez["routes"][0];
        let mut subs: Vec<String> = route["subscriptions_list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect();
        subs.sort();
        vec![
            format!("num_routes={}", routez["num_routes"]),
            format!(
                "remote_id={} remote_name={}",
                route["remote_id"], route["remote_name"]
            ),
            format!("did_solicit={}", route["did_solicit"]),
            format!("subscriptions={}", route["subscriptions"]),
            format!("subscriptions_list={subs:?}"),
        ]
    });
}

/// JetStream push deliveries from a 2.15 peer carry the delivery subject after `@` in a
/// `$JS.ACK.` reply: the client gets the message on that subject with the reply before `@`.
#[test]
fn routed_jetstream_ack_reply_is_split() {
    differential("jsack", "", |node| {
        let (mut r, _) = route(node, "R", "NROUTE");
        r.sync();
        let mut c = raw_client(node, None);
        c.send("SUB dlv.x 1\r\nSUB dlv.q qq 2\r\n");
        c.sync();
        r.send("RMSG $G dlv.x $JS.ACK.S.C.1.1.1.1796124011950481133.0@orders.new 2\r\no1\r\n");
        r.send("RMSG $G dlv.q + $JS.ACK.S.C.1.2.2.1796124011950481133.0@orders.q qq 2\r\no2\r\n");
        r.send("RMSG $G dlv.x $JS.ACK.a.b@short 2\r\no3\r\n");
        r.send("RMSG $G dlv.x $JS.ACK.S.C.1.1.1.1796124011950481133.0@ 2\r\no4\r\n");
        r.send("RMSG $G dlv.x _INBOX.a@b 2\r\no5\r\n");
        r.sync();
        c.sync()
    });
}

/// Gossip (`TestSeedFirstRouteInfo`, `TestSeedMultipleRouteInfo`): a route already registered
/// is told of a new one in an INFO with the new server's id, its reachable `ip` and
/// `gossip_mode`; compared by those fields.
#[test]
fn routes_are_told_of_new_routes() {
    differential("gossip", "", |node| {
        let (mut r1, _) = route(node, "R1", "NROUTEONE");
        r1.sync();
        let urls = ",\"connect_urls\":[\"192.0.2.2:4222\"]";
        let (mut r2, _) = route_with(node, "R2", "NROUTETWO", urls);
        r2.sync();
        let fields = |lines: Vec<String>| -> Vec<String> {
            lines
                .into_iter()
                .map(|line| {
                    let Some(json) = line.strip_prefix("INFO ") else {
                        return line;
                    };
                    let info: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
                    format!(
                        "INFO server_id={} server_name={} ip={} gossip_mode={} cluster={} \
                         connect_urls={} port={}",
                        info["server_id"],
                        info["server_name"],
                        info["ip"],
                        info["gossip_mode"],
                        info["cluster"],
                        info["connect_urls"],
                        info["port"]
                    )
                })
                .collect()
        };
        let mut log = fields(r1.sync());
        log.push("-- r2".into());
        log.extend(fields(r2.sync()));
        log
    });
}

/// A routed message larger than this server's `max_payload` is delivered (the peer's limit
/// applies to its own clients; nats-server does not check it on routes).
#[test]
fn routed_messages_above_max_payload_are_delivered() {
    differential("bigmsg", "", |node| {
        let (mut r, _) = route(node, "R", "NROUTE");
        r.sync();
        let mut c = raw_client(node, None);
        c.send("SUB foo 1\r\n");
        c.sync();
        let size = 1_500_000;
        r.send(&format!("RMSG $G foo {size}\r\n{}\r\n", "x".repeat(size)));
        let mut log = r.sync();
        log.extend(c.sync().into_iter().map(|l| l.chars().take(40).collect()));
        log
    });
}

/// Interest a peer sends between its CONNECT and its INFO.
#[test]
fn interest_before_the_peers_info() {
    differential("early", "", |node| {
        let mut r = Conn::open("early route", &node.route);
        r.line().unwrap();
        r.send(
            "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"name\":\"NEARLY\",\
             \"cluster\":\"C1\"}\r\nRS+ $G foo\r\nRMSG $G bar 2\r\nno\r\n\
             INFO {\"server_id\":\"NEARLY\",\"server_name\":\"E\",\"host\":\"127.0.0.1\",\
             \"port\":1,\"headers\":true,\"cluster\":\"C1\"}\r\n",
        );
        let mut c = raw_client(node, None);
        c.send("SUB bar 1\r\n");
        c.sync();
        let mut log = r.sync();
        c.send("PUB foo 2\r\nok\r\n");
        c.sync();
        log.extend(r.sync());
        log.push("-- client".into());
        log.extend(c.sync());
        log
    });
}

/// Route authorization (`cluster.authorization`): missing or wrong credentials get
/// `Authorization Violation` and the close; the right ones a working route.
#[test]
fn route_authorization() {
    differential(
        "routeauth",
        "cluster.authorization: { user: ruser, password: rpwd }",
        |node| {
            let mut log = Vec::new();
            for (what, creds) in [
                ("none", ""),
                ("wrong", ",\"user\":\"ruser\",\"pass\":\"nope\""),
                ("right", ",\"user\":\"ruser\",\"pass\":\"rpwd\""),
            ] {
                let mut r = Conn::open("route", &node.route);
                let info = r.line().unwrap();
                let json: serde_json::Value =
                    serde_json::from_str(info.strip_prefix("INFO ").unwrap().trim()).unwrap();
                log.push(format!("{what}: auth_required={}", json["auth_required"]));
                r.send(&format!(
                    "CONNECT {{\"verbose\":false,\"pedantic\":false,\"headers\":true,\
                     \"name\":\"NAUTH\",\"cluster\":\"C1\"{creds}}}\r\nINFO {{\"server_id\":\
                     \"NAUTH\",\"server_name\":\"A\",\"host\":\"127.0.0.1\",\"port\":1,\
                     \"headers\":true,\"cluster\":\"C1\"}}\r\nRS+ $G foo\r\nPING\r\n"
                ));
                loop {
                    match r.line() {
                        None => {
                            log.push(format!("{what}: closed"));
                            break;
                        }
                        Some(l) if l == "PONG\r\n" => {
                            log.push(format!("{what}: PONG"));
                            break;
                        }
                        Some(l) if l.starts_with("-ERR") => {
                            log.push(format!("{what}: {}", l.trim_end()))
                        }
                        Some(_) => {}
                    }
                }
            }
            log
        },
    );
}
