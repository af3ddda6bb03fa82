//! Connection options, the `stomp://` URL parser and the reconnect policy.

use std::time::Duration;

use stomp_frame::{HeartBeat, Limits, Version};

use crate::error::{Error, Result};

/// The longest wait the client keeps track of (ten years): a longer timeout
/// or delay is taken as this, so that no deadline arithmetic can overflow.
pub(crate) const LONGEST: Duration = Duration::from_secs(10 * 365 * 86_400);

/// The default limits on frames received: above what a broker with the
/// default limits can send back (a MESSAGE carries a few headers more than
/// its SEND, and escaping can double a header line). Its body limit is also
/// the client's own limit on bodies sent ([`Error::BodyTooLarge`]), so that
/// what the client sends, a client with the same options can receive.
pub(crate) const RECEIVE_LIMITS: Limits = Limits {
    max_headers: Limits::DEFAULT.max_headers + 16,
    max_line_len: 2 * Limits::DEFAULT.max_line_len + 64,
    max_body_len: Limits::DEFAULT.max_body_len,
    max_frame_len: Limits::DEFAULT.max_frame_len + 2 * (1 << 20),
};

/// The default of [`ConnectOptions::max_send_queue_bytes`]: 64 MiB.
const DEFAULT_MAX_SEND_QUEUE_BYTES: usize = 64 << 20;

/// The port used when an address or URL names none (the IANA STOMP port).
pub const DEFAULT_PORT: u16 = 61613;
/// The port of a `stomp+ssl://` URL without one (RabbitMQ's STOMP-over-TLS port).
pub const DEFAULT_TLS_PORT: u16 = 61614;

/// How to connect: where, as whom, and how patient to be.
///
/// Build one from an address or a URL and adjust it with the builder
/// methods:
///
/// ```
/// use std::time::Duration;
/// use stomp_client::{ConnectOptions, ReconnectPolicy};
///
/// let opts = ConnectOptions::from_url("stomp://guest:guest@127.0.0.1:61713/%2F")?
///     .heart_beat(5_000, 5_000)
///     .connect_timeout(Duration::from_secs(3))
///     .failover("127.0.0.1:61714")
///     .reconnect(ReconnectPolicy::default());
/// assert_eq!(opts.virtual_host(), "/");
/// assert_eq!(opts.addresses(), ["127.0.0.1:61713", "127.0.0.1:61714"]);
/// assert_eq!(opts.login_name(), Some("guest"));
/// # Ok::<(), stomp_client::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub(crate) addresses: Vec<String>,
    pub(crate) login: Option<String>,
    pub(crate) passcode: Option<String>,
    pub(crate) host: Option<String>,
    pub(crate) versions: Vec<Version>,
    pub(crate) heart_beat: HeartBeat,
    pub(crate) heartbeat_grace: f64,
    pub(crate) connect_timeout: Duration,
    pub(crate) receipt_timeout: Duration,
    pub(crate) disconnect_timeout: Duration,
    pub(crate) send_timeout: Duration,
    pub(crate) max_send_queue_frames: usize,
    pub(crate) max_send_queue_bytes: usize,
    pub(crate) reconnect: Option<ReconnectPolicy>,
    pub(crate) outage: OutagePolicy,
    pub(crate) limits: Limits,
    pub(crate) connect_headers: Vec<(String, String)>,
    pub(crate) subscription_capacity: usize,
    pub(crate) tls: Option<TlsOptions>,
}

/// When and how often to try again after the connection is lost.
///
/// The delay before attempt *n* (counting from 0) is
/// `initial_delay * multiplier^n`, capped at `max_delay`. Each attempt goes
/// to the next address of the failover list, round-robin, starting with the
/// first. After a successful reconnection the delay starts over.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReconnectPolicy {
    /// Delay before the first attempt. Default 100 ms.
    pub initial_delay: Duration,
    /// Upper bound of the delay. Default 10 s.
    pub max_delay: Duration,
    /// Growth of the delay per failed attempt. Default 2.
    pub multiplier: f64,
    /// Give up (the client becomes closed) after this many failed attempts
    /// in a row; `None` (the default) tries forever.
    pub max_attempts: Option<u32>,
}

impl Default for ReconnectPolicy {
    fn default() -> ReconnectPolicy {
        ReconnectPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            multiplier: 2.0,
            max_attempts: None,
        }
    }
}

