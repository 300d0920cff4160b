//! nats-server's configuration file format, parsed into a tree of positioned values.
//!
//! This module only reads the syntax (`conf/lex.go` and `conf/parse.go` in nats-server are the
//! reference for what is accepted); what the keys mean is `config.rs`'s business.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where something is in a configuration file (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pos {
    /// The file, as given (or as resolved for an include).
    pub file: Arc<Path>,
    /// 1-based line; 0 when the error is about the whole file.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
}

/// A parse (or later, meaning) error, displayed as nats-server shows it: `file:line:col: msg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfError {
    /// Where the error is.
    pub pos: Pos,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pos.line == 0 {
            // About the whole file (it cannot be read, say).
            return write!(f, "{}: {}", self.pos.file.display(), self.message);
        }
        write!(
            f,
            "{}:{}:{}: {}",
            self.pos.file.display(),
            self.pos.line,
            self.pos.col,
            self.message
        )
    }
}

impl std::error::Error for ConfError {}

/// One value and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    /// The value.
    pub kind: Kind,
    /// Where the value starts (its opening quote, for a quoted string).
    pub pos: Pos,
    /// Written in quotes: nats-server's lexer places such a value after its quote.
    pub quoted: bool,
}

impl Value {
    /// Where nats-server's lexer places the value, as its errors about one array item show it:
    /// where its text starts (after a quote), counted from 1 except on the file's first line,
    /// where its lexer counts from 0 (as for keys, see `Parser::entry`).
    pub fn nats_pos(&self) -> Pos {
        let mut pos = self.pos.clone();
        pos.col += usize::from(self.quoted);
        pos.col -= usize::from(pos.line == 1 && pos.col > 0);
        pos
    }
}

/// The kinds of values the format has. Sizes with units (`1KB`, `64MB`) are already integers;
/// durations (`"2m"`, `10s`) stay strings for the option that reads them.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// `true/false/yes/no/on/off`
    Bool(bool),
    /// An integer, units applied.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A quoted or bare string.
    String(String),
    /// A `{ ... }` block (or the top level), in file order.
    Map(Map),
    /// A `[ ... ]` list.
    Array(Vec<Value>),
}

/// A map's entries in file order; a key written twice keeps both (the last one wins when read).
pub type Map = Vec<Entry>;

/// One `key = value` of a map.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key as written (without quotes).
    pub key: String,
    /// Where the key is (errors such as `unknown field` point here).
    pub pos: Pos,
    /// Its value.
    pub value: Value,
    /// Some `$KEY` refers to this entry: it defines a variable, so nats-server does not call
    /// it an unknown field.
    pub referenced: bool,
}

/// How deeply blocks, arrays, includes and environment values may nest; a file beyond this is
/// refused rather than overflowing the stack.
const MAX_DEPTH: usize = 64;

/// Reads and parses a configuration file, resolving `include`s relative to it and `$VARIABLE`s
/// from the file's scopes, then the environment.
pub fn parse_file(path: &Path) -> Result<Map, ConfError> {
    parse_file_at(path, 0)
}

/// Parses configuration text; `file` names it in positions and is where includes are resolved
/// from.
pub fn parse_str(text: &str, file: &Path) -> Result<Map, ConfError> {
    Parser::new(text, file.into(), 0).parse()
}

/// nats-server's digest of a configuration: the SHA-256 of the parsed file as Go's JSON
/// encoder writes it (keys sorted, the last of a repeated key kept, `<`, `>` and `&`
/// escaped, a newline at the end), so that comments and layout do not change it. Hex.
pub fn digest(map: &Map) -> String {
    let mut json = String::new();
    go_json_map(map, &mut json);
    json.push('\n');
    let digest = ring::digest::digest(&ring::digest::SHA256, json.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn go_json_map(map: &Map, out: &mut String) {
    let mut last: std::collections::BTreeMap<&str, &Value> = std::collections::BTreeMap::new();
    for entry in map {
        last.insert(&entry.key, &entry.value);
    }
    out.push('{');
    for (i, (key, value)) in last.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        go_json_string(key, out);
        out.push(':');
        go_json_value(value, out);
    }
    out.push('}');
}

fn go_json_value(value: &Value, out: &mut String) {
    use std::fmt::Write;
    match &value.kind {
        Kind::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Kind::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Kind::Float(f) => {
            let _ = write!(out, "{f}");
        }
        Kind::String(text) => go_json_string(text, out),
        Kind::Map(map) => go_json_map(map, out),
        Kind::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json_value(item, out);
            }
            out.push(']');
        }
    }
}

