// The official MCP SDK's client against an MCP server behind Portcullis: connects over
// Streamable HTTP with a bearer credential, lists the tools, calls `echo`, calls
// `longRunningOperation` with progress notifications (which arrive as SSE events, one by one),
// ends the session (DELETE), and prints what happened as one JSON object.
//
//   node client.mjs URL [TOKEN]
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, token] = process.argv.slice(2);
const headers = token ? { Authorization: `Bearer ${token}` } : {};
const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
const client = new Client({ name: "portcullis-test", version: "1.0.0" });
const out = {};
try {
  await client.connect(transport);
  out.sessionId = transport.sessionId ?? null;
  out.tools = (await client.listTools()).tools.map((tool) => tool.name);
  const echo = await client.callTool({ name: "echo", arguments: { message: "through the gate" } });
  out.echo = echo.content[0].text;
  const progress = [];
  const long = await client.callTool(
    { name: "longRunningOperation", arguments: { duration: 2, steps: 4 } },
    undefined,
    { onprogress: (p) => progress.push({ progress: p.progress, at: Date.now() }) },
  );
  out.progress = progress;
  out.long = long.content[0].text;
  await transport.terminateSession();
  await client.close();
} catch (error) {
  out.error = String(error);
  out.code = error.code ?? null;
}
console.log(JSON.stringify(out));
