//! Who may connect and what they may do: the [`Authenticator`] trait, the
//! explicit [`AllowAll`], and [`UsersFile`] (argon2 password hashes, groups
//! and an ActiveMQ-style authorization map).
//!
//! The users file is TOML:
//!
//! ```toml
//! [users.alice]
//! password = "$argon2id$v=19$m=19456,t=2,p=1$..."   # written by `stomp-broker passwd`
//! groups = ["ops"]
//!
//! # Optional. Without any [[acl]] every authenticated user may do everything.
//! [[acl]]
//! pattern = "/queue/orders.>"     # `*` = one segment, `>` = all the rest
//! read = ["group:ops", "alice"]   # SUBSCRIBE
//! write = ["alice"]               # SEND
//! admin = ["group:ops"]           # create the queue (first SEND/SUBSCRIBE to it)
//! ```
//!
//! Segments are separated by `/` or `.`. `*` stands for any one user
//! (authenticated) in a right's list. A right is granted when any rule
//! whose pattern matches the destination grants it (ActiveMQ's
//! authorization map does the same union); a destination no rule matches is
//! denied to everyone.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use serde::Deserialize;

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
    /// The groups the user belongs to (for authorization rules).
    pub groups: Vec<String>,
}

/// What a frame wants to do with a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    /// Receive from it (SUBSCRIBE).
    Read,
    /// Send to it (SEND).
    Write,
    /// Create it (the first SEND or SUBSCRIBE to a queue the broker holds
    /// nothing for), as ActiveMQ's `admin` right.
    Admin,
}

impl Right {
    /// `read`, `write` or `admin`, as in the ACL file.
    pub fn as_str(self) -> &'static str {
        match self {
            Right::Read => "read",
            Right::Write => "write",
            Right::Admin => "admin",
        }
    }
}

/// The ERROR body of every failed login: the same whichever of user or
/// password was wrong, so the answer tells an attacker nothing.
pub const LOGIN_FAILED: &str = "the login or passcode is not valid";

/// Decides whether a CONNECT may open a session, and what it may do.
pub trait Authenticator: Send + Sync {
    /// `Ok` with who the client is, or `Err` with the reason to put in the
    /// ERROR frame (the connection is then closed).
    fn authenticate(&self, credentials: &Credentials<'_>) -> Result<Principal, String>;

    /// Whether `principal` has `right` on `destination`. The default allows
    /// everything.
    fn authorize(&self, principal: &Principal, right: Right, destination: &str) -> bool {
        let _ = (principal, right, destination);
        true
    }

    /// Whether this authenticator lets anyone in (the broker warns at
    /// start-up when such a broker listens beyond loopback).
    fn allows_anyone(&self) -> bool {
        false
    }

    /// Whether [`authenticate`](Authenticator::authenticate) is slow enough
    /// (password hashing) that the broker runs it on a worker thread
    /// instead of its event loop.
    fn is_slow(&self) -> bool {
        false
    }

    /// Who `principal`, logged in under an earlier configuration, is now
    /// (its groups may have changed); `None` when it may no longer log in
    /// at all. The default: unchanged.
    fn refresh(&self, principal: &Principal) -> Option<Principal> {
        Some(principal.clone())
    }
}

/// Lets everyone in, under the login they give, and allows everything.
/// Chosen explicitly when no users file is configured.
#[derive(Debug, Default, Clone, Copy)]
pub struct AllowAll;

impl Authenticator for AllowAll {
    fn authenticate(&self, credentials: &Credentials<'_>) -> Result<Principal, String> {
        Ok(Principal {
            user: credentials.login.map(str::to_owned),
            groups: Vec::new(),
        })
    }

    fn allows_anyone(&self) -> bool {
        true
    }
}

/// One user of the users file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    /// PHC string of the argon2 hash.
    password: String,
    #[serde(default)]
    groups: Vec<String>,
}

/// One authorization rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclRule {
    /// Destination pattern: `*` one segment, `>` the rest.
    pub pattern: String,
    /// Who may SUBSCRIBE: user names, `group:NAME`, or `*`.
    #[serde(default)]
    pub read: Vec<String>,
    /// Who may SEND.
    #[serde(default)]
    pub write: Vec<String>,
    /// Who may create the destination.
    #[serde(default)]
    pub admin: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileText {
    #[serde(default)]
    users: BTreeMap<String, UserEntry>,
    #[serde(default)]
    acl: Vec<AclRule>,
}

