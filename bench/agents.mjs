#!/usr/bin/env node
// bench/agents.mjs — the load driver of bench/agents.sh: concurrent streaming "coding agents" against one
// OpenAI-compatible server (arbor serve or llama.cpp's llama-server). Node >= 18, no npm dependencies.
//
//   node bench/agents.mjs run --url http://127.0.0.1:8090 --engine arbor --agents 4 --turns 4 --out DIR
//        [--traffic FILE] [--system-tokens 4096] [--tool-tokens 300] [--max-tokens 64] [--convs K]
//        [--duration S] [--stagger-ms MS] [--think-ms MS] [--pid PID] [--req-timeout S] [--no-tools] [--thinking]
//   node bench/agents.mjs burst --url URL --engine arbor --agents N --out DIR [--max-tokens 128] [--req-timeout S]
//   node bench/agents.mjs scaling --url URL --engine arbor --agents N --out DIR [--pairs 3] [--max-tokens 128]
//   node bench/agents.mjs report DIR...     markdown tables of the DIR/summary.json files (and DIR/burst.json,
//                                           DIR/scaling.json)
//
// Traffic. Every agent runs conversations of --turns turns. Turn 1: the shared system prompt (the same
// text for every agent and engine: deterministic code-like text, like a coding agent's tool/system
// prompt, sized so that with the 4 tool definitions it renders to about --system-tokens tokens) and a
// per-agent user task. Each later turn appends the assistant's answer (with its tool calls, if the model
// made any) and a tool-result-like message of about --tool-tokens tokens (a "tool" message answering the
// calls, else a user message), and asks again. Requests: stream true, stream_options.include_usage,
// temperature 0, max_tokens --max-tokens, chat_template_kwargs.enable_thinking false (--thinking: true).
// --think-ms MS: the agent waits MS ms before each later turn (a tool running, a user reading and typing;
// default 0: the next turn is sent as soon as the answer is complete).
// Fixed mode: --convs conversations per agent (default 1). Soak mode (--duration S): every agent starts
// new conversations until S seconds have passed (requests under way then are completed).
// The system prompt is sized with the server's POST /apply-template and /tokenize and saved with the
// tool-text density in --traffic FILE; a later run given the same FILE (the other engine) reuses it unchanged.
//
// Measured per request (DIR/requests.jsonl): time to first token (first non-empty content / reasoning /
// tool-call delta; arbor's immediate role chunk does not count), the gaps between token chunks (inter-token
// latency), usage (prompt, cached, completion tokens), llama.cpp's timings.cache_n / prompt_n, failures
// (HTTP status, error frames, streams without [DONE], socket errors, --req-timeout). With --pid, VmRSS of
// that process every second (DIR/rss.csv). For arbor, /metrics before and after (DIR/metrics-*.txt).
// DIR/summary.json holds the aggregates; `report` prints them as one markdown table.
//
// Burst (decode scaling without prompts in the way): N requests at once, each a short prompt of its own
// (a user task, no system prompt, no tools: ~40 tokens), --max-tokens tokens each, temperature 0, thinking
// off. Every stream's decode rate is (completion tokens - 1) / (last token event - first token event); the
// aggregate is their sum, with the share of the streams' decode time during which all N were decoding
// (near 1: they ran side by side, so the sum is what the server delivers). DIR/burst.json.
//
// Scaling (decode at N streams over decode at one, in the same minutes): --pairs pairs of bursts on one
// server, one stream and N streams, the order alternating (1 then N, N then 1, ...). A ratio of two rates
// measured minutes or servers apart also holds the machine's drift (on a shared host one stream's decode
// rate moved by 1.5x within an hour here); two bursts seconds apart share the host's state. Per pair: the
// two aggregate rates and their ratio; the summary is their p50 (as the other percentiles here: with an even
// number of pairs, the lower middle one). DIR/scaling.json.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';

function die(msg) {
    process.stderr.write(`agents.mjs: ${msg}\n`);
    process.exit(2);
}

// ---- arguments ------------------------------------------------------------------------------------
function parseArgs(argv) {
    const o = {
        url: 'http://127.0.0.1:8090', engine: 'arbor', agents: 1, turns: 4, convs: 1, duration: 0,
        systemTokens: 4096, toolTokens: 300, maxTokens: 64, staggerMs: 0, thinkMs: 0, pid: 0, reqTimeout: 1800,
        tools: true, thinking: false, out: '', traffic: '', label: '', pairs: 3,
    };
    const num = (k, v) => {
        if (v === undefined || !/^[0-9]+(\.[0-9]+)?$/.test(v)) die(`${k} needs a non-negative number, got '${v}'`);
        return Number(v);
    };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i], v = argv[i + 1];
        switch (a) {
            case '--url': o.url = v; i++; break;
            case '--engine': o.engine = v; i++; break;
            case '--label': o.label = v; i++; break;
            case '--agents': o.agents = num(a, v); i++; break;
            case '--turns': o.turns = num(a, v); i++; break;
            case '--convs': o.convs = num(a, v); i++; break;
            case '--duration': o.duration = num(a, v); i++; break;
            case '--system-tokens': o.systemTokens = num(a, v); i++; break;
            case '--tool-tokens': o.toolTokens = num(a, v); i++; break;
            case '--max-tokens': o.maxTokens = num(a, v); i++; break;
            case '--stagger-ms': o.staggerMs = num(a, v); i++; break;
            case '--think-ms': o.thinkMs = num(a, v); i++; break;
            case '--pid': o.pid = num(a, v); i++; break;
            case '--req-timeout': o.reqTimeout = num(a, v); i++; break;
            case '--pairs': o.pairs = num(a, v); i++; break;
            case '--out': o.out = v; i++; break;
            case '--traffic': o.traffic = v; i++; break;
            case '--no-tools': o.tools = false; break;
            case '--thinking': o.thinking = true; break;
            default: die(`unknown argument '${a}'`);
        }
    }
    if (!o.out) die('--out DIR is required');
    if (o.agents < 1 || o.turns < 1 || o.convs < 1 || o.maxTokens < 1 || o.pairs < 1) {
        die('--agents, --turns, --convs, --max-tokens, --pairs must be >= 1');
    }
    if (!['arbor', 'llama'].includes(o.engine)) die(`--engine must be arbor or llama, got '${o.engine}'`);
    return o;
}

