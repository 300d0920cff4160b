//! The relay: the ceiling any broker can reach on this machine. A trivial server that copies
//! bytes from a publisher's socket to a subscriber's socket, unparsed, through one buffer, as
//! a broker's read-then-write does without any of the broker's work. Started as its own
//! process (`loadgen --relay-serve -a 127.0.0.1 -p PORT`) so that its CPU time is measured
//! like a server's.
//!
//! A connection says what it is in its first line: `SUB\n` (answered with `OK\n` once it is
//! queued) or `PUB\n`, whose bytes then go to the oldest queued subscriber until the
//! publisher closes, and then the subscriber is closed too. Anything else is dropped. The
//! publisher sends MSG frames ready made (`Publisher::relayed`), so the subscriber's reader
//! and checker are the same as against a server.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// Bytes per read (and write) of the copy.
const BUFFER: usize = 256 * 1024;

/// Serves on `-a HOST -p PORT` from `args` until killed.
pub fn serve(args: &[String]) -> Result<(), String> {
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let host = flag("-a").unwrap_or_else(|| "127.0.0.1".into());
    let port = flag("-p").ok_or("--relay-serve needs -p PORT")?;
    let listener = TcpListener::bind(format!("{host}:{port}")).map_err(|e| e.to_string())?;
    let waiting: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let waiting = waiting.clone();
        std::thread::spawn(move || serve_one(conn, &waiting));
    }
    Ok(())
}

fn serve_one(mut conn: TcpStream, waiting: &Mutex<Vec<TcpStream>>) {
    let _ = conn.set_nodelay(true);
    let mut role = [0u8; 4];
    if conn.read_exact(&mut role).is_err() {
        return;
    }
    match &role {
        b"SUB\n" => {
            let Ok(held) = conn.try_clone() else { return };
            waiting.lock().unwrap_or_else(|p| p.into_inner()).push(held);
            let _ = conn.write_all(b"OK\n");
        }
        b"PUB\n" => {
            let sub = {
                let mut queue = waiting.lock().unwrap_or_else(|p| p.into_inner());
                (!queue.is_empty()).then(|| queue.remove(0))
            };
            if let Some(mut sub) = sub {
                let mut buf = vec![0u8; BUFFER];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || sub.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = sub.shutdown(Shutdown::Both);
            }
        }
        _ => {}
    }
}
