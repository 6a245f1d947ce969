//! Prompts as people write them: the AUTOMATIC1111 attention syntax (`(word:1.3)`, `(word)`,
//! `[word]`, `\(` for a literal parenthesis) and prompts longer than CLIP's 77-token window.
//!
//! The reference is diffusers' long-prompt-weighting community pipelines, which implement the
//! A1111 syntax and its 75-token chunks: `lpw_stable_diffusion_onnx.py`
//! (`get_weighted_text_embeddings`, SD 1.x/2.x) and `lpw_stable_diffusion_xl.py`
//! (`get_weighted_text_embeddings_sdxl`). This module does the text side (parsing, token
//! layout per chunk, weight per position); `text.rs` runs the encoders and applies the weights.
//! The fixtures in `tests/assets/fixtures/prompts/` come from those pipelines' own functions.
//!
//! A prompt that fits one window and carries no weight other than 1 is laid out exactly as the
//! plain pipelines do (so every reference-parity test still holds); only prompts that need
//! chunks or weights take the long-prompt path.

use super::tokenizer::ClipTokenizer;

/// Prompt tokens one CLIP window holds between its BOS and EOS.
pub const CHUNK_TOKENS: usize = 75;
/// Most windows a prompt is encoded in (225 tokens): the default `max_embeddings_multiples` of
/// lpw's pipelines. Longer prompts are cut, with a warning; every window lengthens the UNet's
/// cross-attention context, so this also bounds its cost.
pub const MAX_CHUNKS: usize = 3;

/// What happens to a prompt longer than one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LongPrompts {
    /// Encode it in 75-token windows and concatenate them (A1111's convention).
    #[default]
    Chunk,
    /// Keep the first 75 tokens, as diffusers' plain pipelines do.
    Truncate,
}

impl LongPrompts {
    pub fn parse(text: &str) -> Option<LongPrompts> {
        match text.trim().to_ascii_lowercase().as_str() {
            "chunk" | "chunks" => Some(LongPrompts::Chunk),
            "truncate" => Some(LongPrompts::Truncate),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LongPrompts::Chunk => "chunk",
            LongPrompts::Truncate => "truncate",
        }
    }

    /// The most prompt tokens the encoder sees.
    pub fn token_limit(self) -> usize {
        match self {
            LongPrompts::Chunk => CHUNK_TOKENS * MAX_CHUNKS,
            LongPrompts::Truncate => CHUNK_TOKENS,
        }
    }
}

/// How a request's prompts are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PromptOptions {
    pub long_prompts: LongPrompts,
    /// Whether `(word:1.3)` and friends are weights (else the brackets are literal text).
    pub weighting: bool,
}

impl PromptOptions {
    /// Exactly what diffusers' plain pipelines do: one window, brackets literal.
    pub const PLAIN: PromptOptions = PromptOptions {
        long_prompts: LongPrompts::Truncate,
        weighting: false,
    };
}

impl Default for PromptOptions {
    fn default() -> Self {
        PromptOptions {
            long_prompts: LongPrompts::Chunk,
            weighting: true,
        }
    }
}

