//! Log lines in nats-server's format, as a `tracing` subscriber:
//! `[<pid>] <yyyy/mm/dd hh:mm:ss.uuuuuu> [INF] <message>`.
//!
//! Levels map to nats-server's tags: ERROR → ERR, WARN → WRN, INFO → INF, DEBUG → DBG (`-D`),
//! TRACE → TRC (`-V`). An error logged with target `fatal` is tagged FTL. Timestamps are UTC.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

/// Target that turns an error into an `[FTL]` line.
pub const FATAL: &str = "fatal";

/// Writes nats-server-style lines to stderr or a file. Levels and the file can change while
/// running (reload, log rotation) through a [`LogControl`].
pub struct Logger {
    inner: Arc<Inner>,
}

struct Inner {
    debug: AtomicBool,
    trace: AtomicBool,
    logtime: AtomicBool,
    pid: u32,
    /// Guards the destination; held for one line's write.
    sink: Mutex<Sink>,
}

struct Sink {
    out: Box<dyn Write + Send>,
    /// The log file, if logging to one (reopened on SIGUSR1).
    path: Option<PathBuf>,
}

/// Changes a running logger.
#[derive(Clone)]
pub struct LogControl {
    inner: Arc<Inner>,
}

impl Logger {
    /// A logger writing to `out`; DEBUG with `debug`, TRACE with `trace`.
    pub fn new(out: Box<dyn Write + Send>, debug: bool, trace: bool, logtime: bool) -> Self {
        let inner = Inner {
            debug: AtomicBool::new(debug),
            trace: AtomicBool::new(trace),
            logtime: AtomicBool::new(logtime),
            pid: std::process::id(),
            sink: Mutex::new(Sink { out, path: None }),
        };
        Logger {
            inner: Arc::new(inner),
        }
    }

    /// A logger appending to the file at `path` (created if missing).
    pub fn to_file(path: &Path, debug: bool, trace: bool, logtime: bool) -> io::Result<Self> {
        let logger = Logger::new(Box::new(open_log(path)?), debug, trace, logtime);
        logger.inner.sink().path = Some(path.to_path_buf());
        Ok(logger)
    }

    /// A handle to change this logger once installed.
    pub fn control(&self) -> LogControl {
        LogControl {
            inner: self.inner.clone(),
        }
    }

    #[cfg(test)]
    fn format(&self, level: &Level, target: &str, message: &str) -> String {
        self.inner.format(level, target, message)
    }
}

impl LogControl {
    /// Applies new levels and timestamps (a reload).
    pub fn set(&self, debug: bool, trace: bool, logtime: bool) {
        self.inner.debug.store(debug, Ordering::Relaxed);
        self.inner.trace.store(trace, Ordering::Relaxed);
        self.inner.logtime.store(logtime, Ordering::Relaxed);
        tracing::callsite::rebuild_interest_cache();
    }

    /// Logs to the file at `path` from now on, or to stderr with `None` (a reload).
    pub fn set_file(&self, path: Option<&Path>) -> io::Result<()> {
        let mut sink = self.inner.sink();
        if sink.path.as_deref() == path {
            return Ok(());
        }
        match path {
            Some(path) => {
                sink.out = Box::new(open_log(path)?);
                sink.path = Some(path.to_path_buf());
            }
            None => {
                sink.out = Box::new(io::stderr());
                sink.path = None;
            }
        }
        Ok(())
    }

    /// Reopens the log file (after rotation); logging to stderr needs nothing.
    pub fn reopen(&self) -> io::Result<()> {
        let mut sink = self.inner.sink();
        if let Some(path) = sink.path.clone() {
            sink.out = Box::new(open_log(&path)?);
        }
        Ok(())
    }
}

fn open_log(path: &Path) -> io::Result<std::fs::File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl Inner {
    fn sink(&self) -> std::sync::MutexGuard<'_, Sink> {
        self.sink.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Formats one line (without writing it).
    fn format(&self, level: &Level, target: &str, message: &str) -> String {
        let tag = match *level {
            Level::ERROR if target == FATAL => "FTL",
            Level::ERROR => "ERR",
            Level::WARN => "WRN",
            Level::INFO => "INF",
            Level::DEBUG => "DBG",
            Level::TRACE => "TRC",
        };
        let mut line = String::with_capacity(48 + message.len());
        let _ = write!(line, "[{}] ", self.pid);
        if self.logtime.load(Ordering::Relaxed) {
            line.push_str(&timestamp(SystemTime::now()));
            line.push(' ');
        }
        let _ = writeln!(line, "[{tag}] {message}");
        line
    }
}

impl Subscriber for Logger {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        // Levels change at run time, so every call site asks `enabled` each time.
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        match *metadata.level() {
            Level::TRACE => self.inner.trace.load(Ordering::Relaxed),
            Level::DEBUG => self.inner.debug.load(Ordering::Relaxed),
            _ => true,
        }
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        use tracing::level_filters::LevelFilter;
        Some(if self.inner.trace.load(Ordering::Relaxed) {
            LevelFilter::TRACE
        } else if self.inner.debug.load(Ordering::Relaxed) {
            LevelFilter::DEBUG
        } else {
            LevelFilter::INFO
        })
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut message = MessageVisitor(String::new());
        event.record(&mut message);
        let meta = event.metadata();
        let line = self.inner.format(meta.level(), meta.target(), &message.0);
        let mut sink = self.inner.sink();
        // Nowhere to report a failing log write; nats-server ignores it too.
        let _ = sink.out.write_all(line.as_bytes());
        let _ = sink.out.flush();
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

struct MessageVisitor(String);

impl Visit for MessageVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

/// Installs the logger for the whole process.
pub fn install(logger: Logger) -> io::Result<()> {
    tracing::subscriber::set_global_default(logger).map_err(io::Error::other)
}

/// `yyyy/mm/dd hh:mm:ss.uuuuuu` in UTC.
fn timestamp(now: SystemTime) -> String {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}/{month:02}/{day:02} {:02}:{:02}:{:02}.{:06}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_micros()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970/01/01 00:00:00.000000");
        let t = UNIX_EPOCH + Duration::from_micros(1_795_333_269_123_456);
        assert_eq!(timestamp(t), "2026/11/22 07:41:09.123456");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&timestamp(leap)[..10], "2000/02/29");
    }

    #[test]
    fn line_format() {
        let logger = Logger::new(Box::new(io::sink()), false, false, false);
        let line = logger.format(&Level::INFO, "tern", "Server is ready");
        assert_eq!(
            line,
            format!("[{}] [INF] Server is ready\n", std::process::id())
        );
        let line = logger.format(&Level::ERROR, FATAL, "boom");
        assert!(line.ends_with("[FTL] boom\n"));
    }
}
