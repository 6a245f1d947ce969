//! The admin page (`/admin`, admins only; others get "Page not found", as the server answers
//! 404 to them): Users (create, role, disable/enable/approve, credits, allowance, password
//! reset), Settings (registration, credits, per-model costs), Usage (per user and model, and a
//! per-day chart) and Workers (the processes that paint).

use std::collections::BTreeMap;

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{
    AccountForm, AdminSettings, AdminSettingsUpdate, AdminUser, CreditSettings, CreditsPatch,
    UsageDay, UsageReport, UserPatch, WorkerInfo,
};
use crate::client;
use crate::components::layout::Layout;
use crate::components::toasts::use_toasts;
use crate::components::user_menu::short_time;
use crate::session::use_session;
use crate::state::use_app;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tab {
    Users,
    Settings,
    Usage,
    Workers,
}

impl Tab {
    const ALL: [Tab; 4] = [Tab::Users, Tab::Settings, Tab::Usage, Tab::Workers];

    fn id(self) -> &'static str {
        match self {
            Tab::Users => "users",
            Tab::Settings => "settings",
            Tab::Usage => "usage",
            Tab::Workers => "workers",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Tab::Users => "Users",
            Tab::Settings => "Settings",
            Tab::Usage => "Usage",
            Tab::Workers => "Workers",
        }
    }
}

#[component]
pub fn AdminPage() -> impl IntoView {
    let session = use_session();
    // `None` until the account is known. A memo: the balance in `me` changes often, and the
    // page (its tab, the user being edited) must not be made again each time.
    let admin = Memo::new(move |_| session.me.with(|m| m.as_ref().map(|m| m.role == "admin")));
    view! {
        <Layout>
            {move || match admin.get() {
                None => view! { <p class="muted page-body">"Loading…"</p> }.into_any(),
                Some(true) => view! { <Admin/> }.into_any(),
                Some(false) => view! { <p class="not-found">"Page not found."</p> }.into_any(),
            }}
        </Layout>
    }
}

#[component]
fn Admin() -> impl IntoView {
    let tab = RwSignal::new(Tab::Users);
    let tab_button = move |which: Tab| {
        view! {
            <button
                role="tab"
                id=format!("{}-tab", which.id())
                aria-controls=which.id()
                aria-selected=move || (tab.get() == which).to_string()
                tabindex=move || if tab.get() == which { "0" } else { "-1" }
                class="tab"
                on:click=move |_| tab.set(which)
                on:keydown=move |e| {
                    let i = Tab::ALL.iter().position(|t| *t == tab.get_untracked()).unwrap_or(0);
                    let next = match e.key().as_str() {
                        "ArrowRight" => Tab::ALL[(i + 1) % Tab::ALL.len()],
                        "ArrowLeft" => Tab::ALL[(i + Tab::ALL.len() - 1) % Tab::ALL.len()],
                        _ => return,
                    };
                    tab.set(next);
                    client::focus(&format!("{}-tab", next.id()));
                }
            >
                {which.label()}
            </button>
        }
    };
    let panel = move |which: Tab, content: AnyView| {
        view! {
            <div id=which.id() role="tabpanel" aria-labelledby=format!("{}-tab", which.id()) hidden=move || tab.get() != which>
                {content}
            </div>
        }
    };
    view! {
        <header class="page-header">
            <div>
                <h1>"Admin"</h1>
                <p class="small muted">"Accounts, settings and usage of this Easel. Admins do not see other people's conversations."</p>
            </div>
        </header>
        <div class="tabs" role="tablist" aria-label="Admin">
            {Tab::ALL.into_iter().map(tab_button).collect_view()}
        </div>
        <section class="page-body">
            {panel(Tab::Users, view! { <Users/> }.into_any())}
            {panel(Tab::Settings, view! { <Settings/> }.into_any())}
            // Usage and workers load when their tab is first opened.
            {panel(Tab::Usage, view! { <Show when=move || tab.get() == Tab::Usage><Usage/></Show> }.into_any())}
            {panel(Tab::Workers, view! { <Show when=move || tab.get() == Tab::Workers><Workers/></Show> }.into_any())}
        </section>
    }
    .into_any()
}

