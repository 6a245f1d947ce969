// Agents: create one with Image creation on, save a second version, list its versions, start a
// conversation with it, and check what the LLM gets in that conversation.

import {
  assert,
  gotoApp,
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

const TOOLTIP = 'Enable AI-powered image generation capabilities';

/** The rows of the Versions table once there are `n`: {version, cells, current, chip}. */
async function readVersions(page, n) {
  const panel = page.getByRole('tabpanel', { name: 'Versions' });
  await panel.waitFor();
  const rows = panel.locator('table tbody tr');
  await waitForCount(rows, n);
  return rows.evaluateAll((list) =>
    list.map((tr) => {
      const cells = [...tr.querySelectorAll('td')].map((td) => td.textContent.replace(/\s+/g, ' ').trim());
      const chip = tr.querySelector('.chip')?.textContent.trim() ?? null;
      return { version: chip ? cells[0].slice(0, -chip.length).trim() : cells[0], cells, current: tr.classList.contains('current'), chip };
    }));
}

export const tests = [
  {
    name: 'an agent with image creation: versions, a conversation with it, what the LLM gets',
    timeout: 45_000,
    async run({ page, baseUrl, llm, api }) {
      const t = tag();
      const name = `Poster painter ${t}`;
      const instructions = `You are a poster painter (${t}). Answer in one short sentence.`;

      // --- The list, then "New agent".
      await gotoApp(page, baseUrl, '/agents');
      await page.getByRole('heading', { level: 1, name: 'Agents' }).waitFor();
      await page.getByRole('link', { name: 'New agent' }).click();
      await waitFor(() => page.url().endsWith('/agents/new'), 5_000, { what: 'the URL /agents/new' });
      await page.getByRole('heading', { level: 1, name: 'New agent' }).waitFor();

      const configurationTab = page.getByRole('tab', { name: 'Configuration' });
      const versionsTab = page.getByRole('tab', { name: 'Versions' });
      assert.equal(await configurationTab.getAttribute('aria-selected'), 'true', 'Configuration is the open tab');
      assert.equal(await versionsTab.getAttribute('aria-selected'), 'false');

      // --- The form.
      await page.getByRole('textbox', { name: 'Name' }).fill(name);
      await page.getByRole('textbox', { name: 'Description' }).fill('Paints posters');
      await page.getByRole('textbox', { name: 'Instructions' }).fill(instructions);
      const model = page.getByRole('combobox', { name: 'Model' });
      const options = await model.locator('option').evaluateAll((l) => l.map((o) => o.value));
      assert.ok(options[0] === '' && options.some((o) => o === llm.model || o.endsWith(`/${llm.model}`)), `the default model and the scripted one: ${JSON.stringify(options)}`);

      const toolkits = page.getByRole('group', { name: 'TOOLKITS' });
      await toolkits.waitFor();
      const lastSwitch = await toolkits.locator('.switch-row').last().getByRole('switch').getAttribute('id');
      const toggle = toolkits.getByRole('switch', { name: 'Image creation' });
      assert.equal(await toggle.getAttribute('id'), lastSwitch, 'Image creation is the last toolkit');
      await waitForChecked(toggle, 'false');

      // The info icon: its tooltip shows on hover, and on keyboard focus.
      const info = toolkits.getByRole('img', { name: TOOLTIP });
      const tooltip = info.locator('.tooltip');
      assert.equal(await tooltip.isVisible(), false, 'no tooltip before hovering');
      await info.hover();
      await waitFor(() => tooltip.isVisible(), 3_000, { what: 'the tooltip to show on hover' });
      assert.equal(normalize(await tooltip.innerText()), TOOLTIP);
      await page.mouse.move(5, 790);
      await waitFor(async () => !(await tooltip.isVisible()), 3_000, { what: 'the tooltip to hide when the mouse leaves' });
      await info.focus();
      await waitFor(() => tooltip.isVisible(), 3_000, { what: 'the tooltip to show on keyboard focus' });

      await toggle.click();
      await waitForChecked(toggle, 'true');
      await screenshot(page, 'screen-agent-configuration', { fullPage: true });

      // --- Save: version 1.
      await page.getByRole('button', { name: 'Create agent' }).click();
      await ui.toast(page, 'status', 'Agent saved (version 1)').waitFor();
      await waitFor(() => /\/agents\/(?!new)[^/]+$/.test(page.url()), 5_000, { what: 'the URL /agents/{id}' });
      const agentId = page.url().split('/agents/')[1];
      await page.getByRole('heading', { level: 1, name }).waitFor();
      await waitForText(page.locator('.page-header p.small'), 'Version 1');
      const saved = await api.get(`/api/agents/${agentId}`);
      assert.equal(saved.version, 1);
      assert.equal(saved.instructions, instructions);
      assert.equal(saved.meta.internal_tools.image_creation, true);

      // --- Change the description: version 2.
      const description = page.getByRole('textbox', { name: 'Description' });
      await waitFor(async () => (await description.inputValue()) === 'Paints posters', 5_000, {
        what: 'the saved description in the form',
      });
      await description.fill('Paints posters, bold colours');
      await page.getByRole('button', { name: 'Save new version' }).click();
      await ui.toast(page, 'status', 'Agent saved (version 2)').waitFor();
      await waitForText(page.locator('.page-header p.small'), 'Version 2');
      await waitForChecked(toggle, 'true', 3_000);

      // --- Versions tab: 2 rows, the current one (2) marked. Right after the save the old row
      // keeps its "current" chip too (a known app bug, its own test below), so this checks the
      // new row here and the whole table after a reload.
      await versionsTab.click();
      assert.equal(await versionsTab.getAttribute('aria-selected'), 'true');
      let table = await readVersions(page, 2);
      const v2 = table.find((r) => r.version === '2');
      assert.ok(v2?.chip === 'current' && v2.current, `version 2 is marked current: ${JSON.stringify(table)}`);
      await page.reload({ waitUntil: 'networkidle' });
      await page.getByRole('heading', { level: 1, name }).waitFor();
      await versionsTab.click();
      table = await readVersions(page, 2);
      const marked = table.filter((r) => r.chip === 'current');
      assert.deepEqual(marked.map((r) => r.version), ['2'], `only version 2 is marked current: ${JSON.stringify(table)}`);
      assert.ok(marked[0].current, 'the current row is highlighted');
      assert.deepEqual(table.map((r) => r.version).sort(), ['1', '2'], `versions 1 and 2 are listed: ${JSON.stringify(table)}`);
      assert.ok(table.every((r) => r.cells[2] === name && r.cells[4] === 'on'), `name and Image creation per row: ${JSON.stringify(table)}`);
      await screenshot(page, 'screen-agent-versions');
      await configurationTab.click();

      // --- The list shows it.
      await ui.sidebar(page).getByRole('link', { name: 'Agents' }).click();
      const card = page.locator('li.card').filter({ hasText: name });
      await card.waitFor();
      await waitForText(card.locator('p.small'), /^Version 2 · default model\s*Image creation$/);
      assert.equal(normalize(await card.locator('p.muted').first().innerText()), 'Paints posters, bold colours');
      await card.getByRole('button', { name: 'New conversation' }).waitFor();
      await screenshot(page, 'screen-agents-list');
      await card.getByRole('link', { name: 'Edit' }).click();
      await page.getByRole('heading', { level: 1, name }).waitFor();

      // --- "New conversation" on the agent's page starts one with the agent and opens it.
      await page.locator('main').getByRole('button', { name: 'New conversation' }).click();
      await waitFor(() => /\/c\/[^/]+$/.test(page.url()), 10_000, { what: 'the new conversation to open' });
      const conversationId = page.url().split('/c/')[1];
      const conversation = await api.get(`/api/conversations/${conversationId}`);
      assert.equal(conversation.agent_id, agentId, 'the conversation belongs to the agent');
      await page.getByRole('button', { name: 'Internal tools' }).click();
      const chatToggle = page.getByRole('dialog', { name: 'Internal tools' }).getByRole('switch', { name: 'Image creation' });
      await waitForChecked(chatToggle, 'true');
      await page.getByText('Image creation on', { exact: true }).waitFor();
      await page.keyboard.press('Escape');

      // --- A message in it: the agent's instructions are the system message, the tool is offered.
      const text = `Hello agent, who are you? ${t}`;
      await sendWithEnter(page, text);
      await waitForText(ui.assistantArticles(page).last().locator('.markdown'), `Echo: ${text}`);
      await waitForIdle(page);
      const [sent] = llm.chatRequestsMentioning(text);
      assert.ok(sent, 'the LLM got the message');
      const system = sent.body.messages[0];
      assert.equal(system.role, 'system', 'the first message is the system message');
      const systemText = typeof system.content === 'string' ? system.content : JSON.stringify(system.content);
      assert.ok(systemText.startsWith(instructions), `the system message starts with the instructions: ${JSON.stringify(systemText)}`);
      assert.deepEqual(sent.body.tools?.map((x) => x.function.name), ['image_generator'], 'the image tool is offered');
      assert.deepEqual(sent.body.messages.at(-1), { role: 'user', content: text });

      // --- Delete the agent (with confirmation); its conversation stays.
      await gotoApp(page, baseUrl, `/agents/${agentId}`);
      await page.getByRole('heading', { level: 1, name }).waitFor();
      await page.getByRole('button', { name: 'Delete agent' }).click();
      const confirm = page.getByRole('alertdialog');
      await waitForText(confirm.locator('h2'), 'Delete agent?');
      await confirm.getByRole('button', { name: 'Delete', exact: true }).click();
      await ui.toast(page, 'status', 'Agent deleted').waitFor();
      await waitFor(() => page.url().endsWith('/agents'), 5_000, { what: 'back on /agents' });
      await page.getByRole('heading', { level: 1, name: 'Agents' }).waitFor();
      await waitForCount(page.locator('li.card').filter({ hasText: name }), 0);
      assert.equal((await api.request('GET', `/api/agents/${agentId}`)).status, 404);
      assert.equal((await api.get(`/api/conversations/${conversationId}`)).id, conversationId, 'the conversation stays');
    },
  },
  {
    // Fails with the current build: see end2end/README.md "Known app bugs".
    name: 'right after saving a new version only that version is marked current',
    async run({ page, baseUrl, api }) {
      const name = `Versioned ${tag()}`;
      const agent = await api.post('/api/agents', { name, description: 'one', instructions: 'Be brief.' });
      await gotoApp(page, baseUrl, `/agents/${agent.id}`);
      const description = page.getByRole('textbox', { name: 'Description' });
      await waitFor(async () => (await description.inputValue()) === 'one', 5_000, { what: 'the form to load' });
      await page.getByRole('tab', { name: 'Versions' }).click();
      assert.deepEqual((await readVersions(page, 1)).map((r) => [r.version, r.chip]), [['1', 'current']]);
      await page.getByRole('tab', { name: 'Configuration' }).click();
      await description.fill('two');
      await page.getByRole('button', { name: 'Save new version' }).click();
      await ui.toast(page, 'status', 'Agent saved (version 2)').waitFor();
      await page.getByRole('tab', { name: 'Versions' }).click();
      const table = await readVersions(page, 2);
      const api2 = await api.get(`/api/agents/${agent.id}/versions`);
      assert.deepEqual(api2.map((v) => [String(v.version), v.current]), [['2', true], ['1', false]], 'the API is right');
      assert.deepEqual(
        table.map((r) => [r.version, r.chip, r.current]),
        [['2', 'current', true], ['1', null, false]],
        `the table as the API says: only version 2 is current; the table shows ${JSON.stringify(table.map((r) => [r.version, r.chip, r.current]))}`,
      );
    },
  },
];
