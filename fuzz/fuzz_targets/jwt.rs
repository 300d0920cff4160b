//! Any text as a JWT of every kind: decoding never panics, and whatever decodes carries the
//! issuer and subject key kinds its claims require (a forged or mangled token is refused).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern::proto::jwt::{self, Kind};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(user) = jwt::decode::<jwt::User>(text, Kind::User) {
        assert!(user.iss.starts_with('A') && user.sub.starts_with('U'));
    }
    if let Ok(account) = jwt::decode::<jwt::Account>(text, Kind::Account) {
        assert!(account.iss.starts_with('O') && account.sub.starts_with('A'));
    }
    let _ = jwt::decode::<jwt::Operator>(text, Kind::Operator);
    let _ = jwt::jwt_in_text(text);
});
