// tests/server/anthropic.test.js — arbor serve's /v1/messages checked with the official Anthropic
// Node SDK (@anthropic-ai/sdk).
//
// scripts/test-server.sh starts the server on a random-weight fixture model and runs `node --test`
// here with ARBOR_BASE_URL (http://127.0.0.1:PORT/v1) and ARBOR_API_KEY (sent as x-api-key, as the
// SDK does). The model's text is nonsense, so these tests check shapes, event order, stop reasons
// and token counts, never content; greedy decoding (temperature 0) makes runs repeatable, so the
// streamed message can be compared with the non-streamed one. The model never calls a tool by itself;
// tool_choice any / tool makes it (constrained decoding), and tests/test_server.c drives tool_use blocks
// with arguments through a scripted output.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';

const baseURL = process.env.ARBOR_BASE_URL;
const apiKey = process.env.ARBOR_API_KEY || 'none';
if (!baseURL) throw new Error('ARBOR_BASE_URL is not set (run scripts/test-server.sh)');
const root = baseURL.replace(/\/v1\/?$/, '');
const client = new Anthropic({ baseURL: root, apiKey, maxRetries: 0, timeout: 60_000 });
const MODEL = 'claude-arbor-test';

async function post(path, body) {
  const r = await fetch(root + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
    body: JSON.stringify(body),
  });
  assert.equal(r.status, 200, `${path}: status ${r.status}`);
  return r.json();
}

// Tokens of the prompt the server renders for an OpenAI chat body (template + tokenizer).
async function chatPromptTokens(body) {
  const { prompt } = await post('/apply-template', body);
  const { tokens } = await post('/tokenize', { content: prompt });
  return tokens.length;
}

function checkMessage(m, { maxTokens }) {
  assert.match(m.id, /^msg_/);
  assert.equal(m.type, 'message');
  assert.equal(m.role, 'assistant');
  assert.equal(m.model, MODEL);
  assert.ok(Array.isArray(m.content));
  for (const b of m.content) {
    assert.ok(['text', 'thinking', 'tool_use'].includes(b.type), b.type);
    if (b.type === 'text') assert.equal(typeof b.text, 'string');
    if (b.type === 'thinking') assert.equal(typeof b.thinking, 'string');
    if (b.type === 'tool_use') {
      assert.match(b.id, /^toolu_/);
      assert.equal(typeof b.input, 'object');
    }
  }
  assert.ok(['end_turn', 'max_tokens', 'stop_sequence', 'tool_use'].includes(m.stop_reason), m.stop_reason);
  if (m.stop_reason !== 'stop_sequence') assert.equal(m.stop_sequence, null);
  assert.ok(Number.isInteger(m.usage.input_tokens) && m.usage.input_tokens > 0);
  assert.ok(Number.isInteger(m.usage.cache_read_input_tokens) && m.usage.cache_creation_input_tokens === 0);
  assert.ok(m.usage.output_tokens >= 1 && m.usage.output_tokens <= maxTokens);
  if (m.stop_reason === 'max_tokens') assert.equal(m.usage.output_tokens, maxTokens);
}

// The prompt's tokens: input_tokens counts those not read from the prefix cache.
const promptTokens = (u) => u.input_tokens + u.cache_read_input_tokens;

const hello = [{ role: 'user', content: 'Hello! Who are you?' }];

test('messages, not streamed: shape, stop reason, usage agrees with count_tokens and the template', async () => {
  const body = { model: MODEL, max_tokens: 8, messages: hello, temperature: 0 };
  const m = await client.messages.create(body);
  checkMessage(m, { maxTokens: 8 });
  // thinking is off unless asked for: one text block
  assert.deepEqual(m.content.map((b) => b.type), ['text']);
  const { input_tokens } = await client.messages.countTokens({ model: MODEL, messages: hello });
  assert.equal(promptTokens(m.usage), input_tokens);
  assert.equal(input_tokens, await chatPromptTokens({ messages: hello, chat_template_kwargs: { enable_thinking: false } }));
});

