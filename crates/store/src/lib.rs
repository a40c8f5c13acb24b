//! sled behind a small API: processed-event ledger, typed trees, checkpoints
#![forbid(unsafe_code)]
