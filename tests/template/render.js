#!/usr/bin/env node
// tests/template/render.js — the reference side of tests/test_template.c.
//
// Generates chat requests deterministically (seeded), then renders each one with @huggingface/jinja
// (pinned in package.json) and the real template text, after the same request normalisation that
// llama.cpp applies before its own Jinja engine runs (common/chat.cpp, tools/server/server-common.cpp):
//   - role "developer" becomes "system";
//   - content null -> ""; content parts must be {"type": "text"} (an image/audio part is an error without
//     a vision projector); the parts stay an array (the template declares typed content);
//   - reasoning_content is passed only when it is a non-empty string;
//   - tool-call arguments given as a JSON string are parsed into an object (invalid JSON is an error);
//   - tools are rebuilt as {"type": "function", "function": {"name", "description" ("" if absent),
//     "parameters" ({} if absent)}} in that key order;
//   - enable_thinking is always passed; add_generation_prompt only when true; preserve_thinking (Qwen3.6)
//     only when the request sets it (llama.cpp: chat_template_kwargs).
//
// Templates: "qwen35" is models/templates/Qwen3.5-4B.jinja of the llama.cpp source tree given as the first
// argument (byte-identical to Hugging Face Qwen/Qwen3.5-* chat_template.jinja, sha256 a4aee8af...). "qwen36"
// is the same file with the two lines Qwen/Qwen3.6-27B changed (preserve_thinking; non-string scalar
// tool-call arguments as JSON); the result is checked against that file's sha256 (e84f32a2...).
//
// Where @huggingface/jinja and llama.cpp's Jinja engine disagree, llama.cpp decides (it is the engine the
// reference server runs), and the generator stays clear of, or adapts, these cases:
//   1. `x.lstrip('\n')` / `x.rstrip('\n')`: @huggingface/jinja ignores the argument and strips all
//      whitespace; llama.cpp strips only '\n'. The template lstrips the content after an inline
//      "</think>", so the generator never puts other whitespace right after that "\n" run.
//   2. `true|string`, `none|string` (Qwen3.5 tool-call arguments): "true"/error here, "True"/"None" in
//      llama.cpp (Python's str). ADAPTED: for qwen35 the normaliser turns top-level boolean/null argument
//      values into the strings llama.cpp prints ("True", "False", "None"); `x|string` of a string is x.
//   3. Numbers: JavaScript prints 1e21, 1e-7, 1234567.5 differently from llama.cpp (C++ ostream, like %g),
//      and loses integers above 2^53 (llama.cpp wraps above INT64_MAX). Only floats with at most six
//      significant digits in [1e-4, 1e6) and integers below 2^53 are generated.
//   4. `|trim`: JavaScript's trim() also strips Unicode spaces (U+00A0, U+3000, ...); llama.cpp strips ASCII
//      isspace() only. Generated texts never start or end with non-ASCII spaces.
//   5. Object keys that look like integers ("1", "42") are reordered by JavaScript objects; llama.cpp
//      keeps request order. Generated keys are never integer-like.
// test_template.c checks each of these cases against outputs recorded from llama.cpp instead.
//
// Usage: node render.js LLAMA_SRC [--count N] [--seed S]
// Output: one JSON object per line: {"id", "template", "messages_json", "tools_json" (or null),
//   "add_generation_prompt", "enable_thinking", "preserve_thinking" (or null), "text" | "error"}.
// A first line {"error": ...} (and exit code 2) means the reference itself could not run.
'use strict';

const fs = require('fs');
const path = require('path');
const crypto = require('crypto');

function die(msg) {
    process.stdout.write(JSON.stringify({ fatal: msg }) + '\n');
    process.exit(2);
}

let Template;
try {
    ({ Template } = require(path.join(__dirname, 'node_modules', '@huggingface', 'jinja')));
} catch (e) {
    die('@huggingface/jinja is not installed in tests/template/node_modules: run scripts/deps.sh ' +
        '(it runs `npm install --ignore-scripts` in tests/template)');
}

// ---- arguments -------------------------------------------------------------------------------------

