//! The subscription trie: which subscriptions does a published subject reach?
//!
//! Like nats-server's `sublist.go`, each level maps a literal token to a node and has dedicated
//! children for `*` and `>`. A node holds the plain subscriptions (`psubs`) whose filter ends
//! there and its queue subscriptions grouped by queue name (`qsubs`). Removing the last
//! subscription of a node prunes the node and every level left empty above it, so the trie never
//! keeps memory for subjects nobody subscribes to.
//!
//! Built for cheap SUB and UNSUB as much as for matching (a client churning subscriptions
//! inserts and prunes a branch per pair): a level with one literal child holds it without a map
//! (most levels of most subjects have one child), a node's next level and its first plain
//! subscription live inside it, and tokens of up to [`INLINE_TOKEN`] bytes are keys without an
//! allocation. Subscribing to `churn.<n>.x` beside other `churn.<m>.x` allocates once in the
//! trie (the `x` node), where a map per level cost five allocations and a hasher seed.
//!
//! The trie is generic over the subscription type and compares subscriptions by `Arc` identity,
//! so it knows nothing about connections and is tested against a brute-force matcher alone.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::mem;
use std::sync::Arc;

use smallvec::SmallVec;

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
    store: Store<T>,
}

/// What inserting and pruning draw on besides the levels themselves.
#[derive(Debug)]
struct Store<T> {
    /// The seed of every level's map, cloned into each: a fresh one per level cost more than
    /// the rest of an insert. Random per trie, as subjects come from clients.
    hasher: ahash::RandomState,
    /// Boxes of pruned single children, empty, for the next ones: a client subscribing and
    /// unsubscribing a subject nobody else has prunes and grows the same branch every time.
    // Boxed on purpose: the boxes themselves are what is reused.
    #[allow(clippy::vec_box)]
    spares: Vec<Box<(Token, Node<T>)>>,
}

/// Most spare single-child boxes a trie keeps (a branch of this many levels is regrown
/// without allocating).
const SPARES: usize = 8;

/// Longest token held inline as a key (a 22-character NUID fits).
pub const INLINE_TOKEN: usize = 22;

/// A literal token as a key of a level: inline up to [`INLINE_TOKEN`] bytes, boxed beyond.
/// Hashes and compares as its bytes, so a level's map is searched with a `&[u8]`.
#[derive(Clone)]
enum Token {
    Inline { len: u8, bytes: [u8; INLINE_TOKEN] },
    Heap(Box<[u8]>),
}

type TokenMap<T> = HashMap<Token, Node<T>, ahash::RandomState>;

#[derive(Debug)]
struct Level<T> {
    literals: Literals<T>,
    pwc: Option<Box<Node<T>>>,
    fwc: Option<Box<Node<T>>>,
}

/// A level's literal children.
#[derive(Debug)]
enum Literals<T> {
    None,
    /// A single child, found by comparing its token.
    One(Box<(Token, Node<T>)>),
    /// Two or more, or fewer after removals: a map stays one until its last child leaves, so a
    /// level that goes back and forth between one and two children does not build a map and
    /// drop it every time.
    Many(Box<TokenMap<T>>),
}

#[derive(Debug)]
struct Node<T> {
    /// The level below (empty at the end of every filter but longer ones').
    next: Level<T>,
    psubs: SmallVec<[Arc<T>; 1]>,
    qsubs: Vec<QueueGroup<T>>,
}

impl<T> Default for Sublist<T> {
    fn default() -> Self {
        Sublist {
            root: Level::new(),
            count: 0,
            store: Store {
                hasher: ahash::RandomState::new(),
                spares: Vec::new(),
            },
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
            let node = level.child_or_insert(token, &mut self.store);
            if tokens.peek().is_none() {
                node.add(queue, sub);
                self.count += 1;
                return;
            }
            level = &mut node.next;
        }
    }

