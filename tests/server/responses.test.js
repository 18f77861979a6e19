// tests/server/responses.test.js — arbor serve's /v1/responses (what Codex speaks) checked with the
// official OpenAI Node SDK (client.responses).
//
// scripts/test-server.sh starts the server on a random-weight fixture model and runs `node --test`
// here with ARBOR_BASE_URL and ARBOR_API_KEY. The model's text is nonsense, so these tests check
// shapes, the typed event sequence, ids and token counts, never content; greedy decoding
// (temperature 0) makes runs repeatable, so the streamed response can be compared with the
// non-streamed one. The model never calls a function by itself; tool_choice "required" or a named
// function makes it (constrained decoding), and tests/test_server.c drives function_call items with
// arguments through a scripted output.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const baseURL = process.env.ARBOR_BASE_URL;
const apiKey = process.env.ARBOR_API_KEY || 'none';
if (!baseURL) throw new Error('ARBOR_BASE_URL is not set (run scripts/test-server.sh)');
const root = baseURL.replace(/\/v1\/?$/, '');
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60_000 });
const MODEL = 'arbor-test';

async function post(path, body) {
  const r = await fetch(root + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
    body: JSON.stringify(body),
  });
  assert.equal(r.status, 200, `${path}: status ${r.status}`);
  return r.json();
}

async function chatPromptTokens(body) {
  const { prompt } = await post('/apply-template', body);
  const { tokens } = await post('/tokenize', { content: prompt });
  return tokens.length;
}

function checkResponse(r, { maxTokens }) {
  assert.match(r.id, /^resp_/);
  assert.equal(r.object, 'response');
  assert.equal(r.model, MODEL);
  assert.equal(typeof r.created_at, 'number');
  assert.ok(['completed', 'incomplete'].includes(r.status), r.status);
  if (r.status === 'incomplete') assert.equal(r.incomplete_details.reason, 'max_output_tokens');
  assert.ok(r.output.length >= 1);
  for (const it of r.output) {
    assert.ok(['reasoning', 'message', 'function_call'].includes(it.type), it.type);
    if (it.type === 'message') {
      assert.match(it.id, /^msg_/);
      assert.equal(it.role, 'assistant');
      assert.equal(it.content.length, 1);
      assert.equal(it.content[0].type, 'output_text');
      assert.equal(typeof it.content[0].text, 'string');
      assert.deepEqual(it.content[0].annotations, []);
    } else if (it.type === 'reasoning') {
      assert.match(it.id, /^rs_/);
      assert.equal(it.content[0].type, 'reasoning_text');
    } else {
      assert.match(it.id, /^fc_/);
      assert.match(it.call_id, /^call_/);
      JSON.parse(it.arguments);
    }
  }
  const u = r.usage;
  assert.ok(u.input_tokens > 0);
  assert.ok(u.output_tokens >= 1 && u.output_tokens <= maxTokens);
  assert.equal(u.total_tokens, u.input_tokens + u.output_tokens);
  assert.equal(u.input_tokens_details.cached_tokens, 0);
  assert.equal(typeof u.output_tokens_details.reasoning_tokens, 'number');
}

const noThinking = { reasoning: { effort: 'none' } };

test('responses, not streamed: shape, usage agrees with input_tokens and the template', async () => {
  const body = { model: MODEL, input: 'Hello! Who are you?', max_output_tokens: 8, temperature: 0, ...noThinking };
  const r = await client.responses.create(body);
  checkResponse(r, { maxTokens: 8 });
  assert.deepEqual(r.output.map((it) => it.type), ['message']);
  assert.equal(r.output_text, r.output[0].content[0].text);   // the SDK's convenience field
  const { input_tokens } = await post('/v1/responses/input_tokens', body);
  assert.equal(r.usage.input_tokens, input_tokens);
  assert.equal(input_tokens, await chatPromptTokens({
    messages: [{ role: 'user', content: 'Hello! Who are you?' }], chat_template_kwargs: { enable_thinking: false },
  }));
});

