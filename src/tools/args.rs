//! The tools' command line: positional arguments and `--name value`, `--name=value`, `-s value`
//! options, with the `nats` CLI's names for the connection options.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use super::client::{ConnectOpts, DEFAULT_URL};

/// Options every tool takes (connection and output), each with whether it takes a value.
const COMMON: &[(&str, bool)] = &[
    ("server", true),
    ("user", true),
    ("password", true),
    ("token", true),
    ("creds", true),
    ("nkey", true),
    ("tlscert", true),
    ("tlskey", true),
    ("tlsca", true),
    ("timeout", true),
    ("json", false),
    ("help", false),
];

/// One letter spellings.
const SHORT: &[(&str, &str)] = &[("s", "server"), ("H", "header"), ("h", "help")];

/// A parsed tool command line.
#[derive(Debug, Default)]
pub struct Args {
    /// Positional arguments, in order.
    pub positional: Vec<String>,
    values: HashMap<String, Vec<String>>,
}

impl Args {
    /// Parses `args` for a tool that takes the common options and `own` ones.
    pub fn parse(args: &[String], own: &[(&str, bool)]) -> Result<Args, String> {
        let mut parsed = Args::default();
        let mut iter = args.iter();
        let mut only_positional = false;
        while let Some(arg) = iter.next() {
            if only_positional || arg == "-" || !arg.starts_with('-') {
                parsed.positional.push(arg.clone());
                continue;
            }
            if arg == "--" {
                only_positional = true;
                continue;
            }
            let spec = arg.trim_start_matches('-');
            let (name, inline) = match spec.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (spec, None),
            };
            let name = SHORT
                .iter()
                .find(|(s, _)| *s == name && arg.len() - name.len() == 1)
                .map_or(name, |(_, long)| long);
            let takes_value = COMMON
                .iter()
                .chain(own)
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
                .ok_or_else(|| format!("unknown option {arg}"))?;
            let value = match (takes_value, inline) {
                (true, Some(v)) => v,
                (true, None) => iter
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("option --{name} needs a value"))?,
                (false, None) => "true".into(),
                (false, Some(v)) => v,
            };
            parsed
                .values
                .entry(name.to_string())
                .or_default()
                .push(value);
        }
        Ok(parsed)
    }

    /// The last value of `--name`.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values.get(name)?.last().map(String::as_str)
    }

    /// Every value of a repeatable `--name`.
    pub fn values(&self, name: &str) -> &[String] {
        self.values.get(name).map_or(&[], Vec::as_slice)
    }

    /// Whether boolean `--name` is set.
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.value(name), Some("true" | "1" | "yes"))
    }

    /// `--name` as a number, or `default`.
    pub fn number(&self, name: &str, default: u64) -> Result<u64, String> {
        match self.value(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name}: {v:?} is not a number")),
        }
    }

    /// `--name` as a duration (`1s`, `250ms`, `1.5s`, a bare number is seconds), or `default`.
    pub fn duration(&self, name: &str, default: Duration) -> Result<Duration, String> {
        match self.value(name) {
            None => Ok(default),
            Some(v) => parse_duration(v).ok_or_else(|| format!("--{name}: bad duration {v:?}")),
        }
    }

    /// The positional argument at `index`, named `what` in the error when missing.
    pub fn positional(&self, index: usize, what: &str) -> Result<&str, String> {
        self.positional
            .get(index)
            .map(String::as_str)
            .ok_or_else(|| format!("missing argument <{what}>"))
    }

    /// `-H name:value` headers, in order.
    pub fn headers(&self) -> Result<Vec<(String, String)>, String> {
        self.values("header")
            .iter()
            .map(|h| {
                h.split_once(':')
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .filter(|(k, _)| !k.is_empty())
                    .ok_or_else(|| format!("bad header {h:?}: want name:value"))
            })
            .collect()
    }

    /// The connection options, from the flags, then `NATS_URL`, then the default URL.
    pub fn connect_opts(&self, tool: &str) -> Result<ConnectOpts, String> {
        let path = |name: &str| self.value(name).map(PathBuf::from);
        Ok(ConnectOpts {
            servers: self
                .value("server")
                .map(str::to_string)
                .or_else(|| std::env::var("NATS_URL").ok().filter(|u| !u.is_empty()))
                .unwrap_or_else(|| DEFAULT_URL.to_string()),
            user: self.value("user").map(str::to_string),
            password: self.value("password").map(str::to_string),
            token: self.value("token").map(str::to_string),
            creds: path("creds"),
            nkey: path("nkey"),
            tls_cert: path("tlscert"),
            tls_key: path("tlskey"),
            tls_ca: path("tlsca"),
            timeout: self.duration("timeout", Duration::from_secs(5))?,
            name: format!("tern {tool}"),
        })
    }
}

/// Go-style durations: a number and a unit (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`); a bare
/// number means seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "ns" => value / 1e9,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return None,
    };
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reads_options_in_every_spelling() {
        let args = Args::parse(
            &strings(&[
                "-s",
                "nats://x:1",
                "foo",
                "--count=3",
                "-H",
                "a:b",
                "--json",
                "msg",
            ]),
            &[("count", true), ("header", true)],
        )
        .unwrap();
        assert_eq!(args.positional, ["foo", "msg"]);
        assert_eq!(args.value("server"), Some("nats://x:1"));
        assert_eq!(args.number("count", 1).unwrap(), 3);
        assert!(args.flag("json"));
        assert_eq!(
            args.headers().unwrap(),
            [("a".to_string(), "b".to_string())]
        );
    }

    #[test]
    fn refuses_unknown_options_and_missing_values() {
        assert!(Args::parse(&strings(&["--nope"]), &[]).is_err());
        assert!(Args::parse(&strings(&["--server"]), &[]).is_err());
    }

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1x"), None);
    }
}
