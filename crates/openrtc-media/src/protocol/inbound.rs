//! Parsing one inbound text frame into an [`Inbound`] event.
//!
//! Fields are looked up by dotted paths (`start.mediaFormat.sampleRate`), the same paths the
//! errors name. A JSON `null` reads as absent.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Map, Value};

use super::{
    AudioEncoding, BASE64, Inbound, MAX_FRAME_BYTES, MediaChunk, ProtocolError, Provider,
    StreamStart,
};

/// The sample rate a `start` that does not give one implies: G.711's 8 kHz.
const DEFAULT_SAMPLE_RATE_HZ: u32 = 8000;

/// At most this many keys are listed in [`ProtocolError::UnknownProvider`], per object.
const MAX_LISTED_KEYS: usize = 24;

/// Parses one inbound text frame.
///
/// Checks in order: the length ([`MAX_FRAME_BYTES`]), that it is a JSON object, its `event`,
/// then the fields that event needs. Unknown events are [`Inbound::Other`], not errors.
///
/// # Errors
///
/// [`ProtocolError`]: the frame is too large, not a JSON object, has no `event`, lacks a field
/// its event needs (or has one of the wrong type), carries a payload that is not base64, or
/// is a `start` of no known provider.
pub fn parse_inbound(text: &str) -> Result<Inbound, ProtocolError> {
    if text.len() > MAX_FRAME_BYTES {
        return Err(ProtocolError::TooLarge {
            bytes: text.len(),
            limit: MAX_FRAME_BYTES,
        });
    }
    let Ok(Value::Object(frame)) = serde_json::from_str::<Value>(text) else {
        return Err(ProtocolError::NotJson);
    };
    let Some(Value::String(event)) = frame.get("event") else {
        return Err(ProtocolError::NoEvent);
    };
    let fields = Fields {
        event,
        frame: &frame,
    };
    match event.as_str() {
        "connected" => Ok(Inbound::Connected),
        "start" => parse_start(&fields).map(Inbound::Start),
        "media" => parse_media(&fields).map(Inbound::Media),
        "dtmf" => Ok(Inbound::Dtmf {
            digit: fields.required_id("dtmf.digit")?.to_owned(),
        }),
        "mark" => Ok(Inbound::Mark {
            name: fields.required_str("mark.name")?.to_owned(),
        }),
        // Plivo's echo of a `checkpoint`: its mark.
        "playedStream" => Ok(Inbound::Mark {
            name: fields.required_str("name")?.to_owned(),
        }),
        "stop" => Ok(Inbound::Stop),
        _ => Ok(Inbound::Other {
            event: event.clone(),
        }),
    }
}

/// The fields of one frame, and its event for the errors.
struct Fields<'a> {
    /// The frame's `event`.
    event: &'a str,
    /// The frame's top-level object.
    frame: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    /// The value at a dotted `path`, or `None` if any step is absent, not an object, or null.
    fn get(&self, path: &str) -> Option<&'a Value> {
        let mut steps = path.split('.');
        let mut value = self.frame.get(steps.next()?)?;
        for step in steps {
            value = value.as_object()?.get(step)?;
        }
        (!value.is_null()).then_some(value)
    }

    /// A [`ProtocolError::BadField`] about `path`.
    fn bad(&self, path: &'static str, reason: impl Into<String>) -> ProtocolError {
        ProtocolError::BadField {
            event: self.event.to_owned(),
            field: path,
            reason: reason.into(),
        }
    }

    /// The string at `path`, if present.
    fn optional_str(&self, path: &'static str) -> Result<Option<&'a str>, ProtocolError> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(self.bad(path, "is not a string")),
        }
    }

    /// The string at `path`, which must be present (it may be empty).
    fn required_str(&self, path: &'static str) -> Result<&'a str, ProtocolError> {
        self.optional_str(path)?
            .ok_or_else(|| self.bad(path, "is missing"))
    }

    /// The non-empty string at `path`, which must be present: an id.
    fn required_id(&self, path: &'static str) -> Result<&'a str, ProtocolError> {
        let text = self.required_str(path)?;
        if text.is_empty() {
            return Err(self.bad(path, "is empty"));
        }
        Ok(text)
    }

    /// The counter at `path`, if present: a whole number given as a JSON number or string.
    fn counter(&self, path: &'static str) -> Result<Option<u64>, ProtocolError> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::Number(number)) => number
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.bad(path, format!("is not a whole number: {number}"))),
            Some(Value::String(text)) => text
                .parse::<u64>()
                .map(Some)
                .map_err(|_| self.bad(path, format!("is not a whole number: {text:?}"))),
            Some(_) => Err(self.bad(path, "is not a number or a string")),
        }
    }

    /// The counter at the first of `paths` present (a key spelled two ways).
    fn counter_at_first(&self, paths: &[&'static str]) -> Result<Option<u64>, ProtocolError> {
        for &path in paths {
            if self.get(path).is_some() {
                return self.counter(path);
            }
        }
        Ok(None)
    }

    /// The positive counter at `path` as a `T`, or `default` when absent.
    fn positive<T: TryFrom<u64>>(
        &self,
        path: &'static str,
        default: T,
    ) -> Result<T, ProtocolError> {
        match self.counter(path)? {
            None => Ok(default),
            Some(0) => Err(self.bad(path, "is zero")),
            Some(value) => {
                T::try_from(value).map_err(|_| self.bad(path, format!("is too large: {value}")))
            }
        }
    }

    /// The object at `path` as a map of strings: a string value as is, any other value as
    /// its JSON text. Empty when absent.
    fn string_map(&self, path: &'static str) -> Result<BTreeMap<String, String>, ProtocolError> {
        match self.get(path) {
            None => Ok(BTreeMap::new()),
            Some(Value::Object(object)) => Ok(object
                .iter()
                .map(|(key, value)| (key.clone(), json_text(value)))
                .collect()),
            Some(_) => Err(self.bad(path, "is not an object")),
        }
    }
}

