//! `msg::decode_request` (and `decode_completion`) on arbitrary bytes,
//! copied into 16-byte aligned memory as the core does before validating.
//! Whatever decodes must re-encode and decode to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkyv::util::AlignedVec;
use vshm_protocol::msg::{decode_completion, decode_request, encode_completion, encode_request};

fuzz_target!(|data: &[u8]| {
    let mut buf = AlignedVec::<16>::with_capacity(data.len());
    buf.extend_from_slice(data);
    if let Ok(req) = decode_request(&buf) {
        let again = encode_request(&req);
        assert_eq!(
            decode_request(&again).expect("re-encoded request decodes"),
            req
        );
    }
    if let Ok(c) = decode_completion(&buf) {
        // Compare bytes, not values: a NaN double is not equal to itself.
        let again = encode_completion(&c);
        let back = decode_completion(&again).expect("re-encoded completion decodes");
        assert_eq!(encode_completion(&back).as_slice(), again.as_slice());
    }
});
