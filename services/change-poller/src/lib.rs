//! The change-poller service
#![forbid(unsafe_code)]