// ----- users -----

fn status_of(u: &AdminUser) -> &'static str {
    if u.pending {
        "waiting for approval"
    } else if u.disabled {
        "disabled"
    } else {
        "active"
    }
}

#[component]
fn Users() -> impl IntoView {
    let toasts = use_toasts();
    let version = RwSignal::new(0u32);
    let users = LocalResource::new(move || {
        version.track();
        async move { client::get::<Vec<AdminUser>>("/api/admin/users").await }
    });
    let reload = move || version.update(|v| *v += 1);
    let selected: RwSignal<Option<String>> = RwSignal::new(None);

    // Create a user.
    let name = RwSignal::new(String::new());
    let email = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let role = RwSignal::new("user".to_string());
    let error: RwSignal<Option<String>> = RwSignal::new(None);
    let create = move |e: leptos::ev::SubmitEvent| {
        e.prevent_default();
        let form = AccountForm {
            name: name.get_untracked(),
            email: email.get_untracked(),
            password: password.get_untracked(),
            role: Some(role.get_untracked()),
        };
        error.set(None);
        spawn_local(async move {
            match client::send::<_, AdminUser>("POST", "/api/admin/users", &form).await {
                Ok(u) => {
                    toasts.info(format!("Account created for {}", u.name));
                    name.set(String::new());
                    email.set(String::new());
                    password.set(String::new());
                    reload();
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };

    // The selected account as the newest list shows it; while the list reloads (after every
    // change made in the editor) the last one seen stays, so the editor never blinks.
    let selected_user = Memo::new(move |last: Option<&Option<AdminUser>>| {
        let id = selected.get()?;
        match users.get() {
            Some(Ok(list)) => list.into_iter().find(|u| u.id == id),
            _ => last.cloned().flatten().filter(|u| u.id == id),
        }
    });

    view! {
        <h2>"Users"</h2>
        {move || users.get().map(|result| match result {
            Ok(list) => view! {
                <table class="data-table users">
                    <thead>
                        <tr>
                            <th scope="col">"Name"</th><th scope="col">"Email"</th><th scope="col">"Role"</th>
                            <th scope="col">"Status"</th><th scope="col">"Credits"</th><th scope="col">"Allowance"</th>
                            <th scope="col">"Created"</th><th scope="col"><span class="visually-hidden">"Actions"</span></th>
                        </tr>
                    </thead>
                    <tbody>
                        {list.into_iter().map(|u| {
                            let id = u.id.clone();
                            let id_for_expanded = u.id.clone();
                            let id_for_row = u.id.clone();
                            let label = format!("Manage {}", u.name);
                            view! {
                                <tr class:current=move || selected.with(|s| s.as_deref() == Some(id_for_row.as_str()))>
                                    <td>{u.name.clone()}</td>
                                    <td>{u.email.clone().unwrap_or_default()}</td>
                                    <td>{u.role.clone()}</td>
                                    <td>{status_of(&u)}</td>
                                    <td>{u.credits}</td>
                                    <td>{u.allowance.map(|a| a.to_string()).unwrap_or_else(|| "default".into())}</td>
                                    <td>{short_time(&u.created_at)}</td>
                                    <td>
                                        <button
                                            type="button"
                                            class="button"
                                            aria-label=label
                                            aria-controls="user-editor"
                                            aria-expanded=move || selected.with(|s| s.as_deref() == Some(id_for_expanded.as_str())).to_string()
                                            on:click=move |_| {
                                                let again = selected.with_untracked(|s| s.as_deref() == Some(id.as_str()));
                                                selected.set(if again { None } else { Some(id.clone()) });
                                            }
                                        >"Manage"</button>
                                    </td>
                                </tr>
                            }
                        }).collect_view()}
                    </tbody>
                </table>
            }
            .into_any(),
            Err(e) => view! { <p class="error-text" role="alert">{e.message}</p> }.into_any(),
        })}
        // Built once per selected account, not per reload of the list: a rebuilt editor would
        // wipe what the admin is typing in its other fields when one change is saved.
        {move || selected.get().map(|_| view! {
            <UserEditor user=selected_user.into() on_change=Callback::new(move |_| reload())/>
        })}
        <form class="form inline-form" on:submit=create aria-labelledby="create-user-title">
            <h2 id="create-user-title">"Create a user"</h2>
            <div class="row">
                <label class="field"><span>"Name"</span>
                    <input name="new-user-name" required prop:value=move || name.get() on:input=move |e| name.set(event_target_value(&e))/>
                </label>
                <label class="field"><span>"Email"</span>
                    <input type="email" name="new-user-email" required autocomplete="off" prop:value=move || email.get() on:input=move |e| email.set(event_target_value(&e))/>
                </label>
                <label class="field"><span>"Password"</span>
                    <input type="password" name="new-user-password" required autocomplete="new-password" prop:value=move || password.get() on:input=move |e| password.set(event_target_value(&e))/>
                </label>
                <label class="field"><span>"Role"</span>
                    <select name="new-user-role" prop:value=move || role.get() on:change=move |e| role.set(event_target_value(&e))>
                        <option value="user">"user"</option>
                        <option value="admin">"admin"</option>
                    </select>
                </label>
                <button type="submit" class="button primary">"Create user"</button>
            </div>
            {move || error.get().map(|e| view! { <p class="error-text" role="alert">{e}</p> })}
        </form>
    }
    .into_any()
}

/// The actions on one account, below the table. `user` follows the list as it reloads; the
/// fields keep what the admin typed.
#[component]
fn UserEditor(user: Signal<Option<AdminUser>>, on_change: Callback<()>) -> impl IntoView {
    let toasts = use_toasts();
    let session = use_session();
    let first = user.get_untracked();
    let id = StoredValue::new(first.as_ref().map(|u| u.id.clone()).unwrap_or_default());
    let first_role = first
        .as_ref()
        .map(|u| u.role.clone())
        .unwrap_or_else(|| "user".into());
    let role = RwSignal::new(first_role.clone());
    let amount = RwSignal::new(String::new());
    let allowance = RwSignal::new(
        first
            .as_ref()
            .and_then(|u| u.allowance)
            .map(|a| a.to_string())
            .unwrap_or_default(),
    );
    let new_password = RwSignal::new(String::new());
    let error: RwSignal<Option<String>> = RwSignal::new(None);

    let patch = move |body: UserPatch, done: String| {
        error.set(None);
        let id = id.get_value();
        spawn_local(async move {
            match client::send::<_, AdminUser>("PATCH", &format!("/api/admin/users/{id}"), &body)
                .await
            {
                Ok(_) => {
                    toasts.info(done);
                    on_change.run(());
                    // The admin's own balance may have changed.
                    session.refresh_me();
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    let number = move |text: String, what: &str| -> Option<i64> {
        match text.trim().parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                error.set(Some(format!("{what}: enter a whole number.")));
                None
            }
        }
    };
    let toggle = move || user.with(|u| access_toggle(u.as_ref()));
    view! {
        <section id="user-editor" class="user-editor card" aria-labelledby="user-editor-title">
            <h3 id="user-editor-title">{move || user.with(|u| u.as_ref().map(|u| format!("{} · {}", u.name, u.email.clone().unwrap_or_default())).unwrap_or_default())}</h3>
            <p class="small muted">{move || user.with(|u| u.as_ref().map(|u| format!("{} · {} credits", status_of(u), u.credits)).unwrap_or_default())}</p>
            <div class="row">
                <label class="field"><span>"Role"</span>
                    <select name="role" prop:value=move || role.get() on:change=move |e| role.set(event_target_value(&e))>
                        <option value="user" selected=first_role == "user">"user"</option>
                        <option value="admin" selected=first_role == "admin">"admin"</option>
                    </select>
                </label>
                <button type="button" class="button" on:click=move |_| {
                    let r = role.get_untracked();
                    patch(UserPatch { role: Some(r.clone()), ..Default::default() }, format!("Role set to {r}"));
                }>"Save role"</button>
                <button type="button" class=move || if toggle().1 { "button danger" } else { "button" } on:click=move |_| {
                    let (disable, name) = user.with_untracked(|u| {
                        (access_toggle(u.as_ref()).1, u.as_ref().map(|u| u.name.clone()).unwrap_or_default())
                    });
                    patch(
                        UserPatch { disabled: Some(disable), ..Default::default() },
                        format!("{name} {}", if disable { "is disabled" } else { "can sign in" }),
                    )
                }>{move || toggle().0}</button>
            </div>
            <div class="row">
                <label class="field"><span>"Credits"</span>
                    <input type="number" name="credits-amount" step="1" prop:value=move || amount.get() on:input=move |e| amount.set(event_target_value(&e))/>
                </label>
                <button type="button" class="button" on:click=move |_| {
                    if let Some(n) = number(amount.get_untracked(), "Credits") {
                        patch(UserPatch { credits: Some(CreditsPatch { grant: Some(n), set_balance: None }), ..Default::default() }, format!("Granted {n} credits"));
                    }
                }>"Grant"</button>
                <button type="button" class="button" on:click=move |_| {
                    if let Some(n) = number(amount.get_untracked(), "Credits") {
                        patch(UserPatch { credits: Some(CreditsPatch { set_balance: Some(n), grant: None }), ..Default::default() }, format!("Balance set to {n}"));
                    }
                }>"Set balance"</button>
            </div>
            <div class="row">
                <label class="field"><span>"Allowance per period (empty: the default)"</span>
                    <input type="number" name="allowance" min="0" step="1" prop:value=move || allowance.get() on:input=move |e| allowance.set(event_target_value(&e))/>
                </label>
                <button type="button" class="button" on:click=move |_| {
                    let text = allowance.get_untracked();
                    let value = if text.trim().is_empty() { Some(None) } else { number(text, "Allowance").map(Some) };
                    if let Some(value) = value {
                        patch(UserPatch { allowance: Some(value), ..Default::default() }, "Allowance saved".into());
                    }
                }>"Save allowance"</button>
            </div>
            <div class="row">
                <label class="field"><span>"New password"</span>
                    <input type="password" name="reset-password" autocomplete="new-password" prop:value=move || new_password.get() on:input=move |e| new_password.set(event_target_value(&e))/>
                </label>
                <button type="button" class="button" on:click=move |_| {
                    let p = new_password.get_untracked();
                    if p.is_empty() {
                        error.set(Some("Enter the new password first.".into()));
                        return;
                    }
                    new_password.set(String::new());
                    patch(UserPatch { password: Some(p), ..Default::default() }, "Password reset; their sessions ended".into());
                }>"Reset password"</button>
            </div>
            {move || error.get().map(|e| view! { <p class="error-text" role="alert">{e}</p> })}
        </section>
    }
}

/// The access button for an account's state, and whether it disables: a pending account is
/// approved, a disabled one enabled, any other disabled.
fn access_toggle(user: Option<&AdminUser>) -> (&'static str, bool) {
    match user {
        Some(u) if u.pending => ("Approve", false),
        Some(u) if u.disabled => ("Enable", false),
        _ => ("Disable", true),
    }
}

// ----- settings -----

#[component]
fn Settings() -> impl IntoView {
    let app = use_app();
    let toasts = use_toasts();
    let session = use_session();
    let registration = RwSignal::new("closed".to_string());
    let enabled = RwSignal::new(false);
    let allowance = RwSignal::new(String::new());
    let period = RwSignal::new("month".to_string());
    let costs: RwSignal<BTreeMap<String, String>> = RwSignal::new(BTreeMap::new());
    let error: RwSignal<Option<String>> = RwSignal::new(None);
    let loaded = RwSignal::new(false);
    let fill = move |s: AdminSettings| {
        registration.set(s.registration);
        enabled.set(s.credits.enabled);
        allowance.set(s.credits.default_allowance.to_string());
        period.set(s.credits.period);
        costs.set(
            s.model_costs
                .into_iter()
                .map(|(k, v)| (k, v.to_string()))
                .collect(),
        );
        loaded.set(true);
    };
    Effect::new(move |_| {
        spawn_local(async move {
            match client::get::<AdminSettings>("/api/admin/settings").await {
                Ok(s) => fill(s),
                Err(e) => error.set(Some(e.message)),
            }
        });
    });
    let models = Memo::new(move |_| {
        app.models
            .get()
            .and_then(|r| r.ok())
            .map(|m| m.image)
            .unwrap_or_default()
    });
    let save = move |e: leptos::ev::SubmitEvent| {
        e.prevent_default();
        error.set(None);
        let Ok(default_allowance) = allowance.get_untracked().trim().parse::<i64>() else {
            error.set(Some("Default allowance: enter a whole number.".into()));
            return;
        };
        let mut model_costs = BTreeMap::new();
        for m in models.get_untracked() {
            let text = costs.with_untracked(|c| c.get(&m.id).cloned().unwrap_or_default());
            let cost = if text.trim().is_empty() {
                None
            } else {
                match text.trim().parse::<i64>() {
                    Ok(n) => Some(n),
                    Err(_) => {
                        error.set(Some(format!("Cost of {}: enter a whole number.", m.name)));
                        return;
                    }
                }
            };
            model_costs.insert(m.id, cost);
        }
        let body = AdminSettingsUpdate {
            registration: registration.get_untracked(),
            credits: CreditSettings {
                enabled: enabled.get_untracked(),
                default_allowance,
                period: period.get_untracked(),
            },
            model_costs,
        };
        spawn_local(async move {
            match client::send::<_, AdminSettings>("PUT", "/api/admin/settings", &body).await {
                Ok(s) => {
                    fill(s);
                    toasts.info("Settings saved");
                    session.refresh_me();
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    view! {
        <form class="form" on:submit=save aria-label="Settings">
            <label class="field">
                <span>"Registration"</span>
                <select name="registration" prop:value=move || registration.get() on:change=move |e| registration.set(event_target_value(&e))>
                    <option value="closed">"Closed: only admins create accounts"</option>
                    <option value="approval">"Approval: anyone may sign up; an admin approves"</option>
                    <option value="open">"Open: anyone may sign up"</option>
                </select>
            </label>
            <fieldset class="settings-group">
                <legend>"Credits"</legend>
                <label class="check">
                    <input type="checkbox" name="credits-enabled" prop:checked=move || enabled.get() on:change=move |e| enabled.set(event_target_checked(&e))/>
                    " Generations cost credits"
                </label>
                <div class="row">
                    <label class="field"><span>"Default allowance"</span>
                        <input type="number" name="default-allowance" min="0" step="1" prop:value=move || allowance.get() on:input=move |e| allowance.set(event_target_value(&e))/>
                    </label>
                    <label class="field"><span>"Refilled every"</span>
                        <select name="period" prop:value=move || period.get() on:change=move |e| period.set(event_target_value(&e))>
                            <option value="day">"day"</option>
                            <option value="week">"week"</option>
                            <option value="month">"month"</option>
                        </select>
                    </label>
                </div>
                <p class="note">"A generation costs the model's cost × images × (area ÷ the model's default area) × (steps ÷ its default steps), rounded up."</p>
            </fieldset>
            <fieldset class="settings-group">
                <legend>"Cost per image, by model"</legend>
                {move || {
                    let list = models.get();
                    if list.is_empty() {
                        view! { <p class="muted">"No image models are installed."</p> }.into_any()
                    } else {
                        list.into_iter().map(|m| {
                            let id = m.id.clone();
                            let id_for_input = m.id.clone();
                            view! {
                                <label class="field">
                                    <span>{format!("{} ({})", m.name, m.id)}</span>
                                    <input
                                        type="number"
                                        min="0"
                                        step="1"
                                        placeholder="1"
                                        name=format!("cost-{}", m.id)
                                        prop:value=move || costs.with(|c| c.get(&id).cloned().unwrap_or_default())
                                        on:input=move |e| {
                                            let v = event_target_value(&e);
                                            costs.update(|c| { c.insert(id_for_input.clone(), v); });
                                        }
                                    />
                                </label>
                            }
                        }).collect_view().into_any()
                    }
                }}
            </fieldset>
            {move || error.get().map(|e| view! { <p class="error-text" role="alert">{e}</p> })}
            <div class="form-actions">
                <button type="submit" class="button primary" disabled=move || !loaded.get()>"Save settings"</button>
            </div>
        </form>
    }
    .into_any()
}

// ----- usage -----

/// Days since 1970-01-01 of a `YYYY-MM-DD` date (Howard Hinnant's `days_from_civil`).
fn day_number(date: &str) -> Option<i64> {
    let mut parts = date.get(..10)?.split('-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// The `YYYY-MM-DD` of a day number (`civil_from_days`).
fn date_of(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Every day of the report's period, with zeros where nothing was made.
fn every_day(report: &UsageReport) -> Vec<UsageDay> {
    let (Some(first), Some(last)) = (day_number(&report.from), day_number(&report.to)) else {
        return report.days.clone();
    };
    if last < first || last - first > 400 {
        return report.days.clone();
    }
    (first..=last)
        .map(|n| {
            let day = date_of(n);
            report
                .days
                .iter()
                .find(|d| d.day == day)
                .cloned()
                .unwrap_or(UsageDay {
                    day,
                    images: 0,
                    credits: 0,
                })
        })
        .collect()
}

/// Images per day as bars, in plain SVG; each bar's title gives the numbers.
#[component]
fn UsageChart(days: Vec<UsageDay>) -> impl IntoView {
    let max = days.iter().map(|d| d.images).max().unwrap_or(0).max(1);
    let total: i64 = days.iter().map(|d| d.images).sum();
    let n = days.len().max(1);
    let (width, height) = (600.0f64, 120.0f64);
    let slot = width / n as f64;
    let label = format!(
        "Images per day, {} to {}: {total} in all, at most {max} a day.",
        days.first().map(|d| d.day.as_str()).unwrap_or(""),
        days.last().map(|d| d.day.as_str()).unwrap_or("")
    );
    view! {
        <figure class="usage-chart">
            <svg viewBox=format!("0 0 {width} {}", height + 2.0) role="img" aria-label=label.clone() preserveAspectRatio="none">
                {days.into_iter().enumerate().map(|(i, d)| {
                    let h = (d.images as f64 / max as f64) * height;
                    let title = format!("{}: {} images, {} credits", d.day, d.images, d.credits);
                    view! {
                        <rect class="bar" data-day=d.day x=format!("{:.2}", i as f64 * slot + slot * 0.1) y=format!("{:.2}", height - h) width=format!("{:.2}", slot * 0.8) height=format!("{:.2}", h.max(0.5)) aria-label=title></rect>
                    }
                }).collect_view()}
            </svg>
            <figcaption class="small muted">{label}</figcaption>
        </figure>
    }
}

#[component]
fn Usage() -> impl IntoView {
    let days = RwSignal::new(30u32);
    let report = LocalResource::new(move || {
        let days = days.get();
        async move { client::get::<UsageReport>(&format!("/api/admin/usage?days={days}")).await }
    });
    view! {
        <div class="row">
            <label class="field inline"><span>"Period"</span>
                <select name="usage-days" prop:value=move || days.get().to_string() on:change=move |e| days.set(event_target_value(&e).parse().unwrap_or(30))>
                    <option value="7">"last 7 days"</option>
                    <option value="30">"last 30 days"</option>
                    <option value="90">"last 90 days"</option>
                    <option value="365">"last year"</option>
                </select>
            </label>
        </div>
        {move || report.get().map(|result| match result {
            Ok(r) => {
                let chart = every_day(&r);
                view! {
                    <UsageChart days=chart/>
                    {if r.rows.is_empty() {
                        view! { <p class="muted">"Nothing was made in this period."</p> }.into_any()
                    } else {
                        view! {
                            <table class="data-table usage">
                                <thead>
                                    <tr><th scope="col">"User"</th><th scope="col">"Model"</th><th scope="col">"Jobs"</th><th scope="col">"Images"</th><th scope="col">"Credits"</th><th scope="col">"Engine time"</th></tr>
                                </thead>
                                <tbody>
                                    {r.rows.into_iter().map(|row| view! {
                                        <tr>
                                            <td>{row.name.clone().or(row.email.clone()).unwrap_or(row.user_id.clone())}</td>
                                            <td>{row.model.clone()}</td>
                                            <td>{row.jobs}</td>
                                            <td>{row.images}</td>
                                            <td>{row.credits}</td>
                                            <td>{format!("{:.1} s", row.engine_seconds)}</td>
                                        </tr>
                                    }).collect_view()}
                                </tbody>
                            </table>
                        }
                        .into_any()
                    }}
                }
                .into_any()
            }
            Err(e) => view! { <p class="error-text" role="alert">{e.message}</p> }.into_any(),
        })}
    }
    .into_any()
}

// ----- workers -----

#[component]
fn Workers() -> impl IntoView {
    let workers =
        LocalResource::new(|| async { client::get::<Vec<WorkerInfo>>("/api/admin/workers").await });
    view! {
        {move || workers.get().map(|result| match result {
            Ok(list) if list.is_empty() => view! { <p class="muted">"No process has reported in yet."</p> }.into_any(),
            Ok(list) => view! {
                <table class="data-table workers">
                    <thead>
                        <tr>
                            <th scope="col">"Name"</th><th scope="col">"Kind"</th><th scope="col">"Models"</th>
                            <th scope="col">"Execution provider"</th><th scope="col">"Current job"</th><th scope="col">"Busy"</th>
                            <th scope="col">"Jobs per minute"</th><th scope="col">"Last seen"</th>
                        </tr>
                    </thead>
                    <tbody>
                        {list.into_iter().map(|w| view! {
                            <tr>
                                <td>{w.name.clone()}</td>
                                <td>{if w.paints || w.kind == "worker" { w.kind.clone() } else { format!("{} (does not paint)", w.kind) }}</td>
                                <td>{if w.models.is_empty() { "none".to_string() } else { w.models.join(", ") }}</td>
                                <td>{w.execution_provider.clone()}</td>
                                <td>{w.current_job.clone().unwrap_or_else(|| "none".into())}</td>
                                <td>{if w.busy { "yes" } else { "no" }}</td>
                                <td>{format!("{:.1}", w.jobs_per_minute)}</td>
                                <td>{short_time(&w.last_seen)}</td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
            }
            .into_any(),
            Err(e) if e.status == 404 => view! { <p class="muted">"This server does not report its workers."</p> }.into_any(),
            Err(e) => view! { <p class="error-text" role="alert">{e.message}</p> }.into_any(),
        })}
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_numbers_round_trip_through_dates() {
        assert_eq!(day_number("1970-01-01"), Some(0));
        assert_eq!(day_number("2026-11-29T10:00:00Z"), Some(20_786));
        for n in [0, 59, 60, 365, 11_016, 20_786, 20_820] {
            assert_eq!(day_number(&date_of(n)), Some(n));
        }
        assert_eq!(date_of(20_788), "2026-12-01");
    }

    #[test]
    fn usage_chart_has_a_bar_for_every_day() {
        let report = UsageReport {
            from: "2026-11-27T09:00:00Z".into(),
            to: "2026-11-29T09:00:00Z".into(),
            rows: Vec::new(),
            days: vec![UsageDay {
                day: "2026-11-28".into(),
                images: 3,
                credits: 9,
            }],
        };
        let days = every_day(&report);
        let names: Vec<&str> = days.iter().map(|d| d.day.as_str()).collect();
        assert_eq!(names, ["2026-11-27", "2026-11-28", "2026-11-29"]);
        assert_eq!(days[1].images, 3);
        assert_eq!(days[0].images, 0);
    }
}
