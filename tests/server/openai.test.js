// tests/server/openai.test.js — arbor serve checked with the official OpenAI Node SDK.
//
// scripts/test-server.sh starts the server on a random-weight fixture model and runs `node --test`
// here with ARBOR_BASE_URL (http://127.0.0.1:PORT/v1) and ARBOR_API_KEY. The model's text is
// nonsense, so these tests check shapes, types, finish reasons and token counts (against the
// server's own tokenizer via /apply-template and /tokenize), never content; greedy decoding
// (temperature 0) makes runs repeatable, so streamed and non-streamed text can be compared. The
// model never calls a tool by itself: tool_choice required / a named function makes it (constrained
// decoding).
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

// Tokens of the prompt the server renders for this request (template + tokenizer).
async function promptTokens(body) {
  const { prompt } = await post('/apply-template', body);
  assert.equal(typeof prompt, 'string');
  const { tokens } = await post('/tokenize', { content: prompt });
  assert.ok(Array.isArray(tokens) && tokens.length > 0);
  return tokens.length;
}

function checkUsage(usage, { maxTokens, finish }) {
  assert.equal(typeof usage.prompt_tokens, 'number');
  assert.equal(typeof usage.completion_tokens, 'number');
  assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
  assert.ok(usage.completion_tokens >= 1 && usage.completion_tokens <= maxTokens);
  if (finish === 'length') assert.equal(usage.completion_tokens, maxTokens);
}

const hello = [{ role: 'user', content: 'Hello! Who are you?' }];

test('models list has the model with its context length', async () => {
  const page = await client.models.list();
  assert.ok(page.data.length >= 1);
  const m = page.data[0];
  assert.equal(typeof m.id, 'string');
  assert.equal(m.object, 'model');
  assert.equal(typeof m.owned_by, 'string');
  assert.ok(Number.isInteger(m.context_length) && m.context_length > 0);
});

test('chat, not streamed: shape, finish reason, usage agrees with the tokenizer', async () => {
  const body = { model: MODEL, messages: hello, max_tokens: 8, temperature: 0 };
  const r = await client.chat.completions.create(body);
  assert.match(r.id, /^chatcmpl-/);
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.model, MODEL);
  assert.equal(typeof r.created, 'number');
  assert.equal(r.choices.length, 1);
  const c = r.choices[0];
  assert.equal(c.index, 0);
  assert.equal(c.message.role, 'assistant');
  assert.equal(typeof c.message.content, 'string');
  assert.ok(['stop', 'length'].includes(c.finish_reason), c.finish_reason);
  checkUsage(r.usage, { maxTokens: 8, finish: c.finish_reason });
  assert.equal(r.usage.prompt_tokens, await promptTokens({ messages: hello }));
  // thinking is on by default: the prompt opens <think>, so the text so far is reasoning
  assert.equal(typeof c.message.reasoning_content, 'string');
  assert.equal(r.usage.completion_tokens_details.reasoning_tokens, r.usage.completion_tokens);
});

test('chat, streamed with usage: chunk shapes; same text as the non-streamed answer', async () => {
  const body = { model: MODEL, messages: hello, max_tokens: 12, temperature: 0 };
  const full = await client.chat.completions.create(body);
  const stream = await client.chat.completions.create({ ...body, stream: true, stream_options: { include_usage: true } });
  let first = true, id = null, finish = null, usage = null, content = '', reasoning = '', chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    assert.equal(chunk.object, 'chat.completion.chunk');
    id ??= chunk.id;
    assert.equal(chunk.id, id);
    assert.match(chunk.id, /^chatcmpl-/);
    if (chunk.usage) {
      assert.equal(chunk.choices.length, 0);
      assert.equal(usage, null, 'one usage chunk');
      usage = chunk.usage;
      continue;
    }
    assert.equal(usage, null, 'the usage chunk comes last');
    assert.equal(chunk.choices.length, 1);
    const d = chunk.choices[0].delta;
    if (first) assert.equal(d.role, 'assistant');
    first = false;
    if (d.content) content += d.content;
    if (d.reasoning_content) reasoning += d.reasoning_content;
    if (chunk.choices[0].finish_reason) {
      assert.equal(finish, null, 'one finish_reason');
      finish = chunk.choices[0].finish_reason;
    }
  }
  assert.ok(chunks >= 3);
  assert.ok(['stop', 'length'].includes(finish), String(finish));
  assert.equal(finish, full.choices[0].finish_reason);
  assert.ok(usage, 'include_usage gives a usage chunk');
  checkUsage(usage, { maxTokens: 12, finish });
  assert.deepEqual(usage, full.usage);
  assert.equal(content, full.choices[0].message.content);
  assert.equal(reasoning, full.choices[0].message.reasoning_content ?? '');
});

