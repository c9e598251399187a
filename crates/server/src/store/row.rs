//! A row as the store's decoders read it, from either way of reading:
//! sqlx's rows and the rows of [`super::direct_reads`]. Records are text
//! (JSON) and the few other columns text or integers.

use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::{StoreError, StoreResult};

pub trait Row {
    /// The text in `column`, `None` for NULL.
    fn text(&self, column: &str) -> StoreResult<Option<&str>>;

    /// The integer in `column`.
    fn int(&self, column: &str) -> StoreResult<i64>;
}

impl dyn Row + '_ {
    /// The text in `column`, which must not be NULL.
    pub fn required(&self, column: &str) -> StoreResult<&str> {
        self.text(column)?.ok_or_else(|| {
            StoreError::Internal(anyhow::anyhow!("column {column} is unexpectedly NULL"))
        })
    }
}

impl Row for AnyRow {
    fn text(&self, column: &str) -> StoreResult<Option<&str>> {
        self.try_get(column)
            .map_err(|err| StoreError::Internal(err.into()))
    }

    fn int(&self, column: &str) -> StoreResult<i64> {
        self.try_get(column)
            .map_err(|err| StoreError::Internal(err.into()))
    }
}