/// Splits `text` into runs of text and their attention weight, as A1111's
/// `parse_prompt_attention`: `(x)` multiplies by 1.1, `[x]` divides by 1.1, `(x:w)` multiplies
/// by `w`, `\(` `\)` `\[` `\]` `\\` are literal, unclosed brackets apply to the end, and adjacent
/// runs with equal weights merge. Never fails: anything else is text.
pub fn parse_attention(text: &str) -> Vec<(String, f64)> {
    let mut runs: Vec<(String, f64)> = Vec::new();
    let mut round: Vec<usize> = Vec::new();
    let mut square: Vec<usize> = Vec::new();
    let multiply = |runs: &mut Vec<(String, f64)>, from: usize, by: f64| {
        for run in &mut runs[from..] {
            run.1 *= by;
        }
    };
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        // The alternatives of A1111's `re_attention`, in its order.
        let (token, len) = if c == '\\' {
            match rest[1..].chars().next() {
                Some(next @ ('(' | ')' | '[' | ']' | '\\')) => {
                    (Token::Literal(Some(next)), 1 + next.len_utf8())
                }
                // A lone backslash: A1111 keeps what follows it, which is nothing.
                _ => (Token::Literal(None), 1),
            }
        } else if c == '(' {
            (Token::OpenRound, 1)
        } else if c == '[' {
            (Token::OpenSquare, 1)
        } else if c == ':' {
            match explicit_weight(rest) {
                Some((weight, len)) => (Token::Weight(weight, &rest[..len]), len),
                None => (Token::Text(&rest[..1]), 1),
            }
        } else if c == ')' {
            (Token::CloseRound, 1)
        } else if c == ']' {
            (Token::CloseSquare, 1)
        } else {
            let len = rest
                .find(['\\', '(', ')', '[', ']', ':'])
                .unwrap_or(rest.len());
            (Token::Text(&rest[..len]), len)
        };
        rest = &rest[len..];
        match token {
            Token::Literal(c) => runs.push((c.map(String::from).unwrap_or_default(), 1.0)),
            Token::OpenRound => round.push(runs.len()),
            Token::OpenSquare => square.push(runs.len()),
            Token::Weight(weight, _) if !round.is_empty() => {
                let from = round.pop().unwrap_or(0);
                multiply(&mut runs, from, weight);
            }
            Token::CloseRound if !round.is_empty() => {
                let from = round.pop().unwrap_or(0);
                multiply(&mut runs, from, 1.1);
            }
            Token::CloseSquare if !square.is_empty() => {
                let from = square.pop().unwrap_or(0);
                multiply(&mut runs, from, 1.0 / 1.1);
            }
            Token::Weight(_, text) | Token::Text(text) => runs.push((text.to_string(), 1.0)),
            Token::CloseRound => runs.push((")".into(), 1.0)),
            Token::CloseSquare => runs.push(("]".into(), 1.0)),
        }
    }
    for from in round {
        multiply(&mut runs, from, 1.1);
    }
    for from in square {
        multiply(&mut runs, from, 1.0 / 1.1);
    }
    if runs.is_empty() {
        runs.push((String::new(), 1.0));
    }
    let mut merged: Vec<(String, f64)> = Vec::with_capacity(runs.len());
    for (text, weight) in runs {
        match merged.last_mut() {
            Some(last) if last.1 == weight => last.0.push_str(&text),
            _ => merged.push((text, weight)),
        }
    }
    merged
}

enum Token<'a> {
    /// `\\(` and friends; a lone backslash is `None` (it vanishes, as in A1111).
    Literal(Option<char>),
    OpenRound,
    OpenSquare,
    /// `:1.3)`: the weight and the text it was written as.
    Weight(f64, &'a str),
    CloseRound,
    CloseSquare,
    Text(&'a str),
}

/// `:([+-]?[.\d]+)\)` at the start of `text`: the weight and the length matched. A number
/// Python's `float()` would refuse (`1.2.3`, `.`) is not a weight here; it stays text.
fn explicit_weight(text: &str) -> Option<(f64, usize)> {
    let body = &text[1..];
    let sign = usize::from(body.starts_with(['+', '-']));
    let digits = body[sign..]
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len() - sign);
    if digits == 0 || !body[sign + digits..].starts_with(')') {
        return None;
    }
    let number = &body[..sign + digits];
    let weight: f64 = number.parse().ok().filter(|w: &f64| w.is_finite())?;
    Some((weight, 1 + sign + digits + 1))
}

/// A prompt's tokens (no BOS/EOS) with one weight each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WeightedTokens {
    pub ids: Vec<i64>,
    pub weights: Vec<f32>,
    /// Tokens the text had beyond the limit, dropped.
    pub dropped: usize,
}

impl WeightedTokens {
    /// Whether any token carries a weight other than 1.
    pub fn is_weighted(&self) -> bool {
        self.weights.iter().any(|w| *w != 1.0)
    }
}

