// jsdom lacks DragEvent, which @lumino/dragdrop (loaded by @lumino/widgets) subclasses at import.
// JupyterLab's own test setup (@jupyterlab/testutils) fills the same gap.
if (typeof globalThis.DragEvent === 'undefined') {
  (globalThis as any).DragEvent = class DragEvent extends MouseEvent {};
}
