//! JetStream on one server: what it runs with (the store directory and the memory and storage
//! limits, resolved from the options at start) and the lines nats-server logs about it; the
//! pure core ([`store`]: where messages are kept, [`stream`]: a stream's configuration and
//! publishing into it, [`consumer`]: pull and push consumers, [`api`]: one account's `$JS.API`
//! requests (consumer requests and direct gets in its submodules), [`errors`],
//! [`advisory`]: what `$JS.EVENT.ADVISORY.>` announces), the file
//! store ([`filestore`], with its log format in [`filelog`] and its in-memory index in
//! [`fileindex`]) and the task that runs it all ([`service`]).

pub mod advisory;
pub mod api;
pub mod consumer;
pub mod errors;
pub mod fileindex;
pub mod filelog;
pub mod filestore;
pub mod service;
pub mod store;
pub mod stream;

use std::io;
use std::path::{Path, PathBuf};

use crate::config::jetstream::JetStreamOptions;
use crate::config::Options;

/// The JetStream API level tern advertises (`api.level` in `$JS.API.INFO`, `api_lvl` in INFO).
/// Level 1 promises 2.11's per-message TTL, subject delete markers, consumer pause and priority
/// groups, which tern does not have, so clients must not use them.
pub const API_LEVEL: u32 = 0;

/// nats-server's default `sync_interval`: 2 minutes.
const DEFAULT_SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(120);

/// nats-server's ceiling on the storage limit it takes from the free disk space (1 TB).
const MAX_STORE_DEFAULT: i64 = 1 << 40;

/// JetStream as it runs: its options with every default resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `<store_dir>/jetstream`, where streams are kept; created at start.
    pub store_dir: PathBuf,
    /// Bytes memory streams may hold together.
    pub max_memory: i64,
    /// Bytes file streams may hold together.
    pub max_store: i64,
    /// `strict`.
    pub strict: bool,
    /// `sync_interval: always`: file streams fdatasync every write.
    pub sync_always: bool,
    /// Otherwise, how often they are fsynced (`sync_interval`, 2 minutes).
    pub sync_interval: std::time::Duration,
    /// `domain`.
    pub domain: Option<String>,
    /// How long resolving took (creating the store directory, measuring memory and disk),
    /// for the "Took ... to start JetStream" line.
    pub start_took: std::time::Duration,
}

impl Config {
    /// Resolves `js` as nats-server does at start: the store directory (`<temp dir>/nats` by
    /// default) gets a `jetstream` subdirectory, created here; the limits not configured are
    /// 75% of the machine's memory and 75% of the disk space free there (at most 1 TB).
    pub fn resolve(js: &JetStreamOptions) -> io::Result<Config> {
        let started = std::time::Instant::now();
        let base = js
            .store_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("nats"));
        let base = std::path::absolute(base)?;
        let store_dir = base.join("jetstream");
        prepare_store_dir(&store_dir)?;
        let max_memory = match js.max_memory {
            Some(n) => n,
            None => total_memory()? / 4 * 3,
        };
        let max_store = match js.max_store {
            Some(n) => n,
            None => (available_disk(&store_dir)? / 4 * 3).min(MAX_STORE_DEFAULT),
        };
        Ok(Config {
            store_dir,
            max_memory,
            max_store,
            strict: js.strict,
            sync_always: js.sync_always,
            sync_interval: js.sync_interval.unwrap_or(DEFAULT_SYNC_INTERVAL),
            domain: js.domain.clone(),
            start_took: started.elapsed(),
        })
    }

    /// The lines nats-server logs when JetStream starts, before "Took ... to start JetStream".
    pub fn banner(&self) -> Vec<String> {
        let mut lines = vec![
            "Starting JetStream".to_string(),
            "    _ ___ _____ ___ _____ ___ ___   _   __  __".into(),
            " _ | | __|_   _/ __|_   _| _ \\ __| /_\\ |  \\/  |".into(),
            "| || | _|  | | \\__ \\ | | |   / _| / _ \\| |\\/| |".into(),
            " \\__/|___| |_| |___/ |_| |_|_\\___/_/ \\_\\_|  |_|".into(),
            String::new(),
            "         https://docs.nats.io/jetstream".into(),
            String::new(),
            "---------------- JETSTREAM ----------------".into(),
        ];
        lines.push(format!("  Strict:          {}", self.strict));
        lines.push(format!(
            "  Max Memory:      {}",
            friendly_bytes(self.max_memory)
        ));
        lines.push(format!(
            "  Max Storage:     {}",
            friendly_bytes(self.max_store)
        ));
        lines.push(format!(
            "  Store Directory: \"{}\"",
            self.store_dir.display()
        ));
        if let Some(domain) = &self.domain {
            lines.push(format!("  Domain:          {domain}"));
        }
        lines.push(format!("  API Level:       {API_LEVEL}"));
        lines.push("-------------------------------------------".into());
        lines
    }
}

