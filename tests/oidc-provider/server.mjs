// A real OpenID provider for Portcullis's tests: oidc-provider with dev interactions, PKCE
// required, RP-initiated logout, back-channel logout, refresh tokens and revocation.
//
// Environment: PORT, REDIRECT_URI, POST_LOGOUT_URI, BACKCHANNEL_URI (optional),
// CONFORM ("false" puts profile/email claims in the ID token too, as Cognito does),
// ACCESS_TTL (seconds). Prints "ready <issuer>" once listening.
import Provider from "oidc-provider";

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;

// Users by login name (devInteractions makes the typed login the `sub`).
const accounts = {
  alice: { email: "alice@example.com", email_verified: true, name: "Alice Anders", preferred_username: "alice", groups: ["staff", "ml"] },
  guid: { email: "guid.user@example.com", email_verified: true, groups: [] },
  "8c1d5f7a-52a1-4c5e-9d2e-2f4b6a7c9e01": { email: "maria@example.com", email_verified: true },
  unverified: { email: "alice@example.com", email_verified: false, name: "Not Alice" },
  // A verified claim with two @: its domain is not example.test (tests/security.rs).
  mallory: { email: "alice@evil.example@example.test", email_verified: true, name: "Mallory" },
  tess: { email: "tess@example.test", email_verified: true, name: "Tess" },
};

const client = {
  client_id: "portcullis",
  client_secret: "portcullis-test-secret",
  redirect_uris: [process.env.REDIRECT_URI],
  post_logout_redirect_uris: [process.env.POST_LOGOUT_URI],
  grant_types: ["authorization_code", "refresh_token"],
  response_types: ["code"],
  token_endpoint_auth_method: "client_secret_basic",
};
if (process.env.BACKCHANNEL_URI) {
  client.backchannel_logout_uri = process.env.BACKCHANNEL_URI;
  client.backchannel_logout_session_required = true;
}

const provider = new Provider(issuer, {
  clients: [client],
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    backchannelLogout: { enabled: true },
    revocation: { enabled: true },
  },
  scopes: ["openid", "email", "profile", "groups", "offline_access"],
  claims: {
    openid: ["sub"],
    email: ["email", "email_verified"],
    profile: ["name", "preferred_username"],
    groups: ["groups"],
  },
  conformIdTokenClaims: process.env.CONFORM !== "false",
  // Back-channel logout calls Portcullis on loopback, which oidc-provider's SSRF protection
  // refuses by default. Test-only: drop that dispatcher.
  fetch(url, options) {
    delete options.dispatcher;
    return globalThis.fetch(url, options);
  },
  ttl: { AccessToken: Number(process.env.ACCESS_TTL || 3600), IdToken: 3600 },
  issueRefreshToken: async (ctx, client, code) => client.grantTypeAllowed("refresh_token") && code.scopes.has("offline_access"),
  async findAccount(ctx, sub) {
    return { accountId: sub, async claims() { return { sub, ...(accounts[sub] || {}) }; } };
  },
});

// Test hook: change a user's groups at the provider (POST /test/groups?sub=alice&set=a,b).
provider.use(async (ctx, next) => {
  if (ctx.method === "POST" && ctx.path === "/test/groups") {
    const sub = ctx.query.sub;
    accounts[sub] = { ...(accounts[sub] || {}), groups: String(ctx.query.set || "").split(",").filter(Boolean) };
    ctx.status = 204;
    return;
  }
  await next();
});

// Report back-channel deliveries on stderr (shown with PCS_IDP_DEBUG=1 in the Rust tests).
provider.on("backchannel.error", (ctx, err, client) => console.error(`backchannel.error ${client.clientId}: ${err.message} ${err.cause ? err.cause.code + " " + err.cause.message : ""}`));
provider.on("backchannel.success", (ctx, client) => console.error(`backchannel.success ${client.clientId}`));

provider.listen(port, "127.0.0.1", () => console.log(`ready ${issuer}`));