test('responses, streamed: typed events with sequence numbers, ending with response.completed or response.incomplete', async () => {
  const body = {
    model: MODEL, instructions: 'You are terse.', max_output_tokens: 12, temperature: 0,
    input: [{ role: 'user', content: [{ type: 'input_text', text: 'Hello! Who are you?' }] }],
  };
  const full = await client.responses.create(body);
  checkResponse(full, { maxTokens: 12 });
  assert.equal(full.output[0].type, 'reasoning', 'thinking on by default: a reasoning item first');

  const stream = client.responses.stream(body);
  const events = [];
  for await (const ev of stream) events.push(ev);
  const final = await stream.finalResponse();
  checkResponse(final, { maxTokens: 12 });

  assert.deepEqual(events.map((e) => e.sequence_number), events.map((_, i) => i));
  assert.equal(events[0].type, 'response.created');
  assert.equal(events[1].type, 'response.in_progress');
  assert.equal(events[0].response.status, 'in_progress');
  const last = events.at(-1);
  assert.equal(last.type, full.status === 'incomplete' ? 'response.incomplete' : 'response.completed');
  assert.equal(last.response.status, full.status);
  assert.equal(last.response.id, events[0].response.id);
  checkResponse(last.response, { maxTokens: 12 });
  assert.deepEqual(last.response.usage, full.usage);
  assert.deepEqual(last.response.output.map((it) => it.type), full.output.map((it) => it.type));
  for (let i = 0; i < full.output.length; i++) {
    const text = (it) => (it.type === 'function_call' ? it.arguments : it.content[0].text);
    assert.equal(text(last.response.output[i]), text(full.output[i]));
  }
  // every item: added, then events naming its id, then done; ids equal the final output's
  const added = events.filter((e) => e.type === 'response.output_item.added');
  const done = events.filter((e) => e.type === 'response.output_item.done');
  assert.deepEqual(added.map((e) => e.item.id), last.response.output.map((it) => it.id));
  assert.deepEqual(done.map((e) => e.item.id), last.response.output.map((it) => it.id));
  assert.deepEqual(done.map((e) => e.output_index), last.response.output.map((_, i) => i));
  let text = '';
  for (const e of events.filter((e) => e.type === 'response.output_text.delta')) text += e.delta;
  const msg = last.response.output.find((it) => it.type === 'message');
  assert.equal(text, msg ? msg.content[0].text : '');
  const textDone = events.find((e) => e.type === 'response.output_text.done');
  if (msg) assert.equal(textDone.text, msg.content[0].text);
  let reasoning = '';
  for (const e of events.filter((e) => e.type === 'response.reasoning_text.delta')) reasoning += e.delta;
  assert.equal(reasoning, last.response.output[0].content[0].text);
  const order = events.map((e) => e.type).filter((t) => t.startsWith('response.content_part') || t.startsWith('response.output_item'));
  for (let i = 0; i < order.length; i += 4)
    assert.deepEqual(order.slice(i, i + 4), ['response.output_item.added', 'response.content_part.added',
      'response.content_part.done', 'response.output_item.done']);
});

test('responses with stream: true through create(): raw events end with response.completed or response.incomplete', async () => {
  const stream = await client.responses.create({ model: MODEL, input: 'Hi', max_output_tokens: 4, stream: true, ...noThinking });
  const types = [];
  let final = null;
  for await (const ev of stream) {
    types.push(ev.type);
    if (ev.type === 'response.completed' || ev.type === 'response.incomplete') final = ev.response;
  }
  assert.equal(types[0], 'response.created');
  assert.equal(types.at(-1), final.status === 'incomplete' ? 'response.incomplete' : 'response.completed');
  assert.ok(types.includes('response.output_text.delta'));
  checkResponse(final, { maxTokens: 4 });
});

test('a stream cut by max_output_tokens ends with response.incomplete; the SDK stream helper takes it as final', async () => {
  // a random model does not end a message within 3 tokens: the cut is certain
  const body = { model: MODEL, input: 'Tell me a long story.', max_output_tokens: 3, temperature: 0, ...noThinking };
  const stream = client.responses.stream(body);
  const events = [];
  for await (const ev of stream) events.push(ev);
  const last = events.at(-1);
  assert.equal(last.type, 'response.incomplete');
  assert.ok(!events.some((e) => e.type === 'response.completed'));
  assert.equal(last.response.status, 'incomplete');
  assert.equal(last.response.incomplete_details.reason, 'max_output_tokens');
  assert.equal(last.response.usage.output_tokens, 3);
  const final = await stream.finalResponse();
  assert.equal(final.id, last.response.id);
  assert.equal(final.status, 'incomplete');
  assert.equal(final.incomplete_details.reason, 'max_output_tokens');
  assert.equal(final.output.at(-1).status, 'incomplete');
  checkResponse(final, { maxTokens: 3 });
  // the non-streamed answer agrees
  const full = await client.responses.create(body);
  assert.equal(full.status, 'incomplete');
  assert.deepEqual(full.usage, final.usage);
});

