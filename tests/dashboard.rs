//! The live dashboard on the monitor port: `/` answers nats-server's page of links to
//! non-browser clients (byte for byte, compared with a live nats-server 2.15.1) and the
//! dashboard to browsers; the event stream sends the history, then a sample a second whose
//! numbers are `/varz`'s, under load; `http_base_path`; HTTPS; and a real browser (headless
//! Chromium, skipped with a note when none is installed) drawing a server under load.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use common::pki::Pki;
use common::process::{http_get, start_with_ports, Process, Scratch};
use common::{Raw, TestServer, WAIT};
use futures::StreamExt;
use rustls::pki_types::ServerName;
use serde_json::Value;
use tern::Options;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// What a browser sends for a page.
const BROWSER_ACCEPT: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";

/// The counters a sample shares with `/varz`.
const COUNTERS: [&str; 4] = ["in_msgs", "in_bytes", "out_msgs", "out_bytes"];

fn monitored(mut opts: Options) -> Options {
    opts.http_port = -1;
    opts
}

/// Sends `METHOD path` (with `Accept: accept` when given) on `stream` and reads the response
/// until the server closes; returns the head and the body.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    method: &str,
    path: &str,
    accept: Option<&str>,
) -> (String, String) {
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n{accept}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut got))
        .await
        .expect("monitor answered in time")
        .expect("read");
    let text = String::from_utf8(got).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole response");
    (head.to_string(), body.to_string())
}

async fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> (String, String) {
    exchange(TcpStream::connect(addr).await.unwrap(), "GET", path, accept).await
}

async fn varz(addr: SocketAddr) -> Value {
    let (head, body) = get(addr, "/varz", None).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    serde_json::from_str(&body).unwrap()
}

/// A sample's time, in milliseconds since the Unix epoch.
fn t(sample: &Value) -> u64 {
    sample["t"].as_u64().unwrap()
}

/// Whether RFC 3339 UTC time `a` (as Go writes `/varz` `now`) is at or before `b`, when both
/// fall on the same day (otherwise `false`, which is only ever used to skip a check).
fn before_in_time(a: &str, b: &str) -> bool {
    let seconds_of_day = |text: &str| -> Option<(String, f64)> {
        let (date, time) = text.trim_end_matches('Z').split_once('T')?;
        let mut parts = time.split(':');
        let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
        let secs = h.parse::<f64>().ok()? * 3600.0
            + m.parse::<f64>().ok()? * 60.0
            + s.parse::<f64>().ok()?;
        Some((date.to_string(), secs))
    };
    match (seconds_of_day(a), seconds_of_day(b)) {
        (Some((day_a, a)), Some((day_b, b))) => day_a == day_b && a <= b,
        _ => false,
    }
}

