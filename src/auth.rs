//! Who may connect: checking CONNECT's credentials against the configured user, users list,
//! token and `no_auth_user`, as nats-server does. Pure: no I/O, no clock.

use crate::config::Options;

/// The credentials a client presented in CONNECT.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// `user`
    pub user: Option<String>,
    /// `pass`
    pub pass: Option<String>,
    /// `auth_token`
    pub token: Option<String>,
}

impl Credentials {
    fn is_empty(&self) -> bool {
        self.user.is_none() && self.pass.is_none() && self.token.is_none()
    }
}

/// Whether `creds` get in under `opts`. A client with no credentials at all is the
/// `no_auth_user` when one is set; a user name is checked against the users list and the single
/// user; otherwise the token decides.
pub fn authenticate(opts: &Options, creds: &Credentials) -> bool {
    if !opts.auth_required() {
        return true;
    }
    if creds.is_empty() {
        if let Some(name) = &opts.no_auth_user {
            return opts.users.iter().any(|u| &u.name == name);
        }
    }
    if let Some(user) = &creds.user {
        let pass = creds.pass.as_deref().unwrap_or_default();
        if let Some(known) = opts.users.iter().find(|u| constant_time_eq(&u.name, user)) {
            return constant_time_eq(pass, &known.password);
        }
        if opts
            .username
            .as_deref()
            .is_some_and(|u| constant_time_eq(u, user))
        {
            return constant_time_eq(pass, opts.password.as_deref().unwrap_or_default());
        }
    }
    match (&opts.token, &creds.token) {
        (Some(want), Some(got)) => constant_time_eq(got, want),
        _ => false,
    }
}

/// Compares secrets in time that depends only on their lengths.
fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::User;

    fn creds(user: Option<&str>, pass: Option<&str>, token: Option<&str>) -> Credentials {
        Credentials {
            user: user.map(Into::into),
            pass: pass.map(Into::into),
            token: token.map(Into::into),
        }
    }

    #[test]
    fn open_server_lets_everyone_in() {
        assert!(authenticate(&Options::default(), &Credentials::default()));
        assert!(authenticate(
            &Options::default(),
            &creds(Some("x"), Some("y"), None)
        ));
    }

    #[test]
    fn single_user() {
        let opts = Options {
            username: Some("u".into()),
            password: Some("p".into()),
            ..Default::default()
        };
        assert!(authenticate(&opts, &creds(Some("u"), Some("p"), None)));
        assert!(!authenticate(&opts, &creds(Some("u"), Some("bad"), None)));
        assert!(!authenticate(&opts, &creds(Some("x"), Some("p"), None)));
        assert!(!authenticate(&opts, &creds(None, None, Some("p"))));
        assert!(!authenticate(&opts, &Credentials::default()));
    }

    #[test]
    fn token_wins_whatever_else_is_sent() {
        let opts = Options {
            token: Some("tok".into()),
            ..Default::default()
        };
        assert!(authenticate(&opts, &creds(None, None, Some("tok"))));
        assert!(authenticate(
            &opts,
            &creds(Some("u"), Some("p"), Some("tok"))
        ));
        assert!(!authenticate(&opts, &creds(Some("u"), Some("p"), None)));
        assert!(!authenticate(&opts, &creds(None, None, Some("tok2"))));
    }

    #[test]
    fn users_list_and_no_auth_user() {
        let mut opts = Options {
            users: vec![
                User {
                    name: "a".into(),
                    password: "pa".into(),
                },
                User {
                    name: "b".into(),
                    password: "pb".into(),
                },
            ],
            ..Default::default()
        };
        assert!(authenticate(&opts, &creds(Some("a"), Some("pa"), None)));
        assert!(authenticate(&opts, &creds(Some("b"), Some("pb"), None)));
        assert!(!authenticate(&opts, &creds(Some("a"), Some("pb"), None)));
        assert!(!authenticate(&opts, &Credentials::default()));
        opts.no_auth_user = Some("b".into());
        assert!(authenticate(&opts, &Credentials::default()));
        assert!(!authenticate(&opts, &creds(Some("a"), Some("bad"), None)));
    }
}