impl ReconnectPolicy {
    /// The delay before attempt `attempt` (0 for the first).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = self.multiplier.max(1.0).powi(attempt.min(64) as i32);
        let secs = self.initial_delay.as_secs_f64() * factor;
        if !secs.is_finite() || secs >= self.max_delay.as_secs_f64() {
            self.max_delay.min(LONGEST)
        } else if secs >= LONGEST.as_secs_f64() {
            LONGEST
        } else {
            Duration::from_secs_f64(secs)
        }
    }
}

/// What a call that must reach the broker does while the client is
/// reconnecting (only with a [`ReconnectPolicy`]).
///
/// Applies to sends, subscribes, acks and transactions. Whatever the
/// policy, frames already handed to a connection that then failed may be
/// lost: use a confirmed send ([`Client::send_confirmed`](crate::Client::send_confirmed))
/// for what must arrive, and send it again on error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutagePolicy {
    /// Fail at once with [`Error::NotConnected`] (the default: a web handler
    /// answers quickly instead of piling up).
    #[default]
    FailFast,
    /// Wait for the connection to come back, at most this long, then fail
    /// with [`Error::NotConnected`].
    Wait(Duration),
}

impl ConnectOptions {
    /// Options for a broker at `address` (`host:port`, or `host` for port
    /// 61613), with the defaults: no login, STOMP 1.0 to 1.2, heart-beats
    /// `10000,10000`, grace factor 1.5, connect timeout 10 s, receipt timeout
    /// 10 s, disconnect timeout 5 s, send timeout 30 s, at most 4096 frames
    /// and 64 MiB queued for sending, no reconnect.
    ///
    /// The `host` header (virtual host) defaults to the host name of the
    /// address.
    pub fn new(address: impl Into<String>) -> ConnectOptions {
        ConnectOptions {
            addresses: vec![with_port(address.into())],
            login: None,
            passcode: None,
            host: None,
            versions: Version::ALL.to_vec(),
            heart_beat: HeartBeat::new(10_000, 10_000),
            heartbeat_grace: 1.5,
            connect_timeout: Duration::from_secs(10),
            receipt_timeout: Duration::from_secs(10),
            disconnect_timeout: Duration::from_secs(5),
            send_timeout: Duration::from_secs(30),
            max_send_queue_frames: 4096,
            max_send_queue_bytes: DEFAULT_MAX_SEND_QUEUE_BYTES,
            reconnect: None,
            outage: OutagePolicy::default(),
            limits: RECEIVE_LIMITS,
            connect_headers: Vec::new(),
            subscription_capacity: 4096,
            tls: None,
        }
    }

    /// Parses a `stomp://[user[:pass]@]host[:port][/vhost]` URL.
    ///
    /// - user and password are percent-decoded and become `login` / `passcode`;
    /// - the port defaults to 61613; an IPv6 host is written in brackets;
    /// - the path names the virtual host sent in the `host` header,
    ///   percent-decoded as in AMQP URIs: `/%2F` is `/` (what RabbitMQ
    ///   expects), `/prod` is `prod`. With no path (or an empty one) the
    ///   `host` header is the URL's host name;
    /// - a query or fragment is an error (nothing is defined for them yet).
    ///
    /// ```
    /// use stomp_client::ConnectOptions;
    /// let o = ConnectOptions::from_url("stomp://guest:guest@127.0.0.1:61713/%2F")?;
    /// assert_eq!(o.addresses(), ["127.0.0.1:61713"]);
    /// assert_eq!(o.virtual_host(), "/");
    /// let o = ConnectOptions::from_url("stomp://broker.example")?;
    /// assert_eq!(o.addresses(), ["broker.example:61613"]);
    /// assert_eq!(o.virtual_host(), "broker.example");
    /// assert_eq!(o.login_name(), None);
    /// # Ok::<(), stomp_client::Error>(())
    /// ```
    pub fn from_url(url: &str) -> Result<ConnectOptions> {
        let parsed = StompUrl::parse(url)?;
        let mut o = ConnectOptions::new(parsed.address());
        o.login = parsed.user;
        o.passcode = parsed.password;
        o.host = parsed.vhost;
        if parsed.tls {
            o.tls = Some(TlsOptions::default());
        }
        Ok(o)
    }

    /// Speaks TLS to the broker, checking its certificate against the
    /// system's trusted CAs (`SSL_CERT_FILE` / `SSL_CERT_DIR` when set; the
    /// Mozilla roots when the system has none) unless
    /// [`tls_ca`](Self::tls_ca) names others. The name checked is the host
    /// of the address.
    pub fn tls(mut self) -> Self {
        self.tls.get_or_insert_with(TlsOptions::default);
        self
    }

