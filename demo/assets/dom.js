// Small DOM helpers shared by the demo's modules.

/** The element with this id (the page defines every id the modules use). */
export const $ = (id) => document.getElementById(id);

/** Creates an element with properties (`class`, `text`, `data-*`, `on*` handlers) and children. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

/** Shows an error (or clears it with null) in a message element. */
export function showError(id, err) {
  $(id).textContent = err ? (err.message ?? String(err)) : "";
}

/** Runs an async UI action, reporting its failure in the error element `errorId`. */
export function guarded(errorId, action) {
  return async (...args) => {
    showError(errorId, null);
    try {
      await action(...args);
    } catch (err) {
      console.error(err);
      showError(errorId, err);
    }
  };
}

/** `hh:mm` of an RFC 3339 time. */
export function clock(at) {
  const date = new Date(at);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}
