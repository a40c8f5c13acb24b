//! webhook-ingest against a private nats-server, in-process (zero2prod style: one test binary,
//! one module per endpoint).

mod helpers;
mod notices;
mod samples;
mod shutdown;
mod throughput;
mod woo_sim;
mod woocommerce;
