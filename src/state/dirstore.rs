//! The full resolver's directory as nats-server's `DirJWTStore` keeps it: one `<account>.jwt`
//! file per account, at most `limit` of them, and a digest of the whole set (the XOR of each
//! file's SHA-256) that two servers compare to see whether their directories differ. When
//! they do, one sends the other its JWTs as a *pack*: `<account>|<jwt>` lines, which the other
//! merges, keeping for each account the JWT issued last.

use std::path::Path;

use crate::config::operator;
use crate::proto::jwt;

/// The digest of a directory: the XOR of the SHA-256 of every JWT file (all zero when empty).
pub type Digest = [u8; 32];

/// The refusal of a new JWT once `limit` files are kept (nats-server's text).
pub const FULL: &str = "jwt store is full";

/// The digest of the JWT files in `dir`.
pub fn digest(dir: &Path) -> Digest {
    let mut sum = [0u8; 32];
    for (_, token) in operator::stored_jwts(dir) {
        let one = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        for (s, b) in sum.iter_mut().zip(one.as_ref()) {
            *s ^= b;
        }
    }
    sum
}

/// `digest` in lower-case hex, as nats-server logs it.
pub fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The pack of `dir`: one `<account>|<jwt>` line per JWT file, leaving out JWTs that have
/// expired (nats-server sends one line per message).
pub fn pack(dir: &Path, now: i64) -> Vec<String> {
    operator::stored_jwts(dir)
        .into_iter()
        .filter(|(_, token)| {
            jwt::decode::<serde_json::Value>(token, jwt::Kind::Other)
                .map_or(true, |claims| !claims.expired(now))
        })
        .map(|(key, token)| format!("{key}|{token}"))
        .collect()
}

/// Whether a new file for `key` may be written in `dir`: an account already there may always
/// be replaced; a new one only while fewer than `limit` (0: no limit) are kept.
pub fn has_room(dir: &Path, key: &str, limit: i64) -> Result<(), String> {
    if limit <= 0 || super::resolver::file(dir, key).exists() {
        return Ok(());
    }
    let kept = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".jwt"))
                .count()
        })
        .unwrap_or(0);
    match (kept as i64) < limit {
        true => Ok(()),
        false => Err(FULL.into()),
    }
}

/// The lines of a pack message as (account, JWT); nats-server's error for a line that is not
/// `<account>|<jwt>` (blank lines are passed over).
pub fn parse_pack(message: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for line in message.split('\n').filter(|l| !l.is_empty()) {
        let parts: Vec<&str> = line.split('|').collect();
        let [key, token] = parts[..] else {
            return Err(format!(
                "line in package didn't contain 2 entries: {line:?}"
            ));
        };
        out.push((key.to_string(), token.to_string()));
    }
    Ok(out)
}

/// Whether `token` should replace `stored` for the same account in a merge: not when both
/// are JWTs and `stored` is the same one (same `jti`) or was issued later.
pub fn is_newer(token: &str, stored: Option<&str>) -> bool {
    let Some(stored) = stored else {
        return true;
    };
    let decode = |t: &str| jwt::decode::<serde_json::Value>(t.trim(), jwt::Kind::Other).ok();
    match (decode(token), decode(stored)) {
        (Some(new), Some(old)) => old.jti != new.jti && old.iat <= new.iat,
        _ => stored.trim() != token.trim(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_parse_as_nats_server_splits_them() {
        assert_eq!(
            parse_pack("A1|x.y.z\n\nA2|u.v.w").unwrap(),
            [
                ("A1".to_string(), "x.y.z".to_string()),
                ("A2".into(), "u.v.w".into())
            ]
        );
        assert_eq!(
            parse_pack("A1|x|y").unwrap_err(),
            "line in package didn't contain 2 entries: \"A1|x|y\""
        );
        assert!(parse_pack("").unwrap().is_empty());
    }

    #[test]
    fn the_digest_does_not_depend_on_order_and_empties_to_zero() {
        let dir = std::env::temp_dir().join(format!("tern-dirstore-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(digest(&dir), [0; 32]);
        std::fs::write(dir.join("A1.jwt"), "one").unwrap();
        let one = digest(&dir);
        std::fs::write(dir.join("A2.jwt"), "two").unwrap();
        assert_ne!(digest(&dir), one);
        std::fs::remove_file(dir.join("A2.jwt")).unwrap();
        assert_eq!(digest(&dir), one);
        assert_eq!(has_room(&dir, "A2", 1), Err(FULL.to_string()));
        assert_eq!(has_room(&dir, "A1", 1), Ok(()));
        assert_eq!(has_room(&dir, "A2", 0), Ok(()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
