//! Where to connect: the URL and flags of [`ConnArgs`](crate::args::ConnArgs) resolved into a
//! [`Target`], turned into [`stomp_client::ConnectOptions`] for `send` and
//! `subscribe`, or into raw connections for `bench`; and errors worded so
//! the user knows what to fix.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use stomp_client::{ConnectOptions, StompUrl};
use stomp_frame::{Command, Decoder, Encoder, Frame, HeartBeat, Item, Limits, Version};

use crate::UsageError;

/// The URL used when neither `--url` nor `STOMP_URL` is given.
pub const DEFAULT_URL: &str = "stomp://127.0.0.1:61613";

/// A resolved connection target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// `login` header.
    pub login: Option<String>,
    /// `passcode` header.
    pub passcode: Option<String>,
    /// The `host` header (virtual host).
    pub vhost: String,
    /// Versions offered in `accept-version`.
    pub versions: Vec<Version>,
    /// Bound on connecting and on receipts.
    pub timeout: Duration,
    /// Speak TLS (`stomp+ssl://` or `--tls-ca`).
    pub tls: bool,
    /// CA file to trust instead of the system's CAs.
    pub tls_ca: Option<std::path::PathBuf>,
    /// Frame limits: `--max-body-size`, and room for headers beside it.
    pub limits: Limits,
}

impl Target {
    /// Resolves the flags: the URL first (`--url`, `STOMP_URL` via clap, or
    /// [`DEFAULT_URL`]), then each separate flag overrides its part.
    pub fn from_args(a: &crate::args::ConnArgs) -> Result<Target, UsageError> {
        let url = a.url.as_deref().unwrap_or(DEFAULT_URL);
        let u = StompUrl::parse(url).map_err(|e| UsageError(format!("--url: {e}")))?;
        let host = a.host.clone().unwrap_or(u.host);
        let port = a.port.unwrap_or(u.port);
        let vhost = a.vhost.clone().or(u.vhost).unwrap_or_else(|| host.clone());
        let versions = match &a.stomp_version {
            None => Version::ALL.to_vec(),
            Some(list) => parse_versions(list)?,
        };
        if !(a.connect_timeout.is_finite() && a.connect_timeout > 0.0) {
            return Err(UsageError(format!(
                "--connect-timeout expects a positive number of seconds, got {}",
                a.connect_timeout
            )));
        }
        Ok(Target {
            host,
            port,
            login: a.login.clone().or(u.user),
            passcode: a.passcode.clone().or(u.password),
            vhost,
            versions,
            timeout: Duration::from_secs_f64(a.connect_timeout),
            tls: u.tls || a.tls_ca.is_some(),
            tls_ca: a.tls_ca.clone(),
            limits: match a.max_body_size {
                None => Limits::DEFAULT,
                Some(body) => Limits {
                    max_body_len: body,
                    max_frame_len: body.saturating_add(
                        Limits::DEFAULT.max_frame_len - Limits::DEFAULT.max_body_len,
                    ),
                    ..Limits::DEFAULT
                },
            },
        })
    }

    /// `host:port` (brackets around an IPv6 host).
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Options for [`stomp_client::Client::connect`].
    pub fn client_options(&self) -> ConnectOptions {
        let mut o = ConnectOptions::new(self.address())
            .host(self.vhost.clone())
            .versions(&self.versions)
            .connect_timeout(self.timeout)
            .receipt_timeout(self.timeout)
            .disconnect_timeout(self.timeout)
            .limits(self.limits);
        if self.login.is_some() || self.passcode.is_some() {
            o = o.login(
                self.login.clone().unwrap_or_default(),
                self.passcode.clone().unwrap_or_default(),
            );
        }
        match &self.tls_ca {
            Some(ca) => o.tls_ca(ca),
            None if self.tls => o.tls(),
            None => o,
        }
    }

    /// The CONNECT frame for a raw connection.
    pub fn connect_frame(&self, heart_beat: HeartBeat) -> Frame {
        Frame::connect(self.vhost.clone(), &self.versions)
            .header("heart-beat", heart_beat.to_string())
            .header_opt("login", self.login.clone())
            .header_opt("passcode", self.passcode.clone())
    }
}

