//! Server-sent events, masked event by event.
//!
//! Every event is passed on as soon as it is complete, with its text masked. Model streams
//! (OpenAI chat/completions/responses, Anthropic messages) carry one answer split over many
//! events; a card number can be split across two of them. Each text stream (one per choice,
//! content block or tool call) therefore holds back its tail while the tail could still be
//! the start of a sensitive value (a trailing run of digits, capitals, separators or a
//! word with no space), at most `holdback` characters, and never cuts through a finding.
//! The held text goes out with the next event of the same stream, or, when the stream
//! ends (finish_reason, content_block_stop, output_text.done, `[DONE]`, end of body), in
//! the ending event or in an extra event shaped like the stream's last one.
//!
//! Events that are not JSON are masked as text; JSON events of unknown shape have every
//! string masked. Bytes that are not UTF-8 or an event larger than the limit end the
//! stream with an error (fail closed).

use crate::jsonmask::Tally;
use crate::llm::{read_usage, Usage};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::sync::Arc;
use warden_mask::Masker;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("a server-sent event is larger than http.limits.max_sse_event_bytes")]
    TooLarge,
    #[error("the event stream is not UTF-8")]
    NotUtf8,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Key(&'static str),
    Idx(usize),
}

struct TextStream {
    key: String,
    pending: String,
    /// The last event that carried this stream's text, other streams' text blanked.
    template: Option<(Value, Vec<Seg>)>,
}

pub struct SseMasker {
    masker: Arc<Masker>,
    buf: Vec<u8>,
    max_event: usize,
    holdback: usize,
    streams: Vec<TextStream>,
    pub usage: Option<Usage>,
    completion: Sha256,
    pub tally: Tally,
    pub events: u64,
    /// Off for targets with `mask = false`: events pass unchanged, usage is still read.
    masking: bool,
}

impl SseMasker {
    pub fn new(masker: Arc<Masker>, max_event: usize, holdback: usize) -> Self {
        SseMasker { masker, buf: Vec::new(), max_event, holdback, streams: Vec::new(), usage: None, completion: Sha256::new(), tally: Tally::default(), events: 0, masking: true }
    }

    /// Events pass unchanged (no hold-back either); usage and digests are still taken.
    pub fn without_masking(mut self) -> Self {
        self.masking = false;
        self
    }

    /// SHA-256 of the streamed text as the provider sent it (before masking).
    pub fn completion_digest(&self) -> String {
        hex::encode(self.completion.clone().finalize())
    }

