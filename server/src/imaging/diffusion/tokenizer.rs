//! The CLIP tokenizer that Stable Diffusion's text encoders expect.
//!
//! A model folder ships the tokenizer as Hugging Face files (`tokenizer/vocab.json`,
//! `merges.txt`, `tokenizer_config.json`, `special_tokens_map.json`), and diffusers pipelines
//! turn a prompt into ids with transformers' `CLIPTokenizer` (`tokenization_clip.py`):
//!
//! ```text
//! tokenizer(prompt, padding="max_length", max_length=77, truncation=True).input_ids
//! ```
//!
//! The text encoder was trained on exactly those ids, so this module reproduces that call, and
//! specifically the slow (pure Python) tokenizer as it runs when `ftfy` is not installed, which
//! is the usual set-up. Step by step, as in transformers 4.x:
//!
//! 1. **Added tokens are split out first** (`PreTrainedTokenizer.tokenize` and its trie): exact,
//!    case-sensitive occurrences of the special tokens (`<|startoftext|>`, `<|endoftext|>`, the
//!    pad token, ...) become their ids directly. SD 2.x pads with `"!"`, which makes `"!"` an
//!    added token too: `"wow!!!"` is `wow` plus three separate `!` tokens there, where SD 1.x
//!    gets one merged `!!!` token.
//! 2. **Each remaining piece is cleaned by `BasicTokenizer(strip_accents=False,
//!    do_split_on_punc=False)`**: NUL, U+FFFD and every "other" character (categories Cc, Cf, Cs,
//!    Co, Cn except tab, CR and LF: zero-width joiners, BOMs, soft hyphens, ...) are dropped;
//!    whitespace (space, tab, CR, LF, category Zs) becomes a space; CJK ideographs get spaces
//!    around them, so each becomes its own word; the text is NFC-normalized, split on Python's
//!    `str.split()` whitespace and each word is lower-cased with Python's `str.lower()` rules
//!    (full case mapping, final sigma). Accents are kept.
//! 3. **Words are cut with CLIP's pattern** `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|
//!    'll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+` (compiled with `re.IGNORECASE` by the `regex`
//!    module): runs of letters, single digits, runs of other symbols, English contractions.
//! 4. **Each piece is byte-level BPE encoded**: its UTF-8 bytes map to 256 printable stand-in
//!    characters, the last one carries the end-of-word marker `</w>`, and the lowest-ranked merge
//!    from `merges.txt` is applied repeatedly (all its occurrences, left to right) until none
//!    applies.
//! 5. **BOS + ids + EOS, truncated and padded**: the ids are cut to `max_length - 2` so that BOS
//!    and EOS always survive, then padded with the pad token up to `max_length` (77).
//!
//! Known limits: Unicode tables are those of the Rust crates (16.0 and later) where the
//! reference Python 3.11 uses Unicode 14, so a character assigned after Unicode 14 is kept here
//! where Python drops it as unassigned. transformers 5 replaced the slow tokenizer with the
//! `tokenizers` pipeline, which skips step 2's control-character removal and CJK spacing and
//! lower-cases per character; prompts with such characters get different ids there.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde_json::Value;
use unicode_general_category::{get_general_category, GeneralCategory};
use unicode_normalization::UnicodeNormalization;

/// CLIP's context length, used when `tokenizer_config.json` does not give one.
const DEFAULT_MAX_LENGTH: usize = 77;
/// `model_max_length` values above this are transformers' "unset" sentinel (`int(1e30)`).
const MAX_SENSIBLE_LENGTH: u64 = 1 << 20;
/// The slow CLIPTokenizer only reads this many merges (`[1 : 49152 - 256 - 2 + 1]`): the vocab
/// holds 256 byte symbols, 256 end-of-word byte symbols, the merges and two special tokens.
const CLIP_MERGE_LIMIT: usize = 49152 - 256 - 2;
/// Words kept in the BPE cache before it is emptied; prompts repeat words a lot, and this keeps
/// the memory bounded (a few MB at most) whatever users type.
const CACHE_LIMIT: usize = 16_384;
const START_OF_TEXT: &str = "<|startoftext|>";
const END_OF_TEXT: &str = "<|endoftext|>";
/// The end-of-word marker that byte-level CLIP BPE appends to the last symbol of each word.
const END_OF_WORD: &str = "</w>";

/// `<|startoftext|>` spelled with `ſ` (U+017F), which CLIP's case-insensitive pattern also
/// takes for the special word (but which then goes through BPE, as it is not the cached one).
const START_OF_TEXT_LONG_S: &str = "<|\u{17F}tartoftext|>";