/// Parses `1.2` or `1.1,1.2`.
pub fn parse_versions(list: &str) -> Result<Vec<Version>, UsageError> {
    let mut out = Vec::new();
    for v in list.split(',').map(str::trim) {
        out.push(match v {
            "1.0" => Version::V1_0,
            "1.1" => Version::V1_1,
            "1.2" => Version::V1_2,
            _ => {
                return Err(UsageError(format!(
                    "--stomp-version expects 1.0, 1.1, 1.2 or a comma-separated list, got {v:?}"
                )));
            }
        });
    }
    Ok(out)
}

/// Parses `-H name:value` (the value may contain colons; the name may not be empty).
pub fn parse_header(h: &str) -> Result<(String, String), UsageError> {
    match h.split_once(':') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(UsageError(format!("-H expects name:value, got {h:?}"))),
    }
}

/// Words a client error so that it says what to fix.
pub fn explain(e: &stomp_client::Error) -> String {
    match e {
        stomp_client::Error::Connect { address, reason } => connect_hint(address, reason),
        stomp_client::Error::Broker { message, body, .. } => {
            let body = body.trim();
            let said = if body.is_empty() || body == message {
                format!("the broker said: {message}")
            } else {
                format!("the broker said: {message} ({body})")
            };
            // Ours: "authentication failed"; RabbitMQ: "Access refused for
            // user"; ActiveMQ: "User name [u] or password is invalid."
            let text = format!("{message} {body}").to_lowercase();
            // RabbitMQ: "Bad CONNECT (Virtual host '127.0.0.1' access denied)".
            if text.contains("virtual host") || text.contains("vhost") {
                return format!(
                    "{said}; name the virtual host with --vhost (RabbitMQ's default is /, \
                     in a URL /%2F)"
                );
            }
            if [
                "authentication",
                "access refused",
                "password",
                "credentials",
            ]
            .iter()
            .any(|w| text.contains(w))
            {
                format!("{said}; check --login and --passcode (or user:pass@ in --url)")
            } else {
                said
            }
        }
        stomp_client::Error::BodyTooLarge { size, max } => format!(
            "a body of {size} bytes is over the limit of {max} bytes; raise it with \
             --max-body-size (the broker has a limit of its own)"
        ),
        other => {
            let text = other.to_string();
            if text.contains("body length limit exceeded") {
                format!("{text}; raise --max-body-size to take larger messages")
            } else {
                text
            }
        }
    }
}

/// [`explain`] for a failed connect: a plain connection closed before the
/// broker answered may have reached a TLS port.
pub fn explain_connect(e: &stomp_client::Error, tls: bool) -> String {
    match e {
        stomp_client::Error::ConnectionLost { .. } if !tls => format!(
            "{}; if that port speaks TLS, use a stomp+ssl:// URL",
            explain(e)
        ),
        _ => explain(e),
    }
}

/// "cannot connect to ADDR: REASON; is a broker running? ..." (or, for a
/// CA file or a TLS failure, what to do about that).
pub fn connect_hint(address: &str, reason: &str) -> String {
    if reason.starts_with("cannot load the CA file") {
        return format!("{reason} (--tls-ca expects PEM certificates)");
    }
    if reason.starts_with("TLS: ") {
        let hint = if reason.contains("trusted CA") {
            "; pass the CA that signed it with --tls-ca FILE"
        } else {
            ""
        };
        return format!("cannot connect to {address}: {reason}{hint}");
    }
    let reason = reason
        .split(" (os error")
        .next()
        .unwrap_or(reason)
        .to_lowercase();
    let hint = if reason.contains("refused") {
        "; is a broker running? start one with `stomp broker`"
    } else if reason.contains("lookup") || reason.contains("not known") {
        "; check the host name"
    } else {
        ""
    };
    format!("cannot connect to {address}: {reason}{hint}")
}

