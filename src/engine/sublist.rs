//! The subscription trie: which subscriptions does a published subject reach?
//!
//! Like nats-server's `sublist.go`, each level maps a literal token to a node and has dedicated
//! children for `*` and `>`. A node holds the plain subscriptions (`psubs`) whose filter ends
//! there and its queue subscriptions grouped by queue name (`qsubs`). Removing the last
//! subscription of a node prunes the node and every level left empty above it, so the trie never
//! keeps memory for subjects nobody subscribes to.
//!
//! The trie is generic over the subscription type and compares subscriptions by `Arc` identity,
//! so it knows nothing about connections and is tested against a brute-force matcher alone.

use std::collections::HashMap;
use std::sync::Arc;

use crate::proto::subject::{FWC, PWC, SEPARATOR};

/// A queue group in a match result: its name and the members that matched.
#[derive(Debug)]
pub struct QueueGroup<T> {
    /// The queue group name.
    pub name: Box<[u8]>,
    /// The matching members; each message goes to one of them.
    pub members: Vec<Arc<T>>,
}

/// What one subject matched: every plain subscription, and each queue group with its members.
#[derive(Debug)]
pub struct SublistResult<T> {
    /// Plain subscriptions: each receives its own copy.
    pub psubs: Vec<Arc<T>>,
    /// Queue groups: one member of each receives a copy.
    pub qsubs: Vec<QueueGroup<T>>,
}

impl<T> SublistResult<T> {
    fn empty() -> Self {
        SublistResult {
            psubs: Vec::new(),
            qsubs: Vec::new(),
        }
    }

    /// True when nothing matched.
    pub fn is_empty(&self) -> bool {
        self.psubs.is_empty() && self.qsubs.is_empty()
    }
}

/// The subscription trie.
#[derive(Debug)]
pub struct Sublist<T> {
    root: Level<T>,
    count: usize,
}

type TokenMap<T> = HashMap<Box<[u8]>, Node<T>, ahash::RandomState>;

#[derive(Debug)]
struct Level<T> {
    literals: TokenMap<T>,
    pwc: Option<Box<Node<T>>>,
    fwc: Option<Box<Node<T>>>,
}

#[derive(Debug)]
struct Node<T> {
    next: Option<Box<Level<T>>>,
    psubs: Vec<Arc<T>>,
    qsubs: Vec<QueueGroup<T>>,
}

impl<T> Default for Sublist<T> {
    fn default() -> Self {
        Sublist {
            root: Level::new(),
            count: 0,
        }
    }
}

impl<T> Sublist<T> {
    /// An empty trie.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of subscriptions held.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Adds `sub` under the (already validated) filter `subject`, in `queue` if given.
    pub fn insert(&mut self, subject: &[u8], queue: Option<&[u8]>, sub: Arc<T>) {
        let mut level = &mut self.root;
        let mut tokens = subject.split(|&b| b == SEPARATOR).peekable();
        loop {
            let token = tokens.next().unwrap_or_default();
            let node = level.child_or_insert(token);
            if tokens.peek().is_none() {
                node.add(queue, sub);
                self.count += 1;
                return;
            }
            level = node.next.get_or_insert_with(|| Box::new(Level::new()));
        }
    }

    /// Removes `sub` (by identity) from under `subject` and `queue`; prunes what is left empty.
    /// Returns whether it was there.
    pub fn remove(&mut self, subject: &[u8], queue: Option<&[u8]>, sub: &Arc<T>) -> bool {
        // Walked with the tokens' iterator: no token list allocated under the write lock.
        let removed = self
            .root
            .remove(subject.split(|&b| b == SEPARATOR), queue, sub);
        if removed {
            self.count -= 1;
        }
        removed
    }

    /// Every subscription whose filter matches the literal `subject`. A subject with an empty
    /// token (`foo..bar`, `.foo`) matches nothing, as in nats-server.
    pub fn matches(&self, subject: &[u8]) -> SublistResult<T> {
        let mut result = SublistResult::empty();
        if subject.is_empty() || subject.split(|&b| b == SEPARATOR).any(|t| t.is_empty()) {
            return result;
        }
        match_level(&self.root, subject.split(|&b| b == SEPARATOR), &mut result);
        result
    }

    /// True when the trie holds nothing at all (every level pruned).
    pub fn is_empty(&self) -> bool {
        self.root.is_empty()
    }

