//! A DUELL API simulator for tests and the demo
#![forbid(unsafe_code)]
