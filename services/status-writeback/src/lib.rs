//! The status-writeback service
#![forbid(unsafe_code)]