    /// Every subscription held, plain and queued.
    pub fn all(&self) -> Vec<Arc<T>> {
        fn walk<T>(level: &Level<T>, out: &mut Vec<Arc<T>>) {
            let nodes = level
                .literals
                .values()
                .chain(level.pwc.as_deref())
                .chain(level.fwc.as_deref());
            for node in nodes {
                out.extend(node.psubs.iter().cloned());
                for group in &node.qsubs {
                    out.extend(group.members.iter().cloned());
                }
                if let Some(next) = &node.next {
                    walk(next, out);
                }
            }
        }
        let mut out = Vec::with_capacity(self.count);
        walk(&self.root, &mut out);
        out
    }
}

fn match_level<'s, T, I>(level: &Level<T>, mut tokens: I, result: &mut SublistResult<T>)
where
    I: Iterator<Item = &'s [u8]> + Clone,
{
    let mut level = level;
    while let Some(token) = tokens.next() {
        let last = tokens.clone().next().is_none();
        if let Some(fwc) = &level.fwc {
            fwc.add_to(result);
        }
        if let Some(pwc) = &level.pwc {
            if last {
                pwc.add_to(result);
            } else if let Some(next) = &pwc.next {
                match_level(next, tokens.clone(), result);
            }
        }
        let Some(node) = level.literals.get(token) else {
            return;
        };
        if last {
            node.add_to(result);
            return;
        }
        match &node.next {
            Some(next) => level = next,
            None => return,
        }
    }
}

