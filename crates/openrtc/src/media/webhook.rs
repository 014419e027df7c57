//! The voice webhook (`POST /voice` beside the media WebSocket, with
//! [`crate::AgentPoolBuilder::voice_webhook`]): Twilio asks it what to do with a call that
//! reached the number, and it answers TwiML that connects the call's audio to the media
//! WebSocket, `<Connect><Stream url="wss://…/media">` with a `<Parameter>` per routing key
//! (`agent`, `tenant`, anything else the agent should see), picked from a route table by the
//! number called (`To`).
//!
//! With an auth token set, each request must carry a valid `X-Twilio-Signature`: base64 of
//! HMAC-SHA1, keyed with the token, over the webhook's public URL followed by every POST
//! parameter's name and value, sorted by name. A missing or wrong signature is answered 403
//! and nothing else. The URL is the one Twilio was configured with (behind a proxy the
//! worker cannot know it), so it is part of the configuration.

use std::collections::BTreeMap;

use base64::Engine as _;
use hmac::{Hmac, Mac};

/// How Twilio reaches the worker for its calls, and where each number's calls go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoiceWebhook {
    stream_url: String,
    public_url: Option<String>,
    auth_token: Option<String>,
    routes: BTreeMap<String, BTreeMap<String, String>>,
    default_route: Option<BTreeMap<String, String>>,
}

/// Why a voice webhook's configuration cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VoiceWebhookError {
    /// The stream URL is not a `wss://` or `ws://` URL without a query string (Twilio drops
    /// the query string or fails the handshake).
    #[error(
        "invalid stream URL {url:?}: use wss://host/path (ws:// for tests), without a query string"
    )]
    StreamUrl {
        /// The URL as given.
        url: String,
    },
    /// An auth token was set without the webhook's public URL, which the signature covers.
    #[error("an auth token needs the webhook's public URL (public_url): the signature covers it")]
    NoPublicUrl,
}

impl VoiceWebhook {
    /// A webhook answering every call with a stream to `stream_url` (the media WebSocket as
    /// the provider reaches it: `wss://calls.example.com/media`), with no route yet.
    #[must_use]
    pub fn new(stream_url: impl Into<String>) -> Self {
        Self {
            stream_url: stream_url.into(),
            public_url: None,
            auth_token: None,
            routes: BTreeMap::new(),
            default_route: None,
        }
    }

    /// The webhook's own URL as Twilio calls it (`https://calls.example.com/voice`), which
    /// request signatures cover.
    #[must_use]
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = Some(url.into());
        self
    }

    /// Checks `X-Twilio-Signature` on every request with this account auth token.
    #[must_use]
    pub fn auth_token(mut self, token: impl Into<String>) -> Self {
        self.auth_token = Some(token.into());
        self
    }

    /// Calls to number `to` (E.164, as Twilio sends `To`) get these stream parameters.
    #[must_use]
    pub fn route<K, V>(
        mut self,
        to: impl Into<String>,
        params: impl IntoIterator<Item = (K, V)>,
    ) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        self.routes.insert(to.into(), collect(params));
        self
    }

    /// Calls to any other number get these parameters (without a default route, they are
    /// rejected with `<Reject/>`).
    #[must_use]
    pub fn default_route<K, V>(mut self, params: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        self.default_route = Some(collect(params));
        self
    }

    /// Checks the configuration (when the pool is built).
    pub(crate) fn validate(&self) -> Result<(), VoiceWebhookError> {
        let url = &self.stream_url;
        let scheme_ok = url.starts_with("wss://") || url.starts_with("ws://");
        if !scheme_ok || url.contains(['?', '#']) {
            return Err(VoiceWebhookError::StreamUrl { url: url.clone() });
        }
        if self.auth_token.is_some() && self.public_url.is_none() {
            return Err(VoiceWebhookError::NoPublicUrl);
        }
        Ok(())
    }

    /// The answer to a webhook request with these POST parameters and signature header
    /// (pure): the HTTP status and the body (TwiML, or why not).
    pub(crate) fn answer(
        &self,
        params: &BTreeMap<String, String>,
        signature: Option<&str>,
    ) -> (u16, String) {
        if let (Some(token), Some(url)) = (&self.auth_token, &self.public_url) {
            let valid = signature.is_some_and(|given| {
                let expected = twilio_signature(token, url, params);
                constant_time_eq(given.trim().as_bytes(), expected.as_bytes())
            });
            if !valid {
                return (403, "invalid or missing X-Twilio-Signature\n".to_owned());
            }
        }
        let to = params.get("To").map_or("", String::as_str);
        match self.routes.get(to).or(self.default_route.as_ref()) {
            Some(route) => (200, connect_stream(&self.stream_url, route, params)),
            None => (
                200,
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Reject/></Response>"
                    .to_owned(),
            ),
        }
    }
}

