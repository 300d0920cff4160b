//! Subject mappings and transforms (`mappings { "a.*": "b.{{wildcard(1)}}" }`, the `to` of
//! imports): a source filter and a destination template whose placeholders take the tokens the
//! source's wildcards matched, with nats-server's mapping functions and error texts.

use crate::proto::subject;

/// A rewrite of subjects matching `source` into a destination template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transform {
    source: Vec<u8>,
    /// How many tokens the source has (a trailing `>` takes what follows the last one).
    source_tokens: usize,
    tokens: Vec<Token>,
}

/// One destination token.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// Taken as it is.
    Literal(String),
    /// `>`: every subject token from the source's `>` on.
    Rest,
    /// `$N`, `{{wildcard(N)}}`: the token at this index of the subject.
    Wildcard(usize),
    /// `{{partition(n, a, b, ...)}}`: the FNV-1a hash of those tokens, modulo `n`.
    Partition(u32, Vec<usize>),
    /// `{{splitFromLeft(N, p)}}`: the token cut in two after `p` bytes.
    SplitFromLeft(usize, usize),
    /// `{{splitFromRight(N, p)}}`: cut in two `p` bytes from its end.
    SplitFromRight(usize, usize),
    /// `{{sliceFromLeft(N, s)}}`: cut into `s`-byte pieces from the left.
    SliceFromLeft(usize, usize),
    /// `{{sliceFromRight(N, s)}}`: cut into `s`-byte pieces from the right.
    SliceFromRight(usize, usize),
    /// `{{split(N, d)}}`: split at each `d`, empty pieces dropped.
    Split(usize, String),
}

/// nats-server's error texts.
const INVALID: &str = "invalid mapping destination";
const BAD_SUBJECT: &str = "invalid subject";

impl Transform {
    /// A subject mapping's transform (`mappings`): any mapping function; the destination may
    /// not contain `*`.
    pub fn mapping(source: &str, destination: &str) -> Result<Transform, String> {
        Self::build(source, destination, false)
    }

    /// An import's transform: the destination's `*` are the source's wildcards in order, only
    /// `wildcard` placeholders are allowed, and every wildcard must be used (so that the
    /// transform can be reversed).
    pub fn import(source: &str, destination: &str) -> Result<Transform, String> {
        let mut n = 0;
        let tokenized: Vec<String> = destination
            .split('.')
            .map(|t| match t {
                "*" => {
                    n += 1;
                    format!("${n}")
                }
                t => t.to_string(),
            })
            .collect();
        Self::build(source, &tokenized.join("."), true)
    }

    fn build(source: &str, destination: &str, strict: bool) -> Result<Transform, String> {
        let source = if source.is_empty() { ">" } else { source };
        let valid = |s: &str| subject::is_valid_filter(s.as_bytes());
        let stoks: Vec<&str> = source.split('.').collect();
        let dtoks: Vec<&str> = destination.split('.').collect();
        let full = |toks: &[&str]| toks.last() == Some(&">");
        if dtoks.contains(&"") {
            return Err(format!("{INVALID}: invalid transform"));
        }
        if !valid(source)
            || !valid(destination)
            || dtoks.contains(&"*")
            || full(&stoks) != full(&dtoks)
        {
            return Err(BAD_SUBJECT.into());
        }
        // The subject index of each of the source's `*`, by wildcard number (1-based).
        let stars: Vec<usize> = stoks
            .iter()
            .enumerate()
            .filter(|(_, t)| **t == "*")
            .map(|(i, _)| i)
            .collect();
        let mut used = 0;
        let mut tokens = Vec::with_capacity(dtoks.len());
        for token in &dtoks {
            let Some(function) = placeholder(token)? else {
                tokens.push(match *token {
                    ">" => Token::Rest,
                    literal => Token::Literal(literal.to_string()),
                });
                continue;
            };
            if strict && !matches!(function, Function::Wildcard(_)) {
                return Err(format!(
                    "{INVALID}: the only mapping function allowed for import transforms is {{{{Wildcard()}}}} in {token}"
                ));
            }
            if stars.is_empty() {
                return Err(format!("{INVALID}: wildcard index out of range in {token}"));
            }
            // Wildcard 0 is the subject's first token: nats-server looks it up in a map of
            // wildcard numbers, where a missing 0 reads as 0.
            let index = |n: usize| match n {
                0 => Ok(0),
                n => stars.get(n - 1).copied().ok_or_else(|| {
                    format!("{INVALID}: wildcard index out of range in {token}: [{n}]")
                }),
            };
            let (n_args, token) = match function {
                Function::Wildcard(n) => (1, Token::Wildcard(index(n)?)),
                Function::Partition(buckets, ns) => (
                    ns.len(),
                    Token::Partition(
                        buckets,
                        ns.into_iter().map(index).collect::<Result<_, _>>()?,
                    ),
                ),
                Function::SplitFromLeft(n, p) => (1, Token::SplitFromLeft(index(n)?, p)),
                Function::SplitFromRight(n, p) => (1, Token::SplitFromRight(index(n)?, p)),
                Function::SliceFromLeft(n, s) => (1, Token::SliceFromLeft(index(n)?, s)),
                Function::SliceFromRight(n, s) => (1, Token::SliceFromRight(index(n)?, s)),
                Function::Split(n, d) => (1, Token::Split(index(n)?, d)),
            };
            used += n_args;
            tokens.push(token);
        }
        if strict && used < stars.len() {
            return Err(format!(
                "{INVALID}: not using all of the token wildcard(s) in {destination}"
            ));
        }
        Ok(Transform {
            source: source.as_bytes().to_vec(),
            source_tokens: stoks.len(),
            tokens,
        })
    }

