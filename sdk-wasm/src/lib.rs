//! RetailMind's browser tracker, compiled to WebAssembly with wasm-bindgen.
//!
//! The JS API is in [`api`]. Every event is a [`retailmind_schema::Event`], sent in
//! [`retailmind_schema::Batch`]es to the collector's `POST /v1/batch`.
//!
//! The rules (config, outbox and batching, retry schedule, sessions, campaign parameters, click
//! rules) are plain Rust without web-sys and are unit-tested natively; the modules that touch
//! the browser are thin and tested in Chromium (`tests/web.rs`).

// Pure rules.
pub mod backoff;
pub mod clicks;
pub mod config;
pub mod outbox;
pub mod session;
pub mod text;
pub mod utm;

// Browser glue.
pub mod api;
pub mod autocapture;
pub mod browser;
pub mod delivery;
pub mod storage;
pub mod tracker;
pub mod transport;
