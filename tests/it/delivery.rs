//! Delivery engine tests against real loopback sinks.
