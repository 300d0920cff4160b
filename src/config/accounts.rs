//! The `accounts` block, subject `mappings`, and the cross-checks nats-server makes once every
//! account is known (imports of missing or unexported subjects, cycles, duplicate users).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::conf::{ConfError, Kind, Pos, Value};
use super::options::{self, Options, User};
use super::users;
use crate::engine::account::{ResponseType, DEFAULT_RESPONSE_THRESHOLD, GLOBAL_ACCOUNT};
use crate::engine::mapping::{Mapping, Transform};
use crate::engine::msgtrace::AccountTrace;
use crate::engine::permissions::Permissions;
use crate::proto::subject;

/// One configured account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountConfig {
    /// Its name.
    pub name: String,
    /// What it offers other accounts.
    pub exports: Vec<Export>,
    /// What it takes from other accounts.
    pub imports: Vec<Import>,
    /// Its subject mappings.
    pub mappings: Vec<MappingConfig>,
    /// `jetstream: enabled` (or a `jetstream {}` block): JetStream is on for it when the
    /// server runs JetStream.
    pub jetstream: bool,
    /// The limits of its `jetstream { ... }` block (none for `jetstream: enabled`).
    pub jetstream_limits: JetStreamLimits,
    /// `msg_trace`: where messages with a sampled W3C `traceparent` are traced.
    pub msg_trace: Option<AccountTrace>,
}

/// An account's JetStream limits (nats-server's `JetStreamAccountLimits`); -1 is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JetStreamLimits {
    /// `max_mem` (`max_memory`, `mem`, `memory`): bytes its memory streams may hold.
    pub max_memory: i64,
    /// `max_file` (`max_store`, `max_disk`, `store`, `disk`): bytes its file streams may hold.
    pub max_store: i64,
    /// `max_streams` (`streams`).
    pub max_streams: i64,
    /// `max_consumers` (`consumers`): consumers per stream.
    pub max_consumers: i64,
    /// `max_ack_pending`: the most a consumer may set.
    pub max_ack_pending: i64,
    /// `mem_max_stream_bytes` (`memory_max_stream_bytes`): the most a memory stream may set.
    pub memory_max_stream_bytes: i64,
    /// `disk_max_stream_bytes` (`store_max_stream_bytes`): the most a file stream may set.
    pub store_max_stream_bytes: i64,
    /// `max_bytes_required` (`max_stream_bytes`, `max_bytes`): streams must set `max_bytes`.
    pub max_bytes_required: bool,
}

impl Default for JetStreamLimits {
    fn default() -> JetStreamLimits {
        JetStreamLimits {
            max_memory: -1,
            max_store: -1,
            max_streams: -1,
            max_consumers: -1,
            max_ack_pending: -1,
            memory_max_stream_bytes: -1,
            store_max_stream_bytes: -1,
            max_bytes_required: false,
        }
    }
}

/// A scalar as Go's `%v` prints it, for nats-server's "Expected ..." errors.
fn go_value(v: &Value) -> String {
    match &v.kind {
        Kind::Bool(b) => b.to_string(),
        Kind::Int(n) => n.to_string(),
        Kind::Float(f) => f.to_string(),
        Kind::String(s) => s.clone(),
        Kind::Map(_) => "map[...]".into(),
        Kind::Array(_) => "[...]".into(),
    }
}

/// An account's `jetstream { ... }` block, as nats-server's `parseJetStreamForAccount` reads
/// it.
fn jetstream_limits(block: &[super::conf::Entry]) -> Result<JetStreamLimits, ConfError> {
    let mut limits = JetStreamLimits::default();
    for field in block {
        let v = &field.value;
        let size = |name: &str| match &v.kind {
            Kind::Int(n) => Ok(*n),
            _ => Err(ConfError {
                pos: v.pos.clone(),
                message: format!(
                    "Expected a parseable size for {name:?}, got {}",
                    go_value(v)
                ),
            }),
        };
        match field.key.to_ascii_lowercase().as_str() {
            "max_memory" | "max_mem" | "mem" | "memory" => limits.max_memory = size(&field.key)?,
            "max_store" | "max_file" | "max_disk" | "store" | "disk" => {
                limits.max_store = size(&field.key)?
            }
            "max_streams" | "streams" => limits.max_streams = size(&field.key)?,
            "max_consumers" | "consumers" => limits.max_consumers = size(&field.key)?,
            "max_ack_pending" => limits.max_ack_pending = size(&field.key)?,
            "mem_max_stream_bytes" | "memory_max_stream_bytes" => {
                limits.memory_max_stream_bytes = size(&field.key)?
            }
            "disk_max_stream_bytes" | "store_max_stream_bytes" => {
                limits.store_max_stream_bytes = size(&field.key)?
            }
            "max_bytes_required" | "max_stream_bytes" | "max_bytes" => match &v.kind {
                Kind::Bool(b) => limits.max_bytes_required = *b,
                _ => {
                    return Err(ConfError {
                        pos: v.pos.clone(),
                        message: format!(
                            "Expected a parseable bool for {:?}, got {}",
                            field.key,
                            go_value(v)
                        ),
                    })
                }
            },
            _ if field.referenced => {}
            _ => return Err(options::unknown_field(field)),
        }
    }
    Ok(limits)
}

