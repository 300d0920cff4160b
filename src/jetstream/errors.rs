//! JetStream API errors as nats-server writes them: `{"code":..,"err_code":..,"description":..}`
//! (`ApiError`, server/jetstream_errors.go; the codes are those of server/errors.json).

use serde::Serialize;

/// One API error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiError {
    /// The HTTP-like status: 400, 404, 500, 503.
    pub code: u16,
    /// nats-server's error number (`JSStreamNotFoundErr` is 10059, ...).
    pub err_code: u32,
    /// nats-server's text.
    pub description: String,
}

impl ApiError {
    /// An error with its status, number and text.
    pub fn new(code: u16, err_code: u32, description: String) -> ApiError {
        ApiError {
            code,
            err_code,
            description,
        }
    }

    /// 10059: "stream not found".
    pub fn stream_not_found() -> ApiError {
        ApiError::new(404, 10059, "stream not found".into())
    }

    /// 10025: the request body is not the JSON expected.
    pub fn invalid_json(why: &str) -> ApiError {
        ApiError::new(400, 10025, format!("invalid JSON: {why}"))
    }

    /// 10109: a publish, purge or message delete on a sealed stream.
    pub fn sealed() -> ApiError {
        ApiError::new(400, 10109, "invalid operation on sealed stream".into())
    }

    /// 10052 for an update that clears a one-way flag, in nats-server's words ("can not
    /// unseal a sealed stream", ...).
    pub fn one_way(what: &str) -> ApiError {
        ApiError::new(
            500,
            10052,
            format!("stream configuration update can not {what}"),
        )
    }

    /// 10003: "bad request".
    pub fn bad_request() -> ApiError {
        ApiError::new(400, 10003, "bad request".into())
    }
}

/// The first of `names` that a request's unknown fields (`other`) set to something other than
/// null, false, 0 or empty: a feature tern does not have yet, which it refuses rather than
/// store a configuration without it.
pub fn first_set<'a>(
    other: &'a std::collections::BTreeMap<String, serde_json::Value>,
    names: &[&str],
) -> Option<&'a str> {
    use serde_json::Value;
    other.iter().find_map(|(key, value)| {
        let unset = match value {
            Value::Null => true,
            Value::Bool(b) => !b,
            Value::Number(n) => n.as_f64() == Some(0.0),
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
        };
        (names.contains(&key.as_str()) && !unset).then_some(key.as_str())
    })
}
