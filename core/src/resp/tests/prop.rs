//! Property tests: generated values through a test-only writer, scanned in
//! random chunks and decoded; truncation; random and mutated bytes.

use super::gen::{expected_frame, nil_style, value, wire, Profile};
use super::*;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

const FULL: Profile = Profile {
    resp3: true,
    crate_safe: false,
};

/// Sorted, distinct cut points in `0..=len`.
fn cut_points(cuts: &[Index], len: usize) -> Vec<usize> {
    let mut c: Vec<usize> = cuts.iter().map(|i| i.index(len + 1)).collect();
    c.sort_unstable();
    c.dedup();
    c
}

/// What a reader sees: every scan result over `buf` arriving in pieces
/// ending at `cuts`, frames consumed as they are delimited, each delimited
/// frame decoded. Stops at the first scan error.
/// One reader event: a delimited frame (its length and decode result) or
/// the scan error that ends the stream.
type Event = Result<(usize, Result<Frame, RespError>), RespError>;

fn read_all(buf: &[u8], cuts: &[usize]) -> Vec<Event> {
    let mut s = Scanner::new();
    let mut start = 0;
    let mut out = Vec::new();
    for end in cuts.iter().copied().chain([buf.len()]) {
        if end < start {
            continue;
        }
        loop {
            match s.scan(&buf[start..end]) {
                Ok(Some(n)) => {
                    assert!(n > 0 && start + n <= end);
                    out.push(Ok((n, decode(&buf[start..start + n]))));
                    start += n;
                }
                Ok(None) => {
                    assert!(s.need() > end - start, "need must ask for more");
                    break;
                }
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn roundtrip_in_random_chunks(v in value(FULL), nil in nil_style(), cuts in vec(any::<Index>(), 0..8)) {
        let w = wire(&v, nil);
        let mut s = Scanner::new();
        for c in cut_points(&cuts, w.len()) {
            if c < w.len() {
                prop_assert_eq!(s.scan(&w[..c]), Ok(None));
                prop_assert!(s.need() > c && s.need() <= w.len(), "need {} at {}", s.need(), c);
            }
        }
        prop_assert_eq!(s.scan(&w), Ok(Some(w.len())));
        prop_assert_eq!(decode(&w), Ok(expected_frame(&v)));
        // The scanner knows a push behind attributes as the decoder does.
        prop_assert_eq!(s.frame_kind() == b'>', matches!(expected_frame(&v), Frame::Push(_)));
    }

    #[test]
    fn leading_args_read_back_what_was_encoded(
        args in vec(vec(any::<u8>(), 0..40), 0..6),
        n in 0usize..8,
    ) {
        let mut out = Vec::new();
        encode_command(&mut out, &args);
        let got = leading_args(&out, n);
        let want: Vec<&[u8]> = args.iter().take(n).map(Vec::as_slice).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn resp2_roundtrip(
        v in value(Profile { resp3: false, crate_safe: false }),
        nil in prop_oneof![Just(super::gen::Nil::Bulk), Just(super::gen::Nil::Array)],
    ) {
        let w = wire(&v, nil);
        prop_assert_eq!(read_all(&w, &[]), vec![Ok((w.len(), Ok(expected_frame(&v))))]);
    }

    #[test]
    fn concatenated_frames_are_delimited_exactly(
        vs in vec(value(FULL), 1..6),
        nil in nil_style(),
        cuts in vec(any::<Index>(), 0..10),
    ) {
        let frames: Vec<Vec<u8>> = vs.iter().map(|v| wire(v, nil)).collect();
        let all = frames.concat();
        let want: Vec<_> = vs
            .iter()
            .zip(&frames)
            .map(|(v, f)| Ok((f.len(), Ok(expected_frame(v)))))
            .collect();
        prop_assert_eq!(read_all(&all, &cut_points(&cuts, all.len())), want);
    }

    #[test]
    fn truncated_is_incomplete_never_an_error(v in value(FULL), nil in nil_style(), at in any::<Index>()) {
        let w = wire(&v, nil);
        // One random prefix with a fresh scanner...
        let cut = at.index(w.len());
        prop_assert_eq!(Scanner::new().scan(&w[..cut]), Ok(None));
        prop_assert_eq!(decode(&w[..cut]), Err(RespError::Truncated));
        // ... and every prefix, resuming one scanner byte by byte.
        let mut s = Scanner::new();
        for end in 0..w.len() {
            prop_assert_eq!(s.scan(&w[..end]), Ok(None));
        }
        prop_assert_eq!(s.scan(&w), Ok(Some(w.len())));
    }

    #[test]
    fn random_bytes_never_panic(buf in vec(any::<u8>(), 0..256), cuts in vec(any::<Index>(), 0..6)) {
        check_consistent(&buf, &cuts)?;
    }

    #[test]
    fn mutated_frames_never_panic(
        vs in vec(value(FULL), 1..3),
        nil in nil_style(),
        edits in vec((any::<Index>(), any::<u8>()), 1..4),
        cuts in vec(any::<Index>(), 0..6),
    ) {
        let mut buf: Vec<u8> = vs.iter().flat_map(|v| wire(v, nil)).collect();
        for (i, b) in &edits {
            let i = i.index(buf.len());
            buf[i] = *b;
        }
        check_consistent(&buf, &cuts)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// With a limit, chunked reading that drops oversized frames' bytes agrees with reading
    /// each frame whole: the same frames are oversized (with their full length), the others
    /// decode as without a limit, and the frames after an oversized one stay in step.
    #[test]
    fn limited_reader_stays_in_step(
        vs in vec(value(FULL), 1..6),
        nil in nil_style(),
        limit in 0usize..600,
        cuts in vec(any::<Index>(), 0..12),
    ) {
        let frames: Vec<Vec<u8>> = vs.iter().map(|v| wire(v, nil)).collect();
        let all = frames.concat();
        let want: Vec<Result<Frame, Oversized>> = vs
            .iter()
            .zip(&frames)
            .map(|(v, f)| {
                let mut s = Scanner::new();
                s.set_limit(limit);
                assert_eq!(s.scan(f), Ok(Some(f.len())));
                match s.oversized() {
                    None => Ok(expected_frame(v)),
                    Some(o) => {
                        assert_eq!(o.bytes, f.len());
                        assert_eq!(o.push, matches!(expected_frame(v), Frame::Push(_)));
                        Err(o)
                    }
                }
            })
            .collect();
        let got = read_limited(&all, &cut_points(&cuts, all.len()), limit).map(|r| r.0);
        prop_assert_eq!(format!("{got:?}"), format!("{:?}", Ok::<_, RespError>(want)));
    }
}

/// Chunked scanning agrees with one-shot scanning, and whatever the scanner
/// delimits decodes (only a push's kind is left to the decoder).
fn check_consistent(buf: &[u8], cuts: &[Index]) -> Result<(), TestCaseError> {
    let whole = read_all(buf, &[]);
    let chunked = read_all(buf, &cut_points(cuts, buf.len()));
    // Debug strings: a decoded `,nan` is not equal to itself.
    prop_assert_eq!(format!("{whole:?}"), format!("{chunked:?}"));
    for r in whole.iter().flatten() {
        prop_assert!(
            matches!(r.1, Ok(_) | Err(RespError::BadPushKind)),
            "scanned but not decoded: {:?}",
            r
        );
    }
    Ok(())
}
