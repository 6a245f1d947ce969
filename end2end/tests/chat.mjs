// Chatting with the scripted LLM: send, stream, history, and what Easel sends upstream.

import { assert, gotoApp, normalize, waitFor, waitForCount, waitForText } from '../support/helpers.mjs';

/** A message no other test sends, so titles and recorded requests can be told apart. */
function unique(text) {
  return `${text} #${Math.random().toString(36).slice(2, 8)}`;
}

const sidebar = (page) => page.getByRole('complementary', { name: 'Conversations' });
const messageBox = (page) => page.getByLabel('Message', { exact: true });
const userArticles = (page) => page.getByRole('article', { name: 'You', exact: true });
const assistantArticles = (page) => page.getByRole('article', { name: 'Assistant', exact: true });

/** Records every text the last Assistant article shows, to prove the reply arrived in pieces. */
async function recordAssistantText(page) {
  await page.evaluate(() => {
    const seen = [];
    window.__assistantTexts = seen;
    const note = () => {
      const all = document.querySelectorAll('article[aria-label="Assistant"] .markdown');
      const text = all.length ? all[all.length - 1].textContent.trim() : null;
      if (text !== null && seen[seen.length - 1] !== text) seen.push(text);
    };
    new MutationObserver(note).observe(document.body, { subtree: true, childList: true, characterData: true });
  });
  return () => page.evaluate(() => window.__assistantTexts);
}

/** Clicks "+ New conversation" and waits for its page; returns the conversation id. */
async function newConversation(page) {
  const before = page.url();
  await page.getByRole('button', { name: 'New conversation', exact: true }).click();
  await waitFor(() => page.url() !== before && /\/c\/[^/]+$/.test(page.url()), 10_000, {
    what: 'the new conversation to open (URL /c/{id})',
  });
  await messageBox(page).waitFor({ state: 'visible' });
  return page.url().split('/c/')[1];
}

/** Types `text` into the message box and presses Enter. */
async function sendWithEnter(page, text) {
  const box = messageBox(page);
  await box.fill(text);
  await box.press('Enter');
}

/** Waits until the conversation shows `n` exchanges and no reply is running. */
async function waitForReplies(page, n) {
  await waitForCount(userArticles(page), n);
  await waitForCount(assistantArticles(page), n);
  await waitFor(
    async () =>
      (await page.getByRole('button', { name: 'Send' }).count()) === 1
      && (await page.getByRole('button', { name: 'Stop' }).count()) === 0,
    10_000,
    { what: 'the reply to finish (Send back, no Stop)' },
  );
}

/** Every message on screen as `[who, text]`, in order. */
async function transcript(page) {
  return page.locator('article[aria-label]').evaluateAll((articles) =>
    articles.map((a) => [a.getAttribute('aria-label'), a.querySelector('.markdown, .user-text')?.textContent.trim() ?? '']),
  );
}

