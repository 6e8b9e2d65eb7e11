//! RetailMind's data lake and its analyses.
//!
//! - [`tables`]: every lake table defined once; the Parquet (arrow) schemas and the Athena DDL
//!   are generated from it.
//! - [`etl`]: raw lake JSON to clean, de-duplicated, compacted Parquet tables, incrementally and
//!   idempotently, over a [`store::LakeStore`] (local folder or S3).
//! - [`analyses`]: the SQL under `analytics/sql/` (the common subset of Athena and DataFusion),
//!   run with DataFusion over the local `tables/` folder into typed rows.
//!
//! The pure parts (decoding and checking lines, de-duplication, the manifest, rows to arrow)
//! have no I/O and are tested on their own.

pub mod analyses;
pub mod config;
pub mod day;
pub mod etl;
pub mod event_rows;
pub mod generate;
pub mod parquet_io;
pub mod rows;
pub mod store;
pub mod tables;
