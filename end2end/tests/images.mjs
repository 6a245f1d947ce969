// Painting in a conversation, the whole way a person goes: turn Image creation on, ask for 3
// images, watch the placeholders fill, page through them fullscreen, download them, delete one
// and find the rest after a reload. One test, because every step builds on the one before.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
  assert,
  gotoApp,
  newConversation,
  normalize,
  screenshot,
  sendWithEnter,
  tag,
  ui,
  waitFor,
  waitForChecked,
  waitForCount,
  waitForIdle,
  waitForText,
} from '../support/helpers.mjs';
import { TEST_MODEL_TOML } from '../support/server.mjs';

// What a default request paints with (see TEST_MODEL_TOML).
const DEFAULT_STEPS = TEST_MODEL_TOML.match(/^auto = (\d+)$/m)[1];
const DEFAULT_SIZE = TEST_MODEL_TOML.match(/^default_size = "(\d+)x(\d+)"$/m).slice(1, 3);

const PNG = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const JPEG = [0xff, 0xd8, 0xff];

/** Finished tiles (not placeholders). */
const tiles = (page) => page.locator('figure.image-tile:not(.placeholder)');
/** The thumbnails' <img> elements. */
const thumbs = (page) => page.locator('figure.image-tile:not(.placeholder) img');
const placeholders = (page) => page.locator('figure.image-tile.placeholder');

/** "Painting, step 3 of 40: prompt" → {step: 3, steps: 40}; null while queued. */
function parseStep(label) {
  const m = /^Painting, step (\d+) of (\d+): /.exec(label ?? '');
  return m ? { step: Number(m[1]), steps: Number(m[2]) } : null;
}

/** Records every placeholder label and whether a live preview <img> showed, from now on. */
async function recordPainting(page) {
  await page.evaluate(() => {
    const seen = { labels: [], previews: 0, maxPlaceholders: 0, notImg: 0 };
    window.__painting = seen;
    const note = () => {
      const list = document.querySelectorAll('figure.image-tile.placeholder');
      seen.maxPlaceholders = Math.max(seen.maxPlaceholders, list.length);
      for (const figure of list) {
        const label = figure.getAttribute('aria-label');
        if (seen.labels[seen.labels.length - 1] !== label) seen.labels.push(label);
        if (figure.getAttribute('role') !== 'img') seen.notImg++;
        if (figure.querySelector('img.preview[src^="data:image/"]')) seen.previews++;
      }
    };
    new MutationObserver(note).observe(document.body, { subtree: true, childList: true, attributes: true });
  });
  return () => page.evaluate(() => window.__painting);
}

