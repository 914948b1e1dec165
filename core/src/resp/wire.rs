//! The lexer shared by [`Scanner`](super::Scanner) and
//! [`decode`](super::decode()): one element header at a time, fully
//! validated (type byte, length range, CRLF, scalar syntax), no allocation.

use super::RespError;

/// Longest bulk, blob error or verbatim payload accepted (Valkey's
/// `proto-max-bulk-len` default).
pub const MAX_BULK: usize = 512 << 20;

/// Most elements (or pairs) one aggregate may announce.
pub const MAX_ELEMENTS: usize = i32::MAX as usize;

/// The smallest encoded element (`_\r\n`): a count may not promise more
/// elements than the remaining bytes can hold.
pub const MIN_ELEMENT: usize = 3;

/// What an element header announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// A one-line scalar, complete: `buf[start..end]` is its text (the CRLF
    /// excluded). `ty` is the type byte (`+ - : _ , # (`).
    Line { ty: u8, start: usize, end: usize },
    /// A length-prefixed string (`$ ! =`): `len` payload bytes follow the
    /// header, then CRLF.
    Blob { ty: u8, len: usize },
    /// `$-1` or `*-1` (RESP2 nil).
    Nil,
    /// An aggregate (`* ~ > % |`) of `n` elements (`%`: `n` pairs, `|`: `n`
    /// pairs then the annotated value).
    Agg { ty: u8, n: usize },
}

impl Head {
    /// The number of child elements an aggregate header opens.
    #[inline]
    pub fn children(n: usize, ty: u8) -> usize {
        match ty {
            b'%' => 2 * n,
            b'|' => 2 * n + 1,
            _ => n,
        }
    }
}

/// Find the end of the line starting at `start`, searching from `from`
/// (`>= start`; a resumed search skips what it already saw). Returns the
/// index of the CR of the terminating CRLF, `Ok(None)` when no LF has
/// arrived yet. A LF not preceded by CR is not RESP.
#[inline]
pub fn line_end(buf: &[u8], start: usize, from: usize) -> Result<Option<usize>, RespError> {
    let from = from.max(start);
    match memchr::memchr(b'\n', &buf[from..]) {
        None => Ok(None),
        Some(i) => {
            let lf = from + i;
            if lf > start && buf[lf - 1] == b'\r' {
                Ok(Some(lf - 1))
            } else {
                Err(RespError::BareLf)
            }
        }
    }
}

/// Parse a signed decimal integer: optional `-` or `+`, then at least one
/// digit, nothing else. Overflow is an error.
#[inline]
pub fn parse_int(s: &[u8]) -> Result<i64, RespError> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() {
        return Err(RespError::BadInteger);
    }
    let mut v: i64 = 0;
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return Err(RespError::BadInteger);
        }
        // Accumulate negatively so i64::MIN parses.
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_sub(i64::from(d)))
            .ok_or(RespError::BadInteger)?;
    }
    if neg {
        Ok(v)
    } else {
        v.checked_neg().ok_or(RespError::BadInteger)
    }
}

/// Parse a double (`1.5`, `-2e10`, `inf`, `-inf`, `nan`).
#[inline]
pub fn parse_double(s: &[u8]) -> Result<f64, RespError> {
    std::str::from_utf8(s)
        .ok()
        .and_then(|t| t.parse::<f64>().ok())
        .ok_or(RespError::BadDouble)
}

/// Check the text of a line element (`Head::Line`).
pub fn check_line(ty: u8, s: &[u8]) -> Result<(), RespError> {
    match ty {
        b':' => parse_int(s).map(drop),
        b',' => parse_double(s).map(drop),
        b'#' if s == b"t" || s == b"f" => Ok(()),
        b'#' => Err(RespError::BadBoolean),
        b'_' if s.is_empty() => Ok(()),
        b'_' => Err(RespError::BadNull),
        b'(' => {
            let d = s.strip_prefix(b"-").unwrap_or(s);
            if !d.is_empty() && d.iter().all(u8::is_ascii_digit) {
                Ok(())
            } else {
                Err(RespError::BadBigNumber)
            }
        }
        _ => Ok(()),
    }
}

