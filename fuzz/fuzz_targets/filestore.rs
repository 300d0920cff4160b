//! Any bytes as a stream's `msgs.log`: recovery never panics, and what it recovers is a
//! consistent store: its totals agree with its messages, writing it back out (as a compaction
//! does) and replaying that gives the same store, and replaying only the part it kept gives
//! the same store too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern::jetstream::filestore::{all_msgs, replay, write_snapshot, Replay};
use tern::jetstream::store::{StoreState, StoredMsg, StreamStore};

fn summary(found: &Replay) -> (StoreState, Vec<StoredMsg>) {
    (found.index.state(), all_msgs(&found.index))
}

fuzz_target!(|data: &[u8]| {
    let found = replay(data);
    assert!(found.good <= data.len());
    let (state, msgs) = summary(&found);
    assert_eq!(state.messages, msgs.len() as u64);
    let bytes: u64 = msgs
        .iter()
        .map(|m| found.index.msg_size(&m.subject, &m.header, &m.data))
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
    assert_eq!((again.good, again.skipped), (out.len(), 0));
    let (again_state, again_msgs) = summary(&again);
    assert_eq!(again_msgs, msgs);
    assert_eq!(again_state, state);
    assert_eq!(again.live, found.live);

    // What was cut off played no part.
    let kept = replay(&data[..found.good]);
    assert_eq!(kept.good, found.good);
    assert_eq!(summary(&kept), (state, msgs));
});
