//! framescale's core: the contracts every component shares and the pure logic behind them.
//!
//! It owns the metric names and units of the exposition contract and of the custom metrics API
//! ([`metrics`]), the parsing of render logs — Blender's console output ([`blender`]) and
//! framescale's own one-line frame records ([`frame_line`]), combined in [`render_log`] — the
//! sliding-window quantiles that turn frame times into a P95 ([`window`]), the fused render score
//! ([`score`]), Kubernetes quantity strings ([`quantity`]) and timestamps ([`timefmt`]). It does no
//! I/O: tailing files, serving HTTP and reading devices belong to the exporter and adapter crates;
//! the offline tools (the HPA model, simulation, reports) are `framescale-sim`.

pub mod blender;
pub mod frame;
pub mod frame_line;
pub mod metrics;
pub mod quantity;
pub mod render_log;
pub mod score;
pub mod timefmt;
pub mod window;