/// Users with argon2-hashed passwords and groups, plus optional
/// authorization rules, read from a TOML file (see the [module docs](self)).
#[derive(Debug)]
pub struct UsersFile {
    users: BTreeMap<String, UserEntry>,
    acl: Vec<AclRule>,
    /// Verified against for unknown users, so they take as long as known ones.
    dummy: String,
}

fn hasher() -> Argon2<'static> {
    Argon2::default()
}

/// A fresh random salt from the OS.
fn salt() -> io::Result<SaltString> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    SaltString::encode_b64(&bytes).map_err(|e| io::Error::other(e.to_string()))
}

/// The argon2id hash (PHC string) of `password` with a random salt.
pub fn hash_password(password: &str) -> io::Result<String> {
    let salt = salt()?;
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| io::Error::other(format!("cannot hash the password: {e}")))
}

thread_local! {
    /// argon2's working memory (19 MiB with the default parameters), kept
    /// by each password-checking thread: allocated at every check, the
    /// allocator kept the freed copies, and the broker's RSS went from
    /// 4 MiB to about 370 MiB after 50 logins.
    static ARGON2_MEMORY: std::cell::RefCell<Vec<argon2::Block>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Whether `password` matches the PHC `hash` (constant-time comparison),
/// computed in this thread's [`ARGON2_MEMORY`].
fn verify(password: &str, hash: &str) -> bool {
    let Ok(h) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (h.salt, h.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        argon2::Algorithm::try_from(h.algorithm),
        argon2::Params::try_from(&h),
    ) else {
        return false;
    };
    let Ok(version) = h
        .version
        .map_or(Ok(argon2::Version::default()), argon2::Version::try_from)
    else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let blocks = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    let mut out = vec![0u8; expected.len()];
    let hashed = ARGON2_MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        memory.resize(blocks, argon2::Block::default());
        argon2.hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..])
    });
    hashed.is_ok() && argon2::password_hash::Output::new(&out).is_ok_and(|o| o == expected)
}

