//! Style presets for `image_generator`: a preset wraps the user's prompt in a template and adds
//! a negative prompt that steers away from the usual failures of that look. Anything that is
//! not a preset name is free text, appended as "…, <style> style".

use app::api::StyleInfo;

pub struct StylePreset {
    pub id: &'static str,
    pub name: &'static str,
    /// `{prompt}` is replaced by the user's prompt.
    pub template: &'static str,
    pub negative: &'static str,
    /// Other words people use for it ("cinematic" for movie), matched by the direct provider.
    pub aliases: &'static [&'static str],
}

pub const PRESETS: &[StylePreset] = &[
    StylePreset { id: "auto", name: "Auto", template: "{prompt}", negative: "", aliases: &[] },
    StylePreset {
        id: "3d-anime",
        name: "3D Anime",
        template: "3D anime style render of {prompt}, cel shading, vibrant colors, soft lighting, highly detailed",
        negative: "photo, realistic, lowres, blurry, ugly, deformed",
        aliases: &["3d anime"],
    },
    StylePreset {
        id: "3d-model",
        name: "3D Model",
        template: "professional 3D model of {prompt}, octane render, volumetric lighting, highly detailed",
        negative: "ugly, deformed, noisy, low poly, blurry, painting, sketch",
        aliases: &["3d model", "3d render", "render"],
    },
    StylePreset {
        id: "anime",
        name: "Japanese Anime",
        template: "anime artwork of {prompt}, anime style, key visual, vibrant, studio anime, highly detailed",
        negative: "photo, deformed, black and white, realism, disfigured, low contrast",
        aliases: &["anime", "manga"],
    },
    StylePreset {
        id: "movie",
        name: "Movie",
        template: "cinematic film still of {prompt}, shallow depth of field, bokeh, moody lighting, film grain, epic composition",
        negative: "anime, cartoon, drawing, painting, text, glitch, deformed, ugly",
        aliases: &["cinematic", "movie", "film still"],
    },
    StylePreset {
        id: "comic",
        name: "Comic",
        template: "comic book panel of {prompt}, bold ink lines, graphic novel art, vibrant flat colors, highly detailed",
        negative: "photograph, realistic, blurry, deformed, noisy",
        aliases: &["comic", "comic book", "graphic novel"],
    },
    StylePreset {
        id: "cyberpunk",
        name: "Cyberpunk",
        template: "cyberpunk scene of {prompt}, neon lights, rain-slick streets, futuristic high tech, dystopian, highly detailed",
        negative: "natural, rustic, old-fashioned, daylight, low tech",
        aliases: &["cyberpunk", "neon"],
    },
    StylePreset {
        id: "fantasy",
        name: "Fantasy",
        template: "ethereal fantasy concept art of {prompt}, magical, majestic, painterly, epic, dramatic light",
        negative: "photographic, realistic, 35mm film, text, deformed, ugly, blurry",
        aliases: &["fantasy", "magical"],
    },
    StylePreset {
        id: "photographic",
        name: "Photographic",
        template: "photograph of {prompt}, 35mm, natural light, sharp focus, professional, highly detailed",
        negative: "drawing, painting, cartoon, sketch, blurry, deformed, ugly",
        aliases: &["photo", "photograph", "photographic", "photorealistic", "realistic"],
    },
    StylePreset {
        id: "watercolor",
        name: "Watercolor",
        template: "watercolor painting of {prompt}, soft washes of color, paper texture, painterly, delicate",
        negative: "photo, photorealistic, 3d render, harsh lines, noisy",
        aliases: &["watercolor", "watercolour"],
    },
    StylePreset {
        id: "oil-painting",
        name: "Oil Painting",
        template: "oil painting of {prompt}, thick brush strokes, canvas texture, rich colors, classical composition",
        negative: "photo, 3d render, cartoon, flat colors, blurry",
        aliases: &["oil painting", "oil paint"],
    },
    StylePreset {
        id: "pixel-art",
        name: "Pixel Art",
        template: "pixel art of {prompt}, 16-bit, crisp pixels, limited palette, retro game style",
        negative: "photo, realistic, blurry, smooth gradients, noisy",
        aliases: &["pixel art", "8-bit", "16-bit"],
    },
    StylePreset {
        id: "line-art",
        name: "Line Art",
        template: "clean line art drawing of {prompt}, black ink on white, minimalist, elegant lines",
        negative: "color, photo, shading, blurry, noisy",
        aliases: &["line art", "sketch", "pencil drawing", "ink drawing"],
    },
    StylePreset {
        id: "digital-art",
        name: "Digital Art",
        template: "digital concept art of {prompt}, matte painting, illustrative, highly detailed, trending artwork",
        negative: "photo, blurry, lowres, deformed",
        aliases: &["digital art", "concept art", "illustration"],
    },
];

