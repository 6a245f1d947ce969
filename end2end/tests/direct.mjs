// Easel with no LLM configured: the built-in `direct` provider answers.

import { assert, gotoApp, waitForText } from '../support/helpers.mjs';

export const server = 'direct';

export const tests = [
  {
    name: 'without an LLM the reply explains how to connect one',
    async run({ page, baseUrl, api, llm }) {
      assert.equal(llm, null, 'no scripted LLM in this mode');
      const models = await api.get('/api/models');
      assert.deepEqual(models.llm.map((m) => m.id), ['direct']);

      await gotoApp(page, baseUrl, '/');
      await page.getByRole('button', { name: 'New conversation', exact: true }).click();
      const box = page.getByLabel('Message', { exact: true });
      await box.fill('Hello?');
      await box.press('Enter');
      await waitForText(
        page.getByRole('article', { name: 'Assistant', exact: true }).last().locator('.markdown'),
        /running without a language model/,
      );
    },
  },
];
