// Accounts in the browser (EASEL_AUTH=accounts, a fresh database): the first visit creates the
// admin account; a second user (created on the admin page) cannot open the admin's conversation
// or image by URL; credits (enabled and priced on the admin page) are shown before Generate and
// taken exactly after it, and a user short of credits sees why Generate is off; an API key made
// on its page is shown once and works as a bearer token; a password change ends the other
// sessions, whose next request returns to the sign-in page.
//
// The tests build on each other in order (the admin of the first one signs in to the others);
// run alone, a test first creates the admin through the API.

import { assert, gotoApp, normalize, screenshot, ui, waitFor, waitForText } from '../support/helpers.mjs';

export const server = 'accounts';

const ADMIN = { name: 'Ada Admin', email: 'ada@example.test', password: 'correct horse battery' };
const USER = { name: 'Bo User', email: 'bo@example.test', password: 'another long secret' };
const MODEL = 'tiny-sd';
const COST = 5;

const userMenu = (page) => page.locator('.user-menu-button');

/** Makes sure the admin exists (a test run alone) without signing anyone in. */
async function ensureAdmin(baseUrl) {
  const status = await (await fetch(new URL('/api/auth/status', baseUrl))).json();
  if (!status.setup_needed) return;
  const res = await fetch(new URL('/api/auth/setup', baseUrl), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(ADMIN),
  });
  assert.equal(res.status, 201, `setup answered ${res.status}`);
}

/** Signs in through the sign-in page and waits for the app. */
async function signIn(page, baseUrl, who, path = '/') {
  await gotoApp(page, baseUrl, path);
  await page.getByRole('heading', { level: 1, name: 'Sign in to Easel' }).waitFor();
  await page.getByLabel('Email').fill(who.email);
  await page.getByLabel('Password').fill(who.password);
  await page.getByLabel('Password').press('Enter');
  await ui.sidebar(page).waitFor();
  await waitForText(userMenu(page).locator('.user-name'), who.name);
}

/** A JSON request with the page's cookies (its session). */
async function pageApi(page, baseUrl, method, path, body) {
  const res = await page.request.fetch(new URL(path, baseUrl).toString(), {
    method,
    data: body === undefined ? undefined : body,
    failOnStatusCode: false,
  });
  const text = await res.text();
  return { status: res.status(), body: text ? JSON.parse(text) : null };
}

/** Makes sure the second user exists (created by the admin, through the API). */
async function ensureUser(page, baseUrl) {
  const list = await pageApi(page, baseUrl, 'GET', '/api/admin/users');
  const found = list.body.find((u) => u.email === USER.email);
  if (found) return found;
  const created = await pageApi(page, baseUrl, 'POST', '/api/admin/users', { ...USER, role: 'user' });
  assert.equal(created.status, 201);
  return created.body;
}

