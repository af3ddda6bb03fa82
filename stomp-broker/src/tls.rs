//! TLS for the mio driver: a [`rustls::ServerConnection`] between the
//! socket and the STOMP bytes, following rustls's `tlsserver-mio` example
//! (`read_tls` / `process_new_packets` / `reader`, `writer` / `write_tls`,
//! `wants_write`).
//!
//! The driver calls [`read`] and [`write`] instead of the socket's own, and
//! asks [`flush`] whether TLS records are still owed (then it keeps WRITABLE
//! interest even with an empty write buffer).

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::ServerConnection;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Reads the PEM certificate chain and private key and makes the server
/// configuration (TLS 1.2 and 1.3, no client certificates).
pub(crate) fn server_config(cert: &Path, key: &Path) -> io::Result<Arc<rustls::ServerConfig>> {
    let bad = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot load the TLS {what} {}: {e}", path.display()),
        )
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad("certificate", cert, &e))?;
    if certs.is_empty() {
        return Err(bad("certificate", cert, &"no CERTIFICATE in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("key", key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| io::Error::other(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| bad("certificate/key pair", cert, &e))?;
    Ok(Arc::new(config))
}

/// Plaintext from the connection: `Ok(0)` at the end (close_notify or the
/// socket closed), `WouldBlock` when the socket has nothing more. A peer
/// that does not speak TLS gets an alert and an `InvalidData` error.
pub(crate) fn read(
    tls: &mut ServerConnection,
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
        match tls.read_tls(sock) {
            Ok(0) => return Ok(0),
            Ok(_) => {}
            Err(e) => return Err(e),
        }
        if let Err(e) = tls.process_new_packets() {
            let _ = flush(tls, sock);
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        // Handshake messages (and alerts) go out as soon as they are made.
        flush(tls, sock)?;
    }
}

/// Writes owed TLS records to the socket until it would block; returns
/// whether some are still owed.
pub(crate) fn flush(tls: &mut ServerConnection, sock: &mut TcpStream) -> io::Result<bool> {
    while tls.wants_write() {
        match tls.write_tls(sock) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// Hands plaintext to TLS and writes what it can; `WouldBlock` when rustls
/// holds as much as it buffers.
pub(crate) fn write(
    tls: &mut ServerConnection,
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