/// A JSON value as text: a string's contents, anything else as its JSON.
fn json_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Where a provider's `start` keeps each figure.
struct StartLayout {
    /// The provider with this layout.
    provider: Provider,
    /// The stream id's path.
    stream_id: &'static str,
    /// The call id's path.
    call_id: &'static str,
    /// The account id's path, if the provider sends one.
    account_id: Option<&'static str>,
    /// The media format's encoding's path.
    encoding: &'static str,
    /// The media format's sample rate's path.
    sample_rate_hz: &'static str,
    /// The media format's channel count's path.
    channels: &'static str,
    /// The custom parameters' path, if the provider sends them.
    custom_parameters: Option<&'static str>,
    /// Where the caller's and called numbers are.
    numbers: Numbers,
}

/// Where a provider's `start` gives the caller's and called numbers.
enum Numbers {
    /// As the `from_number` and `to_number` custom parameters (Twilio: TwiML `<Parameter>`s).
    CustomParameters,
    /// As `start.from` and `start.to`.
    StartFields,
}

/// Twilio Media Streams' `start`.
const TWILIO: StartLayout = StartLayout {
    provider: Provider::Twilio,
    stream_id: "start.streamSid",
    call_id: "start.callSid",
    account_id: Some("start.accountSid"),
    encoding: "start.mediaFormat.encoding",
    sample_rate_hz: "start.mediaFormat.sampleRate",
    channels: "start.mediaFormat.channels",
    custom_parameters: Some("start.customParameters"),
    numbers: Numbers::CustomParameters,
};

/// Telnyx's `start`: the stream id is at the top level.
const TELNYX: StartLayout = StartLayout {
    provider: Provider::Telnyx,
    stream_id: "stream_id",
    call_id: "start.call_control_id",
    account_id: None,
    encoding: "start.media_format.encoding",
    sample_rate_hz: "start.media_format.sample_rate",
    channels: "start.media_format.channels",
    custom_parameters: Some("start.custom_parameters"),
    numbers: Numbers::StartFields,
};

/// Plivo's `start`.
const PLIVO: StartLayout = StartLayout {
    provider: Provider::Plivo,
    stream_id: "start.streamId",
    call_id: "start.callId",
    account_id: Some("start.accountId"),
    encoding: "start.mediaFormat.encoding",
    sample_rate_hz: "start.mediaFormat.sampleRate",
    channels: "start.mediaFormat.channels",
    custom_parameters: None,
    numbers: Numbers::StartFields,
};

/// Exotel's `start`.
const EXOTEL: StartLayout = StartLayout {
    provider: Provider::Exotel,
    stream_id: "start.stream_sid",
    call_id: "start.call_sid",
    account_id: Some("start.account_sid"),
    encoding: "start.media_format.encoding",
    sample_rate_hz: "start.media_format.sample_rate",
    channels: "start.media_format.channels",
    custom_parameters: Some("start.custom_parameters"),
    numbers: Numbers::StartFields,
};

/// The layout of a `start` frame, told by its shape (module doc); `None` if it has no
/// known shape. The caller has checked that `event` is `start`.
fn detect(frame: &Map<String, Value>) -> Option<&'static StartLayout> {
    let start = frame.get("start").and_then(Value::as_object);
    let start_has = |key: &str| start.is_some_and(|start| start.contains_key(key));
    if start_has("streamSid") && start_has("callSid") {
        Some(&TWILIO)
    } else if frame.contains_key("stream_id") && start_has("call_control_id") {
        Some(&TELNYX)
    } else if start_has("streamId") && start_has("callId") {
        Some(&PLIVO)
    } else if start_has("stream_sid") && start_has("call_sid") && start_has("account_sid") {
        Some(&EXOTEL)
    } else {
        None
    }
}

