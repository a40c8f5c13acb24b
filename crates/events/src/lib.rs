//! Protobuf events, subjects and stream names shared by every service
#![forbid(unsafe_code)]
