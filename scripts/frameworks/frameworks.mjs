// Real agent frameworks through wfsched router in front of wfsched sim
// engines: the OpenAI Agents SDK (Responses API, a triage agent handing off
// to a specialist that calls a tool, then a follow-up turn chained with
// previous_response_id) and a LangGraph.js graph (a planner, three workers
// in parallel, a writer) over chat completions. Every call must succeed and
// land where the router's logic says: a workflow's calls on its home
// backend unless the router counted a spill, a follow-up on the backend
// that stored its previous response. Run by scripts/agent-frameworks.sh,
// which starts the engines and the router and sets WFSCHED_ROUTER.
import assert from "node:assert/strict";
import OpenAI from "openai";
import { z } from "zod";
import { Agent, OpenAIProvider, Runner, run, tool, setDefaultOpenAIClient, setOpenAIAPI, setTracingDisabled } from "@openai/agents";
import { ChatOpenAI } from "@langchain/openai";
import { StateGraph, Annotation, START, END, Send } from "@langchain/langgraph";

const router = process.env.WFSCHED_ROUTER;
if (!router) {
  console.error("WFSCHED_ROUTER is not set: run scripts/agent-frameworks.sh");
  process.exit(2);
}
const baseURL = router + "/v1";

// Every call through the router, with the backend that answered it.
const calls = [];
function recording(workflow) {
  return async (url, init) => {
    const resp = await fetch(url, init);
    calls.push({ workflow, path: new URL(String(url)).pathname, status: resp.status, backend: resp.headers.get("x-wfsched-backend") });
    return resp;
  };
}

async function status(workflow) {
  const resp = await fetch(`${router}/v1/workflows/${workflow}/status`);
  assert.equal(resp.status, 200, `status of ${workflow}`);
  return resp.json();
}

// checkWorkflow: every call succeeded, and all but the spilled ones were
// answered by the workflow's home.
async function checkWorkflow(workflow, path, want) {
  const mine = calls.filter((c) => c.workflow === workflow);
  assert.ok(mine.length >= want, `${workflow}: ${mine.length} calls, want at least ${want}`);
  for (const c of mine) {
    assert.equal(c.status, 200, `${workflow}: ${c.path} answered ${c.status}`);
    assert.equal(c.path, path);
  }
  const st = await status(workflow);
  assert.equal(st.total_requests, mine.length, `${workflow}: the router counted ${st.total_requests} requests`);
  const away = mine.filter((c) => c.backend !== st.assigned_instance).length;
  assert.ok(away <= st.spillovers, `${workflow}: ${away} calls off its home ${st.assigned_instance}, ${st.spillovers} spills counted`);
  console.log(`ok   ${workflow}: ${mine.length} calls on ${path}, home ${st.assigned_instance}, ${st.spillovers} spilled, cache hit rate ${st.cache_hit_rate?.toFixed(3)}`);
}

const model = (await (await fetch(`${baseURL}/models`)).json()).data[0].id;

// 1. The OpenAI Agents SDK over the Responses API.
setTracingDisabled(true);
setOpenAIAPI("responses");
setDefaultOpenAIClient(new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0, fetch: recording("agents-1"),
  defaultHeaders: { "X-Workflow-Id": "agents-1" } }));
const weather = tool({
  name: "get_weather",
  description: "The weather in a city.",
  parameters: z.object({ city: z.string(), days: z.number().int().min(1).max(7) }),
  execute: async ({ city, days }) => `Sunny in ${city} for ${days} days.`,
});
const specialist = new Agent({ name: "Weather specialist", instructions: "Answer weather questions; use the tool.", tools: [weather], model });
const triage = new Agent({ name: "Triage", instructions: "Hand weather questions to the weather specialist.", handoffs: [specialist], model });
const first = await run(triage, "What is the weather in Lisbon this week?");
assert.equal(first.lastAgent.name, "Weather specialist", "the triage agent handed off");
const toolCalls = first.newItems.filter((i) => i.type === "tool_call_item");
assert.ok(toolCalls.some((i) => i.rawItem.name === "get_weather"), "the specialist called its tool");
assert.ok(typeof first.finalOutput === "string" && first.finalOutput.length > 0, "a final answer");
await checkWorkflow("agents-1", "/v1/responses", 3);

// A follow-up turn chained by previous_response_id, sent without a
// workflow id: only the response id tells the router where it must go.
const followupClient = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0, fetch: recording("agents-followup") });
const runner = new Runner({ modelProvider: new OpenAIProvider({ openAIClient: followupClient, useResponses: true }) });
const home = calls.filter((c) => c.workflow === "agents-1").at(-1).backend;
const second = await runner.run(specialist, "And next week?", { previousResponseId: first.lastResponseId });
assert.ok(second.finalOutput.length > 0);
const followup = calls.filter((c) => c.workflow === "agents-followup");
assert.equal(followup[0].backend, home, "the follow-up reached the backend storing its previous response");
for (const c of followup) assert.equal(c.status, 200);
console.log(`ok   agents follow-up: ${followup.length} calls chained by previous_response_id, first on ${followup[0].backend}`);

// 2. A LangGraph.js graph over chat completions.
function llm(agent) {
  return new ChatOpenAI({ model, apiKey: "unused", maxTokens: 40, maxRetries: 0,
    configuration: { baseURL, fetch: recording("graph-1"), defaultHeaders: { "X-Workflow-Id": "graph-1", "X-Agent-Id": agent } } });
}
const State = Annotation.Root({
  topic: Annotation(),
  part: Annotation(),
  plan: Annotation(),
  notes: Annotation({ reducer: (a, b) => a.concat(b), default: () => [] }),
  report: Annotation(),
});
const graph = new StateGraph(State)
  .addNode("planner", async (s) => ({ plan: (await llm("planner").invoke(`Plan a report on ${s.topic} in three parts.`)).content }))
  .addNode("worker", async (s) => ({ notes: [(await llm(`worker-${s.part}`).invoke(`Plan: ${s.plan}\nWrite part ${s.part}.`)).content] }))
  .addNode("writer", async (s) => ({ report: (await llm("writer").invoke(`Combine:\n${s.notes.join("\n")}`)).content }))
  .addEdge(START, "planner")
  .addConditionalEdges("planner", (s) => [1, 2, 3].map((part) => new Send("worker", { ...s, part })))
  .addEdge("worker", "writer")
  .addEdge("writer", END)
  .compile();
const out = await graph.invoke({ topic: "prefix caching in LLM serving" });
assert.equal(out.notes.length, 3);
assert.ok(out.report.length > 0);
await checkWorkflow("graph-1", "/v1/chat/completions", 5);

console.log("\nevery call succeeded and landed where the router's logic says");