/// Tokenises a prompt for the long-prompt path: each weighted run on its own (lpw's
/// `get_prompts_with_weights`), or the whole text when weighting is off; at most `limit` tokens.
pub fn weighted_tokens(
    tokenizer: &ClipTokenizer,
    text: &str,
    weighting: bool,
    limit: usize,
) -> WeightedTokens {
    let mut out = WeightedTokens::default();
    if weighting {
        for (run, weight) in parse_attention(text) {
            let ids = tokenizer.ids(&run);
            out.weights
                .extend(std::iter::repeat_n(weight as f32, ids.len()));
            out.ids.extend(ids);
        }
    } else {
        out.ids = tokenizer.ids(text);
        out.weights = vec![1.0; out.ids.len()];
    }
    if out.ids.len() > limit {
        out.dropped = out.ids.len() - limit;
        out.ids.truncate(limit);
        out.weights.truncate(limit);
    }
    out
}

/// How many windows a prompt and its negative need together (the UNet needs both the same
/// length): lpw's `max_embeddings_multiples`, at least 1, at most what `limit` allows.
pub fn chunk_count(longest: usize, limit: usize) -> usize {
    let most = limit.div_ceil(CHUNK_TOKENS).max(1);
    longest.div_ceil(CHUNK_TOKENS).clamp(1, most)
}

/// One encoder window: 77 ids and the weight of each position.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub ids: Vec<i64>,
    pub weights: Vec<f32>,
    /// The window's first EOS: SDXL weighting pulls weighted rows towards this row's embedding.
    pub anchor: usize,
}

/// SD 1.x/2.x windows as lpw lays them out (`pad_tokens_and_weights` and
/// `get_unweighted_text_embeddings` with `no_boseos_middle=False`): the prompt is padded to
/// `chunks × 75` tokens with the pad id, and each window is BOS + its 75 tokens + EOS. BOS, EOS
/// and padding weigh 1.
pub fn sd_windows(
    tokenizer: &ClipTokenizer,
    tokens: &WeightedTokens,
    chunks: usize,
) -> Vec<Window> {
    let width = CHUNK_TOKENS + 2;
    (0..chunks)
        .map(|c| {
            let mut ids = Vec::with_capacity(width);
            let mut weights = Vec::with_capacity(width);
            ids.push(tokenizer.bos_id());
            weights.push(1.0);
            for k in c * CHUNK_TOKENS..(c + 1) * CHUNK_TOKENS {
                ids.push(tokens.ids.get(k).copied().unwrap_or(tokenizer.pad_id()));
                weights.push(tokens.weights.get(k).copied().unwrap_or(1.0));
            }
            ids.push(tokenizer.eos_id());
            weights.push(1.0);
            Window {
                ids,
                weights,
                anchor: CHUNK_TOKENS + 1,
            }
        })
        .collect()
}

/// SDXL windows as lpw's SDXL pipeline groups them (`group_tokens_and_weights`): full groups
/// of 75 tokens as BOS + 75 + EOS, then the rest as BOS + rest + EOS. lpw feeds that last group
/// unpadded (a context of a few tokens); here it is padded with EOS to 77 like every CLIP
/// window in A1111 and diffusers, which leaves the rows lpw has unchanged (CLIP's attention is
/// causal) and adds padding rows of weight 1. The prompt's and the negative's token lists are
/// first padded with EOS (weight 1) to the same length by the caller. An empty list still makes
/// one window.
pub fn sdxl_windows(tokenizer: &ClipTokenizer, tokens: &WeightedTokens) -> Vec<Window> {
    let (bos, eos) = (tokenizer.bos_id(), tokenizer.eos_id());
    let chunks = tokens.ids.len().div_ceil(CHUNK_TOKENS).max(1);
    (0..chunks)
        .map(|c| {
            let content = tokens
                .ids
                .len()
                .saturating_sub(c * CHUNK_TOKENS)
                .min(CHUNK_TOKENS);
            let mut ids = vec![bos];
            let mut weights = vec![1.0];
            for k in c * CHUNK_TOKENS..c * CHUNK_TOKENS + content {
                ids.push(tokens.ids[k]);
                weights.push(tokens.weights[k]);
            }
            ids.resize(CHUNK_TOKENS + 2, eos);
            weights.resize(CHUNK_TOKENS + 2, 1.0);
            Window {
                ids,
                weights,
                anchor: content + 1,
            }
        })
        .collect()
}

