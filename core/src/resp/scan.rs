//! [`Scanner`]: where one complete top-level frame ends, resumable.

use super::wire::{self, Head};
use super::RespError;

/// Stack entries kept after a frame; a scanner that once saw a very deep
/// frame gives the memory back.
const KEEP_STACK: usize = 1024;

/// The frame at the start of `buf`, when it is a bulk string (`$`) whose
/// header line is complete: `(header bytes, payload length)`. A caller
/// reading a large one can receive its payload straight into the value's
/// own buffer ([`crate::net::node`]). Errors are left to the scanner.
pub fn bulk_head(buf: &[u8]) -> Option<(usize, usize)> {
    if buf.first() != Some(&b'$') {
        return None;
    }
    let mut searched = 1;
    match wire::head(buf, 0, &mut searched) {
        Ok(Some((Head::Blob { ty: b'$', len }, next))) => Some((next, len)),
        _ => None,
    }
}

/// Resumable frame delimiter.
///
/// Feed it the connection's read buffer (`buf` always starts at the first
/// byte of the frame being scanned; later calls pass the same prefix plus
/// whatever arrived since). The scanner remembers how far it got: the
/// element it stopped in, the open aggregates (a stack of the elements each
/// still has to *begin*; an aggregate whose last element has begun is
/// popped, so chains of last elements, `*1\r\n*1\r\n...`, take no stack),
/// how far it already searched for a header's LF and the end of a pending
/// bulk payload. Each byte is therefore looked at O(1) times however the
/// frame is split into reads.
///
/// The scanner validates everything [`decode`](super::decode()) does except
/// the kind of a push (its first element must be a string): type bytes,
/// lengths, CRLFs, integer/double/boolean/null/big number syntax, the
/// verbatim `fmt:` prefix.
#[derive(Debug, Clone)]
pub struct Scanner {
    /// Start of the first element not yet consumed.
    pos: usize,
    /// The LF search for the header at `pos` resumes here.
    searched: usize,
    /// A bulk whose header was consumed: `(type, payload start, payload
    /// end)`; its CRLF must follow at `end`.
    blob: Option<(u8, usize, usize)>,
    /// Per open aggregate, the number of its elements not yet begun (>= 1).
    stack: Vec<u32>,
    need: usize,
}

impl Default for Scanner {
    fn default() -> Self {
        Self::new()
    }
}

impl Scanner {
    pub fn new() -> Self {
        Scanner {
            pos: 0,
            searched: 0,
            blob: None,
            stack: Vec::with_capacity(8),
            need: 1,
        }
    }

    /// The minimum total buffer length (counted from the frame's first
    /// byte) before another [`scan`](Self::scan) can make progress: for a
    /// large bulk, the end of its payload and CRLF.
    pub fn need(&self) -> usize {
        self.need
    }

    /// Forget any partial frame.
    pub fn reset(&mut self) {
        self.pos = 0;
        self.searched = 0;
        self.blob = None;
        self.stack.clear();
        if self.stack.capacity() > KEEP_STACK {
            self.stack.shrink_to(8);
        }
        self.need = 1;
    }

    fn done(&mut self) -> usize {
        let n = self.pos;
        self.reset();
        n
    }

    /// `Ok(Some(len))`: `buf[..len]` is exactly one complete top-level
    /// frame, and the scanner is reset for the next one (which starts at
    /// `buf[len]`: pass `&buf[len..]` next). `Ok(None)`: more bytes are
    /// needed (see [`need`](Self::need)); call again with the same prefix
    /// plus more. `Err`: the bytes are not RESP; the connection cannot be
    /// used any more.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, RespError> {
        loop {
            if let Some((ty, start, end)) = self.blob {
                if buf.len() < end + 2 {
                    self.need = end + 2;
                    return Ok(None);
                }
                wire::check_blob(buf, ty, start, end)?;
                self.blob = None;
                self.pos = end + 2;
                self.searched = self.pos;
                if self.stack.is_empty() {
                    return Ok(Some(self.done()));
                }
                continue;
            }
            let Some((head, next)) = wire::head(buf, self.pos, &mut self.searched)? else {
                self.need = buf.len().max(self.pos) + 1;
                return Ok(None);
            };
            // One element of the innermost open aggregate begins.
            if let Some(top) = self.stack.last_mut() {
                *top -= 1;
                if *top == 0 {
                    self.stack.pop();
                }
            }
            self.pos = next;
            self.searched = next;
            match head {
                Head::Line { .. } | Head::Nil => {}
                Head::Blob { ty, len } => {
                    self.blob = Some((ty, next, next + len));
                    continue;
                }
                Head::Agg { ty, n } => {
                    let c = Head::children(n, ty);
                    if c > 0 {
                        // c <= 2 * i32::MAX + 1 == u32::MAX.
                        self.stack.push(c as u32);
                        continue;
                    }
                }
            }
            // A scalar or an empty aggregate ended.
            if self.stack.is_empty() {
                return Ok(Some(self.done()));
            }
        }
    }
}
