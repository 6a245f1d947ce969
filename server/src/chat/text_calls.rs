//! Tool calls written as text. Small local models often do not send a proper `tool_calls`
//! delta: they write the call into the message text, in their family's format. This module
//! recognises those calls in the streamed text, whatever the chunk boundaries, and separates
//! them from the text the user should see. Pure: text in, text and calls out.
//!
//! Recognised (only for tools offered in this request; anything else stays text):
//! - Hermes / Qwen: `<tool_call>{"name": …, "arguments": …}</tool_call>` (one or several;
//!   the closing tag may be missing at the end of the answer)
//! - Llama 3.x: `<|python_tag|>{"name": …, "parameters": …}`, `<function=NAME>{…}</function>`,
//!   and a bare `{"name": …, "parameters"|"arguments": …}`
//! - Mistral: `[TOOL_CALLS][{"name": …, "arguments": …}, …]` and `[TOOL_CALLS]NAME[ARGS]{…}`
//! - a bare JSON object (or list of them) naming an offered tool, possibly in a ```json fence
//! - the OpenAI shape `{"type": "function", "function": {"name": …, "arguments": …}}`
//!
//! Arguments may be an object or a JSON string holding an object.
//!
//! The raw call never reaches the user: text that may be the start of a call (a `<` that could
//! become `<tool_call>`, a `{`, a fence) is held back until it is decided, then released as
//! text, unchanged, or turned into a call. Plain text is released as soon as it cannot be a
//! call: a `{` or `[` whose first key is not one a call starts with is released at once, and
//! whitespace at the end of what has arrived waits for the next non-space character (so that
//! the blank line before a call is not shown). Everything released as text is byte-identical
//! to the input.

use serde_json::Value;

/// Longest text held back while it may still become a call; past it, it is released as text.
const MAX_HOLD: usize = 16 * 1024;

const HERMES_OPEN: &str = "<tool_call>";
const HERMES_CLOSE: &str = "</tool_call>";
const PYTHON_TAG: &str = "<|python_tag|>";
const FUNCTION_OPEN: &str = "<function=";
const FUNCTION_CLOSE: &str = "</function>";
const MISTRAL: &str = "[TOOL_CALLS]";
const MISTRAL_ARGS: &str = "[ARGS]";
const MISTRAL_CALL_ID: &str = "[CALL_ID]";
const FENCE: &str = "```";
/// End-of-turn tokens some servers leave in the text after a Llama call; never for the user.
const END_TOKENS: [&str; 2] = ["<|eom_id|>", "<|eot_id|>"];
/// Fence languages that may hold a call.
const FENCE_LANGUAGES: [&str; 4] = ["", "json", "tool_call", "tool_code"];
/// Keys a call object may start with; a bare `{` starting with another key is text.
const CALL_KEYS: [&str; 6] = ["name", "arguments", "parameters", "type", "function", "id"];

/// A tool call found in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextCall {
    pub name: String,
    /// The arguments as a JSON object's text.
    pub arguments: String,
}

/// What the recogniser releases, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Call(TextCall),
}

/// The streaming recogniser: feed it the content deltas with [`push`](Self::push), then call
/// [`finish`](Self::finish) when the answer ends.
#[derive(Debug)]
pub struct TextCalls {
    tools: Vec<String>,
    /// Text not released yet (it may be the start of a call).
    pending: String,
    calls: usize,
    /// Whether any text was released.
    text_out: bool,
    /// Whether the last thing released was a call (a `;` after it is a separator).
    after_call: bool,
}

/// What to do with the start of `pending`.
enum Step {
    Text(usize),
    Calls(Vec<TextCall>, usize),
    Drop(usize),
    Wait,
}

/// What a possible call at the start of the text turned out to be.
enum Candidate {
    /// Not the start of any call format.
    No,
    /// This many bytes are text.
    Text(usize),
    /// Calls, taking this many bytes.
    Calls(Vec<TextCall>, usize),
    /// Drop this many bytes (an end-of-turn token).
    Drop(usize),
    /// Undecided: more text is needed.
    Wait,
}

