//! The publish/subscribe runs most scenarios are made of: publishers and subscribers on
//! their own connections (over TCP, WebSocket or TLS), every message checked per publisher and
//! per subscriber, and what can disturb them meanwhile (a stuck subscriber, subscription
//! churn, paced or not).

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::scenarios::{
    io, join, metric, node_b, per_second, published, Better, Metric, Outcome, Scale,
    INTEREST_TIMEOUT,
};
use crate::server::Server;
pub use crate::wire::Via;
use crate::wire::{
    await_interest, barrier, connect, connect_to, is_timeout, numbers, parse_sid, tune, Checker,
    Conn, Frame, Publisher, Reader,
};

/// One publish/subscribe run: who publishes, who subscribes, over what, and what disturbs
/// them.
#[derive(Clone, Copy)]
pub struct Fan {
    pub size: usize,
    pub pubs: usize,
    pub subs: usize,
    /// One connection both subscribes and publishes (needs `pubs == subs == 1`).
    pub same_conn: bool,
    /// Publisher `i` publishes to a subject of its own that only subscriber `i` takes (needs
    /// `pubs == subs`): `pubs` independent 1:1 streams rather than one subject.
    pub disjoint: bool,
    /// Also subscribe a connection that never reads.
    pub stuck: bool,
    /// Subscribe and unsubscribe on another connection meanwhile.
    pub churn: Churn,
    /// Messages per publisher (0: chosen by size).
    pub count: usize,
    /// Publishers on node A of a cluster, every other connection on node B.
    pub across: bool,
    /// How the publishers and subscribers connect.
    pub via: Via,
}

/// Subscription churn beside a run.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Churn {
    Off,
    /// As fast as one connection gets through batches of 100 pairs with a round trip and a
    /// millisecond's pause each.
    Free,
    /// This many SUB + UNSUB pairs per second, paced (`start_paced_churn`).
    Paced(u64),
}

impl Default for Fan {
    fn default() -> Self {
        Fan {
            size: 16,
            pubs: 1,
            subs: 1,
            same_conn: false,
            disjoint: false,
            stuck: false,
            churn: Churn::Off,
            count: 0,
            across: false,
            via: Via::Tcp,
        }
    }
}

pub struct FanResult {
    pub metrics: Vec<Metric>,
    pub delivered_per_second: f64,
    /// SUB + UNSUB pairs per second the churn connection got through.
    pub churn_rate: f64,
}

/// Starts a thread that reads `expected` messages on `stream`, checking per publisher that
/// each arrives once and in order, then makes sure no further message follows; returns when
/// the last expected message arrived.
pub fn receiver(stream: Conn, expected: usize) -> JoinHandle<Result<Instant, String>> {
    routed_receiver(stream, expected, None)
}

/// `receiver`, and with `Some(n)` also checks that message `seq` came on sid `seq % n + 1`
/// (the subscription of the subject it was published to, see `publish_to_each`).
pub fn routed_receiver(
    stream: Conn,
    expected: usize,
    subjects: Option<usize>,
) -> JoinHandle<Result<Instant, String>> {
    std::thread::spawn(move || {
        let mut reader = Reader::new(stream);
        let mut checker = Checker::default();
        while (checker.count as usize) < expected {
            let frame = reader.next().map_err(|e| {
                let e = if is_timeout(&e) {
                    "read timed out (a message lost?)".to_string()
                } else {
                    e.to_string()
                };
                format!("after {} of {expected} messages: {e}", checker.count)
            })?;
            match frame {
                Frame::Msg { payload, sid, .. } => {
                    checker.check(payload)?;
                    if let (Some(n), Some((_, seq))) = (subjects, numbers(payload)) {
                        let want = seq as usize % n + 1;
                        if parse_sid(sid) != Some(want) {
                            return Err(format!(
                                "message {seq} delivered on sid {:?}, expected {want}",
                                String::from_utf8_lossy(sid)
                            ));
                        }
                    }
                }
                Frame::Pong | Frame::Other => {}
            }
        }
        let last = Instant::now();
        reader.expect_no_more()?;
        Ok(last)
    })
}

/// Messages per publisher of `fan` (as if `fan.pubs` published).
fn fan_count(scale: Scale, fan: Fan) -> usize {
    if fan.count > 0 {
        fan.count
    } else {
        let per = scale.count(fan.size, 500_000, 5_000_000);
        // Keep the deliveries, not only the publishes, within the run's budget.
        (per / fan.subs.max(fan.pubs).div_ceil(2)).max(32)
    }
}