export const tests = [
  {
    name: 'first run: the page creates the admin account and opens the app signed in',
    run: async ({ page, baseUrl }) => {
      await gotoApp(page, baseUrl, '/agents');
      await page.getByRole('heading', { level: 1, name: 'Create the admin account' }).waitFor();
      // Nothing else renders (no sidebar) and the first field has the focus.
      assert.equal(await ui.sidebar(page).count(), 0, 'no app before the admin exists');
      await waitFor(() => page.evaluate(() => document.activeElement?.getAttribute('name') === 'name'), 5_000, {
        what: 'the focus on the Name field',
      });
      await screenshot(page, 'screen-accounts-setup');
      await page.getByLabel('Name').fill(ADMIN.name);
      await page.getByLabel('Email').fill(ADMIN.email);
      await page.getByLabel('Password').fill(ADMIN.password);
      await page.getByLabel('Password').press('Enter');
      // Signed in, on the page that was asked for.
      await page.getByRole('heading', { level: 1, name: 'Agents' }).waitFor();
      await waitForText(userMenu(page).locator('.user-name'), ADMIN.name);
      const status = await pageApi(page, baseUrl, 'GET', '/api/auth/status');
      assert.equal(status.body.signed_in, true);
      assert.equal(status.body.setup_needed, false);
      // The menu offers the admin's pages.
      await userMenu(page).click();
      const menu = page.getByRole('navigation', { name: 'Account' });
      for (const name of ['API keys', 'Change password', 'Admin']) await menu.getByRole('link', { name }).waitFor();
      await menu.getByRole('button', { name: 'Sign out' }).waitFor();
    },
  },
  {
    name: "isolation: a user made on the admin page cannot open the admin's conversation or image by URL",
    timeout: 40_000,
    run: async ({ page, browser, baseUrl }) => {
      await ensureAdmin(baseUrl);
      await signIn(page, baseUrl, ADMIN, '/admin');
      await page.getByRole('heading', { level: 1, name: 'Admin' }).waitFor();
      // Create the user on the Users tab.
      const form = page.getByRole('form', { name: 'Create a user' });
      await form.getByLabel('Name').fill(USER.name);
      await form.getByLabel('Email').fill(USER.email);
      await form.getByLabel('Password').fill(USER.password);
      await form.getByRole('button', { name: 'Create user' }).click();
      const row = page.locator('table.users tbody tr').filter({ hasText: USER.email });
      await row.waitFor();
      assert.match(normalize(await row.innerText()), /Bo User bo@example\.test user active/);

      // The admin's conversation with an image (the built-in direct provider paints it).
      const conversation = (await pageApi(page, baseUrl, 'POST', '/api/conversations', { internal_tools: { image_creation: true } })).body;
      const sent = await pageApi(page, baseUrl, 'POST', `/api/conversations/${conversation.id}/messages`, {
        content: 'a private red fox, 64x64, seed 7',
      });
      assert.equal(sent.status, 202);
      const image = await waitFor(async () => {
        const detail = (await pageApi(page, baseUrl, 'GET', `/api/conversations/${conversation.id}?images=url`)).body;
        if (detail.active_run_id) return null;
        return detail.messages.flatMap((m) => m.images ?? [])[0];
      }, 15_000, { what: "the admin's image" });
      await gotoApp(page, baseUrl, `/c/${conversation.id}`);
      await page.locator('.image-tile img').first().waitFor();

      // The user, in a browser of their own: a wrong password first, then the right one.
      const other = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      try {
        const bo = await other.newPage();
        await gotoApp(bo, baseUrl, `/c/${conversation.id}`);
        await bo.getByRole('heading', { level: 1, name: 'Sign in to Easel' }).waitFor();
        await bo.getByLabel('Email').fill(USER.email);
        await bo.getByLabel('Password').fill('not the password');
        await bo.getByLabel('Password').press('Enter');
        await waitForText(bo.getByRole('alert'), 'The email or password is not right.');
        await bo.getByLabel('Password').fill(USER.password);
        await bo.getByRole('button', { name: 'Sign in', exact: true }).click();
        // The address was kept: the admin's conversation, which for this user does not exist.
        await waitForText(bo.locator('.main .error-text'), /does not exist/);
        assert.equal(await bo.locator('.image-tile').count(), 0, 'no image of the admin shows');
        assert.ok(!normalize(await bo.locator('body').innerText()).includes('private red fox'), 'no text of the admin shows');
        assert.equal(await ui.sidebar(bo).locator('.conversation-item').count(), 0, "the admin's list is not theirs");
        // The image's own address answers 404 like a missing one.
        for (const url of [image.url, image.thumbnail_url, `/api/conversations/${conversation.id}`]) {
          const res = await bo.request.get(new URL(url, baseUrl).toString(), { failOnStatusCode: false });
          assert.equal(res.status(), 404, `${url} answered ${res.status()}`);
        }
        const response = await bo.goto(new URL(image.url, baseUrl).toString());
        assert.equal(response.status(), 404);
        // No admin page for them either (the link is not offered, the address is "not found").
        await gotoApp(bo, baseUrl, '/admin');
        await bo.locator('.not-found').waitFor();
        await userMenu(bo).click();
        await bo.getByRole('navigation', { name: 'Account' }).getByRole('link', { name: 'API keys' }).waitFor();
        assert.equal(await bo.getByRole('link', { name: 'Admin', exact: true }).count(), 0);
      } finally {
        await other.close();
      }
    },
  },
  {
    name: 'credits: the cost shows before Generate, the balance drops by exactly that, and too few credits disable it',
    timeout: 40_000,
    run: async ({ page, browser, baseUrl }) => {
      await ensureAdmin(baseUrl);
      await signIn(page, baseUrl, ADMIN, '/admin');
      const bo = await ensureUser(page, baseUrl);
      // Again, so the list shows Bo also when this test runs alone (ensureUser made him).
      await gotoApp(page, baseUrl, '/admin');

      // Settings: credits on, the model's cost.
      await page.getByRole('tab', { name: 'Settings' }).click();
      const settings = page.getByRole('tabpanel', { name: 'Settings' });
      const enabled = settings.getByLabel('Generations cost credits');
      await waitFor(() => settings.getByRole('button', { name: 'Save settings' }).isEnabled(), 5_000);
      await enabled.check();
      await settings.locator(`input[name="cost-${MODEL}"]`).fill(String(COST));
      await settings.getByRole('button', { name: 'Save settings' }).click();
      await ui.toast(page, 'status', 'Settings saved').waitFor();
      const saved = (await pageApi(page, baseUrl, 'GET', '/api/admin/settings')).body;
      assert.equal(saved.credits.enabled, true);
      assert.equal(saved.model_costs[MODEL], COST);

      // The user gets 2 credits and no allowance (Users tab, Manage). The amount is typed before
      // the allowance is saved: saving reloads the list, and the editor keeps what was typed
      // (it was rebuilt with empty fields, and Set balance then said "enter a whole number").
      await page.getByRole('tab', { name: 'Users' }).click();
      await page.getByRole('button', { name: `Manage ${USER.name}` }).click();
      const editor = page.locator('#user-editor');
      const row = page.locator('table.users tbody tr').filter({ hasText: USER.email });
      await editor.getByLabel('Credits').fill('2');
      await editor.getByLabel('Allowance per period').fill('0');
      const reloaded = page.waitForResponse(
        (r) => r.request().method() === 'GET' && new URL(r.url()).pathname === '/api/admin/users',
      );
      await editor.getByRole('button', { name: 'Save allowance' }).click();
      await ui.toast(page, 'status', 'Allowance saved').waitFor();
      await reloaded;
      await waitForText(row.locator('td').nth(5), '0');
      assert.equal(await editor.getByLabel('Credits').inputValue(), '2', 'the typed amount survives the reload');
      await editor.getByRole('button', { name: 'Set balance' }).click();
      await ui.toast(page, 'status', 'Balance set to 2').waitFor();
      await waitForText(row.locator('td').nth(4), '2');
      await waitForText(editor.locator('p.small.muted'), /· 2 credits$/);

      // The admin in the Studio: the cost on the button, the balance beside it and in the menu.
      await gotoApp(page, baseUrl, '/studio');
      await page.getByRole('textbox', { name: 'Prompt', exact: true }).fill('a lighthouse at dusk');
      const generate = page.getByRole('button', { name: `Generate · ${COST} credits`, exact: true });
      await generate.waitFor();
      const me = (await pageApi(page, baseUrl, 'GET', '/api/me')).body;
      assert.equal(me.credits.enabled, true);
      const before = me.credits.balance;
      assert.ok(before >= COST, `the admin has ${before} credits`);
      await waitForText(page.locator('#studio-credits'), `Balance: ${before} credits`);
      await waitForText(userMenu(page).locator('.user-credits'), new RegExp(`^${before} credits · refills to \\d+ on \\d{4}-\\d\\d-\\d\\d$`));
      // The quote follows the form: two images cost twice as much.
      await page.getByRole('slider', { name: /^Images: / }).fill('2');
      await page.getByRole('button', { name: `Generate · ${2 * COST} credits`, exact: true }).waitFor();
      await page.getByRole('slider', { name: /^Images: / }).fill('1');
      await generate.click();
      const after = before - COST;
      await waitForText(userMenu(page).locator('.user-credits'), new RegExp(`^${after} credits`), 20_000);
      await waitForText(page.locator('#studio-credits'), `Balance: ${after} credits`);
      assert.equal((await pageApi(page, baseUrl, 'GET', '/api/me')).body.credits.balance, after);
      await screenshot(page, 'screen-accounts-studio-credits');

      // The user with 2 credits: the reason, and a Generate that cannot be pressed.
      const other = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      try {
        const boPage = await other.newPage();
        await signIn(boPage, baseUrl, USER, '/studio');
        await boPage.getByRole('textbox', { name: 'Prompt', exact: true }).fill('a lighthouse at dusk');
        await waitForText(boPage.locator('#studio-credits'), `Not enough credits: needs ${COST} credits, 2 left.`);
        const button = boPage.getByRole('button', { name: `Generate · ${COST} credits`, exact: true });
        assert.equal(await button.isDisabled(), true, 'Generate is disabled');
        assert.equal(await button.getAttribute('aria-describedby'), 'studio-credits');
        await waitForText(userMenu(boPage).locator('.user-credits'), '2 credits');
        assert.equal(bo.email, USER.email);
      } finally {
        await other.close();
      }
    },
  },
  {
    name: 'API keys: a key made on its page is shown once, works as a bearer token, and stops when revoked',
    run: async ({ page, baseUrl }) => {
      await ensureAdmin(baseUrl);
      await signIn(page, baseUrl, ADMIN, '/keys');
      await page.getByRole('heading', { level: 1, name: 'API keys' }).waitFor();
      const keyName = page.getByRole('textbox', { name: 'Name', exact: true });
      await keyName.fill('ci script');
      await keyName.press('Enter');
      const shown = page.getByRole('region', { name: 'Your new key “ci script”' });
      await shown.waitFor();
      await waitForText(shown.getByRole('alert'), /shown only this once/);
      await shown.getByRole('button', { name: 'Copy' }).waitFor();
      const key = await shown.getByRole('textbox', { name: 'The new API key' }).inputValue();
      assert.match(key, /^esk_/);
      const row = page.locator('table.keys tbody tr').filter({ hasText: 'ci script' });
      await row.waitFor();
      await screenshot(page, 'screen-accounts-keys');

      // It works from a program (no cookie), as the admin.
      const bearer = { authorization: `Bearer ${key}` };
      const me = await fetch(new URL('/api/me', baseUrl), { headers: bearer });
      assert.equal(me.status, 200);
      assert.equal((await me.json()).email, ADMIN.email);

      // Shown once: after a reload only its prefix is left.
      await page.reload({ waitUntil: 'networkidle' });
      await row.waitFor();
      assert.ok(!(await page.content()).includes(key), 'the key is not in the page any more');
      assert.ok(key.startsWith(normalize(await row.locator('code').innerText()).replace('…', '')));

      // Revoked (after confirming): refused.
      await row.getByRole('button', { name: 'Revoke ci script' }).click();
      const dialog = page.getByRole('alertdialog');
      await dialog.getByRole('button', { name: 'Revoke', exact: true }).click();
      await ui.toast(page, 'status', 'API key revoked').waitFor();
      await waitFor(() => row.count().then((n) => n === 0), 5_000, { what: 'the key to leave the list' });
      assert.equal((await fetch(new URL('/api/me', baseUrl), { headers: bearer })).status, 401);
    },
  },
  {
    name: "password change: the other sessions end and their next request returns to the sign-in page",
    run: async ({ page, browser, baseUrl }) => {
      await ensureAdmin(baseUrl);
      await signIn(page, baseUrl, ADMIN, '/');
      await ensureUser(page, baseUrl);
      const first = await browser.newContext();
      const second = await browser.newContext();
      try {
        const one = await first.newPage();
        const two = await second.newPage();
        await signIn(one, baseUrl, USER, '/account');
        await signIn(two, baseUrl, USER, '/');
        await one.getByLabel('Current password').fill(USER.password);
        await one.getByLabel('New password').fill(`${USER.password} 2`);
        await one.getByLabel('New password').press('Enter');
        await waitForText(one.getByRole('status').filter({ hasText: 'Password changed' }), /Password changed/);
        USER.password = `${USER.password} 2`;
        // The other browser's session is gone: its next request shows the sign-in page.
        await ui.sidebar(two).getByRole('button', { name: 'New conversation', exact: true }).click();
        await two.getByRole('heading', { level: 1, name: 'Sign in to Easel' }).waitFor();
        // Signing out of the first one ends it too; the new password signs in.
        await userMenu(one).click();
        await one.getByRole('button', { name: 'Sign out' }).click();
        await one.getByRole('heading', { level: 1, name: 'Sign in to Easel' }).waitFor();
        await signIn(one, baseUrl, USER, '/');
      } finally {
        await first.close();
        await second.close();
      }
    },
  },
];