impl TextCalls {
    /// A recogniser for calls of the named tools.
    pub fn new<I, S>(tools: I) -> TextCalls
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        TextCalls {
            tools: tools.into_iter().map(Into::into).collect(),
            pending: String::new(),
            calls: 0,
            text_out: false,
            after_call: false,
        }
    }

    /// How many calls were recognised so far.
    pub fn calls(&self) -> usize {
        self.calls
    }

    /// Takes the next piece of the answer; returns what can be released now.
    pub fn push(&mut self, delta: &str) -> Vec<Piece> {
        self.pending.push_str(delta);
        self.drain(false)
    }

    /// The answer ended: decides everything still held back.
    pub fn finish(&mut self) -> Vec<Piece> {
        self.drain(true)
    }

    fn drain(&mut self, at_end: bool) -> Vec<Piece> {
        let mut out: Vec<Piece> = Vec::new();
        while !self.pending.is_empty() {
            match self.step(at_end) {
                Step::Wait => break,
                Step::Drop(n) => {
                    self.pending.drain(..n);
                }
                Step::Text(n) => {
                    let text: String = self.pending.drain(..n).collect();
                    self.text_out = true;
                    self.after_call = false;
                    match out.last_mut() {
                        Some(Piece::Text(last)) => last.push_str(&text),
                        _ => out.push(Piece::Text(text)),
                    }
                }
                Step::Calls(calls, n) => {
                    self.pending.drain(..n);
                    self.calls += calls.len();
                    self.after_call = true;
                    out.extend(calls.into_iter().map(Piece::Call));
                }
            }
        }
        out
    }

    fn step(&self, at_end: bool) -> Step {
        let p = self.pending.as_str();
        let rest = p.trim_start();
        let lead = p.len() - rest.len();
        if rest.is_empty() {
            // Whitespace only: it belongs to whatever comes next.
            return match (at_end, self.calls > 0) {
                (false, _) => Step::Wait,
                (true, true) => Step::Drop(lead),
                (true, false) => Step::Text(lead),
            };
        }
        if lead > 0 && self.calls > 0 && !self.text_out {
            // The blank lines between calls, or between a first call and the text after it.
            return Step::Drop(lead);
        }
        if self.after_call && rest.starts_with(';') {
            // Llama separates several calls with `;`.
            return Step::Drop(lead + 1);
        }
        let held = if p.len() > MAX_HOLD {
            Candidate::Text(rest.len())
        } else {
            self.candidate(rest, at_end)
        };
        match held {
            Candidate::No => {
                // Plain text up to the next possible start of a call; trailing spaces wait.
                let first = rest.chars().next().map_or(1, char::len_utf8);
                let next = rest[first..]
                    .find(['<', '[', '{', '`'])
                    .map_or(rest.len(), |i| i + first);
                let text = rest[..next].trim_end().len();
                Step::Text(lead + text)
            }
            Candidate::Text(n) => Step::Text(lead + n),
            Candidate::Calls(calls, n) => Step::Calls(calls, lead + n),
            Candidate::Drop(n) => Step::Drop(lead + n),
            Candidate::Wait => Step::Wait,
        }
    }

    /// Decides what `rest` (starting with a non-space character) begins with.
    fn candidate(&self, rest: &str, at_end: bool) -> Candidate {
        match rest.as_bytes()[0] {
            b'<' => self.tag(rest, at_end),
            b'[' => self.bracket(rest, at_end),
            b'{' => self.bare(rest, at_end),
            b'`' => self.fence(rest, at_end),
            _ => Candidate::No,
        }
    }

    fn tag(&self, rest: &str, at_end: bool) -> Candidate {
        if rest.starts_with(HERMES_OPEN) {
            return self.hermes(rest, at_end);
        }
        if rest.starts_with(PYTHON_TAG) {
            return self.python_tag(rest, at_end);
        }
        if rest.starts_with(FUNCTION_OPEN) {
            return self.function_tag(rest, at_end);
        }
        if let Some(token) = END_TOKENS.iter().find(|t| rest.starts_with(**t)) {
            return Candidate::Drop(token.len());
        }
        let markers = [
            HERMES_OPEN,
            PYTHON_TAG,
            FUNCTION_OPEN,
            END_TOKENS[0],
            END_TOKENS[1],
        ];
        if !at_end && markers.iter().any(|m| m.starts_with(rest)) {
            return Candidate::Wait;
        }
        Candidate::Text(1)
    }

    /// `<tool_call>` JSON `</tool_call>`; a JSON that is not a valid call shows the whole tag.
    fn hermes(&self, rest: &str, at_end: bool) -> Candidate {
        let start = HERMES_OPEN.len();
        let (skip, body) = skip_space(&rest[start..]);
        if body.is_empty() {
            return if at_end {
                Candidate::Text(rest.len())
            } else {
                Candidate::Wait
            };
        }
        if !body.starts_with(['{', '[']) {
            // Not JSON: the tag was meant as text (or is unusable); show it and go on.
            return Candidate::Text(start);
        }
        match scan_json(body) {
            Scan::Incomplete if at_end => Candidate::Text(rest.len()),
            Scan::Incomplete => Candidate::Wait,
            Scan::NotJson => Candidate::Text(start),
            Scan::Complete(json) => {
                let end = start + skip + json;
                let end = match closing(&rest[end..], HERMES_CLOSE, at_end) {
                    Some(close) => end + close,
                    None => return Candidate::Wait,
                };
                match self.calls_in(&body[..json]) {
                    Some(calls) => Candidate::Calls(calls, end),
                    None => Candidate::Text(end),
                }
            }
        }
    }

    /// `<|python_tag|>` and a JSON call (Llama 3.x); anything else shows the tag as text.
    fn python_tag(&self, rest: &str, at_end: bool) -> Candidate {
        let start = PYTHON_TAG.len();
        let (skip, body) = skip_space(&rest[start..]);
        if body.is_empty() {
            return if at_end {
                Candidate::Text(start)
            } else {
                Candidate::Wait
            };
        }
        if !body.starts_with(['{', '[']) {
            return Candidate::Text(start);
        }
        match scan_json(body) {
            Scan::Incomplete if at_end => Candidate::Text(start),
            Scan::Incomplete => Candidate::Wait,
            Scan::NotJson => Candidate::Text(start),
            Scan::Complete(json) => match self.calls_in(&body[..json]) {
                Some(calls) => Candidate::Calls(calls, start + skip + json),
                None => Candidate::Text(start),
            },
        }
    }

    /// `<function=NAME>{arguments}</function>` (Llama 3.1's custom tool format).
    fn function_tag(&self, rest: &str, at_end: bool) -> Candidate {
        let start = FUNCTION_OPEN.len();
        let after = &rest[start..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
            .unwrap_or(after.len());
        if name_len == after.len() {
            return if at_end || name_len > 64 {
                Candidate::Text(1)
            } else {
                Candidate::Wait
            };
        }
        if name_len == 0 || !after[name_len..].starts_with('>') {
            return Candidate::Text(1);
        }
        let name = &after[..name_len];
        let open = start + name_len + 1;
        let (skip, body) = skip_space(&rest[open..]);
        if body.is_empty() {
            return if at_end {
                Candidate::Text(1)
            } else {
                Candidate::Wait
            };
        }
        if !body.starts_with('{') {
            return Candidate::Text(1);
        }
        match scan_json(body) {
            Scan::Incomplete if at_end => Candidate::Text(1),
            Scan::Incomplete => Candidate::Wait,
            Scan::NotJson => Candidate::Text(1),
            Scan::Complete(json) => {
                let end = open + skip + json;
                let end = match closing(&rest[end..], FUNCTION_CLOSE, at_end) {
                    Some(close) => end + close,
                    None => return Candidate::Wait,
                };
                let arguments = serde_json::from_str::<Value>(&body[..json]).ok();
                match arguments.and_then(|a| self.call_parts(Some(name), Some(&a))) {
                    Some(call) => Candidate::Calls(vec![call], end),
                    None => Candidate::Text(end),
                }
            }
        }
    }

    /// `[TOOL_CALLS]…` (Mistral) or a bare list of call objects.
    fn bracket(&self, rest: &str, at_end: bool) -> Candidate {
        if rest.starts_with(MISTRAL) {
            return self.mistral(rest, at_end);
        }
        if !at_end && MISTRAL.starts_with(rest) {
            return Candidate::Wait;
        }
        // A bare list of call objects.
        self.bare(rest, at_end)
    }

    fn mistral(&self, rest: &str, at_end: bool) -> Candidate {
        let start = MISTRAL.len();
        let (skip, body) = skip_space(&rest[start..]);
        if body.is_empty() {
            return if at_end {
                Candidate::Text(start)
            } else {
                Candidate::Wait
            };
        }
        if body.starts_with(['[', '{']) {
            return match scan_json(body) {
                Scan::Incomplete if at_end => Candidate::Text(start),
                Scan::Incomplete => Candidate::Wait,
                Scan::NotJson => Candidate::Text(start),
                Scan::Complete(json) => match self.calls_in(&body[..json]) {
                    Some(calls) => Candidate::Calls(calls, start + skip + json),
                    None => Candidate::Text(start),
                },
            };
        }
        // Newer templates: `[TOOL_CALLS]NAME[ARGS]{…}` (optionally `[CALL_ID]id` before `[ARGS]`).
        let name_len = body
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
            .unwrap_or(body.len());
        if name_len == body.len() {
            return if at_end || name_len > 64 {
                Candidate::Text(start)
            } else {
                Candidate::Wait
            };
        }
        if name_len == 0 {
            return Candidate::Text(start);
        }
        let name = &body[..name_len];
        let mut at = name_len;
        if body[at..].starts_with(MISTRAL_CALL_ID) {
            at += MISTRAL_CALL_ID.len();
            let id_len = body[at..]
                .find(|c: char| !c.is_ascii_alphanumeric())
                .unwrap_or(body.len() - at);
            if at + id_len == body.len() {
                return if at_end || id_len > 64 {
                    Candidate::Text(start)
                } else {
                    Candidate::Wait
                };
            }
            at += id_len;
        }
        let tail = &body[at..];
        if !tail.starts_with(MISTRAL_ARGS) {
            return if !at_end
                && (MISTRAL_ARGS.starts_with(tail) || MISTRAL_CALL_ID.starts_with(tail))
            {
                Candidate::Wait
            } else {
                Candidate::Text(start)
            };
        }
        at += MISTRAL_ARGS.len();
        let (skip2, json_text) = skip_space(&body[at..]);
        if json_text.is_empty() {
            return if at_end {
                Candidate::Text(start)
            } else {
                Candidate::Wait
            };
        }
        if !json_text.starts_with('{') {
            return Candidate::Text(start);
        }
        match scan_json(json_text) {
            Scan::Incomplete if at_end => Candidate::Text(start),
            Scan::Incomplete => Candidate::Wait,
            Scan::NotJson => Candidate::Text(start),
            Scan::Complete(json) => {
                let arguments = serde_json::from_str::<Value>(&json_text[..json]).ok();
                match arguments.and_then(|a| self.call_parts(Some(name), Some(&a))) {
                    Some(call) => Candidate::Calls(vec![call], start + skip + at + skip2 + json),
                    None => Candidate::Text(start),
                }
            }
        }
    }

    /// A bare JSON object or list at `rest`: a call if it names an offered tool, else its first
    /// character is text and the rest is looked at again.
    fn bare(&self, rest: &str, at_end: bool) -> Candidate {
        // Decided on the first key as soon as it is known, whatever the chunks, so that a
        // split never changes the outcome.
        if !may_be_call(rest) {
            return Candidate::Text(1);
        }
        match scan_json(rest) {
            Scan::Complete(json) => match self.calls_in(&rest[..json]) {
                Some(calls) => Candidate::Calls(calls, json),
                None => Candidate::Text(1),
            },
            Scan::Incomplete if !at_end => Candidate::Wait,
            _ => Candidate::Text(1),
        }
    }

    /// A ```json fence holding a call; any other fence is text at once.
    fn fence(&self, rest: &str, at_end: bool) -> Candidate {
        if !rest.starts_with(FENCE) {
            return if !at_end && FENCE.starts_with(rest) {
                Candidate::Wait
            } else {
                Candidate::Text(1)
            };
        }
        let start = FENCE.len();
        let after = &rest[start..];
        let language_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(after.len());
        if language_len == after.len() {
            return if at_end || language_len > 16 {
                Candidate::Text(start)
            } else {
                Candidate::Wait
            };
        }
        let language = after[..language_len].to_ascii_lowercase();
        if !FENCE_LANGUAGES.contains(&language.as_str()) {
            return Candidate::Text(start);
        }
        let open = start + language_len;
        let (skip, body) = skip_space(&rest[open..]);
        if body.is_empty() {
            return if at_end {
                Candidate::Text(start)
            } else {
                Candidate::Wait
            };
        }
        if !may_be_call(body) {
            return Candidate::Text(start);
        }
        match scan_json(body) {
            Scan::Incomplete if at_end => Candidate::Text(start),
            Scan::Incomplete => Candidate::Wait,
            Scan::NotJson => Candidate::Text(start),
            Scan::Complete(json) => {
                let end = open + skip + json;
                let (space, tail) = skip_space(&rest[end..]);
                let end = if tail.starts_with(FENCE) {
                    end + space + FENCE.len()
                } else if tail.is_empty() && at_end {
                    end + space
                } else if !at_end && FENCE.starts_with(tail) {
                    return Candidate::Wait;
                } else {
                    return Candidate::Text(start);
                };
                match self.calls_in(&body[..json]) {
                    Some(calls) => Candidate::Calls(calls, end),
                    None => Candidate::Text(start),
                }
            }
        }
    }

    /// The calls in a JSON text: one call object, or a non-empty list where every item is one.
    fn calls_in(&self, json: &str) -> Option<Vec<TextCall>> {
        match serde_json::from_str::<Value>(json).ok()? {
            Value::Array(items) if !items.is_empty() => {
                items.iter().map(|item| self.call_object(item)).collect()
            }
            object @ Value::Object(_) => Some(vec![self.call_object(&object)?]),
            _ => None,
        }
    }

    fn call_object(&self, value: &Value) -> Option<TextCall> {
        let object = value.as_object()?;
        // The OpenAI shape: {"type": "function", "function": {"name", "arguments"}}.
        if let Some(function) = object.get("function").and_then(Value::as_object) {
            return self.call_parts(
                function.get("name").and_then(Value::as_str),
                function
                    .get("arguments")
                    .or_else(|| function.get("parameters")),
            );
        }
        self.call_parts(
            object.get("name").and_then(Value::as_str),
            object.get("arguments").or_else(|| object.get("parameters")),
        )
    }

    /// A call of an offered tool with object arguments (or a string holding an object).
    fn call_parts(&self, name: Option<&str>, arguments: Option<&Value>) -> Option<TextCall> {
        let name = name?;
        if !self.tools.iter().any(|t| t == name) {
            return None;
        }
        let arguments = match arguments? {
            object @ Value::Object(_) => object.to_string(),
            Value::String(text) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(_)) => text.clone(),
                _ => return None,
            },
            _ => return None,
        };
        Some(TextCall {
            name: name.to_string(),
            arguments,
        })
    }
}

