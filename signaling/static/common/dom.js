// Building DOM nodes from data without ever parsing it as HTML: text goes in
// with textContent, so a name like "<script>" is shown, not run.

/**
 * el("li", {class: "speaker", lang: "ru"}, "text", otherNode, ...)
 * Attributes are set with setAttribute; children are nodes or strings (as text).
 * `null`, `undefined` and `false` children are skipped.
 */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, ...children);
  return node;
}

/** Append children (nodes or text) to `parent`. */
export function append(parent, ...children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Remove every child of `node`. */
export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}
