// The Image Studio page (/studio): the engine without a chat. Generating with chosen settings
// (style card, aspect ratio, count, the advanced sampling settings) with live progress, the
// results (arrows, strip, fullscreen, downloads), "View code" (and that its curl runs), editing
// (a painted mask, "Save mask", an upload with nothing painted), Randomize and Stop, "Send to
// chat", deleting from the gallery, and prompt enhancement through the LLM.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';

import {
  assert,
  gotoApp,
  normalize,
  screenshot,
  tag,
  ui,
  waitFor,
  waitForChecked,
  waitForCount,
  waitForText,
} from '../support/helpers.mjs';
import { startEasel } from '../support/server.mjs';

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const JPEG_SIGNATURE = [0xff, 0xd8, 0xff];
const CYBERPUNK_TEMPLATE = 'cyberpunk scene of ';

// ----- PNG in node (zlib only): enough for canvas output and the server's PNGs -----

function crc32(bytes) {
  let c = ~0;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

function chunk(type, data) {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'ascii');
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

/** An 8-bit RGB PNG of `width`×`height` whose pixels come from `pixel(x, y) → [r, g, b]`. */
function encodePng(width, height, pixel) {
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    const row = y * (width * 3 + 1);
    raw[row] = 0; // filter: none
    for (let x = 0; x < width; x++) raw.set(pixel(x, y), row + 1 + x * 3);
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8 bits, RGB, deflate, no filter, no interlace
  return Buffer.concat([
    Buffer.from(PNG_SIGNATURE),
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** Decodes an 8-bit, non-interlaced RGB/RGBA/gray(+alpha) PNG into RGBA: {width, height, rgba}. */
function decodePng(buffer) {
  assert.ok(startsWith(buffer, PNG_SIGNATURE), 'a PNG signature');
  let offset = 8;
  let header = null;
  const idat = [];
  while (offset < buffer.length) {
    const length = buffer.readUInt32BE(offset);
    const type = buffer.toString('ascii', offset + 4, offset + 8);
    const data = buffer.subarray(offset + 8, offset + 8 + length);
    if (type === 'IHDR') {
      header = {
        width: data.readUInt32BE(0),
        height: data.readUInt32BE(4),
        depth: data[8],
        colorType: data[9],
        interlace: data[12],
      };
    } else if (type === 'IDAT') {
      idat.push(data);
    } else if (type === 'IEND') {
      break;
    }
    offset += 12 + length;
  }
  const { width, height, depth, colorType, interlace } = header;
  const channels = { 0: 1, 2: 3, 4: 2, 6: 4 }[colorType];
  assert.ok(depth === 8 && channels && interlace === 0, `a PNG this reader knows: ${JSON.stringify(header)}`);
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const pixels = Buffer.alloc(stride * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const out = y * stride;
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? pixels[out + i - channels] : 0;
      const b = y > 0 ? pixels[out - stride + i] : 0;
      const c = y > 0 && i >= channels ? pixels[out - stride + i - channels] : 0;
      let v = line[i];
      if (filter === 1) v += a;
      else if (filter === 2) v += b;
      else if (filter === 3) v += (a + b) >> 1;
      else if (filter === 4) {
        const p = a + b - c;
        const pa = Math.abs(p - a);
        const pb = Math.abs(p - b);
        const pc = Math.abs(p - c);
        v += pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      pixels[out + i] = v & 0xff;
    }
  }
  const rgba = Buffer.alloc(width * height * 4);
  for (let p = 0; p < width * height; p++) {
    const s = p * channels;
    const [r, g, b, alpha] =
      channels === 4 ? [pixels[s], pixels[s + 1], pixels[s + 2], pixels[s + 3]]
        : channels === 3 ? [pixels[s], pixels[s + 1], pixels[s + 2], 255]
          : channels === 2 ? [pixels[s], pixels[s], pixels[s], pixels[s + 1]]
            : [pixels[s], pixels[s], pixels[s], 255];
    rgba.set([r, g, b, alpha], p * 4);
  }
  return { width, height, rgba };
}

function startsWith(bytes, signature) {
  return signature.every((b, i) => bytes[i] === b);
}

// ----- the Studio's parts -----

const studio = {
  promptBox: (page) => page.getByRole('textbox', { name: 'Prompt', exact: true }),
  styleCard: (page, name) => page.getByRole('radiogroup', { name: 'Style' }).getByRole('radio', { name, exact: true }),
  aspect: (page, name) => page.getByRole('radiogroup', { name: 'Aspect ratio' }).getByRole('radio', { name, exact: true }),
  exactSize: (page) => page.getByRole('combobox', { name: 'Exact size' }),
  count: (page) => page.getByRole('slider', { name: /^Images: \d+$/ }),
  // The advanced fields are named by their label and the info icon's explanation.
  field: (page, role, label) => page.getByRole(role, { name: new RegExp(`^${label}\\b`) }),
  generate: (page) => page.getByRole('button', { name: 'Generate', exact: true }),
  editImage: (page) => page.getByRole('button', { name: 'Edit image', exact: true }),
  stop: (page) => page.getByRole('button', { name: 'Stop', exact: true }),
  status: (page) => page.locator('.studio-actions').getByRole('status'),
  results: (page) => page.getByRole('region', { name: 'Results' }),
  openFullscreen: (page) => page.getByRole('button', { name: 'Open fullscreen', exact: true }),
  placeholder: (page) => page.locator('figure.result-main.placeholder'),
  strip: (page) => page.getByRole('list', { name: 'Results' }),
  // A strip entry is named "Result N" (its role is listitem in this build, see the report).
  stripItem: (page, n) => page.getByRole('list', { name: 'Results' }).getByLabel(`Result ${n}`, { exact: true }),
  stripItems: (page) => page.getByRole('list', { name: 'Results' }).getByLabel(/^Result \d+$/),
  gallery: (page) => page.getByRole('region', { name: 'Gallery' }),
  viewer: (page) => page.getByRole('dialog', { name: 'Image viewer' }),
};

async function openStudio(page, baseUrl) {
  await gotoApp(page, baseUrl, '/studio');
  await page.getByRole('heading', { level: 1, name: 'Image Studio' }).waitFor();
}

async function openAdvanced(page) {
  const details = page.locator('details.advanced');
  if (!(await details.evaluate((d) => d.open))) await details.locator('summary').click();
  await studio.field(page, 'spinbutton', 'Steps').waitFor({ state: 'visible' });
}

/**
 * Fills the form. Every field is optional: prompt, style (a card's name), aspect, exactSize, n,
 * and in Advanced: sampler, schedule, steps, guidance, seed, preview.
 */
async function fillForm(page, o) {
  if (o.prompt !== undefined) {
    await studio.promptBox(page).fill(o.prompt);
    await waitForText(page.locator('.studio-form .counter'), `${[...o.prompt].length}/2000`);
  }
  if (o.style) {
    await studio.styleCard(page, o.style).click();
    await waitForChecked(studio.styleCard(page, o.style), 'true');
  }
  if (o.aspect) {
    await studio.aspect(page, o.aspect).click();
    await waitForChecked(studio.aspect(page, o.aspect), 'true');
  }
  if (o.exactSize) await studio.exactSize(page).selectOption(o.exactSize);
  if (o.n) {
    await studio.count(page).fill(String(o.n));
    await page.getByRole('slider', { name: `Images: ${o.n}`, exact: true }).waitFor();
  }
  const advanced = ['sampler', 'schedule', 'steps', 'guidance', 'seed', 'preview'].filter((k) => o[k] !== undefined);
  if (advanced.length > 0) await openAdvanced(page);
  if (o.sampler) await studio.field(page, 'combobox', 'Sampler').selectOption(o.sampler);
  if (o.schedule) await studio.field(page, 'combobox', 'Schedule').selectOption(o.schedule);
  if (o.steps !== undefined) await studio.field(page, 'spinbutton', 'Steps').fill(String(o.steps));
  if (o.guidance !== undefined) await studio.field(page, 'spinbutton', 'Guidance').fill(String(o.guidance));
  if (o.seed !== undefined) await studio.field(page, 'spinbutton', 'Seed').fill(String(o.seed));
  if (o.preview) await studio.field(page, 'combobox', 'Preview').selectOption(o.preview);
}

/** Waits for the POST that starts a job (call before the click); resolves to {body, jobId}. */
function jobStarted(page) {
  return page
    .waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/api/studio/generations', {
      timeout: 15_000,
    })
    .then(async (response) => {
      const json = await response.json().catch(() => null);
      assert.equal(response.status(), 202, `POST /api/studio/generations answered ${response.status()}: ${JSON.stringify(json)}`);
      return { body: response.request().postDataJSON(), jobId: json.job_id };
    });
}

/** Waits until no job runs (Generate/Edit image back, no Stop) and `n` results are shown. */
async function waitForResults(page, n, timeout = 20_000) {
  await waitFor(
    async () => (await studio.stop(page).count()) === 0
      && (await studio.generate(page).or(studio.editImage(page)).count()) === 1,
    timeout,
    { what: 'the job to end (Generate back, no Stop)' },
  );
  await waitForCount(studio.stripItems(page), n, timeout);
  await waitForCount(studio.placeholder(page), 0);
  await waitFor(
    () => studio.openFullscreen(page).locator('img').evaluate((img) => img.complete && img.naturalWidth > 0),
    10_000,
    { what: 'the selected result to load' },
  );
}

/** The gallery's images (GET /api/studio/images) whose request (tool_arguments) mentions `text`. */
async function galleryWith(api, text) {
  const list = await api.get('/api/studio/images');
  return list.filter((i) => JSON.stringify(i.metadata?.tool_arguments ?? {}).includes(text));
}

/** Waits for `n` gallery images mentioning `text`; returns them. */
async function waitForGallery(api, text, n, timeout = 10_000) {
  let seen = [];
  try {
    await waitFor(async () => (seen = await galleryWith(api, text)).length === n, timeout, {
      what: `${n} gallery image(s) mentioning ${text}`,
    });
  } catch (error) {
    error.message += `; found ${seen.length}`;
    throw error;
  }
  return seen;
}

/** Generates with the form as filled; returns {body, jobId} of the job. */
async function generate(page, n, button = studio.generate(page)) {
  const started = jobStarted(page);
  await button.click();
  const job = await started;
  await waitForResults(page, n);
  return job;
}

/** Records the status texts and the placeholders (labels, previews) from now on, in the page. */
async function recordProgress(page) {
  await page.evaluate(() => {
    const seen = { statuses: [], labels: [], previews: 0, stripPreviews: 0, maxStrip: 0 };
    window.__studio = seen;
    const note = () => {
      const status = document.querySelector('.studio-actions [role="status"]')?.textContent.trim() ?? '';
      if (status && seen.statuses.at(-1) !== status) seen.statuses.push(status);
      for (const figure of document.querySelectorAll('figure.result-main.placeholder')) {
        const label = figure.getAttribute('aria-label');
        if (seen.labels.at(-1) !== label) seen.labels.push(label);
        if (figure.getAttribute('role') === 'img' && figure.querySelector('img.preview[src^="data:image/"]')) seen.previews++;
      }
      const strip = document.querySelectorAll('.strip [aria-label^="Result "]');
      seen.maxStrip = Math.max(seen.maxStrip, strip.length);
      if (document.querySelector('figure.result-main.placeholder') && document.querySelector('.strip img[src^="data:image/"]')) {
        seen.stripPreviews++;
      }
    };
    new MutationObserver(note).observe(document.body, { subtree: true, childList: true, attributes: true, characterData: true });
  });
  return () => page.evaluate(() => window.__studio);
}

/** "Step 3 of 40" → 3 */
function stepOf(text) {
  const m = /^Step (\d+) of (\d+)$/.exec(text ?? '');
  return m ? { step: Number(m[1]), steps: Number(m[2]) } : null;
}

/** Clicks `link` (or runs `action`) and saves the download it starts; returns {name, bytes}. */
async function download(page, action, dir) {
  const [file] = await Promise.all([page.waitForEvent('download', { timeout: 10_000 }), action()]);
  const name = file.suggestedFilename();
  const target = path.join(dir, `${Date.now()}-${name || 'download'}`);
  await file.saveAs(target);
  const failure = await file.failure();
  assert.equal(failure, null, `the download of ${name} failed: ${failure}`);
  return { name, bytes: fs.readFileSync(target) };
}

function tempDir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'easel-e2e-studio-'));
}

