//! The syncctl service
#![forbid(unsafe_code)]
