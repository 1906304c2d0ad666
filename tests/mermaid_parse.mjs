// Parse Mermaid text with Mermaid's own parser (in Node, on a jsdom window): exit 0 and print the
// diagram type, or exit 1 with the parse error. Used by tests/unit/test_graph_render.py when
// HELIXTEST_MERMAID_DIR names a folder whose node_modules holds `mermaid` and `jsdom`
// (npm install mermaid@11 jsdom@24); the file is copied there, so Node resolves them.
import fs from "node:fs";
import { JSDOM } from "jsdom";

const dom = new JSDOM("<!doctype html><html><body></body></html>");
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import("mermaid");
try {
  const parsed = await mermaid.parse(fs.readFileSync(process.argv[2], "utf8"));
  console.log(parsed.diagramType);
} catch (error) {
  console.log(error.message);
  process.exit(1);
}
