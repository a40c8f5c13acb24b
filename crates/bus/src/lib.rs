//! Our API over NATS JetStream: streams, confirmed publish, consume loop, dead letters, trace headers
#![forbid(unsafe_code)]