/// The bytes of a raw connection: plain TCP, or TLS over it. Blocking;
/// one thread may read while another writes (a `bench` producer does).
#[derive(Debug, Clone)]
pub enum Link {
    /// Plain TCP.
    Plain(Arc<TcpStream>),
    /// TLS: the session is shared by the reading and the writing thread.
    Tls(Arc<TlsLink>),
}

/// A TLS session over a blocking socket (see [`Link`]).
#[derive(Debug)]
pub struct TlsLink {
    sock: TcpStream,
    state: Mutex<TlsState>,
}

#[derive(Debug)]
struct TlsState {
    session: stomp_client::rustls::ClientConnection,
    /// Bytes read from the socket that the session has not taken yet.
    pending: Vec<u8>,
}

impl Link {
    /// Connects (TLS when the target says so, handshake included), within
    /// the target's timeout.
    fn open(target: &Target, addr: &std::net::SocketAddr) -> anyhow::Result<Link> {
        let address = target.address();
        let sock = TcpStream::connect_timeout(addr, target.timeout)
            .map_err(|e| anyhow::anyhow!(connect_hint(&address, &e.to_string())))?;
        sock.set_nodelay(true)?;
        if !target.tls {
            return Ok(Link::Plain(Arc::new(sock)));
        }
        let mut session = stomp_client::tls_session(&target.host, target.tls_ca.as_deref())
            .map_err(|e| anyhow::anyhow!(connect_hint(&address, &e.to_string())))?;
        sock.set_read_timeout(Some(target.timeout))?;
        sock.set_write_timeout(Some(target.timeout))?;
        while session.is_handshaking() {
            if let Err(e) = session.complete_io(&mut &sock) {
                let why = match e
                    .get_ref()
                    .and_then(|i| i.downcast_ref::<stomp_client::rustls::Error>())
                {
                    Some(t) => stomp_client::tls_error_text(t),
                    None if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                    {
                        format!("no TLS handshake within {:?}", target.timeout)
                    }
                    None => e.to_string(),
                };
                anyhow::bail!(connect_hint(&address, &format!("TLS: {why}")));
            }
        }
        sock.set_write_timeout(None)?;
        Ok(Link::Tls(Arc::new(TlsLink {
            sock,
            state: Mutex::new(TlsState {
                session,
                pending: Vec::new(),
            }),
        })))
    }

    fn sock(&self) -> &TcpStream {
        match self {
            Link::Plain(s) => s,
            Link::Tls(t) => &t.sock,
        }
    }

    /// Bounds each read ([`Link::read`] then fails with `WouldBlock` or
    /// `TimedOut`).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.sock().set_read_timeout(timeout)
    }

    /// Writes all of `buf` (blocking).
    pub fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        match self {
            Link::Plain(s) => (&**s).write_all(buf),
            Link::Tls(t) => {
                let mut st = t.lock();
                let mut rest = buf;
                while !rest.is_empty() {
                    // rustls takes as much as it buffers; write that out.
                    let n = st.session.writer().write(rest)?;
                    rest = &rest[n..];
                    st.flush(&t.sock)?;
                }
                Ok(())
            }
        }
    }

    /// Reads what is available into `buf` (blocking, up to the read
    /// timeout); `Ok(0)` at the end of the stream.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let t = match self {
            Link::Plain(s) => return (&**s).read(buf),
            Link::Tls(t) => t,
        };
        loop {
            {
                let mut st = t.lock();
                match st.session.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                    Err(e) => return Err(e),
                }
                if !st.pending.is_empty() {
                    st.take_pending(&t.sock)?;
                    continue;
                }
            }
            // Wait for the socket without the lock: the writer goes on.
            let mut raw = [0u8; 16 * 1024];
            let n = (&t.sock).read(&mut raw)?;
            if n == 0 {
                return Ok(0);
            }
            let mut st = t.lock();
            st.pending.extend_from_slice(&raw[..n]);
            st.take_pending(&t.sock)?;
        }
    }
}