    /// Removes `sub` (by identity) from under `subject` and `queue`; prunes what is left empty.
    /// Returns whether it was there.
    pub fn remove(&mut self, subject: &[u8], queue: Option<&[u8]>, sub: &Arc<T>) -> bool {
        // Walked with the tokens' iterator: no token list allocated under the write lock.
        let tokens = subject.split(|&b| b == SEPARATOR);
        let removed = self.root.remove(tokens, queue, sub, &mut self.store);
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
            for node in level.children() {
                out.extend(node.psubs.iter().cloned());
                for group in &node.qsubs {
                    out.extend(group.members.iter().cloned());
                }
                walk(&node.next, out);
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
            } else if !pwc.next.is_empty() {
                match_level(&pwc.next, tokens.clone(), result);
            }
        }
        let Some(node) = level.literal(token) else {
            return;
        };
        if last {
            node.add_to(result);
            return;
        }
        level = &node.next;
    }
}

impl<T> Level<T> {
    fn new() -> Self {
        Level {
            literals: Literals::None,
            pwc: None,
            fwc: None,
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self.literals, Literals::None) && self.pwc.is_none() && self.fwc.is_none()
    }

    /// The literal child `token`.
    #[inline]
    fn literal(&self, token: &[u8]) -> Option<&Node<T>> {
        match &self.literals {
            Literals::None => None,
            Literals::One(one) => (one.0.as_bytes() == token).then_some(&one.1),
            Literals::Many(map) => map.get(token),
        }
    }

    /// Every child: literal ones, then `*`, then `>`.
    fn children(&self) -> impl Iterator<Item = &Node<T>> {
        let (one, many) = match &self.literals {
            Literals::None => (None, None),
            Literals::One(one) => (Some(&one.1), None),
            Literals::Many(map) => (None, Some(map.values())),
        };
        one.into_iter()
            .chain(many.into_iter().flatten())
            .chain(self.pwc.as_deref())
            .chain(self.fwc.as_deref())
    }

    fn child_or_insert(&mut self, token: &[u8], store: &mut Store<T>) -> &mut Node<T> {
        if token == PWC {
            return self.pwc.get_or_insert_with(|| Box::new(Node::new()));
        }
        if token == FWC {
            return self.fwc.get_or_insert_with(|| Box::new(Node::new()));
        }
        let found = match &self.literals {
            Literals::None => false,
            Literals::One(one) => one.0.as_bytes() == token,
            // Found or added with one lookup.
            Literals::Many(_) => true,
        };
        if !found {
            return self.insert_literal(token, store);
        }
        match self.literals {
            Literals::Many(ref mut map) => map_child(map, token),
            Literals::One(ref mut one) => &mut one.1,
            Literals::None => self.insert_literal(token, store),
        }
    }

    /// Adds the literal child `token`, absent so far: the level's only child, or one more in
    /// its map (made now if the level had one child).
    fn insert_literal(&mut self, token: &[u8], store: &mut Store<T>) -> &mut Node<T> {
        self.literals = match mem::replace(&mut self.literals, Literals::None) {
            Literals::None => Literals::One(store.single(token)),
            Literals::One(one) => {
                let (key, node) = *one;
                let mut map = TokenMap::with_capacity_and_hasher(2, store.hasher.clone());
                map.insert(key, node);
                Literals::Many(Box::new(map))
            }
            many => many,
        };
        match &mut self.literals {
            // Only a level that had no child is left with one.
            Literals::One(one) => &mut one.1,
            Literals::Many(map) => map_child(map, token),
            Literals::None => unreachable!("a child was added above"),
        }
    }

    fn child_mut(&mut self, token: &[u8]) -> Option<&mut Node<T>> {
        if token == PWC {
            self.pwc.as_deref_mut()
        } else if token == FWC {
            self.fwc.as_deref_mut()
        } else {
            match &mut self.literals {
                Literals::None => None,
                Literals::One(one) => (one.0.as_bytes() == token).then_some(&mut one.1),
                Literals::Many(map) => map.get_mut(token),
            }
        }
    }

    /// Prunes the child `token`, left empty.
    fn remove_child(&mut self, token: &[u8], store: &mut Store<T>) {
        if token == PWC {
            self.pwc = None;
        } else if token == FWC {
            self.fwc = None;
        } else {
            match &mut self.literals {
                Literals::One(one) if one.0.as_bytes() == token => {
                    if let Literals::One(one) = mem::replace(&mut self.literals, Literals::None) {
                        store.keep(one);
                    }
                }
                Literals::Many(map) => {
                    map.remove(token);
                    if map.is_empty() {
                        self.literals = Literals::None;
                    }
                }
                Literals::One(_) | Literals::None => {}
            }
        }
    }