    /// Feeds upstream bytes; appends whatever can go to the client now.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), SseError> {
        self.buf.extend_from_slice(data);
        loop {
            let Some((end, delim)) = find_event_end(&self.buf) else {
                if self.buf.len() > self.max_event {
                    return Err(SseError::TooLarge);
                }
                return Ok(());
            };
            if end > self.max_event {
                return Err(SseError::TooLarge);
            }
            let ev: Vec<u8> = self.buf.drain(..end + delim).take(end).collect();
            let text = String::from_utf8(ev).map_err(|_| SseError::NotUtf8)?;
            self.event(&text, out);
        }
    }

    /// The upstream body ended: flushes a trailing partial event and every held text.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), SseError> {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            let text = String::from_utf8(rest).map_err(|_| SseError::NotUtf8)?;
            if !text.trim().is_empty() {
                self.event(&text, out);
            }
        }
        self.flush_all(out);
        Ok(())
    }

    fn mask<'a>(&mut self, s: &'a str) -> Cow<'a, str> {
        if !self.masking {
            return Cow::Borrowed(s);
        }
        let (m, c) = self.masker.mask_str(s);
        if matches!(m, Cow::Owned(_)) {
            self.tally.counts.merge(&c);
        }
        m
    }

    fn event(&mut self, text: &str, out: &mut Vec<u8>) {
        self.events += 1;
        let mut data: Vec<&str> = Vec::new();
        let mut other: Vec<&str> = Vec::new();
        for line in text.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if let Some(d) = line.strip_prefix("data:") {
                data.push(d.strip_prefix(' ').unwrap_or(d));
            } else if !line.is_empty() {
                other.push(line);
            }
        }
        let other: Vec<String> = other.into_iter().map(|l| self.mask(l).into_owned()).collect();
        if data.is_empty() {
            write_event(out, &other, None);
            return;
        }
        let data = data.join("\n");
        if data.trim() == "[DONE]" {
            self.flush_all(out);
            write_event(out, &other, Some("[DONE]"));
            return;
        }
        let Ok(mut v) = serde_json::from_str::<Value>(&data) else {
            let m = self.mask(&data).into_owned();
            write_event(out, &other, Some(&m));
            return;
        };
        read_usage(&v, &mut self.usage);
        let locs = text_locations(&v);
        let ends = end_markers(&v);
        // Take the streamed texts out, mask everything else, then put them back masked.
        let mut texts: Vec<String> = Vec::with_capacity(locs.len());
        for (_, loc) in &locs {
            let t = get_mut(&mut v, loc).map(|x| std::mem::replace(x, Value::Null));
            texts.push(t.and_then(|t| t.as_str().map(str::to_string)).unwrap_or_default());
        }
        self.mask_value(&mut v);
        let mut before: Vec<u8> = Vec::new();
        for (i, (key, loc)) in locs.iter().enumerate() {
            self.completion.update(texts[i].as_bytes());
            let mut template = v.clone();
            for (j, (_, other_loc)) in locs.iter().enumerate() {
                if j != i {
                    if let Some(x) = get_mut(&mut template, other_loc) {
                        *x = Value::String(String::new());
                    }
                }
            }
            let s = self.stream(key);
            s.pending.push_str(&texts[i]);
            s.template = Some((template, loc.clone()));
            let ending = ends.iter().any(|e| key_ends(key, e));
            let emit = self.take_emittable(key, ending);
            if let Some(x) = get_mut(&mut v, loc) {
                *x = Value::String(emit);
            }
        }
        // Streams that end here without text in this event get an extra event first.
        for e in &ends {
            let keys: Vec<String> = self.streams.iter().filter(|s| key_ends(&s.key, e) && !locs.iter().any(|(k, _)| k == &s.key)).map(|s| s.key.clone()).collect();
            for k in keys {
                self.flush_stream(&k, &mut before);
            }
        }
        out.extend_from_slice(&before);
        let json = serde_json::to_string(&v).expect("a Value serializes");
        write_event(out, &other, Some(&json));
    }

    fn stream(&mut self, key: &str) -> &mut TextStream {
        if let Some(i) = self.streams.iter().position(|s| s.key == key) {
            return &mut self.streams[i];
        }
        self.streams.push(TextStream { key: key.to_string(), pending: String::new(), template: None });
        self.streams.last_mut().expect("just pushed")
    }

    /// Masked text that can go now; the rest stays pending.
    fn take_emittable(&mut self, key: &str, all: bool) -> String {
        let holdback = self.holdback;
        let masking = self.masking;
        let masker = self.masker.clone();
        let s = self.stream(key);
        let cut = if all || !masking { s.pending.len() } else { safe_cut(&masker, &s.pending, holdback) };
        let emit: String = s.pending.drain(..cut).collect();
        self.mask(&emit).into_owned()
    }

    fn flush_stream(&mut self, key: &str, out: &mut Vec<u8>) {
        let text = self.take_emittable(key, true);
        let s = self.stream(key);
        let template = s.template.clone();
        if text.is_empty() {
            return;
        }
        if let Some((mut t, loc)) = template {
            if let Some(x) = get_mut(&mut t, &loc) {
                *x = Value::String(text);
            }
            let json = serde_json::to_string(&t).expect("a Value serializes");
            let event = if t["type"].is_string() { t["type"].as_str().map(|e| format!("event: {e}")) } else { None };
            write_event(out, &event.into_iter().collect::<Vec<_>>(), Some(&json));
        }
    }

    fn flush_all(&mut self, out: &mut Vec<u8>) {
        let keys: Vec<String> = self.streams.iter().map(|s| s.key.clone()).collect();
        for k in keys {
            self.flush_stream(&k, out);
        }
    }

    fn mask_value(&mut self, v: &mut Value) {
        match v {
            Value::String(s) => {
                if let Cow::Owned(m) = self.mask(s) {
                    *s = m;
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| self.mask_value(x)),
            Value::Object(o) => o.values_mut().for_each(|x| self.mask_value(x)),
            _ => {}
        }
    }
}

