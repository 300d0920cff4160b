//! A server under test, run as its own process on loopback, with its CPU time and memory read
//! from /proc.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which binary and how to name it in the table.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub binary: PathBuf,
}

/// A running server process; killed on drop.
pub struct Server {
    child: Child,
    pub port: u16,
}

/// Clock ticks per second for /proc/<pid>/stat times (`getconf CLK_TCK` is 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

impl Server {
    /// Starts `target` on a free loopback port and waits until it accepts connections.
    pub fn start(target: &Target) -> Result<Server, String> {
        let port = free_port()?;
        let child = Command::new(&target.binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", target.binary.display()))?;
        let server = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(format!("{} did not start", target.name));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(server)
    }

    fn proc_file(&self, name: &str) -> String {
        std::fs::read_to_string(Path::new("/proc").join(self.child.id().to_string()).join(name))
            .unwrap_or_default()
    }

    /// User plus system CPU seconds used so far.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = self.proc_file("stat");
        // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
        (ticks(11) + ticks(12)) / TICKS_PER_SECOND
    }

    fn status_kib(&self, key: &str) -> u64 {
        self.proc_file("status")
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Resident memory now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// Peak resident memory so far, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}