/// Stream (messages flow out) or service (requests flow in, responses out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// `stream`
    Stream,
    /// `service`
    Service,
}

impl Flow {
    /// nats-server's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Flow::Stream => "stream",
            Flow::Service => "service",
        }
    }
}

/// One entry of `exports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// Stream or service.
    pub flow: Flow,
    /// The subject (wildcards allowed).
    pub subject: String,
    /// The accounts that may import it; `None` for every account.
    pub accounts: Option<Vec<String>>,
    /// How a service responds.
    pub response_type: ResponseType,
    /// How long a service's responses are waited for.
    pub response_threshold: Duration,
}

/// One entry of `imports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// Stream or service.
    pub flow: Flow,
    /// The exporting account.
    pub account: String,
    /// The subject in the exporting account.
    pub subject: String,
    /// The subject in the importing account (`to`; for streams, also the legacy `prefix`).
    pub to: Option<String>,
    /// Stream imports: prepended to the subject.
    pub prefix: Option<String>,
    /// Where `to` is written (duplicate-subject errors point there).
    pub to_pos: Option<Pos>,
}

/// One subject mapping: a source and weighted destinations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingConfig {
    /// The source subject or filter.
    pub source: String,
    /// Destinations with their weights in percent.
    pub destinations: Vec<(String, u8)>,
}

impl MappingConfig {
    /// The engine's mapping.
    pub fn build(&self) -> Mapping {
        Mapping::new(
            self.destinations
                .iter()
                .filter_map(|(d, w)| Transform::mapping(&self.source, d).ok().map(|t| (t, *w)))
                .collect(),
        )
    }
}

/// Reads `accounts { NAME: { users, exports, imports, mappings, default_permissions, jetstream,
/// msg_trace } }`;
/// the users go to `users`, bound to their account.
pub fn parse_accounts(
    v: &Value,
    users: &mut Vec<User>,
    warnings: &mut Vec<String>,
) -> Result<Vec<AccountConfig>, ConfError> {
    let Kind::Map(accounts) = &v.kind else {
        return Err(options::bad(v, "accounts"));
    };
    let mut out = Vec::new();
    for entry in accounts {
        let name = entry.key.clone();
        if name == GLOBAL_ACCOUNT {
            return Err(ConfError {
                pos: entry.pos.clone(),
                message: format!("{name:?} is a Reserved Account"),
            });
        }
        let mut account = AccountConfig {
            name: name.clone(),
            exports: Vec::new(),
            imports: Vec::new(),
            mappings: Vec::new(),
            jetstream: false,
            jetstream_limits: JetStreamLimits::default(),
            msg_trace: None,
        };
        let Kind::Map(fields) = &entry.value.kind else {
            // `accounts { A: {} }` and a bare name both make an empty account.
            out.push(account);
            continue;
        };
        let mut default_permissions: Option<Arc<Permissions>> = None;
        let mut mine = Vec::new();
        for field in fields {
            let v = &field.value;
            match field.key.to_ascii_lowercase().as_str() {
                "users" => {
                    let Kind::Array(list) = &v.kind else {
                        return Err(options::bad(v, "users"));
                    };
                    for u in list {
                        let mut user = users::user(u)?;
                        user.account = name.clone();
                        // nats-server reports a duplicate at the `users` key.
                        user.defined_at = Some(field.pos.clone());
                        mine.push(user);
                    }
                }
                "exports" => account.exports = list(v, export)?,
                "imports" => account.imports = list(v, import)?,
                "mappings" | "maps" => account.mappings = parse_mappings(v)?,
                "default_permissions" | "default_permission" => {
                    default_permissions = Some(Arc::new(users::permissions_block(v)?));
                }
                "jetstream" => {
                    account.jetstream = match &v.kind {
                        Kind::Bool(on) => *on,
                        Kind::String(s) if s.eq_ignore_ascii_case("enabled") => true,
                        Kind::String(s) if s.eq_ignore_ascii_case("disabled") => false,
                        Kind::Map(block) => {
                            account.jetstream_limits = jetstream_limits(block)?;
                            true
                        }
                        _ => return Err(options::bad(v, "jetstream")),
                    }
                }
                "msg_trace" => account.msg_trace = super::msgtrace::parse(field, warnings)?,
                "limits" | "nkey" => {
                    warnings.push(options::ignored(field, "not supported by tern yet"))
                }
                _ if field.referenced => {}
                _ => return Err(options::unknown_field(field)),
            }
        }
        if let Some(default) = default_permissions {
            for user in mine.iter_mut().filter(|u| u.permissions.is_none()) {
                user.permissions = Some(default.clone());
            }
        }
        users.extend(mine);
        out.push(account);
    }
    Ok(out)
}

