//! Tests of the inbound parser and the outbound builders. The Twilio frames are the shapes of
//! Twilio's documentation with placeholders made concrete (`MZ…` ids are kept as they are:
//! they are valid JSON strings).

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::Value;

use super::*;

/// Parses a frame the test expects to be valid.
fn parse(text: &str) -> Inbound {
    parse_inbound(text).expect("the frame is valid")
}

/// The `StreamStart` of a frame the test expects to be a valid `start`.
fn parse_start(text: &str) -> StreamStart {
    match parse(text) {
        Inbound::Start(start) => start,
        other => panic!("expected a start, got {other:?}"),
    }
}

/// The `MediaChunk` of a frame the test expects to be a valid `media`.
fn parse_media(text: &str) -> MediaChunk {
    match parse(text) {
        Inbound::Media(chunk) => chunk,
        other => panic!("expected media, got {other:?}"),
    }
}

/// The error of a frame the test expects to be refused.
fn parse_error(text: &str) -> ProtocolError {
    parse_inbound(text).expect_err("the frame is invalid")
}

/// A map of string pairs.
fn strings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|&(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

/// An outbound frame parsed back as a JSON object.
fn json_object(text: &str) -> serde_json::Map<String, Value> {
    match serde_json::from_str(text).expect("outbound frames are JSON") {
        Value::Object(object) => object,
        other => panic!("expected an object, got {other}"),
    }
}

/// The keys of an object, sorted.
fn keys(object: &serde_json::Map<String, Value>) -> Vec<&str> {
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

/// The object under `key`.
fn inner<'a>(
    object: &'a serde_json::Map<String, Value>,
    key: &str,
) -> &'a serde_json::Map<String, Value> {
    object
        .get(key)
        .and_then(Value::as_object)
        .expect("the key holds an object")
}

/// Twilio's `start`, as documented, with custom parameters.
const TWILIO_START: &str = r#"{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC…","streamSid":"MZ…","callSid":"CA…","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},"customParameters":{"agent":"dental","from_number":"+15550001111","to_number":"+15550002222"}},"streamSid":"MZ…"}"#;

