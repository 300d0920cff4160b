//! Random inserts, removes and matches: the trie always agrees with the brute-force matcher,
//! and removing everything leaves it empty.
#![no_main]

use std::collections::BTreeSet;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use tern::proto::subject;
use tern::engine::sublist::Sublist;

const TOKENS: [&str; 6] = ["a", "b", "c", "*", ">", "foo"];

/// A subject of 1-4 tokens drawn from `bytes`; `>` only last when `filter`, never otherwise.
fn subject_from(bytes: &[u8], filter: bool) -> String {
    let n = 1 + bytes.first().copied().unwrap_or(0) as usize % 4;
    let mut tokens = Vec::new();
    for i in 0..n {
        let b = bytes.get(i + 1).copied().unwrap_or(0) as usize;
        let pool = if filter { &TOKENS[..] } else { &["a", "b", "c", "foo"][..] };
        let mut t = pool[b % pool.len()];
        if t == ">" && i + 1 < n {
            t = "*";
        }
        tokens.push(t);
    }
    tokens.join(".")
}

fuzz_target!(|data: &[u8]| {
    let mut trie = Sublist::new();
    let mut model: Vec<(String, Option<&'static str>, Arc<u32>)> = Vec::new();
    let mut id = 0;
    for chunk in data.chunks(6) {
        match chunk[0] % 4 {
            0 | 1 => {
                let filter = subject_from(&chunk[1..], true);
                let queue = match chunk.get(5).copied().unwrap_or(0) % 4 {
                    0 => Some("q1"),
                    1 => Some("q2"),
                    _ => None,
                };
                let sub = Arc::new(id);
                id += 1;
                trie.insert(filter.as_bytes(), queue.map(str::as_bytes), sub.clone());
                model.push((filter, queue, sub));
            }
            2 if !model.is_empty() => {
                let at = chunk.get(1).copied().unwrap_or(0) as usize % model.len();
                let (filter, queue, sub) = model.swap_remove(at);
                assert!(trie.remove(filter.as_bytes(), queue.map(str::as_bytes), &sub));
            }
            _ => {
                let literal = subject_from(&chunk[1..], false);
                let got = trie.matches(literal.as_bytes());
                let mut got_ids: BTreeSet<u32> = got.psubs.iter().map(|s| **s).collect();
                for group in &got.qsubs {
                    got_ids.extend(group.members.iter().map(|s| **s));
                }
                let want: BTreeSet<u32> = model
                    .iter()
                    .filter(|(f, _, _)| subject::matches(f.as_bytes(), literal.as_bytes()))
                    .map(|(_, _, s)| **s)
                    .collect();
                assert_eq!(got_ids, want, "{literal}");
            }
        }
        assert_eq!(trie.count(), model.len());
    }
    for (filter, queue, sub) in model.drain(..) {
        assert!(trie.remove(filter.as_bytes(), queue.map(str::as_bytes), &sub));
    }
    assert!(trie.is_empty());
});
