//! Authorization: per-user publish/subscribe permissions, queue permissions, `allow_responses`,
//! delivery filtering and permission changes on reload. Every expected byte sequence below was
//! observed from nats-server 2.15.1 with the same configuration and raw sockets.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{jump, Raw, TestServer};
use tern::Options;

/// The users of the configuration the expectations were observed with.
const CONF: &str = r#"
authorization {
  users = [
    {user: a, password: a, permissions: {
      publish: {allow: ["foo.*", "_INBOX.>"], deny: ["foo.bad"]},
      subscribe: {allow: ["foo.>", "bar.*", "q.> grp", "qq.*"], deny: ["foo.secret", "qq.x g1"]}}}
    {user: b, password: b}
    {user: r, password: r, permissions: {subscribe: "req.>", allow_responses: {max: 2, expires: "1s"}}}
    {user: s, password: s, permissions: {publish: "x", subscribe: ">"}}
    {user: t, password: t, permissions: {allow_responses: true}}
  ]
}
"#;

fn options(text: &str) -> Options {
    let file = tern::config::conf::parse_str(text, Path::new("test.conf")).expect("conf");
    let mut opts = Options::default();
    opts.apply_file(&file, &mut Vec::new()).expect("options");
    opts
}

async fn login(server: &TestServer, user: &str) -> Raw {
    let mut raw = server.raw().await;
    raw.send(format!(
        "CONNECT {{\"verbose\":false,\"user\":\"{user}\",\"pass\":\"{user}\"}}\r\n"
    ))
    .await;
    raw.expect_before_pong("").await;
    raw
}

#[tokio::test]
async fn subscribe_permissions_errors_and_queue_forms() {
    let server = TestServer::with(options(CONF)).await;
    // The system account's service imports are subscriptions too; count the clients' only.
    let internal = server.shared.router.subscription_count();
    let mut a = login(&server, "a").await;
    a.send(
        "SUB > 1\r\nSUB foo.* 2\r\nSUB foo.secret 3\r\nSUB bar.x 4\r\nSUB q.a 5\r\nSUB q.a grp 6\r\n\
         SUB q.a other 7\r\nSUB qq.x 8\r\nSUB qq.x g1 9\r\nSUB qq.x g2 10\r\nSUB foo.> 11\r\n",
    )
    .await;
    a.expect_before_pong(
        "-ERR 'Permissions Violation for Subscription to \">\"'\r\n\
         -ERR 'Permissions Violation for Subscription to \"foo.secret\"'\r\n\
         -ERR 'Permissions Violation for Subscription to \"q.a\"'\r\n\
         -ERR 'Permissions Violation for Subscription to \"q.a\" using queue \"other\"'\r\n\
         -ERR 'Permissions Violation for Subscription to \"qq.x\" using queue \"g1\"'\r\n",
    )
    .await;
    // The connection stays open and the allowed subscriptions work; the denied subject never
    // reaches the wildcard subscriptions that cover it.
    let mut b = login(&server, "b").await;
    b.send("PUB foo.secret 1\r\nx\r\nPUB foo.ok 1\r\ny\r\n")
        .await;
    b.expect_before_pong("").await;
    let mut got = a.read_msgs(2).await;
    got.sort();
    assert_eq!(got, ["MSG foo.ok 11 1\r\ny\r\n", "MSG foo.ok 2 1\r\ny\r\n"]);
    a.expect_before_pong("").await;
    assert_eq!(server.shared.router.subscription_count() - internal, 6);
}

#[tokio::test]
async fn publish_permissions_keep_the_connection_open() {
    let server = TestServer::with(options(CONF)).await;
    let mut a = login(&server, "a").await;
    a.send("SUB foo.> 11\r\nSUB foo.* 2\r\n").await;
    a.expect_before_pong("").await;
    // Twice each, so that the second decision comes from the connection's cache.
    for _ in 0..2 {
        a.send("PUB foo.bad 1\r\nx\r\nPUB bar.x 1\r\nx\r\nPUB foo.ok 1\r\nx\r\nPUB foo.ok.x 1\r\nx\r\n")
            .await;
        a.expect_before_pong(
            "-ERR 'Permissions Violation for Publish to \"foo.bad\"'\r\n\
             -ERR 'Permissions Violation for Publish to \"bar.x\"'\r\n\
             MSG foo.ok 11 1\r\nx\r\nMSG foo.ok 2 1\r\nx\r\n\
             -ERR 'Permissions Violation for Publish to \"foo.ok.x\"'\r\n",
        )
        .await;
    }
    // No +OK for a refused PUB or SUB in verbose mode, as nats-server.
    let mut s = server.raw().await;
    s.send("CONNECT {\"verbose\":true,\"user\":\"s\",\"pass\":\"s\"}\r\nPUB y 0\r\n\r\nSUB > 1\r\nPUB x 0\r\n\r\n")
        .await;
    s.expect_before_pong(
        "+OK\r\n-ERR 'Permissions Violation for Publish to \"y\"'\r\n+OK\r\n+OK\r\nMSG x 1 0\r\n\r\n",
    )
    .await;
}

