//! Any bytes as a stream's `msgs.log`: recovery never panics, and what it recovers is a
//! consistent store: its totals agree with its messages, writing it back out (as a compaction
//! does) and replaying that gives the same store, and replaying only the part it kept gives
//! the same store too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern::jetstream::fileindex::Index;
use tern::jetstream::filestore::{replay, write_snapshot, Format, Replay};
use tern::jetstream::store::{StoreState, StoredMsg};

/// The totals and the messages (read back from `log`) that replaying `log` found.
fn summary(found: &Replay, log: &[u8]) -> (StoreState, Vec<StoredMsg>) {
    (found.index.state(), found.messages(log))
}

fuzz_target!(|data: &[u8]| {
    let found = replay(data);
    assert!(found.good <= data.len() as u64);
    let (state, msgs) = summary(&found, data);
    assert_eq!(state.messages, msgs.len() as u64);
    let bytes: u64 = msgs
        .iter()
        .map(|m| Index::msg_size(m.subject.len(), m.header.len(), m.data.len()))
        .sum();
    assert_eq!(state.bytes, bytes);
    let mut subjects: Vec<&str> = msgs.iter().map(|m| m.subject.as_str()).collect();
    subjects.sort_unstable();
    subjects.dedup();
    assert_eq!(state.num_subjects, subjects.len() as u64);
    assert!(msgs.windows(2).all(|w| w[0].seq < w[1].seq));
    match (msgs.first(), msgs.last()) {
        (Some(first), Some(last)) => {
            assert_eq!(state.first_seq, first.seq);
            assert!(last.seq <= state.last_seq);
        }
        _ => assert!(state.first_seq == 0 || state.first_seq == state.last_seq + 1),
    }

    // Written back out, as a compaction would, it replays to the same store.
    let mut out = Vec::new();
    write_snapshot(&mut out, &msgs, state.last_seq, state.last_ts).unwrap();
    let again = replay(&out);
    assert_eq!((again.good, again.skipped), (out.len() as u64, 0));
    let (again_state, again_msgs) = summary(&again, &out);
    assert_eq!(again_msgs, msgs);
    assert_eq!(again_state, state);
    if found.format == Format::V2 {
        assert_eq!(again.index.live_bytes(), found.index.live_bytes());
    }

    // What was cut off played no part.
    let kept_log = &data[..found.good as usize];
    let kept = replay(kept_log);
    assert_eq!(kept.good, found.good);
    assert_eq!(summary(&kept, kept_log), (state, msgs));
});