impl UsersFile {
    /// Reads and checks a users file: every password must be a valid PHC
    /// hash and every ACL pattern non-empty.
    pub fn load(path: &Path) -> io::Result<UsersFile> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot read users file {}: {e}", path.display()),
            )
        })?;
        UsersFile::parse(&text).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("invalid users file {}: {e}", path.display()),
            )
        })
    }

    /// Parses users-file text.
    pub fn parse(text: &str) -> Result<UsersFile, String> {
        let f: FileText = toml::from_str(text).map_err(|e| e.to_string())?;
        for (name, u) in &f.users {
            let argon2 = PasswordHash::new(&u.password)
                .map_err(|e| e.to_string())
                .and_then(|h| {
                    if h.algorithm.as_str().starts_with("argon2") {
                        Ok(())
                    } else {
                        Err(format!("{} is not argon2", h.algorithm))
                    }
                });
            if let Err(e) = argon2 {
                return Err(format!(
                    "user {name:?}: password is not an argon2 hash ({e}); set it with `stomp-broker passwd FILE {name}`"
                ));
            }
        }
        for r in &f.acl {
            check_pattern(&r.pattern)
                .map_err(|e| format!("[[acl]] pattern {:?}: {e}", r.pattern))?;
        }
        let dummy = hash_password("stomp-rs dummy password").map_err(|e| e.to_string())?;
        Ok(UsersFile {
            users: f.users,
            acl: f.acl,
            dummy,
        })
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are no users (nobody can log in).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

impl Authenticator for UsersFile {
    fn authenticate(&self, credentials: &Credentials<'_>) -> Result<Principal, String> {
        let login = credentials.login.unwrap_or("");
        let passcode = credentials.passcode.unwrap_or("");
        match self.users.get(login) {
            Some(u) if verify(passcode, &u.password) => Ok(Principal {
                user: Some(login.to_owned()),
                groups: u.groups.clone(),
            }),
            Some(_) => Err(LOGIN_FAILED.to_owned()),
            None => {
                // Same work as for a known user: timing does not tell.
                let _ = verify(passcode, &self.dummy);
                Err(LOGIN_FAILED.to_owned())
            }
        }
    }

    fn is_slow(&self) -> bool {
        true
    }

    fn refresh(&self, principal: &Principal) -> Option<Principal> {
        let Some(name) = &principal.user else {
            return Some(principal.clone());
        };
        self.users.get(name).map(|u| Principal {
            user: Some(name.clone()),
            groups: u.groups.clone(),
        })
    }

    fn authorize(&self, principal: &Principal, right: Right, destination: &str) -> bool {
        if self.acl.is_empty() {
            return true;
        }
        self.acl
            .iter()
            .filter(|r| pattern_matches(&r.pattern, destination))
            .any(|r| {
                let who = match right {
                    Right::Read => &r.read,
                    Right::Write => &r.write,
                    Right::Admin => &r.admin,
                };
                who.iter().any(|w| grants(w, principal))
            })
    }
}

fn grants(entry: &str, p: &Principal) -> bool {
    if entry == "*" {
        return p.user.is_some();
    }
    match entry.strip_prefix("group:") {
        Some(g) => p.groups.iter().any(|x| x == g),
        None => p.user.as_deref() == Some(entry),
    }
}

/// Whether `pattern` is one [`pattern_matches`] reads as meant: not empty,
/// and its wildcards whole segments, `>` only the last.
fn check_pattern(pattern: &str) -> Result<(), &'static str> {
    if pattern.is_empty() {
        return Err("empty");
    }
    let segments: Vec<&str> = pattern.split(['/', '.']).collect();
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            ">" if i + 1 < segments.len() => {
                return Err("`>` (all the rest) must be the last segment");
            }
            "*" | ">" => {}
            s if s.contains(['*', '>']) => {
                return Err("a wildcard is a whole segment: `*` for one, `>` for all the rest");
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether `name` matches `pattern`: both split into segments at `/` and
/// `.`; `*` matches any one segment, `>` (last) matches one or more
/// remaining segments, anything else matches itself.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let is_sep = |c: char| c == '/' || c == '.';
    let mut p = pattern.split(is_sep);
    let mut n = name.split(is_sep);
    loop {
        match (p.next(), n.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Adds `user` to the users file at `path` (created if missing), or changes
/// their password; every other key of the file is kept.
pub fn set_password(path: &Path, user: &str, password: &str) -> io::Result<()> {
    if user.is_empty() || user.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("user name {user:?} must be non-empty, without spaces or control characters"),
        ));
    }
    if password.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the password must not be empty",
        ));
    }
    if password.contains(['\n', '\r', '\0']) {
        // A CONNECT header cannot carry these (CONNECT is not escaped).
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the password must not contain a line break or a NUL: no client could send it",
        ));
    }
    // A symbolic link is followed: the file it points to is the one edited.
    let path = &match std::fs::canonicalize(path) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => path.to_path_buf(),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot read {}: {e}", path.display()),
            ));
        }
    };
    // Edited in place: comments, order and everything else stay.
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot read {}: {e}", path.display()),
            ));
        }
    };
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("invalid users file {}: {e}", path.display()),
        )
    })?;
    let mut implicit = toml_edit::Table::new();
    implicit.set_implicit(true);
    let Some(users) = doc
        .entry("users")
        .or_insert(toml_edit::Item::Table(implicit))
        .as_table_like_mut()
    else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "`users` in the users file is not a table",
        ));
    };
    let Some(entry) = users
        .entry(user)
        .or_insert(toml_edit::table())
        .as_table_like_mut()
    else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("users.{user} is not a table"),
        ));
    };
    entry.insert("password", toml_edit::value(hash_password(password)?));
    let text = doc.to_string();
    let tmp = path.with_extension("tmp");
    write_private(&tmp, text.as_bytes())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display())))
}

/// Writes a file readable by its owner only (it holds password hashes).
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// `passwd FILE USER [--password P]`: adds or changes a user of a users file.
#[derive(Debug, Clone, clap::Args)]
pub struct PasswdArgs {
    /// The users file (created if missing).
    pub file: PathBuf,
    /// The user to add or change.
    pub user: String,
    /// The password; without it, it is typed twice without echo when stdin
    /// is a terminal, or read from stdin's first line. A flag is visible to
    /// other local users in the process list: prefer stdin.
    #[arg(long, value_name = "P")]
    pub password: Option<String>,
}