/// Why a tokenizer folder could not be loaded. Every variant names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("tokenizer file {} is missing", .path.display())]
    Missing { path: PathBuf },
    #[error("cannot read tokenizer file {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not valid JSON: {source}", .path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{}: {message}", .path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("{}: the {role} {token:?} is not in vocab.json", .path.display())]
    UnknownToken {
        path: PathBuf,
        role: String,
        token: String,
    },
}

/// A special token that is matched verbatim in the text before any cleaning (transformers'
/// "added tokens").
#[derive(Debug, Clone)]
struct AddedToken {
    content: String,
    id: i64,
    /// Whitespace before the token is dropped (`AddedToken.lstrip`).
    lstrip: bool,
    /// Whitespace after the token is dropped (`AddedToken.rstrip`).
    rstrip: bool,
}

/// A piece of the input after the added tokens are split out.
enum Piece<'a> {
    Text(&'a str),
    Added(i64),
}

/// CLIP tokenizer built from a model's `tokenizer/` folder; cheap to share between threads.
pub struct ClipTokenizer {
    /// Output id of every BPE symbol. Symbols are interned strings (byte symbols, merge inputs
    /// and results); one that is not in vocab.json maps to the unknown token, as
    /// `convert_tokens_to_ids` does.
    symbol_ids: Vec<i64>,
    /// Symbol of each byte inside a word, and of each byte ending a word (with `</w>`).
    byte_symbols: [u32; 256],
    byte_symbols_final: [u32; 256],
    /// `(left << 32) | right` to (rank, merged symbol); lower ranks merge first.
    merges: HashMap<u64, (u32, u32)>,
    /// Added tokens, longest first so that the first match at a position is the longest.
    added: Vec<AddedToken>,
    /// Ids for the literal `<|startoftext|>` / `<|endoftext|>` words that the pattern catches
    /// (e.g. from `<|ENDOFTEXT|>` once lower-cased): the slow tokenizer's BPE cache returns them
    /// unsplit.
    start_of_text_word: i64,
    end_of_text_word: i64,
    bos_id: i64,
    eos_id: i64,
    pad_id: i64,
    max_length: usize,
    cache: Mutex<HashMap<String, Vec<i64>>>,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("symbols", &self.symbol_ids.len())
            .field("merges", &self.merges.len())
            .field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .field("pad_id", &self.pad_id)
            .field("max_length", &self.max_length)
            .finish_non_exhaustive()
    }
}

