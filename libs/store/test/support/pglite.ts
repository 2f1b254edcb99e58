import * as vm from 'node:vm';

/**
 * PGlite's Emscripten loader always runs `await import('node:module')`, which jest can only serve when Node runs with
 * --experimental-vm-modules (otherwise the import rejects outside any test and crashes the jest worker).
 */
export const vmModulesEnabled = typeof (vm as { SourceTextModule?: unknown }).SourceTextModule === 'function';

export const VM_MODULES_HINT =
  'PGlite needs dynamic import() inside jest: run with NODE_OPTIONS=--experimental-vm-modules, e.g. ' +
  '`NODE_OPTIONS=--experimental-vm-modules npx jest --selectProjects store`';

/** Registers one failing test instead of the suite when PGlite cannot load; returns whether it can. */
export function requireVmModules(): boolean {
  if (!vmModulesEnabled) {
    it('can load PGlite', () => {
      throw new Error(VM_MODULES_HINT);
    });
  }
  return vmModulesEnabled;
}