/// Where the held tail of `s` starts: before a trailing run that could still grow into a
/// sensitive value (at most `holdback` bytes), and before any finding that reaches it.
fn safe_cut(m: &Masker, s: &str, holdback: usize) -> usize {
    let b = s.as_bytes();
    let run = |f: fn(u8) -> bool| b.iter().rev().take_while(|c| f(**c)).count();
    let numeric = run(|c| c.is_ascii_digit() || c.is_ascii_uppercase() || matches!(c, b' ' | b'-' | b'.' | b'(' | b')' | b'+'));
    let word = run(|c| c.is_ascii_alphanumeric() || matches!(c, b'@' | b'.' | b'_' | b'+' | b'-' | b'/' | b'=' | b':' | b'~'));
    let hold = numeric.max(word).min(holdback);
    let mut cut = b.len() - hold;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    for f in m.find(s) {
        if f.range.start < cut && cut < f.range.end {
            cut = f.range.start;
        }
    }
    cut
}

fn find_event_end(b: &[u8]) -> Option<(usize, usize)> {
    let lf = b.windows(2).position(|w| w == b"\n\n");
    let crlf = b.windows(4).position(|w| w == b"\r\n\r\n");
    match (lf, crlf) {
        (Some(a), Some(c)) if c < a => Some((c, 4)),
        (Some(a), _) => Some((a, 2)),
        (None, Some(c)) => Some((c, 4)),
        (None, None) => None,
    }
}

fn write_event(out: &mut Vec<u8>, other: &[String], data: Option<&str>) {
    for l in other {
        out.extend_from_slice(l.as_bytes());
        out.push(b'\n');
    }
    if let Some(d) = data {
        for line in d.split('\n') {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
        }
    }
    out.push(b'\n');
}

fn get_mut<'a>(v: &'a mut Value, loc: &[Seg]) -> Option<&'a mut Value> {
    let mut cur = v;
    for s in loc {
        cur = match s {
            Seg::Key(k) => cur.get_mut(*k)?,
            Seg::Idx(i) => cur.get_mut(*i)?,
        };
    }
    Some(cur)
}

fn idx(v: &Value, field: &str, fallback: usize) -> u64 {
    v[field].as_u64().unwrap_or(fallback as u64)
}

/// (stream key, location) of every streamed text in an event.
fn text_locations(v: &Value) -> Vec<(String, Vec<Seg>)> {
    use Seg::*;
    let mut out = Vec::new();
    if let Some(choices) = v["choices"].as_array() {
        for (p, c) in choices.iter().enumerate() {
            let i = idx(c, "index", p);
            if c["delta"]["content"].is_string() {
                out.push((format!("c{i}"), vec![Key("choices"), Idx(p), Key("delta"), Key("content")]));
            }
            if c["text"].is_string() {
                out.push((format!("c{i}"), vec![Key("choices"), Idx(p), Key("text")]));
            }
            if let Some(calls) = c["delta"]["tool_calls"].as_array() {
                for (q, call) in calls.iter().enumerate() {
                    if call["function"]["arguments"].is_string() {
                        let j = idx(call, "index", q);
                        out.push((format!("t{i}.{j}"), vec![Key("choices"), Idx(p), Key("delta"), Key("tool_calls"), Idx(q), Key("function"), Key("arguments")]));
                    }
                }
            }
        }
    }
    match v["type"].as_str() {
        Some("content_block_delta") => {
            let i = idx(v, "index", 0);
            for f in ["text", "partial_json", "thinking"] {
                if v["delta"][f].is_string() {
                    let f: &'static str = match f {
                        "text" => "text",
                        "partial_json" => "partial_json",
                        _ => "thinking",
                    };
                    out.push((format!("a{i}"), vec![Key("delta"), Key(f)]));
                }
            }
        }
        Some("response.output_text.delta") | Some("response.refusal.delta") if v["delta"].is_string() => {
            out.push((format!("r{}.{}", idx(v, "output_index", 0), idx(v, "content_index", 0)), vec![Key("delta")]));
        }
        Some("response.function_call_arguments.delta") if v["delta"].is_string() => {
            out.push((format!("f{}", idx(v, "output_index", 0)), vec![Key("delta")]));
        }
        _ => {}
    }
    out
}

/// Stream-key prefixes that end with this event ("" = every stream).
fn end_markers(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(choices) = v["choices"].as_array() {
        for (p, c) in choices.iter().enumerate() {
            if !c["finish_reason"].is_null() {
                let i = idx(c, "index", p);
                out.push(format!("c{i}"));
                out.push(format!("t{i}."));
            }
        }
    }
    match v["type"].as_str() {
        Some("content_block_stop") => out.push(format!("a{}", idx(v, "index", 0))),
        Some("message_stop") | Some("message_delta") | Some("response.completed") | Some("response.failed") | Some("response.incomplete") => out.push(String::new()),
        Some("response.output_text.done") | Some("response.refusal.done") => out.push(format!("r{}.{}", idx(v, "output_index", 0), idx(v, "content_index", 0))),
        Some("response.function_call_arguments.done") => out.push(format!("f{}", idx(v, "output_index", 0))),
        _ => {}
    }
    out
}