impl TlsLink {
    fn lock(&self) -> std::sync::MutexGuard<'_, TlsState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl TlsState {
    /// Hands pending socket bytes to the session (as much as it takes).
    fn take_pending(&mut self, sock: &TcpStream) -> io::Result<()> {
        let mut rest = &self.pending[..];
        let taken = self.session.read_tls(&mut rest)?;
        self.pending.drain(..taken);
        if let Err(e) = self.session.process_new_packets() {
            let _ = self.flush(sock);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("TLS: {}", stomp_client::tls_error_text(&e)),
            ));
        }
        self.flush(sock)
    }

    /// Writes the TLS records the session owes (blocking).
    fn flush(&mut self, mut sock: &TcpStream) -> io::Result<()> {
        while self.session.wants_write() {
            self.session.write_tls(&mut sock)?;
        }
        Ok(())
    }
}

/// A connection made without the client library (for `bench`, whose
/// producers and consumers need to be lean).
#[derive(Debug)]
pub struct RawConn {
    /// The connection (blocking, `TCP_NODELAY`).
    pub stream: Link,
    /// Bytes read after CONNECTED, not yet decoded.
    pub buf: BytesMut,
    /// The decoder, set to the negotiated version.
    pub decoder: Decoder,
    /// The negotiated version.
    pub version: Version,
}

