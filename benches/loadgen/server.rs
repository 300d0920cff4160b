//! A server under test, run as its own process on loopback (or a cluster of two such
//! processes), with its CPU time and memory read from /proc.
//!
//! Each process is killed by its PID when the `Server` is dropped (also while unwinding from a
//! panic), and asks the kernel to SIGKILL it should the load generator die first
//! (`PR_SET_PDEATHSIG`), so no server outlives the generator.

use std::ffi::OsString;
use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

/// Which binary and how to name it in the table.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub binary: PathBuf,
    /// Arguments before the address flags (`--relay-serve` for the relay).
    pub args: Vec<String>,
    /// The relay (`relay.rs`), not a NATS server: runs only the scenarios that support it.
    pub relay: bool,
    /// Run under `valgrind --tool=cachegrind` to count the instructions it executes (see
    /// `Server::instructions`).
    pub cachegrind: bool,
    /// Pin the process to these CPUs (`taskset -c <cpus>`, which execs the server in place:
    /// the PID measured is the server's).
    pub cpus: Option<&'static str>,
}

impl Target {
    /// A NATS server binary, named `name` in the table.
    pub fn server(name: &str, binary: &Path) -> Target {
        Target {
            name: name.into(),
            binary: binary.into(),
            args: Vec::new(),
            relay: false,
            cachegrind: false,
            cpus: None,
        }
    }
}

/// A server under test: one process, or a cluster of two processes of the same binary (node A
/// and node B, B routing to A). Every process is killed on drop.
pub struct Server {
    nodes: Vec<Node>,
    /// The client port of the only node, or of node A in a cluster.
    pub port: u16,
    /// The WebSocket port of the only node, when its configuration has a `websocket` block.
    pub ws_port: Option<u16>,
    /// The relay rather than a NATS server (see `relay.rs`).
    pub relay: bool,
    /// JetStream's store directory (`-sd`), when it runs with JetStream.
    pub store: Option<PathBuf>,
}

/// One server process.
struct Node {
    child: Mutex<Child>,
    pid: AtomicU32,
    port: u16,
    /// Where cachegrind writes its counts, when run under it.
    cachegrind_out: Option<PathBuf>,
    /// How it was started, for [`Server::kill9_and_restart`].
    binary: PathBuf,
    args: Vec<OsString>,
    /// A restarted process's parent thread (`PR_SET_PDEATHSIG` fires when the thread that
    /// spawned it exits, not the process), kept until the process is killed.
    keeper: Mutex<Option<mpsc::Sender<()>>>,
}

/// Clock ticks per second for /proc/<pid>/stat times (`getconf CLK_TCK` is 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// How long a server may take to accept its first connection, and a cluster to route a
/// message from node A to node B.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The log line that gives a node's route address (nats-server's and tern's alike).
const ROUTE_LISTENING: &str = "Listening for route connections on ";
/// The log line that gives a node's leafnode address (nats-server's and tern's alike).
const LEAF_LISTENING: &str = "Listening for leafnode connections on ";
/// The log line that gives a node's WebSocket address (`ws://host:port`).
const WS_LISTENING: &str = "Listening for websocket clients on ws://";

extern "C" {
    /// glibc's `prctl(2)`; std links the C library already.
    fn prctl(option: i32, ...) -> i32;
}

const PR_SET_PDEATHSIG: i32 = 1;
const SIGKILL: i32 = 9;

/// The log files of a cluster's nodes A and B, beside `log` (`x.log`: `x-A.log`, `x-B.log`).
pub fn cluster_logs(log: &Path) -> [PathBuf; 2] {
    let stem = log.file_stem().unwrap_or_default().to_string_lossy();
    ["A", "B"].map(|node| log.with_file_name(format!("{stem}-{node}.log")))
}