const shellTool = {
  type: 'function',
  name: 'shell',
  description: 'Runs a shell command and returns its output',
  strict: false,
  parameters: {
    type: 'object',
    properties: { command: { type: 'array', items: { type: 'string' } }, workdir: { type: 'string' } },
    required: ['command'],
    additionalProperties: false,
  },
};

test('function tools, function_call and function_call_output in the input: accepted, rendered as the same chat', async () => {
  const input = [
    { type: 'message', role: 'developer', content: [{ type: 'input_text', text: 'Work in /tmp.' }] },
    { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'List the files.' }] },
    { type: 'reasoning', id: 'rs_1', summary: [{ type: 'summary_text', text: 'I will run ls.' }] },
    { type: 'function_call', id: 'fc_1', call_id: 'call_1', name: 'shell', arguments: '{"command":["ls"]}' },
    { type: 'function_call_output', call_id: 'call_1', output: 'a.txt\nb.txt' },
  ];
  const body = {
    model: MODEL, instructions: 'You are a coding agent.', input, tools: [shellTool], tool_choice: 'auto',
    parallel_tool_calls: true, store: false, include: ['reasoning.encrypted_content'], prompt_cache_key: 'k',
    max_output_tokens: 6, temperature: 0,
  };
  const r = await client.responses.create(body);
  checkResponse(r, { maxTokens: 6 });
  assert.deepEqual(r.tools.map((t) => t.name), ['shell']);

  const chat = {
    messages: [
      { role: 'system', content: 'You are a coding agent.\n\nWork in /tmp.' },
      { role: 'user', content: 'List the files.' },
      {
        role: 'assistant', content: '', reasoning_content: 'I will run ls.',
        tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'shell', arguments: '{"command":["ls"]}' } }],
      },
      { role: 'tool', tool_call_id: 'call_1', content: 'a.txt\nb.txt' },
    ],
    tools: [{ type: 'function', function: { name: 'shell', description: shellTool.description, parameters: shellTool.parameters } }],
  };
  assert.equal(r.usage.input_tokens, await chatPromptTokens(chat));

  const final = await client.responses.stream(body).finalResponse();
  checkResponse(final, { maxTokens: 6 });
  // tool_choice as an object naming the function is accepted too
  const named = await client.responses.create({ ...body, tool_choice: { type: 'function', name: 'shell' } });
  checkResponse(named, { maxTokens: 6 });
});

test('tool_choice required / a named function: the model is made to call it (constrained decoding)', async () => {
  const tools = [
    { type: 'function', name: 'ping', description: 'Is the server up?', parameters: { type: 'object', properties: {} } },
    { type: 'function', name: 'get_time', parameters: { type: 'object', properties: {} } },
  ];
  const body = { model: MODEL, input: 'What time is it?', tools, parallel_tool_calls: false, max_output_tokens: 64, temperature: 0, ...noThinking };
  const r = await client.responses.create({ ...body, tool_choice: 'required' });
  checkResponse(r, { maxTokens: 64 });
  assert.equal(r.status, 'completed');
  const calls = r.output.filter((it) => it.type === 'function_call');
  assert.equal(calls.length, 1);
  assert.ok(['ping', 'get_time'].includes(calls[0].name));
  assert.deepEqual(JSON.parse(calls[0].arguments), {});
  const named = await client.responses.stream({ ...body, tool_choice: { type: 'function', name: 'get_time' } }).finalResponse();
  checkResponse(named, { maxTokens: 64 });
  assert.equal(named.status, 'completed');
  assert.deepEqual(named.output.filter((it) => it.type === 'function_call').map((it) => it.name), ['get_time']);
});

test('errors reach the SDK as typed API errors', async () => {
  await assert.rejects(
    client.responses.create({ model: MODEL, input: 'hi', temperature: 'hot' }),
    (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && e.param === 'temperature',
  );
  await assert.rejects(
    client.responses.create({ model: MODEL }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'input',
  );
  await assert.rejects(
    client.responses.create({ model: MODEL, input: 'hi', previous_response_id: 'resp_123' }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'previous_response_id',
  );
  await assert.rejects(
    client.responses.create({ model: MODEL, input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'http://x/y.png' }] }] }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'input[0].content[0].type',
  );
});