/// Leading whitespace skipped: its length and the rest.
fn skip_space(text: &str) -> (usize, &str) {
    let rest = text.trim_start();
    (text.len() - rest.len(), rest)
}

/// Whether `text` (after a complete JSON value) closes with `close`: `Some(bytes to consume)`
/// (the spaces and the tag, or nothing when something else follows or the answer ended),
/// `None` when it cannot be told yet.
fn closing(text: &str, close: &str, at_end: bool) -> Option<usize> {
    let (space, tail) = skip_space(text);
    if tail.starts_with(close) {
        Some(space + close.len())
    } else if !at_end && close.starts_with(tail) {
        None
    } else {
        Some(0)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Scan {
    /// The value is not closed yet.
    Incomplete,
    /// The value ends after this many bytes.
    Complete(usize),
    /// Brackets that do not match: not JSON.
    NotJson,
}

/// Finds where the JSON object or list at the start of `text` ends (strings and escapes
/// respected). Only the structure is checked here; the parser decides the rest.
fn scan_json(text: &str) -> Scan {
    let mut stack: Vec<u8> = Vec::new();
    let mut in_string = false;
    let mut escaped = false;
    for (i, b) in text.bytes().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' => stack.push(b'}'),
            b'[' => stack.push(b']'),
            b'}' | b']' => {
                if stack.pop() != Some(b) {
                    return Scan::NotJson;
                }
                if stack.is_empty() {
                    return Scan::Complete(i + 1);
                }
            }
            _ if stack.is_empty() => return Scan::NotJson,
            _ => {}
        }
    }
    Scan::Incomplete
}

