//! Decoding arbitrary bytes as every DUELL answer the client reads: the envelope and its
//! status/code rules, product list pages, stock rows, customers, categories, order lookups,
//! bulk save results with `validation_message` in any shape, the order view, departments, the
//! customer id of a customer save, the login answer and its JWT `exp`, and the rate-limit
//! headers.
//!
//! Input: the whole input is the body; its first line also feeds the rate-limit headers
//! (`remaining,reset,retry-after`) and is tried as a JWT.
#![no_main]

use duellsync_duell::fuzzing::{decode_all, inspect_error, read_answer, token};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let first = data.split(|b| *b == b'\n').next().unwrap_or_default();
    let mut fields = first.splitn(3, |b| *b == b',');
    let remaining = fields.next().unwrap_or_default();
    let reset = fields.next().unwrap_or_default();
    let retry = fields.next().unwrap_or_default();
    let headers: [(&str, &[u8]); 3] = [
        ("x-duell-ratelimit-remaining", remaining),
        ("x-duell-ratelimit-reset", reset),
        ("retry-after", retry),
    ];
    for (status, write) in [
        (200, false),
        (200, true),
        (400, false),
        (401, false),
        (429, false),
        (500, true),
    ] {
        match read_answer(status, &headers, data, write) {
            Ok(envelope) => {
                decode_all(&envelope);
            }
            Err(e) => inspect_error(&e),
        }
    }
    let _ = token(&String::from_utf8_lossy(first));
});