/// Replies nats-server keeps for itself (`_R_.`, `$JS.ACK.`, `_GR_.`) are refused for every
/// client, with or without permissions and auth: the message is dropped (no +OK in verbose
/// mode) and the connection stays open. The subject's check comes first. Observed from
/// nats-server 2.15.1 with raw sockets.
#[tokio::test]
async fn reserved_reply_subjects_are_refused() {
    let open = TestServer::start().await;
    let mut c = open.raw().await;
    c.send("CONNECT {\"verbose\":true,\"headers\":true}\r\nSUB > 1\r\n")
        .await;
    c.expect_before_pong("+OK\r\n+OK\r\n").await;
    c.send(
        "PUB foo _R_.x 2\r\nhi\r\nPUB foo _R_. 2\r\nhi\r\nPUB foo $JS.ACK.x@Y 2\r\nhi\r\n\
         PUB foo _GR_.x 2\r\nhi\r\nHPUB foo _R_.z 12 14\r\nNATS/1.0\r\n\r\nhi\r\n\
         PUB foo $JS.ACK. 2\r\nhi\r\nPUB foo _GR_. 2\r\nhi\r\nPUB foo _r_.x 2\r\nhi\r\n",
    )
    .await;
    c.expect_before_pong(
        "-ERR 'Permissions Violation for Publish with Reply of \"_R_.x\"'\r\n\
         -ERR 'Permissions Violation for Publish with Reply of \"_R_.\"'\r\n\
         -ERR 'Permissions Violation for Publish with Reply of \"$JS.ACK.x@Y\"'\r\n\
         -ERR 'Permissions Violation for Publish with Reply of \"_GR_.x\"'\r\n\
         -ERR 'Permissions Violation for Publish with Reply of \"_R_.z\"'\r\n\
         +OK\r\nMSG foo 1 $JS.ACK. 2\r\nhi\r\n+OK\r\nMSG foo 1 _GR_. 2\r\nhi\r\n\
         +OK\r\nMSG foo 1 _r_.x 2\r\nhi\r\n",
    )
    .await;

    let server = TestServer::with(options(CONF)).await;
    let mut s = login(&server, "s").await;
    s.send("PUB y _R_.x 0\r\n\r\nPUB x _R_.x 0\r\n\r\n").await;
    s.expect_before_pong(
        "-ERR 'Permissions Violation for Publish to \"y\"'\r\n\
         -ERR 'Permissions Violation for Publish with Reply of \"_R_.x\"'\r\n",
    )
    .await;
}

#[tokio::test]
async fn allow_responses_with_max_and_expiry() {
    let server = TestServer::with(options(CONF)).await;
    let mut r = login(&server, "r").await;
    r.send("SUB req.> 1\r\n").await;
    r.expect_before_pong("").await;
    let mut b = login(&server, "b").await;
    b.send("SUB _INBOX.1 1\r\nPUB req.1 _INBOX.1 1\r\nq\r\n")
        .await;
    b.expect_before_pong("").await;
    assert_eq!(r.read_msgs(1).await, ["MSG req.1 1 _INBOX.1 1\r\nq\r\n"]);
    r.send(
        "PUB _INBOX.1 1\r\n1\r\nPUB _INBOX.1 1\r\n2\r\nPUB _INBOX.1 1\r\n3\r\n\
         PUB _INBOX.2 1\r\n3\r\nPUB other 1\r\n3\r\n",
    )
    .await;
    r.expect_before_pong(
        "-ERR 'Permissions Violation for Publish to \"_INBOX.1\"'\r\n\
         -ERR 'Permissions Violation for Publish to \"_INBOX.2\"'\r\n\
         -ERR 'Permissions Violation for Publish to \"other\"'\r\n",
    )
    .await;
    assert_eq!(
        b.read_msgs(2).await,
        ["MSG _INBOX.1 1 1\r\n1\r\n", "MSG _INBOX.1 1 1\r\n2\r\n"]
    );
    // A new request opens the reply again; it expires after `expires`.
    b.send("PUB req.2 _INBOX.1 1\r\nq\r\n").await;
    b.expect_before_pong("").await;
    assert_eq!(r.read_msgs(1).await, ["MSG req.2 1 _INBOX.1 1\r\nq\r\n"]);
    jump(Duration::from_millis(1100)).await;
    r.send("PUB _INBOX.1 1\r\n1\r\n").await;
    r.expect_before_pong("-ERR 'Permissions Violation for Publish to \"_INBOX.1\"'\r\n")
        .await;
}

