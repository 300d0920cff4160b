//! Any text as a configuration file: the parser never panics, every error carries a position
//! inside the text, and whatever parses also maps onto server options without panicking.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tern::config::conf::{parse_str, Entry, Kind};
use tern::Options;

/// Every position in a parsed tree lies within the text.
fn check_positions(entries: &[Entry], lines: usize) {
    for entry in entries {
        assert!(entry.pos.line >= 1 && entry.pos.line <= lines);
        assert!(entry.value.pos.line >= 1 && entry.value.pos.line <= lines);
        check_value(&entry.value.kind, lines);
    }
}

fn check_value(kind: &Kind, lines: usize) {
    match kind {
        Kind::Map(map) => check_positions(map, lines),
        Kind::Array(items) => {
            for item in items {
                assert!(item.pos.line >= 1 && item.pos.line <= lines);
                check_value(&item.kind, lines);
            }
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Includes would read the disk; the fuzzer sticks to the text itself.
    if text.contains("include") {
        return;
    }
    let lines = text.split('\n').count();
    match parse_str(text, Path::new("fuzz.conf")) {
        Ok(entries) => {
            check_positions(&entries, lines);
            let mut opts = Options::default();
            let mut warnings = Vec::new();
            if let Err(err) = opts.apply_file(&entries, &mut warnings) {
                assert!(err.pos.line <= lines);
            }
        }
        Err(err) => {
            // Errors from an environment variable's text name `$VAR`, not this file.
            if &*err.pos.file == Path::new("fuzz.conf") {
                assert!(err.pos.line >= 1 && err.pos.line <= lines, "{err}");
                assert!(err.pos.col >= 1);
            }
        }
    }
});
