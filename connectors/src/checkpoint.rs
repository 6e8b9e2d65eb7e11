use async_trait::async_trait;

use crate::error::Result;

/// Where a consumer has got to in each shard. The processor saves a checkpoint only after the
/// session and lake writes for everything up to it succeeded.
#[async_trait]
pub trait CheckpointStore: Send + Sync + 'static {
    async fn get(&self, consumer: &str, shard_id: &str) -> Result<Option<String>>;
    async fn set(&self, consumer: &str, shard_id: &str, sequence: &str) -> Result<()>;
}