/// `mappings { "src": "dst", "src2": [{destination: "d", weight: 50%}, ...] }`.
pub fn parse_mappings(v: &Value) -> Result<Vec<MappingConfig>, ConfError> {
    let Kind::Map(entries) = &v.kind else {
        return Err(options::bad(v, "mappings"));
    };
    let mut out = Vec::new();
    for entry in entries {
        let source = entry.key.clone();
        let at = |message: String| ConfError {
            pos: entry.pos.clone(),
            message,
        };
        let destinations = match &entry.value.kind {
            Kind::String(d) => vec![(d.clone(), 100)],
            Kind::Array(items) => {
                let mut ds = Vec::new();
                for item in items {
                    ds.push(weighted(item)?);
                }
                ds
            }
            Kind::Map(_) => vec![weighted(&entry.value)?],
            _ => return Err(options::bad(&entry.value, "a mapping destination")),
        };
        if !subject::is_valid_filter(source.as_bytes()) {
            // nats-server reports this one at the start of the file.
            return Err(ConfError {
                pos: Pos {
                    line: 1,
                    col: 0,
                    ..entry.pos.clone()
                },
                message: format!("Subject {source:?} is not a valid subject"),
            });
        }
        if destinations.iter().map(|(_, w)| u32::from(*w)).sum::<u32>() > 100 {
            return Err(at(format!(
                "Error adding mapping for {source:?} : total weight needs to be <= 100"
            )));
        }
        for (destination, _) in &destinations {
            if let Err(why) = Transform::mapping(&source, destination) {
                return Err(at(format!(
                    "Error adding mapping for {source:?} to {destination:?} : {why}"
                )));
            }
        }
        out.push(MappingConfig {
            source,
            destinations,
        });
    }
    Ok(out)
}

/// `{destination: "d", weight: 50%}`.
fn weighted(v: &Value) -> Result<(String, u8), ConfError> {
    let Kind::Map(fields) = &v.kind else {
        return Err(options::bad(v, "a mapping destination"));
    };
    let mut destination = None;
    let mut weight = 100u8;
    for field in fields {
        match field.key.to_ascii_lowercase().as_str() {
            "destination" | "dest" => destination = Some(options::string(&field.value)?),
            "weight" => {
                let w = match &field.value.kind {
                    Kind::Int(n) => *n,
                    Kind::String(s) => s.trim_end_matches('%').trim().parse().unwrap_or(-1),
                    _ => -1,
                };
                weight = u8::try_from(w)
                    .ok()
                    .filter(|w| *w <= 100)
                    .ok_or_else(|| ConfError {
                        pos: field.pos.clone(),
                        message: format!("Invalid weight {w} for mapping destination"),
                    })?;
            }
            "cluster" => {}
            _ => return Err(options::unknown_field(field)),
        }
    }
    let destination = destination.ok_or_else(|| options::bad(v, "a mapping destination"))?;
    Ok((destination, weight))
}

fn list<T>(v: &Value, item: fn(&Value) -> Result<T, ConfError>) -> Result<Vec<T>, ConfError> {
    match &v.kind {
        Kind::Array(items) => items.iter().map(item).collect(),
        _ => Err(options::bad(v, "a list")),
    }
}