pub fn preset(id: &str) -> Option<&'static StylePreset> {
    let id = id.trim().to_ascii_lowercase().replace([' ', '_'], "-");
    PRESETS.iter().find(|p| p.id == id)
}

pub fn list() -> Vec<StyleInfo> {
    PRESETS
        .iter()
        .map(|p| StyleInfo {
            id: p.id.into(),
            name: p.name.into(),
        })
        .collect()
}

/// Applies a style to a prompt: `(prompt for the engine, negative prompt)`.
/// The user's own negative prompt is kept first; the preset's follows.
pub fn apply(style: Option<&str>, prompt: &str, negative: &str) -> (String, String) {
    let style = style
        .map(str::trim)
        .filter(|s| !s.is_empty() && !s.eq_ignore_ascii_case("auto"));
    let Some(style) = style else {
        return (prompt.to_string(), negative.to_string());
    };
    match preset(style) {
        Some(p) => {
            let negative = match (negative.trim(), p.negative) {
                ("", n) => n.to_string(),
                (user, "") => user.to_string(),
                (user, n) => format!("{user}, {n}"),
            };
            (p.template.replace("{prompt}", prompt), negative)
        }
        None => (format!("{prompt}, {style} style"), negative.to_string()),
    }
}

/// Finds a style named in free text ("a fox, watercolor"), longest alias first.
pub fn detect(text: &str) -> Option<&'static StylePreset> {
    let lower = text.to_lowercase();
    let mut best: Option<(&'static StylePreset, usize)> = None;
    for p in PRESETS.iter().filter(|p| p.id != "auto") {
        for alias in p.aliases {
            if contains_words(&lower, alias) && best.is_none_or(|(_, len)| alias.len() > len) {
                best = Some((p, alias.len()));
            }
        }
    }
    best.map(|(p, _)| p)
}

/// `needle` occurs in `haystack` on word boundaries.
fn contains_words(haystack: &str, needle: &str) -> bool {
    haystack.match_indices(needle).any(|(i, _)| {
        let before = haystack[..i].chars().next_back();
        let after = haystack[i + needle.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_wraps_prompt_and_merges_negative() {
        let (p, n) = apply(Some("anime"), "a fox", "blurry");
        assert!(p.starts_with("anime artwork of a fox"));
        assert!(n.starts_with("blurry, photo"));
    }

    #[test]
    fn free_text_style_is_appended_and_auto_changes_nothing() {
        assert_eq!(
            apply(Some("ukiyo-e"), "a wave", "").0,
            "a wave, ukiyo-e style"
        );
        assert_eq!(
            apply(Some("auto"), "a wave", "x"),
            ("a wave".into(), "x".into())
        );
        assert_eq!(apply(None, "a wave", ""), ("a wave".into(), "".into()));
    }

    #[test]
    fn detects_styles_by_alias_on_word_boundaries() {
        assert_eq!(
            detect("a fox in watercolor").map(|p| p.id),
            Some("watercolor")
        );
        assert_eq!(detect("3D anime girl").map(|p| p.id), Some("3d-anime"));
        assert_eq!(detect("a photographer's dog").map(|p| p.id), None);
        assert_eq!(detect("a cat").map(|p| p.id), None);
    }
}
