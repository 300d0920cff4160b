//! Subject and filter validation, as nats-server's `sublist.go` defines it.
//!
//! A subject is a `.`-separated list of non-empty tokens. In a subscription filter the whole
//! token `*` matches exactly one token and the whole token `>` (only as the last token) matches
//! one or more trailing tokens; `foo*` or `a>` are ordinary literal tokens. Whitespace is never
//! part of a token. Subjects are case-sensitive byte strings.

/// The byte that separates tokens.
pub const SEPARATOR: u8 = b'.';
/// The single-token wildcard.
pub const PWC: &[u8] = b"*";
/// The trailing multi-token wildcard.
pub const FWC: &[u8] = b">";

/// Whitespace that nats-server refuses inside a subject (`isValidSubject`).
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')
}

/// True when `subject` is a valid subscription filter: non-empty tokens, no whitespace, and `>`
/// only as the last token. Wildcards are allowed.
pub fn is_valid_filter(subject: &[u8]) -> bool {
    // One pass over the bytes (every SUB's subject): `start` is where the current token began.
    let mut start = 0;
    for (i, &b) in subject.iter().enumerate() {
        if b == SEPARATOR {
            // An empty token, or `>` before the last one.
            if i == start || &subject[start..i] == FWC {
                return false;
            }
            start = i + 1;
        } else if is_space(b) {
            return false;
        }
    }
    // The last token (the only one of a subject without separators) is not empty.
    start < subject.len()
}

/// True when a client may not use `reply` as a PUB's reply subject, whatever its permissions:
/// nats-server keeps `_R_.` (service imports), `$JS.ACK.` (JetStream acks) and `_GR_.`
/// (gateway replies) for itself (`isReservedReply`). Case-sensitive; a bare `$JS.ACK.` or `_GR_.`
/// is allowed, a bare `_R_.` is not (observed from nats-server 2.15.1).
pub fn is_reserved_reply(reply: &[u8]) -> bool {
    match reply.first() {
        Some(b'_') => {
            reply.starts_with(b"_R_.") || (reply.len() > 5 && reply.starts_with(b"_GR_."))
        }
        Some(b'$') => reply.len() > 8 && reply.starts_with(b"$JS.ACK."),
        _ => false,
    }
}

/// True when a client may not publish to `subject`, whatever its permissions: nats-server keeps
/// `_GR_.` (gateway replies) for itself, and `$NRG.` (Raft traffic) for the system account
/// (`system`). Case-sensitive.
pub fn is_reserved_publish(subject: &[u8], system: bool) -> bool {
    (subject.len() > 5 && subject.starts_with(b"_GR_."))
        || (!system && subject.starts_with(b"$NRG."))
}

/// True when `subject` is a valid filter that contains no wildcard token: what a publish subject
/// must be in pedantic mode (`IsValidLiteralSubject`).
pub fn is_valid_literal(subject: &[u8]) -> bool {
    is_valid_filter(subject) && !has_wildcard(subject)
}

/// True when one of the tokens of `subject` is exactly `*` or `>`.
pub fn has_wildcard(subject: &[u8]) -> bool {
    subject
        .split(|&b| b == SEPARATOR)
        .any(|t| t == PWC || t == FWC)
}

/// True when the literal `subject` matches `filter` (which may hold wildcards). This is the
/// brute-force matcher the trie is tested against; the hot path never calls it.
pub fn matches(filter: &[u8], subject: &[u8]) -> bool {
    let mut f = filter.split(|&b| b == SEPARATOR);
    let mut s = subject.split(|&b| b == SEPARATOR);
    loop {
        match (f.next(), s.next()) {
            (None, None) => return true,
            (Some(ft), Some(_)) if ft == FWC => return true,
            (Some(ft), Some(st)) if ft == PWC || ft == st => {}
            _ => return false,
        }
    }
}

/// Whether every subject `sub` matches is matched by `sup` too (`foo.x` within `foo.*`,
/// `foo.*.bar` within `foo.>`).
pub fn is_subset(sub: &[u8], sup: &[u8]) -> bool {
    let mut a = sub.split(|&b| b == b'.');
    let mut b = sup.split(|&b| b == b'.');
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (_, Some(b">")) => return true,
            (Some(b">"), _) => return false,
            (Some(_), Some(b"*")) => {}
            (Some(b"*"), Some(_)) => return false,
            (Some(x), Some(y)) if x == y => {}
            _ => return false,
        }
    }
}