impl ClipTokenizer {
    /// Reads vocab.json, merges.txt, tokenizer_config.json (and special_tokens_map.json when present) from a model's `tokenizer/` folder.
    ///
    /// Special tokens come from `special_tokens_map.json` first, then `tokenizer_config.json`
    /// (transformers lets the map override the config), then CLIPTokenizer's defaults
    /// (`<|startoftext|>`, and `<|endoftext|>` for EOS, unknown and padding); a folder without
    /// `tokenizer_config.json` therefore still loads. `model_max_length` defaults to 77.
    /// `do_lower_case` is not read: CLIP's BasicTokenizer always lower-cases.
    pub fn from_dir(dir: &Path) -> Result<Self, TokenizerError> {
        let vocab_path = dir.join("vocab.json");
        let vocab: HashMap<String, i64> = parse_json(&vocab_path, &read_text(&vocab_path)?)?;
        if vocab.is_empty() {
            return Err(invalid(&vocab_path, "the vocabulary is empty"));
        }
        if let Some((token, id)) = vocab.iter().find(|(_, id)| **id < 0) {
            return Err(invalid(
                &vocab_path,
                format!("token {token:?} has the negative id {id}"),
            ));
        }
        let merges_path = dir.join("merges.txt");
        let merges_text = read_text(&merges_path)?;
        let config_path = dir.join("tokenizer_config.json");
        let config = read_optional_json(&config_path)?;
        let map_path = dir.join("special_tokens_map.json");
        let special_map = read_optional_json(&map_path)?;

        // Tokens with explicit ids (`added_tokens_decoder` in newer configs, `added_tokens.json`
        // in older folders).
        let mut explicit: Vec<AddedToken> = Vec::new();
        if let Some(decoder) = config.as_ref().and_then(|c| c.get("added_tokens_decoder")) {
            let entries = decoder
                .as_object()
                .ok_or_else(|| invalid(&config_path, "added_tokens_decoder is not an object"))?;
            for (id, value) in entries {
                let id: i64 = id.parse().map_err(|_| {
                    invalid(
                        &config_path,
                        format!("added_tokens_decoder key {id:?} is not an id"),
                    )
                })?;
                let spec = token_spec(value).ok_or_else(|| {
                    invalid(
                        &config_path,
                        format!("added_tokens_decoder entry {id} has no content"),
                    )
                })?;
                explicit.push(spec.with_id(id));
            }
        }
        let added_json_path = dir.join("added_tokens.json");
        if let Some(added_json) = read_optional_json(&added_json_path)? {
            let entries = added_json
                .as_object()
                .ok_or_else(|| invalid(&added_json_path, "expected an object of token -> id"))?;
            for (content, id) in entries {
                let id = id.as_i64().ok_or_else(|| {
                    invalid(
                        &added_json_path,
                        format!("the id of {content:?} is not an integer"),
                    )
                })?;
                explicit.push(TokenSpec::plain(content.clone()).with_id(id));
            }
        }
        let explicit_ids: HashMap<String, i64> = explicit
            .iter()
            .map(|token| (token.content.clone(), token.id))
            .collect();
        let id_of = |content: &str| -> Option<i64> {
            explicit_ids
                .get(content)
                .or_else(|| vocab.get(content))
                .copied()
        };

        // The four role tokens, and any additional special tokens.
        let mut roles: Vec<(&str, TokenSpec, PathBuf)> = Vec::new();
        for (role, default) in [
            ("bos_token", START_OF_TEXT),
            ("eos_token", END_OF_TEXT),
            ("unk_token", END_OF_TEXT),
            ("pad_token", END_OF_TEXT),
        ] {
            let from_map = special_map
                .as_ref()
                .and_then(|m| m.get(role))
                .and_then(token_spec)
                .map(|spec| (spec, map_path.clone()));
            let from_config = config
                .as_ref()
                .and_then(|c| c.get(role))
                .and_then(token_spec)
                .map(|spec| (spec, config_path.clone()));
            let (spec, path) = from_map
                .or(from_config)
                .unwrap_or_else(|| (TokenSpec::plain(default.to_owned()), config_path.clone()));
            roles.push((role, spec, path));
        }
        let mut resolved: Vec<AddedToken> = Vec::new();
        let mut role_ids: HashMap<&str, i64> = HashMap::new();
        for (role, spec, path) in roles {
            let id = id_of(&spec.content).ok_or_else(|| TokenizerError::UnknownToken {
                path: path.clone(),
                role: role.replace('_', " "),
                token: spec.content.clone(),
            })?;
            role_ids.insert(role, id);
            resolved.push(spec.with_id(id));
        }
        for (source, path) in [(&special_map, &map_path), (&config, &config_path)] {
            let Some(list) = source
                .as_ref()
                .and_then(|s| s.get("additional_special_tokens"))
                .and_then(Value::as_array)
            else {
                continue;
            };
            for spec in list.iter().filter_map(token_spec) {
                let id = id_of(&spec.content).ok_or_else(|| TokenizerError::UnknownToken {
                    path: path.clone(),
                    role: "additional special token".to_owned(),
                    token: spec.content.clone(),
                })?;
                resolved.push(spec.with_id(id));
            }
        }
        resolved.extend(explicit);
        let mut added: Vec<AddedToken> = Vec::new();
        for token in resolved {
            if !token.content.is_empty() && !added.iter().any(|a| a.content == token.content) {
                added.push(token);
            }
        }
        added.sort_by_key(|token| std::cmp::Reverse(token.content.len()));

        let role_id = |role: &str| role_ids.get(role).copied().unwrap_or_default();
        let unk_id = role_id("unk_token");
        let output_id = |symbol: &str| -> i64 {
            added
                .iter()
                .find(|a| a.content == symbol)
                .map(|a| a.id)
                .or_else(|| vocab.get(symbol).copied())
                .unwrap_or(unk_id)
        };

        // Symbols: byte stand-ins first, then everything the merges mention.
        let mut interner = Interner::default();
        let mut byte_symbols = [0u32; 256];
        let mut byte_symbols_final = [0u32; 256];
        for byte in 0..=255u8 {
            let ch = byte_char(byte);
            let plain = ch.to_string();
            byte_symbols[usize::from(byte)] = interner.intern(&plain, &output_id);
            let end = format!("{ch}{END_OF_WORD}");
            byte_symbols_final[usize::from(byte)] = interner.intern(&end, &output_id);
        }
        let mut merges = HashMap::with_capacity(CLIP_MERGE_LIMIT);
        // Like `read().strip().split("\n")[1:...]`: the first line is the `#version` header.
        for (rank, (line_no, line)) in merges_text
            .trim()
            .split('\n')
            .enumerate()
            .skip(1)
            .take(CLIP_MERGE_LIMIT)
            .enumerate()
        {
            let mut parts = line.split_whitespace();
            let (Some(left), Some(right), None) = (parts.next(), parts.next(), parts.next()) else {
                if line.trim().is_empty() {
                    continue;
                }
                return Err(invalid(
                    &merges_path,
                    format!(
                        "line {} should hold two symbols separated by a space, found {line:?}",
                        line_no + 1
                    ),
                ));
            };
            let l = interner.intern(left, &output_id);
            let r = interner.intern(right, &output_id);
            let merged = interner.intern(&format!("{left}{right}"), &output_id);
            // u32 is plenty: the merge list is capped at CLIP_MERGE_LIMIT.
            merges.insert(pair_key(l, r), (rank as u32, merged));
        }
        if merges.is_empty() {
            return Err(invalid(&merges_path, "no merges found"));
        }

        let max_length = match config.as_ref().and_then(|c| c.get("model_max_length")) {
            None | Some(Value::Null) => DEFAULT_MAX_LENGTH,
            Some(value) => match value.as_u64().or_else(|| {
                value
                    .as_f64()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .map(|v| v.min(u64::MAX as f64) as u64)
            }) {
                Some(n) if n > MAX_SENSIBLE_LENGTH => DEFAULT_MAX_LENGTH,
                Some(n) if n >= 2 => n as usize,
                _ => {
                    return Err(invalid(
                        &config_path,
                        format!("model_max_length {value} leaves no room for BOS and EOS"),
                    ))
                }
            },
        };

        Ok(Self {
            symbol_ids: interner.ids,
            byte_symbols,
            byte_symbols_final,
            merges,
            start_of_text_word: output_id(START_OF_TEXT),
            end_of_text_word: output_id(END_OF_TEXT),
            bos_id: role_id("bos_token"),
            eos_id: role_id("eos_token"),
            pad_id: role_id("pad_token"),
            added,
            max_length,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// BOS + BPE ids + EOS, truncated to max_length and padded with the pad id: always exactly max_length ids.
    pub fn encode(&self, text: &str) -> Vec<i64> {
        self.encode_ids(&self.tokens(text))
    }

    /// [`encode`](Self::encode) of text already tokenised (without BOS/EOS).
    pub fn encode_ids(&self, tokens: &[i64]) -> Vec<i64> {
        // transformers truncates the sequence itself, never the special tokens around it.
        let tokens = &tokens[..tokens.len().min(self.max_length - 2)];
        let mut ids = Vec::with_capacity(self.max_length);
        ids.push(self.bos_id);
        ids.extend_from_slice(tokens);
        ids.push(self.eos_id);
        ids.resize(self.max_length, self.pad_id);
        ids
    }

    /// The text's ids without BOS, EOS, truncation or padding (what
    /// `tokenizer(text).input_ids[1:-1]` gives in transformers).
    pub fn ids(&self, text: &str) -> Vec<i64> {
        self.tokens(text)
    }

    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// The id used to pad sequences (49407 for SD 1.x, 0 for SD 2.x and SDXL's second encoder).
    pub fn pad_id(&self) -> i64 {
        self.pad_id
    }

    pub fn bos_id(&self) -> i64 {
        self.bos_id
    }

    /// The EOS id; CLIP text encoders pool the hidden state at its position.
    pub fn eos_id(&self) -> i64 {
        self.eos_id
    }

    /// The ids of the text without BOS, EOS, truncation or padding.
    fn tokens(&self, text: &str) -> Vec<i64> {
        let mut ids = Vec::new();
        for piece in self.split_added(text) {
            match piece {
                Piece::Added(id) => ids.push(id),
                Piece::Text(text) => self.tokenize_piece(text, &mut ids),
            }
        }
        ids
    }

    /// Splits out added tokens, leftmost first and longest at a position, like transformers'
    /// trie, then applies their `lstrip`/`rstrip` flags to the neighbouring text.
    fn split_added<'a>(&self, text: &'a str) -> Vec<Piece<'a>> {
        let mut pieces = Vec::new();
        let mut start = 0;
        let mut pos = 0;
        let bytes = text.as_bytes();
        while pos < text.len() {
            let found = self.added.iter().find(|token| {
                bytes[pos..].starts_with(token.content.as_bytes())
                    && text.is_char_boundary(pos + token.content.len())
            });
            match found {
                Some(token) => {
                    let mut before = &text[start..pos];
                    if token.lstrip {
                        before = before.trim_end_matches(is_python_space);
                    }
                    if !before.is_empty() {
                        pieces.push(Piece::Text(before));
                    }
                    pieces.push(Piece::Added(token.id));
                    pos += token.content.len();
                    if token.rstrip {
                        let rest = &text[pos..];
                        pos += rest.len() - rest.trim_start_matches(is_python_space).len();
                    }
                    start = pos;
                }
                None => {
                    pos += text[pos..].chars().next().map_or(1, char::len_utf8);
                }
            }
        }
        if start < text.len() {
            pieces.push(Piece::Text(&text[start..]));
        }
        pieces
    }

    /// BasicTokenizer cleaning, CLIP's word pattern and BPE for text without added tokens.
    fn tokenize_piece(&self, text: &str, ids: &mut Vec<i64>) {
        let cleaned = clean_text(text);
        let normalized = if unicode_normalization::is_nfc(&cleaned) {
            cleaned
        } else {
            cleaned.nfc().collect()
        };
        for word in normalized.split(is_python_space).filter(|w| !w.is_empty()) {
            let lower;
            let word = if word.chars().any(|c| c.is_uppercase() || !c.is_ascii()) {
                lower = word.to_lowercase();
                lower.as_str()
            } else {
                word
            };
            for_each_clip_word(word, |piece| self.push_bpe(piece, ids));
        }
    }

    /// Appends the BPE ids of one word-pattern match, through the cache.
    fn push_bpe(&self, word: &str, ids: &mut Vec<i64>) {
        if word == START_OF_TEXT {
            ids.push(self.start_of_text_word);
            return;
        }
        if word == END_OF_TEXT {
            ids.push(self.end_of_text_word);
            return;
        }
        {
            let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(cached) = cache.get(word) {
                ids.extend_from_slice(cached);
                return;
            }
        }
        let encoded: Vec<i64> = self
            .bpe(word.as_bytes())
            .into_iter()
            .map(|symbol| self.symbol_ids[symbol as usize])
            .collect();
        ids.extend_from_slice(&encoded);
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(word.to_owned(), encoded);
    }

    /// Byte-level BPE of one word: start from one symbol per byte (the last with `</w>`), then
    /// repeatedly merge every occurrence of the adjacent pair with the lowest rank.
    fn bpe(&self, bytes: &[u8]) -> Vec<u32> {
        let Some((&last, init)) = bytes.split_last() else {
            return Vec::new();
        };
        let mut symbols: Vec<u32> = init
            .iter()
            .map(|&b| self.byte_symbols[usize::from(b)])
            .collect();
        symbols.push(self.byte_symbols_final[usize::from(last)]);
        let mut next = Vec::with_capacity(symbols.len());
        while symbols.len() > 1 {
            let best = symbols
                .windows(2)
                .filter_map(|pair| {
                    self.merges
                        .get(&pair_key(pair[0], pair[1]))
                        .map(|&(rank, merged)| (rank, pair[0], pair[1], merged))
                })
                .min_by_key(|&(rank, ..)| rank);
            let Some((_, left, right, merged)) = best else {
                break;
            };
            next.clear();
            let mut i = 0;
            while i < symbols.len() {
                if i + 1 < symbols.len() && symbols[i] == left && symbols[i + 1] == right {
                    next.push(merged);
                    i += 2;
                } else {
                    next.push(symbols[i]);
                    i += 1;
                }
            }
            std::mem::swap(&mut symbols, &mut next);
        }
        symbols
    }
}

/// What CLIP's word pattern makes of a character.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CharClass {
    /// `\p{L}`: runs of letters are one word.
    Letter,
    /// `\p{N}`: every digit is its own word.
    Number,
    /// `\s`: never part of a word.
    Space,
    /// Runs of everything else (punctuation, symbols, marks, emoji) are one word.
    Other,
    /// U+0345, which no alternative matches (see [`for_each_clip_word`]).
    Unmatched,
}

