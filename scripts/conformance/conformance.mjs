// The official openai Node client against the embedded engine: each request
// field the engine honours, whole and streamed, read back the way agent
// frameworks read it. Run by scripts/openai-conformance.sh, which starts
// `wfsched sim --enable-auto-tool-choice` and sets WFSCHED_URL.
import assert from "node:assert/strict";
import OpenAI from "openai";

const baseURL = process.env.WFSCHED_URL;
if (!baseURL) {
  console.error("WFSCHED_URL is not set: run scripts/openai-conformance.sh");
  process.exit(2);
}
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0 });
const model = (await client.models.list()).data[0].id;
const user = [{ role: "user", content: "Plan a trip to Lisbon." }];

let passed = 0;
const failures = [];
async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok   ${name}`);
  } catch (err) {
    failures.push(name);
    console.log(`FAIL ${name}\n     ${String(err.stack || err).split("\n").slice(0, 4).join("\n     ")}`);
  }
}

// chat runs one chat request whole and streamed (through the client's own
// stream accumulator) and returns both final messages' choices.
async function chat(params) {
  const whole = await client.chat.completions.create({ model, ...params });
  const stream = client.chat.completions.stream({ model, ...params, stream_options: { include_usage: true } });
  const streamed = await stream.finalChatCompletion();
  assert.equal(streamed.usage.completion_tokens, whole.usage.completion_tokens, "streamed usage");
  return [whole.choices[0], streamed.choices[0]];
}

// both checks each of the whole and the streamed choice.
async function both(params, fn) {
  const [w, s] = await chat(params);
  fn(w, "whole");
  fn(s, "streamed");
  return [w, s];
}

const person = {
  type: "object",
  properties: {
    name: { type: "string", maxLength: 20 },
    age: { type: "integer", minimum: 18, maximum: 99 },
    role: { enum: ["planner", "worker", "writer"] },
    tags: { type: "array", items: { type: "string" }, minItems: 1, maxItems: 3 },
  },
  required: ["name", "age", "role", "tags"],
  additionalProperties: false,
};

function checkPerson(p) {
  assert.equal(typeof p.name, "string");
  assert.ok(p.name.length <= 20, "maxLength");
  assert.ok(Number.isInteger(p.age) && p.age >= 18 && p.age <= 99, `age ${p.age}`);
  assert.ok(["planner", "worker", "writer"].includes(p.role), `role ${p.role}`);
  assert.ok(Array.isArray(p.tags) && p.tags.length >= 1 && p.tags.length <= 3, "tags");
  assert.deepEqual(Object.keys(p).sort(), ["age", "name", "role", "tags"]);
}

await check("response_format json_object", () =>
  both({ messages: user, seed: 1, response_format: { type: "json_object" } }, (c) => {
    assert.equal(c.finish_reason, "stop");
    assert.equal(typeof JSON.parse(c.message.content), "object");
  }));

await check("response_format json_schema", async () => {
  const [w, s] = await both(
    { messages: user, seed: 2, response_format: { type: "json_schema", json_schema: { name: "person", strict: true, schema: person } } },
    (c) => checkPerson(JSON.parse(c.message.content)),
  );
  assert.equal(w.message.content, s.message.content, "same seed, same document");
});

await check("guided_json, guided_regex, guided_choice (vLLM extras)", async () => {
  await both({ messages: user, seed: 3, guided_json: person }, (c) => checkPerson(JSON.parse(c.message.content)));
  await both({ messages: user, seed: 3, guided_regex: "[A-Z]{3}-\\d{3}" }, (c) => assert.match(c.message.content, /^[A-Z]{3}-\d{3}$/));
  await both({ messages: user, seed: 3, guided_choice: ["yes", "no"] }, (c) => assert.ok(["yes", "no"].includes(c.message.content)));
});

const tools = [
  { type: "function", function: { name: "get_weather", description: "Weather in a city", parameters: { type: "object", properties: { city: { type: "string" }, days: { type: "integer", minimum: 1, maximum: 7 } }, required: ["city", "days"] } } },
  { type: "function", function: { name: "book_hotel", parameters: person } },
];

await check("tools with tool_choice required", () =>
  both({ messages: user, seed: 4, tools, tool_choice: "required" }, (c) => {
    assert.equal(c.finish_reason, "tool_calls");
    assert.equal(c.message.tool_calls.length, 1);
    const call = c.message.tool_calls[0];
    assert.match(call.id, /^chatcmpl-tool-/);
    const args = JSON.parse(call.function.arguments);
    if (call.function.name === "book_hotel") checkPerson(args);
    else assert.ok(typeof args.city === "string" && args.days >= 1 && args.days <= 7);
  }));

await check("tools with a named tool_choice", () =>
  both({ messages: user, seed: 5, tools, tool_choice: { type: "function", function: { name: "book_hotel" } } }, (c) => {
    assert.equal(c.message.tool_calls[0].function.name, "book_hotel");
    checkPerson(JSON.parse(c.message.tool_calls[0].function.arguments));
  }));

await check("tools with tool_choice auto: a call, then an answer", async () => {
  const [w] = await both({ messages: user, seed: 6, tools: tools.slice(0, 1) }, (c) => assert.equal(c.finish_reason, "tool_calls"));
  const call = w.message.tool_calls[0];
  const history = [...user, w.message, { role: "tool", tool_call_id: call.id, content: "sunny, 24C" }];
  await both({ messages: history, seed: 6, tools: tools.slice(0, 1) }, (c) => {
    assert.equal(c.finish_reason, "stop");
    assert.ok(!c.message.tool_calls || c.message.tool_calls.length === 0);
    assert.ok(c.message.content.length > 0);
  });
});

await check("logprobs and top_logprobs (chat)", () =>
  both({ messages: user, seed: 7, max_tokens: 12, logprobs: true, top_logprobs: 3 }, (c) => {
    const lp = c.logprobs.content;
    assert.equal(lp.map((t) => t.token).join(""), c.message.content);
    for (const t of lp) {
      assert.ok(t.logprob <= 0);
      assert.equal(t.top_logprobs.length, 3);
      assert.ok(t.top_logprobs.reduce((s, x) => s + Math.exp(x.logprob), 0) <= 1 + 1e-9);
      assert.deepEqual(t.bytes, [...Buffer.from(t.token)]);
    }
  }));

await check("logprobs (completions), whole and streamed", async () => {
  const params = { model, prompt: "Once upon a time", max_tokens: 8, seed: 7, logprobs: 2 };
  const w = (await client.completions.create(params)).choices[0];
  assert.equal(w.logprobs.tokens.join(""), w.text);
  assert.equal(w.logprobs.token_logprobs.length, 8);
  assert.equal(Object.keys(w.logprobs.top_logprobs[0]).length, 2);
  let text = "";
  const tokens = [];
  for await (const chunk of await client.completions.create({ ...params, stream: true })) {
    for (const c of chunk.choices) {
      text += c.text;
      if (c.logprobs) tokens.push(...c.logprobs.tokens);
    }
  }
  assert.equal(text, w.text);
  assert.equal(tokens.join(""), w.text);
});

await check("stop, stop_reason, include_stop_str_in_output, min_tokens, stop_token_ids", async () => {
  const base = await client.chat.completions.create({ model, messages: user, seed: 8, max_tokens: 120, ignore_eos: true });
  const text = base.choices[0].message.content;
  const words = text.split(" ").filter(Boolean);
  const stop = " " + words[Math.floor(words.length / 2)];
  const at = text.indexOf(stop);
  await both({ messages: user, seed: 8, max_tokens: 120, ignore_eos: true, stop: [stop] }, (c) => {
    assert.equal(c.finish_reason, "stop");
    assert.equal(c.message.content, text.slice(0, at));
  });
  const raw = await client.chat.completions.create({ model, messages: user, seed: 8, max_tokens: 120, ignore_eos: true, stop: [stop] });
  assert.equal(raw.choices[0].stop_reason, stop, "vLLM's stop_reason");
  await both({ messages: user, seed: 8, max_tokens: 120, ignore_eos: true, stop: [stop], include_stop_str_in_output: true }, (c) =>
    assert.equal(c.message.content, text.slice(0, at + stop.length)));
  await both({ messages: user, seed: 8, max_tokens: 120, ignore_eos: true, stop: [stop], min_tokens: 100 }, (c) =>
    assert.ok(c.message.content.length > at + stop.length, "no stop before min_tokens"));
});

await check("seed makes the text reproducible", async () => {
  const a = await client.chat.completions.create({ model, messages: user, seed: 9, max_tokens: 30 });
  const b = await client.chat.completions.create({ model, messages: user, seed: 9, max_tokens: 30 });
  const c = await client.chat.completions.create({ model, messages: user, seed: 10, max_tokens: 30 });
  assert.equal(a.choices[0].message.content, b.choices[0].message.content);
  assert.notEqual(a.choices[0].message.content, c.choices[0].message.content);
});

async function refused(params, param) {
  for (const stream of [false, true]) {
    await assert.rejects(
      client.chat.completions.create({ model, messages: user, ...params, stream }),
      (err) => err instanceof OpenAI.BadRequestError && err.status === 400 && err.param === param,
      `${JSON.stringify(params)} stream=${stream}: want a 400 naming ${param}`,
    );
  }
}

await check("refusals in vLLM's error shape", async () => {
  await refused({ priority: 5 }, "priority");
  await refused({ n: 2 }, "n");
  await refused({ logprobs: true, top_logprobs: 21 }, "logprobs");
  await refused({ guided_grammar: 'root ::= "a"' }, "guided_grammar");
  await refused({ response_format: { type: "json_schema", json_schema: { name: "x", schema: { not: { type: "string" } } } } }, "response_format.json_schema.schema");
  await refused({ tool_choice: "required" }, "tool_choice");
});

console.log(`\n${passed} passed, ${failures.length} failed`);
process.exit(failures.length ? 1 : 0);
