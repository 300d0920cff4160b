//! Configuration as plain data: the options with nats-server's defaults, the configuration
//! file's syntax ([`conf`]) and meaning ([`options`]; the `cluster` block in [`cluster`], the
//! `websocket` block in [`websocket`]), and nats-server's command line ([`cli`]).

pub mod accounts;
pub mod callout;
pub mod cli;
pub mod cluster;
pub mod conf;
pub mod jetstream;
pub mod leafnode;
pub mod msgtrace;
pub mod operator;
pub mod options;
mod url;
pub mod users;
pub mod websocket;

pub use options::*;

/// Reads a file, naming it in the error the way Go's `open` does
/// (`open x.pem: no such file or directory`).
pub fn read_file(path: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => e.to_string(),
        };
        format!("open {}: {why}", path.display())
    })
}

/// Reading configuration text in tests, as `-c` reads a file.
#[cfg(test)]
pub(crate) mod test_support {
    use std::path::Path;

    use super::conf::{self, ConfError};
    use super::Options;

    /// The options and warnings `text` gives, as a file named `test.conf`.
    pub fn options(text: &str) -> Result<(Options, Vec<String>), ConfError> {
        let file = conf::parse_str(text, Path::new("test.conf"))?;
        let mut opts = Options::default();
        let mut warnings = Vec::new();
        opts.apply_file(&file, &mut warnings)?;
        Ok((opts, warnings))
    }

    /// The error `text` gives.
    pub fn error(text: &str) -> String {
        options(text).expect_err(text).to_string()
    }
}