pub fn fan(server: &Server, scale: Scale, fan: Fan) -> Result<FanResult, String> {
    assert!(!fan.same_conn || (fan.pubs == 1 && fan.subs == 1 && !fan.across));
    assert!(!fan.disjoint || fan.pubs == fan.subs);
    if server.relay {
        return relay_fan(server, scale, fan);
    }
    let pub_port = match fan.via {
        Via::Ws => server
            .ws_port
            .ok_or("a WebSocket scenario without a websocket listener")?,
        Via::Tcp | Via::Tls => server.port,
    };
    let sub_port = if fan.across {
        node_b(server)?
    } else {
        pub_port
    };
    let per_publisher = fan_count(scale, fan);
    let published_count = per_publisher * fan.pubs;
    // What each subscriber receives: every publisher's messages, or (disjoint) its own
    // publisher's.
    let expected = match fan.disjoint {
        true => per_publisher,
        false => published_count,
    };
    let subject = |i: usize| match fan.disjoint {
        true => format!("bench.fan.{i}"),
        false => "bench.fan".to_string(),
    };
    // One publisher's messages may be split over the tuning's number of connections.
    let pubs = if fan.pubs == 1 && !fan.same_conn {
        tune().pubs
    } else {
        fan.pubs
    };
    let mut receivers = Vec::new();
    let mut same = None;
    for i in 0..fan.subs {
        let mut conn = connect_to(sub_port, fan.via).map_err(io)?;
        conn.write_all(format!("SUB {} 1\r\n", subject(i)).as_bytes())
            .map_err(io)?;
        barrier(&mut conn).map_err(io)?;
        if fan.across {
            let probe = format!("bench.probe.sub{i}");
            await_interest(&mut conn, server.port, &probe, INTEREST_TIMEOUT)?;
        }
        if fan.same_conn {
            same = Some(conn.try_clone().map_err(io)?);
        }
        receivers.push(receiver(conn, expected));
    }
    let _stuck = if fan.stuck {
        let mut conn = connect(sub_port).map_err(io)?;
        conn.write_all(b"SUB bench.fan 9\r\n").map_err(io)?;
        barrier(&mut conn).map_err(io)?;
        Some(conn)
    } else {
        None
    };
    let stop = Arc::new(AtomicBool::new(false));
    let churner = match fan.churn {
        Churn::Off => None,
        Churn::Free => Some(start_churn(sub_port, stop.clone())?),
        Churn::Paced(rate) => Some(start_paced_churn(sub_port, rate, stop.clone())?),
    };
    let mut publishers = Vec::new();
    for id in 0..pubs {
        let conn = match same.take() {
            Some(conn) => conn,
            None => {
                let mut conn = connect_to(pub_port, fan.via).map_err(io)?;
                barrier(&mut conn).map_err(io)?;
                conn
            }
        };
        let share = published_count / pubs + usize::from(id < published_count % pubs);
        let publisher = Publisher::new(id as u32, &subject(id), None, fan.size);
        publishers.push((conn, publisher, share));
    }
    let start = Instant::now();
    let senders: Vec<_> = publishers
        .into_iter()
        .map(|(mut conn, mut publisher, share)| {
            std::thread::spawn(move || {
                publisher.send(&mut conn, share).map_err(io)?;
                Ok(conn)
            })
        })
        .collect();
    let mut held = Vec::new();
    let mut failure = None;
    for sender in senders {
        match join(sender, "publisher") {
            Ok(conn) => held.push(conn),
            Err(e) => failure = failure.or(Some(format!("publishing: {e}"))),
        }
    }
    let mut last = start;
    for receiver in receivers {
        match join(receiver, "subscriber") {
            Ok(at) => last = last.max(at),
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let churn_rate = match churner {
        Some(churner) => join(churner, "churn")?,
        None => 0.0,
    };
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(fan_result(
        published_count,
        expected * fan.subs,
        fan.size,
        last - start,
        churn_rate,
    ))
}

/// What a fan run gives: `published` messages, `delivered` in all, of `size` bytes, the last
/// delivered `elapsed` after the first was sent.
fn fan_result(
    published_count: usize,
    delivered: usize,
    size: usize,
    elapsed: Duration,
    churn_rate: f64,
) -> FanResult {
    let rate = per_second(delivered, elapsed);
    FanResult {
        metrics: vec![
            metric("msgs/s delivered", rate, "msg/s", Better::Higher),
            metric(
                "MB/s delivered",
                per_second(delivered * size, elapsed) / 1e6,
                "MB/s",
                Better::Higher,
            ),
            published(published_count),
        ],
        delivered_per_second: rate,
        churn_rate,
    }
}

/// `fan` through the relay: one subscriber, one publisher sending MSG frames that the relay
/// passes on unparsed; the subscriber checks them as against a server, then sees the relay
/// close the connection (after the publisher closed its own).
fn relay_fan(server: &Server, scale: Scale, fan: Fan) -> Result<FanResult, String> {
    if fan.subs != 1
        || fan.pubs != 1
        || fan.same_conn
        || fan.across
        || fan.stuck
        || fan.churn != Churn::Off
        || fan.via != Via::Tcp
    {
        return Err("the relay runs plain 1:1 scenarios only".into());
    }
    let expected = fan_count(scale, fan);
    let mut sub = Conn::tcp(server.port).map_err(io)?;
    sub.write_all(b"SUB\n").map_err(io)?;
    let mut ok = [0u8; 3];
    std::io::Read::read_exact(&mut sub, &mut ok).map_err(io)?;
    if &ok != b"OK\n" {
        return Err(format!("the relay answered {ok:?}"));
    }
    let receiver = std::thread::spawn(move || -> Result<Instant, String> {
        let mut reader = Reader::new(sub);
        let mut checker = Checker::default();
        while (checker.count as usize) < expected {
            match reader
                .next()
                .map_err(|e| format!("after {}: {e}", checker.count))?
            {
                Frame::Msg { payload, .. } => checker.check(payload)?,
                Frame::Pong | Frame::Other => return Err("the relay sent a non-MSG line".into()),
            }
        }
        let last = Instant::now();
        reader.expect_end()?;
        Ok(last)
    });
    let mut conn = Conn::tcp(server.port).map_err(io)?;
    conn.write_all(b"PUB\n").map_err(io)?;
    let mut publisher = Publisher::relayed(0, "bench.fan", fan.size);
    let start = Instant::now();
    let sent = publisher.send(&mut conn, expected).map_err(io);
    drop(conn);
    let last = join(receiver, "subscriber")?;
    sent?;
    Ok(fan_result(expected, expected, fan.size, last - start, 0.0))
}

/// SUB and UNSUB pairs per batch of the churn connection.
const CHURN_BATCH: u64 = 100;

/// Subscribes and unsubscribes continuously (a batch of 100 pairs, a PING round trip, a
/// millisecond's pause) until `stop`; returns the pairs per second it got through.
fn start_churn(
    port: u16,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<Result<f64, String>>, String> {
    let mut conn = connect(port).map_err(io)?;
    barrier(&mut conn).map_err(io)?;
    Ok(std::thread::spawn(move || {
        let start = Instant::now();
        let mut round = 0u64;
        let mut batch = String::new();
        while !stop.load(Ordering::Relaxed) {
            batch.clear();
            for i in 0..CHURN_BATCH {
                let sid = round * CHURN_BATCH + i;
                batch.push_str(&format!("SUB churn.{sid}.x {sid}\r\nUNSUB {sid}\r\n"));
            }
            conn.write_all(batch.as_bytes()).map_err(io)?;
            barrier(&mut conn).map_err(|e| format!("churn: {e}"))?;
            round += 1;
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(per_second((round * CHURN_BATCH) as usize, start.elapsed()))
    }))
}

/// The paced churner's tick: one batch of `rate / 1000` pairs per millisecond.
const CHURN_TICK: Duration = Duration::from_millis(1);

/// Batches sent and not yet answered (each ends with a PING) past which the paced churner
/// waits for the server rather than queue more: 8 ms of churn.
const CHURN_AHEAD: u64 = 8;

/// Ticks a late churner may catch up on at once, so that a descheduled churner does not
/// follow a pause with a burst of more than 10 ms of churn.
const CHURN_CATCH_UP: u32 = 10;

/// Subscribes and unsubscribes at `rate` pairs per second until `stop`: every millisecond a
/// batch of `rate / 1000` SUB + UNSUB pairs (distinct subjects no publisher uses) followed by a
/// PING, with at most `CHURN_AHEAD` batches unanswered. Returns the pairs per second the
/// server got through (batches answered by the time of `stop`), which falls short of `rate`
/// when the server, or the churner's share of the machine, cannot keep the pace.
fn start_paced_churn(
    port: u16,
    rate: u64,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<Result<f64, String>>, String> {
    let per_batch = (rate / 1000).max(1);
    let mut conn = connect(port).map_err(io)?;
    barrier(&mut conn).map_err(io)?;
    let answered = Arc::new(AtomicU64::new(0));
    // The number of PONGs after which the reading thread returns (set before the last PING
    // goes out).
    let last = Arc::new(AtomicU64::new(u64::MAX));
    let pongs = {
        let (answered, last) = (answered.clone(), last.clone());
        let mut reader = Reader::new(conn.try_clone().map_err(io)?);
        std::thread::spawn(move || -> Result<(), String> {
            while answered.load(Ordering::Acquire) < last.load(Ordering::Acquire) {
                if let Frame::Pong = reader.next().map_err(|e| format!("churn: {e}"))? {
                    answered.fetch_add(1, Ordering::Release);
                }
            }
            Ok(())
        })
    };
    Ok(std::thread::spawn(move || {
        let start = Instant::now();
        let mut due = start;
        let mut sent = 0u64;
        let mut batch = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now < due {
                std::thread::sleep(due - now);
                continue;
            }
            if sent - answered.load(Ordering::Acquire) >= CHURN_AHEAD {
                std::thread::sleep(Duration::from_micros(100));
                continue;
            }
            batch.clear();
            for i in 0..per_batch {
                let sid = sent * per_batch + i;
                write!(batch, "SUB churn.{sid}.x {sid}\r\nUNSUB {sid}\r\n").map_err(io)?;
            }
            batch.extend_from_slice(b"PING\r\n");
            conn.write_all(&batch).map_err(io)?;
            sent += 1;
            due = (due + CHURN_TICK).max(now - CHURN_TICK * CHURN_CATCH_UP);
        }
        let elapsed = start.elapsed();
        let done = answered.load(Ordering::Acquire);
        // One more PING, whose PONG ends the reading thread however far it had got (it may
        // already wait for a PONG that no batch will bring).
        last.store(sent + 1, Ordering::Release);
        conn.write_all(b"PING\r\n").map_err(io)?;
        join(pongs, "churn reader")?;
        Ok(per_second((done * per_batch) as usize, elapsed))
    }))
}

/// Runs `calm`, then `disturbed`, then `calm` again on the same server; returns the disturbed
/// run and its throughput over the calm runs' mean (so that warming up favours neither).
fn against_calm(
    server: &Server,
    scale: Scale,
    calm: Fan,
    disturbed: Fan,
) -> Result<(FanResult, f64), String> {
    let before = fan(server, scale, calm)?;
    let with = fan(server, scale, disturbed)?;
    let after = fan(server, scale, calm)?;
    let calm_rate = (before.delivered_per_second + after.delivered_per_second) / 2.0;
    let ratio = with.delivered_per_second / calm_rate;
    Ok((with, ratio))
}

pub fn stuck_neighbour(server: &Server, scale: Scale) -> Outcome {
    // A full run passes the 64 MiB pending limit of tern and nats-server, so the stuck
    // subscriber becomes a slow consumer on the way (nats-server first stalls the publisher
    // once the stuck one holds more than half of it, until its 10 s write deadline cuts the
    // stuck one off: a full run takes about 10 s there). The quick run stays under half.
    let count = scale.pick(30_000, 150_000);
    let calm = Fan {
        size: 1024,
        count,
        ..Fan::default()
    };
    let (with, ratio) = against_calm(
        server,
        scale,
        calm,
        Fan {
            stuck: true,
            ..calm
        },
    )?;
    Ok(vec![
        metric(
            "fast sub msgs/s, stuck one beside",
            with.delivered_per_second,
            "msg/s",
            Better::Higher,
        ),
        metric(
            "vs without the stuck one (target >= 0.9)",
            ratio,
            "x",
            Better::Higher,
        ),
    ])
}

/// A steady 1:1 stream of 16 B messages with subscription churn beside it (`how`), against
/// the same stream calm.
pub fn churn(server: &Server, scale: Scale, how: Churn) -> Outcome {
    let count = scale.pick(500_000, 5_000_000);
    let calm = Fan {
        size: 16,
        count,
        ..Fan::default()
    };
    let (with, ratio) = against_calm(server, scale, calm, Fan { churn: how, ..calm })?;
    let target = match how {
        Churn::Paced(rate) if rate > 100_000 => "target >= 0.7",
        _ => "target >= 0.9",
    };
    Ok(vec![
        metric(
            "msgs/s with churn",
            with.delivered_per_second,
            "msg/s",
            Better::Higher,
        ),
        metric(
            format!("vs without churn ({target})"),
            ratio,
            "x",
            Better::Higher,
        ),
        metric(
            "msgs/s calm (mean of the runs before and after)",
            with.delivered_per_second / ratio.max(1e-9),
            "msg/s",
            Better::Higher,
        ),
        metric(
            "SUB+UNSUB pairs/s meanwhile",
            with.churn_rate,
            "pairs/s",
            Better::Higher,
        ),
    ])
}
