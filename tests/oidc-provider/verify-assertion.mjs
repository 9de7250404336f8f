// Verifies a Portcullis identity assertion the way an app would, with an implementation that
// shares nothing with Portcullis (jose): fetches the JWKS over HTTP, checks the ES256 signature,
// issuer, audience and expiry, and prints the claims as JSON.
//
//   node verify-assertion.mjs <jwks-url> <issuer> <audience> <token> [<verify-at, unix seconds>]
import { createRemoteJWKSet, jwtVerify } from 'jose';

const [jwksUrl, issuer, audience, token, at] = process.argv.slice(2);
const keys = createRemoteJWKSet(new URL(jwksUrl));
try {
  const { payload, protectedHeader } = await jwtVerify(token, keys, {
    issuer,
    audience,
    algorithms: ['ES256'],
    ...(at ? { currentDate: new Date(Number(at) * 1000) } : {}),
  });
  console.log(JSON.stringify({ ok: true, kid: protectedHeader.kid, claims: payload }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, code: e.code ?? 'ERR', message: e.message }));
}
