//! Prompts → the UNet's text conditioning: tokenise (with `prompt.rs` for weights and long
//! prompts), run the text encoder(s), and lay the hidden states out as the UNet expects.
//!
//! SD 1.x/2.x condition on the encoder's `last_hidden_state`; SDXL on both encoders' penultimate
//! hidden states side by side plus the second encoder's projected pooled output (diffusers
//! `encode_prompt` of `StableDiffusionXLPipeline`). Prompts that fit one window without weights
//! take exactly diffusers' path; the others follow the long-prompt-weighting pipelines.

use super::onnx::{Feed, ModelError, OnnxModel, Output};
use super::prompt::{self, PromptOptions, Window};
use super::tokenizer::ClipTokenizer;
use crate::imaging::registry::LoadedModel;

/// A prompt's encoding: hidden states `[1, tokens, width]` and (SDXL) the pooled vector.
pub struct TextEmbedding {
    pub hidden: Vec<f32>,
    pub tokens: usize,
    pub width: usize,
    pub pooled: Vec<f32>,
}

#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{0}")]
    Invalid(String),
}

/// Runs one model (the pipeline passes its timing wrapper).
pub type Run<'a> =
    dyn FnMut(&OnnxModel, &[(&str, Feed<'_>)], &[usize]) -> Result<Vec<Output>, ModelError> + 'a;

/// The negative prompt, when classifier-free guidance needs one.
pub struct Negative<'a> {
    pub text: &'a str,
    /// SDXL's `force_zeros_for_empty_prompt`: an empty negative prompt becomes zeros (with the
    /// flag off, "" is encoded like any prompt).
    pub zero_if_empty: bool,
}

/// Encodes the prompt and (for classifier-free guidance) the negative prompt; both come back
/// with the same number of tokens, as the UNet batch needs.
pub fn encode(
    model: &LoadedModel,
    prompt: &str,
    negative: Option<Negative<'_>>,
    options: PromptOptions,
    run: &mut Run<'_>,
) -> Result<(TextEmbedding, Option<TextEmbedding>), TextError> {
    let (cond, mut uncond) = match &model.second {
        None => encode_sd(
            model,
            prompt,
            negative.as_ref().map(|n| n.text),
            options,
            run,
        )?,
        Some(second) => encode_sdxl(
            model,
            second,
            prompt,
            negative.as_ref().map(|n| n.text),
            options,
            run,
        )?,
    };
    if let (Some(negative), Some(embedding), true) =
        (&negative, uncond.as_mut(), model.second.is_some())
    {
        if negative.zero_if_empty && negative.text.trim().is_empty() {
            embedding.hidden.iter_mut().for_each(|v| *v = 0.0);
            embedding.pooled.iter_mut().for_each(|v| *v = 0.0);
        }
    }
    Ok((cond, uncond))
}

/// SD 1.x/2.x.
fn encode_sd(
    model: &LoadedModel,
    prompt: &str,
    negative: Option<&str>,
    options: PromptOptions,
    run: &mut Run<'_>,
) -> Result<(TextEmbedding, Option<TextEmbedding>), TextError> {
    let tokenizer = &model.tokenizer;
    let limit = options.long_prompts.token_limit();
    let tokens = |text: &str| prompt::weighted_tokens(tokenizer, text, options.weighting, limit);
    let cond = tokens(prompt);
    let uncond = negative.map(tokens);
    let longest = cond
        .ids
        .len()
        .max(uncond.as_ref().map_or(0, |u| u.ids.len()));
    let chunks = prompt::chunk_count(longest, limit);
    let weighted = cond.is_weighted() || uncond.as_ref().is_some_and(|u| u.is_weighted());
    let plain = chunks == 1 && !weighted;
    // The plain path feeds the parsed tokens (brackets of weights 1 removed) in diffusers'
    // layout: BOS, tokens, EOS, padding.
    let mut one = |tokens: &prompt::WeightedTokens| -> Result<TextEmbedding, TextError> {
        if plain {
            let ids = tokenizer.encode_ids(&tokens.ids);
            let (hidden, _) = run_encoder(&model.text_encoder, &ids, false, run)?;
            return Ok(embedding(hidden, None));
        }
        let windows = prompt::sd_windows(tokenizer, tokens, chunks);
        let mut parts = Vec::with_capacity(windows.len());
        for window in &windows {
            parts.push(run_encoder(&model.text_encoder, &window.ids, false, run)?.0);
        }
        let mut out = concat(parts)?;
        if options.weighting {
            weigh_preserving_mean(&mut out, &windows);
        }
        Ok(out)
    };
    let cond_embedding = one(&cond)?;
    let uncond_embedding = match &uncond {
        Some(tokens) => Some(one(tokens)?),
        None => None,
    };
    Ok((cond_embedding, uncond_embedding))
}

/// lpw's SD weighting: multiply each position by its weight, then scale the whole embedding so
/// its mean is what it was (`get_weighted_text_embeddings`).
fn weigh_preserving_mean(embedding: &mut TextEmbedding, windows: &[Window]) {
    let mean = |v: &[f32]| v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len().max(1) as f64;
    let before = mean(&embedding.hidden) as f32;
    let weights = windows.iter().flat_map(|w| w.weights.iter().copied());
    for (row, weight) in embedding.hidden.chunks_mut(embedding.width).zip(weights) {
        row.iter_mut().for_each(|v| *v *= weight);
    }
    let after = mean(&embedding.hidden) as f32;
    if after != 0.0 && after.is_finite() {
        let scale = before / after;
        embedding.hidden.iter_mut().for_each(|v| *v *= scale);
    }
}

/// SDXL: both encoders per window; with weights, lpw's SDXL rule pulls each weighted token
/// towards (weight < 1) or away from (weight > 1) the window's last token.
fn encode_sdxl(
    model: &LoadedModel,
    (tokenizer_2, encoder_2): &(ClipTokenizer, OnnxModel),
    prompt: &str,
    negative: Option<&str>,
    options: PromptOptions,
    run: &mut Run<'_>,
) -> Result<(TextEmbedding, Option<TextEmbedding>), TextError> {
    let tokenizer = &model.tokenizer;
    let limit = options.long_prompts.token_limit();
    let tokens =
        |t: &ClipTokenizer, text: &str| prompt::weighted_tokens(t, text, options.weighting, limit);
    let (mut cond_1, mut cond_2) = (tokens(tokenizer, prompt), tokens(tokenizer_2, prompt));
    let mut uncond = negative.map(|n| (tokens(tokenizer, n), tokens(tokenizer_2, n)));
    let longest = [&cond_1, &cond_2]
        .into_iter()
        .chain(uncond.iter().flat_map(|(a, b)| [a, b]))
        .map(|t| t.ids.len())
        .max()
        .unwrap_or(0);
    let weighted = [&cond_1, &cond_2]
        .into_iter()
        .chain(uncond.iter().flat_map(|(a, b)| [a, b]))
        .any(|t| t.is_weighted());
    let plain = longest <= prompt::CHUNK_TOKENS && !weighted;
    let mut one = |first: &prompt::WeightedTokens,
                   second: &prompt::WeightedTokens|
     -> Result<TextEmbedding, TextError> {
        if plain {
            let ids = tokenizer.encode_ids(&first.ids);
            let (h1, _) = run_encoder(&model.text_encoder, &ids, true, run)?;
            let ids = tokenizer_2.encode_ids(&second.ids);
            let (h2, pooled) = run_encoder(encoder_2, &ids, true, run)?;
            return side_by_side(&[(h1, h2, pooled)]);
        }
        let (windows_1, windows_2) = (
            prompt::sdxl_windows(tokenizer, first),
            prompt::sdxl_windows(tokenizer_2, second),
        );
        let mut parts = Vec::with_capacity(windows_1.len());
        for (w1, w2) in windows_1.iter().zip(&windows_2) {
            let (h1, _) = run_encoder(&model.text_encoder, &w1.ids, true, run)?;
            let (h2, pooled) = run_encoder(encoder_2, &w2.ids, true, run)?;
            parts.push((h1, h2, pooled));
        }
        let mut out = side_by_side(&parts)?;
        if options.weighting {
            weigh_towards_last(&mut out, &windows_1);
        }
        Ok(out)
    };
    // On the lpw path the token lists share one length, so every window lines up (lpw pads
    // with EOS); the plain path keeps diffusers' own padding.
    let eos = tokenizer.eos_id();
    match uncond.as_mut() {
        _ if plain => {}
        Some((u1, u2)) => prompt::pad_to_same_length(&mut [&mut cond_1, &mut cond_2, u1, u2], eos),
        None => prompt::pad_to_same_length(&mut [&mut cond_1, &mut cond_2], eos),
    }
    let cond_embedding = one(&cond_1, &cond_2)?;
    let uncond_embedding = match &uncond {
        Some((u1, u2)) => Some(one(u1, u2)?),
        None => None,
    };
    Ok((cond_embedding, uncond_embedding))
}

/// lpw's SDXL weighting, per window: `e[j] = e[eos] + (e[j] − e[eos]) · w[j]` for every weight
/// other than 1, `eos` being the window's (first) EOS row, the last row lpw has (weights in
/// fp16, as that pipeline holds them).
fn weigh_towards_last(embedding: &mut TextEmbedding, windows: &[Window]) {
    let width = embedding.width;
    let window_len = prompt::CHUNK_TOKENS + 2;
    for (w, window) in windows.iter().enumerate() {
        let base = w * window_len * width;
        let last = base + window.anchor * width;
        let anchor: Vec<f32> = embedding.hidden[last..last + width].to_vec();
        for (j, &weight) in window.weights.iter().enumerate() {
            let weight = half::f16::from_f32(weight).to_f32();
            if weight == 1.0 {
                continue;
            }
            let row = &mut embedding.hidden[base + j * width..base + (j + 1) * width];
            for (v, a) in row.iter_mut().zip(&anchor) {
                *v = a + (*v - a) * weight;
            }
        }
    }
}

/// Concatenates windows' `[1, 77, width]` hidden states along the tokens.
fn concat(parts: Vec<Output>) -> Result<TextEmbedding, TextError> {
    let mut iter = parts.into_iter();
    let Some(first) = iter.next() else {
        return Err(TextError::Invalid("no text windows".into()));
    };
    let mut out = embedding(first, None);
    for part in iter {
        if part.shape.get(2).copied() != Some(out.width) {
            return Err(TextError::Invalid(format!(
                "text encoder windows differ in width: {:?}",
                part.shape
            )));
        }
        out.tokens += part.shape[1];
        out.hidden.extend_from_slice(&part.data);
    }
    Ok(out)
}

/// SDXL: the two encoders' hidden states side by side per token, windows one after another;
/// the pooled output is the last window's (lpw keeps the one its loop saw last).
fn side_by_side(parts: &[(Output, Output, Option<Output>)]) -> Result<TextEmbedding, TextError> {
    let mut out = TextEmbedding {
        hidden: Vec::new(),
        tokens: 0,
        width: 0,
        pooled: Vec::new(),
    };
    for (first, second, pooled) in parts {
        let (tokens, w1, w2) = (first.shape[1], first.shape[2], second.shape[2]);
        if second.shape[1] != tokens {
            return Err(TextError::Invalid(format!(
                "the two text encoders returned {tokens} and {} tokens",
                second.shape[1]
            )));
        }
        out.width = w1 + w2;
        out.tokens += tokens;
        for t in 0..tokens {
            out.hidden
                .extend_from_slice(&first.data[t * w1..(t + 1) * w1]);
            out.hidden
                .extend_from_slice(&second.data[t * w2..(t + 1) * w2]);
        }
        out.pooled = pooled.as_ref().map(|p| p.data.clone()).unwrap_or_default();
    }
    Ok(out)
}

fn embedding(hidden: Output, pooled: Option<Output>) -> TextEmbedding {
    TextEmbedding {
        tokens: hidden.shape[1],
        width: hidden.shape[2],
        hidden: hidden.data,
        pooled: pooled.map(|p| p.data).unwrap_or_default(),
    }
}

/// The output holding the penultimate layer's hidden states: of the `hidden_states.K` outputs
/// (embeddings, then each layer), `K = last - 1`. SDXL needs it; the registry refuses SDXL
/// encoders without it rather than paint with the wrong layer.
pub fn penultimate_output<'a>(outputs: impl Iterator<Item = &'a str>) -> Option<usize> {
    let layers: Vec<(usize, usize)> = outputs
        .enumerate()
        .filter_map(|(i, name)| {
            name.strip_prefix("hidden_states.")
                .and_then(|k| k.parse().ok())
                .map(|k| (k, i))
        })
        .collect();
    match layers.iter().max() {
        Some(&(last, _)) if last > 0 => {
            layers.iter().find(|(k, _)| *k == last - 1).map(|&(_, i)| i)
        }
        _ => None,
    }
}

/// Runs one text encoder on one window of ids. Returns the hidden states to use and the pooled
/// output (`text_embeds` when the encoder has a projection, else `pooler_output`).
fn run_encoder(
    encoder: &OnnxModel,
    ids: &[i64],
    penultimate: bool,
    run: &mut Run<'_>,
) -> Result<(Output, Option<Output>), TextError> {
    let hidden_index = if penultimate {
        penultimate_output(encoder.outputs.iter().map(|p| p.name.as_str()))
    } else {
        None
    };
    let hidden_index = match hidden_index {
        Some(i) => i,
        None => encoder.output_index("last_hidden_state").unwrap_or(0),
    };
    let pooled_index = encoder
        .output_index("text_embeds")
        .or_else(|| encoder.output_index("pooler_output"));
    let mut wanted = vec![hidden_index];
    wanted.extend(pooled_index);
    let mut outputs = run(
        encoder,
        &[("input_ids", Feed::I64(&[1, ids.len()], ids))],
        &wanted,
    )?;
    let pooled = if outputs.len() > 1 {
        outputs.pop()
    } else {
        None
    };
    let hidden = outputs.remove(0);
    if hidden.shape.len() != 3 || hidden.shape[0] != 1 {
        return Err(TextError::Invalid(format!(
            "{}: expected hidden states [1, tokens, width], got {:?}",
            encoder.file(),
            hidden.shape
        )));
    }
    Ok((hidden, pooled))
}

#[cfg(test)]
mod penultimate_tests {
    use super::penultimate_output;

    #[test]
    fn the_penultimate_layer_is_found_or_missing() {
        let names = [
            "last_hidden_state",
            "hidden_states.0",
            "hidden_states.2",
            "hidden_states.1",
            "text_embeds",
        ];
        assert_eq!(penultimate_output(names.into_iter()), Some(3));
        assert_eq!(
            penultimate_output(["last_hidden_state", "pooler_output"].into_iter()),
            None
        );
        assert_eq!(penultimate_output(["hidden_states.0"].into_iter()), None);
        // A gap where the penultimate layer should be.
        assert_eq!(
            penultimate_output(["hidden_states.0", "hidden_states.2"].into_iter()),
            None
        );
    }
}
