// Measurements, not assertions: they print figures and fail only if the page does not work at all.

import { assert, normalize, tag } from '../support/helpers.mjs';

const IMAGES = 100;
const CALLS = 10; // the tool allows at most 10 images per call

/** Marks, in the page, when all thumbnails are in the DOM and the frame after that. */
function watchThumbnails(count) {
  const marks = {};
  window.__thumbs = marks;
  const check = () => {
    if (marks.present) return;
    if (document.querySelectorAll('figure.image-tile img').length >= count) {
      marks.present = performance.now();
      requestAnimationFrame(() => {
        marks.frame = performance.now();
        // The frame's paint happens after the rAF callbacks; a task queued here runs after it.
        setTimeout(() => {
          marks.painted = performance.now();
        }, 0);
      });
    }
  };
  new MutationObserver(check).observe(document, { subtree: true, childList: true });
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

export const tests = [
  {
    name: 'first paint of a 100-image conversation (a measurement)',
    timeout: 180_000,
    async run({ page, baseUrl, llm, api }) {
      // 100 images in one turn: one answer with 10 image_generator calls of n = 10 (64×64, 4 steps).
      const t = tag();
      const calls = Array.from({ length: CALLS }, (_, k) => ({
        name: 'image_generator',
        arguments: { prompt: `Mosaic tile ${k + 1} ${t}`, n: IMAGES / CALLS, quality: 'low', size: '64x64' },
      }));
      llm.respondWhen(t, { kind: 'tool', calls, delayMs: 0 });
      const conversation = await api.createConversation({ title: `100 images ${t}`, internal_tools: { image_creation: true } });
      const made = Date.now();
      const detail = await api.sendAndWait(conversation.id, `Paint a mosaic ${t}`, 150_000);
      const images = detail.messages.at(-1).images;
      assert.equal(images.length, IMAGES, `the turn made ${IMAGES} images`);
      const paintedIn = Date.now() - made;

      const fetchStart = performance.now();
      await api.get(`/api/conversations/${conversation.id}?images=url`);
      const apiMs = performance.now() - fetchStart;

      await page.addInitScript(watchThumbnails, IMAGES);
      const runs = [];
      for (let i = 0; i < 3; i++) {
        await page.goto(new URL(`/c/${conversation.id}`, baseUrl).toString(), { waitUntil: 'commit' });
        await page.waitForFunction(() => window.__thumbs?.painted !== undefined, null, { timeout: 30_000 });
        const marks = await page.evaluate(() => {
          const fcp = performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null;
          const nav = performance.getEntriesByType('navigation')[0];
          return { ...window.__thumbs, fcp, domContentLoaded: nav?.domContentLoadedEventEnd ?? null };
        });
        runs.push(marks);
      }
      const alts = await page.locator('figure.image-tile img').evaluateAll((l) => l.map((img) => img.alt));
      assert.equal(alts.length, IMAGES);
      assert.ok(alts.every((alt) => /^Mosaic tile \d+ /.test(alt)), 'every thumbnail is described by its prompt');
      assert.ok(normalize(await page.locator('article[aria-label="Assistant"] .markdown').innerText()).length > 0);

      const round = (x) => (x === null || x === undefined ? 'n/a' : Math.round(x));
      const painted = runs.map((r) => r.painted);
      console.log(`    first paint of a 100-image conversation: ${round(median(painted))} ms`);
      console.log(
        `    (median of ${runs.length} loads: ${painted.map(round).join(', ')} ms from navigation start to the frame `
          + `after all ${IMAGES} <img> are in the DOM; in the DOM at ${runs.map((r) => round(r.present)).join(', ')} ms; `
          + `first contentful paint ${runs.map((r) => round(r.fcp)).join(', ')} ms; DOMContentLoaded `
          + `${runs.map((r) => round(r.domContentLoaded)).join(', ')} ms; GET /api/conversations/{id} ${round(apiMs)} ms; `
          + `the ${IMAGES} images took ${paintedIn} ms to make)`,
      );
    },
  },
];
