//! The analyses: SQL under `analytics/sql/` (the subset Athena and DataFusion both run), run
//! here with DataFusion over the local lake's `tables/` into typed rows.
//!
//! The only parameters are days, checked to be real `YYYY-MM-DD` dates before they are put into
//! the text, so the same file can be pasted into Athena with the placeholders filled in.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use serde::Serialize;

use crate::day::{day_end_ms, parse_day};
use crate::tables::{self, Storage, TableDef, PARTITION_COLUMN};

#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error("{field} must be a day as YYYY-MM-DD, got {value:?}")]
    BadDay { field: &'static str, value: String },
    #[error("the range starts ({from}) after it ends ({to})")]
    EmptyRange { from: String, to: String },
    #[error("registering table {table}: {reason}")]
    Register { table: &'static str, reason: String },
    #[error("running {analysis}: {reason}")]
    Query {
        analysis: &'static str,
        reason: String,
    },
    #[error("{analysis}: result column {column}: {reason}")]
    Column {
        analysis: &'static str,
        column: &'static str,
        reason: String,
    },
}

/// Inclusive range of days.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DayRange {
    from: String,
    to: String,
}

impl DayRange {
    pub fn new(from: &str, to: &str) -> Result<DayRange, AnalysisError> {
        let from_date = parse_day(from).ok_or_else(|| AnalysisError::BadDay {
            field: "from",
            value: from.to_owned(),
        })?;
        let to_date = parse_day(to).ok_or_else(|| AnalysisError::BadDay {
            field: "to",
            value: to.to_owned(),
        })?;
        if from_date > to_date {
            return Err(AnalysisError::EmptyRange {
                from: from.to_owned(),
                to: to.to_owned(),
            });
        }
        Ok(DayRange {
            from: from.to_owned(),
            to: to.to_owned(),
        })
    }

    pub fn from(&self) -> &str {
        &self.from
    }

    pub fn to(&self) -> &str {
        &self.to
    }
}

/// One analysis and its SQL file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Analysis {
    SalesTrend,
    ConversionFunnel,
    ProductPerformance,
    TrafficSources,
    RfmSegments,
    RecAttribution,
}

impl Analysis {
    pub const ALL: [Analysis; 6] = [
        Analysis::SalesTrend,
        Analysis::ConversionFunnel,
        Analysis::ProductPerformance,
        Analysis::TrafficSources,
        Analysis::RfmSegments,
        Analysis::RecAttribution,
    ];

