// The official TypeScript SDK client, as an agent host uses it, driven by tests/mcp/test_typescript.py.
//
//   node client.mjs <http URL | "stdio"> <scenario> [JSON arguments]
//
// Over stdio it launches the command in $RUNNER_STDIO_COMMAND (JSON argv). It prints one JSON
// object with what the scenario saw; the Python test judges it.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  CallToolResultSchema,
  CreateTaskResultSchema,
  GetTaskResultSchema,
  LoggingMessageNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";

const [target, scenario, rawArguments] = process.argv.slice(2);
const argumentsOf = rawArguments ? JSON.parse(rawArguments) : {};

function transport() {
  if (target !== "stdio") return new StreamableHTTPClientTransport(new URL(target));
  const [command, ...args] = JSON.parse(process.env.RUNNER_STDIO_COMMAND);
  return new StdioClientTransport({ command, args, env: process.env, stderr: "ignore" });
}

const scenarios = {
  // Tool names and the server's advertised capabilities.
  async tools(client) {
    const { tools } = await client.listTools();
    return { tools: tools.map((tool) => tool.name), capabilities: client.getServerCapabilities() };
  },

  // One call with the given arguments: its result, with every progress and log notification.
  async call(client) {
    const progress = [];
    const logs = [];
    client.setNotificationHandler(LoggingMessageNotificationSchema, (note) => {
      logs.push(note.params);
    });
    const started = Date.now();
    const result = await client.callTool(argumentsOf, CallToolResultSchema, {
      onprogress: (note) => progress.push(note),
      resetTimeoutOnProgress: true,
    });
    return { result, progress, logs, seconds: (Date.now() - started) / 1000 };
  },

  // One call, then every resource_link of its answer read as a resource, as a host follows one.
  async links(client) {
    const result = await client.callTool(argumentsOf, CallToolResultSchema);
    const links = result.content.filter((block) => block.type === "resource_link");
    const read = [];
    for (const link of links) read.push(await client.readResource({ uri: link.uri }));
    return { result, read };
  },

  // One call that must fail as a JSON-RPC error: its code and message (or the result, if not).
  async error(client) {
    try {
      return { result: await client.callTool(argumentsOf, CallToolResultSchema) };
    } catch (error) {
      return { code: error.code, message: error.message };
    }
  },

  // Several calls in one session, in order: their results.
  async sequence(client) {
    const results = [];
    for (const call of argumentsOf) results.push(await client.callTool(call, CallToolResultSchema));
    return { results };
  },

  // A call abandoned once its container runs: the SDK sends notifications/cancelled.
  async abandon(client) {
    const controller = new AbortController();
    const call = client.callTool(argumentsOf, CallToolResultSchema, {
      signal: controller.signal,
      onprogress: (note) => {
        if (String(note.message).startsWith("running")) controller.abort("changed my mind");
      },
    });
    try {
      await call;
      return { aborted: false };
    } catch (error) {
      return { aborted: true, error: String(error) };
    }
  },

  // An agent's loop with the SDK's default options (60 s request timeout, no progress): list
  // the tools (so callTool validates structured results against their outputSchema), call,
  // then wait_run with the offsets each answer gives until the run has finished.
  async loop(client) {
    await client.listTools();
    const calls = [];
    let call = argumentsOf;
    for (;;) {
      const started = Date.now();
      const result = await client.callTool(call);
      calls.push({ seconds: (Date.now() - started) / 1000, result });
      const view = result.structuredContent;
      if (result.isError || view.finished) return { calls };
      call = {
        name: "wait_run",
        arguments: {
          run_id: view.run_id,
          stdout_offset: view.stdout_offset,
          stderr_offset: view.stderr_offset,
        },
      };
    }
  },

  // A task-augmented call (protocol 2025-11-25), polled to its end, then its result.
  async task(client) {
    const created = await client.request(
      { method: "tools/call", params: { ...argumentsOf, task: { ttl: 60000 } } },
      CreateTaskResultSchema,
    );
    const taskId = created.task.taskId;
    let task = created.task;
    while (task.status === "working") {
      await new Promise((resolve) => setTimeout(resolve, task.pollInterval ?? 500));
      task = await client.request({ method: "tasks/get", params: { taskId } }, GetTaskResultSchema);
    }
    const result = await client.request(
      { method: "tasks/result", params: { taskId } },
      CallToolResultSchema,
    );
    return { created: created.task, final: task, result };
  },
};

const client = new Client({ name: "oneoff-runner-tests", version: "1.0.0" });
await client.connect(transport());
try {
  const seen = await scenarios[scenario](client);
  process.stdout.write(JSON.stringify(seen));
} finally {
  await client.close();
}