// ---- deterministic code-like text -------------------------------------------------------------------
function rng(seed) {
    let s = seed >>> 0;
    return () => {
        s = (s + 0x6D2B79F5) >>> 0;
        let t = s;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}
function seedOf(...parts) {
    let h = 2166136261 >>> 0;
    for (const c of parts.join('/')) h = Math.imul(h ^ c.charCodeAt(0), 16777619) >>> 0;
    return h;
}
const NOUNS = ['buf', 'len', 'ctx', 'node', 'err', 'state', 'token', 'cache', 'page', 'slot', 'seq', 'batch',
    'req', 'resp', 'conn', 'pool', 'lock', 'key', 'value', 'index', 'head', 'tail', 'count', 'limit', 'shape',
    'stride', 'offset', 'weight', 'scale', 'block', 'row', 'col', 'queue', 'job', 'frame', 'entry'];
const VERBS = ['init', 'free', 'push', 'pop', 'find', 'insert', 'remove', 'reset', 'grow', 'copy', 'parse',
    'emit', 'flush', 'load', 'store', 'merge', 'split', 'scan', 'check', 'update', 'resolve', 'encode', 'decode'];
const TYPES = ['int', 'size_t', 'float', 'double', 'uint32_t', 'int64_t', 'bool', 'char *', 'const char *'];
const WORDS = ['the', 'caller', 'owns', 'returned', 'buffer', 'must', 'be', 'freed', 'when', 'empty', 'never',
    'blocks', 'holds', 'lock', 'fails', 'with', 'and', 'leaves', 'state', 'unchanged', 'counts', 'bytes', 'tokens'];

function codeLines(seed) {
    const r = rng(seed);
    const pick = (a) => a[Math.floor(r() * a.length)];
    const id = () => `${pick(NOUNS)}_${pick(NOUNS)}`;
    let depth = 0, fn = 0;
    return function next() {
        if (depth === 0) {
            depth = 1;
            fn++;
            const name = `${pick(NOUNS)}_${pick(VERBS)}${fn % 7 ? '' : '_locked'}`;
            return `static ${pick(TYPES)} ${name}(struct ${pick(NOUNS)} *${pick(NOUNS)}, ${pick(TYPES)} ${pick(NOUNS)}) {`;
        }
        const x = r(), ind = '    '.repeat(depth);
        if (x < 0.12 && depth > 1) { depth--; return `${'    '.repeat(depth)}}`; }
        if (x < 0.20) { depth = 0; return '}\n'; }
        if (x < 0.32) { depth++; return `${ind}for (size_t i = 0; i < ${id()}; i++) {`; }
        if (x < 0.42) { depth++; return `${ind}if (${id()} ${pick(['==', '!=', '<', '>='])} ${pick(['NULL', '0', id(), 'n'])}) {`; }
        if (x < 0.52) { return `${ind}/* ${Array.from({ length: 4 + Math.floor(r() * 8) }, () => pick(WORDS)).join(' ')} */`; }
        if (x < 0.60) { return `${ind}return ${pick(['0', '-1', id(), `${id()} + ${Math.floor(r() * 64)}`])};`; }
        if (x < 0.70) { return `${ind}${id()} = ${pick(VERBS)}_${pick(NOUNS)}(${id()}, ${Math.floor(r() * 4096)});`; }
        if (x < 0.80) { return `${ind}${pick(TYPES)} ${id()} = ${id()}->${pick(NOUNS)}[${pick(['i', 'j', 'n - 1', '0'])}];`; }
        return `${ind}${id()}->${pick(NOUNS)} ${pick(['+=', '=', '|=', '-='])} ${id()} * ${(r() * 4).toFixed(2)}f;`;
    };
}
function textOfLines(seed, nLines) {
    const next = codeLines(seed), out = [];
    for (let i = 0; i < nLines; i++) out.push(next());
    return out.join('\n');
}
function textOfChars(seed, nChars) {
    const next = codeLines(seed), out = [];
    let n = 0;
    while (n < nChars) { const l = next(); out.push(l); n += l.length + 1; }
    return out.join('\n');
}

const SYSTEM_HEAD = `You are Arbor Agent, an autonomous software engineering assistant working inside a C11 repository.
You solve the user's task by reading files, searching the code, editing files and running commands with the
tools below. Rules:
- Think about the smallest change that solves the task; keep the existing style (4-space indent, snake_case).
- Read a file before you edit it. Never invent file contents. Prefer one tool call per step.
- After every edit, run the tests with run_command("make test") and read the failures carefully.
- Report what you changed, in two or three sentences, when the task is done.
- Never print secrets; never touch files outside the repository; ask before deleting anything.

# Repository excerpt (read-only context; line numbers omitted)
`;
const TOOLS = [
    ['read_file', 'Read a file of the repository', { path: 'string' }],
    ['write_file', 'Replace the contents of a file', { path: 'string', content: 'string' }],
    ['run_command', 'Run a shell command in the repository root and return its output', { command: 'string' }],
    ['search_code', 'Search the repository for a regular expression', { pattern: 'string', path: 'string' }],
].map(([name, description, props]) => ({
    type: 'function',
    function: {
        name, description,
        parameters: {
            type: 'object',
            properties: Object.fromEntries(Object.entries(props).map(([k, t]) => [k, { type: t }])),
            required: Object.keys(props),
        },
    },
}));

// ---- HTTP -----------------------------------------------------------------------------------------
function request(url, method, body, timeoutS) {
    return new Promise((resolve, reject) => {
        const u = new URL(url);
        const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
        const req = http.request({
            host: u.hostname, port: u.port, path: u.pathname, method, agent: false,
            headers: data ? { 'Content-Type': 'application/json', 'Content-Length': data.length } : {},
        }, (res) => {
            const chunks = [];
            res.on('data', (c) => chunks.push(c));
            res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString('utf8') }));
            res.on('error', reject);
        });
        req.setTimeout(timeoutS * 1000, () => req.destroy(new Error(`timeout after ${timeoutS} s`)));
        req.on('error', reject);
        if (data) req.write(data);
        req.end();
    });
}
async function tokenCount(base, text) {
    const r = await request(`${base}/tokenize`, 'POST', { content: text }, 120);
    if (r.status !== 200) throw new Error(`POST /tokenize: HTTP ${r.status}: ${r.body.slice(0, 200)}`);
    const j = JSON.parse(r.body);
    if (!Array.isArray(j.tokens)) throw new Error(`POST /tokenize: no tokens array in ${r.body.slice(0, 200)}`);
    return j.tokens.length;
}