/// Whether some subject is matched by both filters.
pub fn overlaps(a: &[u8], b: &[u8]) -> bool {
    let mut x = a.split(|&c| c == b'.');
    let mut y = b.split(|&c| c == b'.');
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(b">"), Some(_)) | (Some(_), Some(b">")) => return true,
            (Some(b"*"), Some(_)) | (Some(_), Some(b"*")) => {}
            (Some(p), Some(q)) if p == q => {}
            _ => return false,
        }
    }
}

/// Quotes like Go's `%q` for the subjects in permission errors: printable ASCII as is, `"` and
/// `\` escaped, anything else as `\xNN`.
pub fn go_quote(text: &[u8]) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for &b in text {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_replies() {
        // Each as nats-server 2.15.1 answered a PUB with that reply.
        for reply in [
            "_R_.x",
            "_R_.",
            "_R_.>",
            "$JS.ACK.x",
            "$JS.ACK.x@Y",
            "_GR_.x",
        ] {
            assert!(is_reserved_reply(reply.as_bytes()), "{reply}");
        }
        for reply in [
            "_R_",
            "$JS.ACK.",
            "$JS.ACK",
            "_GR_.",
            "_r_.x",
            "$js.ack.x",
            "_INBOX.x",
            "$SYS.x",
            "",
        ] {
            assert!(!is_reserved_reply(reply.as_bytes()), "{reply}");
        }
    }

    #[test]
    fn filters() {
        // The cases of nats-server's TestSublistValidSubjects/TestValidateSubject, in our words.
        let valid: &[&str] = &[
            "foo",
            "foo.bar",
            "foo.*",
            "foo.>",
            "*",
            ">",
            "*.>",
            "foo.*.bar",
            "foo*",
            "foo.bar*",
            "a>",
            "foo.>bar",
            "*.*.*",
            "_INBOX.abc.*",
            "$SYS.x",
            "ünïcode.x",
        ];
        let invalid: &[&str] = &[
            "",
            ".",
            "foo.",
            ".foo",
            "foo..bar",
            "foo.>.bar",
            ">.foo",
            "foo bar",
            "foo\tbar",
            "foo\r",
            "foo\n",
            "a.\x0c",
            " ",
            "foo.> ",
        ];
        for s in valid {
            assert!(is_valid_filter(s.as_bytes()), "{s:?} should be valid");
        }
        for s in invalid {
            assert!(!is_valid_filter(s.as_bytes()), "{s:?} should be invalid");
        }
    }

    /// The definition, token by token.
    fn is_valid_filter_by_tokens(subject: &[u8]) -> bool {
        let tokens: Vec<&[u8]> = subject.split(|&b| b == SEPARATOR).collect();
        !subject.is_empty()
            && tokens.iter().enumerate().all(|(i, t)| {
                !t.is_empty()
                    && !t.iter().any(|&b| is_space(b))
                    && (*t != FWC || i == tokens.len() - 1)
            })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        #[test]
        fn one_pass_validation_agrees_with_the_definition(
            bytes in proptest::collection::vec(
                proptest::sample::select(b"ab.*> \t\r".to_vec()),
                0..12,
            )
        ) {
            proptest::prop_assert_eq!(is_valid_filter(&bytes), is_valid_filter_by_tokens(&bytes));
        }
    }

    #[test]
    fn literals() {
        for s in ["foo", "foo.bar", "foo*", "a>.b", "foo.bar*"] {
            assert!(is_valid_literal(s.as_bytes()), "{s:?}");
        }
        for s in ["foo.*", "*", ">", "foo.>", "a.*.b", "", "a..b", "a b"] {
            assert!(!is_valid_literal(s.as_bytes()), "{s:?}");
        }
    }

    #[test]
    fn brute_force_matching() {
        let cases: &[(&str, &str, bool)] = &[
            ("foo", "foo", true),
            ("foo", "bar", false),
            ("foo.*", "foo.bar", true),
            ("foo.*", "foo", false),
            ("foo.*", "foo.bar.baz", false),
            ("foo.>", "foo.bar", true),
            ("foo.>", "foo.bar.baz", true),
            ("foo.>", "foo", false),
            (">", "foo", true),
            (">", "foo.bar", true),
            ("*", "foo", true),
            ("*", "foo.bar", false),
            ("*.bar", "foo.bar", true),
            ("*.*", "foo.bar", true),
            ("foo*", "foo*", true),
            ("foo*", "foox", false),
            ("a.*.c.>", "a.b.c.d", true),
            ("a.*.c.>", "a.b.c", false),
        ];
        for (filter, subject, want) in cases {
            assert_eq!(
                matches(filter.as_bytes(), subject.as_bytes()),
                *want,
                "{filter} ~ {subject}"
            );
        }
    }
}
