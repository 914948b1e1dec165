//! [`Scanner`]: where one complete top-level frame ends, resumable.

use std::ops::Range;

use super::wire::{self, Head};
use super::RespError;

/// Stack entries kept after a frame; a scanner that once saw a very deep
/// frame gives the memory back.
const KEEP_STACK: usize = 1024;

/// What one element adds to a frame's weight besides its bytes: about what
/// a decoded [`Value`](vshm_protocol::msg::Value) takes, so a limit on the
/// weight bounds the memory of the decoded reply as well as of its bytes
/// (a million `:1` elements are 4 MB of RESP but 32 MB of values).
pub const ELEMENT_WEIGHT: usize = 32;

/// A frame that exceeded the scanner's limit, once it has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Oversized {
    /// The frame's bytes on the wire (dropped as they came).
    pub bytes: usize,
    /// It was a top-level RESP3 push (out of band, answers no request).
    pub push: bool,
}

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
/// verbatim `fmt:` prefix (all but the text of a line an oversized frame
/// had cut, below).
///
/// **Oversized frames.** With a [`limit`](Self::set_limit), a frame whose
/// weight (its bytes, counting a bulk's whole announced length as soon as
/// its header is read, plus [`ELEMENT_WEIGHT`] per element) passes the
/// limit is still delimited and validated, but need not be buffered: once
/// [`over_limit`](Self::over_limit), the reader drops the bytes
/// [`discard`](Self::discard) gives up, and when the frame ends
/// [`oversized`](Self::oversized) says so. The connection stays in step
/// and the reader's memory stays bounded whatever the server sends.
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
    /// Bytes of the current frame dropped by [`Scanner::discard`].
    discarded: usize,
    /// Elements of the current frame begun so far.
    elements: usize,
    /// The buffer length of the last incomplete scan.
    seen: usize,
    /// [`Scanner::discard`] dropped part of the text of the line at `pos`:
    /// its text is not checked.
    cut_line: bool,
    /// The current frame's kind: the type byte of its value after any
    /// top-level attributes (`|`, which annotate the value that follows
    /// them); `|` while only attributes have begun.
    kind: u8,
    /// The kind of the last complete frame.
    last_kind: u8,
    limit: usize,
    /// Set when a frame ends: the frame passed the limit.
    last: Option<Oversized>,
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
            discarded: 0,
            elements: 0,
            seen: 0,
            cut_line: false,
            kind: 0,
            last_kind: 0,
            limit: usize::MAX,
            last: None,
        }
    }

    /// Frames weighing more than `limit` (see the type's docs) become
    /// [`oversized`](Self::oversized). Default: no limit.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// The current frame's weight so far.
    fn weight(&self) -> usize {
        let bytes = match self.blob {
            Some((_, _, end)) => end + 2,
            None => self.pos.max(self.seen),
        };
        self.discarded
            .saturating_add(bytes)
            .saturating_add(self.elements.saturating_mul(ELEMENT_WEIGHT))
    }

    /// The frame being scanned already weighs more than the limit: call
    /// [`discard`](Self::discard) after each incomplete scan, and read in
    /// small steps (not up to [`need`](Self::need)).
    pub fn over_limit(&self) -> bool {
        self.weight() > self.limit
    }

    /// After a scan that returned `Ok(Some(_))`: that frame's type byte,
    /// after any top-level attributes (`b'>'`: an out-of-band push).
    pub fn frame_kind(&self) -> u8 {
        self.last_kind
    }

    /// After a scan that returned `Ok(Some(_))`: whether that frame passed
    /// the limit (its value then must not be decoded: its bytes are gone).
    pub fn oversized(&self) -> Option<Oversized> {
        self.last
    }

    /// Bytes of the incomplete frame the scanner no longer needs, for the
    /// caller to remove from its buffer before the next scan (call again
    /// until the range is empty): everything before the element it
    /// stopped in; of a bulk being received, its payload so far (a
    /// verbatim string's `fmt:` prefix is checked first); of a simple
    /// text line (`+ - , (`) whose CRLF has not come, its text so far
    /// but the last byte. Such a line's text is then not fully checked:
    /// the frame fails its request anyway, and a line ends at its CRLF
    /// whatever it holds, so the stream stays in step. `buf` is what the
    /// last scan got. Only for a frame [`over_limit`](Self::over_limit):
    /// its value cannot be decoded any more.
    pub fn discard(&mut self, buf: &[u8]) -> Result<Range<usize>, RespError> {
        debug_assert!(self.over_limit(), "discard is for oversized frames only");
        if let Some((ty, start, end)) = self.blob {
            let k = if ty == b'=' && buf.len() <= start + 3 {
                // The `fmt:` prefix has not arrived: keep it.
                start
            } else {
                if ty == b'=' && buf[start + 3] != b':' {
                    return Err(RespError::BadVerbatim);
                }
                buf.len().min(end)
            };
            // Checked: from here on a verbatim string is a plain payload.
            let ty = if k > start { b'$' } else { ty };
            self.blob = Some((ty, start.saturating_sub(k), end - k));
            return Ok(self.dropped(0..k));
        }
        if self.pos > 0 {
            return Ok(self.dropped(0..self.pos));
        }
        // Text lines only: a number line fits in a few bytes or is an error
        // (`wire::head`).
        let line = matches!(buf.first(), Some(b'+' | b'-' | b',' | b'('));
        if line && self.searched > 2 {
            // [1, searched) holds no LF; keep the last byte (a CR?).
            self.cut_line = true;
            return Ok(self.dropped(1..self.searched - 1));
        }
        Ok(0..0)
    }

    /// Shift the offsets past `r` (removed from the buffer).
    fn dropped(&mut self, r: Range<usize>) -> Range<usize> {
        let k = r.len();
        let at = |x: usize| if x >= r.end { x - k } else { x.min(r.start) };
        self.pos = at(self.pos);
        self.searched = at(self.searched);
        self.seen = at(self.seen);
        self.need = at(self.need).max(1);
        self.discarded += k;
        r
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
        self.discarded = 0;
        self.elements = 0;
        self.seen = 0;
        self.cut_line = false;
    }

    fn done(&mut self) -> usize {
        let n = self.pos;
        self.last_kind = self.kind;
        self.last = (self.weight() > self.limit).then(|| Oversized {
            bytes: self.discarded + n,
            push: self.kind == b'>',
        });
        self.reset();
        n
    }

    /// `Ok(Some(len))`: `buf[..len]` is exactly one complete top-level
    /// frame (its end, if [`discard`](Self::discard) dropped its start:
    /// see [`oversized`](Self::oversized)), and the scanner is reset for
    /// the next one (which starts at `buf[len]`: pass `&buf[len..]` next). `Ok(None)`: more bytes are
    /// needed (see [`need`](Self::need)); call again with the same prefix
    /// plus more. `Err`: the bytes are not RESP; the connection cannot be
    /// used any more.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, RespError> {
        loop {
            if let Some((ty, start, end)) = self.blob {
                if buf.len() < end + 2 {
                    self.need = end + 2;
                    self.seen = buf.len();
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
                self.seen = buf.len();
                return Ok(None);
            };
            if self.elements == 0 || (self.kind == b'|' && self.stack[..] == [1]) {
                // The frame's first element, or the value its top-level
                // attribute annotates (the attribute's last child).
                self.kind = buf[self.pos];
            }
            self.elements += 1;
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
                Head::Line { ty, start, end } => {
                    if !std::mem::take(&mut self.cut_line) {
                        wire::check_line(ty, &buf[start..end])?;
                    }
                }
                Head::Nil => {}
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