test('messages, streamed: the SDK stream helper consumes the events; finalMessage equals the non-streamed answer', async () => {
  const body = {
    model: MODEL, max_tokens: 10, temperature: 0, system: 'You are terse.',
    messages: hello, thinking: { type: 'enabled', budget_tokens: 1024 },
  };
  const full = await client.messages.create(body);
  checkMessage(full, { maxTokens: 10 });
  assert.equal(full.content[0].type, 'thinking', 'thinking on: the answer starts with a thinking block');

  const stream = client.messages.stream(body);
  const events = [];
  let text = '';
  stream.on('text', (delta) => { text += delta; });
  for await (const ev of stream) events.push(ev);
  const final = await stream.finalMessage();
  checkMessage(final, { maxTokens: 10 });
  assert.deepEqual(final.content, full.content);
  assert.equal(final.stop_reason, full.stop_reason);
  // the same prompt and output; the second request may read more of its prompt from the cache
  assert.equal(promptTokens(final.usage), promptTokens(full.usage));
  assert.equal(final.usage.output_tokens, full.usage.output_tokens);
  assert.equal(text, full.content.filter((b) => b.type === 'text').map((b) => b.text).join(''));

  // event order: message_start, (content_block_start, deltas of that index, content_block_stop)*,
  // message_delta, message_stop
  assert.equal(events[0].type, 'message_start');
  // (the SDK's snapshot is message_start's message, its usage updated by message_delta)
  assert.equal(promptTokens(events[0].message.usage), promptTokens(full.usage));
  assert.equal(events.at(-1).type, 'message_stop');
  assert.equal(events.at(-2).type, 'message_delta');
  assert.equal(events.at(-2).usage.output_tokens, full.usage.output_tokens);
  let open = -1, blocks = 0;
  for (const ev of events.slice(1, -2)) {
    if (ev.type === 'content_block_start') {
      assert.equal(open, -1, 'a block starts only after the previous one stopped');
      assert.equal(ev.index, blocks++);
      open = ev.index;
    } else if (ev.type === 'content_block_delta') {
      assert.equal(ev.index, open);
      assert.ok(['text_delta', 'thinking_delta', 'input_json_delta', 'signature_delta'].includes(ev.delta.type));
    } else {
      assert.equal(ev.type, 'content_block_stop');
      assert.equal(ev.index, open);
      open = -1;
    }
  }
  assert.equal(open, -1);
  assert.equal(blocks, full.content.length);
});

test('messages with stream: true through create(): raw events, pings skipped by the SDK', async () => {
  const stream = await client.messages.create({ model: MODEL, max_tokens: 4, messages: hello, stream: true });
  const types = [];
  for await (const ev of stream) types.push(ev.type);
  assert.equal(types[0], 'message_start');
  assert.equal(types.at(-1), 'message_stop');
  assert.ok(!types.includes('ping'));
});

test('stop_sequences end the text before the stop string, with stop_reason stop_sequence', async () => {
  const body = { model: MODEL, max_tokens: 40, temperature: 0, messages: [{ role: 'user', content: 'Count to ten.' }] };
  const free = await client.messages.create(body);
  const text = free.content.filter((b) => b.type === 'text').map((b) => b.text).join('');
  let stop = null;
  for (let i = 4; i + 3 <= text.length && !stop; i++) {
    const w = text.slice(i, i + 3);
    if (/^[\x21-\x7e]{3}$/.test(w)) stop = w;
  }
  assert.ok(stop, `no ASCII window in the greedy text ${JSON.stringify(text)}`);
  const want = text.slice(0, text.indexOf(stop));
  const m = await client.messages.create({ ...body, stop_sequences: ['never-seen-stop-string', stop] });
  assert.equal(m.stop_reason, 'stop_sequence');
  assert.equal(m.stop_sequence, stop);
  assert.equal(m.content.filter((b) => b.type === 'text').map((b) => b.text).join(''), want);

  const final = await client.messages.stream({ ...body, stop_sequences: [stop] }).finalMessage();
  assert.equal(final.stop_reason, 'stop_sequence');
  assert.equal(final.stop_sequence, stop);
  assert.equal(final.content.filter((b) => b.type === 'text').map((b) => b.text).join(''), want);
});

const weatherTool = {
  name: 'get_weather',
  description: 'Get the current weather for a city',
  input_schema: {
    type: 'object',
    properties: { city: { type: 'string', description: 'City name' }, unit: { type: 'string', enum: ['c', 'f'] } },
    required: ['city'],
  },
};

