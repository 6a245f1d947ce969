// A scripted OpenAI-compatible chat server for the browser tests (node `http`, no dependencies).
//
// It speaks the real streaming wire format (`data: {chunk}\n\n` … `data: [DONE]\n\n`) and decides
// what to answer from the request alone, so tests are deterministic:
//
//   * last message is a `tool` message            → "Here are your images." (3+ chunks), `stop`
//   * `tools` offered and the last user message
//     asks for a picture (image/picture/draw/paint…) → a streamed `image_generator` call whose
//     arguments are split over 3+ chunks, `tool_calls`
//   * anything else                                → "Echo: <user text>" in several chunks, ~50 ms
//                                                    apart, `stop`
//
// `GET /v1/models` lists one model, `scripted`. Every request is recorded (`llm.requests`) so tests
// can assert on what Easel sent. A test may also queue a one-off answer with `llm.respondOnce(...)`
// (an HTTP error, a slow or never-ending stream…); queued answers are used before the script.

import http from 'node:http';

export const MODEL_ID = 'scripted';
export const TOOL_ANSWER = 'Here are your images.';
const PICTURE_WORDS = /\b(images?|pictures?|pics?|photos?|drawings?|draw|paint(?:ing|ings)?|sketch)\b/i;
const COUNT = /\b(\d+)\s+(?:images?|pictures?|pics?|photos?|drawings?|paintings?)\b(?:\s+of\b)?/i;

/** The text of a message whose `content` is a string or an array of `{type:'text', text}` parts. */
export function messageText(message) {
  const content = message?.content;
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) return content.map((p) => (typeof p === 'string' ? p : p?.text ?? '')).join('');
  return '';
}

/** What the scripted model decides to do with a chat request: `{kind, ...}`. */
export function decide(body) {
  const messages = Array.isArray(body?.messages) ? body.messages : [];
  const last = messages[messages.length - 1];
  if (last?.role === 'tool') return { kind: 'text', pieces: splitEvenly(TOOL_ANSWER, 3) };
  const lastUser = [...messages].reverse().find((m) => m.role === 'user');
  const userText = messageText(lastUser);
  const offersImages = Array.isArray(body?.tools)
    && body.tools.some((t) => t?.function?.name === 'image_generator');
  if (offersImages && PICTURE_WORDS.test(userText)) {
    const match = userText.match(COUNT);
    const n = match ? Math.max(1, parseInt(match[1], 10)) : 1;
    const prompt = (match ? userText.replace(match[0], ' ') : userText).replace(/\s+/g, ' ').trim();
    return { kind: 'tool', name: 'image_generator', arguments: JSON.stringify({ prompt, n }) };
  }
  return { kind: 'text', pieces: wordPieces(`Echo: ${userText}`) };
}

/** Splits text at word boundaries into at least `min` pieces (fewer only for one-word text). */
function wordPieces(text, min = 3) {
  const words = text.match(/\S+\s*|\s+/g) ?? [text];
  if (words.length >= min) return words;
  return splitEvenly(text, min);
}

/** Splits text into `parts` pieces of about equal length (every piece non-empty). */
function splitEvenly(text, parts) {
  const chars = [...text];
  const n = Math.max(1, Math.min(parts, chars.length));
  const size = Math.ceil(chars.length / n);
  const out = [];
  for (let i = 0; i < chars.length; i += size) out.push(chars.slice(i, i + size).join(''));
  return out;
}

/**
 * Starts the scripted server on 127.0.0.1 with a free port.
 * @param {{delayMs?: number, log?: (line: string) => void}} options
 *   delayMs: pause between streamed chunks (default 50).
 */