    /// The source filter.
    pub fn source(&self) -> &[u8] {
        &self.source
    }

    /// `subject` rewritten, when it matches the source.
    pub fn apply(&self, subject_in: &[u8]) -> Option<Vec<u8>> {
        if !subject::matches(&self.source, subject_in) {
            return None;
        }
        let toks: Vec<&[u8]> = subject_in.split(|&b| b == b'.').collect();
        let mut out = Vec::with_capacity(subject_in.len() + 16);
        for (i, token) in self.tokens.iter().enumerate() {
            if i > 0 {
                out.push(b'.');
            }
            match token {
                Token::Literal(text) => out.extend_from_slice(text.as_bytes()),
                Token::Rest => {
                    let rest = toks.get(self.source_tokens - 1..).unwrap_or_default();
                    out.extend_from_slice(&rest.join(&b'.'));
                }
                Token::Wildcard(at) => out.extend_from_slice(toks.get(*at)?),
                Token::Partition(buckets, at) => {
                    let mut hash: u32 = 0x811c_9dc5;
                    for &i in at {
                        for &b in *toks.get(i)? {
                            hash = (hash ^ u32::from(b)).wrapping_mul(0x0100_0193);
                        }
                    }
                    let bucket = hash.checked_rem(*buckets).unwrap_or(0);
                    out.extend_from_slice(bucket.to_string().as_bytes());
                }
                Token::SplitFromLeft(at, p) => {
                    let t = toks.get(*at)?;
                    cut(&mut out, t, (*p > 0 && *p < t.len()).then_some(*p));
                }
                Token::SplitFromRight(at, p) => {
                    let t = toks.get(*at)?;
                    cut(&mut out, t, (*p > 0 && *p < t.len()).then(|| t.len() - p));
                }
                Token::SliceFromLeft(at, size) => {
                    let t = toks.get(*at)?;
                    slices(&mut out, t, *size, 0);
                }
                Token::SliceFromRight(at, size) => {
                    let t = toks.get(*at)?;
                    let first = if *size > 0 { t.len() % size } else { 0 };
                    slices(&mut out, t, *size, first);
                }
                Token::Split(at, delimiter) => {
                    let t = String::from_utf8_lossy(toks.get(*at)?).into_owned();
                    let pieces: Vec<&str> = t
                        .split(delimiter.as_str())
                        .filter(|p| !p.is_empty())
                        .collect();
                    out.extend_from_slice(pieces.join(".").as_bytes());
                }
            }
        }
        Some(out)
    }
}

/// Writes `token`, cut in two at `at` when given.
fn cut(out: &mut Vec<u8>, token: &[u8], at: Option<usize>) {
    match at {
        Some(at) => {
            out.extend_from_slice(&token[..at]);
            out.push(b'.');
            out.extend_from_slice(&token[at..]);
        }
        None => out.extend_from_slice(token),
    }
}

