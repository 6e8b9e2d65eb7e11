//! RetailMind's browser tracker, compiled to WebAssembly with wasm-bindgen.
//!
//! The JS API is in [`api`]. Every event is a [`retailmind_schema::Event`], written as JSON text
//! once when it is recorded ([`wire`]), kept in a durable queue ([`queue`], `js/glue.js`) and
//! sent in [`retailmind_schema::Batch`]es to the collector's `POST /v1/batch`.
//!
//! The rules (config, queue and batching, retry schedule, sessions, privacy, engagement,
//! campaign parameters, click rules, JSON) are plain Rust without web-sys and are unit-tested
//! natively; the modules that touch the browser are thin and tested in Chromium
//! (`tests/web.rs`, and the end-to-end `tests/tests/tracker_*.rs`).
//!
//! No serde and no `core::fmt` on the wasm path: they would triple the download.

// Pure rules.
pub mod backoff;
pub mod clicks;
pub mod config;
pub mod engagement;
pub mod json;
pub mod privacy;
pub mod queue;
pub mod session;
pub mod text;
pub mod utm;
pub mod wire;

// Browser glue.
pub mod api;
pub mod autocapture;
pub mod browser;
pub mod delivery;
pub mod glue;
pub mod storage;
pub mod tracker;

/// The allocator of the wasm build. `AssumeSingleThreaded` is sound here: wasm32-unknown-unknown
/// without the `atomics` target feature has no threads, so no two allocations can overlap.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOCATOR: lol_alloc::AssumeSingleThreaded<lol_alloc::FreeListAllocator> =
    // SAFETY: single-threaded, see above.
    unsafe { lol_alloc::AssumeSingleThreaded::new(lol_alloc::FreeListAllocator::new()) };