fn char_class(ch: char) -> CharClass {
    if ch.is_ascii() {
        return if ch.is_ascii_alphabetic() {
            CharClass::Letter
        } else if ch.is_ascii_digit() {
            CharClass::Number
        } else if ch.is_whitespace() {
            CharClass::Space
        } else {
            CharClass::Other
        };
    }
    if ch == '\u{345}' {
        return CharClass::Unmatched;
    }
    if ch.is_whitespace() {
        return CharClass::Space;
    }
    match get_general_category(ch) {
        GeneralCategory::UppercaseLetter
        | GeneralCategory::LowercaseLetter
        | GeneralCategory::TitlecaseLetter
        | GeneralCategory::ModifierLetter
        | GeneralCategory::OtherLetter => CharClass::Letter,
        GeneralCategory::DecimalNumber
        | GeneralCategory::LetterNumber
        | GeneralCategory::OtherNumber => CharClass::Number,
        _ => CharClass::Other,
    }
}

/// Calls `f` with each match of CLIP's word pattern in a lower-cased word, in order:
///
/// ```text
/// <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
/// ```
///
/// The slow tokenizer runs it with `re.findall` and `re.IGNORECASE` (the `regex` module). The
/// alternatives are tried in order at each position and characters that none matches are
/// skipped. This hand-written matcher does the same in one pass; it is several times faster
/// than the `regex` crate built without its DFA features, and it states the two places where
/// IGNORECASE matters on lower-cased text:
///
/// * `ſ` (U+017F) case-folds to `s`, so `'ſ` and `<|ſtartoftext|>` match like `'s` and
///   `<|startoftext|>` (no other lower-case character folds onto the pattern's literals);
/// * for the negated class the `regex` module drops every character that has a letter among
///   its case variants; outside the letters that is only U+0345 (combining ypogegrammeni, a
///   variant of `ι`), which therefore belongs to no alternative and disappears, as in Python.
fn for_each_clip_word(word: &str, mut f: impl FnMut(&str)) {
    let mut rest = word;
    while let Some(first) = rest.chars().next() {
        let len = clip_match_len(rest, first);
        if len == 0 {
            rest = &rest[first.len_utf8()..];
        } else {
            f(&rest[..len]);
            rest = &rest[len..];
        }
    }
}

