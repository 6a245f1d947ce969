// Starts a real Easel server for the browser tests: a temporary database folder, the tiny test
// image models, a free port, and either the scripted LLM (`mode: 'scripted'`) or no LLM at all
// (`mode: 'direct'`: no OPENAI_* variables, so Easel uses its built-in `direct` provider).
// Waits for `GET /api/health`, and stops the server (and the LLM it started) on `stop()`, on
// exit, on Ctrl-C and on an uncaught failure.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { startLlm } from './llm.mjs';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const DEFAULT_ORT =
  '/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.1.31.1';
const MODELS_DIR = path.join(ROOT, 'server', 'tests', 'assets', 'models');

/**
 * The presets of the test model (its `easel.toml` in the copy each server gets). The tiny model
 * paints a 64×64 step in well under a millisecond and Easel allows at most 150 steps, so steps
 * alone cannot make painting visible: 3 images at 64×64 and 150 `heun` steps take ~0.15 s. At
 * 384×384, a step of the slower second-order `heun` sampler for 3 images takes ~8 ms on a 2-core
 * machine, so the default (`auto`, 150 steps) 3-image request takes ~1.8 s from message to
 * answer (~1.3 s painting, the rest the scripted LLM's pacing): long enough to see and assert
 * placeholders, progress and previews. 64×64 with `low` (4 steps) stays fast for tests that only
 * need many images (tests/perf.mjs).
 */
export const TEST_MODEL_TOML = `display_name = "Tiny SD (end2end)"
default_size = "384x384"
allowed_sizes = ["64x64", "128x128", "384x384"]
default_sampler = "heun"
default_guidance = 7.5
[steps]
auto = 150
low = 4
medium = 40
high = 150
`;

/** Makes `<dataDir>/models/tiny-sd`: the test model with the end2end presets above. */
function makeModelsDir(dataDir, toml = TEST_MODEL_TOML) {
  const models = path.join(dataDir, 'models');
  const target = path.join(models, 'tiny-sd');
  fs.cpSync(path.join(MODELS_DIR, 'tiny-sd'), target, { recursive: true });
  fs.writeFileSync(path.join(target, 'easel.toml'), toml);
  return models;
}

// Settings of the developer's shell that would change what the server under test does.
const SCRUBBED = /^(OPENAI_|EASEL_|DATABASE_URL$|LEPTOS_)/;

// Children still running (and their data folders), cleaned up synchronously if the runner dies.
const live = new Map();
let hooked = false;

function hookExit() {
  if (hooked) return;
  hooked = true;
  const killAll = () => {
    for (const [child, dataDir] of live) {
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
      if (!process.env.E2E_KEEP) fs.rmSync(dataDir, { recursive: true, force: true });
    }
    live.clear();
  };
  process.on('exit', killAll);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(signal, () => {
      if (live.size > 0) console.error(`\n${signal}: stopping the Easel server(s) and exiting.`);
      killAll();
      process.exit(signal === 'SIGINT' ? 130 : 143);
    });
  }
}

/** A port that was free a moment ago on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.unref();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/**
 * Starts Easel.
 * @param {object} options
 * @param {'scripted'|'direct'} [options.mode] scripted LLM (default) or no LLM at all.
 * @param {object} [options.llm] an already started scripted LLM to use (else one is started).
 * @param {Record<string,string>} [options.env] extra environment for the server.
 * @param {number} [options.timeoutMs] how long to wait for /api/health (default 60 s).
 * @param {string} [options.modelToml] the test model's `easel.toml` (default TEST_MODEL_TOML).
 * @param {boolean} [options.models] false: an empty models folder (a fresh install).
 */
