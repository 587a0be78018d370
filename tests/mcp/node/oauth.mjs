// The TypeScript SDK's OAuth client against the runner and a real provider, driven by
// tests/identity/test_typescript_oauth.py:
//
//   node oauth.mjs <MCP URL> <tool call as JSON>
//
// As a hosted MCP client does: the first request is refused (401); the SDK follows the
// challenge's resource_metadata to the runner's RFC 9728 metadata, then the provider's own,
// registers itself (RFC 7591), and sends the user to sign in (authorization code with PKCE and
// the RFC 8707 resource). The "browser" here follows the redirects (keeping cookies) through
// the provider's automatic sign-in app to the redirect URI, and hands the code back. Then the
// tool is called with the token. Prints one JSON object; the Python test judges it.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [target, rawCall] = process.argv.slice(2);
const REDIRECT = "http://127.0.0.1:9/callback"; // never served: the browser stops before it

class MemoryProvider {
  seen = { authorizationUrl: null, code: null };
  expectedState = crypto.randomUUID();

  state() {
    return this.expectedState;
  }

  get redirectUrl() {
    return REDIRECT;
  }
  get clientMetadata() {
    return {
      client_name: "oneoff-runner identity test",
      redirect_uris: [REDIRECT],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
      // Hydra echoes absent ones as "" and null, which the SDK's schema refuses
      client_uri: "https://oneoff-runner.invalid/identity-test",
      contacts: ["tests@oneoff-runner.invalid"],
    };
  }
  clientInformation() {
    return this.client;
  }
  saveClientInformation(information) {
    this.client = information;
  }
  tokens() {
    return this.saved;
  }
  saveTokens(tokens) {
    this.saved = tokens;
  }
  saveCodeVerifier(verifier) {
    this.verifier = verifier;
  }
  codeVerifier() {
    return this.verifier;
  }
  async redirectToAuthorization(url) {
    this.seen.authorizationUrl = url.toString();
    this.seen.code = await browse(url.toString(), this.expectedState);
  }
}

// Follows redirects as a browser does, with cookies, until the redirect URI; returns the code
// after checking the state came back (CSRF).
async function browse(start, state) {
  const cookies = new Map();
  let next = start;
  for (let hop = 0; hop < 20; hop += 1) {
    if (next.startsWith(REDIRECT)) {
      const answer = new URL(next).searchParams;
      if (!answer.get("code") || answer.get("state") !== state) {
        throw new Error(`sign-in failed: ${next}`);
      }
      return answer.get("code");
    }
    const cookie = [...cookies].map(([name, value]) => `${name}=${value}`).join("; ");
    const response = await fetch(next, { redirect: "manual", headers: { cookie } });
    for (const line of response.headers.getSetCookie()) {
      const pair = line.split(";")[0];
      const cut = pair.indexOf("=");
      cookies.set(pair.slice(0, cut), pair.slice(cut + 1));
    }
    const location = response.headers.get("location");
    if (!location) throw new Error(`sign-in stopped at ${next}: ${response.status} ${await response.text()}`);
    next = new URL(location, next).toString();
  }
  throw new Error("sign-in redirected too often");
}

async function connected(provider) {
  const client = new Client({ name: "oneoff-runner-oauth-test", version: "1.0.0" });
  const transport = new StreamableHTTPClientTransport(new URL(target), { authProvider: provider });
  await client.connect(transport);
  return { client, transport };
}

const provider = new MemoryProvider();
let refusedFirst = false;
try {
  await connected(provider);
} catch (error) {
  if (!(error instanceof UnauthorizedError)) throw error;
  refusedFirst = true;
}
const pending = new StreamableHTTPClientTransport(new URL(target), { authProvider: provider });
await pending.finishAuth(provider.seen.code);
const { client } = await connected(provider);
const result = await client.callTool(JSON.parse(rawCall));
await client.close();
console.log(
  JSON.stringify({
    refusedFirst,
    authorizationUrl: provider.seen.authorizationUrl,
    clientId: provider.client?.client_id,
    accessToken: provider.saved?.access_token,
    result,
  }),
);
