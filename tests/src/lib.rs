//! End-to-end tests: every service on one NATS with the simulators
#![forbid(unsafe_code)]