/// Length in bytes of the pattern's match at the start of `text` (0: no match here).
fn clip_match_len(text: &str, first: char) -> usize {
    if first == '<' {
        for special in [START_OF_TEXT, START_OF_TEXT_LONG_S, END_OF_TEXT] {
            if text.starts_with(special) {
                return special.len();
            }
        }
    }
    if first == '\'' {
        let after = &text[1..];
        for suffix in ["s", "\u{17F}", "t", "re", "ve", "m", "ll", "d"] {
            if after.starts_with(suffix) {
                return 1 + suffix.len();
            }
        }
    }
    let class = char_class(first);
    match class {
        CharClass::Number => first.len_utf8(),
        CharClass::Space | CharClass::Unmatched => 0,
        CharClass::Letter | CharClass::Other => text
            .char_indices()
            .find(|&(_, ch)| char_class(ch) != class)
            .map_or(text.len(), |(end, _)| end),
    }
}

/// Assigns dense symbol numbers to BPE symbol strings while loading.
#[derive(Default)]
struct Interner {
    index: HashMap<String, u32>,
    ids: Vec<i64>,
}

impl Interner {
    fn intern(&mut self, symbol: &str, output_id: &impl Fn(&str) -> i64) -> u32 {
        if let Some(&index) = self.index.get(symbol) {
            return index;
        }
        // Fewer than 2^32 symbols: at most 512 byte symbols plus 3 per merge line.
        let index = self.ids.len() as u32;
        self.index.insert(symbol.to_owned(), index);
        self.ids.push(output_id(symbol));
        index
    }
}

