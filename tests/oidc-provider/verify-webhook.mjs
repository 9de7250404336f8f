// Verifies a Portcullis webhook with the Standard Webhooks reference library (standardwebhooks),
// which shares nothing with Portcullis: prints the verified payload as JSON, or the error.
//
//   node verify-webhook.mjs <secret> <webhook-id> <webhook-timestamp> <webhook-signature> <body>
import { Webhook } from 'standardwebhooks';

const [secret, id, timestamp, signature, body] = process.argv.slice(2);
try {
  const payload = new Webhook(secret).verify(body, {
    'webhook-id': id,
    'webhook-timestamp': timestamp,
    'webhook-signature': signature,
  });
  console.log(JSON.stringify({ ok: true, payload }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, message: e.message }));
}
