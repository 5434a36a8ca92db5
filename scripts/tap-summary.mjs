// Reads tap's TAP output on stdin and prints "N passed, N failed" counting
// leaf assertions only (a subtest's own summary line is not counted again),
// so CI shows the result of the whole run in one line.
import { createInterface } from 'node:readline';

const indentOf = (line) => line.length - line.trimStart().length;
let passed = 0;
let failed = 0;
let skipped = 0;
let prevIndent = 0; // indentation of the last line that was not YAML diagnostics
let yamlIndent = -1; // inside a YAML block opened at this indentation
const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  if (line.trim() === '') continue;
  const indent = indentOf(line);
  if (yamlIndent >= 0) {
    if (indent === yamlIndent && line.trim() === '...') yamlIndent = -1;
    continue;
  }
  if (line.trim() === '---') {
    yamlIndent = indent;
    continue;
  }
  const m = /^\s*(not ok|ok) \d+(.*)$/.exec(line);
  const isParent = m && prevIndent > indent; // children were printed just before
  prevIndent = indent;
  if (!m || isParent) continue;
  if (/#\s*(SKIP|TODO)/i.test(m[2])) skipped++;
  else if (m[1] === 'ok') passed++;
  else failed++;
}
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
