#!/usr/bin/env node
// The browser test runner: `node end2end/run.mjs [filter]`.
//
// Starts the scripted LLM and Easel once, launches the system Chromium once (playwright-core,
// no browser download), and runs every test of every module in `end2end/tests/*.mjs`, each in a
// fresh browser context and page. A module exports
//
//   export const tests = [{ name, run: async ({ page, baseUrl, llm, api, ... }) => { ... } }];
//   export const server = 'direct';   // optional: run against a server with no LLM configured
//   export const server = 'accounts'; // or: no LLM, EASEL_AUTH=accounts, a fresh database
//
// `filter` (a substring, case-insensitive) picks tests by `module › name`. A test fails if it
// throws, runs past its timeout (30 s) or the page throws an uncaught error. Each test's last
// screen goes to `end2end/screenshots/<name>.png`. The last line is `N passed, N failed`; the
// exit code is 1 when anything failed.
//
// Environment: EASEL_BIN (server binary, default target/debug/easel), CHROMIUM_PATH (default
// /usr/bin/chromium), ORT_DYLIB_PATH, E2E_TIMEOUT_MS (per test), E2E_KEEP=1 (keep temp data).

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { chromium } from 'playwright-core';

import { apiClient } from './support/helpers.mjs';
import { startLlm } from './support/llm.mjs';
import { startEasel } from './support/server.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const TESTS_DIR = path.join(HERE, 'tests');
const SHOTS_DIR = path.join(HERE, 'screenshots');
const TEST_TIMEOUT_MS = Number(process.env.E2E_TIMEOUT_MS || 30_000);
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const filter = (process.argv.slice(2).find((a) => !a.startsWith('-')) ?? '').toLowerCase();
const color = process.stdout.isTTY && !process.env.NO_COLOR;
const paint = (code, text) => (color ? `\x1b[${code}m${text}\x1b[0m` : text);

async function loadModules() {
  const files = fs
    .readdirSync(TESTS_DIR)
    .filter((f) => f.endsWith('.mjs'))
    .sort();
  const modules = [];
  for (const file of files) {
    const mod = await import(pathToFileURL(path.join(TESTS_DIR, file)).href);
    const name = path.basename(file, '.mjs');
    if (!Array.isArray(mod.tests)) throw new Error(`${file} does not export \`tests\` (an array)`);
    const tests = mod.tests
      .map((t) => ({ ...t, module: name, fullName: `${name} › ${t.name}` }))
      .filter((t) => !filter || t.fullName.toLowerCase().includes(filter));
    const server = ['direct', 'accounts'].includes(mod.server) ? mod.server : 'scripted';
    if (tests.length > 0) modules.push({ name, server, tests });
  }
  return modules;
}

function shotName(test) {
  return `${test.name.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 120) || 'test'}.png`;
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function runTest(browser, test, env) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  const consoleErrors = [];
  const pageErrors = [];
  const failedRequests = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') consoleErrors.push(msg.text());
  });
  page.on('pageerror', (error) => pageErrors.push(error.stack || error.message || String(error)));
  page.on('requestfailed', (req) => {
    const why = req.failure()?.errorText ?? 'failed';
    // Leaving a page aborts its streams; that is not a failure.
    if (!/ERR_ABORTED/.test(why)) failedRequests.push(`${req.method()} ${req.url()}: ${why}`);
  });

  const started = Date.now();
  let error = null;
  try {
    await withTimeout(
      test.run({ page, context, browser, baseUrl: env.easel.baseUrl, llm: env.easel.llm, api: env.api, easel: env.easel }),
      test.timeout ?? TEST_TIMEOUT_MS,
      'the test',
    );
  } catch (e) {
    error = e;
  }
  // An uncaught error in the page fails the test even when every assertion held.
  if (!error && pageErrors.length > 0) error = new Error(`the page threw: ${pageErrors[0].split('\n')[0]}`);
  const ms = Date.now() - started;

  const shot = path.join(SHOTS_DIR, shotName(test));
  try {
    await page.screenshot({ path: shot, fullPage: true, timeout: 5_000 });
  } catch (e) {
    consoleErrors.push(`(screenshot failed: ${e.message.split('\n')[0]})`);
  }
  await context.close().catch(() => {});
  return { error, ms, shot, consoleErrors, pageErrors, failedRequests };
}

