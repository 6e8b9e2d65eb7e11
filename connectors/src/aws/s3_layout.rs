//! Where the two delivery streams put their objects in the lake bucket, and the Firehose S3
//! destination that produces that layout.
//!
//! On AWS both streams use Firehose *dynamic partitioning*: a MetadataExtraction processor runs
//! a JQ 1.6 query on each JSON record and the prefix uses its keys, so objects land by event
//! time exactly as [`crate::lake::event_partition`] and [`crate::lake::error_partition`] lay
//! them out on local disk:
//!
//! - events: prefix `events/dt=!{partitionKeyFromQuery:dt}/hour=!{partitionKeyFromQuery:hour}/`
//!   with the query `{dt: (.timestamp / 1000 | floor | strftime("%Y-%m-%d")),
//!   hour: (.timestamp / 1000 | floor | strftime("%H"))}` on the event's `timestamp` (ms, UTC);
//! - undecodable records: prefix `errors/dt=!{partitionKeyFromQuery:dt}/` from `received_at_ms`;
//! - Firehose's own failures (a record the query cannot parse, say):
//!   `errors/!{firehose:error-output-type}/dt=!{timestamp:yyyy-MM-dd}/`.
//!
//! Dynamic partitioning needs a buffer of at least 64 MiB; records wait up to 60 s.
//!
//! The queries are run through jq 1.6 by the tests, against the embedded lake's layout.
//!
//! Emulators (moto) do not implement dynamic partitioning, so when
//! [`AwsConfig::endpoint_url`](crate::AwsConfig) is set, `provision` creates the streams with
//! the static prefixes `events/` and `errors/` (error output `errors/`), under which Firehose
//! adds its own `YYYY/MM/DD/HH/` arrival-time folders.

use aws_sdk_firehose::types::{
    BufferingHints, CompressionFormat, DynamicPartitioningConfiguration,
    ExtendedS3DestinationConfiguration, ProcessingConfiguration, Processor, ProcessorParameter,
    ProcessorParameterName, ProcessorType,
};

use super::errors::build_error;
use super::provision::LakeDestination;
use crate::error::Result;

const SERVICE: &str = "firehose";

/// The S3 layout of one delivery stream.
#[derive(Clone, Copy, Debug)]
pub(crate) struct S3Layout {
    /// Prefix without dynamic partitioning.
    pub prefix: &'static str,
    /// Prefix of Firehose's failed records without dynamic partitioning.
    pub error_output_prefix: &'static str,
    /// Prefix with dynamic partitioning, using the keys `partition_query` extracts.
    pub partitioned_prefix: &'static str,
    /// Prefix of Firehose's failed records with dynamic partitioning.
    pub partitioned_error_output_prefix: &'static str,
    /// JQ 1.6 query giving the partition keys of one record.
    pub partition_query: &'static str,
}

/// Events, partitioned by the event's `timestamp`.
pub(crate) const EVENTS: S3Layout = S3Layout {
    prefix: "events/",
    error_output_prefix: "errors/",
    partitioned_prefix: "events/dt=!{partitionKeyFromQuery:dt}/hour=!{partitionKeyFromQuery:hour}/",
    partitioned_error_output_prefix:
        "errors/!{firehose:error-output-type}/dt=!{timestamp:yyyy-MM-dd}/",
    partition_query: r#"{dt: (.timestamp / 1000 | floor | strftime("%Y-%m-%d")), hour: (.timestamp / 1000 | floor | strftime("%H"))}"#,
};

/// Undecodable stream records, partitioned by `received_at_ms`.
pub(crate) const ERRORS: S3Layout = S3Layout {
    prefix: "errors/",
    error_output_prefix: "errors/",
    partitioned_prefix: "errors/dt=!{partitionKeyFromQuery:dt}/",
    partitioned_error_output_prefix:
        "errors/!{firehose:error-output-type}/dt=!{timestamp:yyyy-MM-dd}/",
    partition_query: r#"{dt: (.received_at_ms / 1000 | floor | strftime("%Y-%m-%d"))}"#,
};

/// The S3 destination of a delivery stream with `layout`, partitioned dynamically or not.
pub(crate) fn s3_destination(
    lake: &LakeDestination,
    layout: &S3Layout,
    dynamic_partitioning: bool,
) -> Result<ExtendedS3DestinationConfiguration> {
    let destination = ExtendedS3DestinationConfiguration::builder()
        .bucket_arn(&lake.bucket_arn)
        .role_arn(&lake.role_arn)
        .compression_format(CompressionFormat::Uncompressed);
    let destination = if dynamic_partitioning {
        destination
            .prefix(layout.partitioned_prefix)
            .error_output_prefix(layout.partitioned_error_output_prefix)
            .buffering_hints(
                BufferingHints::builder()
                    .size_in_mbs(64)
                    .interval_in_seconds(60)
                    .build(),
            )
            .dynamic_partitioning_configuration(
                DynamicPartitioningConfiguration::builder()
                    .enabled(true)
                    .build(),
            )
            .processing_configuration(partition_key_extraction(layout.partition_query)?)
    } else {
        destination
            .prefix(layout.prefix)
            .error_output_prefix(layout.error_output_prefix)
    };
    destination.build().map_err(|e| build_error(SERVICE, e))
}