const argv = process.argv.slice(2);
if (argv.length < 1) die('usage: node render.js LLAMA_SRC [--count N] [--seed S]');
const llamaSrc = argv[0];
let count = 240, seed = 20240611;
for (let i = 1; i < argv.length; i++) {
    if (argv[i] === '--count') count = parseInt(argv[++i], 10);
    else if (argv[i] === '--seed') seed = parseInt(argv[++i], 10);
    else die(`unknown argument '${argv[i]}'`);
}

// ---- templates -------------------------------------------------------------------------------------

const SHA_QWEN35 = 'a4aee8afcf2e0711942cf848899be66016f8d14a889ff9ede07bca099c28f715';
const SHA_QWEN36 = 'e84f32a23fdda27689f868aa4a1a5621f41133e51a48d7f3efcbea2839574259';
const sha256 = (s) => crypto.createHash('sha256').update(s, 'utf8').digest('hex');

const tplPath = path.join(llamaSrc, 'models', 'templates', 'Qwen3.5-4B.jinja');
let src35;
try {
    src35 = fs.readFileSync(tplPath, 'utf8');
} catch (e) {
    die(`cannot read ${tplPath} (set ARBOR_LLAMA_SRC to the llama.cpp source tree; scripts/oracle.sh clones it)`);
}
if (sha256(src35) !== SHA_QWEN35) die(`${tplPath} is not the Qwen3.5 template this test knows (sha256 ${sha256(src35)})`);
const Q36_EDITS = [
    ['{%- if loop.index0 > ns.last_query_index %}',
     '{%- if (preserve_thinking is defined and preserve_thinking is true) or (loop.index0 > ns.last_query_index) %}'],
    ['{%- set args_value = args_value | tojson | safe if args_value is mapping or (args_value is sequence and args_value is not string) else args_value | string %}',
     '{%- set args_value = args_value | string if args_value is string else args_value | tojson | safe %}'],
];
let src36 = src35;
for (const [from, to] of Q36_EDITS) src36 = src36.replace(from, to);
if (sha256(src36) !== SHA_QWEN36) die('the derived Qwen3.6 template does not have the expected sha256');
const TEMPLATES = { qwen35: new Template(src35), qwen36: new Template(src36) };

// ---- llama.cpp's request normalisation -------------------------------------------------------------

class RequestError extends Error {}

function normaliseMessages(messages, template) {
    if (!Array.isArray(messages)) throw new RequestError("Expected 'messages' to be an array");
    return messages.map((m) => {
        if (typeof m !== 'object' || m === null || Array.isArray(m)) throw new RequestError('message is not an object');
        if (!('role' in m)) throw new RequestError("Missing 'role' in message");
        const out = { role: m.role === 'developer' ? 'system' : m.role };
        if (m.role !== 'assistant' && !('content' in m)) throw new RequestError("All non-assistant messages must contain 'content'");
        if (!('content' in m) && !('tool_calls' in m)) throw new RequestError("Expected 'content' or 'tool_calls'");
        const c = m.content;
        if (c === undefined || c === null || c === '') {
            out.content = '';
        } else if (typeof c === 'string') {
            out.content = c;
        } else if (Array.isArray(c)) {
            if (c.length === 0) out.content = '';
            else out.content = c.map((p) => {
                if (p.type !== 'text') throw new RequestError(`unsupported content part type '${p.type}'`);
                if (typeof p.text !== 'string') throw new RequestError('content part text is not a string');
                return { type: 'text', text: p.text };
            });
        } else {
            throw new RequestError("Expected 'content' to be a string or an array");
        }
        if ('reasoning_content' in m) {
            if (typeof m.reasoning_content !== 'string') throw new RequestError('reasoning_content is not a string');
            if (m.reasoning_content !== '') out.reasoning_content = m.reasoning_content;
        }
        if ('tool_calls' in m && Array.isArray(m.tool_calls) && m.tool_calls.length) {
            out.tool_calls = m.tool_calls.map((tc) => {
                if (tc.type !== 'function' || !tc.function || typeof tc.function.name !== 'string')
                    throw new RequestError('bad tool call');
                let args = tc.function.arguments;
                if (args === undefined) throw new RequestError('tool call without arguments');
                if (typeof args === 'string') {
                    try { args = JSON.parse(args); } catch (e) { throw new RequestError('Failed to parse tool call arguments as JSON'); }
                }
                if (template === 'qwen35' && args && typeof args === 'object' && !Array.isArray(args)) {
                    // engine difference 2 (see the top of this file)
                    const a = {};
                    for (const [k, v] of Object.entries(args))
                        a[k] = v === true ? 'True' : v === false ? 'False' : v === null ? 'None' : v;
                    args = a;
                }
                return { type: 'function', function: { name: tc.function.name, arguments: args } };
            });
        }
        return out;
    });
}

