//! Leases on DynamoDB, in the checkpoints table: the lease of a shard is the shard's checkpoint
//! item (hash key `consumer`, range key `shard_id`) with these attributes added:
//!
//! | attribute | type | meaning |
//! |---|---|---|
//! | `lease_owner` | S | the instance holding it; absent when free |
//! | `lease_counter` | N | +1 on every take, renewal, release and finish |
//! | `pending_owner` | S | an instance that asked for it |
//! | `parent_shard_ids` | L of S | the shard's parents after resharding |
//! | `shard_ended` | BOOL | read to its end |
//!
//! besides the checkpoint's own `sequence`, `sequence_key` and `updated_at_ms`. Keeping both in
//! one item makes "checkpoint only while holding the lease" a single conditional write, as in
//! the Kinesis Client Library's lease table. Every change is one UpdateItem with a condition:
//!
//! | operation | update | condition |
//! |---|---|---|
//! | create | counter 0, parents, not ended | `attribute_not_exists(lease_counter)` |
//! | take | owner := me, counter + 1, no pending | `lease_counter = :seen` |
//! | renew | counter + 1 (returns the item) | `lease_owner = :me AND lease_counter = :held` |
//! | release | no owner, no pending, counter + 1 | `lease_owner = :me AND lease_counter = :held` |
//! | finish | ended, no owner, no pending, counter + 1 | `lease_owner = :me AND lease_counter = :held` |
//! | remove (DeleteItem) | the whole item, checkpoint included | `attribute_not_exists(lease_owner) AND lease_counter = :seen` |
//! | request | pending := asker | `lease_owner = :owner AND attribute_not_exists(pending_owner)` |
//! | checkpoint | sequence, sequence_key, updated_at_ms | owner and counter as renew, and `attribute_not_exists(sequence_key) OR sequence_key <= :key` |

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_sdk_dynamodb::Client;

use super::checkpoints::{
    checkpoint_names, checkpoint_values, sequence_key, CONSUMER, SEQUENCE, SET_CHECKPOINT, SHARD_ID,
};
use super::errors::{conditional_delete, conditional_update};
use super::pages::all_items;
use super::session_item::{number, string, Item};
use crate::error::{ConnectorError, Result};
use crate::lease::{Lease, LeaseStore};
use crate::stream::ShardInfo;

const OWNER: &str = "lease_owner";
const COUNTER: &str = "lease_counter";
const PENDING_OWNER: &str = "pending_owner";
const PARENTS: &str = "parent_shard_ids";
const ENDED: &str = "shard_ended";

/// The condition of every write by the holder of a lease.
const HELD: &str = "#owner = :me AND #counter = :held";

pub(crate) struct DynamoLeases {
    client: Client,
    table: String,
}

impl DynamoLeases {
    pub(crate) fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoLeases {
            client,
            table: table.into(),
        }
    }

    /// One conditional UpdateItem on the lease of `shard_id`; `Conflict` saying `action` when
    /// the condition fails. `names` and `values` come on top of `#owner`, `#counter`,
    /// `#pending` and `:one`.
    #[allow(clippy::too_many_arguments)]
    async fn update(
        &self,
        consumer: &str,
        shard_id: &str,
        update: &str,
        condition: &str,
        mut names: HashMap<String, String>,
        mut values: HashMap<String, AttributeValue>,
        action: &str,
        returns: ReturnValue,
    ) -> Result<Option<Item>> {
        for (name, attribute) in [
            ("#owner", OWNER),
            ("#counter", COUNTER),
            ("#pending", PENDING_OWNER),
        ] {
            names.insert(name.to_owned(), attribute.to_owned());
        }
        values.insert(":one".to_owned(), number(1));
        // DynamoDB refuses names and values an expression does not use.
        let expressions = format!("{update} {condition}");
        names.retain(|name, _| expressions.contains(name.as_str()));
        values.retain(|name, _| expressions.contains(name.as_str()));
        let answer = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(CONSUMER, string(consumer))
            .key(SHARD_ID, string(shard_id))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values(returns)
            .send()
            .await;
        let output =
            conditional_update(answer, || format!("lease {consumer}/{shard_id}: {action}"))?;
        Ok(output.attributes().cloned())
    }

    /// The update `update` by `owner` holding the lease at `counter`.
    async fn held_update(
        &self,
        consumer: &str,
        shard_id: &str,
        owner: &str,
        counter: u64,
        update: &str,
        action: &str,
    ) -> Result<Option<Item>> {
        let values = held_values(owner, counter);
        self.update(
            consumer,
            shard_id,
            update,
            HELD,
            HashMap::new(),
            values,
            action,
            ReturnValue::AllNew,
        )
        .await
    }
}