/// `{stream: "subj", accounts: [..]}` or `{service: "subj", response_type, response_threshold}`.
fn export(v: &Value) -> Result<Export, ConfError> {
    let Kind::Map(fields) = &v.kind else {
        return Err(options::bad(v, "an export"));
    };
    let mut export = Export {
        flow: Flow::Stream,
        subject: String::new(),
        accounts: None,
        response_type: ResponseType::Singleton,
        response_threshold: DEFAULT_RESPONSE_THRESHOLD,
    };
    for field in fields {
        let v = &field.value;
        match field.key.to_ascii_lowercase().as_str() {
            "stream" => export.subject = options::string(v)?,
            "service" => {
                export.flow = Flow::Service;
                export.subject = options::string(v)?;
            }
            "accounts" => {
                let Kind::Array(items) = &v.kind else {
                    return Err(options::bad(v, "accounts"));
                };
                export.accounts = Some(
                    items
                        .iter()
                        .map(options::string)
                        .collect::<Result<_, _>>()?,
                );
            }
            "response" | "response_type" => {
                export.response_type = match options::string(v)?.to_ascii_lowercase().as_str() {
                    "single" | "singleton" => ResponseType::Singleton,
                    "stream" => ResponseType::Stream,
                    "chunked" => ResponseType::Chunked,
                    other => {
                        return Err(ConfError {
                            pos: v.pos.clone(),
                            message: format!("Unknown response type: {other:?}"),
                        })
                    }
                };
            }
            "threshold" | "response_threshold" | "response_max_time" | "response_time" => {
                export.response_threshold = match &v.kind {
                    Kind::String(s) => {
                        options::parse_duration(s).ok_or_else(|| options::bad(v, "a duration"))?
                    }
                    _ => return Err(options::bad(v, "a duration")),
                };
            }
            "latency" | "account_token_position" | "advertise" | "allow_trace" => {}
            _ => return Err(options::unknown_field(field)),
        }
    }
    if !subject::is_valid_filter(export.subject.as_bytes()) {
        return Err(options::bad(v, "an export subject"));
    }
    Ok(export)
}

/// `{stream: {account, subject}, prefix | to}` or `{service: {account, subject}, to}`.
fn import(v: &Value) -> Result<Import, ConfError> {
    let Kind::Map(fields) = &v.kind else {
        return Err(options::bad(v, "an import"));
    };
    let mut import = Import {
        flow: Flow::Stream,
        account: String::new(),
        subject: String::new(),
        to: None,
        prefix: None,
        to_pos: None,
    };
    for field in fields {
        let v = &field.value;
        match field.key.to_ascii_lowercase().as_str() {
            key @ ("stream" | "service") => {
                if key == "service" {
                    import.flow = Flow::Service;
                }
                let Kind::Map(source) = &v.kind else {
                    return Err(options::bad(v, "an import source"));
                };
                for s in source {
                    match s.key.to_ascii_lowercase().as_str() {
                        "account" => import.account = options::string(&s.value)?,
                        "subject" => import.subject = options::string(&s.value)?,
                        _ => return Err(options::unknown_field(s)),
                    }
                }
            }
            "prefix" => import.prefix = Some(options::string(v)?),
            "to" => {
                import.to = Some(options::string(v)?);
                import.to_pos = Some(v.pos.clone());
            }
            "share" | "allow_trace" => {}
            _ => return Err(options::unknown_field(field)),
        }
    }
    Ok(import)
}

