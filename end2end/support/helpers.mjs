// Small helpers shared by the runner and the tests: polling instead of fixed sleeps, a JSON
// API client, and page navigation that waits for hydration.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export { assert };

/**
 * Polls `fn` until it returns a truthy value (which is returned) or `timeout` ms pass. Errors
 * thrown by `fn` count as "not yet"; the last one is reported on timeout.
 * `what` (or `fn`'s source) names the awaited condition in the timeout error.
 */
export async function waitFor(fn, timeout = 10_000, { interval = 50, what } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  let lastError;
  for (;;) {
    try {
      last = await fn();
      lastError = undefined;
      if (last) return last;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() >= deadline) break;
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
  const label = what ?? fn.toString().replace(/\s+/g, ' ').slice(0, 160);
  const detail = lastError ? `last error: ${lastError.message?.split('\n')[0]}` : `last value: ${JSON.stringify(last)}`;
  throw new Error(`Timed out after ${timeout} ms waiting for ${label} (${detail})`);
}

/**
 * Waits until `locator`'s text (trimmed, whitespace collapsed) satisfies `expected`: a string
 * (equal), a RegExp (matches) or a function (truthy). Returns the text.
 */
export async function waitForText(locator, expected, timeout = 10_000) {
  const ok =
    typeof expected === 'function'
      ? expected
      : expected instanceof RegExp
        ? (t) => expected.test(t)
        : (t) => t === expected;
  let seen = '(nothing)';
  try {
    return await waitFor(
      async () => {
        seen = normalize(await locator.innerText({ timeout: 500 }));
        return ok(seen) ? seen || true : false;
      },
      timeout,
      { what: `text ${expected}` },
    );
  } catch (error) {
    error.message += `; the text was: ${JSON.stringify(seen)}`;
    throw error;
  }
}

/** Waits until `locator` matches exactly `n` elements. */
export async function waitForCount(locator, n, timeout = 10_000) {
  let seen = -1;
  try {
    await waitFor(async () => (seen = await locator.count()) === n, timeout, { what: `${n} element(s)` });
  } catch (error) {
    error.message += `; found ${seen}`;
    throw error;
  }
}

export function normalize(text) {
  return String(text ?? '').replace(/\s+/g, ' ').trim();
}

/** Opens `path` and waits for the network to go quiet: the wasm has loaded and hydrated. */
export async function gotoApp(page, baseUrl, path = '/') {
  await page.goto(new URL(path, baseUrl).toString(), { waitUntil: 'networkidle' });
}

/** A tiny client for Easel's JSON API; throws on any non-2xx answer. */
export function apiClient(baseUrl) {
  async function request(method, path, body) {
    const res = await fetch(new URL(path, baseUrl), {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let value = null;
    if (text) {
      try {
        value = JSON.parse(text);
      } catch {
        value = text;
      }
    }
    return { status: res.status, ok: res.ok, body: value };
  }
  async function checked(method, path, body) {
    const res = await request(method, path, body);
    if (!res.ok) throw new Error(`${method} ${path} answered ${res.status}: ${JSON.stringify(res.body)}`);
    return res.body;
  }
  return {
    /** `{status, ok, body}` without throwing. */
    request,
    get: (path) => checked('GET', path),
    post: (path, body = {}) => checked('POST', path, body),
    patch: (path, body = {}) => checked('PATCH', path, body),
    del: (path) => checked('DELETE', path),
    /** Creates a conversation; `fields` as in POST /api/conversations. */
    createConversation: (fields = {}) => checked('POST', '/api/conversations', fields),
    /** Posts a message and waits until its run is over; returns the conversation detail. */
    async sendAndWait(conversationId, content, timeout = 15_000) {
      await checked('POST', `/api/conversations/${conversationId}/messages`, { content });
      return waitFor(
        async () => {
          const detail = await checked('GET', `/api/conversations/${conversationId}?images=url`);
          return detail.active_run_id ? null : detail;
        },
        timeout,
        { what: `the run in conversation ${conversationId} to end` },
      );
    },
  };
}

// ----- shared UI helpers for the tests -----

/** Where the runner (and `screenshot`) saves screens; git-ignored. */
export const SHOTS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'screenshots');

/** Saves the current screen as `end2end/screenshots/<name>.png`; returns the path. */
export async function screenshot(page, name, { fullPage = false } = {}) {
  fs.mkdirSync(SHOTS_DIR, { recursive: true });
  const file = path.join(SHOTS_DIR, `${name}.png`);
  await page.screenshot({ path: file, fullPage, timeout: 5_000 });
  return file;
}

/** A short random tag, to find a test's own titles and LLM requests. */
export function tag() {
  return Math.random().toString(36).slice(2, 8);
}

export const ui = {
  sidebar: (page) => page.getByRole('complementary', { name: 'Navigation and conversations' }),
  messageBox: (page) => page.getByLabel('Message', { exact: true }),
  userArticles: (page) => page.getByRole('article', { name: 'You', exact: true }),
  assistantArticles: (page) => page.getByRole('article', { name: 'Assistant', exact: true }),
  /** The notifications at the top right (`.toasts`): `kind` 'status' (info) or 'alert' (errors). */
  toast: (page, kind, text) => page.locator('.toasts').getByRole(kind).filter({ hasText: text }),
  sendButton: (page) => page.getByRole('button', { name: 'Send', exact: true }),
  stopButton: (page) => page.getByRole('button', { name: 'Stop', exact: true }),
};

/** Clicks the sidebar's "New conversation" and waits for its page; returns the conversation id. */
export async function newConversation(page) {
  const before = page.url();
  await ui.sidebar(page).getByRole('button', { name: 'New conversation', exact: true }).click();
  await waitFor(() => page.url() !== before && /\/c\/[^/]+$/.test(page.url()), 10_000, {
    what: 'the new conversation to open (URL /c/{id})',
  });
  await ui.messageBox(page).waitFor({ state: 'visible' });
  return page.url().split('/c/')[1];
}

/** Types `text` into the message box and presses Enter. */
export async function sendWithEnter(page, text) {
  const box = ui.messageBox(page);
  await box.fill(text);
  await box.press('Enter');
}

/** Waits until no reply is running: Send is back and Stop is gone. */
export async function waitForIdle(page, timeout = 15_000) {
  await waitFor(
    async () => (await ui.sendButton(page).count()) === 1 && (await ui.stopButton(page).count()) === 0,
    timeout,
    { what: 'the reply to finish (Send back, no Stop)' },
  );
}

/** Waits for the switch's `aria-checked` to be `value` ('true' or 'false'). */
export async function waitForChecked(toggle, value, timeout = 5_000) {
  await waitFor(async () => (await toggle.getAttribute('aria-checked')) === value, timeout, {
    what: `the switch to show aria-checked="${value}"`,
  });
}
