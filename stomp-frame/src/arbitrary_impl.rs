//! `arbitrary::Arbitrary` for the frame model (feature `arbitrary`), for
//! structure-aware fuzzing.
//!
//! Header names and values are drawn half of the time from an alphabet that
//! is rich in the bytes escaping is about (`:` `\n` `\r` `\\`), plus a
//! non-ASCII letter, and otherwise from arbitrary UTF-8. Bodies are only
//! generated for the commands that may carry one (SEND, MESSAGE, ERROR), so
//! most generated frames are encodable; the rest are those no version can
//! write (for example a newline in a CONNECT header), which the encoder
//! reports as [`EncodeError::Unencodable`](crate::EncodeError::Unencodable).

use arbitrary::{Arbitrary, Result, Unstructured};
use bytestring::ByteString;

use crate::{Command, Frame, Header, Headers};

/// Characters that exercise escaping and line splitting.
const TRICKY: [char; 10] = [':', '\n', '\r', '\\', 'a', 'c', 'n', 'r', 'é', ' '];

fn text(u: &mut Unstructured<'_>) -> Result<ByteString> {
    if u.arbitrary()? {
        let len = u.int_in_range(0..=12)?;
        let mut s = String::with_capacity(len);
        for _ in 0..len {
            s.push(*u.choose(&TRICKY)?);
        }
        Ok(ByteString::from(s))
    } else {
        Ok(ByteString::from(String::arbitrary(u)?))
    }
}

impl<'a> Arbitrary<'a> for Header {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Header> {
        Ok(Header::new(text(u)?, text(u)?))
    }
}

impl<'a> Arbitrary<'a> for Headers {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Headers> {
        let n = u.int_in_range(0..=16)?;
        (0..n).map(|_| Header::arbitrary(u)).collect()
    }
}

impl<'a> Arbitrary<'a> for Frame {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Frame> {
        let command = Command::arbitrary(u)?;
        let headers = Headers::arbitrary(u)?;
        let body = if command.allows_body() {
            Vec::<u8>::arbitrary(u)?
        } else {
            Vec::new()
        };
        Ok(Frame {
            command,
            headers,
            body: body.into(),
        })
    }
}