export const tests = [
  {
    name: 'sending a message streams the echo reply and names the conversation',
    async run({ page, baseUrl, llm }) {
      await gotoApp(page, baseUrl, '/');
      const id = await newConversation(page);
      assert.ok(id, 'the new conversation has an id in the URL');

      const text = unique('Hello Easel, how are you today?');
      const texts = await recordAssistantText(page);
      await sendWithEnter(page, text);

      await waitForText(userArticles(page).last(), text);
      const reply = assistantArticles(page).last().locator('.markdown');
      await waitForText(reply, `Echo: ${text}`, 10_000);
      await waitForReplies(page, 1);
      assert.equal(await messageBox(page).inputValue(), '', 'the message box is emptied after sending');

      // Streamed: the reply was on screen in part before it was whole.
      const seen = await texts();
      const partial = seen.filter((t) => t.length > 0 && t !== `Echo: ${text}` && `Echo: ${text}`.startsWith(t));
      assert.ok(partial.length > 0, `the reply should appear piece by piece; saw ${JSON.stringify(seen)}`);

      // The first message becomes the conversation's title in the sidebar.
      const link = sidebar(page).locator(`a[href="/c/${id}"]`);
      await waitForText(link, text);

      // Upstream got the message as the last user message, streaming, with the scripted model.
      const sent = llm.chatRequestsMentioning(text);
      assert.equal(sent.length, 1, 'one chat request for one message');
      assert.equal(sent[0].body.stream, true);
      assert.equal(sent[0].body.model, llm.model);
      const last = sent[0].body.messages.at(-1);
      assert.deepEqual([last.role, last.content], ['user', text]);
    },
  },
  {
    name: 'the history survives a reload',
    async run({ page, baseUrl, llm }) {
      await gotoApp(page, baseUrl, '/');
      const id = await newConversation(page);
      const first = unique('First question about colours');
      const second = unique('And a second one');
      await sendWithEnter(page, first);
      await waitForText(assistantArticles(page).last().locator('.markdown'), `Echo: ${first}`);
      await waitForReplies(page, 1);
      await sendWithEnter(page, second);
      await waitForText(assistantArticles(page).last().locator('.markdown'), `Echo: ${second}`);
      await waitForReplies(page, 2);

      const before = await transcript(page);
      assert.deepEqual(before, [
        ['You', first],
        ['Assistant', `Echo: ${first}`],
        ['You', second],
        ['Assistant', `Echo: ${second}`],
      ]);

      // The second turn carried the first exchange as context.
      const [turn2] = llm.chatRequestsMentioning(second);
      const context = turn2.body.messages.filter((m) => m.role !== 'system').map((m) => [m.role, m.content]);
      assert.deepEqual(context, [
        ['user', first],
        ['assistant', `Echo: ${first}`],
        ['user', second],
      ]);

      await page.reload({ waitUntil: 'networkidle' });
      await waitForCount(assistantArticles(page), 2);
      await waitForText(assistantArticles(page).last().locator('.markdown'), `Echo: ${second}`);
      assert.deepEqual(await transcript(page), before, 'the same messages, in the same order, after a reload');
      assert.ok(page.url().endsWith(`/c/${id}`));
      await waitForText(page.getByRole('heading', { level: 1 }), first);
      assert.equal(
        await sidebar(page).locator(`a[href="/c/${id}"]`).getAttribute('aria-current'),
        'page',
        'the open conversation is marked current in the sidebar',
      );
    },
  },
  {
    name: 'with image creation off no tools are offered to the LLM',
    async run({ page, baseUrl, llm, api }) {
      const conversation = await api.createConversation();
      assert.equal(conversation.internal_tools.image_creation, false, 'image creation is off by default');
      await gotoApp(page, baseUrl, `/c/${conversation.id}`);

      // The switch says so too.
      await page.getByRole('button', { name: 'Internal tools' }).click();
      const toggle = page.getByRole('switch', { name: 'Image creation' });
      await waitFor(async () => (await toggle.getAttribute('aria-checked')) === 'false', 5_000, {
        what: 'the Image creation switch to show "off"',
      });

      // A message that would make the scripted LLM paint, if it were offered the tool.
      const text = unique('Please paint a picture of a lighthouse');
      await sendWithEnter(page, text);
      await waitForText(assistantArticles(page).last().locator('.markdown'), `Echo: ${text}`);
      await waitForReplies(page, 1);

      const sent = llm.chatRequestsMentioning(text);
      assert.equal(sent.length, 1, 'one chat request');
      assert.ok(!('tools' in sent[0].body), `no "tools" key; the request had keys ${Object.keys(sent[0].body).join(', ')}`);
      assert.equal(await page.locator('figure.image-tile').count(), 0, 'no image tiles');
      assert.equal(normalize(await userArticles(page).last().innerText()), text);
    },
  },
  {
    name: 'with image creation on the LLM paints through the tool',
    async run({ page, baseUrl, llm, api }) {
      const conversation = await api.createConversation();
      await gotoApp(page, baseUrl, `/c/${conversation.id}`);
      await turnOnImageCreation(page);
      assert.equal((await api.get(`/api/conversations/${conversation.id}`)).internal_tools.image_creation, true);

      const { text, prompt, tag } = paintRequest();
      await sendWithEnter(page, text);
      await waitForImages(page, 2);
      await waitForText(assistantArticles(page).last().locator('.markdown'), 'Here are your images.');
      await waitForReplies(page, 1);
      assert.equal(await page.locator('figure.image-tile progress').count(), 0, 'no placeholder is left');
      await waitForThumbnailsLoaded(page);

      // Round 1 offered the tool; round 2 carried the call and its result back.
      const sent = llm.chatRequestsMentioning(tag);
      assert.equal(sent.length, 2, 'two rounds: the tool call, then the answer');
      assert.deepEqual(sent[0].body.tools.map((t) => [t.type, t.function.name]), [['function', 'image_generator']]);
      const [call, result] = sent[1].body.messages.slice(-2);
      assert.equal(call.role, 'assistant');
      assert.equal(call.tool_calls?.[0]?.function?.name, 'image_generator');
      assert.deepEqual(JSON.parse(call.tool_calls[0].function.arguments), { prompt, n: 2 });
      assert.equal(result.role, 'tool');
      assert.equal(result.tool_call_id, call.tool_calls[0].id);

      // Stored with the message; after a reload the thumbnails are described by their prompt.
      const detail = await api.get(`/api/conversations/${conversation.id}?images=url`);
      assert.equal(detail.messages.at(-1).images.length, 2);
      await page.reload({ waitUntil: 'networkidle' });
      assert.deepEqual(await waitForImages(page, 2), [prompt, prompt], 'alt = prompt after a reload');
      await waitForThumbnailsLoaded(page);
    },
  },
  {
    // Guards a fixed bug: a live thumbnail's alt was "Generated image" until a reload.
    name: 'thumbnails painted live are described by their prompt',
    async run({ page, baseUrl, api }) {
      const conversation = await api.createConversation({ internal_tools: { image_creation: true } });
      await gotoApp(page, baseUrl, `/c/${conversation.id}`);
      const { text, prompt } = paintRequest(1);
      await sendWithEnter(page, text);
      await waitForReplies(page, 1);
      const alts = await waitForImages(page, 1);
      assert.deepEqual(alts, [prompt], `the live thumbnail's alt should be the prompt; got ${JSON.stringify(alts)}`);
    },
  },
  {
    // Small local LLMs often answer in words instead of calling the tool: Paint mode makes the
    // call certain by naming the tool in `tool_choice`.
    name: 'Paint mode names the image tool in tool_choice; off, it is not sent',
    async run({ page, baseUrl, api, llm }) {
      const conversation = await api.createConversation({ internal_tools: { image_creation: true } });
      await gotoApp(page, baseUrl, `/c/${conversation.id}`);
      const paint = page.locator('button.paint-toggle');
      await paint.waitFor({ state: 'visible' });
      assert.equal(await paint.getAttribute('aria-pressed'), 'false');
      await paint.click();
      await waitFor(async () => (await paint.getAttribute('aria-pressed')) === 'true', 5_000, {
        what: 'the Paint toggle to be pressed',
      });
      const painted = unique('a fox in the snow');
      await sendWithEnter(page, painted);
      const [forced] = await llm.waitForRequest(painted);
      assert.deepEqual(forced.body.tool_choice, { type: 'function', function: { name: 'image_generator' } });
      await waitForReplies(page, 1);
      await paint.click();
      const plain = unique('just words');
      await sendWithEnter(page, plain);
      const [free] = await llm.waitForRequest(plain);
      assert.equal(free.body.tool_choice ?? 'auto', 'auto', 'without Paint mode the LLM decides');
    },
  },
];