/** The element with focus: {id, label, tag}. */
function focused(page) {
  return page.evaluate(() => {
    const el = document.activeElement;
    return { id: el?.id ?? '', label: el?.getAttribute('aria-label') ?? '', tag: el?.tagName ?? '' };
  });
}

/** Paints a stroke with the mouse over the mask canvas, from (fx, fy) to (tx, ty) in fractions. */
async function paintStroke(page, [fx, fy], [tx, ty]) {
  const canvas = page.locator('#mask-canvas');
  await canvas.scrollIntoViewIfNeeded();
  const box = await canvas.boundingBox();
  await page.mouse.move(box.x + box.width * fx, box.y + box.height * fy);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * tx, box.y + box.height * ty, { steps: 12 });
  await page.mouse.up();
}

/** Mean absolute RGB difference of two same-size RGBA images over the pixels where `where(x, y)`. */
function meanDiff(a, b, where) {
  let sum = 0;
  let n = 0;
  for (let y = 0; y < a.height; y++) {
    for (let x = 0; x < a.width; x++) {
      if (!where(x, y)) continue;
      const i = (y * a.width + x) * 4;
      sum += Math.abs(a.rgba[i] - b.rgba[i]) + Math.abs(a.rgba[i + 1] - b.rgba[i + 1]) + Math.abs(a.rgba[i + 2] - b.rgba[i + 2]);
      n += 3;
    }
  }
  return n ? sum / n : NaN;
}

async function imageBytes(baseUrl, id) {
  const res = await fetch(new URL(`/api/images/${id}.png`, baseUrl));
  assert.equal(res.status, 200, `GET /api/images/${id}.png`);
  return Buffer.from(await res.arrayBuffer());
}