/// A server-sent event stream, read event by event.
struct Events<S> {
    stream: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Events<S> {
    /// Asks for `path` on `stream` and checks the response head.
    async fn open(mut stream: S, path: &str) -> Self {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut events = Events {
            stream,
            buf: Vec::new(),
        };
        let head = events.until(b"\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.contains("Content-Type: text/event-stream\r\n"),
            "{head}"
        );
        assert!(!head.contains("Content-Length"), "{head}");
        events
    }

    async fn until(&mut self, end: &[u8]) -> String {
        loop {
            if let Some(at) = self.buf.windows(end.len()).position(|w| w == end) {
                let part: Vec<u8> = self.buf.drain(..at + end.len()).collect();
                return String::from_utf8(part).unwrap();
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = tokio::time::timeout(WAIT, self.stream.read(&mut chunk))
                .await
                .expect("an event in time")
                .unwrap();
            assert!(n > 0, "stream closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next event's name (`message` by default) and data.
    async fn next(&mut self) -> (String, Value) {
        let text = self.until(b"\n\n").await;
        let mut name = "message".to_string();
        let mut data = String::new();
        for line in text.lines() {
            if let Some(n) = line.strip_prefix("event: ") {
                name = n.to_string();
            } else if let Some(d) = line.strip_prefix("data: ") {
                data.push_str(d);
            }
        }
        (name, serde_json::from_str(&data).expect("JSON data"))
    }

    /// The next sample message.
    async fn tick(&mut self) -> Value {
        let (name, data) = self.next().await;
        assert_eq!(name, "message", "{data}");
        data
    }
}

/// Load on a server: one async-nats client publishing to `load.x` as fast as it flushes, with
/// two subscribers draining it; stopped on drop.
struct Load {
    stop: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Load {
    async fn start(url: &str) -> Load {
        let client = async_nats::connect(url).await.expect("connect");
        for _ in 0..2 {
            let mut sub = client.subscribe("load.x").await.unwrap();
            tokio::spawn(async move { while sub.next().await.is_some() {} });
        }
        client.flush().await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let running = stop.clone();
        let task = tokio::spawn(async move {
            let payload = bytes::Bytes::from_static(&[b'x'; 100]);
            while !running.load(Ordering::Relaxed) {
                for _ in 0..200 {
                    let _ = client.publish("load.x", payload.clone()).await;
                }
                let _ = client.flush().await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let _ = client.flush().await;
            let _ = client.drain().await;
        });
        Load { stop, task }
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = tokio::time::timeout(WAIT, self.task).await;
    }
}

impl Events<TcpStream> {
    /// The dashboard's event stream at `monitor`, past its opening `history` event.
    async fn after_history(monitor: SocketAddr) -> Self {
        let tcp = TcpStream::connect(monitor).await.unwrap();
        let mut events = Events::open(tcp, "/dashboard/events").await;
        let (name, _) = events.next().await;
        assert_eq!(name, "history");
        events
    }

    /// Within ten samples, the first that shows a closed connection: its `counter` and the
    /// newest closed event.
    async fn first_closed(&mut self, counter: &str) -> Option<(Value, Value)> {
        for _ in 0..10 {
            let tick = self.tick().await;
            if let Some(closed) = tick["closed"].as_array().filter(|c| !c.is_empty()) {
                return Some((tick["sample"][counter].clone(), closed[0].clone()));
            }
        }
        None
    }
}

/// A connection closed as stale is an event on the page: the sample counts it, as `/varz`
/// does, and names the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_connection_shows_as_an_event() {
    let server = TestServer::with(monitored(Options {
        ping_interval: Duration::from_millis(200),
        ping_max: 1,
        ..Options::default()
    }))
    .await;
    let monitor = server.monitor.unwrap();
    let mut events = Events::after_history(monitor).await;
    // A client that never answers the server's PINGs.
    let mut silent = Raw::connect(server.addr).await;
    silent
        .send("CONNECT {\"verbose\":false,\"name\":\"silent\"}\r\n")
        .await;
    let seen = events.first_closed("stale_connections").await;
    let (count, event) = seen.expect("the stale connection shown within ten samples");
    assert_eq!(count, 1);
    assert_eq!(event["reason"], "Stale Connection", "{event}");
    assert_eq!(event["name"], "silent");
    assert_eq!(varz(monitor).await["stale_connections"], 1);
}

/// A subscriber cut as a slow consumer is an event on the page too: the sample counts it, as
/// `/varz` does, and the event names the connection and nats-server's close reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_shows_as_an_event() {
    let server = TestServer::with(monitored(Options {
        max_pending: 4096,
        ..Options::default()
    }))
    .await;
    let monitor = server.monitor.unwrap();
    let mut events = Events::after_history(monitor).await;
    // A subscriber that never reads. The server's writer runs beside the publisher's reader
    // here, so the burst must also outgrow what the kernel's socket buffers take (a few MiB
    // on loopback) before its max_pending is passed: 32 MiB.
    let mut slow = Raw::connect(server.addr).await;
    slow.send("CONNECT {\"verbose\":false,\"name\":\"slow\"}\r\nSUB big 1\r\n")
        .await;
    slow.expect_before_pong("").await;
    let mut publisher = Raw::connect(server.addr).await;
    publisher.send("CONNECT {\"verbose\":false}\r\n").await;
    let payload = "x".repeat(1000);
    let burst: String = (0..32 * 1024)
        .map(|_| format!("PUB big 1000\r\n{payload}\r\n"))
        .collect();
    publisher.send(burst).await;
    let seen = events.first_closed("slow_consumers").await;
    let slow_consumers = varz(monitor).await["slow_consumers"].clone();
    let (count, event) = seen.unwrap_or_else(|| {
        panic!("the slow consumer not shown within ten samples; /varz: {slow_consumers}")
    });
    assert_eq!(count, 1);
    assert_eq!(event["reason"], "Slow Consumer (Pending Bytes)", "{event}");
    assert_eq!(event["name"], "slow");
    assert_eq!(varz(monitor).await["slow_consumers"], 1);
}

/// `/` gives nats-server's page of links to a client that does not ask for HTML, and the
/// dashboard to a browser; `/dashboard` is the dashboard for anyone; both are small.
#[tokio::test]
async fn root_serves_links_to_clients_and_the_dashboard_to_browsers() {
    let server = TestServer::with(monitored(Options::default())).await;
    let monitor = server.monitor.unwrap();
    let (head, links) = get(monitor, "/", None).await;
    assert!(
        head.contains("Content-Type: text/html; charset=utf-8\r\n"),
        "{head}"
    );
    assert!(head.contains("Vary: Accept\r\n"), "{head}");
    assert!(links.contains("<a href=./varz>General<span class=\"endpoint\"> /varz</span></a>"));
    assert_eq!(get(monitor, "/", Some("*/*")).await.1, links);
    assert_eq!(get(monitor, "/", Some("application/json")).await.1, links);

    let (head, page) = get(monitor, "/", Some(BROWSER_ACCEPT)).await;
    assert!(
        head.contains("Content-Type: text/html; charset=utf-8\r\n"),
        "{head}"
    );
    assert!(head.contains("Vary: Accept\r\n"), "{head}");
    assert!(page.starts_with("<!DOCTYPE html>"));
    for part in [
        "<canvas id=\"chart-msgs\">",
        "<meta name=\"tern-base\" content=\"\">",
    ] {
        assert!(page.contains(part), "{part}");
    }
    // Self-contained: nothing fetched from elsewhere.
    for outside in ["http://", "https://", "src=", "<link"] {
        assert!(!page.contains(outside), "{outside}");
    }
    assert!(page.len() < 100 * 1024, "{} bytes", page.len());
    assert_eq!(get(monitor, "/dashboard", None).await.1, page);

    // HEAD of the stream: its head, no body, closed.
    let tcp = TcpStream::connect(monitor).await.unwrap();
    let (head, body) = exchange(tcp, "HEAD", "/dashboard/events", None).await;
    assert!(
        head.contains("Content-Type: text/event-stream\r\n"),
        "{head}"
    );
    assert_eq!(body, "");
    let stats = varz(monitor).await["http_req_stats"].clone();
    assert_eq!(stats["/"], 4);
    assert_eq!(stats["/dashboard"], 1);
    assert_eq!(stats["/dashboard/events"], 1);
}

/// The page of links at `/` (and at the base path) is nats-server 2.15.1's, byte for byte.
#[test]
fn links_page_is_nats_servers() {
    let Some(reference) = common::reference::nats_server() else {
        return;
    };
    let scratch = Scratch::new("dashboard-links");
    for (conf, path) in [("", "/"), ("http_base_path: /mon\n", "/mon")] {
        let config = scratch.0.join("links.conf");
        std::fs::write(&config, conf).unwrap();
        let mut bodies = Vec::new();
        for (name, binary) in [
            ("nats-server", reference.clone()),
            ("tern", PathBuf::from(env!("CARGO_BIN_EXE_tern"))),
        ] {
            let dir = scratch.0.join(format!("{name}{}", path.len()));
            let (server, _, monitor) = start_with_ports(&binary, &config, &dir);
            let (status, body) = http_get(&monitor, path).expect("monitor answers");
            assert_eq!(status, 200, "{name} {path}");
            bodies.push(body);
            drop(server);
        }
        assert_eq!(bodies[1], bodies[0], "{path}");
    }
}

/// The stream starts with the history kept in the server, then sends a sample a second whose
/// counters are `/varz`'s at that moment (between a `/varz` read before it was taken and one
/// after), with the busiest connections and subjects; once the load stops, equal to `/varz`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_every_second_match_varz_under_load() {
    let server = TestServer::with(monitored(Options::default())).await;
    let monitor = server.monitor.unwrap();
    let load = Load::start(&server.url()).await;
    tokio::time::sleep(Duration::from_millis(2200)).await;

    let tcp = TcpStream::connect(monitor).await.unwrap();
    let mut events = Events::open(tcp, "/dashboard/events").await;
    let (name, history) = events.next().await;
    assert_eq!(name, "history");
    assert_eq!(history["server_id"], varz(monitor).await["server_id"]);
    assert_eq!(history["interval_ms"], 1000);
    let samples = history["samples"].as_array().unwrap();
    assert!(
        samples.len() >= 2,
        "a fresh page starts with history: {samples:?}"
    );
    assert!(samples
        .windows(2)
        .all(|w| w[0]["t"].as_u64() < w[1]["t"].as_u64()));
    assert!(samples.last().unwrap()["in_msgs"].as_u64().unwrap() > 0);

    // The first sample a page gets lists the subjects (then every fifth does).
    let mut previous = events.tick().await;
    let mut lower_bounds = 0;
    let top = &previous["subjects"][0];
    assert_eq!(top["subject"], "load.x", "{previous}");
    assert_eq!(top["subscriptions"], 2);
    for _ in 0..3 {
        // Read right after a sample: the next one is taken a second later, after this read.
        let before = varz(monitor).await;
        let tick = events.tick().await;
        let after = varz(monitor).await;
        let sample = &tick["sample"];
        let gap = t(sample) - t(&previous["sample"]);
        assert!((500..=3000).contains(&gap), "samples {gap} ms apart");
        // On a machine too busy to answer /varz within the second, `before` may be read after
        // the sample was taken: then only the upper bound holds.
        let sampled = tern::monitor::rfc3339(UNIX_EPOCH + Duration::from_millis(t(sample)));
        let read_before = before_in_time(before["now"].as_str().unwrap(), &sampled);
        lower_bounds += usize::from(read_before);
        for field in COUNTERS {
            let (b, s, a) = (&before[field], &sample[field], &after[field]);
            let (b, s, a) = (
                b.as_u64().unwrap(),
                s.as_u64().unwrap(),
                a.as_u64().unwrap(),
            );
            assert!(s <= a, "{field}: sample {s} <= varz {a} read after it");
            assert!(
                !read_before || b <= s,
                "{field}: varz {b} read before <= sample {s}"
            );
            assert!(
                s > previous["sample"][field].as_u64().unwrap(),
                "{field} grows"
            );
        }
        for field in ["connections", "subscriptions", "total_connections"] {
            assert_eq!(sample[field], after[field], "{field}");
        }
        let conns = tick["conns"].as_array().unwrap();
        assert!(
            conns
                .iter()
                .any(|c| c["msgs_per_sec"].as_f64().unwrap() > 0.0),
            "busiest connections: {conns:?}"
        );
        previous = tick;
    }

    assert!(lower_bounds > 0, "no /varz was read before a sample");
    load.stop().await;
    // Settled: two reads of /varz a little apart agree.
    let deadline = Instant::now() + WAIT;
    let mut settled = varz(monitor).await;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = varz(monitor).await;
        if COUNTERS.iter().all(|f| now[f] == settled[f]) {
            break;
        }
        assert!(Instant::now() < deadline, "counters never settled");
        settled = now;
    }
    events.tick().await;
    let quiet = events.tick().await;
    for field in COUNTERS {
        assert_eq!(quiet["sample"][field], settled[field], "{field}");
    }
}

/// With `http_base_path`, the dashboard and its stream live under it, and the page asks for
/// its stream and panels there.
#[tokio::test]
async fn dashboard_under_the_base_path() {
    let server = TestServer::with(monitored(Options {
        http_base_path: "/mon".into(),
        ..Options::default()
    }))
    .await;
    let monitor = server.monitor.unwrap();
    let (_, page) = get(monitor, "/mon", Some(BROWSER_ACCEPT)).await;
    assert!(page.contains("<meta name=\"tern-base\" content=\"/mon\">"));
    assert_eq!(get(monitor, "/mon/dashboard", None).await.1, page);
    let (_, links) = get(monitor, "/mon", None).await;
    assert!(links.contains("<a href=./mon/varz>"), "{links}");
    let (head, _) = get(monitor, "/dashboard", None).await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let tcp = TcpStream::connect(monitor).await.unwrap();
    let mut events = Events::open(tcp, "/mon/dashboard/events").await;
    assert_eq!(events.next().await.0, "history");
    assert!(events.tick().await["sample"]["t"].as_u64().unwrap() > 0);
}

/// Over the HTTPS monitor (`https_port`): the page and the stream.
#[tokio::test]
async fn dashboard_over_https() {
    let pki = Pki::new("dashboard-https");
    let mut opts = pki.options(false, false);
    opts.https_port = -1;
    let server = TestServer::with(opts).await;
    let monitor = server.monitor.unwrap();
    let connect = || async {
        let tcp = TcpStream::connect(monitor).await.unwrap();
        pki.connector(None)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .expect("HTTPS handshake")
    };
    let (head, page) = exchange(connect().await, "GET", "/", Some(BROWSER_ACCEPT)).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(page.contains("<canvas id=\"chart-msgs\">"));
    let mut events = Events::open(connect().await, "/dashboard/events").await;
    assert_eq!(events.next().await.0, "history");
    assert!(events.tick().await["sample"].is_object());
}

/// Headless Chromium, or `None` (with the reason printed) when none is installed.
/// `TERN_CHROMIUM` names the binary; otherwise the PATH is searched.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TERN_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let paths = std::env::var_os("PATH")?;
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Some(found) = std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
        {
            return Some(found);
        }
    }
    eprintln!(
        "browser test skipped: no chromium on the PATH (apt-get install chromium, or set \
         TERN_CHROMIUM)"
    );
    None
}

/// Runs headless `chromium` on `url` with `args` (the page stops its stream after three
/// updates, so the browser can settle and print); returns what it wrote to standard output.
fn run_browser(chromium: &Path, scratch: &Path, args: &[&str], url: &str) -> String {
    let out = scratch.join("stdout");
    let mut process = Process(
        Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--no-first-run",
                "--window-size=1280,1000",
                "--virtual-time-budget=3000",
            ])
            .arg(format!(
                "--user-data-dir={}",
                scratch.join("profile").display()
            ))
            .args(args)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while process.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "chromium did not finish in 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::read_to_string(&out).unwrap()
}

