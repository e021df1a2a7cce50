//! `[admin]`: the admin listener, refused open off loopback.

use std::net::SocketAddr;

use serde::Deserialize;

use super::{AdminConfig, Flags};

#[derive(Debug, Deserialize)]
#[serde(default)]
pub(super) struct RawAdmin {
    listen: Option<String>,
    token: Option<String>,
    max_upload_size: usize,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self { listen: None, token: None, max_upload_size: 16 * 1024 * 1024 }
    }
}

/// The admin listener settings; refuses an open admin API off loopback.
pub(super) fn validate(raw: RawAdmin, flags: &Flags, location: &str, errors: &mut Vec<String>) -> Option<AdminConfig> {
    let listen = flags.admin_listen.clone().or(raw.listen)?;
    let token = flags.admin_token.clone().or(raw.token).filter(|t| !t.is_empty());
    let Ok(addr) = listen.parse::<SocketAddr>() else {
        errors.push(format!("{location}: `admin.listen`: {listen:?} is not HOST:PORT (e.g. 127.0.0.1:9090)"));
        return None;
    };
    if token.is_none() && !addr.ip().is_loopback() {
        errors.push(format!(
            "{location}: `admin.listen`: {addr} is not a loopback address, so an admin token is required \
             (--admin-token, PROTOGATE_ADMIN_TOKEN or `admin.token`)"
        ));
    }
    if raw.max_upload_size == 0 {
        errors.push(format!("{location}: `admin.max_upload_size` must be at least 1"));
    }
    Some(AdminConfig { listen: addr, token, max_upload_size: raw.max_upload_size })
}