    /// Speaks TLS, trusting only the CA certificates in this PEM file
    /// (a private CA, a self-signed broker).
    pub fn tls_ca(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.tls.get_or_insert_with(TlsOptions::default).ca = Some(path.into());
        self
    }

    /// Whether TLS is on.
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Sets `login` and `passcode`.
    pub fn login(mut self, login: impl Into<String>, passcode: impl Into<String>) -> Self {
        self.login = Some(login.into());
        self.passcode = Some(passcode.into());
        self
    }

    /// Sets the virtual host sent in the `host` header (RabbitMQ: `/`).
    pub fn host(mut self, vhost: impl Into<String>) -> Self {
        self.host = Some(vhost.into());
        self
    }

    /// Sets the versions offered in `accept-version` (at least one).
    pub fn versions(mut self, versions: &[Version]) -> Self {
        self.versions = versions.to_vec();
        self
    }

    /// Sets the `heart-beat` header: the client can send a beat every
    /// `send_ms` and wants one every `receive_ms` (0: none). The intervals
    /// used are negotiated with the broker's answer by the spec's rule, in
    /// every version: STOMP 1.0 defines no heart-beats, but RabbitMQ and
    /// ActiveMQ answer a 1.0 CONNECT's header and enforce it. A broker whose
    /// CONNECTED has no `heart-beat` header gets none.
    pub fn heart_beat(mut self, send_ms: u32, receive_ms: u32) -> Self {
        self.heart_beat = HeartBeat::new(send_ms, receive_ms);
        self
    }

    /// Sets the grace factor: the broker is declared lost when nothing has
    /// arrived from it for `negotiated receive interval x factor` since its
    /// last heart-beat, or `x (factor + 1)` since its last frame (ActiveMQ's
    /// next beat after a frame can come two intervals later). Default 1.5,
    /// as ActiveMQ's `hbGracePeriodMultiplier`; values below 1 are taken as
    /// 1, above 1000 as 1000.
    pub fn heartbeat_grace(mut self, factor: f64) -> Self {
        self.heartbeat_grace = if factor.is_finite() {
            factor.clamp(1.0, 1000.0)
        } else {
            1.5
        };
        self
    }