export async function startLlm({ delayMs = 50, log = () => {} } = {}) {
  const requests = [];
  const queue = [];
  // One-off answers for the next request whose last user message contains a given text.
  const keyed = [];
  const takeKeyed = (body) => {
    const messages = Array.isArray(body?.messages) ? body.messages : [];
    const lastUser = [...messages].reverse().find((m) => m.role === 'user');
    // Only the first round of a turn: a request that ends with a tool result is the turn's
    // next round and keeps following the script.
    if (!lastUser || messages[messages.length - 1]?.role === 'tool') return undefined;
    const text = messageText(lastUser);
    const at = keyed.findIndex((k) => text.includes(k.match));
    return at < 0 ? undefined : keyed.splice(at, 1)[0].plan;
  };
  let counter = 0;
  const sockets = new Set();

  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://llm.invalid');
    const raw = await readBody(req);
    let body = null;
    if (raw.length > 0) {
      try {
        body = JSON.parse(raw);
      } catch {
        body = raw;
      }
    }
    const record = { method: req.method, path: url.pathname, headers: req.headers, body, at: Date.now() };
    requests.push(record);
    log(`${req.method} ${url.pathname}`);

    const path = url.pathname.replace(/\/+$/, '');
    if (req.method === 'GET' && (path === '/v1/models' || path === '/models')) {
      return json(res, 200, { object: 'list', data: [{ id: MODEL_ID, object: 'model', created: 0, owned_by: 'end2end' }] });
    }
    if (req.method === 'POST' && (path === '/v1/chat/completions' || path === '/chat/completions')) {
      if (!body || typeof body !== 'object') {
        return json(res, 400, { error: { message: 'body is not JSON', type: 'invalid_request_error' } });
      }
      const once = takeKeyed(body) ?? queue.shift();
      const plan = once ? (typeof once === 'function' ? once(body) : once) : decide(body);
      record.plan = plan;
      return answer(req, res, body, plan, `chatcmpl-${++counter}`);
    }
    return json(res, 404, { error: { message: `no route ${req.method} ${url.pathname}`, type: 'not_found' } });
  });

  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });

  async function answer(req, res, body, plan, id) {
    if (plan.status && plan.status >= 400) {
      return json(res, plan.status, { error: { message: plan.error ?? 'scripted failure', type: 'server_error', code: null } });
    }
    if (body.stream !== true) {
      return json(res, 400, { error: { message: 'the scripted LLM only streams (set "stream": true)', type: 'invalid_request_error' } });
    }
    let closed = false;
    res.on('close', () => {
      closed = true;
    });
    const pause = plan.delayMs ?? delayMs;
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
    });
    const model = body.model ?? MODEL_ID;
    const created = Math.floor(Date.now() / 1000);
    const send = (delta, finishReason = null) => {
      if (closed) return;
      const chunk = {
        id,
        object: 'chat.completion.chunk',
        created,
        model,
        choices: [{ index: 0, delta, finish_reason: finishReason, logprobs: null }],
      };
      res.write(`data: ${JSON.stringify(chunk)}\n\n`);
    };
    const wait = () => (pause > 0 && !closed ? sleep(pause) : Promise.resolve());

    send({ role: 'assistant', content: '' });
    if (plan.kind === 'tool') {
      // One call (`name`, `arguments`) or several (`calls: [{name, arguments}]`), streamed one
      // after the other with their own `index`, as OpenAI streams parallel tool calls.
      const calls = plan.calls ?? [{ name: plan.name, arguments: plan.arguments, id: plan.callId }];
      for (const [index, call] of calls.entries()) {
        const args = typeof call.arguments === 'string' ? call.arguments : JSON.stringify(call.arguments ?? {});
        const pieces = splitEvenly(args, Math.max(3, plan.argumentChunks ?? 3));
        const callId = call.id ?? `call_${id.replace(/\W/g, '')}_${index}`;
        await wait();
        send({ tool_calls: [{ index, id: callId, type: 'function', function: { name: call.name, arguments: '' } }] });
        for (const piece of pieces) {
          await wait();
          send({ tool_calls: [{ index, function: { arguments: piece } }] });
        }
      }
      await wait();
      send({}, 'tool_calls');
    } else {
      for (const piece of plan.pieces ?? wordPieces(plan.text ?? '')) {
        await wait();
        send({ content: piece });
      }
      if (plan.hang) {
        // Never finishes: for tests of Stop. Ends when the client goes away.
        await new Promise((resolve) => res.on('close', resolve));
        return;
      }
      await wait();
      send({}, plan.finishReason ?? 'stop');
    }
    if (!closed) res.end('data: [DONE]\n\n');
  }

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();

  return {
    port,
    /** The base URL to give Easel as OPENAI_BASE_URL. */
    baseUrl: `http://127.0.0.1:${port}/v1`,
    model: MODEL_ID,
    /** Every request received, oldest first: `{method, path, headers, body, at, plan?}`. */
    requests,
    /** Only the chat completion requests. */
    chatRequests: () => requests.filter((r) => r.method === 'POST' && /\/chat\/completions$/.test(r.path)),
    /** The chat requests whose messages mention `text` (in a user message). */
    chatRequestsMentioning: (text) =>
      requests.filter(
        (r) => r.method === 'POST'
          && /\/chat\/completions$/.test(r.path)
          && (r.body?.messages ?? []).some((m) => m.role === 'user' && messageText(m).includes(text)),
      ),
    clear: () => {
      requests.length = 0;
    },
    /** Waits until a chat request mentioning `text` has come (returns the list so far). */
    waitForRequest: async (text, timeout = 10_000) => {
      const deadline = Date.now() + timeout;
      for (;;) {
        const found = requests.filter(
          (r) => r.method === 'POST'
            && /\/chat\/completions$/.test(r.path)
            && (r.body?.messages ?? []).some((m) => m.role === 'user' && messageText(m).includes(text)),
        );
        if (found.length > 0) return found;
        if (Date.now() >= deadline) throw new Error(`no chat request mentioning ${JSON.stringify(text)} within ${timeout} ms`);
        await sleep(25);
      }
    },
    /**
     * Queues one answer used instead of the script for the next chat request. `plan` is
     * `{kind:'text', text|pieces, delayMs?, hang?}`, `{kind:'tool', name, arguments, delayMs?}`,
     * `{kind:'tool', calls: [{name, arguments}, …]}` (several calls in one answer; `arguments` a
     * JSON string or an object),
     * `{status: 500, error: 'message'}`, or a function `(body) => plan`.
     */
    respondOnce: (plan) => {
      queue.push(plan);
    },
    /**
     * Like `respondOnce`, but only for the next chat request whose last user message contains
     * `match` (a test's own tag), so a reply cannot be taken by another test's request. It answers
     * the first round of that turn only; later rounds (after a tool result) follow the script.
     */
    respondWhen: (match, plan) => {
      keyed.push({ match, plan });
    },
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const parts = [];
    req.on('data', (c) => parts.push(c));
    req.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
    req.on('error', reject);
  });
}

function json(res, status, value) {
  const text = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// `node end2end/support/llm.mjs` runs it alone, for poking at it with curl.
if (import.meta.url === `file://${process.argv[1]}`) {
  const llm = await startLlm({ log: (line) => console.log(line) });
  console.log(`scripted LLM at ${llm.baseUrl}`);
}