/// A string as Go's `encoding/json` writes it (HTML-safe).
fn go_json_string(text: &str, out: &mut String) {
    use std::fmt::Write;
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn parse_file_at(path: &Path, depth: usize) -> Result<Map, ConfError> {
    let file: Arc<Path> = path.into();
    let whole_file = |message: String| ConfError {
        pos: Pos {
            file: file.clone(),
            line: 0,
            col: 0,
        },
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| whole_file(format!("cannot read: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|_| whole_file("not valid UTF-8".into()))?;
    Parser::new(&text, file.clone(), depth).parse()
}

/// A recursive-descent reader over the text. The maps being filled are kept on a stack so a
/// `$VARIABLE` can be looked up in the enclosing blocks, innermost and latest first, as
/// nats-server does.
struct Parser<'a> {
    text: &'a str,
    at: usize,
    line: usize,
    col: usize,
    file: Arc<Path>,
    scopes: Vec<Map>,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str, file: Arc<Path>, depth: usize) -> Self {
        Parser {
            text,
            at: 0,
            line: 1,
            col: 1,
            file,
            scopes: Vec::new(),
            depth,
        }
    }

    fn parse(mut self) -> Result<Map, ConfError> {
        if self.depth > MAX_DEPTH {
            return Err(self.error("includes or variables nested too deeply"));
        }
        self.scopes.push(Map::new());
        self.entries(None)?;
        Ok(self.scopes.pop().unwrap_or_default())
    }

    // ----- reading bytes -----

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.text.as_bytes().get(self.at + ahead).copied()
    }

    fn bump(&mut self) {
        if let Some(b) = self.peek() {
            self.at += 1;
            if b == b'\n' {
                self.line += 1;
                self.col = 1;
            } else if b & 0xC0 != 0x80 {
                // Columns count characters: continuation bytes of UTF-8 do not move it.
                self.col += 1;
            }
        }
    }

    fn pos(&self) -> Pos {
        Pos {
            file: self.file.clone(),
            line: self.line,
            col: self.col,
        }
    }

    fn error(&self, message: impl Into<String>) -> ConfError {
        ConfError {
            pos: self.pos(),
            message: message.into(),
        }
    }

    /// What is at the current position, for error messages.
    fn found(&self) -> String {
        match self.text[self.at..].chars().next() {
            None => "end of file".into(),
            Some('\n') => "a new line".into(),
            Some(c) => format!("{c:?}"),
        }
    }

    fn at_comment(&self) -> bool {
        self.peek() == Some(b'#') || (self.peek() == Some(b'/') && self.peek_at(1) == Some(b'/'))
    }

    /// Skips spaces, tabs, carriage returns and comments; new lines too when `newlines`.
    fn skip_blank(&mut self, newlines: bool) {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\r') => self.bump(),
                Some(b'\n') if newlines => self.bump(),
                _ if self.at_comment() => {
                    while !matches!(self.peek(), None | Some(b'\n')) {
                        self.bump();
                    }
                }
                _ => return,
            }
        }
    }

    fn nest(&mut self) -> Result<(), ConfError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("blocks nested too deeply"));
        }
        Ok(())
    }

    // ----- maps -----

    /// Reads `key value` entries into the innermost scope until `end` (or the end of the file
    /// at the top level), which is consumed.
    fn entries(&mut self, end: Option<u8>) -> Result<(), ConfError> {
        loop {
            self.skip_blank(true);
            match self.peek() {
                Some(b',' | b';') => self.bump(),
                None if end.is_none() => return Ok(()),
                None => return Err(self.error("unexpected end of file: a block is not closed")),
                Some(b) if Some(b) == end => {
                    self.bump();
                    return Ok(());
                }
                Some(b'}' | b']') => return Err(self.error(format!("unexpected {}", self.found()))),
                Some(_) => self.entry(end)?,
            }
        }
    }

    fn entry(&mut self, end: Option<u8>) -> Result<(), ConfError> {
        let mut pos = self.pos();
        let (key, quoted) = self.key()?;
        // nats-server's column for a key: where its text starts (after a quote), counted from
        // 1 except on the file's first line, where its lexer counts from 0.
        pos.col += usize::from(quoted);
        pos.col -= usize::from(pos.line == 1);
        if !quoted && key == "include" && matches!(self.peek(), Some(b' ' | b'\t')) {
            self.skip_blank(false);
            return self.include();
        }
        self.skip_blank(false);
        if matches!(self.peek(), Some(b'=' | b':')) {
            self.bump();
            self.skip_blank(false);
        }
        if matches!(self.peek(), None | Some(b'\n' | b',' | b';' | b'}')) || self.at_comment() {
            return Err(self.error(format!("key {key:?} has no value")));
        }
        let value = self.value()?;
        self.end_of_value(end, &key)?;
        self.scope().push(Entry {
            key,
            pos,
            value,
            referenced: false,
        });
        Ok(())
    }

    fn scope(&mut self) -> &mut Map {
        if self.scopes.is_empty() {
            self.scopes.push(Map::new());
        }
        let last = self.scopes.len() - 1;
        &mut self.scopes[last]
    }

    /// After a value: blanks and a comment, then a new line, `,`, `;`, the block's end or the
    /// end of the file.
    fn end_of_value(&mut self, end: Option<u8>, key: &str) -> Result<(), ConfError> {
        self.skip_blank(false);
        match self.peek() {
            None | Some(b'\n' | b',' | b';') => Ok(()),
            Some(b) if Some(b) == end => Ok(()),
            _ => Err(self.error(format!(
                "expected a new line, ',' or ';' after the value of {key:?}, found {}",
                self.found()
            ))),
        }
    }

    /// A key: quoted, or bare up to blanks, `=`, `:` or the start of a block.
    fn key(&mut self) -> Result<(String, bool), ConfError> {
        if let Some(quote @ (b'"' | b'\'')) = self.peek() {
            return Ok((self.quoted(quote)?, true));
        }
        let start = self.at;
        while let Some(b) = self.peek() {
            if b.is_ascii_whitespace() || matches!(b, b'=' | b':' | b'{' | b'[' | b'}' | b']') {
                break;
            }
            self.bump();
        }
        if self.at == start {
            return Err(self.error(format!("expected a key, found {}", self.found())));
        }
        Ok((self.text[start..self.at].to_string(), false))
    }

    /// `include path`: the other file's entries join the current block at this point.
    fn include(&mut self) -> Result<(), ConfError> {
        let pos = self.pos();
        let name = match self.peek() {
            Some(quote @ (b'"' | b'\'')) => self.quoted(quote)?,
            _ => self.bare().to_string(),
        };
        if name.is_empty() {
            return Err(self.error("include without a file name"));
        }
        let path = match self.file.parent() {
            Some(dir) => dir.join(&name),
            None => PathBuf::from(&name),
        };
        let entries = parse_file_at(&path, self.depth + 1).map_err(|e| {
            if e.pos.line == 0 {
                ConfError {
                    pos: pos.clone(),
                    message: format!("include {name:?}: {}", e.message),
                }
            } else {
                e
            }
        })?;
        self.scope().extend(entries);
        Ok(())
    }

    // ----- values -----

    fn value(&mut self) -> Result<Value, ConfError> {
        let pos = self.pos();
        let kind = match self.peek() {
            Some(b'{') => {
                self.bump();
                self.nest()?;
                self.scopes.push(Map::new());
                self.entries(Some(b'}'))?;
                self.depth -= 1;
                Kind::Map(self.scopes.pop().unwrap_or_default())
            }
            Some(b'[') => {
                self.bump();
                self.nest()?;
                let items = self.array()?;
                self.depth -= 1;
                Kind::Array(items)
            }
            Some(quote @ (b'"' | b'\'')) => {
                let text = self.quoted(quote)?;
                return Ok(Value {
                    kind: Kind::String(text),
                    pos,
                    quoted: true,
                });
            }
            Some(b'(') => Kind::String(self.block()?),
            _ => {
                let word = self.bare();
                if word.is_empty() {
                    return Err(self.error(format!("expected a value, found {}", self.found())));
                }
                return self.word(word, pos);
            }
        };
        Ok(Value {
            kind,
            pos,
            quoted: false,
        })
    }

    fn array(&mut self) -> Result<Vec<Value>, ConfError> {
        let mut items = Vec::new();
        loop {
            self.skip_blank(true);
            match self.peek() {
                Some(b',') => self.bump(),
                Some(b']') => {
                    self.bump();
                    return Ok(items);
                }
                None => return Err(self.error("unexpected end of file: an array is not closed")),
                Some(_) => {
                    items.push(self.value()?);
                    self.skip_blank(false);
                    if !matches!(self.peek(), Some(b',' | b'\n' | b']')) {
                        return Err(self.error(format!(
                            "expected ',' or ']' after an array element, found {}",
                            self.found()
                        )));
                    }
                }
            }
        }
    }

    /// A bare word: everything up to blanks, a new line, `,`, `;` or the end of a block.
    fn bare(&mut self) -> &'a str {
        let start = self.at;
        while let Some(b) = self.peek() {
            if b.is_ascii_whitespace() || matches!(b, b',' | b';' | b'}' | b']') {
                break;
            }
            self.bump();
        }
        &self.text[start..self.at]
    }

    /// What a bare word means: a boolean, a number (sizes applied), a variable, or text.
    fn word(&mut self, word: &str, pos: Pos) -> Result<Value, ConfError> {
        let at = |kind| {
            Ok(Value {
                kind,
                pos: pos.clone(),
                quoted: false,
            })
        };
        match word.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => return at(Kind::Bool(true)),
            "false" | "no" | "off" => return at(Kind::Bool(false)),
            _ => {}
        }
        if let Some(name) = word.strip_prefix('$') {
            return self.variable(name, pos);
        }
        let digits = word.strip_prefix('-').unwrap_or(word);
        let number_end = digits
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(digits.len());
        if number_end == 0 {
            return at(Kind::String(word.to_string()));
        }
        let (number, suffix) = word.split_at(word.len() - (digits.len() - number_end));
        if suffix.is_empty() {
            let n = number.parse::<i64>().map_err(|_| ConfError {
                pos: pos.clone(),
                message: format!("integer '{word}' is out of the range"),
            })?;
            return at(Kind::Int(n));
        }
        if let Some(fraction) = suffix.strip_prefix('.') {
            if !fraction.is_empty() && fraction.bytes().all(|b| b.is_ascii_digit()) {
                if let Ok(f) = word.parse::<f64>() {
                    return at(Kind::Float(f));
                }
            }
            // An address such as 127.0.0.1:4222, or a version: text.
            return at(Kind::String(word.to_string()));
        }
        match size_multiplier(suffix) {
            Some(scale) => {
                let n = number
                    .parse::<i64>()
                    .ok()
                    .and_then(|n| n.checked_mul(scale))
                    .ok_or_else(|| ConfError {
                        pos: pos.clone(),
                        message: format!("integer '{word}' is out of the range"),
                    })?;
                at(Kind::Int(n))
            }
            // `10s`, `1h30m` and the like: text, for the option to read as a duration.
            None => at(Kind::String(word.to_string())),
        }
    }

    /// `$NAME`: the latest definition in this block or an enclosing one, else the environment
    /// variable (its text read as a value, so `PORT=4222` is a number).
    fn variable(&mut self, name: &str, pos: Pos) -> Result<Value, ConfError> {
        // Bcrypt hashes ($2a$11$...) start with `$` and are written unquoted; they are text.
        if ["2a$", "2b$", "2y$"].iter().any(|p| name.starts_with(p)) {
            return Ok(Value {
                kind: Kind::String(format!("${name}")),
                pos,
                quoted: false,
            });
        }
        let defined = self
            .scopes
            .iter_mut()
            .rev()
            .flat_map(|scope| scope.iter_mut().rev())
            .find(|entry| entry.key == name);
        if let Some(entry) = defined {
            entry.referenced = true;
            return Ok(Value {
                kind: entry.value.kind.clone(),
                pos,
                quoted: false,
            });
        }
        let Some(text) = std::env::var_os(name) else {
            return Err(ConfError {
                pos,
                message: format!("variable reference for '{name}' can not be found"),
            });
        };
        let text = text.to_string_lossy().into_owned();
        let env_file: Arc<Path> = Path::new(&format!("${name}")).into();
        let parsed = Parser::new(&format!("value = {text}"), env_file, self.depth + 1).parse();
        let kind = match parsed {
            Ok(mut entries) if entries.len() == 1 => entries.remove(0).value.kind,
            // Text that does not read as one value (spaces, say) is taken as it is.
            _ => Kind::String(text),
        };
        Ok(Value {
            kind,
            pos,
            quoted: false,
        })
    }

    /// A quoted string. Double quotes take the escapes nats-server takes (`\t \n \r \" \\`
    /// and `\xHH`); single quotes take the text as it is.
    fn quoted(&mut self, quote: u8) -> Result<String, ConfError> {
        self.bump();
        let mut bytes = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err(self.error("unexpected end of file in a quoted string"));
            };
            match b {
                b'\n' => return Err(self.error("strings cannot contain new lines")),
                _ if b == quote => {
                    self.bump();
                    break;
                }
                b'\\' if quote == b'"' => {
                    self.bump();
                    let escaped = match self.peek() {
                        Some(b't') => b'\t',
                        Some(b'n') => b'\n',
                        Some(b'r') => b'\r',
                        Some(b'"') => b'"',
                        Some(b'\\') => b'\\',
                        Some(b'x') => {
                            self.bump();
                            let hex = self.text.get(self.at..self.at + 2).unwrap_or("");
                            let byte = u8::from_str_radix(hex, 16).map_err(|_| {
                                self.error("expected two hexadecimal digits after '\\x'")
                            })?;
                            self.bump();
                            byte
                        }
                        _ => {
                            return Err(self.error(format!(
                                "invalid escape character {}; only \\xXX, \\t, \\n, \\r, \\\" and \\\\ are allowed",
                                self.found()
                            )))
                        }
                    };
                    self.bump();
                    bytes.push(escaped);
                }
                _ => {
                    bytes.push(b);
                    self.bump();
                }
            }
        }
        String::from_utf8(bytes).map_err(|_| self.error("string is not valid UTF-8"))
    }

    /// `( ... )`: text over several lines, up to a line holding only `)`.
    fn block(&mut self) -> Result<String, ConfError> {
        self.bump();
        let start = self.at;
        loop {
            while !matches!(self.peek(), None | Some(b'\n')) {
                self.bump();
            }
            if self.peek().is_none() {
                return Err(self.error("unexpected end of file in a ( ... ) block"));
            }
            let line_end = self.at;
            self.bump();
            let rest = &self.text[self.at..];
            let line = rest.split('\n').next().unwrap_or("");
            if line.trim() == ")" {
                let text = self.text[start..line_end].to_string();
                while self.peek() != Some(b')') {
                    self.bump();
                }
                self.bump();
                return Ok(text);
            }
        }
    }
}