fn held_values(owner: &str, counter: u64) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (":me".to_owned(), string(owner)),
        (":held".to_owned(), number(counter)),
    ])
}

fn corrupt(item: &Item, detail: impl Into<String>) -> ConnectorError {
    ConnectorError::Corrupt {
        what: format!("lease {:?}", item.get(SHARD_ID)),
        detail: detail.into(),
    }
}

fn optional_string(item: &Item, name: &str) -> Result<Option<String>> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::S(s)) => Ok(Some(s.clone())),
        Some(other) => Err(corrupt(item, format!("{name}: not a string: {other:?}"))),
    }
}

/// A lease item; `None` for a checkpoint written before leases existed (no counter yet).
fn lease_from_item(item: &Item) -> Result<Option<Lease>> {
    let counter = match item.get(COUNTER) {
        None => return Ok(None),
        Some(AttributeValue::N(n)) => n
            .parse()
            .map_err(|_| corrupt(item, format!("{COUNTER}: {n:?}")))?,
        Some(other) => return Err(corrupt(item, format!("{COUNTER}: {other:?}"))),
    };
    let parent_shard_ids = match item.get(PARENTS) {
        None => Vec::new(),
        Some(AttributeValue::L(parents)) => parents
            .iter()
            .map(|p| match p {
                AttributeValue::S(s) => Ok(s.clone()),
                other => Err(corrupt(item, format!("{PARENTS}: {other:?}"))),
            })
            .collect::<Result<_>>()?,
        Some(other) => return Err(corrupt(item, format!("{PARENTS}: {other:?}"))),
    };
    Ok(Some(Lease {
        shard_id: optional_string(item, SHARD_ID)?.ok_or_else(|| corrupt(item, "no shard id"))?,
        owner: optional_string(item, OWNER)?,
        counter,
        checkpoint: optional_string(item, SEQUENCE)?,
        parent_shard_ids,
        shard_ended: matches!(item.get(ENDED), Some(AttributeValue::Bool(true))),
        pending_owner: optional_string(item, PENDING_OWNER)?,
    }))
}

/// The lease an update returned (`ReturnValues=ALL_NEW`).
fn updated_lease(item: Option<Item>) -> Result<Lease> {
    let item = item.unwrap_or_default();
    lease_from_item(&item)?.ok_or_else(|| corrupt(&item, "the update returned no lease"))
}

#[async_trait]
impl LeaseStore for DynamoLeases {
    async fn leases(&self, consumer: &str) -> Result<Vec<Lease>> {
        let items = all_items(|start_key| {
            self.client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#consumer = :consumer")
                .expression_attribute_names("#consumer", CONSUMER)
                .expression_attribute_values(":consumer", string(consumer))
                .consistent_read(true)
                .set_exclusive_start_key(start_key)
                .send()
        })
        .await?;
        let mut leases = Vec::new();
        for item in &items {
            leases.extend(lease_from_item(item)?);
        }
        Ok(leases)
    }

