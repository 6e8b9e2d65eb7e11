//! Record batches to Parquet bytes and back. The writer settings are fixed (Snappy, as the
//! Athena DDL declares; no timestamps in the metadata), so the same rows always give the same
//! bytes and a re-run of the ETL rewrites identical files.

use arrow::array::RecordBatch;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

/// Rows per row group: large enough for fast scans, small enough to skip by statistics.
const ROW_GROUP_ROWS: usize = 128 * 1024;
/// Rows per data page at most: the page index then tells a reader which few pages of a
/// clustered partition hold the event type it filters on.
const PAGE_ROWS: usize = 8 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ParquetError {
    #[error("writing parquet: {0}")]
    Write(String),
    #[error("reading parquet {key}: {reason}")]
    Read { key: String, reason: String },
}

pub fn write(batch: &RecordBatch) -> Result<Bytes, ParquetError> {
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_data_page_row_count_limit(PAGE_ROWS)
        .build();
    let mut out = Vec::new();
    let err = |e: parquet::errors::ParquetError| ParquetError::Write(e.to_string());
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).map_err(err)?;
    writer.write(batch).map_err(err)?;
    writer.close().map_err(err)?;
    Ok(Bytes::from(out))
}

pub fn read(key: &str, bytes: Bytes) -> Result<Vec<RecordBatch>, ParquetError> {
    let err = |e: &dyn std::fmt::Display| ParquetError::Read {
        key: key.to_owned(),
        reason: e.to_string(),
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| err(&e))?
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| err(&e))?;
    reader.map(|b| b.map_err(|e| err(&e))).collect()
}