/// Whether the JSON starting `text` (a `{` or `[`) may still be a call or a list of calls,
/// judged by the first key of the (first) object as far as it has arrived.
fn may_be_call(text: &str) -> bool {
    match text.as_bytes().first() {
        Some(b'{') => first_key(text) == Key::Call,
        Some(b'[') => {
            let (_, item) = skip_space(&text[1..]);
            item.is_empty() || (item.starts_with('{') && first_key(item) == Key::Call)
        }
        _ => false,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Key {
    /// The first key is (or may still become) one a call starts with.
    Call,
    /// It cannot be a call.
    Other,
}

/// Looks at the first key of the object at the start of `text` (which starts with `{`).
fn first_key(text: &str) -> Key {
    let (_, body) = skip_space(&text[1..]);
    if body.is_empty() {
        return Key::Call;
    }
    let Some(key) = body.strip_prefix('"') else {
        return Key::Other;
    };
    match key.find('"') {
        Some(end) if CALL_KEYS.contains(&&key[..end]) => Key::Call,
        Some(_) => Key::Other,
        None if CALL_KEYS.iter().any(|k| k.starts_with(key)) => Key::Call,
        None => Key::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOOL: &str = "image_generator";

    fn run(chunks: &[&str]) -> Vec<Piece> {
        let mut r = TextCalls::new([TOOL]);
        let mut out = Vec::new();
        for c in chunks {
            out.extend(r.push(c));
        }
        out.extend(r.finish());
        merge(out)
    }

    fn merge(pieces: Vec<Piece>) -> Vec<Piece> {
        let mut out: Vec<Piece> = Vec::new();
        for p in pieces {
            match (out.last_mut(), p) {
                (Some(Piece::Text(a)), Piece::Text(b)) => a.push_str(&b),
                (_, p) => out.push(p),
            }
        }
        out
    }

    /// Feeds `text` split at every pair of char boundaries (three chunks), and one char at a
    /// time; every way must give `expected`.
    fn check_all_splits(text: &str, expected: &[Piece]) {
        let bounds: Vec<usize> = (0..=text.len())
            .filter(|i| text.is_char_boundary(*i))
            .collect();
        assert_eq!(run(&[text]), expected, "whole: {text:?}");
        for &a in &bounds {
            assert_eq!(
                run(&[&text[..a], &text[a..]]),
                expected,
                "split at {a}: {text:?}"
            );
        }
        // Three chunks at a sample of pairs (all pairs for short texts).
        let step = (bounds.len() / 40).max(1);
        for &a in bounds.iter().step_by(step) {
            for &b in bounds.iter().filter(|b| **b >= a).step_by(step) {
                assert_eq!(
                    run(&[&text[..a], &text[a..b], &text[b..]]),
                    expected,
                    "split at {a}, {b}: {text:?}"
                );
            }
        }
        let chars: Vec<String> = text.chars().map(String::from).collect();
        let refs: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(run(&refs), expected, "char by char: {text:?}");
    }

    fn call(arguments: &str) -> Piece {
        Piece::Call(TextCall {
            name: TOOL.into(),
            arguments: arguments.into(),
        })
    }

    fn text(t: &str) -> Piece {
        Piece::Text(t.into())
    }

    const FOX: &str = r#"{"prompt":"a red fox in the snow"}"#;

    #[test]
    fn hermes_call_alone_split_anywhere() {
        check_all_splits(
            "<tool_call>\n{\"name\": \"image_generator\", \"arguments\": {\"prompt\": \"a red fox in the snow\"}}\n</tool_call>",
            &[call(FOX)],
        );
    }

    #[test]
    fn hermes_calls_with_text_before_and_after() {
        check_all_splits(
            "Sure! Let me paint that.\n\n<tool_call>\n{\"name\": \"image_generator\", \"arguments\": {\"prompt\": \"a red fox in the snow\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"image_generator\", \"arguments\": {\"prompt\": \"a cat\"}}\n</tool_call>\nDone.",
            &[
                text("Sure! Let me paint that."),
                call(FOX),
                call(r#"{"prompt":"a cat"}"#),
                text("\nDone."),
            ],
        );
    }

    #[test]
    fn hermes_without_closing_tag_at_the_end_is_still_a_call() {
        check_all_splits(
            "<tool_call>\n{\"name\": \"image_generator\", \"arguments\": {\"prompt\": \"a red fox in the snow\"}}",
            &[call(FOX)],
        );
    }

    #[test]
    fn arguments_as_a_json_string() {
        let string_args = r#"{\"prompt\": \"a red fox in the snow\", \"n\": 2}"#;
        check_all_splits(
            &format!("<tool_call>{{\"name\": \"image_generator\", \"arguments\": \"{string_args}\"}}</tool_call>"),
            &[call(r#"{"prompt": "a red fox in the snow", "n": 2}"#)],
        );
        // A string that is not an object is not a call.
        let bad =
            "<tool_call>{\"name\": \"image_generator\", \"arguments\": \"a fox\"}</tool_call>";
        check_all_splits(bad, &[text(bad)]);
    }

    #[test]
    fn llama_python_tag_and_bare_json() {
        check_all_splits(
            "<|python_tag|>{\"name\": \"image_generator\", \"parameters\": {\"prompt\": \"a red fox in the snow\"}}<|eom_id|>",
            &[call(FOX)],
        );
        check_all_splits(
            "{\"name\": \"image_generator\", \"parameters\": {\"prompt\": \"a red fox in the snow\"}}",
            &[call(FOX)],
        );
        check_all_splits(
            "<|python_tag|>{\"name\": \"image_generator\", \"parameters\": {\"prompt\": \"a red fox in the snow\"}}; {\"name\": \"image_generator\", \"parameters\": {\"prompt\": \"a cat\"}}",
            &[call(FOX), call(r#"{"prompt":"a cat"}"#)],
        );
        check_all_splits(
            "<function=image_generator>{\"prompt\": \"a red fox in the snow\"}</function>",
            &[call(FOX)],
        );
    }

    #[test]
    fn mistral_formats() {
        check_all_splits(
            "[TOOL_CALLS][{\"name\": \"image_generator\", \"arguments\": {\"prompt\": \"a red fox in the snow\"}}, {\"name\": \"image_generator\", \"arguments\": \"{\\\"prompt\\\": \\\"a cat\\\"}\"}]",
            &[call(FOX), call(r#"{"prompt": "a cat"}"#)],
        );
        check_all_splits(
            "[TOOL_CALLS]image_generator[ARGS]{\"prompt\": \"a red fox in the snow\"}",
            &[call(FOX)],
        );
        check_all_splits(
            "[TOOL_CALLS]image_generator[CALL_ID]a1b2c3d4e[ARGS]{\"prompt\": \"a red fox in the snow\"}",
            &[call(FOX)],
        );
    }

    #[test]
    fn bare_object_in_a_fence_or_after_text() {
        check_all_splits(
            "Here you go:\n```json\n{\"name\": \"image_generator\", \"arguments\": {\"prompt\": \"a red fox in the snow\"}}\n```\nEnjoy!",
            &[text("Here you go:"), call(FOX), text("\nEnjoy!")],
        );
        check_all_splits(
            "I'll draw it. {\"type\": \"function\", \"function\": {\"name\": \"image_generator\", \"arguments\": \"{\\\"prompt\\\":\\\"a red fox in the snow\\\"}\"}}",
            &[text("I'll draw it."), call(FOX)],
        );
        check_all_splits(
            "[{\"name\": \"image_generator\", \"arguments\": {\"prompt\": \"a red fox in the snow\"}}]",
            &[call(FOX)],
        );
    }

    #[test]
    fn invalid_json_and_unknown_tools_stay_text() {
        for t in [
            "<tool_call>{\"name\": \"image_generator\", \"arguments\": {\"prompt\": \"a fox\"</tool_call> and more",
            "<tool_call>{\"name\": \"web_search\", \"arguments\": {\"q\": \"fox\"}}</tool_call>",
            "<tool_call> is how I would call a tool, {not json} here",
            "{\"name\": \"web_search\", \"parameters\": {\"q\": \"x\"}}",
            "{\"name\": \"image_generator\", \"arguments\": {\"prompt\": 'single quotes'}}",
            "[TOOL_CALLS][{\"name\": \"nope\", \"arguments\": {}}]",
            "<|python_tag|>brave_search.call(query=\"fox\")",
            "```json\n{\"name\": \"image_generator\"}\n```",
            "{\"name\": \"image_generator\", \"arguments\": {\"prompt\": \"unfinished",
        ] {
            check_all_splits(t, &[text(t)]);
        }
    }

    #[test]
    fn plain_text_is_byte_identical_and_barely_delayed() {
        for t in [
            "Plain text with {braces}, [links](http://x) and <b>tags</b>, a < b > c, x[0] = {\"a\": 1}.",
            "  leading spaces, trailing spaces  \n\n",
            "Code:\n```rust\nfn main() { let v = vec![1]; }\n```\nand `inline` ``double``",
            "A JSON example: ```json\n{\"city\": \"Paris\"}\n``` ok",
            "Ünïcödé 🦊 <tool_cal not a tag [TOOL_CALL nope {\"nam\" x",
            "{\"name\": \"Bob\", \"age\": 3} is a person",
            "",
        ] {
            let expected = if t.is_empty() { vec![] } else { vec![text(t)] };
            check_all_splits(t, &expected);
        }
        // Text streams out as it comes: only a possible start of a call and trailing spaces wait.
        let mut r = TextCalls::new([TOOL]);
        assert_eq!(r.push("Hello {x} and "), vec![text("Hello {x} and")]);
        assert_eq!(
            r.push("<b>bold</b> {\"a\""),
            vec![text(" <b>bold</b> {\"a\"")]
        );
        assert_eq!(r.push(": 1} {\"na"), vec![text(": 1}")]);
        assert_eq!(r.push("me\": 1}"), vec![text(" {\"name\": 1}")]);
        assert_eq!(r.push(" <tool"), vec![]);
        assert_eq!(r.push("tip>"), vec![text(" <tooltip>")]);
        assert_eq!(r.finish(), vec![]);
    }

    #[test]
    fn the_call_text_is_held_until_decided() {
        let mut r = TextCalls::new([TOOL]);
        assert_eq!(r.push("Painting.\n<tool_"), vec![text("Painting.")]);
        assert_eq!(r.push("call>{\"name\": \"image_generator\", "), vec![]);
        assert_eq!(
            r.push("\"arguments\": {\"prompt\": \"a red fox in the snow\"}}</tool_call>"),
            vec![call(FOX)]
        );
        assert_eq!(r.finish(), vec![]);
        assert_eq!(r.calls(), 1);
    }

    #[test]
    fn no_tools_offered_means_no_calls() {
        let mut r = TextCalls::new(Vec::<String>::new());
        let t = "<tool_call>{\"name\": \"image_generator\", \"arguments\": {\"prompt\": \"x\"}}</tool_call>";
        let mut out = r.push(t);
        out.extend(r.finish());
        assert_eq!(merge(out), vec![text(t)]);
    }

    /// A small deterministic generator (xorshift), so the mixed-text test needs no crate.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    const TRICKY: [&str; 24] = [
        "Hello",
        " ",
        "\n",
        "\n\n",
        "{",
        "}",
        "[",
        "]",
        "<",
        ">",
        "`",
        "```",
        "```json\n",
        "<tool",
        "_call>",
        "</tool_call>",
        "{\"name\": ",
        "\"image_generator\"",
        "[TOOL_CALLS]",
        "<|python_tag|>",
        "🦊",
        "{\"a\": 1}",
        "x < y",
        "[link](u)",
    ];
    const CALLS: [&str; 4] = [
        "<tool_call>{\"name\": \"image_generator\", \"arguments\": {\"prompt\": \"p\"}}</tool_call>",
        "{\"name\": \"image_generator\", \"parameters\": {\"prompt\": \"p\"}}",
        "[TOOL_CALLS][{\"name\": \"image_generator\", \"arguments\": \"{\\\"prompt\\\": 1}\"}]",
        "\n```json\n{\"name\": \"image_generator\", \"arguments\": {\"prompt\": \"p\"}}\n```\n",
    ];

    #[test]
    fn random_mixtures_come_out_the_same_however_they_are_split() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..400 {
            let mut text = String::new();
            for _ in 0..rng.below(12) + 1 {
                if rng.below(6) == 0 {
                    text.push_str(CALLS[rng.below(CALLS.len())]);
                } else {
                    text.push_str(TRICKY[rng.below(TRICKY.len())]);
                }
            }
            let whole = run(&[&text]);
            // Nothing is lost or invented: the text pieces and the calls account for the input
            // (the text released is the input with some calls and spaces taken out).
            let released: String = whole
                .iter()
                .filter_map(|p| match p {
                    Piece::Text(t) => Some(t.as_str()),
                    Piece::Call(_) => None,
                })
                .collect();
            if whole.iter().all(|p| matches!(p, Piece::Text(_))) {
                assert_eq!(released, text, "no call: byte-identical");
            }
            let bounds: Vec<usize> = (0..=text.len())
                .filter(|i| text.is_char_boundary(*i))
                .collect();
            for _ in 0..8 {
                let mut cuts: Vec<usize> = (0..rng.below(6))
                    .map(|_| bounds[rng.below(bounds.len())])
                    .collect();
                cuts.sort_unstable();
                let mut chunks = Vec::new();
                let mut at = 0;
                for c in cuts {
                    chunks.push(&text[at..c]);
                    at = c;
                }
                chunks.push(&text[at..]);
                assert_eq!(run(&chunks), whole, "{chunks:?}");
            }
        }
    }
}
