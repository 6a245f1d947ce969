// Image models as a new user meets them: a fresh install without any model offers "Get a model"
// (Studio and the Internal tools menu), downloads the recommended one from the hub (a local
// stand-in) with a progress bar, and paints with it at once, without a restart. And long
// prompts: the Studio says how many tokens the model reads and warns when some are cut.

import { assert, gotoApp, ui, waitFor, waitForText } from '../support/helpers.mjs';
import { startEasel, startHub } from '../support/server.mjs';

export const server = 'direct';

export const tests = [
  {
    name: 'a fresh install gets a model with "Get a model" and paints with it without a restart',
    timeout: 60_000,
    async run({ page }) {
      const hub = await startHub({ pauseMs: 15 });
      const fresh = await startEasel({
        mode: 'direct',
        models: false,
        env: { HF_ENDPOINT: hub.url, EASEL_RECOMMENDED_MODEL: 'test/tiny-sd' },
      });
      try {
        // The chat's Internal tools menu: the switch is off limits and the way out is offered.
        await gotoApp(page, fresh.baseUrl, '/');
        await page.getByRole('button', { name: 'New conversation', exact: true }).click();
        await page.getByRole('button', { name: 'Internal tools', exact: true }).click();
        const menu = page.getByRole('dialog', { name: 'Internal tools' });
        await waitForText(menu.getByRole('region', { name: 'Get a model' }), /No image model is installed/);
        assert.equal(await menu.getByRole('switch', { name: 'Image creation' }).isDisabled(), true);
        await menu.getByRole('button', { name: 'Get a model', exact: true }).waitFor();
        await page.keyboard.press('Escape');

        // The Studio: the same offer; an admin (the local user) starts the download.
        await gotoApp(page, fresh.baseUrl, '/studio');
        const offer = page.getByRole('region', { name: 'Get a model' });
        await waitForText(offer, /test\/tiny-sd/);
        await offer.getByRole('button', { name: 'Get a model', exact: true }).click();
        // Progress while it downloads…
        await waitForText(offer, /Downloading test\/tiny-sd: \d+%/);
        const bar = offer.getByRole('progressbar', { name: 'Download progress' });
        await bar.waitFor();
        // …then the model is offered at once: the form names it and the offer is gone.
        await ui.toast(page, 'status', 'Model tiny-sd is ready').waitFor({ timeout: 30_000 });
        await waitFor(async () => (await page.getByRole('region', { name: 'Get a model' }).count()) === 0, 10_000, {
          what: 'the offer to go once a model exists',
        });
        await page.getByRole('textbox', { name: 'Prompt', exact: true }).fill('a lighthouse at dusk');
        await page.getByRole('button', { name: 'Generate', exact: true }).click();
        await page.getByRole('list', { name: 'Results' }).getByLabel('Result 1', { exact: true }).waitFor({ timeout: 20_000 });
        const health = await (await fetch(`${fresh.baseUrl}/api/health`)).json();
        assert.deepEqual(health.image_engine.models, ['tiny-sd']);
      } finally {
        await fresh.stop();
        await hub.close();
      }
    },
  },
  {
    name: 'the Studio says how many tokens a long prompt has and warns when some are cut',
    async run({ page, baseUrl }) {
      await gotoApp(page, baseUrl, '/studio');
      const long = Array.from({ length: 100 }, (_, i) => `word${i % 7}`).join(' ');
      await page.getByRole('textbox', { name: 'Prompt', exact: true }).fill(long);
      const note = page.locator('#prompt-tokens');
      // The default reads long prompts in 75-token chunks.
      await waitForText(note, /tokens, read in \d chunks of 75/);
      // Truncating: the warning says what is lost and how to keep it.
      const details = page.locator('details.advanced');
      if (!(await details.evaluate((d) => d.open))) await details.locator('summary').click();
      await page.getByRole('combobox', { name: /^Long prompts/ }).selectOption('truncate');
      await waitForText(note, /the model reads 75 and the last \d+ are cut off/);
      assert.equal(await note.getAttribute('role'), 'alert');
      // A short prompt says nothing.
      await page.getByRole('textbox', { name: 'Prompt', exact: true }).fill('a red fox');
      await waitFor(async () => (await note.count()) === 0, 5_000, { what: 'the note to go' });
    },
  },
];