impl RawConn {
    /// Connects, sends CONNECT and waits for CONNECTED (bounded by the
    /// target's timeout). No heart-beats are asked for.
    pub fn open(target: &Target) -> anyhow::Result<RawConn> {
        let deadline = Instant::now() + target.timeout;
        let address = target.address();
        let addr = address
            .to_socket_addrs()
            .map_err(|e| anyhow::anyhow!(connect_hint(&address, &e.to_string())))?
            .next()
            .ok_or_else(|| anyhow::anyhow!("{address} resolves to no address"))?;
        let stream = Link::open(target, &addr)?;
        let mut out = BytesMut::new();
        Encoder::new(Version::V1_2).encode(&target.connect_frame(HeartBeat::NONE), &mut out)?;
        stream.write_all(&out)?;
        let mut decoder = Decoder::with_limits(Version::V1_2, target.limits);
        let mut buf = BytesMut::with_capacity(64 * 1024);
        loop {
            while let Some(item) = decoder.decode(&mut buf)? {
                let Item::Frame(f) = item else { continue };
                match f.command {
                    Command::Connected => {
                        let version = f.version().unwrap_or(Version::V1_0);
                        decoder.set_version(version);
                        return Ok(RawConn {
                            stream,
                            buf,
                            decoder,
                            version,
                        });
                    }
                    Command::Error => {
                        anyhow::bail!("the broker refused the connection: {}", error_text(&f))
                    }
                    other => anyhow::bail!("expected CONNECTED, got {other:?}"),
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                anyhow::bail!("no CONNECTED from {address} within {:?}", target.timeout);
            }
            stream.set_read_timeout(Some(left))?;
            match read_some(&stream, &mut buf) {
                Ok(0) if !target.tls => anyhow::bail!(
                    "{address} closed the connection before CONNECTED; if that port speaks TLS, use a stomp+ssl:// URL"
                ),
                Ok(0) => anyhow::bail!("{address} closed the connection before CONNECTED"),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Sends a frame (blocking).
    pub fn send(&self, frame: &Frame) -> anyhow::Result<()> {
        let mut out = BytesMut::new();
        Encoder::new(self.version).encode(frame, &mut out)?;
        self.stream.write_all(&out)?;
        Ok(())
    }

    /// The next frame, waiting at most `timeout` (`None`: none came).
    pub fn next_frame(&mut self, timeout: Duration) -> anyhow::Result<Option<Frame>> {
        let deadline = Instant::now() + timeout;
        loop {
            while let Some(item) = self.decoder.decode(&mut self.buf)? {
                if let Item::Frame(f) = item {
                    return Ok(Some(f));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.stream.set_read_timeout(Some(left))?;
            match read_some(&self.stream, &mut self.buf) {
                Ok(0) => anyhow::bail!("the broker closed the connection"),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Reads what is available (up to 64 KiB) onto the end of `buf`.
///
/// Reads into a per-thread scratch buffer and copies what came, rather than
/// zero-filling 64 KiB of `buf` before every read.
pub fn read_some(stream: &Link, buf: &mut BytesMut) -> std::io::Result<usize> {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 64 * 1024]);
    }
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let n = stream.read(&mut s)?;
        buf.extend_from_slice(&s[..n]);
        Ok(n)
    })
}

/// `message` header and body of an ERROR frame, for messages.
pub fn error_text(f: &Frame) -> String {
    let msg = f.message_header().unwrap_or("(no message header)");
    let body = String::from_utf8_lossy(&f.body);
    let body = body.trim();
    if body.is_empty() || body == msg {
        msg.to_owned()
    } else {
        format!("{msg} ({body})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::ConnArgs;

    #[test]
    fn flags_override_the_url() {
        let a = ConnArgs {
            url: Some("stomp://guest:guest@127.0.0.1:61713/%2F".into()),
            port: Some(5),
            login: Some("me".into()),
            connect_timeout: 10.0,
            ..ConnArgs::default()
        };
        let t = Target::from_args(&a).unwrap();
        assert_eq!(t.address(), "127.0.0.1:5");
        assert_eq!(t.vhost, "/");
        assert_eq!(t.login.as_deref(), Some("me"));
        assert_eq!(t.passcode.as_deref(), Some("guest"));
    }

    #[test]
    fn default_url_and_host_header() {
        let a = ConnArgs {
            connect_timeout: 10.0,
            ..ConnArgs::default()
        };
        let t = Target::from_args(&a).unwrap();
        assert_eq!(t.address(), "127.0.0.1:61613");
        assert_eq!(t.vhost, "127.0.0.1");
        assert_eq!(t.versions, Version::ALL);
        let a = ConnArgs {
            url: Some("stomp://broker.example".into()),
            host: Some("other".into()),
            connect_timeout: 10.0,
            ..ConnArgs::default()
        };
        assert_eq!(Target::from_args(&a).unwrap().vhost, "other");
    }

    #[test]
    fn headers_and_versions() {
        assert_eq!(
            parse_header("a:b:c").unwrap(),
            ("a".to_owned(), "b:c".to_owned())
        );
        assert_eq!(parse_header("a:").unwrap(), ("a".to_owned(), String::new()));
        let e = parse_header("nocolon").unwrap_err().0;
        assert_eq!(e, "-H expects name:value, got \"nocolon\"");
        assert!(parse_header(":v").is_err());
        assert_eq!(
            parse_versions("1.1,1.2").unwrap(),
            [Version::V1_1, Version::V1_2]
        );
        assert!(parse_versions("2.0").is_err());
    }

    #[test]
    fn broker_refusals_say_what_to_fix() {
        let broker = |message: &str, body: &str| stomp_client::Error::Broker {
            message: message.into(),
            body: body.into(),
            receipt_id: None,
        };
        let m = explain(&broker(
            "Bad CONNECT",
            "Virtual host '127.0.0.1' access denied",
        ));
        assert!(m.contains("--vhost") && m.contains("%2F"), "{m}");
        let m = explain(&broker("Access refused for user 'x'", ""));
        assert!(m.contains("--login"), "{m}");
        let m = explain(&broker("invalid destination", ""));
        assert_eq!(m, "the broker said: invalid destination");
    }

    #[test]
    fn connect_hint_is_actionable() {
        let m = connect_hint("127.0.0.1:61613", "Connection refused (os error 111)");
        assert_eq!(
            m,
            "cannot connect to 127.0.0.1:61613: connection refused; is a broker running? start one with `stomp broker`"
        );
        let m = connect_hint(
            "nowhere.invalid:61613",
            "failed to lookup address information: Name or service not known",
        );
        assert!(m.ends_with("; check the host name"), "{m}");
        let m = connect_hint("10.0.0.1:61613", "timed out");
        assert_eq!(m, "cannot connect to 10.0.0.1:61613: timed out");
    }
}