/// Why JetStream cannot run with `opts`, in the words that follow nats-server's
/// "Can't start JetStream: ".
pub fn refusal(opts: &Options) -> Option<String> {
    opts.jetstream.as_ref()?;
    opts.cluster.as_ref().map(|_| {
        "tern does not support JetStream in a cluster yet: remove the cluster block or \
         disable JetStream"
            .to_string()
    })
}

/// Creates `dir` if it does not exist, else checks that it is a directory tern can write
/// in, with nats-server's words for what is wrong (they follow "Can't start JetStream: ").
fn prepare_store_dir(dir: &Path) -> io::Result<()> {
    use crate::monitor::os_error_text;
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            let probe = dir.join(format!("_test_{}", std::process::id()));
            std::fs::File::create(&probe)
                .map_err(|e| io::Error::new(e.kind(), "storage directory is not writable"))?;
            let _ = std::fs::remove_file(probe);
            Ok(())
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            // As Go's MkdirAll, name the first directory that could not be made.
            let missing: Vec<&Path> = dir
                .ancestors()
                .take_while(|p| {
                    !p.as_os_str().is_empty()
                        && std::fs::metadata(p).is_err_and(|e| e.kind() == io::ErrorKind::NotFound)
                })
                .collect();
            for path in missing.into_iter().rev() {
                match std::fs::create_dir(path) {
                    Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                        return Err(io::Error::new(
                            e.kind(),
                            format!(
                                "could not create storage directory - mkdir {}: {}",
                                path.display(),
                                os_error_text(&e)
                            ),
                        ))
                    }
                    _ => {}
                }
            }
            Ok(())
        }
        _ => Err(io::Error::other("storage directory is not a directory")),
    }
}

/// nats-server's `friendlyBytes`: powers of 1024, two decimals, "KB", "MB", "GB"...
pub fn friendly_bytes(bytes: i64) -> String {
    let value = bytes as f64;
    if value < 1024.0 {
        return format!("{bytes} B");
    }
    let exp = (value.ln() / 1024f64.ln()) as i32;
    let unit = ["K", "M", "G", "T", "P", "E"][(exp - 1).clamp(0, 5) as usize];
    format!("{:.2} {unit}B", value / 1024f64.powi(exp))
}

/// The machine's memory in bytes (`MemTotal` in `/proc/meminfo`).
fn total_memory() -> io::Result<i64> {
    let text = std::fs::read_to_string("/proc/meminfo")?;
    text.lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<i64>()
                .ok()
        })
        .map(|kib| kib * 1024)
        .ok_or_else(|| io::Error::other("no MemTotal in /proc/meminfo"))
}

/// Bytes an unprivileged user may still write on the file system holding `dir`.
fn available_disk(dir: &Path) -> io::Result<i64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
    // SAFETY: statvfs writes only into the zeroed struct passed by reference; `path` is a valid
    // NUL-terminated string that outlives the call.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((stat.f_bavail as i64).saturating_mul(stat.f_frsize as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn friendly_bytes_as_nats_server() {
        assert_eq!(friendly_bytes(512), "512 B");
        assert_eq!(friendly_bytes(64 << 20), "64.00 MB");
        assert_eq!(friendly_bytes(10 << 30), "10.00 GB");
        assert_eq!(friendly_bytes(18_957_376_512), "17.66 GB");
        assert_eq!(friendly_bytes(1536), "1.50 KB");
    }

    #[test]
    fn resolve_creates_the_store_and_applies_limits() {
        let dir = std::env::temp_dir().join(format!("tern-js-resolve-{}", std::process::id()));
        let js = JetStreamOptions {
            store_dir: Some(dir.clone()),
            max_memory: Some(64 << 20),
            ..JetStreamOptions::enabled()
        };
        let config = Config::resolve(&js).unwrap();
        assert_eq!(config.store_dir, dir.join("jetstream"));
        assert!(config.store_dir.is_dir());
        assert_eq!(config.max_memory, 64 << 20);
        assert!(config.max_store > 0 && config.max_store <= MAX_STORE_DEFAULT);
        let banner = config.banner();
        assert!(banner.contains(&"  Max Memory:      64.00 MB".to_string()));
        let expected = format!("  Store Directory: \"{}\"", dir.join("jetstream").display());
        assert!(banner.contains(&expected), "{banner:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn refused_in_a_cluster() {
        let mut opts = Options::default();
        assert!(refusal(&opts).is_none());
        opts.cluster = Some(Default::default());
        assert!(refusal(&opts).is_none(), "a cluster alone is fine");
        opts.jetstream = Some(JetStreamOptions::enabled());
        assert!(refusal(&opts).unwrap().contains("cluster"));
    }
}