test('stop sequences end the text before the stop string, streamed and not', async () => {
  const body = {
    model: MODEL, messages: [{ role: 'user', content: 'Count to ten.' }], max_tokens: 40, temperature: 0,
    chat_template_kwargs: { enable_thinking: false },
  };
  const free = await client.chat.completions.create(body);
  const text = free.choices[0].message.content;
  assert.equal(typeof text, 'string');
  // a printable-ASCII window of the greedy text, away from the start
  let stop = null;
  for (let i = 4; i + 3 <= text.length && !stop; i++) {
    const w = text.slice(i, i + 3);
    if (/^[\x21-\x7e]{3}$/.test(w)) stop = w;
  }
  assert.ok(stop, `no ASCII window in the greedy text ${JSON.stringify(text)}`);
  const want = text.slice(0, text.indexOf(stop));
  const r = await client.chat.completions.create({ ...body, stop: [stop, 'never-seen-stop-string'] });
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.equal(r.choices[0].message.content, want);
  assert.ok(r.usage.completion_tokens < 40);

  const stream = await client.chat.completions.create({ ...body, stop, stream: true });
  let streamed = '', finish = null;
  for await (const chunk of stream) {
    if (chunk.choices[0]?.delta?.content) streamed += chunk.choices[0].delta.content;
    if (chunk.choices[0]?.finish_reason) finish = chunk.choices[0].finish_reason;
  }
  assert.equal(finish, 'stop');
  assert.equal(streamed, want);
});

const weatherTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Get the current weather for a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string', description: 'City name' }, unit: { type: 'string', enum: ['c', 'f'] } },
      required: ['city'],
    },
  },
};

test('tools with a JSON schema, and a tool result in the history, are accepted', async () => {
  const messages = [
    { role: 'system', content: 'You are a helpful assistant.' },
    { role: 'user', content: 'What is the weather in Paris?' },
    {
      role: 'assistant', content: null,
      tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }],
    },
    { role: 'tool', tool_call_id: 'call_1', content: '{"temp_c": 21, "sky": "clear"}' },
  ];
  const body = { model: MODEL, messages, tools: [weatherTool], tool_choice: 'auto', max_tokens: 6, temperature: 0 };
  const r = await client.chat.completions.create(body);
  const c = r.choices[0];
  assert.ok(['stop', 'length', 'tool_calls'].includes(c.finish_reason), c.finish_reason);
  for (const call of c.message.tool_calls ?? []) {
    assert.equal(call.type, 'function');
    assert.equal(typeof call.id, 'string');
    assert.equal(typeof call.function.name, 'string');
    JSON.parse(call.function.arguments);
  }
  // the model was shown the tool and the result: the prompt holds both
  const { prompt } = await post('/apply-template', { messages, tools: [weatherTool] });
  assert.match(prompt, /<tools>[\s\S]*"name": "get_weather"[\s\S]*<\/tools>/);
  assert.match(prompt, /<tool_response>\n\{"temp_c": 21, "sky": "clear"\}\n<\/tool_response>/);
  assert.match(prompt, /<function=get_weather>\n<parameter=city>\nParis\n<\/parameter>/);
  assert.equal(r.usage.prompt_tokens, await promptTokens({ messages, tools: [weatherTool] }));
  // tool_choice none hides the tools from the model
  const none = await client.chat.completions.create({ ...body, tool_choice: 'none' });
  assert.ok(none.usage.prompt_tokens < r.usage.prompt_tokens);
});