    async fn create(&self, consumer: &str, shard: &ShardInfo) -> Result<bool> {
        let parents = shard
            .parent_shard_ids
            .iter()
            .map(|p| string(p.as_str()))
            .collect();
        let names = HashMap::from([
            ("#parents".to_owned(), PARENTS.to_owned()),
            ("#ended".to_owned(), ENDED.to_owned()),
        ]);
        let values = HashMap::from([
            (":zero".to_owned(), number(0)),
            (":parents".to_owned(), AttributeValue::L(parents)),
            (":no".to_owned(), AttributeValue::Bool(false)),
        ]);
        let created = self
            .update(
                consumer,
                &shard.shard_id,
                "SET #counter = :zero, #parents = :parents, #ended = :no",
                "attribute_not_exists(#counter)",
                names,
                values,
                "exists already",
                ReturnValue::None,
            )
            .await;
        match created {
            Ok(_) => Ok(true),
            Err(ConnectorError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn take(
        &self,
        consumer: &str,
        shard_id: &str,
        counter: u64,
        owner: &str,
    ) -> Result<Lease> {
        let values = HashMap::from([
            (":me".to_owned(), string(owner)),
            (":seen".to_owned(), number(counter)),
        ]);
        let item = self
            .update(
                consumer,
                shard_id,
                "SET #owner = :me, #counter = #counter + :one REMOVE #pending",
                "#counter = :seen",
                HashMap::new(),
                values,
                "changed before it could be taken",
                ReturnValue::AllNew,
            )
            .await?;
        updated_lease(item)
    }

    async fn renew(
        &self,
        consumer: &str,
        shard_id: &str,
        owner: &str,
        counter: u64,
    ) -> Result<Lease> {
        let item = self
            .held_update(
                consumer,
                shard_id,
                owner,
                counter,
                "SET #counter = #counter + :one",
                "lost before renewal",
            )
            .await?;
        updated_lease(item)
    }

    async fn release(
        &self,
        consumer: &str,
        shard_id: &str,
        owner: &str,
        counter: u64,
    ) -> Result<()> {
        self.held_update(
            consumer,
            shard_id,
            owner,
            counter,
            "SET #counter = #counter + :one REMOVE #owner, #pending",
            "lost before release",
        )
        .await
        .map(|_| ())
    }

    async fn finish(
        &self,
        consumer: &str,
        shard_id: &str,
        owner: &str,
        counter: u64,
    ) -> Result<()> {
        let mut values = held_values(owner, counter);
        values.insert(":yes".to_owned(), AttributeValue::Bool(true));
        self.update(
            consumer,
            shard_id,
            "SET #counter = #counter + :one, #ended = :yes REMOVE #owner, #pending",
            HELD,
            HashMap::from([("#ended".to_owned(), ENDED.to_owned())]),
            values,
            "lost before its end was recorded",
            ReturnValue::None,
        )
        .await
        .map(|_| ())
    }

    async fn remove(&self, consumer: &str, shard_id: &str, counter: u64) -> Result<()> {
        let answer = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(CONSUMER, string(consumer))
            .key(SHARD_ID, string(shard_id))
            .condition_expression("attribute_not_exists(#owner) AND #counter = :seen")
            .expression_attribute_names("#owner", OWNER)
            .expression_attribute_names("#counter", COUNTER)
            .expression_attribute_values(":seen", number(counter))
            .send()
            .await;
        conditional_delete(answer, || {
            format!("lease {consumer}/{shard_id}: held or changed before removal")
        })
    }

    async fn request(
        &self,
        consumer: &str,
        shard_id: &str,
        owner: &str,
        requester: &str,
    ) -> Result<()> {
        let values = HashMap::from([
            (":owner".to_owned(), string(owner)),
            (":asker".to_owned(), string(requester)),
        ]);
        self.update(
            consumer,
            shard_id,
            "SET #pending = :asker",
            "#owner = :owner AND attribute_not_exists(#pending)",
            HashMap::new(),
            values,
            "no longer held or already asked for",
            ReturnValue::None,
        )
        .await
        .map(|_| ())
    }

    async fn checkpoint(
        &self,
        consumer: &str,
        shard_id: &str,
        owner: &str,
        counter: u64,
        sequence: &str,
    ) -> Result<()> {
        let key = sequence_key(sequence)?;
        let mut values = held_values(owner, counter);
        values.extend(checkpoint_values(sequence, key));
        self.update(
            consumer,
            shard_id,
            SET_CHECKPOINT,
            &format!("{HELD} AND (attribute_not_exists(#key) OR #key <= :key)"),
            checkpoint_names(),
            values,
            "lost, or its checkpoint is further",
            ReturnValue::None,
        )
        .await
        .map(|_| ())
    }
}