/// A real browser against a server under load: the page's own numbers (what it drew, exported
/// in `#tern-export`) show the load and match `/varz`, its panels loaded, and a screenshot is
/// taken (kept at `TERN_DASHBOARD_SCREENSHOT` when set).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_draws_the_load() {
    let Some(chromium) = chromium() else {
        return;
    };
    let server = TestServer::with(monitored(Options::default())).await;
    let monitor = server.monitor.unwrap();
    let load = Load::start(&server.url()).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let scratch = Scratch::new("dashboard-browser");
    let url = format!("http://{monitor}/?frames=3");
    let before = varz(monitor).await;
    let dir = scratch.0.clone();
    let (browser, url2) = (chromium.clone(), url.clone());
    let dom =
        tokio::task::spawn_blocking(move || run_browser(&browser, &dir, &["--dump-dom"], &url2))
            .await
            .unwrap();
    let after = varz(monitor).await;
    let start = dom.find("<pre id=\"tern-export\"").expect("export element");
    let text = &dom[start..];
    let text = &text[text.find('>').unwrap() + 1..text.find("</pre>").unwrap()];
    let text = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    let shown: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    println!("the page showed: {shown}");

    assert!(shown["updates"].as_u64().unwrap() >= 3, "{shown}");
    for field in COUNTERS {
        let s = shown["last"][field].as_u64().unwrap();
        let (b, a) = (
            before[field].as_u64().unwrap(),
            after[field].as_u64().unwrap(),
        );
        assert!(b < s && s <= a, "{field}: varz {b} < page {s} <= varz {a}");
    }
    assert_eq!(shown["last"]["connections"], after["connections"]);
    for chart in ["chart-msgs", "chart-bytes"] {
        let drawn = &shown["charts"][chart];
        assert!(drawn["points"].as_u64().unwrap() >= 6, "{chart}: {drawn}");
        assert!(
            drawn["max"].as_f64().unwrap() > 0.0,
            "{chart} is flat: {drawn}"
        );
        let latest = drawn["latest"].as_array().unwrap();
        assert!(
            latest.iter().all(|v| v.as_f64().unwrap() > 0.0),
            "{chart}: {drawn}"
        );
    }
    assert!(shown["rates"]["in_msgs"].as_f64().unwrap() > 0.0);
    assert_eq!(
        shown["charts"]["chart-conns"]["latest"][0],
        after["connections"]
    );
    assert!(
        shown["conns"].as_u64().unwrap() > 0,
        "busiest connections listed"
    );
    assert_eq!(shown["panels"]["routes"], 200);
    assert_eq!(shown["panels"]["accounts"], 200);
    assert_eq!(shown["panels"]["jsz"], 200);

    let png = match std::env::var_os("TERN_DASHBOARD_SCREENSHOT") {
        Some(path) => PathBuf::from(path),
        None => scratch.0.join("dashboard.png"),
    };
    let shot = format!("--screenshot={}", png.display());
    let dir = scratch.0.clone();
    tokio::task::spawn_blocking(move || run_browser(&chromium, &dir, &[&shot], &url))
        .await
        .unwrap();
    let image = std::fs::read(&png).expect("a screenshot");
    assert!(image.starts_with(b"\x89PNG"), "a PNG");
    assert!(image.len() > 10_000, "{} bytes", image.len());
    load.stop().await;
}