    fn remove<'s, I>(
        &mut self,
        mut tokens: I,
        queue: Option<&[u8]>,
        sub: &Arc<T>,
        store: &mut Store<T>,
    ) -> bool
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
            node.next.remove(tokens, queue, sub, store)
        };
        if node.is_empty() {
            self.remove_child(token, store);
        }
        removed
    }
}

impl<T> Store<T> {
    /// A box holding a new empty child `token`: a spare one if there is one.
    fn single(&mut self, token: &[u8]) -> Box<(Token, Node<T>)> {
        match self.spares.pop() {
            Some(mut one) => {
                one.0 = Token::new(token);
                one
            }
            None => Box::new((Token::new(token), Node::new())),
        }
    }

    /// Keeps the box of a pruned (so empty) single child for [`Store::single`], if there is
    /// room.
    fn keep(&mut self, one: Box<(Token, Node<T>)>) {
        if self.spares.len() < SPARES && one.1.is_empty() {
            self.spares.push(one);
        }
    }
}

/// The child `token` of a level's map, added if absent.
fn map_child<'m, T>(map: &'m mut TokenMap<T>, token: &[u8]) -> &'m mut Node<T> {
    if token.len() <= INLINE_TOKEN {
        // The key costs no allocation: one lookup whether the child is there or not.
        return map.entry(Token::new(token)).or_insert_with(Node::new);
    }
    // A long token: looked up first so that finding it allocates nothing.
    if !map.contains_key(token) {
        map.insert(Token::new(token), Node::new());
    }
    map.get_mut(token).expect("inserted above")
}