impl<T> Level<T> {
    fn new() -> Self {
        Level {
            literals: HashMap::default(),
            pwc: None,
            fwc: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.literals.is_empty() && self.pwc.is_none() && self.fwc.is_none()
    }

    fn child_or_insert(&mut self, token: &[u8]) -> &mut Node<T> {
        if token == PWC {
            self.pwc.get_or_insert_with(|| Box::new(Node::new()))
        } else if token == FWC {
            self.fwc.get_or_insert_with(|| Box::new(Node::new()))
        } else {
            // Look up before inserting so the common case allocates no key.
            if !self.literals.contains_key(token) {
                self.literals.insert(token.into(), Node::new());
            }
            self.literals.get_mut(token).expect("inserted above")
        }
    }

    fn child_mut(&mut self, token: &[u8]) -> Option<&mut Node<T>> {
        if token == PWC {
            self.pwc.as_deref_mut()
        } else if token == FWC {
            self.fwc.as_deref_mut()
        } else {
            self.literals.get_mut(token)
        }
    }

    fn remove_child(&mut self, token: &[u8]) {
        if token == PWC {
            self.pwc = None;
        } else if token == FWC {
            self.fwc = None;
        } else {
            self.literals.remove(token);
        }
    }

    fn remove<'s, I>(&mut self, mut tokens: I, queue: Option<&[u8]>, sub: &Arc<T>) -> bool
    where
        I: Iterator<Item = &'s [u8]> + Clone,
    {
        let Some(token) = tokens.next() else {
            return false;
        };
        let Some(node) = self.child_mut(token) else {
            return false;
        };
        let removed = if tokens.clone().next().is_none() {
            node.remove(queue, sub)
        } else {
            match node.next.as_deref_mut() {
                Some(next) => {
                    let removed = next.remove(tokens, queue, sub);
                    if next.is_empty() {
                        node.next = None;
                    }
                    removed
                }
                None => false,
            }
        };
        if node.is_empty() {
            self.remove_child(token);
        }
        removed
    }
}

impl<T> Node<T> {
    fn new() -> Self {
        Node {
            next: None,
            psubs: Vec::new(),
            qsubs: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.next.is_none() && self.psubs.is_empty() && self.qsubs.is_empty()
    }

    fn add(&mut self, queue: Option<&[u8]>, sub: Arc<T>) {
        match queue {
            None => self.psubs.push(sub),
            Some(name) => match self.qsubs.iter_mut().find(|g| &*g.name == name) {
                Some(group) => group.members.push(sub),
                None => self.qsubs.push(QueueGroup {
                    name: name.into(),
                    members: vec![sub],
                }),
            },
        }
    }

    fn remove(&mut self, queue: Option<&[u8]>, sub: &Arc<T>) -> bool {
        match queue {
            None => remove_by_identity(&mut self.psubs, sub),
            Some(name) => {
                let Some(at) = self.qsubs.iter().position(|g| &*g.name == name) else {
                    return false;
                };
                let removed = remove_by_identity(&mut self.qsubs[at].members, sub);
                if self.qsubs[at].members.is_empty() {
                    self.qsubs.swap_remove(at);
                }
                removed
            }
        }
    }

    fn add_to(&self, result: &mut SublistResult<T>) {
        result.psubs.extend(self.psubs.iter().cloned());
        for group in &self.qsubs {
            // A group matched through several filters (`foo.*` and `foo.bar`) is still one group.
            match result.qsubs.iter_mut().find(|g| g.name == group.name) {
                Some(existing) => existing.members.extend(group.members.iter().cloned()),
                None => result.qsubs.push(QueueGroup {
                    name: group.name.clone(),
                    members: group.members.clone(),
                }),
            }
        }
    }
}

fn remove_by_identity<T>(subs: &mut Vec<Arc<T>>, sub: &Arc<T>) -> bool {
    match subs.iter().position(|s| Arc::ptr_eq(s, sub)) {
        Some(at) => {
            subs.swap_remove(at);
            true
        }
        None => false,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::proto::subject;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn ids(subs: &[Arc<u32>]) -> BTreeSet<u32> {
        subs.iter().map(|s| **s).collect()
    }

    /// The result as sets: plain ids, and queue name -> member ids.
    fn shape(r: &SublistResult<u32>) -> (BTreeSet<u32>, BTreeMap<Vec<u8>, BTreeSet<u32>>) {
        let q = r
            .qsubs
            .iter()
            .map(|g| (g.name.to_vec(), ids(&g.members)))
            .collect();
        (ids(&r.psubs), q)
    }

    #[test]
    fn literal_and_wildcards() {
        // The shapes of nats-server's TestSublistMatchLiterals and friends.
        let mut s = Sublist::new();
        let filters = [
            "foo",
            "foo.bar",
            "foo.*",
            "foo.>",
            "*.bar",
            ">",
            "*",
            "foo.*.baz",
            "a.b.c",
        ];
        for (i, f) in filters.iter().enumerate() {
            s.insert(f.as_bytes(), None, Arc::new(i as u32));
        }
        let check = |subject: &str| {
            let want: BTreeSet<u32> = filters
                .iter()
                .enumerate()
                .filter(|(_, f)| subject::matches(f.as_bytes(), subject.as_bytes()))
                .map(|(i, _)| i as u32)
                .collect();
            assert_eq!(ids(&s.matches(subject.as_bytes()).psubs), want, "{subject}");
        };
        for subject in [
            "foo",
            "foo.bar",
            "foo.baz",
            "foo.bar.baz",
            "x.bar",
            "a.b.c",
            "a",
            "x.y.z",
        ] {
            check(subject);
        }
        assert_eq!(s.count(), filters.len());
    }

    #[test]
    fn empty_tokens_match_nothing() {
        let mut s = Sublist::new();
        s.insert(b">", None, Arc::new(1));
        assert!(s.matches(b"foo..bar").is_empty());
        assert!(s.matches(b".foo").is_empty());
        assert!(s.matches(b"foo.").is_empty());
        assert!(s.matches(b"").is_empty());
        assert!(!s.matches(b"foo").is_empty());
    }

    #[test]
    fn queue_groups_merge_across_filters() {
        let mut s = Sublist::new();
        s.insert(b"foo.bar", Some(b"q1"), Arc::new(1));
        s.insert(b"foo.*", Some(b"q1"), Arc::new(2));
        s.insert(b"foo.>", Some(b"q2"), Arc::new(3));
        s.insert(b"foo.bar", None, Arc::new(4));
        let (plain, groups) = shape(&s.matches(b"foo.bar"));
        assert_eq!(plain, BTreeSet::from([4]));
        assert_eq!(groups[&b"q1".to_vec()], BTreeSet::from([1, 2]));
        assert_eq!(groups[&b"q2".to_vec()], BTreeSet::from([3]));
    }

    #[test]
    fn removal_prunes_everything() {
        let mut s = Sublist::new();
        type Entry = (String, Option<&'static [u8]>, Arc<u32>);
        let subs: Vec<Entry> = vec![
            ("a.b.c.d".into(), None, Arc::new(1)),
            ("a.b.*".into(), Some(b"q"), Arc::new(2)),
            ("a.>".into(), None, Arc::new(3)),
            ("*.*".into(), None, Arc::new(4)),
        ];
        for (f, q, sub) in &subs {
            s.insert(f.as_bytes(), *q, sub.clone());
        }
        // Removing something that is not there changes nothing.
        assert!(!s.remove(b"a.b.c.d", None, &Arc::new(1)));
        assert!(!s.remove(b"x.y", None, &subs[0].2));
        assert!(!s.remove(b"a.b.*", Some(b"other"), &subs[1].2));
        for (f, q, sub) in &subs {
            assert!(s.remove(f.as_bytes(), *q, sub), "{f}");
        }
        assert_eq!(s.count(), 0);
        assert!(s.is_empty(), "levels left behind: {s:?}");
    }

    #[test]
    fn same_subscription_twice_is_two_entries() {
        let mut s = Sublist::new();
        let sub = Arc::new(7);
        s.insert(b"foo", None, sub.clone());
        s.insert(b"foo", None, sub.clone());
        assert_eq!(s.matches(b"foo").psubs.len(), 2);
        assert!(s.remove(b"foo", None, &sub));
        assert_eq!(s.matches(b"foo").psubs.len(), 1);
    }

    #[derive(Debug, Clone)]
    enum Step {
        Insert(String, Option<String>),
        Remove(usize),
        Match(String),
    }

    /// A token of a small alphabet, so that random subjects and filters meet.
    pub(crate) fn token() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just("c".to_string())
        ]
    }

    fn literal() -> impl Strategy<Value = String> {
        prop::collection::vec(token(), 1..5).prop_map(|t| t.join("."))
    }

    /// A filter of 1-4 such tokens or `*`, half of them ending in `>`.
    pub(crate) fn filter() -> impl Strategy<Value = String> {
        let tok = prop_oneof![4 => token(), 1 => Just("*".to_string())];
        (prop::collection::vec(tok, 1..5), any::<bool>()).prop_map(|(mut t, fwc)| {
            if fwc {
                let last = t.len() - 1;
                t[last] = ">".to_string();
            }
            t.join(".")
        })
    }

    fn step() -> impl Strategy<Value = Step> {
        let queue = prop::option::weighted(
            0.3,
            prop_oneof![Just("q1".to_string()), Just("q2".to_string())],
        );
        prop_oneof![
            3 => (filter(), queue).prop_map(|(f, q)| Step::Insert(f, q)),
            1 => any::<usize>().prop_map(Step::Remove),
            3 => literal().prop_map(Step::Match),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// The trie agrees with the brute-force matcher over any sequence of operations, and
        /// removing everything leaves it empty.
        #[test]
        fn agrees_with_brute_force(steps in prop::collection::vec(step(), 1..80)) {
            let mut trie = Sublist::new();
            let mut model: Vec<(String, Option<String>, Arc<u32>)> = Vec::new();
            let mut next_id = 0;
            for step in steps {
                match step {
                    Step::Insert(f, q) => {
                        let sub = Arc::new(next_id);
                        next_id += 1;
                        trie.insert(f.as_bytes(), q.as_deref().map(str::as_bytes), sub.clone());
                        model.push((f, q, sub));
                    }
                    Step::Remove(i) if !model.is_empty() => {
                        let (f, q, sub) = model.swap_remove(i % model.len());
                        prop_assert!(trie.remove(f.as_bytes(), q.as_deref().map(str::as_bytes), &sub));
                    }
                    Step::Remove(_) => {}
                    Step::Match(subject) => {
                        let mut plain = BTreeSet::new();
                        let mut groups: BTreeMap<Vec<u8>, BTreeSet<u32>> = BTreeMap::new();
                        for (f, q, sub) in &model {
                            if subject::matches(f.as_bytes(), subject.as_bytes()) {
                                match q {
                                    None => { plain.insert(**sub); }
                                    Some(q) => { groups.entry(q.clone().into_bytes()).or_default().insert(**sub); }
                                }
                            }
                        }
                        prop_assert_eq!(shape(&trie.matches(subject.as_bytes())), (plain, groups));
                    }
                }
                prop_assert_eq!(trie.count(), model.len());
            }
            for (f, q, sub) in model.drain(..) {
                prop_assert!(trie.remove(f.as_bytes(), q.as_deref().map(str::as_bytes), &sub));
            }
            prop_assert!(trie.is_empty());
        }
    }
}
