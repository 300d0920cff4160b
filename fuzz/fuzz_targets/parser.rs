//! Any bytes, cut anywhere: the parser never panics, and what it yields does not depend on how
//! the input was split across reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern::proto::parser::{parse, Limits};

/// Feeds `input` in the given pieces, the way the read loop does, and returns every operation
/// (as text) and the error that stopped the stream, if any.
fn run(input: &[u8], cuts: &[usize], limits: &Limits) -> (Vec<String>, Option<String>) {
    let mut buf = Vec::new();
    let mut ops = Vec::new();
    let mut fed = 0;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        let cut = cut.clamp(fed, input.len());
        buf.extend_from_slice(&input[fed..cut]);
        fed = cut;
        loop {
            match parse(&buf, limits) {
                Ok(Some((op, used))) => {
                    assert!(used > 0 && used <= buf.len());
                    ops.push(format!("{op:?}"));
                    buf.drain(..used);
                }
                Ok(None) => break,
                Err(err) => return (ops, Some(format!("{err:?}"))),
            }
        }
    }
    (ops, None)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    // The first bytes choose small limits (so they are reached) and where to cut.
    let limits = Limits { max_control_line: 16 + data[0] as usize, max_payload: data[1] as usize * 4 };
    let input = &data[3..];
    let step = 1 + data[2] as usize % 7;
    let whole = run(input, &[], &limits);
    let cuts: Vec<usize> = (step..input.len()).step_by(step).collect();
    assert_eq!(run(input, &cuts, &limits), whole);
});