test('tools, tool_use and tool_result in the history: accepted, and rendered as the same chat', async () => {
  const messages = [
    { role: 'user', content: [{ type: 'text', text: 'What is the weather in Paris?', cache_control: { type: 'ephemeral' } }] },
    {
      role: 'assistant',
      content: [
        { type: 'thinking', thinking: 'I should look it up.', signature: 'sig' },
        { type: 'text', text: 'Let me check.' },
        { type: 'tool_use', id: 'toolu_01', name: 'get_weather', input: { city: 'Paris' } },
      ],
    },
    { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_01', content: '{"temp_c": 21, "sky": "clear"}' }] },
  ];
  const system = [{ type: 'text', text: 'You are a helpful assistant.' }];
  const body = {
    model: MODEL, max_tokens: 6, temperature: 0, system, messages, tools: [weatherTool],
    tool_choice: { type: 'auto' }, metadata: { user_id: 'u-1' },
  };
  const m = await client.messages.create(body);
  checkMessage(m, { maxTokens: 6 });
  for (const b of m.content.filter((b) => b.type === 'tool_use')) assert.equal(typeof b.name, 'string');

  // the same conversation in OpenAI chat form renders to the same number of tokens
  const chat = {
    messages: [
      { role: 'system', content: 'You are a helpful assistant.' },
      { role: 'user', content: 'What is the weather in Paris?' },
      {
        role: 'assistant', content: 'Let me check.', reasoning_content: 'I should look it up.',
        tool_calls: [{ id: 'toolu_01', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }],
      },
      { role: 'tool', tool_call_id: 'toolu_01', content: '{"temp_c": 21, "sky": "clear"}' },
    ],
    tools: [{ type: 'function', function: { name: weatherTool.name, description: weatherTool.description, parameters: weatherTool.input_schema } }],
    chat_template_kwargs: { enable_thinking: false },
  };
  assert.equal(promptTokens(m.usage), await chatPromptTokens(chat));
  const { input_tokens } = await client.messages.countTokens({ model: MODEL, system, messages, tools: [weatherTool] });
  assert.equal(input_tokens, promptTokens(m.usage));

  // streamed too; tool_choice none hides the tools from the model
  const final = await client.messages.stream(body).finalMessage();
  checkMessage(final, { maxTokens: 6 });
  const none = await client.messages.countTokens({ model: MODEL, system, messages, tools: [weatherTool], tool_choice: { type: 'none' } });
  assert.ok(none.input_tokens < input_tokens);
  // a tool_result with blocks and is_error is accepted
  const err = await client.messages.create({
    ...body,
    messages: [...messages.slice(0, 2), {
      role: 'user',
      content: [{ type: 'tool_result', tool_use_id: 'toolu_01', is_error: true, content: [{ type: 'text', text: 'city not found' }] }],
    }],
  });
  checkMessage(err, { maxTokens: 6 });
});

test('count_tokens grows with the conversation', async () => {
  const a = await client.messages.countTokens({ model: MODEL, messages: hello });
  const b = await client.messages.countTokens({
    model: MODEL, messages: [...hello, { role: 'assistant', content: 'I am a model.' }, { role: 'user', content: 'Tell me more.' }],
  });
  assert.ok(Number.isInteger(a.input_tokens) && a.input_tokens > 0);
  assert.ok(b.input_tokens > a.input_tokens);
});

test('errors reach the SDK as typed API errors in Anthropic\'s shape', async () => {
  await assert.rejects(
    client.messages.create({ model: MODEL, messages: hello }),   // no max_tokens
    (e) => e instanceof Anthropic.BadRequestError && e.status === 400 && e.type === 'invalid_request_error' &&
      /max_tokens/.test(e.message),
  );
  await assert.rejects(
    client.messages.create({ model: MODEL, max_tokens: 4, messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAAA' } }] }] }),
    (e) => e instanceof Anthropic.BadRequestError && /messages\[0\]\.content\[0\]\.type/.test(e.message),
  );
  await assert.rejects(
    client.messages.stream({ model: MODEL, max_tokens: 4, messages: [] }).finalMessage(),
    (e) => e instanceof Anthropic.BadRequestError && /messages/.test(e.message),
  );
  const wrong = new Anthropic({ baseURL: root, apiKey: apiKey + '-wrong', maxRetries: 0 });
  await assert.rejects(
    wrong.messages.create({ model: MODEL, max_tokens: 4, messages: hello }),
    (e) => e instanceof Anthropic.AuthenticationError && e.status === 401 && e.type === 'authentication_error',
  );
});

test('tool_choice any / tool with disable_parallel_tool_use: the model is made to call (constrained decoding)', async () => {
  const tools = [
    { name: 'ping', description: 'Is the server up?', input_schema: { type: 'object', properties: {} } },
    { name: 'get_time', input_schema: { type: 'object', properties: {} } },
  ];
  const body = { model: MODEL, max_tokens: 64, temperature: 0, messages: [{ role: 'user', content: 'What time is it?' }], tools };
  const m = await client.messages.create({ ...body, tool_choice: { type: 'any', disable_parallel_tool_use: true } });
  checkMessage(m, { maxTokens: 64 });
  assert.equal(m.stop_reason, 'tool_use');
  const uses = m.content.filter((b) => b.type === 'tool_use');
  assert.equal(uses.length, 1);
  assert.ok(['ping', 'get_time'].includes(uses[0].name));
  assert.deepEqual(uses[0].input, {});
  const named = await client.messages
    .stream({ ...body, tool_choice: { type: 'tool', name: 'get_time', disable_parallel_tool_use: true } })
    .finalMessage();
  checkMessage(named, { maxTokens: 64 });
  assert.equal(named.stop_reason, 'tool_use');
  assert.deepEqual(named.content.filter((b) => b.type === 'tool_use').map((b) => b.name), ['get_time']);
});
