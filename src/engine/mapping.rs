//! Subject mappings and transforms (`mappings { "a.*": "b.{{wildcard(1)}}" }`, the `to` of
//! imports): a source filter and a destination template, the template's wildcard references
//! filled from the tokens the source's wildcards matched.

use crate::proto::subject;

/// A rewrite of subjects matching `source` into `destination`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transform {
    source: Vec<u8>,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A token taken as it is.
    Literal(Vec<u8>),
    /// The token the n-th (0-based) `*` of the source matched.
    Wildcard(usize),
    /// Everything the source's trailing `>` matched.
    Rest,
}

impl Transform {
    /// Reads a destination template for `source`: `$N`, `{{wildcard(N)}}` (1-based), a bare
    /// `*` (the next of the source's wildcards, in order), or `>` (what the source's `>`
    /// matched). The error is nats-server's reason.
    pub fn new(source: &str, destination: &str) -> Result<Transform, String> {
        if !subject::is_valid_filter(source.as_bytes()) {
            return Err(format!("invalid source subject {source:?}"));
        }
        let wildcards = source.split('.').filter(|t| *t == "*").count();
        let full = source.ends_with(".>") || source == ">";
        let mut next_star = 0;
        let mut tokens = Vec::new();
        for token in destination.split('.') {
            let index = if let Some(n) = token.strip_prefix('$') {
                Some(n.parse::<usize>().map_err(|_| bad_token(token))?)
            } else if let Some(inner) = mustache(token) {
                let (name, args) = function(inner).ok_or_else(|| bad_token(token))?;
                match (name.to_ascii_lowercase().as_str(), args.as_slice()) {
                    ("wildcard", [n]) => Some(n.parse::<usize>().map_err(|_| bad_token(token))?),
                    _ => return Err(format!("unknown function in {token}")),
                }
            } else {
                None
            };
            match (index, token) {
                // nats-server adds the index list only when the source has wildcards.
                (Some(n), _) if n == 0 || n > wildcards => {
                    return Err(match wildcards {
                        0 => format!("wildcard index out of range in {token}"),
                        _ => format!("wildcard index out of range in {token}: [{n}]"),
                    })
                }
                (Some(n), _) => tokens.push(Token::Wildcard(n - 1)),
                (None, "*") => {
                    if next_star >= wildcards {
                        return Err(format!(
                            "not using all of the token wildcard(s) in {source}"
                        ));
                    }
                    tokens.push(Token::Wildcard(next_star));
                    next_star += 1;
                }
                (None, ">") if full => tokens.push(Token::Rest),
                (None, ">") => return Err("destination has '>' but source does not".into()),
                (None, "") => return Err(format!("invalid destination subject {destination:?}")),
                (None, literal) => tokens.push(Token::Literal(literal.as_bytes().to_vec())),
            }
        }
        Ok(Transform {
            source: source.as_bytes().to_vec(),
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
        let mut stars = Vec::new();
        let mut rest: &[u8] = &[];
        let mut offset = 0;
        for (i, pattern) in self.source.split(|&b| b == b'.').enumerate() {
            let token_end = subject_in[offset..]
                .iter()
                .position(|&b| b == b'.')
                .map_or(subject_in.len(), |p| offset + p);
            match pattern {
                b"*" => stars.push(&subject_in[offset..token_end]),
                b">" => {
                    rest = &subject_in[offset..];
                    break;
                }
                _ => {}
            }
            let _ = i;
            offset = token_end + 1;
        }
        let mut out = Vec::with_capacity(subject_in.len() + 16);
        for (i, token) in self.tokens.iter().enumerate() {
            if i > 0 {
                out.push(b'.');
            }
            match token {
                Token::Literal(text) => out.extend_from_slice(text),
                Token::Wildcard(n) => out.extend_from_slice(stars.get(*n)?),
                Token::Rest => out.extend_from_slice(rest),
            }
        }
        Some(out)
    }
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

fn bad_token(token: &str) -> String {
    format!("invalid mapping destination token {token:?}")
}

/// The inside of `{{ ... }}`.
fn mustache(token: &str) -> Option<&str> {
    token
        .strip_prefix("{{")
        .and_then(|t| t.strip_suffix("}}"))
        .map(str::trim)
}

/// `name(arg, ...)`.
fn function(text: &str) -> Option<(&str, Vec<&str>)> {
    let open = text.find('(')?;
    let args = text[open + 1..].strip_suffix(')')?;
    let args = match args.trim() {
        "" => Vec::new(),
        args => args.split(',').map(str::trim).collect(),
    };
    Some((text[..open].trim(), args))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(source: &str, destination: &str, subject: &str) -> Option<String> {
        Transform::new(source, destination)
            .unwrap()
            .apply(subject.as_bytes())
            .map(|s| String::from_utf8(s).unwrap())
    }

    #[test]
    fn transforms() {
        assert_eq!(map("foo", "bar", "foo").as_deref(), Some("bar"));
        assert_eq!(map("foo", "bar", "baz"), None);
        assert_eq!(
            map("a.*.*", "b.{{wildcard(2)}}.{{wildcard(1)}}", "a.x.y").as_deref(),
            Some("b.y.x")
        );
        assert_eq!(map("a.*.*", "b.$2.$1", "a.x.y").as_deref(), Some("b.y.x"));
        assert_eq!(map("a.*", "b.*", "a.x").as_deref(), Some("b.x"));
        assert_eq!(map("a.>", "b.>", "a.x.y.z").as_deref(), Some("b.x.y.z"));
        assert_eq!(
            map("a.*.>", "b.$1.>", "a.x.y.z").as_deref(),
            Some("b.x.y.z")
        );
        assert!(Transform::new("a.*", "b.{{wildcard(3)}}").is_err());
        assert!(Transform::new("a.*", "b.$0").is_err());
        assert!(Transform::new("a", "b.>").is_err());
        assert!(Transform::new("a.*", "b.{{nope(1)}}").is_err());
    }

    #[test]
    fn weighted_mappings_split_the_traffic() {
        let t = |d: &str| Transform::new("w", d).unwrap();
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
