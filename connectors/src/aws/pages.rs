//! Reading every page of a DynamoDB Query, once for every table.

use std::future::Future;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::query::{QueryError, QueryOutput};

use super::errors::sdk_error;
use super::session_item::Item;
use crate::error::Result;

/// Every item `query` returns, page after page: `query` sends the request starting at the key
/// it is given (none for the first page).
pub(crate) async fn all_items<F, Fut>(mut query: F) -> Result<Vec<Item>>
where
    F: FnMut(Option<Item>) -> Fut,
    Fut: Future<Output = Result<QueryOutput, SdkError<QueryError>>>,
{
    let mut items = Vec::new();
    let mut start_key: Option<Item> = None;
    loop {
        let output = query(start_key.take())
            .await
            .map_err(|e| sdk_error("dynamodb", e))?;
        items.extend(output.items().iter().cloned());
        match output.last_evaluated_key() {
            Some(key) if !key.is_empty() => start_key = Some(key.clone()),
            _ => return Ok(items),
        }
    }
}
