//! What the server knows of its leafnodes beyond the connections themselves: the leafnode
//! port's address, the live leafnode connections, and the INFO it sends on that port.

use std::net::SocketAddr;
use std::sync::OnceLock;

use super::Shared;
use crate::engine::leaf::Leafs;
use crate::proto::leaf::LeafInfo;

/// The leafnode side of the shared state.
#[derive(Debug, Default)]
pub struct LeafState {
    /// The bound leafnode listen address.
    addr: OnceLock<SocketAddr>,
    /// Every live leafnode connection, accepted or dialed.
    pub leafs: Leafs,
}

impl Shared {
    /// The bound leafnode address, once the leafnode port listens.
    pub fn leaf_addr(&self) -> Option<SocketAddr> {
        self.leafnode.addr.get().copied()
    }

    /// Records the bound leafnode address.
    pub fn set_leaf_addr(&self, addr: SocketAddr) {
        let _ = self.leafnode.addr.set(addr);
    }

    /// The name of the cluster this server's leafnode connections come from: the cluster's
    /// name, or the server's outside a cluster (as nats-server says it in CONNECT and INFO).
    pub fn leaf_cluster_name(&self) -> String {
        self.opts()
            .cluster
            .as_ref()
            .and_then(|c| c.name.clone())
            .unwrap_or_else(|| self.server_name.clone())
    }

    /// The INFO sent to a leafnode that connects (`cid`, `nonce` its own). A 2.15 spoke needs
    /// a client id and the `leafnode_urls` array.
    pub fn leaf_info(&self, cid: u64, nonce: Option<String>) -> LeafInfo {
        let opts = self.opts();
        let leaf = opts.leafnodes.clone().unwrap_or_default();
        let port = self.leaf_addr().map_or(leaf.port, |a| a.port());
        let url = match &leaf.advertise {
            Some(advertise) => advertise.clone(),
            None => {
                let host = match leaf.host.as_str() {
                    "0.0.0.0" | "::" | "" => self.addr.ip().to_string(),
                    host => host.to_string(),
                };
                format!("{host}:{port}")
            }
        };
        let auth_required = leaf.username.is_some()
            || leaf.nkey.is_some()
            || !leaf.users.is_empty()
            || opts.auth_required();
        LeafInfo {
            server_id: self.server_id.clone(),
            server_name: self.server_name.clone(),
            version: crate::proto::protocol::NATS_SERVER_VERSION.to_string(),
            // 3: understands message tracing (nats-server then sends trace-only messages on).
            proto: 3,
            go: "tern".into(),
            host: leaf.host.clone(),
            port,
            headers: true,
            auth_required,
            tls_required: false,
            max_payload: opts.max_payload,
            client_id: cid,
            nonce: auth_required.then_some(nonce).flatten(),
            cluster: self.leaf_cluster_name(),
            compression: "off".into(),
            connect_info: false,
            remote_account: String::new(),
            leafnode_urls: match leaf.no_advertise {
                true => Vec::new(),
                false => vec![url],
            },
            ldm: false,
        }
    }
}