/// Pads token lists with `eos` (weight 1) to the longest one's length.
pub fn pad_to_same_length(lists: &mut [&mut WeightedTokens], eos: i64) {
    let len = lists.iter().map(|t| t.ids.len()).max().unwrap_or(0);
    for t in lists.iter_mut() {
        t.ids.resize(len, eos);
        t.weights.resize(len, 1.0);
    }
}

/// What the engine will do with a prompt, for warnings before painting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PromptReport {
    /// The prompt's tokens (no BOS/EOS), after parsing the weights.
    pub tokens: usize,
    /// How many of them the encoder sees.
    pub limit: usize,
    /// How many are cut off (0 when the prompt fits).
    pub dropped: usize,
    pub weighted: bool,
}

pub fn report(tokenizer: &ClipTokenizer, text: &str, options: PromptOptions) -> PromptReport {
    let limit = options.long_prompts.token_limit();
    let tokens = weighted_tokens(tokenizer, text, options.weighting, usize::MAX);
    PromptReport {
        tokens: tokens.ids.len(),
        limit,
        dropped: tokens.ids.len().saturating_sub(limit),
        weighted: tokens.is_weighted(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(text: &str) -> Vec<(String, f64)> {
        parse_attention(text)
    }

    fn close(a: &[(String, f64)], b: &[(&str, f64)]) {
        assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
        for ((t, w), (et, ew)) in a.iter().zip(b) {
            assert_eq!(t, et, "{a:?}");
            assert!((w - ew).abs() < 1e-12, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn parses_the_a1111_examples() {
        // The doctest of A1111's / lpw's `parse_prompt_attention`.
        close(&runs("normal text"), &[("normal text", 1.0)]);
        close(
            &runs("an (important) word"),
            &[("an ", 1.0), ("important", 1.1), (" word", 1.0)],
        );
        close(&runs("(unbalanced"), &[("unbalanced", 1.1)]);
        close(&runs("\\(literal\\]"), &[("(literal]", 1.0)]);
        close(
            &runs("(unnecessary)(parens)"),
            &[("unnecessaryparens", 1.1)],
        );
        close(
            &runs("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky)))."),
            &[
                ("a ", 1.0),
                ("house", 1.3 * 1.1 * 1.1),
                (" ", 1.1),
                ("on", 1.1 / 1.1),
                (" a ", 1.1),
                ("hill", 0.55),
                (", sun, ", 1.1),
                ("sky", 1.1 * 1.1 * 1.1 * 1.1),
                (".", 1.1),
            ],
        );
        close(&runs(""), &[("", 1.0)]);
    }

    #[test]
    fn odd_input_stays_text_and_never_panics() {
        close(&runs("a:b"), &[("a:b", 1.0)]);
        close(&runs("(a:1.2.3)"), &[("a:1.2.3", 1.1)]);
        close(&runs("x:1.5)"), &[("x:1.5)", 1.0)]);
        close(&runs("]])))"), &[("]])))", 1.0)]);
        close(&runs("\\"), &[("", 1.0)]);
        close(&runs("a\\b"), &[("ab", 1.0)]);
        close(&runs("(a:-0.5)"), &[("a", -0.5)]);
        close(&runs("\\\\(x)"), &[("\\", 1.0), ("x", 1.1)]);
        close(&runs("(fox — 🦊:1.2)"), &[("fox — 🦊", 1.2)]);
        for text in ["(:)", "(:.)", "([)]", "\\é", "((((((", "::::)", "(a:1e5)"] {
            let _ = runs(text);
        }
    }

    #[test]
    fn chunk_counts_follow_lpw() {
        assert_eq!(chunk_count(0, 300), 1);
        assert_eq!(chunk_count(75, 300), 1);
        assert_eq!(chunk_count(76, 300), 2);
        assert_eq!(chunk_count(150, 300), 2);
        assert_eq!(chunk_count(151, 300), 3);
        assert_eq!(chunk_count(1000, 300), 4);
        assert_eq!(chunk_count(1000, 75), 1);
    }
}