    /// Bounds the TCP connect plus the STOMP handshake, per attempt.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout.min(LONGEST);
        self
    }

    /// Bounds the waits for receipts of calls that have no timeout argument
    /// (subscribe, unsubscribe, commit, abort).
    pub fn receipt_timeout(mut self, timeout: Duration) -> Self {
        self.receipt_timeout = timeout.min(LONGEST);
        self
    }

    /// Bounds [`Client::disconnect`](crate::Client::disconnect) (and the
    /// close on drop): the wait for the DISCONNECT receipt.
    pub fn disconnect_timeout(mut self, timeout: Duration) -> Self {
        self.disconnect_timeout = timeout.min(LONGEST);
        self
    }

    /// Bounds how long a send waits for room when the client's outgoing
    /// queue is full (the broker reads slower than the program sends; see
    /// [`max_send_queue_bytes`](Self::max_send_queue_bytes) and
    /// [`max_send_queue_frames`](Self::max_send_queue_frames)). When it runs
    /// out the call fails with [`Error::Timeout`] and nothing is sent.
    /// Default 30 s.
    pub fn send_timeout(mut self, timeout: Duration) -> Self {
        self.send_timeout = timeout.min(LONGEST);
        self
    }

    /// Bounds the bytes of frames queued for sending: handed over by
    /// calls, not yet written by the I/O thread. When a broker reads slower
    /// than the program sends (or stops reading), the socket's buffers fill,
    /// then this queue; then a call waits for room, at most the
    /// [`send_timeout`](Self::send_timeout), and fails with
    /// [`Error::Timeout`]. Waiting calls are served in order.
    ///
    /// A frame counts its body, its headers and 128 bytes for itself. A
    /// frame larger than the whole bound is still sent: it goes in alone,
    /// once the queue is empty. The ABORT of a dropped transaction and the
    /// UNSUBSCRIBE of a dropped subscription do not wait (they are small,
    /// and each follows a frame that did).
    ///
    /// Default 64 MiB: four bodies at the default body limit of 16 MiB
    /// ([`limits`](Self::limits)), so that a burst of large messages
    /// queues without waiting while memory stays bounded per client. The
    /// client holds at most about this much plus 1 MiB being written and
    /// the socket's buffers. 0 lets one frame wait at a time.
    pub fn max_send_queue_bytes(mut self, bytes: usize) -> Self {
        self.max_send_queue_bytes = bytes;
        self
    }

    /// Bounds the number of frames queued for sending (see
    /// [`max_send_queue_bytes`](Self::max_send_queue_bytes), which bounds
    /// their bytes; whichever is reached first holds back the calls).
    /// Default 4096 (at least 1): enough to ride out a pause of the broker,
    /// short enough that a program publishing small messages stays close
    /// to what the I/O thread writes.
    pub fn max_send_queue_frames(mut self, frames: usize) -> Self {
        self.max_send_queue_frames = frames.max(1);
        self
    }

    /// Adds a broker to the failover list (tried in order after the first
    /// when reconnecting).
    pub fn failover(mut self, address: impl Into<String>) -> Self {
        self.addresses.push(with_port(address.into()));
        self
    }

    /// Turns reconnection on.
    ///
    /// A session ended by data the client cannot decode
    /// ([`Error::Protocol`]: a MESSAGE over the [`limits`](Self::limits), a
    /// header that is not UTF-8) is not retried: the broker would send the
    /// same again (an unacknowledged message is redelivered), so the client
    /// ends with that error.
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = Some(policy);
        self
    }

    /// Sets what calls do while the client is reconnecting.
    pub fn on_outage(mut self, policy: OutagePolicy) -> Self {
        self.outage = policy;
        self
    }

    /// Sets the limits on frames received from the broker (default: above
    /// what a broker with the default [`Limits`] can send back).
    ///
    /// Its `max_body_len` (default 16 MiB) also bounds the bodies the client
    /// sends: a larger one is refused with [`Error::BodyTooLarge`] (no
    /// client with these limits could receive it). Raise it to send and
    /// receive larger messages.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Adds a header to CONNECT (for example ActiveMQ's `client-id`).
    pub fn connect_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.connect_headers.push((name.into(), value.into()));
        self
    }

    /// Sets how many received messages each subscription buffers before the
    /// client stops reading from the socket (TCP back-pressure towards the
    /// broker). Default 4096.
    pub fn subscription_capacity(mut self, messages: usize) -> Self {
        self.subscription_capacity = messages.max(1);
        self
    }

    /// The brokers to connect to, first the primary.
    pub fn addresses(&self) -> &[String] {
        &self.addresses
    }

    /// The `login`, if any.
    pub fn login_name(&self) -> Option<&str> {
        self.login.as_deref()
    }

    /// The virtual host sent in the `host` header for the first address.
    pub fn virtual_host(&self) -> &str {
        self.host_header_for(&self.addresses[0])
    }

    pub(crate) fn host_header_for<'a>(&'a self, address: &'a str) -> &'a str {
        match &self.host {
            Some(h) => h,
            None => host_part(address),
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.addresses.is_empty() || self.addresses.iter().any(|a| host_part(a).is_empty()) {
            return Err(Error::InvalidOption(
                "every broker address needs a host, as host:port".into(),
            ));
        }
        if self.versions.is_empty() {
            return Err(Error::InvalidOption("offer at least one version".into()));
        }
        Ok(())
    }
}

/// Adds `:61613` to an address without a port (a bare IPv6 address, such
/// as `::1`, is put in brackets first).
fn with_port(address: String) -> String {
    if let Ok(v6) = address.parse::<std::net::Ipv6Addr>() {
        return format!("[{v6}]:{DEFAULT_PORT}");
    }
    let has_port = if let Some(rest) = address.strip_prefix('[') {
        rest.split_once(']')
            .is_some_and(|(_, tail)| tail.starts_with(':'))
    } else {
        address.contains(':') && address.matches(':').count() == 1
    };
    if has_port || (address.matches(':').count() > 1 && !address.starts_with('[')) {
        address
    } else {
        format!("{address}:{DEFAULT_PORT}")
    }
}

/// The host name of `host:port` or `[v6]:port`, brackets removed.
pub(crate) fn host_part(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(h, _)| h);
    }
    match address.rsplit_once(':') {
        Some((h, _)) if !h.contains(':') => h,
        _ => address,
    }
}

/// TLS settings of a connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TlsOptions {
    /// PEM file of the CAs to trust; `None` for the system's.
    pub(crate) ca: Option<std::path::PathBuf>,
}