/// Writes `token` in `size`-byte pieces, the first `first` bytes (a shorter remainder) on
/// their own; a token no longer than `size` stays whole.
fn slices(out: &mut Vec<u8>, token: &[u8], size: usize, first: usize) {
    if size == 0 || size >= token.len() {
        out.extend_from_slice(token);
        return;
    }
    let mut pieces: Vec<&[u8]> = Vec::new();
    if first > 0 {
        pieces.push(&token[..first]);
    }
    pieces.extend(token[first..].chunks(size));
    out.extend_from_slice(&pieces.join(&b'.'));
}

/// A mapping function named in a destination token.
enum Function {
    Wildcard(usize),
    Partition(u32, Vec<usize>),
    SplitFromLeft(usize, usize),
    SplitFromRight(usize, usize),
    SliceFromLeft(usize, usize),
    SliceFromRight(usize, usize),
    Split(usize, String),
}

/// The function a destination token names: `$N` or `{{name(args)}}`; `None` for a literal.
fn placeholder(token: &str) -> Result<Option<Function>, String> {
    if let Some(n) = token.strip_prefix('$') {
        // A `$` token that is not a number is a literal (other features use `$` subjects).
        return Ok(n.parse().ok().map(Function::Wildcard));
    }
    let Some(inner) = token
        .strip_prefix("{{")
        .and_then(|t| t.strip_suffix("}}"))
        .filter(|_| token.len() > 4)
    else {
        return Ok(None);
    };
    let err = |why: &str| format!("{INVALID}: {why} in {token}");
    let inner = inner.trim();
    let (name, args) = inner
        .find('(')
        .filter(|_| inner.ends_with(')'))
        .map(|open| (inner[..open].trim(), &inner[open + 1..inner.len() - 1]))
        .ok_or_else(|| err("unknown function"))?;
    let args: Vec<&str> = args.split(',').map(str::trim).collect();
    let int = |s: &str| {
        s.parse::<usize>()
            .map_err(|_| err("function argument is invalid or in the wrong format"))
    };
    let two = |args: &[&str]| -> Result<(usize, usize), String> {
        match args {
            [a, b] => Ok((int(a)?, int(b)?)),
            [_] => Err(err("not enough arguments passed to the function")),
            _ => Err(err("too many arguments passed to the function")),
        }
    };
    let function = match name.to_ascii_lowercase().as_str() {
        "wildcard" => match args.as_slice() {
            [""] => return Err(err("not enough arguments passed to the function")),
            [n] => Function::Wildcard(int(n)?),
            _ => return Err(err("too many arguments passed to the function")),
        },
        "partition" => {
            if args.len() < 2 {
                return Err(err("not enough arguments passed to the function"));
            }
            let buckets = u32::try_from(int(args[0])?)
                .map_err(|_| err("function argument is invalid or in the wrong format"))?;
            let indexes = args[1..].iter().map(|a| int(a)).collect::<Result<_, _>>()?;
            Function::Partition(buckets, indexes)
        }
        "splitfromleft" => two(&args).map(|(n, p)| Function::SplitFromLeft(n, p))?,
        "splitfromright" => two(&args).map(|(n, p)| Function::SplitFromRight(n, p))?,
        "slicefromleft" => two(&args).map(|(n, s)| Function::SliceFromLeft(n, s))?,
        "slicefromright" => two(&args).map(|(n, s)| Function::SliceFromRight(n, s))?,
        "split" => match args.as_slice() {
            [n, d] if !d.contains(' ') && !d.contains('.') => {
                Function::Split(int(n)?, d.to_string())
            }
            [_, _] => return Err(err("function argument is invalid or in the wrong format")),
            [_] => return Err(err("not enough arguments passed to the function")),
            _ => return Err(err("too many arguments passed to the function")),
        },
        _ => return Err(err("unknown function")),
    };
    Ok(Some(function))
}

/// One mapping: a source and its destinations, each with a weight (percent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    destinations: Vec<(Transform, u8)>,
}

impl Mapping {
    /// A mapping to weighted destinations (weights in percent, summing to at most 100; the
    /// rest of the messages keep their subject).
    pub fn new(destinations: Vec<(Transform, u8)>) -> Mapping {
        Mapping { destinations }
    }