/// The checks nats-server makes once every account is read: duplicate users, imports from
/// missing accounts, of subjects not exported (or not to this account), and cycles. The error
/// carries the position nats-server gives (`1:0` for imports).
pub fn check(opts: &Options, file_pos: &Pos) -> Result<(), ConfError> {
    let mut seen = HashSet::new();
    for user in &opts.users {
        let key = user.nkey.clone().unwrap_or_else(|| user.name.clone());
        if !seen.insert(key.clone()) {
            return Err(ConfError {
                pos: user.defined_at.clone().unwrap_or_else(|| file_pos.clone()),
                message: format!("Duplicate user {key:?} detected"),
            });
        }
    }
    let at = |message: String| ConfError {
        pos: Pos {
            line: 1,
            col: 0,
            ..file_pos.clone()
        },
        message,
    };
    let by_name: HashMap<&str, &AccountConfig> =
        opts.accounts.iter().map(|a| (a.name.as_str(), a)).collect();
    for account in &opts.accounts {
        for export in &account.exports {
            for name in export.accounts.iter().flatten() {
                if !by_name.contains_key(name.as_str()) {
                    return Err(at(format!(
                        "{name:?} account not defined for {} export",
                        export.flow.as_str()
                    )));
                }
            }
        }
        let mut service_to: HashMap<String, &Import> = HashMap::new();
        for import in &account.imports {
            let kind = import.flow.as_str();
            let Some(exporter) = by_name.get(import.account.as_str()) else {
                return Err(at(format!(
                    "{:?} account not defined for {kind} import",
                    import.account
                )));
            };
            let refused = |why: &str| {
                at(format!(
                    "Error adding {kind} import {:?}: {why}",
                    import.subject
                ))
            };
            if !exporter
                .exports
                .iter()
                .any(|e| e.flow == import.flow && export_allows(e, &import.subject, &account.name))
            {
                return Err(refused(&format!("{kind} import not authorized")));
            }
            if import.flow == Flow::Service {
                let local = import.to.clone().unwrap_or_else(|| import.subject.clone());
                if let Some(previous) = service_to.insert(local.clone(), import) {
                    return Err(ConfError {
                        pos: import.to_pos.clone().unwrap_or_else(|| file_pos.clone()),
                        message: format!(
                        "Duplicate service import subject {local:?}, previously used in import for account {:?}, subject {:?}",
                        previous.account, previous.subject
                        ),
                    });
                }
                if let Some(to) = &import.to {
                    if let Err(why) = Transform::import(&import.subject, to) {
                        return Err(refused(&format!(
                            "failed to create mapping transform for service import subject from {to:?} to {:?}: {why}",
                            import.subject
                        )));
                    }
                }
            }
            if forms_cycle(&by_name, &account.name, import) {
                return Err(refused("import forms a cycle"));
            }
        }
    }
    Ok(())
}

/// Whether `export` lets `account` import `subject` (a subject within the export's).
fn export_allows(export: &Export, subject: &str, account: &str) -> bool {
    subject::is_subset(subject.as_bytes(), export.subject.as_bytes())
        && export
            .accounts
            .as_ref()
            .map_or(true, |list| list.iter().any(|a| a == account))
}