#[tokio::test]
async fn allow_responses_alone_turns_off_other_publishing() {
    let server = TestServer::with(options(CONF)).await;
    let mut t = login(&server, "t").await;
    t.send("PUB foo 0\r\n\r\nSUB foo 1\r\n").await;
    t.expect_before_pong("-ERR 'Permissions Violation for Publish to \"foo\"'\r\n")
        .await;
}

#[tokio::test]
async fn wildcard_quirk_and_deny_filter() {
    // Observed: allow `foo.*` admits `SUB foo.>` (the permission sublist treats `>` in the SUB
    // as a token), refuses `*.bar`; a pedantic PUB to a wildcard is reported twice.
    let conf = r#"authorization { users = [ {user: a, password: a, permissions: {
        subscribe: {allow: "foo.*", deny: "foo.x"}, publish: {deny: "foo.*"}}} ] }"#;
    let server = TestServer::with(options(conf)).await;
    let mut a = login(&server, "a").await;
    a.send("SUB foo.> 1\r\nSUB *.bar 2\r\nSUB foo.* 3\r\nPUB foo.> 0\r\n\r\nPUB foo 0\r\n\r\nPUB foo.x.y 0\r\n\r\n")
        .await;
    a.expect_before_pong(
        "-ERR 'Permissions Violation for Subscription to \"*.bar\"'\r\n\
         -ERR 'Invalid Publish Subject'\r\n\
         -ERR 'Permissions Violation for Publish to \"foo.>\"'\r\n\
         MSG foo.x.y 1 0\r\n\r\n",
    )
    .await;
}

#[tokio::test]
async fn async_nats_sees_permission_errors_and_keeps_working() {
    let server = TestServer::with(options(CONF)).await;
    let client = async_nats::ConnectOptions::with_user_and_password("a".into(), "a".into())
        .connect(server.url())
        .await
        .expect("connect");
    let mut sub = client.subscribe("foo.>").await.expect("sub");
    client.publish("foo.bad", "x".into()).await.expect("pub");
    client.publish("foo.ok", "y".into()).await.expect("pub");
    client.flush().await.expect("flush");
    let msg = tokio::time::timeout(common::WAIT, futures::StreamExt::next(&mut sub))
        .await
        .expect("message")
        .expect("open");
    assert_eq!(msg.subject.as_str(), "foo.ok");
}

#[tokio::test]
async fn no_auth_user_permissions_apply_without_connect() {
    let conf = r#"authorization { users = [ {user: n, password: n, permissions: {publish: "ok"}} ] }
no_auth_user: n"#;
    let server = TestServer::with(options(conf)).await;
    let mut raw = server.raw().await;
    assert!(raw.info.get("auth_required").is_none());
    raw.send("PUB nope 0\r\n\r\nPUB ok 0\r\n\r\n").await;
    raw.expect_before_pong("-ERR 'Permissions Violation for Publish to \"nope\"'\r\n+OK\r\n")
        .await;
}

#[tokio::test]
async fn reload_removes_subscriptions_that_lose_permission() {
    let before = r#"authorization { users = [ {user: a, password: a, permissions: {subscribe: "foo.>", publish: ">"}} ] }"#;
    let after = r#"authorization { users = [ {user: a, password: a, permissions: {subscribe: "foo.x", publish: "foo.y"}} ] }"#;
    let server = TestServer::with(options(before)).await;
    let internal = server.shared.router.subscription_count();
    let mut a = login(&server, "a").await;
    a.send("SUB foo.x 1\r\nSUB foo.y 2\r\nSUB foo.* q 3\r\n")
        .await;
    a.expect_before_pong("").await;
    let mut reloaded = options(after);
    reloaded.host = "127.0.0.1".into();
    reloaded.port = 0;
    server.shared.reload(reloaded).expect("reload");
    a.expect(
        "-ERR 'Permissions Violation for Subscription to \"foo.y\" (sid \"2\")'\r\n\
         -ERR 'Permissions Violation for Subscription to \"foo.*\" using queue \"q\" (sid \"3\")'\r\n",
    )
    .await;
    a.send("PUB foo.x 1\r\nz\r\nPUB foo.y 1\r\nz\r\n").await;
    a.expect_before_pong("-ERR 'Permissions Violation for Publish to \"foo.x\"'\r\n")
        .await;
    assert_eq!(server.shared.router.subscription_count() - internal, 1);
}
