//! DUELL (Kasseservice) REST API client
#![forbid(unsafe_code)]
