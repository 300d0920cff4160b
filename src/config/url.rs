//! URLs and addresses as Go reads them, since nats-server accepts and refuses route URLs and
//! listen addresses by what Go's `url.Parse` and `net.SplitHostPort` accept: the subset a
//! route needs (user info, host, port), with Go's error words.

/// Go's `net.SplitHostPort`: `host:port` or `[host]:port`; `None` where Go errs.
pub(super) fn split_host_port(text: &str) -> Option<(String, String)> {
    let colon = text.rfind(':')?;
    let (host, after_host) = match text.strip_prefix('[') {
        Some(rest) => {
            let end = rest.find(']')? + 1;
            // The closing bracket must come right before the port's colon.
            if end + 1 != colon {
                return None;
            }
            (&text[1..end], end + 1)
        }
        None if text[..colon].contains(':') => return None,
        None => (&text[..colon], 0),
    };
    let unexpected = text[usize::from(text.starts_with('['))..].contains('[')
        || text[after_host..].contains(']');
    if unexpected {
        return None;
    }
    Some((host.to_string(), text[colon + 1..].to_string()))
}

/// Go's error for an address without a port (`net.AddrError`).
pub(super) fn missing_port(address: &str) -> String {
    match address {
        "" => "missing port in address".into(),
        _ => format!("address {address}: missing port in address"),
    }
}

/// A URL's host and port as Go's `URL.Hostname` and `URL.Port` give them.
pub(super) fn host_and_port(authority_host: &str) -> (&str, &str) {
    if let Some(rest) = authority_host.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, after)) => (host, after.strip_prefix(':').unwrap_or("")),
            None => (rest, ""),
        };
    }
    match authority_host.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => (host, port),
        _ => (authority_host, ""),
    }
}

/// What Go's `url.Parse` keeps of a URL that a route needs: the user info and the host (with
/// its port, still escaped as written); it accepts and refuses what Go does.
pub(super) struct GoUrl {
    /// The user name and password (if any), unescaped.
    pub user: Option<(String, Option<String>)>,
    /// The host and port as written after any `user@`, empty when there is none.
    pub authority_host: String,
}

impl GoUrl {
    /// Parses `raw`; the error is Go's, without its `parse "...": ` prefix.
    pub fn parse(raw: &str) -> Result<GoUrl, String> {
        if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err("net/url: invalid control character in URL".into());
        }
        let (raw, fragment) = match raw.split_once('#') {
            Some((raw, fragment)) => (raw, Some(fragment)),
            None => (raw, None),
        };
        if let Some(fragment) = fragment {
            unescape(fragment, Mode::Other)?;
        }
        let (scheme, rest) = scheme(raw)?;
        let rest = rest.split_once('?').map_or(rest, |(rest, _query)| rest);
        let mut url = GoUrl {
            user: None,
            authority_host: String::new(),
        };
        if !rest.starts_with('/') {
            if !scheme.is_empty() {
                // `scheme:opaque`: no host at all.
                return Ok(url);
            }
            if rest.split('/').next().is_some_and(|s| s.contains(':')) {
                return Err("first path segment in URL cannot contain colon".into());
            }
        }
        let mut path = rest;
        if (!scheme.is_empty() || !rest.starts_with("///")) && rest.starts_with("//") {
            let after = &rest[2..];
            let (authority, after_path) = match after.find('/') {
                Some(i) => (&after[..i], &after[i..]),
                None => (after, ""),
            };
            path = after_path;
            let host = match authority.rfind('@') {
                Some(i) => {
                    url.user = Some(userinfo(&authority[..i])?);
                    &authority[i + 1..]
                }
                None => authority,
            };
            check_host(host)?;
            url.authority_host = host.to_string();
        }
        unescape(path, Mode::Other)?;
        Ok(url)
    }
}

/// Go's `getScheme`.
fn scheme(raw: &str) -> Result<(&str, &str), String> {
    for (i, c) in raw.bytes().enumerate() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
            b':' if i == 0 => return Err("missing protocol scheme".into()),
            b':' => return Ok((&raw[..i], &raw[i + 1..])),
            _ => return Ok(("", raw)),
        }
    }
    Ok(("", raw))
}

/// Go's `parseAuthority` for the part before `@`.
fn userinfo(info: &str) -> Result<(String, Option<String>), String> {
    let valid = info
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"-._:~!$&'()*+,;=%@".contains(&c) || c >= 0x80);
    if !valid {
        return Err("net/url: invalid userinfo".into());
    }
    match info.split_once(':') {
        Some((user, password)) => Ok((
            unescape(user, Mode::Other)?,
            Some(unescape(password, Mode::Other)?),
        )),
        None => Ok((unescape(info, Mode::Other)?, None)),
    }
}

/// Go's `parseHost`: brackets, an optional `:digits` port, and the characters a host may have.
fn check_host(host: &str) -> Result<(), String> {
    let valid_port = |p: &str| {
        p.is_empty()
            || p.strip_prefix(':')
                .is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit()))
    };
    if let Some(rest) = host.strip_prefix('[') {
        let end = rest.rfind(']').ok_or("missing ']' in host")?;
        let port = &rest[end + 1..];
        if !valid_port(port) {
            return Err(format!("invalid port {port:?} after host"));
        }
    } else if let Some(i) = host.rfind(':') {
        let port = &host[i..];
        if !valid_port(port) {
            return Err(format!("invalid port {port:?} after host"));
        }
    }
    unescape(host, Mode::Host).map(|_| ())
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Host,
    Other,
}

/// Go's `unescape`: `%XX` escapes decoded; in a host, only the characters it may hold.
fn unescape(text: &str, mode: Mode) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = |b: u8| (b as char).to_digit(16);
                let (Some(hi), Some(lo)) = (
                    bytes.get(i + 1).and_then(|&b| hex(b)),
                    bytes.get(i + 2).and_then(|&b| hex(b)),
                ) else {
                    let end = (i + 3).min(bytes.len());
                    return Err(format!(
                        "invalid URL escape {:?}",
                        String::from_utf8_lossy(&bytes[i..end])
                    ));
                };
                if mode == Mode::Host && hi < 8 && &bytes[i..i + 3] != b"%25" {
                    return Err(format!(
                        "invalid URL escape {:?}",
                        String::from_utf8_lossy(&bytes[i..i + 3])
                    ));
                }
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            c => {
                if mode == Mode::Host && c < 0x80 && !host_char(c) {
                    return Err(format!(
                        "invalid character {:?} in host name",
                        (c as char).to_string()
                    ));
                }
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Go's `shouldEscape(c, encodeHost)` is false for these.
fn host_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!$&'()*+,;=:[]<>\"-_.~".contains(&c)
}
