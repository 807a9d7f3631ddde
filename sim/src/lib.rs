//! framescale's offline tools, used by the `framescale` CLI only: a model of the Kubernetes HPA
//! v2 controller ([`hpa`], checked against every reference vector), the simulation of load
//! profiles and recorded traces through it and the fused score ([`simulation`]), a per-frame
//! model of the worker ([`frames`]) on which scaling policies are compared ([`compare`]),
//! settings searched ([`sweep`]) with each policy's front ([`fronts`]) and the
//! recommendation written ([`recommendation`]), and the model checked against a demo run ([`calibration`]), and
//! the scaling report ([`report`]: CSV and a self-contained HTML page, written to files).
//!
//! It builds on the contracts in `framescale-core` (the score, quantities) and owns no server:
//! the exporter and adapter do not depend on it.

pub mod calibration;
pub mod compare;
pub mod frames;
pub mod fronts;
pub mod hpa;
pub mod recommendation;
pub mod report;
pub mod simulation;
pub mod sweep;