fn key_ends(key: &str, marker: &str) -> bool {
    if marker.is_empty() {
        return true;
    }
    if marker.ends_with('.') {
        key.starts_with(marker)
    } else {
        key == marker
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_mask::MaskConfig;

    fn masker() -> SseMasker {
        SseMasker::new(Arc::new(Masker::new(&MaskConfig::default()).unwrap()), 1 << 20, 96)
    }

    fn chat(content: &str, finish: Option<&str>) -> String {
        let v = serde_json::json!({"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":content},"finish_reason":finish}]});
        format!("data: {v}\n\n")
    }

    fn texts(out: &[u8]) -> String {
        let s = String::from_utf8(out.to_vec()).unwrap();
        let mut all = String::new();
        for line in s.lines() {
            if let Some(d) = line.strip_prefix("data: ") {
                if let Ok(v) = serde_json::from_str::<Value>(d) {
                    if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
                        all.push_str(c);
                    }
                    if let Some(c) = v["delta"]["text"].as_str() {
                        all.push_str(c);
                    }
                }
            }
        }
        all
    }

    #[test]
    fn a_card_split_across_events_is_masked() {
        for split in [1, 5, 9, 12, 16, 18] {
            let card = "4111 1111 1111 1111";
            let mut m = masker();
            let mut out = Vec::new();
            let (a, b) = card.split_at(split);
            for piece in ["Your card is ", a, b, " and that is all."] {
                m.push(chat(piece, None).as_bytes(), &mut out).unwrap();
            }
            m.push(chat("", Some("stop")).as_bytes(), &mut out).unwrap();
            m.push(b"data: [DONE]\n\n", &mut out).unwrap();
            m.finish(&mut out).unwrap();
            let t = texts(&out);
            assert!(!t.contains("1111 1111"), "split {split}: {t}");
            assert!(t.starts_with("Your card is ") && t.ends_with(" and that is all."), "split {split}: {t}");
            assert!(String::from_utf8(out).unwrap().contains("data: [DONE]"));
        }
    }

    #[test]
    fn text_flows_without_waiting_for_the_end() {
        let mut m = masker();
        let mut out = Vec::new();
        m.push(chat("Hello there,", None).as_bytes(), &mut out).unwrap();
        // The trailing space could still be inside a card number ("4111 1111 ..."): held.
        assert_eq!(texts(&out), "Hello there,");
        // Split inside an event, byte by byte: nothing is emitted until the event ends.
        let ev = chat(" friend, how are you", None);
        for b in ev.as_bytes() {
            m.push(&[*b], &mut out).unwrap();
        }
        // Only the last word waits (it could be the start of an email or a key).
        assert_eq!(texts(&out), "Hello there, friend, how are ");
    }

    #[test]
    fn anthropic_stream_is_flushed_before_block_stop() {
        let mut m = masker();
        let mut out = Vec::new();
        let d = |t: &str| format!("event: content_block_delta\ndata: {}\n\n", serde_json::json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":t}}));
        m.push(d("card 4111111111").as_bytes(), &mut out).unwrap();
        m.push(d("111111").as_bytes(), &mut out).unwrap();
        m.push(b"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n", &mut out).unwrap();
        let s = String::from_utf8(out.clone()).unwrap();
        assert!(!texts(&out).contains("4111111111111111"), "{s}");
        assert!(texts(&out).starts_with("card "), "{s}");
        assert!(s.find("REDACTED").unwrap() < s.find("content_block_stop\",").unwrap(), "{s}");
    }

    #[test]
    fn oversized_events_and_bad_bytes_fail() {
        let mut m = SseMasker::new(Arc::new(Masker::new(&MaskConfig::default()).unwrap()), 1024, 64);
        assert_eq!(m.push(&vec![b'a'; 2000], &mut Vec::new()), Err(SseError::TooLarge));
        let mut m = masker();
        assert_eq!(m.push(b"data: \xff\n\n", &mut Vec::new()), Err(SseError::NotUtf8));
    }
}
