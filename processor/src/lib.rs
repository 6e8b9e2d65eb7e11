//! The processor: reads the event stream from its checkpoints, folds events into sessions,
//! writes the sessions and every event to the lake, and only then moves the checkpoint. It also
//! keeps the recommendation model current from the same events and saves it for the collector.
//! Instances with the same consumer name share the shards through leases.

pub mod config;
mod fetched;
pub mod lambda;
mod leasing;
pub mod metrics;
pub mod model;
mod pipeline;
pub mod sessionize;
pub mod stream_positions;

pub use config::{ConfigError, ProcessorConfig};
pub use model::ModelKeeper;
pub use pipeline::{BatchOutcome, Processor, ProcessorError};
pub use sessionize::{sessionize, SessionRules};
