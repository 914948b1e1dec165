//! The archives of the replies nearly every request gets, written without
//! rkyv's serializer.
//!
//! A completion `Ok` of nil, an integer, a simple string or a bulk string
//! (`GET`, `SET`, `INCR`, `DEL`, ...) is archived as its bytes (if any),
//! zero padding to 8, then the 32-byte root:
//!
//! ```text
//! root + 0   Completion tag (u8: Ok = 0), 7 bytes of padding
//! root + 8   Value tag (u8: Nil 0, Int 1, Bulk 2, Simple 3), then
//!            Int:           padding to root + 16, the i64 little-endian
//!            Bulk / Simple: padding to root + 12, the relative pointer to
//!                           the bytes (i32 LE, from root + 12), the
//!                           length (u32 LE)
//! the rest   zero
//! ```
//!
//! These are exactly the bytes rkyv 0.8 writes for the same completion (its
//! derived enums are `repr(u8)` tags followed by each variant's fields at
//! their alignment, a byte string goes before the object that points to
//! it, padding is zeros); the tests hold the two equal, so a change of
//! rkyv's format fails them instead of reaching a client. The client
//! validates every archive whichever way it was written. Measured on the
//! core (`perf record`, `vshm-bench async 4x64 standalone`): rkyv's
//! serializer was 4.3 % of vshmd's samples, most of it for these shapes.

use rkyv::util::AlignedVec;

use super::{Completion, Value};

/// The size of an archived `Completion` (the root).
const ROOT: usize = 32;

/// Archive `c` into `buf` (cleared first) if it is one of the shapes
/// above; false (and `buf` untouched) otherwise.
pub(super) fn encode(c: &Completion, buf: &mut AlignedVec) -> bool {
    let Completion::Ok(v) = c else {
        return false;
    };
    let mut root = [0u8; ROOT];
    let bytes: &[u8] = match v {
        Value::Nil => &[],
        Value::Int(i) => {
            root[8] = 1;
            root[16..24].copy_from_slice(&i.to_le_bytes());
            &[]
        }
        Value::Bulk(b) | Value::Simple(b) => {
            root[8] = if matches!(v, Value::Bulk(_)) { 2 } else { 3 };
            b
        }
        _ => return false,
    };
    let at = bytes.len().next_multiple_of(8);
    if let Value::Bulk(_) | Value::Simple(_) = v {
        // The relative pointer runs back from root + 12 to offset 0.
        let (Ok(back), Ok(len)) = (i32::try_from(at + 12), u32::try_from(bytes.len())) else {
            return false;
        };
        root[12..16].copy_from_slice(&(-back).to_le_bytes());
        root[16..20].copy_from_slice(&len.to_le_bytes());
    }
    buf.clear();
    buf.reserve(at + ROOT);
    buf.extend_from_slice(bytes);
    buf.extend_from_slice(&[0u8; 8][..at - bytes.len()]);
    buf.extend_from_slice(&root);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{access_completion, ClientError, ErrorKind, RkyvError};
    use proptest::prelude::*;

    fn by_rkyv(c: &Completion) -> AlignedVec {
        rkyv::api::high::to_bytes_in::<_, RkyvError>(c, AlignedVec::new()).unwrap()
    }

    fn same_as_rkyv(c: Completion) {
        let mut buf = AlignedVec::new();
        buf.extend_from_slice(b"stale bytes from a previous reply");
        assert!(encode(&c, &mut buf), "{c:?}");
        assert_eq!(buf.as_slice(), by_rkyv(&c).as_slice(), "{c:?}");
        // And the client's validation accepts it.
        access_completion(&buf).unwrap();
    }

    #[test]
    fn the_common_replies_match_rkyv() {
        same_as_rkyv(Completion::Ok(Value::Nil));
        for i in [0, 1, -1, 42, i64::MIN, i64::MAX] {
            same_as_rkyv(Completion::Ok(Value::Int(i)));
        }
        for n in [0usize, 1, 2, 7, 8, 9, 15, 16, 17, 100, 4096, 70_000] {
            let b: Vec<u8> = (0..n).map(|i| (i * 7 + 3) as u8).collect();
            same_as_rkyv(Completion::Ok(Value::Bulk(b.clone())));
            same_as_rkyv(Completion::Ok(Value::Simple(b)));
        }
    }

    #[test]
    fn other_completions_are_left_to_rkyv() {
        let mut buf = AlignedVec::new();
        buf.extend_from_slice(b"kept");
        for c in [
            Completion::Err(ClientError::new(ErrorKind::Request, "ERR x")),
            Completion::Push(Value::Int(1)),
            Completion::Ok(Value::Array(vec![Value::Int(1)])),
            Completion::Ok(Value::Error(b"ERR".to_vec())),
            Completion::Ok(Value::Double(1.5)),
        ] {
            assert!(!encode(&c, &mut buf), "{c:?}");
        }
        assert_eq!(buf.as_slice(), b"kept");
    }

    proptest! {
        #[test]
        fn any_int_or_string_matches_rkyv(
            i in any::<i64>(),
            b in proptest::collection::vec(any::<u8>(), 0..300),
            simple in any::<bool>(),
        ) {
            same_as_rkyv(Completion::Ok(Value::Int(i)));
            same_as_rkyv(Completion::Ok(if simple { Value::Simple(b) } else { Value::Bulk(b) }));
        }
    }
}
