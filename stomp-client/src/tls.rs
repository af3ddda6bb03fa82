//! TLS under the mio driver: a [`rustls::ClientConnection`] between the
//! socket and the STOMP bytes (`read_tls` / `process_new_packets` /
//! `reader`, `writer` / `write_tls`, `wants_write`).

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::ClientConnection;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::options::TlsOptions;

/// The system's trusted CAs (`SSL_CERT_FILE` and `SSL_CERT_DIR` when set,
/// else the platform's store), read once; the Mozilla roots compiled in
/// when the system has none.
fn system_roots() -> &'static rustls::RootCertStore {
    static ROOTS: std::sync::OnceLock<rustls::RootCertStore> = std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        // Unreadable entries are skipped: what loads is what is trusted.
        let found = rustls_native_certs::load_native_certs();
        let mut roots = rustls::RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        roots
    })
}

/// The client configuration: the CAs of `opts.ca`, or the system's.
pub(crate) fn client_config(opts: &TlsOptions) -> io::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    match &opts.ca {
        Some(path) => {
            let bad = |e: &dyn std::fmt::Display| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("cannot load the CA file {}: {e}", path.display()),
                )
            };
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))? {
                roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            }
            if roots.is_empty() {
                return Err(bad(&"no CERTIFICATE in the file"));
            }
        }
        None => roots = system_roots().clone(),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| io::Error::other(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A TLS session for `host` (a DNS name or an IP address).
pub(crate) fn connect(
    config: &Arc<rustls::ClientConfig>,
    host: &str,
) -> io::Result<ClientConnection> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(host.to_owned()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{host:?} is not a valid TLS server name: {e}"),
        )
    })?;
    ClientConnection::new(Arc::clone(config), name).map_err(io::Error::other)
}

/// A TLS session to `host` (a DNS name or an IP address) that trusts the
/// CAs in the PEM file `ca`, or else the system's, as [`Client`](crate::Client)
/// does: for programs that drive their own sockets (the `stomp bench` load
/// generator does) and want the client's trust rules. Feed it with
/// [`rustls`]'s `read_tls` / `process_new_packets` / `write_tls`; word its
/// failures with [`tls_error_text`].
pub fn tls_session(host: &str, ca: Option<&Path>) -> io::Result<ClientConnection> {
    let opts = TlsOptions {
        ca: ca.map(Path::to_path_buf),
    };
    connect(&client_config(&opts)?, host)
}

/// Plaintext from the connection: `Ok(0)` at the end, `WouldBlock` when
/// the socket has nothing more; a TLS failure (a certificate that does not
/// check out, say) is an `InvalidData` error that says why.
pub(crate) fn read(
    tls: &mut ClientConnection,
    sock: &mut TcpStream,
    buf: &mut [u8],
) -> io::Result<usize> {
    loop {
        match tls.reader().read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
            Err(e) => return Err(e),
        }
        if tls.read_tls(sock)? == 0 {
            return Ok(0);
        }
        if let Err(e) = tls.process_new_packets() {
            let _ = flush(tls, sock);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("TLS: {}", tls_error_text(&e)),
            ));
        }
        flush(tls, sock)?;
    }
}

/// Writes owed TLS records until the socket would block.
pub(crate) fn flush(tls: &mut ClientConnection, sock: &mut TcpStream) -> io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(sock) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Hands plaintext to TLS and writes what it can; `WouldBlock` when rustls
/// holds as much as it buffers.
pub(crate) fn write(
    tls: &mut ClientConnection,
    sock: &mut TcpStream,
    buf: &[u8],
) -> io::Result<usize> {
    let n = tls.writer().write(buf)?;
    flush(tls, sock)?;
    if n == 0 && !buf.is_empty() {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    Ok(n)
}

/// A TLS failure in words a user can act on (rustls's own text names enum
/// variants: "invalid peer certificate: UnknownIssuer").
pub fn tls_error_text(e: &rustls::Error) -> String {
    use rustls::{CertificateError as C, Error as E, InvalidMessage as M};
    match e {
        E::InvalidMessage(M::InvalidContentType) => {
            "the server did not answer in TLS (a plain STOMP port? use stomp:// for it)".into()
        }
        E::InvalidCertificate(c) => match c {
            C::UnknownIssuer => "the broker's certificate is not signed by a trusted CA".into(),
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "the broker's certificate is not valid for the host name connected to".into()
            }
            C::Expired | C::ExpiredContext { .. } => "the broker's certificate has expired".into(),
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "the broker's certificate is not valid yet (check the clocks)".into()
            }
            C::BadSignature => "the broker's certificate is not signed by a trusted CA \
                                (a trusted CA has its issuer's name, but did not sign it)"
                .into(),
            C::BadEncoding => "the broker's certificate is malformed".into(),
            C::Revoked => "the broker's certificate is revoked".into(),
            C::Other(o) if o.to_string().contains("CaUsedAsEndEntity") => {
                "the broker's certificate is a CA certificate (CA:TRUE), which TLS \
                 refuses as a server's own: give the broker a certificate signed by that CA"
                    .into()
            }
            other => format!("the broker's certificate is refused: {other}"),
        },
        E::AlertReceived(alert) => format!("the broker ended the handshake ({alert:?})"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::tls_error_text as describe;

    #[test]
    fn tls_failures_are_worded_for_users() {
        let plain = rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
        assert!(describe(&plain).contains("plain STOMP port"));
        let issuer = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        assert!(describe(&issuer).contains("not signed by a trusted CA"));
        let expired = rustls::Error::InvalidCertificate(rustls::CertificateError::Expired);
        assert_eq!(describe(&expired), "the broker's certificate has expired");
    }
}
