//! Subject validation on any bytes agrees with a direct reading of nats-server's rules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern::proto::subject;

fuzz_target!(|data: &[u8]| {
    let tokens: Vec<&[u8]> = data.split(|&b| b == b'.').collect();
    let blank = |t: &[u8]| t.iter().any(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'\x0c'));
    let valid = !data.is_empty()
        && tokens.iter().all(|t| !t.is_empty() && !blank(t))
        && tokens.iter().rev().skip(1).all(|t| *t != b">");
    assert_eq!(subject::is_valid_filter(data), valid);
    let literal = valid && tokens.iter().all(|t| *t != b"*" && *t != b">");
    assert_eq!(subject::is_valid_literal(data), literal);
    if literal {
        // A literal subject always matches itself and `>`.
        assert!(subject::matches(data, data));
        assert!(subject::matches(b">", data));
    }
});
