//! Model calls: which endpoint, which model, how much it may cost, what it did cost.

use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Responses,
    Embeddings,
    Messages,
}

impl Endpoint {
    /// The endpoint a path (under the target) calls, for POST requests.
    pub fn from_path(path: &str) -> Option<Endpoint> {
        let p = path.trim_end_matches('/');
        Some(if p.ends_with("/chat/completions") {
            Endpoint::ChatCompletions
        } else if p.ends_with("/completions") {
            Endpoint::Completions
        } else if p.ends_with("/responses") {
            Endpoint::Responses
        } else if p.ends_with("/embeddings") {
            Endpoint::Embeddings
        } else if p.ends_with("/messages") {
            Endpoint::Messages
        } else {
            return None;
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat.completions",
            Endpoint::Completions => "completions",
            Endpoint::Responses => "responses",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Messages => "messages",
        }
    }

    fn cap_fields(self) -> &'static [&'static str] {
        match self {
            Endpoint::ChatCompletions => &["max_completion_tokens", "max_tokens"],
            Endpoint::Completions | Endpoint::Messages => &["max_tokens"],
            Endpoint::Responses => &["max_output_tokens"],
            Endpoint::Embeddings => &[],
        }
    }
}

/// What the gateway needs from a model request.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmRequest {
    pub endpoint: Endpoint,
    pub model: String,
    /// The request's own output cap, if it named one.
    pub max_tokens: Option<i64>,
    /// Completions asked for (`n`), at least 1.
    pub choices: i64,
    pub stream: bool,
    /// Upper bound on prompt tokens, from the body's size.
    pub prompt_tokens_bound: u64,
}

impl LlmRequest {
    /// Output tokens to reserve: the cap times the number of choices.
    pub fn output_bound(&self, default_cap: i64) -> u64 {
        if self.endpoint == Endpoint::Embeddings {
            return 0;
        }
        (self.max_tokens.unwrap_or(default_cap).max(0) as u64).saturating_mul(self.choices.max(1) as u64)
    }
}

/// Parses the body; `Err` is a client-safe reason (the caller answers 400). Returns the
/// body to forward: when the request names no output cap, the gateway's default is set on
/// it (so the reservation holds), and streaming chat calls ask for a final usage event.
pub fn parse_request(endpoint: Endpoint, body: &[u8], default_cap: i64) -> Result<(LlmRequest, Option<Vec<u8>>), String> {
    let mut v: Value = serde_json::from_slice(body).map_err(|_| "warden: the model request body is not valid JSON".to_string())?;
    let obj = v.as_object_mut().ok_or_else(|| "warden: the model request body must be a JSON object".to_string())?;
    let model = obj.get("model").and_then(Value::as_str).filter(|m| !m.is_empty()).ok_or_else(|| "warden: the model request names no \"model\"".to_string())?.to_string();
    let mut max_tokens = None;
    for f in endpoint.cap_fields() {
        match obj.get(*f) {
            None | Some(Value::Null) => {}
            Some(x) => {
                let n = x.as_i64().filter(|n| *n >= 0).ok_or_else(|| format!("warden: \"{f}\" must be a non-negative integer"))?;
                max_tokens = Some(max_tokens.map_or(n, |m: i64| m.min(n)));
            }
        }
    }
    let choices = match obj.get("n") {
        None | Some(Value::Null) => 1,
        Some(x) => x.as_i64().filter(|n| (1..=128).contains(n)).ok_or_else(|| "warden: \"n\" must be an integer from 1 to 128".to_string())?,
    };
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(x) => x.as_bool().ok_or_else(|| "warden: \"stream\" must be true or false".to_string())?,
    };
    let mut changed = false;
    if max_tokens.is_none() {
        if let Some(f) = endpoint.cap_fields().first() {
            obj.insert(f.to_string(), json!(default_cap));
            changed = true;
        }
    }
    if stream && matches!(endpoint, Endpoint::ChatCompletions | Endpoint::Completions) {
        let so = obj.entry("stream_options").or_insert_with(|| json!({}));
        if let Some(so) = so.as_object_mut() {
            if so.get("include_usage") != Some(&Value::Bool(true)) {
                so.insert("include_usage".into(), Value::Bool(true));
                changed = true;
            }
        }
    }
    let req = LlmRequest { endpoint, model, max_tokens, choices, stream, prompt_tokens_bound: body.len() as u64 / 2 + 16 };
    let body = if changed { Some(serde_json::to_vec(&v).expect("a Value serializes")) } else { None };
    Ok((req, body))
}

/// Token usage as providers report it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt: u64,
    pub completion: u64,
}

/// Reads `usage` (OpenAI chat/completions/embeddings/responses, Anthropic) from a response
/// body or a stream event, merging into `into` (the larger count wins: Anthropic reports
/// input at the start and output at the end).
pub fn read_usage(v: &Value, into: &mut Option<Usage>) {
    for u in [&v["usage"], &v["message"]["usage"], &v["response"]["usage"]] {
        if !u.is_object() {
            continue;
        }
        let get = |keys: &[&str]| keys.iter().find_map(|k| u[*k].as_u64());
        let prompt = get(&["prompt_tokens", "input_tokens"]);
        let completion = get(&["completion_tokens", "output_tokens"]);
        if prompt.is_none() && completion.is_none() {
            continue;
        }
        let cur = into.get_or_insert_with(Usage::default);
        cur.prompt = cur.prompt.max(prompt.unwrap_or(0));
        cur.completion = cur.completion.max(completion.unwrap_or(0));
    }
}

/// Micro-dollars for a token count at a USD-per-million-tokens price (rounded up).
pub fn micros(tokens: u64, usd_per_mtok: f64) -> u64 {
    (tokens as f64 * usd_per_mtok).ceil() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_get_a_cap_and_usage_reporting() {
        let (r, body) = parse_request(Endpoint::ChatCompletions, br#"{"model":"m","messages":[],"stream":true}"#, 100).unwrap();
        assert_eq!((r.model.as_str(), r.max_tokens, r.stream), ("m", None, true));
        assert_eq!(r.output_bound(100), 100);
        let v: Value = serde_json::from_slice(&body.unwrap()).unwrap();
        assert_eq!(v["max_completion_tokens"], 100);
        assert_eq!(v["stream_options"]["include_usage"], true);
        let (r, body) = parse_request(Endpoint::Messages, br#"{"model":"c","max_tokens":50,"n":2}"#, 100).unwrap();
        assert_eq!(r.output_bound(100), 100);
        assert!(body.is_none());
        assert!(parse_request(Endpoint::ChatCompletions, br#"{"messages":[]}"#, 1).is_err());
        assert!(parse_request(Endpoint::ChatCompletions, br#"{"model":"m","max_tokens":-1}"#, 1).is_err());
        assert_eq!(Endpoint::from_path("/v1/chat/completions"), Some(Endpoint::ChatCompletions));
        assert_eq!(Endpoint::from_path("/v1/models"), None);
    }

    #[test]
    fn usage_from_every_shape() {
        let mut u = None;
        read_usage(&json!({"usage":{"prompt_tokens":3,"completion_tokens":4}}), &mut u);
        assert_eq!(u, Some(Usage { prompt: 3, completion: 4 }));
        let mut u = None;
        read_usage(&json!({"type":"message_start","message":{"usage":{"input_tokens":7,"output_tokens":1}}}), &mut u);
        read_usage(&json!({"type":"message_delta","usage":{"output_tokens":9}}), &mut u);
        assert_eq!(u, Some(Usage { prompt: 7, completion: 9 }));
        assert_eq!(micros(1_000_000, 2.5), 2_500_000);
    }
}
