//! The `jetstream` block (`jetstream: enabled`, or `jetstream { store_dir, max_memory_store,
//! max_file_store, strict, sync_interval, ... }`) and the `-js`/`-sd` flags, read as nats-server
//! 2.15.1 reads them (`parseJetStream`).

use std::path::PathBuf;
use std::time::Duration;

use super::conf::{ConfError, Entry, Kind};
use super::options;

/// JetStream's options; present in [`super::Options::jetstream`] only when it is enabled.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JetStreamOptions {
    /// `store_dir` (`-sd`); `<temp dir>/nats` when unset, as nats-server. Streams live in its
    /// `jetstream` subdirectory.
    pub store_dir: Option<PathBuf>,
    /// `max_memory_store` (also `max_mem_store`, `max_mem`): bytes memory streams may hold;
    /// unset, 75% of the machine's memory.
    pub max_memory: Option<i64>,
    /// `max_file_store` (also `max_file`): bytes file streams may hold; unset, 75% of the free
    /// space where the store is.
    pub max_store: Option<i64>,
    /// `strict` (default true): stricter checks of API requests.
    pub strict: bool,
    /// `sync_interval`: how often file streams are fsynced (2 minutes); `always` syncs each
    /// write.
    pub sync_interval: Option<Duration>,
    /// `sync_interval: always`.
    pub sync_always: bool,
    /// `domain`: the JetStream domain; its API is also served as `$JS.<domain>.API.>`.
    pub domain: Option<String>,
}

impl JetStreamOptions {
    /// The account mapping a domain brings, `$JS.<domain>.API.>` to `$JS.API.>`, as
    /// nats-server adds it to the accounts.
    pub fn domain_mapping(&self) -> Option<super::accounts::MappingConfig> {
        let domain = self.domain.as_deref()?;
        Some(super::accounts::MappingConfig {
            source: format!("$JS.{domain}.API.>"),
            destinations: vec![("$JS.API.>".to_string(), 100)],
        })
    }
}

impl JetStreamOptions {
    /// Enabled with nats-server's defaults.
    pub fn enabled() -> JetStreamOptions {
        JetStreamOptions {
            strict: true,
            ..JetStreamOptions::default()
        }
    }
}

