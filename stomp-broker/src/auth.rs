//! Who may connect: the [`Authenticator`] trait and the allow-all default.

/// What a client presented in its CONNECT frame.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// The `login` header.
    pub login: Option<&'a str>,
    /// The `passcode` header.
    pub passcode: Option<&'a str>,
    /// The `host` header (virtual host).
    pub host: Option<&'a str>,
}

/// A client the authenticator let in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Principal {
    /// The user name, when there is one.
    pub user: Option<String>,
}

/// Decides whether a CONNECT may open a session.
pub trait Authenticator: Send {
    /// `Ok` with who the client is, or `Err` with the reason to put in the
    /// ERROR frame (the connection is then closed).
    fn authenticate(&self, credentials: &Credentials<'_>) -> Result<Principal, String>;
}

/// Lets everyone in, under the login they give.
#[derive(Debug, Default, Clone, Copy)]
pub struct AllowAll;

impl Authenticator for AllowAll {
    fn authenticate(&self, credentials: &Credentials<'_>) -> Result<Principal, String> {
        Ok(Principal {
            user: credentials.login.map(str::to_owned),
        })
    }
}
