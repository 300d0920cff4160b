//! An account's `msg_trace`: where messages carrying a sampled W3C `traceparent` header are
//! traced (`msg_trace: "subject"`, or `msg_trace { dest: "subject", sampling: 50% }`), read
//! with nats-server's checks and error texts (typos included).

use super::conf::{ConfError, Entry, Kind};
use super::users::go_type;
use crate::engine::msgtrace::AccountTrace;
use crate::proto::subject;

/// Reads an account's `msg_trace` entry. `None` when it names no destination (a `sampling`
/// without `dest` only warns, as nats-server does).
pub fn parse(entry: &Entry, warnings: &mut Vec<String>) -> Result<Option<AccountTrace>, ConfError> {
    let key = &entry.key;
    let at = |e: &Entry, message: String| ConfError {
        pos: e.pos.clone(),
        message,
    };
    let fields = match &entry.value.kind {
        Kind::String(dest) => {
            valid_dest(entry, dest)?;
            return Ok(Some(AccountTrace {
                dest: dest.clone(),
                sampling: 0,
            }));
        }
        Kind::Map(fields) => fields,
        _ => {
            return Err(at(
                entry,
                format!(
                    "Expected account message trace {key:?} to be a string or a map/struct, \
                     got {}",
                    go_type(&entry.value)
                ),
            ))
        }
    };
    let mut dest = None;
    let mut sampling = 0;
    for field in fields {
        let v = &field.value;
        match field.key.to_ascii_lowercase().as_str() {
            "dest" => {
                let Kind::String(d) = &v.kind else {
                    let message = format!(
                        "Field {:?} should be a string, got {}",
                        field.key,
                        go_type(v)
                    );
                    return Err(at(field, message));
                };
                valid_dest(field, d)?;
                dest = Some(d.clone());
            }
            "sampling" => sampling = parse_sampling(field)?,
            _ if field.referenced => {}
            _ => {
                let message = format!(
                    "Unknown field {:?} parsing account message trace map/struct {key:?}",
                    field.key
                );
                return Err(at(field, message));
            }
        }
    }
    match dest {
        Some(dest) => Ok(Some(AccountTrace { dest, sampling })),
        None => {
            if sampling > 0 {
                let pos = &entry.pos;
                warnings.push(format!(
                    "{}:{}:{}: Trace destination sampling ignored since no destination was set",
                    pos.file.display(),
                    pos.line,
                    pos.col
                ));
            }
            Ok(None)
        }
    }
}

/// `dest` must be a valid publish subject.
fn valid_dest(entry: &Entry, dest: &str) -> Result<(), ConfError> {
    if subject::is_valid_literal(dest.as_bytes()) {
        return Ok(());
    }
    Err(ConfError {
        pos: entry.pos.clone(),
        message: format!("Trace destination {dest:?} is not valid"),
    })
}

/// `sampling`: an integer or a percentage (`"50%"`, `"50"`), 1 to 100.
fn parse_sampling(field: &Entry) -> Result<u8, ConfError> {
    let at = |message: String| ConfError {
        pos: field.pos.clone(),
        message,
    };
    let value = match &field.value.kind {
        Kind::Int(n) => *n,
        Kind::String(s) => {
            // Go's `strconv.Atoi` after one `%` is taken off the end.
            let digits = s.strip_suffix('%').unwrap_or(s);
            digits
                .parse::<i64>()
                .map_err(|_| at(format!("Invalid trace destination sampling value {s:?}")))?
        }
        _ => {
            return Err(at(format!(
                "Trace destination sampling field {:?} should be an integer or a percentage, \
                 got {}",
                field.key,
                go_type(&field.value)
            )))
        }
    };
    match u8::try_from(value) {
        Ok(sampling @ 1..=100) => Ok(sampling),
        _ => Err(at(format!(
            "Ttrace destination sampling value {value} is invalid, needs to be [1..100]"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::{error, options};
    use crate::engine::msgtrace::AccountTrace;

    fn account(trace: &str) -> String {
        format!("accounts {{\n  A: {{\n    msg_trace: {trace}\n  }}\n}}\n")
    }

    fn traced(trace: &str) -> (Option<AccountTrace>, Vec<String>) {
        let (opts, warnings) = options(&account(trace)).unwrap();
        (opts.accounts[0].msg_trace.clone(), warnings)
    }

    #[test]
    fn destinations_and_sampling() {
        let want = |dest: &str, sampling| {
            Some(AccountTrace {
                dest: dest.into(),
                sampling,
            })
        };
        assert_eq!(traced("\"t.x\"").0, want("t.x", 0));
        assert_eq!(traced("{dest: t.x}").0, want("t.x", 0));
        assert_eq!(traced("{dest: t.x, sampling: 50}").0, want("t.x", 50));
        assert_eq!(traced("{DEST: t.x, Sampling: \"25%\"}").0, want("t.x", 25));
        assert_eq!(traced("{dest: t.x, sampling: \"+7\"}").0, want("t.x", 7));
        assert_eq!(traced("{dest: t.x, sampling: 100}").0, want("t.x", 100));
        assert_eq!(traced("{}"), (None, vec![]));
        assert_eq!(
            traced("{sampling: 50}"),
            (
                None,
                vec![
                    "test.conf:3:5: Trace destination sampling ignored since no destination \
                     was set"
                        .to_string()
                ]
            )
        );
    }

    #[test]
    fn errors_as_nats_server_words_them() {
        for (trace, want) in [
            ("\"t.*\"", "3:5: Trace destination \"t.*\" is not valid"),
            ("{dest: \"\"}", "3:17: Trace destination \"\" is not valid"),
            (
                "{dest: \"t .x\"}",
                "3:17: Trace destination \"t .x\" is not valid",
            ),
            (
                "{dest: 5}",
                "3:17: Field \"dest\" should be a string, got int64",
            ),
            (
                "{dest: t, sampling: 0}",
                "3:26: Ttrace destination sampling value 0 is invalid, needs to be [1..100]",
            ),
            (
                "{dest: t, sampling: \"150%\"}",
                "3:26: Ttrace destination sampling value 150 is invalid, needs to be [1..100]",
            ),
            (
                "{dest: t, sampling: 1K}",
                "3:26: Ttrace destination sampling value 1000 is invalid, needs to be [1..100]",
            ),
            (
                "{dest: t, sampling: \"5%%\"}",
                "3:26: Invalid trace destination sampling value \"5%%\"",
            ),
            (
                "{dest: t, sampling: \" 5\"}",
                "3:26: Invalid trace destination sampling value \" 5\"",
            ),
            (
                "{dest: t, sampling: 1.5}",
                "3:26: Trace destination sampling field \"sampling\" should be an integer or a \
                 percentage, got float64",
            ),
            (
                "{sampling: 500, dest: \"t.*\"}",
                "3:17: Ttrace destination sampling value 500 is invalid, needs to be [1..100]",
            ),
            (
                "{dest: t, foo: 1}",
                "3:26: Unknown field \"foo\" parsing account message trace map/struct \
                 \"msg_trace\"",
            ),
            (
                "5",
                "3:5: Expected account message trace \"msg_trace\" to be a string or a \
                 map/struct, got int64",
            ),
        ] {
            assert_eq!(
                error(&account(trace)),
                format!("test.conf:{want}"),
                "{trace}"
            );
        }
    }
}
