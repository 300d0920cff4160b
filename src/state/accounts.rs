//! Puts the configured accounts in force: makes them, sets their mappings, marks the system
//! account, and installs every import as internal subscriptions (replacing what a previous
//! configuration installed).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tracing::debug;

use crate::config::accounts::{Flow, Import};
use crate::config::Options;
use crate::engine::account::{
    Account, ResponseType, DEFAULT_RESPONSE_THRESHOLD, GLOBAL_ACCOUNT, SYSTEM_ACCOUNT,
};
use crate::engine::import::{ServiceImport, StreamImport};
use crate::engine::mapping::Transform;
use crate::engine::router::Router;
use crate::engine::subscription::{Internal, Subscription};
use crate::state::events::{Service, SysChannel};

/// The service imports nats-server gives every account from the system account: the subject
/// in the importing account, the service it reaches for that account, and `share`.
pub const SYSTEM_IMPORTS: [(&str, Service, bool); 4] = [
    (
        "$SYS.REQ.ACCOUNT.PING.CONNZ",
        Service::Imported("CONNZ"),
        false,
    ),
    (
        "$SYS.REQ.SERVER.PING.CONNZ",
        Service::Imported("CONNZ"),
        false,
    ),
    (
        "$SYS.REQ.ACCOUNT.PING.STATZ",
        Service::Imported("STATZ"),
        false,
    ),
    ("$SYS.REQ.USER.INFO", Service::UserInfo, true),
];

/// The name of the system account `opts` asks for, if any.
pub fn system_account_name(opts: &Options) -> Option<&str> {
    if opts.no_system_account {
        return None;
    }
    Some(opts.system_account.as_deref().unwrap_or(SYSTEM_ACCOUNT))
}

/// What nats-server finds wrong only when it starts (not with `-t`): a `no_auth_user` that
/// names no user, a `system_account` that names no account, and the cluster's checks
/// (`config::cluster::check_at_start`).
pub fn check(opts: &Options) -> Result<(), String> {
    if let Some(cluster) = &opts.cluster {
        crate::config::cluster::check_at_start(cluster)?;
    }
    crate::config::websocket::check_at_start(opts)?;
    crate::config::leafnode::check_at_start(opts)?;
    if let Some(user) = opts.no_auth_user.as_deref() {
        let known = opts
            .users
            .iter()
            .any(|u| u.name == user || u.nkey.as_deref() == Some(user));
        if !known {
            return Err(format!(
                "no_auth_user: {user:?} not present as user or nkey in authorization block or \
                 account configuration"
            ));
        }
    }
    if let Some(name) = opts.system_account.as_deref() {
        // A resolver that fetches accounts gives the system account when the server starts
        // (`resolver::prepare`).
        let fetched = opts.operator.resolver.as_ref().is_some_and(|r| r.fetches());
        let configured =
            name == SYSTEM_ACCOUNT || fetched || opts.accounts.iter().any(|a| a.name == name);
        if !configured && !opts.no_system_account {
            return Err("error resolving system account: account missing".into());
        }
    }
    Ok(())
}

/// Makes `router`'s accounts what `opts` configures. Accounts no longer configured are
/// removed (their connections are the caller's to close). The error is nats-server's.
pub fn install(router: &Router, opts: &Options, sys: &SysChannel) -> Result<(), String> {
    check(opts)?;
    let system = system_account_name(opts);
    let mut wanted: Vec<&str> = opts.accounts.iter().map(|a| a.name.as_str()).collect();
    wanted.push(GLOBAL_ACCOUNT);
    if let Some(system) = system {
        if router.account(system).is_none() && opts.system_account.is_none() {
            debug!("Created system account: {system:?}");
        }
        if !wanted.contains(&system) {
            wanted.push(system);
        }
    }
    for old in router.accounts() {
        old.clear_imports();
        if !wanted.contains(&&*old.name) {
            router.remove_account(&old.name);
        }
    }
    for name in &wanted {
        let account = router.account_or_new(name);
        account
            .is_system
            .store(Some(*name) == system, Ordering::Relaxed);
    }
    // A JetStream domain maps `$JS.<domain>.API.>` to `$JS.API.>` in every account.
    let domain = opts.jetstream.as_ref().and_then(|js| js.domain_mapping());
    let with_domain = |mappings: &[crate::config::accounts::MappingConfig]| {
        mappings
            .iter()
            .chain(domain.as_ref())
            .map(|m| m.build())
            .collect()
    };
    router.global().set_mappings(with_domain(&opts.mappings));
    for name in &wanted {
        let config = opts.accounts.iter().find(|a| a.name == *name);
        let trace = config.and_then(|a| a.msg_trace.clone());
        router.account_or_new(name).set_msg_trace(trace);
    }
    for config in &opts.accounts {
        let account = router.account_or_new(&config.name);
        account.set_mappings(with_domain(&config.mappings));
    }
    for config in &opts.accounts {
        let importer = router.account_or_new(&config.name);
        for import in &config.imports {
            let Some(exporter) = router.account(&import.account) else {
                continue;
            };
            install_import(opts, &importer, &exporter, import);
        }
    }
    if let Some(system) = system {
        for name in &wanted {
            let account = router.account_or_new(name);
            for (subject, service, _) in SYSTEM_IMPORTS {
                // The system account imports only `USER.INFO`, from itself.
                if *name != system || service == Service::UserInfo {
                    let sub = Arc::new(sys.subscription(service, name, subject));
                    account.add_import_sub(&account, sub);
                }
            }
        }
    }
    Ok(())
}

/// One import as an internal subscription: in the exporter for a stream, in the importer for a
/// service.
fn install_import(
    opts: &Options,
    importer: &Arc<Account>,
    exporter: &Arc<Account>,
    import: &Import,
) {
    match import.flow {
        Flow::Stream => {
            let target: Arc<dyn Internal> = Arc::new(StreamImport {
                importer: Arc::downgrade(importer),
                prefix: import.prefix.clone(),
                to: import
                    .to
                    .as_ref()
                    .and_then(|to| Transform::import(&import.subject, to).ok()),
            });
            let sub = Arc::new(Subscription::internal(target, &import.subject, None));
            importer.add_import_sub(exporter, sub);
        }
        Flow::Service => {
            let export = opts
                .accounts
                .iter()
                .find(|a| a.name == import.account)
                .and_then(|a| {
                    a.exports.iter().find(|e| {
                        e.flow == Flow::Service
                            && crate::proto::subject::is_subset(
                                import.subject.as_bytes(),
                                e.subject.as_bytes(),
                            )
                    })
                });
            let local = import.to.clone().unwrap_or_else(|| import.subject.clone());
            let target: Arc<dyn Internal> = Arc::new(ServiceImport {
                importer: Arc::downgrade(importer),
                exporter: exporter.clone(),
                to: import
                    .to
                    .as_ref()
                    .and_then(|to| Transform::import(to, &import.subject).ok()),
                response: export.map_or(ResponseType::Singleton, |e| e.response_type),
                threshold: export.map_or(DEFAULT_RESPONSE_THRESHOLD, |e| e.response_threshold),
            });
            let sub = Arc::new(Subscription::internal(target, &local, None));
            importer.add_import_sub(importer, sub);
        }
    }
}
