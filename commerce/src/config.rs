use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::store::{CommerceStore, SqlCommerce};

/// Where orders and customer profiles live (`[commerce]` in the config file,
/// `RETAILMIND_COMMERCE__*` in the environment); the collector and the processor read the same.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CommerceConfig {
    /// `postgres://user:password@host:5432/db` (Amazon RDS) or `sqlite://path/commerce.db`.
    /// Unset: `sqlite://<data_dir>/commerce.db` with the embedded backend; with the AWS
    /// backend, orders and profiles are off (their endpoints answer 503) until it is set.
    pub database_url: Option<String>,
    /// Connections each service keeps open.
    pub max_connections: u32,
    /// Page URL of the purchase event an order becomes when the order names none.
    pub default_page_url: String,
}

impl Default for CommerceConfig {
    fn default() -> Self {
        CommerceConfig {
            database_url: None,
            max_connections: 10,
            default_page_url: "http://localhost/order-confirmation".into(),
        }
    }
}

impl CommerceConfig {
    /// The database to use, given the embedded backend's data folder (`None` on AWS).
    pub fn url(&self, embedded_data_dir: Option<&Path>) -> Option<String> {
        self.database_url.clone().or_else(|| {
            embedded_data_dir.map(|dir| format!("sqlite://{}", dir.join("commerce.db").display()))
        })
    }

    /// Opens (and migrates) the configured database; `None` when none is configured.
    pub async fn open(
        &self,
        embedded_data_dir: Option<&Path>,
    ) -> crate::Result<Option<Arc<dyn CommerceStore>>> {
        match self.url(embedded_data_dir) {
            Some(url) => {
                let store = SqlCommerce::connect(&url, self.max_connections).await?;
                Ok(Some(Arc::new(store)))
            }
            None => Ok(None),
        }
    }
}
