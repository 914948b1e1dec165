//! [`decode`]: one delimited frame -> [`Frame`], iteratively.

use vshm_protocol::msg::{Pair, Value};

use super::wire::{self, Head, MIN_ELEMENT};
use super::{Frame, RespError, Scanner, MAX_DEPTH};

/// An aggregate being filled.
struct Agg {
    ty: u8,
    /// Children not yet received.
    left: usize,
    items: Vec<Value>,
    pairs: Vec<Pair>,
    /// A map/attribute key waiting for its value.
    key: Option<Value>,
    /// A push's kind (its first element).
    kind: Option<Vec<u8>>,
}

impl Agg {
    fn new(ty: u8, n: usize, children: usize, room: usize) -> Agg {
        // Never trust a count beyond what the remaining bytes can hold.
        let cap = room / MIN_ELEMENT;
        let (items, pairs) = match ty {
            b'%' | b'|' => (Vec::new(), Vec::with_capacity(n.min(cap / 2))),
            b'>' => (Vec::with_capacity(n.saturating_sub(1).min(cap)), Vec::new()),
            _ => (Vec::with_capacity(n.min(cap)), Vec::new()),
        };
        Agg {
            ty,
            left: children,
            items,
            pairs,
            key: None,
            kind: None,
        }
    }

    /// Add the next child; true when the aggregate is complete.
    fn add(&mut self, v: Value) -> Result<bool, RespError> {
        match self.ty {
            b'%' => self.add_pair_part(v),
            b'|' if self.left > 1 => self.add_pair_part(v),
            b'>' if self.kind.is_none() => match v {
                Value::Bulk(k) | Value::Simple(k) => self.kind = Some(k),
                _ => return Err(RespError::BadPushKind),
            },
            // Array, set, push data, the value an attribute annotates.
            _ => self.items.push(v),
        }
        self.left -= 1;
        Ok(self.left == 0)
    }

    fn add_pair_part(&mut self, v: Value) {
        match self.key.take() {
            None => self.key = Some(v),
            Some(key) => self.pairs.push(Pair { key, value: v }),
        }
    }

    fn into_value(mut self) -> Value {
        match self.ty {
            b'*' => Value::Array(self.items),
            b'~' => Value::Set(self.items),
            b'%' => Value::Map(self.pairs),
            b'>' => Value::Push {
                kind: self.kind.unwrap_or_default(),
                data: self.items,
            },
            // '|': complete, so `items` holds exactly the annotated value.
            _ => Value::Attribute {
                data: Box::new(self.items.pop().unwrap_or(Value::Nil)),
                attributes: self.pairs,
            },
        }
    }
}

fn empty(ty: u8) -> Value {
    match ty {
        b'~' => Value::Set(Vec::new()),
        b'%' => Value::Map(Vec::new()),
        b'>' => Value::Push {
            kind: Vec::new(),
            data: Vec::new(),
        },
        _ => Value::Array(Vec::new()),
    }
}

fn scalar(ty: u8, s: &[u8]) -> Result<Value, RespError> {
    Ok(match ty {
        b'+' => Value::Simple(s.to_vec()),
        b'-' => Value::Error(s.to_vec()),
        b':' => Value::Int(wire::parse_int(s)?),
        b',' => Value::Double(wire::parse_double(s)?),
        b'#' => Value::Boolean(s == b"t"),
        b'(' => Value::BigNumber(s.to_vec()),
        _ => Value::Nil,
    })
}

fn blob(ty: u8, p: &[u8]) -> Value {
    match ty {
        b'!' => Value::Error(p.to_vec()),
        b'=' => Value::Verbatim {
            format: p[..3].to_vec(),
            text: p[4..].to_vec(),
        },
        _ => Value::Bulk(p.to_vec()),
    }
}

/// The frame a complete top-level value makes. Attributes annotating a
/// top-level error or push are dropped (the frame kinds carry none; Valkey
/// and Redis send no attributes there).
fn top_level(v: Value) -> Frame {
    let mut inner = &v;
    while let Value::Attribute { data, .. } = inner {
        inner = data;
    }
    if !matches!(inner, Value::Error(_) | Value::Push { .. }) {
        return Frame::Value(v);
    }
    let mut cur = v;
    while let Value::Attribute { data, .. } = cur {
        cur = *data;
    }
    match cur {
        Value::Error(e) => Frame::Error(e),
        push => Frame::Push(push),
    }
}

/// A frame nested deeper than [`MAX_DEPTH`]: validate it without building
/// anything.
fn too_deep(frame: &[u8]) -> Result<Frame, RespError> {
    let mut s = Scanner::new();
    match s.scan(frame)? {
        // A push stays out of band however deep (and however annotated):
        // it answers no request, so taking it for a reply would pair every
        // later reply with the request before its own. Its contents are
        // dropped.
        Some(n) if n == frame.len() && s.frame_kind() == b'>' => Ok(Frame::Push(Value::Push {
            kind: Vec::new(),
            data: Vec::new(),
        })),
        Some(n) if n == frame.len() => Ok(Frame::TooDeep),
        Some(_) => Err(RespError::TrailingBytes),
        None => Err(RespError::Truncated),
    }
}

/// Decode one complete frame: exactly the bytes [`Scanner::scan`]
/// delimited (anything less is [`RespError::Truncated`], anything more
/// [`RespError::TrailingBytes`]).
///
/// Iterative (an explicit stack of open aggregates), so no input can
/// overflow the call stack. A reply nested deeper than [`MAX_DEPTH`] is
/// validated and returned as [`Frame::TooDeep`]. Element counts never
/// drive allocation beyond what the remaining bytes can hold.
pub fn decode(frame: &[u8]) -> Result<Frame, RespError> {
    let mut stack: Vec<Agg> = Vec::new();
    let mut pos = 0;
    loop {
        let mut searched = pos;
        let (head, next) = wire::head(frame, pos, &mut searched)?.ok_or(RespError::Truncated)?;
        pos = next;
        let mut v = match head {
            Head::Line { ty, start, end } => {
                wire::check_line(ty, &frame[start..end])?;
                scalar(ty, &frame[start..end])?
            }
            Head::Nil => Value::Nil,
            Head::Blob { ty, len } => {
                let end = pos + len;
                if frame.len() < end + 2 {
                    return Err(RespError::Truncated);
                }
                wire::check_blob(frame, ty, pos, end)?;
                pos = end + 2;
                blob(ty, &frame[next..end])
            }
            Head::Agg { ty, n } => {
                if stack.len() >= MAX_DEPTH {
                    return too_deep(frame);
                }
                let c = Head::children(n, ty);
                if c > 0 {
                    stack.push(Agg::new(ty, n, c, frame.len() - pos));
                    continue;
                }
                empty(ty)
            }
        };
        // `v` is complete: hand it to its parents, closing every aggregate
        // it completes.
        loop {
            let Some(top) = stack.last_mut() else {
                if pos != frame.len() {
                    return Err(RespError::TrailingBytes);
                }
                return Ok(top_level(v));
            };
            if !top.add(v)? {
                break;
            }
            // Just checked: the stack is not empty.
            v = match stack.pop() {
                Some(agg) => agg.into_value(),
                None => return Err(RespError::Truncated),
            };
        }
    }
}
