//! epitaph: finds why Auto Scaling instances died.
//!
//! Data flows one way: [`sources`] (activities, logs, metrics) → [`analysis`] (signatures, leak,
//! correlate; pure) → [`store`] and [`sinks`], wired in exactly one place, [`pipeline`]. The
//! CLI (`src/cli.rs`, `src/main.rs`) is a thin edge over this library. See DEVELOPERS.md.

pub mod analysis;
pub mod config;
pub mod error;
pub mod model;
pub mod pipeline;
pub mod schedule;
pub mod server;
pub mod simulate;
pub mod sinks;
pub mod sources;
pub mod store;
pub mod timefmt;

pub use error::{Error, Result};
