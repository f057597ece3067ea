// Validates Kubernetes objects offline against the OpenAPI schemas bundled
// in the pinned kubernetes-models package (package-lock.json): reads a JSON
// array of objects on stdin (the test converts `kubectl kustomize` output),
// prints one line per invalid or unknown object and exits 1 if there is any.
//
//   kubectl kustomize deploy/k8s/overlays/dev | python3 -c '...to JSON...' |
//     node deploy/k8s/validate/validate.cjs
"use strict";

const fs = require("fs");
const path = require("path");

// apiVersion "apps/v1" -> module folder "apps/v1"; the core group "v1" -> "v1".
function modelFor(apiVersion, kind) {
  if (typeof apiVersion !== "string" || typeof kind !== "string") return null;
  const file = path.join(__dirname, "node_modules", "kubernetes-models",
                         apiVersion, kind + ".js");
  // A kind the package does not know (a custom resource) is an error: the
  // render must hold only objects this check can vouch for.
  if (!fs.existsSync(file)) return null;
  return require(file)[kind];
}

function main() {
  const objects = JSON.parse(fs.readFileSync(0, "utf8"));
  let failures = 0;
  for (const object of objects) {
    const name = `${object.kind}/${(object.metadata || {}).name}`;
    const Model = modelFor(object.apiVersion, object.kind);
    if (Model == null) {
      console.log(`${name}: no schema for ${object.apiVersion} ${object.kind}`);
      failures++;
      continue;
    }
    try {
      new Model(object).validate();
    } catch (error) {
      console.log(`${name}: ${error.message}`);
      failures++;
    }
  }
  console.log(`${objects.length - failures} valid, ${failures} invalid`);
  process.exit(failures === 0 ? 0 : 1);
}

main();
