//! A faithful model of the Kubernetes HPA v2 controller, for the local demo's controller and for
//! offline simulation, specified by `docs/reference/hpa-algorithm.md` and checked against every
//! vector of `docs/reference/hpa-vectors.json`.
//!
//! [`replicas`] is what each metric proposes, [`behavior`] turns a proposal into the replicas
//! set (legacy path, or stabilization and rate policies), [`controller`] is one HPA's
//! reconciliation with its history, and [`vectors`] runs files of test vectors.

pub mod behavior;
pub mod controller;
pub mod replicas;
pub mod vectors;
