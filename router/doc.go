// Package router is wfsched's workflow-affinity router: an OpenAI-compatible
// reverse proxy in front of several LLM servers (vLLM or wfsched's embedded
// engine) that keeps each workflow's calls on one server, to reuse its KV
// cache, within a load bound; with workflow status, agent-to-agent message
// queues and Prometheus metrics. It sits between the client and the
// servers in wfsched's flow, in a run (--instances N) or standalone.
//
// Requests name their workflow with a workflow_metadata object in the body
// (or X-Workflow-Id / X-Agent-Id headers); the router strips it before
// forwarding, leaving every other byte as sent. Requests without one pass
// through as through a plain proxy, routed by the fallback logic.
package router