/** A message that makes the scripted LLM call image_generator; the prompt it will send. */
function paintRequest(n = 2) {
  const tag = Math.random().toString(36).slice(2, 8);
  const count = n === 1 ? '1 image' : `${n} images`;
  return { tag, text: `Paint ${count} of a red fox in the snow ${tag}`, prompt: `Paint a red fox in the snow ${tag}` };
}

/** Opens the Internal tools menu and turns Image creation on; waits for the notification. */
async function turnOnImageCreation(page) {
  await page.getByRole('button', { name: 'Internal tools' }).click();
  const toggle = page.getByRole('switch', { name: 'Image creation' });
  await waitFor(async () => (await toggle.getAttribute('aria-checked')) === 'false', 5_000, {
    what: 'the Image creation switch to show "off"',
  });
  await toggle.click();
  await waitForText(page.getByRole('status').filter({ hasText: 'Internal tools' }), /Internal tools configuration updated/);
  await waitFor(async () => (await toggle.getAttribute('aria-checked')) === 'true', 5_000, {
    what: 'the Image creation switch to show "on"',
  });
}

/** Waits for `n` finished thumbnails; returns their alt texts. */
async function waitForImages(page, n, timeout = 15_000) {
  const images = page.locator('figure.image-tile img');
  let seen = [];
  try {
    await waitFor(
      async () => (seen = await images.evaluateAll((list) => list.map((img) => img.getAttribute('alt')))).length === n,
      timeout,
      { what: `${n} thumbnail(s)` },
    );
  } catch (error) {
    error.message += `; thumbnails: ${JSON.stringify(seen)}`;
    throw error;
  }
  return seen;
}

async function waitForThumbnailsLoaded(page) {
  await waitFor(
    () => page.locator('figure.image-tile img').evaluateAll((list) => list.every((img) => img.complete && img.naturalWidth > 0)),
    5_000,
    { what: 'the thumbnails to load' },
  );
}