/** The alt texts of the finished thumbnails, once there are `n`. */
async function waitForThumbnails(page, n, timeout = 20_000) {
  let seen = [];
  try {
    await waitFor(
      async () => (seen = await thumbs(page).evaluateAll((l) => l.map((img) => img.getAttribute('alt')))).length === n,
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
    () => thumbs(page).evaluateAll((l) => l.length > 0 && l.every((img) => img.complete && img.naturalWidth > 0)),
    10_000,
    { what: 'the thumbnails to load' },
  );
}

/** `document.activeElement` as `{id, role, label}`. */
function focused(page) {
  return page.evaluate(() => {
    const el = document.activeElement;
    return { id: el?.id ?? '', role: el?.getAttribute('role') ?? '', label: el?.getAttribute('aria-label') ?? '', tag: el?.tagName ?? '' };
  });
}

/** Hovers `tile` and waits for its actions to show (they fade in on hover and focus). */
async function showActions(tile) {
  await tile.hover();
  await waitFor(
    () => tile.locator('.image-actions').evaluate((el) => getComputedStyle(el).opacity === '1'),
    3_000,
    { what: "the tile's actions to show on hover" },
  );
}

/**
 * Uses one of a tile's actions from the keyboard: focus (which shows the actions) and Enter.
 * Not a mouse click: with 5 actions in a ~160 px tile, "Fullscreen" and "Download PNG" lie
 * outside the tile and are clipped (see the test "the actions of an image tile fit inside it").
 */
async function activate(page, action) {
  await action.focus();
  await page.keyboard.press('Enter');
}

/** Downloads with a link of `tile`; returns {name, bytes, href, hasDownloadAttribute}. */
async function download(page, tile, linkName, dir) {
  const link = tile.getByRole('link', { name: linkName, exact: true });
  const href = await link.getAttribute('href');
  const hasDownloadAttribute = (await link.getAttribute('download')) !== null;
  const [file] = await Promise.all([page.waitForEvent('download', { timeout: 10_000 }), activate(page, link)]);
  const name = file.suggestedFilename();
  const target = path.join(dir, name || `download-${linkName}`);
  await file.saveAs(target);
  const failure = await file.failure();
  assert.equal(failure, null, `the ${linkName} download failed: ${failure}`);
  return { name, bytes: fs.readFileSync(target), href, hasDownloadAttribute };
}

function startsWith(bytes, signature) {
  return signature.every((b, i) => bytes[i] === b);
}

export const tests = [
  {
    name: 'paint 3 images, view them fullscreen, download, delete one, reload',
    timeout: 90_000,
    async run({ page, baseUrl, llm, api }) {
      await gotoApp(page, baseUrl, '/');
      const id = await newConversation(page);

      // --- Internal tools: turn Image creation on.
      const gear = page.getByRole('button', { name: 'Internal tools' });
      await gear.click();
      const popup = page.getByRole('dialog', { name: 'Internal tools' });
      await popup.waitFor({ state: 'visible' });
      assert.equal(await gear.getAttribute('aria-expanded'), 'true', 'the gear says its popup is open');
      const toggle = popup.getByRole('switch', { name: 'Image creation' });
      await waitForChecked(toggle, 'false');
      assert.equal(await toggle.isDisabled(), false, 'the switch is enabled: an image model exists');
      await popup.getByRole('img', { name: 'Enable AI-powered image generation capabilities' }).waitFor();
      await toggle.click();
      await waitForText(ui.toast(page, 'status', 'Internal tools'), 'Internal tools configuration updated ×');
      await waitForChecked(toggle, 'true');
      await page.getByText('Image creation on', { exact: true }).waitFor();
      await screenshot(page, 'screen-tools-popup');
      assert.equal((await api.get(`/api/conversations/${id}`)).internal_tools.image_creation, true, 'saved on the server');
      await page.keyboard.press('Escape');
      await popup.waitFor({ state: 'hidden' });

      // --- Ask for 3 images; watch the placeholders and their progress.
      const t = tag();
      const prompt = `Paint a lighthouse at dusk ${t}`;
      const painting = await recordPainting(page);
      const started = Date.now();
      await sendWithEnter(page, `Paint 3 images of a lighthouse at dusk ${t}`);

      // Read in one go in the page: a placeholder is redrawn at every step.
      const readPlaceholders = () =>
        placeholders(page).evaluateAll((list) =>
          list.map((f) => ({
            role: f.getAttribute('role'),
            label: f.getAttribute('aria-label'),
            progress: f.querySelector('progress')?.getAttribute('value') ?? null,
          })));
      const labelPattern = new RegExp(`^(Painting, step \\d+ of \\d+|Queued): ${prompt}$`);
      let firstStep = null;
      try {
        firstStep = await waitFor(
          async () => {
            const list = await readPlaceholders();
            if (list.length === 3 && list.every((p) => p.role === 'img' && labelPattern.test(p.label))) {
              const step = list.map((p) => parseStep(p.label)).find(Boolean);
              if (step) return step;
            }
            // On a busy machine the polls can miss the whole painting; the page's recorder saw it.
            const rec = await painting();
            if (rec.maxPlaceholders !== 3 || rec.notImg > 0 || !rec.labels.every((l) => labelPattern.test(l))) return null;
            return rec.labels.map(parseStep).find(Boolean) ?? null;
          },
          15_000,
          { what: '3 placeholders (role img, named by their step and the prompt), one of them painting' },
        );
      } catch (error) {
        error.message += `; recorded: ${JSON.stringify(await painting()).slice(0, 600)}`;
        throw error;
      }
      // The page's recorder saw the painting from its first step; the poll above may have come
      // as late as the last one, after which no step could pass it.
      const earliest = (await painting()).labels.map(parseStep).find(Boolean);
      if (earliest && earliest.step < firstStep.step) firstStep = earliest;
      await screenshot(page, 'screen-chat-painting');
      // The step advances while we watch (one placeholder per image, all of them the same batch).
      // Read from the page's recorder: on a busy machine the screenshot above can take until the
      // last steps, and the placeholders are gone by the next poll.
      const later = await waitFor(
        async () => (await painting()).labels.map(parseStep).find((s) => s && s.step > firstStep.step),
        15_000,
        { what: `a placeholder's step to pass ${firstStep.step}` },
      );
      assert.equal(later.steps, firstStep.steps, 'the number of steps stays the same');
      const progress = (await readPlaceholders())[0]?.progress ?? '(finished)';

      const alts = await waitForThumbnails(page, 3);
      const paintMs = Date.now() - started;
      assert.deepEqual(alts, [prompt, prompt, prompt], 'alt = the prompt (without "3 images of")');
      await waitForText(ui.assistantArticles(page).last().locator('.markdown'), 'Here are your images.');
      await waitForIdle(page);
      await waitForCount(placeholders(page), 0);
      await waitForThumbnailsLoaded(page);
      await waitForText(ui.userArticles(page).last(), `Paint 3 images of a lighthouse at dusk ${t}`);
      await screenshot(page, 'screen-chat-with-images');

      const seen = await painting();
      const stepsSeen = [...new Set(seen.labels.map(parseStep).filter(Boolean).map((s) => s.step))];
      console.log(
        `    painting 3 images took ${paintMs} ms in the browser; ${stepsSeen.length} distinct steps seen `
          + `(of ${firstStep.steps}), a preview seen in ${seen.previews} DOM updates, progress value ${progress}`,
      );
      assert.equal(seen.maxPlaceholders, 3, 'one placeholder per image');
      assert.ok(stepsSeen.length >= 2, `the progress advanced; steps seen: ${JSON.stringify(stepsSeen)}`);
      assert.ok(seen.previews > 0, 'a live preview showed inside a placeholder');

      // The thumbnails are buttons that name the image and carry its id.
      const openButtons = page.getByRole('button', { name: `Open image: ${prompt}`, exact: true });
      await waitForCount(openButtons, 3);
      const ids = await openButtons.evaluateAll((l) => l.map((b) => b.id));
      assert.ok(ids.every((x) => /^thumb-.+/.test(x)), `thumbnail button ids: ${JSON.stringify(ids)}`);

      // --- Fullscreen: open the first, page to the second with →, close with Escape.
      await openButtons.first().click();
      const viewer = page.getByRole('dialog', { name: 'Image viewer' });
      await viewer.waitFor({ state: 'visible' });
      assert.equal(await viewer.getAttribute('aria-modal'), 'true');
      const position = viewer.locator('.viewer-position');
      await waitForText(position, '1 / 3');
      const big = viewer.getByRole('img', { name: prompt, exact: true });
      const firstSrc = await big.getAttribute('src');
      assert.equal(firstSrc, `/api/images/${ids[0].slice('thumb-'.length)}.png`, 'the viewer shows the full PNG of the first');
      await waitForText(viewer.locator('.viewer-prompt'), prompt);
      // Settings of the image.
      const settings = await viewer.locator('dl.settings').evaluate((dl) => {
        const out = {};
        for (const dt of dl.querySelectorAll('dt')) out[dt.textContent.trim()] = dt.nextElementSibling?.textContent.trim();
        return out;
      });
      assert.deepEqual(Object.keys(settings), ['Model', 'Size', 'Seed', 'Steps', 'Sampler', 'Guidance']);
      assert.equal(settings.Model, 'tiny-sd', `settings: ${JSON.stringify(settings)}`);
      assert.equal(settings.Size, DEFAULT_SIZE.join('×'));
      assert.equal(settings.Steps, DEFAULT_STEPS);
      assert.match(settings.Sampler, /^heun\b/);
      assert.match(settings.Seed, /^\d+$/);
      assert.equal(settings.Guidance, '7.5');
      assert.ok(await viewer.getByRole('link', { name: 'PNG' }).isVisible(), 'a PNG download link');
      assert.ok(await viewer.getByRole('link', { name: 'JPG' }).isVisible(), 'a JPG download link');
      await waitFor(() => big.evaluate((img, w) => img.complete && img.naturalWidth === w, Number(DEFAULT_SIZE[0])), 5_000, {
        what: `the full image to load at ${DEFAULT_SIZE[0]} px`,
      });
      const focusInViewer = await focused(page);
      assert.equal(focusInViewer.label, 'Image viewer', `the viewer takes focus; focus is on ${JSON.stringify(focusInViewer)}`);
      await screenshot(page, 'screen-image-viewer');

      await page.keyboard.press('ArrowRight');
      await waitForText(position, '2 / 3');
      const secondSrc = await big.getAttribute('src');
      assert.equal(secondSrc, `/api/images/${ids[1].slice('thumb-'.length)}.png`, 'the image changed to the second');
      assert.notEqual(secondSrc, firstSrc);
      await viewer.getByRole('button', { name: 'Next image' }).click();
      await waitForText(position, '3 / 3');
      await viewer.getByRole('button', { name: 'Previous image' }).click();
      await waitForText(position, '2 / 3');
      await viewer.focus();
      await page.keyboard.press('ArrowLeft');
      await waitForText(position, '1 / 3');
      await page.keyboard.press('ArrowLeft');
      await waitForText(position, '3 / 3', 3_000).catch((e) => {
        throw new Error(`← on the first image should wrap to the last: ${e.message}`);
      });
      await page.keyboard.press('ArrowRight');
      await waitForText(position, '1 / 3');
      await page.keyboard.press('ArrowRight');
      await waitForText(position, '2 / 3');

      await page.keyboard.press('Escape');
      await viewer.waitFor({ state: 'hidden' });
      await waitFor(async () => (await focused(page)).id === ids[0], 3_000, {
        what: `focus back on the first thumbnail's button (#${ids[0]})`,
      }).catch(async (e) => {
        throw new Error(`${e.message}; focus is on ${JSON.stringify(await focused(page))}`);
      });

      // The tile's "Fullscreen" opens it too, and a click on the backdrop closes it.
      const secondTile = tiles(page).nth(1);
      await activate(page, secondTile.getByRole('button', { name: 'Fullscreen', exact: true }));
      await waitForText(position, '2 / 3');
      await page.mouse.click(8, 8); // the backdrop, outside the dialog
      await viewer.waitFor({ state: 'hidden' });
      await waitFor(async () => (await focused(page)).id === ids[1], 3_000, {
        what: `focus back on the second thumbnail's button (#${ids[1]})`,
      });

      // --- Downloads from the first tile's actions.
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'easel-e2e-downloads-'));
      try {
        const firstTile = tiles(page).first();
        const png = await download(page, firstTile, 'Download PNG', dir);
        assert.match(png.href, /^\/api\/images\/[^/]+\.png\?download=1$/);
        assert.ok(png.hasDownloadAttribute, 'the PNG link has a download attribute');
        assert.match(png.name, /\.png$/, `suggested file name ${JSON.stringify(png.name)}`);
        assert.ok(startsWith(png.bytes, PNG), `PNG signature; got ${png.bytes.subarray(0, 8).toString('hex')}`);
        const jpg = await download(page, firstTile, 'Download JPG', dir);
        assert.match(jpg.href, /^\/api\/images\/[^/]+\.jpg\?download=1$/);
        assert.ok(jpg.hasDownloadAttribute, 'the JPG link has a download attribute');
        assert.match(jpg.name, /\.jpe?g$/, `suggested file name ${JSON.stringify(jpg.name)}`);
        assert.ok(jpg.name.endsWith('.jpg'), `the JPG's suggested name ends in .jpg: ${jpg.name}`);
        assert.ok(startsWith(jpg.bytes, JPEG), `JPEG signature; got ${jpg.bytes.subarray(0, 3).toString('hex')}`);
        console.log(`    downloads: ${png.name} (${png.bytes.length} bytes), ${jpg.name} (${jpg.bytes.length} bytes)`);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }

      // --- Delete the third image (with confirmation).
      const thirdTile = tiles(page).nth(2);
      await showActions(thirdTile);
      await thirdTile.getByRole('button', { name: 'Delete image', exact: true }).click();
      const confirm = page.getByRole('alertdialog');
      await confirm.waitFor({ state: 'visible' });
      await waitForText(confirm.locator('h2'), 'Delete image?');
      await confirm.getByRole('button', { name: 'Delete', exact: true }).click();
      await confirm.waitFor({ state: 'hidden' });
      await waitForCount(thumbs(page), 2);
      await ui.toast(page, 'status', 'Image deleted').waitFor();
      const remaining = await openButtons.evaluateAll((l) => l.map((b) => b.id));
      assert.deepEqual(remaining, ids.slice(0, 2), 'the third is gone, the first two stay');
      const detail = await api.get(`/api/conversations/${id}?images=url`);
      assert.deepEqual(
        detail.messages.at(-1).images.map((i) => `thumb-${i.id}`),
        ids.slice(0, 2),
        'deleted on the server too',
      );

      // --- Reload: the same history.
      await page.reload({ waitUntil: 'networkidle' });
      assert.deepEqual(await waitForThumbnails(page, 2), [prompt, prompt], 'the 2 images, described by their prompt');
      await waitForThumbnailsLoaded(page);
      await waitForText(ui.userArticles(page).last(), `Paint 3 images of a lighthouse at dusk ${t}`);
      await waitForText(ui.assistantArticles(page).last().locator('.markdown'), 'Here are your images.');
      assert.equal(await ui.userArticles(page).count(), 1);
      assert.equal(await ui.assistantArticles(page).count(), 1);
      assert.deepEqual(await openButtons.evaluateAll((l) => l.map((b) => b.id)), ids.slice(0, 2));
      await page.getByText('Image creation on', { exact: true }).waitFor();
      assert.equal(normalize(await page.getByRole('heading', { level: 1 }).innerText()), `Paint 3 images of a lighthouse at dusk ${t}`);

      // What the LLM saw: the tool offered, one call with n = 3, and its result.
      const sent = llm.chatRequestsMentioning(t);
      assert.equal(sent.length, 2, 'two rounds: the call, then the answer');
      const call = sent[1].body.messages.at(-2).tool_calls[0];
      assert.deepEqual(JSON.parse(call.function.arguments), { prompt, n: 3 });
      const result = JSON.parse(sent[1].body.messages.at(-1).content);
      assert.equal(result.images.length, 3);
    },
  },
];