export async function startEasel({ mode = 'scripted', llm = null, env = {}, timeoutMs = 60_000, modelToml, models = true } = {}) {
  hookExit();
  const bin = path.resolve(ROOT, process.env.EASEL_BIN || path.join('target', 'debug', 'easel'));
  if (!fs.existsSync(bin)) {
    throw new Error(`No Easel binary at ${bin}: run \`cargo xtask build\` first, or set EASEL_BIN.`);
  }
  // E2E_SITE_ROOT: web assets built elsewhere (a frozen build); else Easel's default target/site.
  const siteRoot = env.LEPTOS_SITE_ROOT
    ?? (process.env.E2E_SITE_ROOT ? path.resolve(ROOT, process.env.E2E_SITE_ROOT) : path.join(ROOT, 'target', 'site'));
  if (!fs.existsSync(path.join(siteRoot, 'pkg'))) {
    throw new Error(`No web assets in ${siteRoot}: run \`cargo xtask build\` first, or set E2E_SITE_ROOT.`);
  }

  let ownLlm = null;
  if (mode === 'scripted' && !llm) {
    ownLlm = await startLlm();
    llm = ownLlm;
  }

  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'easel-e2e-'));
  const logPath = path.join(dataDir, 'server.log');
  const logFile = fs.openSync(logPath, 'a');
  const modelsDir = models ? makeModelsDir(dataDir, modelToml) : path.join(dataDir, 'models');
  fs.mkdirSync(modelsDir, { recursive: true });
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !SCRUBBED.test(k)));

  // A port can be taken between the probe and the bind; try a few.
  let lastError;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const serverEnv = {
      ...base,
      RUST_LOG: process.env.RUST_LOG || 'info',
      EASEL_ADDR: `127.0.0.1:${port}`,
      DATABASE_URL: `sqlite://${path.join(dataDir, 'easel.db')}`,
      EASEL_MODELS_DIR: modelsDir,
      ...(models ? { EASEL_IMAGE_MODEL: 'tiny-sd' } : {}),
      // The perf measurement paints 100 images with ten calls in one answer (the default
      // allows four per answer; the cap itself is covered by the server's tests).
      EASEL_MAX_TOOL_CALLS: '10',
      // One local user unless a test module asks for accounts (`export const server = ...`).
      EASEL_AUTH: 'none',
      ...(process.env.E2E_SITE_ROOT ? { LEPTOS_SITE_ROOT: siteRoot } : {}),
      ORT_DYLIB_PATH: process.env.ORT_DYLIB_PATH || DEFAULT_ORT,
      ...(mode === 'scripted'
        ? { OPENAI_BASE_URL: llm.baseUrl, OPENAI_API_KEY: 'sk-end2end', EASEL_LLM_MODEL: llm.model }
        : {}),
      ...env,
    };
    const child = spawn(bin, ['serve'], { cwd: ROOT, env: serverEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    live.set(child, dataDir);
    let output = '';
    const collect = (chunk) => {
      output += chunk;
      if (output.length > 200_000) output = output.slice(-100_000);
      fs.writeSync(logFile, chunk);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    exited.then(() => live.delete(child));

    const baseUrl = `http://127.0.0.1:${port}`;
    try {
      await waitForHealth(baseUrl, exited, timeoutMs);
    } catch (error) {
      child.kill('SIGKILL');
      await exited;
      lastError = new Error(`${error.message}\n--- server output (${logPath}) ---\n${output.slice(-4000)}`);
      if (/address already in use|AddrInUse/i.test(output)) continue;
      break;
    }

    let stopped = null;
    const stop = () => {
      stopped ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
          await exited;
          clearTimeout(timer);
        }
        fs.closeSync(logFile);
        if (ownLlm) await ownLlm.close();
        if (!process.env.E2E_KEEP) fs.rmSync(dataDir, { recursive: true, force: true });
      })();
      return stopped;
    };
    return {
      baseUrl,
      port,
      mode,
      llm,
      dataDir,
      modelsDir,
      logPath,
      /** The server's output so far (stdout and stderr, interleaved). */
      output: () => output,
      stop,
    };
  }
  fs.closeSync(logFile);
  if (ownLlm) await ownLlm.close();
  if (process.env.E2E_KEEP) lastError.message += `\n(data kept in ${dataDir})`;
  else fs.rmSync(dataDir, { recursive: true, force: true });
  throw lastError;
}

async function waitForHealth(baseUrl, exited, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let dead = null;
  exited.then((status) => {
    dead = status;
  });
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    if (dead) throw new Error(`Easel exited before it was ready (code ${dead.code}, signal ${dead.signal})`);
    try {
      const res = await fetch(`${baseUrl}/api/health`, { signal: AbortSignal.timeout(2000) });
      if (res.ok) return await res.json();
      last = `${res.status} ${await res.text()}`;
    } catch (error) {
      last = error.cause?.code ?? error.message;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`Easel did not answer ${baseUrl}/api/health within ${timeoutMs} ms (last: ${last})`);
}

// `node end2end/support/server.mjs [direct]` starts one by hand, until Ctrl-C.
if (import.meta.url === `file://${process.argv[1]}`) {
  const easel = await startEasel({ mode: process.argv[2] === 'direct' ? 'direct' : 'scripted' });
  console.log(`Easel (${easel.mode}) at ${easel.baseUrl}; data in ${easel.dataDir}; Ctrl-C stops it.`);
  if (easel.llm) console.log(`scripted LLM at ${easel.llm.baseUrl}`);
}

/**
 * A stand-in for the Hugging Face hub serving the tiny test model (with the end2end presets) as
 * every repository: `GET /api/models/{owner}/{name}/tree/{rev}` and
 * `GET /{owner}/{name}/resolve/{rev}/{path}`, as `easel models pull` and "Get a model" use them.
 * Each file is sent in small pieces with a pause, so a page can see the progress.
 */
export async function startHub({ pauseMs = 40 } = {}) {
  const http = await import('node:http');
  const source = path.join(MODELS_DIR, 'tiny-sd');
  const files = [];
  const walk = (dir, prefix) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const rel = prefix + entry.name;
      if (entry.isDirectory()) walk(path.join(dir, entry.name), `${rel}/`);
      else if (rel !== 'easel.toml') files.push({ path: rel, bytes: fs.readFileSync(path.join(dir, entry.name)) });
    }
  };
  walk(source, '');
  files.push({ path: 'easel.toml', bytes: Buffer.from(TEST_MODEL_TOML.replace('default_size = "384x384"', 'default_size = "64x64"')) });
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://hub');
    const tree = url.pathname.match(/^\/api\/models\/[^/]+\/[^/]+\/tree\/[^/]+$/);
    if (tree) {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(files.map((f) => ({ type: 'file', path: f.path, size: f.bytes.length }))));
      return;
    }
    const resolve = url.pathname.match(/^\/[^/]+\/[^/]+\/resolve\/[^/]+\/(.+)$/);
    const file = resolve && files.find((f) => f.path === decodeURIComponent(resolve[1]));
    if (!file) {
      res.statusCode = 404;
      res.end();
      return;
    }
    res.setHeader('content-length', String(file.bytes.length));
    const piece = Math.max(4096, Math.ceil(file.bytes.length / 8));
    for (let at = 0; at < file.bytes.length; at += piece) {
      res.write(file.bytes.subarray(at, at + piece));
      await new Promise((r) => setTimeout(r, pauseMs));
    }
    res.end();
  });
  const port = await freePort();
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((resolve) => server.close(resolve)) };
}
