//! "View code": the exact request the form describes, as curl, Python (`openai`) and Node.js
//! (`openai`) code against Easel's OpenAI-compatible API, following the form as it changes.

use leptos::prelude::*;

use super::StudioState;
use crate::api::StudioRequest;
use crate::browser;

#[component]
pub(super) fn CodePanel(state: StudioState) -> impl IntoView {
    let StudioState {
        show_code,
        size,
        source,
        current_model,
        toasts,
        ..
    } = state;
    let code_tab = RwSignal::new("curl".to_string());
    // Tracks every field, so an open code view follows the form as it changes.
    let snippet = move || {
        state.prompt.track();
        state.negative.track();
        state.model.track();
        state.style.track();
        size.track();
        state.count.track();
        state.sampler.track();
        state.schedule.track();
        state.steps.track();
        state.guidance.track();
        state.seed.track();
        source.track();
        state.strength.track();
        code_snippets(&state.request(), &code_tab.get())
    };
    view! {
        <Show when=move || show_code.get()>
            <div class="code-panel" role="region" aria-label="Code">
                <div class="tabs" role="tablist" aria-label="Language">
                    {["curl", "python", "node"]
                        .into_iter()
                        .map(|t| view! {
                            <button type="button" role="tab" class="tab" aria-selected=move || (code_tab.get() == t).to_string() on:click=move |_| code_tab.set(t.to_string())>
                                {match t { "curl" => "curl", "python" => "Python", _ => "Node.js" }}
                            </button>
                        })
                        .collect_view()}
                </div>
                <Show when=move || {
                    let sz = size.get();
                    sz != "auto" && source.with(Option::is_none) && !current_model.get().is_some_and(|m| m.allowed_sizes.contains(&sz))
                }>
                    <p class="note warn code-note">
                        {move || format!("{} is a Studio size; the images API accepts the model's allowed sizes ({}).", size.get(), current_model.get().map(|m| m.allowed_sizes.join(", ")).unwrap_or_default())}
                    </p>
                </Show>
                <pre><code id="code-snippet">{snippet}</code></pre>
                <button type="button" class="button" on:click=move |_| {
                    browser::copy_text(&snippet());
                    toasts.info("Code copied");
                }>"Copy"</button>
            </div>
        </Show>
    }
    .into_any()
}

/// The exact current request as curl, Python (`openai`) and Node.js (`openai`) code against
/// Easel's OpenAI-compatible API.
fn code_snippets(r: &StudioRequest, language: &str) -> String {
    let origin = origin();
    let mut extra = serde_json::Map::new();
    if !r.negative_prompt.is_empty() {
        extra.insert("negative_prompt".into(), r.negative_prompt.clone().into());
    }
    if let Some(s) = r.seed {
        extra.insert("seed".into(), s.into());
    }
    if let Some(s) = r.steps {
        extra.insert("steps".into(), s.into());
    }
    if let Some(g) = r.guidance {
        extra.insert("guidance".into(), serde_json::json!(g));
    }
    if let Some(s) = &r.sampler {
        extra.insert("sampler".into(), s.clone().into());
    }
    if let Some(s) = &r.schedule {
        extra.insert("schedule".into(), s.clone().into());
    }
    if let Some(s) = &r.style {
        extra.insert("style".into(), s.clone().into());
    }
    let editing = r.source_image_id.is_some() || r.source_image_b64.is_some();
    if editing {
        if let Some(s) = r.strength {
            // Two decimals, as shown on the slider (not 0.6000000238…).
            let rounded: f64 = format!("{s:.2}").parse().unwrap_or(0.6);
            extra.insert("strength".into(), serde_json::json!(rounded));
        }
    }
    let masked = r.mask_b64.is_some();
    let model = r.model.clone().unwrap_or_default();
    let size = if r.size == "auto" {
        None
    } else {
        Some(r.size.clone())
    };
    let mut body = serde_json::json!({"model": model, "prompt": r.prompt, "n": r.n, "response_format": "b64_json"});
    if let Some(s) = &size {
        body["size"] = s.clone().into();
    }
    let py_str = |s: &str| serde_json::to_string(s).unwrap_or_default();
    match (language, editing) {
        ("python", false) => format!(
            "from openai import OpenAI\n\nclient = OpenAI(base_url=\"{origin}/v1\", api_key=\"unused\")\nresult = client.images.generate(\n    model={},\n    prompt={},\n    n={},{}\n    response_format=\"b64_json\",\n    extra_body={},\n)\nprint(len(result.data), \"images\")",
            py_str(&model),
            py_str(&r.prompt),
            r.n,
            size.map(|s| format!("\n    size=\"{s}\",")).unwrap_or_default(),
            serde_json::Value::Object(extra)
        ),
        ("python", true) => format!(
            "from openai import OpenAI\n\nclient = OpenAI(base_url=\"{origin}/v1\", api_key=\"unused\")\nresult = client.images.edit(\n    model={},\n    image=open(\"source.png\", \"rb\"),{}\n    prompt={},\n    n={},\n    extra_body={},\n)",
            py_str(&model),
            if masked { "\n    mask=open(\"mask.png\", \"rb\"),  # from \"Save mask\"" } else { "" },
            py_str(&r.prompt),
            r.n,
            serde_json::Value::Object(extra)
        ),
        ("node", false) => {
            let mut full = body.clone();
            for (k, v) in extra {
                full[k] = v;
            }
            format!(
                "import OpenAI from \"openai\";\n\nconst client = new OpenAI({{ baseURL: \"{origin}/v1\", apiKey: \"unused\" }});\nconst result = await client.images.generate({});\nconsole.log(result.data.length, \"images\");",
                serde_json::to_string_pretty(&full).unwrap_or_default()
            )
        }
        ("node", true) => format!(
            "import fs from \"node:fs\";\nimport OpenAI from \"openai\";\n\nconst client = new OpenAI({{ baseURL: \"{origin}/v1\", apiKey: \"unused\" }});\nconst result = await client.images.edit({{\n  model: {},\n  image: fs.createReadStream(\"source.png\"),{}\n  prompt: {},\n  n: {},\n  ...{},\n}});",
            py_str(&model),
            if masked { "\n  mask: fs.createReadStream(\"mask.png\"), // from \"Save mask\"" } else { "" },
            py_str(&r.prompt),
            r.n,
            serde_json::Value::Object(extra)
        ),
        (_, false) => {
            let mut full = body;
            for (k, v) in extra {
                full[k] = v;
            }
            format!(
                "curl {origin}/v1/images/generations \\\n  -H \"Content-Type: application/json\" \\\n  -d '{}'",
                full.to_string().replace('\'', "'\\''")
            )
        }
        (_, true) => {
            let mut lines = vec![format!("curl {origin}/v1/images/edits"), "  -F image=@source.png".into()];
            if masked {
                lines.push("  -F mask=@mask.png".into());
            }
            lines.extend([
                format!("  -F model={model}"),
                format!("  -F prompt='{}'", r.prompt.replace('\'', "'\\''")),
                format!("  -F n={}", r.n),
            ]);
            for (k, v) in extra {
                let value = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
                lines.push(format!("  -F {k}='{}'", value.replace('\'', "'\\''")));
            }
            lines.join(" \\\n")
        }
    }
}

fn origin() -> String {
    #[cfg(feature = "hydrate")]
    {
        web_sys::window()
            .and_then(|w| w.location().origin().ok())
            .unwrap_or_else(|| "http://127.0.0.1:3000".into())
    }
    #[cfg(not(feature = "hydrate"))]
    {
        "http://127.0.0.1:3000".into()
    }
}
