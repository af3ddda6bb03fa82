//! The on-disk format: segment header and checksummed records.
//!
//! ```text
//! segment file  NNNNNNNNNNNNNNNNNNNN.seg  (20-digit id, ascending)
//! ┌──────────────────┬──────────┬──────────┬─────
//! │ MAGIC (8 bytes)  │ record   │ record   │ ...
//! └──────────────────┴──────────┴──────────┴─────
//! record   [len u32 LE][crc32c u32 LE][kind u8][payload: len bytes]
//!          crc32c covers the 4 len bytes, the kind byte and the payload.
//! APPEND   seq u64 | deliveries u32 | queue_len u16 | queue | headers_len u32 | headers | body
//! REMOVE   seq u64
//! DELIVER  seq u64
//! GROUP    count u32: the next `count` APPEND records of this segment are
//!          one commit's; recovery keeps all of them or none
//! ```

use bytes::{BufMut, Bytes};

use crate::Record;

/// First bytes of every segment file: name, format version.
pub(crate) const MAGIC: &[u8; 8] = b"STOMPJ\x00\x01";
/// Bytes before a record's payload.
pub(crate) const RECORD_HEADER: usize = 9;
/// The size of a REMOVE or DELIVER record.
pub(crate) const SEQ_RECORD: u64 = (RECORD_HEADER + 8) as u64;

pub(crate) const KIND_APPEND: u8 = 1;
pub(crate) const KIND_REMOVE: u8 = 2;
pub(crate) const KIND_DELIVER: u8 = 3;
pub(crate) const KIND_GROUP: u8 = 4;
/// The size of a GROUP record.
pub(crate) const GROUP_RECORD: u64 = (RECORD_HEADER + 4) as u64;

/// Fixed part of an APPEND payload.
const APPEND_FIXED: usize = 8 + 4 + 2 + 4;

/// Encoded length of an APPEND record for `r`, header included.
pub(crate) fn append_len(r: &Record) -> u64 {
    append_len_of(r.queue.len(), r.headers.len(), r.body.len())
}

pub(crate) fn append_len_of(queue: usize, headers: usize, body: usize) -> u64 {
    (RECORD_HEADER + APPEND_FIXED) as u64 + queue as u64 + headers as u64 + body as u64
}

fn put_record(out: &mut Vec<u8>, kind: u8, payload_len: usize, fill: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    let len = u32::try_from(payload_len).expect("record length checked at append");
    out.put_u32_le(len);
    out.put_u32_le(0);
    out.put_u8(kind);
    fill(out);
    debug_assert_eq!(out.len() - start, RECORD_HEADER + payload_len);
    let mut crc = crc32c::crc32c(&out[start..start + 4]);
    crc = crc32c::crc32c_append(crc, &out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Writes an APPEND record.
pub(crate) fn put_append(out: &mut Vec<u8>, r: &Record) {
    let len = append_len(r) as usize - RECORD_HEADER;
    put_record(out, KIND_APPEND, len, |o| {
        o.put_u64_le(r.seq);
        o.put_u32_le(r.deliveries);
        o.put_u16_le(r.queue.len() as u16);
        o.put_slice(&r.queue);
        o.put_u32_le(r.headers.len() as u32);
        o.put_slice(&r.headers);
        o.put_slice(&r.body);
    });
}

/// Writes a REMOVE or DELIVER record.
pub(crate) fn put_seq(out: &mut Vec<u8>, kind: u8, seq: u64) {
    put_record(out, kind, 8, |o| o.put_u64_le(seq));
}

/// Writes a GROUP record for the `count` APPEND records that follow.
pub(crate) fn put_group(out: &mut Vec<u8>, count: u32) {
    put_record(out, KIND_GROUP, 4, |o| o.put_u32_le(count));
}

/// One record read back from a segment.
#[derive(Debug)]
pub(crate) enum Entry {
    Append(Record),
    Remove(u64),
    Deliver(u64),
    Group(u32),
}

/// Why reading a segment stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Damage {
    /// Fewer bytes left than a record header or its declared length.
    Torn,
    /// The checksum does not match.
    Checksum,
    /// The checksum matches but the content makes no sense.
    Malformed,
}

impl Damage {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Damage::Torn => "torn record",
            Damage::Checksum => "checksum mismatch",
            Damage::Malformed => "malformed record",
        }
    }
}