impl<T> Node<T> {
    fn new() -> Self {
        Node {
            next: Level::new(),
            psubs: SmallVec::new(),
            qsubs: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.next.is_empty() && self.psubs.is_empty() && self.qsubs.is_empty()
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
            None => match position_of(&self.psubs, sub) {
                Some(at) => {
                    self.psubs.swap_remove(at);
                    true
                }
                None => false,
            },
            Some(name) => {
                let Some(at) = self.qsubs.iter().position(|g| &*g.name == name) else {
                    return false;
                };
                let members = &mut self.qsubs[at].members;
                let Some(member) = position_of(members, sub) else {
                    return false;
                };
                members.swap_remove(member);
                if members.is_empty() {
                    self.qsubs.swap_remove(at);
                }
                true
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

fn position_of<T>(subs: &[Arc<T>], sub: &Arc<T>) -> Option<usize> {
    subs.iter().position(|s| Arc::ptr_eq(s, sub))
}

impl Token {
    fn new(token: &[u8]) -> Token {
        if token.len() > INLINE_TOKEN {
            return Token::Heap(token.into());
        }
        let mut bytes = [0; INLINE_TOKEN];
        bytes[..token.len()].copy_from_slice(token);
        Token::Inline {
            len: token.len() as u8,
            bytes,
        }
    }

    #[inline]
    fn as_bytes(&self) -> &[u8] {
        match self {
            Token::Inline { len, bytes } => &bytes[..*len as usize],
            Token::Heap(bytes) => bytes,
        }
    }
}

impl PartialEq for Token {
    fn eq(&self, other: &Token) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Token {}

// As its bytes: `Borrow<[u8]>` requires a token and its bytes to hash the same.
impl Hash for Token {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl Borrow<[u8]> for Token {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
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

    /// Checks that no empty node or map is kept anywhere, and returns how many levels hold
    /// their literal children inline and how many in a map.
    fn check_pruned<T>(level: &Level<T>) -> (usize, usize) {
        let mut counts = match &level.literals {
            Literals::None => (0, 0),
            Literals::One(_) => (1, 0),
            Literals::Many(map) => {
                assert!(!map.is_empty(), "an empty map is kept");
                (0, 1)
            }
        };
        for node in level.children() {
            assert!(!node.is_empty(), "an empty node is kept");
            let (one, many) = check_pruned(&node.next);
            counts.0 += one;
            counts.1 += many;
        }
        counts
    }

    #[test]
    fn one_child_is_inline_until_a_second_arrives() {
        let mut s = Sublist::new();
        let (x, y, z) = (Arc::new(1), Arc::new(2), Arc::new(3));
        s.insert(b"a.x", None, x.clone());
        // The root and `a`'s level each hold one child, without a map.
        assert_eq!(check_pruned(&s.root), (2, 0));
        s.insert(b"a.y", None, y.clone());
        assert_eq!(check_pruned(&s.root), (1, 1));
        s.insert(b"a.z", None, z.clone());
        assert_eq!(check_pruned(&s.root), (1, 1));
        assert!(s.remove(b"a.x", None, &x));
        assert!(s.remove(b"a.z", None, &z));
        // A map stays one until it is empty (no map built and dropped per SUB + UNSUB of a
        // level going between one and two children).
        assert_eq!(check_pruned(&s.root), (1, 1));
        assert_eq!(ids(&s.matches(b"a.y").psubs), BTreeSet::from([2]));
        assert!(s.matches(b"a.x").is_empty());
        assert!(s.remove(b"a.y", None, &y));
        assert!(s.is_empty());
        // The root's single child `a` was pruned, its box kept for the next one.
        assert_eq!(s.store.spares.len(), 1);
        // Emptied, the level starts over with one inline child.
        s.insert(b"a.y", None, y.clone());
        assert_eq!(s.store.spares.len(), 0);
        assert_eq!(check_pruned(&s.root), (2, 0));
        assert_eq!(ids(&s.matches(b"a.y").psubs), BTreeSet::from([2]));
    }

    #[test]
    fn long_tokens_are_keys_too() {
        let mut s = Sublist::new();
        let inline = "n".repeat(INLINE_TOKEN);
        let long = "n".repeat(INLINE_TOKEN + 1);
        let longer = "n".repeat(200);
        let filters = [
            format!("{inline}.x"),
            format!("{long}.x"),
            format!("{longer}.x"),
            format!("a.{long}"),
            format!("a.{inline}"),
            format!("*.{long}"),
        ];
        for (i, f) in filters.iter().enumerate() {
            s.insert(f.as_bytes(), None, Arc::new(i as u32));
            // Inserting an existing token again (the map's lookup-first path for long ones).
            s.insert(f.as_bytes(), None, Arc::new(100 + i as u32));
        }
        for (i, f) in filters.iter().enumerate().filter(|(_, f)| !f.contains('*')) {
            let want: BTreeSet<u32> = filters
                .iter()
                .enumerate()
                .filter(|(_, g)| subject::matches(g.as_bytes(), f.as_bytes()))
                .flat_map(|(j, _)| [j as u32, 100 + j as u32])
                .collect();
            assert!(want.contains(&(i as u32)));
            assert_eq!(ids(&s.matches(f.as_bytes()).psubs), want, "{f}");
        }
        for sub in s.all() {
            let f = &filters[*sub as usize % 100];
            assert!(s.remove(f.as_bytes(), None, &sub), "{f}");
        }
        assert!(s.is_empty(), "levels left behind: {s:?}");
    }

    #[derive(Debug, Clone)]
    enum Step {
        Insert(String, Option<String>),
        Remove(usize),
        Match(String),
    }

    /// A token of a small alphabet, so that random subjects and filters meet.
    /// Two of them as long as the longest inline key and one longer (kept on the heap).
    pub(crate) fn token() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => Just("a".to_string()),
            3 => Just("b".to_string()),
            3 => Just("c".to_string()),
            1 => Just("d".repeat(INLINE_TOKEN)),
            1 => Just("e".repeat(INLINE_TOKEN + 1)),
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
                // Levels promoted to maps and pruned again leave nothing empty behind.
                check_pruned(&trie.root);
            }
            for (f, q, sub) in model.drain(..) {
                prop_assert!(trie.remove(f.as_bytes(), q.as_deref().map(str::as_bytes), &sub));
            }
            prop_assert!(trie.is_empty());
        }
    }
}
