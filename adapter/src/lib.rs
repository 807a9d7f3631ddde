//! framescale's adapter: serves render metrics through the `custom.metrics.k8s.io` API.

pub mod config;
pub mod pods;
pub mod request;
pub mod selector;
pub mod series;
pub mod serve;
pub mod source;
pub mod wire;