/// Reads the `jetstream` entry: `None` when it disables JetStream.
pub fn parse_jetstream(
    entry: &Entry,
    warnings: &mut Vec<String>,
) -> Result<Option<JetStreamOptions>, ConfError> {
    let v = &entry.value;
    let fields = match &v.kind {
        Kind::Bool(on) => return Ok(on.then(JetStreamOptions::enabled)),
        Kind::String(s) => {
            return match s.to_ascii_lowercase().as_str() {
                "enabled" | "enable" => Ok(Some(JetStreamOptions::enabled())),
                "disabled" | "disable" => Ok(None),
                _ => Err(options::bad(v, "jetstream")),
            }
        }
        Kind::Map(fields) => fields,
        _ => return Err(options::bad(v, "jetstream")),
    };
    let mut js = JetStreamOptions::enabled();
    let mut enabled = true;
    for field in fields {
        let v = &field.value;
        match field.key.to_ascii_lowercase().as_str() {
            "store_dir" | "storedir" | "store" => {
                js.store_dir = Some(PathBuf::from(options::string(v)?))
            }
            "max_memory_store" | "max_mem_store" | "max_mem" => {
                js.max_memory = Some(options::int(v)?)
            }
            "max_file_store" | "max_file" => js.max_store = Some(options::int(v)?),
            "strict" => js.strict = options::boolean(v)?,
            "domain" => {
                let domain = options::string(v)?;
                // nats-server's check (`validateJetStreamOptions`): the domain goes into
                // subjects.
                if domain.contains(['.', '*', '>']) {
                    return Err(ConfError {
                        pos: field.pos.clone(),
                        message: "invalid domain name: may not contain ., * or >".into(),
                    });
                }
                js.domain = (!domain.is_empty()).then_some(domain);
            }
            "enabled" | "enable" => enabled = options::boolean(v)?,
            "sync_interval" | "sync" => match &v.kind {
                Kind::String(s) if s.eq_ignore_ascii_case("always") => {
                    js.sync_always = true;
                    js.sync_interval = None;
                }
                _ => js.sync_interval = Some(options::seconds(v)?),
            },
            // Limits and tuning for clustered or busy servers: nothing to do on one node yet.
            "max_outstanding_catchup"
            | "max_buffered_msgs"
            | "max_buffered_size"
            | "request_queue_limit"
            | "unique_tag"
            | "extension_hint" => {
                warnings.push(options::ignored(field, "not supported by tern yet"));
            }
            // Running without these would store what the operator asked to be encrypted, or
            // drop account limits.
            "key"
            | "ek"
            | "encryption_key"
            | "prev_key"
            | "prev_encryption_key"
            | "cipher"
            | "limits"
            | "tpm" => {
                return Err(ConfError {
                    pos: field.pos.clone(),
                    message: format!("jetstream {:?} is not supported by tern yet", field.key),
                });
            }
            _ if field.referenced => {}
            _ => return Err(options::unknown_field(field)),
        }
    }
    Ok(enabled.then_some(js))
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::{error, options};

    use super::*;

    #[test]
    fn the_forms_nats_server_reads() {
        for (text, on) in [
            ("jetstream: true", true),
            ("jetstream: enabled", true),
            ("jetstream: disabled", false),
            ("jetstream: false", false),
            ("jetstream {}", true),
            ("jetstream { enabled: false }", false),
        ] {
            let (opts, _) = options(text).unwrap();
            assert_eq!(opts.jetstream.is_some(), on, "{text}");
        }
    }

    #[test]
    fn block_fields() {
        let (opts, warnings) = options(
            "jetstream { store_dir: /tmp/js, max_mem_store: 64MiB, max_file_store: 10GiB, \
             strict: false, sync_interval: always, max_buffered_msgs: 5 }",
        )
        .unwrap();
        let js = opts.jetstream.unwrap();
        assert_eq!(js.store_dir, Some(PathBuf::from("/tmp/js")));
        assert_eq!(js.max_memory, Some(64 << 20));
        assert_eq!(js.max_store, Some(10 << 30));
        assert!(!js.strict && js.sync_always);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let (opts, _) = options("jetstream { max_memory_store: 1GB, sync: \"10s\" }").unwrap();
        let js = opts.jetstream.unwrap();
        assert_eq!(js.max_memory, Some(1 << 30));
        assert_eq!(js.sync_interval, Some(Duration::from_secs(10)));
    }

    #[test]
    fn a_domain_maps_its_api_subjects() {
        let js = options("jetstream { domain: hub }")
            .unwrap()
            .0
            .jetstream
            .unwrap();
        assert_eq!(js.domain.as_deref(), Some("hub"));
        let mapping = js.domain_mapping().unwrap();
        assert_eq!(mapping.source, "$JS.hub.API.>");
        assert_eq!(mapping.destinations, [("$JS.API.>".to_string(), 100)]);
        assert!(options("jetstream: enabled")
            .unwrap()
            .0
            .jetstream
            .unwrap()
            .domain_mapping()
            .is_none());
    }

    #[test]
    fn unknown_and_unsupported_fields_are_refused() {
        assert_eq!(
            error("jetstream { foo: 1 }"),
            "test.conf:1:12: unknown field \"foo\""
        );
        assert!(error("jetstream { limits: {} }").contains("not supported by tern yet"));
        assert!(error("jetstream { domain: \"a.b\" }")
            .contains("invalid domain name: may not contain ., * or >"));
        assert!(error("jetstream { domain: \"a>\" }").contains("invalid domain name"));
        assert!(error("jetstream: maybe").contains("invalid value"));
    }
}
