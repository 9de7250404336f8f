// The official MCP SDK's OAuth client flow against an MCP server behind Portcullis: the 401,
// discovery (protected resource and authorization server metadata), registration (dynamic,
// or a client ID metadata document), PKCE, the consent page (answered as the signed-in person
// would), the code exchange, tools over Streamable HTTP, and a refresh. What it saw is printed
// as one JSON object; the client's registration and tokens are kept in STATE_FILE between runs.
//
//   node oauth-client.mjs URL STATE_FILE SESSION_COOKIE MODE [CLIENT_METADATA_URL]
//
// MODE: "connect" (authorize if needed, use the tools, force a refresh) or "reuse" (use the
// saved tokens only; an authorization asked for is counted, not given).
import fs from "node:fs";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";

const [url, stateFile, cookie, mode, clientMetadataUrl] = process.argv.slice(2);
const saved = fs.existsSync(stateFile) ? JSON.parse(fs.readFileSync(stateFile, "utf8")) : {};
const out = { authorizations: 0, tokenSaves: 0 };
// Nothing listens here: the "browser" below reads the code from the redirect itself.
const redirectUrl = "http://127.0.0.1:33418/callback";
let pendingCode;

const unescape = (s) =>
  s.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");

const provider = {
  get redirectUrl() {
    return redirectUrl;
  },
  clientMetadataUrl,
  get clientMetadata() {
    return {
      client_name: "SDK test client",
      redirect_uris: [redirectUrl],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  },
  clientInformation: () => saved.client,
  saveClientInformation: (info) => {
    saved.client = info;
  },
  tokens: () => saved.tokens,
  saveTokens: (tokens) => {
    saved.tokens = tokens;
    out.tokenSaves += 1;
  },
  saveCodeVerifier: (verifier) => {
    saved.verifier = verifier;
  },
  codeVerifier: () => saved.verifier,
  async redirectToAuthorization(authorizationUrl) {
    out.authorizations += 1;
    out.authorizationUrl = authorizationUrl.toString();
    if (mode === "reuse") return; // a person would have to come back and allow it again
    // The person, signed in already, opens the page and allows.
    const headers = { cookie: `_portcullis=${cookie}` };
    const page = await fetch(authorizationUrl, { headers, redirect: "manual" });
    const html = await page.text();
    if (page.status !== 200) throw new Error(`consent page: ${page.status} ${html}`);
    out.consentNamesClient = html.includes("SDK test client");
    const fields = [...html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)].map((m) => [
      unescape(m[1]),
      unescape(m[2]),
    ]);
    fields.push(["decision", "allow"]);
    const answer = await fetch(new URL("/.portcullis/oauth/authorize", authorizationUrl), {
      method: "POST",
      headers: { ...headers, "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(fields),
      redirect: "manual",
    });
    const back = new URL(answer.headers.get("location"));
    out.iss = back.searchParams.get("iss");
    out.state = back.searchParams.get("state");
    pendingCode = back.searchParams.get("code");
  },
};

async function connect() {
  const open = async () => {
    const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
    const client = new Client({ name: "portcullis-oauth-test", version: "1.0.0" });
    await client.connect(transport);
    return { client, transport };
  };
  try {
    return await open();
  } catch (error) {
    if (!(error instanceof UnauthorizedError) || !pendingCode) throw error;
    const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
    await transport.finishAuth(pendingCode);
    pendingCode = undefined;
    return await open();
  }
}

try {
  const { client } = await connect();
  out.tools = (await client.listTools()).tools.map((tool) => tool.name);
  const echo = await client.callTool({ name: "echo", arguments: { message: "with an OAuth token" } });
  out.echo = echo.content[0].text;
  const progress = [];
  await client.callTool(
    { name: "longRunningOperation", arguments: { duration: 1, steps: 2 } },
    undefined,
    { onprogress: (p) => progress.push(p.progress) },
  );
  out.progress = progress;
  await client.close();
  if (mode === "connect") {
    // The access token goes bad (as when it expires): the SDK's 401 handling refreshes it.
    const before = saved.tokens.refresh_token;
    saved.tokens = { ...saved.tokens, access_token: `${saved.tokens.access_token}x` };
    const again = await connect();
    out.refreshed = saved.tokens.refresh_token !== before;
    out.afterRefresh = (await again.client.listTools()).tools.length;
    await again.client.close();
  }
} catch (error) {
  out.error = String(error);
  out.unauthorized = error instanceof UnauthorizedError;
}
fs.writeFileSync(stateFile, JSON.stringify(saved));
console.log(JSON.stringify(out));