/// Reads the record at `buf[pos..]`: `Ok(None)` at a clean end (no bytes
/// left, or only zeros), the entry and
/// its encoded length, or the damage found. Payload bytes are copied, so the
/// segment buffer can be dropped.
pub(crate) fn read_record(
    buf: &[u8],
    pos: usize,
    max_len: u32,
) -> Result<Option<(Entry, usize)>, Damage> {
    let rest = &buf[pos..];
    if rest.is_empty() {
        return Ok(None);
    }
    // No record starts with a zero length: zeros are the space the writer
    // fills ahead of the data (`JournalOptions::preallocate`). Zeros to the
    // end are a clean end; zeros with data after them are a write whose
    // start never reached the disk.
    if rest[..rest.len().min(4)].iter().all(|&b| b == 0) {
        return if rest.iter().all(|&b| b == 0) {
            Ok(None)
        } else {
            Err(Damage::Torn)
        };
    }
    if rest.len() < RECORD_HEADER {
        return Err(Damage::Torn);
    }
    let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes"));
    let stored_crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
    // A length past the end is a torn write (or a damaged length, which the
    // checksum cannot tell apart); a length over the limit is damage.
    if len > max_len {
        return Err(Damage::Checksum);
    }
    let total = RECORD_HEADER + len as usize;
    if rest.len() < total {
        return Err(Damage::Torn);
    }
    let mut crc = crc32c::crc32c(&rest[0..4]);
    crc = crc32c::crc32c_append(crc, &rest[8..total]);
    if crc != stored_crc {
        return Err(Damage::Checksum);
    }
    let payload = &rest[RECORD_HEADER..total];
    let entry = match rest[8] {
        KIND_APPEND => Entry::Append(parse_append(payload).ok_or(Damage::Malformed)?),
        KIND_REMOVE if payload.len() == 8 => Entry::Remove(u64_at(payload, 0)),
        KIND_DELIVER if payload.len() == 8 => Entry::Deliver(u64_at(payload, 0)),
        KIND_GROUP if payload.len() == 4 => {
            Entry::Group(u32::from_le_bytes(payload.try_into().expect("4 bytes")))
        }
        _ => return Err(Damage::Malformed),
    };
    Ok(Some((entry, total)))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn parse_append(p: &[u8]) -> Option<Record> {
    if p.len() < APPEND_FIXED {
        return None;
    }
    let seq = u64_at(p, 0);
    let deliveries = u32::from_le_bytes(p[8..12].try_into().ok()?);
    let qlen = u16::from_le_bytes(p[12..14].try_into().ok()?) as usize;
    let q_end = 14 + qlen;
    let h_at = q_end + 4;
    if p.len() < h_at {
        return None;
    }
    let hlen = u32::from_le_bytes(p[q_end..h_at].try_into().ok()?) as usize;
    let h_end = h_at.checked_add(hlen)?;
    if p.len() < h_end {
        return None;
    }
    Some(Record {
        queue: Bytes::copy_from_slice(&p[14..q_end]),
        seq,
        headers: Bytes::copy_from_slice(&p[h_at..h_end]),
        body: Bytes::copy_from_slice(&p[h_end..]),
        deliveries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> Record {
        Record {
            queue: Bytes::from_static(b"/queue/a"),
            seq: 42,
            headers: Bytes::from_static(b"k:v\n"),
            body: Bytes::from_static(b"hello"),
            deliveries: 3,
        }
    }

    #[test]
    fn zeros_after_the_records_are_a_clean_end_and_zeros_before_data_are_torn() {
        let mut buf = Vec::new();
        put_seq(&mut buf, KIND_REMOVE, 7);
        let end = buf.len();
        buf.resize(end + 100, 0);
        assert!(matches!(
            read_record(&buf, 0, u32::MAX),
            Ok(Some((Entry::Remove(7), n))) if n == end
        ));
        assert!(matches!(read_record(&buf, end, u32::MAX), Ok(None)));
        assert!(matches!(
            read_record(&buf[..end + 3], end, u32::MAX),
            Ok(None)
        ));
        // A write whose first bytes never landed: zeros, then data.
        buf[end + 50] = 1;
        assert_eq!(read_record(&buf, end, u32::MAX).unwrap_err(), Damage::Torn);
    }

    #[test]
    fn round_trip_and_every_single_byte_flip_is_caught() {
        let r = rec();
        let mut buf = Vec::new();
        put_append(&mut buf, &r);
        put_seq(&mut buf, KIND_REMOVE, 42);
        assert_eq!(buf.len() as u64, append_len(&r) + SEQ_RECORD);
        let (e, n) = read_record(&buf, 0, u32::MAX).unwrap().unwrap();
        match e {
            Entry::Append(back) => assert_eq!(back, r),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            read_record(&buf, n, u32::MAX),
            Ok(Some((Entry::Remove(42), 17)))
        ));
        assert!(matches!(read_record(&buf, buf.len(), u32::MAX), Ok(None)));
        let first = append_len(&r) as usize;
        for i in 0..first {
            for bit in 0..8 {
                let mut b = buf[..first].to_vec();
                b[i] ^= 1 << bit;
                assert!(
                    read_record(&b, 0, u32::MAX).is_err(),
                    "flip at {i} bit {bit}"
                );
            }
        }
        for cut in 1..first {
            assert_eq!(
                read_record(&buf[..cut], 0, u32::MAX).unwrap_err(),
                Damage::Torn
            );
        }
    }
}
