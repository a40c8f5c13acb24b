//! Pure order rules: eligibility, line mapping, status machine
#![forbid(unsafe_code)]