/// A `start` frame.
fn parse_start(fields: &Fields<'_>) -> Result<StreamStart, ProtocolError> {
    let Some(layout) = detect(fields.frame) else {
        return Err(ProtocolError::UnknownProvider {
            keys: list_keys(fields.frame),
        });
    };
    let encoding_name = fields.optional_str(layout.encoding)?;
    let encoding = encoding_of(layout.provider, encoding_name).ok_or_else(|| {
        fields.bad(
            layout.encoding,
            format!(
                "is not a supported encoding: {:?}",
                encoding_name.unwrap_or_default()
            ),
        )
    })?;
    let custom_parameters = match layout.custom_parameters {
        Some(path) => fields.string_map(path)?,
        None => BTreeMap::new(),
    };
    let (from, to) = match layout.numbers {
        Numbers::CustomParameters => (
            custom_parameters.get("from_number").cloned(),
            custom_parameters.get("to_number").cloned(),
        ),
        Numbers::StartFields => (
            fields.optional_str("start.from")?.map(str::to_owned),
            fields.optional_str("start.to")?.map(str::to_owned),
        ),
    };
    Ok(StreamStart {
        provider: layout.provider,
        stream_id: fields.required_id(layout.stream_id)?.to_owned(),
        call_id: fields.required_id(layout.call_id)?.to_owned(),
        account_id: match layout.account_id {
            Some(path) => fields.optional_str(path)?.map(str::to_owned),
            None => None,
        },
        encoding,
        sample_rate_hz: fields.positive(layout.sample_rate_hz, DEFAULT_SAMPLE_RATE_HZ)?,
        channels: fields.positive(layout.channels, 1)?,
        custom_parameters,
        from: from.filter(|number| !number.is_empty()),
        to: to.filter(|number| !number.is_empty()),
    })
}

/// The encoding a provider's `start` names (`None` when the frame names none), or `None`
/// when the name is not one the provider is known to send.
fn encoding_of(provider: Provider, name: Option<&str>) -> Option<AudioEncoding> {
    match (provider, name) {
        // Exotel's `media_format.encoding` is `base64`, the transport; its audio is slin.
        (Provider::Exotel, _) => Some(AudioEncoding::Linear16),
        (Provider::Twilio | Provider::Plivo, None | Some("audio/x-mulaw")) => {
            Some(AudioEncoding::Mulaw)
        }
        (Provider::Telnyx, None | Some("PCMU")) => Some(AudioEncoding::Mulaw),
        (Provider::Telnyx, Some("PCMA")) => Some(AudioEncoding::Alaw),
        _ => None,
    }
}

/// A `media` frame. The sequence number is `sequenceNumber` (Twilio, Plivo) or
/// `sequence_number` (Telnyx, Exotel).
fn parse_media(fields: &Fields<'_>) -> Result<MediaChunk, ProtocolError> {
    let payload_base64 = fields.required_str("media.payload")?;
    let payload = BASE64
        .decode(payload_base64)
        .map_err(|_| ProtocolError::BadBase64 {
            event: fields.event.to_owned(),
        })?;
    Ok(MediaChunk {
        sequence: fields.counter_at_first(&["sequenceNumber", "sequence_number"])?,
        chunk: fields.counter("media.chunk")?,
        timestamp_ms: fields.counter("media.timestamp")?,
        payload,
    })
}

/// The keys of a frame, sorted, with those of its `start` object in braces, for
/// [`ProtocolError::UnknownProvider`]: `event, start{callSid, tracks}, streamSid`.
fn list_keys(frame: &Map<String, Value>) -> String {
    let mut keys: Vec<String> = frame
        .iter()
        .map(|(key, value)| match value.as_object() {
            Some(inner) if key == "start" => format!("{key}{{{}}}", join_sorted(inner.keys())),
            _ => key.clone(),
        })
        .collect();
    keys.sort();
    join_sorted(keys.iter())
}

/// Up to [`MAX_LISTED_KEYS`] names, sorted, joined with commas (`...` when some were left out).
fn join_sorted<'k>(names: impl Iterator<Item = &'k String>) -> String {
    let mut names: Vec<&str> = names.map(String::as_str).collect();
    names.sort_unstable();
    let left_out = names.len() > MAX_LISTED_KEYS;
    names.truncate(MAX_LISTED_KEYS);
    if left_out {
        names.push("...");
    }
    names.join(", ")
}