/// A special token as written in the config files, before its id is known.
struct TokenSpec {
    content: String,
    lstrip: bool,
    rstrip: bool,
}

impl TokenSpec {
    fn plain(content: String) -> Self {
        Self {
            content,
            lstrip: false,
            rstrip: false,
        }
    }

    fn with_id(self, id: i64) -> AddedToken {
        AddedToken {
            content: self.content,
            id,
            lstrip: self.lstrip,
            rstrip: self.rstrip,
        }
    }
}

/// A token in `tokenizer_config.json` / `special_tokens_map.json` is either a string or an
/// `AddedToken` object (`{"content": ..., "lstrip": ..., "rstrip": ...}`); `null` means unset.
fn token_spec(value: &Value) -> Option<TokenSpec> {
    match value {
        Value::String(s) => Some(TokenSpec::plain(s.clone())),
        Value::Object(map) => {
            let flag = |key: &str| map.get(key).and_then(Value::as_bool).unwrap_or(false);
            Some(TokenSpec {
                content: map.get("content")?.as_str()?.to_owned(),
                lstrip: flag("lstrip"),
                rstrip: flag("rstrip"),
            })
        }
        _ => None,
    }
}

fn pair_key(left: u32, right: u32) -> u64 {
    (u64::from(left) << 32) | u64::from(right)
}

/// GPT-2/CLIP's reversible byte-to-character table (`bytes_to_unicode`): printable Latin-1
/// bytes stand for themselves, the other 68 (controls, space, 0x7F-0xA0, 0xAD) map in order to
/// U+0100 and up, so that no BPE symbol is whitespace or a control character.
fn byte_char(byte: u8) -> char {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(byte) {
        return char::from(byte);
    }
    let rank = (0..byte).filter(|&b| !printable(b)).count() as u32;
    char::from_u32(256 + rank).unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// BasicTokenizer's `_clean_text` and `_tokenize_chinese_chars` in one pass.
fn clean_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for ch in text.chars() {
        if ch == '\0' || ch == '\u{FFFD}' || is_control(ch) {
            continue;
        }
        if is_whitespace(ch) {
            out.push(' ');
        } else if is_cjk_ideograph(ch) {
            out.push(' ');
            out.push(ch);
            out.push(' ');
        } else {
            out.push(ch);
        }
    }
    out
}

