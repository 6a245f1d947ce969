//! Chat: starting assistant turns (runs), the LLM providers, and the orchestrator loop that
//! streams an answer and runs the tools it asks for.

pub mod direct;
pub mod export;
pub mod llm;
pub mod openai;
pub mod orchestrator;
pub mod run;
pub mod text_calls;

use std::sync::{Arc, RwLock};

use app::api::LlmModel;

use crate::config::{Config, ProviderConfig};
use direct::{DirectProvider, DIRECT_MODEL_ID};
use llm::{LlmError, LlmProvider};
use openai::OpenAiProvider;

/// The configured LLM providers and the models each offers.
#[derive(Clone)]
pub struct Providers {
    inner: Arc<ProvidersInner>,
}

struct ProvidersInner {
    providers: Vec<(ProviderConfig, OpenAiProvider)>,
    /// Models per provider, as configured or as listed by the server at start-up.
    models: RwLock<Vec<Vec<String>>>,
    default: Option<String>,
}

/// A conversation's model, resolved to who answers and under which name.
pub struct ResolvedModel {
    pub provider: LlmProvider,
    /// The name sent upstream (without `provider/`).
    pub upstream: String,
    /// The id stored with messages (`provider/model` or `direct`).
    pub id: String,
}

impl Providers {
    pub fn from_config(config: &Config) -> Providers {
        let providers: Vec<(ProviderConfig, OpenAiProvider)> = config
            .providers
            .iter()
            .map(|p| (p.clone(), OpenAiProvider::new(p)))
            .collect();
        let models = providers.iter().map(|(p, _)| p.models.clone()).collect();
        Providers {
            inner: Arc::new(ProvidersInner {
                providers,
                models: RwLock::new(models),
                default: config.default_llm.clone(),
            }),
        }
    }

    pub fn is_direct_only(&self) -> bool {
        self.inner.providers.is_empty()
    }

    /// Asks providers configured without a model list for theirs, in the background.
    pub fn discover_models(&self) {
        for (index, (config, _)) in self.inner.providers.iter().enumerate() {
            if !config.models.is_empty() {
                continue;
            }
            let config = config.clone();
            let inner = self.inner.clone();
            tokio::spawn(async move {
                match openai::list_models(&config).await {
                    Ok(list) => {
                        tracing::info!(provider = %config.name, "{} model(s) available", list.len());
                        if let Ok(mut models) = inner.models.write() {
                            models[index] = list;
                        }
                    }
                    Err(e) => tracing::warn!(
                        provider = %config.name,
                        "could not list models ({e}); set EASEL_LLM_MODEL or `models` in easel.toml"
                    ),
                }
            });
        }
    }

    /// Every selectable LLM; `direct` alone when none is configured.
    pub fn list(&self) -> Vec<LlmModel> {
        if self.is_direct_only() {
            return vec![LlmModel {
                id: DIRECT_MODEL_ID.into(),
                name: "Direct (no LLM: paints your message)".into(),
                provider: DIRECT_MODEL_ID.into(),
                default: true,
                tools: true,
                tool_choice: None,
            }];
        }
        let default = self.default_id();
        let models = self
            .inner
            .models
            .read()
            .map(|m| m.clone())
            .unwrap_or_default();
        let mut out = Vec::new();
        for ((config, provider), names) in self.inner.providers.iter().zip(models) {
            let tool_choice = provider.tool_choice().as_str();
            for name in names {
                let id = format!("{}/{name}", config.name);
                out.push(LlmModel {
                    default: Some(&id) == default.as_ref(),
                    id,
                    name,
                    provider: config.name.clone(),
                    tools: true,
                    tool_choice: Some(tool_choice.into()),
                });
            }
        }
        out
    }

    pub fn default_id(&self) -> Option<String> {
        if self.is_direct_only() {
            return Some(DIRECT_MODEL_ID.into());
        }
        self.inner.default.clone().or_else(|| {
            let models = self.inner.models.read().ok()?;
            self.inner
                .providers
                .iter()
                .zip(models.iter())
                .find_map(|((c, _), m)| m.first().map(|n| format!("{}/{n}", c.name)))
        })
    }

    /// Who answers a conversation using `model` (`None`: the default).
    pub fn resolve(&self, model: Option<&str>) -> Result<ResolvedModel, LlmError> {
        let id = match model.filter(|m| !m.is_empty()) {
            Some(m) => m.to_string(),
            None => self.default_id().ok_or_else(|| {
                LlmError::new(
                    "llm_not_configured",
                    "No LLM model is known: set EASEL_LLM_MODEL (or list `models` for the provider in easel.toml).",
                )
            })?,
        };
        if id == DIRECT_MODEL_ID {
            return Ok(ResolvedModel {
                provider: LlmProvider::Direct(DirectProvider::default()),
                upstream: id.clone(),
                id,
            });
        }
        let (provider_name, upstream) = id.split_once('/').ok_or_else(|| {
            LlmError::new(
                "llm_not_configured",
                format!("`{id}` is not a provider/model id; pick a model from the list"),
            )
        })?;
        let (_, provider) = self.inner.providers.iter().find(|(c, _)| c.name == provider_name).ok_or_else(|| {
            LlmError::new(
                "llm_not_configured",
                format!("The provider `{provider_name}` of model `{id}` is not configured any more; pick another model"),
            )
        })?;
        Ok(ResolvedModel {
            provider: LlmProvider::OpenAi(Box::new(provider.clone())),
            upstream: upstream.to_string(),
            id: id.clone(),
        })
    }
}