/// Whether `b` starts an element. Streamed strings/aggregates (`$?`, `*?`,
/// `;`, `.`) never come from Valkey/Redis: `;` and `.` are not types here.
#[inline]
fn is_type(b: u8) -> bool {
    matches!(
        b,
        b'+' | b'-'
            | b':'
            | b'_'
            | b','
            | b'#'
            | b'('
            | b'$'
            | b'!'
            | b'='
            | b'*'
            | b'~'
            | b'>'
            | b'%'
            | b'|'
    )
}

/// The longest text of a number line: `-9223372036854775808`.
const NUMBER_LINE: usize = 20;

/// Parse the element header at `pos`. `Ok(Some((head, next)))`: `next` is
/// the first byte after the header line. `Ok(None)`: the header line is
/// incomplete; `*searched` is raised to where the next search for its LF
/// may resume.
#[inline]
pub fn head(
    buf: &[u8],
    pos: usize,
    searched: &mut usize,
) -> Result<Option<(Head, usize)>, RespError> {
    let Some(&ty) = buf.get(pos) else {
        return Ok(None);
    };
    if !is_type(ty) {
        // Refuse garbage at once, not when a LF happens to arrive.
        return Err(RespError::BadType(ty));
    }
    let start = pos + 1;
    // A length, an integer, a boolean or a null fits in 20 bytes: its CRLF
    // is looked for there only, so that no input makes the reader buffer
    // an endless header (the other lines are text of any length).
    let short = match ty {
        b'$' | b'!' | b'=' | b'*' | b'~' | b'>' | b'%' | b'|' | b':' => Some(RespError::BadInteger),
        b'#' => Some(RespError::BadBoolean),
        b'_' => Some(RespError::BadNull),
        _ => None,
    };
    let window = match short {
        Some(_) => &buf[..buf.len().min(start + NUMBER_LINE + 2)],
        None => buf,
    };
    let Some(cr) = line_end(window, start, *searched)? else {
        *searched = window.len();
        return match short {
            Some(e) if window.len() == start + NUMBER_LINE + 2 => Err(e),
            _ => Ok(None),
        };
    };
    let next = cr + 2;
    let line = &buf[start..cr];
    let h = match ty {
        // The text is checked by the caller (`check_line`): a reader
        // dropping an oversized frame's bytes cannot check all of it.
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Head::Line { ty, start, end: cr },
        b'$' | b'!' | b'=' => {
            let n = parse_int(line)?;
            if n == -1 && ty == b'$' {
                Head::Nil
            } else if n < 0 {
                return Err(RespError::BadLength);
            } else if n as u64 > MAX_BULK as u64 {
                return Err(RespError::TooLarge);
            } else if ty == b'=' && n < 4 {
                // "fmt:" at least.
                return Err(RespError::BadVerbatim);
            } else {
                Head::Blob {
                    ty,
                    len: n as usize,
                }
            }
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = parse_int(line)?;
            if n == -1 && ty == b'*' {
                Head::Nil
            } else if n < 0 {
                return Err(RespError::BadLength);
            } else if n as u64 > MAX_ELEMENTS as u64 {
                return Err(RespError::TooLarge);
            } else {
                Head::Agg { ty, n: n as usize }
            }
        }
        _ => return Err(RespError::BadType(ty)),
    };
    Ok(Some((h, next)))
}

/// Check the payload of a blob that ends at `end` (its CRLF at
/// `end..end + 2`, which must be in `buf`).
#[inline]
pub fn check_blob(buf: &[u8], ty: u8, start: usize, end: usize) -> Result<(), RespError> {
    if &buf[end..end + 2] != b"\r\n" {
        return Err(RespError::MissingCrlf);
    }
    if ty == b'=' && buf[start + 3] != b':' {
        return Err(RespError::BadVerbatim);
    }
    Ok(())
}

/// Write `n` in decimal (no allocation).
#[inline]
pub fn push_usize(out: &mut Vec<u8>, mut n: usize) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// The number of decimal digits of `n`.
#[inline]
pub fn digits(mut n: usize) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}