/// `_is_control`: any "C" category (control, format, surrogate, private use, unassigned)
/// except tab, LF and CR, which count as whitespace.
fn is_control(ch: char) -> bool {
    if matches!(ch, '\t' | '\n' | '\r') {
        return false;
    }
    if ch.is_ascii() {
        return ch.is_ascii_control();
    }
    matches!(
        get_general_category(ch),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::Surrogate
            | GeneralCategory::PrivateUse
            | GeneralCategory::Unassigned
    )
}

/// `_is_whitespace`: space, tab, LF, CR and the space separators (Zs: NBSP, em space, ...).
fn is_whitespace(ch: char) -> bool {
    match ch {
        ' ' | '\t' | '\n' | '\r' => true,
        _ if ch.is_ascii() => false,
        _ => get_general_category(ch) == GeneralCategory::SpaceSeparator,
    }
}

/// `_is_chinese_char`: the CJK Unified Ideographs blocks (BMP, extensions A to E) and the
/// compatibility ideographs. Hiragana, katakana and hangul are deliberately not included; those
/// scripts separate words with spaces.
fn is_cjk_ideograph(ch: char) -> bool {
    matches!(
        u32::from(ch),
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B820..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}

/// Python's `str.isspace()`, which `str.split()` and `str.strip()` use: category Zs or
/// bidirectional class WS, B or S. Wider than Rust's `char::is_whitespace` (U+001C..U+001F).
fn is_python_space(ch: char) -> bool {
    matches!(
        ch,
        '\t'..='\r'
            | '\u{1C}'..='\u{20}'
            | '\u{85}'
            | '\u{A0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200A}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202F}'
            | '\u{205F}'
            | '\u{3000}'
    )
}

fn invalid(path: &Path, message: impl Into<String>) -> TokenizerError {
    TokenizerError::Invalid {
        path: path.to_owned(),
        message: message.into(),
    }
}

fn read_text(path: &Path) -> Result<String, TokenizerError> {
    std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            TokenizerError::Missing {
                path: path.to_owned(),
            }
        } else {
            TokenizerError::Read {
                path: path.to_owned(),
                source,
            }
        }
    })
}

fn parse_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<T, TokenizerError> {
    serde_json::from_str(text).map_err(|source| TokenizerError::Json {
        path: path.to_owned(),
        source,
    })
}