fn collect<K: Into<String>, V: Into<String>>(
    params: impl IntoIterator<Item = (K, V)>,
) -> BTreeMap<String, String> {
    params
        .into_iter()
        .map(|(key, value)| (key.into(), value.into()))
        .collect()
}

/// TwiML connecting the call to the stream, with the route's parameters and the caller's and
/// called numbers (`from_number`, `to_number`) as `<Parameter>`s (pure).
fn connect_stream(
    stream_url: &str,
    route: &BTreeMap<String, String>,
    params: &BTreeMap<String, String>,
) -> String {
    let mut twiml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Connect><Stream url=\"{}\">",
        escape(stream_url)
    );
    let numbers = [("from_number", "From"), ("to_number", "To")]
        .into_iter()
        .filter_map(|(name, key)| Some((name.to_owned(), params.get(key)?.clone())));
    let all: BTreeMap<String, String> = route
        .iter()
        .map(|(key, value)| (key.clone(), value.clone()))
        .chain(numbers)
        .collect();
    for (name, value) in &all {
        twiml.push_str(&format!(
            "<Parameter name=\"{}\" value=\"{}\"/>",
            escape(name),
            escape(value)
        ));
    }
    twiml.push_str("</Stream></Connect></Response>");
    twiml
}

/// Escapes text for an XML attribute (pure).
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// Twilio's request signature (pure): base64(HMAC-SHA1(token, url + each name and value,
/// sorted by name)).
pub(crate) fn twilio_signature(
    token: &str,
    url: &str,
    params: &BTreeMap<String, String>,
) -> String {
    let mut signed = url.to_owned();
    for (name, value) in params {
        signed.push_str(name);
        signed.push_str(value);
    }
    // HMAC accepts a key of any length: this cannot fail.
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()) else {
        return String::new();
    };
    mac.update(signed.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Compares two byte strings in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0_u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        collect(pairs.iter().copied())
    }

    #[test]
    fn a_routed_number_gets_a_stream_with_its_parameters_escaped() {
        let webhook = VoiceWebhook::new("wss://calls.example.com/media")
            .route("+15550100", [("agent", "echo"), ("tenant", "a&b \"c\"")]);
        let (status, twiml) =
            webhook.answer(&params(&[("To", "+15550100"), ("From", "+15550199")]), None);
        assert_eq!(status, 200);
        assert_eq!(
            twiml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Connect>\
             <Stream url=\"wss://calls.example.com/media\">\
             <Parameter name=\"agent\" value=\"echo\"/>\
             <Parameter name=\"from_number\" value=\"+15550199\"/>\
             <Parameter name=\"tenant\" value=\"a&amp;b &quot;c&quot;\"/>\
             <Parameter name=\"to_number\" value=\"+15550100\"/>\
             </Stream></Connect></Response>"
        );
    }

    #[test]
    fn other_numbers_take_the_default_route_or_are_rejected() {
        let webhook = VoiceWebhook::new("wss://h/media").route("+1", [("agent", "a")]);
        let (_, twiml) = webhook.answer(&params(&[("To", "+2")]), None);
        assert!(twiml.ends_with("<Response><Reject/></Response>"), "{twiml}");
        let webhook = webhook.default_route([("agent", "fallback")]);
        let (_, twiml) = webhook.answer(&params(&[("To", "+2")]), None);
        assert!(
            twiml.contains("<Parameter name=\"agent\" value=\"fallback\"/>"),
            "{twiml}"
        );
    }

    #[test]
    fn with_a_token_only_a_valid_signature_is_answered() {
        let webhook = VoiceWebhook::new("wss://h/media")
            .public_url("https://h/voice")
            .auth_token("secret")
            .default_route([("agent", "echo")]);
        let request = params(&[("CallSid", "CA1"), ("To", "+1")]);
        let signature = twilio_signature("secret", "https://h/voice", &request);
        assert_eq!(webhook.answer(&request, Some(&signature)).0, 200);
        assert_eq!(webhook.answer(&request, None).0, 403);
        assert_eq!(webhook.answer(&request, Some("AAAA")).0, 403);
        let tampered = params(&[("CallSid", "CA2"), ("To", "+1")]);
        assert_eq!(webhook.answer(&tampered, Some(&signature)).0, 403);
    }

    #[test]
    fn a_configuration_that_cannot_work_is_refused() {
        assert!(VoiceWebhook::new("wss://h/media").validate().is_ok());
        assert!(
            VoiceWebhook::new("ws://127.0.0.1:1/media")
                .validate()
                .is_ok()
        );
        for url in ["https://h/media", "wss://h/media?x=1", "h/media"] {
            assert_eq!(
                VoiceWebhook::new(url).validate(),
                Err(VoiceWebhookError::StreamUrl {
                    url: url.to_owned()
                })
            );
        }
        assert_eq!(
            VoiceWebhook::new("wss://h/media")
                .auth_token("t")
                .validate(),
            Err(VoiceWebhookError::NoPublicUrl)
        );
    }
}