/// Whether following imports of the same flow from `import`'s exporter leads back to
/// `importer` through overlapping subjects.
fn forms_cycle(by_name: &HashMap<&str, &AccountConfig>, importer: &str, import: &Import) -> bool {
    let mut stack = vec![(import.account.as_str(), import.subject.clone())];
    let mut visited = HashSet::new();
    while let Some((account, subj)) = stack.pop() {
        if account == importer {
            return true;
        }
        if !visited.insert((account, subj.clone())) {
            continue;
        }
        let Some(config) = by_name.get(account) else {
            continue;
        };
        for next in config.imports.iter().filter(|i| i.flow == import.flow) {
            let local = next.to.as_deref().unwrap_or(&next.subject);
            if subject::overlaps(local.as_bytes(), subj.as_bytes()) {
                stack.push((next.account.as_str(), next.subject.clone()));
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::{error, options};

    #[test]
    fn account_jetstream() {
        let accounts =
            |text: &str| crate::config::test_support::options(text).map(|(o, _)| o.accounts);
        let a =
            accounts("accounts { A { jetstream: enabled }, B { jetstream: {} }, C {} }").unwrap();
        assert_eq!(
            a.iter().map(|a| a.jetstream).collect::<Vec<_>>(),
            [true, true, false]
        );
        let a = accounts(
            "accounts { A { jetstream: { max_mem: 1K, max_file: 2M, max_streams: 3, \
             consumers: 4, max_bytes_required: true, disk_max_stream_bytes: 5 } } }",
        )
        .unwrap();
        let limits = a[0].jetstream_limits;
        assert_eq!((limits.max_memory, limits.max_store), (1000, 2_000_000));
        assert_eq!((limits.max_streams, limits.max_consumers), (3, 4));
        assert_eq!(limits.store_max_stream_bytes, 5);
        assert_eq!(
            (limits.max_ack_pending, limits.max_bytes_required),
            (-1, true)
        );
        let err = accounts("accounts { A { jetstream: { max_stream_bytes: 2000 } } }").unwrap_err();
        assert!(
            err.to_string()
                .contains("Expected a parseable bool for \"max_stream_bytes\", got 2000"),
            "{err}"
        );
    }

    #[test]
    fn accounts_and_their_users() {
        let (o, _) = options(
            r#"authorization { users: [{user: g, password: g}] }
accounts {
  A: { users: [{user: a, password: a}], exports: [{service: "req", response_type: stream, response_threshold: "5s"}, {stream: "ev.>", accounts: [B]}],
       default_permissions: {publish: "x"}, mappings: {"m": "n"} }
  B: { users: [{user: b, password: b, permissions: {publish: "y"}}],
       imports: [{service: {account: A, subject: "req"}, to: "b.req"}, {stream: {account: A, subject: "ev.x"}, prefix: "p"}] }
}
system_account: A"#,
        )
        .unwrap();
        let names: Vec<_> = o
            .users
            .iter()
            .map(|u| (u.name.as_str(), u.account.as_str()))
            .collect();
        assert_eq!(names, [("g", ""), ("a", "A"), ("b", "B")]);
        // default_permissions apply to the account's users without their own.
        assert!(o.users[1].permissions.as_ref().unwrap().can_publish(b"x"));
        assert!(!o.users[2].permissions.as_ref().unwrap().can_publish(b"x"));
        assert!(o.users[0].permissions.is_none());
        assert_eq!(o.system_account.as_deref(), Some("A"));
        let a = &o.accounts[0];
        assert_eq!(a.exports[0].response_type, ResponseType::Stream);
        assert_eq!(a.exports[0].response_threshold, Duration::from_secs(5));
        assert_eq!(
            a.exports[1].accounts.as_deref(),
            Some(&["B".to_string()][..])
        );
        assert_eq!(o.accounts[1].imports[0].to.as_deref(), Some("b.req"));
        assert_eq!(o.accounts[1].imports[1].prefix.as_deref(), Some("p"));
    }

    #[test]
    fn account_errors_as_nats_server_words_them() {
        // Each text as nats-server 2.15.1 printed it for the same file (position included).
        let cases = [
            ("accounts { B: { imports: [{stream: {account: NOPE, subject: foo}}] } }",
             "test.conf:1:0: \"NOPE\" account not defined for stream import"),
            ("accounts { A: { exports: [{stream: foo, accounts: [NOPE]}] } }",
             "test.conf:1:0: \"NOPE\" account not defined for stream export"),
            ("accounts { A: { exports: [{stream: bar}] }, B: { imports: [{stream: {account: A, subject: foo}}] } }",
             "test.conf:1:0: Error adding stream import \"foo\": stream import not authorized"),
            ("accounts { A: { exports: [{service: foo, accounts: [C]}] }, B: { imports: [{service: {account: A, subject: foo}}] }, C: {} }",
             "test.conf:1:0: Error adding service import \"foo\": service import not authorized"),
            ("accounts { A: { exports: [{service: foo}], imports: [{service: {account: B, subject: foo}}] }, B: { exports: [{service: foo}], imports: [{service: {account: A, subject: foo}}] } }",
             "test.conf:1:0: Error adding service import \"foo\": import forms a cycle"),
            ("accounts { A: { exports: [{stream: foo}], imports: [{stream: {account: B, subject: foo}}] }, B: { exports: [{stream: foo}], imports: [{stream: {account: A, subject: foo}}] } }",
             "test.conf:1:0: Error adding stream import \"foo\": import forms a cycle"),
            ("accounts {\n A: { users: [{user: x}] }\n B: { users: [{user: x}] } }",
             "test.conf:3:7: Duplicate user \"x\" detected"),
            ("accounts { $G: {} }", "test.conf:1:11: \"$G\" is a Reserved Account"),
            ("mappings { \"foo\": \"bar.{{wildcard(3)}}\" }",
             "test.conf:1:12: Error adding mapping for \"foo\" to \"bar.{{wildcard(3)}}\" : invalid mapping destination: wildcard index out of range in {{wildcard(3)}}"),
            ("mappings { \"foo.*\": \"bar.$2\" }",
             "test.conf:1:12: Error adding mapping for \"foo.*\" to \"bar.$2\" : invalid mapping destination: wildcard index out of range in $2: [2]"),
            ("mappings { \"foo.*\": \"bar.{{nosuch(1)}}\" }",
             "test.conf:1:12: Error adding mapping for \"foo.*\" to \"bar.{{nosuch(1)}}\" : invalid mapping destination: unknown function in {{nosuch(1)}}"),
            ("mappings { w: [{destination: w1, weight: 60%}, {destination: w2, weight: 50%}] }",
             "test.conf:1:11: Error adding mapping for \"w\" : total weight needs to be <= 100"),
        ];
        for (text, want) in cases {
            assert_eq!(error(text), want, "{text}");
        }
    }
}
