//! Agents: saved assistants (name, description, instructions, model, toolkits). Every save is a
//! new version; the versions are listed. "New conversation" starts a chat with the agent, which
//! copies its current toggles.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::{use_navigate, use_params_map};

use crate::api::{limits, Agent, AgentInput, AgentMeta, AgentVersion, InternalTools};
use crate::client;
use crate::components::confirm::use_confirm;
use crate::components::icons::{Icon, Svg};
use crate::components::layout::{conversation_starter, Layout};
use crate::components::switch::{InfoTip, Switch};
use crate::components::toasts::use_toasts;
use crate::state::use_app;

#[component]
pub fn AgentsPage() -> impl IntoView {
    let params = use_params_map();
    let selected = Memo::new(move |_| params.read().get("id"));
    view! {
        <Layout>
            {move || match selected.get() {
                Some(id) => view! { <AgentEditor id=id/> }.into_any(),
                None => view! { <AgentList/> }.into_any(),
            }}
        </Layout>
    }
}

#[component]
fn AgentList() -> impl IntoView {
    let agents = LocalResource::new(|| async { client::get::<Vec<Agent>>("/api/agents").await });
    let start = conversation_starter();
    view! {
        <header class="page-header">
            <h1>"Agents"</h1>
            <a class="button primary" href="/agents/new"><Svg icon=Icon::Plus/>" New agent"</a>
        </header>
        <section class="page-body">
            {move || {
                agents
                    .get()
                    .map(|result| match result {
                        Ok(list) if list.is_empty() => view! {
                            <div class="empty-state small">
                                <p>"No agents yet. An agent keeps instructions, a model and its tools together, so every conversation with it starts the same way."</p>
                                <a class="button primary" href="/agents/new">"Create an agent"</a>
                            </div>
                        }
                        .into_any(),
                        Ok(list) => {
                            let start = start.clone();
                            view! {
                                <ul class="card-list" role="list">
                                    {list
                                        .into_iter()
                                        .map(|a| {
                                            let start = start.clone();
                                            let agent_id = a.id.clone();
                                            view! {
                                                <li class="card">
                                                    <a class="card-title" href=format!("/agents/{}", a.id)>{a.name.clone()}</a>
                                                    <p class="muted">{if a.description.is_empty() { "No description".to_string() } else { a.description.clone() }}</p>
                                                    <p class="small muted">
                                                        {format!("Version {} · {}", a.version, a.model.clone().unwrap_or_else(|| "default model".into()))}
                                                        {a.meta.internal_tools.image_creation.then(|| view! { <span class="chip">"Image creation"</span> })}
                                                    </p>
                                                    <div class="card-actions">
                                                        <button class="button" on:click=move |_| start(Some(agent_id.clone()))>
                                                            <Svg icon=Icon::Chat/>" New conversation"
                                                        </button>
                                                        <a class="button" href=format!("/agents/{}", a.id)><Svg icon=Icon::Pencil/>" Edit"</a>
                                                    </div>
                                                </li>
                                            }
                                        })
                                        .collect_view()}
                                </ul>
                            }
                            .into_any()
                        }
                        Err(e) => view! { <p class="error-text">{e.message}</p> }.into_any(),
                    })
            }}
        </section>
    }
    .into_any()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tab {
    Configuration,
    Versions,
}

#[component]
fn AgentEditor(id: String) -> impl IntoView {
    let app = use_app();
    let toasts = use_toasts();
    let confirm = use_confirm();
    let navigate = use_navigate();
    let start = conversation_starter();
    let is_new = id == "new";
    let agent_id = RwSignal::new((!is_new).then(|| id.clone()));
    let name = RwSignal::new(String::new());
    let description = RwSignal::new(String::new());
    let instructions = RwSignal::new(String::new());
    let model = RwSignal::new(String::new());
    let image_creation = RwSignal::new(false);
    let version = RwSignal::new(0u32);
    let tab = RwSignal::new(Tab::Configuration);
    let versions: RwSignal<Vec<AgentVersion>> = RwSignal::new(Vec::new());
    let load_error: RwSignal<Option<String>> = RwSignal::new(None);
    let saving = RwSignal::new(false);

    let fill = move |a: Agent| {
        name.set(a.name);
        description.set(a.description);
        instructions.set(a.instructions);
        model.set(a.model.unwrap_or_default());
        image_creation.set(a.meta.internal_tools.image_creation);
        version.set(a.version);
    };
    let load_versions = move || {
        if let Some(id) = agent_id.get_untracked() {
            spawn_local(async move {
                if let Ok(list) =
                    client::get::<Vec<AgentVersion>>(&format!("/api/agents/{id}/versions")).await
                {
                    versions.set(list);
                }
            });
        }
    };
    Effect::new(move |_| {
        if let Some(id) = agent_id.get_untracked() {
            spawn_local(async move {
                match client::get::<Agent>(&format!("/api/agents/{id}")).await {
                    Ok(a) => fill(a),
                    Err(e) => load_error.set(Some(e.message)),
                }
            });
            load_versions();
        }
    });

    let save = {
        let navigate = navigate.clone();
        move || {
            let input = AgentInput {
                name: name.get_untracked(),
                description: description.get_untracked(),
                instructions: instructions.get_untracked(),
                model: Some(model.get_untracked()).filter(|m| !m.is_empty()),
                meta: AgentMeta {
                    internal_tools: InternalTools {
                        image_creation: image_creation.get_untracked(),
                    },
                },
                shared: None,
            };
            if input.name.trim().is_empty() {
                toasts.error("Give the agent a name.");
                return;
            }
            saving.set(true);
            let navigate = navigate.clone();
            spawn_local(async move {
                let result = match agent_id.get_untracked() {
                    Some(id) => {
                        client::send::<_, Agent>("PUT", &format!("/api/agents/{id}"), &input).await
                    }
                    None => client::send::<_, Agent>("POST", "/api/agents", &input).await,
                };
                saving.set(false);
                match result {
                    Ok(a) => {
                        toasts.info(format!("Agent saved (version {})", a.version));
                        // Left while saving: the agent is saved; there is no page to show it.
                        let Some(before) = agent_id.try_get_untracked() else {
                            return;
                        };
                        let created = before.is_none();
                        agent_id.set(Some(a.id.clone()));
                        let id = a.id.clone();
                        fill(a);
                        load_versions();
                        if created {
                            navigate(&format!("/agents/{id}"), Default::default());
                        }
                    }
                    Err(e) => toasts.error(e.message),
                }
            });
        }
    };
    let delete = move || {
        let navigate = navigate.clone();
        confirm.ask(
            "Delete agent?",
            format!(
                "“{}” and its versions will be deleted. Conversations with it stay.",
                name.get_untracked()
            ),
            "Delete",
            move || {
                let Some(id) = agent_id.get_untracked() else {
                    return;
                };
                let navigate = navigate.clone();
                spawn_local(async move {
                    match client::call("DELETE", &format!("/api/agents/{id}")).await {
                        Ok(()) => {
                            toasts.info("Agent deleted");
                            navigate("/agents", Default::default());
                        }
                        Err(e) => toasts.error(e.message),
                    }
                });
            },
        );
    };
    let models = app.models;
    let tab_button = move |which: Tab, label: &'static str, panel: &'static str| {
        view! {
            <button
                role="tab"
                id=format!("{panel}-tab")
                aria-controls=panel
                aria-selected=move || (tab.get() == which).to_string()
                tabindex=move || if tab.get() == which { "0" } else { "-1" }
                class="tab"
                on:click=move |_| tab.set(which)
                on:keydown=move |e| {
                    if e.key() == "ArrowRight" || e.key() == "ArrowLeft" {
                        let next = if tab.get_untracked() == Tab::Configuration { Tab::Versions } else { Tab::Configuration };
                        tab.set(next);
                        let target = if next == Tab::Configuration { "configuration-tab" } else { "versions-tab" };
                        client::focus(target);
                    }
                }
            >
                {label}
            </button>
        }
    };
    view! {
        <header class="page-header">
            <div>
                <a class="back-link" href="/agents"><Svg icon=Icon::Left/>" Agents"</a>
                <h1>{move || if name.get().is_empty() { "New agent".to_string() } else { name.get() }}</h1>
                <Show when=move || { version.get() > 0 }>
                    <p class="small muted">{move || format!("Version {}", version.get())}</p>
                </Show>
            </div>
            <div class="header-actions">
                <Show when=move || agent_id.get().is_some()>
                    {
                        let start = start.clone();
                        view! {
                            <button class="button" on:click=move |_| start(agent_id.get_untracked())>
                                <Svg icon=Icon::Chat/>" New conversation"
                            </button>
                        }
                    }
                    {
                        let delete = delete.clone();
                        view! {
                            <button class="button" aria-label="Delete agent" on:click=move |_| delete()>
                                <Svg icon=Icon::Trash/>
                            </button>
                        }
                    }
                </Show>
            </div>
        </header>
        {move || load_error.get().map(|e| view! { <p class="error-text">{e}</p> })}
        <div class="tabs" role="tablist" aria-label="Agent">
            {tab_button(Tab::Configuration, "Configuration", "configuration")}
            {tab_button(Tab::Versions, "Versions", "versions")}
        </div>
        <section class="page-body">
            <div id="configuration" role="tabpanel" aria-labelledby="configuration-tab" hidden=move || tab.get() != Tab::Configuration>
                <form class="form" on:submit={
                    let save = save.clone();
                    move |e| {
                        e.prevent_default();
                        save();
                    }
                }>
                    <label class="field">
                        <span>"Name"</span>
                        <input
                            required
                            maxlength=limits::AGENT_NAME_MAX_CHARS.to_string()
                            prop:value=move || name.get()
                            on:input=move |e| name.set(event_target_value(&e))
                        />
                    </label>
                    <label class="field">
                        <span>"Description"</span>
                        <input prop:value=move || description.get() on:input=move |e| description.set(event_target_value(&e))/>
                    </label>
                    <label class="field">
                        <span>"Instructions"</span>
                        <textarea
                            rows="8"
                            placeholder="How the agent should behave (its system prompt)"
                            prop:value=move || instructions.get()
                            on:input=move |e| instructions.set(event_target_value(&e))
                        ></textarea>
                    </label>
                    <label class="field">
                        <span>"Model"</span>
                        <select prop:value=move || model.get() on:change=move |e| model.set(event_target_value(&e))>
                            <option value="">"Default model"</option>
                            {move || {
                                models
                                    .get()
                                    .and_then(|r| r.ok())
                                    .map(|m| {
                                        m.llm
                                            .into_iter()
                                            .map(|llm| view! { <option value=llm.id.clone() selected=model.get_untracked() == llm.id>{llm.name.clone()}</option> })
                                            .collect_view()
                                    })
                            }}
                        </select>
                    </label>
                    <fieldset class="toolkits">
                        <legend>"TOOLKITS"</legend>
                        <Switch
                            id="agent-image-creation"
                            label="Image creation"
                            checked=image_creation
                            on_toggle=Callback::new(move |on| image_creation.set(on))
                        >
                            <InfoTip text="Enable AI-powered image generation capabilities"/>
                        </Switch>
                        <Show when=move || !app.images_available()>
                            <p class="note">"No image model is installed yet; the setting is kept for when one is."</p>
                        </Show>
                    </fieldset>
                    <div class="form-actions">
                        <button type="submit" class="button primary" disabled=move || saving.get()>
                            {move || if agent_id.get().is_some() { "Save new version" } else { "Create agent" }}
                        </button>
                    </div>
                </form>
            </div>
            <div id="versions" role="tabpanel" aria-labelledby="versions-tab" hidden=move || tab.get() != Tab::Versions>
                <Show when=move || !versions.with(Vec::is_empty) fallback=|| view! { <p class="muted">"Saved versions appear here."</p> }>
                    <table class="versions">
                        <thead>
                            <tr><th scope="col">"Version"</th><th scope="col">"Saved"</th><th scope="col">"Name"</th><th scope="col">"Model"</th><th scope="col">"Image creation"</th></tr>
                        </thead>
                        <tbody>
                            <For each=move || versions.get() key=|v| (v.id.clone(), v.current) let:v>
                                <tr class:current=v.current>
                                    <td>{v.version} {v.current.then(|| view! { <span class="chip">"current"</span> })}</td>
                                    <td>{v.created_at.replace('T', " ").chars().take(16).collect::<String>()}</td>
                                    <td>{v.name.clone()}</td>
                                    <td>{v.model.clone().unwrap_or_else(|| "default".into())}</td>
                                    <td>{if v.meta.internal_tools.image_creation { "on" } else { "off" }}</td>
                                </tr>
                            </For>
                        </tbody>
                    </table>
                </Show>
            </div>
        </section>
    }
    .into_any()
}