/// nats-server's size suffixes: `k`, `m`, `g`... are powers of 1000, `kb`/`ki`/`kib`... powers
/// of 1024, in any case.
fn size_multiplier(suffix: &str) -> Option<i64> {
    let lower = suffix.to_ascii_lowercase();
    let (unit, binary) = match lower.as_bytes() {
        [u] => (*u, false),
        [u, b'b' | b'i'] => (*u, true),
        [u, b'i', b'b'] => (*u, true),
        _ => return None,
    };
    let power = match unit {
        b'k' => 1,
        b'm' => 2,
        b'g' => 3,
        b't' => 4,
        b'p' => 5,
        b'e' => 6,
        _ => return None,
    };
    let base: i64 = if binary { 1024 } else { 1000 };
    Some(base.pow(power))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Map, ConfError> {
        parse_str(text, Path::new("t.conf"))
    }

    fn kind(text: &str) -> Kind {
        let map = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        map.last().expect("an entry").value.kind.clone()
    }

    fn error(text: &str) -> String {
        parse(text).expect_err(text).to_string()
    }

    fn string(s: &str) -> Kind {
        Kind::String(s.to_string())
    }

    #[test]
    fn three_ways_to_separate_key_and_value() {
        for text in [
            "port = 4222",
            "port: 4222",
            "port 4222",
            "port=4222",
            "port:4222",
        ] {
            let map = parse(text).unwrap();
            assert_eq!(map.len(), 1, "{text}");
            assert_eq!(map[0].key, "port");
            assert_eq!(map[0].value.kind, Kind::Int(4222), "{text}");
        }
    }

    #[test]
    fn scalars() {
        assert_eq!(kind("a: -1"), Kind::Int(-1));
        assert_eq!(kind("a: 0.5"), Kind::Float(0.5));
        assert_eq!(kind("a: -2.25"), Kind::Float(-2.25));
        assert_eq!(kind("a: hello"), string("hello"));
        assert_eq!(kind("a: 127.0.0.1:4222"), string("127.0.0.1:4222"));
        assert_eq!(kind("a: 0.0.0.0"), string("0.0.0.0"));
        assert_eq!(kind("a: 10s"), string("10s"));
        assert_eq!(kind("a: 1h30m"), string("1h30m"));
        assert_eq!(kind("a: abc#def"), string("abc#def"));
        assert_eq!(
            kind("a: 2016-05-04T18:53:41Z"),
            string("2016-05-04T18:53:41Z")
        );
        assert_eq!(kind("a: nats://h:4222"), string("nats://h:4222"));
        assert!(error("a: 99999999999999999999").contains("out of the range"));
    }

    #[test]
    fn booleans_in_every_spelling() {
        for t in ["true", "TRUE", "yes", "Yes", "on", "ON"] {
            assert_eq!(kind(&format!("a: {t}")), Kind::Bool(true), "{t}");
        }
        for f in ["false", "False", "no", "NO", "off", "Off"] {
            assert_eq!(kind(&format!("a: {f}")), Kind::Bool(false), "{f}");
        }
        // Quoted, they are text.
        assert_eq!(kind("a: \"true\""), string("true"));
    }

    #[test]
    fn sizes_as_nats_server_reads_them() {
        let cases = [
            ("1k", 1000),
            ("1K", 1000),
            ("1kb", 1024),
            ("1KB", 1024),
            ("1Ki", 1024),
            ("1KiB", 1024),
            ("64MB", 64 << 20),
            ("64mb", 64 << 20),
            ("2m", 2_000_000),
            ("2M", 2_000_000),
            ("1GB", 1 << 30),
            ("1g", 1_000_000_000),
            ("3G", 3_000_000_000),
            ("1TB", 1 << 40),
            ("-1KB", -1024),
        ];
        for (text, want) in cases {
            assert_eq!(kind(&format!("a: {text}")), Kind::Int(want), "{text}");
        }
        assert!(error("a: 9000000000000EB").contains("out of the range"));
    }

    #[test]
    fn quoted_strings() {
        assert_eq!(kind(r#"a: "two words""#), string("two words"));
        assert_eq!(
            kind(r#"a: "t\tn\nr\rq\"b\\x\x41""#),
            string("t\tn\nr\rq\"b\\xA")
        );
        assert_eq!(kind(r"a: 'raw \t $x'"), string(r"raw \t $x"));
        assert_eq!(kind(r#"a: "$NOT_A_VARIABLE""#), string("$NOT_A_VARIABLE"));
        assert_eq!(kind(r#"a: "a # b // c""#), string("a # b // c"));
        assert!(error(r#"a: "\q""#).contains("invalid escape"));
        assert!(error(r#"a: "\xZZ""#).contains("hexadecimal"));
        assert!(error("a: \"open\nb: 1").contains("new lines"));
        assert!(error("a: \"open").contains("end of file"));
    }

    #[test]
    fn quoted_keys() {
        let map = parse("\"odd key\": 1\n'x.y' = 2").unwrap();
        assert_eq!(map[0].key, "odd key");
        assert_eq!(map[1].key, "x.y");
    }

    #[test]
    fn block_strings() {
        let text = "a: (\n  line one\n  line two\n)\nb: 1\n";
        let map = parse(text).unwrap();
        assert_eq!(map[0].value.kind, string("\n  line one\n  line two"));
        assert_eq!(map[1].value.kind, Kind::Int(1));
        assert!(error("a: (\nnever closed\n").contains("block"));
    }

    #[test]
    fn maps_arrays_and_separators() {
        let text = "\
# a comment
// another
authorization {
  user: a, password: b; timeout: 2 # trailing
  users = [
    {user: x, password: y}
    {user: z, password: w},
  ]
}
tags: [a, \"b c\", 3]
nested { inner { deep: true } }
";
        let map = parse(text).unwrap();
        assert_eq!(map.len(), 3);
        let Kind::Map(auth) = &map[0].value.kind else {
            panic!("not a map")
        };
        let keys: Vec<_> = auth.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["user", "password", "timeout", "users"]);
        let Kind::Array(users) = &auth[3].value.kind else {
            panic!("not an array")
        };
        assert_eq!(users.len(), 2);
        assert!(matches!(&users[1].kind, Kind::Map(m) if m.len() == 2));
        let Kind::Array(tags) = &map[1].value.kind else {
            panic!("not an array")
        };
        let tags: Vec<_> = tags.iter().map(|v| v.kind.clone()).collect();
        assert_eq!(tags, [string("a"), string("b c"), Kind::Int(3)]);
        let Kind::Map(nested) = &map[2].value.kind else {
            panic!("not a map")
        };
        assert!(
            matches!(&nested[0].value.kind, Kind::Map(m) if m[0].value.kind == Kind::Bool(true))
        );
    }

    #[test]
    fn positions_are_line_and_column() {
        let map = parse("a: 1\n  b {\n    c: \"x\"\n  }\n").unwrap();
        // Keys as nats-server places them: from 0 on the first line (its lexer's quirk).
        assert_eq!((map[0].pos.line, map[0].pos.col), (1, 0));
        assert_eq!((map[0].value.pos.line, map[0].value.pos.col), (1, 4));
        assert_eq!((map[1].pos.line, map[1].pos.col), (2, 3));
        let Kind::Map(b) = &map[1].value.kind else {
            panic!("not a map")
        };
        assert_eq!((b[0].pos.line, b[0].pos.col), (3, 5));
        assert_eq!(&*b[0].pos.file, Path::new("t.conf"));
    }

    #[test]
    fn errors_name_file_line_and_column() {
        assert_eq!(error("a: 1\nb\n"), "t.conf:2:2: key \"b\" has no value");
        assert_eq!(
            error("a {\n  b: 1\n"),
            "t.conf:3:1: unexpected end of file: a block is not closed"
        );
        assert_eq!(
            error("a: [1, 2\n"),
            "t.conf:2:1: unexpected end of file: an array is not closed"
        );
        assert!(error("a: 1 2").starts_with("t.conf:1:6: expected a new line"));
        assert!(error("}").starts_with("t.conf:1:1: unexpected"));
        assert!(error("a: [1 2]").starts_with("t.conf:1:7: expected ',' or ']'"));
        assert!(error("= 1").starts_with("t.conf:1:1: expected a key"));
    }

    #[test]
    fn variables_from_scopes_then_the_environment() {
        let text = "\
PORT: 4333
port: $PORT
a {
  USER: inner
  user: $USER_X
}
USER_X: outer
b { who: $USER_X, p: $PORT }
";
        let err = error(text);
        assert!(
            err.starts_with("t.conf:5:9: variable reference for 'USER_X'"),
            "{err}"
        );
        let map = parse(&text.replace("$USER_X\n}", "$USER\n}")).unwrap();
        assert_eq!(map[1].value.kind, Kind::Int(4333));
        let Kind::Map(b) = &map[4].value.kind else {
            panic!("not a map")
        };
        assert_eq!(b[0].value.kind, string("outer"));
        assert_eq!(b[1].value.kind, Kind::Int(4333));
        // The environment, its text read as a value.
        std::env::set_var("TERN_CONF_TEST_PORT", "4555");
        std::env::set_var("TERN_CONF_TEST_NAME", "two words");
        assert_eq!(kind("p: $TERN_CONF_TEST_PORT"), Kind::Int(4555));
        assert_eq!(kind("n: $TERN_CONF_TEST_NAME"), string("two words"));
        // A later definition in the file wins over the environment.
        assert_eq!(
            kind("TERN_CONF_TEST_PORT: 1\np: $TERN_CONF_TEST_PORT"),
            Kind::Int(1)
        );
        // Bcrypt hashes are not variables.
        assert_eq!(kind("pw: $2a$11$abc"), string("$2a$11$abc"));
    }

    #[test]
    fn an_environment_variable_naming_itself_does_not_recurse_for_ever() {
        std::env::set_var("TERN_CONF_TEST_LOOP", "$TERN_CONF_TEST_LOOP");
        // Past the nesting limit the environment's text is taken as it is.
        assert_eq!(
            kind("a: $TERN_CONF_TEST_LOOP"),
            string("$TERN_CONF_TEST_LOOP")
        );
    }

    #[test]
    fn includes_resolve_relative_to_the_including_file() {
        let dir = std::env::temp_dir().join(format!("tern-conf-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/auth.conf"), "user: a\npassword: b\n").unwrap();
        std::fs::write(
            dir.join("sub/inner.conf"),
            "authorization {\n  include 'auth.conf'\n}\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("main.conf"),
            "port: 1\ninclude \"sub/inner.conf\"\nBROKEN: 1\n",
        )
        .unwrap();
        let map = parse_file(&dir.join("main.conf")).unwrap();
        let keys: Vec<_> = map.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["port", "authorization", "BROKEN"]);
        let Kind::Map(auth) = &map[1].value.kind else {
            panic!("not a map")
        };
        assert_eq!(auth[0].value.kind, string("a"));
        assert_eq!(&*auth[0].pos.file, dir.join("sub/auth.conf").as_path());
        // Errors inside an included file name that file.
        std::fs::write(dir.join("sub/auth.conf"), "user a b\n").unwrap();
        let err = parse_file(&dir.join("main.conf")).unwrap_err();
        assert_eq!(&*err.pos.file, dir.join("sub/auth.conf").as_path());
        assert_eq!((err.pos.line, err.pos.col), (1, 8));
        // A missing include is reported where it is included.
        std::fs::write(dir.join("main.conf"), "include nothing.conf\n").unwrap();
        let err = parse_file(&dir.join("main.conf")).unwrap_err().to_string();
        assert!(
            err.contains("main.conf:1:9: include \"nothing.conf\""),
            "{err}"
        );
        // An include cycle ends with an error, not a stack overflow.
        std::fs::write(dir.join("main.conf"), "include main.conf\n").unwrap();
        assert!(parse_file(&dir.join("main.conf"))
            .unwrap_err()
            .to_string()
            .contains("too deeply"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let text = format!("a: {}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(error(&text).contains("too deeply"));
        let text = format!("a: {}", "{ b: ".repeat(10_000));
        assert!(error(&text).contains("too deeply"));
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = parse_file(Path::new("/nonexistent/x.conf"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/nonexistent/x.conf: cannot read"), "{err}");
    }

    #[test]
    fn digest_as_nats_server_computes_it() {
        // nats-server 2.15.1 `-t` printed these digests for the same texts: comments and
        // layout do not count, the last of a repeated key does, `<`, `>` and `&` are escaped.
        let digest_of = |text: &str| digest(&parse_str(text, Path::new("d.conf")).unwrap());
        assert_eq!(
            digest_of("port: 4222\n"),
            "797533ebd0dfba7d34a0f9337ecf147e442871f48ddfd07ed751575a5737267e"
        );
        assert_eq!(
            digest_of("port: 4222\n# c\n"),
            "797533ebd0dfba7d34a0f9337ecf147e442871f48ddfd07ed751575a5737267e"
        );
        let text = "server_tags: [\"x.>\", \"y&z\"]\n# comment\nmappings { \"a.*\": \"b.$1\" }\n\
                    max_payload: 1k\nauthorization { users: [{user: \"q\\\"t\", password: p}] }\n\
                    server_name: first\nserver_name: \"last<\"\n";
        assert_eq!(
            digest_of(text),
            "7da17334b2b3fa9cd891e7e2a5374d269fc045d7d0dc532885455f8e31735213"
        );
    }
}