    /// The mapped subject, when the mapping applies to `subject` (and the draw picks a
    /// destination).
    pub fn apply(&self, subject_in: &[u8]) -> Option<Vec<u8>> {
        let (first, _) = self.destinations.first()?;
        if !subject::matches(first.source(), subject_in) {
            return None;
        }
        if let [(only, 100)] = self.destinations.as_slice() {
            return only.apply(subject_in);
        }
        let draw = fastrand::u8(..100);
        let mut sum = 0u32;
        for (transform, weight) in &self.destinations {
            sum += u32::from(*weight);
            if u32::from(draw) < sum {
                return transform.apply(subject_in);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(source: &str, destination: &str, subject: &str) -> Option<String> {
        Transform::mapping(source, destination)
            .unwrap()
            .apply(subject.as_bytes())
            .map(|s| String::from_utf8(s).unwrap())
    }

    #[test]
    fn transforms() {
        // (source, destination, subject, mapped); the partition results are what nats-server
        // 2.15.1 mapped `s.k` and `s.j` to with `s.{{partition(3,1)}}.{{wildcard(1)}}`.
        let cases = [
            ("foo", "bar", "foo", Some("bar")),
            ("foo", "bar", "baz", None),
            (
                "a.*.*",
                "b.{{wildcard(2)}}.{{wildcard(1)}}",
                "a.x.y",
                Some("b.y.x"),
            ),
            ("a.*.*", "b.$2.$1", "a.x.y", Some("b.y.x")),
            ("a.>", "b.>", "a.x.y.z", Some("b.x.y.z")),
            ("a.*.>", "b.$1.>", "a.x.y.z", Some("b.x.y.z")),
            ("s.*", "s.{{partition(3,1)}}.$1", "s.k", Some("s.0.k")),
            ("s.*", "s.{{partition(3,1)}}.$1", "s.j", Some("s.2.j")),
            ("*", "{{splitFromLeft(1,2)}}", "abcde", Some("ab.cde")),
            ("*", "{{splitFromRight(1,2)}}", "abcde", Some("abc.de")),
            ("*", "{{sliceFromLeft(1,2)}}", "abcde", Some("ab.cd.e")),
            ("*", "{{sliceFromRight(1,2)}}", "abcde", Some("a.bc.de")),
            ("*", "{{split(1,-)}}", "-a--b-", Some("a.b")),
            ("*", "{{splitFromLeft(1,9)}}", "abc", Some("abc")),
            ("a.*", "b.$0", "a.x", Some("b.a")),
        ];
        for (source, destination, subject, want) in cases {
            assert_eq!(
                map(source, destination, subject).as_deref(),
                want,
                "{source} -> {destination} on {subject}"
            );
        }
    }

    #[test]
    fn errors_in_nats_server_words() {
        let err = |s, d| Transform::mapping(s, d).unwrap_err();
        let invalid = "invalid mapping destination";
        assert_eq!(
            err("foo", "bar.{{wildcard(3)}}"),
            format!("{invalid}: wildcard index out of range in {{{{wildcard(3)}}}}")
        );
        assert_eq!(
            err("foo.*", "bar.$2"),
            format!("{invalid}: wildcard index out of range in $2: [2]")
        );
        assert_eq!(
            err("foo.*", "bar.{{nosuch(1)}}"),
            format!("{invalid}: unknown function in {{{{nosuch(1)}}}}")
        );
        assert_eq!(err("foo.>", "bar.{{wildcard(1)}}"), "invalid subject");
        assert_eq!(err("foo.*", "bar.*"), "invalid subject");
        // Imports: `*` in the destination stand for the source's wildcards, all of them used.
        let import = Transform::import("foo.*", "bar.*").unwrap();
        assert_eq!(import.apply(b"foo.x").as_deref(), Some(&b"bar.x"[..]));
        assert_eq!(
            Transform::import("foo.*", "bar").unwrap_err(),
            format!("{invalid}: not using all of the token wildcard(s) in bar")
        );
    }

    #[test]
    fn weighted_mappings_split_the_traffic() {
        let t = |d: &str| Transform::mapping("w", d).unwrap();
        let m = Mapping::new(vec![(t("w1"), 50), (t("w2"), 50)]);
        let (mut w1, mut w2) = (0, 0);
        for _ in 0..2000 {
            match m.apply(b"w").as_deref() {
                Some(b"w1") => w1 += 1,
                Some(b"w2") => w2 += 1,
                other => panic!("{other:?}"),
            }
        }
        assert!(w1 > 800 && w2 > 800, "{w1} {w2}");
        let partial = Mapping::new(vec![(t("w1"), 10)]);
        let mapped = (0..2000).filter(|_| partial.apply(b"w").is_some()).count();
        assert!((100..400).contains(&mapped), "{mapped}");
        assert_eq!(partial.apply(b"x"), None);
    }
}