/// The password for `user`: on a terminal, typed twice without echo; from
/// a pipe, the first line of stdin.
fn read_password(user: &str) -> io::Result<String> {
    use std::io::{BufRead, IsTerminal};
    if io::stdin().is_terminal() {
        // The prompt turns the terminal's echo off and back on; a Ctrl-C in
        // between would leave it off. Catch it, turn echo on, then leave.
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        let handle = signals.handle();
        let watcher = std::thread::spawn(move || {
            if let Some(sig) = signals.forever().next() {
                if let Ok(tty) = std::fs::File::open("/dev/tty") {
                    let _ = std::process::Command::new("stty")
                        .arg("echo")
                        .stdin(tty)
                        .status();
                }
                eprintln!("\npasswd: interrupted; nothing changed");
                std::process::exit(128 + sig);
            }
        });
        let read = (|| {
            let first = rpassword::prompt_password(format!("password for {user}: "))?;
            let again = rpassword::prompt_password("again: ")?;
            io::Result::Ok((first, again))
        })();
        handle.close();
        let _ = watcher.join();
        let (first, again) = read?;
        if first != again {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the two passwords differ",
            ));
        }
        return Ok(first);
    }
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot read the password from stdin: {e}"),
        )
    })?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Runs `passwd`: 0 when the file was written, 2 for an unusable user
