//! A completion's bytes on their way into the completion ring.
//!
//! Most completions are archived into one buffer ([`Body::Whole`]). A reply
//! that is one large bulk string (a `GET` of a big value) is archived
//! around the value instead ([`Body::Split`], `msg::encode_completion_split`):
//! the value goes from the reply's own buffer straight into the ring, one
//! copy less than archiving it first, and no fresh multi-megabyte buffer to
//! fault in.

use rkyv::util::AlignedVec;
use vshm_protocol::msg::{self, Completion, Value};

/// Bulk values at least this large are not copied into an archive buffer.
pub(super) const SPLIT_MIN: usize = 64 << 10;

pub(super) enum Body {
    Whole(AlignedVec),
    /// The archive is `head ++ big ++ tail`.
    Split {
        head: Vec<u8>,
        big: Vec<u8>,
        tail: Vec<u8>,
    },
}

impl Body {
    /// The archive's length.
    pub fn len(&self) -> usize {
        self.parts().iter().map(|p| p.len()).sum()
    }

    /// The archive, in order.
    pub fn parts(&self) -> [&[u8]; 3] {
        match self {
            Body::Whole(b) => [b.as_slice(), &[], &[]],
            Body::Split { head, big, tail } => [head, big, tail],
        }
    }

    /// A completion that is one bulk value of at least [`SPLIT_MIN`] bytes,
    /// archived around the value; any other completion is handed back.
    pub fn split(c: Completion) -> Result<Body, Completion> {
        let archive = match &c {
            Completion::Ok(Value::Bulk(v)) if v.len() >= SPLIT_MIN => {
                msg::encode_completion_split(&c, v)
            }
            _ => None,
        };
        match (archive, c) {
            (Some(a), Completion::Ok(Value::Bulk(big))) => Ok(Body::Split {
                head: a.head,
                big,
                tail: a.tail,
            }),
            (_, c) => Err(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_bulk_splits_into_the_same_archive() {
        let v: Vec<u8> = (0..SPLIT_MIN + 3).map(|i| i as u8).collect();
        let c = Completion::Ok(Value::Bulk(v));
        let whole = msg::encode_completion(&c);
        let body = Body::split(c).expect("split");
        assert!(matches!(body, Body::Split { .. }));
        assert_eq!(body.len(), whole.len());
        assert_eq!(body.parts().concat(), whole.as_slice());
    }

    #[test]
    fn other_completions_come_back() {
        let small = Completion::Ok(Value::Bulk(vec![7; SPLIT_MIN - 1]));
        assert!(Body::split(small).is_err());
        let array = Completion::Ok(Value::Array(vec![Value::Bulk(vec![7; SPLIT_MIN])]));
        assert!(Body::split(array).is_err());
        let err = Completion::Err(vshm_protocol::msg::ClientError::new(
            vshm_protocol::msg::ErrorKind::Request,
            "x",
        ));
        assert!(Body::split(err).is_err());
    }
}