/** Makes one small image through the Studio's API (fast: 64×64, 4 steps); returns it from the gallery. */
async function makeImage(api, baseUrl, prompt) {
  const started = await api.post('/api/studio/generations', { prompt, n: 1, size: '64x64', steps: 4, preview: 'none' });
  const events = await (await fetch(new URL(`/api/studio/jobs/${started.job_id}/events`, baseUrl))).text();
  assert.match(events, /event: run\.finished/, `the job finished: ${events.slice(-300)}`);
  const [image] = await waitForGallery(api, prompt, 1);
  return image;
}

// ----- the tests -----

export const tests = [
  {
    name: 'generate 2 images with a style, 16:9, sampler, schedule, steps, guidance and seed; page, fullscreen, download',
    timeout: 60_000,
    async run({ page, baseUrl, api }) {
      await openStudio(page, baseUrl);
      const t = tag();
      const prompt = `a rainy alley with a noodle stand ${t}`;
      assert.equal(await studio.field(page, 'combobox', 'Model').inputValue(), 'tiny-sd', 'the default image model is preselected');
      await waitForChecked(studio.styleCard(page, 'Auto'), 'true');
      await fillForm(page, {
        prompt,
        style: 'Cyberpunk',
        aspect: '16:9',
        n: 2,
        sampler: 'dpm++2m',
        schedule: 'karras',
        steps: 150,
        guidance: 5,
        seed: 1234,
      });
      await waitForChecked(studio.styleCard(page, 'Auto'), 'false');
      // The "Exact size" select tells the size the ratio gives.
      const fromRatio = await studio.exactSize(page).locator('option').first().innerText();
      const [, rw, rh] = /^From the ratio \((\d+)x(\d+)\)$/.exec(fromRatio) ?? [];
      assert.ok(rw && Math.abs(rw / rh - 16 / 9) < 0.05, `the first option gives a 16:9 size: ${fromRatio}`);
      // Every advanced field explains itself with an info icon.
      for (const label of ['Sampler', 'Schedule', 'Steps', 'Guidance', 'Seed', 'Preview']) {
        const tip = page.locator('details.advanced .label-with-tip', { hasText: new RegExp(`^${label}`) }).getByRole('img');
        assert.ok((await tip.getAttribute('aria-label'))?.length > 10, `${label} has an info icon with an explanation`);
      }

      const progress = await recordProgress(page);
      const started = jobStarted(page);
      const t0 = Date.now();
      await studio.generate(page).click();
      const job = await started;
      assert.deepEqual(
        {
          prompt: job.body.prompt,
          n: job.body.n,
          size: job.body.size,
          style: job.body.style,
          sampler: job.body.sampler,
          schedule: job.body.schedule,
          steps: job.body.steps,
          guidance: job.body.guidance,
          seed: job.body.seed,
        },
        { prompt, n: 2, size: `${rw}x${rh}`, style: 'cyberpunk', sampler: 'dpm++2m', schedule: 'karras', steps: 150, guidance: 5, seed: 1234 },
        'the request carries the form',
      );
      // While it runs: Stop instead of Generate, and the status counts the steps.
      // Polled, or (on a busy machine, where polls can miss the whole painting) recorded.
      const first = await waitFor(
        async () => stepOf(await studio.status(page).innerText({ timeout: 500 })) ?? (await progress()).statuses.map(stepOf).find(Boolean),
        10_000,
        { what: 'the status to show "Step k of n"' },
      ).catch(async (e) => {
        throw new Error(`${e.message}; recorded: ${JSON.stringify(await progress()).slice(0, 400)}`);
      });
      assert.equal(first.steps, 150);
      await waitForResults(page, 2);
      const ms = Date.now() - t0;

      const seen = await progress();
      const steps = [...new Set(seen.statuses.map(stepOf).filter(Boolean).map((s) => s.step))];
      console.log(
        `    2 images (${rw}x${rh}, 150 steps) took ${ms} ms in the browser; ${steps.length} distinct steps in the status, `
          + `${seen.labels.length} placeholder labels, a preview in ${seen.previews} placeholder updates`,
      );
      assert.ok(steps.length >= 2 && steps.at(-1) > steps[0], `the status advanced: ${JSON.stringify(steps.slice(0, 20))}`);
      assert.ok(
        seen.labels.some((l) => /^Painting, step \d+ of 150$/.test(l)),
        `a placeholder "Painting, step k of 150": ${JSON.stringify(seen.labels.slice(0, 5))}`,
      );
      assert.ok(seen.previews > 0, 'a live preview showed in the placeholder');
      assert.equal(seen.maxStrip, 2, 'one strip entry per image');
      assert.equal(normalize(await studio.status(page).innerText()), '', 'the status is empty when done');

      // --- The gallery API: 2 images with those settings.
      const images = await waitForGallery(api, t, 2);
      const seeds = images.map((i) => i.metadata.seed).sort((a, b) => a - b);
      assert.deepEqual(seeds, [1234, 1235], 'seed, then seed + 1');
      for (const image of images) {
        const m = image.metadata;
        assert.equal(m.model, 'tiny-sd');
        assert.equal(m.steps, 150);
        assert.equal(m.sampler, 'dpm++2m');
        assert.equal(m.schedule, 'karras');
        assert.equal(m.guidance, 5);
        assert.equal(`${image.width}x${image.height}`, `${rw}x${rh}`);
        assert.ok(Math.abs(image.width / image.height - 16 / 9) < 0.05, `16:9-ish: ${image.width}x${image.height}`);
        assert.ok(m.prompt.startsWith(`${CYBERPUNK_TEMPLATE}${prompt}`), `the cyberpunk template: ${m.prompt}`);
        assert.match(m.negative_prompt, /low tech/, 'the style\'s negative prompt');
        assert.equal(m.tool_arguments.prompt, prompt, 'the request as sent keeps the prompt as typed');
        assert.equal(m.tool_arguments.style, 'cyberpunk');
        assert.equal(m.tool_arguments.n, 2);
        assert.equal(m.source_image_id, undefined);
      }
      // …and in the page's gallery.
      await waitForCount(studio.gallery(page).getByRole('button', { name: `Open image: ${prompt}`, exact: true }), 2);

      // --- The results: the first is selected; "Next result" pages to the second and wraps.
      const ids = (await api.get('/api/studio/images'))
        .filter((i) => i.metadata.tool_arguments.prompt === prompt)
        .sort((a, b) => a.metadata.seed - b.metadata.seed)
        .map((i) => i.id);
      const mainImg = studio.openFullscreen(page).locator('img');
      assert.equal(await studio.stripItem(page, 1).getAttribute('aria-current'), 'true');
      assert.equal(await studio.stripItem(page, 2).getAttribute('aria-current'), null);
      const firstSrc = await mainImg.getAttribute('src');
      assert.equal(firstSrc, `/api/images/${ids[0]}.png`, 'result 1 is the image with seed 1234');
      // Generate sits at the foot of the form; the results are at the top: scroll up to see them.
      await studio.results(page).evaluate((el) => el.scrollIntoView({ block: 'start' }));
      await screenshot(page, 'screen-studio');
      await studio.results(page).getByRole('button', { name: 'Next result', exact: true }).click();
      await waitFor(async () => (await studio.stripItem(page, 2).getAttribute('aria-current')) === 'true', 3_000, {
        what: 'Result 2 to be current',
      });
      assert.equal(await studio.stripItem(page, 1).getAttribute('aria-current'), null);
      assert.equal(await mainImg.getAttribute('src'), `/api/images/${ids[1]}.png`, 'result 2 is the image with seed 1235');
      await studio.results(page).getByRole('button', { name: 'Next result', exact: true }).click();
      await waitFor(async () => (await studio.stripItem(page, 1).getAttribute('aria-current')) === 'true', 3_000, {
        what: '"Next result" on the last to wrap to Result 1',
      });
      await studio.results(page).getByRole('button', { name: 'Previous result', exact: true }).click();
      await waitFor(async () => (await studio.stripItem(page, 2).getAttribute('aria-current')) === 'true', 3_000, {
        what: '"Previous result" on the first to wrap to Result 2',
      });
      await studio.stripItem(page, 1).click();
      await waitFor(async () => (await studio.stripItem(page, 1).getAttribute('aria-current')) === 'true', 3_000, {
        what: 'a click on Result 1 to select it',
      });
      await studio.stripItem(page, 2).click();
      await waitFor(async () => (await mainImg.getAttribute('src')) === `/api/images/${ids[1]}.png`, 3_000, {
        what: 'a click on Result 2 to show it',
      });

      // --- Fullscreen: the chat's image viewer, at the selected result; Escape closes it.
      await studio.openFullscreen(page).click();
      const viewer = studio.viewer(page);
      await viewer.waitFor({ state: 'visible' });
      await waitForText(viewer.locator('.viewer-position'), '2 / 2');
      const big = viewer.locator('img').first();
      assert.equal(await big.getAttribute('src'), `/api/images/${ids[1]}.png`, 'the viewer shows the selected result');
      await page.keyboard.press('Escape');
      await viewer.waitFor({ state: 'hidden' });
      assert.equal((await focused(page)).label, 'Open fullscreen', 'focus goes back to the result');

      // --- Downloads.
      const dir = tempDir();
      try {
        const actions = studio.results(page).locator('.result-actions');
        const pngLink = actions.getByRole('link', { name: 'PNG', exact: true });
        const jpgLink = actions.getByRole('link', { name: 'JPG', exact: true });
        assert.equal(await pngLink.getAttribute('href'), `/api/images/${ids[1]}.png?download=1`);
        const png = await download(page, () => pngLink.click(), dir);
        assert.match(png.name, /\.png$/, `PNG file name ${png.name}`);
        assert.ok(startsWith(png.bytes, PNG_SIGNATURE), `PNG signature; got ${png.bytes.subarray(0, 8).toString('hex')}`);
        const decoded = decodePng(png.bytes);
        assert.deepEqual([decoded.width, decoded.height], [Number(rw), Number(rh)], 'the PNG has the image size');
        const jpg = await download(page, () => jpgLink.click(), dir);
        assert.match(jpg.name, /\.jpg$/, `JPG file name ${jpg.name}`);
        assert.ok(startsWith(jpg.bytes, JPEG_SIGNATURE), `JPEG signature; got ${jpg.bytes.subarray(0, 3).toString('hex')}`);
        console.log(`    downloads: ${png.name} (${png.bytes.length} bytes), ${jpg.name} (${jpg.bytes.length} bytes)`);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
  },

  {
    name: 'View code shows the request as curl, Python and Node.js, copies it, and the curl runs',
    timeout: 40_000,
    async run({ page, context, baseUrl }) {
      await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: baseUrl });
      await openStudio(page, baseUrl);
      const t = tag();
      const prompt = `a paper boat on a puddle, it's raining ${t}`;
      await fillForm(page, { prompt, style: 'Cyberpunk', n: 2, sampler: 'dpm++2m', schedule: 'karras', steps: 8, guidance: 5, seed: 1234 });

      const toggle = page.getByRole('button', { name: 'View code', exact: true });
      assert.equal(await toggle.getAttribute('aria-expanded'), 'false');
      await toggle.click();
      const panel = page.getByRole('region', { name: 'Code' });
      await panel.waitFor({ state: 'visible' });
      assert.equal(await toggle.getAttribute('aria-expanded'), 'true');
      const code = panel.locator('pre code#code-snippet');
      const tab = (name) => panel.getByRole('tab', { name, exact: true });
      assert.equal(await tab('curl').getAttribute('aria-selected'), 'true');

      const curl = await code.innerText();
      assert.ok(curl.startsWith(`curl ${baseUrl}/v1/images/generations`), `curl to /v1/images/generations:\n${curl}`);
      assert.ok(curl.includes(JSON.stringify(prompt).replace(/'/g, "'\\''")), `the prompt (quoted for the shell):\n${curl}`);
      assert.ok(curl.includes('"seed":1234'), `the seed:\n${curl}`);
      await screenshot(page, 'screen-studio-code');

      await tab('Python').click();
      await waitFor(async () => (await tab('Python').getAttribute('aria-selected')) === 'true', 3_000, { what: 'the Python tab' });
      const python = await code.innerText();
      assert.ok(python.includes('client.images.generate('), `Python:\n${python}`);
      assert.ok(python.includes('extra_body='), `Python:\n${python}`);
      assert.ok(python.includes('"seed":1234') || python.includes('"seed": 1234'), `Python has the seed:\n${python}`);
      assert.ok(python.includes(`base_url="${baseUrl}/v1"`), `Python's base_url:\n${python}`);

      await tab('Node.js').click();
      await waitFor(async () => (await tab('Node.js').getAttribute('aria-selected')) === 'true', 3_000, { what: 'the Node.js tab' });
      const nodeCode = await code.innerText();
      assert.ok(nodeCode.includes('new OpenAI('), `Node.js:\n${nodeCode}`);
      assert.ok(nodeCode.includes('client.images.generate('), `Node.js:\n${nodeCode}`);
      assert.ok(/"seed": ?1234/.test(nodeCode), `Node.js has the seed:\n${nodeCode}`);

      await panel.getByRole('button', { name: 'Copy', exact: true }).click();
      await ui.toast(page, 'status', 'Code copied').waitFor();
      const copied = await page.evaluate(() => navigator.clipboard.readText());
      assert.equal(copied, nodeCode, 'the clipboard holds the shown snippet');

      // The curl snippet runs as it is: its JSON body against the server.
      await tab('curl').click();
      await waitFor(async () => (await tab('curl').getAttribute('aria-selected')) === 'true', 3_000, { what: 'the curl tab' });
      const shown = await code.innerText();
      const body = curlBody(shown);
      const res = await fetch(`${baseUrl}/v1/images/generations`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
      });
      const answer = await res.json();
      assert.equal(res.status, 200, `the curl's request answered ${res.status}: ${JSON.stringify(answer).slice(0, 300)}\n${shown}`);
      assert.equal(answer.data.length, 2, 'n = 2 images');
      for (const item of answer.data) {
        assert.ok(startsWith(Buffer.from(item.b64_json, 'base64'), PNG_SIGNATURE), 'a base64 PNG');
      }
      // The same settings as the form would use.
      const sent = JSON.parse(body);
      assert.deepEqual(
        { prompt: sent.prompt, n: sent.n, seed: sent.seed, steps: sent.steps, guidance: sent.guidance, sampler: sent.sampler, schedule: sent.schedule, style: sent.style },
        { prompt, n: 2, seed: 1234, steps: 8, guidance: 5, sampler: 'dpm++2m', schedule: 'karras', style: 'cyberpunk' },
      );
      // "View code" again hides it.
      await toggle.click();
      await panel.waitFor({ state: 'hidden' });
    },
  },

  {
    name: 'edit a result with a painted mask (Save mask), then an upload with nothing painted',
    timeout: 60_000,
    async run({ page, baseUrl, api }) {
      await openStudio(page, baseUrl);
      const t = tag();
      const prompt = `a quiet harbour ${t}`;
      await fillForm(page, { prompt, steps: 8, seed: 42 });
      await generate(page, 1);
      const [original] = await waitForGallery(api, t, 1);

      // "Edit" on the result: the source image with the mask canvas over it.
      await studio.results(page).locator('.result-actions').getByRole('button', { name: 'Edit', exact: true }).click();
      const source = studio.results(page).locator('img.edit-source');
      await source.waitFor({ state: 'visible' });
      assert.equal(await source.getAttribute('src'), `/api/images/${original.id}.png`, 'the source is the result');
      assert.match(await source.getAttribute('alt'), /^Source image: /);
      await waitFor(() => source.evaluate((img) => img.complete && img.naturalWidth > 0), 5_000, { what: 'the source to load' });
      const canvas = page.locator('#mask-canvas');
      assert.equal(await canvas.getAttribute('aria-label'), 'Mask: paint the area to change');
      await studio.editImage(page).waitFor();
      assert.equal(await studio.generate(page).count(), 0, '"Generate" became "Edit image"');

      // Paint a horizontal stroke across the middle; set the strength.
      await page.getByRole('slider', { name: /^Brush \d+$/ }).fill('40');
      await page.getByRole('slider', { name: 'Brush 40', exact: true }).waitFor();
      const eraser = page.getByRole('button', { name: 'Eraser', exact: true });
      assert.equal(await eraser.getAttribute('aria-pressed'), 'false');
      await paintStroke(page, [0.25, 0.5], [0.75, 0.5]);
      const strengthSlider = page.getByRole('slider', { name: /^Strength / });
      await strengthSlider.fill('0.8');
      await page.getByRole('slider', { name: 'Strength 0.80', exact: true }).waitFor();
      await screenshot(page, 'screen-studio-editing');

      // Save mask: an OpenAI-style mask, transparent where painted, opaque black elsewhere.
      const dir = tempDir();
      let mask;
      try {
        const saved = await download(page, () => page.getByRole('button', { name: 'Save mask', exact: true }).click(), dir);
        assert.equal(saved.name, 'mask.png');
        mask = decodePng(saved.bytes);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
      const alphaAt = (x, y) => mask.rgba[(Math.floor(y) * mask.width + Math.floor(x)) * 4 + 3];
      const W = mask.width;
      const H = mask.height;
      const painted = [[0.3, 0.5], [0.5, 0.5], [0.7, 0.5]].map(([x, y]) => alphaAt(W * x, H * y));
      const kept = [[0.05, 0.05], [0.5, 0.2], [0.5, 0.8], [0.1, 0.5], [0.9, 0.5], [0.95, 0.95]].map(([x, y]) => alphaAt(W * x, H * y));
      assert.deepEqual(painted, [0, 0, 0], 'transparent along the stroke');
      assert.deepEqual(kept, [255, 255, 255, 255, 255, 255], 'opaque away from the stroke');
      let transparent = 0;
      let nonBlack = 0;
      for (let p = 0; p < W * H; p++) {
        if (mask.rgba[p * 4 + 3] === 0) transparent++;
        else if (mask.rgba[p * 4] || mask.rgba[p * 4 + 1] || mask.rgba[p * 4 + 2]) nonBlack++;
      }
      const share = transparent / (W * H);
      assert.ok(share > 0.02 && share < 0.25, `a stroke-sized transparent area: ${(share * 100).toFixed(1)}% of ${W}x${H}`);
      assert.equal(nonBlack, 0, 'the kept area is black');

      // Edit image (2 images): the request carries the source, the mask and the strength.
      await fillForm(page, { n: 2 });
      const started = jobStarted(page);
      await studio.editImage(page).click();
      const job = await started;
      assert.equal(job.body.source_image_id, original.id);
      assert.match(job.body.mask_b64 ?? '', /^data:image\/png;base64,/, 'the painted mask is sent');
      assert.equal(decodePng(Buffer.from(job.body.mask_b64.split(',')[1], 'base64')).rgba.compare(mask.rgba), 0, 'the mask sent is the mask saved');
      assert.ok(Math.abs(job.body.strength - 0.8) < 1e-6, `strength ${job.body.strength}`);
      await waitForResults(page, 2);
      const edits = (await waitForGallery(api, t, 3)).filter((i) => i.id !== original.id).sort((a, b) => a.metadata.seed - b.metadata.seed);
      for (const edited of edits) {
        assert.equal(edited.metadata.source_image_id, original.id, 'metadata.source_image_id = the edited image');
        assert.ok(Math.abs(edited.metadata.strength - 0.8) < 1e-6, `metadata.strength ${edited.metadata.strength}`);
        assert.deepEqual([edited.width, edited.height], [original.width, original.height], 'the source\'s size');
        assert.equal(edited.metadata.tool_arguments.source_image_id, original.id);
      }
      assert.equal(await studio.openFullscreen(page).locator('img').getAttribute('src'), `/api/images/${edits[0].id}.png`);

      // Only the painted band may change: the two edits (seeds s and s + 1) agree away from it
      // and differ inside it. (The tiny test model's VAE does not give back its input, so the
      // kept area is compared between the edits, not with the source.)
      const [a, b] = [decodePng(await imageBytes(baseUrl, edits[0].id)), decodePng(await imageBytes(baseUrl, edits[1].id))];
      const band = a.height / 2;
      const inside = meanDiff(a, b, (x, y) => Math.abs(y - band) < 4 && x > a.width * 0.35 && x < a.width * 0.65);
      const outside = meanDiff(a, b, (x, y) => Math.abs(y - band) > 40);
      console.log(`    masked edit, 2 seeds: mean difference ${inside.toFixed(1)} inside the painted band, ${outside.toFixed(2)} away from it (0–255)`);
      assert.ok(inside > 10, `the painted band is repainted (differs between seeds): ${inside}`);
      assert.ok(outside < 1, `the rest is kept (the same for both seeds): ${outside}`);

      // --- An upload, with nothing painted: the whole image changes (img2img).
      const width = 160;
      const height = 120;
      const upload = encodePng(width, height, (x, y) => [Math.round((x / width) * 255), Math.round((y / height) * 255), 128]);
      const fileName = `upload-${t}.png`;
      await page.getByLabel('Upload an image to edit').setInputFiles({ name: fileName, mimeType: 'image/png', buffer: upload });
      await waitFor(async () => (await source.getAttribute('alt')) === `Source image: ${fileName}`, 5_000, {
        what: `the source to be the upload (alt "Source image: ${fileName}")`,
      });
      assert.match(await source.getAttribute('src'), /^data:image\/png;base64,/);
      const prompt2 = `a gradient sky ${t}`;
      await fillForm(page, { prompt: prompt2, n: 1 });
      const started2 = jobStarted(page);
      await studio.editImage(page).click();
      const job2 = await started2;
      assert.equal(job2.body.source_image_id, undefined);
      assert.equal(Buffer.from(job2.body.source_image_b64, 'base64').compare(upload), 0, 'the upload is sent as it is');
      assert.equal(job2.body.mask_b64, undefined, 'no mask when nothing is painted (Clear on a new source)');
      assert.ok(Math.abs(job2.body.strength - 0.8) < 1e-6, 'the strength as set');
      await waitForResults(page, 1);
      const fromUpload = (await waitForGallery(api, prompt2, 1))[0];
      assert.equal(fromUpload.metadata.source_image_id, undefined, 'an upload has no source image id');
      assert.ok(Math.abs(fromUpload.metadata.strength - 0.8) < 1e-6, `metadata.strength ${fromUpload.metadata.strength}`);
      assert.ok(
        Math.abs(fromUpload.width / fromUpload.height - width / height) < 0.1,
        `the upload's aspect: ${fromUpload.width}x${fromUpload.height}`,
      );
      const args = fromUpload.metadata.tool_arguments;
      assert.ok(!('source_image_b64' in args) && !('mask_b64' in args), `the stored request leaves out the upload: ${Object.keys(args)}`);

      // "Stop editing" goes back to generating.
      await page.getByRole('button', { name: 'Stop editing', exact: true }).click();
      await source.waitFor({ state: 'detached' });
      await studio.generate(page).waitFor();
    },
  },

  {
    name: 'Randomize starts a job with random settings and Stop ends it',
    timeout: 60_000,
    async run({ page }) {
      // A server whose model paints 2048×2048 by default, so that even the fastest random
      // settings (1 image, a one-step sampler, 1536×2048) take ~2 s: time to press Stop.
      // Steps 50: Randomize may pick "lcm", which takes at most 50 (see the test below).
      const slow = await startEasel({
        mode: 'direct',
        modelToml: 'display_name = "Tiny SD (slow)"\ndefault_size = "2048x2048"\nallowed_sizes = ["2048x2048"]\nmax_size = 2048\n'
          + 'default_sampler = "heun"\ndefault_guidance = 7.5\n[steps]\nauto = 50\nlow = 4\nmedium = 40\nhigh = 50\n',
      });
      try {
        await openStudio(page, slow.baseUrl);
        await fillForm(page, { steps: 50, preview: 'faster' });
        const before = (await (await fetch(`${slow.baseUrl}/api/studio/images`)).json()).length;
        const started = jobStarted(page);
        await page.getByRole('button', { name: 'Randomize', exact: true }).click();
        const job = await started;
        assert.ok(job.body.prompt.length > 0, 'a random prompt filled the empty box');
        assert.equal(await studio.promptBox(page).inputValue(), job.body.prompt, 'the prompt box shows it');
        assert.ok(job.body.n >= 1 && job.body.n <= 4, `n ${job.body.n}`);
        assert.equal(job.body.steps, 50, 'Steps is kept');
        const models = await (await fetch(`${slow.baseUrl}/api/models`)).json();
        assert.ok(models.image[0].samplers.includes(job.body.sampler), `a sampler of the model: ${job.body.sampler}`);
        assert.ok(['discrete', 'karras'].includes(job.body.schedule), `schedule ${job.body.schedule}`);
        assert.ok(['auto', '3d-anime', '3d-model', 'anime', 'movie', 'comic', 'cyberpunk', 'fantasy'].includes(job.body.style ?? 'auto'), `style ${job.body.style}`);
        const card = await page.getByRole('radiogroup', { name: 'Style' }).getByRole('radio', { checked: true }).innerText();
        assert.ok(card.length > 0, 'a style card is checked');
        assert.match(String(job.body.seed), /^\d+$/);
        assert.equal(await studio.field(page, 'spinbutton', 'Seed').inputValue(), String(job.body.seed), 'the seed field shows it');

        await studio.stop(page).click();
        await waitForText(studio.status(page), 'Stopped.', 10_000);
        await studio.generate(page).waitFor();
        assert.equal(await studio.stop(page).count(), 0);
        // The job ended as cancelled on the server.
        const events = await (await fetch(`${slow.baseUrl}/api/studio/jobs/${job.jobId}/events`)).text();
        assert.match(events, /event: run\.cancelled/, `the job's events end with run.cancelled: ${events.slice(-300)}`);
        assert.doesNotMatch(events, /event: run\.finished/);
        const after = (await (await fetch(`${slow.baseUrl}/api/studio/images`)).json()).length;
        assert.equal(after, before, 'nothing unfinished lands in the gallery');
        await waitForCount(studio.placeholder(page), 0);
      } finally {
        await slow.stop();
      }
    },
  },

  {
    name: 'Send to chat opens a conversation holding the image',
    async run({ page, baseUrl, api }) {
      await openStudio(page, baseUrl);
      const t = tag();
      const prompt = `a teapot on a windowsill ${t}`;
      await fillForm(page, { prompt, exactSize: '128x128', steps: 6 });
      await generate(page, 1);
      const [image] = await waitForGallery(api, t, 1);

      // A prompt edited just before leaving leaves its token check pending (it waits 300 ms
      // for the typing to stop): it must not touch the Studio's values once they are gone (the
      // runner fails a test whose page throws). Typed and clicked inside the page, so the
      // click comes well within those 300 ms.
      const box = await studio.promptBox(page).elementHandle();
      const send = await studio.results(page).locator('.result-actions').getByRole('button', { name: 'Send to chat', exact: true }).elementHandle();
      await page.evaluate(async ([box, send]) => {
        box.value += ' and a cat';
        box.dispatchEvent(new Event('input', { bubbles: true }));
        await new Promise((resolve) => setTimeout(resolve, 30));
        send.click();
      }, [box, send]);
      await page.waitForURL(/\/c\/[^/]+$/, { timeout: 10_000 });
      await page.waitForTimeout(500); // past the pending check
      const id = page.url().split('/c/')[1];
      const thumb = ui.assistantArticles(page).last().locator('figure.image-tile:not(.placeholder) img');
      await thumb.waitFor();
      await waitFor(() => thumb.evaluate((img) => img.complete && img.naturalWidth > 0), 5_000, { what: 'the thumbnail to load' });
      assert.equal(await thumb.getAttribute('alt'), prompt, 'the thumbnail is described by the prompt');
      await waitForText(ui.userArticles(page).last(), prompt);
      await waitForText(ui.assistantArticles(page).last().locator('.markdown'), /Made in Image Studio/);
      // The conversation is in the sidebar, with the image a copy of the gallery's.
      await ui.sidebar(page).getByRole('link', { name: new RegExp(t) }).first().waitFor();
      const detail = await api.get(`/api/conversations/${id}?images=url`);
      const images = detail.messages.at(-1).images;
      assert.equal(images.length, 1);
      assert.equal(images[0].metadata.seed, image.metadata.seed);
      assert.equal(detail.internal_tools.image_creation, true, 'image creation is on, to refine it');
    },
  },

  {
    name: 'delete an image from the gallery (Cancel keeps it, Delete removes it)',
    async run({ page, baseUrl, api }) {
      const t = tag();
      const prompt = `a snail on a leaf ${t}`;
      const image = await makeImage(api, baseUrl, prompt);
      await openStudio(page, baseUrl);
      const tile = studio.gallery(page).locator('li.image-tile').filter({
        has: page.getByRole('button', { name: `Open image: ${prompt}`, exact: true }),
      });
      await tile.waitFor();
      const before = (await api.get('/api/studio/images')).length;
      assert.equal((await fetch(`${baseUrl}/api/images/${image.id}.png`)).status, 200);

      // The tile's actions.
      await tile.hover();
      for (const [role, name] of [['button', 'Edit this image'], ['button', 'Send to chat'], ['link', 'Download PNG'], ['button', 'Delete image']]) {
        await tile.getByRole(role, { name, exact: true }).waitFor({ state: 'visible' });
      }
      const confirm = page.getByRole('alertdialog');
      await tile.getByRole('button', { name: 'Delete image', exact: true }).click();
      await confirm.waitFor({ state: 'visible' });
      await confirm.getByRole('button', { name: 'Cancel', exact: true }).click();
      await confirm.waitFor({ state: 'hidden' });
      assert.equal((await api.get('/api/studio/images')).length, before, 'Cancel keeps it');

      await tile.hover();
      await tile.getByRole('button', { name: 'Delete image', exact: true }).click();
      await confirm.waitFor({ state: 'visible' });
      await waitForText(confirm.locator('h2'), 'Delete image?');
      await confirm.getByRole('button', { name: 'Delete', exact: true }).click();
      await confirm.waitFor({ state: 'hidden' });
      await ui.toast(page, 'status', 'Image deleted').waitFor();
      await waitForCount(tile, 0);
      assert.equal((await api.get('/api/studio/images')).length, before - 1, 'the gallery API has one image less');
      assert.equal((await galleryWith(api, t)).length, 0);
      assert.equal((await fetch(`${baseUrl}/api/images/${image.id}.png`)).status, 404, 'its PNG is gone');
    },
  },

  {
    name: 'the prompt box: counter, Random prompt, Clear',
    async run({ page, baseUrl }) {
      await openStudio(page, baseUrl);
      const counter = page.locator('.studio-form .counter');
      await waitForText(counter, '0/2000');
      await studio.promptBox(page).fill('héllo wörld');
      await waitForText(counter, '11/2000');
      assert.equal(await studio.promptBox(page).getAttribute('maxlength'), '2000');
      await page.getByRole('textbox', { name: 'Negative prompt', exact: true }).fill('blurry');
      await page.getByRole('button', { name: 'Random prompt', exact: true }).click();
      await waitFor(async () => !['', 'héllo wörld'].includes(await studio.promptBox(page).inputValue()), 3_000, {
        what: 'Random prompt to fill the box',
      });
      const random = await studio.promptBox(page).inputValue();
      await waitForText(counter, `${[...random].length}/2000`);
      await page.getByRole('button', { name: 'Clear', exact: true }).click();
      await waitFor(async () => (await studio.promptBox(page).inputValue()) === '', 3_000, { what: 'Clear to empty the prompt' });
      assert.equal(await page.getByRole('textbox', { name: 'Negative prompt', exact: true }).inputValue(), '', 'Clear empties the negative prompt too');
      await waitForText(counter, '0/2000');
      // Generate with no prompt says so and starts nothing.
      let posted = false;
      page.on('request', (r) => {
        if (r.method() === 'POST' && r.url().endsWith('/api/studio/generations')) posted = true;
      });
      await studio.generate(page).click();
      await ui.toast(page, 'alert', 'Write a prompt first.').waitFor();
      assert.equal(posted, false, 'no job without a prompt');
    },
  },

  {
    name: 'prompt enhancement shows the LLM\'s rewrite; "Use it" paints with it',
    async run({ page, baseUrl, api, llm }) {
      await openStudio(page, baseUrl);
      const t = tag();
      const prompt = `a cat ${t}`;
      const better = `A fluffy ginger cat asleep on a sunlit windowsill, soft morning light, shallow depth of field ${t}`;
      llm.respondWhen(t, { kind: 'text', text: `"${better}"`, delayMs: 10 });
      await fillForm(page, { prompt, exactSize: '64x64', steps: 6 });
      const toggle = page.getByRole('switch', { name: 'Prompt enhancement' });
      await waitForChecked(toggle, 'false');
      await toggle.click();
      await waitForChecked(toggle, 'true');

      await studio.generate(page).click();
      const region = page.getByRole('region', { name: 'Enhanced prompt' });
      await region.waitFor();
      await waitForText(region.locator('p').nth(1), better);
      const [request] = await llm.waitForRequest(t);
      const messages = request.body.messages;
      assert.equal(messages.at(-1).content, prompt, 'the LLM gets the prompt as typed');
      assert.equal(messages[0].role, 'system');
      assert.match(messages[0].content, /rewrite prompts for an image generator/);
      assert.equal(request.body.tools, undefined, 'no tools offered for the rewrite');
      assert.equal(await studio.promptBox(page).inputValue(), prompt, 'the prompt waits until "Use it"');
      assert.equal((await galleryWith(api, t)).length, 0, 'nothing painted yet');

      const started = jobStarted(page);
      await region.getByRole('button', { name: 'Use it', exact: true }).click();
      const job = await started;
      assert.equal(job.body.prompt, better, 'the job paints the rewrite');
      await region.waitFor({ state: 'detached' });
      assert.equal(await studio.promptBox(page).inputValue(), better, 'the rewrite is in the prompt box');
      await waitForResults(page, 1);
      const [image] = await waitForGallery(api, t, 1);
      assert.equal(image.metadata.tool_arguments.prompt, better);
      assert.equal(llm.chatRequestsMentioning(t).length, 1, 'one LLM call');
    },
  },
];

// ----- app bugs found by these tests: each test asserts what the app should do, and fails with
// the build it was written against (see end2end/README.md, "Known app bugs"). -----

/** Opens the Studio and generates `n` quick images of `prompt` (128×128, 6 steps, seed 1234). */
async function quickResults(page, baseUrl, prompt, n = 2, extra = {}) {
  await openStudio(page, baseUrl);
  await fillForm(page, { prompt, n, exactSize: '128x128', steps: 6, seed: 1234, ...extra });
  await generate(page, n);
}

tests.push(
  {
    name: 'the fullscreen viewer of a Studio result shows its prompt and settings',
    async run({ page, baseUrl }) {
      const prompt = `a lantern in the fog ${tag()}`;
      await quickResults(page, baseUrl, prompt, 2, { sampler: 'euler' });
      await studio.openFullscreen(page).click();
      const viewer = studio.viewer(page);
      await viewer.waitFor();
      await waitForText(viewer.locator('.viewer-position'), '1 / 2');
      const settings = await viewer.locator('dl.settings').evaluate((dl) => {
        const out = {};
        for (const dt of dl.querySelectorAll('dt')) out[dt.textContent.trim()] = dt.nextElementSibling?.textContent.trim();
        return out;
      });
      const seen = {
        alt: await viewer.locator('img').first().getAttribute('alt'),
        prompt: normalize(await viewer.locator('.viewer-prompt').innerText()),
        settings,
      };
      assert.deepEqual(
        seen,
        {
          alt: prompt,
          prompt,
          settings: { Model: 'tiny-sd', Size: '128×128', Seed: '1234', Steps: '6', Sampler: seen.settings.Sampler, Guidance: '7.5' },
        },
        `the viewer opened from the results describes the image as the gallery's viewer does; it shows ${JSON.stringify(seen)}`,
      );
      assert.match(settings.Sampler, /^euler\b/);
    },
  },
  {
    name: 'the selected result is described by its own prompt, not what the prompt box holds now',
    async run({ page, baseUrl }) {
      const prompt = `a windmill at noon ${tag()}`;
      await quickResults(page, baseUrl, prompt, 2);
      const img = studio.openFullscreen(page).locator('img');
      assert.equal(await img.getAttribute('alt'), prompt);
      await studio.promptBox(page).fill('something else entirely');
      await studio.results(page).getByRole('button', { name: 'Next result', exact: true }).click();
      await waitFor(async () => (await studio.stripItem(page, 2).getAttribute('aria-current')) === 'true', 3_000, { what: 'Result 2' });
      const alt = await img.getAttribute('alt');
      assert.equal(alt, prompt, `result 2 was painted from ${JSON.stringify(prompt)}, its alt is ${JSON.stringify(alt)}`);
    },
  },
  {
    name: '"Edit" on a result names the source image by its prompt',
    async run({ page, baseUrl }) {
      const prompt = `a copper kettle ${tag()}`;
      await quickResults(page, baseUrl, prompt, 1);
      await studio.results(page).locator('.result-actions').getByRole('button', { name: 'Edit', exact: true }).click();
      const source = studio.results(page).locator('img.edit-source');
      await source.waitFor();
      const alt = await source.getAttribute('alt');
      assert.equal(alt, `Source image: ${prompt}`, `the source's alt is ${JSON.stringify(alt)}`);
    },
  },
  {
    name: 'the result strip\'s entries are buttons',
    async run({ page, baseUrl }) {
      await quickResults(page, baseUrl, `three pebbles ${tag()}`, 2);
      const strip = studio.strip(page);
      assert.equal(
        await strip.getByRole('button', { name: 'Result 2', exact: true }).count(),
        1,
        `"Result 2" is a button (clickable for assistive technology); its role is ${await studio.stripItem(page, 2).getAttribute('role')}`,
      );
    },
  },
  {
    name: 'View code follows the form while it is open',
    async run({ page, baseUrl }) {
      await openStudio(page, baseUrl);
      await fillForm(page, { prompt: `a comet ${tag()}`, seed: 1234 });
      await page.getByRole('button', { name: 'View code', exact: true }).click();
      const code = page.getByRole('region', { name: 'Code' }).locator('#code-snippet');
      await waitForText(code, /"seed":1234/);
      await fillForm(page, { seed: 999, prompt: 'a comet over the sea' });
      await waitForText(code, (text) => text.includes('"seed":999') && text.includes('a comet over the sea'), 3_000);
    },
  },
  {
    name: 'a 16:9 request is either an allowed size whose code runs, or the code view says why not',
    async run({ page, baseUrl }) {
      await openStudio(page, baseUrl);
      await fillForm(page, { prompt: `a wide valley ${tag()}`, aspect: '16:9', steps: 6, seed: 1234 });
      await page.getByRole('button', { name: 'View code', exact: true }).click();
      const region = page.getByRole('region', { name: 'Code' });
      const shown = await region.locator('#code-snippet').innerText();
      const res = await fetch(`${baseUrl}/v1/images/generations`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: curlBody(shown),
      });
      const answer = await res.json();
      if (res.status === 200) {
        assert.equal(answer.data.length, 1);
      } else {
        // The test model allows square sizes only: the Studio paints 16:9 anyway (any multiple
        // of 8), and the code view must warn that the images API will refuse that size.
        assert.equal(answer.error.param, 'size', JSON.stringify(answer));
        const note = normalize(await region.locator('.code-note').innerText());
        assert.match(note, /is a Studio size; the images API accepts the model's allowed sizes/, note);
      }
    },
  },
  {
    name: 'Randomize picks settings the engine can paint (not lcm with more than 50 steps)',
    async run({ page, baseUrl }) {
      // Math.random() → 9.5e-9 makes every random(max) in the page 9 % max: sampler 9 of 11 is
      // "lcm" (the rest: 1:1, 2 images, karras, seed 9).
      await page.addInitScript(() => {
        Math.random = () => 9.5e-9;
      });
      await openStudio(page, baseUrl);
      await fillForm(page, { prompt: `a red kite ${tag()}`, steps: 60 });
      const started = jobStarted(page);
      await page.getByRole('button', { name: 'Randomize', exact: true }).click();
      const job = await started;
      await waitFor(async () => (await studio.stop(page).count()) === 0, 15_000, { what: 'the job to end' });
      const status = normalize(await studio.status(page).innerText());
      assert.equal(status, '', `Randomize picked sampler ${job.body.sampler} with ${job.body.steps} steps; the job ended with "${status}"`);
      await waitForResults(page, job.body.n);
    },
  },
  {
    name: 'a placeholder has the shape of the image it paints',
    async run({ page, baseUrl }) {
      await openStudio(page, baseUrl);
      // 9:16 with 150 heun steps: long enough to measure the placeholder.
      await fillForm(page, { prompt: `a tall tower ${tag()}`, aspect: '9:16', sampler: 'heun', steps: 150 });
      await studio.generate(page).click();
      const box = await waitFor(() => studio.placeholder(page).boundingBox(), 10_000, { what: 'a placeholder' });
      await waitForResults(page, 1);
      const done = await studio.openFullscreen(page).boundingBox();
      const ratio = (b) => (b.width / b.height).toFixed(2);
      assert.equal(ratio(box), ratio(done), `placeholder ${Math.round(box.width)}×${Math.round(box.height)}, image ${Math.round(done.width)}×${Math.round(done.height)}`);
    },
  },
);

/** The JSON body of the curl snippet (`-d '…'`, with the shell's '\'' quoting undone). */
function curlBody(snippet) {
  const m = /-d '((?:[^']|'\\'')*)'\s*$/.exec(snippet);
  assert.ok(m, `a -d '…' body in the curl snippet:\n${snippet}`);
  return m[1].replace(/'\\''/g, "'");
}