tests.push({
  // Fails with the current build: see end2end/README.md "Known app bugs".
  name: 'the actions of an image tile fit inside it and work with the mouse',
  async run({ page, baseUrl, llm, api }) {
    const conversation = await api.createConversation({ internal_tools: { image_creation: true } });
    const t = tag();
    const prompt = `A small red boat ${t}`;
    llm.respondWhen(t, { kind: 'tool', name: 'image_generator', arguments: { prompt, n: 1, quality: 'low', size: '64x64' } });
    const detail = await api.sendAndWait(conversation.id, `Paint one picture ${t}`);
    const [image] = detail.messages.at(-1).images;
    assert.ok(image, 'one image was painted');

    await gotoApp(page, baseUrl, `/c/${conversation.id}`);
    const tile = tiles(page).first();
    await tile.waitFor();
    await showActions(tile);
    const box = await tile.boundingBox();
    const names = ['Fullscreen', 'Download PNG', 'Download JPG', 'Reuse settings', 'Delete image'];
    const outside = [];
    for (const name of names) {
      const action = tile.getByRole(name.startsWith('Download') ? 'link' : 'button', { name, exact: true });
      const b = await action.boundingBox();
      if (!b || b.x < box.x || b.y < box.y || b.x + b.width > box.x + box.width || b.y + b.height > box.y + box.height) {
        outside.push(`${name} at x ${Math.round(b?.x)}–${Math.round(b?.x + b?.width)}`);
      }
    }

    // "Reuse settings" fills the message box with the prompt and the seed.
    await tile.getByRole('button', { name: 'Reuse settings', exact: true }).click();
    await waitFor(async () => (await ui.messageBox(page).inputValue()) === `${prompt}, seed ${image.metadata.seed}`, 3_000, {
      what: 'the message box to hold "<prompt>, seed <seed>"',
    });
    await ui.toast(page, 'status', 'Prompt and seed copied to the message box').waitFor();
    assert.equal((await focused(page)).id, 'message-box', 'focus moves to the message box');

    assert.deepEqual(
      outside,
      [],
      `every action lies inside the ${Math.round(box.width)} px tile (x ${Math.round(box.x)}–${Math.round(box.x + box.width)}), `
        + `where a mouse can reach it; clipped: ${outside.join(', ')}`,
    );
    // And the mouse opens the viewer with "Fullscreen".
    await tile.getByRole('button', { name: 'Fullscreen', exact: true }).click({ timeout: 3_000 });
    await page.getByRole('dialog', { name: 'Image viewer' }).waitFor();
  },
});