#[test]
fn twilio_connected_example() {
    assert_eq!(
        parse(r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#),
        Inbound::Connected
    );
}

#[test]
fn twilio_start_example() {
    let start = parse_start(TWILIO_START);
    assert_eq!(start.provider, Provider::Twilio);
    assert_eq!(start.stream_id, "MZ…");
    assert_eq!(start.call_id, "CA…");
    assert_eq!(start.account_id.as_deref(), Some("AC…"));
    assert_eq!(start.encoding, AudioEncoding::Mulaw);
    assert_eq!(start.sample_rate_hz, 8000);
    assert_eq!(start.channels, 1);
    assert_eq!(
        start.custom_parameters,
        strings(&[
            ("agent", "dental"),
            ("from_number", "+15550001111"),
            ("to_number", "+15550002222"),
        ])
    );
    // Promoted from the custom parameters, as the reference peer does.
    assert_eq!(start.from.as_deref(), Some("+15550001111"));
    assert_eq!(start.to.as_deref(), Some("+15550002222"));
}

#[test]
fn twilio_start_without_numbers_or_format() {
    let start = parse_start(
        r#"{"event":"start","start":{"streamSid":"MZ1","callSid":"CA1","customParameters":{"from_number":""}}}"#,
    );
    assert_eq!(start.account_id, None);
    assert_eq!(
        (start.encoding, start.sample_rate_hz, start.channels),
        (AudioEncoding::Mulaw, 8000, 1)
    );
    // An empty number is no number.
    assert_eq!((start.from, start.to), (None, None));
}

#[test]
fn custom_parameters_that_are_not_strings_keep_their_json_text() {
    let start = parse_start(
        r#"{"event":"start","start":{"streamSid":"MZ1","callSid":"CA1","customParameters":{"n":5,"yes":true,"nothing":null,"list":[1,"a"],"object":{"a":1},"text":"5"}}}"#,
    );
    assert_eq!(
        start.custom_parameters,
        strings(&[
            ("list", r#"[1,"a"]"#),
            ("n", "5"),
            ("nothing", "null"),
            ("object", r#"{"a":1}"#),
            ("text", "5"),
            ("yes", "true"),
        ])
    );
}

#[test]
fn twilio_media_example_with_string_counters() {
    // 160 bytes of μ-law silence (0xFF), 20 ms.
    let payload = vec![0xFF_u8; 160];
    let text = format!(
        r#"{{"event":"media","sequenceNumber":"3","media":{{"track":"inbound","chunk":"1","timestamp":"0","payload":"{}"}},"streamSid":"MZ…"}}"#,
        BASE64.encode(&payload)
    );
    let chunk = parse_media(&text);
    assert_eq!(chunk.sequence, Some(3));
    assert_eq!(chunk.chunk, Some(1));
    assert_eq!(chunk.timestamp_ms, Some(0));
    assert_eq!(chunk.payload, payload);
}

#[test]
fn counters_as_numbers_and_snake_case() {
    // Exotel's shape: numbers, `sequence_number`, no track.
    let chunk = parse_media(
        r#"{"event":"media","sequence_number":7,"stream_sid":"s1","media":{"chunk":6,"timestamp":"120","payload":"AAEC"}}"#,
    );
    assert_eq!(chunk.sequence, Some(7));
    assert_eq!(chunk.chunk, Some(6));
    assert_eq!(chunk.timestamp_ms, Some(120));
    assert_eq!(chunk.payload, vec![0x00, 0x01, 0x02]);
}

#[test]
fn without_counters_and_unpadded_base64() {
    let chunk = parse_media(r#"{"event":"media","media":{"payload":"AAE"}}"#);
    assert_eq!(
        (chunk.sequence, chunk.chunk, chunk.timestamp_ms),
        (None, None, None)
    );
    assert_eq!(chunk.payload, vec![0x00, 0x01]);
    let empty = parse_media(r#"{"event":"media","media":{"payload":""}}"#);
    assert!(empty.payload.is_empty());
}

#[test]
fn twilio_dtmf_mark_and_stop_examples() {
    assert_eq!(
        parse(
            r#"{"event":"dtmf","streamSid":"MZ…","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"1"}}"#
        ),
        Inbound::Dtmf {
            digit: "1".to_owned()
        }
    );
    assert_eq!(
        parse(
            r#"{"event":"mark","sequenceNumber":"4","streamSid":"MZ…","mark":{"name":"utterance-7"}}"#
        ),
        Inbound::Mark {
            name: "utterance-7".to_owned()
        }
    );
    assert_eq!(
        parse(
            r#"{"event":"stop","sequenceNumber":"5","stop":{"accountSid":"AC…","callSid":"CA…"},"streamSid":"MZ…"}"#
        ),
        Inbound::Stop
    );
}

#[test]
fn unknown_events_are_other() {
    assert_eq!(
        parse(r#"{"event":"clearedAudio","streamId":"p1"}"#),
        Inbound::Other {
            event: "clearedAudio".to_owned()
        }
    );
}

#[test]
fn telnyx_connected_and_start() {
    assert_eq!(
        parse(r#"{"event":"connected","version":"1.0.0"}"#),
        Inbound::Connected
    );
    let start = parse_start(
        r#"{"event":"start","sequence_number":"1","stream_id":"32DE0DEA","start":{"user_id":"3E6F995F","call_control_id":"v2:T02llQ","call_session_id":"ff55a038","from":"+13122010094","to":"+13122123456","tags":["TAG1"],"client_state":"aGF2ZQ==","custom_parameters":{"customer_id":"customer_123"},"media_format":{"encoding":"PCMA","sample_rate":8000,"channels":1}}}"#,
    );
    assert_eq!(start.provider, Provider::Telnyx);
    assert_eq!(start.stream_id, "32DE0DEA");
    assert_eq!(start.call_id, "v2:T02llQ");
    assert_eq!(start.account_id, None);
    assert_eq!(start.encoding, AudioEncoding::Alaw);
    assert_eq!((start.sample_rate_hz, start.channels), (8000, 1));
    assert_eq!(
        start.custom_parameters,
        strings(&[("customer_id", "customer_123")])
    );
    assert_eq!(start.from.as_deref(), Some("+13122010094"));
    assert_eq!(start.to.as_deref(), Some("+13122123456"));
}

#[test]
fn telnyx_pcmu_is_mulaw() {
    let start = parse_start(
        r#"{"event":"start","stream_id":"t1","start":{"call_control_id":"v2:c","media_format":{"encoding":"PCMU"}}}"#,
    );
    assert_eq!(start.encoding, AudioEncoding::Mulaw);
}

#[test]
fn plivo_start_and_played_stream() {
    let start = parse_start(
        r#"{"event":"start","sequenceNumber":1,"start":{"callId":"12345678-aaaa","streamId":"87654321-bbbb","accountId":"MAXXXX","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000}},"extra_headers":"userId=12345"}"#,
    );
    assert_eq!(start.provider, Provider::Plivo);
    assert_eq!(start.stream_id, "87654321-bbbb");
    assert_eq!(start.call_id, "12345678-aaaa");
    assert_eq!(start.account_id.as_deref(), Some("MAXXXX"));
    assert_eq!(start.encoding, AudioEncoding::Mulaw);
    assert_eq!((start.sample_rate_hz, start.channels), (8000, 1));
    assert!(start.custom_parameters.is_empty());
    assert_eq!(
        parse(r#"{"event":"playedStream","streamId":"87654321-bbbb","name":"greeting"}"#),
        Inbound::Mark {
            name: "greeting".to_owned()
        }
    );
}

#[test]
fn exotel_start_is_linear16() {
    let start = parse_start(
        r#"{"event":"start","sequence_number":1,"stream_sid":"e1","start":{"stream_sid":"e1","call_sid":"c1","account_sid":"acct","from":"09999","to":"08888","custom_parameters":{"agent":"sales"},"media_format":{"encoding":"base64","sample_rate":"16000","bit_rate":"256kbps"}}}"#,
    );
    assert_eq!(start.provider, Provider::Exotel);
    assert_eq!(start.stream_id, "e1");
    assert_eq!(start.call_id, "c1");
    assert_eq!(start.account_id.as_deref(), Some("acct"));
    assert_eq!(start.encoding, AudioEncoding::Linear16);
    assert_eq!((start.sample_rate_hz, start.channels), (16000, 1));
    assert_eq!(start.custom_parameters, strings(&[("agent", "sales")]));
    assert_eq!(start.from.as_deref(), Some("09999"));
    assert_eq!(start.to.as_deref(), Some("08888"));
}

#[test]
fn detection_order_prefers_twilio() {
    // Both Twilio's and Plivo's keys: Twilio is checked first.
    let start = parse_start(
        r#"{"event":"start","start":{"streamSid":"MZ1","callSid":"CA1","streamId":"p","callId":"q"}}"#,
    );
    assert_eq!(
        (start.provider, start.stream_id.as_str()),
        (Provider::Twilio, "MZ1")
    );
}

#[test]
fn error_not_json() {
    for text in ["", "not json", "{\"event\":", "[1,2]", "\"start\"", "42"] {
        assert!(
            matches!(parse_error(text), ProtocolError::NotJson),
            "{text:?}"
        );
    }
}

#[test]
fn error_no_event() {
    for text in [
        r#"{}"#,
        r#"{"streamSid":"MZ1"}"#,
        r#"{"event":5}"#,
        r#"{"event":null}"#,
    ] {
        assert!(
            matches!(parse_error(text), ProtocolError::NoEvent),
            "{text:?}"
        );
    }
}

#[test]
fn error_bad_base64() {
    let error = parse_error(r#"{"event":"media","media":{"payload":"not base64!"}}"#);
    assert!(
        matches!(&error, ProtocolError::BadBase64 { event } if event == "media"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "`media` frame: payload is not valid base64"
    );
}

#[test]
fn error_too_large_is_checked_first() {
    // Not JSON either: the length is checked before parsing.
    let over = "x".repeat(MAX_FRAME_BYTES + 1);
    let error = parse_error(&over);
    assert!(
        matches!(error, ProtocolError::TooLarge { bytes, limit } if bytes == 65_537 && limit == 65_536),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "frame of 65537 bytes is over the 65536-byte limit"
    );

    // A frame of exactly the limit is parsed.
    let prefix = r#"{"event":"other","pad":""#;
    let suffix = r#""}"#;
    let exact = format!(
        "{prefix}{}{suffix}",
        "a".repeat(MAX_FRAME_BYTES - prefix.len() - suffix.len())
    );
    assert_eq!(exact.len(), MAX_FRAME_BYTES);
    assert_eq!(
        parse(&exact),
        Inbound::Other {
            event: "other".to_owned()
        }
    );
}

#[test]
fn error_start_missing_its_stream_id_is_unknown_provider() {
    // Without `streamSid` the frame has no provider's shape (detection needs the key).
    let error = parse_error(
        r#"{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC1","callSid":"CA1","tracks":["inbound"]}}"#,
    );
    assert!(
        matches!(&error, ProtocolError::UnknownProvider { keys }
            if keys == "event, sequenceNumber, start{accountSid, callSid, tracks}"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "`start` frame matches no known provider (keys: event, sequenceNumber, start{accountSid, callSid, tracks})"
    );
    assert!(
        matches!(parse_error(r#"{"event":"start"}"#), ProtocolError::UnknownProvider { keys } if keys == "event")
    );
}

#[test]
fn error_start_with_an_unusable_stream_id_is_bad_field() {
    for (stream_sid, reason) in [
        ("null", "is missing"),
        ("5", "is not a string"),
        (r#""""#, "is empty"),
    ] {
        let error = parse_error(&format!(
            r#"{{"event":"start","start":{{"streamSid":{stream_sid},"callSid":"CA1"}}}}"#
        ));
        assert!(
            matches!(&error, ProtocolError::BadField { event, field, reason: why }
                if event == "start" && *field == "start.streamSid" && why == reason),
            "{stream_sid}: {error:?}"
        );
    }
    let error = parse_error(r#"{"event":"start","start":{"streamSid":"","callSid":"CA1"}}"#);
    assert_eq!(
        error.to_string(),
        "`start` frame: field `start.streamSid` is empty"
    );
}

#[test]
fn error_bad_fields() {
    let cases = [
        (
            r#"{"event":"media","media":{}}"#,
            "media.payload",
            "is missing",
        ),
        (
            r#"{"event":"media","media":{"payload":5}}"#,
            "media.payload",
            "is not a string",
        ),
        (
            r#"{"event":"media","sequenceNumber":"three","media":{"payload":""}}"#,
            "sequenceNumber",
            r#"is not a whole number: "three""#,
        ),
        (
            r#"{"event":"media","media":{"chunk":-1,"payload":""}}"#,
            "media.chunk",
            "is not a whole number: -1",
        ),
        (
            r#"{"event":"media","media":{"timestamp":[],"payload":""}}"#,
            "media.timestamp",
            "is not a number or a string",
        ),
        (r#"{"event":"dtmf","dtmf":{}}"#, "dtmf.digit", "is missing"),
        (
            r#"{"event":"mark","mark":{"name":1}}"#,
            "mark.name",
            "is not a string",
        ),
        (
            r#"{"event":"start","start":{"streamSid":"MZ1","callSid":"CA1","mediaFormat":{"encoding":"audio/x-l16"}}}"#,
            "start.mediaFormat.encoding",
            r#"is not a supported encoding: "audio/x-l16""#,
        ),
        (
            r#"{"event":"start","start":{"streamSid":"MZ1","callSid":"CA1","mediaFormat":{"sampleRate":0}}}"#,
            "start.mediaFormat.sampleRate",
            "is zero",
        ),
        (
            r#"{"event":"start","start":{"streamSid":"MZ1","callSid":"CA1","mediaFormat":{"channels":70000}}}"#,
            "start.mediaFormat.channels",
            "is too large: 70000",
        ),
        (
            r#"{"event":"start","start":{"streamSid":"MZ1","callSid":"CA1","customParameters":"agent=x"}}"#,
            "start.customParameters",
            "is not an object",
        ),
        (
            r#"{"event":"start","stream_id":"t","start":{"call_control_id":"c","media_format":{"encoding":"OPUS"}}}"#,
            "start.media_format.encoding",
            r#"is not a supported encoding: "OPUS""#,
        ),
    ];
    for (text, expected_field, expected_reason) in cases {
        let error = parse_error(text);
        assert!(
            matches!(&error, ProtocolError::BadField { field, reason, .. }
                if *field == expected_field && reason == expected_reason),
            "{text}: {error:?}"
        );
    }
}

#[test]
fn outbound_twilio_frames() {
    let media = json_object(&media_frame(Provider::Twilio, "MZ1", &[0xFF, 0x7F, 0x00]));
    assert_eq!(keys(&media), ["event", "media", "streamSid"]);
    assert_eq!(media["event"], "media");
    assert_eq!(media["streamSid"], "MZ1");
    assert_eq!(keys(inner(&media, "media")), ["payload"]);
    assert_eq!(media["media"]["payload"], "/38A");

    let mark = json_object(&mark_frame(Provider::Twilio, "MZ1", "utterance-1"));
    assert_eq!(keys(&mark), ["event", "mark", "streamSid"]);
    assert_eq!(
        (&mark["event"], &mark["streamSid"]),
        (&Value::from("mark"), &Value::from("MZ1"))
    );
    assert_eq!(keys(inner(&mark, "mark")), ["name"]);
    assert_eq!(mark["mark"]["name"], "utterance-1");

    let clear = json_object(&clear_frame(Provider::Twilio, "MZ1"));
    assert_eq!(keys(&clear), ["event", "streamSid"]);
    assert_eq!(
        (&clear["event"], &clear["streamSid"]),
        (&Value::from("clear"), &Value::from("MZ1"))
    );
}

#[test]
fn outbound_telnyx_frames_carry_no_stream_id() {
    let media = json_object(&media_frame(Provider::Telnyx, "ignored", &[1, 2, 3, 4]));
    assert_eq!(keys(&media), ["event", "media"]);
    assert_eq!(media["event"], "media");
    assert_eq!(keys(inner(&media, "media")), ["payload"]);
    assert_eq!(media["media"]["payload"], "AQIDBA==");

    let mark = json_object(&mark_frame(Provider::Telnyx, "ignored", "m"));
    assert_eq!(keys(&mark), ["event", "mark"]);
    assert_eq!(
        (&mark["event"], &mark["mark"]["name"]),
        (&Value::from("mark"), &Value::from("m"))
    );

    let clear = json_object(&clear_frame(Provider::Telnyx, "ignored"));
    assert_eq!(keys(&clear), ["event"]);
    assert_eq!(clear["event"], "clear");
}

#[test]
fn outbound_plivo_frames() {
    let media = json_object(&media_frame(Provider::Plivo, "p1", &[0xFF; 3]));
    assert_eq!(keys(&media), ["event", "media", "streamId"]);
    assert_eq!(
        (&media["event"], &media["streamId"]),
        (&Value::from("playAudio"), &Value::from("p1"))
    );
    assert_eq!(
        keys(inner(&media, "media")),
        ["contentType", "payload", "sampleRate"]
    );
    assert_eq!(media["media"]["contentType"], "audio/x-mulaw");
    assert_eq!(media["media"]["sampleRate"], 8000);
    assert_eq!(media["media"]["payload"], "////");

    let mark = json_object(&mark_frame(Provider::Plivo, "p1", "greeting"));
    assert_eq!(keys(&mark), ["event", "name", "streamId"]);
    assert_eq!(
        (&mark["event"], &mark["streamId"], &mark["name"]),
        (
            &Value::from("checkpoint"),
            &Value::from("p1"),
            &Value::from("greeting")
        )
    );

    let clear = json_object(&clear_frame(Provider::Plivo, "p1"));
    assert_eq!(keys(&clear), ["event", "streamId"]);
    assert_eq!(
        (&clear["event"], &clear["streamId"]),
        (&Value::from("clearAudio"), &Value::from("p1"))
    );
}

#[test]
fn outbound_exotel_frames() {
    let media = json_object(&media_frame(Provider::Exotel, "e1", &[0x00, 0x80]));
    assert_eq!(keys(&media), ["event", "media", "stream_sid"]);
    assert_eq!(
        (&media["event"], &media["stream_sid"]),
        (&Value::from("media"), &Value::from("e1"))
    );
    assert_eq!(keys(inner(&media, "media")), ["payload"]);
    assert_eq!(media["media"]["payload"], "AIA=");

    let mark = json_object(&mark_frame(Provider::Exotel, "e1", "m"));
    assert_eq!(keys(&mark), ["event", "mark", "stream_sid"]);
    assert_eq!(mark["mark"]["name"], "m");

    let clear = json_object(&clear_frame(Provider::Exotel, "e1"));
    assert_eq!(keys(&clear), ["event", "stream_sid"]);
    assert_eq!(clear["event"], "clear");
}

#[test]
fn outbound_frames_escape_their_strings() {
    let mark = json_object(&mark_frame(Provider::Twilio, "MZ\"1", "a\"b\\c\n"));
    assert_eq!(mark["streamSid"], "MZ\"1");
    assert_eq!(mark["mark"]["name"], "a\"b\\c\n");
}

#[test]
fn outbound_media_round_trips_through_the_parser() {
    let payload: Vec<u8> = (0..=255).collect();
    let text = media_frame(Provider::Twilio, "MZ1", &payload);
    assert_eq!(parse_media(&text).payload, payload);
}

#[test]
fn frame_bytes_of_telephony_frames() {
    assert_eq!(frame_bytes(AudioEncoding::Mulaw, 20), 160);
    assert_eq!(frame_bytes(AudioEncoding::Alaw, 20), 160);
    assert_eq!(frame_bytes(AudioEncoding::Linear16, 20), 320);
    assert_eq!(frame_bytes(AudioEncoding::Mulaw, 0), 0);
    assert_eq!(frame_bytes_at(AudioEncoding::Linear16, 16_000, 2, 20), 1280);
    assert_eq!(frame_bytes_at(AudioEncoding::Mulaw, 8000, 1, 1), 8);
    // 4.3e9 Hz for 4.3e9 ms on 65535 channels: past u64, saturated.
    assert_eq!(
        frame_bytes_at(AudioEncoding::Linear16, u32::MAX, u16::MAX, u32::MAX),
        usize::MAX
    );
}

#[test]
fn provider_names() {
    let names: Vec<&str> = [
        Provider::Twilio,
        Provider::Telnyx,
        Provider::Plivo,
        Provider::Exotel,
    ]
    .into_iter()
    .map(Provider::name)
    .collect();
    assert_eq!(names, ["twilio", "telnyx", "plivo", "exotel"]);
}
