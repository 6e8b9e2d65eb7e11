//! RetailMind's data lake and its analyses.
//!
//! - [`tables`]: every lake table defined once; the Parquet (arrow) schemas and the Athena DDL
//!   are generated from it.
//! - [`etl`]: raw lake JSON to clean, de-duplicated, compacted Parquet tables, incrementally and
//!   idempotently, over a [`store::LakeStore`] (local folder or S3).
//! - [`export`]: the session store's sessions and the transactions store's orders and
//!   customers into the same lake, so they join with the events; [`forget`] removes a forgotten
//!   customer's events and sessions from it; [`job`] runs the three steps.
//! - [`model_rebuild`]: the recommendation model taught again from the lake's events.
//! - [`analyses`]: the SQL under `analytics/sql/` (the common subset of Athena and DataFusion),
//!   run with DataFusion over the local `tables/` folder into typed rows.
//! - [`dashboard`]: the page and JSON API that chart the analyses, with the live panel from the
//!   session store, running the lake job every few seconds (embedded default).
//!
//! The pure parts (decoding and checking lines, de-duplication, the manifest, rows to arrow)
//! have no I/O and are tested on their own.

pub mod analyses;
pub mod config;
pub mod dashboard;
pub mod day;
pub mod etl;
pub mod event_rows;
pub mod export;
pub mod export_rows;
pub mod forget;
pub mod generate;
pub mod job;
pub mod model_rebuild;
pub mod parquet_io;
pub mod rows;
pub mod store;
pub mod tables;