function report(test, result) {
  const rel = path.relative(process.cwd(), result.shot);
  if (!result.error) {
    console.log(`${paint(32, '✓')} ${test.fullName} ${paint(2, `(${result.ms} ms)`)}`);
  } else {
    console.log(`${paint(31, '✗')} ${test.fullName} ${paint(2, `(${result.ms} ms)`)}`);
    const stack = (result.error.stack || String(result.error)).split('\n');
    const lines = stack.filter((l, i) => i === 0 || /end2end\/tests\//.test(l)).slice(0, 6);
    for (const line of lines) console.log(`    ${line.trim()}`);
    console.log(`    screenshot: ${rel}`);
  }
  const extra = [
    ...result.pageErrors.map((e) => `page error: ${e.split('\n').slice(0, 4).join(' | ')}`),
    ...result.consoleErrors.map((e) => `console error: ${e}`),
    ...(result.error ? result.failedRequests.map((e) => `request failed: ${e}`) : []),
  ];
  for (const line of extra.slice(0, 12)) console.log(`    ${paint(33, line)}`);
  if (extra.length > 12) console.log(`    … ${extra.length - 12} more`);
}

async function main() {
  const modules = await loadModules();
  const total = modules.reduce((n, m) => n + m.tests.length, 0);
  if (total === 0) {
    console.log(filter ? `No test matches "${filter}".` : 'No tests in end2end/tests.');
    console.log('0 passed, 0 failed');
    return filter ? 1 : 0;
  }
  fs.mkdirSync(SHOTS_DIR, { recursive: true });

  let passed = 0;
  let failed = 0;
  const servers = new Map();
  let browser = null;
  const cleanup = async () => {
    await browser?.close().catch(() => {});
    for (const s of servers.values()) await s.stop().catch(() => {});
  };
  try {
    // One server per mode in use, started once and shared by the modules of that mode.
    for (const mode of new Set(modules.map((m) => m.server))) {
      if (mode === 'scripted') {
        const llm = await startLlm();
        const easel = await startEasel({ mode, llm }).catch(async (error) => {
          await llm.close();
          throw error;
        });
        const stop = easel.stop;
        easel.stop = async () => {
          await stop();
          await llm.close();
        };
        servers.set(mode, easel);
      } else if (mode === 'accounts') {
        // Accounts on a fresh database (no LLM): the module starts with "Create the admin account".
        servers.set(mode, await startEasel({ mode: 'direct', env: { EASEL_AUTH: 'accounts' } }));
      } else {
        servers.set(mode, await startEasel({ mode }));
      }
    }
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      // Playwright gives every launch a fresh temporary --user-data-dir (and refuses one in args).
      headless: true,
      chromiumSandbox: false,
      args: CHROMIUM_ARGS,
    });
  } catch (error) {
    console.log(`${paint(31, '✗')} setup: ${error.stack || error.message}`);
    await cleanup();
    console.log(`0 passed, ${total} failed`);
    return 1;
  }

  for (const mod of modules) {
    const easel = servers.get(mod.server);
    const env = { easel, api: apiClient(easel.baseUrl) };
    for (const test of mod.tests) {
      const logStart = easel.output().length;
      const result = await runTest(browser, test, env);
      report(test, result);
      if (result.error) {
        failed++;
        const log = easel.output().slice(logStart).trim().split('\n').slice(-20);
        if (log.length > 0 && log[0] !== '') {
          console.log(paint(2, `    server output during the test (last ${log.length} lines):`));
          for (const line of log) console.log(paint(2, `      ${line}`));
        }
      } else {
        passed++;
      }
    }
  }

  await cleanup();
  console.log(`${passed} passed, ${failed} failed`);
  return failed > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(error);
    console.log('0 passed, 1 failed');
    process.exit(1);
  },
);
