//! Decoding an [`Event`] without serde's `flatten`: the envelope is read field by field with the
//! kind (`"type"`) and the raw `"properties"` kept aside, then the properties are decoded as the
//! kind says. serde's flatten and adjacently tagged enums buffer every field into an
//! intermediate tree first, which made decoding the collector's largest cost per event.

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::{Context, Event, Payload};

/// The envelope as it arrives; `properties` stays undecoded until the kind is known. `C` is the
/// context as decoded, or (for [`crate::wire::decode_located`]) as raw text, to learn where it is.
#[derive(Deserialize)]
pub(crate) struct Envelope<C = Context> {
    event_id: Uuid,
    anonymous_id: String,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    session_id: Option<String>,
    timestamp: i64,
    #[serde(default)]
    received_at: Option<i64>,
    #[serde(default)]
    pub(crate) context: C,
    #[serde(rename = "type")]
    kind: Kind,
    properties: Box<RawValue>,
}

/// The kinds, by their wire names (the variants of [`Payload`]).
#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    PageView,
    Click,
    ProductView,
    AddToCart,
    RemoveFromCart,
    CheckoutStarted,
    Purchase,
    Search,
    Custom,
}

/// Why the properties did not decode: the path inside `properties` (empty for the whole) and
/// serde's reason.
pub(crate) struct PropertiesError {
    pub path: String,
    pub reason: String,
}

impl Envelope {
    /// The event, with its properties decoded as its kind says. `tracked`: name the field of a
    /// failure (slower; for the error path).
    pub(crate) fn into_event(mut self, tracked: bool) -> Result<Event, PropertiesError> {
        let context = std::mem::take(&mut self.context);
        self.into_event_with(context, tracked)
    }
}

impl<C> Envelope<C> {
    /// As [`Envelope::into_event`], with `context` (decoded apart) as the event's context.
    pub(crate) fn into_event_with(
        self,
        context: Context,
        tracked: bool,
    ) -> Result<Event, PropertiesError> {
        let raw = self.properties.get();
        let payload = match self.kind {
            Kind::PageView => Payload::PageView(props(raw, tracked)?),
            Kind::Click => Payload::Click(props(raw, tracked)?),
            Kind::ProductView => Payload::ProductView(props(raw, tracked)?),
            Kind::AddToCart => Payload::AddToCart(props(raw, tracked)?),
            Kind::RemoveFromCart => Payload::RemoveFromCart(props(raw, tracked)?),
            Kind::CheckoutStarted => Payload::CheckoutStarted(props(raw, tracked)?),
            Kind::Purchase => Payload::Purchase(props(raw, tracked)?),
            Kind::Search => Payload::Search(props(raw, tracked)?),
            Kind::Custom => Payload::Custom(props(raw, tracked)?),
        };
        Ok(Event {
            event_id: self.event_id,
            anonymous_id: self.anonymous_id,
            user_id: self.user_id,
            session_id: self.session_id,
            timestamp: self.timestamp,
            received_at: self.received_at,
            context,
            payload,
        })
    }
}

fn props<T: DeserializeOwned>(raw: &str, tracked: bool) -> Result<T, PropertiesError> {
    if !tracked {
        return serde_json::from_str(raw).map_err(|e| PropertiesError {
            path: String::new(),
            reason: e.to_string(),
        });
    }
    let mut de = serde_json::Deserializer::from_str(raw);
    serde_path_to_error::deserialize(&mut de).map_err(|e| PropertiesError {
        path: match e.path().to_string() {
            p if p == "." => String::new(),
            p => p,
        },
        reason: e.into_inner().to_string(),
    })
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Envelope::deserialize(deserializer)?
            .into_event(false)
            .map_err(|e| D::Error::custom(format_args!("properties: {}", e.reason)))
    }
}
