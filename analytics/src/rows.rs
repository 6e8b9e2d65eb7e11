//! Typed rows to arrow record batches and back, column by column in the order of the row's
//! [`TableDef`]. A row type says how it writes and reads itself ([`TableRow`]); the writer and
//! reader check every value against the table's column types, so a row type that disagrees
//! with its table fails loudly (and in its round-trip test) instead of writing a wrong file.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBuilder, Int32Array, Int32Builder, Int64Array,
    Int64Builder, RecordBatch, StringArray, StringBuilder,
};

use crate::tables::{ColumnType, TableDef};

/// A row type of one lake table.
pub trait TableRow: Sized {
    const TABLE: &'static TableDef;

    /// Appends the row's values in column order.
    fn write(&self, w: &mut RowWriter);

    /// Reads one row, in column order.
    fn read(r: &mut RowReader<'_>) -> Result<Self, RowError>;
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RowError {
    #[error("table {table}: column {column} is {expected:?}, the row gave {given:?}")]
    WrongType {
        table: &'static str,
        column: &'static str,
        expected: ColumnType,
        given: ColumnType,
    },
    #[error("table {table}: the row wrote {written} values, the table has {columns} columns")]
    WrongCount {
        table: &'static str,
        written: usize,
        columns: usize,
    },
    #[error("table {table}: column {column} is empty (null) but must have a value")]
    Missing {
        table: &'static str,
        column: &'static str,
    },
    #[error("table {table}: the file's columns are {found:?}, expected {expected:?}")]
    SchemaMismatch {
        table: &'static str,
        expected: Vec<String>,
        found: Vec<String>,
    },
    #[error("table {table}: column {column}: {message}")]
    BadValue {
        table: &'static str,
        column: &'static str,
        message: String,
    },
    #[error("arrow: {0}")]
    Arrow(String),
}

enum Builder {
    Text(StringBuilder),
    Int64(Int64Builder),
    Int32(Int32Builder),
    Bool(BooleanBuilder),
}

/// Collects rows of one table into column builders.
pub struct RowWriter {
    table: &'static TableDef,
    builders: Vec<Builder>,
    column: usize,
    rows: usize,
    error: Option<RowError>,
}

impl RowWriter {
    pub fn new(table: &'static TableDef) -> RowWriter {
        let builders = table
            .columns
            .iter()
            .map(|c| match c.ty {
                ColumnType::Text => Builder::Text(StringBuilder::new()),
                ColumnType::Int64 => Builder::Int64(Int64Builder::new()),
                ColumnType::Int32 => Builder::Int32(Int32Builder::new()),
                ColumnType::Bool => Builder::Bool(BooleanBuilder::new()),
            })
            .collect();
        RowWriter {
            table,
            builders,
            column: 0,
            rows: 0,
            error: None,
        }
    }

    /// Appends one row.
    pub fn push<R: TableRow>(&mut self, row: &R) {
        debug_assert!(std::ptr::eq(R::TABLE, self.table));
        self.column = 0;
        row.write(self);
        if self.column != self.table.columns.len() && self.error.is_none() {
            self.error = Some(RowError::WrongCount {
                table: self.table.name,
                written: self.column,
                columns: self.table.columns.len(),
            });
        }
        self.rows += 1;
    }

    fn next(&mut self, given: ColumnType) -> Option<&mut Builder> {
        let i = self.column;
        self.column += 1;
        let Some(column) = self.table.columns.get(i) else {
            return None; // counted in `push`
        };
        if column.ty != given {
            self.error.get_or_insert(RowError::WrongType {
                table: self.table.name,
                column: column.name,
                expected: column.ty,
                given,
            });
            return None;
        }
        self.builders.get_mut(i)
    }

    fn missing(&mut self, is_null: bool) {
        let i = self.column - 1;
        if let Some(column) = self.table.columns.get(i) {
            if is_null && !column.nullable {
                self.error.get_or_insert(RowError::Missing {
                    table: self.table.name,
                    column: column.name,
                });
            }
        }
    }

    pub fn text(&mut self, v: Option<&str>) {
        if let Some(Builder::Text(b)) = self.next(ColumnType::Text) {
            b.append_option(v);
        }
        self.missing(v.is_none());
    }

    pub fn int64(&mut self, v: Option<i64>) {
        if let Some(Builder::Int64(b)) = self.next(ColumnType::Int64) {
            b.append_option(v);
        }
        self.missing(v.is_none());
    }

    pub fn int32(&mut self, v: Option<i32>) {
        if let Some(Builder::Int32(b)) = self.next(ColumnType::Int32) {
            b.append_option(v);
        }
        self.missing(v.is_none());
    }

    pub fn bool(&mut self, v: Option<bool>) {
        if let Some(Builder::Bool(b)) = self.next(ColumnType::Bool) {
            b.append_option(v);
        }
        self.missing(v.is_none());
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The rows as one record batch of the table's schema.
    pub fn finish(self) -> Result<RecordBatch, RowError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let columns: Vec<ArrayRef> = self
            .builders
            .into_iter()
            .map(|b| -> ArrayRef {
                match b {
                    Builder::Text(mut b) => Arc::new(b.finish()),
                    Builder::Int64(mut b) => Arc::new(b.finish()),
                    Builder::Int32(mut b) => Arc::new(b.finish()),
                    Builder::Bool(mut b) => Arc::new(b.finish()),
                }
            })
            .collect();
        RecordBatch::try_new(self.table.arrow_schema(), columns)
            .map_err(|e| RowError::Arrow(e.to_string()))
    }
}

/// `rows` as one record batch of their table.
pub fn to_batch<'a, R: TableRow + 'a>(
    rows: impl IntoIterator<Item = &'a R>,
) -> Result<RecordBatch, RowError> {
    let mut w = RowWriter::new(R::TABLE);
    for row in rows {
        w.push(row);
    }
    w.finish()
}

enum ColumnRef<'a> {
    Text(&'a StringArray),
    Int64(&'a Int64Array),
    Int32(&'a Int32Array),
    Bool(&'a BooleanArray),
}

/// Reads rows of one table out of a record batch.
/// The name [`RowReader`] gives a column read past the table's last: a bug in a `read`, which
/// must stay an error, unlike a column the file lacks because it was added later (null).
const PAST_THE_TABLE: &str = "?";

pub struct RowReader<'a> {
    table: &'static TableDef,
    columns: Vec<ColumnRef<'a>>,
    row: usize,
    column: usize,
}

impl<'a> RowReader<'a> {
    /// Checks that `batch` has the table's columns, names and types, in order. A file written
    /// before nullable columns were added at the table's end may lack them: they read as null.
    pub fn new(table: &'static TableDef, batch: &'a RecordBatch) -> Result<Self, RowError> {
        let schema = batch.schema();
        let found: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let mismatch = || RowError::SchemaMismatch {
            table: table.name,
            expected: table.columns.iter().map(|c| c.name.to_owned()).collect(),
            found: found.clone(),
        };
        let added_later = table.columns.get(found.len()..).unwrap_or_default();
        if found.len() > table.columns.len() || added_later.iter().any(|c| !c.nullable) {
            return Err(mismatch());
        }
        let mut columns = Vec::with_capacity(found.len());
        for (def, array) in table.columns.iter().zip(batch.columns()) {
            let any = array.as_any();
            let column = match def.ty {
                ColumnType::Text => any.downcast_ref().map(ColumnRef::Text),
                ColumnType::Int64 => any.downcast_ref().map(ColumnRef::Int64),
                ColumnType::Int32 => any.downcast_ref().map(ColumnRef::Int32),
                ColumnType::Bool => any.downcast_ref().map(ColumnRef::Bool),
            };
            match column {
                Some(c) => columns.push(c),
                None => return Err(mismatch()),
            }
        }
        if found
            .iter()
            .zip(table.columns)
            .any(|(name, def)| name != def.name)
        {
            return Err(mismatch());
        }
        Ok(RowReader {
            table,
            columns,
            row: 0,
            column: 0,
        })
    }

    fn next(&mut self) -> (&'static str, Option<&ColumnRef<'a>>) {
        let i = self.column;
        self.column += 1;
        let name = self.table.columns.get(i).map_or(PAST_THE_TABLE, |c| c.name);
        (name, self.columns.get(i))
    }

    fn wrong(&self, column: &'static str, given: ColumnType) -> RowError {
        let expected = self
            .table
            .columns
            .iter()
            .find(|c| c.name == column)
            .map_or(given, |c| c.ty);
        RowError::WrongType {
            table: self.table.name,
            column,
            expected,
            given,
        }
    }

    pub fn text(&mut self) -> Result<Option<String>, RowError> {
        let row = self.row;
        match self.next() {
            (_, Some(ColumnRef::Text(a))) => Ok((!a.is_null(row)).then(|| a.value(row).to_owned())),
            (name, None) if name != PAST_THE_TABLE => Ok(None),
            (name, _) => Err(self.wrong(name, ColumnType::Text)),
        }
    }

    pub fn int64(&mut self) -> Result<Option<i64>, RowError> {
        let row = self.row;
        match self.next() {
            (_, Some(ColumnRef::Int64(a))) => Ok((!a.is_null(row)).then(|| a.value(row))),
            (name, None) if name != PAST_THE_TABLE => Ok(None),
            (name, _) => Err(self.wrong(name, ColumnType::Int64)),
        }
    }

    pub fn int32(&mut self) -> Result<Option<i32>, RowError> {
        let row = self.row;
        match self.next() {
            (_, Some(ColumnRef::Int32(a))) => Ok((!a.is_null(row)).then(|| a.value(row))),
            (name, None) if name != PAST_THE_TABLE => Ok(None),
            (name, _) => Err(self.wrong(name, ColumnType::Int32)),
        }
    }

    pub fn bool(&mut self) -> Result<Option<bool>, RowError> {
        let row = self.row;
        match self.next() {
            (_, Some(ColumnRef::Bool(a))) => Ok((!a.is_null(row)).then(|| a.value(row))),
            (name, None) if name != PAST_THE_TABLE => Ok(None),
            (name, _) => Err(self.wrong(name, ColumnType::Bool)),
        }
    }

    /// The value of a column that must have one: names the column when it is null.
    pub fn required<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<Option<T>, RowError>,
    ) -> Result<T, RowError> {
        let column = self.table.columns.get(self.column).map_or("?", |c| c.name);
        read(self)?.ok_or(RowError::Missing {
            table: self.table.name,
            column,
        })
    }

    pub fn required_text(&mut self) -> Result<String, RowError> {
        self.required(Self::text)
    }

    pub fn required_int64(&mut self) -> Result<i64, RowError> {
        self.required(Self::int64)
    }

    pub fn required_int32(&mut self) -> Result<i32, RowError> {
        self.required(Self::int32)
    }

    pub fn required_bool(&mut self) -> Result<bool, RowError> {
        self.required(Self::bool)
    }
}

/// Every row of `batch`.
pub fn from_batch<R: TableRow>(batch: &RecordBatch) -> Result<Vec<R>, RowError> {
    let mut reader = RowReader::new(R::TABLE, batch)?;
    let mut rows = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        reader.row = row;
        reader.column = 0;
        rows.push(R::read(&mut reader)?);
    }
    Ok(rows)
}
