//! syncctl as operators run it: the real binary against a private NATS, the simulators and,
//! where a command needs them, the services as real processes (`duellsync_e2e::World`).

mod config_check;
mod conn_test;
mod dlq;
mod explain;
mod full_sync;
mod helpers;
mod log;
mod repair;
mod store;
mod webhooks;
mod world;
