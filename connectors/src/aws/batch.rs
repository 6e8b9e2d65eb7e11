//! Splits records into requests that fit a service's batch limits (Kinesis PutRecords and
//! Firehose PutRecordBatch both cap records per call, bytes per call and bytes per record).

use crate::error::{ConnectorError, Result};

/// The size limits of one batch-write call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BatchLimits {
    /// Most records in one call.
    pub max_records: usize,
    /// Most bytes in one call, summed over records as [`chunk`]'s `size` measures them.
    pub max_request_bytes: usize,
    /// Most bytes in one record; a larger record is refused rather than dropped.
    pub max_record_bytes: usize,
}

/// Kinesis Data Streams PutRecords: 500 records, 5 MiB per call, 1 MiB per record (data plus
/// partition key, both count).
pub(crate) const KINESIS_PUT_RECORDS: BatchLimits = BatchLimits {
    max_records: 500,
    max_request_bytes: 5 * 1024 * 1024,
    max_record_bytes: 1024 * 1024,
};

/// Firehose PutRecordBatch: 500 records, 4 MiB per call, 1,000 KiB per record (before base64).
pub(crate) const FIREHOSE_PUT_RECORD_BATCH: BatchLimits = BatchLimits {
    max_records: 500,
    max_request_bytes: 4 * 1024 * 1024,
    max_record_bytes: 1000 * 1024,
};

/// Splits `items` in order into chunks within `limits`, `size` giving each item's byte count.
///
/// Checks every item before splitting, so an oversized one fails the whole call with
/// [`ConnectorError::Misconfigured`] before anything is sent.
pub(crate) fn chunk<T>(
    service: &'static str,
    items: Vec<T>,
    limits: &BatchLimits,
    size: impl Fn(&T) -> usize,
) -> Result<Vec<Vec<T>>> {
    if let Some((index, bytes)) = items
        .iter()
        .map(&size)
        .enumerate()
        .find(|(_, bytes)| *bytes > limits.max_record_bytes)
    {
        return Err(ConnectorError::Misconfigured(format!(
            "{service}: record {index} is {bytes} bytes, over the limit of {} bytes per record",
            limits.max_record_bytes
        )));
    }
    let mut chunks = Vec::new();
    let mut current = Vec::new();
    let mut current_bytes = 0;
    for item in items {
        let bytes = size(&item);
        if !current.is_empty()
            && (current.len() == limits.max_records
                || current_bytes + bytes > limits.max_request_bytes)
        {
            chunks.push(std::mem::take(&mut current));
            current_bytes = 0;
        }
        current_bytes += bytes;
        current.push(item);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: BatchLimits = BatchLimits {
        max_records: 3,
        max_request_bytes: 10,
        max_record_bytes: 6,
    };

    #[test]
    fn splits_by_record_count() {
        let chunks = chunk("test", vec![1; 7], &SMALL, |n| *n).expect("fits");
        assert_eq!(chunks, vec![vec![1; 3], vec![1; 3], vec![1]]);
    }

    #[test]
    fn splits_by_request_bytes_keeping_order() {
        let chunks = chunk("test", vec![4, 5, 1, 6, 6], &SMALL, |n| *n).expect("fits");
        assert_eq!(chunks, vec![vec![4, 5, 1], vec![6], vec![6]]);
        // Exactly at the byte limit stays in one chunk.
        let chunks = chunk("test", vec![5, 5], &SMALL, |n| *n).expect("fits");
        assert_eq!(chunks, vec![vec![5, 5]]);
    }

    #[test]
    fn refuses_an_oversized_record_before_sending_anything() {
        let err = chunk("test", vec![1, 7, 1], &SMALL, |n| *n).expect_err("too big");
        assert!(matches!(err, ConnectorError::Misconfigured(ref m) if m.contains("record 1")));
    }

    #[test]
    fn nothing_in_nothing_out() {
        let chunks = chunk("test", Vec::<usize>::new(), &SMALL, |n| *n).expect("fits");
        assert!(chunks.is_empty());
    }

    #[test]
    fn kinesis_limits_make_1200_small_records_three_calls() {
        let chunks = chunk("kinesis", vec![100usize; 1200], &KINESIS_PUT_RECORDS, |n| {
            *n
        })
        .expect("fits");
        let lens: Vec<usize> = chunks.iter().map(Vec::len).collect();
        assert_eq!(lens, vec![500, 500, 200]);
    }
}
