//! The permission templates of scoped signing keys, expanded per user as nats-server expands
//! them (`auth.go: processUserPermissionsTemplate`): a subject token `{{name()}}`,
//! `{{subject()}}`, `{{account-name()}}`, `{{account-subject()}}`, `{{tag(key)}}` or
//! `{{account-tag(key)}}` is replaced by the user's name or key, its account's name or key,
//! or the values of the user's (account's) `key:value` tags, one subject per value (every
//! combination when several tags appear). An unknown template or a tag the user does not have
//! makes the subject invalid: left out of an allow list, refusing the user in a deny list.
//! An allow list that expands to nothing denies everything instead of allowing everything.

use crate::proto::jwt::{AccountClaims, Permission, Permissions, UserClaims};
use crate::proto::subject;

/// `perms` expanded for `user` of `account`; `None` when a deny list expands to an invalid
/// subject (nats-server: `generated invalid subject`).
pub fn expand(
    perms: &Permissions,
    user: &UserClaims,
    account: &AccountClaims,
) -> Option<Permissions> {
    let side = |p: &Permission| -> Option<Permission> {
        let mut out = Permission {
            allow: expand_list(&p.allow, user, account, false)?,
            deny: expand_list(&p.deny, user, account, true)?,
        };
        if !p.allow.is_empty() && out.allow.is_empty() {
            out.deny.push(">".to_string());
        }
        Some(out)
    };
    Some(Permissions {
        publish: side(&perms.publish)?,
        subscribe: side(&perms.subscribe)?,
        resp: perms.resp,
    })
}

/// Whether `token` is a `{{...}}` template.
fn is_template(token: &str) -> bool {
    token.starts_with("{{") && token.ends_with("}}")
}

fn expand_list(
    list: &[String],
    user: &UserClaims,
    account: &AccountClaims,
    fail_on_bad: bool,
) -> Option<Vec<String>> {
    if !list.iter().any(|s| s.split('.').any(is_template)) {
        return Some(list.to_vec());
    }
    let mut out = Vec::new();
    for entry in list {
        // `None` marks a token a tag's values fill in.
        let mut tokens: Vec<Option<String>> = Vec::new();
        let mut values: Vec<Vec<String>> = Vec::new();
        for token in entry.split('.') {
            if !is_template(token) {
                tokens.push(Some(token.to_string()));
                continue;
            }
            let op = token[2..token.len() - 2].to_ascii_lowercase();
            let tag = |prefix: &str, tags: &[String]| {
                let key = format!("{}:", op[prefix.len()..op.len() - 1].to_ascii_lowercase());
                tags.iter()
                    .filter_map(|t| t.strip_prefix(&key).map(str::to_string))
                    .collect::<Vec<_>>()
            };
            tokens.push(match op.as_str() {
                "name()" => Some(user.name.clone()),
                "subject()" => Some(user.sub.clone()),
                "account-name()" => Some(account.name.clone()),
                "account-subject()" => Some(user.nats.issuer_account.clone()),
                _ if op.starts_with("account-tag(") && op.ends_with(')') => {
                    values.push(tag("account-tag(", &account.nats.tags));
                    None
                }
                _ if op.starts_with("tag(") && op.ends_with(')') => {
                    values.push(tag("tag(", &user.nats.tags));
                    None
                }
                // An unknown template makes the subject invalid on purpose.
                _ => Some(" ".to_string()),
            });
        }
        // A tag without values fills nothing: its token stays empty (an invalid subject).
        values.retain(|v| !v.is_empty());
        for combination in product(&values) {
            let mut fill = combination.into_iter();
            let subject: Vec<String> = tokens
                .iter()
                .map(|t| match t {
                    Some(t) => t.clone(),
                    None => fill.next().unwrap_or_default(),
                })
                .collect();
            let subject = subject.join(".");
            if subject::is_valid_filter(subject.as_bytes()) {
                out.push(subject);
            } else if fail_on_bad {
                return None;
            }
        }
    }
    Some(out)
}

/// Every combination of one value from each list (one empty combination for no lists).
fn product(lists: &[Vec<String>]) -> Vec<Vec<String>> {
    lists.iter().fold(vec![Vec::new()], |acc, list| {
        acc.iter()
            .flat_map(|prefix| {
                list.iter().map(move |v| {
                    let mut next = prefix.clone();
                    next.push(v.clone());
                    next
                })
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::jwt::{Account, Claims, User};

    fn user(name: &str, tags: &[&str]) -> UserClaims {
        Claims {
            name: name.into(),
            sub: "UKEY".into(),
            nats: User {
                tags: tags.iter().map(|t| t.to_string()).collect(),
                ..User::default()
            },
            ..Claims::default()
        }
    }

    fn allow(list: &[&str]) -> Permissions {
        let mut p = Permissions::default();
        p.publish.allow = list.iter().map(|s| s.to_string()).collect();
        p
    }

    #[test]
    fn expands_names_keys_and_tags() {
        let account: AccountClaims = Claims {
            name: "Acme".into(),
            nats: Account {
                tags: vec!["region:eu".into()],
                ..Account::default()
            },
            ..Claims::default()
        };
        let alice = user("alice", &["dept:a", "dept:b", "x:1"]);
        let perms = allow(&[
            "u.{{name()}}.>",
            "k.{{subject()}}",
            "acc.{{account-name()}}",
            "d.{{tag(dept)}}.{{account-tag(region)}}",
            "plain",
        ]);
        let out = expand(&perms, &alice, &account).unwrap();
        assert_eq!(
            out.publish.allow,
            [
                "u.alice.>",
                "k.UKEY",
                "acc.Acme",
                "d.a.eu",
                "d.b.eu",
                "plain"
            ]
        );
        // Nothing of an allow list survives: everything is denied.
        let out = expand(
            &allow(&["d.{{tag(nope)}}", "x.{{bogus()}}"]),
            &alice,
            &account,
        )
        .unwrap();
        assert!(out.publish.allow.is_empty());
        assert_eq!(out.publish.deny, [">"]);
        // A deny list that cannot be expanded refuses the user.
        let mut deny = Permissions::default();
        deny.subscribe.deny = vec!["s.{{tag(level)}}".into()];
        assert!(expand(&deny, &alice, &account).is_none());
        // Lists without templates are kept as they are.
        let same = allow(&["a", "b.*"]);
        assert_eq!(expand(&same, &alice, &account).unwrap(), same);
    }
}