// One streamed chat completion. Resolves to a record (never rejects): ok, status, error, timings.
function streamChat(base, body, timeoutS, t0) {
    return new Promise((resolve) => {
        const u = new URL(`${base}/v1/chat/completions`);
        const data = Buffer.from(JSON.stringify(body));
        const rec = {
            ok: false, status: 0, error: null, t_start: performance.now() - t0, ttft_ms: null, events: [],
            content: '', reasoning: '', tool_calls: [], finish_reason: null, usage: null, timings: null, done: false,
        };
        let settled = false, buf = '';
        const finish = (err) => {
            if (settled) return;
            settled = true;
            rec.t_end = performance.now() - t0;
            if (err && !rec.error) rec.error = err;
            rec.ok = !rec.error && rec.status === 200 && rec.done;
            if (!rec.ok && !rec.error) rec.error = rec.done ? 'no usage' : 'stream ended without [DONE]';
            resolve(rec);
        };
        const onFrame = (payload) => {
            if (payload === '[DONE]') { rec.done = true; return; }
            let j;
            try { j = JSON.parse(payload); } catch { rec.error = `bad JSON frame: ${payload.slice(0, 120)}`; return; }
            if (j.error) { rec.error = `error frame: ${JSON.stringify(j.error).slice(0, 300)}`; return; }
            const now = performance.now() - t0;
            const ch = j.choices && j.choices[0];
            if (ch) {
                const d = ch.delta || {};
                let tok = false;
                if (typeof d.content === 'string' && d.content.length) { rec.content += d.content; tok = true; }
                const rc = typeof d.reasoning_content === 'string' ? d.reasoning_content : d.reasoning;
                if (typeof rc === 'string' && rc.length) { rec.reasoning += rc; tok = true; }
                if (Array.isArray(d.tool_calls) && d.tool_calls.length) {
                    tok = true;
                    for (const tc of d.tool_calls) {
                        const k = tc.index ?? 0;
                        const slot = rec.tool_calls[k] || (rec.tool_calls[k] = { id: '', name: '', arguments: '' });
                        if (tc.id) slot.id = tc.id;
                        if (tc.function?.name) slot.name += tc.function.name;
                        if (tc.function?.arguments) slot.arguments += tc.function.arguments;
                    }
                }
                if (tok) rec.events.push(now);
                if (ch.finish_reason) rec.finish_reason = ch.finish_reason;
            }
            if (j.usage) rec.usage = j.usage;
            if (j.timings) rec.timings = j.timings;
        };
        const req = http.request({
            host: u.hostname, port: u.port, path: u.pathname, method: 'POST', agent: false,
            headers: { 'Content-Type': 'application/json', 'Content-Length': data.length, Accept: 'text/event-stream' },
        }, (res) => {
            rec.status = res.statusCode;
            res.setEncoding('utf8');
            if (res.statusCode !== 200) {
                let b = '';
                res.on('data', (c) => { b += c; });
                res.on('end', () => finish(`HTTP ${res.statusCode}: ${b.slice(0, 300)}`));
                res.on('error', (e) => finish(`HTTP ${res.statusCode}: ${e.message}`));
                return;
            }
            res.on('data', (c) => {
                buf += c;
                let i;
                while ((i = buf.indexOf('\n')) >= 0) {
                    const line = buf.slice(0, i).replace(/\r$/, '');
                    buf = buf.slice(i + 1);
                    if (line.startsWith('data:')) onFrame(line.slice(5).trim());
                }
            });
            res.on('end', () => finish(null));
            res.on('error', (e) => finish(`stream: ${e.message}`));
            res.on('aborted', () => finish('stream aborted by the server'));
        });
        req.setTimeout(timeoutS * 1000, () => req.destroy(new Error(`no data for ${timeoutS} s`)));
        req.on('error', (e) => finish(`socket: ${e.message}`));
        req.write(data);
        req.end();
    });
}

async function applyTemplate(base, system, tools) {
    const body = { messages: [{ role: 'system', content: system }, { role: 'user', content: '.' }], chat_template_kwargs: { enable_thinking: false } };
    if (tools) body.tools = TOOLS;
    const r = await request(`${base}/apply-template`, 'POST', body, 120);
    if (r.status !== 200) return null;
    const j = JSON.parse(r.body);
    return typeof j.prompt === 'string' ? j.prompt : null;
}

