//! Dev-only fixtures: a private nats-server per test, temp stores, a process sandbox
#![forbid(unsafe_code)]