/// A MetadataExtraction processor running `query` with JQ 1.6.
fn partition_key_extraction(query: &str) -> Result<ProcessingConfiguration> {
    let parameter = |name, value: &str| {
        ProcessorParameter::builder()
            .parameter_name(name)
            .parameter_value(value)
            .build()
            .map_err(|e| build_error(SERVICE, e))
    };
    let processor = Processor::builder()
        .r#type(ProcessorType::MetadataExtraction)
        .parameters(parameter(
            ProcessorParameterName::MetadataExtractionQuery,
            query,
        )?)
        .parameters(parameter(
            ProcessorParameterName::JsonParsingEngine,
            "JQ-1.6",
        )?)
        .build()
        .map_err(|e| build_error(SERVICE, e))?;
    Ok(ProcessingConfiguration::builder()
        .enabled(true)
        .processors(processor)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lake() -> LakeDestination {
        LakeDestination {
            bucket_arn: "arn:aws:s3:::lake".into(),
            role_arn: "arn:aws:iam::123456789012:role/firehose".into(),
            shards: 1,
        }
    }

    #[test]
    fn static_layout_for_emulators() {
        let destination = s3_destination(&lake(), &EVENTS, false).expect("builds");
        assert_eq!(destination.prefix(), Some("events/"));
        assert_eq!(destination.error_output_prefix(), Some("errors/"));
        assert!(destination.dynamic_partitioning_configuration().is_none());
        assert!(destination.processing_configuration().is_none());
    }

    #[test]
    fn dynamic_partitioning_by_event_time_on_aws() {
        let destination = s3_destination(&lake(), &EVENTS, true).expect("builds");
        assert_eq!(
            destination.prefix(),
            Some("events/dt=!{partitionKeyFromQuery:dt}/hour=!{partitionKeyFromQuery:hour}/")
        );
        assert!(destination
            .error_output_prefix()
            .is_some_and(|p| p.contains("!{firehose:error-output-type}")));
        assert_eq!(
            destination
                .dynamic_partitioning_configuration()
                .and_then(|d| d.enabled()),
            Some(true)
        );
        assert!(destination
            .buffering_hints()
            .and_then(|b| b.size_in_mbs())
            .is_some_and(|mb| mb >= 64));
        let processor = &destination
            .processing_configuration()
            .expect("has a processor")
            .processors()[0];
        assert_eq!(processor.r#type(), &ProcessorType::MetadataExtraction);
        let query = processor
            .parameters()
            .iter()
            .find(|p| p.parameter_name() == &ProcessorParameterName::MetadataExtractionQuery)
            .map(|p| p.parameter_value());
        assert!(query.is_some_and(|q| q.contains(".timestamp / 1000")));
    }

    /// Partition prefixes Firehose would give records of these `times` (ms), the `layout`'s
    /// query run by jq 1.6, the JQ Firehose runs (`RETAILMIND_JQ`, default `jq`; `cargo xtask
    /// test` installs Debian's), with each key put into the partitioned prefix.
    fn firehose_prefixes(layout: &S3Layout, field: &str, times: &[i64]) -> Vec<String> {
        use std::io::Write;
        let jq = std::env::var("RETAILMIND_JQ").unwrap_or_else(|_| "jq".into());
        let missing = |e: std::io::Error| -> ! {
            panic!("{jq} did not run ({e}): run `cargo xtask test`, which installs jq 1.6, or set RETAILMIND_JQ")
        };
        let version = std::process::Command::new(&jq)
            .arg("--version")
            .output()
            .unwrap_or_else(|e| missing(e));
        let version = String::from_utf8_lossy(&version.stdout);
        assert!(
            version.trim() == "jq-1.6",
            "{jq} is {version:?}: Firehose runs JQ 1.6, so the check needs that version"
        );
        let mut child = std::process::Command::new(&jq)
            .args(["-c", layout.partition_query])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| missing(e));
        let mut input = child.stdin.take().expect("jq's stdin");
        for ms in times {
            writeln!(input, "{{\"{field}\": {ms}, \"type\": \"page_view\"}}").unwrap();
        }
        drop(input);
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "jq failed on {}",
            layout.partition_query
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|keys| {
                let keys: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(keys).expect("jq gives an object of keys");
                keys.iter()
                    .fold(layout.partitioned_prefix.to_owned(), |prefix, (k, v)| {
                        prefix.replace(
                            &format!("!{{partitionKeyFromQuery:{k}}}"),
                            v.as_str().expect("keys are strings"),
                        )
                    })
            })
            .collect()
    }

    #[test]
    fn firehose_partitions_as_the_embedded_lake_does() {
        // Hour and day edges, a leap day, a year's end, the epoch, today's times.
        let times = [
            0,
            999,
            3_599_999,
            3_600_000,
            951_868_799_999,   // 2000-02-29T23:59:59.999Z
            1_709_164_800_000, // 2024-02-29T00:00:00Z
            1_735_689_599_999, // 2024-12-31T23:59:59.999Z
            1_735_689_600_000, // 2025-01-01T00:00:00Z
            1_764_064_812_345,
            4_102_444_800_000, // 2100-01-01T00:00:00Z
        ];
        type OnDisk = fn(i64) -> String;
        let layouts: [(S3Layout, &str, OnDisk); 2] = [
            (EVENTS, "timestamp", crate::lake::event_partition),
            (ERRORS, "received_at_ms", crate::lake::error_partition),
        ];
        for (layout, field, on_disk) in layouts {
            let local: Vec<String> = times.iter().map(|&ms| on_disk(ms)).collect();
            assert_eq!(firehose_prefixes(&layout, field, &times), local, "{field}");
        }
    }

    #[test]
    fn every_partition_key_the_prefix_uses_is_extracted() {
        for layout in [EVENTS, ERRORS] {
            for key in layout
                .partitioned_prefix
                .split("!{partitionKeyFromQuery:")
                .skip(1)
                .filter_map(|rest| rest.split('}').next())
            {
                assert!(
                    layout.partition_query.contains(&format!("{key}:")),
                    "{key} in {}",
                    layout.partition_query
                );
            }
        }
    }
}