// ---- traffic --------------------------------------------------------------------------------------
// The shared prefix is sized as rendered by the server's chat template (POST /apply-template: the system
// message with the tool definitions, plus a one-character user message), so --system-tokens counts what
// every agent's prompt starts with; without /apply-template, the system text alone is counted.
async function makeTraffic(o) {
    if (o.traffic && fs.existsSync(o.traffic)) {
        const t = JSON.parse(fs.readFileSync(o.traffic, 'utf8'));
        if (typeof t.system !== 'string' || !(t.chars_per_token > 0)) die(`${o.traffic}: not a traffic file`);
        // The same text must render to the same prompt on this engine, or the comparison is unfair.
        t.prefix_warning = null;
        if (t.counted === 'rendered template + tools' && t.tools === o.tools) {
            const p = await applyTemplate(o.url, t.system, o.tools);
            const n = p === null ? null : await tokenCount(o.url, p);
            if (n !== t.system_tokens) {
                t.prefix_warning = `the shared prefix renders to ${n ?? '?'} tokens on ${o.engine} but to ${t.system_tokens} on ` +
                    `${t.tokenizer_of}: the engines use different chat templates (llama-server: --chat-template-file)`;
                process.stderr.write(`agents.mjs: WARNING: ${t.prefix_warning}\n`);
            }
        }
        return t;
    }
    const seed = seedOf('system-prompt');
    const sys = (n) => SYSTEM_HEAD + textOfLines(seed, n) + '\n';
    const rendered = (await applyTemplate(o.url, sys(1), o.tools)) !== null;
    const count = async (n) => tokenCount(o.url, rendered ? await applyTemplate(o.url, sys(n), o.tools) : sys(n));
    // Binary search on the number of code lines.
    let lo = 0, hi = Math.max(8, Math.ceil(o.systemTokens / 4));
    while (await count(hi) < o.systemTokens) { lo = hi; hi *= 2; if (hi > 1e6) die('cannot size the system prompt'); }
    while (hi - lo > 1) {
        const mid = (lo + hi) >> 1;
        if (await count(mid) < o.systemTokens) lo = mid; else hi = mid;
    }
    const system = sys(hi);
    const nText = await tokenCount(o.url, system);
    const t = {
        system, system_tokens: await count(hi), system_text_tokens: nText, counted: rendered ? 'rendered template + tools' : 'system text',
        tools: o.tools, chars_per_token: system.length / nText, tokenizer_of: o.engine,
    };
    if (o.traffic) fs.writeFileSync(o.traffic, JSON.stringify(t, null, 1));
    return t;
}
function userTask(agent, conv) {
    const r = rng(seedOf('task', agent, conv));
    const f = `src/${NOUNS[agent % NOUNS.length]}/${VERBS[(agent + conv) % VERBS.length]}_${conv}.c`;
    const what = ['fix the off-by-one error', 'add bounds checks', 'make it thread-safe', 'remove the memory leak',
        'speed up the inner loop', 'add a unit test'][Math.floor(r() * 6)];
    return `Agent ${agent}, task ${conv}: in ${f}, ${what} in ${NOUNS[Math.floor(r() * NOUNS.length)]}_` +
        `${VERBS[Math.floor(r() * VERBS.length)]}(). Start by reading the file, then propose the change.`;
}
function toolText(traffic, o, agent, conv, turn, call) {
    const code = textOfChars(seedOf('tool', agent, conv, turn), Math.round(o.toolTokens * traffic.chars_per_token));
    const head = call ? `${call.name}(${call.arguments.slice(0, 80)}) returned:`
        : `Tool result (read_file "src/${NOUNS[(agent + turn) % NOUNS.length]}/part_${turn}.c"):`;
    return `${head}\n${code}\n[exit status 0] Continue with the task: what is the next step?`;
}

// ---- stats ----------------------------------------------------------------------------------------
function pct(a, p) {
    if (!a.length) return null;
    const s = [...a].sort((x, y) => x - y);
    return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}
function slope(xs, ys) {   // least squares dy/dx
    const n = xs.length;
    if (n < 2) return null;
    const mx = xs.reduce((a, b) => a + b, 0) / n, my = ys.reduce((a, b) => a + b, 0) / n;
    let sxy = 0, sxx = 0;
    for (let i = 0; i < n; i++) { sxy += (xs[i] - mx) * (ys[i] - my); sxx += (xs[i] - mx) ** 2; }
    return sxx ? sxy / sxx : null;
}
function unionLength(intervals) {
    const s = intervals.filter(([a, b]) => b > a).sort((x, y) => x[0] - y[0]);
    let total = 0, cs = null, ce = null;
    for (const [a, b] of s) {
        if (cs === null || a > ce) { if (cs !== null) total += ce - cs; cs = a; ce = b; } else ce = Math.max(ce, b);
    }
    if (cs !== null) total += ce - cs;
    return total;
}
function parseMetrics(text) {
    const m = {};
    for (const line of text.split('\n')) {
        const x = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eE]+|NaN|[+-]Inf)$/.exec(line.trim());
        if (x && !x[2]) m[x[1]] = Number(x[3]);
    }
    return m;
}

