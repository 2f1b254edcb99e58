// One jest run over every project: a single summary line for CI, and per-project selection with --selectProjects.
const path = require('node:path');
const fs = require('node:fs');

const swc = ['@swc/jest', { jsc: { parser: { syntax: 'typescript' }, target: 'es2022' }, module: { type: 'commonjs' } }];
const moduleNameMapper = {
  '^@kb/(sev|sev-sim|sev-host-sim|grpc-api|policy|store|xml)$': path.join(__dirname, 'libs/$1/src/index.ts'),
  '^@kb/broker$': path.join(__dirname, 'apps/broker/src/index.ts'),
};

function project(dir) {
  return {
    displayName: path.basename(dir),
    rootDir: dir,
    testEnvironment: 'node',
    transform: { '^.+\\.ts$': swc },
    moduleNameMapper,
    testMatch: ['<rootDir>/test/**/*.test.ts'],
  };
}

const dirs = ['libs', 'apps']
  .flatMap((top) => (fs.existsSync(top) ? fs.readdirSync(top).map((d) => path.join(__dirname, top, d)) : []))
  .filter((d) => fs.existsSync(path.join(d, 'test')))
  // tools/test: the benchmarks' statistics and other tool code
  .concat([path.join(__dirname, 'tools')]);

module.exports = { projects: dirs.map(project), testTimeout: 60000 };