/// A parsed `stomp://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StompUrl {
    /// The host (IPv6 without brackets).
    pub host: String,
    /// The port (61613 when absent).
    pub port: u16,
    /// The percent-decoded user name.
    pub user: Option<String>,
    /// The percent-decoded password.
    pub password: Option<String>,
    /// The percent-decoded virtual host from the path (`None` without a path).
    pub vhost: Option<String>,
    /// `stomp+ssl://` (or `stomp+tls://`): TLS, port 61614 by default.
    pub tls: bool,
}

impl StompUrl {
    /// Parses a URL (see [`ConnectOptions::from_url`] for the rules).
    pub fn parse(url: &str) -> Result<StompUrl> {
        let bad = |reason: &str| Error::InvalidUrl {
            url: redact(url),
            reason: reason.to_owned(),
        };
        let (tls, rest) = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("stomp") => (false, rest),
            Some((scheme, rest))
                if scheme.eq_ignore_ascii_case("stomp+ssl")
                    || scheme.eq_ignore_ascii_case("stomp+tls") =>
            {
                (true, rest)
            }
            Some(_) => return Err(bad("the scheme must be stomp:// or stomp+ssl://")),
            None => return Err(bad("expected stomp://host[:port][/vhost]")),
        };
        if rest.contains(['?', '#']) {
            return Err(bad("query strings and fragments are not supported"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => {
                let (name, pass) = match u.split_once(':') {
                    Some((n, p)) => (n, Some(p)),
                    None => (u, None),
                };
                let dec = |s: &str| percent_decode(s).ok_or_else(|| bad("bad percent-encoding"));
                (Some(dec(name)?), pass.map(dec).transpose()?)
            }
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, tail) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed [ in an IPv6 host"))?;
            let port = match tail {
                "" => None,
                t => Some(t.strip_prefix(':').ok_or_else(|| bad("junk after ]"))?),
            };
            (h, port)
        } else {
            match hostport.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(bad("the host is missing"));
        }
        let port = match port {
            None | Some("") if tls => DEFAULT_TLS_PORT,
            None | Some("") => DEFAULT_PORT,
            // RFC 3986: a port is digits only (`u16::from_str` would take
            // a leading `+`).
            Some(p) => Some(p)
                .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|p| p.parse::<u16>().ok())
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("the port must be a number from 1 to 65535"))?,
        };
        let vhost = match path {
            None | Some("") => None,
            Some(p) => {
                if p.contains('/') {
                    return Err(bad(
                        "the path is one virtual host; write / inside it as %2F",
                    ));
                }
                Some(percent_decode(p).ok_or_else(|| bad("bad percent-encoding in the path"))?)
            }
        };
        Ok(StompUrl {
            host: host.to_owned(),
            port,
            user,
            password,
            vhost,
            tls,
        })
    }

    /// `url` with its password replaced by `***`, as the client's own
    /// errors show it: for logs and messages. Everything up to the last
    /// `@` counts as the user info, so a password with an unescaped `/` or
    /// `@` does not show either. A string that is not a valid URL is
    /// redacted the same way.
    ///
    /// ```
    /// use stomp_client::StompUrl;
    /// assert_eq!(
    ///     StompUrl::redact("stomp://guest:secret@127.0.0.1:61613/%2F"),
    ///     "stomp://guest:***@127.0.0.1:61613/%2F"
    /// );
    /// assert_eq!(StompUrl::redact("stomp://h:61613"), "stomp://h:61613");
    /// ```
    pub fn redact(url: &str) -> String {
        redact(url)
    }

    /// `host:port`, with brackets around an IPv6 host.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The URL with its password replaced by `***`, for messages.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // Up to the last `@`, even past a `/`: a password with an unescaped
    // `/` must not show either (hiding too much is the safe mistake).
    match rest.rsplit_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split_once(':').map_or(user, |(n, _)| n);
            format!("{scheme}://{name}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

/// Decodes `%XX` escapes; `None` on a bad escape or non-UTF-8 result.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_vhost_rules() {
        let u = StompUrl::parse("stomp://guest:guest@127.0.0.1:61713/%2F").unwrap();
        assert_eq!(u.vhost.as_deref(), Some("/"));
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 61713));
        assert_eq!(
            (u.user.as_deref(), u.password.as_deref()),
            (Some("guest"), Some("guest"))
        );
        let o = ConnectOptions::from_url("stomp://h.example:1234").unwrap();
        assert_eq!(o.virtual_host(), "h.example");
        let o = ConnectOptions::from_url("stomp://h.example:1234/").unwrap();
        assert_eq!(o.virtual_host(), "h.example");
        let o = ConnectOptions::from_url("stomp://h/prod%20one").unwrap();
        assert_eq!(o.virtual_host(), "prod one");
        assert_eq!(o.addresses(), ["h:61613"]);
        for (given, want) in [
            ("::1", "[::1]:61613"),
            ("[::1]", "[::1]:61613"),
            ("[::1]:1234", "[::1]:1234"),
            ("fe80::2:3", "[fe80::2:3]:61613"),
        ] {
            assert_eq!(ConnectOptions::new(given).addresses(), [want], "{given}");
        }
    }

    #[test]
    fn url_userinfo_is_percent_decoded() {
        let u = StompUrl::parse("stomp://us%40er:p%3Ass%2F@h").unwrap();
        assert_eq!(u.user.as_deref(), Some("us@er"));
        assert_eq!(u.password.as_deref(), Some("p:ss/"));
        let u = StompUrl::parse("stomp://only@h").unwrap();
        assert_eq!((u.user.as_deref(), u.password), (Some("only"), None));
        // '@' in the password unescaped: the last '@' ends the userinfo.
        let u = StompUrl::parse("stomp://a:b@c@h:1").unwrap();
        assert_eq!(u.password.as_deref(), Some("b@c"));
        assert_eq!(u.host, "h");
    }

    #[test]
    fn url_ipv6_and_errors() {
        let u = StompUrl::parse("stomp://[::1]:61614/%2F").unwrap();
        assert_eq!(u.host, "::1");
        assert_eq!(u.address(), "[::1]:61614");
        let o = ConnectOptions::from_url("stomp://[::1]").unwrap();
        assert_eq!(o.addresses(), ["[::1]:61613"]);
        assert_eq!(o.virtual_host(), "::1");
        for bad in [
            "http://h",
            "h:61613",
            "stomp://",
            "stomp://:1",
            "stomp://h:0",
            "stomp://h:99999",
            "stomp://h:x",
            "stomp://h/a/b",
            "stomp://h/%zz",
            "stomp://h?x=1",
            "stomp://[::1",
        ] {
            assert!(StompUrl::parse(bad).is_err(), "{bad}");
        }
        let e = StompUrl::parse("stomp://u:secret@h:x").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        // An unescaped `/` in the password ends the authority early.
        let e = StompUrl::parse("stomp://guest:se/cret@h").unwrap_err();
        assert!(
            !e.to_string().contains("se/cret") && !e.to_string().contains("cret"),
            "{e}"
        );
    }

    /// Regression (audit 6, finding 4): `u16::from_str` takes a leading
    /// `+`, so `stomp://h:+1` was port 1. RFC 3986: a port is `*DIGIT`.
    #[test]
    fn url_port_is_digits_only() {
        for bad in [
            "stomp://h:+1",
            "stomp://h:+61613",
            "stomp://h:-1",
            "stomp://h: 1",
            "stomp://h:1 ",
            "stomp://[::1]:+1",
            "stomp+ssl://u:secret@h:+1",
        ] {
            match StompUrl::parse(bad) {
                Err(Error::InvalidUrl { url, reason }) => {
                    assert_eq!(reason, "the port must be a number from 1 to 65535", "{bad}");
                    assert!(!url.contains("secret"), "{url}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert_eq!(StompUrl::parse("stomp://h:007").unwrap().port, 7);
        assert_eq!(StompUrl::parse("stomp://[::1]:65535").unwrap().port, 65535);
    }

    #[test]
    fn addresses_get_default_port() {
        assert_eq!(with_port("h".into()), "h:61613");
        assert_eq!(with_port("h:1".into()), "h:1");
        assert_eq!(with_port("[::1]".into()), "[::1]:61613");
        assert_eq!(with_port("[::1]:5".into()), "[::1]:5");
        assert_eq!(host_part("h:1"), "h");
        assert_eq!(host_part("[::1]:1"), "::1");
    }

    #[test]
    fn backoff_grows_to_cap() {
        let p = ReconnectPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            multiplier: 2.0,
            max_attempts: None,
        };
        let d: Vec<_> = (0..6).map(|n| p.delay(n).as_millis()).collect();
        assert_eq!(d, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.delay(u32::MAX), Duration::from_secs(1));
    }
}