function normaliseTools(tools) {
    if (tools === undefined || tools === null) return undefined;
    if (!Array.isArray(tools)) throw new RequestError("Expected 'tools' to be an array");
    if (tools.length === 0) return undefined;
    return tools.map((t) => {
        if (t.type !== 'function' || !t.function || typeof t.function.name !== 'string') throw new RequestError('bad tool');
        const f = t.function;
        return {
            type: 'function',
            function: {
                name: f.name,
                description: f.description === undefined ? '' : f.description,
                parameters: f.parameters === undefined ? {} : f.parameters,
            },
        };
    });
}

function render(req) {
    const messages = normaliseMessages(JSON.parse(req.messages_json), req.template);
    const tools = req.tools_json === null ? undefined : normaliseTools(JSON.parse(req.tools_json));
    const ctx = { messages, bos_token: '', eos_token: '', enable_thinking: req.enable_thinking };
    if (tools) ctx.tools = tools;
    if (req.add_generation_prompt) ctx.add_generation_prompt = true;
    if (req.preserve_thinking !== null) ctx.preserve_thinking = req.preserve_thinking;
    return TEMPLATES[req.template].render(ctx);
}

// ---- the generator ---------------------------------------------------------------------------------

let rngState = seed >>> 0;
function rnd() { // mulberry32
    rngState = (rngState + 0x6D2B79F5) >>> 0;
    let t = rngState;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const chance = (p) => rnd() < p;
const pick = (a) => a[Math.floor(rnd() * a.length)];
const between = (lo, hi) => lo + Math.floor(rnd() * (hi - lo + 1));

const WORDS = ['hello', 'world', 'the', 'weather', 'Paris', 'file', 'résumé', 'naïve', 'Straße', '日本語',
    '中文', 'Привет', 'emoji🎉', '🚀', 'x', 'tab\there', 'a"quote"', 'back\\slash', '<b>tag</b>', '{json}',
    'déjà-vu', 'ｆｕｌｌ', 'עברית', 'العربية', 'naïveté', '<|not_special|>', '100%', 'C:\\path', "it's"];

function sentence() {
    const n = between(1, 8);
    const w = [];
    for (let i = 0; i < n; i++) w.push(pick(WORDS));
    let s = w.join(pick([' ', ' ', ' ', '\n', ', ']));
    if (chance(0.2)) s += '\n\n' + pick(WORDS) + ' ' + pick(WORDS);
    return s;
}

// Leading/trailing ASCII whitespace, which the template trims (engine difference 4: never Unicode spaces).
function padded(s) {
    if (!chance(0.3)) return s;
    const pads = [' ', '  ', '\n', '\n\n', '\t', ' \n ', '\r\n', '\f', '\v'];
    return (chance(0.5) ? pick(pads) : '') + s + (chance(0.7) ? pick(pads) : '');
}

// A content value: a string, or (sometimes) an array of text parts; the parts are concatenated as is.
function content(s) {
    if (chance(0.15)) {
        const k = between(1, 3);
        const parts = [];
        let rest = s;
        for (let i = 0; i < k - 1 && rest.length > 1; i++) {
            const cut = between(1, rest.length - 1);
            // never split inside a UTF-16 surrogate pair
            const c = (rest.charCodeAt(cut - 1) & 0xfc00) === 0xd800 ? cut + 1 : cut;
            parts.push({ type: 'text', text: rest.slice(0, c) });
            rest = rest.slice(c);
        }
        parts.push({ type: 'text', text: rest });
        return parts;
    }
    return s;
}

const TOOL_POOL = [
    { type: 'function', function: { name: 'get_weather', description: 'Get the current weather in a city.',
        parameters: { type: 'object', properties: { city: { type: 'string', description: 'City name' },
            unit: { type: 'string', enum: ['celsius', 'fahrenheit'] } }, required: ['city'] } } },
    { type: 'function', function: { name: 'add', description: 'Add two integers.',
        parameters: { type: 'object', properties: { a: { type: 'integer' }, b: { type: 'integer' } }, required: ['a', 'b'] } } },
    { type: 'function', function: { name: 'scale', description: 'Scale by a factor — multiplie par un facteur.',
        parameters: { type: 'object', properties: { factor: { type: 'number', minimum: 0.5, maximum: 10.25, default: 2.5 },
            exact: { type: 'boolean', default: false } }, required: ['factor'] } } },
    { type: 'function', function: { name: 'search_files', description: 'Search files.\nReturns "paths".',
        parameters: { type: 'object', properties: { query: { type: 'string' },
            paths: { type: 'array', items: { type: 'string' } },
            options: { type: 'object', properties: { case_sensitive: { type: 'boolean' }, max: { type: 'integer' } } } },
            required: ['query'], additionalProperties: false } } },
    { type: 'function', function: { name: 'ping', description: 'No parameters at all.' } },
    { type: 'function', function: { name: 'noop', parameters: { type: 'object', properties: {} } } },
    { type: 'function', function: { name: 'translate', description: '翻訳する / traduire 🌍',
        parameters: { type: 'object', properties: { text: { type: 'string' }, to: { type: ['string', 'null'] },
            nested: { type: 'object', properties: { deep: { type: 'array', items: { type: 'number' } } } } },
            required: ['text', 'to'] } } },
    { type: 'function', function: { name: 'run_shell', description: 'Run a shell command.', strict: true,
        parameters: { type: 'object', properties: { command: { type: 'string' }, timeout_s: { type: 'number' },
            env: { type: 'object', additionalProperties: { type: 'string' } } }, required: ['command'] } } },
    { type: 'function', function: { name: 'set_flags', description: '',
        parameters: { properties: { flags: { anyOf: [{ type: 'boolean' }, { type: 'array' }] }, level: { type: 'integer', default: -3 } },
            type: 'object' } } },
];

const NUMBERS = ['0', '3', '-17', '42', '123456789', '2.0', '2.50', '-0.5', '1e2', '3.25', '0.125', '1E3', '-7.75', '99999.5', '0.0001'];
function jsonScalar(depth) {
    const r = rnd();
    if (r < 0.35) return JSON.stringify(padded(sentence()));
    if (r < 0.6) return pick(NUMBERS);
    if (r < 0.75) return pick(['true', 'false']);
    if (r < 0.82) return 'null';
    if (depth > 2) return '""';
    if (r < 0.91) {
        const n = between(0, 3);
        const a = [];
        for (let i = 0; i < n; i++) a.push(jsonScalar(depth + 1));
        return '[' + a.join(pick([', ', ',', ' , '])) + ']';
    }
    return jsonObject(depth + 1);
}
const KEYS = ['city', 'a', 'b', 'path', 'query', 'deep', 'options', 'x_y', 'clé', '名前', 'with space', 'k-2', 'value'];
function jsonObject(depth) {
    const n = between(0, 3);
    const seen = new Set();
    const kv = [];
    for (let i = 0; i < n; i++) {
        const k = pick(KEYS);
        if (seen.has(k)) continue;
        seen.add(k);
        kv.push(JSON.stringify(k) + pick([': ', ':', ' : ']) + jsonScalar(depth));
    }
    return '{' + kv.join(pick([', ', ','])) + '}';
}

function toolCall() {
    const name = pick(['get_weather', 'add', 'scale', 'search_files', 'ping', 'translate', 'run_shell', 'unknown_fn']);
    // OpenAI sends arguments as a JSON string; some clients send an object.
    const text = chance(0.1) ? '{}' : jsonObject(0);
    const args = chance(0.8) ? text : JSON.parse(text);
    const tc = { type: 'function', function: { name, arguments: args } };
    if (chance(0.7)) tc.id = 'call_' + between(1000, 9999);
    return tc;
}

function thinkText() { return padded(sentence()); }

// An assistant message. Inline "<think>...</think>" content is followed by "\n"s and then a non-space
// (engine difference 1).
function assistant(allowCalls) {
    const m = { role: 'assistant' };
    const answer = sentence();
    const r = rnd();
    if (r < 0.3) m.content = content(padded(answer));
    else if (r < 0.5) m.content = content('<think>' + pick(['', '\n']) + thinkText() + pick(['', '\n']) + '</think>' +
                                          pick(['', '\n', '\n\n']) + answer);
    else if (r < 0.6) m.content = content(pick(['', 'prefix ']) + '<think>a</think>b' + pick(['', '<think>c</think>\nd']));
    else if (r < 0.85) { m.content = content(padded(answer)); m.reasoning_content = pick(['', thinkText(), '  ', 'r']); }
    else m.content = chance(0.5) ? '' : null;
    if (allowCalls && chance(0.45)) {
        const n = between(1, 3);
        m.tool_calls = [];
        for (let i = 0; i < n; i++) m.tool_calls.push(toolCall());
        if (chance(0.3)) delete m.content;
        if (m.content === undefined && chance(0.5)) m.content = null;
    }
    return m;
}

function userText() {
    const r = rnd();
    if (r < 0.08) return '<tool_response>\n' + sentence() + '\n</tool_response>'; // looks like a tool result
    if (r < 0.12) return 'q ' + '</think>' + ' in a user turn';
    return padded(sentence());
}

function conversation(i) {
    const template = chance(0.35) ? 'qwen36' : 'qwen35';
    const msgs = [];
    const sys = rnd();
    if (sys < 0.25) msgs.push({ role: 'system', content: content(padded(sentence())) });
    else if (sys < 0.32) msgs.push({ role: 'developer', content: padded(sentence()) });
    else if (sys < 0.36) msgs.push({ role: 'system', content: pick(['', '   ', null]) });
    const tools = [];
    if (chance(0.55)) {
        const n = between(1, 4);
        const pool = TOOL_POOL.slice();
        for (let k = 0; k < n; k++) tools.push(pool.splice(Math.floor(rnd() * pool.length), 1)[0]);
    }
    const turns = between(1, 4);
    for (let t = 0; t < turns; t++) {
        msgs.push({ role: 'user', content: content(userText()) });
        if (t === turns - 1 && chance(0.55)) break; // ends on a user turn
        // an agentic exchange: assistant calls, tool results, ...
        let steps = between(1, 3);
        while (steps-- > 0) {
            const a = assistant(true);
            msgs.push(a);
            if (a.tool_calls) {
                for (const tc of a.tool_calls) {
                    const res = { role: 'tool', content: content(padded(pick(['{"temp_c": 21}', sentence(), '', 'ok']))) };
                    if (tc.id) res.tool_call_id = tc.id;
                    if (chance(0.3)) res.name = tc.function.name;
                    msgs.push(res);
                }
            } else {
                break;
            }
        }
    }
    // a few requests the template (or llama.cpp) rejects
    const bad = rnd();
    if (bad < 0.025) msgs.splice(0, msgs.length, { role: 'system', content: 'only a system prompt' });
    else if (bad < 0.04) msgs.push({ role: 'system', content: 'late system' });
    else if (bad < 0.05) msgs.push({ role: 'robot', content: 'beep' });
    else if (bad < 0.06) msgs.splice(0, msgs.length, { role: 'user', content: '<tool_response>\nx\n</tool_response>' });
    else if (bad < 0.065) msgs.splice(0, msgs.length);
    else if (bad < 0.075) msgs.push({ role: 'assistant', content: 'x', tool_calls: [{ type: 'function', function: { name: 'f', arguments: '{"a": 1,' } }] });
    else if (bad < 0.08) msgs.push({ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:' } }] });
    return {
        id: i,
        template,
        messages_json: JSON.stringify(msgs),
        tools_json: tools.length || chance(0.2) ? JSON.stringify(tools) : null,
        add_generation_prompt: chance(0.8),
        enable_thinking: chance(0.7),
        preserve_thinking: template === 'qwen36' && chance(0.6) ? chance(0.5) : null,
    };
}

// ---- main ------------------------------------------------------------------------------------------

const out = [];
for (let i = 0; i < count; i++) {
    const req = conversation(i);
    try {
        req.text = render(req);
    } catch (e) {
        req.error = String(e && e.message ? e.message : e);
    }
    out.push(JSON.stringify(req));
}
process.stdout.write(out.join('\n') + '\n');