// Tools without parameters: the whole call is forced text, so even a random model must end with it.
const pingTools = [
  { type: 'function', function: { name: 'ping', description: 'Is the server up?', parameters: { type: 'object', properties: {} } } },
  { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: {} } } },
];

test('tool_choice required / a named function: the model is made to call it (constrained decoding)', async () => {
  const body = {
    model: MODEL, messages: [{ role: 'user', content: 'What time is it?' }], tools: pingTools, parallel_tool_calls: false,
    max_tokens: 64, temperature: 0, chat_template_kwargs: { enable_thinking: false },
  };
  const r = await client.chat.completions.create({ ...body, tool_choice: 'required' });
  const c = r.choices[0];
  assert.equal(c.finish_reason, 'tool_calls');
  assert.equal(c.message.tool_calls.length, 1);
  assert.ok(['ping', 'get_time'].includes(c.message.tool_calls[0].function.name));
  assert.deepEqual(JSON.parse(c.message.tool_calls[0].function.arguments), {});
  // named, streamed: the SDK's stream helper rebuilds the call
  const named = await client.chat.completions
    .stream({ ...body, tool_choice: { type: 'function', function: { name: 'get_time' } } })
    .finalChatCompletion();
  assert.equal(named.choices[0].finish_reason, 'tool_calls');
  assert.deepEqual(named.choices[0].message.tool_calls.map((t) => t.function.name), ['get_time']);
  // a named function that takes parameters: its name, the arguments one JSON object
  const weather = await client.chat.completions.create({
    ...body, tools: [weatherTool, ...pingTools], tool_choice: { type: 'function', function: { name: 'get_weather' } },
  });
  const call = weather.choices[0].message.tool_calls[0];
  assert.equal(call.function.name, 'get_weather');
  assert.equal(typeof JSON.parse(call.function.arguments), 'object');
});

test('a two-turn conversation: the history is in the prompt', async () => {
  const turn1 = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Name a colour.' }];
  const r1 = await client.chat.completions.create({ model: MODEL, messages: turn1, max_tokens: 5, temperature: 0 });
  const a1 = r1.choices[0].message;
  const turn2 = [...turn1, { role: 'assistant', content: a1.content || 'Blue.' }, { role: 'user', content: 'Another one?' }];
  const r2 = await client.chat.completions.create({ model: MODEL, messages: turn2, max_tokens: 5, temperature: 0 });
  assert.equal(r2.choices[0].message.role, 'assistant');
  assert.ok(r2.usage.prompt_tokens > r1.usage.prompt_tokens);
  assert.equal(r2.usage.prompt_tokens, await promptTokens({ messages: turn2 }));
});

test('completions (raw prompt)', async () => {
  const r = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 6, temperature: 0 });
  assert.match(r.id, /^cmpl-/);
  assert.equal(r.object, 'text_completion');
  assert.equal(typeof r.choices[0].text, 'string');
  assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
  checkUsage(r.usage, { maxTokens: 6, finish: r.choices[0].finish_reason });
  const { tokens } = await post('/tokenize', { content: 'Once upon a time' });
  assert.equal(r.usage.prompt_tokens, tokens.length);
});

test('errors reach the SDK as typed API errors', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], temperature: 'hot' }),
    (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && e.param === 'temperature',
  );
  await assert.rejects(
    client.chat.completions.create({ model: MODEL, messages: [] }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'messages',
  );
  const wrong = new OpenAI({ baseURL, apiKey: apiKey + '-wrong', maxRetries: 0 });
  await assert.rejects(wrong.models.list(), (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
});
