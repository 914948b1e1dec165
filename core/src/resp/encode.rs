//! [`encode_command`]: a command as a RESP array of bulk strings, and
//! [`leading_args`] to read its first arguments back.

use super::wire::{digits, head, push_usize, Head};

/// Append one command (`["SET", "k", "v"]`) as a RESP array of bulk
/// strings: `*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n`. Reserves the exact
/// size once; lengths are written without formatting machinery.
pub fn encode_command<A: AsRef<[u8]>>(out: &mut Vec<u8>, args: &[A]) {
    let mut total = 1 + digits(args.len()) + 2;
    for a in args {
        let n = a.as_ref().len();
        total += 1 + digits(n) + 2 + n + 2;
    }
    out.reserve(total);
    out.push(b'*');
    push_usize(out, args.len());
    out.extend_from_slice(b"\r\n");
    for a in args {
        let a = a.as_ref();
        out.push(b'$');
        push_usize(out, a.len());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// The first `n` arguments of a command that [`encode_command`] encoded
/// (fewer when it has fewer, or when `encoded` is not such a command).
pub fn leading_args(encoded: &[u8], n: usize) -> Vec<&[u8]> {
    let mut args = Vec::with_capacity(n);
    let mut pos = match head(encoded, 0, &mut 0) {
        Ok(Some((Head::Agg { ty: b'*', .. }, next))) => next,
        _ => return args,
    };
    while args.len() < n {
        match head(encoded, pos, &mut 0) {
            Ok(Some((Head::Blob { ty: b'$', len }, next))) if next + len + 2 <= encoded.len() => {
                args.push(&encoded[next..next + len]);
                pos = next + len + 2;
            }
            _ => break,
        }
    }
    args
}
