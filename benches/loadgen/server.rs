//! A server under test, run as its own process on loopback, with its CPU time and memory read
//! from /proc.
//!
//! Each process is killed by its PID when the `Server` is dropped (also while unwinding from a
//! panic), and asks the kernel to SIGKILL it should the load generator die first
//! (`PR_SET_PDEATHSIG`), so no server outlives the generator.

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Which binary and how to name it in the table.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub binary: PathBuf,
}

/// A running server process; killed on drop.
pub struct Server {
    child: Mutex<Child>,
    pid: u32,
    pub port: u16,
}

/// Clock ticks per second for /proc/<pid>/stat times (`getconf CLK_TCK` is 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// How long a server may take to accept its first connection.
const START_TIMEOUT: Duration = Duration::from_secs(10);

extern "C" {
    /// glibc's `prctl(2)`; std links the C library already.
    fn prctl(option: i32, ...) -> i32;
}

const PR_SET_PDEATHSIG: i32 = 1;
const SIGKILL: i32 = 9;

impl Server {
    /// Starts `target` on a free loopback port, with the configuration file `config` if
    /// given (written beside `log`; the address flags override it), its standard error going
    /// to `log`, and waits until it accepts connections.
    pub fn start(target: &Target, log: &Path, config: Option<&str>) -> Result<Server, String> {
        let port = free_port()?;
        let stderr = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut command = Command::new(&target.binary);
        if let Some(config) = config {
            let path = log.with_extension("conf");
            std::fs::write(&path, config).map_err(|e| format!("{}: {e}", path.display()))?;
            command.arg("-c").arg(path);
        }
        command
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        // SAFETY: between fork and exec only the async-signal-safe prctl call runs.
        unsafe {
            command.pre_exec(|| {
                prctl(PR_SET_PDEATHSIG, SIGKILL as std::ffi::c_ulong);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", target.binary.display()))?;
        let server = Server {
            pid: child.id(),
            child: Mutex::new(child),
            port,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child().try_wait() {
                return Err(format!("{} exited at start: {status}", target.name));
            }
            if Instant::now() > deadline {
                return Err(format!("{} did not start", target.name));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(server)
    }

    fn child(&self) -> std::sync::MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Kills the process now (by its PID) and reaps it. Every connection to it then fails,
    /// which ends any scenario thread still blocked on one.
    pub fn kill(&self) {
        let mut child = self.child();
        let _ = child.kill();
        let _ = child.wait();
    }

    /// True while the process has not exited.
    pub fn is_running(&self) -> bool {
        matches!(self.child().try_wait(), Ok(None))
    }

    fn proc_file(&self, name: &str) -> String {
        std::fs::read_to_string(Path::new("/proc").join(self.pid.to_string()).join(name))
            .unwrap_or_default()
    }

    /// User plus system CPU seconds used so far.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = self.proc_file("stat");
        // Fields after the parenthesised command name, from field 3 (state) on; utime and
        // stime are fields 14 and 15, so indices 11 and 12 here.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
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
        self.kill();
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

#[repr(C)]
struct Rlimit {
    cur: u64,
    max: u64,
}

extern "C" {
    fn getrlimit(resource: i32, rlim: *mut Rlimit) -> i32;
    fn setrlimit(resource: i32, rlim: *const Rlimit) -> i32;
}

const RLIMIT_NOFILE: i32 = 7;

/// Raises this process's open-file limit (inherited by the servers it starts) to `want`, or
/// to the hard limit if that is lower. Returns the soft limit in force afterwards.
pub fn raise_open_files(want: u64) -> u64 {
    let mut limit = Rlimit { cur: 0, max: 0 };
    // SAFETY: plain system calls on a properly laid out `struct rlimit`.
    unsafe {
        if getrlimit(RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.cur < want {
            let raised = Rlimit {
                cur: want.min(limit.max),
                max: limit.max,
            };
            if setrlimit(RLIMIT_NOFILE, &raised) == 0 {
                limit.cur = raised.cur;
            }
        }
    }
    limit.cur
}
