//! Start-up glue of the security features: the authenticator a
//! configuration names, and the warning for an open broker.

use std::io;
use std::net::SocketAddr;

use crate::auth::{AllowAll, Authenticator, UsersFile};
use crate::config::Config;

/// The authenticator `config` asks for: the users file of
/// [`Config::users`], or [`AllowAll`] without one.
pub(crate) fn authenticator(config: &Config) -> io::Result<Box<dyn Authenticator>> {
    match &config.users {
        Some(path) => {
            let users = UsersFile::load(path)?;
            if users.is_empty() {
                tracing::warn!(
                    "users file {} has no users: nobody can log in",
                    path.display()
                );
            }
            Ok(Box::new(users))
        }
        None => Ok(Box::new(AllowAll)),
    }
}

/// Warns when anyone may log in and a listener is reachable beyond loopback.
pub(crate) fn warn_if_open(config: &Config, addrs: &[SocketAddr], auth: &dyn Authenticator) {
    let _ = config;
    if !auth.allows_anyone() {
        return;
    }
    for a in addrs.iter().filter(|a| !a.ip().is_loopback()) {
        tracing::warn!(
            "listening on {a} beyond loopback with no authentication: anyone who reaches it may \
             send and receive; give --users FILE (see `stomp-broker passwd`)"
        );
    }
}
