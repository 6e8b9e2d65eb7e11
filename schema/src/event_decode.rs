//! Decoding an [`Event`] without serde's `flatten`: the envelope is read field by field with the
//! kind (`"type"`) and the raw `"properties"` kept aside, then the properties are decoded as the
//! kind says. serde's flatten and adjacently tagged enums buffer every field into an
//! intermediate tree first, which made decoding the collector's largest cost per event.
//!
//! [`OnePass`] goes further for the collector: when `"type"` comes before `"properties"` (as the
//! tracker sends it) the properties are decoded where they lie, not kept as raw text and read
//! again. It is a second decoder of the same format, so it is only ever a shortcut: whatever it
//! decodes, [`Envelope`] decodes to the same event, and whatever it refuses is decoded again by
//! [`Envelope`], whose error is the one given.

use serde::de::{DeserializeSeed, Error as _, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::{Context, Event, Payload};

/// The envelope as it arrives; `properties` stays undecoded until the kind is known.
#[derive(Deserialize)]
pub(crate) struct Envelope {
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
    context: Context,
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
    pub(crate) fn into_event(self, tracked: bool) -> Result<Event, PropertiesError> {
        let raw = self.properties.get();
        let payload = if tracked {
            self.kind.tracked_payload(raw)?
        } else {
            self.kind
                .payload(&mut serde_json::Deserializer::from_str(raw))
                .map_err(|e| PropertiesError {
                    path: String::new(),
                    reason: e.to_string(),
                })?
        };
        Ok(Event {
            event_id: self.event_id,
            anonymous_id: self.anonymous_id,
            user_id: self.user_id,
            session_id: self.session_id,
            timestamp: self.timestamp,
            received_at: self.received_at,
            context: self.context,
            payload,
        })
    }
}

impl Kind {
    /// The properties of this kind, decoded from `de`.
    fn payload<'de, D: Deserializer<'de>>(self, de: D) -> Result<Payload, D::Error> {
        Ok(match self {
            Kind::PageView => Payload::PageView(Deserialize::deserialize(de)?),
            Kind::Click => Payload::Click(Deserialize::deserialize(de)?),
            Kind::ProductView => Payload::ProductView(Deserialize::deserialize(de)?),
            Kind::AddToCart => Payload::AddToCart(Deserialize::deserialize(de)?),
            Kind::RemoveFromCart => Payload::RemoveFromCart(Deserialize::deserialize(de)?),
            Kind::CheckoutStarted => Payload::CheckoutStarted(Deserialize::deserialize(de)?),
            Kind::Purchase => Payload::Purchase(Deserialize::deserialize(de)?),
            Kind::Search => Payload::Search(Deserialize::deserialize(de)?),
            Kind::Custom => Payload::Custom(Deserialize::deserialize(de)?),
        })
    }

    /// As [`Kind::payload`] from the text `raw`, naming the field of a failure.
    fn tracked_payload(self, raw: &str) -> Result<Payload, PropertiesError> {
        let mut de = serde_json::Deserializer::from_str(raw);
        let mut track = serde_path_to_error::Track::new();
        self.payload(serde_path_to_error::Deserializer::new(&mut de, &mut track))
            .map_err(|e| PropertiesError {
                path: match track.path().to_string() {
                    p if p == "." => String::new(),
                    p => p,
                },
                reason: e.to_string(),
            })
    }
}

impl<'de> DeserializeSeed<'de> for Kind {
    type Value = Payload;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Payload, D::Error> {
        self.payload(de)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Envelope::deserialize(deserializer)?
            .into_event(false)
            .map_err(|e| D::Error::custom(format_args!("properties: {}", e.reason)))
    }
}

/// An event decoded in one pass (see the module's documentation), and whether its text has a
/// `context`.
pub(crate) struct OnePass {
    pub event: Event,
    pub has_context: bool,
}

/// The envelope's fields, by their wire names.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Field {
    EventId,
    AnonymousId,
    UserId,
    SessionId,
    Timestamp,
    ReceivedAt,
    Context,
    #[serde(rename = "type")]
    Kind,
    Properties,
    #[serde(other)]
    Unknown,
}

impl<'de> Deserialize<'de> for OnePass {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(OnePassVisitor)
    }
}

struct OnePassVisitor;

/// Sets `slot` from the map's next value, refusing a field given twice as serde's derive does.
fn once<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
    map: &mut A,
    slot: &mut Option<T>,
    name: &'static str,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(A::Error::duplicate_field(name));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

impl<'de> Visitor<'de> for OnePassVisitor {
    type Value = OnePass;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OnePass, A::Error> {
        let (mut event_id, mut anonymous_id, mut user_id, mut session_id) =
            (None, None, None, None);
        let (mut timestamp, mut received_at, mut context, mut kind) = (None, None, None, None);
        let mut payload = None;
        let mut raw_properties: Option<Box<RawValue>> = None;
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::EventId => once(&mut map, &mut event_id, "event_id")?,
                Field::AnonymousId => once(&mut map, &mut anonymous_id, "anonymous_id")?,
                Field::UserId => once(&mut map, &mut user_id, "user_id")?,
                Field::SessionId => once(&mut map, &mut session_id, "session_id")?,
                Field::Timestamp => once(&mut map, &mut timestamp, "timestamp")?,
                Field::ReceivedAt => once(&mut map, &mut received_at, "received_at")?,
                Field::Context => once(&mut map, &mut context, "context")?,
                Field::Kind => once(&mut map, &mut kind, "type")?,
                Field::Properties => {
                    if payload.is_some() || raw_properties.is_some() {
                        return Err(A::Error::duplicate_field("properties"));
                    }
                    match kind {
                        Some(kind) => payload = Some(map.next_value_seed::<Kind>(kind)?),
                        None => raw_properties = Some(map.next_value()?),
                    }
                }
                Field::Unknown => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        let kind: Kind = kind.ok_or_else(|| A::Error::missing_field("type"))?;
        let payload = match (payload, raw_properties) {
            (Some(payload), _) => payload,
            (None, Some(raw)) => kind
                .payload(&mut serde_json::Deserializer::from_str(raw.get()))
                .map_err(A::Error::custom)?,
            (None, None) => return Err(A::Error::missing_field("properties")),
        };
        Ok(OnePass {
            has_context: context.is_some(),
            event: Event {
                event_id: event_id.ok_or_else(|| A::Error::missing_field("event_id"))?,
                anonymous_id: anonymous_id
                    .ok_or_else(|| A::Error::missing_field("anonymous_id"))?,
                user_id: user_id.flatten(),
                session_id: session_id.flatten(),
                timestamp: timestamp.ok_or_else(|| A::Error::missing_field("timestamp"))?,
                received_at: received_at.flatten(),
                context: context.unwrap_or_default(),
                payload,
            },
        })
    }
}