// ---- run ------------------------------------------------------------------------------------------
function alive(pid) {   // a zombie (killed, not yet reaped) counts as gone
    try { return !/^State:\s+Z/m.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8')); } catch { return false; }
}
async function run(o) {
    fs.mkdirSync(o.out, { recursive: true });
    const traffic = await makeTraffic(o);
    const t0 = performance.now();
    const wallStart = Date.now();
    const reqLog = fs.createWriteStream(path.join(o.out, 'requests.jsonl'));
    const records = [];
    let active = 0;
    let serverGone = false;

    // RSS sampler (VmRSS, VmHWM of --pid, every second)
    const rss = [];
    let rssTimer = null;
    const sampleRss = () => {
        try {
            const st = fs.readFileSync(`/proc/${o.pid}/status`, 'utf8');
            const kb = (k) => Number((new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(st) || [])[1]);
            if (kb('VmRSS') > 0) rss.push({ t: (performance.now() - t0) / 1000, rss: kb('VmRSS'), hwm: kb('VmHWM'), active });
        } catch { /* the process is gone: the requests will fail and say so */ }
    };
    if (o.pid) { sampleRss(); rssTimer = setInterval(sampleRss, 1000); }

    let metricsBefore = null;
    if (o.engine === 'arbor') {
        const r = await request(`${o.url}/metrics`, 'GET', undefined, 60).catch(() => null);
        if (r && r.status === 200) { fs.writeFileSync(path.join(o.out, 'metrics-before.txt'), r.body); metricsBefore = parseMetrics(r.body); }
    }

    const deadline = o.duration > 0 ? t0 + o.duration * 1000 : Infinity;
    const soak = o.duration > 0;
    process.stderr.write(`agents.mjs: ${o.engine}: ${o.agents} agents x ${soak ? `conversations for ${o.duration} s` : `${o.convs} conversation(s)`} ` +
        `x ${o.turns} turns; system prompt ${traffic.system_tokens} tokens, tool results ~${o.toolTokens}, max_tokens ${o.maxTokens}\n`);

    async function agent(a) {
        if (o.staggerMs) await new Promise((r) => setTimeout(r, a * o.staggerMs));
        for (let c = 0; !serverGone && (soak ? performance.now() < deadline : c < o.convs); c++) {
            const messages = [{ role: 'system', content: traffic.system }, { role: 'user', content: userTask(a, c) }];
            for (let t = 0; t < o.turns; t++) {
                if (soak && t > 0 && performance.now() >= deadline) break;
                const body = {
                    model: 'agent', messages, stream: true, stream_options: { include_usage: true },
                    max_tokens: o.maxTokens, temperature: 0, chat_template_kwargs: { enable_thinking: o.thinking },
                };
                if (o.tools) body.tools = TOOLS;
                active++;
                const r = await streamChat(o.url, body, o.reqTimeout, t0);
                active--;
                const ev = r.events;
                const itl = [];
                for (let i = 1; i < ev.length; i++) itl.push(+(ev[i] - ev[i - 1]).toFixed(2));
                const u = r.usage || {};
                const rec = {
                    engine: o.engine, agents: o.agents, agent: a, conv: c, turn: t + 1, ok: r.ok, status: r.status,
                    error: r.error, t_start_ms: +r.t_start.toFixed(1), t_end_ms: +r.t_end.toFixed(1),
                    ttft_ms: ev.length ? +(ev[0] - r.t_start).toFixed(1) : null,
                    t_first_ms: ev.length ? +ev[0].toFixed(1) : null, t_last_ms: ev.length ? +ev[ev.length - 1].toFixed(1) : null,
                    n_events: ev.length, finish_reason: r.finish_reason,
                    prompt_tokens: u.prompt_tokens ?? null, completion_tokens: u.completion_tokens ?? null,
                    cached_tokens: u.prompt_tokens_details?.cached_tokens ?? null,
                    cache_n: r.timings?.cache_n ?? null, prompt_n: r.timings?.prompt_n ?? null,
                    prompt_ms: r.timings?.prompt_ms ?? null,
                    n_tool_calls: r.tool_calls.filter(Boolean).length, itl_ms: itl,
                };
                records.push(rec);
                reqLog.write(JSON.stringify(rec) + '\n');
                if (!r.ok) {
                    process.stderr.write(`agents.mjs: ${o.engine} agent ${a} conv ${c} turn ${t + 1}: FAILED: ${r.error}\n`);
                    if (o.pid && !alive(o.pid)) {
                        if (!serverGone) process.stderr.write(`agents.mjs: the server (pid ${o.pid}) is gone: stopping\n`);
                        serverGone = true;
                    }
                    await new Promise((res) => setTimeout(res, 1000));   // no busy loop of failures
                    break;   // the conversation cannot go on without the answer
                }
                // next turn: the answer (with its tool calls) + a tool-result-like message
                const calls = r.tool_calls.filter(Boolean).map((tc, k) => {
                    let args = tc.arguments;
                    try { const p = JSON.parse(args); if (!p || typeof p !== 'object' || Array.isArray(p)) args = '{}'; } catch { args = '{}'; }
                    return { id: tc.id || `call_${a}_${c}_${t}_${k}`, type: 'function', function: { name: tc.name || 'read_file', arguments: args } };
                });
                const asst = { role: 'assistant', content: r.content };
                if (calls.length) asst.tool_calls = calls;
                messages.push(asst);
                if (calls.length) {
                    for (const call of calls) {
                        messages.push({ role: 'tool', tool_call_id: call.id, content: toolText(traffic, o, a, c, t, call.function) });
                    }
                } else {
                    messages.push({ role: 'user', content: toolText(traffic, o, a, c, t, null) });
                }
                if (o.thinkMs && t + 1 < o.turns) await new Promise((res) => setTimeout(res, o.thinkMs));
            }
        }
    }
    await Promise.all(Array.from({ length: o.agents }, (_, a) => agent(a)));
    const tEnd = performance.now();
    if (rssTimer) { sampleRss(); clearInterval(rssTimer); }
    await new Promise((r) => reqLog.end(r));

    let metricsAfter = null;
    if (o.engine === 'arbor') {
        const r = await request(`${o.url}/metrics`, 'GET', undefined, 60).catch(() => null);
        if (r && r.status === 200) { fs.writeFileSync(path.join(o.out, 'metrics-after.txt'), r.body); metricsAfter = parseMetrics(r.body); }
    }
    if (rss.length) {
        fs.writeFileSync(path.join(o.out, 'rss.csv'), 't_s,vmrss_kib,vmhwm_kib,active_requests\n' +
            rss.map((s) => `${s.t.toFixed(1)},${s.rss},${s.hwm},${s.active}`).join('\n') + '\n');
    }

    // ---- aggregates
    const ok = records.filter((r) => r.ok);
    const wallS = (tEnd - t0) / 1000;
    const genTokens = ok.reduce((s, r) => s + (r.completion_tokens ?? r.n_events), 0);
    const decodeTokens = ok.reduce((s, r) => s + Math.max(0, (r.completion_tokens ?? r.n_events) - 1), 0);
    const decodeS = unionLength(ok.filter((r) => r.t_first_ms !== null).map((r) => [r.t_first_ms, r.t_last_ms])) / 1000;
    const ttft = ok.filter((r) => r.ttft_ms !== null).map((r) => r.ttft_ms / 1000);
    const ttftTurn = (k) => ok.filter((r) => r.turn === k && r.ttft_ms !== null).map((r) => r.ttft_ms / 1000);
    const itl = ok.flatMap((r) => r.itl_ms);
    // per conversation: TTFT of turn 2 / TTFT of turn 1
    const byConv = new Map();
    for (const r of ok) { if (r.ttft_ms === null) continue; const k = `${r.agent}/${r.conv}`; if (!byConv.has(k)) byConv.set(k, {}); byConv.get(k)[r.turn] = r.ttft_ms; }
    const ratios = [...byConv.values()].filter((v) => v[1] && v[2] !== undefined).map((v) => v[2] / v[1]);
    const sum = (f) => ok.reduce((s, r) => s + (f(r) ?? 0), 0);
    let cached, prompt, hitSource;
    if (o.engine === 'llama') {
        cached = sum((r) => r.cache_n); prompt = sum((r) => (r.cache_n ?? 0) + (r.prompt_n ?? 0)); hitSource = 'timings.cache_n / (cache_n + prompt_n)';
    } else {
        cached = sum((r) => r.cached_tokens); prompt = sum((r) => r.prompt_tokens); hitSource = 'usage cached_tokens / prompt_tokens';
    }
    const md = {};
    if (metricsBefore && metricsAfter) {
        for (const k of ['arbor_prompt_tokens_total', 'arbor_prompt_cached_tokens_total', 'arbor_generated_tokens_total',
            'arbor_generations_total', 'arbor_generation_errors_total', 'arbor_request_errors_total', 'arbor_cancelled_total',
            'arbor_cache_hits_total', 'arbor_cache_misses_total', 'arbor_cache_evictions_total', 'arbor_sched_steps_total',
            'arbor_sched_prefilled_tokens_total', 'arbor_sched_cached_tokens_total', 'arbor_sched_generated_tokens_total']) {
            if (k in metricsAfter) md[k] = metricsAfter[k] - (metricsBefore[k] ?? 0);
        }
        md.arbor_cache_bytes = metricsAfter.arbor_cache_bytes;
        md.arbor_kv_bytes = metricsAfter.arbor_kv_bytes;
    }
    const rssMiB = rss.map((s) => s.rss / 1024);
    const half = rss.length ? rss.filter((s) => s.t >= rss[rss.length - 1].t / 2) : [];
    const summary = {
        engine: o.engine, label: o.label, agents: o.agents, turns: o.turns, convs: soak ? null : o.convs,
        duration_s: o.duration || null, think_ms: o.thinkMs, soak, system_tokens: traffic.system_tokens, tool_tokens: o.toolTokens,
        prefix_warning: traffic.prefix_warning ?? null,
        max_tokens: o.maxTokens, tools: o.tools, started: new Date(wallStart).toISOString(), wall_s: +wallS.toFixed(2),
        requests: records.length, ok: ok.length, failed: records.length - ok.length,
        errors: [...new Set(records.filter((r) => !r.ok).map((r) => r.error))].slice(0, 10),
        conversations: byConv.size,
        gen_tokens: genTokens, gen_tok_s: +(genTokens / wallS).toFixed(2),
        decode_tok_s: decodeS > 0 ? +(decodeTokens / decodeS).toFixed(2) : null,
        prompt_tokens: sum((r) => r.prompt_tokens),
        ttft_p50_s: pct(ttft, 50), ttft_p95_s: pct(ttft, 95),
        ttft_turn1_p50_s: pct(ttftTurn(1), 50), ttft_turn2_p50_s: pct(ttftTurn(2), 50),
        ttft_later_p50_s: pct(ok.filter((r) => r.turn >= 2 && r.ttft_ms !== null).map((r) => r.ttft_ms / 1000), 50),
        turn2_over_turn1_pct: ratios.length ? +(100 * pct(ratios, 50)).toFixed(1) : null,
        itl_p50_ms: pct(itl, 50), itl_p95_ms: pct(itl, 95), itl_max_ms: itl.length ? Math.max(...itl) : null,
        cache_hit_pct: prompt > 0 ? +(100 * cached / prompt).toFixed(1) : null, cache_hit_source: hitSource,
        cached_tokens: cached, cache_denominator_tokens: prompt,
        arbor_metrics_delta: metricsAfter ? md : null,
        metrics_cache_hit_pct: md.arbor_prompt_tokens_total ? +(100 * md.arbor_prompt_cached_tokens_total / md.arbor_prompt_tokens_total).toFixed(1) : null,
        rss_start_mib: rssMiB.length ? +rssMiB[0].toFixed(1) : null,
        rss_peak_mib: rssMiB.length ? +Math.max(...rssMiB).toFixed(1) : null,
        rss_end_mib: rssMiB.length ? +rssMiB[rssMiB.length - 1].toFixed(1) : null,
        rss_slope_mib_per_min: rss.length > 2 ? +(60 * slope(rss.map((s) => s.t), rssMiB)).toFixed(3) : null,
        rss_slope_2nd_half_mib_per_min: half.length > 2 ? +(60 * slope(half.map((s) => s.t), half.map((s) => s.rss / 1024))).toFixed(3) : null,
    };
    fs.writeFileSync(path.join(o.out, 'summary.json'), JSON.stringify(summary, null, 1) + '\n');
    process.stderr.write(`agents.mjs: ${o.engine} x${o.agents}: ${ok.length}/${records.length} ok, ${summary.gen_tok_s} gen tok/s, ` +
        `TTFT p50 ${fmt(summary.ttft_p50_s, 2)} s, ITL p50 ${fmt(summary.itl_p50_ms, 1)} ms, cache hit ${fmt(summary.cache_hit_pct, 1)}%\n`);
    return summary;
}

// ---- burst -----------------------------------------------------------------------------------------
// n short prompts at once; the aggregate and per-stream decode rates (see the header)
async function burstOnce(o, n) {
    const t0 = performance.now();
    const recs = await Promise.all(Array.from({ length: n }, (_, a) => streamChat(o.url, {
        model: 'agent', messages: [{ role: 'user', content: userTask(a, 1000) }], stream: true,
        stream_options: { include_usage: true }, max_tokens: o.maxTokens, temperature: 0,
        chat_template_kwargs: { enable_thinking: false },
    }, o.reqTimeout, t0)));
    const streams = recs.map((r, a) => ({
        agent: a, ok: r.ok, error: r.error, completion_tokens: r.usage?.completion_tokens ?? null,
        t_start_ms: +r.t_start.toFixed(1), t_first_ms: r.events.length ? +r.events[0].toFixed(1) : null,
        t_last_ms: r.events.length ? +r.events[r.events.length - 1].toFixed(1) : null,
    }));
    const good = streams.filter((x) => x.ok && x.completion_tokens > 1 && x.t_last_ms > x.t_first_ms);
    const rates = good.map((x) => (x.completion_tokens - 1) / ((x.t_last_ms - x.t_first_ms) / 1000));
    const total = rates.reduce((s, x) => s + x, 0);
    const all = good.length ? Math.min(...good.map((x) => x.t_last_ms)) - Math.max(...good.map((x) => x.t_first_ms)) : 0;
    const mean = good.length ? good.reduce((s, x) => s + x.t_last_ms - x.t_first_ms, 0) / good.length : 0;
    return {
        engine: o.engine, agents: n, max_tokens: o.maxTokens, ok: good.length, failed: n - good.length,
        errors: [...new Set(streams.filter((x) => !x.ok).map((x) => x.error))].slice(0, 5),
        decode_tok_s: good.length === n ? +total.toFixed(2) : null,
        per_stream_tok_s: rates.length ? +(total / rates.length).toFixed(2) : null,
        overlap: mean > 0 ? +(Math.max(0, all) / mean).toFixed(3) : null, streams,
    };
}

async function burst(o) {
    fs.mkdirSync(o.out, { recursive: true });
    const b = await burstOnce(o, o.agents);
    fs.writeFileSync(path.join(o.out, 'burst.json'), JSON.stringify(b, null, 1) + '\n');
    process.stderr.write(`agents.mjs: burst ${o.engine} x${o.agents}: ${b.ok}/${o.agents} ok, aggregate decode ${fmt(b.decode_tok_s, 1)} tok/s ` +
        `(${fmt(b.per_stream_tok_s, 2)} per stream, overlap ${fmt(b.overlap, 2)})\n`);
    if (b.failed) process.stderr.write(`agents.mjs: burst ${o.engine} x${o.agents}: ${b.failed} failed: ${b.errors.join('; ')}\n`);
}

// ---- scaling ---------------------------------------------------------------------------------------
async function scaling(o) {
    fs.mkdirSync(o.out, { recursive: true });
    const pairs = [];
    let failed = 0;
    const errors = new Set();
    for (let i = 0; i < o.pairs; i++) {
        const order = i % 2 ? [o.agents, 1] : [1, o.agents];
        const got = {};
        for (const n of order) {
            const b = await burstOnce(o, n);
            failed += b.failed;
            b.errors.forEach((e) => errors.add(e));
            got[n] = b;
        }
        const one = got[1].decode_tok_s, many = got[o.agents].decode_tok_s;
        const p = {
            first: order[0], one_tok_s: one, many_tok_s: many, many_per_stream_tok_s: got[o.agents].per_stream_tok_s,
            many_overlap: got[o.agents].overlap, ratio: one && many ? +(many / one).toFixed(3) : null,
        };
        pairs.push(p);
        process.stderr.write(`agents.mjs: scaling ${o.engine} pair ${i + 1}/${o.pairs} (${order.join(' then ')} streams): ` +
            `1 stream ${fmt(one, 1)}, ${o.agents} streams ${fmt(many, 1)} tok/s, ratio ${fmt(p.ratio, 2)}\n`);
    }
    const ratios = pairs.map((p) => p.ratio).filter((x) => x !== null);
    const sc = {
        engine: o.engine, agents: o.agents, max_tokens: o.maxTokens, pairs, failed, errors: [...errors].slice(0, 5),
        median_ratio: ratios.length === pairs.length ? +pct(ratios, 50).toFixed(3) : null,   /* p50 as the summaries' */
    };
    fs.writeFileSync(path.join(o.out, 'scaling.json'), JSON.stringify(sc, null, 1) + '\n');
    process.stderr.write(`agents.mjs: scaling ${o.engine} x${o.agents}: median ${o.agents} / 1 ${fmt(sc.median_ratio, 2)} over ${pairs.length} pairs` +
        (failed ? `, ${failed} streams failed: ${sc.errors.join('; ')}` : '') + '\n');
}

// ---- report ---------------------------------------------------------------------------------------
function fmt(x, d) { return x === null || x === undefined || Number.isNaN(x) ? '–' : Number(x).toFixed(d); }
function report(dirs) {
    const rows = [], bursts = [], scalings = [];   /* bursts[i]: rows[i]'s DIR/burst.json, or null */
    const json = (f) => (fs.existsSync(f) ? JSON.parse(fs.readFileSync(f, 'utf8')) : null);
    for (const d of dirs) {
        const r = json(path.join(d, 'summary.json'));
        if (r) { rows.push(r); bursts.push(json(path.join(d, 'burst.json'))); }
        const sc = json(path.join(d, 'scaling.json'));
        if (sc) scalings.push(sc);
    }
    if (!rows.length) die('no summary.json in the given directories');
    const soak = rows.some((r) => r.soak);
    const hasBurst = bursts.some(Boolean);
    const out = [];
    out.push('| engine | agents | requests ok / failed | gen tok/s (wall) | decode tok/s | TTFT p50 / p95 s | turn-1 / turn-2 TTFT p50 s | turn 2 / turn 1 | ITL p50 / p95 / max ms | prefix-cache hit | RSS start / peak / end MiB |' +
        (soak ? ' RSS slope MiB/min (all / 2nd half) |' : '') + (hasBurst ? ' burst decode tok/s (per stream) |' : ''));
    out.push('| :-- | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: |' + (soak ? ' --: |' : '') + (hasBurst ? ' --: |' : ''));
    for (const [i, r] of rows.entries()) {
        const bu = bursts[i];
        const hit = r.cache_hit_pct === null ? '–' : `${fmt(r.cache_hit_pct, 1)}%` +
            (r.metrics_cache_hit_pct !== null && r.metrics_cache_hit_pct !== undefined ? ` (/metrics ${fmt(r.metrics_cache_hit_pct, 1)}%)` : '');
        out.push(`| ${r.label || r.engine} | ${r.agents} | ${r.ok} / ${r.failed} | ${fmt(r.gen_tok_s, 1)} | ${fmt(r.decode_tok_s, 1)} | ` +
            `${fmt(r.ttft_p50_s, 2)} / ${fmt(r.ttft_p95_s, 2)} | ${fmt(r.ttft_turn1_p50_s, 2)} / ${fmt(r.ttft_turn2_p50_s, 2)} | ` +
            `${r.turn2_over_turn1_pct === null ? '–' : fmt(r.turn2_over_turn1_pct, 1) + '%'} | ${fmt(r.itl_p50_ms, 1)} / ${fmt(r.itl_p95_ms, 1)} / ${fmt(r.itl_max_ms, 0)} | ${hit} | ` +
            `${fmt(r.rss_start_mib, 0)} / ${fmt(r.rss_peak_mib, 0)} / ${fmt(r.rss_end_mib, 0)} |` +
            (soak ? ` ${fmt(r.rss_slope_mib_per_min, 2)} / ${fmt(r.rss_slope_2nd_half_mib_per_min, 2)} |` : '') +
            (hasBurst ? ` ${bu ? `${fmt(bu.decode_tok_s, 1)} (${fmt(bu.per_stream_tok_s, 2)})${bu.failed ? `, ${bu.failed} failed` : ''}` : '–'} |` : ''));
    }
    const errs = rows.filter((r) => r.failed).map((r) => `- ${r.label || r.engine} x${r.agents}: ${r.failed} failed: ${r.errors.join('; ')}`);
    bursts.forEach((b) => { if (b && b.failed) errs.push(`- burst ${b.engine} x${b.agents}: ${b.failed} failed: ${b.errors.join('; ')}`); });
    for (const r of rows) if (r.prefix_warning) errs.push(`- ${r.label || r.engine} x${r.agents}: WARNING: ${r.prefix_warning}`);
    if (scalings.length) {
        out.push('', 'Decode scaling, paired: on the N-agent server, bursts of 1 and N streams alternating, seconds apart ' +
            `(${scalings[0].max_tokens}-token answers; aggregate decode tok/s of each burst):`, '',
            '| engine | N | 1 stream, per pair | N streams, per pair | N / 1, per pair | median N / 1 |', '| :-- | --: | --: | --: | --: | --: |');
        for (const sc of scalings) {
            const col = (k, d) => sc.pairs.map((p) => fmt(p[k], d)).join(' / ');
            out.push(`| ${sc.engine} | ${sc.agents} | ${col('one_tok_s', 1)} | ${col('many_tok_s', 1)} | ${col('ratio', 2)} | **${fmt(sc.median_ratio, 2)}** |`);
            if (sc.failed) errs.push(`- scaling ${sc.engine} x${sc.agents}: ${sc.failed} streams failed: ${sc.errors.join('; ')}`);
        }
    }
    process.stdout.write(out.join('\n') + '\n' + (errs.length ? '\nfailures and warnings:\n' + errs.join('\n') + '\n' : ''));
}

const [cmd, ...rest] = process.argv.slice(2);
if (cmd === 'run') {
    run(parseArgs(rest)).catch((e) => die(e.stack || String(e)));
} else if (cmd === 'burst') {   /* its own default answer length: 128 (the traffic's is 64) */
    burst(parseArgs(rest.includes('--max-tokens') ? rest : [...rest, '--max-tokens', '128'])).catch((e) => die(e.stack || String(e)));
} else if (cmd === 'scaling') {
    scaling(parseArgs(rest.includes('--max-tokens') ? rest : [...rest, '--max-tokens', '128'])).catch((e) => die(e.stack || String(e)));
} else if (cmd === 'report') {
    report(rest);
} else {
    process.stdout.write(fs.readFileSync(new URL(import.meta.url), 'utf8').split('\n')
        .slice(1).filter((l, i, a) => a.slice(0, i + 1).every((x) => x.startsWith('//')))
        .map((l) => l.replace(/^\/\/ ?/, '')).join('\n') + '\n');
    process.exit(cmd === '-h' || cmd === '--help' ? 0 : 2);
}
