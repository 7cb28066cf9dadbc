// Validates an AsyncAPI document with the standard parser (@asyncapi/parser, pinned in
// package-lock.json): `node tests/node/validate-asyncapi.mjs docs/asyncapi.yaml`.
// Prints every diagnostic; exits 1 when any has severity "error" (or nothing parsed).
import asyncapiParser from '@asyncapi/parser';

const { Parser, fromFile } = asyncapiParser;
const SEVERITY = ['error', 'warning', 'information', 'hint']; // @stoplight/types DiagnosticSeverity

const path = process.argv[2];
if (!path) {
  console.error('usage: node validate-asyncapi.mjs <asyncapi.yaml>');
  process.exit(2);
}

const { document, diagnostics } = await fromFile(new Parser(), path).parse();
const errors = diagnostics.filter((d) => d.severity === 0);
for (const d of diagnostics) {
  const where = d.path && d.path.length ? d.path.join('.') : '(document)';
  const line = d.range ? d.range.start.line + 1 : '?';
  console.log(`${SEVERITY[d.severity] ?? d.severity}  ${d.code}  ${where} (line ${line}): ${d.message}`);
}
if (document === undefined || errors.length > 0) {
  console.log(`${path}: INVALID (${errors.length} error(s))`);
  process.exit(1);
}
console.log(
  `${path}: valid AsyncAPI ${document.version()} ` +
    `(${document.channels().length} channels, ${document.operations().length} operations, ` +
    `${document.messages().length} messages; ${diagnostics.length} diagnostic(s))`,
);