impl Server {
    /// Starts `target` on a free loopback port, with the configuration file `config` if
    /// given (written beside `log`; the address flags override it), with JetStream on
    /// (`-js -sd <store>`) when `store` is given, its standard error going to `log`, and waits
    /// until it accepts connections.
    pub fn start(
        target: &Target,
        log: &Path,
        config: Option<&str>,
        store: Option<&Path>,
    ) -> Result<Server, String> {
        let node = Node::start(target, log, config, store)?;
        let ws_port = match config {
            Some(config) if config.contains("websocket") => {
                let addr = node.logged_address(target, log, WS_LISTENING)?;
                let port = addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok());
                Some(
                    port.ok_or_else(|| format!("{}: bad websocket address {addr:?}", target.name))?,
                )
            }
            _ => None,
        };
        Ok(Server {
            port: node.port,
            ws_port,
            nodes: vec![node],
            relay: target.relay,
            store: store.map(Path::to_path_buf),
        })
    }

    /// Kills the only process with SIGKILL (`kill -9`) and starts the same binary again with
    /// the same arguments (port, store directory), its standard error going to `log`; returns
    /// when the new process was spawned, without waiting for it to accept connections.
    pub fn kill9_and_restart(&self, log: &Path) -> Result<Instant, String> {
        let [node] = self.nodes.as_slice() else {
            return Err("kill -9 and restart of a cluster".into());
        };
        node.kill();
        let stderr = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut command = Command::new(&node.binary);
        command.args(&node.args);
        let spawned = Instant::now();
        // Spawned by a thread that lives until the node is killed, not by the scenario's.
        let (child_tx, child_rx) = mpsc::channel();
        let (keeper, until_killed) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            let _ = child_tx.send(spawn(command, stderr));
            let _ = until_killed.recv();
        });
        let child = child_rx
            .recv()
            .map_err(|_| "the restarting thread died".to_string())??;
        node.pid.store(child.id(), Ordering::Relaxed);
        *node.child() = child;
        *node.keeper.lock().unwrap_or_else(|p| p.into_inner()) = Some(keeper);
        Ok(spawned)
    }

    /// Starts a cluster of two `target` processes on free loopback ports, node A and then
    /// node B routing to A, each with `config` (if any) plus its `cluster` block, logging to
    /// `cluster_logs(log)`; reads A's route port from its log, and returns once a message
    /// published on A reaches a subscription on B (the route is up, interest flows).
    pub fn start_cluster(
        target: &Target,
        log: &Path,
        config: Option<&str>,
    ) -> Result<Server, String> {
        let [log_a, log_b] = cluster_logs(log);
        let config = config.unwrap_or_default();
        let a = Node::start(
            target,
            &log_a,
            Some(&format!(
                "{config}\ncluster {{ name: loadgen, listen: \"127.0.0.1:-1\" }}\n"
            )),
            None,
        )?;
        let route = a.logged_address(target, &log_a, ROUTE_LISTENING)?;
        let b = Node::start(
            target,
            &log_b,
            Some(&format!(
                "{config}\ncluster {{ name: loadgen, listen: \"127.0.0.1:-1\", \
                 routes: [\"nats-route://{route}\"] }}\n"
            )),
            None,
        )?;
        let server = Server {
            port: a.port,
            ws_port: None,
            nodes: vec![a, b],
            relay: target.relay,
            store: None,
        };
        let mut probe = crate::wire::connect(server.node_port(1)).map_err(|e| e.to_string())?;
        crate::wire::await_interest(&mut probe, server.port, "loadgen.route.up", START_TIMEOUT)
            .map_err(|e| format!("{}: the route from B to A: {e}", target.name))?;
        Ok(server)
    }

    /// Starts a hub and a leafnode of `target` on free loopback ports (the leaf dialing the
    /// hub, both with `config` if any), logging to `cluster_logs(log)` (A, then B); node A,
    /// the publishers' side, is the leaf when `a_is_leaf`. Returns once a message published on
    /// A reaches a subscription on B (the link is up, interest flows).
    pub fn start_leaf(
        target: &Target,
        log: &Path,
        config: Option<&str>,
        a_is_leaf: bool,
    ) -> Result<Server, String> {
        let [log_a, log_b] = cluster_logs(log);
        let (hub_log, leaf_log) = match a_is_leaf {
            true => (log_b, log_a),
            false => (log_a, log_b),
        };
        let config = config.unwrap_or_default();
        // nats-server 2.10+ frames a leafnode link for S2 by default (`s2_auto`, which at
        // loopback round trips sends uncompressed data in S2 frames): `off` drives it at its
        // best, and is what tern does anyway. 2.9 has no leafnode compression and refuses the
        // key.
        let compression = match target.name.starts_with("nats-server 2.9.") {
            true => "",
            false => ", compression: off",
        };
        let hub = Node::start(
            target,
            &hub_log,
            Some(&format!(
                "{config}\nleafnodes {{ listen: \"127.0.0.1:-1\"{compression} }}\n"
            )),
            None,
        )?;
        let addr = hub.logged_address(target, &hub_log, LEAF_LISTENING)?;
        let leaf = Node::start(
            target,
            &leaf_log,
            Some(&format!(
                "{config}\nleafnodes {{ remotes: [ {{ url: \"nats-leaf://{addr}\"{compression} }} ] }}\n"
            )),
            None,
        )?;
        let nodes = match a_is_leaf {
            true => vec![leaf, hub],
            false => vec![hub, leaf],
        };
        let server = Server {
            port: nodes[0].port,
            ws_port: None,
            nodes,
            relay: target.relay,
            store: None,
        };
        let mut probe = crate::wire::connect(server.node_port(1)).map_err(|e| e.to_string())?;
        crate::wire::await_interest(&mut probe, server.port, "loadgen.leaf.up", START_TIMEOUT)
            .map_err(|e| format!("{}: the leafnode link: {e}", target.name))?;
        Ok(server)
    }

    /// How many processes this server is.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The client port of node `i` (0 is A, 1 is B); panics if there is no such node.
    pub fn node_port(&self, i: usize) -> u16 {
        self.nodes[i].port
    }

    /// Kills every process now (by its PID) and reaps it. Every connection to them then
    /// fails, which ends any scenario thread still blocked on one.
    pub fn kill(&self) {
        for node in &self.nodes {
            node.kill();
        }
    }

    /// Under cachegrind: stops every process with SIGTERM (a clean shutdown, after which
    /// cachegrind writes its counts) and returns the instructions they executed in all.
    pub fn instructions(&self) -> Option<f64> {
        let mut total = 0.0;
        for node in &self.nodes {
            let out = node.cachegrind_out.as_ref()?;
            let _ = Command::new("kill")
                .args(["-TERM", &node.pid.load(Ordering::Relaxed).to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(60);
            while node.is_running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let text = std::fs::read_to_string(out).ok()?;
            let _ = std::fs::remove_file(out);
            total += text
                .lines()
                .find_map(|l| l.strip_prefix("summary:"))?
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()?;
        }
        Some(total)
    }

    /// True while no process has exited.
    pub fn is_running(&self) -> bool {
        self.nodes.iter().all(Node::is_running)
    }

    /// User plus system CPU seconds used so far, summed over the processes.
    pub fn cpu_seconds(&self) -> f64 {
        self.nodes.iter().map(Node::cpu_seconds).sum()
    }

    /// Resident memory now, in KiB, summed over the processes.
    pub fn rss_kib(&self) -> u64 {
        self.nodes.iter().map(|n| n.status_kib("VmRSS:")).sum()
    }

    /// Peak resident memory so far, in KiB: the sum of the processes' own peaks.
    pub fn peak_rss_kib(&self) -> u64 {
        self.nodes.iter().map(|n| n.status_kib("VmHWM:")).sum()
    }
}

impl Node {
    fn start(
        target: &Target,
        log: &Path,
        config: Option<&str>,
        store: Option<&Path>,
    ) -> Result<Node, String> {
        let port = free_port()?;
        let stderr = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let cachegrind_out = target.cachegrind.then(|| log.with_extension("cg"));
        let mut args: Vec<OsString> = target.args.iter().map(OsString::from).collect();
        if let Some(config) = config {
            let path = log.with_extension("conf");
            std::fs::write(&path, config).map_err(|e| format!("{}: {e}", path.display()))?;
            args.extend(["-c".into(), path.into()]);
        }
        if let Some(store) = store {
            args.extend(["-js".into(), "-sd".into(), store.into()]);
        }
        args.extend(["-a", "127.0.0.1", "-p", &port.to_string()].map(OsString::from));
        let mut command = match &cachegrind_out {
            Some(out) => {
                let _ = std::fs::remove_file(out);
                let mut c = Command::new("valgrind");
                c.args(["--tool=cachegrind", "--cache-sim=no"])
                    .arg(format!("--cachegrind-out-file={}", out.display()))
                    .arg(&target.binary);
                c
            }
            None => match target.cpus {
                Some(cpus) => {
                    let mut c = Command::new("taskset");
                    c.args(["-c", cpus]).arg(&target.binary);
                    c
                }
                None => Command::new(&target.binary),
            },
        };
        command.args(&args);
        let child = spawn(command, stderr)
            .map_err(|e| format!("cannot start {}: {e}", target.binary.display()))?;
        let node = Node {
            pid: AtomicU32::new(child.id()),
            child: Mutex::new(child),
            port,
            cachegrind_out,
            binary: target.binary.clone(),
            args,
            keeper: Mutex::new(None),
        };
        let deadline = Instant::now() + START_TIMEOUT * if target.cachegrind { 6 } else { 1 };
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = node.child().try_wait() {
                return Err(format!("{} exited at start: {status}", target.name));
            }
            if Instant::now() > deadline {
                return Err(format!("{} did not start", target.name));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(node)
    }

    /// The `host:port` this node logged after `marker` (the route or WebSocket listener's).
    fn logged_address(&self, target: &Target, log: &Path, marker: &str) -> Result<String, String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let found = text
                .lines()
                .find_map(|l| l.split_once(marker))
                .map(|(_, addr)| addr.trim().to_string());
            if let Some(addr) = found {
                return Ok(addr);
            }
            if !self.is_running() {
                return Err(format!("{} exited at start", target.name));
            }
            if Instant::now() > deadline {
                return Err(format!("{} logged no address ({marker:?})", target.name));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn child(&self) -> std::sync::MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn kill(&self) {
        let mut child = self.child();
        let _ = child.kill();
        let _ = child.wait();
        self.keeper.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    fn is_running(&self) -> bool {
        matches!(self.child().try_wait(), Ok(None))
    }

    fn proc_file(&self, name: &str) -> String {
        let pid = self.pid.load(Ordering::Relaxed);
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join(name))
            .unwrap_or_default()
    }

    fn cpu_seconds(&self) -> f64 {
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
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Spawns `command` with no standard input or output and standard error to `stderr`, to be
/// SIGKILLed should the load generator die first.
fn spawn(mut command: Command, stderr: File) -> Result<Child, String> {
    command
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
    command.spawn().map_err(|e| e.to_string())
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
