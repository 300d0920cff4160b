//! `--self-test`: shows that the checks catch what they must (a lost, duplicated or reordered
//! message, per publisher, and a queue message delivered twice or never), against a fake
//! server on loopback, so that a green table means something.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use crate::fan::receiver;
use crate::scenarios::check_queue;
use crate::wire::{Checker, Conn};

fn payload(id: u32, seq: u32) -> Vec<u8> {
    let mut p = id.to_le_bytes().to_vec();
    p.extend_from_slice(&seq.to_le_bytes());
    p.extend_from_slice(b"padding!");
    p
}

/// Feeds `(publisher, seq)` pairs to a fresh checker; returns the first error.
fn checker_verdict(messages: &[(u32, u32)]) -> Result<(), String> {
    let mut checker = Checker::default();
    messages
        .iter()
        .try_for_each(|&(id, seq)| checker.check(&payload(id, seq)))
}

/// Serves `messages` as MSG frames to one connection, answers one PING with PONG, and returns
/// what a `receiver` expecting `expected` messages made of them.
fn receiver_verdict(messages: &[(u32, u32)], expected: usize) -> Result<(), String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let mut frames = Vec::new();
    for &(id, seq) in messages {
        let p = payload(id, seq);
        frames.extend_from_slice(format!("MSG bench.fan 1 {}\r\n", p.len()).as_bytes());
        frames.extend_from_slice(&p);
        frames.extend_from_slice(b"\r\n");
    }
    let fake = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut conn, _) = listener.accept()?;
        conn.set_read_timeout(Some(Duration::from_secs(2)))?;
        conn.write_all(&frames)?;
        let mut ping = [0u8; 6];
        if conn.read_exact(&mut ping).is_ok() && &ping == b"PING\r\n" {
            conn.write_all(b"PONG\r\n")?;
        }
        // Hold the connection open until the client is done.
        let _ = conn.read(&mut ping);
        Ok(())
    });
    let client = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    let client = Conn::from(client);
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let verdict = receiver(client, expected)
        .join()
        .map_err(|_| "receiver panicked".to_string())?
        .map(|_| ());
    let _ = fake.join();
    verdict
}

pub fn run() -> Result<(), String> {
    let mut failures = Vec::new();
    let mut expect = |what: &str, verdict: Result<(), String>, ok: bool| {
        let passed = verdict.is_ok() == ok;
        println!(
            "{} {what}: {}",
            if passed { "ok  " } else { "FAIL" },
            match &verdict {
                Ok(()) => "accepted".to_string(),
                Err(e) => format!("rejected ({e})"),
            }
        );
        if !passed {
            failures.push(what.to_string());
        }
    };
    expect(
        "checker, in order",
        checker_verdict(&[(0, 0), (0, 1), (0, 2)]),
        true,
    );
    expect(
        "checker, two publishers interleaved",
        checker_verdict(&[(0, 0), (1, 0), (1, 1), (0, 1)]),
        true,
    );
    expect("checker, a loss", checker_verdict(&[(0, 0), (0, 2)]), false);
    expect(
        "checker, a duplicate",
        checker_verdict(&[(0, 0), (0, 1), (0, 1)]),
        false,
    );
    expect(
        "checker, a reordering",
        checker_verdict(&[(0, 1), (0, 0)]),
        false,
    );
    expect(
        "checker, a loss on one publisher of two",
        checker_verdict(&[(0, 0), (1, 0), (0, 1), (1, 2)]),
        false,
    );
    expect(
        "receiver, all there",
        receiver_verdict(&[(0, 0), (0, 1), (0, 2)], 3),
        true,
    );
    expect(
        "receiver, the last one duplicated",
        receiver_verdict(&[(0, 0), (0, 1), (0, 2), (0, 2)], 3),
        false,
    );
    expect(
        "receiver, the last one lost (times out)",
        receiver_verdict(&[(0, 0), (0, 1)], 3),
        false,
    );
    expect(
        "receiver, swapped",
        receiver_verdict(&[(0, 0), (0, 2), (0, 1)], 3),
        false,
    );
    let queue = |members: &[&[u32]]| {
        let members: Vec<Vec<u32>> = members.iter().map(|m| m.to_vec()).collect();
        check_queue(4, &members).map(|_| ())
    };
    expect("queue, each once", queue(&[&[0, 2], &[1], &[3]]), true);
    expect("queue, one twice", queue(&[&[0, 2], &[1, 2], &[3]]), false);
    expect("queue, one lost", queue(&[&[0, 2], &[1]]), false);
    expect(
        "queue, reordered within a member",
        queue(&[&[2, 0], &[1, 3]]),
        false,
    );
    if failures.is_empty() {
        println!("self-test: all checks behave");
        Ok(())
    } else {
        Err(format!("self-test failed: {failures:?}"))
    }
}