    /// The file's name without `.sql`.
    pub fn name(self) -> &'static str {
        match self {
            Analysis::SalesTrend => "sales_trend",
            Analysis::ConversionFunnel => "conversion_funnel",
            Analysis::ProductPerformance => "product_performance",
            Analysis::TrafficSources => "traffic_sources",
            Analysis::RfmSegments => "rfm_segments",
            Analysis::RecAttribution => "rec_attribution",
        }
    }

    pub fn by_name(name: &str) -> Option<Analysis> {
        Analysis::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The SQL as kept in `analytics/sql/`, with its placeholders.
    pub fn template(self) -> &'static str {
        match self {
            Analysis::SalesTrend => include_str!("../sql/sales_trend.sql"),
            Analysis::ConversionFunnel => include_str!("../sql/conversion_funnel.sql"),
            Analysis::ProductPerformance => include_str!("../sql/product_performance.sql"),
            Analysis::TrafficSources => include_str!("../sql/traffic_sources.sql"),
            Analysis::RfmSegments => include_str!("../sql/rfm_segments.sql"),
            Analysis::RecAttribution => include_str!("../sql/rec_attribution.sql"),
        }
    }

    /// The SQL for `range`, ready for Athena or DataFusion.
    pub fn sql(self, range: &DayRange) -> String {
        let to_end = day_end_ms(&range.to).unwrap_or_default();
        self.template()
            .replace("{{from}}", &range.from)
            .replace("{{to}}", &range.to)
            .replace("{{to_end_ms}}", &to_end.to_string())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SalesDay {
    pub dt: String,
    pub currency: Option<String>,
    pub orders: i64,
    pub revenue_minor: i64,
    pub aov_minor: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FunnelStep {
    pub step: i64,
    pub name: String,
    pub visitors: i64,
    /// Visitors of the step before who did not reach this one (none for the first step).
    pub dropped: Option<i64>,
    pub drop_off_rate: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProductPerformance {
    pub product_id: String,
    /// The currency the product was priced in; none for views and cart adds that gave none.
    pub currency: Option<String>,
    pub views: i64,
    pub viewers: i64,
    pub cart_adds: i64,
    pub add_to_cart_rate: Option<f64>,
    pub orders: i64,
    pub units: i64,
    pub revenue_minor: i64,
    pub conversion_rate: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrafficSource {
    pub source: String,
    pub medium: String,
    pub sessions: i64,
    pub visitors: i64,
    pub orders: i64,
    pub revenue_minor: i64,
    pub conversion_rate: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RfmSegment {
    pub segment: String,
    pub currency: Option<String>,
    pub customers: i64,
    pub orders: i64,
    pub revenue_minor: i64,
    pub avg_recency_days: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RecAttribution {
    pub placement: String,
    pub strategy: String,
    pub impressions: i64,
    pub clicks: i64,
    pub ctr: f64,
    pub purchased_lines: i64,
    pub revenue_minor: i64,
}

/// The lake's tables registered in a DataFusion session.
pub struct LocalAnalytics {
    ctx: SessionContext,
    root: PathBuf,
}

impl LocalAnalytics {
    /// Registers every Parquet table under `<lake_root>/tables/` with its `dt` partitions; a
    /// table with no folder yet is registered empty, so every analysis runs on any lake.
    pub async fn open(lake_root: &Path) -> Result<LocalAnalytics, AnalysisError> {
        // More hash partitions than cores: the funnel's per-visitor joins and aggregates then
        // work on hash tables small enough for the caches (measured on 10M events, 2 cores:
        // 8 partitions ~1.5x faster than 2).
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let config = SessionConfig::new().with_target_partitions(cores.max(8));
        let ctx = SessionContext::new_with_config(config);
        for table in tables::ALL {
            if table.storage != Storage::Parquet {
                continue;
            }
            register(&ctx, lake_root, table).await?;
        }
        Ok(LocalAnalytics {
            ctx,
            root: lake_root.to_owned(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Runs `analysis` over `range` and returns its record batches.
    pub async fn batches(
        &self,
        analysis: Analysis,
        range: &DayRange,
    ) -> Result<Vec<RecordBatch>, AnalysisError> {
        let err = |e: datafusion::error::DataFusionError| AnalysisError::Query {
            analysis: analysis.name(),
            reason: e.to_string(),
        };
        let df = self.ctx.sql(&analysis.sql(range)).await.map_err(err)?;
        df.collect().await.map_err(err)
    }

    pub async fn sales_trend(&self, range: &DayRange) -> Result<Vec<SalesDay>, AnalysisError> {
        let a = Analysis::SalesTrend;
        rows(a, &self.batches(a, range).await?, |c, i| {
            Ok(SalesDay {
                dt: c.text("dt", i)?.unwrap_or_default(),
                currency: c.text("currency", i)?,
                orders: c.int("orders", i)?.unwrap_or(0),
                revenue_minor: c.int("revenue_minor", i)?.unwrap_or(0),
                aov_minor: c.float("aov_minor", i)?.unwrap_or(0.0),
            })
        })
    }

    pub async fn conversion_funnel(
        &self,
        range: &DayRange,
    ) -> Result<Vec<FunnelStep>, AnalysisError> {
        let a = Analysis::ConversionFunnel;
        rows(a, &self.batches(a, range).await?, |c, i| {
            Ok(FunnelStep {
                step: c.int("step", i)?.unwrap_or(0),
                name: c.text("name", i)?.unwrap_or_default(),
                visitors: c.int("visitors", i)?.unwrap_or(0),
                dropped: c.int("dropped", i)?,
                drop_off_rate: c.float("drop_off_rate", i)?,
            })
        })
    }

    pub async fn product_performance(
        &self,
        range: &DayRange,
    ) -> Result<Vec<ProductPerformance>, AnalysisError> {
        let a = Analysis::ProductPerformance;
        rows(a, &self.batches(a, range).await?, |c, i| {
            Ok(ProductPerformance {
                product_id: c.text("product_id", i)?.unwrap_or_default(),
                currency: c.text("currency", i)?,
                views: c.int("views", i)?.unwrap_or(0),
                viewers: c.int("viewers", i)?.unwrap_or(0),
                cart_adds: c.int("cart_adds", i)?.unwrap_or(0),
                add_to_cart_rate: c.float("add_to_cart_rate", i)?,
                orders: c.int("orders", i)?.unwrap_or(0),
                units: c.int("units", i)?.unwrap_or(0),
                revenue_minor: c.int("revenue_minor", i)?.unwrap_or(0),
                conversion_rate: c.float("conversion_rate", i)?,
            })
        })
    }

    pub async fn traffic_sources(
        &self,
        range: &DayRange,
    ) -> Result<Vec<TrafficSource>, AnalysisError> {
        let a = Analysis::TrafficSources;
        rows(a, &self.batches(a, range).await?, |c, i| {
            Ok(TrafficSource {
                source: c.text("source", i)?.unwrap_or_default(),
                medium: c.text("medium", i)?.unwrap_or_default(),
                sessions: c.int("sessions", i)?.unwrap_or(0),
                visitors: c.int("visitors", i)?.unwrap_or(0),
                orders: c.int("orders", i)?.unwrap_or(0),
                revenue_minor: c.int("revenue_minor", i)?.unwrap_or(0),
                conversion_rate: c.float("conversion_rate", i)?.unwrap_or(0.0),
            })
        })
    }

    pub async fn rfm_segments(&self, range: &DayRange) -> Result<Vec<RfmSegment>, AnalysisError> {
        let a = Analysis::RfmSegments;
        rows(a, &self.batches(a, range).await?, |c, i| {
            Ok(RfmSegment {
                segment: c.text("segment", i)?.unwrap_or_default(),
                currency: c.text("currency", i)?,
                customers: c.int("customers", i)?.unwrap_or(0),
                orders: c.int("orders", i)?.unwrap_or(0),
                revenue_minor: c.int("revenue_minor", i)?.unwrap_or(0),
                avg_recency_days: c.float("avg_recency_days", i)?.unwrap_or(0.0),
            })
        })
    }

    pub async fn rec_attribution(
        &self,
        range: &DayRange,
    ) -> Result<Vec<RecAttribution>, AnalysisError> {
        let a = Analysis::RecAttribution;
        rows(a, &self.batches(a, range).await?, |c, i| {
            Ok(RecAttribution {
                placement: c.text("placement", i)?.unwrap_or_default(),
                strategy: c.text("strategy", i)?.unwrap_or_default(),
                impressions: c.int("impressions", i)?.unwrap_or(0),
                clicks: c.int("clicks", i)?.unwrap_or(0),
                ctr: c.float("ctr", i)?.unwrap_or(0.0),
                purchased_lines: c.int("purchased_lines", i)?.unwrap_or(0),
                revenue_minor: c.int("revenue_minor", i)?.unwrap_or(0),
            })
        })
    }

    /// Any analysis as JSON rows (what a dashboard or `retailmind-etl query` shows).
    pub async fn json(
        &self,
        analysis: Analysis,
        range: &DayRange,
    ) -> Result<serde_json::Value, AnalysisError> {
        fn to_json<T: Serialize>(rows: Vec<T>) -> serde_json::Value {
            serde_json::to_value(rows).unwrap_or(serde_json::Value::Null)
        }
        Ok(match analysis {
            Analysis::SalesTrend => to_json(self.sales_trend(range).await?),
            Analysis::ConversionFunnel => to_json(self.conversion_funnel(range).await?),
            Analysis::ProductPerformance => to_json(self.product_performance(range).await?),
            Analysis::TrafficSources => to_json(self.traffic_sources(range).await?),
            Analysis::RfmSegments => to_json(self.rfm_segments(range).await?),
            Analysis::RecAttribution => to_json(self.rec_attribution(range).await?),
        })
    }
}

async fn register(
    ctx: &SessionContext,
    lake_root: &Path,
    table: &'static TableDef,
) -> Result<(), AnalysisError> {
    let err = |e: datafusion::error::DataFusionError| AnalysisError::Register {
        table: table.name,
        reason: e.to_string(),
    };
    let dir = lake_root.join(table.prefix);
    let file_schema = table.arrow_schema();
    let has_files = std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some());
    if !has_files {
        let mut fields: Vec<Field> = file_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        if table.partitioned {
            fields.push(Field::new(PARTITION_COLUMN, DataType::Utf8, false));
        }
        let empty = MemTable::try_new(Arc::new(Schema::new(fields)), vec![vec![]]).map_err(err)?;
        ctx.register_table(table.name, Arc::new(empty))
            .map_err(err)?;
        return Ok(());
    }
    let partitions = if table.partitioned {
        vec![(PARTITION_COLUMN.to_owned(), DataType::Utf8)]
    } else {
        vec![]
    };
    let options = ParquetReadOptions::default()
        .schema(&file_schema)
        .table_partition_cols(partitions);
    let url = format!("{}/", dir.display());
    ctx.register_parquet(table.name, &url, options)
        .await
        .map_err(err)
}

/// Result columns by name, cast (once) to the type the row wants.
struct Columns {
    analysis: &'static str,
    batch: RecordBatch,
    cast: RefCell<HashMap<&'static str, ArrayRef>>,
}

impl Columns {
    fn column(&self, name: &'static str, to: &DataType) -> Result<ArrayRef, AnalysisError> {
        if let Some(array) = self.cast.borrow().get(name) {
            return Ok(array.clone());
        }
        let err = |reason: String| AnalysisError::Column {
            analysis: self.analysis,
            column: name,
            reason,
        };
        let array = self
            .batch
            .column_by_name(name)
            .ok_or_else(|| err("missing".into()))?;
        let array = cast(array, to).map_err(|e| err(e.to_string()))?;
        self.cast.borrow_mut().insert(name, array.clone());
        Ok(array)
    }

    fn text(&self, name: &'static str, row: usize) -> Result<Option<String>, AnalysisError> {
        let array = self.column(name, &DataType::Utf8)?;
        let a = array.as_any().downcast_ref::<StringArray>();
        Ok(a.and_then(|a| (!a.is_null(row)).then(|| a.value(row).to_owned())))
    }

    fn int(&self, name: &'static str, row: usize) -> Result<Option<i64>, AnalysisError> {
        let array = self.column(name, &DataType::Int64)?;
        let a = array.as_any().downcast_ref::<Int64Array>();
        Ok(a.and_then(|a| (!a.is_null(row)).then(|| a.value(row))))
    }

    fn float(&self, name: &'static str, row: usize) -> Result<Option<f64>, AnalysisError> {
        let array = self.column(name, &DataType::Float64)?;
        let a = array.as_any().downcast_ref::<Float64Array>();
        Ok(a.and_then(|a| (!a.is_null(row)).then(|| a.value(row))))
    }
}

fn rows<T>(
    analysis: Analysis,
    batches: &[RecordBatch],
    mut read: impl FnMut(&Columns, usize) -> Result<T, AnalysisError>,
) -> Result<Vec<T>, AnalysisError> {
    let mut out = Vec::new();
    for batch in batches {
        let columns = Columns {
            analysis: analysis.name(),
            batch: batch.clone(),
            cast: RefCell::new(HashMap::new()),
        };
        for i in 0..batch.num_rows() {
            out.push(read(&columns, i)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_take_only_real_days_in_order() {
        assert!(DayRange::new("2024-11-01", "2024-11-30").is_ok());
        assert!(matches!(
            DayRange::new("2024-11-01' OR '1'='1", "2024-11-30"),
            Err(AnalysisError::BadDay { field: "from", .. })
        ));
        assert!(matches!(
            DayRange::new("2024-11-30", "2024-11-01"),
            Err(AnalysisError::EmptyRange { .. })
        ));
    }

    #[test]
    fn every_placeholder_is_filled() {
        let range = DayRange::new("2024-11-01", "2024-11-30").unwrap();
        for a in Analysis::ALL {
            let sql = a.sql(&range);
            assert!(!sql.contains("{{"), "{}: {sql}", a.name());
            assert!(sql.contains("'2024-11-01'"), "{}", a.name());
            assert_eq!(Analysis::by_name(a.name()), Some(a));
        }
    }
}