fn read_optional_json(path: &Path) -> Result<Option<Value>, TokenizerError> {
    match read_text(path) {
        Ok(text) => {
            let value: Value = parse_json(path, &text)?;
            if value.is_object() {
                Ok(Some(value))
            } else {
                Err(invalid(path, "expected a JSON object"))
            }
        }
        Err(TokenizerError::Missing { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assets() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/assets")
    }

    fn load(model: &str) -> ClipTokenizer {
        let dir = assets().join("models").join(model).join("tokenizer");
        match ClipTokenizer::from_dir(&dir) {
            Ok(tokenizer) => tokenizer,
            Err(e) => panic!("loading {}: {e}", dir.display()),
        }
    }

    #[derive(serde::Deserialize)]
    struct Fixture {
        transformers_version: String,
        cases: Vec<Case>,
    }

    #[derive(serde::Deserialize)]
    struct Case {
        text: String,
        tokenizer: String,
        ids: Vec<i64>,
        prompt_tokens: Option<usize>,
    }

    #[test]
    fn matches_transformers_on_every_fixture_case() {
        let path = assets().join("fixtures/clip_tokenizer_cases.json");
        let text = std::fs::read_to_string(&path).expect("fixture is readable");
        let fixture: Fixture = serde_json::from_str(&text).expect("fixture is valid JSON");
        let tokenizers: HashMap<String, ClipTokenizer> = ["tiny-sd", "tiny-sd2-v"]
            .into_iter()
            .map(|name| (name.to_owned(), load(name)))
            .collect();
        let mut failures = Vec::new();
        for case in &fixture.cases {
            let tokenizer = &tokenizers[&case.tokenizer];
            let ids = tokenizer.encode(&case.text);
            if ids != case.ids {
                failures.push(format!(
                    "{} {:?}\n  expected {:?}\n  got      {:?}",
                    case.tokenizer, case.text, case.ids, ids
                ));
            }
            if let Some(expected) = case.prompt_tokens {
                let count = tokenizer.ids(&case.text).len();
                if count != expected {
                    failures.push(format!(
                        "{} {:?}: ids().len() {count}, expected {expected}",
                        case.tokenizer, case.text
                    ));
                }
            }
        }
        assert!(fixture.cases.len() >= 220);
        assert!(
            failures.is_empty(),
            "{} of {} cases differ from transformers {}:\n{}",
            failures.len(),
            fixture.cases.len(),
            fixture.transformers_version,
            failures.join("\n")
        );
    }

    #[test]
    fn encodes_a_plain_prompt() {
        let tokenizer = load("tiny-sd");
        let ids = tokenizer.encode("a photo of a cat");
        assert_eq!(&ids[..7], &[49406, 320, 1125, 539, 320, 2368, 49407]);
        assert!(ids[7..].iter().all(|&id| id == 49407));
        assert_eq!(ids.len(), 77);
        assert_eq!(tokenizer.ids("a photo of a cat").len(), 5);
        assert_eq!(tokenizer.max_length(), 77);
        let sd2 = load("tiny-sd2-v");
        assert_eq!(sd2.pad_id(), 0);
        assert_eq!(&sd2.encode("a photo of a cat")[5..9], &[2368, 49407, 0, 0]);
    }

    #[test]
    fn truncation_keeps_bos_and_eos() {
        let tokenizer = load("tiny-sd");
        let text = "cat ".repeat(100);
        let ids = tokenizer.encode(&text);
        assert_eq!(ids.len(), 77);
        assert_eq!(ids[0], 49406);
        assert_eq!(ids[76], 49407);
        assert_eq!(tokenizer.ids(&text).len(), 100);
    }

    #[test]
    fn repeated_and_concurrent_encoding_is_stable() {
        let tokenizer = load("tiny-sd");
        let text = "a café with 🐱 and 猫, it's 3.14!!!";
        let first = tokenizer.encode(text);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..50 {
                        assert_eq!(tokenizer.encode(text), first);
                    }
                });
            }
        });
    }

    #[test]
    fn missing_folder_names_vocab_json() {
        let dir = assets().join("models/no-such-model/tokenizer");
        let err = ClipTokenizer::from_dir(&dir).expect_err("folder does not exist");
        assert!(matches!(err, TokenizerError::Missing { .. }), "{err:?}");
        assert!(err.to_string().contains("vocab.json"), "{err}");
    }

    /// Copies the tiny-sd tokenizer to a temporary folder and lets `edit` break it.
    fn broken_copy(edit: impl FnOnce(&Path)) -> Result<ClipTokenizer, TokenizerError> {
        let source = assets().join("models/tiny-sd/tokenizer");
        let dir = std::env::temp_dir().join(format!(
            "easel-tokenizer-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        for name in [
            "vocab.json",
            "merges.txt",
            "tokenizer_config.json",
            "special_tokens_map.json",
        ] {
            std::fs::copy(source.join(name), dir.join(name)).expect("copy tokenizer file");
        }
        edit(&dir);
        let result = ClipTokenizer::from_dir(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let err = broken_copy(|dir| {
            std::fs::write(dir.join("vocab.json"), "{not json").expect("write");
        })
        .expect_err("bad JSON");
        assert!(matches!(err, TokenizerError::Json { .. }), "{err:?}");
        assert!(err.to_string().contains("vocab.json"), "{err}");

        let err = broken_copy(|dir| {
            std::fs::write(
                dir.join("special_tokens_map.json"),
                r#"{"pad_token": "<|no such token|>"}"#,
            )
            .expect("write");
        })
        .expect_err("unknown pad token");
        let message = err.to_string();
        assert!(message.contains("special_tokens_map.json"), "{message}");
        assert!(message.contains("pad token"), "{message}");
        assert!(message.contains("<|no such token|>"), "{message}");

        let err = broken_copy(|dir| {
            std::fs::remove_file(dir.join("merges.txt")).expect("remove");
        })
        .expect_err("missing merges");
        assert!(err.to_string().contains("merges.txt"), "{err}");
    }

    #[test]
    fn loads_without_optional_config_files() {
        let tokenizer = broken_copy(|dir| {
            std::fs::remove_file(dir.join("tokenizer_config.json")).expect("remove");
            std::fs::remove_file(dir.join("special_tokens_map.json")).expect("remove");
        })
        .expect("CLIP defaults apply");
        assert_eq!(tokenizer.max_length(), 77);
        assert_eq!(tokenizer.pad_id(), 49407);
        assert_eq!(
            &tokenizer.encode("a photo of a cat")[..7],
            &[49406, 320, 1125, 539, 320, 2368, 49407]
        );
    }
}