/// name or password (a usage error), 1 otherwise (with why on stderr).
pub fn run_passwd(args: &PasswdArgs) -> std::process::ExitCode {
    let code = |e: &io::Error| {
        std::process::ExitCode::from(if e.kind() == io::ErrorKind::InvalidInput {
            2
        } else {
            1
        })
    };
    let password = match &args.password {
        Some(p) => p.clone(),
        None => match read_password(&args.user) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("passwd: {e}; nothing changed");
                return code(&e);
            }
        },
    };
    match set_password(&args.file, &args.user, &password) {
        Ok(()) => {
            eprintln!("passwd: user {} set in {}", args.user, args.file.display());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("passwd: {e}");
            code(&e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_refuses_what_no_client_could_send_and_follows_links() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("users.toml");
        assert!(set_password(&path, "a\u{1}b", "pw").is_err());
        assert!(set_password(&path, "alice", "line1\nline2").is_err());
        std::fs::write(&path, "# kept\n").unwrap();
        let link = tmp.path().join("link.toml");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        set_password(&link, "alice", "pw").unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("# kept") && text.contains("[users.alice]"),
            "{text}"
        );
    }

    #[test]
    fn passwd_edits_the_file_in_place() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("users.toml");
        let before = "# who may do what\n[users.bob]\npassword = 'x'\ngroups = ['ops'] # admins\n\n\
                      [[acl]]\npattern = '/queue/>'\nread = ['*']\n";
        std::fs::write(&path, before).unwrap();
        set_password(&path, "alice", "pw").unwrap();
        set_password(&path, "bob", "pw2").unwrap();
        let after = std::fs::read_to_string(&path).unwrap();
        for kept in [
            "# who may do what",
            "groups = ['ops'] # admins",
            "[[acl]]",
            "read = ['*']",
        ] {
            assert!(after.contains(kept), "{kept:?} lost:\n{after}");
        }
        let u = UsersFile::parse(&after).unwrap();
        let c = |l, p| Credentials {
            login: Some(l),
            passcode: Some(p),
            host: None,
        };
        assert!(u.authenticate(&c("alice", "pw")).is_ok());
        let bob = u.authenticate(&c("bob", "pw2")).unwrap();
        assert_eq!(bob.groups, ["ops"]);
        assert!(u.authenticate(&c("bob", "x")).is_err());
        // A users entry that is not a table is an error, not a panic.
        std::fs::write(&path, "users = 3\n").unwrap();
        assert!(set_password(&path, "alice", "pw").is_err());
    }

    #[test]
    fn verify_reads_each_hash_its_own_parameters_in_reused_memory() {
        let default = hash_password("pw").unwrap();
        assert!(verify("pw", &default));
        assert!(!verify("pW", &default));
        assert!(!verify("pw ", &default));
        // Other algorithms, versions, costs and lengths, as another tool
        // may write them; the thread's memory shrinks and grows to fit.
        let salt = salt().unwrap();
        for (algorithm, version, m, t, p, len) in [
            (
                argon2::Algorithm::Argon2i,
                argon2::Version::V0x13,
                64,
                1,
                2,
                32,
            ),
            (
                argon2::Algorithm::Argon2d,
                argon2::Version::V0x10,
                256,
                3,
                1,
                16,
            ),
            (
                argon2::Algorithm::Argon2id,
                argon2::Version::V0x13,
                8192,
                1,
                4,
                64,
            ),
        ] {
            let params = argon2::Params::new(m, t, p, Some(len)).unwrap();
            let other = Argon2::new(algorithm, version, params)
                .hash_password(b"pw", &salt)
                .unwrap()
                .to_string();
            assert!(verify("pw", &other), "{other}");
            assert!(!verify("px", &other), "{other}");
            assert!(verify("pw", &default));
        }
        for bad in [
            "",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA",
            "$bcrypt$x",
            "plain",
        ] {
            assert!(!verify("pw", bad), "{bad}");
        }
    }

    #[test]
    fn patterns() {
        assert!(pattern_matches("/queue/orders.>", "/queue/orders.eu"));
        assert!(pattern_matches("/queue/orders.>", "/queue/orders.eu.x"));
        assert!(!pattern_matches("/queue/orders.>", "/queue/orders"));
        assert!(!pattern_matches("/queue/orders.>", "/queue/ordersx.eu"));
        assert!(pattern_matches("/queue/*", "/queue/a"));
        assert!(!pattern_matches("/queue/*", "/queue/a.b"));
        assert!(pattern_matches("/queue/a", "/queue/a"));
        assert!(!pattern_matches("/queue/a", "/queue/ab"));
        assert!(pattern_matches(">", "/topic/x"));
        assert!(check_pattern("/queue/orders.>").is_ok());
        assert!(check_pattern("/queue/*.x").is_ok());
        assert!(check_pattern("/queue/pub.>.admin").is_err());
        assert!(check_pattern("/queue/**").is_err());
        assert!(check_pattern("/queue/a*").is_err());
        assert!(check_pattern("").is_err());
        let e = UsersFile::parse("[[acl]]\npattern = '/queue/a.>.b'\nread = ['*']\n").err();
        assert!(e.unwrap().contains("last segment"));
        // A PHC hash of another algorithm can never log in: refused.
        let pbkdf2 = "[users.u]\npassword = '$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo'\n";
        assert!(
            UsersFile::parse(pbkdf2)
                .err()
                .unwrap()
                .contains("not argon2")
        );
    }

    #[test]
    fn users_and_acl() {
        let hash = hash_password("pw").unwrap();
        let text = format!(
            "[users.alice]\npassword = '{hash}'\ngroups = ['ops']\n[users.bob]\npassword = '{hash}'\n\
             [[acl]]\npattern = '/queue/orders.>'\nread = ['group:ops']\nwrite = ['bob', 'alice']\n"
        );
        let u = UsersFile::parse(&text).unwrap();
        let c = |l, p| Credentials {
            login: Some(l),
            passcode: Some(p),
            host: None,
        };
        let alice = u.authenticate(&c("alice", "pw")).unwrap();
        assert_eq!(alice.groups, ["ops"]);
        assert_eq!(u.authenticate(&c("alice", "no")).unwrap_err(), LOGIN_FAILED);
        assert_eq!(u.authenticate(&c("eve", "pw")).unwrap_err(), LOGIN_FAILED);
        let bob = u.authenticate(&c("bob", "pw")).unwrap();
        assert!(u.authorize(&alice, Right::Read, "/queue/orders.1"));
        assert!(!u.authorize(&bob, Right::Read, "/queue/orders.1"));
        assert!(u.authorize(&bob, Right::Write, "/queue/orders.1"));
        assert!(!u.authorize(&bob, Right::Admin, "/queue/orders.1"));
        assert!(!u.authorize(&alice, Right::Write, "/queue/other"));
        assert!(UsersFile::parse("[users.x]\npassword = 'plain'\n").is_err());
    }

    #[test]
    fn passwd_keeps_the_rest_of_the_file() {
        let dir = std::env::temp_dir().join(format!("stomp-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("users.toml");
        std::fs::write(&f, "[[acl]]\npattern = '>'\nread = ['*']\n").unwrap();
        set_password(&f, "carol", "s3cret").unwrap();
        set_password(&f, "carol", "s3cret2").unwrap();
        let u = UsersFile::load(&f).unwrap();
        assert_eq!(u.len(), 1);
        assert_eq!(u.acl.len(), 1);
        let creds = Credentials {
            login: Some("carol"),
            passcode: Some("s3cret2"),
            host: None,
        };
        assert!(u.authenticate(&creds).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
