//! Reading every page of a DynamoDB Query or Scan, once for every table.

use std::error::Error;
use std::future::Future;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::operation::scan::ScanOutput;

use super::errors::sdk_error;
use super::session_item::Item;
use crate::error::Result;

/// One page of a Query or a Scan.
pub(crate) trait Page {
    fn page_items(&self) -> &[Item];
    fn next_key(&self) -> Option<&Item>;
}

impl Page for QueryOutput {
    fn page_items(&self) -> &[Item] {
        self.items()
    }
    fn next_key(&self) -> Option<&Item> {
        self.last_evaluated_key()
    }
}

impl Page for ScanOutput {
    fn page_items(&self) -> &[Item] {
        self.items()
    }
    fn next_key(&self) -> Option<&Item> {
        self.last_evaluated_key()
    }
}

/// Every item `request` returns, page after page: `request` sends the Query or Scan starting
/// at the key it is given (none for the first page).
pub(crate) async fn all_items<F, Fut, P, E>(mut request: F) -> Result<Vec<Item>>
where
    F: FnMut(Option<Item>) -> Fut,
    Fut: Future<Output = std::result::Result<P, E>>,
    P: Page,
    E: ProvideErrorMetadata + Error,
{
    let mut items = Vec::new();
    let mut start_key: Option<Item> = None;
    loop {
        let output = request(start_key.take())
            .await
            .map_err(|e| sdk_error("dynamodb", e))?;
        items.extend(output.page_items().iter().cloned());
        match output.next_key() {
            Some(key) if !key.is_empty() => start_key = Some(key.clone()),
            _ => return Ok(items),
        }
    }
}
