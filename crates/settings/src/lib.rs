//! Per-store settings (SPEC §4): loading, secrets and validation
#![forbid(unsafe_code)]
