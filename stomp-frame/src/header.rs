//! Frame headers: an ordered list that keeps repeats.

use bytestring::ByteString;

/// Names of the headers the specification defines.
pub mod names {
    #![allow(missing_docs)]
    pub const ACCEPT_VERSION: &str = "accept-version";
    pub const ACK: &str = "ack";
    pub const CONTENT_LENGTH: &str = "content-length";
    pub const CONTENT_TYPE: &str = "content-type";
    pub const DESTINATION: &str = "destination";
    pub const HEART_BEAT: &str = "heart-beat";
    pub const HOST: &str = "host";
    pub const ID: &str = "id";
    pub const LOGIN: &str = "login";
    pub const MESSAGE: &str = "message";
    pub const MESSAGE_ID: &str = "message-id";
    pub const PASSCODE: &str = "passcode";
    pub const RECEIPT: &str = "receipt";
    pub const RECEIPT_ID: &str = "receipt-id";
    pub const SERVER: &str = "server";
    pub const SESSION: &str = "session";
    pub const SUBSCRIPTION: &str = "subscription";
    pub const TRANSACTION: &str = "transaction";
    pub const VERSION: &str = "version";
    pub const REDELIVERED: &str = "redelivered";
}

/// Header names common enough that the decoder shares one static copy of
/// them instead of slicing (and reference-counting) the read buffer.
const INTERNED: [&str; 20] = [
    names::ACCEPT_VERSION,
    names::ACK,
    names::CONTENT_LENGTH,
    names::CONTENT_TYPE,
    names::DESTINATION,
    names::HEART_BEAT,
    names::HOST,
    names::ID,
    names::LOGIN,
    names::MESSAGE,
    names::MESSAGE_ID,
    names::PASSCODE,
    names::RECEIPT,
    names::RECEIPT_ID,
    names::SERVER,
    names::SESSION,
    names::SUBSCRIPTION,
    names::TRANSACTION,
    names::VERSION,
    names::REDELIVERED,
];

/// The static copy of a well-known header name, if `name` is one.
pub(crate) fn interned(name: &[u8]) -> Option<ByteString> {
    INTERNED
        .iter()
        .find(|known| known.as_bytes() == name)
        .map(|known| ByteString::from_static(known))
}

/// One header: a name and a value, both UTF-8, already unescaped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Header {
    name: ByteString,
    value: ByteString,
}

impl Header {
    /// Makes a header from anything that converts into a [`ByteString`]
    /// (`&'static str` via [`ByteString::from_static`], `String`, `&str`, ...).
    pub fn new(name: impl Into<ByteString>, value: impl Into<ByteString>) -> Header {
        Header {
            name: name.into(),
            value: value.into(),
        }
    }

    /// The header's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The header's value.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The name as a shared, reference-counted string.
    pub fn name_shared(&self) -> &ByteString {
        &self.name
    }

    /// The value as a shared, reference-counted string.
    pub fn value_shared(&self) -> &ByteString {
        &self.value
    }
}

/// The headers of a frame, in wire order, repeats kept.
///
/// Lookups return the **first** occurrence, as STOMP 1.2 requires
/// ("only the first header entry SHOULD be used as the value").
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Headers {
    list: Vec<Header>,
}

impl Headers {
    /// No headers.
    pub const fn new() -> Headers {
        Headers { list: Vec::new() }
    }

    /// No headers, with room for `n`.
    pub fn with_capacity(n: usize) -> Headers {
        Headers {
            list: Vec::with_capacity(n),
        }
    }

    /// The value of the first header called `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.list
            .iter()
            .find(|h| h.name() == name)
            .map(Header::value)
    }

    /// The first header called `name`, as a shared string (no copy).
    pub fn get_shared(&self, name: &str) -> Option<&ByteString> {
        self.list
            .iter()
            .find(|h| h.name() == name)
            .map(Header::value_shared)
    }

    /// Every value of headers called `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.list
            .iter()
            .filter(move |h| h.name() == name)
            .map(Header::value)
    }

    /// Whether a header called `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.list.iter().any(|h| h.name() == name)
    }

    /// Appends a header (a repeat of an existing name is kept, and loses to it).
    pub fn push(&mut self, name: impl Into<ByteString>, value: impl Into<ByteString>) {
        self.list.push(Header::new(name, value));
    }

    /// Appends an already built header.
    pub fn push_header(&mut self, header: Header) {
        self.list.push(header);
    }

    /// Sets `name` to `value`: replaces every occurrence by one at the place of
    /// the first, or appends it when absent.
    pub fn set(&mut self, name: impl Into<ByteString>, value: impl Into<ByteString>) {
        let header = Header::new(name, value);
        match self.list.iter().position(|h| h.name == header.name) {
            Some(i) => {
                let name = header.name.clone();
                self.list[i] = header;
                let mut seen = 0;
                self.list.retain(|h| {
                    if h.name == name {
                        seen += 1;
                        seen == 1
                    } else {
                        true
                    }
                });
            }
            None => self.list.push(header),
        }
    }

    /// Removes every header called `name`; returns whether any was there.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.list.len();
        self.list.retain(|h| h.name() != name);
        before != self.list.len()
    }

    /// The headers in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Header> {
        self.list.iter()
    }

    /// How many headers (repeats included).
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a Header;
    type IntoIter = std::slice::Iter<'a, Header>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

impl IntoIterator for Headers {
    type Item = Header;
    type IntoIter = std::vec::IntoIter<Header>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.into_iter()
    }
}

impl FromIterator<Header> for Headers {
    fn from_iter<T: IntoIterator<Item = Header>>(iter: T) -> Headers {
        Headers {
            list: iter.into_iter().collect(),
        }
    }
}

impl<N: Into<ByteString>, V: Into<ByteString>> Extend<(N, V)> for Headers {
    fn extend<T: IntoIterator<Item = (N, V)>>(&mut self, iter: T) {
        for (n, v) in iter {
            self.push(n, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_occurrence_wins() {
        let mut h = Headers::new();
        h.push("foo", "World");
        h.push("foo", "Hello");
        assert_eq!(h.get("foo"), Some("World"));
        assert_eq!(h.get_all("foo").collect::<Vec<_>>(), ["World", "Hello"]);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn set_replaces_all_at_first_place() {
        let mut h = Headers::new();
        h.push("a", "1");
        h.push("b", "2");
        h.push("a", "3");
        h.set("a", "9");
        let v: Vec<_> = h.iter().map(|h| (h.name(), h.value())).collect();
        assert_eq!(v, [("a", "9"), ("b", "2")]);
        h.set("c", "x");
        assert_eq!(h.get("c"), Some("x"));
        assert!(h.remove("a"));
        assert!(!h.remove("a"));
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn interning_only_known_names() {
        assert_eq!(interned(b"destination").as_deref(), Some("destination"));
        assert_eq!(interned(b"Destination"), None);
    }
}
